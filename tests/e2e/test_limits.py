"""Limits: a client that never finishes its handshake is dropped at the timeout; 1,000
concurrent connections are all served; a slow-reading client with a fast backend does not
grow the proxy's memory beyond a small bound; max_connections refuses at accept and logs
once a second, not once per connection; the idle timeout closes quiet connections."""
import os
import resource
import socket
import ssl
import threading
import time

from tfcommon import (Backend, SANITIZE, bound, check, client_ctx, echo_handler, finish, make_certs,
                      start_tlsfront, tls_connect, wait_until)

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))

certs = make_certs()
echo = Backend(echo_handler)
tf, port = start_tlsfront(["--certs", certs, "--backend", echo.addr, "--workers", "2",
                           "--handshake-timeout", "1s", "--idle-timeout", "3s"])
ctx = client_ctx(certs)

# Slowloris: connect, send half a ClientHello, then nothing.
t0 = time.time()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"\x16\x03\x01\x00\xff\x01\x00")
s.settimeout(bound(10))
try:
    d = s.recv(100)
except OSError:
    d = b""
dt = time.time() - t0
check(d == b"" and 0.8 <= dt < 4, "unfinished handshake dropped at the 1 s timeout (%.2fs)" % dt)
s.close()
check(tf.wait_for(r"end=handshake_timeout", 5, stream="out") is not None,
      "access log says handshake_timeout")

# Idle timeout after the handshake.
t0 = time.time()
s = tls_connect(port, "example.test", ctx)
s.settimeout(bound(10))
try:
    d = s.recv(100)
except OSError:
    d = b""
dt = time.time() - t0
check(d == b"" and 2.5 <= dt < 6, "idle connection closed at the 3 s idle timeout (%.2fs)" % dt)
s.close()


def closed_by_server(t, limit):
    """True when t reads EOF (or a reset) within limit seconds."""
    t.settimeout(bound(limit))
    try:
        return t.recv(100) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


# Deadlines of several connections at once (the worker keeps them on shared lists): one that
# keeps talking outlives the idle timeout, while quiet ones opened after it (a handshake
# deadline then an idle one each) are closed; the talker is closed once it goes quiet too.
talker = tls_connect(port, "example.test", ctx)
quiet = [tls_connect(port, "example.test", ctx) for _ in range(3)]
half = socket.create_connection(("127.0.0.1", port))  # handshake deadline beside idle ones
half.sendall(b"\x16\x03\x01\x00\xff\x01\x00")
talker.settimeout(bound(10))
echoed = True
for i in range(5):  # 5 s of activity, one read a second, past the 3 s idle timeout
    time.sleep(1)
    talker.sendall(b"ping %d\n" % i)
    echoed = echoed and talker.recv(100) == b"ping %d\n" % i
check(echoed, "a connection that keeps talking is served past the idle timeout")
check(all(closed_by_server(q, 1) for q in quiet),
      "quiet connections beside it were closed at their idle timeout")
check(closed_by_server(half, 1), "an unfinished handshake beside them was closed at its timeout")
check(closed_by_server(talker, 10), "the talker is closed once it goes quiet")
for t in quiet + [talker, half]:
    t.close()

# 1,000 concurrent connections, all open at once, each echoing its own payload (on an
# instance with the default idle timeout: opening 1,000 under ASan takes longer than 3 s).
tf_many, port = start_tlsfront(["--certs", certs, "--backend", echo.addr, "--workers", "2"],
                               name="tlsfront-many")
N = 1000
socks = []
errors = []
lock = threading.Lock()


def opener(k):
    for i in range(k, N, 8):
        try:
            t = tls_connect(port, "example.test", ctx, timeout=60)
            with lock:
                socks.append((i, t))
        except Exception as e:
            with lock:
                errors.append(str(e))


threads = [threading.Thread(target=opener, args=(k,)) for k in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
check(len(socks) == N and not errors, "1,000 concurrent TLS connections open (%d, errors %s)"
      % (len(socks), errors[:3]))
good = 0
for i, t in socks:
    t.sendall(b"conn %d\n" % i)
for i, t in socks:
    want = b"conn %d\n" % i
    got = b""
    while len(got) < len(want):
        d = t.recv(100)
        if not d:
            break
        got += d
    good += got == want
check(good == N, "all 1,000 concurrent connections served (%d echoed correctly)" % good)
for _, t in socks:
    t.close()

# Slow reader: the backend pushes as fast as it can, the client reads 16 KiB every 20 ms.
PUSH = 200 * 1024 * 1024
sent = {"n": 0}


def firehose(c):
    block = b"x" * (1 << 20)
    try:
        while sent["n"] < PUSH:
            c.sendall(block)
            sent["n"] += len(block)
    except OSError:
        pass


fast = Backend(firehose)
tf2, port2 = start_tlsfront(["--certs", certs, "--backend", fast.addr, "--workers", "1"],
                            name="tlsfront-slow")
wait_until(lambda: tf2.rss_kib() > 0, 5)
base = tf2.rss_kib()
s = tls_connect(port2, "example.test", ctx)
s.sendall(b"go\n")
got = 0
peak = base
t_end = time.time() + 6
while time.time() < t_end:
    d = s.recv(16384)
    if not d:
        break
    got += len(d)
    peak = max(peak, tf2.rss_kib())
    time.sleep(0.02)
growth = peak - base
rss_bound = 16 * 1024 if not SANITIZE else 64 * 1024
check(got > 0 and sent["n"] > got, "slow reader: backend is far ahead (%d MB sent, %d KB read)"
      % (sent["n"] >> 20, got >> 10))
check(growth < rss_bound, "slow reader: proxy RSS grew %d KiB (bound %d KiB) while the backend "
      "pushed %d MB" % (growth, rss_bound, sent["n"] >> 20))
s.close()
fast.close()

# max_connections: beyond it new connections are closed at accept, logged once a second.
tf3, port3 = start_tlsfront(["--certs", certs, "--backend", echo.addr, "--workers", "1",
                             "--max-connections", "5"], name="tlsfront-max")
held = [tls_connect(port3, "example.test", ctx) for _ in range(5)]
refused = 0
for _ in range(50):
    try:
        t = tls_connect(port3, "example.test", ctx, timeout=5)
        t.close()
    except (ssl.SSLError, OSError):
        refused += 1
check(refused == 50, "connections beyond max_connections refused (%d of 50)" % refused)
lines = tf3.stderr_text().count("max_connections (5) reached")
check(1 <= lines <= 3, "max_connections logged once a second, not per connection (%d lines)" % lines)
for t in held:
    t.close()


def served_again():
    """The server sees the closes a moment later; until then it may still refuse."""
    try:
        with tls_connect(port3, "example.test", ctx, timeout=5) as t:
            t.sendall(b"ok\n")
            return t.recv(10) == b"ok\n"
    except (ssl.SSLError, OSError):
        return False


check(wait_until(served_again, 10, 0.1), "new connections served again below max_connections")
finish()
