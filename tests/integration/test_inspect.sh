# `deepseek inspect` on the shared models and vocab files, and on corrupted copies
# made here (head -c / dd / printf): valid files exit 0 with the documented facts,
# invalid ones exit 2 with one line on stderr, and nothing dies by a signal.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"
need_testdata
M=$DS_TESTDATA/models
V=$DS_TESTDATA/tokenizer

# expect_in_out FILE PATTERN...: inspect FILE exits 0 and stdout has each fixed string.
expect_in_out() {
    f=$1; shift
    expect_exit 0 "$DS_BIN" inspect "$f"
    for pat in "$@"; do
        if grep -qF -- "$pat" "$TMP/out"; then ok "$(basename "$f"): $pat"; else
            fail "$(basename "$f"): output lacks '$pat'"; fi
    done
}

expect_in_out "$M/tiny-qwen2-Q8_0.gguf" '"qwen2"' 'parameters: 41914112 (41,914,112)' \
    'n_tensors: 50' 'version: 3' 'alignment: 32' 'file size: 50478848 bytes' \
    'tokenizer.ggml.tokens' '[string × 151936]'
expect_in_out "$M/tiny-qwen2-Q4_K_M.gguf" '"qwen2"' 'parameters: 41914112 (41,914,112)' \
    'Q6_K   [256, 151936]'
expect_in_out "$M/tiny-llama-F32.gguf" '"llama"' 'parameters: 11405568 (11,405,568)' \
    'n_tensors: 38' 'blk.0.attn_k.weight' '[256, 128]'
expect_in_out "$M/tiny-llama-Q4_K_M.gguf" '"llama"' 'parameters: 11405568 (11,405,568)' \
    'file size: 9829248 bytes'
expect_in_out "$M/tiny-deepseek2-Q8_0.gguf" '"deepseek2"' 'parameters: 15135104 (15,135,104)' \
    'n_tensors: 58' '[32, 64, 8]'
for f in deepseek-llm:102400 deepseek-coder:32256 qwen2:151936 llama-bpe:128256 \
         deepseek-v3:129280; do
    name=${f%%:*} n=${f##*:}
    expect_in_out "$V/ggml-vocab-$name.gguf" "\"$name\"" "[string × $n]" 'parameters: 0 (0)' \
        'n_tensors: 0'
done

# Output is abbreviated: a 151936-token vocabulary does not print every token.
"$DS_BIN" inspect "$M/tiny-qwen2-Q8_0.gguf" >"$TMP/full"
lines=$(wc -l <"$TMP/full")
if [ "$lines" -lt 200 ]; then ok "abbreviated output ($lines lines)"; else
    fail "output has $lines lines"; fi
if grep -q '(151931 more)' "$TMP/full"; then ok "array abbreviation"; else
    fail "no array abbreviation"; fi
if LC_ALL=C grep -q "$(printf '[\001-\010\016-\037]')" "$TMP/full"; then
    fail "raw control bytes in output"; else ok "no raw control bytes"; fi

expect_exit 0 "$DS_BIN" inspect --help
expect_exit 2 "$DS_BIN" inspect
expect_exit 2 "$DS_BIN" inspect --bogus "$M/tiny-llama-F32.gguf"
expect_exit 2 "$DS_BIN" inspect "$M/tiny-llama-F32.gguf" "$M/tiny-llama-F32.gguf"
expect_exit 2 "$DS_BIN" inspect "$TMP/does-not-exist.gguf"
expect_exit 2 "$DS_BIN" inspect "$TMP"

# --- corrupted copies -------------------------------------------------------
# The smallest model is the source; the first 24 bytes are magic, version,
# n_tensors, n_kv; the first key ("general.architecture") starts at 24.
SRC=$M/tiny-llama-Q4_K_M.gguf
C=$TMP/c
mkdir "$C"
size=$(wc -c <"$SRC")
# patch NAME OFFSET BYTES(printf format): a copy with BYTES written at OFFSET.
patch() {
    cp "$SRC" "$C/$1.gguf"
    chmod u+w "$C/$1.gguf"
    printf "$3" | dd of="$C/$1.gguf" bs=1 seek="$2" conv=notrunc 2>/dev/null
}
for n in 0 1 3 4 7 8 15 16 23 24 31 40 100 1000 100000 $((size / 2)) $((size - 1)); do
    head -c "$n" "$SRC" >"$C/trunc$n.gguf"
done
: >"$C/empty.gguf"
patch badmagic 0 'GGUX'
patch version1 4 '\001\000\000\000'
patch version99 4 '\143\000\000\000'
patch bigendian 4 '\000\000\000\003'
patch nkv_huge 16 '\377\377\377\377\377\377\377\017'
patch ntensors_huge 8 '\000\000\000\000\000\000\000\020'
patch ntensors_more 8 '\100\000\000\000'
patch keylen_huge 24 '\000\000\000\000\000\001\000\000'
patch keylen_zero 24 '\000\000\000\000\000\000\000\000'
patch valtype_unknown 52 '\077\000\000\000'
patch strlen_huge 56 '\377\377\377\377\000\000\000\000'
patch valtype_array_nested 52 '\011\000\000\000\011\000\000\000'
# Offsets found in the file itself, so the script follows the real layout.
off_of() { grep -obaF "$1" "$SRC" | head -n 1 | cut -d: -f1; }
tok=$(off_of tokenizer.ggml.tokens)
patch arrcount_huge $((tok + 21 + 4 + 4)) '\000\000\000\000\000\000\000\100'
patch arrtype_unknown $((tok + 21 + 4)) '\052\000\000\000'
arch=$(off_of general.architecture)
patch dupkey $((arch)) 'llama.context_length'  # same length as general.architecture
wq=$(off_of blk.1.attn_q.weight)
patch tname_dup $((wq + 4)) '0'
patch ndims0 $((wq + 19)) '\000\000\000\000'
patch ndims5 $((wq + 19)) '\005\000\000\000'
patch ne_zero $((wq + 23)) '\000\000\000\000\000\000\000\000'
patch ne_huge $((wq + 23)) '\000\000\000\000\000\000\000\200'
patch ttype_unknown $((wq + 23 + 16)) '\143\000\000\000'
patch toff_misaligned $((wq + 23 + 16 + 4)) '\001'
patch toff_huge $((wq + 23 + 16 + 4 + 7)) '\177'
bos=$(off_of tokenizer.ggml.add_bos_token)
patch bad_bool $((bos + 28 + 4)) '\002'
for f in "$C"/*.gguf; do
    set +e; "$DS_BIN" inspect "$f" >"$TMP/out" 2>"$TMP/err"; rc=$?; set -e
    name=$(basename "$f")
    nl=$(wc -l <"$TMP/err")
    if [ "$rc" -ge 128 ]; then fail "$name: killed by signal (exit $rc)"
    elif [ "$rc" -ne 2 ]; then fail "$name: exit $rc, expected 2"
    elif [ "$nl" -ne 1 ] || ! grep -q '^deepseek inspect: ' "$TMP/err"; then
        fail "$name: stderr is not one 'deepseek inspect:' line: $(head -c 300 "$TMP/err")"
    else ok "$name: $(cat "$TMP/err")"; fi
done
count=$(ls "$C" | wc -l)
if [ "$count" -ge 20 ]; then ok "$count corrupted variants"; else fail "only $count variants"; fi
finish
