"""report.py: turn bench.py's raw measurements into the markdown table, the raw JSON and the
target verdicts. Medians and min-max over rounds; each column also as a ratio to the best
peer in the same run, and tlsfront's figures as multiples of the floors. The best peer is
the best of haproxy, hitch, nginx, nginx-stream and caddy, except in the handshake figures
(1, 2), where each row meets the best peer of its kind: a TCP-mode row (one backend
connection per client connection) the best TCP peer, an HTTP row (backend connections kept
alive and reused) the best HTTP peer; and in the latency figure (4): the best TCP peer."""
import json
import os
import platform
import statistics
import subprocess
import time

PEERS = ["haproxy", "hitch", "nginx", "nginx-stream", "caddy"]
TCP_PEERS = ["haproxy", "hitch", "nginx-stream"]
# HTTP reverse proxies that keep idle backend connections and reuse them: nginx http
# (`keepalive 64` upstream) and Caddy (reverse_proxy keeps idle upstream connections too)
HTTP_PEERS = ["nginx", "caddy"]
# the rows compared with HTTP_PEERS in figures 1-2 (nginx-nokeep: a reference row, nginx
# http without upstream keepalive); every other row is compared with TCP_PEERS there
HTTP_ROWS = ["tlsfront-http"] + HTTP_PEERS + ["nginx-nokeep"]
BY_KIND = "by kind"  # a table's peers: TCP_PEERS or HTTP_PEERS, after the row
ROWS = ["tlsfront", "tlsfront-w2", "tlsfront-http"] + PEERS + ["nginx-nokeep"]

# key -> {metric name in the table: field in loadgen's JSON}
FIELDS = {
    "hs": {"cpu": "cpu_s_per_1000", "rate": "rate"},
    "bulk": {"mbs": "mb_s", "cpu_gb": "cpu_s_per_gb", "sys_gb": "sys_cpu_s_per_gb"},
    "lat": {"p50": "p50_us", "p99": "p99_us"},
    "idle": {"kib": "kib_per_conn"},
    "libssl": {"cpu": "cpu_s_per_1000", "kib": "rss_kib_per_conn"},
    "many": {"startup": "startup_s", "rss": "rss_kib"},
}


def _cmd(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip() \
            or subprocess.run(argv, capture_output=True, text=True, timeout=20).stderr.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def environment(w, args, cfg, figs, elapsed):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "mode": "quick" if args.quick else "full",
        "figures": sorted(figs), "config": cfg, "elapsed_s": round(elapsed, 1),
        "kernel": platform.release(), "cpu": cpu, "cores": os.cpu_count(),
        "loadavg_end": open("/proc/loadavg").read().split()[:3],
        "tlsfront_commit": os.environ.get("TLSFRONT_BENCH_REV") or
        _cmd(["git", "-C", root, "rev-parse", "--short", "HEAD"]),
        "tlsfront_tree_dirty": not os.environ.get("TLSFRONT_BENCH_REV") and
        bool(_cmd(["git", "-C", root, "status", "--porcelain", "src", "include"])),
        "openssl": _cmd(["openssl", "version"]),
        "haproxy": _cmd(["haproxy", "-v"]).splitlines()[0] if _cmd(["haproxy", "-v"]) else "?",
        "hitch": _cmd(["hitch", "--version"]).splitlines()[0],
        "nginx": _cmd(["nginx", "-v"]),
        "caddy": _cmd(["caddy", "version"]),
    }


def _stat(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "n": len(vals)}


