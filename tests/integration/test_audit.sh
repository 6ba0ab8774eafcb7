# `deepseek audit verify` detects every kind of tampering with the hash-chained
# audit log and names the first broken record (file:line); a clean log, and a log
# split by rotation, verify (exit 0). Writers continue the chain across a rotation
# and refuse to append after a damaged last record.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"
L="$TMP/logs"
mkdir -p "$L"
W() { "$DS_BIN" wipe --config= --log-dir "$L" "$@"; }
V() { "$DS_BIN" audit verify --config= "$@"; }

# Five records: wipes of files that do not exist are recorded as errors.
for i in 1 2 3 4 5; do W "$TMP/missing-$i" >/dev/null 2>&1 || true; done
CLEAN="$TMP/clean.jsonl"
cp "$L/audit.jsonl" "$CLEAN"
[ "$(wc -l <"$CLEAN")" -eq 5 ] && ok "5 records written" || fail "records: $(wc -l <"$CLEAN")"
expect_exit 0 V "$CLEAN"
grep -q "^OK 5 records" "$TMP/out" && ok "clean log verifies" || fail "$(cat "$TMP/out")"

# expect_broken FILE LINE WORDS: verify exits 1 naming FILE:LINE and WORDS.
expect_broken() {
    expect_exit 1 V "$1"
    if grep -q "^BROKEN $1:$2: .*$3" "$TMP/out"; then ok "names $2 ($3)"; else
        fail "expected BROKEN $1:$2 ... $3, got: $(cat "$TMP/out")"; fi
}

# A changed field.
sed '3s/missing-3/missing-X/' "$CLEAN" >"$TMP/edit.jsonl"
expect_broken "$TMP/edit.jsonl" 3 "hash mismatch"
# A deleted record.
sed '3d' "$CLEAN" >"$TMP/del.jsonl"
expect_broken "$TMP/del.jsonl" 3 "seq 4 follows seq 2"
# Two records swapped.
{ sed -n 1p "$CLEAN"; sed -n 3p "$CLEAN"; sed -n 2p "$CLEAN"; sed -n '4,$p' "$CLEAN"; } >"$TMP/swap.jsonl"
expect_broken "$TMP/swap.jsonl" 2 "seq 3 follows seq 1"
# The last record cut off (a partial write).
head -c -20 "$CLEAN" >"$TMP/trunc.jsonl"
expect_broken "$TMP/trunc.jsonl" 5 "cut off"
# A forged record whose own hash is right, inserted after record 2: the record after
# it no longer links.
python3 - "$CLEAN" "$TMP/forged.jsonl" <<'PY'
import hashlib, json, sys
lines = open(sys.argv[1], "rb").read().splitlines(True)
prev = json.loads(lines[1])["hash"]
rec = {"seq": 3, "action": "wipe", "phase": "result", "result": "ok",
       "target": "/forged", "prev_hash": prev}
body = json.dumps(rec, sort_keys=True, separators=(",", ":")).encode()
h = hashlib.sha256(body).hexdigest()
forged = body[:-1] + b',"hash":"' + h.encode() + b'"}\n'
open(sys.argv[2], "wb").write(b"".join(lines[:2] + [forged] + lines[2:]))
PY
expect_broken "$TMP/forged.jsonl" 4 "seq 3 follows seq 3"
# A forged record with a stale hash (copied from another line).
python3 - "$CLEAN" "$TMP/forged2.jsonl" <<'PY'
import sys
lines = open(sys.argv[1], "rb").read().splitlines(True)
lines[3] = lines[3].replace(b'"phase":"result"', b'"phase":"intent"')
open(sys.argv[2], "wb").write(b"".join(lines))
PY
expect_broken "$TMP/forged2.jsonl" 4 "hash mismatch"

# Rotation: the chain continues across audit.jsonl.1 -> audit.jsonl.
R="$TMP/rot"
mkdir -p "$R"
head -n 3 "$CLEAN" >"$R/audit.jsonl.1"
tail -n 2 "$CLEAN" >"$R/audit.jsonl"
expect_exit 0 V --log-dir "$R"
grep -q "^OK 5 records in 2 file" "$TMP/out" && ok "rotated files verify in order" || fail "$(cat "$TMP/out")"
rm "$R/audit.jsonl.1"
expect_exit 1 V --log-dir "$R"
grep -q "starts at seq 4" "$TMP/out" && ok "pruned start detected" || fail "$(cat "$TMP/out")"
expect_exit 0 V --partial --log-dir "$R"

# A writer after logrotate renamed the file continues the chain.
mv "$L/audit.jsonl" "$L/audit.jsonl.1"
W "$TMP/missing-6" >/dev/null 2>&1 || true
expect_exit 0 V --log-dir "$L"
grep -q "^OK 6 records in 2 file" "$TMP/out" && ok "chain continues after rotation" || fail "$(cat "$TMP/out")"

# A damaged last record stops writers (fail closed): exit 9, the file not touched.
head -c -5 "$L/audit.jsonl" >"$TMP/t" && cat "$TMP/t" >"$L/audit.jsonl"
echo data >"$TMP/keep.txt"
expect_exit 9 W "$TMP/keep.txt"
[ -s "$TMP/keep.txt" ] && ok "nothing wiped without an intent record" || fail "wiped anyway"
grep -q "cut off" "$TMP/err" && ok "says why" || fail "$(cat "$TMP/err")"

# show prints the records; --since filters.
expect_exit 0 "$DS_BIN" audit show --config= "$CLEAN"
[ "$(grep -c '^#' "$TMP/out")" -eq 5 ] && ok "show prints 5 records" || fail "$(cat "$TMP/out")"
expect_exit 0 "$DS_BIN" audit show --config= --since 2999-01-01 "$CLEAN"
[ ! -s "$TMP/out" ] && ok "--since filters" || fail "$(cat "$TMP/out")"
finish
