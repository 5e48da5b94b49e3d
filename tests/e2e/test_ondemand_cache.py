"""Certificates obtained on demand while running are bounded by --cert-cache like every
other cached certificate: tlsfront starts with an empty --storage directory (a store small
enough to be decoded in full), --cert-cache 3, and obtains 8 names from pebble (the first
from four clients at once). The handshakes held while a name is issued get its new
certificate with no load; the cache never holds more than 3 certificates (the rest are evicted); every name,
the first (evicted) ones included, is served again with the certificate it was issued,
loaded back from the storage (the loads counter grows) with no new order. The listing and the
tlsfront_certificates gauge show each name once; a forgotten name leaves the cache at once;
a renewed evicted name is served with its new certificate; after a SIGHUP reload the names
are still served."""
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from clusterctl import admin_call, admin_port, fetch, pebble_root_file, secret_file
from pebblectl import Pebble
from tfcommon import (Backend, bound, check, finish, http_handler, start_tlsfront, tmpdir,
                      wait_until)

CACHE = 3
N = 8
TOKEN = "s3cret-token-0123456789abcdef"

backend = Backend(http_handler(b"live backend"))
storage = tmpdir()
peb = Pebble()
args = peb.tlsfront_args(storage) + [
    "--allow", "*.live.test", "--backend", backend.addr, "--workers", "2",
    "--cert-cache", str(CACHE), "--admin", "127.0.0.1:0",
    "--admin-token-file", secret_file(TOKEN)]
tf, port = start_tlsfront(args)
peb.start(port)
aport = admin_port(tf)
rootf = pebble_root_file(peb)
check(tf.wait_for(r"stored certificates: 0 loaded, 0 skipped", 30) is not None,
      "an empty store is decoded in full at start")


def metrics():
    """Every sample of the admin endpoint's /metrics, by name with its labels."""
    url = "http://127.0.0.1:%d/metrics" % aport
    with urllib.request.urlopen(url, timeout=bound(10)) as r:
        text = r.read().decode()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"^(tlsfront_[^ ]+) (\S+)$", text, re.M)}


def cache_size():
    return metrics()["tlsfront_cert_cache_size"]


def orders_ok():
    return metrics()['tlsfront_orders_total{result="ok"}']


names = ["n%d.live.test" % i for i in range(N)]
serials, sizes = {}, []
# The first name from four clients at once: every handshake held during its order gets it.
with ThreadPoolExecutor(4) as ex:
    got = list(ex.map(lambda _: fetch(rootf, port, names[0]), range(4)))
check(len({g[0] for g in got}) == 1 and all(b"live backend" in g[1] for g in got),
      "four handshakes held during one order all served its certificate")
serials[names[0]] = got[0][0]
sizes.append(cache_size())
for name in names[1:]:
    serials[name], reply = fetch(rootf, port, name)
    check(b"live backend" in reply, "%s obtained and proxied on its first connection" % name)
    sizes.append(cache_size())
m = metrics()
check(orders_ok() == N and peb.orders() == N, "one order per name (%d, pebble %d)"
      % (orders_ok(), peb.orders()))
check(max(sizes) <= CACHE, "the cache never held more than %d (sizes %s)" % (CACHE, sizes))
check(m["tlsfront_cert_cache_evictions_total"] >= N - CACHE,
      "certificates obtained while running are evicted (%d)"
      % m["tlsfront_cert_cache_evictions_total"])
check(m["tlsfront_cert_cache_loads_total"] == 0,
      "handshakes held during the issuance got the new certificate without a load")
check(m["tlsfront_certificates"] == N, "each name counted once (%s)" % m["tlsfront_certificates"])
st, listing = admin_call(TOKEN, aport, "GET", "/certs")
listed = sorted(n for c in listing for n in c["names"])
check(st == 200 and listed == names, "each name listed once (%s)" % listed)

# Every name again, the evicted first ones included: the same certificate, loaded back from
# the storage, no new order.
wrong = [n for n in names if fetch(rootf, port, n)[0] != serials[n]]
m = metrics()
check(not wrong, "every name served again with the certificate it was issued (%s)" % wrong)
check(m["tlsfront_cert_cache_loads_total"] >= N - CACHE,
      "evicted names loaded back from the storage (%d loads)"
      % m["tlsfront_cert_cache_loads_total"])
check(m["tlsfront_cert_cache_size"] <= CACHE, "the cache still holds at most %d" % CACHE)
check(orders_ok() == N and peb.orders() == N, "no new order for them (%d)" % peb.orders())

# Forgetting a cached name drops its certificate from the cache at once.
last = names[-1]
size = cache_size()
st, doc = admin_call(TOKEN, aport, "DELETE", "/certs/" + last)
check(st == 200 and doc.get("forgotten_memory"), "forgotten (%d %s)" % (st, doc))
check(cache_size() == size - 1, "its certificate left the cache (%d -> %d)"
      % (size, cache_size()))
st, listing = admin_call(TOKEN, aport, "GET", "/certs")
check(last not in [n for c in listing for n in c["names"]], "and the listing")
check(metrics()["tlsfront_certificates"] == N - 1, "and the count")

# Renewing an evicted name: its new certificate goes to the cache, and is served.
first = names[0]
fetch(rootf, port, names[1])  # make room: names[0] is not the most recent
st, _ = admin_call(TOKEN, aport, "POST", "/certs/%s/renew" % first)
check(st == 202, "renewal asked (%d)" % st)
check(wait_until(lambda: fetch(rootf, port, first)[0] != serials[first], 60, 0.2),
      "the renewed certificate is served")
check(cache_size() <= CACHE, "the cache still holds at most %d" % CACHE)

# A reload keeps every name (the live index is the manager's, not the reloaded config's).
loads = metrics()["tlsfront_cert_cache_loads_total"]
tf.signal(1)
check(tf.wait_for(r"reloaded: ", 30) is not None, "reloaded")
wrong = [n for n in names[1:-1] if fetch(rootf, port, n)[0] != serials[n]]
check(not wrong, "every name served after the reload (%s)" % wrong)
check(metrics()["tlsfront_cert_cache_loads_total"] > loads, "loaded from the storage")
check(metrics()["tlsfront_cert_cache_size"] <= CACHE, "within the cache after the reload")
check(peb.orders() == N + 1, "no order but the renewal (%d)" % peb.orders())
finish()
