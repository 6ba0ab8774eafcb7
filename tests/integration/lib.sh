# Shared helpers for integration tests (sourced). CTest sets DS_BIN, DS_TESTDATA,
# DS_SOURCE_DIR and DS_BUILD_DIR. Exit 77 = skipped (CTest reports it as skipped).
set -eu
: "${DS_BIN:?DS_BIN not set (run through ctest)}"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
FAILS=0
PASSES=0

need_testdata() {
    if [ ! -d "${DS_TESTDATA:-}" ]; then
        echo "skip: shared test data not found (DS_TESTDATA=${DS_TESTDATA:-unset})"
        exit 77
    fi
}
ok() { PASSES=$((PASSES + 1)); echo "ok - $*"; }
fail() { FAILS=$((FAILS + 1)); echo "FAIL - $*"; }
# expect_exit CODE CMD...: runs CMD, checks its exit code.
expect_exit() {
    want=$1; shift
    set +e; "$@" >"$TMP/out" 2>"$TMP/err"; got=$?; set -e
    if [ "$got" -eq "$want" ]; then ok "exit $want: $*"; else
        fail "expected exit $want, got $got: $* ($(head -c 300 "$TMP/err"))"; fi
}
finish() {
    echo "$PASSES passed, $FAILS failed"
    [ "$FAILS" -eq 0 ]
}
