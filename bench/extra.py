"""extra.py: bench.py's figures that are not one loadgen run per terminator: the floors
(figure 8: `openssl speed`, the libssl memory-BIO floor, callgrind instruction counts),
many certificates (figure 6) and on-demand issuance against pebble (figure 7)."""
import json
import os
import random
import re
import statistics
import subprocess
import time

import servers as S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg):
    import bench
    bench.log(msg)


def _record(w, fig, key, row, rnd, data):
    w.records.append({"fig": fig, "key": key, "row": row, "round": rnd, "data": data})


# ---- figure 8: the floors ----

def _speed(args):
    out = subprocess.run(["taskset", "-c", S.SERVER_CORE, "openssl", "speed", "-mr",
                          "-seconds", "1"] + args, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return [line.split(":") for line in out.splitlines() if line.startswith("+F")]


def crypto_floor(w):
    """Server-side crypto of one handshake and AES-128-GCM per GB, on the server's core."""
    log("floor: openssl speed (ecdsap256, ecdhx25519, rsa2048, aes-128-gcm)")
    ecdsa = float(_speed(["ecdsap256"])[0][3])          # +F4:i:bits:sign/s:verify/s
    x25519 = float(_speed(["ecdhx25519"])[0][3])        # +F5:i:bits:op/s:s/op
    rsa = float(_speed(["rsa2048"])[0][3])              # +F2:i:bits:sign/s:verify/s
    aes = float(_speed(["-bytes", "16384", "-evp", "aes-128-gcm"])[0][3])  # +F:i:name:B/s
    # one full handshake: one signature, one X25519 key generation and one derivation
    # (`openssl speed` times derivations; key generation is the same scalar multiplication)
    data = {"ecdsa_sign_per_s": ecdsa, "x25519_per_s": x25519, "rsa2048_sign_per_s": rsa,
            "aes128gcm_bytes_per_s": aes,
            "crypto_ec_s_per_1000": 1000 * (1 / ecdsa + 2 / x25519),
            "crypto_rsa_s_per_1000": 1000 * (1 / rsa + 2 / x25519),
            "crypto_res_s_per_1000": 1000 * (2 / x25519),
            "aes_s_per_gb": 1e9 / aes}
    _record(w, 8, "crypto", "floor", 0, data)


def _floor_run(w, kind, n, resume):
    c = w.certs[kind]
    argv = ["taskset", "-c", S.SERVER_CORE, os.path.join(w.bin, "floor"), c["crt"], c["key"],
            str(n)] + (["--idle"] if resume == "idle" else ["--resume"] if resume else [])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if r.returncode:
        raise RuntimeError("floor failed: " + r.stderr.strip())
    return json.loads(r.stdout)


def libssl_floor(w, rnd, cfg):
    n = cfg["floor_n"]
    for kind, scale in (("ec", 1), ("rsa", 3)):
        for resume in (0, 1):
            key = "libssl_%s_%s" % (kind, "res" if resume else "full")
            _record(w, 8, key, "floor", rnd, _floor_run(w, kind, n // scale, resume))
    if rnd < cfg["idle_rounds"]:  # memory floor: OpenSSL's own bytes per idle connection
        _record(w, 8, "libssl_idle", "floor", rnd, _floor_run(w, "ec", 5000, "idle"))


def _callgrind_total(path):
    found = {}
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                found[line.split(":")[0]] = int(line.split()[1])
    if found.get("totals") or found.get("summary"):
        return found.get("totals") or found["summary"]
    raise RuntimeError("no totals in " + path)


def callgrind(w, cfg):
    """User-space instructions per full ECDSA handshake: tlsfront vs the libssl floor."""
    log("callgrind: floor and tlsfront instructions per handshake")
    n = 150
    c = w.certs["ec"]
    outs = []
    for count in (n, 2 * n):  # the difference cancels start-up and warm-up
        out = os.path.join(w.dir, "cg.floor.%d" % count)
        subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=server_op",
                        "--callgrind-out-file=" + out, os.path.join(w.bin, "floor"), c["crt"],
                        c["key"], str(count)], check=True, capture_output=True, timeout=600)
        outs.append(_callgrind_total(out))
    floor_ir = (outs[1] - outs[0]) / n
    out = os.path.join(w.dir, "cg.tlsfront")
    port = S.free_port()
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
            "--callgrind-out-file=" + out, w.tlsfront, "--listen", "127.0.0.1:%d" % port,
            "--backend", "127.0.0.1:%d" % w.backend_port, "--workers", "1", "--certs", c["dir"],
            "--log-level", "warn", "--access-log", "off"]
    p = S.spawn(argv, os.path.join(w.dir, "cg.tlsfront.log"))
    srv = None
    try:
        S.wait_port(port, p, timeout=60)
        srv = S.Server("tlsfront-callgrind", p, port, 0)
        import bench
        bench.run_loadgen(w, srv, "hs", "bench.test", ["--n", 50, "--conc", 4], timeout=300)
        subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], check=True,
                       capture_output=True, timeout=60)
        bench.run_loadgen(w, srv, "hs", "bench.test", ["--n", n, "--conc", 4], timeout=600)
        subprocess.run(["callgrind_control", "-i", "off", str(p.pid)], check=True,
                       capture_output=True, timeout=60)
    finally:
        S.stop(p, timeout=60)
    tf_ir = _callgrind_total(out) / n
    _record(w, 8, "callgrind", "floor", 0, {"floor_ir_per_hs": floor_ir,
                                            "tlsfront_ir_per_hs": tf_ir,
                                            "ratio": tf_ir / floor_ir, "n": n})


