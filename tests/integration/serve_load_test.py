#!/usr/bin/env python3
"""`deepseek serve` under load (run by test_serve_load.sh; needs DS_BIN, DS_MODEL, DS_TMP).
16 concurrent streaming clients on --parallel 4 --queue 8, byte-level SSE framing, the
error matrix (status, type and code of every error the HTTP server produces), slots and
queue places freed within a second of a disconnect (seen in /metrics), SIGTERM draining a
loaded server, --metrics-vllm-names, and no key in any log file afterwards.
Prints "ok - ..." / "FAIL - ..." lines; exits 1 if anything failed."""
import hashlib
import json
import os
import random
import signal
import socket
import sys
import threading
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_test  # noqa: E402  (Server, check)
from serve_test import Server, check, NAME, TMP  # noqa: E402

KEY = "sk-test-%032x" % random.getrandbits(128)
WRONG_KEY = "sk-test-%032x" % random.getrandbits(128)
AUTH = {"Authorization": "Bearer " + KEY}
PROMPTS = ["Tell me about %s" % w for w in
           ("cats", "dogs", "the sea", "rain", "tea", "maps", "stars", "bread", "snow",
            "glass", "iron", "clocks", "rivers", "owls", "paper", "salt")]


def chat(s, body, headers=AUTH, **kw):
    return requests.post(s.url + "/v1/chat/completions", json=body, headers=headers,
                         timeout=60, **kw)


