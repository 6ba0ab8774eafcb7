# deepseek serve under load, driven by serve_load_test.py (python3 + requests): 16
# concurrent streams on --parallel 4 --queue 8 (status, SSE framing, equality with each
# prompt alone), the error matrix, slots freed on disconnect within a second (/metrics),
# SIGTERM draining a loaded server, --metrics-vllm-names, no key in any log file.
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
python3 "$DS_SOURCE_DIR/tests/integration/serve_load_test.py"
