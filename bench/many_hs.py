"""many_hs.py: figure 6's handshake figures, tlsfront with SNI picking at random among n
names (--certs of many certificates) vs a store of one certificate.

- hot: the directory holds n + 1 certificates and --cert-cache is n, so it is indexed and
  loaded on first use (the lazy cache), and a warm-up asks for every one of the n names
  once (--sni-seq), loading each: the measured handshakes then hit the cache only (the
  cache metrics are read around them to prove it). The judged figure: the median of the
  per-pair CPU ratios, the two servers taking turns (AB BA AB ...).
- cold: the same n names with the default --cert-cache 10000 after a warm-up that filled
  the cache: most handshakes load their certificate (file read and decode on the thread
  pool, on the same core): CPU per 1,000 handshakes and loads per second.
- callgrind: user-space instructions per handshake of a hot name among the n indexed ones
  vs one certificate (deterministic, unlike CPU time on a shared machine).

Every server runs pinned to the server core (servers.start_tlsfront), the load generator on
the other. Every process started here is stopped by PID."""
import os
import re
import subprocess
import time
import urllib.request

import servers as S

SPARE = "spare.many.test"


def log(msg):
    import bench
    bench.log(msg)


def _record(w, key, row, rnd, data):
    w.records.append({"fig": 6, "key": key, "row": row, "round": rnd, "data": data})


def hot_dir(full, base, n):
    """n certificates of full (hard links) plus one more, so that --cert-cache n indexes
    them (a directory of at most --cert-cache certificates is loaded whole at start)."""
    d = os.path.join(base, "many-%d-plus1" % n)
    if not os.path.exists(os.path.join(d, SPARE + ".pem")):
        os.makedirs(d, exist_ok=True)
        for i in range(1, n + 1):
            name = "%d.many.test.pem" % i
            if not os.path.exists(os.path.join(d, name)):
                os.link(os.path.join(full, name), os.path.join(d, name))
        mk = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "certs", "mkcerts.sh")
        subprocess.run(["bash", mk, "leaf", d, SPARE, SPARE, "--layout", "pem", "--ca", full],
                       check=True, capture_output=True, timeout=60)
    return d