def metric(s, name):
    """The value of an unlabelled series (label model_name only), or None."""
    text = requests.get(s.url + "/metrics", headers=AUTH, timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def error_fields(r):
    return error_fields_of(r.status_code, r.text)


def error_fields_of(status, text):
    """(status, type, code) of an OpenAI-shaped error body."""
    try:
        e = json.loads(text)["error"]
        if set(e) == {"message", "type", "param", "code"} and isinstance(e["message"], str):
            return status, e["type"], e["code"]
    except (ValueError, KeyError, TypeError):
        pass
    return status, "not the OpenAI error shape", text[:80]


def parse_sse(raw):
    """Checks SSE framing byte by byte: events end with a blank line, every line is a
    comment or 'data: ' + JSON, exactly one [DONE] and nothing after it. Returns
    (chunks, problem or None)."""
    try:
        text = raw.decode("ascii")  # chunks are ASCII JSON (non-ASCII as \\u escapes)
    except UnicodeDecodeError:
        return [], "non-ASCII bytes in the stream"
    if not text.endswith("\n\n"):
        return [], "stream does not end with a blank line"
    events = text[:-2].split("\n\n")
    chunks, done = [], False
    for ev in events:
        for line in ev.split("\n"):
            if line.startswith(":"):
                continue
            if done:
                return chunks, "data after [DONE]"
            if not line.startswith("data: "):
                return chunks, "bad line %r" % line[:60]
            if line == "data: [DONE]":
                done = True
                continue
            try:
                chunks.append(json.loads(line[6:]))
            except ValueError:
                return chunks, "bad JSON %r" % line[:60]
    if not done:
        return chunks, "no [DONE]"
    if not chunks or any(c.get("object") != "chat.completion.chunk" or
                         c.get("id") != chunks[0]["id"] for c in chunks):
        return chunks, "chunk ids or objects differ"
    return chunks, None


def stream_text(chunks):
    out = ""
    for c in chunks:
        for ch in c["choices"]:
            d = ch["delta"]
            out += (d.get("reasoning_content") or "") + (d.get("content") or "")
    return out


def one_stream(s, prompt, max_tokens, out, i, barrier=None):
    try:
        if barrier:
            barrier.wait(10)
        r = chat(s, {"prompt": prompt, "temperature": 0, "max_tokens": max_tokens,
                     "stream": True}, stream=True)
        raw = r.raw.read()  # the exact bytes, no line splitting by the client
        out[i] = (r.status_code, r.headers, raw)
    except Exception as e:  # a hang (timeout) or a broken stream is a failure, not a crash
        out[i] = ("exception", {}, repr(e).encode())


def run_streams(s, prompts, max_tokens, barrier=True):
    out = [None] * len(prompts)
    b = threading.Barrier(len(prompts)) if barrier else None
    ts = [threading.Thread(target=one_stream, args=(s, p, max_tokens, out, i, b))
          for i, p in enumerate(prompts)]
    for t in ts:
        t.start()
    return ts, out


def test_sixteen(s):
    solo = {p: chat(s, {"prompt": p, "temperature": 0, "max_tokens": 24}).json()
            for p in PROMPTS}
    solo = {p: (j["choices"][0]["message"].get("reasoning_content") or "") +
            (j["choices"][0]["message"].get("content") or "") for p, j in solo.items()}
    t0 = time.time()
    ts, out = run_streams(s, PROMPTS, 24)
    for t in ts:
        t.join(90)
    took = time.time() - t0
    hung = sum(t.is_alive() for t in ts)
    codes = [o[0] if o else None for o in out]
    check(not hung and all(c in (200, 429, 503) for c in codes),
          "16 concurrent streams on --parallel 4 --queue 8: 200/429/503 only, none hangs "
          "(%s in %.1fs)" % (codes, took))
    check(codes.count(200) >= 12, "at least 4 running + 8 queued were served (%d)"
          % codes.count(200))
    bad_sse, differ = [], []
    for (code, hdr, raw), p in zip([o for o in out if o], PROMPTS):
        if code != 200:
            continue
        chunks, problem = parse_sse(raw)
        if problem or not hdr.get("Content-Type", "").startswith("text/event-stream"):
            bad_sse.append("%s: %s" % (p, problem or hdr.get("Content-Type")))
        elif stream_text(chunks) != solo[p]:
            differ.append(p)
    check(not bad_sse, "every 200 is well-formed SSE ending in [DONE] (%s)" % bad_sse[:3])
    check(not differ, "every temperature-0 stream equals its prompt alone (differ: %s)"
          % differ)
    refused = [(o[1], error_fields_of(503, o[2].decode("utf-8", "replace")))
               for o in out if o and o[0] == 503]
    check(all(h.get("Retry-After") and f[1:] == ("service_unavailable_error",
                                                 "server_is_overloaded") for h, f in refused),
          "the %d refused got 503 server_is_overloaded with Retry-After" % len(refused))
    check(metric(s, "deepseek:num_requests_running") == 0 and
          metric(s, "deepseek:num_requests_waiting") == 0, "afterwards no slot or queue "
          "place is held")


def test_error_matrix(s, keys_path):
    url = s.url + "/v1/chat/completions"
    P = requests.post
    cases = [
        ("body not JSON", P(url, data=b"{nope", headers=AUTH, timeout=10),
         (400, "invalid_request_error", "invalid_json")),
        ("no messages or prompt", chat(s, {"temperature": 0}),
         (400, "invalid_request_error", "missing_field")),
        ("temperature a string", chat(s, {"prompt": "x", "temperature": "hot"}),
         (400, "invalid_request_error", "invalid_value")),
        ("prompt beyond the context", chat(s, {"prompt": "word " * 600, "max_tokens": 1}),
         (400, "invalid_request_error", "context_length_exceeded")),
        ("no key", chat(s, {"prompt": "x"}, headers={}),
         (401, "authentication_error", "missing_api_key")),
        ("wrong key", chat(s, {"prompt": "x"}, headers={"Authorization": "Bearer " + WRONG_KEY}),
         (401, "authentication_error", "invalid_api_key")),
        ("unknown path", requests.get(s.url + "/v1/engines", headers=AUTH, timeout=10),
         (404, "not_found_error", "not_found")),
        ("unknown model", chat(s, {"model": "deepseek-chat", "prompt": "x"}),
         (404, "invalid_request_error", "model_not_found")),
        ("GET on a POST route", requests.get(url, headers=AUTH, timeout=10),
         (405, "invalid_request_error", "method_not_allowed")),
        ("body over --max-body", P(url, data=b" " * 9000, headers=AUTH, timeout=10),
         (413, "invalid_request_error", "request_too_large")),
    ]
    for what, r, want in cases:
        got = error_fields(r)
        check(got == want, "%s -> %s %s %s (got %s %s %s)" % ((what,) + want + got))
    # 429 per limit: a key with rpm=1 and one with concurrent=1.
    rpm_key, conc_key = ("sk-test-%032x" % random.getrandbits(128) for _ in range(2))
    with open(keys_path, "a") as f:
        f.write("id=rpm1 sha256=%s rpm=1\n" % hashlib.sha256(rpm_key.encode()).hexdigest())
        f.write("id=conc1 sha256=%s concurrent=1\n"
                % hashlib.sha256(conc_key.encode()).hexdigest())
    s.p.send_signal(signal.SIGHUP)  # reload the key file
    deadline = time.time() + 5
    while time.time() < deadline and chat(s, {"prompt": "x", "max_tokens": 1}, headers={
            "Authorization": "Bearer " + rpm_key}).status_code == 401:
        time.sleep(0.05)
    r = chat(s, {"prompt": "x", "max_tokens": 1}, headers={"Authorization": "Bearer " + rpm_key})
    check(error_fields(r) == (429, "rate_limit_error", "rate_limit_exceeded") and
          int(r.headers.get("Retry-After", "0")) >= 1 and
          r.headers.get("x-ratelimit-remaining-requests") == "0",
          "rpm=1, second request -> 429 rate_limit_exceeded, Retry-After, x-ratelimit-*")
    sock = open_stream(s, "Count", 400, conc_key)  # the key's one request in flight
    r = chat(s, {"prompt": "x", "max_tokens": 1}, headers={"Authorization": "Bearer " + conc_key})
    sock.close()
    check(error_fields(r) == (429, "rate_limit_error", "rate_limit_exceeded") and
          r.headers.get("Retry-After") == "1", "concurrent=1, a second request in flight -> "
          "429 with Retry-After: 1")
    return [rpm_key, conc_key]


def open_stream(s, prompt, max_tokens, key=KEY, wait_events=2):
    """A raw streaming request; returns the socket once wait_events data lines came
    (0: once the request is sent)."""
    sock = socket.create_connection(("127.0.0.1", s.port))
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "stream": True}).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                 b"%s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (key.encode(), len(body), body))
    got = b""
    sock.settimeout(30)
    while got.count(b"data: ") < wait_events:
        got += sock.recv(4096)
    return sock


