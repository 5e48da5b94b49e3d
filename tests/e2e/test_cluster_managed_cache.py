"""Managed certificates loaded on first use from Redis: two nodes share a Redis storage that
holds 1,000 certificates (written here in the storage layout, meta.json included), more than
--cert-cache 100. Each node indexes the store from the metadata (nothing decoded at start),
serves a sample of names with the right certificate from Redis, the cache stays within its
bound. A name node A obtains from pebble is served by node B (announced: B makes it a stub);
after A renews it, B serves the new certificate, not the old one it had loaded."""
import os
import random
import ssl

from clusterctl import (Cluster, admin_call, admin_managed, admin_port, redis_fill_many,
                        secret_file)
from tfcommon import (Backend, cert_cache_metrics, check, finish, served_sans,
                      http_handler, start_tlsfront, tls_refusal, wait_until)

N = 1000
CACHE = 100
TOKEN = "s3cret-token-0123456789abcdef"

cl = Cluster(balancer=False)  # pebble validates through node A
many = redis_fill_many(cl.redis.port, N)

tokf = secret_file(TOKEN)
backend = Backend(http_handler(b"hi"))
extra = ["--cert-cache", str(CACHE), "--admin", "127.0.0.1:0", "--admin-token-file", tokf]
a, port_a = start_tlsfront(cl.args("*.cm.test", backend) + extra, name="A")
cl.start_pebble([port_a])
b, port_b = start_tlsfront(cl.args("*.cm.test", backend) + extra, name="B")
admin = {p: admin_port(p) for p in (a, b)}
for p in (a, b):
    check(p.wait_for(r"stored certificates: %d indexed, 0 skipped, 0 of them decoded" % N, 60)
          is not None, "%s indexes the Redis store from meta.json" % p.name)
ctx = ssl.create_default_context(cafile=os.path.join(many, "ca.crt"))


def metrics(p):
    return cert_cache_metrics(admin[p])


check(metrics(b)["tlsfront_cert_cache_loads_total"] == 0, "nothing decoded at start")
rng = random.Random(int(os.environ.get("TF_SEED", "0")) or None)
sample = rng.sample(range(1, N + 1), CACHE + 50)
wrong, max_size = [], 0
for k, i in enumerate(sample):
    name = "%d.many.test" % i
    got = served_sans(port_b, ctx, name)
    if got != [name]:
        wrong.append((name, got))
    if k % 25 == 0:
        max_size = max(max_size, metrics(b)["tlsfront_cert_cache_size"])
m = metrics(b)
check(not wrong, "each sampled name served from Redis with its certificate (%s)" % wrong[:3])
check(max(max_size, m["tlsfront_cert_cache_size"]) <= CACHE,
      "the cache never held more than %d" % CACHE)
check(m["tlsfront_cert_cache_loads_total"] >= len(sample) and
      m["tlsfront_cert_cache_evictions_total"] > 0,
      "names loaded from Redis and evicted (%d loads, %d evictions)"
      % (m["tlsfront_cert_cache_loads_total"], m["tlsfront_cert_cache_evictions_total"]))

# Another node's certificate, then its renewal: B serves the new one.
first, _ = cl.fetch(port_a, "x.cm.test")
check(b.wait_for(r"name=x\.cm\.test certificate from another node", 30) is not None,
      "B took A's announced certificate")
check(cl.fetch(port_b, "x.cm.test")[0] == first, "B serves A's certificate")
st, _ = admin_call(TOKEN, admin[a], "POST", "/certs/x.cm.test/renew")
check(st == 202, "renewal asked on A (%d)" % st)
check(wait_until(lambda: cl.fetch(port_b, "x.cm.test")[0] != first, 60, 0.2),
      "after A renews, B serves the new certificate, not the one it had loaded")

# Forgotten through A: B drops its indexed stub (loaded or not) and refuses the name.
gone = "%d.many.test" % sample[-1]
st, _ = admin_call(TOKEN, admin[a], "DELETE", "/certs/" + gone)
check(st == 200, "forget asked on A (%d)" % st)
check(wait_until(lambda: not admin_managed(TOKEN, admin[b], gone), 30, 0.2),
      "B drops the forgotten stub")
check(tls_refusal(lambda n: served_sans(port_b, ctx, n), gone) is not None,
      "B refuses the forgotten name")
check(served_sans(port_b, ctx, "%d.many.test" % sample[0]) == ["%d.many.test" % sample[0]],
      "B still serves the other names")
finish()
