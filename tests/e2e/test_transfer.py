"""Forwarding: 100 MB each way with matching SHA-256, half-close in each direction without
losing the last bytes, and a backend that is down (the client is closed promptly, logged)."""
import hashlib
import os
import socket
import threading
import time

from tfcommon import (Backend, BioClient, bound, check, client_ctx, finish, free_port, make_certs,
                      start_tlsfront, tls_connect)

SIZE = 100 * 1024 * 1024
BLOCK = os.urandom(1 << 20)


def pattern_sha():
    h = hashlib.sha256()
    for _ in range(SIZE // len(BLOCK)):
        h.update(BLOCK)
    return h.hexdigest()


EXPECTED = pattern_sha()
results = {}


def backend_handler(c):
    """First line says what to do: 'DOWN' (send 100 MB then FIN, then read until EOF) or
    'UP' (read until EOF, hash, reply with the hash)."""
    f = b""
    while b"\n" not in f:
        d = c.recv(1)
        if not d:
            return
        f += d
    cmd = f.strip()
    if cmd == b"DOWN":
        for _ in range(SIZE // len(BLOCK)):
            c.sendall(BLOCK)
        c.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += d
        results["after_fin"] = got
    elif cmd == b"UP":
        h = hashlib.sha256()
        n = 0
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            h.update(d)
            n += len(d)
        c.sendall(("%d %s\n" % (n, h.hexdigest())).encode())


certs = make_certs()
backend = Backend(backend_handler)
tf, port = start_tlsfront(["--certs", certs, "--backend", backend.addr, "--workers", "2"])
ctx = client_ctx(certs)

# Download: 100 MB from the backend, then its FIN arrives as close_notify; the client then
# still sends (TLS half-close) and the backend must receive it after its own FIN.
t0 = time.time()
s = tls_connect(port, "example.test", ctx, timeout=120)
s.sendall(b"DOWN\n")
h = hashlib.sha256()
n = 0
while True:
    d = s.recv(1 << 20)
    if not d:
        break
    h.update(d)
    n += len(d)
dt = time.time() - t0
check(n == SIZE and h.hexdigest() == EXPECTED,
      "100 MB download intact (%d bytes, %.1f MB/s)" % (n, n / dt / 1e6))
s.sendall(b"late bytes after the backend's FIN")
socket.socket.shutdown(s, socket.SHUT_WR)  # TCP FIN, keeping the TLS state
ok = False
deadline = time.time() + bound(20)
while time.time() < deadline:
    if "after_fin" in results:
        ok = True
        break
    time.sleep(0.05)
check(ok and results.get("after_fin") == b"late bytes after the backend's FIN",
      "half-close backend->client: client's bytes after the backend's FIN still delivered")
s.close()

# Upload: 100 MB to the backend, then the client half-closes, first with a bare TCP FIN, then
# with close_notify; the backend's hash comes back over the still-open other direction.
for mode in ("fin", "close_notify"):
    t0 = time.time()
    c = BioClient(port, "example.test", ctx, timeout=120)
    c.send(b"UP\n")
    for _ in range(SIZE // len(BLOCK)):
        c.send(BLOCK)
    if mode == "fin":
        c.tcp_shutdown_write()
    else:
        c.close_notify()
    reply = b""
    while b"\n" not in reply:
        d = c.recv(4096)
        if not d:
            break
        reply += d
    dt = time.time() - t0
    parts = reply.split()
    check(len(parts) == 2 and parts[0] == str(SIZE).encode() and parts[1].decode() == EXPECTED,
          "100 MB upload intact, half-close by %s (%s, %.1f MB/s)" % (mode, reply[:80], SIZE / dt / 1e6))
    c.close()

# Backend down: the handshake completes, then the connection closes promptly.
down = free_port()
tf2, port2 = start_tlsfront(["--certs", certs, "--backend", "127.0.0.1:%d" % down],
                            name="tlsfront-down")
t0 = time.time()
s = tls_connect(port2, "example.test", ctx)
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
try:
    d = s.recv(100)
except OSError:
    d = b""
dt = time.time() - t0
check(d == b"" and dt < 5, "backend down: client closed promptly (%.2fs)" % dt)
check(tf2.wait_for(r"backend 127\.0\.0\.1:%d: .*refused" % down, timeout=5) is not None,
      "backend down: logged with the reason")
check(tf2.wait_for(r"end=backend_connect_failed", timeout=5, stream="out") is not None,
      "backend down: access log says backend_connect_failed")
finish()
