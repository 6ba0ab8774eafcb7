# The build helps you: no sprintf, strcpy, strcat, gets or atoi in our sources
# (STYLE.md rule 17). Use snprintf, memcpy with explicit lengths, strtol/strtoll.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"
cd "$DS_SOURCE_DIR"
hits=$(grep -rnE '(^|[^_a-z0-9])(sprintf|vsprintf|strcpy|strcat|gets|atoi|atol)\(' \
       src tests bench --include='*.c' --include='*.h' | grep -v 'banned-ok' || true)
if [ -n "$hits" ]; then
    fail "banned functions used:"
    echo "$hits"
else
    ok "no banned function in src/ tests/ bench/"
fi
finish
