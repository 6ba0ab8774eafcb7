# deploy/scale-out/k8s/ checked without a cluster (scaleout_k8s_test.py): the manifests
# parse and agree with each other, with the routes and settings of the code, and with
# a running server's /ready, /health and /metrics.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"
need_testdata
MODEL="$DS_TESTDATA/models/tiny-qwen2-Q8_0.gguf"
[ -f "$MODEL" ] || { echo "skip: $MODEL not found"; exit 77; }
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import requests, yaml' 2>/dev/null; then
    echo "skip: python3 with the requests and yaml modules is needed (python3-requests python3-yaml)"
    exit 77
fi
export DS_MODEL="$MODEL" DS_TMP="$TMP" PYTHONDONTWRITEBYTECODE=1
python3 "$DS_SOURCE_DIR/tests/integration/scaleout_k8s_test.py"
