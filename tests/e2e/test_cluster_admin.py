"""Admin API actions in cluster mode against a real redis-server and pebble: two nodes share
one Redis (pebble validates through a round-robin balancer). A name issued through node A is
served by both; DELETE through A's admin API makes node B drop its copy (B's next handshake
orders a new certificate on demand, asking --ask again); an ask-cache purge through B drops
A's cached --ask answers; a revoke through B makes A stop serving the revoked serial (A's
next handshake gets a new certificate and asks again). A name that failed on both nodes is
backed off on both; an unpause through A clears B's backoff too (B then issues it)."""
import functools
import json
import ssl
import urllib.request

from clusterctl import Cluster, admin_call, admin_managed, admin_port, ask_yes, secret_file
from tfcommon import Backend, bound, check, finish, http_handler, start_tlsfront, wait_until

TOKEN = "cluster-admin-token-0123456789"
ask_url, asked = ask_yes()
tokf = secret_file(TOKEN)
backend = Backend(http_handler(b"cluster admin backend"))
cl = Cluster()
peb = cl.peb


def node(name):
    args = cl.args("*.ca.test", backend) + [
        "--ask", ask_url, "--admin", "127.0.0.1:0", "--admin-token-file", tokf,
        "--backoff-base", "1h"]
    p, port = start_tlsfront(args, name=name)
    return p, port, admin_port(p)


(pa, port_a, admin_a), (pb, port_b, admin_b) = node("nodeA"), node("nodeB")
cl.start_pebble([port_a, port_b])
call = functools.partial(admin_call, TOKEN)
managed = functools.partial(admin_managed, TOKEN)


def serial(port, name):
    return cl.fetch(port, name)[0]


NAME = "x.ca.test"
s1 = serial(port_a, NAME)
check(len(asked) == 1 and peb.orders() == 1, "issued through node A after one ask")
check(wait_until(lambda: managed(admin_b, NAME), timeout=30, step=0.1),
      "node B loads the announced certificate")
check(serial(port_b, NAME) == s1, "node B serves the same serial")

# Forget through A: B drops its copy; its next handshake orders again (B asks: no cached answer).
st, doc = call(admin_a, "DELETE", "/certs/" + NAME)
check(st == 200 and doc["forgotten_memory"] and doc["forgotten_storage"], "DELETE on A: %s" % doc)
check(wait_until(lambda: not managed(admin_b, NAME), timeout=30, step=0.1),
      "node B forgets the name forgotten through node A")
s2 = serial(port_b, NAME)
check(s2 != s1 and peb.orders() == 2, "node B's next handshake gets a new certificate")
check(len(asked) == 2, "node B asked --ask for it (%d asks)" % len(asked))
check(wait_until(lambda: managed(admin_a, NAME), timeout=30, step=0.1) and
      serial(port_a, NAME) == s2, "node A serves B's new certificate")

# Purge the ask cache through B: A's cached answer for the name (from the first order) goes too.
st, doc = call(admin_b, "POST", "/ask-cache/purge")
check(st == 200, "ask-cache purge on B: %s" % doc)

# Revoke through B: A stops serving the revoked serial.
st, doc = call(admin_b, "POST", "/certs/%s/revoke" % NAME, {"reason": "superseded"})
check(st == 200 and doc.get("revoked") and int(doc["serial"], 16) == s2, "revoke on B: %s" % doc)
check(wait_until(lambda: not managed(admin_a, NAME), timeout=30, step=0.1),
      "node A forgets the name revoked through node B")
s3 = serial(port_a, NAME)
check(s3 not in (s1, s2) and peb.orders() == 3, "node A's next handshake gets a new certificate")
check(len(asked) == 3, "node A asked --ask again: its cached answer was purged (%d asks)" %
      len(asked))

# Unpause through A clears the backoff on B as well.
BROKEN = "broken.ca.test"
peb.set_a(BROKEN, "127.0.0.9")
for port, aport in ((port_a, admin_a), (port_b, admin_b)):
    try:
        serial(port, BROKEN)
        check(False, "validation against a wrong address fails")
    except (ssl.SSLError, OSError):
        pass
    st, doc = call(aport, "GET", "/certs/" + BROKEN)
    check(st == 200 and doc["backoff_until"], "the failed name is backed off (%s)" % doc)
clear = urllib.request.Request("http://127.0.0.1:%d/clear-a" % peb.dns_mgmt,
                               data=json.dumps({"host": BROKEN}).encode())
urllib.request.urlopen(clear, timeout=bound(10)).read()  # back to challtestsrv's default
st, doc = call(admin_a, "POST", "/certs/%s/unpause" % BROKEN)
check(st == 200 and doc["backoff_cleared"] is True, "unpause on A: %s" % doc)
check(wait_until(lambda: call(admin_b, "GET", "/certs/" + BROKEN)[1].get("backoff_until") is None,
                 timeout=30, step=0.1), "node B's backoff is cleared by the unpause on A")
check(serial(port_b, BROKEN) > 0, "node B issues the unpaused name at its next handshake")
finish()
