#!/usr/bin/python3
"""Clients of `deepseek serve` as users write them (run by test_serve_sdk.sh with Debian's
python3, python3-requests and python3-tenacity; needs DS_BIN, DS_MODEL, DS_TMP, DS_NODE_DIR
and optionally DS_NODE_SKIP). The seed's REST snippet and its tenacity retry snippet, each
unchanged but for the URL (and the retry snippet's elided arguments), and the official
openai SDK for Node (tests/integration/node/sdk_test.mjs). Finally no log file may hold
any key the test used. Prints "ok - ..." / "FAIL - ..." lines; exits 1 on a failure."""
import hashlib
import os
import random
import subprocess
import sys
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_test  # noqa: E402  (Server, check and the error-shape helper)
from serve_test import Server, check, is_error_shape, NAME, TMP  # noqa: E402

BAD_KEY = "sk-not-a-valid-key"  # what sdk_test.mjs sends; must not reach a log either


def new_key():
    return "sk-test-%032x" % random.getrandbits(128)


def seed_rest_client(url):
    """../shared/seed/snippets/rest_client.py, only the URL changed."""
    headers = {
        "Content-Type": "application/json",
        "Authorization": "Bearer YOUR_API_KEY"  # 如启用认证
    }
    data = {
        "prompt": "解释量子计算的基本原理",
        "temperature": 0.7,
        "max_tokens": 200
    }
    response = requests.post(
        url + "/v1/chat/completions",
        json=data,
        headers=headers
    )
    print(response.json())
    return response


def test_seed_rest():
    s = Server("open", "--log-level", "debug")
    try:
        r = seed_rest_client(s.url)
        j = r.json()
        check(r.status_code == 200 and j["choices"][0]["message"]["role"] == "assistant" and
              j["usage"]["completion_tokens"] >= 1,
              "the seed's REST snippet works with requests %s from %s"
              % (requests.__version__, os.path.dirname(requests.__file__)))
    finally:
        check(s.stop() == 0, "server without keys: SIGTERM exits 0")
    return [s]


def test_tenacity(s, key):
    """The seed's retry snippet against a key at rpm=20 whose bucket is empty: the first
    attempt gets 429, tenacity waits 4 s (its minimum), by then the bucket (one request
    per 3 s) has refilled, and the second attempt succeeds."""
    from tenacity import retry, stop_after_attempt, wait_exponential
    url = s.url + "/v1/chat/completions"
    headers = {"Authorization": "Bearer " + key}

    # The seed's retry wrapper, verbatim but for the arguments of requests.post(...).
    @retry(stop=stop_after_attempt(3), wait=wait_exponential(multiplier=1, min=4, max=10))
    def safe_api_call(prompt):
        response = requests.post(url, json={"prompt": prompt, "max_tokens": 2},
                                 headers=headers, timeout=60)
        response.raise_for_status()
        return response

    statuses = []
    for _ in range(30):  # rpm=20: the bucket holds 20
        r = requests.post(url, json={"prompt": "x", "max_tokens": 1}, headers=headers,
                          timeout=60)
        statuses.append(r.status_code)
        if r.status_code == 429:
            break
    limited = statuses[-1] == 429
    check(limited and statuses.count(200) == 20 and is_error_shape(r, 429) and
          r.headers.get("Retry-After") and r.headers.get("x-ratelimit-limit-requests") == "20",
          "rpm=20: the 21st request in a burst gets 429 with Retry-After and x-ratelimit-*")
    t0 = time.time()
    resp = safe_api_call("Hello there")
    took = time.time() - t0
    attempts = safe_api_call.retry.statistics.get("attempt_number")
    check(limited and resp.status_code == 200 and attempts == 2 and took >= 3.9,
          "the seed's tenacity snippet retries after 429 and succeeds (attempts %s, %.1fs)"
          % (attempts, took))


def run_node(s, key):
    skip = os.environ.get("DS_NODE_SKIP")
    if skip:
        print("skip - openai SDK for Node: " + skip)
        return
    env = dict(os.environ, DS_URL=s.url, DS_KEY=key, DS_MODEL_NAME=NAME)
    p = subprocess.run(["node", os.path.join(os.environ["DS_NODE_DIR"], "sdk_test.mjs")],
                       env=env, capture_output=True, timeout=120)
    out = p.stdout.decode("utf-8", "replace")
    print(out.rstrip("\n"))
    check(p.returncode == 0 and "FAIL" not in out and out.count("ok - ") >= 6,
          "openai SDK for Node: chat, stream with include_usage, typed errors (rc %d%s)"
          % (p.returncode, (": " + p.stderr.decode("utf-8", "replace")[-300:])
             if p.returncode else ""))


def test_keyed():
    keys = {"node": new_key(), "lim": new_key()}
    path = os.path.join(TMP, "sdk-keys")
    with open(path, "w") as f:
        f.write("id=node sha256=%s\n" % hashlib.sha256(keys["node"].encode()).hexdigest())
        f.write("id=lim sha256=%s rpm=20\n" % hashlib.sha256(keys["lim"].encode()).hexdigest())
    os.chmod(path, 0o600)
    s = Server("keyed", "--api-keys", path, "--log-level", "debug")
    try:
        run_node(s, keys["node"])
        test_tenacity(s, keys["lim"])
    finally:
        check(s.stop() == 0, "keyed server: SIGTERM exits 0")
    with open(os.path.join(s.log_dir, "access.log")) as f:
        log = f.read()
    check("key=node" in log and "key=lim" in log and "status=429" in log,
          "the access log names the keys' ids (so the scan below reads real request lines)")
    return [s], list(keys.values())


def scan_logs(servers, secrets):
    """Every file the servers wrote (log dir, stdout/stderr capture) is free of the keys."""
    files = [os.path.join(TMP, "open.out"), os.path.join(TMP, "keyed.out")]
    for s in servers:
        for root, _, names in os.walk(s.log_dir):
            files += [os.path.join(root, n) for n in names]
    leaks, size = [], 0
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        size += len(data)
        leaks += ["%s in %s" % (k[:8] + "...", os.path.basename(path)) for k in secrets
                  if k.encode() in data]
    check(size > 0 and not leaks, "no log file holds a key the test used (%d files, %d bytes%s)"
          % (len(files), size, (": " + ", ".join(leaks)) if leaks else ""))


def main():
    t0 = time.time()
    servers = test_seed_rest()
    keyed, keys = test_keyed()
    scan_logs(servers + keyed, keys + [BAD_KEY, "YOUR_API_KEY"])
    fails = serve_test.FAILS
    print("%d failed; %.1fs" % (len(fails), time.time() - t0))
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
