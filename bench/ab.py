#!/usr/bin/env python3
"""ab.py: interleaved A/B rounds of figure 4 (kept-alive latency) and figure 5 (idle memory)
for several tlsfront binaries beside nginx and the TCP forwarders, so that the noise of a
shared machine hits every row alike. Run after one `bench/run.sh --quick` (or build the
bench tools as run.sh does); every process it starts is stopped by PID.

  bench/ab.py --bin build-bench/bench-bin --variant base=build-base/tlsfront/tlsfront \\
      --variant new=build-bench/tlsfront/tlsfront --peers nginx,nginx-stream,haproxy \\
      --rounds 7 [--figs 4,5] [--count 3000] [--bulk 100000000] [--json out.json] \\
      [--extra new:--flag,value]

Each round starts every row in turn (the order rotates), runs the latency figure (16
connections, 2,000 req/s, as bench.py) and, with figure 5, the idle figure on a fresh process.
Prints per row the median (min-max) of p50, p99 and KiB/conn and the median of the per-round
ratios to the best peer."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402
import servers as S  # noqa: E402


def start(w, row, variants, extra):
    if row in variants:
        w.tlsfront = variants[row]
        return S.start_tlsfront(w, row, w.certs["ec"]["dir"], w.backend_port,
                                extra=extra.get(row, ()))
    return B.start_row(w, row, "ec")


def measure(w, row, variants, extra, cfg, figs, rnd, out):
    if 4 in figs:
        srv = start(w, row, variants, extra)
        try:
            for d in ("down", "up") if cfg["bulk"] else ():  # as bench.py: bulk, then latency
                B.run_loadgen(w, srv, "bulk", B.SNI["ec"],
                              ["--dir", d, "--bytes", cfg["bulk"], "--time", 120])
            r = B.run_loadgen(w, srv, "lat", B.SNI["ec"],
                              ["--conc", 16, "--rate", cfg["rate"], "--count", cfg["count"],
                               "--time", 60])
        finally:
            srv.stop()
        out.append(dict(fig=4, row=row, round=rnd, data=r))
    if 5 in figs:
        srv = start(w, row, variants, extra)
        try:
            r = B.run_loadgen(w, srv, "idle", B.SNI["ec"],
                              ["--n", cfg["idle_n"], "--conc", 64, "--warmup", 500,
                               "--settle", 1, "--time", 120])
        finally:
            srv.stop()
        out.append(dict(fig=5, row=row, round=rnd, data=r))


def cell(vals):
    return "%.1f (%.1f-%.1f)" % (statistics.median(vals), min(vals), max(vals))


def summary(out, rows, peers, variants):
    lines = []
    for fig, key in ((4, "p50_us"), (4, "p99_us"), (5, "kib_per_conn")):
        recs = [r for r in out if r["fig"] == fig]
        if not recs:
            continue
        by = {row: {r["round"]: r["data"][key] for r in recs if r["row"] == row} for row in rows}
        best = min((p for p in peers if by.get(p)), key=lambda p: statistics.median(
            by[p].values()), default=None)
        lines.append("%s:" % key)
        for row in rows:
            if not by.get(row):
                continue
            ratios = [v / by[best][k] for k, v in by[row].items() if best and k in by[best]]
            lines.append("  %-14s %-28s x%s %.2f (%.2f-%.2f)" % (
                row, cell(list(by[row].values())), best,
                statistics.median(ratios), min(ratios), max(ratios)))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--variant", action="append", default=[], help="NAME=PATH of a tlsfront")
    ap.add_argument("--extra", action="append", default=[],
                    help="NAME:ARG,ARG extra tlsfront arguments for one variant")
    ap.add_argument("--peers", default="nginx,nginx-stream,haproxy")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--figs", default="4")
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--idle-n", type=int, default=5000)
    ap.add_argument("--bulk", type=int, default=0,
                    help="bytes down and up before the latency run, as bench.py (100000000)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant)
    extra = {}
    for e in args.extra:
        name, rest = e.split(":", 1)
        extra[name] = rest.split(",")
    peers = [p for p in args.peers.split(",") if p]
    rows = list(variants) + peers
    figs = {int(f) for f in args.figs.split(",")}
    cfg = dict(count=args.count, rate=args.rate, idle_n=args.idle_n, bulk=args.bulk)
    wargs = argparse.Namespace(bin=args.bin, tlsfront=next(iter(variants.values())))
    w = B.Work(wargs)
    out = []
    try:
        B.make_certs(w)
        B.start_backend(w)
        for rnd in range(args.rounds):
            order = rows[rnd % len(rows):] + rows[:rnd % len(rows)]
            load = open("/proc/loadavg").read().split()[:3]
            B.log("round %d/%d (load %s): %s" % (rnd + 1, args.rounds, " ".join(load),
                                                  " ".join(order)))
            for row in order:
                measure(w, row, variants, extra, cfg, figs, rnd, out)
    finally:
        S.stop_all()
        subprocess.run(["rm", "-rf", w.dir])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    print("%s, %d rounds, load at end %s" % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                             args.rounds, open("/proc/loadavg").read().strip()))
    print(summary(out, rows, peers, variants))
    return 0


if __name__ == "__main__":
    sys.exit(main())