def summarize(records, meta):
    """{key: {row: {metric: stat}}} plus the floors and the one-off figures."""
    vals, per_round = {}, {}
    for r in records:
        fam = r["key"].split("_")[0]
        fields = FIELDS.get(fam)
        if not fields:
            continue
        if fam == "many" and r["key"].startswith("many_hs"):
            fields = dict(FIELDS["hs"], loads="loads_per_1000", misses="misses")
        elif fam == "many" and r["key"].startswith("many_pair"):
            fields = {"ratio": "ratio"}
        m = vals.setdefault(r["key"], {}).setdefault(r["row"], {})
        per = per_round.setdefault(r["key"], {}).setdefault(r["row"], {})
        for name, field in fields.items():
            m.setdefault(name, []).append(r["data"].get(field))
            per.setdefault(name, {})[str(r["round"])] = r["data"].get(field)
    res = {"meta": meta, "stats": {}, "one": {}, "rounds": per_round}
    for key, rows in vals.items():
        res["stats"][key] = {row: {k: _stat(v) for k, v in ms.items()} for row, ms in rows.items()}
    for r in records:
        if r["key"] in ("crypto", "callgrind", "ondemand"):
            res["one"].setdefault(r["key"], {})[r["row"]] = r["data"]
    return res


def med(res, key, row, metric):
    s = res["stats"].get(key, {}).get(row, {}).get(metric)
    return s["median"] if s else None


def best_peer(res, key, metric, better, peers=PEERS):
    vs = [(med(res, key, p, metric), p) for p in peers]
    vs = [v for v in vs if v[0] is not None]
    if not vs:
        return None, None
    return (min(vs) if better == "low" else max(vs))


def peers_of(peers, row):
    if peers == BY_KIND:
        return HTTP_PEERS if row in HTTP_ROWS else TCP_PEERS
    return peers


def ratio_to_best(res, key, row, metric, better, peers=PEERS):
    """(stat of row / best peer per round, best peer): the best peer is the one with the best
    median; the ratio is taken within each round, where both were measured close together,
    and summarised by its median (and min-max). peers: a list, or BY_KIND."""
    _, who = best_peer(res, key, metric, better, peers_of(peers, row))
    per = res.get("rounds", {}).get(key, {})
    a, b = per.get(row, {}).get(metric, {}), per.get(who, {}).get(metric, {})
    rs = [a[k] / b[k] for k in a if a[k] is not None and b.get(k)]
    return (_stat(rs) if rs else None), who


def _fmt(v, digits):
    if v is None:
        return "–"
    return ("%." + str(digits) + "f") % v


def _cell(s, digits):
    if not s:
        return "–"
    return "%s (%s–%s)" % (_fmt(s["median"], digits), _fmt(s["min"], digits),
                           _fmt(s["max"], digits))


BY_KIND_NOTE = ("× best: a TCP-mode row (%s) against the best TCP peer (%s), an HTTP row "
                "(%s) against the best HTTP peer (%s)." % (
                    ", ".join(r for r in ROWS if r not in HTTP_ROWS), ", ".join(TCP_PEERS),
                    ", ".join(HTTP_ROWS), ", ".join(HTTP_PEERS)))

# (key, metric, label, better, digits, peers)
TABLES = [
    ("1. Full handshakes (TLS 1.3, new connection + one small request)", [
        ("hs_ec_full", "cpu", "ECDSA P-256: server CPU-s / 1,000", "low", 3, BY_KIND),
        ("hs_ec_full", "rate", "ECDSA hs/s", "high", 0, BY_KIND),
        ("hs_rsa_full", "cpu", "RSA-2048: server CPU-s / 1,000", "low", 3, BY_KIND),
        ("hs_rsa_full", "rate", "RSA hs/s", "high", 0, BY_KIND)]),
    ("2. Resumed handshakes (session tickets)", [
        ("hs_ec_res", "cpu", "ECDSA cert: server CPU-s / 1,000", "low", 3, BY_KIND),
        ("hs_ec_res", "rate", "hs/s", "high", 0, BY_KIND),
        ("hs_rsa_res", "cpu", "RSA cert: server CPU-s / 1,000", "low", 3, BY_KIND),
        ("hs_rsa_res", "rate", "hs/s", "high", 0, BY_KIND)]),
    ("3. Bulk, 100 MB on one connection", [
        ("bulk_down", "mbs", "download MB/s", "high", 0, PEERS),
        ("bulk_down", "cpu_gb", "down: server CPU-s/GB", "low", 3, PEERS),
        ("bulk_down", "sys_gb", "down: whole-bench CPU-s/GB", "low", 3, PEERS),
        ("bulk_up", "mbs", "upload MB/s", "high", 0, PEERS),
        ("bulk_up", "cpu_gb", "up: server CPU-s/GB", "low", 3, PEERS),
        ("bulk_up", "sys_gb", "up: whole-bench CPU-s/GB", "low", 3, PEERS)]),
    ("4. Kept-alive latency at a fixed rate (ratios vs the best TCP forwarder)", [
        ("lat", "p50", "p50 µs", "low", 0, TCP_PEERS),
        ("lat", "p99", "p99 µs", "low", 0, TCP_PEERS)]),
    ("5. Idle memory: RSS growth per idle TLS connection (5,000 connections)", [
        ("idle", "kib", "KiB / connection", "low", 1, PEERS)]),
]


