"""Cluster-wide issuance budget against a real redis-server and pebble: two tlsfront nodes
share one Redis with --ca-certs-per-domain 2. Two names under one registered domain are
obtained through node A; a third name under the same registered domain, asked of node B
(which has ordered nothing itself, so its local mirror would admit it), is refused with the
budget reason, and pebble sees no third order. A name under another registered domain is
still obtained through node B."""
import ssl
import urllib.request

from clusterctl import Cluster, admin_port
from tfcommon import Backend, check, finish, http_handler, start_tlsfront

backend = Backend(http_handler(b"budget backend"))
cl = Cluster()
peb = cl.peb


def node(name):
    args = cl.args("*.bd.test", backend, workers=1) + [
        "--allow", "*.other.test", "--ca-certs-per-domain", "2", "--admin", "127.0.0.1:0"]
    return start_tlsfront(args, name=name)


def metrics(proc):
    port = admin_port(proc)
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        return r.read().decode()


(pa, porta), (pb, portb) = node("nodeA"), node("nodeB")
cl.start_pebble([porta, portb])


def fetch(port, name, timeout=60):
    """True when name is served with a certificate pebble's root verifies."""
    try:
        return b"budget backend" in cl.fetch(port, name, timeout)[1]
    except (ssl.SSLError, OSError):
        return False


check(fetch(porta, "a1.bd.test"), "node A obtains a1.bd.test")
check(fetch(porta, "a2.bd.test"), "node A obtains a2.bd.test")
check(peb.orders() == 2, "two orders at pebble (%d)" % peb.orders())
check(not fetch(portb, "a3.bd.test", timeout=30),
      "node B refuses a third name under bd.test: the domain's budget is shared")
check("order refused by the cluster-wide budget: ca_certs_per_domain" in pb.stderr_text(),
      "node B logs the cluster-wide per-domain limit")
check('tlsfront_ondemand_refused_total{reason="budget"} 1' in metrics(pb),
      "node B counts the refusal with the budget reason")
check(peb.orders() == 2, "no third order at pebble (%d)" % peb.orders())
check(fetch(portb, "b1.other.test"), "node B still obtains a name under another domain")
check(peb.orders() == 3, "three orders at pebble (%d)" % peb.orders())

finish()
