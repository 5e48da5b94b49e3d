#!/usr/bin/env python3
"""Multi-core scaling (docs/benchmarks.md, figure 9): what worker threads sharing one process
cost against the same number of single-worker processes sharing the port (SO_REUSEPORT).

    bench/multicore.py floor [--n 1000] [--rounds 5]
    bench/multicore.py server [--workers 1,2] [--rounds 5] [--n 4000] [--conc 32] [--clients K]
                              [--tlsfront build/tlsfront] [--base OLD_BINARY]
                              [--peers nginx,haproxy] [--server-cores 0-1] [--client-cores 0-1]

floor: the in-process libssl floor (bench/floor.c --tf, tlsfront's server set-up, memory
BIOs, no sockets) with 1 thread, 2 threads for each --ctx mode (what the threads share) and
2 processes, in interleaved rounds: server CPU per 1000 full ECDSA handshakes and handshakes/s;
then, once per mode, the pthread lock calls per handshake and how many of them are on locks
both threads take (bench/lockcount.c, deterministic counts).

server: tlsfront with --workers W (rows "threads") against W tlsfront processes with
--workers 1 on one port ("procs"), and with --base an older binary the same two ways, and the
peers with W workers (nginx worker_processes, HAProxy nbthread), each pinned to
--server-cores, bench/loadgen on --client-cores doing full handshakes (TLS 1.3, ECDSA,
X25519, one small request each). The figure is the server's CPU per 1000 handshakes from the
kernel's per-process CPU clocks (not wall throughput, which a shared machine makes noisy);
handshakes/s is printed beside it. Rows take turns within each round; medians and min-max,
and each row's CPU as a ratio to procs:new of the same round.
On a machine with many cores, give the server W cores and the client the others, e.g.
--workers 1,2,4,8 --server-cores 0-7 --client-cores 8-15 --clients 8: each row with W
workers is pinned to the first W of --server-cores, and with --clients K, K loadgen
processes run at once (one loadgen process keeps about one server core busy) and the server's
CPU is read from /proc around them. bench/device.sh carries all of it to a machine where
nothing is installed.

Builds bench/floor.c, bench/lockcount.c, bench/loadgen.c and bench/backend.c into
$TLSFRONT_BENCH_BIN (default /tmp/tlsfront-multicore-bin). Every process started is stopped by
PID. Prints one JSON object per measurement and a table; --json FILE keeps them."""
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

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SNI = "bench.test"
CFLAGS = ["-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Wshadow"]


