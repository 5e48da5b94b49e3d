"""Shared helpers for tlsfront's end-to-end tests.

Each test makes its own temp dir, starts the real binary and real backends on loopback with
kernel-chosen ports, and stops only the processes it started (by PID). Logs of every process
are printed when a check fails.
"""
import atexit
import hashlib
import http.server
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BIN = os.environ.get("TLSFRONT_BIN", os.path.join(os.getcwd(), "tlsfront"))
# The harness's own TLSFRONT_BIN is no setting of tlsfront's (which warns about unknown
# TLSFRONT_* variables): keep it out of the environment the binary inherits.
os.environ.pop("TLSFRONT_BIN", None)
SRC = os.environ.get("TF_SRC", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
SANITIZE = os.environ.get("TF_SANITIZE", "OFF").upper() in ("ON", "1", "TRUE")
# Every bound on a wait is a number of seconds that holds on an idle machine, times this
# factor: a sanitizer build on a small loaded machine runs several times slower. Set
# TF_TIMEOUT_SCALE to override. Bounds are never timing thresholds: they only decide how
# long to wait for something that must happen.
TIMEOUT_SCALE = float(os.environ.get("TF_TIMEOUT_SCALE") or (4 if SANITIZE else 1))

_procs = []
_dirs = []
_failures = []
_passes = 0
_last_ok = None  # the last check that passed, named when a wait times out
_steps = []      # names of the steps (see step()) now waiting


def bound(seconds):
    """A wait bound of seconds on an idle machine, scaled by TIMEOUT_SCALE."""
    return seconds * TIMEOUT_SCALE


class step:
    """with step("50 MB upload: backend's answer"): ... -- a socket timeout inside the block
    becomes a TimeoutError naming the step (and the last check that passed), so a failure
    says which step was waiting instead of a bare "timed out"."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        _steps.append(self.name)
        return self

    def __exit__(self, kind, value, tb):
        _steps.pop()
        if kind is not None and issubclass(kind, (socket.timeout, TimeoutError)) and \
                not str(value).startswith("step "):
            raise TimeoutError("step %r timed out (%s); last passed check: %r" %
                               (self.name, value, _last_ok)) from value
        return False


def tmpdir():
    d = tempfile.mkdtemp(prefix="tf-e2e-")
    _dirs.append(d)
    return d


def check(cond, what):
    """Record one assertion; failures are reported at the end (and make the test fail)."""
    global _passes, _last_ok
    if cond:
        _passes += 1
        _last_ok = what
        print("ok   " + what, flush=True)
    else:
        _failures.append(what)
        print("FAIL " + what, flush=True)
    return cond


def _sanitizer_report(text):
    return any(k in text for k in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                   "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer",
                                   "WARNING: ThreadSanitizer"))


def finish():
    """Stop tlsfront processes gracefully (SIGTERM must exit 0 with no sanitizer report),
    kill the rest, print the closing line and exit with the right status."""
    for p in list(_all_procs):
        if not p.graceful:
            continue
        if p.p.poll() is None:
            p.signal(signal.SIGTERM)
            rc = p.wait(60)
            check(rc == 0, "%s: SIGTERM exits 0 (rc=%s)" % (p.name, rc))
        check(not _sanitizer_report(p.stderr_text()), "%s: no sanitizer report" % p.name)
    for p in list(_procs):
        p.stop()
    if _failures:
        for p in _all_procs:
            p.dump()
    print("%d passed, %d failed" % (_passes, len(_failures)), flush=True)
    sys.exit(1 if _failures else 0)


_all_procs = []


class Proc:
    """A process we started; its stdout/stderr go to files under the test dir."""

    def __init__(self, name, args, env=None, cwd=None, graceful=False):
        self.name = name
        self.graceful = graceful
        d = tmpdir()
        self.out_path = os.path.join(d, name + ".out")
        self.err_path = os.path.join(d, name + ".err")
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        e = dict(os.environ)
        if env:
            e.update(env)
        self.p = subprocess.Popen(args, stdout=self.out, stderr=self.err, env=e, cwd=cwd,
                                  stdin=subprocess.DEVNULL)
        self.pid = self.p.pid
        _procs.append(self)
        _all_procs.append(self)

    def stderr_text(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stdout_text(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_for(self, pattern, timeout=20, stream="err"):
        """Wait until the process printed a line matching pattern; returns the match.
        timeout is scaled by TIMEOUT_SCALE."""
        rx = re.compile(pattern)
        deadline = time.time() + bound(timeout)
        while time.time() < deadline:
            text = self.stderr_text() if stream == "err" else self.stdout_text()
            m = rx.search(text)
            if m:
                return m
            if self.p.poll() is not None:
                text = self.stderr_text() if stream == "err" else self.stdout_text()
                m = rx.search(text)
                return m
            time.sleep(0.02)
        return None

    def signal(self, sig):
        if self.p.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout=30):
        """The exit status, or None if still running after timeout (scaled) seconds."""
        try:
            return self.p.wait(timeout=bound(timeout))
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.p.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.p.wait()
        if self in _procs:
            _procs.remove(self)

    def rss_kib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    def dump(self):
        for label, path in (("stdout", self.out_path), ("stderr", self.err_path)):
            try:
                with open(path, "rb") as f:
                    data = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            tail = data[-6000:]
            print("----- %s %s (last %d bytes) -----\n%s" % (self.name, label, len(tail), tail))


def _cleanup():
    for p in list(_procs):
        try:
            p.stop()
        except Exception:
            pass
    if not _failures:
        for d in _dirs:
            shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def _excepthook(kind, value, tb):
    """An exception ends the test: show it, then every process's log."""
    sys.__excepthook__(kind, value, tb)
    _failures.append("exception: %r" % value)
    if issubclass(kind, (socket.timeout, TimeoutError)):
        print("timed out after the last passed check: %r" % _last_ok, flush=True)
    for p in _all_procs:
        p.dump()
    print("%d passed, %d failed" % (_passes, len(_failures)), flush=True)


sys.excepthook = _excepthook


def make_certs(d=None):
    """The standard certificate set from certs/mkcerts.sh demo."""
    d = d or tmpdir()
    subprocess.run(["bash", os.path.join(SRC, "certs", "mkcerts.sh"), "demo", d], check=True,
                   stdout=subprocess.DEVNULL)
    return d


def many_certs(n):
    """certs/mkcerts.sh many: n certificates <i>.many.test.pem (leaf then key) and ca.crt,
    made once next to the binary under test and kept for later runs."""
    d = os.path.join(os.path.dirname(os.path.abspath(BIN)), "e2e-data", "many%d" % n)
    if os.path.exists(os.path.join(d, "%d.many.test.pem" % n)):
        return d
    tmp = d + ".tmp%d" % os.getpid()
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    subprocess.run(["bash", os.path.join(SRC, "certs", "mkcerts.sh"), "many", tmp, str(n)],
                   check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(d, ignore_errors=True)
    os.rename(tmp, d)
    return d


def served_sans(port, ctx, name):
    """The DNS names of the certificate served for name (verified with ctx)."""
    with tls_connect(port, name, ctx) as s:
        return sorted(v for k, v in s.getpeercert().get("subjectAltName", ()) if k == "DNS")


def tls_refusal(served, name):
    """The TLS error served(name) raised (a refused handshake), or None when it was served."""
    try:
        served(name)
    except ssl.SSLError as e:
        return str(e)
    return None


def cert_cache_metrics(admin_port):
    """The tlsfront_cert_cache_* families from the admin endpoint, by name."""
    url = "http://127.0.0.1:%d/metrics" % admin_port
    with urllib.request.urlopen(url, timeout=bound(10)) as r:
        text = r.read().decode()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"^(tlsfront_cert_cache_\w+) (\S+)$", text, re.M)}


