#!/usr/bin/env python3
"""Memory per pending connection: RSS growth of tlsfront per TCP connection that has not
finished its handshake (docs/benchmarks.md, "Memory per pending connection").

  bench/pending_mem.py BIN [--n 2000] [--variant idle|half|both] [--latency [--no-caddy]]

Starts BIN (one worker, certificates from certs/mkcerts.sh, long handshake timeout) on
127.0.0.1, opens N TCP connections to it that send nothing (idle) or half a ClientHello
(half), waits until the admin endpoint counts them all, and prints VmRSS before and after
from /proc/PID/status.

With --latency it instead times a legitimate client (a full handshake plus one HTTP request
and its response, one at a time) against tlsfront with its default 10 s handshake timeout
and, in the same run, against Caddy (one thread, the same certificate, the same backend):
200 rounds alone, then continuously from the moment the N connections are open until 2 s
after tlsfront's handshake timeout would have dropped them all (so the mass drop is inside
the window). Servers are pinned to core 0 and the client to core 1 (taskset), as in
bench/bench.py. Loopback only; every process it starts is stopped by PID.
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
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
from clienthello import client_hello  # noqa: E402  (shared with tests/e2e/test_pending.py)


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


def one_request_ms(port, ctx):
    """A new connection: full handshake, one GET, its whole response; milliseconds."""
    t0 = time.perf_counter()
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                         server_hostname="example.test") as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
        while s.recv(4096):  # the response, then EOF (Connection: close)
            pass
    return (time.perf_counter() - t0) * 1000


def pct(samples):
    out = sorted(samples)
    return statistics.median(out), out[max(0, int(len(out) * 0.99) - 1)], len(out)


def handshake_ms(port, ctx, rounds):
    return pct([one_request_ms(port, ctx) for _ in range(rounds)])


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def open_pending(port, n, variant):
    half = client_hello("example.test")
    half = half[: len(half) // 2]
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        if variant == "half":
            s.sendall(half)
        socks.append(s)
    return socks


def start_server(kind, binary, certs, backend, d):
    """tlsfront (one worker, default handshake timeout) or Caddy (GOMAXPROCS=1), pinned to
    core 0; returns (Popen, port)."""
    if kind == "tlsfront":
        err = os.path.join(d, "tf.err")
        p = subprocess.Popen(["taskset", "-c", "0", binary, "--listen", "127.0.0.1:0",
                              "--certs", certs, "--backend", "127.0.0.1:%d" % backend,
                              "--workers", "1", "--max-connections", "100000"],
                             stdout=subprocess.DEVNULL, stderr=open(err, "wb"),
                             stdin=subprocess.DEVNULL)
        return p, int(wait_log(err, r"listening on [^ ]*:(\d+)").group(1))
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    cd = os.path.join(d, "caddy")
    os.makedirs(cd, exist_ok=True)
    cfg = os.path.join(cd, "Caddyfile")
    with open(cfg, "w") as f:
        f.write("{\n  admin off\n  auto_https disable_redirects\n  storage file_system %s/st\n}\n"
                "https://:%d {\n  bind 127.0.0.1\n  tls %s %s\n  reverse_proxy 127.0.0.1:%d {\n    flush_interval -1\n  }\n}\n"
                % (cd, port, os.path.join(certs, "example.crt"),
                   os.path.join(certs, "example.key"), backend))
    env = dict(os.environ, GOMAXPROCS="1", HOME=cd, XDG_DATA_HOME=cd, XDG_CONFIG_HOME=cd)
    p = subprocess.Popen(["taskset", "-c", "0", "caddy", "run", "--adapter", "caddyfile",
                          "--config", cfg], stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(d, "caddy.err"), "wb"),
                         stdin=subprocess.DEVNULL, env=env)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, port
        except OSError:
            if p.poll() is not None:
                break
            time.sleep(0.05)
    p.kill()
    raise RuntimeError("caddy did not start (see %s)" % os.path.join(d, "caddy.err"))


def c_backend(d):
    """bench/backend.c (the origin of bench/run.sh), built here, pinned to core 1: the same
    cheap backend for both servers. Returns (Popen, port)."""
    exe = os.path.join(d, "backend")
    subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(SRC, "bench", "backend.c")],
                   check=True)
    p = subprocess.Popen(["taskset", "-c", "1", exe, "0"], stdout=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    return p, int(p.stdout.readline().rsplit(b":", 1)[1])


def latency(kind, binary, certs, variant, n, window_s):
    """p50/p99 of one_request_ms alone, then over window_s seconds from when the n pending
    connections are open (tlsfront's 10 s handshake timeout drops them inside it)."""
    d = tempfile.mkdtemp(prefix="tf-pending-lat-")
    back, back_port = c_backend(d)
    p, port = start_server(kind, binary, certs, back_port, d)
    socks = []
    try:
        ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.crt"))
        handshake_ms(port, ctx, 20)
        alone = handshake_ms(port, ctx, 200)
        base_fds = fd_count(p.pid)
        socks = open_pending(port, n, variant)
        deadline = time.time() + 30
        while fd_count(p.pid) < base_fds + n and time.time() < deadline:
            time.sleep(0.05)
        t_end = time.time() + window_s
        samples = []
        while time.time() < t_end:
            samples.append(one_request_ms(port, ctx))
        dropped = fd_count(p.pid) < base_fds + n // 2
        return alone, pct(samples), dropped
    finally:
        for s in socks:
            s.close()
        p.send_signal(signal.SIGKILL)
        p.wait()
        back.send_signal(signal.SIGKILL)
        back.wait()


def measure(binary, certs, variant, n):
    d = tempfile.mkdtemp(prefix="tf-pending-")
    back, back_port = c_backend(d)
    err = os.path.join(d, "err")
    p = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                          "--certs", certs, "--backend", "127.0.0.1:%d" % back_port,
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
        return before, after
    finally:
        for s in socks:
            s.close()
        p.send_signal(signal.SIGKILL)
        p.wait()
        back.send_signal(signal.SIGKILL)
        back.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--variant", default="both", choices=["idle", "half", "both"])
    ap.add_argument("--latency", action="store_true")
    ap.add_argument("--no-caddy", action="store_true")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.n + 4096), hard))
    certs = tempfile.mkdtemp(prefix="tf-pending-certs-")
    subprocess.run(["bash", os.path.join(SRC, "certs", "mkcerts.sh"), "demo", certs], check=True,
                   stdout=subprocess.DEVNULL)
    variants = ["idle", "half"] if a.variant == "both" else [a.variant]
    if a.latency:
        os.sched_setaffinity(0, {1})
        kinds = ["tlsfront"] + ([] if a.no_caddy else ["caddy"])
        for v in variants:
            for k in kinds:
                alone, busy, dropped = latency(k, a.binary, certs, v, a.n, 12.0)
                print("%-4s %-8s request p50/p99 ms: %.2f/%.2f alone, %.2f/%.2f (%d samples) "
                      "over 12 s with %d pending%s" % (v, k, alone[0], alone[1], busy[0],
                                                       busy[1], busy[2], a.n,
                                                       ", dropped inside" if dropped else ""))
                sys.stdout.flush()
        return
    for v in variants:
        before, after = measure(a.binary, certs, v, a.n)
        print("%-4s n=%d  RSS %.1f -> %.1f MiB  %.2f KiB per connection"
              % (v, a.n, before / 1024, after / 1024, (after - before) / a.n))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