def until(s, name, value, limit):
    """Seconds until the metric reads value (polled every 10 ms), or None after limit."""
    t0 = time.time()
    while time.time() - t0 < limit:
        if metric(s, name) == value:
            return time.time() - t0
        time.sleep(0.01)
    return None


def test_disconnect(s):
    socks = [open_stream(s, "Count to a thousand %d" % i, 2000) for i in range(4)]
    queued = open_stream(s, "Wait", 2000, wait_events=0)
    busy = (metric(s, "deepseek:num_requests_running"),
            until(s, "deepseek:num_requests_waiting", 1, 5))
    aborted0 = metric(s, 'deepseek:request_success_total{model_name="%s",finished_reason='
                      '"abort"}' % NAME) or 0
    queued.close()
    t_queue = until(s, "deepseek:num_requests_waiting", 0, 3)
    check(busy[0] == 4 and busy[1] is not None and t_queue is not None and t_queue < 1.0,
          "a queued client that leaves frees its queue place within 1 s (%s s)" % t_queue)
    socks.pop().close()
    t_slot = until(s, "deepseek:num_requests_running", 3, 3)
    check(t_slot is not None and t_slot < 1.0,
          "a client gone mid-stream frees its slot within 1 s (%s s)" % t_slot)
    for sock in socks:
        sock.close()
    t_all = until(s, "deepseek:num_requests_running", 0, 3)
    aborted = metric(s, 'deepseek:request_success_total{model_name="%s",finished_reason='
                     '"abort"}' % NAME) or 0
    check(t_all is not None and t_all < 1.0 and aborted - aborted0 >= 4,
          "all slots free within 1 s; aborts counted (%s s, %d aborts)"
          % (t_all, aborted - aborted0))


