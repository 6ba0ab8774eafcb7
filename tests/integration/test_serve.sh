# deepseek serve: the real binary on 127.0.0.1 with the tiny qwen2 model, driven by
# serve_test.py (python3 stdlib + requests): shapes, streaming, errors, concurrency,
# disconnects, keys and rate limits, SIGTERM drain.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"
need_testdata
MODEL="$DS_TESTDATA/models/tiny-qwen2-Q8_0.gguf"
if [ ! -f "$MODEL" ]; then
    echo "skip: $MODEL not found"
    exit 77
fi
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import requests' 2>/dev/null; then
    echo "skip: python3 with the requests module is needed"
    exit 77
fi
export DS_MODEL="$MODEL" DS_TMP="$TMP"
python3 "$DS_SOURCE_DIR/tests/integration/serve_test.py"