def _table(res, title, cols):
    present = [r for r in ROWS if any(r in res["stats"].get(c[0], {}) for c in cols)]
    if not present:
        return []
    out = ["### " + title, ""]
    if any(c[5] == BY_KIND for c in cols):
        out += [BY_KIND_NOTE, ""]
    head = "| row |" + "".join(" %s | × best |" % c[2] for c in cols)
    out += [head, "|---|" + "---:|---:|" * len(cols)]
    for row in present:
        line = "| %s |" % row
        for key, metric, _, better, digits, peers in cols:
            s = res["stats"].get(key, {}).get(row, {}).get(metric)
            rs, _ = ratio_to_best(res, key, row, metric, better, peers)
            ratio = "%.2f×" % rs["median"] if rs else "–"
            line += " %s | %s |" % (_cell(s, digits), ratio)
        out.append(line)
    out.append("")
    return out


def floors(res):
    c = res["one"].get("crypto", {}).get("floor")
    f = lambda k: med(res, k, "floor", "cpu")
    tf = lambda k, m: med(res, k, "tlsfront", m)
    rows = []
    for label, key, metric, lib, cry in (
            ("full hs ECDSA, CPU-s / 1,000", "hs_ec_full", "cpu", "libssl_ec_full",
             "crypto_ec_s_per_1000"),
            ("full hs RSA-2048, CPU-s / 1,000", "hs_rsa_full", "cpu", "libssl_rsa_full",
             "crypto_rsa_s_per_1000"),
            ("resumed hs (ECDSA cert), CPU-s / 1,000", "hs_ec_res", "cpu", "libssl_ec_res",
             "crypto_res_s_per_1000"),
            ("resumed hs (RSA cert), CPU-s / 1,000", "hs_rsa_res", "cpu", "libssl_rsa_res",
             "crypto_res_s_per_1000"),
            ("bulk down, server CPU-s / GB", "bulk_down", "cpu_gb", None, "aes_s_per_gb"),
            ("bulk up, server CPU-s / GB", "bulk_up", "cpu_gb", None, "aes_s_per_gb")):
        t = tf(key, metric)
        lv = f(lib) if lib else None
        cv = c.get(cry) if c else None
        rows.append((label, t, lv, cv))
    rows.append(("idle memory, KiB / connection (libssl: the server SSL alone)",
                 tf("idle", "kib"), med(res, "libssl_idle", "floor", "kib"), None))
    return rows


