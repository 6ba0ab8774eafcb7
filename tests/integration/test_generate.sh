# test_generate: `deepseek generate` against the llama.cpp / exact references of every
# llama and qwen2 test model (last-prompt logits, first greedy token), the -p text path,
# seeded sampling, --chat, stop strings and error exits; `deepseek bench` prints its table.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"
need_testdata
command -v python3 >/dev/null 2>&1 || { echo "skip: python3 not found"; exit 77; }
REF=$DS_TESTDATA/reference
MODELS=$DS_TESTDATA/models

# compare.py JSON LOGITS IDS QIDS: checks one reference pair; prints "ok - ..." or
# "FAIL - ..." lines (LOGITS/IDS from --float-act, QIDS from --quant-act).
cat >"$TMP/compare.py" <<'EOF'
import array, json, math, os, sys
js, logits_path, ids_path, qids_path = sys.argv[1:5]
d = json.load(open(js))
name = os.path.relpath(js, os.path.dirname(os.path.dirname(js)))
def load(p):
    a = array.array("f")
    with open(p, "rb") as f:
        a.frombytes(f.read())
    if sys.byteorder != "little":
        a.byteswap()
    return a
def rel_l2(a, b):
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b))) / math.sqrt(sum(y * y for y in b))
def say(ok, msg):
    print(("ok - " if ok else "FAIL - ") + name + ": " + msg)
ours = load(logits_path)
llama = load(os.path.join(os.path.dirname(js), d["last_prompt_logits"]["file"]))
say(len(ours) == d["n_vocab"], "logits-out has %d floats (n_vocab %d)" % (len(ours), d["n_vocab"]))
exact_file = d.get("numpy_exact", {}).get("last_prompt_logits_file")
if exact_file:  # quantized model: float activations must be as close to exact as llama.cpp
    exact = load(os.path.join(os.path.dirname(js), exact_file))
    ro, rl = rel_l2(ours, exact), rel_l2(llama, exact)
    say(ro <= 1.1 * rl, "rel L2 vs exact %.3g <= 1.1 x llama.cpp's %.3g" % (ro, rl))
    step0 = d["numpy_exact"]["teacher_forced_steps"][0]
    top1, margin = step0["top5"][0][0], step0["margin"]
else:  # F32 model: llama.cpp's logits are exact to 1.2e-5
    m = max(abs(x - y) for x, y in zip(ours, llama))
    say(m <= 1e-3, "max |ours - llama.cpp| %.3g <= 1e-3" % m)
    top1, margin = d["greedy"]["steps"][0]["top5"][0][0], d["greedy"]["steps"][0]["margin"]
ids = [int(x) for x in open(ids_path).read().split()]
say(len(ids) == 32, "-n 32 gave %d ids" % len(ids))
argmax = max(range(len(ours)), key=lambda i: (ours[i], -i))
say(ids[:1] == [argmax], "first id %s is the argmax %d of the written logits" % (ids[:1], argmax))
if margin > 0.01:
    say(ids[:1] == [top1], "first id %s = exact top-1 %d (margin %.3g)" % (ids[:1], top1, margin))
else:
    print("ok - %s: exact margin %.3g too small to check the first id" % (name, margin))
qids = [int(x) for x in open(qids_path).read().split()]
g0 = d["greedy"]["tokens"][0]
if d["greedy"]["steps"][0]["margin"] > 0.01:
    say(qids[:1] == [g0], "--quant-act first id %s = llama.cpp's greedy %d" % (qids[:1], g0))
EOF