def serve_sample(served, names, batch, after_batch):
    """served(name) for every name, from four clients at once, batch names at a time,
    after_batch() after each batch; returns the (name, what was served) pairs that were not
    [name]."""
    wrong, lock = [], threading.Lock()

    def client(part):
        for name in part:
            try:
                got = served(name)
            except (OSError, ssl.SSLError) as e:
                got = "error %s" % e
            if got != [name]:
                with lock:
                    wrong.append((name, got))

    for start in range(0, len(names), batch):
        ts = [threading.Thread(target=client, args=(names[start + k:start + batch:4],))
              for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        after_batch()
    return wrong


def check_cached_sample(served, metrics, names, cache, batch):
    """Serve names (more of them than the cache holds) through serve_sample and check: each
    served with its own certificate, the cache size (metrics() after each batch) never above
    cache, certificates evicted and each name loaded. Returns the metrics after."""
    max_size = [0]

    def note_size():
        max_size[0] = max(max_size[0], metrics()["tlsfront_cert_cache_size"])

    wrong = serve_sample(served, names, batch, note_size)
    check(not wrong, "each of %d sampled names served with its own certificate (%s)"
          % (len(names), wrong[:3]))
    m = metrics()
    check(max_size[0] <= cache and m["tlsfront_cert_cache_size"] <= cache,
          "the cache never held more than %d (at most %d seen)" % (cache, max_size[0]))
    check(m["tlsfront_cert_cache_evictions_total"] >= len(names) - cache,
          "certificates were evicted (%d)" % m["tlsfront_cert_cache_evictions_total"])
    check(m["tlsfront_cert_cache_loads_total"] >= len(names),
          "every sampled name was loaded (%d loads)" % m["tlsfront_cert_cache_loads_total"])
    return m


def start_tlsfront(args, env=None, wait=True, name="tlsfront"):
    """Start tlsfront listening on 127.0.0.1:0 (unless args has --listen) and return
    (proc, port) once it logged its listening address."""
    a = [BIN]
    if "--listen" not in args:
        a += ["--listen", "127.0.0.1:0"]
    if "--grace" not in args:
        a += ["--grace", "5s"]
    a += args
    e = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1")}
    if env:
        e.update(env)
    p = Proc(name, a, env=e, graceful=True)
    if not wait:
        return p, None
    m = p.wait_for(r"listening on [^ ]*:(\d+)", timeout=30)
    if not m:
        p.dump()
        raise RuntimeError("tlsfront did not start")
    return p, int(m.group(1))


def client_ctx(ca_dir, tls_max=None, tls_min=None):
    ctx = ssl.create_default_context(cafile=os.path.join(ca_dir, "ca.crt"))
    if tls_max:
        ctx.maximum_version = tls_max
    if tls_min:
        ctx.minimum_version = tls_min
    return ctx


def tls_connect(port, name, ctx, host="127.0.0.1", timeout=10):
    raw = socket.create_connection((host, port), timeout=bound(timeout))
    return ctx.wrap_socket(raw, server_hostname=name)


# --- backends ---------------------------------------------------------------------------


class Backend:
    """A real TCP server on 127.0.0.1:0 running handler(conn) per connection in a thread."""

    def __init__(self, handler, host="127.0.0.1"):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.conns = 0
        self.lock = threading.Lock()
        self.closed = False
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
            threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        try:
            self.handler(c)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def close(self):
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port


def ask_server(decide, path="/check"):
    """An --ask endpoint on loopback: decide(name) gives the HTTP status for the name in
    ?domain= (it may record, wait or sleep: each request has its own thread). Returns the
    URL to pass to --ask."""

    class Ask(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            code = decide(self.path.split("domain=", 1)[-1])
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ask)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return "http://127.0.0.1:%d%s" % (srv.server_address[1], path)


def http_handler(body_prefix=b"hello from backend"):
    """Minimal HTTP/1.1 responder: one response per request, keep-alive."""

    def h(c):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            path = lines[0].split(b" ")[1] if len(lines[0].split(b" ")) > 1 else b"/"
            clen = 0
            for l in lines[1:]:
                if l.lower().startswith(b"content-length:"):
                    clen = int(l.split(b":", 1)[1])
            while len(buf) < clen:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            buf = buf[clen:]
            body = body_prefix + b" path=" + path + b"\n"
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s"
                      % (len(body), body))
            if b"\r\nconnection: close" in head.lower():
                return

    return h


