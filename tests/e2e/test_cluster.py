"""Cluster mode against a real redis-server and pebble with real TLS-ALPN-01 validation:
three tlsfront nodes share one Redis; pebble's validator reaches them through a TCP
round-robin balancer, so a challenge is validated by whichever node the connection lands
on. Ten fresh names, first connections spread over the nodes: each is served on its first
connection, pebble sees exactly ten orders, every node ends up serving every name with the
same serial (announced, not ordered again), and a fourth node started later serves them all
from Redis with no new order. Session tickets from any node resume on any other (the
ticket key ring is shared through Redis)."""
import socket
import ssl
import threading
import urllib.error
import urllib.request


from clusterctl import Cluster, admin_port
from tfcommon import Backend, check, finish, http_handler, start_tlsfront, wait_until

backend = Backend(http_handler(b"cluster backend"))
cl = Cluster()
redis, peb, bal = cl.redis, cl.peb, cl.bal
fetch = cl.fetch


def node(name):
    return start_tlsfront(cl.args("*.cl.test", backend) + ["--admin", "127.0.0.1:0"],
                          name=name)


def admin(proc, path):
    """(status, body) of the node's admin endpoint."""
    port = admin_port(proc)
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


nodes = [node("node%d" % i) for i in range(3)]
cl.start_pebble([p for _, p in nodes])
rootf = cl.rootf


names = ["n%d.cl.test" % i for i in range(10)]
first = {}
errors = {}


def first_conn(i):
    try:
        first[names[i]] = fetch(nodes[i % 3][1], names[i])
    except Exception as e:  # noqa: BLE001 - reported below
        errors[names[i]] = repr(e)


threads = [threading.Thread(target=first_conn, args=(i,)) for i in range(10)]
for t in threads:
    t.start()
for t in threads:
    t.join(120)
check(not errors, "every fresh name served on its first connection (%s)" % errors)
check(all(b"cluster backend" in first[n][1] for n in first), "the backend answered each one")
check(peb.orders() == 10, "exactly ten orders at pebble (%d)" % peb.orders())
check(len(bal.counts) == 3 and all(v > 0 for v in bal.counts.values()),
      "validation connections reached every node, not only the ordering one (%s)" % bal.counts)

# Announcements: every node loads the certificates the others obtained without being asked.
for i, (p, _) in enumerate(nodes):
    others = [n for j, n in enumerate(names) if j % 3 != i]
    ok = wait_until(lambda: all("name=%s certificate from another node" % n in p.stderr_text()
                                for n in others), timeout=30)
    check(ok, "node%d loaded the %d certificates the other nodes obtained" % (i, len(others)))

for i, (_, port) in enumerate(nodes):
    for n in names:
        serial, _ = fetch(port, n)
        check(serial == first[n][0], "node%d serves %s with the same serial" % (i, n))
check(peb.orders() == 10, "still ten orders after every node served every name")


# Shared session ticket keys: a session from one node resumes on every other one.
def session_from(port, name):
    c = ssl.create_default_context(cafile=rootf)
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    with c.wrap_socket(raw, server_hostname=name) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % name.encode())
        while s.recv(65536):
            pass
        return c, s.session


def resumed_on(port, name, c, sess):
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    with c.wrap_socket(raw, server_hostname=name, session=sess) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % name.encode())
        while s.recv(65536):
            pass
        return s.session_reused


for a in range(3):
    b = (a + 1) % 3
    c, sess = session_from(nodes[a][1], names[0])
    check(sess is not None and sess.has_ticket, "node%d issued a session ticket" % a)
    check(resumed_on(nodes[b][1], names[0], c, sess),
          "a session ticket from node%d resumes on node%d" % (a, b))

late, late_port = node("node3")
for n in names:
    serial, _ = fetch(late_port, n)
    check(serial == first[n][0], "a node started later serves %s with the same serial" % n)
check(peb.orders() == 10, "no new order for the late node (%d)" % peb.orders())

# Redis stopped: issued names are still served by every node; a fresh name is refused at
# once with the storage reason; Redis back (empty: no persistence) -> served, no restart.
check(admin(nodes[0][0], "/readyz") == (200, "ready\n"), "readyz: ready with Redis up")
check("tlsfront_storage_up 1" in admin(nodes[0][0], "/metrics")[1], "storage_up is 1")
redis.stop()
check(wait_until(lambda: "tlsfront_storage_up 0" in admin(nodes[0][0], "/metrics")[1],
                 timeout=30), "storage_up is 0 once Redis is stopped")
check(admin(nodes[0][0], "/readyz") == (200, "ready; storage down\n"),
      "readyz stays 200 (the node serves what it holds) and says the storage is down")
for i, (_, port) in enumerate(nodes):
    serial, _ = fetch(port, names[1])
    check(serial == first[names[1]][0], "node%d serves %s while Redis is down" % (i, names[1]))
try:
    fetch(nodes[0][1], "fresh.cl.test", timeout=30)
    check(False, "a fresh name is refused while Redis is down")
except ssl.SSLError:
    pass
p0 = nodes[0][0]
check(wait_until(lambda: "storage_unavailable" in p0.stdout_text() + p0.stderr_text(),
                 timeout=10), "the refusal names the storage in the access log")
redis.start()


def fresh_served():
    try:
        fetch(nodes[0][1], "fresh.cl.test", timeout=30)
        return True
    except (ssl.SSLError, OSError):
        return False


check(wait_until(fresh_served, timeout=60, step=0.5),
      "a fresh name is served again once Redis is back, without a restart")
check(wait_until(lambda: "tlsfront_storage_up 1" in admin(nodes[0][0], "/metrics")[1],
                 timeout=30), "storage_up is 1 again once Redis is back")

finish()
