#!/usr/bin/env python3
"""Integration test of GDPR erasure (run by test_erase.sh; needs DS_BIN, DS_MODEL, DS_TMP,
DS_SOURCE_DIR; DS_GRPC=1 when python3-grpcio is usable).
A real redis-server and `deepseek serve` with two user keys (A, B), an admin key,
--log-prompts and the response cache in memory and Redis. A and B send requests with
distinctive prompts over REST (chat, streaming chat, completions) and gRPC (unary,
streaming). Then `deepseek erase --key-id A` (through the running server) and checks:
no byte of A's prompts, of A's sealed records or of A's data key is in any file under
the server's directories; A's keystore record is zeros; A's Redis keys are gone and
A's next request is a cache MISS; B's prompt log and cache are intact; the audit
chain verifies and holds the erase; DELETE /v1/admin/subjects/B answers 401 / 403 /
200 as it should; an offline erase with the server stopped succeeds (idempotent).
Prints "ok - ..." / "FAIL - ..." lines; exits 1 if anything failed."""
import base64
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import requests

from dstest import FAILS, ServeProcess, check, free_port

BIN, MODEL, TMP = os.environ["DS_BIN"], os.environ["DS_MODEL"], os.environ["DS_TMP"]
SRC = os.environ["DS_SOURCE_DIR"]
GRPC = os.environ.get("DS_GRPC") == "1"
LOG = os.path.join(TMP, "logs")
KEYS = {"A": "sk-erase-test-user-A-0123456789", "B": "sk-erase-test-user-B-0123456789",
        "ops": "sk-erase-test-admin-0123456789"}
ADMIN_SETTING = "erase-test-admin-setting-key-42"
SECRETS = {
    "A": ["A-SECRET-chat-kumquat-7731", "A-SECRET-stream-persimmon-4410",
          "A-SECRET-completion-quince-9902"] +
         (["A-SECRET-grpc-tamarind-5518", "A-SECRET-grpcstream-loquat-6620"] if GRPC else []),
    "B": ["B-SECRET-chat-mangosteen-2207", "B-SECRET-completion-rambutan-3318"],
}


def start_redis():
    port = random.randint(20000, 60000)
    out = open(os.path.join(TMP, "redis.out"), "w+")
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", TMP], stdout=out,
                         stderr=subprocess.STDOUT)
    deadline = time.time() + 10
    while time.time() < deadline:
        out.seek(0)
        if "Ready to accept" in out.read():
            return p, port
        time.sleep(0.05)
    raise SystemExit("FAIL - redis-server did not start")


def redis_keys(port, pattern):
    r = subprocess.run(["redis-cli", "-p", str(port), "--scan", "--pattern", pattern],
                       capture_output=True, text=True)
    return r.stdout.split()


class Server(ServeProcess):
    def __init__(self, *args):
        def argv():
            self.port, self.gport = free_port(), free_port()
            return [BIN, "serve", "-m", MODEL, "--config=", "--host", "127.0.0.1", "--port",
                    str(self.port), "--grpc-port", str(self.gport) if GRPC else "0",
                    "--log-dir", LOG, "--threads", "1", "--parallel", "2", *args]
        self.start(argv, os.path.join(TMP, "serve.out"))


def auth(who):
    return {"Authorization": "Bearer " + KEYS[who]}


def chat(s, who, text, stream=False):
    body = {"messages": [{"role": "user", "content": text}], "temperature": 0,
            "max_tokens": 8, "stream": stream}
    r = requests.post(s.url + "/v1/chat/completions", json=body, headers=auth(who),
                      timeout=60, stream=stream)
    if stream:
        out = ""
        for line in r.iter_lines():
            if line.startswith(b"data: {"):
                for ch in json.loads(line[6:])["choices"]:
                    d = ch.get("delta", {})
                    out += (d.get("reasoning_content") or "") + (d.get("content") or "")
        return r, out
    m = r.json()["choices"][0]["message"]
    return r, (m.get("reasoning_content") or "") + (m.get("content") or "")


def completion(s, who, text):
    r = requests.post(s.url + "/v1/completions", headers=auth(who), timeout=60,
                      json={"prompt": text, "temperature": 0, "max_tokens": 8})
    return r, r.json()["choices"][0]["text"]


