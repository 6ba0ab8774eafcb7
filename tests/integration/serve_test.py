#!/usr/bin/env python3
"""Integration test of `deepseek serve` (run by test_serve.sh; needs DS_BIN, DS_MODEL,
DS_TMP). Starts the real binary on 127.0.0.1 and checks the REST API end to end.
Prints "ok - ..." / "FAIL - ..." lines; exits 1 if anything failed."""
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import requests

from dstest import FAILS, ServeProcess, check  # noqa: F401 (re-exported)

BIN, MODEL, TMP = os.environ["DS_BIN"], os.environ["DS_MODEL"], os.environ["DS_TMP"]
NAME = os.path.basename(MODEL)[:-len(".gguf")]

class Server(ServeProcess):
    """A serve process on a random free high port (config has no --port 0)."""

    def __init__(self, tag, *args):
        self.log_dir = os.path.join(TMP, "logs-" + tag)

        def argv():
            self.port = random.randint(20000, 60000)
            return [BIN, "serve", "-m", MODEL, "--host", "127.0.0.1", "--port", str(self.port),
                    "--log-dir", self.log_dir, "--config=", "--threads", "1",
                    "--grpc-port", "0", *args]
        self.start(argv, os.path.join(TMP, tag + ".out"))


def chat(s, body, **kw):
    return requests.post(s.url + "/v1/chat/completions", json=body, timeout=60, **kw)


def sse(resp):
    """The JSON payloads of an SSE response, and whether it ended with [DONE]."""
    chunks, done, keepalive = [], False, 0
    for raw in resp.iter_lines():  # bytes split on \n / \r only, as SSE says
        line = raw.decode("utf-8")
        if line.startswith(": keep-alive"):
            keepalive += 1
        elif line.startswith("data: "):
            if line == "data: [DONE]":
                done = True
            else:
                chunks.append(json.loads(line[6:]))
    return chunks, done, keepalive


def is_error_shape(r, status):
    try:
        e = r.json()["error"]
        shape = set(e) == {"message", "type", "param", "code"} and isinstance(e["message"], str)
    except (ValueError, KeyError, TypeError):
        shape = False
    return r.status_code == status and shape


def text_of(choice):
    m = choice["message"]
    return (m.get("reasoning_content") or "") + (m.get("content") or "")


def stream_text(chunks):
    out = ""
    for c in chunks:
        for ch in c["choices"]:
            d = ch.get("delta", {})
            out += (d.get("reasoning_content") or "") + (d.get("content") or "")
    return out


def test_basics(s):
    # The seed's client snippet, unchanged but for the URL.
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
        s.url + "/v1/chat/completions",
        json=data,
        headers=headers
    )
    seed_json = response.json()
    check(response.status_code == 200 and seed_json["choices"][0]["message"]["role"] ==
          "assistant", "the seed's REST client gets a chat completion")

    r = chat(s, {"model": NAME, "messages": [{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": "Hello there"}],
                 "temperature": 0, "max_tokens": 12})
    j = r.json()
    ch = j["choices"][0]
    check(r.status_code == 200 and j["id"].startswith("chatcmpl-") and
          j["object"] == "chat.completion" and j["model"] == NAME and
          isinstance(j["created"], int) and ch["index"] == 0 and
          ch["finish_reason"] in ("stop", "length") and ch["message"]["role"] == "assistant" and
          "reasoning_content" in ch["message"], "chat completion shape")
    u = j["usage"]
    check(u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] and
          u["prompt_cache_hit_tokens"] + u["prompt_cache_miss_tokens"] == u["prompt_tokens"] and
          u["completion_tokens"] == 12 and ch["finish_reason"] == "length",
          "usage adds up; max_tokens 12 gives 12 tokens and finish length")

    # Temperature 0 equals `deepseek generate --chat` on the same prompt.
    g = subprocess.run([BIN, "generate", "-m", MODEL, "--config=", "-t", "1", "--chat", "-p",
                        "Hello there", "--temp", "0", "-n", "12"], capture_output=True)
    r1 = chat(s, {"prompt": "Hello there", "temperature": 0, "max_tokens": 12}).json()
    r2 = chat(s, {"messages": [{"role": "user", "content": "Hello there"}], "temperature": 0,
                  "max_tokens": 12}).json()
    gen = g.stdout.decode("utf-8", "replace").rstrip("\n")
    check(g.returncode == 0 and text_of(r1["choices"][0]) == gen and
          text_of(r2["choices"][0]) == gen,
          "temperature 0 equals deepseek generate --chat (%r)" % gen[:40])

    # Streaming with include_usage.
    r = chat(s, {"messages": [{"role": "user", "content": "Hello there"}], "temperature": 0,
                 "max_tokens": 12, "stream": True, "stream_options": {"include_usage": True}},
             stream=True)
    chunks, done, _ = sse(r)
    body = chunks[:-1]
    check(r.headers.get("Content-Type", "").startswith("text/event-stream") and done and
          all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"]
              for c in chunks) and
          body[0]["choices"][0]["delta"].get("role") == "assistant" and
          all(c["usage"] is None for c in body) and chunks[-1]["choices"] == [] and
          chunks[-1]["usage"]["completion_tokens"] == 12 and
          body[-1]["choices"][0]["finish_reason"] == "length",
          "SSE stream: role first, usage null then a usage chunk, [DONE]")
    check(stream_text(chunks) == gen, "streamed text equals the non-streamed text")

    # /v1/completions with a list: each prompt its own choice, equal to it alone.
    r = requests.post(s.url + "/v1/completions", json={"prompt": ["The cat", "1, 2, 3"],
                      "temperature": 0, "max_tokens": 6}, timeout=60)
    j = r.json()
    solo = [requests.post(s.url + "/v1/completions", json={"prompt": p, "temperature": 0,
                          "max_tokens": 6}, timeout=60).json()["choices"][0]["text"]
            for p in ("The cat", "1, 2, 3")]
    check(r.status_code == 200 and j["object"] == "text_completion" and
          [c["index"] for c in j["choices"]] == [0, 1] and
          [c["text"] for c in j["choices"]] == solo, "/v1/completions with a list of prompts")

    m = requests.get(s.url + "/v1/models", timeout=10).json()
    check(m["object"] == "list" and m["data"][0]["id"] == NAME, "/v1/models lists the model")
    check(requests.get(s.url + "/health", timeout=10).status_code == 200 and
          requests.get(s.url + "/ready", timeout=10).status_code == 200, "/health and /ready")
    mt = requests.get(s.url + "/metrics", timeout=10)
    check(mt.status_code == 200 and "generation_tokens_total" in mt.text, "/metrics")