def targets(res):
    """[(target, value, limit, ok)] for the tlsfront row."""
    out = []

    def vs_best(name, key, metric, better, limit, peers=PEERS, row="tlsfront", kind=""):
        rs, who = ratio_to_best(res, key, row, metric, better, peers)
        if rs is None:
            return
        r = rs["median"]
        ok = r <= limit if better == "low" else r >= limit
        out.append(("%s vs best %speer (%s)" % (name, kind, who), r,
                    ("≤ " if better == "low" else "≥ ") + "%.2f" % limit, ok))

    def hs_vs_best(name, key):
        """TCP mode against the TCP peers, HTTP mode against the HTTP peers."""
        vs_best("%s, TCP mode" % name, key, "cpu", "low", 1.0, TCP_PEERS, kind="TCP ")
        vs_best("%s, HTTP mode (tlsfront-http)" % name, key, "cpu", "low", 1.0, HTTP_PEERS,
                row="tlsfront-http", kind="HTTP ")

    hs_vs_best("full hs ECDSA CPU", "hs_ec_full")
    hs_vs_best("full hs RSA CPU", "hs_rsa_full")
    for key, lib, name in (("hs_ec_full", "libssl_ec_full", "full hs ECDSA CPU"),
                           ("hs_rsa_full", "libssl_rsa_full", "full hs RSA CPU")):
        t, lv = med(res, key, "tlsfront", "cpu"), med(res, lib, "floor", "cpu")
        if t and lv:
            out.append(("%s vs libssl floor" % name, t / lv, "≤ 1.60", t / lv <= 1.6))
    cg = res["one"].get("callgrind", {}).get("floor")
    if cg:
        out.append(("instructions per full hs vs libssl floor (callgrind)", cg["ratio"], "≤ 1.02",
                    cg["ratio"] <= 1.02))
    hs_vs_best("resumed hs CPU (ECDSA cert)", "hs_ec_res")
    hs_vs_best("resumed hs CPU (RSA cert)", "hs_rsa_res")
    for d in ("down", "up"):
        vs_best("bulk %s server CPU/GB" % d, "bulk_" + d, "cpu_gb", "low", 1.0)
        vs_best("bulk %s whole-bench CPU/GB" % d, "bulk_" + d, "sys_gb", "low", 1.0)
        vs_best("bulk %s MB/s" % d, "bulk_" + d, "mbs", "high", 1.0)
    vs_best("latency p50", "lat", "p50", "low", 1.0, TCP_PEERS, kind="TCP ")
    vs_best("latency p99", "lat", "p99", "low", 1.0, TCP_PEERS, kind="TCP ")
    vs_best("idle KiB per connection", "idle", "kib", "low", 0.75)
    for n in (100000, 10000):
        key = "many_%d" % n
        if key not in res["stats"]:
            continue
        for metric, name in (("startup", "start-up time"), ("rss", "RSS")):
            t, h = med(res, key, "tlsfront", metric), med(res, key, "haproxy", metric)
            if t is not None and h:
                out.append(("%d certs: %s vs HAProxy crt-list" % (n, name), t / h, "≤ 0.50",
                            t / h <= 0.5))
        break  # the largest size measured is the one judged
    for n in (100000, 10000):  # the largest size measured is the one judged
        r = med(res, "many_pair_%d" % n, "tlsfront", "ratio")
        if r:
            out.append(("hs CPU, hot name among %d vs 1 (median of paired runs)" % n, r,
                        "≤ 1.05", r <= 1.05))
            break
    cg = res["one"].get("callgrind", {}).get("many")
    if cg:
        out.append(("instructions per hs, hot name among %d vs 1 (callgrind)" % cg["n"],
                    cg["ratio"], "≤ 1.05", cg["ratio"] <= 1.05))
    od = res["one"].get("ondemand", {})
    if "tlsfront" in od and "caddy" in od:
        r = od["tlsfront"]["median_s"] / od["caddy"]["median_s"]
        ok = r <= 0.25 and not od["tlsfront"]["failed"] and od["tlsfront"]["concurrent_ok"] == 20
        out.append(("on-demand first connection vs Caddy (median)", r, "≤ 0.25", ok))
    return out


