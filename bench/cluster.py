#!/usr/bin/env python3
"""Cluster figure (docs/benchmarks.md, "Cluster"): three tlsfront nodes sharing one Redis
issue on demand for fresh names against pebble, then serve a burst of handshakes for the
names they know.

  bench/cluster.py BIN [--nodes 3] [--names 300] [--concurrency 12] [--handshakes 3000]
                       [--idle-s 10] [--limit-s 900]

Reuses the e2e helpers (tests/e2e/clusterctl.py, pebblectl.py, tfcommon.py): a real
redis-server (no persistence), pebble + challtestsrv (PEBBLE_VA_NOSLEEP=1), a TCP
round-robin balancer in front of the nodes for pebble's TLS-ALPN-01 validator, and the
nodes themselves, all on 127.0.0.1 with kernel-chosen ports; every process it starts is
stopped by PID at exit.

1. Issue: the first connection for each name goes to node (i mod nodes), --concurrency at
   a time, each a verified TLS handshake plus one HTTP request. Reports the names served on
   their first connection, pebble's order count (from its log, as the e2e tests count it)
   per name, and the wall time to issue them all.
2. Known names: waits until every node has loaded (from the others' announcements) every
   certificate it did not order, then reads Redis's INFO commandstats around an idle window
   (--idle-s) and around a burst of --handshakes full handshakes (no resumption, each
   verified against pebble's root, 8 client threads) for the known names, every (name,
   node) pair in turn. Redis commands per handshake = (burst delta - idle rate x burst
   time) / handshakes; both deltas are printed, per command. The bench's own INFO calls are
   left out of the counts.

The nodes' CA-limit mirror counts 300 orders per account per 3 h (Let's Encrypt's limit),
so --names above 300 are refused by design; --issue-rate/--issue-burst and
--ca-certs-per-domain are raised so that the budget does not pace the run.
"""
import argparse
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bin", help="the tlsfront binary")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--names", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=12,
                    help="first connections in flight at once")
    ap.add_argument("--handshakes", type=int, default=3000)
    ap.add_argument("--idle-s", type=float, default=10.0)
    ap.add_argument("--limit-s", type=int, default=900, help="the whole run's time limit")
    a = ap.parse_args()
    if not (1 <= a.nodes <= 16 and 1 <= a.names <= 300 and 1 <= a.concurrency <= 64 and
            1 <= a.handshakes <= 100000 and 0 < a.idle_s <= 300):
        ap.error("out of bounds: 1..16 nodes, 1..300 names, 1..64 concurrency, "
                 "1..100000 handshakes, idle 0..300 s")
    return a


args = parse_args()
# tfcommon reads TLSFRONT_BIN at import; pebblectl finds certs/mkcerts.sh under TF_SRC.
os.environ["TLSFRONT_BIN"] = os.path.abspath(args.bin)
os.environ["TF_SRC"] = SRC
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))

from clusterctl import Balancer, Redis, storage_key_file  # noqa: E402
from pebblectl import Pebble  # noqa: E402
from tfcommon import Backend, http_handler, start_tlsfront, tmpdir, wait_until  # noqa: E402


def on_alarm(_sig, _frame):
    raise TimeoutError("bench/cluster.py: the run passed --limit-s")


signal.signal(signal.SIGALRM, on_alarm)
signal.alarm(args.limit_s)


def commandstats(port):
    """{command: calls} from INFO commandstats, without the INFO command itself."""
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "commandstats"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    calls = {}
    for line in out.splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line[len("cmdstat_"):].partition(":")
            fields = dict(kv.split("=", 1) for kv in rest.strip().split(","))
            if name != "info":
                calls[name] = int(fields["calls"])
    return calls


def delta(a, b):
    d = {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b)}
    return {k: v for k, v in d.items() if v}


def fmt(d):
    return ", ".join("%s %d" % (k, d[k]) for k in sorted(d)) or "none"


backend = Backend(http_handler(b"cluster backend"))
redis = Redis()
redis.start()
key = storage_key_file()
peb = Pebble()
bal = Balancer()
nodes = []
for i in range(args.nodes):
    nodes.append(start_tlsfront(peb.tlsfront_args(redis.url) + [
        "--storage-key", key, "--allow", "*.cl.test", "--backend", backend.addr,
        "--workers", "2", "--issue-rate", "100000", "--issue-burst", "100000",
        "--ca-certs-per-domain", "1000000", "--max-orders", "8", "--hold-timeout", "60s"],
        name="node%d" % i))
bal.backends = [p for _, p in nodes]
peb.start(bal.port)
rootf = os.path.join(tmpdir(), "root.pem")
with open(rootf, "w") as f:
    f.write(peb.root_pem())