def test_errors(s):
    url = s.url + "/v1/chat/completions"
    cases = [
        ("malformed JSON", requests.post(url, data=b"{nope", timeout=10), 400),
        ("not an object", requests.post(url, data=b"[1]", timeout=10), 400),
        ("wrong type", chat(s, {"prompt": "x", "temperature": "hot"}), 400),
        ("out of range", chat(s, {"prompt": "x", "temperature": 5}), 400),
        ("max_tokens 0", chat(s, {"prompt": "x", "max_tokens": 0}), 400),
        ("five stop strings", chat(s, {"prompt": "x", "stop": list("abcde")}), 400),
        ("no messages", chat(s, {"temperature": 0}), 400),
        ("bad role", chat(s, {"messages": [{"role": "wizard", "content": "x"}]}), 400),
        ("context length", chat(s, {"prompt": "word " * 600, "max_tokens": 1}), 400),
        ("unknown model", chat(s, {"model": "gpt-4", "prompt": "x"}), 404),
        ("unknown route", requests.get(s.url + "/v2/nothing", timeout=10), 404),
        ("GET on a POST route", requests.get(url, timeout=10), 405),
        ("body over --max-body", requests.post(url, data=b" " * 6000, timeout=10), 413),
    ]
    for what, r, status in cases:
        check(is_error_shape(r, status), "%s -> %d with the OpenAI error body (got %d)"
              % (what, status, r.status_code))
    r = chat(s, {"prompt": "word " * 600, "max_tokens": 1})
    check(r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded",
          "context_length_exceeded code (%s)" % r.text[:200])


def test_stop_and_n(s):
    base = chat(s, {"prompt": "Hello there", "temperature": 0, "max_tokens": 12}).json()
    full = text_of(base["choices"][0])
    stop = full[3:5]
    r = chat(s, {"prompt": "Hello there", "temperature": 0, "max_tokens": 12, "stop": stop})
    got = text_of(r.json()["choices"][0])
    check(got == full[:full.find(stop)] and r.json()["choices"][0]["finish_reason"] == "stop",
          "stop string cuts the output before it (finish stop)")
    r = chat(s, {"prompt": "Hello there", "temperature": 0, "max_tokens": 5, "n": 2}).json()
    check(len(r["choices"]) == 2 and r["choices"][0]["message"] == r["choices"][1]["message"],
          "n=2 at temperature 0 gives two equal choices")


def stream_one(s, prompt, out, i):
    try:
        r = chat(s, {"prompt": prompt, "temperature": 0, "max_tokens": 10, "stream": True},
                 stream=True)
        if r.status_code != 200:
            out[i] = (r.status_code, is_error_shape(r, r.status_code), None)
            return
        chunks, done, _ = sse(r)
        out[i] = (200, done, stream_text(chunks))
    except Exception as e:  # a hang or a broken stream is a failure, not a crash
        out[i] = ("exception", False, repr(e))


