# deepseek chat (src/cli/cli_chat.c over src/client/): one-shot and streamed answers,
# retries on 429/503 honouring Retry-After, the last error after 3 tries, connection
# refused retried, interactive mode in a pseudo-terminal. Real server, tiny model;
# driven by chat_test.py (python3 stdlib only). About 25 s.
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
python3 "$DS_SOURCE_DIR/tests/integration/chat_test.py"
