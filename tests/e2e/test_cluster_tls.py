"""Cluster storage over TLS (rediss://) against a real redis-server that speaks only TLS and
pebble: node A obtains a certificate through rediss://localhost:PORT with --storage-ca, node
B (same Redis, same CA) serves it with the same serial and no new order; `tlsfront certs`
lists it over rediss:// too. A node trusting
another CA cannot reach Redis: it logs the verification failure once, refuses a fresh name
with storage_unavailable, and keeps running. Stopped with SIGTERM, every node removes the
private directory of its TLS relay. Config errors exit 2 with one line naming the
flag: a --storage-ca that does not load, and --storage-ca with plain redis://."""
import os
import signal
import ssl
import subprocess

from clusterctl import Cluster
from tfcommon import (BIN, SRC, Backend, Proc, check, finish, http_handler, start_tlsfront,
                      tmpdir, wait_until)

backend = Backend(http_handler(b"tls storage backend"))
cl = Cluster(tls=True, balancer=False)
redis, key, peb, fetch = cl.redis, cl.key, cl.peb, cl.fetch
relay_tmp = tmpdir()  # the nodes' TMPDIR, where their TLS relays make their directories


def node(name, ca):
    args = cl.args("*.rt.test", backend) + ["--storage-ca", ca]
    return start_tlsfront(args, env={"TMPDIR": relay_tmp}, name=name)


a, port_a = node("nodeA", redis.ca)
cl.start_pebble([port_a])
check(wait_until(lambda: "connected" in a.stderr_text(), timeout=20),
      "node A connects to Redis over TLS")
serial, reply = fetch(port_a, "a.rt.test")
check(b"tls storage backend" in reply, "node A serves a fresh name on its first connection")
check(peb.orders() == 1, "one order at pebble (%d)" % peb.orders())

b, port_b = node("nodeB", redis.ca)
s2, reply = fetch(port_b, "a.rt.test")
check(s2 == serial, "node B serves A's certificate from Redis (same serial)")
check(b"tls storage backend" in reply, "and proxies to the backend")
check(peb.orders() == 1, "no second order (%d)" % peb.orders())
ls = Proc("certs", [BIN, "certs", "--storage", redis.url, "--storage-key", key,
                    "--storage-ca", redis.ca], env={"TMPDIR": relay_tmp})
check(ls.wait(30) == 0 and "a.rt.test" in ls.stdout_text(),
      "tlsfront certs lists the name over rediss:// (%s)" % ls.stderr_text().strip())

# A node trusting another CA: Redis is unreachable for it, with the reason logged.
other = tmpdir()
subprocess.run(["bash", os.path.join(SRC, "certs", "mkcerts.sh"), "ca", other], check=True,
               stdout=subprocess.DEVNULL)
c, port_c = node("nodeC", os.path.join(other, "ca.crt"))
check(wait_until(lambda: "certificate verification failed" in c.stderr_text(), timeout=20),
      "the wrong CA is logged with the verification error")
try:
    fetch(port_c, "fresh.rt.test", timeout=30)
    check(False, "a fresh name is refused while Redis is unreachable")
except ssl.SSLError:
    pass
check(wait_until(lambda: "storage_unavailable" in c.stdout_text(), timeout=10),
      "the refusal names the storage in the access log")
warned = [l for l in c.stderr_text().splitlines() if "unavailable (TLS" in l and "warn" in l]
check(len(warned) == 1, "one warning for the outage (%d)" % len(warned))
check(c.p.poll() is None, "the node keeps running")
check(peb.orders() == 1, "nothing ordered by the refused node (%d)" % peb.orders())
check(len([d for d in os.listdir(relay_tmp) if d.startswith("tlsfront-redis-")]) == 3,
      "each node has its relay's private directory")
for p in (a, b, c):
    os.kill(p.pid, signal.SIGTERM)
check(all(p.wait(30) == 0 for p in (a, b, c)), "SIGTERM: the nodes exit 0")
check(os.listdir(relay_tmp) == [], "and leave no relay directory behind (%s)" % os.listdir(relay_tmp))

bad = Proc("badca", [BIN, "--listen", "127.0.0.1:0", "--backend", backend.addr,
                     "--storage", redis.url, "--storage-key", key,
                     "--storage-ca", os.path.join(tmpdir(), "missing.pem"), "--acme-email",
                     "ops@example.test", "--allow", "*.rt.test"])
check(bad.wait(30) == 2, "a --storage-ca that does not load exits 2")
err = bad.stderr_text().strip().splitlines()
check(len(err) == 1 and "--storage-ca" in err[0], "one line naming the flag (%s)" % err)
plain = Proc("plainca", [BIN, "--listen", "127.0.0.1:0", "--backend", backend.addr,
                         "--storage", "redis://127.0.0.1:1", "--storage-key", key,
                         "--storage-ca", redis.ca])
check(plain.wait(30) == 2, "--storage-ca with redis:// exits 2")
err = plain.stderr_text().strip().splitlines()
check(len(err) == 1 and "--storage-ca" in err[0], "one line naming the flag (%s)" % err)
finish()