# ---- figure 6: many certificates ----

def _bench_cache():
    return os.environ.get("TLSFRONT_BENCH_CACHE", "/var/tmp/tlsfront-bench")


def _many_full():
    """100,000 certificates <i>.many.test, made once and kept between runs (the same
    directory as bench/scale.py --n 100000 uses)."""
    full = os.path.join(_bench_cache(), "scale-100000")
    if not os.path.exists(os.path.join(full, "100000.many.test.pem")):
        log("figure 6: making 100,000 certificates once into %s (about a minute)" % full)
        os.makedirs(full, exist_ok=True)
        subprocess.run(["bash", os.path.join(ROOT, "certs", "mkcerts.sh"), "many", full,
                        "100000"], check=True, capture_output=True, timeout=1200)
    return full


def _many_dir(n):
    """Certificates <i>.many.test for i = 1..n: hard links into the 100,000."""
    full = _many_full()
    if n == 100000:
        return full
    d = os.path.join(_bench_cache(), "many-%d" % n)
    if not os.path.exists(os.path.join(d, "%d.many.test.pem" % n)):
        os.makedirs(d, exist_ok=True)
        for i in range(1, n + 1):
            name = "%d.many.test.pem" % i
            if not os.path.exists(os.path.join(d, name)):
                os.link(os.path.join(full, name), os.path.join(d, name))
    return d


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def many_certs(w, cfg):
    """Start-up and RSS (part "startup"), then the handshake figures of many_hs.py (parts
    "hot", "cold", "callgrind"; "cachesim" only when named); w.args.many picks the parts
    (default: all but cachesim)."""
    parts = set(w.args.many or ("startup", "hot", "cold", "callgrind"))
    sizes = [10000] if w.args.quick else [10000, 100000]
    for n in sizes if "startup" in parts else ():
        d = _many_dir(n)
        crt_list = os.path.join(w.dir, "crt-list-%d" % n)
        with open(crt_list, "w") as f:
            for i in range(1, n + 1):
                f.write("%s/%d.many.test.pem\n" % (d, i))
        for rnd in range(min(3, cfg["rounds"])):
            for row in ("tlsfront", "haproxy"):
                if row == "haproxy" and n >= 100000 and rnd > 0:
                    continue  # HAProxy takes about two minutes to load 100,000: once is enough
                log("figure 6: %s with %d certificates (round %d)" % (row, n, rnd + 1))
                if row == "tlsfront":
                    srv = S.start_tlsfront(w, row, d, w.backend_port)
                else:
                    srv = S.start_haproxy(w, row, None, w.backend_port, crt_list=crt_list)
                try:
                    time.sleep(0.5)  # let the loader settle before reading RSS
                    data = {"n": n, "startup_s": srv.startup, "rss_kib": _rss_kib(srv.proc.pid)}
                    _record(w, 6, "many_%d" % n, row, rnd, data)
                finally:
                    srv.stop()
    import many_hs
    n, full, one = sizes[-1], _many_full(), _many_dir(1)
    hs = [p for p in ("hot", "cold") if p in parts]
    if hs:
        many_hs.handshakes(w, cfg, n, full, _bench_cache(), one, hs)
    if "callgrind" in parts:
        many_hs.callgrind(w, n, full, _bench_cache(), one)
    if "cachesim" in parts:
        many_hs.cachesim(w, n, full, _bench_cache(), one)


# ---- figure 7: on-demand issuance against pebble ----

