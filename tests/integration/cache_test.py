#!/usr/bin/env python3
"""Integration test of the caches (run by test_cache.sh; needs DS_BIN, DS_MODEL, DS_TMP).
Starts a real redis-server and two `deepseek serve` replicas sharing it:
  A: --cache-size 16M --cache-url redis://...?ttl=3   (memory + Redis)
  B: --cache-size 0   --cache-url redis://...?ttl=3   (Redis only)
and checks the prefix cache (hit tokens, TTFT, identical output, metrics) and the
response cache (MISS/HIT, streaming hits, no-store bypass, replicas sharing through
Redis, TTL expiry, Redis stopped and restarted mid-test)."""
import os
import random
import signal
import subprocess
import sys
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_test import Server, check, sse, stream_text, text_of, FAILS  # noqa: E402

TMP = os.environ["DS_TMP"]


class Redis:
    def __init__(self):
        self.port = random.randint(20000, 60000)
        self.p = None
        self.start()

    def ready_count(self):
        path = os.path.join(TMP, "redis.out")
        return open(path).read().count("Ready to accept") if os.path.exists(path) else 0

    def start(self):
        before = self.ready_count()
        self.log = open(os.path.join(TMP, "redis.out"), "a")
        self.p = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no"], stdout=self.log,
            stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.ready_count() > before:
                return
            time.sleep(0.05)
        raise SystemExit("FAIL - redis-server did not start")

    def stop(self):
        if self.p and self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            self.p.wait(10)


SYSTEM = "You are a careful assistant." + "".join(
    " Rule %d: answer briefly and cite." % i for i in range(100))


