# deepseek serve with the clients users actually run: the seed's REST and tenacity retry
# snippets under Debian's python3 (python3-requests, python3-tenacity) and the official
# openai SDK for Node (pinned in node/package.json, installed here with npm ci).
# Driven by serve_sdk_test.py; also checks that no log file holds a key the test used.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"
need_testdata
MODEL="$DS_TESTDATA/models/tiny-qwen2-Q8_0.gguf"
if [ ! -f "$MODEL" ]; then
    echo "skip: $MODEL not found"
    exit 77
fi
# Debian's interpreter on purpose: the must-show is "works with Debian's python3-requests".
PY=/usr/bin/python3
if ! "$PY" -c 'import requests, tenacity' 2>/dev/null; then
    echo "skip: $PY with python3-requests and python3-tenacity is needed (apt-get install python3-requests python3-tenacity)"
    exit 77
fi
NODE_DIR="$DS_SOURCE_DIR/tests/integration/node"
want=$(sed -n 's/^ *"openai": "\(.*\)".*/\1/p' "$NODE_DIR/package.json")
have_sdk() {
    [ "$(node -p 'require("./node_modules/openai/package.json").version' 2>/dev/null)" = "$want" ]
}
DS_NODE_SKIP=
npm_ci() {
    npm ci --no-audit --no-fund --loglevel=error --fetch-retries=1 --fetch-timeout=30000 \
        >"$TMP/npm.log" 2>&1
}
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    DS_NODE_SKIP="node and npm are not installed"
elif ! (cd "$NODE_DIR" && { have_sdk || npm_ci; } && have_sdk); then
    DS_NODE_SKIP="npm ci could not install openai@$want: $(tail -n 3 "$TMP/npm.log" 2>/dev/null | tr '\n' ' ')"
fi
export DS_MODEL="$MODEL" DS_TMP="$TMP" DS_NODE_DIR="$NODE_DIR" DS_NODE_SKIP
"$PY" "$DS_SOURCE_DIR/tests/integration/serve_sdk_test.py"
if [ -n "$DS_NODE_SKIP" ]; then  # the Python part passed; report the rest as skipped
    echo "skip: the openai SDK for Node part did not run: $DS_NODE_SKIP"
    exit 77
fi