def grpc_calls(s, who, unary_text, stream_text):
    import grpc  # noqa: E402 (only with DS_GRPC)
    sys.path.insert(0, os.path.join(TMP, "stubs"))
    import deepseek_pb2  # noqa: E402
    import deepseek_pb2_grpc  # noqa: E402
    with grpc.insecure_channel("127.0.0.1:%d" % s.gport) as ch:
        stub = deepseek_pb2_grpc.DeepSeekServiceStub(ch)
        md = (("authorization", "Bearer " + KEYS[who]),)
        r = stub.GenerateText(deepseek_pb2.GenerateRequest(prompt=unary_text, max_tokens=8,
                                                           top_k=1), metadata=md)
        parts = [m.reasoning + m.text for m in stub.GenerateTextStream(
            deepseek_pb2.GenerateRequest(prompt=stream_text, max_tokens=8, top_k=1),
            metadata=md)]
    return r.reasoning + r.text, "".join(parts)


def every_file(*dirs):
    for d in dirs:
        for root, _, files in os.walk(d):
            for f in files:
                p = os.path.join(root, f)
                if os.path.isfile(p) and not os.path.islink(p):
                    yield p


def files_holding(needles, *dirs):
    """The files (under dirs) whose raw bytes contain any of needles (bytes)."""
    found = []
    for p in every_file(*dirs):
        with open(p, "rb") as f:
            data = f.read()
        found += ["%s (%r...)" % (p, n[:16]) for n in needles if n in data]
    return found


def prompt_records(who):
    r = subprocess.run([BIN, "logs", "prompts", "--key-id", who, "--log-dir", LOG,
                        "--config="], capture_output=True, text=True)
    return r.returncode, [json.loads(line) for line in r.stdout.splitlines() if line], r.stderr


def keystore_record(who):
    """(offset, 32 key bytes) of who's record in cache.keys (96-byte records)."""
    data = open(os.path.join(LOG, "cache.keys"), "rb").read()
    for off in range(0, len(data), 96):
        if data[off:off + 64].rstrip(b"\0") == who.encode():
            return off, data[off + 64:off + 96]
    return None, None


def write_keys():
    path = os.path.join(TMP, "keys")
    with open(path, "w") as f:
        for who in ("A", "B"):
            f.write("id=%s sha256=%s scope=user\n" %
                    (who, hashlib.sha256(KEYS[who].encode()).hexdigest()))
        f.write("id=ops sha256=%s scope=admin\n" %
                hashlib.sha256(KEYS["ops"].encode()).hexdigest())
    os.chmod(path, 0o600)
    return path


def traffic(s):
    """Both keys' requests; returns A's texts that the prompt log must hold."""
    outputs = []
    r, text = chat(s, "A", SECRETS["A"][0])
    check(r.status_code == 200 and r.headers.get("X-Cache") == "MISS", "A: chat (MISS)")
    outputs.append(text)
    r2, _ = chat(s, "A", SECRETS["A"][0])
    check(r2.headers.get("X-Cache") == "HIT", "A: the same chat again is a cache HIT")
    r, text = chat(s, "A", SECRETS["A"][1], stream=True)
    check(r.status_code == 200, "A: streaming chat")
    outputs.append(text)
    r, text = completion(s, "A", SECRETS["A"][2])
    check(r.status_code == 200, "A: completion")
    if GRPC:
        unary, streamed = grpc_calls(s, "A", SECRETS["A"][3], SECRETS["A"][4])
        check(unary and streamed, "A: gRPC unary and streaming")
        outputs += [unary, streamed]
    r, _ = chat(s, "B", SECRETS["B"][0])
    check(r.status_code == 200, "B: chat")
    r, _ = completion(s, "B", SECRETS["B"][1])
    check(r.status_code == 200, "B: completion")
    chat(s, "B", SECRETS["B"][0])
    return [o for o in outputs if len(o) >= 6]


def before_erase(s, outputs):
    secrets = [t.encode() for t in SECRETS["A"] + SECRETS["B"]]
    leaks = files_holding(secrets, TMP)
    check(not leaks, "no prompt text in any file (%d under the test's directory, the "
          "server's logs, keystore and output included): %s" %
          (len(list(every_file(TMP))), leaks or "clean"))
    rc, recs, _ = prompt_records("A")
    text = json.dumps(recs)
    check(rc == 0 and all(t in text for t in SECRETS["A"]) and
          not any(t in text for t in SECRETS["B"]),
          "logs prompts --key-id A: %d records with all of A's prompts, none of B's" % len(recs))
    got = "".join((o.get("reasoning") or "") + (o.get("content") or "")
                  for r in recs for o in r.get("output", []))
    check(len(outputs) >= 2 and all(o in got for o in outputs),
          "A's records hold the generated outputs too (%d checked)" % len(outputs))
    routes = {r.get("route") for r in recs}
    check({"/v1/chat/completions", "/v1/completions"} <= routes,
          "records name their routes: %s" % sorted(routes))
    mode = os.stat(os.path.join(LOG, "prompts", "A.log")).st_mode & 0o777
    check(mode == 0o600, "prompts/A.log is mode 0600 (%o)" % mode)


