"""A second tlsfront on an address a running one serves exits 2 with a line that names
--takeover, and the first keeps serving. With --takeover both serve; SIGTERM to the old one
then drains it while the new one takes every new connection: a client connecting in a loop
through the switch sees no refused or reset connection.

The kernel resets connections still queued at a listener that closes unless
net.ipv4.tcp_migrate_req is 1 (Linux 5.14+), which docs/operations.md tells operators to set;
as root the test sets it in a private network namespace (re-running itself under unshare)."""
import os
import signal
import subprocess
import sys
import threading
import time

if os.environ.get("TF_TAKEOVER_NETNS") != "1" and os.geteuid() == 0:
    inner = "ip link set lo up && sysctl -qw net.ipv4.tcp_migrate_req=1 && exec \"$@\""
    env = dict(os.environ, TF_TAKEOVER_NETNS="1")
    try:
        r = subprocess.run(["unshare", "-n", "sh", "-c", inner, "sh", sys.executable,
                            os.path.abspath(__file__)], env=env)
        sys.exit(r.returncode)
    except OSError:
        pass  # no unshare: run here, as below

from tfcommon import (Backend, check, client_ctx, echo_handler, finish, free_port, make_certs,
                      start_tlsfront, tls_connect)

MIGRATE = open("/proc/sys/net/ipv4/tcp_migrate_req").read().strip() == "1"
certs = make_certs()
ctx = client_ctx(certs)
echo = Backend(echo_handler)
port = free_port()
args = ["--certs", certs, "--backend", echo.addr, "--workers", "2",
        "--listen", "127.0.0.1:%d" % port, "--grace", "20s"]


def round_trip(tag):
    s = tls_connect(port, "example.test", ctx)
    try:
        s.sendall(tag)
        return s.recv(100) == tag
    finally:
        s.close()


old, _ = start_tlsfront(args, name="old")
check(round_trip(b"one\n"), "first instance serves")

# A second start without --takeover: exit 2, one clear line; the first still serves.
second, _ = start_tlsfront(args, wait=False, name="second")
rc = second.wait(30)
err = second.stderr_text()
lines = [l for l in err.splitlines() if l.startswith("tlsfront:")]
check(rc == 2, "second instance without --takeover exits 2 (rc=%s)" % rc)
check(len(lines) == 1 and "already listens" in lines[0] and "--takeover" in lines[0],
      "one line saying the address is served and naming --takeover (%r)" % lines)
check(round_trip(b"two\n") and old.p.poll() is None, "first instance still serves")

# The upgrade: the new one with --takeover, then SIGTERM to the old one.
new, _ = start_tlsfront(args + ["--takeover"], name="new")
results = {"ok": 0, "fail": []}
stop = threading.Event()


def client():
    i = 0
    while not stop.is_set():
        i += 1
        try:
            if round_trip(b"n%d\n" % i):
                results["ok"] += 1
            else:
                results["fail"].append("bad echo %d" % i)
        except OSError as e:
            results["fail"].append("%d: %s" % (i, e))


t = threading.Thread(target=client)
t.start()
seen_before = 0
while results["ok"] < 50 and not results["fail"] and t.is_alive():
    time.sleep(0.005)
seen_before = results["ok"]
old.signal(signal.SIGTERM)
rc = old.wait(30)
check(rc == 0, "old instance drains and exits 0 (rc=%s)" % rc)
after = results["ok"]
while results["ok"] < after + 50 and not results["fail"] and t.is_alive():
    time.sleep(0.005)
stop.set()
t.join(30)
check(seen_before >= 50 and results["ok"] >= after + 50,
      "connections served before and after the switch (%d, %d)" % (seen_before, results["ok"]))
if MIGRATE:
    check(not results["fail"], "no refused or reset connection during the switch (%r)"
          % results["fail"][:5])
else:
    print("skip no-reset check: net.ipv4.tcp_migrate_req is 0 and cannot be set here")
check(new.p.poll() is None and round_trip(b"last\n"), "the new instance serves alone")
finish()
