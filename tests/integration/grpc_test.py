#!/usr/bin/env python3
"""Integration test of the gRPC API of `deepseek serve` (run by test_grpc.sh; needs
DS_BIN, DS_MODEL, DS_TMP, DS_SOURCE_DIR). Generates the python stubs from proto/ into
DS_TMP with grpc_tools.protoc, starts the real binary on 127.0.0.1 and checks unary,
streaming, health, auth, status codes, deadlines, cancels, limits and concurrency.
Prints "ok - ..." / "FAIL - ..." lines; exits 1 if anything failed."""
import hashlib
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc

BIN, MODEL, TMP = os.environ["DS_BIN"], os.environ["DS_MODEL"], os.environ["DS_TMP"]
SRC = os.environ["DS_SOURCE_DIR"]
STUBS = os.path.join(TMP, "stubs")
os.makedirs(STUBS, exist_ok=True)
subprocess.check_call([sys.executable, "-m", "grpc_tools.protoc", "-I", os.path.join(SRC, "proto"),
                       "--python_out=" + STUBS, "--grpc_python_out=" + STUBS,
                       os.path.join(SRC, "proto", "deepseek.proto"),
                       os.path.join(SRC, "proto", "health.proto")])
sys.path.insert(0, STUBS)
import deepseek_pb2  # noqa: E402
import deepseek_pb2_grpc  # noqa: E402
import health_pb2  # noqa: E402
import health_pb2_grpc  # noqa: E402
from dstest import FAILS, ServeProcess, check, free_port  # noqa: E402

KEY = "sk-grpc-test-key-0123456789"
SLOW_KEY = "sk-grpc-test-key-rpm1"
SC = grpc.StatusCode
# The seed's gRPC client (its section 2.2), as written there.
SEED_CLIENT = """
import grpc
from concurrent import futures
import deepseek_pb2
import deepseek_pb2_grpc
channel = grpc.insecure_channel('localhost:50051')
stub = deepseek_pb2_grpc.DeepSeekServiceStub(channel)
response = stub.GenerateText(
    deepseek_pb2.GenerateRequest(
        prompt="用Python实现快速排序",
        temperature=0.3,
        max_tokens=150
    )
)
"""


class Server(ServeProcess):
    def __init__(self, tag, *args):
        self.log_dir = os.path.join(TMP, "logs-" + tag)

        def argv():
            self.port, self.gport = free_port(), free_port()
            self.addr = "127.0.0.1:%d" % self.gport
            return [BIN, "serve", "-m", MODEL, "--host", "127.0.0.1", "--port", str(self.port),
                    "--grpc-port", str(self.gport), "--log-dir", self.log_dir, "--config=",
                    "--threads", "1", *args]
        self.start(argv, os.path.join(TMP, tag + ".out"))

    def stub(self):
        self.ch = grpc.insecure_channel(self.addr)
        return deepseek_pb2_grpc.DeepSeekServiceStub(self.ch)


