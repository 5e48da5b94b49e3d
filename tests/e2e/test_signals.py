"""Signals and config errors: SIGHUP swaps a certificate while a transfer continues; a
broken certificate file on reload is skipped and the rest still loads; SIGTERM stops
accepting, drains open connections and exits 0; the grace period bounds the drain; a bad
config exits 2 with one line naming the problem; --check validates."""
import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

from tfcommon import (BIN, SRC, Backend, bound, check, client_ctx, echo_handler, finish,
                      start_tlsfront, tls_connect, tmpdir, wait_until)

MK = os.path.join(SRC, "certs", "mkcerts.sh")
d = tmpdir()
stage = tmpdir()
subprocess.run(["bash", MK, "leaf", d, "site", "example.test"], check=True, stdout=subprocess.DEVNULL)
subprocess.run(["bash", MK, "leaf", stage, "site", "example.test", "--ca", d], check=True,
               stdout=subprocess.DEVNULL)
subprocess.run(["bash", MK, "leaf", d, "other", "other.test"], check=True, stdout=subprocess.DEVNULL)


def serial_of(port, name="example.test"):
    ctx = client_ctx(d)
    with tls_connect(port, name, ctx) as s:
        der = s.getpeercert(binary_form=True)
    return hashlib.sha256(der).hexdigest()


SIZE = 64 * 1024 * 1024
BLOCK = os.urandom(1 << 20)


def slow_source(c):
    c.recv(10)
    for _ in range(SIZE // len(BLOCK)):
        c.sendall(BLOCK)
        time.sleep(0.01)


src = Backend(slow_source)
tf, port = start_tlsfront(["--certs", d, "--backend", src.addr, "--workers", "2"])
before = serial_of(port)

# A transfer in progress across the reload.
ctx = client_ctx(d)
s = tls_connect(port, "example.test", ctx, timeout=60)
s.sendall(b"go\n")
h = hashlib.sha256()
n = 0
while n < 4 << 20:
    dd = s.recv(1 << 20)
    h.update(dd)
    n += len(dd)

shutil.copy(os.path.join(stage, "site.crt"), os.path.join(d, "site.crt.new"))
shutil.copy(os.path.join(stage, "site.key"), os.path.join(d, "site.key.new"))
os.rename(os.path.join(d, "site.key.new"), os.path.join(d, "site.key"))
os.rename(os.path.join(d, "site.crt.new"), os.path.join(d, "site.crt"))
with open(os.path.join(d, "broken.pem"), "w") as f:
    f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
tf.signal(signal.SIGHUP)
check(tf.wait_for(r"reloaded", 10) is not None, "SIGHUP reload logged")
after = serial_of(port)
check(before != after, "SIGHUP swapped the certificate for new connections")
check(serial_of(port, "other.test") is not None, "other certificates still served after reload")
check("broken.pem" in tf.stderr_text(), "broken file on reload reported by name")

while True:
    dd = s.recv(1 << 20)
    if not dd:
        break
    h.update(dd)
    n += len(dd)
want = hashlib.sha256(BLOCK * (SIZE // len(BLOCK))).hexdigest()
check(n == SIZE and h.hexdigest() == want, "transfer across the reload completed intact (%d bytes)" % n)
s.close()

# SIGTERM: stop accepting, drain, exit 0.
echo = Backend(echo_handler)
tf2, port2 = start_tlsfront(["--certs", d, "--backend", echo.addr, "--workers", "2",
                             "--grace", "20s"], name="tlsfront-term")
live = tls_connect(port2, "example.test", ctx)
live.sendall(b"before\n")
check(live.recv(100) == b"before\n", "connection established before SIGTERM")
tf2.signal(signal.SIGTERM)
check(tf2.wait_for(r"draining", 5) is not None, "SIGTERM: draining logged")


def refused():
    try:
        socket.create_connection(("127.0.0.1", port2), timeout=bound(1)).close()
        return False
    except OSError:
        return True


check(wait_until(refused, 5), "SIGTERM: new connections refused")
live.sendall(b"during drain\n")
check(live.recv(100) == b"during drain\n", "SIGTERM: open connection still served while draining")
check(tf2.p.poll() is None, "SIGTERM: process waits for the open connection")
live.close()
rc = tf2.wait(15)
check(rc == 0, "SIGTERM: exit 0 once the last connection closed (rc=%s)" % rc)

# Grace period: an idle connection does not hold the process beyond --grace.
tf3, port3 = start_tlsfront(["--certs", d, "--backend", echo.addr, "--grace", "1s"],
                            name="tlsfront-grace")
idle = tls_connect(port3, "example.test", ctx)
t0 = time.time()
tf3.signal(signal.SIGTERM)
rc = tf3.wait(15)
dt = time.time() - t0
check(rc == 0 and 0.8 < dt < 8, "grace period bounds the drain, exit 0 (rc=%s, %.1fs)" % (rc, dt))
idle.close()

# Bad config: exit 2 with one line naming the problem.
cases = [
    (["--workers", "abc"], {}, "--workers"),
    (["--backend", "127.0.0.1:99999"], {}, "--backend"),
    (["--listen", "1.2.3:80", "--backend", "127.0.0.1:1"], {}, "--listen"),
    ([], {"TLSFRONT_BACKEND": "x:notaport"}, "TLSFRONT_BACKEND"),
    (["--backend", "127.0.0.1:1", "--no-such-flag"], {}, "--no-such-flag"),
    (["--backend", "127.0.0.1:1", "--certs", "/nonexistent/dir"], {}, "/nonexistent/dir"),
]
for args, env, needle in cases:
    e = dict(os.environ)
    e.update(env)
    r = subprocess.run([BIN, "--listen", "127.0.0.1:0"] + args, capture_output=True, env=e,
                       timeout=bound(20))
    lines = [l for l in r.stderr.decode().splitlines() if l.strip()]
    check(r.returncode == 2 and len(lines) == 1 and needle in lines[0],
          "bad config %s -> exit 2, one line naming it (rc=%d: %s)" % (needle, r.returncode,
                                                                       lines[:2]))
cfgf = os.path.join(tmpdir(), "bad.json")
with open(cfgf, "w") as f:
    f.write('{\n  "backend": "127.0.0.1:1",\n  "workers": 2,,\n}\n')
r = subprocess.run([BIN, "-c", cfgf], capture_output=True, timeout=bound(20))
err = r.stderr.decode()
check(r.returncode == 2 and cfgf + ":3:" in err, "JSON syntax error names file:line:col (%s)" % err.strip())
r = subprocess.run([BIN, "--check", "--backend", "127.0.0.1:1"], capture_output=True,
                   timeout=bound(20))
check(r.returncode == 0, "--check accepts a good config")
finish()
