"""Connections that have not finished their handshake stay cheap. One that has sent nothing,
or half a ClientHello, costs the proxy a few KiB (no OpenSSL state until a whole record is
there; before, ~11 and ~48 KiB). A handshake held for on-demand issuance keeps at most one
record of what its client sends after the ClientHello: a client that streams bytes while
held is closed (before, the proxy read and kept all of it, copying everything kept on every
read), one that sends its ClientHello plus a flood in one write is closed too, and one that
leaves frees its hold at once. Once a burst of held handshakes has ended, the worker gives
back the heap memory the burst freed (tlsfront_malloc_trims_total counts it)."""
import re
import resource
import socket
import threading
import urllib.request

from clienthello import client_hello
from tfcommon import (Backend, SANITIZE, ask_server, check, client_ctx, echo_handler, finish,
                      free_port, make_certs, start_tlsfront, tls_connect, wait_until)

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))

certs = make_certs()
echo = Backend(echo_handler)


def metric(admin, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=10) as r:
        text = r.read().decode()
    m = re.search(r"^%s (\d+)" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else -1


def closed_by_peer(s, timeout=30):
    """Wait (bounded) for the peer to close s: EOF or reset."""
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


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


# --- Held handshakes -------------------------------------------------------------------------
# The --ask endpoint holds every answer until the test releases it, so a handshake for any
# name stays held for as long as the test needs.
asked = []
asked_cv = threading.Condition()
release = threading.Event()


def ask(name):
    with asked_cv:
        asked.append(name)
        asked_cv.notify_all()
    release.wait(300)
    return 403


ask_url = ask_server(ask)

# Every name goes to --ask (no --allow pattern); no order can start, and the directory is a
# closed local port all the same.
tf, port = start_tlsfront(["--certs", certs, "--backend", echo.addr, "--workers", "1",
                           "--acme-directory", "https://127.0.0.1:%d/dir" % free_port(),
                           "--ask", ask_url, "--ask-timeout", "300s",
                           "--hold-timeout", "300s", "--handshake-timeout", "300s",
                           "--admin", "127.0.0.1:0"])
admin = int(tf.wait_for(r"admin endpoint on 127\.0\.0\.1:(\d+)").group(1))


def held(name):
    """Connect and send a ClientHello for name; return the socket once it is held."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(client_hello(name))
    with asked_cv:
        asked_cv.wait_for(lambda: name in asked, 30)
    ok = wait_until(lambda: metric(admin, "tlsfront_held_handshakes") >= 1, 30)
    check(name in asked and ok, "%s: handshake held while --ask decides" % name)
    return s


def kernel_max(path):
    try:
        with open(path) as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 32 << 20


# A client that streams bytes after its ClientHello while held is closed: it can no longer
# make the worker read and keep all it sends. Once the proxy stops taking bytes, the client
# can only have filled its own send buffer and the proxy's receive buffer: past that bound,
# the proxy is still reading.
cap = kernel_max("/proc/sys/net/ipv4/tcp_wmem") + kernel_max("/proc/sys/net/ipv4/tcp_rmem") \
    + (1 << 20)
s = held("stream.held.test")
sent = 0
reset = False
s.settimeout(60)
chunk = b"\x17" * 16384
try:
    while sent < cap:
        s.sendall(chunk)
        sent += len(chunk)
except (ConnectionResetError, BrokenPipeError):
    reset = True
except socket.timeout:
    pass
check(sent < cap and (reset or closed_by_peer(s)),
      "streaming while held: connection closed (%d KiB sent, bound %d KiB)"
      % (sent >> 10, cap >> 10))
s.close()
check(tf.wait_for(r"sni=stream\.held\.test .*end=hold_overflow", 30, stream="out") is not None,
      "access log says hold_overflow")
check(wait_until(lambda: metric(admin, "tlsfront_held_handshakes") == 0, 30),
      "the hold is released")

# The ClientHello and a flood in one write: closed as well.
s = socket.create_connection(("127.0.0.1", port))
s.sendall(client_hello("burst.held.test") + b"\x17" * (48 * 1024))
check(closed_by_peer(s), "ClientHello plus 48 KiB in one write while held: closed")
s.close()
check(tf.wait_for(r"sni=burst\.held\.test .*end=hold_overflow", 30, stream="out") is not None,
      "access log says hold_overflow for the burst")

# A client that leaves while held frees its hold at once (its EOF is still read).
s = held("leave.held.test")
s.close()
check(wait_until(lambda: metric(admin, "tlsfront_held_handshakes") == 0, 30),
      "a client that leaves while held frees its hold")

# After a burst of held handshakes has ended, the worker returns the heap memory the burst
# freed (malloc_trim; glibc builds). The three holds above are too few to call a burst.
check(metric(admin, "tlsfront_malloc_trims_total") == 0, "no trim after 3 holds")
release.set()
refused = 0
for b in range(4):  # 10 at a time: under --max-held-per-ip, so every one is held
    burst = []
    for i in range(10):  # held while --ask decides (a 403), then refused
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(client_hello("burst%d-%d.trim.test" % (b, i)))
        burst.append(s)
    refused += sum(closed_by_peer(s) for s in burst)
    for s in burst:
        s.close()
check(refused == 40, "a burst of 40 held handshakes: all refused (%d)" % refused)
check(metric(admin, "tlsfront_held_handshakes_total") >= 43, "all 40 were held")
check(wait_until(lambda: metric(admin, "tlsfront_malloc_trims_total") == 1, 30),
      "the worker trimmed its free heap once the burst had ended")
finish()
