# deepseek serve's gRPC API: the real binary on 127.0.0.1 with the tiny qwen2 model,
# driven by grpc_test.py with Debian's python3-grpcio and stubs generated at test
# time by grpc_tools.protoc from proto/: the seed's client, streaming, health, keys,
# status codes, deadline, cancel, oversized messages, concurrency with REST, drain.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"
need_testdata
MODEL="$DS_TESTDATA/models/tiny-qwen2-Q8_0.gguf"
if [ ! -f "$MODEL" ]; then
    echo "skip: $MODEL not found"
    exit 77
fi
# Debian's python3-grpcio: the python3 on PATH may be another interpreter (pyenv).
PY=
for c in python3 /usr/bin/python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import grpc, grpc_tools.protoc' 2>/dev/null
    then PY=$c; break; fi
done
if [ -z "$PY" ]; then
    echo "skip: python3-grpcio and python3-grpc-tools are needed"
    exit 77
fi
export DS_MODEL="$MODEL" DS_TMP="$TMP"
"$PY" "$DS_SOURCE_DIR/tests/integration/grpc_test.py"
