# `deepseek wipe --stop-server` against a real `deepseek serve` holding a copy of a tiny
# model (held open): plain wipe refuses naming the server; --dry-run says what it would
# stop and stops nothing; another holder (sleep) makes it refuse and leave both
# processes running; then it stops the server with SIGTERM (its log shows the drain),
# wipes, and records server.stop in the audit log. A server that ignores SIGTERM
# (SIGSTOPped) is SIGKILLed only after drain-timeout + margin. A stale pid file (dead
# pid, or a pid that is not deepseek serve) is reported and never signalled. Ctrl-C
# (here SIGTERM) during the wait ends with exit 130 and an "interrupted" record. The
# systemd path (no pid file, MainPID of deepseek.service, `systemctl stop`) runs with a
# stand-in `systemctl` script on PATH, since test machines have no systemd: it checks
# what wipe asks systemctl and that it waits for the process to be gone.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"
need_testdata
SRC="$DS_TESTDATA/models/tiny-llama-Q4_K_M.gguf"
[ -f "$SRC" ] || { echo "skip: $SRC not found"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "skip: python3 is needed (free port)"; exit 77; }
fs=$(stat -f -c %T "$TMP")
case "$fs" in
ext2/ext3|xfs) ;;
*) echo "skip: $TMP is on $fs; wipe needs ext4 or xfs (set TMPDIR)"; exit 77 ;;
esac

