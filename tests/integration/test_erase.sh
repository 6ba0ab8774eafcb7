# GDPR erasure of one API key id on the real binary (tiny qwen2 model, a real
# redis-server, --log-prompts): erase_test.py drives REST, gRPC (when python3-grpcio
# is there), `deepseek erase`, `deepseek logs prompts`, the admin endpoint and a
# raw-bytes scan of every file the server wrote.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"
need_testdata
MODEL="$DS_TESTDATA/models/tiny-qwen2-Q8_0.gguf"
if [ ! -f "$MODEL" ]; then
    echo "skip: $MODEL not found"
    exit 77
fi
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "skip: redis-server and redis-cli are needed (apt-get install redis-server)"
    exit 77
fi
# Debian's python3-grpcio may be in /usr/bin/python3 only (the python3 on PATH may be
# pyenv's): prefer an interpreter with requests and grpc; gRPC is left out otherwise.
PY=
DS_GRPC=0
for c in python3 /usr/bin/python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import requests, grpc, grpc_tools.protoc' \
        2>/dev/null; then PY=$c; DS_GRPC=1; break; fi
done
if [ -z "$PY" ]; then
    for c in python3 /usr/bin/python3; do
        if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import requests' 2>/dev/null; then
            PY=$c; break; fi
    done
fi
if [ -z "$PY" ]; then
    echo "skip: python3 with the requests module is needed"
    exit 77
fi
[ "$DS_GRPC" = 1 ] || echo "note: no python3 with grpcio here: the gRPC part is left out"
export DS_MODEL="$MODEL" DS_TMP="$TMP" DS_GRPC
"$PY" "$DS_SOURCE_DIR/tests/integration/erase_test.py"
