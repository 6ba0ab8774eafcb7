"""Helpers the Python integration tests share: "ok - / FAIL - " lines with the list of
failures, a free port, and a `deepseek serve` process that is started again on fresh
ports until it logs "Server ready". Stdlib only."""
import signal
import socket
import subprocess
import time

FAILS = []


def check(cond, what):
    print(("ok - " if cond else "FAIL - ") + what, flush=True)
    if not cond:
        FAILS.append(what)
    return cond


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """A `deepseek serve` child. start(argv, out_path): argv() returns the command line
    and sets self.port; a port may be taken between choosing and binding, so up to 8
    tries, each given 20 s to log "Server ready"."""

    def start(self, argv, out_path):
        for _ in range(8):
            cmd = argv()
            self.out = open(out_path, "w+")
            self.p = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT)
            if self.wait_ready():
                self.url = "http://127.0.0.1:%d" % self.port
                return
        raise SystemExit("FAIL - the server did not start: " + self.text())

    def text(self):
        self.out.seek(0)
        return self.out.read()

    def wait_ready(self):
        deadline = time.time() + 20
        while time.time() < deadline:
            if "Server ready" in self.text():
                return True
            if self.p.poll() is not None:
                return False
            time.sleep(0.05)
        self.p.kill()
        return False

    def stop(self):
        """SIGTERM (the server drains), SIGKILL after 30 s. Its exit status, or None
        when it had to be killed."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                return None
        return self.p.returncode
