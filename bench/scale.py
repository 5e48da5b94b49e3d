#!/usr/bin/env python3
"""Names at scale: start-up to the last name served, and RSS then, for N certificates in one
directory, tlsfront (--certs, indexed and loaded on first use) beside Caddy (load_folders,
cache capacity above N) and HAProxy (crt-list), each server pinned to one core (taskset -c
0), the client on another. For tlsfront also: the extra latency of a cold name's first
handshake (p50, p99 over a random sample: cold handshake minus the same name's hot one) and
the RSS cost of a decoded certificate in the cache.

    bench/scale.py [--n 10000 [--n 100000]] [--servers tlsfront,caddy,haproxy]
                   [--bin build/tlsfront] [--sample 300]

Certificates come from certs/mkcerts.sh many (one CA, leaves sharing one key) and are kept
in $TLSFRONT_BENCH_CACHE (default /var/tmp/tlsfront-bench)/scale-N for later runs."""
import argparse
import json
import os
import random
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from extra import _rss_kib as rss_kib  # noqa: E402
from servers import free_port  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def cert_dir(n):
    base = os.environ.get("TLSFRONT_BENCH_CACHE", "/var/tmp/tlsfront-bench")
    d = os.path.join(base, "scale-%d" % n)
    if not os.path.exists(os.path.join(d, "%d.many.test.pem" % n)):
        print("making %d certificates once into %s" % (n, d), flush=True)
        os.makedirs(d, exist_ok=True)
        subprocess.run(["bash", os.path.join(ROOT, "certs", "mkcerts.sh"), "many", d, str(n)],
                       check=True, stdout=subprocess.DEVNULL)
    return d


def handshake(port, name, ctx):
    """Seconds for connect + handshake; raises unless the certificate is name's."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            dt = time.perf_counter() - t0
            sans = [v for k, v in s.getpeercert().get("subjectAltName", ()) if k == "DNS"]
    if sans != [name]:
        raise RuntimeError("%s served %s" % (name, sans))
    return dt


def wait_served(proc, port, name, ctx, timeout=600):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("server exited with %s" % proc.returncode)
        try:
            handshake(port, name, ctx)
            return
        except (OSError, ssl.SSLError):
            time.sleep(0.02)
    raise RuntimeError("%s never served" % name)


def spawn(argv, work, name, env=None):
    log = open(os.path.join(work, name + ".log"), "wb")
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.Popen(["taskset", "-c", "0"] + argv, stdout=log, stderr=log, env=e)


def start(server, d, n, work, args, cache):
    port = free_port()
    if server == "tlsfront":
        argv = [args.bin, "--listen", "127.0.0.1:%d" % port, "--backend", "127.0.0.1:9",
                "--certs", d, "--workers", "1", "--cert-cache", str(cache)]
        return spawn(argv, work, server), port
    if server == "haproxy":
        crt_list = os.path.join(work, "crt-list")
        with open(crt_list, "w") as f:
            for i in range(1, n + 1):
                f.write("%s/%d.many.test.pem\n" % (d, i))
        cfg = os.path.join(work, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("global\n  nbthread 1\ndefaults\n  mode tcp\n  timeout connect 5s\n"
                    "  timeout client 30s\n  timeout server 30s\n"
                    "frontend fe\n  bind 127.0.0.1:%d ssl crt-list %s\n"
                    "  default_backend be\nbackend be\n  server s 127.0.0.1:9\n"
                    % (port, crt_list))
        return spawn(["haproxy", "-f", cfg], work, server), port
    cfg = os.path.join(work, "caddy.json")
    with open(cfg, "w") as f:
        json.dump({"admin": {"disabled": True}, "apps": {
            "tls": {"certificates": {"load_folders": [d]}, "cache": {"capacity": n + 1000}},
            "http": {"servers": {"s": {
                "listen": ["127.0.0.1:%d" % port],
                "routes": [{"handle": [{"handler": "static_response", "body": "ok"}]}],
                "tls_connection_policies": [{}],
                "automatic_https": {"disable": True}}}}}}, f)
    env = {"GOMAXPROCS": "1", "HOME": work, "XDG_DATA_HOME": work, "XDG_CONFIG_HOME": work}
    return spawn(["caddy", "run", "--config", cfg], work, server, env), port


def stop(p):
    p.terminate()
    try:
        p.wait(20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def tlsfront_extras(d, n, work, args, ctx):
    """Cold vs hot first handshakes, and RSS per cached certificate."""
    p, port = start("tlsfront", d, n, work, args, 1000)
    try:
        wait_served(p, port, "1.many.test", ctx)
        names = ["%d.many.test" % i for i in random.Random(1).sample(range(2, n + 1),
                                                                         args.sample)]
        rss0 = rss_kib(p.pid)
        cold = [handshake(port, nm, ctx) for nm in names]
        rss1 = rss_kib(p.pid)
        hot = [handshake(port, nm, ctx) for nm in names]
        extra = [c - h for c, h in zip(cold, hot)]
        return {"cold_extra_ms_p50": pct(extra, 0.5) * 1e3,
                "cold_extra_ms_p99": pct(extra, 0.99) * 1e3,
                "hot_ms_p50": statistics.median(hot) * 1e3,
                "kib_per_cached_cert": (rss1 - rss0) / len(names)}
    finally:
        stop(p)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, action="append")
    ap.add_argument("--servers", default="tlsfront,caddy,haproxy")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "tlsfront"))
    ap.add_argument("--sample", type=int, default=300)
    args = ap.parse_args()
    out = {}
    for n in args.n or [10000]:
        d = cert_dir(n)
        ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.crt"))
        for server in args.servers.split(","):
            work = tempfile.mkdtemp(prefix="tf-scale-")
            t0 = time.monotonic()
            p, port = start(server, d, n, work, args, 1000)
            try:
                wait_served(p, port, "%d.many.test" % n, ctx)
                row = {"last_name_served_s": time.monotonic() - t0, "rss_mib": rss_kib(p.pid) / 1024}
            finally:
                stop(p)
            print("N=%d %-8s %s" % (n, server, json.dumps(row)), flush=True)
            out["%s/%d" % (server, n)] = row
        if "tlsfront" in args.servers:
            row = tlsfront_extras(d, n, tempfile.mkdtemp(prefix="tf-scale-"), args, ctx)
            print("N=%d tlsfront cold names: %s" % (n, json.dumps(row)), flush=True)
            out["tlsfront-cold/%d" % n] = row
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