def metrics(admin):
    """tlsfront's counters and gauges (summed over labels) from its admin endpoint."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=30) as r:
        text = r.read().decode()
    out = {}
    for m in re.finditer(r"^(tlsfront_cert_cache_\w+)(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def _start(w, name, d, cache):
    admin = S.free_port()
    srv = S.start_tlsfront(w, name, d, w.backend_port,
                           extra=["--cert-cache", str(cache), "--admin", "127.0.0.1:%d" % admin])
    srv.admin = admin
    return srv


def _pin(pid, cores):
    """Set the CPU affinity of every thread of pid (taskset -a)."""
    subprocess.run(["taskset", "-a", "-p", "-c", cores, str(pid)], check=True,
                   capture_output=True, timeout=30)


def warm(w, srv, n, count):
    """Ask for names 1..count in order (each once): every one of them is loaded. The
    server's threads may use both cores meanwhile (loads are most of the warm-up's work, and
    the shared machine's core 0 may be busy); they are pinned back to the server core
    before anything is measured."""
    import bench
    t0 = time.monotonic()
    _pin(srv.proc.pid, "%s,%s" % (S.SERVER_CORE, S.CLIENT_CORE))
    try:
        r = bench.run_loadgen(w, srv, "hs", "%ld.many.test",
                              ["--n", count, "--conc", 16, "--sni-range", n, "--sni-seq",
                               "--time", 900], timeout=1000)
    finally:
        _pin(srv.proc.pid, S.SERVER_CORE)
    m = metrics(srv.admin)
    log("figure 6: warm-up of %s: %d handshakes in %.0f s, %d loads, cache %d" % (
        srv.name, count, time.monotonic() - t0, m.get("tlsfront_cert_cache_loads_total", 0),
        m.get("tlsfront_cert_cache_size", 0)))
    return r, m


def _pairs(w, cfg, n, many, one, key):
    """Alternating rounds many/one; each many round also records its cache loads."""
    import bench
    base = ["--n", w.cfg["hs_ec"], "--conc", 16, "--warmup", 100]
    for p in range(cfg["many_pairs"]):
        got = {}
        for which in (("n", "1") if p % 2 == 0 else ("1", "n")):
            if which == "1":
                got["1"] = bench.run_loadgen(w, one, "hs", "1.many.test", base)
                continue
            m0 = metrics(many.admin)
            got["n"] = bench.run_loadgen(w, many, "hs", "%ld.many.test",
                                         base + ["--sni-range", n])
            m1 = metrics(many.admin)
            d = {k: m1.get(k, 0) - m0.get(k, 0) for k in m1}
            got["n"]["loads"] = d.get("tlsfront_cert_cache_loads_total", 0)
            got["n"]["misses"] = d.get("tlsfront_cert_cache_misses_total", 0)
            got["n"]["hits"] = d.get("tlsfront_cert_cache_hits_total", 0)
        # per 1,000 measured handshakes (the warm-up's 100 are in the metric deltas too)
        got["n"]["loads_per_1000"] = 1000.0 * got["n"]["loads"] / (got["n"]["n"] + 100)
        _record(w, "many_hs_%s%d" % (key, n), "tlsfront", p, got["n"])
        _record(w, "many_hs_%s1" % key, "tlsfront", p, got["1"])
        _record(w, "many_pair_%s%d" % (key, n), "tlsfront", p,
                {"ratio": got["n"]["cpu_s_per_1000"] / got["1"]["cpu_s_per_1000"]})
        log("figure 6 %s pair %d: %.3f vs %.3f CPU-s/1000 (%d loads)" % (
            key or "hot", p + 1, got["n"]["cpu_s_per_1000"], got["1"]["cpu_s_per_1000"],
            got["n"]["loads"]))


def handshakes(w, cfg, n, full, base, one_dir, which=("hot", "cold")):
    """The hot and cold figures (see the module's doc)."""
    log("figure 6: handshakes with %d names vs one certificate (%s), %d pairs; load %s" %
        (n, "+".join(which), cfg["many_pairs"], os.getloadavg()))
    one = S.start_tlsfront(w, "tlsfront-one", one_dir, w.backend_port)
    try:
        if "hot" in which:
            many = _start(w, "tlsfront-hot", hot_dir(full, base, n), n)
            try:
                r, m = warm(w, many, n, n)
                _record(w, "many_warm_%d" % n, "tlsfront", 0, dict(m, wall_s=r["wall_s"]))
                _pairs(w, cfg, n, many, one, "")
            finally:
                many.stop()
        if "cold" in which:
            many = _start(w, "tlsfront-cold", full, 10000)
            try:
                warm(w, many, n, 10000)
                _pairs(w, cfg, n, many, one, "cold_")
            finally:
                many.stop()
    finally:
        one.stop()


def _callgrind_server(w, d, cache, out, warm_names, vg_args=()):
    """Instructions of 150 handshakes (random among warm_names names, each loaded by a
    warm-up first) of a tlsfront under callgrind with instrumentation on only around them.
    vg_args: more callgrind options (--cache-sim=yes counts simulated cache misses too)."""
    import bench
    n = 150
    port, admin = S.free_port(), S.free_port()
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
            "--callgrind-out-file=" + out] + list(vg_args) + [
        w.tlsfront, "--listen", "127.0.0.1:%d" % port, "--backend",
        "127.0.0.1:%d" % w.backend_port, "--workers", "1", "--certs", d, "--log-level", "warn",
        "--access-log", "off", "--cert-cache", str(cache), "--admin", "127.0.0.1:%d" % admin]
    p = S.spawn(argv, out + ".log")
    try:
        S.wait_port(port, p, timeout=900)
        srv = S.Server("tlsfront-callgrind", p, port, 0)
        srv.admin = admin
        sni = "%ld.many.test"
        rng = ["--sni-range", warm_names]
        bench.run_loadgen(w, srv, "hs", sni, ["--n", warm_names, "--conc", 4, "--sni-seq",
                                              "--time", 900] + rng, timeout=1000)
        bench.run_loadgen(w, srv, "hs", sni, ["--n", 50, "--conc", 4] + rng, timeout=300)
        m0 = metrics(admin)
        subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], check=True,
                       capture_output=True, timeout=60)
        bench.run_loadgen(w, srv, "hs", sni, ["--n", n, "--conc", 4] + rng, timeout=600)
        subprocess.run(["callgrind_control", "-i", "off", str(p.pid)], check=True,
                       capture_output=True, timeout=60)
        m1 = metrics(admin)
    finally:
        S.stop(p, timeout=120)
    loads = m1.get("tlsfront_cert_cache_loads_total", 0) - m0.get("tlsfront_cert_cache_loads_total", 0)
    return {k: v / n for k, v in _callgrind_events(out).items()}, loads


