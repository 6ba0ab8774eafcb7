#!/usr/bin/env python3
"""End-to-end serving benchmark for `deepseek serve` (docs/PERFORMANCE.md, "Serving").

For each concurrency N, N client threads each send --rounds streaming chat requests (fixed
prompts, temperature 0, --max-tokens) one after another; the report is the aggregate
generated tokens/s (completion tokens from the streams' usage chunks / wall time of the
whole run), the per-stream rate, and time to first token (first chunk with text) p50/p90.

    python3 bench/serve_bench.py --url http://127.0.0.1:7860 -c 1,4,8
    python3 bench/serve_bench.py --bin build/deepseek --model q4km.gguf -c 1,4,8 --threads 2

With --model it starts `deepseek serve` itself (--parallel = the largest N, a free port,
--log-dir in a temporary directory) and stops it with SIGTERM afterwards. Needs python3 and
requests (Debian: python3-requests)."""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import requests

PROMPTS = [
    "Explain how a hash table works.", "Write a short poem about the sea.",
    "What is the capital of France, and why?", "Summarise the plot of Hamlet.",
    "Give three tips for learning Rust.", "Describe photosynthesis simply.",
    "How do vaccines train the immune system?", "List the planets in order.",
    "What causes the seasons on Earth?", "Explain recursion with an example.",
    "Why is the sky blue?", "How does TCP differ from UDP?",
    "Describe the water cycle.", "What is a prime number?",
    "How do bees make honey?", "Explain supply and demand.",
]


def one_request(url, headers, prompt, max_tokens):
    """Returns (ttft seconds or None, completion tokens, seconds)."""
    body = {"messages": [{"role": "user", "content": prompt}], "temperature": 0,
            "max_tokens": max_tokens, "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    ttft, tokens = None, 0
    with requests.post(url + "/v1/chat/completions", json=body, headers=headers, stream=True,
                       timeout=600) as r:
        r.raise_for_status()
        for raw in r.iter_lines():
            if not raw.startswith(b"data: ") or raw == b"data: [DONE]":
                continue
            chunk = json.loads(raw[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for ch in chunk.get("choices", []):
                d = ch.get("delta", {})
                if ttft is None and (d.get("content") or d.get("reasoning_content")):
                    ttft = time.perf_counter() - t0
    return ttft, tokens, time.perf_counter() - t0


def run(url, headers, n, rounds, max_tokens):
    results, errors = [], []
    lock = threading.Lock()

    def client(k):
        for j in range(rounds):
            try:
                res = one_request(url, headers, PROMPTS[(k * rounds + j) % len(PROMPTS)],
                                  max_tokens)
                with lock:
                    results.append(res)
            except Exception as e:  # report, do not hide: a failed request skews the rate
                with lock:
                    errors.append(repr(e))

    ts = [threading.Thread(target=client, args=(k,)) for k in range(n)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    tokens = sum(r[1] for r in results)
    ttfts = sorted(r[0] for r in results if r[0] is not None)
    per_stream = [r[1] / r[2] for r in results if r[2] > 0]
    q = statistics.quantiles(ttfts, n=10) if len(ttfts) >= 2 else ttfts * 9
    return {"concurrency": n, "requests": len(results), "errors": len(errors),
            "tokens": tokens, "wall_s": wall, "agg_tok_s": tokens / wall if wall else 0,
            "stream_tok_s": statistics.mean(per_stream) if per_stream else 0,
            "ttft_p50_ms": 1000 * statistics.median(ttfts) if ttfts else float("nan"),
            "ttft_p90_ms": 1000 * q[8] if q else float("nan"), "first_error": errors[:1]}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(a, parallel, log_dir):
    port = free_port()
    cmd = [a.bin, "serve", "-m", a.model, "--host", "127.0.0.1", "--port", str(port),
           "--log-dir", log_dir, "--parallel", str(parallel), "--grpc-port", "0",
           "--ctx-size", str(a.ctx_size)]
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    out = open(os.path.join(log_dir, "serve.out"), "w+")
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        out.seek(0)
        if "Server ready" in out.read():
            return p, "http://127.0.0.1:%d" % port
        time.sleep(0.2)
    out.seek(0)
    p.kill()
    raise SystemExit("serve did not start: " + out.read()[-2000:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", help="a running server (else --model starts one)")
    ap.add_argument("--model", help="GGUF to serve (starts `deepseek serve`)")
    ap.add_argument("--bin", default="build/deepseek", help="the deepseek binary")
    ap.add_argument("--threads", type=int, default=0, help="serve --threads (0: its default)")
    ap.add_argument("--ctx-size", type=int, default=2048, help="serve --ctx-size")
    ap.add_argument("-c", "--concurrency", default="1,4,8", help="comma-separated N")
    ap.add_argument("--rounds", type=int, default=2, help="requests per client thread")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--api-key", default=os.environ.get("DEEPSEEK_API_KEY", ""))
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    a = ap.parse_args()
    ns = [int(x) for x in a.concurrency.split(",")]
    # no-store: temperature-0 repeats of a prompt must run the model, not the response cache
    headers = {"Cache-Control": "no-store"}
    if a.api_key:
        headers["Authorization"] = "Bearer " + a.api_key
    proc, tmp = None, None
    if not a.url:
        if not a.model:
            ap.error("give --url or --model")
        tmp = tempfile.TemporaryDirectory(prefix="serve-bench-")
        proc, a.url = start_server(a, max(ns), tmp.name)
    try:
        one_request(a.url, headers, "Hello", 4)  # warm-up: pages the weights in
        if not a.json:
            print("%4s %8s %6s %7s %10s %10s %10s %10s" % ("N", "requests", "errors", "tokens",
                  "agg tok/s", "stream t/s", "TTFT p50", "TTFT p90"))
        base = None
        for n in ns:
            r = run(a.url, headers, n, a.rounds, a.max_tokens)
            base = base or r["agg_tok_s"]
            if a.json:
                print(json.dumps(r))
            else:
                print("%4d %8d %6d %7d %10.1f %10.1f %8.0fms %8.0fms  (x%.2f of N=%d)%s" % (
                    n, r["requests"], r["errors"], r["tokens"], r["agg_tok_s"],
                    r["stream_tok_s"], r["ttft_p50_ms"], r["ttft_p90_ms"],
                    r["agg_tok_s"] / base if base else 0, ns[0],
                    ("  " + r["first_error"][0][:120]) if r["first_error"] else ""))
            sys.stdout.flush()
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
            tmp.cleanup()


if __name__ == "__main__":
    main()
