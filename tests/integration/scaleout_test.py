#!/usr/bin/env python3
"""Scale-out checks, run by test_scaleout.sh (which starts and stops every process).

  scaleout_test.py nginx-conf SRC PREFIX PORT GRPC_PORT REST_ADDRS GRPC_ADDRS
      prints deploy/scale-out/nginx.conf with the example replica addresses replaced by
      REST_ADDRS / GRPC_ADDRS (comma-separated host:port), the listen ports by PORT and
      GRPC_PORT, and the paths moved under PREFIX; every other line as shipped. Each
      substitution must match, so the test breaks when the shipped file changes shape.
  scaleout_test.py run
      the checks against the running set-up (environment from test_scaleout.sh).
Prints "ok - ..." / "FAIL - ..." lines; exits 1 if anything failed."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import requests

from dstest import FAILS, check


# ---------------------------------------------------------------- nginx.conf

def sub_once(text, pattern, repl):
    new, n = re.subn(pattern, repl, text, flags=re.M)
    if n != 1:
        raise SystemExit("nginx.conf: %r matched %d times, expected once" % (pattern, n))
    return new


def replace_servers(text, upstream, port, addrs):
    """The server lines of `upstream` (example addresses on `port`) become one line per
    address of addrs, with the parameters of the first example line."""
    m = re.search(r"^(\s*)upstream %s \{\n(.*?)^\s*\}" % upstream, text, flags=re.M | re.S)
    if not m:
        raise SystemExit("nginx.conf: no upstream %s" % upstream)
    body = m.group(2)
    lines = re.findall(r"^(\s*)server \S+:%d( [^;]*)?;\n" % port, body, flags=re.M)
    if not lines:
        raise SystemExit("nginx.conf: upstream %s has no server on port %d" % (upstream, port))
    indent, params = lines[0]
    new = "".join("%sserver %s%s;\n" % (indent, a, params) for a in addrs)
    body = re.sub(r"^\s*server \S+:%d( [^;]*)?;\n" % port, "", body, flags=re.M)
    start = m.start(2)
    return text[:start] + new + body + text[m.end(2):]


def nginx_conf(src, prefix, port, gport, rest, grpc):
    text = open(src).read()
    # user/pid come from the command line (-g) or not at all: as root the workers
    # run as the invoking user, so they can use files under the test's temp dir
    user = "user %s;\n" % os.popen("id -un").read().strip() if os.geteuid() == 0 else ""
    text = sub_once(text, r"^user [^;]*;\n", user)
    text = sub_once(text, r"^pid [^;]*;\n", "")
    text = sub_once(text, r"^worker_processes [^;]*;", "worker_processes 2;")
    text = sub_once(text, r"^error_log \S+", "error_log %s/error.log" % prefix)
    text = sub_once(text, r"access_log /\S+", "access_log %s/access.log" % prefix)
    text = sub_once(text, r"listen 80;", "listen 127.0.0.1:%d;" % port)
    text = sub_once(text, r"listen 50051 http2;", "listen 127.0.0.1:%d http2;" % gport)
    temp = "".join("    %s_temp_path %s/tmp-%s;\n" % (t, prefix, t)
                   for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = sub_once(text, r"^http \{\n", "http {\n" + temp)
    text = replace_servers(text, "deepseek_rest", 7860, rest.split(","))
    text = replace_servers(text, "deepseek_grpc", 50051, grpc.split(","))
    return text


# ---------------------------------------------------------------- clients

ENV = os.environ
LB = ENV.get("DS_LB", "")
BODY_CHAT = lambda p, **kw: dict({"messages": [{"role": "user", "content": p}],  # noqa: E731
                                  "max_tokens": 8, "temperature": 0.8}, **kw)


def once(base, kind, prompt):
    """One request. (status, complete, text): complete is False for a stream that
    ended before `data: [DONE]`."""
    if kind == "completions":
        r = requests.post(base + "/v1/completions", timeout=60,
                          json={"prompt": prompt, "max_tokens": 8, "temperature": 0.8})
        ok = r.status_code == 200 and r.json()["choices"][0]["finish_reason"] in ("stop", "length")
        return r.status_code, ok, r.text
    stream = kind == "stream"
    r = requests.post(base + "/v1/chat/completions", json=BODY_CHAT(prompt, stream=stream),
                      timeout=60, stream=stream)
    if not stream or r.status_code != 200:
        ok = r.status_code == 200 and r.json()["choices"][0]["finish_reason"] in ("stop", "length")
        return r.status_code, ok, r.text
    done, finish = False, None
    for raw in r.iter_lines():
        line = raw.decode()
        if line == "data: [DONE]":
            done = True
        elif line.startswith("data: "):
            try:
                chunk = json.loads(line[6:])
            except ValueError:  # the last line of a stream cut mid-chunk
                return 200, False, "a chunk cut short: " + line[:80]
            for c in chunk.get("choices", []):
                finish = c.get("finish_reason") or finish
    return 200, done and finish in ("stop", "length"), ""


RETRYABLE = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
             requests.Timeout)


def call(base, kind, prompt, attempts=3):
    """The seed's client policy (tenacity: 3 attempts, exponential back-off) with the
    waits scaled from 4..10 s down to 0.2..1 s to keep the test short: retry on a
    connection error, a stream cut before [DONE], and 502/503/504. Returns (ok, tries,
    last error)."""
    err = ""
    for attempt in range(1, attempts + 1):
        try:
            status, ok, text = once(base, kind, prompt)
            if ok:
                return True, attempt, ""
            err = "status %d %s" % (status, text[:200])
            # a 200 that is not ok is a stream cut before [DONE] (retry) or a wrong
            # answer (no retry); 4xx and other 5xx are never retried
            if not (status in (502, 503, 504) or (status == 200 and kind == "stream")):
                return False, attempt, err
        except RETRYABLE as e:
            err = "%s: %s" % (type(e).__name__, str(e)[:200])
        except Exception as e:  # noqa: BLE001  (recorded as a failure, never lost)
            return False, attempt, "%s: %s" % (type(e).__name__, str(e)[:200])
        time.sleep(min(1.0, 0.2 * 2 ** (attempt - 1)))
    return False, attempts, err


KINDS = ("chat", "stream", "completions")


def access_lines(log_dir):
    path = os.path.join(log_dir, "access.log")
    if not os.path.exists(path):
        return []
    return [l for l in open(path).read().splitlines()
            if "route=/v1/" in l and "method=POST" in l]


def settle(count, want, timeout=3.0):
    """Polls count() until want(value) or timeout (access lines are written as a
    request is finalized, which may be just after the client has its answer)."""
    deadline = time.time() + timeout
    v = count()
    while not want(v) and time.time() < deadline:
        time.sleep(0.05)
        v = count()
    return v


def nginx_lines():
    return open(ENV["DS_NGINX_LOG"]).read().splitlines()


def run_threads(n, work):
    ts = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


# ---------------------------------------------------------------- checks

LOGS = ("DS_A_LOG", "DS_B_LOG", "DS_C_LOG")


def mixed_load():
    before = [len(access_lines(ENV[k])) for k in LOGS]
    results = []

    def work(i):
        for j in range(5):
            kind = KINDS[(i + j) % 3]
            results.append((kind,) + call(LB, kind, "Mixed load %d.%d: tell me a story." % (i, j)))
    t0 = time.time()
    run_threads(6, work)
    bad = [r for r in results if not r[1]]
    check(len(results) == 30 and not bad,
          "mixed load through nginx (6 threads: chat, streaming chat, completions): "
          "%d/30 succeeded in %.1f s%s" % (len(results) - len(bad), time.time() - t0,
                                           (": " + str(bad[:3])) if bad else ""))
    check(all(r[2] == 1 for r in results), "no request of the mixed load needed a retry")
    served = lambda: [len(access_lines(ENV[k])) - b for k, b in zip(LOGS, before)]  # noqa
    n = settle(served, lambda v: sum(v) >= 30)
    check(min(n) > 0 and sum(n) == 30,
          "every replica served part of the load (their access logs: A %d, B %d, C %d)" %
          tuple(n))


def incremental_stream():
    """The answer must reach the client token by token through nginx, not at the end.
    (This nginx forwards the chunks early even with proxy_buffering on, so the check
    does not prove the directive; proxy_buffering off keeps chunks out of nginx's
    buffers and temporary files whatever the client's speed.)"""
    conf = open(ENV["DS_CONF"]).read()
    check(re.search(r"^\s*proxy_buffering off;", conf, flags=re.M) and
          re.search(r"^\s*proxy_http_version 1\.1;", conf, flags=re.M),
          "nginx.conf: proxy_buffering off, proxy_http_version 1.1")
    t0 = time.time()
    r = requests.post(LB + "/v1/chat/completions", stream=True, timeout=60,
                      json=BODY_CHAT("Count slowly.", max_tokens=48, stream=True))
    first, n = None, 0
    for raw in r.iter_lines():
        if raw.startswith(b"data: {"):
            n += 1
            if first is None:
                first = time.time() - t0
    total = time.time() - t0
    check(r.status_code == 200 and n > 40 and first is not None and first < 0.5 * total,
          "a stream arrives incrementally through nginx: first of %d chunks after %.0f ms "
          "of %.0f ms" % (n, (first or 0) * 1e3, total * 1e3))


def shared_cache():
    prompt = "Which replica cached this? %d" % time.time_ns()
    body = BODY_CHAT(prompt, temperature=0)
    url = "/v1/chat/completions"
    ra = requests.post(ENV["DS_A"] + url, json=body, timeout=60)
    rb = requests.post(ENV["DS_B"] + url, json=body, timeout=60)
    rl = requests.post(LB + url, json=body, timeout=60)
    text = lambda r: json.dumps(r.json()["choices"])  # noqa: E731
    check(ra.status_code == 200 and ra.headers.get("X-Cache") == "MISS",
          "temperature 0 on replica A: X-Cache %s" % ra.headers.get("X-Cache"))
    check(rb.status_code == 200 and rb.headers.get("X-Cache") == "HIT" and text(rb) == text(ra),
          "the same request on replica B: X-Cache %s, same answer (shared Redis + cache.keys)"
          % rb.headers.get("X-Cache"))
    check(rl.status_code == 200 and rl.headers.get("X-Cache") == "HIT" and text(rl) == text(ra),
          "the same request through nginx: X-Cache %s (header passed through)"
          % rl.headers.get("X-Cache"))


def body_limit():
    conf = open(ENV["DS_CONF"]).read()
    sizes = set(re.findall(r"client_max_body_size (\d+)([km]?);", conf))
    mult = {"": 1, "k": 1024, "m": 1024 * 1024}
    limits = {int(n) * mult[u] for n, u in sizes}
    dump = subprocess.run([ENV["DS_BIN"], "config", "--config="], capture_output=True,
                          text=True).stdout
    m = re.search(r"^max-body = (\d+)$", dump, flags=re.M)
    max_body = int(m.group(1)) if m else -1
    check(limits == {max_body}, "client_max_body_size (%s) = the server's max-body (%d)"
          % (sorted(limits), max_body))
    def body(n):  # a JSON body of exactly n bytes
        head = b'{"model":"no-such-model","messages":[{"role":"user","content":"x"}],"pad":"'
        return head + b"a" * (n - len(head) - 2) + b'"}'
    r = requests.post(LB + "/v1/chat/completions", data=body(max_body + 1), timeout=30,
                      headers={"Content-Type": "application/json"})
    j = r.json() if r.headers.get("Content-Type", "").startswith("application/json") else {}
    check(r.status_code == 413 and j.get("error", {}).get("code") == "request_too_large",
          "max-body + 1 bytes: nginx answers 413 request_too_large as JSON (%d)" % r.status_code)
    mark = len(nginx_lines())
    r = requests.post(LB + "/v1/chat/completions", data=body(max_body), timeout=30,
                      headers={"Content-Type": "application/json"})
    # nginx may write the 413 request's log line after its client has the answer, so
    # look for this request's line among all the new ones: the one sent upstream
    def upstream_lines():
        return [l for l in nginx_lines()[mark:] if 'upstream="127.0.0.1:' in l]
    settle(upstream_lines, lambda v: len(v) > 0)
    check(r.status_code != 413 and len(upstream_lines()) == 1,
          "max-body bytes: nginx passes it to a replica, which answers %d %s" %
          (r.status_code, r.text[:80]))


def grpc_call(method, msg):
    """A unary gRPC call through nginx with curl (HTTP/2 prior knowledge): grpc-status
    and the response message bytes."""
    frame = b"\0" + len(msg).to_bytes(4, "big") + msg
    p = subprocess.run(["curl", "-sS", "-v", "--http2-prior-knowledge", "--max-time", "30",
                        "-H", "content-type: application/grpc", "-H", "te: trailers",
                        "--data-binary", "@-", "http://%s%s" % (ENV["DS_LB_GRPC"], method)],
                       input=frame, capture_output=True)
    m = re.search(rb"^< grpc-status: (\d+)", p.stderr, flags=re.M)
    return (int(m.group(1)) if m else -1), p.stdout[5:]


def grpc_lines():
    n = 0
    for k in LOGS:
        path = os.path.join(ENV[k], "access.log")
        n += sum(1 for l in open(path).read().splitlines()
                 if "proto=grpc" in l and "GenerateText" in l)
    return n


def grpc_through_nginx():
    have = subprocess.run(["sh", "-c", "curl -V 2>/dev/null | grep -q HTTP2"]).returncode == 0
    if not have:
        print("skip - gRPC through nginx: needs curl with HTTP2 (apt-get install curl)")
        return
    st, resp = grpc_call("/grpc.health.v1.Health/Check", b"")
    check(st == 0 and resp == b"\x08\x01", "gRPC through nginx: Health/Check says SERVING")
    before = grpc_lines()
    prompt = b"Hello over gRPC"
    msg = b"\x0a" + bytes([len(prompt)]) + prompt + b"\x18\x04"  # prompt=1, max_tokens=3
    results = [grpc_call("/DeepSeekService/GenerateText", msg) for _ in range(4)]
    after = settle(grpc_lines, lambda v: v >= before + 4)
    check(all(s == 0 and len(r) > 0 for s, r in results) and after - before == 4,
          "gRPC through nginx: 4 GenerateText calls answered (grpc-status %s), the replicas "
          "logged %d" % ([s for s, _ in results], after - before))


def metric(base, name):
    try:
        text = requests.get(base + "/metrics", timeout=2).text
    except requests.RequestException:
        return None
    m = re.search(r"^%s\{[^}]*\} (\S+)$" % re.escape(name), text, flags=re.M)
    return float(m.group(1)) if m else None


def kill_mid_load():
    stop = threading.Event()
    results = []  # (time, kind, ok, tries, err)

    def work(i):
        j = 0
        while not stop.is_set():
            kind = KINDS[(i + j) % 3]
            ok, tries, err = call(LB, kind, "Kill load %d.%d: go on." % (i, j))
            results.append((time.time(), kind, ok, tries, err))
            j += 1
    ts = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    time.sleep(1.0)
    # wait until B is busy, so the kill lands on requests in flight
    busy, deadline = 0, time.time() + 5
    while time.time() < deadline and busy < 1:
        busy = (metric(ENV["DS_B"], "deepseek:num_requests_running") or 0) + \
               (metric(ENV["DS_B"], "deepseek:num_requests_waiting") or 0)
    mark = len(nginx_lines())
    t_kill = time.time()
    os.kill(int(ENV["DS_B_PID"]), signal.SIGKILL)
    time.sleep(3.0)
    stop.set()
    for t in ts:
        t.join()
    after = [r for r in results if r[0] > t_kill]
    failed = [r for r in results if not r[2]]
    client_retries = sum(r[3] - 1 for r in results)
    # every request has ended for the client: wait for nginx to log them all
    settle(lambda: len(nginx_lines()) - mark,
           lambda v: v >= sum(r[3] for r in results if r[0] > t_kill))
    lines = nginx_lines()[mark:]
    moved = [l for l in lines if re.search(r'upstream="[^"]*, ', l) and '" 200 ' in l]
    check(busy >= 1, "replica B had %d requests in flight when it was killed (kill -9)" % busy)
    check(not failed, "no request failed as the client sees it: %d requests, %d after the "
          "kill, %d failed%s" % (len(results), len(after), len(failed),
                                 (": " + str(failed[:3])) if failed else ""))
    retried_kinds = sorted({r[1] for r in results if r[3] > 1})
    check(len(moved) >= 1 and len(moved) >= client_retries and
          retried_kinds in ([], ["stream"]),
          "nginx moved %d requests to another replica itself; the client retried %d times, "
          "only streams (%s): a stream under way when its replica dies cannot be moved"
          % (len(moved), client_retries, ", ".join(retried_kinds) or "none"))
    check(len(after) >= 6, "replicas A and C carried the load after the kill (%d requests)"
          % len(after))


def drain():
    """SIGTERM to replica C while it generates: C finishes that request, answers 503
    to new ones, and nginx moves those to replica A (proxy_next_upstream http_503)."""
    long = {}

    def generate():
        long["r"] = requests.post(ENV["DS_C"] + "/v1/completions", timeout=60, json={
            "prompt": "A long story:", "max_tokens": 160, "temperature": 0.8})
    t = threading.Thread(target=generate)
    t.start()
    settle(lambda: metric(ENV["DS_C"], "deepseek:num_requests_running") or 0,
           lambda v: v >= 1)
    os.kill(int(ENV["DS_C_PID"]), signal.SIGTERM)
    ready = lambda: requests.get(ENV["DS_C"] + "/ready", timeout=2).status_code  # noqa
    check(settle(ready, lambda v: v == 503) == 503, "replica C drains: its /ready says 503")
    mark = len(nginx_lines())
    results = []
    run_threads(6, lambda i: results.append(call(LB, "chat", "During the drain %d." % i,
                                                 attempts=1)))
    settle(lambda: len(nginx_lines()) - mark, lambda v: v >= 6)
    moved = [l for l in nginx_lines()[mark:] if re.search(r'ustatus="503, 200"', l)]
    t.join()
    check(all(r[0] for r in results) and moved,
          "6 concurrent requests through nginx during the drain: %d succeeded at the first attempt, "
          "%d of them answered 503 by C and moved to A by nginx" %
          (sum(1 for r in results if r[0]), len(moved)))
    r = long.get("r")
    check(r is not None and r.status_code == 200 and
          r.json()["choices"][0]["finish_reason"] in ("stop", "length"),
          "the request C was generating when it got SIGTERM finished (%s)" %
          (r.status_code if r is not None else "no answer"))


def main():
    if len(sys.argv) == 8 and sys.argv[1] == "nginx-conf":
        sys.stdout.write(nginx_conf(sys.argv[2], sys.argv[3], int(sys.argv[4]),
                                    int(sys.argv[5]), sys.argv[6], sys.argv[7]))
        return
    if sys.argv[1:] != ["run"]:
        raise SystemExit(__doc__)
    mixed_load()
    incremental_stream()
    shared_cache()
    body_limit()
    grpc_through_nginx()
    kill_mid_load()
    drain()
    print("%d failed" % len(FAILS))
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
