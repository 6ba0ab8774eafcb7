# `deepseek logs sanitize` redacts secrets in place: after it, a raw scan of the
# ext4 loop image finds 0 copies of any of 1,000 distinct keys (sk-... and Bearer
# tokens), while the non-secret text is intact and the size unchanged. Control: keys
# of a file removed with plain rm are still found (the scan works).
. "$DS_SOURCE_DIR/tests/integration/lib.sh"

if [ "$(id -u)" -ne 0 ]; then echo "skip: needs root to loop-mount an ext4 image"; exit 77; fi
for t in mkfs.ext4 losetup mount python3; do
    command -v "$t" >/dev/null 2>&1 || { echo "skip: $t not installed"; exit 77; }
done
if ! losetup -f >/dev/null 2>&1; then echo "skip: no free loop device"; exit 77; fi
MNT="$TMP/mnt"; LOGS="$TMP/logs"
cleanup() { mountpoint -q "$MNT" 2>/dev/null && umount "$MNT"; rm -rf "$TMP"; }
trap cleanup EXIT
mkdir -p "$MNT" "$LOGS"
S() { "$DS_BIN" logs sanitize --config= --log-dir "$LOGS" "$@"; }

truncate -s 64M "$TMP/ext4.img"
mkfs.ext4 -q -F "$TMP/ext4.img"
if ! mount -o loop,nodiscard "$TMP/ext4.img" "$MNT"; then echo "skip: loop mount failed"; exit 77; fi

# mklog FILE KEYS: a log with 500 sk- keys and 500 Bearer tokens, all distinct;
# the keys (one a line) go to KEYS, outside the image.
mklog() {
    python3 - "$1" "$2" <<'PY'
import secrets, sys
keys, out = [], []
for i in range(1000):
    if i % 2:
        k = "sk-" + secrets.token_hex(20)
        out.append(f'2026-11-28T10:00:{i%60:02d}Z INFO http: request {i} client=c{i} used "{k}"\n')
        keys.append(k)
    else:
        t = secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
        out.append(f"2026-11-28T10:01:{i%60:02d}Z DEBUG http: request {i} Authorization: Bearer {t}\n")
        keys.append(t)
    out.append(f"2026-11-28T10:02:00Z INFO engine: request {i} done tokens=42 marker=PLAIN{i:04d}\n")
open(sys.argv[1], "w").write("".join(out))
open(sys.argv[2], "w").write("\n".join(keys) + "\n")
PY
}
mklog "$MNT/deepseek.log.1" "$TMP/keys"
mklog "$MNT/control.log" "$TMP/ckeys"
printf 'GET /v1/models?api_key=plainsecret123&x=1\n{"user":"a","password":"p4ss w0rd!"}\n' >>"$MNT/deepseek.log.1"
size0=$(stat -c %s "$MNT/deepseek.log.1"); ino0=$(stat -c %i "$MNT/deepseek.log.1")
sync

expect_exit 10 S --check "$MNT/deepseek.log.1"
grep -q "1002 secret" "$TMP/out" && ok "--check counts 1002 secrets" || fail "$(cat "$TMP/out")"
expect_exit 0 S "$MNT/deepseek.log.1"
grep -q "ok, 1002 secret" "$TMP/out" && ok "1002 redacted" || fail "$(cat "$TMP/out")"
[ "$(stat -c %s "$MNT/deepseek.log.1")" = "$size0" ] && ok "size unchanged" || fail "size changed"
[ "$(stat -c %i "$MNT/deepseek.log.1")" = "$ino0" ] && ok "same inode" || fail "inode changed"
n=$(grep -c 'marker=PLAIN' "$MNT/deepseek.log.1")
[ "$n" -eq 1000 ] && ok "non-secret lines intact" || fail "only $n plain lines"
grep -q 'Authorization: Bearer \[REDACTED\]' "$MNT/deepseek.log.1" && ok "prefix kept" || fail "no [REDACTED]"
grep -qF '"user":"a","password":"[REDACTED]"' "$MNT/deepseek.log.1" && ok "json password" || fail "json password"
expect_exit 0 S --check "$MNT/deepseek.log.1"
expect_exit 0 S "$MNT/deepseek.log.1"
grep -q "clean, 0 secret" "$TMP/out" && ok "second run finds nothing" || fail "$(cat "$TMP/out")"
rm "$MNT/control.log"
sync
umount "$MNT"

python3 - "$TMP/ext4.img" "$TMP/keys" "$TMP/ckeys" >"$TMP/scan" <<'PY'
import sys
img = open(sys.argv[1], "rb").read()
def found(path):
    return sum(1 for k in open(path).read().split() if k.encode() in img)
print(found(sys.argv[2]), found(sys.argv[3]), img.count(b"plainsecret123") + img.count(b"p4ss w0rd!"))
PY
read -r left control other <"$TMP/scan"
[ "$control" -gt 900 ] && ok "control: rm left $control of 1000 keys (the scan works)" ||
    fail "control: only $control keys of the rm'd file found: the scan proves nothing"
[ "$left" -eq 0 ] && ok "0 of 1000 keys left in the raw image" || fail "$left keys left on disk"
[ "$other" -eq 0 ] && ok "api_key and password gone from the image" || fail "$other copies left"
expect_exit 0 "$DS_BIN" audit verify --config= "$LOGS/audit.jsonl"
grep -F '"action":"logs.sanitize"' "$LOGS/audit.jsonl" | grep -qF '"phase":"intent"' &&
    ok "intent record" || fail "no intent record"
finish