def rest(s, body, key=None):
    req = urllib.request.Request(s.url + "/v1/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    if key:
        req.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


def code_of(fn):
    try:
        fn()
        return SC.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def raw_call(addr, path, body, metadata=()):
    """A call with raw request bytes: frames the tests cannot make with the stubs."""
    ch = grpc.insecure_channel(addr)
    fn = ch.unary_unary(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        return code_of(lambda: fn(body, timeout=30, metadata=metadata))
    finally:
        ch.close()


def test_seed(s):
    """The seed's client snippet, verbatim but for the address."""
    code = SEED_CLIENT.replace("localhost:50051", s.addr)
    scope = {}
    exec(compile(code, "grpc_client.py", "exec"), scope)
    r = scope["response"]
    # The tiny model's template opens a <think> block, so its output is reasoning
    # (the reasoning field), as REST's reasoning_content; text is what follows it.
    check(r.token_count > 0 and len(r.text) + len(r.reasoning) > 0,
          "seed snippet: GenerateText returns text (%d + %d reasoning chars) and "
          "token_count %d" % (len(r.text), len(r.reasoning), r.token_count))
    check(r.finish_reason == "stop" or r.token_count == 150,
          "seed snippet: token_count is the number of generated tokens (150 unless stopped)")
    # The same request through REST, greedy on both sides: the same count of tokens.
    stub = s.stub()
    g = stub.GenerateText(deepseek_pb2.GenerateRequest(prompt="用Python实现快速排序",
                                                        max_tokens=40, top_k=1))
    st, j = rest(s, {"messages": [{"role": "user", "content": "用Python实现快速排序"}],
                     "max_tokens": 40, "top_k": 1})
    check(st == 200 and g.token_count == j["usage"]["completion_tokens"] and
          g.text == j["choices"][0]["message"]["content"] and
          g.reasoning == j["choices"][0]["message"].get("reasoning_content", "") and
          len(g.text) + len(g.reasoning) > 0 and
          g.prompt_tokens == j["usage"]["prompt_tokens"] and
          g.finish_reason == j["choices"][0]["finish_reason"],
          "unary greedy equals REST: text, token_count=%d, prompt_tokens, finish_reason"
          % g.token_count)
    check(g.finish_reason != "length" or g.token_count == 40,
          "finish_reason length means token_count == max_tokens")


def test_stream(s):
    stub = s.stub()
    req = deepseek_pb2.GenerateRequest(prompt="Count to ten", max_tokens=30)  # server: temp 0
    unary = stub.GenerateText(req)
    parts, rparts, last, t = [], [], None, []
    for m in stub.GenerateTextStream(req):
        parts.append(m.text)
        rparts.append(m.reasoning)
        t.append(time.time())
        last = m
    check(len(parts) > 3 and "".join(parts) == unary.text and
          "".join(rparts) == unary.reasoning and len(unary.text + unary.reasoning) > 0,
          "stream: %d messages whose concatenation equals the unary text and reasoning"
          % len(parts))
    check(last is not None and last.finish_reason in ("stop", "length") and
          last.token_count == unary.token_count,
          "stream: last message has finish_reason and the token_count")
    check(t[-1] - t[0] > 0, "stream: messages arrive over time")


def test_health(s):
    ch = grpc.insecure_channel(s.addr)
    h = health_pb2_grpc.HealthStub(ch)
    r = h.Check(health_pb2.HealthCheckRequest())
    check(r.status == health_pb2.HealthCheckResponse.SERVING, "health Check: SERVING")
    r = h.Check(health_pb2.HealthCheckRequest(service="DeepSeekService"))
    check(r.status == health_pb2.HealthCheckResponse.SERVING, "health Check service: SERVING")
    c, _ = code_of(lambda: h.Check(health_pb2.HealthCheckRequest(service="nope")))
    check(c == SC.NOT_FOUND, "health Check unknown service: NOT_FOUND")
    return ch, h


def test_errors(s):
    stub = s.stub()
    G = deepseek_pb2.GenerateRequest
    c, d = code_of(lambda: stub.GenerateText(G(prompt="hi", temperature=5.0), timeout=30))
    check(c == SC.INVALID_ARGUMENT and "temperature" in d,
          "temperature 5: INVALID_ARGUMENT naming the field (%s)" % d)
    c, d = code_of(lambda: stub.GenerateText(G(prompt=""), timeout=30))
    check(c == SC.INVALID_ARGUMENT and "prompt" in d, "no prompt: INVALID_ARGUMENT")
    c, d = code_of(lambda: stub.GenerateText(G(prompt="x", stop=["a"] * 5), timeout=30))
    check(c == SC.INVALID_ARGUMENT, "5 stop strings: INVALID_ARGUMENT")
    c, d = code_of(lambda: stub.GenerateText(G(prompt="x", model="other"), timeout=30))
    check(c == SC.NOT_FOUND and "other" in d, "unknown model: NOT_FOUND")
    c, d = raw_call(s.addr, "/DeepSeekService/NoSuch", b"")
    check(c == SC.UNIMPLEMENTED and "NoSuch" in d, "unknown method: UNIMPLEMENTED (%s)" % d)
    c, d = code_of(lambda: stub.GenerateText(G(prompt="x", max_tokens=2), timeout=30,
                                             compression=grpc.Compression.Gzip))
    check(c == SC.UNIMPLEMENTED, "gzip compression: UNIMPLEMENTED (%s)" % d)
    c, d = raw_call(s.addr, "/DeepSeekService/GenerateText", b"\x0a\xff\xff\xff\xff\x0f")
    check(c == SC.INTERNAL, "undecodable message: INTERNAL (%s)" % d)
    c, d = code_of(lambda: stub.GenerateText(G(prompt="x" * (4 << 20)), timeout=30))
    check(c == SC.RESOURCE_EXHAUSTED and "limit" in d,
          "oversized 4 MiB message: RESOURCE_EXHAUSTED (%s)" % d)
    ok = stub.GenerateText(G(prompt="still alive?", max_tokens=3), timeout=30)
    check(ok.token_count >= 1, "the server still answers after the bad calls")
    # Chat turns.
    m = [deepseek_pb2.ChatMessage(role="system", content="Be brief."),
         deepseek_pb2.ChatMessage(role="user", content="Hi")]
    r = stub.GenerateText(G(messages=m, max_tokens=5), timeout=30)
    check(r.token_count >= 1 and r.prompt_tokens > 3, "messages: chat turns generate")
    c, d = code_of(lambda: stub.GenerateText(
        G(messages=[deepseek_pb2.ChatMessage(role="robot", content="x")]), timeout=30))
    check(c == SC.INVALID_ARGUMENT and "role" in d, "bad role: INVALID_ARGUMENT")


def h2_frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def hpack_literal(name, value):
    """Literal header field without indexing, new name, no Huffman."""
    n, v = name.encode(), value.encode()
    assert len(n) < 127 and len(v) < 127
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def raw_h2(addr, frames, wait=2.0):
    """Sends the client preface and frames; returns (HEADERS-with-END_STREAM seen on
    stream 1, bytes received) before the server goes quiet or closes."""
    host, port = addr.split(":")
    got, ended = b"", False
    with socket.create_connection((host, int(port)), timeout=5) as c:
        c.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b"") + frames)
        c.settimeout(wait)
        try:
            while not ended:
                d = c.recv(65536)
                if not d:
                    break
                got += d
                i = 0
                while i + 9 <= len(got):  # walk the frames received so far
                    ln = int.from_bytes(got[i:i + 3], "big")
                    ft, fl, sid = got[i + 3], got[i + 4], int.from_bytes(got[i + 5:i + 9], "big")
                    if ft == 1 and fl & 1 and sid == 1:
                        ended = True
                    i += 9 + ln
        except socket.timeout:
            pass
    return ended, got


