#!/bin/sh
# The `make run` demo: shows what deepseek-local does with the synthetic demo model.
# usage: sh scripts/run-demo.sh BUILD/deepseek models/demo-tiny.gguf
set -eu

if [ $# -ne 2 ]; then
    echo "usage: sh scripts/run-demo.sh PATH/TO/deepseek DEMO.gguf" >&2
    exit 2
fi
BIN=$1
DEMO=$2
if [ ! -x "$BIN" ]; then
    echo "run-demo: $BIN is not an executable (run 'make' first)" >&2
    exit 2
fi
if [ ! -f "$DEMO" ]; then
    echo "run-demo: $DEMO not found (make it with 'make demo')" >&2
    exit 2
fi

cat <<EOF
================================================================================
 deepseek-local demo

 $DEMO is a SYNTHETIC model: the shape of a small qwen2
 (DeepSeek-R1-Distill-Qwen layout, scaled down) with RANDOM weights and a tiny
 built-in byte-level vocabulary. It exercises the whole program, but anything it
 generates is gibberish. It was made with:
   $BIN mkmodel --arch qwen2 --shape tiny --type f32 --seed 1 -o $DEMO

 To use a real model, download a GGUF file (for example a quantized
 DeepSeek-R1-Distill-Qwen-1.5B) and point the same commands at it:
   $BIN inspect /path/to/model.gguf
   $BIN tokenize -m /path/to/model.gguf "Hello, DeepSeek"
   $BIN generate -m /path/to/model.gguf --chat -p "Why is the sky blue?"
 Every command: docs/USAGE.md. Benchmark-sized synthetic models: docs/MODELS.md.
================================================================================

EOF

printf '$ %s inspect %s   (first 30 lines)\n' "$BIN" "$DEMO"
# The pipe into head may close early; inspect's status is checked on its own.
"$BIN" inspect "$DEMO" >"${TMPDIR:-/tmp}/run-demo.$$" 2>&1 || {
    cat "${TMPDIR:-/tmp}/run-demo.$$"
    rm -f "${TMPDIR:-/tmp}/run-demo.$$"
    echo "run-demo: inspect failed" >&2
    exit 1
}
head -n 30 "${TMPDIR:-/tmp}/run-demo.$$"
echo "  ..."
tail -n 2 "${TMPDIR:-/tmp}/run-demo.$$"
rm -f "${TMPDIR:-/tmp}/run-demo.$$"
echo

printf '$ %s tokenize -m %s "Hello, DeepSeek"\n' "$BIN" "$DEMO"
"$BIN" tokenize -m "$DEMO" "Hello, DeepSeek"
echo
echo "The demo model's tokens are single bytes plus a few merges (\"Ġthe\", \"ing\"),"
echo "so most characters come out as one token each."
echo

printf '$ %s generate -m %s -p "Hello, DeepSeek" -n 24 --temp 0\n' "$BIN" "$DEMO"
echo "(The weights are RANDOM, so the text below is gibberish: this shows the engine"
echo " running prefill and greedy decoding end to end, not a language model.)"
"$BIN" generate -m "$DEMO" -p "Hello, DeepSeek" -n 24 --temp 0
echo
echo "With a real model: $BIN generate -m /path/to/real.gguf --chat -p \"...\""
echo

# Last, the server itself, in the foreground until Ctrl-C. DEMO_NO_SERVE=1 skips it
# (the run-demo check in the tests uses that).
if [ "${DEMO_NO_SERVE:-0}" = 1 ]; then
    exit 0
fi
cat <<EOF2
$ $BIN serve -m $DEMO
The REST API listens on http://127.0.0.1:7860 and gRPC on 127.0.0.1:50051; logs go to
/var/log/deepseek, or ./logs when that is not writable. Try, from another terminal:
  curl -s http://127.0.0.1:7860/v1/chat/completions -d '{"prompt": "Hello", "max_tokens": 20}'
Stop it with Ctrl-C. With a real model: $BIN serve -m /path/to/real.gguf (docs/API.md).

EOF2
exec "$BIN" serve -m "$DEMO"
