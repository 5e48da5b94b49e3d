#!/usr/bin/env python3
"""Random-name flood: what a stream of names the gate denies costs tlsfront (docs/benchmarks.md,
"Random-name flood").

  bench/flood.py BIN [--names 1000] [--batch 50] [--runs 3] [--mode allow+ask|ask]

Starts BIN (one worker) on 127.0.0.1 with on-demand issuance gated by a local --ask endpoint
that denies every name (mode allow+ask adds --allow '*.flood.test', so every flood name
matches the pattern and is asked about; mode ask gives --ask alone), a backend
(bench/backend.c, built as bench/pending_mem.py builds it) and a legitimate client in its own
process doing a full handshake plus one request and its response, one after the other, for
example.test (a certificate from certs/mkcerts.sh). The flood sends a real ClientHello for
NAMES random names under flood.test, BATCH connections at a time, and reads each until the
server closes it (the refusal). Printed per run: tlsfront's VmRSS growth from before the
flood to after it settles (the ask endpoint has answered every name, the worker has trimmed
its free heap or 8 s have passed, then 1 s; the warm-up settles the same way), the
legitimate client's p50/p99 during the flood, and the flood's duration.

Bounded: NAMES connections, each read with a 30 s deadline; loopback only; every process it
starts is stopped by PID.
"""
import argparse
import http.server
import multiprocessing
import os
import random
import re
import signal
import socket
import ssl
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pending_mem  # noqa: E402  (c_backend, rss_kib, wait_log, pct)
import clienthello  # noqa: E402  (tests/e2e/clienthello.py, on the path pending_mem sets)

SRC = pending_mem.SRC


class Deny(http.server.BaseHTTPRequestHandler):
    """The ask endpoint: 403 for every name (tlsfront caches the answer per name)."""

    def do_GET(self):
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


class AskServer(http.server.ThreadingHTTPServer):
    request_queue_size = 1024  # the default 5 drops SYNs: 1 s retransmits would pace the flood


def metric(admin, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=10) as r:
        text = r.read().decode()
    total = 0
    for m in re.finditer(r"^%s(\{[^}]*\})? (\d+)" % re.escape(name), text, re.M):
        total += int(m.group(2))
    return total


def settle(admin):
    """After a burst: wait until no handshake is held, then for the worker's trim of the free
    heap the burst left (tlsfront_malloc_trims_total advances one heartbeat or two after the
    burst ends; a binary that does not trim waits the whole bound, 8 s), then 1 s more."""
    deadline = time.time() + 30
    while metric(admin, "tlsfront_held_handshakes") > 0 and time.time() < deadline:
        time.sleep(0.1)
    trims = metric(admin, "tlsfront_malloc_trims_total")
    deadline = time.time() + 8
    while metric(admin, "tlsfront_malloc_trims_total") == trims and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1)


def refused(sock):
    """Read until the server closes (the alert, then EOF); True if it closed in time."""
    sock.settimeout(30)
    try:
        while sock.recv(4096):
            pass
        return True
    except OSError:
        return False
    finally:
        sock.close()


def flood(port, names, batch):
    """Send a ClientHello for each name, batch connections at a time (all of a batch open at
    once), reading each until the server closes it; returns how many it closed."""
    ctx = clienthello.hello_context()  # one for all: making hellos must not pace the flood
    msgs = [clienthello.client_hello(name, ctx) for name in names]
    closed = 0
    for i in range(0, len(names), batch):
        socks = []
        for msg in msgs[i:i + batch]:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(msg)
            socks.append(s)
        closed += sum(refused(s) for s in socks)
    return closed


def legit_loop(port, cafile, stop, q):
    """The legitimate client (its own process, so the flood's Python does not slow it)."""
    ctx = ssl.create_default_context(cafile=cafile)
    samples = []
    while not stop.is_set():
        samples.append(pending_mem.one_request_ms(port, ctx))
    q.put(samples)


