#!/usr/bin/env python3
"""Managed certificates at scale: start-up and RSS of tlsfront with N certificates in its
--storage directory (what ACME left there: certs/<name>/cert.pem, key.pem, meta.json), one
worker pinned to one core (taskset -c 0), --cert-cache as given. Reported per
binary: seconds from the spawn until the log says the stored certificates are in (the
managed store is ready: requests are answered), seconds until the last name is served, and
VmRSS then; then the extra latency of a cold name's first handshake over its second (p50,
p99 of 200 random names). With more names than --cert-cache the store is indexed from meta.json and
nothing is decoded until a client asks; with fewer (or an older binary) every certificate
is decoded at start.

    bench/managed_scale.py [--n 5000 [--n 100000]] [--bin build/tlsfront [--bin other]]

The certificates come from certs/mkcerts.sh many (bench/scale.py's cert_dir, kept in
$TLSFRONT_BENCH_CACHE, default /var/tmp/tlsfront-bench); the storage layout is made once
beside them (managed-N). No CA is contacted: the stored certificates are not due, and the
ACME directory given is never fetched."""
import argparse
import base64
import calendar
import json
import os
import random
import re
import ssl
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from extra import _rss_kib as rss_kib  # noqa: E402
from scale import ROOT, cert_dir, handshake, pct, spawn, stop, wait_served  # noqa: E402
from servers import free_port  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def storage_dir(n):
    """N stored certificates in the storage layout, with the meta.json an order writes."""
    from cryptography import x509
    src = cert_dir(n)
    d = os.path.join(os.path.dirname(src), "managed-%d" % n)
    if os.path.exists(os.path.join(d, "done")):
        return d, src
    print("making the storage layout of %d certificates once into %s" % (n, d), flush=True)
    for i in range(1, n + 1):
        name = "%d.many.test" % i
        with open(os.path.join(src, name + ".pem")) as f:
            pem = f.read()
        cut = pem.index("-----BEGIN PRIVATE KEY-----")
        c = x509.load_pem_x509_certificate(pem[:cut].encode())
        aki = c.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        serial = c.serial_number.to_bytes((c.serial_number.bit_length() + 8) // 8, "big")
        meta = {"name": name, "ca": "https://acme.invalid/dir", "ca_id": "",
                "issuer": "CN=bench", "serial": "%x" % c.serial_number,
                "not_before": calendar.timegm(c.not_valid_before.utctimetuple()),
                "not_after": calendar.timegm(c.not_valid_after.utctimetuple()),
                "kind": "ec", "obtained": int(time.time()),
                "cert_id": "%s.%s" % (b64url(aki.key_identifier), b64url(serial))}
        nd = os.path.join(d, "certs", name)
        os.makedirs(nd, exist_ok=True)
        for fname, text in (("cert.pem", pem[:cut]), ("key.pem", pem[cut:]),
                            ("meta.json", json.dumps(meta))):
            with open(os.path.join(nd, fname), "w") as f:
                f.write(text)
    open(os.path.join(d, "done"), "w").close()
    return d, src


def run(binary, d, n, ctx, cache):
    work = tempfile.mkdtemp(prefix="tf-managed-")
    port = free_port()
    argv = [binary, "--listen", "127.0.0.1:%d" % port, "--backend", "127.0.0.1:9",
            "--workers", "1", "--storage", d, "--acme-directory", "https://127.0.0.1:9/dir",
            "--allow", "*.none.test", "--acme-email", "ops@example.test"]
    if cache:
        argv += ["--cert-cache", str(cache)]
    t0 = time.monotonic()
    p = spawn(argv, work, "tlsfront")
    log = os.path.join(work, "tlsfront.log")
    try:
        ready = None
        while ready is None and time.monotonic() - t0 < 1200:
            with open(log, errors="replace") as f:
                if re.search(r"stored certificates: \d+ (loaded|indexed)", f.read()):
                    ready = time.monotonic() - t0
            if p.poll() is not None:
                raise RuntimeError("tlsfront exited: see %s" % log)
            time.sleep(0.01)
        wait_served(p, port, "%d.many.test" % n, ctx)
        served = time.monotonic() - t0
        row = {"store_ready_s": round(ready, 2), "last_name_served_s": round(served, 2),
               "rss_mib": round(rss_kib(p.pid) / 1024, 1)}
        # Cold names: first handshake (a load from the storage when indexed) minus the hot one.
        names = ["%d.many.test" % i for i in random.Random(1).sample(range(1, n), 200)]
        cold = [handshake(port, nm, ctx) for nm in names]
        extra = [c - handshake(port, nm, ctx) for c, nm in zip(cold, names)]
        row.update(cold_extra_ms_p50=round(pct(extra, 0.5) * 1e3, 2),
                   cold_extra_ms_p99=round(pct(extra, 0.99) * 1e3, 2))
        return row
    finally:
        stop(p)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, action="append")
    ap.add_argument("--bin", action="append")
    ap.add_argument("--cert-cache", type=int, action="append",
                    help="one run per value (0: the default, 10000)")
    args = ap.parse_args()
    for n in args.n or [5000]:
        d, src = storage_dir(n)
        ctx = ssl.create_default_context(cafile=os.path.join(src, "ca.crt"))
        for b in args.bin or [os.path.join(ROOT, "build", "tlsfront")]:
            for cache in args.cert_cache or [0]:
                row = run(b, d, n, ctx, cache)
                print("N=%d --cert-cache %s %s %s" % (n, cache or "default", b, json.dumps(row)),
                      flush=True)


if __name__ == "__main__":
    main()
