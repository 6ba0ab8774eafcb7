# The prefix (KV) cache and the response cache on the real binary with the tiny qwen2
# model and a real redis-server (started and restarted by cache_test.py).
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
if ! command -v redis-server >/dev/null 2>&1; then
    echo "skip: redis-server is needed (apt-get install redis-server)"
    exit 77
fi
export DS_MODEL="$MODEL" DS_TMP="$TMP"
python3 "$DS_SOURCE_DIR/tests/integration/cache_test.py"
