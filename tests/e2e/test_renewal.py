"""Renewal through the proxy: a certificate obtained on demand from pebble is renewed when
tlsfront's clock (test-only offset TLSFRONT_TEST_CLOCK_OFFSET) says a third of its lifetime
is left; the new serial is then served, a connection open across the renewal keeps working,
and the account is reused (no second account). A name no longer allowed is not renewed, and
an exact --allow name is obtained eagerly at start-up, before any client asks."""
import hashlib
import os
import socket
import ssl
import time

from pebblectl import Pebble
from tfcommon import Backend, check, echo_handler, finish, start_tlsfront, tmpdir, wait_until

backend = Backend(echo_handler)
storage = tmpdir()
peb = Pebble()
base = peb.tlsfront_args(storage) + ["--allow", "*.renew.test", "--backend", backend.addr]
tf, port = start_tlsfront(base + ["--allow", "*.gone.test"])
peb.start(port)
rootf = os.path.join(tmpdir(), "root.pem")
with open(rootf, "w") as f:
    f.write(peb.root_pem())
ctx = ssl.create_default_context(cafile=rootf)


def serial(name):
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    with ctx.wrap_socket(raw, server_hostname=name) as s:
        der = s.getpeercert(binary_form=True)
        s.sendall(b"ping\n")
        s.recv(10)
    return hashlib.sha256(der).hexdigest()[:16]


name = "site.renew.test"
first = serial(name)
serial("x.gone.test")
check(peb.orders() == 2, "certificates obtained on demand (two orders)")
tf.signal(15)
check(tf.wait(30) == 0, "first instance stopped cleanly")

# Restart with the clock 4 years ahead: pebble's 5-year certificate has less than a third of
# its lifetime left, so the renewal timer renews it right after the stored certificates load.
# *.gone.test is no longer allowed, and eager.renew.test is an exact name: obtained eagerly.
tf2, _ = start_tlsfront(base + ["--listen", "127.0.0.1:%d" % port, "--allow", "eager.renew.test"],
                        env={"TLSFRONT_TEST_CLOCK_OFFSET": str(4 * 365 * 86400)},
                        name="tlsfront-renew")
live = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30),
                       server_hostname=name)
live.sendall(b"before\n")
check(live.recv(100) == b"before\n", "connection open before the renewal")
check(tf2.wait_for(r"name=%s renewing" % name, 30) is not None, "renewal started for the due certificate")
ok = wait_until(lambda: peb.orders() >= 3 and serial(name) != first, 30, 0.2)
second = serial(name)
check(ok and second != first, "renewed certificate with a new serial is served (%s -> %s)" % (first, second))
live.sendall(b"after\n")
check(live.recv(100) == b"after\n", "connection open across the renewal still works")
live.close()
check(tf2.wait_for(r"name=x\.gone\.test not allowed.*not renewed", 20) is not None,
      "a name no longer allowed is not renewed")
check(tf2.wait_for(r"name=eager\.renew\.test (ca=\S+ )?certificate obtained", 30) is not None,
      "exact --allow name obtained eagerly at start-up")
n = peb.orders()
check(n == 4, "orders: 2 first + 1 renewal + 1 eager, none for the name no longer allowed (%d)" % n)
serial("eager.renew.test")
check(peb.orders() == n, "the eager name is served without a new order")
import re
check(re.search(r"account \S+ created", tf2.stderr_text()) is None,
      "account reused after restart (no new account created)")
finish()
