# Scale-out on 127.0.0.1: a real redis-server, three `deepseek serve` replicas sharing it
# (and one cache.keys file, through a symlink in each replica's own log dir), and the
# real nginx running deploy/scale-out/nginx.conf (addresses, ports and paths
# substituted by scaleout_test.py, every other line as shipped). scaleout_test.py then
# checks the mixed load, the shared cache, the body limit, gRPC through nginx, the
# kill -9 of replica B mid-load and the drain (SIGTERM, 503s) of replica C. This script owns the processes: the EXIT trap stops
# every one it started.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"
need_testdata
MODEL="$DS_TESTDATA/models/tiny-qwen2-Q8_0.gguf"
[ -f "$MODEL" ] || { echo "skip: $MODEL not found"; exit 77; }
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import requests' 2>/dev/null; then
    echo "skip: python3 with the requests module is needed"
    exit 77
fi
NGINX=$(command -v nginx || true)
[ -n "$NGINX" ] || [ ! -x /usr/sbin/nginx ] || NGINX=/usr/sbin/nginx
[ -n "$NGINX" ] || { echo "skip: nginx is needed (apt-get install nginx-light)"; exit 77; }
command -v redis-server >/dev/null 2>&1 ||
    { echo "skip: redis-server is needed (apt-get install redis-server)"; exit 77; }

PIDS=""
cleanup() {
    # nginx's master stops its workers on TERM; the replicas drain (nothing in flight)
    for p in $PIDS; do kill -TERM "$p" 2>/dev/null || true; done
    for p in $PIDS; do
        i=0
        while kill -0 "$p" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_for FILE TEXT PID: until FILE holds TEXT (0), PID exits or 20 s pass (1)
wait_for() {
    i=0
    until grep -q "$2" "$1" 2>/dev/null; do
        kill -0 "$3" 2>/dev/null || return 1
        i=$((i + 1))
        [ "$i" -lt 200 ] || return 1
        sleep 0.1
    done
}

# ---- redis ----
for try in 1 2 3 4 5; do
    RPORT=$(free_port)
    redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        >"$TMP/redis.out" 2>&1 &
    RPID=$!
    if wait_for "$TMP/redis.out" "Ready to accept" "$RPID"; then PIDS="$PIDS $RPID"; break; fi
    kill "$RPID" 2>/dev/null || true
    RPID=""
done
[ -n "$RPID" ] || { echo "FAIL - redis-server did not start: $(cat "$TMP/redis.out")"; exit 1; }

# ---- replicas: own log dirs, one shared cache.keys ----
mkdir "$TMP/shared"
start_replica() { # $1 = tag; sets R_PID R_PORT R_GPORT
    mkdir -p "$TMP/logs-$1"
    ln -sf "$TMP/shared/cache.keys" "$TMP/logs-$1/cache.keys"
    for try in 1 2 3 4 5; do
        R_PORT=$(free_port)
        R_GPORT=$(free_port)
        "$DS_BIN" serve --config= -m "$MODEL" --host 127.0.0.1 --port "$R_PORT" \
            --grpc-port "$R_GPORT" --log-dir "$TMP/logs-$1" --threads 1 --parallel 2 \
            --ctx-size 1024 --cache-size 8M --cache-url "redis://127.0.0.1:$RPORT/0" \
            >"$TMP/$1.out" 2>&1 &
        R_PID=$!
        if wait_for "$TMP/$1.out" "Server ready" "$R_PID"; then PIDS="$PIDS $R_PID"; return 0; fi
        kill "$R_PID" 2>/dev/null || true
    done
    echo "FAIL - replica $1 did not start: $(cat "$TMP/$1.out")"
    exit 1
}
start_replica a
A_PID=$R_PID A_PORT=$R_PORT A_GPORT=$R_GPORT
start_replica b
B_PID=$R_PID B_PORT=$R_PORT B_GPORT=$R_GPORT
start_replica c
C_PID=$R_PID C_PORT=$R_PORT C_GPORT=$R_GPORT
[ -L "$TMP/logs-a/cache.keys" ] && [ -f "$TMP/shared/cache.keys" ] &&
    ok "both replicas opened the shared cache.keys through their symlinks" ||
    fail "the shared cache.keys was not created through the symlinks"

# ---- nginx ----
N="$TMP/nginx"
mkdir "$N"
for try in 1 2 3 4 5; do
    NPORT=$(free_port)
    NGPORT=$(free_port)
    python3 "$DS_SOURCE_DIR/tests/integration/scaleout_test.py" nginx-conf \
        "$DS_SOURCE_DIR/deploy/scale-out/nginx.conf" "$N" "$NPORT" "$NGPORT" \
        "127.0.0.1:$A_PORT,127.0.0.1:$B_PORT,127.0.0.1:$C_PORT" \
        "127.0.0.1:$A_GPORT,127.0.0.1:$B_GPORT,127.0.0.1:$C_GPORT" \
        >"$N/nginx.conf" || { echo "FAIL - could not derive the nginx configuration"; exit 1; }
    set +e
    "$NGINX" -t -p "$N/" -c "$N/nginx.conf" -e "$N/error.log" -g "daemon off; pid $N/nginx.pid;" \
        >"$N/t.out" 2>&1
    rc=$?
    set -e
    [ "$rc" -eq 0 ] || { echo "FAIL - nginx -t: $(cat "$N/t.out" "$N/error.log" 2>/dev/null)"; exit 1; }
    "$NGINX" -p "$N/" -c "$N/nginx.conf" -e "$N/error.log" -g "daemon off; pid $N/nginx.pid;" \
        >"$N/nginx.out" 2>&1 &
    NPID=$!
    i=0
    until python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$NPORT/ready', timeout=1)" 2>/dev/null; do
        kill -0 "$NPID" 2>/dev/null || break
        i=$((i + 1))
        [ "$i" -lt 100 ] || break
        sleep 0.1
    done
    if kill -0 "$NPID" 2>/dev/null; then PIDS="$NPID $PIDS"; break; fi
    NPID="" # a port taken between free_port and bind: try others
done
[ -n "$NPID" ] || { echo "FAIL - nginx did not start: $(cat "$N/nginx.out" "$N/error.log")"; exit 1; }
ok "nginx -t accepts the derived deploy/scale-out/nginx.conf and nginx serves /ready"

export DS_LB="http://127.0.0.1:$NPORT" DS_LB_GRPC="127.0.0.1:$NGPORT"
export DS_A="http://127.0.0.1:$A_PORT" DS_B="http://127.0.0.1:$B_PORT" DS_B_PID="$B_PID"
export DS_C="http://127.0.0.1:$C_PORT" DS_C_PID="$C_PID"
export DS_A_LOG="$TMP/logs-a" DS_B_LOG="$TMP/logs-b" DS_C_LOG="$TMP/logs-c"
export DS_NGINX_LOG="$N/access.log"
export DS_CONF="$DS_SOURCE_DIR/deploy/scale-out/nginx.conf" DS_REDIS_PORT="$RPORT"
# in the background: a shell runs its traps only once a foreground child has exited,
# while `wait` returns at once on a signal
python3 "$DS_SOURCE_DIR/tests/integration/scaleout_test.py" run &
PYPID=$!
PIDS="$PYPID $PIDS"
set +e
wait "$PYPID"
rc=$?
set -e
[ "$rc" -eq 0 ] && ok "scaleout_test.py" || fail "scaleout_test.py (exit $rc)"
finish
