"""Cluster-wide issuance budget against a real redis-server and pebble: two tlsfront nodes
share one Redis with --ca-certs-per-domain 2. Two names under one registered domain are
obtained through node A; a third name under the same registered domain, asked of node B
(which has ordered nothing itself, so its local mirror would admit it), is refused with the
budget reason, and pebble sees no third order. A name under another registered domain is
still obtained through node B."""
import socket
import ssl
import urllib.request

import clusterctl  # noqa: E402
from clusterctl import Balancer, Redis, storage_key_file
from pebblectl import Pebble
from tfcommon import Backend, check, finish, http_handler, start_tlsfront

backend = Backend(http_handler(b"budget backend"))
redis = Redis()
redis.start()
key = storage_key_file()
peb = Pebble()
bal = Balancer()


def node(name):
    args = peb.tlsfront_args(redis.url) + [
        "--storage-key", key, "--allow", "*.bd.test", "--allow", "*.other.test",
        "--ca-certs-per-domain", "2", "--backend", backend.addr, "--workers", "1",
        "--log-level", "debug", "--admin", "127.0.0.1:0"]
    return start_tlsfront(args, name=name)


def metrics(proc):
    port = int(proc.wait_for(r"admin endpoint on 127\.0\.0\.1:(\d+)").group(1))
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        return r.read().decode()


(pa, porta), (pb, portb) = node("nodeA"), node("nodeB")
bal.backends = [porta, portb]
peb.start(bal.port)
rootf = clusterctl.pebble_root_file(peb)


def fetch(port, name, timeout=60):
    """True when name is served with a certificate pebble's root verifies."""
    c = ssl.create_default_context(cafile=rootf)
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        with c.wrap_socket(raw, server_hostname=name) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % name.encode())
            return b"budget backend" in s.recv(65536)
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
