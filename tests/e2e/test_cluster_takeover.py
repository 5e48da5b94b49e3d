"""A node killed mid-order loses nothing: the order lock is a short lease (--storage-lease)
renewed while the order runs. Two tlsfront nodes share one Redis; pebble's validator reaches
them through a balancer that can hold (park) the validation connections.

1. Renewal: node A orders a name while validation is held for longer than the lease; the
   lease is renewed, so node B asked for the same name meanwhile waits instead of ordering
   it a second time. Validation released -> one order, both nodes serve the same serial.
2. Takeover: node A orders a fresh name, validation is held (the order is in flight), A is
   killed with SIGKILL. A connection for that name through B is served once A's lease
   expires (not after A's whole --acme-timeout); the name A had issued before is not
   ordered again."""
import os
import signal
import threading


from clusterctl import Cluster
from tfcommon import Backend, check, finish, http_handler, start_tlsfront, wait_until

LEASE = 4  # seconds; the test's bounds are several leases

backend = Backend(http_handler(b"takeover backend"))
cl = Cluster()
peb, bal = cl.peb, cl.bal


def node(name):
    args = cl.args("*.to.test", backend, workers=1) + [
        "--storage-lease", "%ds" % LEASE, "--acme-timeout", "120s", "--hold-timeout", "100s"]
    return start_tlsfront(args, name=name)


(pa, porta), (pb, portb) = node("nodeA"), node("nodeB")
cl.start_pebble([porta, portb])


def fetch(port, name, timeout=110):
    """One verified connection and request through port: (serial, reply)."""
    return cl.fetch(port, name, timeout)


def fetch_bg(port, name, out):
    def run():
        try:
            out[name + "@%d" % port] = fetch(port, name)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            out[name + "@%d" % port] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# 0. A name issued normally through A.
issued = "issued.to.test"
serial_issued, reply = fetch(porta, issued)
check(b"takeover backend" in reply, "a first name is issued and served through node A")
check(peb.orders() == 1, "one order so far (%d)" % peb.orders())

# 1. Renewal: validation held for several leases; B asked meanwhile must not order again.
bal.hold = True
slow = "slow.to.test"
res = {}
ta = fetch_bg(porta, slow, res)
check(wait_until(lambda: len(bal.held) > 0, timeout=60), "A's order reached validation (held)")
tb = fetch_bg(portb, slow, res)
check(pb.wait_for(r"name=%s order lock held elsewhere: waiting" % slow, timeout=30) is not None,
      "node B waits for A's order lock")
# Hold validation for three leases: without renewal, A's lease would expire and B order.
# Unscaled: three leases of real time, well inside the CA's own validation dial timeout.
check(not wait_until(lambda: peb.orders() > 2, timeout=3 * LEASE, scaled=False),
      "no second order while A's order runs past its first lease (renewed)")
bal.release_held(forward=True)
ta.join(110)
tb.join(110)
ra, rb = res.get(slow + "@%d" % porta), res.get(slow + "@%d" % portb)
check(isinstance(ra, tuple) and isinstance(rb, tuple), "both nodes served %s (%r, %r)"
      % (slow, ra, rb))
check(isinstance(ra, tuple) and isinstance(rb, tuple) and ra[0] == rb[0],
      "both nodes serve the same certificate for %s" % slow)
check(peb.orders() == 2, "one order for %s (orders: %d)" % (slow, peb.orders()))
check("order lock lease lost" not in pa.stderr_text(), "A never lost its lease")

# 2. Takeover: A killed with its order in flight; B serves the name soon after the lease.
fresh = "fresh.to.test"
bal.hold = True
res2 = {}
fetch_bg(porta, fresh, res2)
check(wait_until(lambda: len(bal.held) > 0, timeout=60), "A's order for %s is in flight" % fresh)
check(pa.wait_for(r"name=%s" % fresh, timeout=10) is not None, "A is ordering %s" % fresh)
os.kill(pa.pid, signal.SIGKILL)
pa.p.wait()
bal.backends = [portb]
bal.release_held()
orders_before = peb.orders()
serial, reply = fetch(portb, fresh)
check(b"takeover backend" in reply, "B serves %s after A was killed mid-order" % fresh)
check(peb.orders() == orders_before + 1, "B made one order for %s" % fresh)
s2, _ = fetch(portb, issued)
check(s2 == serial_issued, "B serves the name A had issued with A's certificate")
check(peb.orders() == orders_before + 1, "no second certificate for the name already issued")
finish()
