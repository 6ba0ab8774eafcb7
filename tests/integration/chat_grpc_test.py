"""deepseek chat --grpc against a real `deepseek serve` (tiny R1-distill model) on 127.0.0.1.

The server of chat_test.py (--parallel 1 --queue 0, keys `lim` with concurrent=1 and
`free`) with its gRPC listener on a random port. Checks: at temperature 0 the gRPC
answer prints exactly what the REST client prints, unary and streamed, and the calls
really went over gRPC (access log routes); a wrong key exits 1 at once with one line
naming UNAUTHENTICATED; an unknown model is NOT_FOUND, not retried; the key's
concurrency limit gives RESOURCE_EXHAUSTED and a full queue UNAVAILABLE, both with
retry-after 1, and the client succeeds after waiting that second (not the 4 s
back-off); 3 refusals exit 1 with the last error; the interactive mode keeps history
and Ctrl-C stops an answer; a stopped server is tried 3 times (4 s, 4 s) and the
last connection error printed. Stdlib only. Env: DS_BIN, DS_MODEL, DS_TMP.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chat_test import BIN, FAILS, TMP, Server, Term, add_key, check, hold  # noqa: E402


def gchat(s, kf, *args, timeout=60):
    t0 = time.time()
    p = subprocess.run([BIN, "chat", "--grpc", "--url", "127.0.0.1:%d" % s.grpc_port,
                        "--api-key-file", kf, *args], capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr, time.time() - t0


def rchat(s, kf, *args):
    p = subprocess.run([BIN, "chat", "--url", s.url, "--api-key-file", kf, *args],
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def grpc_routes(s, n0):
    return [e.get("route") for e in s.access_log()[n0:] if e.get("proto") == "grpc"]


def test_same_as_rest(s, kf):
    args = ["--system", "Be brief.", "--temperature", "0", "--max-tokens", "24", "Hello",
            "there"]
    rc, want, err = rchat(s, kf, *args)
    check(rc == 0 and want.startswith("[thinking] "), "REST reference answer (rc %d)" % rc)
    n0 = len(s.access_log())
    rc, out, err, _ = gchat(s, kf, *args)
    check(rc == 0 and out == want, "--grpc prints what REST prints (rc %d, %r vs %r, %s)"
          % (rc, out[:50], want[:50], err.strip()))
    rc, out2, err, _ = gchat(s, kf, "--stream", *args)
    check(rc == 0 and out2 == want, "--grpc --stream prints the same (rc %d, %s)"
          % (rc, err.strip()))
    p = subprocess.run([BIN, "chat", "--grpc", "--url", "http://127.0.0.1:%d/" % s.grpc_port,
                        "--api-key-file", kf, "--stream", *args], capture_output=True,
                       text=True, timeout=60)
    check(p.returncode == 0 and p.stdout == want, "--url http://host:port/ form works")
    routes = grpc_routes(s, n0)
    check(routes == ["/DeepSeekService/GenerateText", "/DeepSeekService/GenerateTextStream",
                     "/DeepSeekService/GenerateTextStream"],
          "the calls went over gRPC, unary then streaming (%s)" % routes)


def test_refused_at_once(s, kf):
    n0 = len(s.access_log())
    t0 = time.time()
    p = subprocess.run([BIN, "chat", "--grpc", "--url", "127.0.0.1:%d" % s.grpc_port,
                        "--api-key", "sk-not-a-key", "Hi"], capture_output=True, text=True,
                       timeout=60)
    took = time.time() - t0
    lines = p.stderr.strip().splitlines()
    check(p.returncode == 1 and len(lines) == 1 and "gRPC UNAUTHENTICATED (16)" in lines[0]
          and "invalid API key" in lines[0] and p.stdout == "" and took < 2,
          "a wrong key: exit 1 at once, one line naming UNAUTHENTICATED (%s)" % lines)
    check(len(grpc_routes(s, n0)) == 1, "a wrong key is not retried (%d calls)"
          % len(grpc_routes(s, n0)))
    rc, out, err, _ = gchat(s, kf, "--model", "no-such-model", "Hi")
    check(rc == 1 and "gRPC NOT_FOUND (5)" in err and "retrying" not in err,
          "an unknown model: NOT_FOUND, not retried (%s)" % err.strip())


def test_retry_hints(s, lim_key, lim_kf, free_key, free_kf):
    args = ["--temperature", "0", "--max-tokens", "8", "Hi"]
    for what, key, kf, status in (("RESOURCE_EXHAUSTED (key concurrency)", lim_key, lim_kf,
                                   "RESOURCE_EXHAUSTED (8)"),
                                  ("UNAVAILABLE (queue full)", free_key, free_kf,
                                   "UNAVAILABLE (14)")):
        sock = hold(s, key)
        p = subprocess.Popen([BIN, "chat", "--grpc", "--url", "127.0.0.1:%d" % s.grpc_port,
                              "--api-key-file", kf, *args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t0 = time.time()
        time.sleep(0.4)
        sock.close()  # frees the slot within a step: the retry after 1 s gets in
        out, err = p.communicate(timeout=60)
        took = time.time() - t0
        retries = [l for l in err.splitlines() if "retrying in" in l]
        check(p.returncode == 0 and out.strip() and len(retries) == 1 and status in retries[0]
              and "retrying in 1 s as the server asked" in retries[0] and 1.0 <= took < 3.5,
              "%s: succeeds after the hinted wait of 1 s (%.1fs, %s)" % (what, took, retries))
        time.sleep(0.3)
    # Held for longer than the whole schedule (1 s + 1 s): 3 refusals, the last error.
    sock = hold(s, free_key)
    rc, out, err, took = gchat(s, free_kf, *args)
    sock.close()
    lines = err.strip().splitlines()
    check(rc == 1 and len([l for l in lines if "retrying in 1 s" in l]) == 2 and
          "gRPC UNAVAILABLE (14)" in lines[-1] and "(3 attempts)" in lines[-1] and
          out == "" and 2.0 <= took < 4.0,
          "3 times UNAVAILABLE: exit 1 with the last error after %.1fs (%s)" % (took, lines[-1:]))
    time.sleep(0.3)


def test_interactive(s, kf):
    base = ["--grpc", "--url", "127.0.0.1:%d" % s.grpc_port, "--api-key-file", kf, "--stream",
            "--temperature", "0"]
    t = Term(*base, "--max-tokens", "12")
    check(t.read_until(rb"\n?> $", 10) is not None, "interactive --grpc: prompt '> '")
    n0 = len(s.access_log())
    t.send(b"Please remember the number forty-two and the colour blue\n")
    first = t.read_until(rb"\x1b\[2m\[thinking\] (.|\n)*\n> $", 30)
    t.send(b"Hi\n")
    t.buf = b""
    second = t.read_until(rb"\[thinking\](.|\n)*\n> $", 30)
    t.send(b"\x04")
    rc = t.wait()
    log = [e for e in s.access_log()[n0:] if e.get("status") == "200"]
    check(first is not None and second is not None and rc == 0,
          "interactive --grpc: two answers, Ctrl-D exits 0 (rc %s)" % rc)
    check(len(log) == 2 and all(e.get("proto") == "grpc" for e in log) and
          int(log[1]["prompt_tokens"]) > int(log[0]["prompt_tokens"]),
          "interactive --grpc: the second call carries the first exchange (prompt tokens %s)"
          % [e.get("prompt_tokens") for e in log])
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
          "interactive --grpc: Ctrl-C mid-answer prints [cancelled] and the prompt in %.2fs"
          % took)
    time.sleep(0.5)
    log = s.access_log()[n0:]
    check(len(log) == 1 and log[0].get("finish") == "abort" and
          int(log[0].get("completion_tokens", "0").replace("-", "0")) < 1500,
          "interactive --grpc: the server stopped generating (%s)"
          % [(e.get("finish"), e.get("completion_tokens")) for e in log])
    t.send(b"\x03")
    check(t.wait() == 0, "interactive --grpc: Ctrl-C at the prompt exits 0")


def test_stopped(grpc_port, kf):
    t0 = time.time()
    p = subprocess.run([BIN, "chat", "--grpc", "--url", "127.0.0.1:%d" % grpc_port,
                        "--api-key-file", kf, "Hi"], capture_output=True, text=True, timeout=60)
    took = time.time() - t0
    lines = p.stderr.strip().splitlines()
    check(p.returncode == 1 and len([l for l in lines if "retrying in 4 s (attempt" in l]) == 2
          and "gRPC UNAVAILABLE (14)" in lines[-1] and "(3 attempts)" in lines[-1]
          and 8.0 <= took < 11.0,
          "stopped server: tried 3 times (4 s, 4 s), then exit 1 with the last error "
          "(%.1fs, %s)" % (took, lines[-1:]))


def main():
    t0 = time.time()
    lim_key, lim_kf = add_key("lim", "--concurrent", "1")
    free_key, free_kf = add_key("free")
    s = Server("--parallel", "1", "--queue", "0", "--ctx-size", "2048",
               "--api-keys", os.path.join(TMP, "keys"), grpc=True)
    try:
        test_same_as_rest(s, free_kf)
        test_refused_at_once(s, free_kf)
        test_retry_hints(s, lim_key, lim_kf, free_key, free_kf)
        test_interactive(s, free_kf)
    finally:
        s.stop()
    test_stopped(s.grpc_port, free_kf)
    print("%d failed; %.1fs" % (len(FAILS), time.time() - t0))
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
