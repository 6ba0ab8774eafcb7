# deepseek chat --grpc (src/cli/cli_chat.c over src/client/grpc_client.c): the same
# answers as REST at temperature 0 (unary and streamed), UNAUTHENTICATED not retried,
# RESOURCE_EXHAUSTED / UNAVAILABLE retried after the server's retry-after, the last
# error after 3 tries, interactive mode in a pseudo-terminal, a stopped server.
# Real server with a random gRPC port, tiny model; driven by chat_grpc_test.py
# (python3 stdlib only, helpers from chat_test.py). About 25 s.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"
need_testdata
MODEL="$DS_TESTDATA/models/tiny-qwen2-Q8_0.gguf"
if [ ! -f "$MODEL" ]; then
    echo "skip: $MODEL not found"
    exit 77
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "skip: python3 is needed"
    exit 77
fi
export DS_MODEL="$MODEL" DS_TMP="$TMP"
python3 "$DS_SOURCE_DIR/tests/integration/chat_grpc_test.py"
