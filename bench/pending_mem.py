#!/usr/bin/env python3
"""Memory per pending connection: RSS growth of tlsfront per TCP connection that has not
finished its handshake (docs/benchmarks.md, "Memory per pending connection").

  bench/pending_mem.py BIN [--n 2000] [--variant idle|half|both] [--latency]

Starts BIN (one worker, certificates from certs/mkcerts.sh, long handshake timeout) on
127.0.0.1, opens N TCP connections to it that send nothing (idle) or half a ClientHello
(half), waits until the admin endpoint counts them all, and prints VmRSS before and after
from /proc/PID/status. With --latency it also times 200 full handshakes plus one request
of a legitimate client, before and while the N connections wait. Loopback only;
every process it starts is stopped by PID.
"""
import argparse
import os
import re
import resource
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def wait_log(path, pattern, timeout=30):
    rx = re.compile(pattern)
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(path, "rb") as f:
            m = rx.search(f.read().decode("utf-8", "replace"))
        if m:
            return m
        time.sleep(0.05)
    raise RuntimeError("tlsfront did not log %r" % pattern)


def open_conns(admin, n):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=10) as r:
        text = r.read().decode()
    m = re.search(r"^tlsfront_connections_open (\d+)", text, re.M)
    return int(m.group(1)) if m else -1


def client_hello(name):
    """A real ClientHello, from Python's ssl over memory BIOs."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def echo(sock):
    def run(c):
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()

    while True:
        try:
            c, _ = sock.accept()
        except OSError:
            return
        threading.Thread(target=run, args=(c,), daemon=True).start()


def handshake_ms(port, ctx, rounds):
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                            server_hostname="example.test")
        s.sendall(b"x")
        s.recv(1)
        out.append((time.perf_counter() - t0) * 1000)
        s.close()
    out.sort()
    return statistics.median(out), out[int(len(out) * 0.99) - 1]


def measure(binary, certs, variant, n, latency):
    d = tempfile.mkdtemp(prefix="tf-pending-")
    back = socket.socket()
    back.bind(("127.0.0.1", 0))
    back.listen(64)
    threading.Thread(target=echo, args=(back,), daemon=True).start()
    err = os.path.join(d, "err")
    p = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                          "--certs", certs, "--backend", "127.0.0.1:%d" % back.getsockname()[1],
                          "--workers", "1", "--handshake-timeout", "600s",
                          "--access-log", "off", "--max-connections", str(n + 1000)],
                         stdout=subprocess.DEVNULL, stderr=open(err, "wb"),
                         stdin=subprocess.DEVNULL)
    socks = []
    try:
        port = int(wait_log(err, r"listening on [^ ]*:(\d+)").group(1))
        admin = int(wait_log(err, r"admin endpoint on 127\.0\.0\.1:(\d+)").group(1))
        ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.crt"))
        # Warm up: a few complete handshakes so allocator arenas and OpenSSL tables exist.
        handshake_ms(port, ctx, 20)
        lat0 = handshake_ms(port, ctx, 200) if latency else None
        time.sleep(0.5)
        before = rss_kib(p.pid)
        half = client_hello("example.test")
        half = half[: len(half) // 2]
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            if variant == "half":
                s.sendall(half)
            socks.append(s)
        deadline = time.time() + 60
        while open_conns(admin, n) < n and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1)  # the last reads are processed
        after = rss_kib(p.pid)
        lat1 = handshake_ms(port, ctx, 200) if latency else None
        return before, after, lat0, lat1
    finally:
        for s in socks:
            s.close()
        p.send_signal(signal.SIGKILL)
        p.wait()
        back.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--variant", default="both", choices=["idle", "half", "both"])
    ap.add_argument("--latency", action="store_true")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.n + 4096), hard))
    certs = tempfile.mkdtemp(prefix="tf-pending-certs-")
    subprocess.run(["bash", os.path.join(SRC, "certs", "mkcerts.sh"), "demo", certs], check=True,
                   stdout=subprocess.DEVNULL)
    variants = ["idle", "half"] if a.variant == "both" else [a.variant]
    for v in variants:
        before, after, lat0, lat1 = measure(a.binary, certs, v, a.n, a.latency)
        print("%-4s n=%d  RSS %.1f -> %.1f MiB  %.2f KiB per connection"
              % (v, a.n, before / 1024, after / 1024, (after - before) / a.n))
        if lat0:
            print("      handshake+echo p50/p99 ms: %.2f/%.2f alone, %.2f/%.2f with %d pending"
                  % (lat0[0], lat0[1], lat1[0], lat1[1], a.n))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
