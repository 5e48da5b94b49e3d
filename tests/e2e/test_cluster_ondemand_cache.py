"""Certificates another node obtains while running are bounded by --cert-cache on every node:
two nodes share an empty Redis storage, each with --cert-cache 2. Node A obtains 5 names from
pebble; node B takes each announced certificate into its cache (no load) and evicts as it
goes, never holding more than 2; B then serves every name, the evicted ones included, with
A's certificate, loaded back from Redis, and no node orders again."""
from clusterctl import Cluster, admin_port, secret_file
from tfcommon import (Backend, check, cert_cache_metrics, finish, http_handler,
                      start_tlsfront)

CACHE = 2
N = 5
TOKEN = "s3cret-token-0123456789abcdef"

cl = Cluster(balancer=False)  # pebble validates through node A
backend = Backend(http_handler(b"hi"))
extra = ["--cert-cache", str(CACHE), "--admin", "127.0.0.1:0",
         "--admin-token-file", secret_file(TOKEN)]
a, port_a = start_tlsfront(cl.args("*.cl.test", backend) + extra, name="A")
cl.start_pebble([port_a])
b, port_b = start_tlsfront(cl.args("*.cl.test", backend) + extra, name="B")
admin = {p: admin_port(p) for p in (a, b)}
for p in (a, b):
    check(p.wait_for(r"stored certificates: 0 loaded", 30) is not None,
          "%s starts with an empty store" % p.name)

names = ["n%d.cl.test" % i for i in range(N)]
serials, sizes = {}, []
for name in names:
    serials[name], _ = cl.fetch(port_a, name)
    check(b.wait_for(r"name=%s certificate from another node" % name.replace(".", r"\."), 30)
          is not None, "B took A's certificate for %s" % name)
    sizes.append(cert_cache_metrics(admin[b])["tlsfront_cert_cache_size"])
m = cert_cache_metrics(admin[b])
check(max(sizes) <= CACHE, "B's cache never held more than %d (%s)" % (CACHE, sizes))
check(m["tlsfront_cert_cache_evictions_total"] >= N - CACHE and
      m["tlsfront_cert_cache_loads_total"] == 0,
      "announced certificates went to B's cache, evicted as it filled (%s)" % m)

wrong = [n for n in names if cl.fetch(port_b, n)[0] != serials[n]]
check(not wrong, "B serves every name with A's certificate (%s)" % wrong)
m = cert_cache_metrics(admin[b])
check(m["tlsfront_cert_cache_loads_total"] >= N - CACHE,
      "B loaded the evicted names back from Redis (%d)" % m["tlsfront_cert_cache_loads_total"])
check(m["tlsfront_cert_cache_size"] <= CACHE, "B's cache still holds at most %d" % CACHE)
check(cert_cache_metrics(admin[a])["tlsfront_cert_cache_size"] <= CACHE,
      "so does A's")
check(cl.peb.orders() == N, "one order per name in the cluster (%d)" % cl.peb.orders())
finish()