# 1. references: logits and first tokens, --float-act and --quant-act
n_pairs=0
for json in "$REF"/*/p*.json; do
    model=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"])' "$json")
    arch=$("$DS_BIN" inspect "$MODELS/$model" | awk '$1 == "general.architecture" {print $3}')
    case "$arch" in '"llama"' | '"qwen2"') ;; *) echo "# $model: $arch not generated here"; continue ;; esac
    ids=$(python3 -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["prompt_tokens"])))' "$json")
    if ! "$DS_BIN" generate -m "$MODELS/$model" --prompt-ids "$ids" -n 32 --temp 0 --ids \
            --kv-type f32 --float-act --logits-out "$TMP/logits" >"$TMP/ids" 2>"$TMP/err"; then
        fail "$json: generate --float-act: $(cat "$TMP/err")"; continue
    fi
    if ! "$DS_BIN" generate -m "$MODELS/$model" --prompt-ids "$ids" -n 1 --temp 0 --ids \
            --kv-type f32 --quant-act >"$TMP/qids" 2>"$TMP/err"; then
        fail "$json: generate --quant-act: $(cat "$TMP/err")"; continue
    fi
    python3 "$TMP/compare.py" "$json" "$TMP/logits" "$TMP/ids" "$TMP/qids" >"$TMP/cmp"
    cat "$TMP/cmp"
    PASSES=$((PASSES + $(grep -c '^ok' "$TMP/cmp" || true)))
    FAILS=$((FAILS + $(grep -c '^FAIL' "$TMP/cmp" || true)))
    n_pairs=$((n_pairs + 1))
done
if [ "$n_pairs" -ge 4 ]; then ok "$n_pairs reference pairs checked"; else fail "only $n_pairs reference pairs"; fi

# 2. -p TEXT tokenizes as the reference did: same logits as --prompt-ids
M=$MODELS/tiny-qwen2-Q8_0.gguf
J=$REF/tiny-qwen2-Q8_0/p2_zh.json
ids=$(python3 -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["prompt_tokens"])))' "$J")
"$DS_BIN" generate -m "$M" --prompt-ids "$ids" -n 4 --temp 0 --ids --logits-out "$TMP/a" >"$TMP/ida" 2>/dev/null
"$DS_BIN" generate -m "$M" -p "$(cat "$REF/prompts/p2_zh.txt")" -n 4 --temp 0 --ids \
    --logits-out "$TMP/b" >"$TMP/idb" 2>"$TMP/err"
if cmp -s "$TMP/a" "$TMP/b" && cmp -s "$TMP/ida" "$TMP/idb"; then ok "-p text = --prompt-ids ($(cat "$TMP/idb"))"
else fail "-p text differs from --prompt-ids: $(cat "$TMP/ida") vs $(cat "$TMP/idb")"; fi
# --mmap (the file mapped) computes what the default (the file read into memory) does
"$DS_BIN" generate -m "$M" --mmap --prompt-ids "$ids" -n 4 --temp 0 --ids --logits-out "$TMP/c" \
    >"$TMP/idc" 2>"$TMP/err"
if cmp -s "$TMP/a" "$TMP/c" && cmp -s "$TMP/ida" "$TMP/idc"; then ok "--mmap = read into memory"
else fail "--mmap differs: $(cat "$TMP/ida") vs $(cat "$TMP/idc") ($(cat "$TMP/err"))"; fi
# a file larger than the available memory (sparse, 1 TiB) is mapped instead, with a warning
cp "$M" "$TMP/big.gguf" && truncate -s 1T "$TMP/big.gguf"
"$DS_BIN" generate -m "$TMP/big.gguf" --prompt-ids "$ids" -n 4 --temp 0 --ids >"$TMP/idd" 2>"$TMP/err"
if cmp -s "$TMP/ida" "$TMP/idd" && grep -q "available memory.*mapping it instead" "$TMP/err"; then
    ok "a model larger than memory is mapped, with a warning"
else fail "1 TiB sparse model: $(cat "$TMP/idd") ($(cat "$TMP/err"))"; fi
rm -f "$TMP/big.gguf"

# 3. seeded sampling at temperature 0.8: same seed, same text; another seed, other text
run_seed() { "$DS_BIN" generate -m "$M" -p "Once upon a time" -n 12 --temp 0.8 --seed "$1" --ids 2>/dev/null; }
s7a=$(run_seed 7); s7b=$(run_seed 7); s8=$(run_seed 8)
if [ -n "$s7a" ] && [ "$s7a" = "$s7b" ]; then ok "--seed 7 twice: same ids"; else fail "--seed 7: '$s7a' vs '$s7b'"; fi
if [ "$s7a" != "$s8" ]; then ok "--seed 8 differs"; else fail "--seed 7 and 8 gave the same ids"; fi

# 4. --chat: the prompt is the chat template's (as tokenize --chat shows), user text plain
want=$("$DS_BIN" tokenize --chat -m "$M" "Hi<｜Assistant｜>" | wc -w)
"$DS_BIN" generate -m "$M" --chat -p "Hi<｜Assistant｜>" -n 3 --temp 0 --ids >"$TMP/out" 2>"$TMP/err"
got=$(sed -n 's/^generate: prompt \([0-9]*\) tokens.*/\1/p' "$TMP/err")
n_out=$(wc -w <"$TMP/out")
if [ "$got" = "$want" ] && [ "$n_out" -eq 3 ]; then ok "--chat on tiny-qwen2: $got prompt tokens, 3 generated"
else fail "--chat: prompt $got tokens (want $want), $n_out generated ($(cat "$TMP/err"))"; fi
"$DS_BIN" mkmodel --arch qwen2 --shape tiny --type f32 --seed 1 -o "$TMP/demo.gguf" >/dev/null
expect_exit 0 "$DS_BIN" generate -m "$TMP/demo.gguf" --chat --system "Be brief." -p "Hello" -n 8 --temp 0
if [ -s "$TMP/out" ]; then ok "--chat on the demo model printed text"; else fail "demo --chat printed nothing"; fi