def markdown(res):
    m = res["meta"]
    cfg = m["config"]
    out = ["## tlsfront benchmark: %s mode, %s" % (m["mode"], m["date"]), "",
           "Machine: %s, %s cores, Linux %s, %s. tlsfront %s%s; %s; %s; %s; %s." % (
               m["cpu"], m["cores"], m["kernel"], m["openssl"], m["tlsfront_commit"],
               " (uncommitted changes)" if m["tlsfront_tree_dirty"] else "", m["haproxy"],
               m["hitch"], m["nginx"], m["caddy"]),
           "Every terminator: one worker/thread pinned to core 0 (tlsfront-w2: two workers on "
           "the same core; tlsfront-http, figures 1-2: mode=http with its backend keep-alive "
           "pool); load generator and backend on core 1. Handshakes (1, 2): every "
           "server up at once, the rows taking turns, %d rotations; bulk and latency: %d "
           "interleaved rounds; idle memory: %d round(s)%s. Cells: median (min–max); × best: "
           "the median of the row's per-round ratios to the best peer (the peer with the best "
           "median; in figures 1-2 the best of the row's kind, TCP or HTTP, as each table says; "
           "in figure 4 the best TCP peer). Run time %.0f s, load average at the end %s." % (
               cfg.get("hs_rounds", cfg["rounds"]), cfg["rounds"], cfg["idle_rounds"],
               " (quick mode: fewer rounds and connections than the full run)"
               if m["mode"] == "quick" else "", m["elapsed_s"], " ".join(m["loadavg_end"])), ""]
    for title, cols in TABLES:
        out += _table(res, title, cols)
    out += _extra_tables(res)
    fl = floors(res)
    if any(r[2] or r[3] for r in fl):
        out += ["### 8. The floor (tlsfront as a multiple of it)", "",
                "| figure | tlsfront | libssl floor | × | crypto only | × |",
                "|---|---:|---:|---:|---:|---:|"]
        for label, t, lv, cv in fl:
            out.append("| %s | %s | %s | %s | %s | %s |" % (
                label, _fmt(t, 3), _fmt(lv, 3), "%.2f×" % (t / lv) if t and lv else "–",
                _fmt(cv, 3), "%.2f×" % (t / cv) if t and cv else "–"))
        cg = res["one"].get("callgrind", {}).get("floor")
        if cg:
            out.append("| user-space instructions per full ECDSA hs (callgrind) | %.0f | %.0f | "
                       "%.3f× | – | – |" % (cg["tlsfront_ir_per_hs"], cg["floor_ir_per_hs"],
                                           cg["ratio"]))
        out.append("")
        out += _peer_floor_note(res)
    t = targets(res)
    if t:
        out += ["### Targets (tlsfront, ratios in this run)", "", "| target | ratio | limit | |",
                "|---|---:|---:|---|"]
        for name, v, limit, ok in t:
            out.append("| %s | %.2f | %s | %s |" % (name, v, limit, "met" if ok else "**MISSED**"))
        out.append("")
    return "\n".join(out) + "\n"


def _peer_floor_note(res):
    """The floor multiples of the best peers, for scale: the floor has no sockets."""
    notes = []
    for key, label in (("hs_ec_full", "ECDSA"), ("hs_rsa_full", "RSA-2048")):
        v, p = best_peer(res, key, "cpu", "low")
        fl = med(res, "libssl_%s_full" % ("ec" if label == "ECDSA" else "rsa"), "floor", "cpu")
        if v and fl:
            notes.append("%s %s %.3f = %.2f×" % (label, p, v, v / fl))
    if not notes:
        return []
    return ["The best peers as multiples of the same libssl floor (full handshakes): " +
            "; ".join(notes) + ". The floor runs over a memory BIO pair: no sockets, no "
            "backend connection, no kernel time.", ""]


def _many_hs_lines(res):
    """Figure 6's handshake figures: hot and cold names among n vs one certificate."""
    out = []
    for key, what in (("", "a hot name (all of them loaded into the cache by a warm-up)"),
                      ("cold_", "`--cert-cache 10000` (most names cold)")):
        for n in (100000, 10000):
            st = res["stats"]
            a = st.get("many_hs_%s%d" % (key, n), {}).get("tlsfront", {})
            b = st.get("many_hs_%s1" % key, {}).get("tlsfront", {}).get("cpu")
            pr = st.get("many_pair_%s%d" % (key, n), {}).get("tlsfront", {}).get("ratio")
            if a.get("cpu") and b and pr:
                out += ["Full ECDSA handshakes, SNI at random among %d names, %s: %s CPU-s / "
                        "1,000 vs %s with one certificate, ratio per pair %s (median, min–max "
                        "of %d pairs, the two servers taking turns); certificate loads per "
                        "1,000 handshakes %s, handshakes held for a load (cache misses) per run %s." % (
                            n, what, _cell(a["cpu"], 3), _cell(b, 3), _cell(pr, 3), pr["n"],
                            _cell(a.get("loads"), 0), _cell(a.get("misses"), 0)), ""]
                break
    cg = res["one"].get("callgrind", {}).get("many")
    if cg:
        out += ["User-space instructions per full handshake (callgrind), a hot name among "
                "%d indexed vs one certificate: %.0f vs %.0f (%.4f×)." % (
                    cg["n"], cg["hot_ir_per_hs"], cg["one_ir_per_hs"], cg["ratio"]), ""]
    return out