def erase_through_server(s):
    env = dict(os.environ, DEEPSEEK_ADMIN_KEY=ADMIN_SETTING)
    r = subprocess.run([BIN, "erase", "--key-id", "A", "--config=", "--log-dir", LOG,
                        "--host", "127.0.0.1", "--port", str(s.port)],
                       capture_output=True, text=True, env=env)
    out = r.stdout
    print(out, end="")
    check(r.returncode == 0, "deepseek erase --key-id A: exit 0 (%s)" % r.stderr.strip())
    check("data key        destroyed" in out, "report: the data key was destroyed")
    check(os.path.join(LOG, "prompts", "A.log") in out and ": wiped," in out,
          "report: prompts/A.log wiped")
    mem = [l for l in out.splitlines() if "response cache" in l]
    check(mem and "memory: 0 removed" not in mem[0] and "redis: 0 removed" not in mem[0] and
          "off" not in mem[0], "report: cache entries removed: %s" % (mem[0].strip() if mem
                                                                      else "?"))
    check("slots: " in out and "none here" not in out, "report: prefix-cache slots counted")
    return out


def after_erase(s, a_lines, a_raw, a_off, a_key):
    leaks = files_holding([t.encode() for t in SECRETS["A"]] + a_lines + a_raw + [a_key], TMP)
    check(not leaks, "no byte of A's prompts, sealed records or data key in any file "
          "(%d files scanned): %s" % (len(list(every_file(TMP))), leaks or "clean"))
    data = open(os.path.join(LOG, "cache.keys"), "rb").read()
    check(data[a_off:a_off + 96] == b"\0" * 96, "A's keystore record is 96 zero bytes")
    check(not os.path.exists(os.path.join(LOG, "prompts", "A.log")), "prompts/A.log is gone")
    check(redis_keys(s.redis_port, "deepseek:rc:A:*") == [] and
          len(redis_keys(s.redis_port, "deepseek:rc:B:*")) >= 1,
          "Redis: no key of A left, B's entries still there")
    rc, recs, _ = prompt_records("B")
    text = json.dumps(recs)
    check(rc == 0 and all(t in text for t in SECRETS["B"]),
          "logs prompts --key-id B: B's %d records intact" % len(recs))
    rc, recs, _ = prompt_records("A")
    check(rc == 0 and recs == [], "logs prompts --key-id A: nothing left")
    r, _ = chat(s, "A", SECRETS["A"][0])
    check(r.status_code == 200 and r.headers.get("X-Cache") == "MISS",
          "A's identical request afterwards: cache MISS")
    r, _ = chat(s, "B", SECRETS["B"][0])
    check(r.headers.get("X-Cache") == "HIT", "B's identical request: still a HIT")


def audit_checks():
    r = subprocess.run([BIN, "audit", "verify", "--log-dir", LOG, "--config="],
                       capture_output=True, text=True)
    check(r.returncode == 0, "audit verify: the chain is intact (%s)" % r.stdout.strip()[:120])
    recs = [json.loads(l) for l in open(os.path.join(LOG, "audit.jsonl"))]
    erase = [x for x in recs if x.get("action") == "erase"]
    check(any(x.get("phase") == "intent" and x.get("target") == "key-id:A" for x in erase) and
          any(x.get("phase") == "result" and x.get("result") == "ok" and
              x.get("target") == "key-id:A" for x in erase),
          "audit: erase intent and result (ok) for key-id:A")
    check(any(x.get("action") == "wipe" and "A.log" in (x.get("target") or "") for x in recs),
          "audit: the wipe of prompts/A.log")