def _callgrind_events(path):
    """Every event's total (Ir, and with --cache-sim=yes Dr, D1mr, DLmr, ...) of a
    callgrind output file."""
    names, totals = None, None
    with open(path) as f:
        for line in f:
            if line.startswith("events:"):
                names = line.split()[1:]
            elif line.startswith(("summary:", "totals:")):
                totals = [int(x) for x in line.split()[1:]]
    if not names or not totals:
        raise RuntimeError("no totals in " + path)
    return dict(zip(names, totals))


def callgrind(w, n, full, base, one_dir, warm_names=300):
    """Instructions per handshake of a hot name among n indexed names (warm_names of them
    loaded: what a hot handshake runs does not depend on how many others are loaded) vs a
    one-certificate store."""
    log("figure 6: callgrind, hot name among %d indexed vs one certificate" % n)
    hot, loads = _callgrind_server(w, hot_dir(full, base, n), n,
                                   os.path.join(w.dir, "cg.many.hot"), warm_names)
    one, _ = _callgrind_server(w, one_dir, 10000, os.path.join(w.dir, "cg.many.one"), 1)
    hot, one = hot["Ir"], one["Ir"]
    data = {"n": n, "hot_ir_per_hs": hot, "one_ir_per_hs": one, "ratio": hot / one,
            "loads_while_measured": loads}
    w.records.append({"fig": 6, "key": "callgrind", "row": "many", "round": 0, "data": data})
    log("figure 6 callgrind: %.0f vs %.0f instructions per handshake (%.4f)" %
        (hot, one, hot / one))


LL_BYTES = 8 << 20


def cachesim(w, n, full, base, one_dir, warm_names=3000):
    """Simulated cache misses per handshake (callgrind --cache-sim=yes, an 8 MiB last-level
    cache) of a hot name among warm_names loaded names of n indexed vs a one-certificate
    store: what a random name costs in memory traffic, which CPU time on a shared VM blurs."""
    log("figure 6: cache simulation, hot name among %d loaded vs one certificate" % warm_names)
    sim = ["--cache-sim=yes", "--LL=%d,16,64" % LL_BYTES]
    hot, loads = _callgrind_server(w, hot_dir(full, base, n), n,
                                   os.path.join(w.dir, "cg.sim.hot"), warm_names, sim)
    one, _ = _callgrind_server(w, one_dir, 10000, os.path.join(w.dir, "cg.sim.one"), 1, sim)
    data = {"n": n, "warm_names": warm_names, "loads_while_measured": loads}
    for k in ("Ir", "Dr", "Dw", "D1mr", "D1mw", "DLmr", "DLmw"):
        data["hot_" + k] = hot.get(k, 0)
        data["one_" + k] = one.get(k, 0)
    w.records.append({"fig": 6, "key": "cachesim", "row": "many", "round": 0, "data": data})
    log("figure 6 cachesim: LL read misses %.1f vs %.1f, LL write misses %.1f vs %.1f, "
        "D1 read misses %.1f vs %.1f per handshake (%d loads while measured)" % (
            data["hot_DLmr"], data["one_DLmr"], data["hot_DLmw"], data["one_DLmw"],
            data["hot_D1mr"], data["one_D1mr"], loads))