def _extra_tables(res):
    out = []
    sizes = [n for n in (10000, 100000) if "many_%d" % n in res["stats"]]
    if sizes:
        out += ["### 6. Many certificates (tlsfront --certs DIR vs HAProxy crt-list)", "",
                "| certificates | row | start-up s | × HAProxy | RSS MiB | × HAProxy | runs |",
                "|---:|---|---:|---:|---:|---:|---:|"]
        for n in sizes:
            key = "many_%d" % n
            for row in ("tlsfront", "haproxy"):
                st = res["stats"][key].get(row, {})
                su, rs = st.get("startup"), st.get("rss")
                hsu, hrs = med(res, key, "haproxy", "startup"), med(res, key, "haproxy", "rss")
                out.append("| %d | %s | %s | %s | %s | %s | %s |" % (
                    n, row, _cell(su, 2), "%.2f×" % (su["median"] / hsu) if su and hsu else "–",
                    _fmt(rs["median"] / 1024 if rs else None, 1),
                    "%.2f×" % (rs["median"] / hrs) if rs and hrs else "–", su["n"] if su else 0))
        out.append("")
    hs = _many_hs_lines(res)
    if hs and not sizes:
        out += ["### 6. Many certificates", ""]
    out += hs
    od = res["one"].get("ondemand", {})
    if od:
        out += ["### 7. On-demand issuance against pebble (PEBBLE_VA_NOSLEEP=1)", "",
                "| row | first connection, median s (min–max, names) | × Caddy | 20 concurrent "
                "for one name: ok, median s, max s, orders |", "|---|---:|---:|---|"]
        cm = od.get("caddy", {}).get("median_s")
        for row in ("tlsfront", "caddy"):
            d = od.get(row)
            if not d:
                continue
            out.append("| %s | %.3f (%.3f–%.3f, %d%s) | %s | %d/20, %s, %s, %d |" % (
                row, d["median_s"], min(d["first_s"]), max(d["first_s"]), len(d["first_s"]),
                ", %d failed" % d["failed"] if d["failed"] else "",
                "%.2f×" % (d["median_s"] / cm) if cm else "–", d["concurrent_ok"],
                _fmt(d["concurrent_median_s"], 3), _fmt(d["concurrent_max_s"], 3),
                d["concurrent_orders"]))
        out.append("")
    return out


def write(res, records, meta, outdir, docs, prefix="latest-"):
    """Write OUT/PREFIXMODE.{md,json}; returns True when every target was met."""
    os.makedirs(outdir, exist_ok=True)
    md = markdown(res)
    base = os.path.join(outdir, prefix + meta["mode"])
    with open(base + ".md", "w") as f:
        f.write(md)
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "summary": {"stats": res["stats"], "one": res["one"]},
                   "targets": [{"target": t[0], "ratio": t[1], "limit": t[2], "met": t[3]}
                               for t in targets(res)], "records": records}, f, indent=1)
    if docs:
        _update_docs(docs, md)
    print(md)
    return all(t[3] for t in targets(res))


def _update_docs(path, md):
    start, end = "<!-- bench-table:start -->", "<!-- bench-table:end -->"
    text = open(path).read()
    a, b = text.find(start), text.find(end)
    if a < 0 or b < a:
        raise RuntimeError("%s has no %s ... %s markers" % (path, start, end))
    with open(path, "w") as f:
        f.write(text[:a + len(start)] + "\n" + md.replace("## ", "### ", 1) + text[b:])
