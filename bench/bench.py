#!/usr/bin/env python3
"""bench.py: tlsfront side by side with HAProxy, hitch, nginx (http and stream) and Caddy,
against the crypto and libssl floors. Started by bench/run.sh, which installs the packages and
builds the binaries; see docs/benchmarks.md for what each figure means.

Handshakes (figures 1-2) run with every server up at once, the rows taking turns in rotating
order; the other figures run in interleaved rounds, each starting every terminator in turn.
Each figure is reported as the median and min-max over the rounds, as the median of its
per-round ratios to the best peer, and for tlsfront as a multiple of the floor. Every process started here is stopped by PID."""
import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servers as S  # noqa: E402
import report  # noqa: E402
import extra  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS = ["haproxy", "hitch", "nginx", "nginx-stream", "caddy"]
ROWS = ["tlsfront", "tlsfront-w2"] + PEERS
# Figures 1-2 only: tlsfront in mode=http with its default backend keep-alive pool, the row
# compared with nginx http (which keeps idle upstream connections too).
HS_ROWS = ["tlsfront-http"]
# Shown in figures 1-2 but not a peer: nginx http without upstream keepalive, i.e. a backend
# connection per client connection, as tlsfront (TCP mode), hitch and nginx-stream make.
REF_ROWS = ["nginx-nokeep"]
SNI = {"ec": "bench.test", "rsa": "bench-rsa.test"}

# hs_rounds: rotations of figures 1-2 (all servers up, rows taking turns); rounds: figures 3-5
QUICK = dict(rounds=3, hs_rounds=4, hs_ec=500, hs_rsa=250, warmup=100, conc=16, lat_rate=2000,
             lat_count=3000, idle_n=5000, idle_rounds=1, bulk=100_000_000, floor_n=1000,
             many_pairs=4)
FULL = dict(rounds=5, hs_rounds=7, hs_ec=800, hs_rsa=400, warmup=100, conc=16, lat_rate=2000,
            lat_count=3000, idle_n=5000, idle_rounds=5, bulk=100_000_000, floor_n=2000,
            many_pairs=8)


class BenchError(Exception):
    pass


class Work:
    """Paths and shared state of one run."""

    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="tlsfront-bench.")
        self.bin = args.bin
        self.tlsfront = args.tlsfront
        self.loadgen = os.path.join(self.bin, "loadgen")
        self.records = []  # raw measurements: dicts with fig, key, row, round, data
        self.env = {}


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def run_loadgen(w, srv, mode, sni, args, timeout=300):
    argv = ["taskset", "-c", S.CLIENT_CORE, w.loadgen, mode, srv.addr, sni] + \
        [str(a) for a in args] + ["--pids", ",".join(map(str, srv.pids)),
                                  "--sys-pids", str(w.backend.pid)]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError("loadgen %s against %s timed out" % (mode, srv.name))
    if r.returncode != 0:
        raise BenchError("loadgen %s against %s failed: %s" % (mode, srv.name, r.stderr.strip()))
    return json.loads(r.stdout)


def record(w, fig, key, row, rnd, data):
    w.records.append({"fig": fig, "key": key, "row": row, "round": rnd, "data": data})


# ---- certificates and the backend ----

def make_certs(w):
    d = os.path.join(w.dir, "certs")
    mk = os.path.join(ROOT, "certs", "mkcerts.sh")
    sub = lambda *a: subprocess.run(["bash", mk] + list(a), check=True, capture_output=True)
    sub("ca", d)
    w.certs = {}
    for kind, extra_args in (("ec", []), ("rsa", ["--rsa", "2048"])):
        kd = os.path.join(w.dir, "certs-" + kind)  # one certificate per tlsfront --certs dir
        sub("leaf", kd, "leaf", SNI[kind], "--ca", d, *extra_args)
        crt, key = os.path.join(kd, "leaf.crt"), os.path.join(kd, "leaf.key")
        pem = os.path.join(w.dir, kind + ".pem")
        with open(pem, "w") as f:
            f.write(open(crt).read() + open(key).read())
        w.certs[kind] = dict(dir=kd, crt=crt, key=key, pem=pem)


