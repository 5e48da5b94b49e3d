"""Shutdown with work in flight on the control loop: SIGTERM always ends with exit 0 soon
after --grace, whatever is pending.

- An ACME order in flight against pebble (its validator dials a port that accepts and never
  answers, so the order stays in flight), with a handshake held for it: repeated, since the
  crash this guards against (a post into a mailbox already torn down) hit 2 runs of 3.
- An order waiting for another process's order lock (a live lease written by this test, in
  the shared storage directory) with --acme-timeout far beyond the bound: the wait must be
  cancelled, not sat out.
- Held handshakes whose --ask request the endpoint never answers.

The bounds are generous (tens of seconds) and sit far below what the bugs cost (the
--acme-timeout or --ask-timeout given here, or a crash)."""
import json
import os
import signal
import socket
import ssl
import threading
import time

from pebblectl import Pebble
from tfcommon import Backend, check, finish, http_handler, start_tlsfront, tmpdir, wait_until

BOUND = 30  # seconds after SIGTERM (grace is 1s): the bugs took 600s, 3600s or crashed

# Where pebble's validator dials: accepts and never answers, so validations hang.
sink = socket.socket()
sink.bind(("127.0.0.1", 0))
sink.listen(64)
held_socks = []


def sink_loop():
    while True:
        try:
            c, _ = sink.accept()
        except OSError:
            return
        held_socks.append(c)


threading.Thread(target=sink_loop, daemon=True).start()

# An --ask endpoint that reads each request and never answers.
ask = socket.socket()
ask.bind(("127.0.0.1", 0))
ask.listen(64)
asked = []


def ask_loop():
    while True:
        try:
            c, _ = ask.accept()
        except OSError:
            return
        held_socks.append(c)
        c.settimeout(30)
        try:
            asked.append(c.recv(4096).split(b" ")[1])
        except (OSError, IndexError):
            pass


threading.Thread(target=ask_loop, daemon=True).start()
ask_url = "http://127.0.0.1:%d/check" % ask.getsockname()[1]

backend = Backend(http_handler(b"hi"))
peb = Pebble()
peb.start(sink.getsockname()[1])


def hold(port, name):
    """A client whose handshake tlsfront holds; returns once it connected."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=120)
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE

    def run():
        try:
            with c.wrap_socket(raw, server_hostname=name):
                pass
        except (OSError, ssl.SSLError):
            pass

    threading.Thread(target=run, daemon=True).start()


def term_and_wait(tf, what):
    t0 = time.time()
    tf.signal(signal.SIGTERM)
    rc = tf.wait(BOUND)
    dt = time.time() - t0
    check(rc == 0, "%s: SIGTERM exits 0 within %ds (rc=%s, %.1fs)" % (what, BOUND, rc, dt))
    if rc is None:
        tf.stop()


def ondemand(storage, extra, name):
    args = peb.tlsfront_args(storage) + ["--backend", backend.addr,
                                         "--workers", "2", "--log-level", "debug",
                                         "--grace", "1s", "--hold-timeout", "1h"] + extra
    return start_tlsfront(args, name=name)


# 1. An order in flight (challenge published, validation pending), a handshake held for it.
for i in range(5):
    tf, port = ondemand(tmpdir(), ["--allow", "*.demo.test", "--acme-timeout", "10m"],
                        "tlsfront-order-%d" % i)
    name = "inflight-%d.demo.test" % i
    hold(port, name)
    hold(port, name)
    m = tf.wait_for(r"name=%s challenge published" % name, 60)
    check(m is not None, "run %d: order in flight (challenge published)" % i)
    term_and_wait(tf, "run %d: order in flight" % i)

# 2. An order waiting for the order lock that another process holds in the shared storage.
storage = tmpdir()
name = "locked.demo.test"
os.makedirs(os.path.join(storage, ".locks"), mode=0o700)
with open(os.path.join(storage, ".locks", "order-%s.lock" % name), "w") as f:
    json.dump({"pid": os.getpid(), "host": socket.gethostname(),
               "expires": int(time.time()) + 86400, "token": "ab" * 16}, f)
tf, port = ondemand(storage, ["--allow", "*.demo.test", "--acme-timeout", "1h"],
                    "tlsfront-lockwait")
hold(port, name)
m = tf.wait_for(r"name=%s order lock held elsewhere" % name, 60)
check(m is not None, "order waits for the lock another process holds")
term_and_wait(tf, "order waiting for another process's lock")
check(peb.orders() == 5, "the lock kept that order away from the CA (%d orders)" % peb.orders())

# 3. Held handshakes whose --ask request is never answered.
tf, port = ondemand(tmpdir(), ["--ask", ask_url, "--ask-timeout", "1h"], "tlsfront-ask")
for j in range(3):
    hold(port, "ask-%d.example.test" % j)
check(wait_until(lambda: len(asked) >= 3, 60), "ask requests in flight (%d)" % len(asked))
term_and_wait(tf, "held handshakes with --ask requests pending")

finish()