def test_concurrency(s):
    prompts = ["Tell me about %s" % w for w in
               ("cats", "dogs", "the sea", "rain", "tea", "maps", "stars", "bread")]
    solo = {}
    for p in prompts:
        solo[p] = text_of(chat(s, {"prompt": p, "temperature": 0, "max_tokens": 10})
                          .json()["choices"][0])
    out = [None] * len(prompts)
    ts = [threading.Thread(target=stream_one, args=(s, p, out, i))
          for i, p in enumerate(prompts)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    hung = any(t.is_alive() for t in ts)
    codes = [o[0] if o else None for o in out]
    check(not hung and all(c in (200, 429, 503) for c in codes),
          "8 concurrent streams on --parallel 4 --queue 2: %s in %.1fs" % (codes, time.time() - t0))
    check(codes.count(200) >= 4 and codes.count(503) >= 1 and
          all(o[1] for o in out if o and o[0] in (200, 503)),
          "at least 4 served; queue full answers 503 with the error body")
    same = [o[2] == solo[p] for o, p in zip(out, prompts) if o and o[0] == 200]
    check(all(same), "every served temperature-0 stream equals its solo output")


def running(s):
    for line in requests.get(s.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("deepseek:num_requests_running"):
            return float(line.split()[-1])
    return -1


def test_disconnect(s):
    sock = socket.create_connection(("127.0.0.1", s.port))
    body = json.dumps({"prompt": "Count", "max_tokens": 1500, "stream": True}).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                 b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    got = b""
    while got.count(b"data: ") < 3:
        got += sock.recv(4096)
    busy = running(s)
    sock.close()
    deadline = time.time() + 10
    while time.time() < deadline and running(s) != 0:
        time.sleep(0.05)
    check(busy == 1 and running(s) == 0, "a client gone mid-stream frees its slot")


def test_keys(tag):
    key = "sk-test-" + "%032x" % random.getrandbits(128)
    path = os.path.join(TMP, "keys")
    with open(path, "w") as f:
        f.write("id=t1 sha256=%s rpm=2\n" % hashlib.sha256(key.encode()).hexdigest())
    os.chmod(path, 0o600)
    s = Server(tag, "--api-keys", path)
    try:
        body = {"prompt": "x", "max_tokens": 1}
        check(is_error_shape(chat(s, body), 401), "no key -> 401")
        check(is_error_shape(chat(s, body, headers={"Authorization": "Bearer sk-wrong"}), 401),
              "wrong key -> 401")
        auth = {"Authorization": "Bearer " + key}
        check(is_error_shape(requests.get(s.url + "/metrics", timeout=10), 401) and
              requests.get(s.url + "/metrics", headers=auth, timeout=10).status_code == 200 and
              requests.get(s.url + "/health", timeout=10).status_code == 200 and
              requests.get(s.url + "/ready", timeout=10).status_code == 200,
              "with keys: /metrics needs one, /health and /ready do not")
        check(requests.get(s.url + "/v1/models", headers={"X-Api-Key": key},
                           timeout=10).status_code == 200, "X-Api-Key header works")
        codes = [chat(s, body, headers=auth) for _ in range(3)]
        check([r.status_code for r in codes] == [200, 200, 429] and
              is_error_shape(codes[2], 429) and codes[2].headers.get("Retry-After"),
              "rpm=2: third request -> 429 with Retry-After")
        logs = open(os.path.join(s.log_dir, "access.log")).read()
        check(key not in logs and "key=t1" in logs and "status=429" in logs,
              "access log names the key id, never the key")
    finally:
        s.stop()


def test_drain(s):
    res = {}

    def long_stream():
        r = chat(s, {"prompt": "Go", "temperature": 0, "max_tokens": 60, "stream": True},
                 stream=True)
        res["chunks"], res["done"], _ = sse(r)

    t = threading.Thread(target=long_stream)
    t.start()
    while running(s) < 1:
        time.sleep(0.02)
    s.p.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    ready = requests.get(s.url + "/ready", timeout=10)
    new = chat(s, {"prompt": "x", "max_tokens": 1})
    check(ready.status_code == 503 and is_error_shape(new, 503) and
          new.headers.get("Retry-After"), "draining: /ready 503, new requests 503")
    t.join(30)
    rc = s.p.wait(30)
    check(res.get("done") and res["chunks"][-1]["choices"][0]["finish_reason"] == "length",
          "the in-flight stream finished during the drain")
    check(rc == 0 and not os.path.exists(os.path.join(s.log_dir, "deepseek-serve.pid")),
          "SIGTERM: exit 0, pid file removed")


def main():
    t0 = time.time()
    # --cache-size 0: the response cache would answer the repeated temperature-0
    # requests at once (test_cache.sh tests it), and the queue would never fill
    s = Server("main", "--parallel", "4", "--queue", "2", "--ctx-size", "512",
               "--max-body", "4k", "--cache-size", "0")
    try:
        check(os.path.exists(os.path.join(s.log_dir, "deepseek-serve.pid")), "pid file written")
        test_basics(s)
        test_errors(s)
        test_stop_and_n(s)
        test_concurrency(s)
        test_disconnect(s)
        test_drain(s)
    finally:
        s.stop()
    test_keys("keys")
    print("%d failed; %.1fs" % (len(FAILS), time.time() - t0))
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
