"""Cluster e2e helpers: a real redis-server on loopback (no persistence; with tls=True it
speaks only TLS, with a certificate for localhost and 127.0.0.1 from certs/mkcerts.sh), a small TCP
round-robin balancer (one backend per new connection, in turn) that counts connections per
backend, a TCP relay in front of Redis that a test can cut, the setup every cluster test
shares (Cluster) and admin API calls with a token. All are stopped by the test that started
them (the Redis server by its PID)."""
import calendar
import http.client
import json
import os
import socket
import ssl
import subprocess
import threading
import time

from pebblectl import Pebble
from tfcommon import (SRC, Proc, ask_server, bound, free_port, many_certs, read_to_eof,
                      tmpdir)


class Redis:
    def __init__(self, tls=False):
        self.dir = tmpdir()
        self.port = free_port()
        self.proc = None
        self.tls = tls
        if tls:  # self.ca: the CA file clients need (--storage-ca)
            subprocess.run(["bash", os.path.join(SRC, "certs", "mkcerts.sh"), "leaf", self.dir,
                            "redis", "localhost,127.0.0.1"], check=True,
                           stdout=subprocess.DEVNULL)
            self.ca = os.path.join(self.dir, "ca.crt")

    def start(self):
        ports = ["--port", str(self.port)]
        if self.tls:
            ports = ["--port", "0", "--tls-port", str(self.port),
                     "--tls-cert-file", os.path.join(self.dir, "redis.crt"),
                     "--tls-key-file", os.path.join(self.dir, "redis.key"),
                     "--tls-ca-cert-file", self.ca, "--tls-auth-clients", "no"]
        self.proc = Proc("redis-%d" % time.monotonic_ns(),
                         ["redis-server"] + ports + ["--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", self.dir])
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.proc.dump()
        raise RuntimeError("redis-server did not start")

    def stop(self):
        self.proc.stop()

    @property
    def url(self):
        if self.tls:
            return "rediss://localhost:%d" % self.port
        return "redis://127.0.0.1:%d" % self.port


class Cluster:
    """What each cluster test starts with: a running redis-server (tls: TLS only), a storage
    key, pebble (started by start_pebble once the nodes listen) and, unless balancer=False, a
    round-robin balancer in front of the nodes for pebble's validation."""

    def __init__(self, tls=False, balancer=True):
        self.redis = Redis(tls=tls)
        self.redis.start()
        self.key = storage_key_file()
        self.peb = Pebble()
        self.bal = Balancer() if balancer else None
        self.rootf = None

    def args(self, allow, backend, workers=2, store=None):
        """One node's arguments: pebble, the shared Redis (or store, e.g. a Relay in front of
        it), the storage key, --allow, the backend, debug logs."""
        return self.peb.tlsfront_args((store or self.redis).url) + [
            "--storage-key", self.key, "--allow", allow, "--backend", backend.addr,
            "--workers", str(workers), "--log-level", "debug"]

    def start_pebble(self, ports):
        """Start pebble validating through the balancer over ports (without a balancer:
        against ports[0]) and keep its root certificate in rootf."""
        if self.bal:
            self.bal.backends = list(ports)
            self.peb.start(self.bal.port)
        else:
            self.peb.start(ports[0])
        self.rootf = pebble_root_file(self.peb)

    def fetch(self, port, name, timeout=60):
        """One verified connection and request through port: (serial, reply)."""
        return fetch(self.rootf, port, name, timeout)


def admin_port(proc):
    """The port of proc's admin endpoint, from its log."""
    return int(proc.wait_for(r"admin endpoint on 127\.0\.0\.1:(\d+)").group(1))


def admin_call(token, aport, method, path, body=None):
    """One admin request with the bearer token: (status, parsed JSON)."""
    c = http.client.HTTPConnection("127.0.0.1", aport, timeout=bound(60))
    data = None if body is None else json.dumps(body).encode()
    c.request(method, path, body=data, headers={"Authorization": "Bearer " + token})
    r = c.getresponse()
    doc = json.loads(r.read().decode())
    c.close()
    return r.status, doc


def admin_managed(token, aport, name):
    """Whether the node holds name in memory (GET /certs/NAME says managed)."""
    st, doc = admin_call(token, aport, "GET", "/certs/" + name)
    return st == 200 and doc.get("managed") is True


def ask_yes():
    """An --ask endpoint on loopback that says yes to every name: (its URL, the list of the
    names asked, in order)."""
    asked = []

    def yes(name):
        asked.append(name)
        return 200

    return ask_server(yes), asked


def secret_file(text):
    """text and a newline in a fresh 0600 file (a token file); its path."""
    path = os.path.join(tmpdir(), "secret")
    with open(path, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)
    return path


