# `deepseek config`: defaults, environment, config file and flags in their order of
# precedence; errors that name file, line, key and flag; secrets masked; --help.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"

# A stray /etc/deepseek/deepseek.conf or DEEPSEEK_* variable must not change results.
for v in $(env | sed -n 's/^\(DEEPSEEK_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
NOFILE=--config=

# expect_line TEXT FILE: FILE has a line exactly TEXT.
expect_line() {
    if grep -qxF -- "$1" "$2"; then ok "'$1'"; else fail "no line '$1' in: $(head -c 400 "$2")"; fi
}
# expect_grep TEXT FILE / expect_no_grep TEXT FILE
expect_grep() {
    if grep -qF -- "$1" "$2"; then ok "has '$1'"; else fail "'$1' not in: $(head -c 400 "$2")"; fi
}
expect_no_grep() {
    if grep -qF -- "$1" "$2"; then fail "'$1' printed: $(grep -F -- "$1" "$2")"; else ok "no '$1'"; fi
}

# Defaults.
expect_exit 0 "$DS_BIN" config $NOFILE
expect_line "port = 7860" "$TMP/out"
expect_line "grpc-port = 50051" "$TMP/out"
expect_line "host = 127.0.0.1" "$TMP/out"
expect_line "log-level = info" "$TMP/out"

# The environment beats the default.
expect_exit 0 env DEEPSEEK_PORT=8000 "$DS_BIN" config $NOFILE
expect_line "port = 8000" "$TMP/out"

# A config file beats the default; the environment beats the file; a flag beats both.
cat >"$TMP/deepseek.conf" <<'EOF'
# test configuration
port = 7000
ctx_size = 8192
log-prompts = true
EOF
expect_exit 0 "$DS_BIN" config --config "$TMP/deepseek.conf"
expect_line "port = 7000" "$TMP/out"
expect_line "ctx-size = 8192" "$TMP/out"
expect_line "log-prompts = true" "$TMP/out"
expect_exit 0 env DEEPSEEK_PORT=8000 "$DS_BIN" config --config "$TMP/deepseek.conf"
expect_line "port = 8000" "$TMP/out"
expect_exit 0 env DEEPSEEK_PORT=8000 "$DS_BIN" config --config="$TMP/deepseek.conf" --port 9000
expect_line "port = 9000" "$TMP/out"
expect_line "ctx-size = 8192" "$TMP/out"
expect_exit 0 env DEEPSEEK_CONFIG="$TMP/deepseek.conf" "$DS_BIN" config --port=9001 -c 2048 --no-log-prompts
expect_line "port = 9001" "$TMP/out"
expect_line "ctx-size = 2048" "$TMP/out"
expect_line "log-prompts = false" "$TMP/out"

# Unknown key in the file: exit 2, one line naming file, line and key.
printf 'port = 7000\n\nprot = 7001\n' >"$TMP/typo.conf"
expect_exit 2 "$DS_BIN" config --config "$TMP/typo.conf"
expect_grep "$TMP/typo.conf:3: unknown key 'prot'" "$TMP/err"
if [ "$(wc -l <"$TMP/err")" -eq 1 ]; then ok "one-line message"; else fail "message: $(cat "$TMP/err")"; fi

# Out-of-range values: in the file (file:line), in the environment, as a flag.
printf 'port = 70000\n' >"$TMP/range.conf"
expect_exit 2 "$DS_BIN" config --config "$TMP/range.conf"
expect_grep "$TMP/range.conf:1: port = 70000 is out of range 1..65535" "$TMP/err"
expect_exit 2 env DEEPSEEK_PORT=0 "$DS_BIN" config $NOFILE
expect_grep "DEEPSEEK_PORT = 0 is out of range 1..65535" "$TMP/err"
expect_exit 2 "$DS_BIN" config $NOFILE --port 70000
expect_grep "--port 70000 is out of range 1..65535" "$TMP/err"
expect_exit 2 "$DS_BIN" config $NOFILE --kv-type f8
expect_grep "--kv-type f8 is not one of f16|f32" "$TMP/err"
expect_exit 2 "$DS_BIN" config $NOFILE --threads
expect_grep "--threads needs a value" "$TMP/err"
expect_exit 2 "$DS_BIN" config $NOFILE --no-such-flag
expect_grep "--no-such-flag" "$TMP/err"
expect_exit 2 "$DS_BIN" config --config "$TMP/does-not-exist.conf"
expect_grep "does-not-exist.conf" "$TMP/err"

# Secrets are masked wherever they come from, and never echoed in errors.
expect_exit 0 env DEEPSEEK_ADMIN_KEY=sk-supersecret123 "$DS_BIN" config $NOFILE \
    --cache-url redis://user:hunter2@cache:6379/0
expect_line "admin-key = ****" "$TMP/out"
expect_line "cache-url = ****" "$TMP/out"
expect_no_grep "supersecret" "$TMP/out"
expect_no_grep "hunter2" "$TMP/out"
expect_exit 0 "$DS_BIN" config $NOFILE
expect_line "admin-key = (unset)" "$TMP/out"
expect_exit 2 env DEEPSEEK_ADMIN_KEY="$(printf 'sk-supersecret123\001')" "$DS_BIN" config $NOFILE
expect_no_grep "supersecret" "$TMP/err"

# The dump is itself a valid config file (secrets aside).
expect_exit 0 "$DS_BIN" config --config "$TMP/deepseek.conf" --model "/m/my model.gguf"
cp "$TMP/out" "$TMP/dump.conf"
expect_exit 0 "$DS_BIN" config --config "$TMP/dump.conf"
sed 1,2d "$TMP/dump.conf" >"$TMP/a"
sed 1,2d "$TMP/out" >"$TMP/b"
if cmp -s "$TMP/a" "$TMP/b"; then ok "dump reads back unchanged"; else fail "dump round trip differs"; fi

# --help lists every setting with its flag and environment variable.
expect_exit 0 "$DS_BIN" config --help
cp "$TMP/out" "$TMP/help"
expect_exit 0 "$DS_BIN" config $NOFILE
n=0
for name in $(sed -n 's/^\([a-z0-9-]*\) = .*/\1/p' "$TMP/out"); do
    env_name="DEEPSEEK_$(echo "$name" | tr 'a-z-' 'A-Z_')"
    n=$((n + 1))
    if grep -qF -- "--$name" "$TMP/help" && grep -qF -- "$env_name" "$TMP/help"; then :; else
        fail "--help lacks --$name or $env_name"; fi
done
if [ "$n" -ge 25 ]; then ok "--help covers all $n settings"; else fail "only $n settings dumped"; fi

finish