def one_run(binary, certs, mode, n, batch, env):
    d = tempfile.mkdtemp(prefix="tf-flood-")
    back, back_port = pending_mem.c_backend(d)
    ask = AskServer(("127.0.0.1", 0), Deny)
    ask_url = "http://127.0.0.1:%d/check" % ask.server_address[1]
    ask_proc = multiprocessing.Process(target=ask.serve_forever, daemon=True)
    ask_proc.start()  # its own process: the flood's Python must not pace the answers
    gate = (["--allow", "*.flood.test"] if mode == "allow+ask" else []) + ["--ask", ask_url]
    err = os.path.join(d, "err")
    p = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                          "--certs", certs, "--backend", "127.0.0.1:%d" % back_port,
                          "--workers", "1", "--access-log", "off",
                          "--max-held-per-ip", str(batch),
                          "--storage", os.path.join(d, "st"),
                          "--acme-directory", "https://127.0.0.1:1/directory"] + gate,
                         stdout=subprocess.DEVNULL, stderr=open(err, "wb"),
                         stdin=subprocess.DEVNULL, env=dict(os.environ, **env))
    legit = None
    stop = multiprocessing.Event()
    q = multiprocessing.Queue()
    try:
        port = int(pending_mem.wait_log(err, r"listening on [^ ]*:(\d+)").group(1))
        admin = int(pending_mem.wait_log(err, r"admin endpoint on 127\.0\.0\.1:(\d+)").group(1))
        cafile = os.path.join(certs, "ca.crt")
        ctx = ssl.create_default_context(cafile=cafile)
        pending_mem.handshake_ms(port, ctx, 20)
        alone = pending_mem.handshake_ms(port, ctx, 200)
        # Warm up the refusal path too (a few names outside the flood's), then settle.
        flood(port, ["warm%d.flood.test" % i for i in range(batch)], batch)
        settle(admin)
        before = pending_mem.rss_kib(p.pid)
        asked0 = metric(admin, "tlsfront_ask_requests_total")
        rnd = random.Random()
        names = ["".join(rnd.choice(string.ascii_lowercase + string.digits) for _ in range(12))
                 + ".flood.test" for _ in range(n)]
        legit = multiprocessing.Process(target=legit_loop, args=(port, cafile, stop, q))
        legit.start()
        time.sleep(0.3)
        t0 = time.perf_counter()
        closed = flood(port, names, batch)
        dur = time.perf_counter() - t0
        stop.set()
        samples = q.get(timeout=60)
        legit.join(30)
        settle(admin)
        after = pending_mem.rss_kib(p.pid)
        asked = metric(admin, "tlsfront_ask_requests_total") - asked0
        return dict(alone=alone, before=before, after=after, lat=pending_mem.pct(samples), closed=closed,
                    asked=asked, dur=dur)
    finally:
        stop.set()
        if legit is not None and legit.is_alive():
            legit.kill()
        p.send_signal(signal.SIGKILL)
        p.wait()
        back.send_signal(signal.SIGKILL)
        back.wait()
        ask_proc.kill()
        ask_proc.join()
        ask.server_close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--names", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mode", default="allow+ask", choices=["allow+ask", "ask"])
    ap.add_argument("--env", action="append", default=[],
                    help="VAR=VALUE for tlsfront's environment (e.g. MALLOC_ARENA_MAX=1)")
    a = ap.parse_args()
    env = dict(e.split("=", 1) for e in a.env)
    certs = tempfile.mkdtemp(prefix="tf-flood-certs-")
    subprocess.run(["bash", os.path.join(SRC, "certs", "mkcerts.sh"), "demo", certs], check=True,
                   stdout=subprocess.DEVNULL)
    for i in range(a.runs):
        r = one_run(a.binary, certs, a.mode, a.names, a.batch, env)
        print("run %d %s: %d names (%d refused, %d asked) in %.1f s; RSS %.1f -> %.1f MiB "
              "(+%.2f MiB); legitimate p50/p99 %.2f/%.2f ms alone, %.2f/%.2f ms (%d samples) "
              "during the flood"
              % (i + 1, a.mode, a.names, r["closed"], r["asked"], r["dur"],
                 r["before"] / 1024, r["after"] / 1024, (r["after"] - r["before"]) / 1024,
                 r["alone"][0], r["alone"][1], r["lat"][0], r["lat"][1], r["lat"][2]))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
