# deepseek doctor against a real server on 127.0.0.1 with the tiny qwen2 model: all
# checks pass while it runs (compute may warn), --json parses; a wrong checksum, a
# key file readable by others, a closed gRPC port and a stopped server each fail
# with a non-zero exit; a damaged audit chain fails.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"
need_testdata
SRC="$DS_TESTDATA/models/tiny-qwen2-Q8_0.gguf"
[ -f "$SRC" ] || { echo "skip: $SRC not found"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "skip: python3 is needed"; exit 77; }
cd "$TMP"
M="$TMP/model.gguf"
ln -s "$SRC" "$M"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
SPARE=$(free_port)
"$DS_BIN" keys add ops --api-keys "$TMP/keys" >/dev/null 2>&1
SET="--config= --host 127.0.0.1 --port $PORT --grpc-port 0 --log-dir $TMP/logs --api-keys $TMP/keys -m $M"
# shellcheck disable=SC2086
"$DS_BIN" serve $SET --threads 1 >"$TMP/serve.out" 2>&1 &
SPID=$!
trap 'kill "$SPID" 2>/dev/null || true; rm -rf "$TMP"' EXIT
i=0
until python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/ready', timeout=1)" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -lt 100 ] || { echo "FAIL - server did not start: $(cat "$TMP/serve.out")"; exit 1; }
    sleep 0.1
done
(cd "$TMP" && sha256sum model.gguf >model.gguf.sha256 && md5sum model.gguf >model.gguf.md5)

doctor() { # doctor EXPECTED_EXIT NAME [ARGS]: runs doctor --json, checks exit, keeps JSON
    want=$1; name=$2; shift 2
    set +e
    # shellcheck disable=SC2086
    "$DS_BIN" doctor $SET --json "$@" >"$TMP/$name.json" 2>"$TMP/$name.err"
    got=$?
    set -e
    if [ "$got" -eq "$want" ]; then ok "$name: exit $want"; else
        fail "$name: exit $got, expected $want: $(cat "$TMP/$name.json" "$TMP/$name.err")"; fi
}
# status CHECK FILE: the status of one check in a doctor --json output
status() { python3 -c "import json,sys; print({c['name']: c['status'] for c in json.load(open(sys.argv[2]))['checks']}.get(sys.argv[1], 'absent'))" "$1" "$2"; }
expect_status() { # expect_status NAME CHECK WANT...
    name=$1; check=$2; shift 2
    got=$(status "$check" "$TMP/$name.json")
    for w in "$@"; do
        if [ "$got" = "$w" ]; then ok "$name: $check is $got"; return; fi
    done
    fail "$name: $check is $got, expected $*: $(cat "$TMP/$name.json")"
}

# ---- a healthy deployment ----
doctor 0 healthy
python3 - "$TMP/healthy.json" <<'PY' && ok "healthy: JSON parses, ok true, every check pass (compute may warn, grpc skip)" || fail "healthy: $(cat "$TMP/healthy.json")"
import json, sys
d = json.load(open(sys.argv[1]))
st = {c["name"]: c["status"] for c in d["checks"]}
want = {"process", "rest-port", "grpc-port", "log-ready", "compute", "memory", "disk", "model",
        "key-file", "log-dir", "audit"}
assert set(st) == want, st
assert d["ok"] is True
assert st["grpc-port"] == "skip" and st["compute"] in ("pass", "warn")
assert all(v == "pass" for k, v in st.items() if k not in ("grpc-port", "compute")), st
assert all(c["detail"] for c in d["checks"])
PY
SHA=$(cut -d' ' -f1 "$TMP/model.gguf.sha256")
grep -q "$SHA matches" "$TMP/healthy.json" && ok "model digest reported and matched" || fail "no sha256 match in report"
set +e
# shellcheck disable=SC2086
"$DS_BIN" doctor $SET >"$TMP/text.out" 2>&1
rc=$?
set -e
[ "$rc" -eq 0 ] && grep -q "^PASS  process" "$TMP/text.out" && grep -q "^PASS  log-ready .*Server ready" "$TMP/text.out" \
    && ok "text report: PASS lines" || fail "text report rc=$rc: $(cat "$TMP/text.out")"

# ---- a wrong checksum: given value, then a damaged manifest ----
doctor 1 badsha --sha256 "$(printf '0%.0s' $(seq 64))"
expect_status badsha model fail
cp "$TMP/model.gguf.md5" "$TMP/md5.keep"
echo "00000000000000000000000000000000  model.gguf" >"$TMP/model.gguf.md5"
doctor 1 badmd5
expect_status badmd5 model fail
grep -q "expected 00000000000000000000000000000000" "$TMP/badmd5.json" && ok "md5 mismatch names the expected digest" || fail "md5 mismatch text"
mv "$TMP/md5.keep" "$TMP/model.gguf.md5"
rm "$TMP/model.gguf.sha256" "$TMP/model.gguf.md5"
doctor 0 nomanifest
expect_status nomanifest model warn

# ---- key file permissions ----
chmod 0644 "$TMP/keys"
doctor 1 keys644
expect_status keys644 key-file fail
chmod 0640 "$TMP/keys"
doctor 0 keys640
expect_status keys640 key-file warn
chmod 0600 "$TMP/keys"

# ---- gRPC configured but nothing listening ----
doctor 1 grpc --grpc-port "$SPARE"
expect_status grpc grpc-port fail

# ---- audit chain: one record verifies, an edited one fails ----
printf 'secret\n' >"$TMP/victim"
"$DS_BIN" wipe --config= --log-dir "$TMP/logs" --dry-run "$TMP/victim" >/dev/null 2>&1 || true
if [ -f "$TMP/logs/audit.jsonl" ]; then
    doctor 0 audit_ok
    expect_status audit_ok audit pass
    sed -i 's/"wipe"/"wipx"/' "$TMP/logs/audit.jsonl"
    doctor 1 audit_bad
    expect_status audit_bad audit fail
else
    fail "wipe --dry-run wrote no audit record"
fi
rm -f "$TMP/logs/audit.jsonl"

# ---- the server stopped ----
kill -TERM "$SPID"
wait "$SPID" || true
doctor 1 stopped
# warn when some other deepseek serve runs on this machine (another test, say)
expect_status stopped process fail warn
expect_status stopped rest-port fail
expect_status stopped log-ready fail
finish
