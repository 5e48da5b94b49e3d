#!/usr/bin/env python3
"""Names at scale: start-up to the last name served, and RSS then, for N certificates in one
directory, tlsfront (--certs, indexed and loaded on first use) beside Caddy (load_folders,
cache capacity above N) and HAProxy (crt-list), each server pinned to one core (taskset -c
0), the client on another. For tlsfront also: the extra latency of a cold name's first
handshake (p50, p99 over a random sample: cold handshake minus the same name's hot one) and
the RSS cost of a decoded certificate in the cache.

    bench/scale.py [--n 10000 [--n 100000] [--n 1000000]] [--servers tlsfront,caddy,haproxy]
                   [--bin build/tlsfront] [--sample 300] [--rounds 3] [--fill 10000]

N >= 1,000,000 runs tlsfront only (the peers would need minutes and gigabytes: see
docs/benchmarks.md) and adds the RSS once --fill distinct names (default: the 10,000 of the
default --cert-cache) have been served, i.e. with the cache full. Each figure is the median
of --rounds starts with min-max; the load average is printed with it.

Certificates come from bench/mkmany.c (built here with gcc; the files of certs/mkcerts.sh
many: one CA, the leaves of each generator process sharing one key), or from mkcerts.sh when
gcc is missing, and are kept in $TLSFRONT_BENCH_CACHE (default /var/tmp/tlsfront-bench)/scale-N
for later runs (1,000,000 certificates: about 4 GiB on disk)."""
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
    if os.path.exists(os.path.join(d, ".complete")) or (
            n < 1000000 and os.path.exists(os.path.join(d, "%d.many.test.pem" % n))):
        return d
    print("making %d certificates once into %s" % (n, d), flush=True)
    os.makedirs(d, exist_ok=True)
    mkcerts = os.path.join(ROOT, "certs", "mkcerts.sh")
    gen = os.path.join(base, "mkmany")
    built = subprocess.run(["gcc", "-O2", "-o", gen, os.path.join(ROOT, "bench", "mkmany.c"),
                            "-lcrypto"]).returncode == 0
    if built:
        subprocess.run(["bash", mkcerts, "ca", d], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([gen, d, str(n)], check=True, stdout=subprocess.DEVNULL)
    else:
        subprocess.run(["bash", mkcerts, "many", d, str(n)], check=True,
                       stdout=subprocess.DEVNULL)
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


def cpu_s(pid):
    """User and system CPU seconds of pid (all its threads) so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


def fill(port, n, count, ctx):
    """Serve count distinct random names (each checked), two clients at a time."""
    from concurrent.futures import ThreadPoolExecutor
    names = ["%d.many.test" % i for i in random.Random(2).sample(range(1, n + 1), count)]
    with ThreadPoolExecutor(2) as ex:
        list(ex.map(lambda nm: handshake(port, nm, ctx), names))


def one_round(server, d, n, args, ctx):
    work = tempfile.mkdtemp(prefix="tf-scale-")
    t0 = time.monotonic()
    p, port = start(server, d, n, work, args, 1000 if n < 1000000 else 10000)
    try:
        wait_served(p, port, "%d.many.test" % n, ctx)
        row = {"last_name_served_s": time.monotonic() - t0, "rss_mib": rss_kib(p.pid) / 1024,
               "load1": os.getloadavg()[0]}
        if server == "tlsfront":
            row["cpu_user_s"], row["cpu_sys_s"] = cpu_s(p.pid)
        if n >= 1000000 and args.fill:
            t1 = time.monotonic()
            fill(port, n, args.fill, ctx)
            row["fill_s"] = time.monotonic() - t1
            row["rss_full_mib"] = rss_kib(p.pid) / 1024
    finally:
        stop(p)
    return row


def summary(rows):
    """Median, min and max of each figure over the rounds."""
    out = {}
    for k in rows[0]:
        xs = [r[k] for r in rows]
        out[k] = {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, action="append")
    ap.add_argument("--servers", default="tlsfront,caddy,haproxy")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "tlsfront"))
    ap.add_argument("--sample", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--fill", type=int, default=10000)
    args = ap.parse_args()
    out = {}
    for n in args.n or [10000]:
        d = cert_dir(n)
        ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.crt"))
        servers = ["tlsfront"] if n >= 1000000 else args.servers.split(",")
        for server in servers:
            rows = []
            for rnd in range(args.rounds):
                rows.append(one_round(server, d, n, args, ctx))
                print("N=%d %-8s round %d %s" % (n, server, rnd, json.dumps(rows[-1])),
                      flush=True)
            out["%s/%d" % (server, n)] = summary(rows)
            print("N=%d %-8s %s" % (n, server, json.dumps(out["%s/%d" % (server, n)])),
                  flush=True)
        if "tlsfront" in servers and n < 1000000 and args.sample:
            row = tlsfront_extras(d, n, tempfile.mkdtemp(prefix="tf-scale-"), args, ctx)
            print("N=%d tlsfront cold names: %s" % (n, json.dumps(row)), flush=True)
            out["tlsfront-cold/%d" % n] = row
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