def test_vllm_names(s, on):
    text = requests.get(s.url + "/metrics", headers=AUTH, timeout=10).text
    names = ("vllm:num_requests_running", "vllm:generation_tokens_total",
             "vllm:time_to_first_token_seconds_bucket", "vllm:gpu_cache_usage_perc")
    has = [n in text for n in names]
    if on:
        check(all(has) and "deepseek:num_requests_running" in text,
              "--metrics-vllm-names: every family also under vllm: (%s)" % has)
    else:
        check("vllm:" not in text and "deepseek:num_requests_running" in text,
              "without --metrics-vllm-names: no vllm: series")


def test_drain_loaded(s):
    ts, out = run_streams(s, PROMPTS[:6], 40, barrier=False)
    deadline = time.time() + 10
    while time.time() < deadline and (metric(s, "deepseek:num_requests_running"),
                                      metric(s, "deepseek:num_requests_waiting")) != (4, 2):
        time.sleep(0.01)
    s.p.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    new = error_fields(chat(s, {"prompt": "x", "max_tokens": 1}))
    for t in ts:
        t.join(60)
    rc = s.p.wait(30)
    ok = [o[0] == 200 and parse_sse(o[2])[1] is None if o else None for o in out]
    why = [(o[0], parse_sse(o[2])[1], o[2][-120:]) for o, good in zip(out, ok) if o and not good]
    check(new == (503, "service_unavailable_error", "service_unavailable"),
          "draining: a new request -> 503 service_unavailable (%s)" % (new,))
    check(not any(t.is_alive() for t in ts) and all(ok) and rc == 0,
          "SIGTERM with 4 running + 2 queued: all 6 streams complete with [DONE], exit 0 "
          "(%s, rc %s%s)" % (ok, rc, why))


def scan_logs(servers, secrets):
    files = []
    for s in servers:
        files.append(s.out.name)
        for root, _, names in os.walk(s.log_dir):
            files += [os.path.join(root, n) for n in names]
    leaks, size = [], 0
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        size += len(data)
        leaks += ["%s... in %s" % (k[:10], os.path.basename(path)) for k in secrets
                  if k.encode() in data]
    check(size > 0 and not leaks, "no log file holds a key the test used (%d files, %d "
          "bytes%s)" % (len(files), size, (": " + ", ".join(leaks)) if leaks else ""))


def main():
    t0 = time.time()
    keys_path = os.path.join(TMP, "load-keys")
    with open(keys_path, "w") as f:
        f.write("id=load sha256=%s\n" % hashlib.sha256(KEY.encode()).hexdigest())
    os.chmod(keys_path, 0o600)
    common = ("--parallel", "4", "--queue", "8", "--ctx-size", "512", "--max-body", "8k",
              "--api-keys", keys_path, "--log-level", "debug")
    s = Server("load", *common, "--metrics-vllm-names")
    extra = []
    try:
        test_vllm_names(s, True)
        test_sixteen(s)
        extra = test_error_matrix(s, keys_path)
        test_disconnect(s)
    finally:
        check(s.stop() == 0, "SIGTERM on an idle server exits 0")
    d = Server("drain", *common)
    try:
        test_vllm_names(d, False)
        test_drain_loaded(d)
    finally:
        d.stop()
    scan_logs([s, d], [KEY, WRONG_KEY] + extra)
    fails = serve_test.FAILS
    print("%d failed; %.1fs" % (len(fails), time.time() - t0))
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
