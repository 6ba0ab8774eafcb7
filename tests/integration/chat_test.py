"""deepseek chat against a real `deepseek serve` (tiny R1-distill model) on 127.0.0.1.

One server with --parallel 1 --queue 0 and two keys: `lim` (concurrent=1) and `free`
(no limits). A "holder" opens a long stream to take the key's concurrency or the only
slot, so the next request gets 429 (concurrent limit) or 503 (queue full), both with
Retry-After: 1. Checks: one-shot answers (JSON and streamed, reasoning shown as
"[thinking] " lines) equal the API's answer; the client succeeds after waiting what
Retry-After says (1 s, not the 4 s back-off); 3 refusals exit 1 with the last error;
4xx not retried; connection refused retried; the interactive mode in a pseudo-terminal
(history, Ctrl-C stops an answer and returns to the prompt, Ctrl-C/Ctrl-D exit 0).
Stdlib only. Env: DS_BIN, DS_MODEL, DS_TMP.
"""
import json
import os
import pty
import random
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from dstest import FAILS, ServeProcess, check  # noqa: F401 (FAILS: chat_grpc_test)

BIN, MODEL, TMP = os.environ["DS_BIN"], os.environ["DS_MODEL"], os.environ["DS_TMP"]
class Server(ServeProcess):
    def __init__(self, *args, grpc=False):
        self.log_dir = os.path.join(TMP, "logs")

        def argv():
            self.port = random.randint(20000, 60000)
            self.grpc_port = random.randint(20000, 60000) if grpc else 0
            return [BIN, "serve", "-m", MODEL, "--host", "127.0.0.1", "--port", str(self.port),
                    "--log-dir", self.log_dir, "--config=", "--threads", "1",
                    # no gRPC listener unless asked, then on a random port (tests run in
                    # parallel; 50051 is shared), and no response cache (repeated
                    # temperature-0 requests must reach the queue)
                    "--grpc-port", str(self.grpc_port), "--cache-size", "0", *args]
        self.start(argv, os.path.join(TMP, "serve.out"))

    def access_log(self):
        with open(os.path.join(self.log_dir, "access.log")) as f:
            return [dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
                    for line in f]


def add_key(name, *limits):
    path = os.path.join(TMP, "keys")
    out = subprocess.run([BIN, "keys", "add", name, *limits, "--api-keys", path],
                         capture_output=True, text=True, check=True).stdout.strip()
    kf = os.path.join(TMP, "key-" + name)
    with open(kf, "w") as f:
        f.write(out + "\n")
    return out, kf


def chat(s, kf, *args, timeout=60):
    t0 = time.time()
    p = subprocess.run([BIN, "chat", "--url", s.url, "--api-key-file", kf, *args],
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr, time.time() - t0


def api(s, key, body):
    req = urllib.request.Request(s.url + "/v1/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json",
                                  "Authorization": "Bearer " + key})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def hold(s, key):
    """A long stream that holds the key's concurrency and the only slot."""
    sock = socket.create_connection(("127.0.0.1", s.port))
    body = json.dumps({"prompt": "Count", "max_tokens": 1500, "stream": True}).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                 + key.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\n\r\n" + body)
    got = b""
    while b"data: " not in got:
        got += sock.recv(4096)
    return sock


def expected_output(ans):
    """What chat prints for a non-tty stdout: [thinking] lines, then the answer."""
    m = ans["choices"][0]["message"]
    shown = lambda t: re.sub("[\x00-\x08\x0b-\x1f\x7f]", "?", t or "")  # noqa: E731
    out, r = "", shown(m.get("reasoning_content"))
    if r:
        out = "".join("[thinking] " + line for line in re.findall("[^\n]*\n|[^\n]+$", r))
        if not out.endswith("\n"):
            out += "\n"
    c = shown(m.get("content"))
    out += c
    return out if not out or out.endswith("\n") else out + "\n"


def test_one_shot(s, key, kf):
    body = {"messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "Hello there"}],
            "temperature": 0, "max_tokens": 24}
    want = expected_output(api(s, key, body))
    args = ["--system", "Be brief.", "--temperature", "0", "--max-tokens", "24", "Hello", "there"]
    rc, out, err, _ = chat(s, kf, *args)
    check(rc == 0 and out == want and out.startswith("[thinking] "),
          "one-shot answer equals the API's, reasoning as [thinking] lines (rc %d, %r)"
          % (rc, out[:60]))
    rc, out2, err, _ = chat(s, kf, "--stream", *args)
    check(rc == 0 and out2 == want, "--stream prints the same text (rc %d, %s)" % (rc, err[-200:]))
    rc, out, err, _ = chat(s, kf, "--model", "no-such-model", "Hi")
    check(rc == 1 and "HTTP 404" in err and "retrying" not in err,
          "a 404 is not retried: exit 1 with the server's message (%s)" % err.strip())


