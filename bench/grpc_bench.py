#!/usr/bin/env python3
"""gRPC benchmark: unary GenerateText calls per second, and the latency gRPC adds over
the engine's own time for the call.

    python3 bench/grpc_bench.py --bin build/deepseek --model MODEL.gguf [--calls 200]
        [--concurrency 8] [--seconds 5] [--max-tokens 1] [--threads 1]

Starts `deepseek serve` on free 127.0.0.1 ports with a temporary --log-dir, generates
the python stubs from proto/ (grpc_tools.protoc, Debian's python3-grpc-tools), then
 1. sequential calls: client round trip vs the server's own time for the same call
    (access.log total_ms: from the decoded request to the last token, i.e. tokenize +
    queue + engine). Their difference is what gRPC adds: HTTP/2, protobuf, the wake
    from the engine thread, the loop, the python client;
 2. --concurrency client threads for --seconds: completed calls per second;
 3. the same closed loop through REST (/v1/chat/completions) for comparison.
Prints a Markdown table (docs/PERFORMANCE.md "gRPC")."""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_loop(fn, threads, seconds):
    done, stop = [0] * threads, time.time() + seconds

    def run(i):
        while time.time() < stop:
            fn()
            done[i] += 1

    th = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    t0 = time.time()
    for t in th:
        t.start()
    for t in th:
        t.join()
    return sum(done) / (time.time() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--max-tokens", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="grpc-bench-")
    subprocess.check_call([sys.executable, "-m", "grpc_tools.protoc", "-I",
                           os.path.join(ROOT, "proto"), "--python_out=" + tmp,
                           "--grpc_python_out=" + tmp, os.path.join(ROOT, "proto", "deepseek.proto")])
    sys.path.insert(0, tmp)
    import grpc
    import deepseek_pb2
    import deepseek_pb2_grpc

    port, gport = free_port(), free_port()
    logs = os.path.join(tmp, "logs")
    out = open(os.path.join(tmp, "serve.out"), "w+")
    p = subprocess.Popen([a.bin, "serve", "-m", a.model, "--host", "127.0.0.1", "--port",
                          str(port), "--grpc-port", str(gport), "--log-dir", logs, "--config=",
                          "--threads", str(a.threads), "--parallel", str(a.concurrency),
                          "--temperature", "0"], stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            out.seek(0)
            if "Server ready" in out.read():
                break
            time.sleep(0.05)
        stub = deepseek_pb2_grpc.DeepSeekServiceStub(
            grpc.insecure_channel("127.0.0.1:%d" % gport))
        req = deepseek_pb2.GenerateRequest(prompt="hi", max_tokens=a.max_tokens)
        for _ in range(10):
            stub.GenerateText(req)
        log = os.path.join(logs, "access.log")
        skip = len(open(log).read().splitlines())
        client = []
        for _ in range(a.calls):
            t0 = time.perf_counter()
            stub.GenerateText(req)
            client.append((time.perf_counter() - t0) * 1e3)
        time.sleep(0.2)
        lines = [ln for ln in open(log).read().splitlines()[skip:] if "proto=grpc" in ln]
        server = [float(re.search(r"total_ms=([0-9.]+)", ln).group(1)) for ln in lines]
        n = min(len(server), len(client))
        added = [c - s for c, s in zip(client[:n], server[:n])]
        grpc_rps = closed_loop(lambda: stub.GenerateText(req), a.concurrency, a.seconds)
        body = json.dumps({"messages": [{"role": "user", "content": "hi"}],
                           "max_tokens": a.max_tokens}).encode()

        def rest():
            r = urllib.request.Request("http://127.0.0.1:%d/v1/chat/completions" % port, body,
                                       {"Content-Type": "application/json"})
            urllib.request.urlopen(r, timeout=60).read()

        rest_rps = closed_loop(rest, a.concurrency, a.seconds)
    finally:
        p.terminate()
        p.wait(30)
    med = statistics.median
    q = lambda xs, f: sorted(xs)[min(len(xs) - 1, int(f * len(xs)))]  # noqa: E731
    print("| model | max_tokens | calls | client p50 ms | server (engine) p50 ms | "
          "added by gRPC p50 / p90 ms | unary calls/s (%d clients) | REST calls/s |"
          % a.concurrency)
    print("|---|---|---|---|---|---|---|---|")
    print("| %s | %d | %d | %.2f | %.2f | %.2f / %.2f | %.0f | %.0f |" % (
        os.path.basename(a.model), a.max_tokens, a.calls, med(client), med(server),
        med(added), q(added, 0.9), grpc_rps, rest_rps))


main()
