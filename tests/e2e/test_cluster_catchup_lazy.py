"""Catching up after a gap with an indexed (lazy) store, against a real redis-server and
pebble: two nodes share one Redis that holds 300 certificates (written here in the storage
layout, meta.json without a certID), more than --cert-cache 100, so both index the store and
decode nothing at start. Node B reaches Redis through a TCP relay the test cuts. While B is
cut off, node A renews one name B holds (B misses the new certificate), forgets another (B
misses the forget) and obtains a third (B misses the announcement), and 100 more names are
stored behind B's back. Once the relay is back (the subscriber first, the command connection
later), B's resync reads only meta.json for the stored names and reads in full only the
102 that changed or are new to it (32 at a time), then drops the forgotten name and serves
A's certificates and the new names."""
from clusterctl import (Cluster, Relay, admin_call, admin_managed, admin_port, ask_yes,
                        redis_fill_many, secret_file)
from tfcommon import Backend, check, finish, http_handler, start_tlsfront, wait_until

N, CACHE = 300, 100
TOKEN = "cluster-catchup-lazy-0123456789"
cl = Cluster(balancer=False)  # pebble validates through node A, which is never cut off
redis_fill_many(cl.redis.port, N)

ask_url, asked = ask_yes()
tokf = secret_file(TOKEN)
backend = Backend(http_handler(b"lazy catch-up backend"))
relay = Relay(cl.redis.port)


def node(name, store):
    args = cl.args("*.ca.test", backend, store=store) + [
        "--cert-cache", str(CACHE), "--ask", ask_url, "--admin", "127.0.0.1:0",
        "--admin-token-file", tokf]
    p, port = start_tlsfront(args, name=name)
    return p, port, admin_port(p)


(pa, port_a, admin_a), (pb, port_b, admin_b) = node("nodeA", None), node("nodeB", relay)
cl.start_pebble([port_a])
for p in (pa, pb):
    check(p.wait_for(r"stored certificates: %d indexed, 0 skipped, 0 of them decoded" % N, 60)
          is not None, "%s indexes the store from meta.json" % p.name)


def call(aport, method, path):
    return admin_call(TOKEN, aport, method, path)


def serial(port, name):
    return cl.fetch(port, name)[0]


RENEW, GONE, NEW = "renew.ca.test", "gone.ca.test", "new.ca.test"
first = {n: serial(port_a, n) for n in (RENEW, GONE)}
for n in (RENEW, GONE):
    check(wait_until(lambda: admin_managed(TOKEN, admin_b, n), timeout=30, step=0.1)
          and serial(port_b, n) == first[n], "node B serves A's %s (announced)" % n)

relay.cut()
st, doc = call(admin_a, "POST", "/certs/%s/renew" % RENEW)
check(st in (200, 202), "renewal asked on A while B is cut off: %s" % doc)
check(wait_until(lambda: serial(port_a, RENEW) != first[RENEW], timeout=60, step=0.2),
      "node A serves the renewed certificate")
renewed = serial(port_a, RENEW)
st, doc = call(admin_a, "DELETE", "/certs/" + GONE)
check(st == 200 and doc["forgotten_storage"], "DELETE on A while B is cut off: %s" % doc)
new_serial = serial(port_a, NEW)
EXTRA = 100
redis_fill_many(cl.redis.port, EXTRA, first=N + 1)
check(serial(port_b, RENEW) == first[RENEW] and admin_managed(TOKEN, admin_b, GONE),
      "node B, cut off, still serves the old certificate and holds the forgotten name")

relay.restore(commands=False)
check(pb.wait_for(r"reloading stored certificates after a gap: .*; again in", timeout=60)
      is not None, "node B's reload fails while its store cannot be read (%d command "
      "connections refused)" % relay.refused_commands)
relay.allow_commands()
check(pb.wait_for(r"re-indexed stored certificates after a gap: %d indexed, 0 skipped, "
                  r"%d changed or new read in full" % (N + 2 + EXTRA, 2 + EXTRA), timeout=60)
      is not None, "node B re-indexes the store and reads in full only the renewed name and "
      "the names new to it")
check(wait_until(lambda: not admin_managed(TOKEN, admin_b, GONE), timeout=30, step=0.1),
      "node B drops the name forgotten during the gap")
check(wait_until(lambda: serial(port_b, RENEW) == renewed, timeout=30, step=0.2),
      "node B serves the certificate A renewed during the gap")
orders = cl.peb.orders()
check(wait_until(lambda: admin_managed(TOKEN, admin_b, NEW), timeout=30, step=0.1)
      and serial(port_b, NEW) == new_serial and cl.peb.orders() == orders,
      "node B serves A's certificate for the name obtained during the gap, no new order")
extra = ["%d.many.test" % i for i in (N + 1, N + EXTRA // 2, N + EXTRA)]
check(wait_until(lambda: all(admin_managed(TOKEN, admin_b, n) for n in extra), timeout=30,
                 step=0.2), "node B holds the names stored behind its back (%s)" % extra)
finish()