LOGS="$TMP/logs"; SLOGS="$TMP/slogs"; PIDF="$TMP/run/serve.pid"
mkdir -p "$LOGS" "$SLOGS" "$TMP/run"
SPID=""; HOLDER=""
cleanup() {
    for p in $SPID $HOLDER; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
W() { "$DS_BIN" wipe --config= --log-dir "$LOGS" --pid-file "$PIDF" --drain-timeout 2 "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# gone PID: true when PID has exited (no /proc entry, or a zombie not reaped yet)
gone() { st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null || true); [ -z "$st" ] || [ "$st" = Z ]; }

# start_server MODEL: a server on a free port with the pid file; sets SPID.
start_server() {
    for _try in 1 2 3 4 5; do
        : >"$SLOGS/deepseek.log"
        "$DS_BIN" serve --config= -m "$1" --host 127.0.0.1 --port "$(free_port)" --grpc-port 0 \
            --cache-size 0 --threads 1 --log-dir "$SLOGS" --pid-file "$PIDF" \
            --drain-timeout 2 >"$TMP/serve.out" 2>&1 &
        SPID=$!
        i=0
        while [ $i -lt 200 ]; do
            if grep -q "Server ready" "$SLOGS/deepseek.log" "$TMP/serve.out" 2>/dev/null &&
               [ "$(cat "$PIDF" 2>/dev/null)" = "$SPID" ]; then return 0; fi
            gone "$SPID" && break # the port was taken meanwhile: try another
            i=$((i + 1)); sleep 0.05
        done
        kill -9 "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true
    done
    echo "FAIL - server did not start: $(cat "$TMP/serve.out" "$SLOGS/deepseek.log")"; exit 1
}

M="$TMP/model.gguf"
cp "$SRC" "$M"
sum0=$(sha256sum <"$M")
start_server "$M"
# the server reads the model into memory and keeps it open (--mmap would map it)
for fd in /proc/"$SPID"/fd/*; do [ "$(readlink "$fd")" = "$M" ] && held=$fd; done
[ -n "${held:-}" ] && ok "the server holds the model copy open ($held)" ||
    fail "server does not hold $M open"

# ---- without --stop-server: refused, the server named ----
expect_exit 3 W "$M"
grep -q "$SPID (deepseek" "$TMP/err" && ok "refusal names the server pid $SPID" ||
    fail "server not named: $(cat "$TMP/err")"

# ---- --dry-run --stop-server: says what it would stop, stops nothing ----
expect_exit 0 W --dry-run --stop-server "$M"
grep -q "would stop deepseek serve pid $SPID (SIGTERM" "$TMP/out" && ok "dry run names the stop" ||
    fail "dry run: $(cat "$TMP/out" "$TMP/err")"
! gone "$SPID" && ok "dry run: server still running" || fail "dry run stopped the server"

# ---- another process holds it too: refused, nobody signalled ----
sleep 1000 <"$M" &
HOLDER=$!
sleep 0.2
expect_exit 3 W --stop-server "$M"
grep -q "$HOLDER (sleep" "$TMP/err" && grep -q "pid $SPID left running" "$TMP/err" &&
    ok "other holder named, server left running" || fail "other holder: $(cat "$TMP/err")"
! gone "$SPID" && ok "server not stopped for a wipe that could not happen" || fail "server was stopped"
! gone "$HOLDER" && ok "the other holder was not killed" || fail "the other holder was killed"
[ "$(sha256sum <"$M")" = "$sum0" ] && ok "model intact after the refusals" || fail "model changed"
kill "$HOLDER"; wait "$HOLDER" 2>/dev/null || true; HOLDER=""

# ---- --stop-server: SIGTERM, drain, wipe ----
expect_exit 0 W --stop-server "$M"
grep -q "stopped deepseek serve pid $SPID (SIGTERM," "$TMP/out" && ok "stopped with SIGTERM alone" ||
    fail "stop: $(cat "$TMP/out" "$TMP/err")"
gone "$SPID" && ok "server process gone" || fail "server $SPID still runs"
set +e; wait "$SPID"; src=$?; set -e; SPID=""
[ "$src" -eq 0 ] && ok "server exited 0" || fail "server exit $src"
grep -q "draining" "$SLOGS/deepseek.log" && grep -q "server stopped" "$SLOGS/deepseek.log" &&
    ok "server log shows the graceful drain" || fail "server log: $(tail -5 "$SLOGS/deepseek.log")"
[ ! -e "$M" ] && ok "model wiped" || fail "model still there"
[ ! -e "$PIDF" ] && ok "pid file removed by the server" || fail "pid file left"
A="$LOGS/audit.jsonl"
python3 - "$A" <<'PY' && ok "audit: server.stop plan, intent, ok result before the wipe's" || fail "audit: $(cat "$A")"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
stops = [r for r in recs if r["action"] == "server.stop"]
assert [r["phase"] for r in stops] == ["plan", "intent", "result"], stops
res = stops[-1]
assert res["result"] == "ok" and res["intent_seq"] == stops[1]["seq"], res
assert res["details"]["stopped_by"] == "SIGTERM" and res["details"]["pid"] > 0, res
wipe_ok = [r for r in recs if r["action"] == "wipe" and r.get("result") == "ok"]
assert wipe_ok and wipe_ok[-1]["seq"] > res["seq"], wipe_ok
PY
expect_exit 0 "$DS_BIN" audit verify --config= "$A"

# ---- a server that does not drain: SIGKILL after drain-timeout + margin ----
M2="$TMP/model2.gguf"
cp "$SRC" "$M2"
start_server "$M2"
kill -STOP "$SPID"
# interrupted while waiting: exit 130, recorded, nothing wiped
"$DS_BIN" wipe --config= --log-dir "$LOGS" --pid-file "$PIDF" --stop-server --drain-timeout 0 \
    "$M2" >"$TMP/int.out" 2>&1 &
WP=$!
sleep 1
kill -TERM "$WP"
set +e; wait "$WP"; wrc=$?; set -e
[ "$wrc" -eq 130 ] && [ -f "$M2" ] && ! gone "$SPID" && ok "interrupted wait: exit 130, model2 intact" ||
    fail "interrupt: rc $wrc $(cat "$TMP/int.out")"
tail -1 "$A" | grep -q '"action":"server.stop".*"result":"interrupted"' && ok "interruption recorded" ||
    fail "no interrupted record: $(tail -1 "$A")"
t0=$(date +%s)
expect_exit 0 W --stop-server --drain-timeout 0 "$M2"
t1=$(date +%s)
grep -q "(SIGTERM+SIGKILL," "$TMP/out" && ok "escalated to SIGKILL" || fail "escalation: $(cat "$TMP/out" "$TMP/err")"
[ $((t1 - t0)) -ge 9 ] && ok "SIGKILL only after the wait ($((t1 - t0)) s)" || fail "killed after $((t1 - t0)) s"
set +e; wait "$SPID"; src=$?; set -e; SPID=""
[ "$src" -eq 137 ] && ok "server died of SIGKILL" || fail "server exit $src"
[ ! -e "$M2" ] && ok "model2 wiped" || fail "model2 still there"
[ ! -e "$PIDF" ] && ok "stale pid file of the killed server removed" || fail "pid file left"

# ---- stale pid files: never signalled ----
sh -c 'echo $$' >"$PIDF" # a pid that has exited
head -c 100000 /dev/urandom >"$TMP/free.bin"
expect_exit 0 W --stop-server "$TMP/free.bin"
grep -q "stale pid file" "$TMP/err" && ok "dead pid: stale pid file reported, wipe went on" ||
    fail "stale: $(cat "$TMP/err")"
head -c 100000 /dev/urandom >"$TMP/held.bin"
sleep 1000 <"$TMP/held.bin" &
HOLDER=$!
echo "$HOLDER" >"$PIDF" # a live pid that is not deepseek serve, holding the file
sleep 0.2
expect_exit 3 W --stop-server "$TMP/held.bin"
grep -q "pid $HOLDER is .*not deepseek serve; not signalled" "$TMP/err" && ok "foreign pid in the pid file not signalled" ||
    fail "foreign pid: $(cat "$TMP/err")"
! gone "$HOLDER" && [ -f "$TMP/held.bin" ] && ok "that process runs on, file intact" || fail "foreign process killed or file gone"
kill "$HOLDER"; wait "$HOLDER" 2>/dev/null || true; HOLDER=""
rm "$PIDF"

# ---- systemd: no pid file, the unit's MainPID, `systemctl stop` (stand-in script) ----
M3="$TMP/model3.gguf"
cp "$SRC" "$M3"
WPIDF=$PIDF; PIDF="$TMP/run/elsewhere.pid" # the server's own, not the one wipe reads
start_server "$M3"
PIDF=$WPIDF
mkdir -p "$TMP/bin"
cat >"$TMP/bin/systemctl" <<EOF
#!/bin/sh
echo "\$*" >>"$TMP/systemctl.args"
case "\$*" in
"show -p MainPID --value deepseek.service") echo $SPID ;;
"--no-ask-password stop deepseek.service")
    kill -TERM $SPID
    while st=\$(cut -d' ' -f3 /proc/$SPID/stat 2>/dev/null) && [ "\$st" != Z ]; do sleep 0.05; done ;;
*) exit 1 ;;
esac
EOF
chmod +x "$TMP/bin/systemctl"
[ ! -e "$PIDF" ] || fail "the wipe's pid file exists"
PATH="$TMP/bin:$PATH" expect_exit 0 W --stop-server "$M3"
grep -q "stopped deepseek serve pid $SPID (systemctl stop," "$TMP/out" && ok "stopped through systemctl" ||
    fail "systemd: $(cat "$TMP/out" "$TMP/err")"
grep -qx -- "--no-ask-password stop deepseek.service" "$TMP/systemctl.args" && ok "systemctl stop deepseek.service called" ||
    fail "systemctl args: $(cat "$TMP/systemctl.args")"
set +e; wait "$SPID"; src=$?; set -e; SPID=""
[ "$src" -eq 0 ] && [ ! -e "$M3" ] && ok "server drained (exit 0), model3 wiped" || fail "server exit $src / model3"
tail -4 "$A" | grep '"action":"server.stop"' | grep -q '"via":"systemd"' && ok "audit says via systemd" ||
    fail "audit: $(tail -4 "$A")"
finish