def storage_key_file():
    path = os.path.join(tmpdir(), "storage.key")
    with open(path, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    os.chmod(path, 0o600)
    return path


def _copy(src, dst):
    """Copy src to dst until src's EOF (True) or a socket error (False)."""
    try:
        while True:
            d = src.recv(65536)
            if not d:
                return True
            dst.sendall(d)
    except OSError:
        return False


class _Listener:
    """A TCP listener on 127.0.0.1:0 (port) whose thread hands each accepted connection to
    self._take."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self._take(c)


class Balancer(_Listener):
    """TCP round robin on 127.0.0.1:0 over backends (ports), set or changed at any time.
    While hold is set, new connections are accepted and parked (never forwarded) in held."""

    def __init__(self):
        self.hold = False
        self.held = []
        self.backends = []
        self.counts = {}
        self.next = 0
        super().__init__()

    def _take(self, c):
        with self.lock:
            if self.hold:
                self.held.append(c)
                return
            port = self.backends[self.next % len(self.backends)]
            self.next += 1
            self.counts[port] = self.counts.get(port, 0) + 1
        threading.Thread(target=self._serve, args=(c, port), daemon=True).start()

    def release_held(self, forward=False):
        """Stop holding; forward the parked connections to the backends (their peers see a
        late answer) or close them (their peers see a failure)."""
        with self.lock:
            self.hold = False
            held, self.held = self.held, []
        for c in held:
            if not forward:
                c.close()
                continue
            with self.lock:
                port = self.backends[self.next % len(self.backends)]
                self.next += 1
                self.counts[port] = self.counts.get(port, 0) + 1
            threading.Thread(target=self._serve, args=(c, port), daemon=True).start()

    def _serve(self, c, port):
        try:
            b = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            c.close()
            return
        def pipe(src, dst):
            if _copy(src, dst):
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        t = threading.Thread(target=pipe, args=(b, c), daemon=True)
        t.start()
        pipe(c, b)
        t.join(30)
        c.close()
        b.close()


class Relay(_Listener):
    """A TCP relay on 127.0.0.1:0 in front of a Redis server (its port), for a node that must
    miss announcements for real: cut() closes every relayed connection and refuses new ones
    (accepted, then closed at once) until restore(). restore(commands=False) lets the
    subscriber (a connection whose first command is SUBSCRIBE) back at once and the node's
    command connection only at allow_commands(): the order in which a loaded machine may
    bring them back. cut_commands() closes the command connections alone and refuses new
    ones until allow_commands(), while the subscriber stays. url is what --storage takes."""

    def __init__(self, port):
        self.target = port
        self.cut_off = False
        self.commands_held = False
        self.refused_commands = 0
        self.conns = []
        self.command_conns = []
        super().__init__()

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def cut(self):
        with self.lock:
            self.cut_off = True
            conns, self.conns = self.conns, []
            self.command_conns = []
        self._close(conns)

    def restore(self, commands=True):
        with self.lock:
            self.cut_off = False
            self.commands_held = not commands

    def allow_commands(self):
        with self.lock:
            self.commands_held = False

    def cut_commands(self):
        with self.lock:
            self.commands_held = True
            conns, self.command_conns = self.command_conns, []
            self.conns = [c for c in self.conns if c not in conns]
        self._close(conns)

    @staticmethod
    def _close(conns):
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    @staticmethod
    def _is_subscriber(c):
        """Whether c's first command is SUBSCRIBE (a node's command connection starts with
        AUTH, SELECT or PING)."""
        c.settimeout(5)
        try:
            return b"SUBSCRIBE" in c.recv(64, socket.MSG_PEEK).upper()
        except OSError:
            return False
        finally:
            c.settimeout(None)

    def _take(self, c):
        sub = self._is_subscriber(c)
        held = not sub and self.commands_held
        if held:
            with self.lock:
                self.refused_commands += 1
        try:
            b = None if self.cut_off or held else socket.create_connection(
                ("127.0.0.1", self.target), timeout=10)
            if b:
                b.settimeout(None)  # a subscriber's connection idles between messages
        except OSError:
            b = None
        with self.lock:
            if b is None or self.cut_off:
                c.close()
                if b:
                    b.close()
                return
            self.conns += [c, b]
            if not sub:
                self.command_conns += [c, b]
        for src, dst in ((c, b), (b, c)):
            threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        _copy(src, dst)
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def pebble_root_file(peb):
    """pebble's root certificate written to a temp file (for ssl cafile=); its path."""
    path = os.path.join(tmpdir(), "root.pem")
    with open(path, "w") as f:
        f.write(peb.root_pem())
    return path


def fetch(rootf, port, name, timeout=60):
    """One connection to 127.0.0.1:port for name, verified against rootf, one request read to
    EOF: (the certificate's serial, the reply bytes). Raises on a refused handshake."""
    from cryptography import x509
    c = ssl.create_default_context(cafile=rootf)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    with c.wrap_socket(raw, server_hostname=name) as s:
        der = s.getpeercert(binary_form=True)
        s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % name.encode())
        data = read_to_eof(s)
    return x509.load_der_x509_certificate(der).serial_number, data


def _resp(*args):
    """One Redis command in the protocol's wire form."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def redis_fill_many(port, n, first=1):
    """Write n certificates of many_certs(3000) from number first on into the Redis store on
    port, in the storage layout (cert.pem, key.pem, meta.json with kind and validity, no
    certID), as if obtained earlier: a store a node indexes at start."""
    from cryptography import x509
    import warnings
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # not_valid_* later
    many = many_certs(3000)  # the set test_managed_cache makes
    cmds = []
    for i in range(first, first + n):
        name = "%d.many.test" % i
        with open(os.path.join(many, name + ".pem")) as f:
            pem = f.read()
        cut = pem.index("-----BEGIN PRIVATE KEY-----")
        c = x509.load_pem_x509_certificate(pem[:cut].encode())
        meta = {"name": name, "kind": "ec",
                "not_before": calendar.timegm(c.not_valid_before.utctimetuple()),
                "not_after": calendar.timegm(c.not_valid_after.utctimetuple())}
        for f, v in (("cert.pem", pem[:cut]), ("key.pem", pem[cut:]),
                     ("meta.json", json.dumps(meta))):
            cmds.append(_resp("SET", "tlsfront:v:certs/%s/%s" % (name, f), v))
    subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=b"".join(cmds), check=True,
                   stdout=subprocess.DEVNULL)
    return many
