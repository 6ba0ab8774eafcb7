# `deepseek wipe` proves deletion on a real ext4 filesystem: after the wipe, a raw
# scan of the loop image finds 0 copies of the file's unique pattern, while a control
# file removed with plain rm still shows its pattern (else the scan proves nothing).
# Also: refusal of a file held open (names the process, file intact), of a file with
# two hard links, of btrfs (copy-on-write); --dry-run changes nothing; --recursive;
# the audit log has intent + result records and verifies.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"

if [ "$(id -u)" -ne 0 ]; then echo "skip: needs root to loop-mount an ext4 image"; exit 77; fi
for t in mkfs.ext4 losetup mount umount python3; do
    command -v "$t" >/dev/null 2>&1 || { echo "skip: $t not installed"; exit 77; }
done
if ! losetup -f >/dev/null 2>&1; then echo "skip: no free loop device"; exit 77; fi

MNT="$TMP/mnt"; LOGS="$TMP/logs"; HOLDER=""
cleanup() {
    [ -n "$HOLDER" ] && kill "$HOLDER" 2>/dev/null || true
    for m in "$MNT" "$TMP/bmnt"; do mountpoint -q "$m" 2>/dev/null && umount "$m"; done
    rm -rf "$TMP"
}
trap cleanup EXIT
mkdir -p "$MNT" "$LOGS"
W() { "$DS_BIN" wipe --config= --log-dir "$LOGS" "$@"; }

# mkpat FILE BYTES: writes a fresh random 16-byte marker repeated; prints its hex.
mkpat() {
    python3 -c 'import os,sys
m=os.urandom(16); n=int(sys.argv[2])
open(sys.argv[1],"wb").write((m*(n//16+1))[:n]); print(m.hex())' "$1" "$2"
}
# count IMAGE HEX: copies of the marker in the raw image.
count() {
    python3 -c 'import sys
print(open(sys.argv[1],"rb").read().count(bytes.fromhex(sys.argv[2])))' "$1" "$2"
}

# ---- ext4 ----
truncate -s 64M "$TMP/ext4.img"
mkfs.ext4 -q -F "$TMP/ext4.img"
# nodiscard: with discard, even rm would free (punch) the blocks and the control would
# not find its pattern (research/deletion.md §0.6).
if ! mount -o loop,nodiscard "$TMP/ext4.img" "$MNT"; then echo "skip: loop mount failed"; exit 77; fi

PA=$(mkpat "$MNT/model-q4.gguf" 4194304)
PB=$(mkpat "$MNT/control.gguf" 4194304)
PC=$(mkpat "$MNT/held.gguf" 65536)
PD=$(mkpat "$MNT/linked.gguf" 65536)
mkdir -p "$MNT/cache/sub"
PE=$(mkpat "$MNT/cache/a.bin" 300000)
cp "$MNT/cache/a.bin" "$MNT/cache/sub/b.bin"
ln "$MNT/linked.gguf" "$MNT/linked2.gguf"
sync

# Held open by a process: refused (3), the process named, the file intact.
sleep 1000 <"$MNT/held.gguf" &
HOLDER=$!
sleep 0.3
sum0=$(sha256sum <"$MNT/held.gguf")
expect_exit 3 W "$MNT/held.gguf"
if grep -q "$HOLDER (sleep" "$TMP/err"; then ok "names the holder pid $HOLDER (sleep)"; else
    fail "holder not named: $(cat "$TMP/err")"; fi
if [ "$(sha256sum <"$MNT/held.gguf")" = "$sum0" ]; then ok "held file intact"; else
    fail "held file changed"; fi
kill "$HOLDER"; wait "$HOLDER" 2>/dev/null || true; HOLDER=""

# Two hard links: refused, both names intact.
expect_exit 3 W "$MNT/linked.gguf"
if grep -q "hard links" "$TMP/err"; then ok "hard links explained"; else fail "$(cat "$TMP/err")"; fi
[ -f "$MNT/linked.gguf" ] && [ -f "$MNT/linked2.gguf" ] && ok "links kept" || fail "link lost"

# Dry run: checks pass, nothing changes.
sum0=$(sha256sum <"$MNT/model-q4.gguf")
expect_exit 0 W --dry-run "$MNT/model-q4.gguf"
[ "$(sha256sum <"$MNT/model-q4.gguf")" = "$sum0" ] && ok "dry run left the file" || fail "dry run changed it"

# A directory needs --recursive; with it, every file and the directories go.
expect_exit 3 W "$MNT/cache"
expect_exit 0 W --recursive "$MNT/cache"
[ ! -e "$MNT/cache" ] && ok "tree removed" || fail "tree still there: $(ls -R "$MNT/cache")"

# The wipe itself, and the rm control.
expect_exit 0 W "$MNT/model-q4.gguf"
[ ! -e "$MNT/model-q4.gguf" ] && ok "wiped file gone" || fail "wiped file still there"
rm "$MNT/control.gguf"
sync
umount "$MNT"

n=$(count "$TMP/ext4.img" "$PB")
if [ "$n" -gt 0 ]; then ok "control: rm left $n copies of its pattern (the scan works)"; else
    fail "control: rm left 0 copies: the scan proves nothing (discard on?)"; fi
n=$(count "$TMP/ext4.img" "$PA")
[ "$n" -eq 0 ] && ok "wipe: 0 copies of the pattern in the raw image" || fail "wipe: $n copies left"
n=$(count "$TMP/ext4.img" "$PE")
[ "$n" -eq 0 ] && ok "recursive wipe: 0 copies" || fail "recursive wipe: $n copies left"
n=$(count "$TMP/ext4.img" "$PC")
[ "$n" -gt 0 ] && ok "refused file's pattern still there ($n)" || fail "refused file was touched"
: "$PD"

# ---- the audit trail ----
A="$LOGS/audit.jsonl"
if grep -F '"phase":"intent"' "$A" | grep -qF 'model-q4.gguf' &&
   grep -F '"phase":"result"' "$A" | grep -F 'model-q4.gguf' | grep -qF '"result":"ok"'; then
    ok "audit has intent and ok result for the wipe"; else fail "audit records missing"; fi
grep -F 'held.gguf' "$A" | grep -qF '"result":"refused"' && ok "refusal audited" || fail "refusal not audited"
expect_exit 0 "$DS_BIN" audit verify --config= "$A"

# ---- btrfs: copy-on-write, refused with the reason ----
if command -v mkfs.btrfs >/dev/null 2>&1; then
    mkdir -p "$TMP/bmnt"
    truncate -s 128M "$TMP/btrfs.img"
    if mkfs.btrfs -q -f "$TMP/btrfs.img" >/dev/null 2>&1 &&
       mount -o loop "$TMP/btrfs.img" "$TMP/bmnt" 2>/dev/null; then
        mkpat "$TMP/bmnt/model.gguf" 65536 >/dev/null
        expect_exit 3 W "$TMP/bmnt/model.gguf"
        grep -q "copy-on-write" "$TMP/err" && ok "btrfs refusal explained" || fail "$(cat "$TMP/err")"
        [ -f "$TMP/bmnt/model.gguf" ] && ok "btrfs file untouched" || fail "btrfs file gone"
        umount "$TMP/bmnt"
    else
        echo "note: btrfs image could not be mounted here; btrfs case not run"
    fi
else
    echo "note: mkfs.btrfs not installed (scripts/install-deps.sh adds btrfs-progs); btrfs case not run"
fi
finish
