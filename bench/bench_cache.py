#!/usr/bin/env python3
"""Time to first token with and without a prefix-cache hit (docs/PERFORMANCE.md "Caching").

    bench/bench_cache.py BIN MODEL [--reps 5] [--rules 100] [--threads 1]

Starts `BIN serve` on MODEL (127.0.0.1, a random port, --parallel 2), then, rep times:
  cold: a system prompt of ~10 x rules tokens that no earlier request shared (a fresh
        number at its start), and a question;
  warm: the same system prompt with another question: a prefix-cache hit.
Both stream with temperature 0 and "Cache-Control: no-store" (no response cache).
Prints the median time to the first streamed token of each, and the hit tokens.
Python 3 standard library only."""
import argparse
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import tempfile
import time


def ttft(port, system, question):
    body = json.dumps({"messages": [{"role": "system", "content": system},
                                    {"role": "user", "content": question}],
                       "temperature": 0, "max_tokens": 4, "stream": True,
                       "stream_options": {"include_usage": True}})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body,
                 {"Content-Type": "application/json", "Cache-Control": "no-store"})
    resp = conn.getresponse()
    first, usage = None, {}
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: {"):
            continue
        chunk = json.loads(line[6:])
        d = chunk["choices"][0]["delta"] if chunk["choices"] else {}
        if first is None and (d.get("content") or d.get("reasoning_content")):
            first = time.perf_counter() - t0
        usage = chunk.get("usage") or usage
    conn.close()
    return first, usage


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("model")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rules", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    port = random.randint(20000, 60000)
    out = open(os.path.join(tmp, "serve.out"), "w+")
    p = subprocess.Popen([a.bin, "serve", "-m", a.model, "--host", "127.0.0.1", "--port",
                          str(port), "--log-dir", tmp, "--config=", "--threads",
                          str(a.threads), "--parallel", "2", "--ctx-size", "4096",
                          "--grpc-port", "0"],
                         stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            out.seek(0)
            if "Server ready" in out.read():
                break
            if p.poll() is not None:
                out.seek(0)
                raise SystemExit("serve exited: " + out.read()[-2000:])
            time.sleep(0.05)
        cold, warm, hits, n_prompt = [], [], [], 0
        for rep in range(a.reps):
            system = "Session %d-%d. You are a careful assistant." % (rep, random.random() * 1e9)
            system += "".join(" Rule %d: answer briefly and cite." % i for i in range(a.rules))
            t, u = ttft(port, system, "What is a fox?")
            cold.append(t)
            n_prompt = u.get("prompt_tokens", 0)
            t, u = ttft(port, system, "Name three rivers.")
            warm.append(t)
            hits.append(u.get("prompt_cache_hit_tokens", 0))
        mc, mw = statistics.median(cold), statistics.median(warm)
        print("| prompt tokens | hit tokens (warm) | TTFT cold (ms) | TTFT warm (ms) | speed-up |")
        print("|---:|---:|---:|---:|---:|")
        print("| %d | %d | %.1f | %.1f | %.1fx |" % (n_prompt, statistics.median(hits),
                                                   mc * 1e3, mw * 1e3, mc / mw))
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)


if __name__ == "__main__":
    main()
