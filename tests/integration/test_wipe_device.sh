# `deepseek wipe --device` on a loop device: a mounted device is refused with nothing
# changed (the mount point is named); zeroout reads back all zeros over the whole
# device and names NIST SP 800-88 Clear; secure-discard is refused where the device
# lacks it (loop: EOPNOTSUPP) with nothing changed; discard is recorded as not
# sanitization; a regular file is refused; the audit log holds intent and result
# records and verifies.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"

if [ "$(id -u)" -ne 0 ]; then echo "skip: needs root for a loop device"; exit 77; fi
for t in mkfs.ext4 losetup mount umount python3 cmp; do
    command -v "$t" >/dev/null 2>&1 || { echo "skip: $t not installed"; exit 77; }
done
if ! losetup -f >/dev/null 2>&1; then echo "skip: no free loop device"; exit 77; fi
MNT="$TMP/mnt"; LOGS="$TMP/logs"; LOOP=""
cleanup() {
    mountpoint -q "$MNT" 2>/dev/null && umount "$MNT"
    [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
mkdir -p "$MNT" "$LOGS"
SIZE=$((32 * 1024 * 1024))
truncate -s "$SIZE" "$TMP/img"
LOOP=$(losetup -f --show "$TMP/img") || { echo "skip: losetup failed"; exit 77; }
W() { "$DS_BIN" wipe --config= --log-dir "$LOGS" "$@"; }

# ---- mounted: refused, the data stays ----
mkfs.ext4 -q -F "$LOOP" >/dev/null 2>&1
if mount "$LOOP" "$MNT" 2>/dev/null; then
    echo keep >"$MNT/marker"
    sync
    expect_exit 3 W --device zeroout "$LOOP"
    grep -q "mounted on $MNT" "$TMP/err" && ok "refusal names the mount point" || fail "refusal text: $(cat "$TMP/err")"
    [ "$(cat "$MNT/marker")" = keep ] && ok "mounted filesystem untouched" || fail "marker changed"
    umount "$MNT"
else
    echo "skip - cannot mount ext4 here: mounted-device refusal not tested"
fi

# ---- the wrong kind of target ----
expect_exit 3 W --device zeroout "$TMP/img"
grep -q "not a block device" "$TMP/err" && ok "a regular file is refused" || fail "$(cat "$TMP/err")"
expect_exit 2 W --device shred "$LOOP"

# ---- secure-discard: loop devices lack it ----
python3 -c 'import os,sys; f=open(sys.argv[1],"r+b"); f.write(os.urandom(4<<20))' "$LOOP"
sum_before=$(sha256sum <"$LOOP")
expect_exit 3 W --device secure-discard "$LOOP"
grep -q "does not support secure-discard" "$TMP/err" && ok "secure-discard refused: not supported" || fail "$(cat "$TMP/err")"
[ "$(sha256sum <"$LOOP")" = "$sum_before" ] && ok "nothing changed after the refusal" || fail "device changed"

# ---- zeroout: Clear, all zeros read back ----
expect_exit 0 W --device zeroout --dry-run "$LOOP"
[ "$(sha256sum <"$LOOP")" = "$sum_before" ] && ok "--dry-run changed nothing" || fail "dry run changed the device"
expect_exit 0 W --device zeroout "$LOOP"
grep -q "NIST SP 800-88 Clear" "$TMP/out" && ok "zeroout names NIST Clear" || fail "$(cat "$TMP/out")"
grep -q "for Purge: .*backing file" "$TMP/out" && ok "prints what Purge needs instead of claiming it" || fail "$(cat "$TMP/out")"
cmp -s -n "$SIZE" "$LOOP" /dev/zero && ok "whole device reads back zeros" || fail "non-zero bytes after zeroout"

# ---- discard: done, but recorded as not sanitization ----
expect_exit 0 W --device discard "$LOOP"
grep -q "discard is not sanitization" "$TMP/out" && ok "discard says it is not sanitization" || fail "$(cat "$TMP/out")"

# ---- audit ----
expect_exit 0 "$DS_BIN" audit verify --config= --log-dir "$LOGS"
python3 - "$LOGS/audit.jsonl" <<'PY' && ok "audit: intent/result pairs with method, NIST category and purge hint" || fail "audit records: $(cat "$LOGS/audit.jsonl")"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
dev = [r for r in recs if r["action"] == "wipe.device"]
res = [(r["method"], r["result"]) for r in dev if r["phase"] == "result"]
assert ("blkzeroout", "ok") in res and ("blksecdiscard", "refused") in res and ("blkdiscard", "ok") in res, res
z = [r for r in dev if r["phase"] == "result" and r["method"] == "blkzeroout" and r["result"] == "ok"][0]
assert z["verification"] == "readback-o_direct-all-zero" and "Clear" in z["details"]["nist"]
assert z["intent_seq"] and any(r["seq"] == z["intent_seq"] and r["phase"] == "intent" for r in dev)
assert all("purge_hint" in r["details"] for r in dev)
PY
finish
