#!/usr/bin/env python3
"""httpmode.py: issue 7's benchmark. Small kept-alive requests through tlsfront in TCP mode
and in HTTP mode (X-Forwarded-For/-Proto/-Host set on every request), beside HAProxy doing
the same in tcp mode and in http mode with `option forwardfor` + X-Forwarded-Proto. Same
placement as bench.py (server on core 0, load generator and backend on core 1), interleaved
rounds, median (min-max). Needs the tools bench/run.sh builds (run it once first).

  bench/httpmode.py [--rounds N]      writes bench/results/http-mode.{md,json}
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servers as S  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("TLSFRONT_BENCH_BUILD", os.path.join(ROOT, "build-bench"))


class W:
    pass


def loadgen(w, srv, args, timeout=180):
    argv = ["taskset", "-c", S.CLIENT_CORE, w.loadgen, "lat", srv.addr, "bench.test"] + \
        [str(a) for a in args] + ["--pids", ",".join(map(str, srv.pids))]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("loadgen against %s: %s" % (srv.name, r.stderr.strip()))
    return json.loads(r.stdout)


def haproxy_http(w, name, pem, backend):
    port = S.free_port()
    cfg = S._write(os.path.join(w.dir, name + ".cfg"), """global
  nbthread 1
  maxconn 8000
  ssl-default-bind-ciphersuites %s
  ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 600s
  timeout server 600s
frontend fe
  bind 127.0.0.1:%d ssl crt %s alpn http/1.1
  option forwardfor
  http-request set-header X-Forwarded-Proto https
  http-request set-header X-Forwarded-Host %%[req.hdr(host)]
  default_backend be
backend be
  server s1 127.0.0.1:%d
""" % (S.SUITE, port, pem, backend))
    p = S.spawn(["haproxy", "-db", "-f", cfg], os.path.join(w.dir, name + ".log"))
    S.wait_port(port, p, timeout=60)
    return S.Server(name, p, port, 0)


def start(w, row):
    b = w.backend_port
    if row == "tlsfront tcp":
        return S.start_tlsfront(w, "tlsfront-tcp", w.certdir, b)
    if row == "tlsfront http":
        return S.start_tlsfront(w, "tlsfront-http", w.certdir, b, mode="http")
    if row == "haproxy tcp":
        return S.start_haproxy(w, "haproxy-tcp", w.pem, b)
    return haproxy_http(w, "haproxy-http", w.pem, b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    w = W()
    w.dir = tempfile.mkdtemp(prefix="tf-httpmode-")
    w.loadgen = os.path.join(BUILD, "bench-bin", "loadgen")
    w.tlsfront = os.path.join(BUILD, "tlsfront", "tlsfront")
    for f in (w.loadgen, w.tlsfront):
        if not os.path.exists(f):
            sys.exit("httpmode: %s missing: run bench/run.sh --quick once first" % f)
    mk = os.path.join(ROOT, "certs", "mkcerts.sh")
    w.certdir = os.path.join(w.dir, "certs")
    subprocess.run(["bash", mk, "leaf", w.certdir, "bench", "bench.test"], check=True,
                   capture_output=True)
    w.pem = os.path.join(w.dir, "bench.all.pem")
    with open(w.pem, "w") as f:
        f.write(open(os.path.join(w.certdir, "bench.crt")).read() +
                open(os.path.join(w.certdir, "bench.key")).read())
    blog = os.path.join(w.dir, "backend.log")
    bp = S.spawn([os.path.join(BUILD, "bench-bin", "backend"), "0"], blog, core=S.CLIENT_CORE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not re.search(r":(\d+)", open(blog).read()):
        time.sleep(0.02)
    w.backend_port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", open(blog).read()).group(1))
    rows = ["tlsfront tcp", "tlsfront http", "haproxy tcp", "haproxy http"]
    res = {r: {"rps": [], "cpu_us": [], "p50": [], "p99": []} for r in rows}
    try:
        for rnd in range(args.rounds):
            for row in rows[rnd % len(rows):] + rows[:rnd % len(rows)]:
                srv = start(w, row)
                try:
                    loadgen(w, srv, ["--conc", 16, "--rate", 2000, "--count", 2000, "--time", 60])
                    sat = loadgen(w, srv, ["--conc", 32, "--rate", 40000, "--count", 40000,
                                           "--time", 60])
                    lat = loadgen(w, srv, ["--conc", 16, "--rate", 2000, "--count", 6000,
                                           "--time", 60])
                finally:
                    srv.stop()
                res[row]["rps"].append(sat["achieved_rate"])
                res[row]["cpu_us"].append(sat["server_cpu_s"] / sat["count"] * 1e6)
                res[row]["p50"].append(lat["p50_us"])
                res[row]["p99"].append(lat["p99_us"])
                print("round %d %s: %.0f req/s, %.1f µs CPU/req, p50 %.0f µs, p99 %.0f µs" %
                      (rnd + 1, row, res[row]["rps"][-1], res[row]["cpu_us"][-1],
                       res[row]["p50"][-1], res[row]["p99"][-1]), flush=True)
    finally:
        S.stop_all()
    cell = lambda v, f: "%s (%s–%s)" % (f % statistics.median(v), f % min(v), f % max(v))
    med = lambda r, k: statistics.median(res[r][k])
    lines = ["## HTTP mode vs TCP mode (small kept-alive requests)", "",
             "One worker/thread on core 0, load generator and backend on core 1, %d interleaved "
             "rounds, median (min–max). Throughput: open-loop 40,000 requests at 40,000/s on 32 "
             "connections (what is achieved); latency: 2,000 requests/s on 16 connections. "
             "HTTP rows insert X-Forwarded-For/-Proto/-Host on every request." % args.rounds, "",
             "| row | req/s | server CPU µs/req | × tcp (same server) | p50 µs | p99 µs | added p50 vs tcp |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        base = r.split()[0] + " tcp"
        lines.append("| %s | %s | %s | %.2f× | %s | %s | %+.0f µs |" % (
            r, cell(res[r]["rps"], "%.0f"), cell(res[r]["cpu_us"], "%.1f"),
            med(r, "cpu_us") / med(base, "cpu_us"), cell(res[r]["p50"], "%.0f"),
            cell(res[r]["p99"], "%.0f"), med(r, "p50") - med(base, "p50")))
    out = os.path.join(ROOT, "bench", "results")
    with open(os.path.join(out, "http-mode.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "http-mode.json"), "w") as f:
        json.dump(res, f, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