def test_refusals(s, lim_key, lim_kf, free_key, free_kf):
    args = ["--temperature", "0", "--max-tokens", "8", "Hi"]
    for what, key, kf, status in (("429 (concurrent limit)", lim_key, lim_kf, "429"),
                                  ("503 (queue full)", free_key, free_kf, "503")):
        sock = hold(s, key)
        p = subprocess.Popen([BIN, "chat", "--url", s.url, "--api-key-file", kf, *args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t0 = time.time()
        time.sleep(0.4)
        sock.close()  # frees the slot within a step: the retry after 1 s gets in
        out, err = p.communicate(timeout=60)
        took = time.time() - t0
        retries = [l for l in err.splitlines() if "retrying in" in l]
        check(p.returncode == 0 and out.strip() and len(retries) == 1 and
              ("HTTP %s" % status) in retries[0] and "retrying in 1 s as the server asked" in
              retries[0] and 1.0 <= took < 3.5,
              "%s: succeeds after the Retry-After wait of 1 s (%.1fs, %s)"
              % (what, took, retries))
        time.sleep(0.3)
    # Held for longer than the whole schedule (1 s + 1 s): 3 refusals, the last error.
    sock = hold(s, free_key)
    rc, out, err, took = chat(s, free_kf, *args)
    sock.close()
    lines = err.strip().splitlines()
    check(rc == 1 and len([l for l in lines if "retrying in 1 s" in l]) == 2 and
          "HTTP 503 server_is_overloaded" in lines[-1] and "(3 attempts)" in lines[-1] and
          out == "" and 2.0 <= took < 4.0,
          "3 times 503: exit 1 with the last error after %.1fs (%s)" % (took, lines[-1:]))
    time.sleep(0.3)


def test_refused(kf):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    t0 = time.time()
    p = subprocess.run([BIN, "chat", "--url", "http://127.0.0.1:%d" % port, "--api-key-file",
                        kf, "Hi"], capture_output=True, text=True, timeout=60)
    took = time.time() - t0
    lines = p.stderr.strip().splitlines()
    check(p.returncode == 1 and len([l for l in lines if "retrying in 4 s (attempt" in l]) == 2
          and "(3 attempts)" in lines[-1] and 8.0 <= took < 11.0,
          "connection refused: retried after 4 s and 4 s, then exit 1 (%.1fs)" % took)


class Term:
    """deepseek chat on a pseudo-terminal."""

    def __init__(self, *args):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execv(BIN, [BIN, "chat", *args])
        self.buf = b""

    def read_until(self, pat, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(pat, self.buf)
            if m:
                return m
            r, _, _ = select.select([self.fd], [], [], 0.1)
            if r:
                try:
                    self.buf += os.read(self.fd, 4096)
                except OSError:
                    break
        return re.search(pat, self.buf)

    def send(self, b):
        os.write(self.fd, b)

    def wait(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(st)
            self.read_until(b"$^", 0.1)
        os.kill(self.pid, signal.SIGKILL)
        return None


def test_interactive(s, kf):
    base = ["--url", s.url, "--api-key-file", kf, "--stream", "--temperature", "0"]
    # A conversation: two answers, the second sent with the first in its history.
    t = Term(*base, "--max-tokens", "12")
    check(t.read_until(rb"\n?> $", 10) is not None, "interactive: prompt '> ' on a terminal")
    n0 = len(s.access_log())
    t.send(b"Please remember the number forty-two and the colour blue\n")
    first = t.read_until(rb"\x1b\[2m\[thinking\] (.|\n)*\n> $", 30)
    t.send(b"Hi\n")
    t.buf = b""
    second = t.read_until(rb"\[thinking\](.|\n)*\n> $", 30)
    t.send(b"\x04")  # Ctrl-D at the prompt
    rc = t.wait()
    log = [e for e in s.access_log()[n0:] if e.get("status") == "200"]
    check(first is not None and second is not None and rc == 0,
          "interactive: two answers (reasoning dimmed), Ctrl-D exits 0 (rc %s)" % rc)
    check(len(log) == 2 and int(log[1]["prompt_tokens"]) > int(log[0]["prompt_tokens"]),
          "interactive: the second request carries the first exchange (prompt tokens %s)"
          % [e.get("prompt_tokens") for e in log])
    # Ctrl-C in the middle of a long answer: back to the prompt, the session goes on.
    t = Term(*base, "--max-tokens", "1500")
    t.read_until(rb"> $", 10)
    n0 = len(s.access_log())
    t.send(b"Tell me a long story\n")
    started = t.read_until(rb"\[thinking\] \S", 30)
    t0 = time.time()
    t.send(b"\x03")
    back = t.read_until(rb"\[cancelled\]\r?\n(.|\n)*> $", 5)
    took = time.time() - t0
    check(started is not None and back is not None and took < 2,
          "interactive: Ctrl-C mid-answer prints [cancelled] and the prompt in %.2fs" % took)
    time.sleep(0.5)
    log = s.access_log()[n0:]
    check(len(log) == 1 and int(log[0].get("completion_tokens", "0").replace("-", "0")) < 1500,
          "interactive: the server stopped generating (%s)" % [(e.get("finish"),
          e.get("completion_tokens")) for e in log])
    t.send(b"\x03")  # Ctrl-C at the prompt ends the session
    rc = t.wait()
    check(rc == 0, "interactive: Ctrl-C at the prompt exits 0 (rc %s)" % rc)


def main():
    t0 = time.time()
    lim_key, lim_kf = add_key("lim", "--concurrent", "1")
    free_key, free_kf = add_key("free")
    s = Server("--parallel", "1", "--queue", "0", "--ctx-size", "2048",
               "--api-keys", os.path.join(TMP, "keys"))
    try:
        test_one_shot(s, free_key, free_kf)
        test_refusals(s, lim_key, lim_kf, free_key, free_kf)
        test_interactive(s, free_kf)
        log = open(os.path.join(s.log_dir, "deepseek.log")).read() + s.text()
        check(free_key not in log and lim_key not in log, "no key in the server's logs")
    finally:
        s.stop()
    test_refused(free_kf)
    print("%d failed; %.1fs" % (len(FAILS), time.time() - t0))
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
