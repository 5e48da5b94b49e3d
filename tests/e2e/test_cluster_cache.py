"""--storage-cache DIR against a real redis-server and pebble: a node with a cache obtains a
name (written to Redis and through to DIR; the private key 0600), Redis is stopped, the node
is restarted with the same DIR and serves the name with the same serial from the cache; a
fresh name is still refused with storage_unavailable (the cache never stands in for the
order lock). A node without --storage-cache restarted the same way serves nothing, and
--storage-cache with a directory --storage is a configuration error (exit 2)."""
import os
import ssl
import stat


from clusterctl import Cluster
from tfcommon import (BIN, Backend, Proc, check, finish, http_handler, start_tlsfront, tmpdir,
                      wait_until)

backend = Backend(http_handler(b"cache backend"))
cl = Cluster(balancer=False)
redis, peb, fetch = cl.redis, cl.peb, cl.fetch
cache = os.path.join(tmpdir(), "cache")


def node(name, cached=True):
    args = cl.args("*.cc.test", backend)
    if cached:
        args += ["--storage-cache", cache]
    return start_tlsfront(args, name=name)


p, port = node("cached1")
cl.start_pebble([port])

serial, reply = fetch(port, "a.cc.test")
check(b"cache backend" in reply, "the name is served on its first connection")
check(peb.orders() == 1, "one order at pebble (%d)" % peb.orders())
keyf = os.path.join(cache, "certs", "a.cc.test", "key.pem")
check(wait_until(lambda: os.path.exists(keyf), timeout=10), "the key is written through")
check(stat.S_IMODE(os.stat(keyf).st_mode) == 0o600, "the cached key is 0600")
with open(keyf) as f:
    check("PRIVATE KEY" in f.read(), "the cached key is PEM (decrypted, as the directory store)")
check(os.path.exists(os.path.join(cache, "certs", "a.cc.test", "cert.pem")),
      "the certificate is written through")
p.stop()

redis.stop()
p, port = node("cached2")
s2, reply = fetch(port, "a.cc.test")
check(s2 == serial, "restarted while Redis is down: the cached name is served, same serial")
check(b"cache backend" in reply, "and proxied to the backend")
try:
    fetch(port, "fresh.cc.test", timeout=30)
    check(False, "a fresh name is refused while Redis is down")
except ssl.SSLError:
    pass
check(wait_until(lambda: "storage_unavailable" in p.stdout_text() + p.stderr_text(),
                 timeout=10), "the refusal names the storage in the access log")
check(peb.orders() == 1, "no new order while Redis is down (%d)" % peb.orders())
p.stop()

# Without the cache the same restart has nothing to serve.
p, port = node("uncached", cached=False)
try:
    fetch(port, "a.cc.test", timeout=30)
    check(False, "without --storage-cache the name is not served while Redis is down")
except ssl.SSLError:
    pass
p.stop()

bad = Proc("dirstore", [BIN, "--listen", "127.0.0.1:0", "--backend", backend.addr,
                        "--storage", tmpdir(), "--storage-cache", cache])
check(bad.wait(30) == 2, "--storage-cache with a directory --storage exits 2")
err = bad.stderr_text().strip().splitlines()
check(len(err) == 1 and "--storage-cache" in err[0], "one line naming the flag (%s)" % err)
finish()