ctx = ssl.create_default_context(cafile=rootf)


def first_conn(port, name):
    """A verified handshake and one request; True when the backend answered."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=90)
    with ctx.wrap_socket(raw, server_hostname=name) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % name.encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    return b"cluster backend" in data


names = ["n%d.cl.test" % i for i in range(args.names)]
served = {}
errors = {}
lock = threading.Lock()
todo = list(range(args.names))


def issuer():
    while True:
        with lock:
            if not todo:
                return
            i = todo.pop(0)
        try:
            ok = first_conn(nodes[i % args.nodes][1], names[i])
        except Exception as e:  # noqa: BLE001 - counted and shown below
            ok = False
            errors[names[i]] = repr(e)
        with lock:
            served[names[i]] = ok


issue_before = commandstats(redis.port)
t0 = time.monotonic()
threads = [threading.Thread(target=issuer, daemon=True) for _ in range(args.concurrency)]
for t in threads:
    t.start()
for t in threads:
    t.join()
issue_s = time.monotonic() - t0
issue_cmds = sum(delta(issue_before, commandstats(redis.port)).values())
n_served = sum(1 for v in served.values() if v)
orders = peb.orders()
print("issue: %d nodes, %d names, %d first connections at once" %
      (args.nodes, args.names, args.concurrency))
print("  served on the first connection: %d/%d" % (n_served, args.names))
if errors:
    print("  errors (first 5): %s" % list(errors.items())[:5])
print("  orders at pebble: %d = %.3f per name" % (orders, orders / args.names))
print("  time to issue all: %.2f s (%.1f names/s)" % (issue_s, args.names / issue_s))
print("  Redis commands while issuing (the measure works): %d = %.1f per name" %
      (issue_cmds, issue_cmds / args.names))
print("  validation connections per node: %s" % sorted(bal.counts.values()))

# Every node holds every name before the burst: the ones it did not order come from the
# others' announcements.
t1 = time.monotonic()
for i, (p, _) in enumerate(nodes):
    others = [n for j, n in enumerate(names) if j % args.nodes != i]
    ok = wait_until(lambda: all("name=%s certificate from another node" % n in p.stderr_text()
                                for n in others), timeout=120, step=0.5)
    if not ok:
        sys.exit("node%d did not load every certificate the others obtained" % i)
print("  every node loaded the others' certificates %.2f s after the last first "
      "connection" % (time.monotonic() - t1))
orders_before_burst = peb.orders()

before = commandstats(redis.port)
time.sleep(args.idle_s)
after = commandstats(redis.port)
idle = delta(before, after)
idle_total = sum(idle.values())

pairs = [(n, port) for n in names for _, port in nodes]
hs_done = [0]
hs_err = []
k = [0]


def burster():
    while True:
        with lock:
            if k[0] >= args.handshakes:
                return
            n, port = pairs[k[0] % len(pairs)]
            k[0] += 1
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=30)
            with ctx.wrap_socket(raw, server_hostname=n):
                pass
            with lock:
                hs_done[0] += 1
        except Exception as e:  # noqa: BLE001 - counted and shown below
            with lock:
                hs_err.append(repr(e))


before = commandstats(redis.port)
t2 = time.monotonic()
threads = [threading.Thread(target=burster, daemon=True) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
burst_s = time.monotonic() - t2
after = commandstats(redis.port)
burst = delta(before, after)
burst_total = sum(burst.values())
background = idle_total / args.idle_s * burst_s
per_hs = (burst_total - background) / args.handshakes

print("known names: %d full handshakes over %d (name, node) pairs, 8 client threads" %
      (args.handshakes, len(pairs)))
print("  completed: %d, failed: %d%s" % (hs_done[0], len(hs_err),
                                         (" (first: %s)" % hs_err[0]) if hs_err else ""))
print("  burst: %.2f s (%.0f handshakes/s)" % (burst_s, args.handshakes / burst_s))
print("  Redis commands in the idle window (%.1f s): %d (%s)" %
      (args.idle_s, idle_total, fmt(idle)))
print("  Redis commands during the burst (%.2f s): %d (%s)" % (burst_s, burst_total, fmt(burst)))
print("  Redis commands per handshake: (%d - %.1f idle-rate background) / %d = %.4f" %
      (burst_total, background, args.handshakes, per_hs))
print("  orders at pebble after the burst: %d (before it: %d)" %
      (peb.orders(), orders_before_burst))
for p, _ in nodes:
    if p.p.poll() is not None:
        sys.exit("%s exited during the run (rc %s)" % (p.name, p.p.returncode))