def start_backend(w):
    log_path = os.path.join(w.dir, "backend.log")
    p = S.spawn([os.path.join(w.bin, "backend"), "0"], log_path, core=S.CLIENT_CORE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", open(log_path).read())
        if m:
            w.backend = p
            w.backend_port = int(m.group(1))
            return
        time.sleep(0.02)
    raise BenchError("backend did not start")


def start_row(w, row, kind):
    c = w.certs[kind]
    b = w.backend_port
    if row == "tlsfront":
        return S.start_tlsfront(w, row, c["dir"], b)
    if row == "tlsfront-w2":
        return S.start_tlsfront(w, row, c["dir"], b, workers=2)
    if row == "tlsfront-http":
        return S.start_tlsfront(w, row, c["dir"], b, mode="http")
    if row == "haproxy":
        return S.start_haproxy(w, row, c["pem"], b)
    if row == "hitch":
        return S.start_hitch(w, row, c["pem"], b)
    if row in ("nginx", "nginx-stream", "nginx-nokeep"):
        return S.start_nginx(w, row, c["crt"], c["key"], b, stream=row == "nginx-stream",
                             keepalive=row != "nginx-nokeep")
    if row == "caddy":
        return S.start_caddy(w, row, c["crt"], c["key"], b)
    raise BenchError("unknown row " + row)


# ---- figures 1-2: every server up at once, the rows taking turns ----

def handshakes(w, cfg, figs):
    """Full and resumed handshakes. For each certificate kind every row's server runs at the
    same time (idle ones cost nothing) and the rows take turns in rotating order, a few
    seconds each; the report takes each row's ratio to the best peer per rotation, so the
    fast swings of a shared VM (a row measured a minute later can run 30 % slower) hit both
    sides of every ratio."""
    rows = [r for r in ROWS + HS_ROWS + REF_ROWS if not w.args.rows or r in w.args.rows]
    for kind in ("ec", "rsa"):
        n = cfg["hs_ec"] if kind == "ec" else cfg["hs_rsa"]
        hs = ["--n", n, "--conc", cfg["conc"], "--warmup", cfg["warmup"], "--time", 120]
        srvs = {}
        try:
            for row in rows:
                srvs[row] = start_row(w, row, kind)
            for rnd in range(cfg["hs_rounds"]):
                order = rows[rnd % len(rows):] + rows[:rnd % len(rows)]
                log("handshakes %s, rotation %d/%d" % (kind, rnd + 1, cfg["hs_rounds"]))
                for row in order:
                    if 1 in figs:
                        r = run_loadgen(w, srvs[row], "hs", SNI[kind], hs)
                        record(w, 1, "hs_%s_full" % kind, row, rnd, r)
                    if 2 in figs:
                        r = run_loadgen(w, srvs[row], "hs", SNI[kind], hs + ["--resume"])
                        record(w, 2, "hs_%s_res" % kind, row, rnd, r)
        finally:
            for srv in srvs.values():
                srv.stop()


# ---- figures 3-5: one server at a time ----

def measure_ec(w, srv, rnd, cfg):
    row, sni = srv.name, SNI["ec"]
    for d in ("down", "up"):
        r = run_loadgen(w, srv, "bulk", sni, ["--dir", d, "--bytes", cfg["bulk"], "--time", 120])
        record(w, 3, "bulk_" + d, row, rnd, r)
    r = run_loadgen(w, srv, "lat", sni, ["--conc", 16, "--rate", cfg["lat_rate"],
                                         "--count", cfg["lat_count"], "--time", 60])
    record(w, 4, "lat", row, rnd, r)


def measure_idle(w, srv, rnd, cfg):
    r = run_loadgen(w, srv, "idle", SNI["ec"], ["--n", cfg["idle_n"], "--conc", 64,
                                                "--warmup", 500, "--settle", 1, "--time", 120])
    record(w, 5, "idle", srv.name, rnd, r)


def rounds(w, cfg, figs):
    rows = [r for r in ROWS if not w.args.rows or r in w.args.rows]
    for rnd in range(cfg["rounds"]):
        order = rows[rnd % len(rows):] + rows[:rnd % len(rows)]
        log("round %d/%d: %s" % (rnd + 1, cfg["rounds"], " ".join(order)))
        for row in order:
            if figs & {3, 4}:
                srv = start_row(w, row, "ec")
                try:
                    measure_ec(w, srv, rnd, cfg)
                finally:
                    srv.stop()
            if 5 in figs and rnd < cfg["idle_rounds"]:
                srv = start_row(w, row, "ec")  # a fresh process: nothing cached
                try:
                    measure_idle(w, srv, rnd, cfg)
                finally:
                    srv.stop()
        if 8 in figs:
            extra.libssl_floor(w, rnd, cfg)


def _on_term(signum, frame):
    raise KeyboardInterrupt("SIGTERM")  # unwinds through the finally that stops everything


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--figs", default="", help="comma list of figures (default: all)")
    ap.add_argument("--rows", default="", help="comma list of rows (default: all)")
    ap.add_argument("--rounds", type=int, default=0)
    ap.add_argument("--many", default="", help="figure 6's parts, a comma list of startup, hot, "
                    "cold, callgrind, cachesim (default: all but cachesim)")
    ap.add_argument("--bin", required=True, help="dir with loadgen, backend, floor")
    ap.add_argument("--tlsfront", required=True)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--docs", default="", help="also write the table into this markdown file")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    args = ap.parse_args()
    cfg = dict(QUICK if args.quick else FULL)
    if args.rounds:
        cfg["rounds"] = cfg["hs_rounds"] = args.rounds
        cfg["idle_rounds"] = min(cfg["idle_rounds"], args.rounds)
    args.rows = [r for r in args.rows.split(",") if r]
    args.many = [p for p in args.many.split(",") if p]
    if set(args.many) - {"startup", "hot", "cold", "callgrind", "cachesim"}:
        ap.error("--many: parts are startup, hot, cold, callgrind, cachesim")
    default_figs = {1, 2, 3, 4, 5, 8} if args.quick else {1, 2, 3, 4, 5, 6, 7, 8}
    figs = {int(f) for f in args.figs.split(",") if f} or default_figs
    signal.signal(signal.SIGTERM, _on_term)
    w = Work(args)
    w.cfg = cfg
    t0 = time.monotonic()
    log("work dir %s, %s mode, figures %s" % (w.dir, "quick" if args.quick else "full",
                                              ",".join(map(str, sorted(figs)))))
    ok = True
    try:
        make_certs(w)
        start_backend(w)
        if 8 in figs:
            extra.crypto_floor(w)
        if figs & {1, 2}:
            handshakes(w, cfg, figs)
        rounds(w, cfg, figs)
        if 8 in figs and not args.quick:
            extra.callgrind(w, cfg)
        if 6 in figs:
            extra.many_certs(w, cfg)
        if 7 in figs:
            extra.ondemand(w, cfg)
    except (BenchError, RuntimeError, subprocess.CalledProcessError) as e:
        log("FAILED: %s" % e)
        ok = False
    finally:
        S.stop_all()
    elapsed = time.monotonic() - t0
    meta = report.environment(w, args, cfg, figs, elapsed)
    res = report.summarize(w.records, meta)
    # A run of some figures, rows or parts of figure 6 writes partial-MODE.*: latest-MODE.*
    # (and the docs' table) stay the last complete run's.
    partial = figs != default_figs or bool(args.rows) or bool(args.many)
    ok_targets = report.write(res, w.records, meta, args.out, None if partial else args.docs,
                              "partial-" if partial else "latest-")
    log("done in %.0f s; results in %s" % (elapsed, args.out))
    if not args.keep and ok:
        subprocess.run(["rm", "-rf", w.dir])
    if not ok:
        return 2
    if args.check and not ok_targets:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