# 5. stop strings: the text ends right before the first occurrence
"$DS_BIN" generate -m "$TMP/demo.gguf" -p "Hello, DeepSeek" -n 24 --temp 0 >"$TMP/full" 2>/dev/null
stop=$(python3 -c 'import sys; t=open(sys.argv[1],"rb").read().decode("utf-8","replace"); print(t[6:8].strip() or t[6:8])' "$TMP/full")
"$DS_BIN" generate -m "$TMP/demo.gguf" -p "Hello, DeepSeek" -n 24 --temp 0 --stop "$stop" \
    >"$TMP/cut" 2>"$TMP/err"
if python3 - "$TMP/full" "$TMP/cut" "$stop" <<'EOF'
import sys
full, cut, stop = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read(), sys.argv[3].encode()
i = full.find(stop)
sys.exit(0 if i >= 0 and cut == full[:i] + b"\n" else 1)
EOF
then ok "--stop '$stop' cuts the text before it"; else fail "--stop '$stop': got '$(cat "$TMP/cut")' from '$(cat "$TMP/full")'"; fi
if grep -q "stopped: stop string" "$TMP/err"; then ok "summary names the stop string"; else fail "summary: $(cat "$TMP/err")"; fi

# 6. errors: exit 2 with one line
expect_exit 2 "$DS_BIN" generate -m "$TMP/missing.gguf" -p "x"
expect_exit 2 "$DS_BIN" generate -p "x"
expect_exit 2 "$DS_BIN" generate -m "$M"
expect_exit 2 "$DS_BIN" generate -m "$M" -p "x" --prompt-ids 1
expect_exit 2 "$DS_BIN" generate -m "$M" -p "x" --bogus
expect_exit 2 "$DS_BIN" generate -m "$M" -p "x" --temp 5
expect_exit 2 "$DS_BIN" generate -m "$M" -p "x" --system "s"
expect_exit 2 "$DS_BIN" generate -m "$M" --prompt-ids 1,2,999999
if grep -q "999999" "$TMP/err" && [ "$(wc -l <"$TMP/err")" -eq 1 ]; then ok "bad id named in one line"
else fail "bad id message: $(cat "$TMP/err")"; fi
expect_exit 2 "$DS_BIN" generate -m "$M" -c 16 -p "$(cat "$REF/prompts/p1_en.txt") $(cat "$REF/prompts/p1_en.txt")"
if grep -q "context" "$TMP/err" && [ "$(wc -l <"$TMP/err")" -eq 1 ]; then ok "long prompt: one line"
else fail "long prompt message: $(cat "$TMP/err")"; fi
expect_exit 2 "$DS_BIN" generate -m "$MODELS/tiny-llama-F32.gguf" --chat -p "x"
expect_exit 0 "$DS_BIN" generate --help

# 7. bench: llama-bench's table with pp and tg rows
expect_exit 0 "$DS_BIN" bench -m "$M" -p 16 -n 4 -r 2
if grep -q '^| model ' "$TMP/out" && grep -q '| *pp16 | *[0-9.]* ± [0-9.]* |$' "$TMP/out" &&
   grep -q '| *tg4 | *[0-9.]* ± [0-9.]* |$' "$TMP/out" && grep -q 'CPU (' "$TMP/out"; then
    ok "bench table"; else fail "bench output: $(cat "$TMP/out")"; fi
expect_exit 2 "$DS_BIN" bench -m "$M" -p 0 -n 0
expect_exit 2 "$DS_BIN" bench -m "$M" -r 0
finish