def log(msg):
    print("[multicore %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def build_tools():
    out = os.environ.get("TLSFRONT_BENCH_BIN", "/tmp/tlsfront-multicore-bin")
    if os.environ.get("TLSFRONT_BENCH_PREBUILT"):  # bench/device.sh: no compiler there
        return out
    os.makedirs(out, exist_ok=True)
    b = lambda *a: subprocess.run(["gcc"] + CFLAGS + list(a), check=True, cwd=ROOT)
    b("-o", os.path.join(out, "floor"), "bench/floor.c", "-lssl", "-lcrypto", "-lpthread")
    b("-shared", "-fPIC", "-o", os.path.join(out, "lockcount.so"), "bench/lockcount.c", "-ldl")
    b("-o", os.path.join(out, "loadgen"), "bench/loadgen.c", "bench/lg.c", "-lssl", "-lcrypto")
    b("-o", os.path.join(out, "backend"), "bench/backend.c")
    return out


def make_cert(work):
    mk = os.path.join(ROOT, "certs", "mkcerts.sh")
    run = lambda *a: subprocess.run(["bash", mk] + list(a), check=True, stdout=subprocess.DEVNULL)
    run("ca", os.path.join(work, "ca"))
    d = os.path.join(work, "certs-ec")
    run("leaf", d, "leaf", SNI, "--ca", os.path.join(work, "ca"))
    return d, os.path.join(d, "leaf.crt"), os.path.join(d, "leaf.key")


def summary(values):
    v = sorted(values)
    return {"median": statistics.median(v), "min": v[0], "max": v[-1], "n": len(v)}


def fmt(s, scale=1.0, digits=3):
    f = "%%.%df" % digits
    return (f + " (" + f + "-" + f + ")") % (s["median"] * scale, s["min"] * scale,
                                           s["max"] * scale)


def uptime():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---- floor ----

FLOOR_ROWS = [("1 thread", ["--threads", "1", "--ctx", "shared"])] + \
    [("2 threads, ctx=" + m, ["--threads", "2", "--ctx", m])
     for m in ("shared", "worker", "copy", "libctx", "libctx-copy")] + \
    [("2 processes", ["--procs", "2"])]


def floor_locks(binary, so, crt, key, args, n):
    """Lock calls per handshake, all and on locks both threads took (warm-up included)."""
    env = dict(os.environ, LD_PRELOAD=so, LOCKCOUNT_TOP="0")
    r = subprocess.run([binary, crt, key, str(n), "--tf"] + args, env=env, capture_output=True,
                       text=True, check=True)
    m = re.search(r"calls=(\d+) contended=(\d+) shared_locks=(\d+) shared_calls=(\d+) "
                  r"foreign_calls=(\d+)", r.stderr)
    threads = int(args[args.index("--threads") + 1])
    hs = threads * (n + 20)
    return {"locks_per_hs": int(m.group(1)) / hs, "shared_per_hs": int(m.group(4)) / hs,
            "foreign_per_hs": int(m.group(5)) / hs, "contended": int(m.group(2))}


def floor_main(args, out):
    work = tempfile.mkdtemp(prefix="tlsfront-multicore.")
    _, crt, key = make_cert(work)
    binary = os.path.join(out, "floor")
    res = {name: [] for name, _ in FLOOR_ROWS}
    for rnd in range(args.rounds):
        for name, a in FLOOR_ROWS:
            r = subprocess.run([binary, crt, key, str(args.n), "--tf"] + a, capture_output=True,
                               text=True, check=True)
            d = json.loads(r.stdout)
            d.update(row=name, round=rnd, load=uptime())
            print(json.dumps(d), flush=True)
            res[name].append(d)
    locks = {}
    for name, a in FLOOR_ROWS:
        if "--threads" in a:
            locks[name] = floor_locks(binary, os.path.join(out, "lockcount.so"), crt, key, a, 300)
            print(json.dumps(dict(row=name, **locks[name])), flush=True)
    print("\n| floor row | server CPU ms/handshake | handshakes/s (all workers) | lock calls/hs |"
          " on shared locks/hs | by another thread/hs |\n|---|---|---|---|---|---|")
    for name, _ in FLOOR_ROWS:
        cpu = summary([d["cpu_s_per_1000"] for d in res[name]])
        rate = summary([d["hs_per_s"] for d in res[name]])
        lk = locks.get(name)
        print("| %s | %s | %s | %s | %s | %s |" % (
            name, fmt(cpu), fmt(rate, digits=0), "%.0f" % lk["locks_per_hs"] if lk else "",
            "%.0f" % lk["shared_per_hs"] if lk else "", "%.0f" % lk["foreign_per_hs"] if lk else ""))
    return 0


# ---- server ----

def start_tlsfront(work, binary, name, certdir, backend, workers, port, cores, takeover):
    argv = [binary, "--listen", "127.0.0.1:%d" % port, "--backend", "127.0.0.1:%d" % backend,
            "--workers", str(workers), "--log-level", "warn", "--idle-timeout", "10m",
            "--max-connections", "12000", "--access-log", "off", "--certs", certdir]
    if takeover:
        argv.append("--takeover")
    t0 = time.monotonic()
    p = S.spawn(argv, os.path.join(work, name + ".log"), core=cores)
    S.wait_port(port, p)
    return S.Server(name, p, port, time.monotonic() - t0)


class Group:
    """One row: one or more server processes on one port."""

    def __init__(self, name, servers):
        self.name = name
        self.servers = servers
        self.addr = servers[0].addr
        self.pids = [p for s in servers for p in s.pids]

    def stop(self):
        for s in self.servers:
            s.stop()


def start_row(a, work, row, w, cert, backend):
    certdir, crt, key = cert
    kind, _, binname = row.partition(":")
    cores = first_cores(a.server_cores, w)
    if kind in ("threads", "procs"):
        binary = a.tlsfront if binname == "new" else a.base
        port = S.free_port()
        if kind == "threads":
            return Group(row, [start_tlsfront(work, binary, row, certdir, backend, w, port, cores,
                                              False)])
        return Group(row, [start_tlsfront(work, binary, "%s.%d" % (row, i), certdir, backend, 1,
                                          port, cores, i > 0) for i in range(w)])
    if kind == "nginx":
        srv = S.start_nginx(_Work(work), row + str(w), crt, key, backend, stream=True,
                            workers=w, core=cores)
        deadline = time.monotonic() + 10
        while len(S.children(srv.proc.pid)) < w and time.monotonic() < deadline:
            time.sleep(0.02)  # the master forks its W workers after the port opens
        srv.pids = [srv.proc.pid] + S.children(srv.proc.pid)
        return Group(row, [srv])
    if kind == "haproxy":
        pem = os.path.join(work, "ec.pem")
        with open(pem, "w") as f:
            f.write(open(crt).read() + open(key).read())
        return Group(row, [S.start_haproxy(_Work(work), row + str(w), pem, backend, threads=w,
                                           core=cores)])
    raise SystemExit("unknown row " + row)


def first_cores(spec, w):
    """The first w CPUs of a taskset list such as "0-7" or "0,2,4" (all of them when it has
    fewer): W workers pinned to W cores."""
    cpus = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus += range(int(lo), int(hi or lo) + 1)
    return ",".join(map(str, cpus[:w]))


class _Work:
    def __init__(self, d):
        self.dir = d


def proc_cpu_s(pids):
    """utime + stime of pids (every thread), seconds, from /proc/PID/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total / tick


def loadgen(a, out, g, backend_pid):
    if a.clients > 1:
        return loadgen_many(a, out, g)
    argv = ["taskset", "-c", a.client_cores, os.path.join(out, "loadgen"), "hs", g.addr, SNI,
            "--n", str(a.n), "--conc", str(a.conc), "--warmup", str(max(a.conc * 4, 200)),
            "--pids", ",".join(map(str, g.pids)), "--sys-pids", str(backend_pid)]
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise SystemExit("loadgen against %s failed: %s" % (g.name, r.stderr.strip()))
    d = json.loads(r.stdout)
    d["hs_per_s"] = a.n / (time.monotonic() - t0)  # wall, start-up of loadgen included
    return d


def loadgen_many(a, out, g):
    """--clients K: K loadgen processes at once on the client cores (one cannot keep several
    server cores busy), a.n handshakes in all, after a warm-up run. The server's CPU is read
    from /proc around the whole run (10 ms ticks: give it seconds of work)."""
    def argv(n, conc):
        return ["taskset", "-c", a.client_cores, os.path.join(out, "loadgen"), "hs", g.addr,
                SNI, "--n", str(n), "--conc", str(conc), "--warmup", "0",
                "--pids", ",".join(map(str, g.pids))]
    subprocess.run(argv(max(a.conc * 4, 200), a.conc), capture_output=True, check=True,
                   timeout=600)
    per = a.n // a.clients
    cpu0, t0 = proc_cpu_s(g.pids), time.monotonic()
    procs = [subprocess.Popen(argv(per, max(a.conc // a.clients, 1)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(a.clients)]
    outs = [p.communicate(timeout=600) for p in procs]
    wall = time.monotonic() - t0
    cpu = proc_cpu_s(g.pids) - cpu0
    for p, (_, err) in zip(procs, outs):
        if p.returncode != 0:
            raise SystemExit("loadgen against %s failed: %s" % (g.name, err.strip()))
    n = per * a.clients
    return {"mode": "hs", "n": n, "clients": a.clients, "wall_s": wall, "server_cpu_s": cpu,
            "cpu_s_per_1000": cpu / n * 1000, "hs_per_s": n / wall}


def start_backend(out, work, cores):
    path = os.path.join(work, "backend.log")
    p = S.spawn([os.path.join(out, "backend"), "0"], path, core=cores)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", open(path).read())
        if m:
            return p, int(m.group(1))
        time.sleep(0.02)
    raise SystemExit("backend did not start")


def server_main(a, out):
    work = tempfile.mkdtemp(prefix="tlsfront-multicore.")
    cert = make_cert(work)
    backend, backend_port = start_backend(out, work, a.client_cores)
    rows = ["threads:new", "procs:new"]
    if a.base:
        rows += ["threads:base", "procs:base"]
    rows += [p for p in a.peers.split(",") if p]
    res = {}
    try:
        for w in [int(x) for x in a.workers.split(",")]:
            groups = {r: start_row(a, work, r, w, cert, backend_port) for r in rows}
            for rnd in range(a.rounds):
                for r in rows:
                    d = loadgen(a, out, groups[r], backend.pid)
                    d.update(row=r, workers=w, round=rnd, load=uptime())
                    print(json.dumps(d), flush=True)
                    res.setdefault((r, w), []).append(d)
            for g in groups.values():
                g.stop()
    finally:
        S.stop_all()
    print("\n| row | W | server CPU ms/handshake | handshakes/s | CPU vs procs:new, paired by "
          "round |\n|---|---|---|---|---|")
    for (r, w), ds in res.items():
        ref = res.get(("procs:new", w))
        ratio = fmt(summary([d["cpu_s_per_1000"] / p["cpu_s_per_1000"]
                             for d, p in zip(ds, ref)])) if ref else ""
        print("| %s | %d | %s | %s | %s |" % (
            r, w, fmt(summary([d["cpu_s_per_1000"] for d in ds])),
            fmt(summary([d["hs_per_s"] for d in ds]), digits=0), ratio))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["floor", "server"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=0, help="handshakes per worker (floor) or run")
    ap.add_argument("--conc", type=int, default=32)
    ap.add_argument("--clients", type=int, default=1,
                    help="loadgen processes at once (server: to keep W server cores busy)")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--tlsfront", default=os.path.join(ROOT, "build", "tlsfront"))
    ap.add_argument("--base", help="an older tlsfront binary, measured the same two ways")
    ap.add_argument("--peers", default="", help="nginx,haproxy (each with W workers)")
    ap.add_argument("--server-cores", default="0-1")
    ap.add_argument("--client-cores", default="0-1")
    a = ap.parse_args()
    out = build_tools()
    log("load average %s, %d CPUs" % (uptime(), os.cpu_count()))
    if a.what == "floor":
        a.n = a.n or 1000
        return floor_main(a, out)
    a.n = a.n or 4000
    return server_main(a, out)


if __name__ == "__main__":
    sys.exit(main())
