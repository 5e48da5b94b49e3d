"""Connections that have not finished their handshake stay cheap. One that has sent nothing,
or half a ClientHello, costs the proxy a few KiB (no OpenSSL state until a whole record is
there; before, ~11 and ~48 KiB)."""
import re
import resource
import socket
import ssl
import urllib.request

from tfcommon import (Backend, SANITIZE, check, client_ctx, echo_handler, finish, make_certs,
                      start_tlsfront, tls_connect, wait_until)

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))

certs = make_certs()
echo = Backend(echo_handler)


def client_hello(name):
    """A real ClientHello for name, from Python's ssl over memory BIOs."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def metric(admin, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=10) as r:
        text = r.read().decode()
    m = re.search(r"^%s (\d+)" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else -1


# --- Pending connections --------------------------------------------------------------------
# RSS growth per connection that sent nothing, or half a ClientHello. Sanitizer builds
# allocate differently (redzones, quarantine): only the release build is measured.
N = 1000
BOUND_KIB = 6
tfm, mport = start_tlsfront(["--certs", certs, "--backend", echo.addr, "--workers", "1",
                             "--handshake-timeout", "300s", "--access-log", "off",
                             "--admin", "127.0.0.1:0"], name="tlsfront-pending")
madmin = int(tfm.wait_for(r"admin endpoint on 127\.0\.0\.1:(\d+)").group(1))
ctx = client_ctx(certs)
for _ in range(20):  # warm-up: allocator arenas and OpenSSL's tables exist
    t = tls_connect(mport, "example.test", ctx)
    t.sendall(b"x")
    t.recv(1)
    t.close()
wait_until(lambda: metric(madmin, "tlsfront_connections_open") == 0, 30)
half = client_hello("example.test")
half = half[:len(half) // 2]
for label, first in (("nothing", b""), ("half a ClientHello", half)):
    base = tfm.rss_kib()
    socks = []
    for _ in range(N):
        c = socket.create_connection(("127.0.0.1", mport))
        if first:
            c.sendall(first)
        socks.append(c)
    ok = wait_until(lambda: metric(madmin, "tlsfront_connections_open") == N, 60)
    # The accepts are counted before their first bytes are read: a complete handshake
    # afterwards on the same worker proves that every earlier read was processed.
    t = tls_connect(mport, "example.test", ctx)
    t.sendall(b"x")
    t.recv(1)
    per = (tfm.rss_kib() - base) / N
    t.close()
    if not SANITIZE:
        check(ok and per <= BOUND_KIB, "%d connections that sent %s: %.1f KiB each (bound %d)"
              % (N, label, per, BOUND_KIB))
    for c in socks:
        c.close()
    wait_until(lambda: metric(madmin, "tlsfront_connections_open") == 0, 60)


finish()
