# `make run`'s script up to the server: banner, inspect, tokenize and generate on a
# freshly made demo model (DEMO_NO_SERVE=1 stops it before `deepseek serve`, which
# would run in the foreground on the default ports).
. "$DS_SOURCE_DIR/tests/integration/lib.sh"
demo="$TMP/demo.gguf"
expect_exit 0 "$DS_BIN" mkmodel --arch qwen2 --shape tiny --type f32 --seed 1 -o "$demo"
set +e
DEMO_NO_SERVE=1 sh "$DS_SOURCE_DIR/scripts/run-demo.sh" "$DS_BIN" "$demo" >"$TMP/demo.out" 2>&1
rc=$?
set -e
[ "$rc" -eq 0 ] && ok "run-demo.sh exits 0" || fail "run-demo.sh exit $rc: $(tail -5 "$TMP/demo.out")"
grep -q "RANDOM weights" "$TMP/demo.out" && ok "says the weights are random" || fail "no random-weights banner"
grep -q "^parameters: " "$TMP/demo.out" && ok "inspect ran" || fail "inspect output missing"
grep -q "generated 24 tokens" "$TMP/demo.out" && ok "generate ran 24 tokens" \
    || fail "generate summary missing: $(tail -3 "$TMP/demo.out")"
set +e
sh "$DS_SOURCE_DIR/scripts/run-demo.sh" "$DS_BIN" "$TMP/missing.gguf" >/dev/null 2>&1
rc=$?
set -e
[ "$rc" -eq 2 ] && ok "a missing demo model exits 2" || fail "missing model: exit $rc"
finish
