# `deepseek quantize`: the per-tensor types of llama-quantize's Q4_K_M files reproduced
# from same-shape mkmodel masters (qwen2 and llama, tied embeddings), every file type on
# a small model, MoE experts (deepseek2), progress and summary lines, and the error exits
# (2: usage, unknown type, unreadable input, unwritable output, unconvertible tensor).
# Round-trip accuracy and the policy rule by rule are in tests/unit/test_quantize.c.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"

q() { "$DS_BIN" quantize "$@"; }
mk() { "$DS_BIN" mkmodel "$@" >/dev/null; }
# "name type" per tensor, sorted by name.
types() { "$DS_BIN" inspect "$1" | awk '/^tensors/{p=1; next} p && NF >= 3 && $1 != "name" {print $1, $2}' | sort; }
key() { "$DS_BIN" inspect "$1" | awk -v k="$2" '$1 == k {print $3}'; }

# --- usage errors -------------------------------------------------------------
expect_exit 0 q --help
if grep -q "q4_k_m" "$TMP/out"; then ok "--help lists the types"; else fail "--help"; fi
expect_exit 2 q
expect_exit 2 q only-two.gguf args.gguf
expect_exit 2 q --bogus a.gguf b.gguf q8_0
expect_exit 2 q --threads 0 a.gguf b.gguf q8_0

mk --arch llama --shape tiny --type f16 --seed 3 -o "$TMP/small.gguf"
expect_exit 2 q "$TMP/small.gguf" "$TMP/x.gguf" q3_k_s
if grep -q "unknown type 'q3_k_s' (valid: q8_0, q4_0, q4_k_m" "$TMP/err"; then
    ok "unknown type lists the valid ones"; else fail "unknown type message: $(cat "$TMP/err")"; fi
expect_exit 2 q "$TMP/missing.gguf" "$TMP/x.gguf" q8_0
if grep -q "missing.gguf" "$TMP/err"; then ok "missing input named"; else fail "$(cat "$TMP/err")"; fi
printf 'not a gguf file at all, just text\n' >"$TMP/junk.gguf"
expect_exit 2 q "$TMP/junk.gguf" "$TMP/x.gguf" q8_0
expect_exit 2 q "$TMP/small.gguf" /nonexistent-dir/x.gguf q8_0
if grep -q "cannot write in /nonexistent-dir" "$TMP/err"; then ok "unwritable output named"
else fail "unwritable output: $(cat "$TMP/err")"; fi
expect_exit 2 q "$TMP/small.gguf" "$TMP" q8_0
[ ! -e "$TMP/x.gguf" ] && ok "no output after errors" || fail "output written after an error"

# A hand-made GGUF with one Q4_1 weight (a type we cannot dequantize): exit 2, named.
le32() { printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $(($1 & 255)) $(($1 >> 8 & 255)) \
                  $(($1 >> 16 & 255)) $(($1 >> 24 & 255)))"; }
