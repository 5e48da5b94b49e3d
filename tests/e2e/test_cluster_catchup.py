"""Catching up after a gap, against a real redis-server and pebble: two nodes share one Redis,
node B through a TCP relay the test cuts, so B misses announcements for real. While B is cut
off, node A finishes an order whose challenge B had installed from A's announcement (the
challenge's removal is missed) and forgets a name through its admin API (the forget is
missed). Once the relay is back, B's resync drops the forgotten name (B's next handshake for
it orders again and asks --ask again, instead of serving its stale copy) and the withdrawn
challenge (an acme-tls/1 handshake to B for it is refused), and loads A's new certificate."""
import functools
import socket
import ssl
import threading

from clusterctl import (Cluster, Relay, admin_call, admin_managed, admin_port, ask_yes,
                        secret_file)
from tfcommon import (Backend, bound, check, finish, http_handler, start_tlsfront, step,
                      wait_until)

TOKEN = "cluster-catchup-token-0123456789"
ask_url, asked = ask_yes()
tokf = secret_file(TOKEN)
backend = Backend(http_handler(b"cluster catch-up backend"))
cl = Cluster()
peb, bal = cl.peb, cl.bal
relay = Relay(cl.redis.port)


def node(name, store):
    args = cl.args("*.ca.test", backend, store=store) + [
        "--ask", ask_url, "--admin", "127.0.0.1:0", "--admin-token-file", tokf]
    p, port = start_tlsfront(args, name=name)
    return p, port, admin_port(p)


(pa, port_a, admin_a), (pb, port_b, admin_b) = node("nodeA", None), node("nodeB", relay)
cl.start_pebble([port_a, port_b])
call = functools.partial(admin_call, TOKEN)
managed = functools.partial(admin_managed, TOKEN)


def serial(port, name):
    return cl.fetch(port, name)[0]


def challenge_served(port, name):
    """Whether port answers an acme-tls/1 handshake for name with a challenge certificate
    (RFC 8737: the acmeIdentifier extension)."""
    from cryptography import x509
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.set_alpn_protocols(["acme-tls/1"])
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=bound(30))
        with c.wrap_socket(raw, server_hostname=name) as s:
            der = s.getpeercert(binary_form=True)
    except (ssl.SSLError, OSError):
        return False
    exts = x509.load_der_x509_certificate(der).extensions
    return any(e.oid.dotted_string == "1.3.6.1.5.5.7.1.31" for e in exts)


NAME, CHAL = "gone.ca.test", "chal.ca.test"
s1 = serial(port_a, NAME)
check(wait_until(lambda: managed(admin_b, NAME), timeout=30, step=0.1),
      "node B loads the certificate announced by node A")
check(serial(port_b, NAME) == s1 and len(asked) == 1, "node B serves A's certificate")

# A's order for CHAL waits on validation (pebble's connections are parked) until B has
# installed the challenge A announced; then B is cut off and the order finishes.
bal.hold = True
got = {}
t = threading.Thread(target=lambda: got.update(s=serial(port_a, CHAL)), daemon=True)
t.start()
check(pb.wait_for(r"name=%s challenge from another node installed" % CHAL.replace(".", r"\."),
                  timeout=60) is not None, "node B installs the challenge A announced")
check(challenge_served(port_b, CHAL), "node B answers acme-tls/1 for it")
relay.cut()
bal.release_held(forward=True)
with step("node A's order for %s" % CHAL):
    t.join(bound(120))
check(got.get("s", 0) > 0, "node A obtains %s while node B is cut off" % CHAL)
st, doc = call(admin_a, "DELETE", "/certs/" + NAME)
check(st == 200 and doc["forgotten_storage"], "DELETE on A while B is cut off: %s" % doc)
check(managed(admin_b, NAME), "node B, cut off, still holds the name")

# The subscriber comes back first, B's command connection only later: the gap is noticed
# while the store cannot be read yet, and the reload must be tried again, not given up.
relay.restore(commands=False)
check(pb.wait_for(r"reloading stored certificates after a gap: .*; again in", timeout=60)
      is not None, "node B's reload fails while its store cannot be read (%d command "
      "connections refused)" % relay.refused_commands)
relay.allow_commands()
check(pb.wait_for(r"reloaded stored certificates after a gap", timeout=60) is not None,
      "node B resyncs after the gap")
check(wait_until(lambda: not managed(admin_b, NAME), timeout=30, step=0.1),
      "node B drops the name forgotten during the gap")
check(pb.wait_for(r"caught up after a gap: 1 names forgotten elsewhere dropped, 1 withdrawn "
                  r"challenges removed", timeout=30) is not None, "node B logs its catch-up")
check(not challenge_served(port_b, CHAL), "node B no longer answers the withdrawn challenge")
check(wait_until(lambda: managed(admin_b, CHAL), timeout=30, step=0.1) and
      serial(port_b, CHAL) == got["s"], "node B serves A's certificate obtained during the gap")
orders = peb.orders()
s2 = serial(port_b, NAME)
check(s2 != s1 and peb.orders() == orders + 1, "node B's next handshake orders the name again")
check(len(asked) == 3, "node B asked --ask for it (%d asks)" % len(asked))

# B's command connection alone goes (its subscriber stays, so no gap is seen): the
# announcement of a certificate A obtains meanwhile reaches B, which cannot read it. B
# catches up once the store answers, without a handshake asking it for the name.
LATE = "late.ca.test"
bal.backends = [port_a]  # pebble validates through A: B cannot read challenges meanwhile
relay.cut_commands()
s_late = serial(port_a, LATE)
check(pb.wait_for(r"name=late\.ca\.test announced certificate not loaded", timeout=30)
      is not None, "node B cannot load the certificate announced while its store is down")
relay.allow_commands()
check(wait_until(lambda: managed(admin_b, LATE), timeout=60, step=0.2),
      "node B loads it once the store answers again")
check(serial(port_b, LATE) == s_late, "node B serves A's certificate for it")
finish()