class Pebble:
    def __init__(self, w, tls_port):
        self.dir = os.path.join(w.dir, "pebble")
        os.makedirs(self.dir, exist_ok=True)
        d = self.dir
        subprocess.run(["bash", os.path.join(ROOT, "certs", "mkcerts.sh"), "leaf", d, "pebble",
                        "localhost,127.0.0.1", "--days", "2"], check=True, capture_output=True)
        self.ca = d + "/ca.crt"
        self.port, self.mgmt, self.dns_mgmt = S.free_port(), S.free_port(), S.free_port()
        self.dns_port = S.free_port()
        self.dns = S.spawn(["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6",
                            "", "-dns01", "127.0.0.1:%d" % self.dns_port, "-http01", "",
                            "-https01", "", "-tlsalpn01", "", "-management",
                            "127.0.0.1:%d" % self.dns_mgmt], d + "/dns.log", core=S.CLIENT_CORE)
        cfg = {"pebble": {"listenAddress": "127.0.0.1:%d" % self.port,
                          "managementListenAddress": "127.0.0.1:%d" % self.mgmt,
                          "certificate": d + "/pebble.crt", "privateKey": d + "/pebble.key",
                          "httpPort": 5002, "tlsPort": tls_port, "ocspResponderURL": "",
                          "externalAccountBindingRequired": False}}
        with open(d + "/pebble.json", "w") as f:
            json.dump(cfg, f)
        env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0",
               "PEBBLE_AUTHZREUSE": "0"}
        self.proc = S.spawn(["pebble", "-config", d + "/pebble.json", "-dnsserver",
                             "127.0.0.1:%d" % self.dns_port], d + "/pebble.log", env=env,
                            core=S.CLIENT_CORE)
        S.wait_port(self.port, self.proc, timeout=30)
        self.root = d + "/root.pem"
        subprocess.run(["curl", "-sSf", "--cacert", self.ca, "-o", self.root,
                        "https://127.0.0.1:%d/roots/0" % self.mgmt], check=True, timeout=30)

    @property
    def directory(self):
        return "https://127.0.0.1:%d/dir" % self.port

    def orders(self):
        return open(self.dir + "/pebble.log").read().count("POST /order-plz")


def _first_connection(name, port, root):
    """One curl to a fresh name; returns (seconds, ok)."""
    r = subprocess.run(["taskset", "-c", S.CLIENT_CORE, "curl", "-sS", "-o", "/dev/null",
                        "-w", "%{http_code} %{time_total}", "--max-time", "30", "--resolve",
                        "%s:%d:127.0.0.1" % (name, port), "--cacert", root,
                        "https://%s:%d/" % (name, port)], capture_output=True, text=True,
                       timeout=60)
    parts = r.stdout.split()
    ok = r.returncode == 0 and len(parts) == 2 and parts[0] == "200"
    return (float(parts[1]) if len(parts) == 2 else 30.0), ok


def _concurrent(name, port, root, k=20):
    procs = [subprocess.Popen(["taskset", "-c", S.CLIENT_CORE, "curl", "-sS", "-o", "/dev/null",
                               "-w", "%{http_code} %{time_total}", "--max-time", "30",
                               "--resolve", "%s:%d:127.0.0.1" % (name, port), "--cacert", root,
                               "https://%s:%d/" % (name, port)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(k)]
    times, ok = [], 0
    for p in procs:
        out, _ = p.communicate(timeout=60)
        parts = out.split()
        if p.returncode == 0 and len(parts) == 2 and parts[0] == "200":
            ok += 1
            times.append(float(parts[1]))
    return times, ok


def ondemand(w, cfg):
    port = S.free_port()
    peb = Pebble(w, port)
    tag = "%05d" % random.randrange(100000)
    names = 7 if w.args.quick else 9
    try:
        for row in ("tlsfront", "caddy"):
            log("figure 7: on-demand first connections through %s" % row)
            if row == "tlsfront":
                extra_args = ["--allow", "*.od.test", "--storage", os.path.join(w.dir, "od-st"),
                              "--acme-directory", peb.directory, "--acme-ca", peb.ca,
                              "--acme-email", "bench@od.test"]
                srv = S.start_tlsfront(w, row, None, w.backend_port, extra=extra_args,
                                       port=port)
            else:
                od = {"directory": peb.directory, "ca": peb.ca, "ask_port": w.backend_port,
                      "site": "*.od.test"}
                srv = S.start_caddy(w, "caddy-ondemand", None, None, w.backend_port,
                                    port=port, ondemand=od)
            try:
                times, fails = [], 0
                for i in range(names):
                    t, ok = _first_connection("%s-%s-%d.od.test" % (row, tag, i), port,
                                              peb.root)
                    fails += not ok
                    times.append(t)
                before = peb.orders()
                ctimes, cok = _concurrent("%s-%s-c.od.test" % (row, tag), port, peb.root)
                _record(w, 7, "ondemand", row, 0, {
                    "first_s": times, "failed": fails, "median_s": statistics.median(times),
                    "concurrent_ok": cok, "concurrent_s": ctimes,
                    "concurrent_median_s": statistics.median(ctimes) if ctimes else None,
                    "concurrent_max_s": max(ctimes) if ctimes else None,
                    "concurrent_orders": peb.orders() - before})
            finally:
                srv.stop()
    finally:
        S.stop(peb.proc)
        S.stop(peb.dns)