le64() { le32 "$1"; le32 0; }
gstr() { le64 ${#1}; printf '%s' "$1"; }
{
    printf 'GGUF'; le32 3; le64 1; le64 2
    gstr general.architecture; le32 8; gstr llama
    gstr llama.block_count; le32 4; le32 1
    gstr blk.0.attn_q.weight; le32 2; le64 32; le64 2; le32 3; le64 0
} >"$TMP/q41.gguf"
pad=$(( (32 - $(wc -c <"$TMP/q41.gguf") % 32) % 32 + 40 ))
head -c "$pad" /dev/zero >>"$TMP/q41.gguf"
if "$DS_BIN" inspect "$TMP/q41.gguf" >/dev/null 2>&1; then ok "hand-made Q4_1 file is valid GGUF"
else fail "hand-made Q4_1 file does not open"; fi
expect_exit 2 q "$TMP/q41.gguf" "$TMP/x.gguf" q4_k_m
if grep -q "blk.0.attn_q.weight has type Q4_1" "$TMP/err"; then ok "unconvertible tensor named"
else fail "unconvertible tensor: $(cat "$TMP/err")"; fi

# --- every file type on a small model: exit 0, general.file_type, size order ----
for spec in q8_0:7 q4_0:2 q4_k_m:15 q5_k_m:17 q6_k:18 f16:1 bf16:32 f32:0; do
    t=${spec%%:*} ft=${spec#*:}
    expect_exit 0 q --threads 2 "$TMP/small.gguf" "$TMP/small-$t.gguf" "$t"
    if [ "$(key "$TMP/small-$t.gguf" general.file_type)" = "$ft" ] &&
       [ "$(key "$TMP/small-$t.gguf" general.quantization_version)" = 2 ]
    then ok "$t: file_type $ft, quantization_version 2"; else fail "$t: file_type/version"; fi
done
sz() { wc -c <"$1" | tr -d ' '; }
if [ "$(sz "$TMP/small-q4_0.gguf")" -lt "$(sz "$TMP/small-q8_0.gguf")" ] &&
   [ "$(sz "$TMP/small-q4_k_m.gguf")" -lt "$(sz "$TMP/small-q5_k_m.gguf")" ] &&
   [ "$(sz "$TMP/small-q5_k_m.gguf")" -lt "$(sz "$TMP/small-q6_k.gguf")" ] &&
   [ "$(sz "$TMP/small-q8_0.gguf")" -lt "$(sz "$TMP/small-f16.gguf")" ] &&
   [ "$(sz "$TMP/small-f16.gguf")" -eq "$(sz "$TMP/small-bf16.gguf")" ] &&
   [ "$(sz "$TMP/small-f16.gguf")" -lt "$(sz "$TMP/small-f32.gguf")" ]
then ok "sizes: q4_0 < q8_0, q4_k_m < q5_k_m < q6_k, q8_0 < f16 = bf16 < f32"
else fail "sizes out of order"; fi
# Progress and summary lines (the last run: f32, everything converted or copied).
if grep -q '^\[ *1/[0-9]*\] token_embd.weight  *f16 -> f32  *(256x[0-9]*)' "$TMP/err" &&
   grep -q 'output_norm.weight  *f32    copy' "$TMP/err" &&
   grep -q '^quantized .* MB -> .* MB, .* tensors converted, .* s, 2 threads' "$TMP/err"
then ok "progress and summary lines"; else fail "progress: $(head -c 600 "$TMP/err")"; fi
# A quantized input: q8_0 -> q4_k_m, and the metadata travels.
expect_exit 0 q "$TMP/small-q8_0.gguf" "$TMP/re.gguf" q4_k_m
if grep -q 'blk.0.ffn_up.weight  *q8_0 -> q4_K' "$TMP/err" &&
   [ "$(key "$TMP/re.gguf" general.file_type)" = 15 ] &&
   [ "$(key "$TMP/re.gguf" llama.block_count)" = 4 ] &&
   [ "$(key "$TMP/re.gguf" tokenizer.ggml.model)" = "$(key "$TMP/small.gguf" tokenizer.ggml.model)" ]
then ok "requantized q8_0 -> q4_k_m, metadata kept"; else fail "requantize"; fi

# --- deepseek2: 3-D experts quantized slice by slice; rows of 128 fall back --------
mk --arch deepseek2 --shape tiny --type f32 --seed 2 -o "$TMP/ds.gguf"
expect_exit 0 q "$TMP/ds.gguf" "$TMP/ds-q8.gguf" q8_0
expect_exit 0 q "$TMP/ds.gguf" "$TMP/ds-q4km.gguf" q4_k_m
if types "$TMP/ds-q8.gguf" | grep -q '^blk.1.ffn_up_exps.weight Q8_0$' &&
   types "$TMP/ds-q8.gguf" | grep -q '^blk.1.ffn_gate_inp.weight F32$' &&
   types "$TMP/ds-q4km.gguf" | grep -q '^blk.1.ffn_down_exps.weight Q5_0$' &&
   grep -q 'fallback' "$TMP/err"
then ok "deepseek2 experts: q8_0, router f32, q4_k_m rows of 128 -> q5_0"
else fail "deepseek2 types: $(types "$TMP/ds-q4km.gguf" | tr '\n' ' ')"; fi

# --- same types as llama-quantize's Q4_K_M files --------------------------------
if [ -d "${DS_TESTDATA:-}" ]; then
    M="$DS_TESTDATA/models" V="$DS_TESTDATA/tokenizer"
    for spec in "qwen2 $M/tiny-qwen2-Q8_0.gguf tiny-qwen2-Q4_K_M.gguf" \
                "llama $V/ggml-vocab-deepseek-coder.gguf tiny-llama-Q4_K_M.gguf"; do
        set -- $spec
        mk --arch "$1" --shape tiny --type f32 --vocab "$2" --seed 5 -o "$TMP/m-$1.gguf"
        expect_exit 0 q --quiet "$TMP/m-$1.gguf" "$TMP/m-$1-q4km.gguf" q4_k_m
        types "$TMP/m-$1-q4km.gguf" >"$TMP/ours"
        types "$M/$3" >"$TMP/theirs"
        if [ -s "$TMP/ours" ] && cmp -s "$TMP/ours" "$TMP/theirs"; then
            ok "$1: per-tensor types equal $3's ($(grep -c Q6_K "$TMP/ours") Q6_K)"
        else fail "$1: types differ from $3: $(diff "$TMP/ours" "$TMP/theirs" | tr '\n' ' ')"; fi
        rm -f "$TMP/m-$1.gguf"
    done
else
    echo "note: DS_TESTDATA absent, comparison with llama-quantize's files skipped"
fi

left=
for f in "$TMP"/*.tmp.*; do if [ -e "$f" ]; then left="$left $f"; fi; done
if [ -n "$left" ]; then fail "temporary files left behind:$left"; else ok "no temporary files"; fi
finish