def test_raw(s):
    """Malformed frames and length prefixes end the stream, never the process."""
    hdr = b"".join(hpack_literal(k, v) for k, v in [
        (":method", "POST"), (":scheme", "http"), (":path", "/DeepSeekService/GenerateText"),
        (":authority", "x"), ("content-type", "application/grpc"), ("te", "trailers")])
    cases = {
        "length prefix beyond the body": b"\x00\x00\x00\x10\x00abc",
        "truncated prefix": b"\x00\x00",
        "two messages": b"\x00\x00\x00\x00\x00" * 2,
        "bad compressed flag": b"\x07\x00\x00\x00\x00",
        "prefix claims 4 GiB": b"\x00\xff\xff\xff\xff",
    }
    for what, body in cases.items():
        ended, _ = raw_h2(s.addr, h2_frame(1, 4, 1, hdr) + h2_frame(0, 1, 1, body))
        check(ended, "raw HTTP/2: %s ends the stream with a status" % what)
    rnd = random.Random(7)
    for i in range(30):  # random frames after the preface, then raw garbage
        junk = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300)))
        raw_h2(s.addr, h2_frame(rnd.randint(0, 9), rnd.getrandbits(8), rnd.randint(0, 3),
                                junk) if i % 2 else junk, wait=0.1)
    with socket.create_connection(tuple([s.addr.split(":")[0], s.gport]), timeout=5) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    r = s.stub().GenerateText(deepseek_pb2.GenerateRequest(prompt="ok?", max_tokens=2),
                              timeout=30)
    check(s.p.poll() is None and r.token_count >= 1,
          "after 35 malformed connections the server still answers")