def admin_endpoint(s):
    u = s.url + "/v1/admin/subjects/B"
    r = requests.delete(u, timeout=30)
    check(r.status_code == 401, "DELETE /v1/admin/subjects/B without a key: 401")
    r = requests.delete(u, headers=auth("A"), timeout=30)
    check(r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope",
          "DELETE with a user key: 403")
    r = requests.delete(u, headers={"Authorization": "Bearer sk-not-a-key-at-all"}, timeout=30)
    check(r.status_code == 401, "DELETE with an unknown key: 401")
    r = requests.delete(u, headers=auth("ops"), timeout=120)
    j = r.json() if r.status_code == 200 else {}
    check(r.status_code == 200 and j.get("status") == "ok" and j["data_key"]["destroyed"] and
          len(j["files"]) == 1 and j["files"][0]["status"] == "wiped" and
          j["response_cache"]["redis"] >= 1,
          "DELETE with the scope=admin key: 200 and the report %s" % json.dumps(j)[:300])
    rc, recs, _ = prompt_records("B")
    check(rc == 0 and recs == [], "B's prompt log is gone after the admin erase")
    r = requests.delete(s.url + "/v1/admin/subjects/nobody", headers=auth("ops"), timeout=30)
    j = r.json() if r.status_code == 200 else {}
    check(r.status_code == 200 and j.get("status") == "ok" and j["files"] == [] and
          not j["data_key"]["destroyed"], "an id with nothing stored: 200, empty report")
    r = requests.delete(s.url + "/v1/admin/subjects/a%2Fb", headers=auth("ops"), timeout=30)
    check(r.status_code == 400, "an id that is not a key id: 400")
    r = requests.get(u, headers=auth("ops"), timeout=30)
    check(r.status_code == 405, "GET on the admin route: 405")
    log = open(os.path.join(LOG, "deepseek.log")).read()
    check("erase of key id B (by ops): ok" in log and KEYS["ops"] not in log,
          "the server log names the key ids, never the keys")


def offline_erase(redis_port):
    """A's request after the first erase left new data (a record, a key, a Redis entry):
    with the server stopped, erase runs here and removes it; a second run finds nothing."""
    def run():
        r = subprocess.run([BIN, "erase", "--key-id", "A", "--config=", "--log-dir", LOG,
                            "--cache-url", "redis://127.0.0.1:%d/0" % redis_port, "--json"],
                           capture_output=True, text=True)
        return r, json.loads(r.stdout) if r.returncode == 0 else {}
    r, j = run()
    check(r.returncode == 0 and j.get("status") == "ok" and j["data_key"]["destroyed"] and
          [f["status"] for f in j["files"]] == ["wiped"] and
          j["response_cache"] == {"memory": None, "redis": 1} and
          j["prefix_cache_slots"] is None,
          "offline erase (server stopped): exit 0, key, file and Redis entry removed (%s)" %
          (r.stderr.strip() or json.dumps(j)[:200]))
    check(redis_keys(redis_port, "deepseek:rc:A:*") == [] and
          not os.path.exists(os.path.join(LOG, "prompts", "A.log")),
          "offline erase: no Redis key and no prompt log of A left")
    r, j = run()
    check(r.returncode == 0 and j.get("status") == "ok" and not j["data_key"]["destroyed"] and
          j["files"] == [] and j["response_cache"]["redis"] == 0,
          "offline erase again: exit 0 and an empty report (idempotent)")
    r = subprocess.run([BIN, "erase", "--key-id", "../x", "--config=", "--log-dir", LOG],
                       capture_output=True, text=True)
    check(r.returncode == 2, "erase --key-id ../x: exit 2")


def make_stubs():
    out = os.path.join(TMP, "stubs")
    os.makedirs(out, exist_ok=True)
    subprocess.check_call([sys.executable, "-m", "grpc_tools.protoc", "-I",
                           os.path.join(SRC, "proto"), "--python_out=" + out,
                           "--grpc_python_out=" + out, os.path.join(SRC, "proto",
                                                                    "deepseek.proto")])


def main():
    if GRPC:
        make_stubs()
    keys = write_keys()
    redis, rport = start_redis()
    s = None
    try:
        s = Server("--api-keys", keys, "--log-prompts", "--cache-size", "16M",
                   "--cache-url", "redis://127.0.0.1:%d/0" % rport, "--admin-key",
                   ADMIN_SETTING)
        s.redis_port = rport
        outputs = traffic(s)
        before_erase(s, outputs)
        a_log = open(os.path.join(LOG, "prompts", "A.log"), "rb").read()
        a_lines = [l for l in a_log.split(b"\n") if l]
        a_raw = [base64.b64decode(l)[12:60] for l in a_lines]  # nonce + ciphertext
        a_off, a_key = keystore_record("A")
        check(a_off is not None and a_key != b"\0" * 32 and len(a_lines) >= 4,
              "before: A has a data key and %d sealed records" % len(a_lines))
        erase_through_server(s)
        after_erase(s, a_lines, a_raw, a_off, a_key)
        admin_endpoint(s)
        audit_checks()
        rc = s.stop()
        check(rc == 0, "the server drains and exits 0 (%s)" % rc)
        if rc != 0:
            print(s.text()[-3000:])
    finally:
        if s:
            s.stop()
    offline_erase(rport)
    redis.send_signal(signal.SIGTERM)
    redis.wait(10)
    print("%d failed" % len(FAILS))
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
