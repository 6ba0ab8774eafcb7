#!/bin/sh
# make bench: the C micro-benchmarks on this machine, with the figures on stdout.
# usage: sh bench/run.sh BUILD_DIR. Model-level and server benchmarks need a real-shape
# model (see docs/PERFORMANCE.md for the exact commands: deepseek bench, serve_bench.py,
# grpc_bench.py, bench_cache.py).
set -eu
build=$1
root=$(cd "$(dirname "$0")/.." && pwd)
data=${DS_TESTDATA:-$root/../shared/testdata}

echo "== kernels (one thread, 8960x1536) =="
"$build/bench_kernels"
echo "== sampler (152k vocabulary) =="
"$build/bench_sampler"
if [ -d "$data/tokenizer" ]; then
    echo "== tokenizer (10 MB mixed text) =="
    "$build/bench_tokenize" "$data"
    echo "== forward (tiny-qwen2-Q4_K_M, 2 threads) =="
    "$build/bench_forward" "$data/models/tiny-qwen2-Q4_K_M.gguf" -t 2 -p 128 -n 32 -r 3
else
    echo "skip: tokenizer and forward benchmarks need the shared test data ($data)"
fi