def test_deadline_cancel(s):
    stub = s.stub()
    long_req = deepseek_pb2.GenerateRequest(prompt="Tell a long story", max_tokens=100000)
    t0 = time.time()
    c, d = code_of(lambda: stub.GenerateText(long_req, timeout=0.5))
    check(c == SC.DEADLINE_EXCEEDED and time.time() - t0 < 5,
          "deadline 0.5 s: DEADLINE_EXCEEDED in %.2f s" % (time.time() - t0))
    it = stub.GenerateTextStream(long_req)
    next(it)
    it.cancel()
    time.sleep(0.5)
    # Both slots free again: two generations in parallel finish quickly.
    t0 = time.time()
    f = [stub.GenerateText.future(deepseek_pb2.GenerateRequest(prompt="a", max_tokens=4))
         for _ in range(2)]
    check(all(x.result(timeout=30).token_count >= 1 for x in f) and time.time() - t0 < 20,
          "after a deadline and a cancel the slots are free again")
    log = open(os.path.join(s.log_dir, "access.log")).read()
    check("proto=grpc" in log and "finish=abort" in log,
          "access log has grpc lines and the aborted (cancelled) call")


def test_concurrency(s):
    """32 gRPC calls mixed with 8 REST calls on 2 slots + queue 8."""
    stub = s.stub()
    res, lock = [], threading.Lock()

    def g(i):
        c, r = SC.OK, None
        try:
            r = stub.GenerateText(deepseek_pb2.GenerateRequest(prompt="n%d" % i, max_tokens=8),
                                  timeout=60)
        except grpc.RpcError as e:
            c = e.code()
        with lock:
            res.append(("grpc", c, r))

    def h(i):
        st, j = rest(s, {"messages": [{"role": "user", "content": "r%d" % i}], "max_tokens": 8})
        with lock:
            res.append(("http", st, j))

    th = [threading.Thread(target=g, args=(i,)) for i in range(32)]
    th += [threading.Thread(target=h, args=(i,)) for i in range(8)]
    t0 = time.time()
    for t in th:
        t.start()
    for t in th:
        t.join(90)
    grpc_ok = sum(1 for p, c, r in res if p == "grpc" and c == SC.OK and r.token_count >= 1)
    grpc_busy = sum(1 for p, c, r in res if p == "grpc" and c in (SC.UNAVAILABLE,
                                                                 SC.RESOURCE_EXHAUSTED))
    http_ok = sum(1 for p, c, r in res if p == "http" and c in (200, 429, 503))
    check(len(res) == 40 and grpc_ok + grpc_busy == 32 and http_ok == 8 and grpc_ok > 0,
          "32 gRPC + 8 REST at once: all answered (%d ok, %d UNAVAILABLE) in %.1f s"
          % (grpc_ok, grpc_busy, time.time() - t0))
    check(grpc_busy > 0, "a full queue answers UNAVAILABLE")
    with urllib.request.urlopen(s.url + "/metrics", timeout=10) as r:
        m = r.read().decode()
    check(re.search(r'http_requests_total\{[^}]*status="200"[^}]*protocol="grpc"', m) is not None
          or re.search(r'http_requests_total\{[^}]*protocol="grpc"[^}]*status="200"', m)
          is not None, "metrics count gRPC calls with protocol=\"grpc\"")