def echo_handler(c):
    while True:
        d = c.recv(65536)
        if not d:
            return
        c.sendall(d)


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def read_to_eof(s, limit=64 * 1024 * 1024):
    """Everything s sends until its EOF (or limit bytes, or a socket error)."""
    data = b""
    while len(data) < limit:
        try:
            d = s.recv(65536)
        except OSError:
            break
        if not d:
            break
        data += d
    return data


def free_port():
    """A port nothing listens on (for 'backend down')."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_until(fn, timeout=10, step=0.02, scaled=True):
    """fn()'s first true value within timeout seconds (scaled by TIMEOUT_SCALE unless scaled
    is false: a wait for something that must NOT happen within a protocol's own time, such as
    a lease, must not grow under sanitizers), else its last value."""
    deadline = time.time() + (bound(timeout) if scaled else timeout)
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    return fn()


class BioClient:
    """A TLS client over ssl.MemoryBIO, so a test controls each TLS event itself: e.g. send
    close_notify (TLS half-close) and still read the reply, which SSLSocket cannot do."""

    def __init__(self, port, name, ctx, host="127.0.0.1", timeout=30):
        self.sock = socket.create_connection((host, port), timeout=bound(timeout))
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=False, server_hostname=name)
        self.eof = False
        self._pump(self.obj.do_handshake)

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            self.inc.write_eof()
            self.eof = True
        else:
            self.inc.write(d)

    def _pump(self, fn, *args):
        while True:
            try:
                r = fn(*args)
                self._flush()
                return r
            except ssl.SSLWantReadError:
                self._flush()
                if self.eof:
                    raise
                self._fill()

    def send(self, data):
        self._pump(self.obj.write, data)

    def recv(self, n=65536):
        """Plaintext, or b'' at close_notify/EOF."""
        try:
            return self._pump(self.obj.read, n)
        except ssl.SSLZeroReturnError:
            return b""
        except ssl.SSLEOFError:
            return b""

    def close_notify(self):
        """Send close_notify without waiting for the peer's."""
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        self._flush()

    def tcp_shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        self.sock.close()
