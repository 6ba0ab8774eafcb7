#!/bin/sh
# fuzz-smoke.sh BUILD_DIR SECONDS: runs each libFuzzer target found in BUILD_DIR for
# SECONDS seconds, starting from a scratch copy of tests/fuzz/corpus/<target> so the
# tracked seed corpus is never modified. Any crash fails the run.
set -eu
build=$1
secs=$2
root=$(cd "$(dirname "$0")/.." && pwd)
status=0
for f in "$build"/fuzz_*; do
    [ -x "$f" ] || continue
    name=$(basename "$f")
    work="$build/fuzz-work/$name"
    rm -rf "$work" && mkdir -p "$work/corpus" "$work/artifacts"
    if [ -d "$root/tests/fuzz/corpus/$name" ]; then
        cp -r "$root/tests/fuzz/corpus/$name/." "$work/corpus/"
    fi
    echo "fuzz-smoke: $name for ${secs}s"
    if ! "$f" -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=0 \
            -artifact_prefix="$work/artifacts/" "$work/corpus" >"$work/log" 2>&1; then
        echo "fuzz-smoke: $name FAILED; last lines of $work/log:"
        tail -n 40 "$work/log"
        status=1
    else
        echo "fuzz-smoke: $name ok ($(grep -c . "$work/log") log lines, no crash)"
    fi
done
exit $status