def test_keys():
    path = os.path.join(TMP, "keys")
    with open(path, "w") as f:
        f.write("id=alice sha256=%s\n" % hashlib.sha256(KEY.encode()).hexdigest())
        f.write("id=slow sha256=%s rpm=1\n" % hashlib.sha256(SLOW_KEY.encode()).hexdigest())
    os.chmod(path, 0o600)
    s = Server("keys", "--api-keys", path, "--temperature", "0")
    stub = s.stub()
    G = deepseek_pb2.GenerateRequest(prompt="hi", max_tokens=2)
    c, d = code_of(lambda: stub.GenerateText(G, timeout=30))
    check(c == SC.UNAUTHENTICATED and "key" in d, "no key: UNAUTHENTICATED (%s)" % d)
    c, d = code_of(lambda: stub.GenerateText(G, timeout=30,
                                             metadata=[("authorization", "Bearer sk-wrong")]))
    check(c == SC.UNAUTHENTICATED and "invalid" in d, "bad key: UNAUTHENTICATED (%s)" % d)
    r = stub.GenerateText(G, timeout=30, metadata=[("authorization", "Bearer " + KEY)])
    check(r.token_count >= 1, "good key: answered")
    md = [("authorization", "Bearer " + SLOW_KEY)]
    stub.GenerateText(G, timeout=30, metadata=md)
    try:
        stub.GenerateText(G, timeout=30, metadata=md)
        check(False, "rpm=1: second call RESOURCE_EXHAUSTED")
    except grpc.RpcError as e:
        tr = dict(e.trailing_metadata() or ())
        check(e.code() == SC.RESOURCE_EXHAUSTED and int(tr.get("retry-after", "0")) >= 1 and
              "grpc-retry-pushback-ms" in tr,
              "rpm=1: second call RESOURCE_EXHAUSTED with retry-after trailers (%s)" % tr)
    # Drain: Watch sees NOT_SERVING, a new call gets UNAVAILABLE, one in flight finishes.
    h = health_pb2_grpc.HealthStub(grpc.insecure_channel(s.addr))
    watch = h.Watch(health_pb2.HealthCheckRequest())
    first = next(watch)
    check(first.status == health_pb2.HealthCheckResponse.SERVING, "Watch: SERVING first")
    md = [("authorization", "Bearer " + KEY)]
    inflight = stub.GenerateText.future(
        deepseek_pb2.GenerateRequest(prompt="a long one", max_tokens=150), metadata=md)
    time.sleep(0.3)
    s.p.send_signal(signal.SIGTERM)
    nxt = next(watch)
    check(nxt.status == health_pb2.HealthCheckResponse.NOT_SERVING,
          "Watch: NOT_SERVING once draining")
    c, d = code_of(lambda: stub.GenerateText(G, timeout=30, metadata=md))
    check(c == SC.UNAVAILABLE, "draining: UNAVAILABLE (%s)" % d)
    try:
        check(inflight.result(timeout=30).token_count >= 1, "draining: the call in flight ends")
    except grpc.RpcError as e:
        check(False, "draining: the call in flight ends (%s)" % e.code())
    check(s.stop() == 0, "drained server exits 0")


def main():
    s = Server("main", "--parallel", "2", "--queue", "8", "--temperature", "0")
    try:
        test_seed(s)
        test_stream(s)
        test_health(s)
        test_errors(s)
        test_raw(s)
        test_deadline_cancel(s)
        test_concurrency(s)
        check(s.p.poll() is None, "the server is still running")
    finally:
        rc = s.stop()
    check(rc == 0, "server exits 0 on SIGTERM")
    test_keys()
    if FAILS:
        print("%d check(s) failed" % len(FAILS))
        sys.exit(1)


main()
