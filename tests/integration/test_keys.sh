# `deepseek keys`: add prints a key once on stdout, the file is 0600 and holds only
# its SHA-256, list shows ids and limits but neither keys nor hashes, duplicates and
# bad names are refused, remove revokes, and a malformed file is reported by line.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"

KEYS="$TMP/sub/keys"
mkdir -p "$TMP/sub"

expect_exit 0 "$DS_BIN" keys add alice --rpm 60 --tpm 100000 --concurrent 4 --api-keys "$KEYS"
KEY=$(cat "$TMP/out")
case "$KEY" in
    sk-*) ok "add printed a key" ;;
    *) fail "add printed '$KEY', not an sk- key" ;;
esac
[ "$(wc -l < "$TMP/out")" -eq 1 ] && ok "stdout is exactly the key" || fail "stdout: $(cat "$TMP/out")"
[ ${#KEY} -eq 67 ] && ok "key is sk- + 64 hex" || fail "key length ${#KEY}"
grep -q "shown only this once" "$TMP/err" && ok "stderr says the key is shown once" \
    || fail "stderr: $(cat "$TMP/err")"
grep -qF -- "$KEY" "$TMP/err" && fail "key on stderr" || ok "key not on stderr"

MODE=$(stat -c %a "$KEYS")
[ "$MODE" = 600 ] && ok "key file created 0600" || fail "key file mode $MODE"
grep -qF -- "${KEY#sk-}" "$KEYS" && fail "key file contains the key" || ok "key file has no key"
HASH=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
grep -q "^id=alice sha256=$HASH rpm=60 tpm=100000 concurrent=4 scope=user$" "$KEYS" \
    && ok "key file holds the SHA-256 line" || fail "key file: $(cat "$KEYS")"

expect_exit 0 "$DS_BIN" keys add ops --admin --api-keys "$KEYS"
KEY2=$(cat "$TMP/out")
[ "$KEY2" != "$KEY" ] && ok "second key differs" || fail "same key twice"
[ "$(grep -c '^id=' "$KEYS")" -eq 2 ] && ok "two lines" || fail "lines: $(cat "$KEYS")"

expect_exit 2 "$DS_BIN" keys add alice --api-keys "$KEYS"
grep -q "exists already" "$TMP/err" && ok "duplicate id refused" || fail "$(cat "$TMP/err")"
[ -s "$TMP/out" ] && fail "a refused add printed a key" || ok "refused add printed nothing"
expect_exit 2 "$DS_BIN" keys add "bad name" --api-keys "$KEYS"
expect_exit 2 "$DS_BIN" keys add bob --rpm -3 --api-keys "$KEYS"
expect_exit 2 "$DS_BIN" keys add bob --rpm --api-keys "$KEYS"
[ "$(grep -c '^id=' "$KEYS")" -eq 2 ] && ok "refused adds changed nothing" || fail "$(cat "$KEYS")"

expect_exit 0 "$DS_BIN" keys list --api-keys "$KEYS"
grep -Eq '^alice +user +60 +100000 +4$' "$TMP/out" && ok "list shows alice's limits" \
    || fail "list: $(cat "$TMP/out")"
grep -Eq '^ops +admin +- +- +-$' "$TMP/out" && ok "list shows ops unlimited admin" \
    || fail "list: $(cat "$TMP/out")"
if grep -qF -e "${KEY#sk-}" -e "${KEY2#sk-}" -e "$HASH" "$TMP/out" "$TMP/err"; then
    fail "list shows a key or hash"
else
    ok "list shows no key and no hash"
fi

# configured through the config file's api-keys setting instead of the flag
printf 'api-keys = %s\n' "$KEYS" > "$TMP/deepseek.conf"
expect_exit 0 "$DS_BIN" keys list --config "$TMP/deepseek.conf"
grep -q '^ops ' "$TMP/out" && ok "api-keys from the config file" || fail "$(cat "$TMP/out")"
expect_exit 2 "$DS_BIN" keys list

# a group-readable file is still used, with a warning
chmod 640 "$KEYS"
expect_exit 0 "$DS_BIN" keys list --api-keys "$KEYS"
grep -q "readable by group or others" "$TMP/err" && ok "mode warning" || fail "$(cat "$TMP/err")"
chmod 600 "$KEYS"

expect_exit 0 "$DS_BIN" keys remove alice --api-keys "$KEYS"
grep -q '^id=alice' "$KEYS" && fail "alice still in the file" || ok "alice removed"
grep -q '^id=ops' "$KEYS" && ok "ops kept" || fail "ops lost: $(cat "$KEYS")"
[ "$(stat -c %a "$KEYS")" = 600 ] && ok "still 0600 after remove" || fail "mode changed"
expect_exit 2 "$DS_BIN" keys remove alice --api-keys "$KEYS"

printf 'id=x sha256=zz\n' >> "$KEYS"
expect_exit 1 "$DS_BIN" keys list --api-keys "$KEYS"
grep -qF "$KEYS:2: sha256 must be 64 hex digits" "$TMP/err" && ok "bad line named by file:line" \
    || fail "$(cat "$TMP/err")"
expect_exit 1 "$DS_BIN" keys add carol --api-keys "$KEYS"
[ -s "$TMP/out" ] && fail "add on a broken file printed a key" || ok "broken file: nothing added"

finish