def ask(s, user, stream=False, headers=None, **extra):
    body = {"messages": [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": user}],
            "temperature": 0, "max_tokens": 16, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    body.update(extra)
    t0 = time.time()
    r = requests.post(s.url + "/v1/chat/completions", json=body, timeout=60, stream=stream,
                      headers=headers or {})
    if not stream:
        j = r.json()
        return r, text_of(j["choices"][0]), j["usage"], time.time() - t0
    ttft, chunks = None, []
    for c in sse(r)[0]:
        d = c["choices"][0]["delta"] if c["choices"] else {}
        if ttft is None and (d.get("content") or d.get("reasoning_content")):
            ttft = time.time() - t0
        chunks.append(c)
    usage = chunks[-1]["usage"] if chunks and chunks[-1].get("usage") else {}
    return r, stream_text(chunks), usage, ttft


NO_STORE = {"Cache-Control": "no-store"}


def prefix_tests(a, b):
    r, text1, u1, cold = ask(a, "What is a fox?", stream=True, headers=NO_STORE)
    check(r.status_code == 200 and u1.get("prompt_tokens", 0) > 950,
          "a ~1000-token system prompt: %s prompt tokens" % u1.get("prompt_tokens"))
    check(u1.get("prompt_cache_hit_tokens") == 0 and
          u1.get("prompt_cache_miss_tokens") == u1.get("prompt_tokens"),
          "first request: no cache hit (%s)" % u1)
    r, text2, u2, warm = ask(a, "Name three rivers.", stream=True, headers=NO_STORE)
    hit = u2.get("prompt_cache_hit_tokens", 0)
    check(hit > 950 and hit + u2["prompt_cache_miss_tokens"] == u2["prompt_tokens"] and
          u2["prompt_tokens_details"]["cached_tokens"] == hit,
          "second request with the same system prompt: %d of %d tokens hit" %
          (hit, u2.get("prompt_tokens", 0)))
    check(warm < cold, "time to first token: %.0f ms cold, %.0f ms with the prefix hit" %
          (cold * 1e3, warm * 1e3))
    r, text2b, u2b, _ = ask(b, "Name three rivers.", stream=True, headers=NO_STORE)
    check(u2b["prompt_cache_hit_tokens"] == 0 and text2b == text2,
          "the same request uncached (replica B) gives the same output")
    m = requests.get(a.url + "/metrics", timeout=10).text
    q = [l for l in m.splitlines() if l.startswith("deepseek:prefix_cache_hits_total")]
    check(q and float(q[0].split()[-1]) >= hit, "metrics: %s" % (q[0] if q else "missing"))


def response_tests(a, b, redis):
    r1, t1, u1, _ = ask(a, "Tell me about caches.")
    check(r1.headers.get("X-Cache") == "MISS", "response cache: first request MISS")
    r2, t2, u2, _ = ask(a, "Tell me about caches.")
    check(r2.headers.get("X-Cache") == "HIT" and t2 == t1 and u2 == u1,
          "the same request again: HIT, same text and usage")
    r3, t3, _, _ = ask(a, "Tell me about caches.", stream=True)
    check(r3.headers.get("X-Cache") == "HIT" and t3 == t1, "a streamed request: HIT, same text")
    r4, t4, _, _ = ask(b, "Tell me about caches.")
    check(r4.headers.get("X-Cache") == "HIT" and t4 == t1,
          "replica B (Redis only) gets A's entry: HIT")
    keys = subprocess.run(["redis-cli", "-p", str(redis.port), "--scan", "--pattern",
                           "deepseek:rc:-:*"], capture_output=True, text=True).stdout.split()
    raw = subprocess.run(["redis-cli", "-p", str(redis.port), "GET", keys[0]],
                         capture_output=True).stdout if keys else b""
    check(len(keys) == 1 and len(raw) > 28 and t1.encode()[:12] not in raw and
          b"choices" not in raw, "Redis holds the entry sealed (%d bytes, no plain text)" %
          len(raw))
    r5, t5, _, _ = ask(a, "Tell me about caches.", headers=NO_STORE)
    check(r5.headers.get("X-Cache") == "MISS" and t5 == t1,
          "Cache-Control: no-store bypasses the cache (MISS, same text)")
    ask(a, "Something new.", headers=NO_STORE)
    r6, _, _, _ = ask(a, "Something new.")
    check(r6.headers.get("X-Cache") == "MISS", "a no-store request stored nothing")
    r7, _, _, _ = ask(a, "Tell me about caches.", temperature=0.8)
    check("X-Cache" not in r7.headers, "temperature 0.8 without a seed is not cached")
    ask(a, "Tell me about caches.", temperature=0.8, seed=7)
    r8, _, _, _ = ask(a, "Tell me about caches.", temperature=0.8, seed=7)
    check(r8.headers.get("X-Cache") == "HIT", "temperature 0.8 with a seed is cached")
    r9, _, _, _ = ask(a, "Tell me about caches.", max_tokens=15)
    check(r9.headers.get("X-Cache") == "MISS", "another max_tokens is another entry")
    time.sleep(3.5)
    r10, _, _, _ = ask(a, "Tell me about caches.")
    r11, _, _, _ = ask(b, "Tell me about caches.")
    check(r10.headers.get("X-Cache") == "MISS" and r11.headers.get("X-Cache") == "HIT",
          "after the ttl (3 s) the entry is gone (MISS on A, which stores it again; HIT on B)")

    redis.stop()
    r12, t12, _, _ = ask(b, "While Redis is down.")
    r13, t13, _, _ = ask(b, "While Redis is down.")
    check(r12.status_code == 200 and r13.status_code == 200 and t12 == t13 and
          r13.headers.get("X-Cache") == "MISS",
          "Redis stopped: requests still succeed, as misses")
    check(b.text().count("the response cache runs without it") == 1,
          "one warning in the log while Redis is down")
    redis.start()
    # B retries after its back-off (1 s, doubling while Redis stayed down): the first
    # request after that stores the entry again, the next one hits it
    seen, deadline = [], time.time() + 15
    while time.time() < deadline and "HIT" not in seen:
        r14, t14, _, _ = ask(b, "While Redis is down.")
        seen.append(r14.headers.get("X-Cache"))
        time.sleep(0.3)
    check(seen[-1] == "HIT" and t14 == t12,
          "Redis restarted: the cache works again (%s)" % " ".join(seen))
    check("is back" in b.text(), "the log says Redis is back")


def main():
    redis = Redis()
    url = "redis://127.0.0.1:%d/0?ttl=3" % redis.port
    # one log dir: the replicas share the data keys that seal the Redis entries
    shared = os.path.join(TMP, "logs-shared")
    common = ("--parallel", "2", "--ctx-size", "2048", "--cache-url", url, "--log-dir", shared)
    a = Server("cache-a", "--cache-size", "16M", "--pid-file", os.path.join(TMP, "a.pid"),
               *common)
    b = Server("cache-b", "--cache-size", "0", "--pid-file", os.path.join(TMP, "b.pid"),
               *common)
    try:
        prefix_tests(a, b)
        response_tests(a, b, redis)
    finally:
        a.stop()
        b.stop()
        redis.stop()
    print("%d failed" % len(FAILS))
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
