# `deepseek mkmodel`: every tiny shape, with the built-in vocabulary and with the
# testdata vocabularies; determinism by seed; the usage errors (exit 2).
# The key-by-key comparison with the testdata models is in tests/unit/test_shapes.c.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"

mk() { "$DS_BIN" mkmodel "$@"; }

# --- every tiny shape, built-in vocabulary ----------------------------------
for spec in qwen2:tiny llama:tiny deepseek2:tiny deepseek2:tiny-v3; do
    arch=${spec%%:*} shape=${spec#*:}
    out="$TMP/$arch-$shape.gguf"
    expect_exit 0 mk --arch "$arch" --shape "$shape" --type f32 --seed 1 -o "$out"
    if grep -q "^wrote $out: $arch $shape .*built-in vocabulary" "$TMP/out" && [ -s "$out" ]
    then ok "$arch $shape: summary line and file"
    else fail "$arch $shape: no summary or file ($(cat "$TMP/out"))"; fi
    sed -n 's/.* \([0-9][0-9]*\) parameters,.*/\1/p' "$TMP/out" >"$TMP/$arch-$shape.params"
done
left=
for f in "$TMP"/*.tmp.*; do if [ -e "$f" ]; then left="$left $f"; fi; done
if [ -n "$left" ]; then fail "temporary files left behind:$left"
else ok "no temporary files left behind"; fi

# --- determinism --------------------------------------------------------------
expect_exit 0 mk --arch qwen2 --shape tiny --type f32 --seed 1 -o "$TMP/again.gguf"
if cmp -s "$TMP/qwen2-tiny.gguf" "$TMP/again.gguf"; then ok "same seed: identical bytes"
else fail "same seed gave different files"; fi
expect_exit 0 mk --arch qwen2 --shape tiny --type f32 --seed 2 -o "$TMP/seed2.gguf"
if cmp -s "$TMP/qwen2-tiny.gguf" "$TMP/seed2.gguf"; then fail "different seeds, same bytes"
else ok "different seed: different bytes"; fi
sz() { wc -c <"$1" | tr -d ' '; }
for t in f16 bf16; do
    expect_exit 0 mk --arch deepseek2 --shape tiny-v3 --type $t --seed 1 -o "$TMP/v3-$t.gguf"
done
if [ "$(sz "$TMP/v3-f16.gguf")" -eq "$(sz "$TMP/v3-bf16.gguf")" ] &&
   [ "$(sz "$TMP/v3-f16.gguf")" -lt "$(sz "$TMP/deepseek2-tiny-v3.gguf")" ] &&
   ! cmp -s "$TMP/v3-f16.gguf" "$TMP/v3-bf16.gguf"
then ok "f16 and bf16: same size, smaller than f32, different bytes"
else fail "f16/bf16 sizes or bytes unexpected"; fi

# --- with the testdata vocabularies: parameter counts of the testdata models ----
if [ -d "${DS_TESTDATA:-}" ]; then
    M="$DS_TESTDATA/models" V="$DS_TESTDATA/tokenizer"
    for spec in "qwen2 $M/tiny-qwen2-Q8_0.gguf 151936 41914112" \
                "llama $V/ggml-vocab-deepseek-coder.gguf 32256 11405568" \
                "deepseek2 $V/ggml-vocab-deepseek-llm.gguf 102400 15135104"; do
        set -- $spec
        expect_exit 0 mk --arch "$1" --shape tiny --type f32 --vocab "$2" -o "$TMP/v-$1.gguf"
        if grep -q " $3 tokens, .* $4 parameters" "$TMP/out"; then ok "$1 + vocab: $4 parameters"
        else fail "$1 + vocab: want $3 tokens, $4 parameters: $(cat "$TMP/out")"; fi
    done
    # The tokenizer keys travel verbatim: the R1 chat template of the testdata model.
    if grep -q 'tool_calls' "$TMP/v-qwen2.gguf"; then ok "chat template copied"
    else fail "chat template not copied"; fi
else
    echo "note: DS_TESTDATA absent, vocabulary checks skipped"
fi

# --- inspect reads every file back (once `deepseek inspect` exists) -------------
if "$DS_BIN" inspect --help >/dev/null 2>&1; then
    for spec in qwen2:tiny llama:tiny deepseek2:tiny deepseek2:tiny-v3; do
        arch=${spec%%:*} shape=${spec#*:}
        expect_exit 0 "$DS_BIN" inspect "$TMP/$arch-$shape.gguf"
        if grep -q "$arch" "$TMP/out" && grep -q 'token_embd.weight' "$TMP/out"
        then ok "inspect $arch $shape: arch and tensors listed"
        else fail "inspect $arch $shape: $(head -c 300 "$TMP/out")"; fi
        want=$(cat "$TMP/$arch-$shape.params")
        if grep -q "^parameters: $want " "$TMP/out"; then ok "inspect: $want parameters"
        else fail "inspect: want $want parameters: $(grep param "$TMP/out")"; fi
    done
else
    echo "note: deepseek inspect not available yet, read-back checks skipped"
fi

# --- usage errors: exit 2 with one line -----------------------------------------
printf 'GGUF\003\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000' \
    >"$TMP/novocab.gguf"
printf 'not a gguf file' >"$TMP/junk.gguf"
mkdir "$TMP/adir"
base="--arch qwen2 --shape tiny --type f32"
expect_exit 2 mk --arch gpt2 --shape tiny --type f32 -o "$TMP/x.gguf"
expect_exit 2 mk --arch qwen2 --shape deepseek-v2-lite --type f32 -o "$TMP/x.gguf"
if grep -q 'r1-distill-qwen-1.5b' "$TMP/err" && [ "$(wc -l <"$TMP/err")" -eq 1 ]
then ok "bad shape: one line listing the valid shapes"
else fail "bad shape message: $(cat "$TMP/err")"; fi
expect_exit 2 mk --arch qwen2 --shape tiny --type q4_0 -o "$TMP/x.gguf"
expect_exit 2 mk $base --vocab "$TMP/missing.gguf" -o "$TMP/x.gguf"
expect_exit 2 mk $base --vocab "$TMP/junk.gguf" -o "$TMP/x.gguf"
expect_exit 2 mk $base --vocab "$TMP/novocab.gguf" -o "$TMP/x.gguf"
if grep -q 'tokenizer.ggml.tokens' "$TMP/err"; then ok "vocab without tokenizer keys named"
else fail "vocab message: $(cat "$TMP/err")"; fi
expect_exit 2 mk $base -o "$TMP/no/such/dir/x.gguf"
expect_exit 2 mk $base -o "$TMP/adir"
expect_exit 2 mk $base
expect_exit 2 mk $base --seed abc -o "$TMP/x.gguf"
expect_exit 2 mk $base --frobnicate 1 -o "$TMP/x.gguf"
expect_exit 2 mk $base -o
if [ -e "$TMP/x.gguf" ]; then fail "a failed run left $TMP/x.gguf"; else ok "no output on error"; fi
expect_exit 0 mk --help

finish
