"""Names at scale: a --certs directory of 20,000 certificates, larger than --cert-cache 1000,
is indexed at start and loaded on first use. A random sample of names is served with the
right certificate each (the peer certificate's SAN is checked), the cache never holds more
than 1,000, evicted names are served again, a certbot layout and .pem files whose file name
is not the name are served, and a file corrupted after start refuses its name once with a
logged reason while the others are still served.

The 20,000 leaves come from certs/mkcerts.sh many (one CA; the leaves share one key, which
is enough for indexing and caching: each file is still read and decoded on its own). They
are made once into the build directory and reused by later runs."""
import os
import random
import re
import signal
import ssl
import subprocess

from tfcommon import (SRC, Backend, cert_cache_metrics, check, check_cached_sample, echo_handler,
                      finish, many_certs, served_sans, start_tlsfront, tls_refusal, tmpdir,
                      wait_until)

N = 20000
CACHE = 1000
MKCERTS = os.path.join(SRC, "certs", "mkcerts.sh")


def leaf(d, base, names, layout, ca):
    subprocess.run(["bash", MKCERTS, "leaf", d, base, names, "--layout", layout, "--ca", ca],
                   check=True, stdout=subprocess.DEVNULL)


many = many_certs(N)
certs = os.path.join(tmpdir(), "certs")
os.makedirs(certs)
for f in os.listdir(many):
    if f.endswith(".pem"):
        os.symlink(os.path.join(many, f), os.path.join(certs, f))
# Files whose names do not tell the names they serve.
leaf(certs, "site", "www.certbot.test,certbot.test", "certbot", many)
leaf(certs, "misnamed", "alias.test,other-alias.test", "pem", many)
leaf(certs, "pair", "pair.test", "pair", many)
leaf(certs, "broken", "broken.test", "pem", many)

echo = Backend(echo_handler)
tf, port = start_tlsfront(["--certs", certs, "--cert-cache", str(CACHE), "--backend", echo.addr,
                           "--workers", "2", "--admin", "127.0.0.1:0"])
aport = int(tf.wait_for(r"admin endpoint on 127\.0\.0\.1:(\d+)").group(1))
check(tf.wait_for(r"certificates: %d indexed from .*, 0 skipped .*loaded on first use" % (N + 4), 5)
      is not None, "start-up indexes the directory instead of loading it")
ctx = ssl.create_default_context(cafile=os.path.join(many, "ca.crt"))


def metrics():
    return cert_cache_metrics(aport)


def served(name):
    """The DNS names of the certificate served for name (verified against the CA)."""
    return served_sans(port, ctx, name)


def refused(name):
    return tls_refusal(served, name)


# Files whose names do not tell the names: every SAN is served, not only the file name's.
for name, sans in (("www.certbot.test", ["certbot.test", "www.certbot.test"]),
                   ("certbot.test", ["certbot.test", "www.certbot.test"]),
                   ("alias.test", ["alias.test", "other-alias.test"]),
                   ("other-alias.test", ["alias.test", "other-alias.test"]),
                   ("pair.test", ["pair.test"])):
    got = served(name)
    check(got == sans, "%s served with its certificate (%s)" % (name, got))

# A random sample, more names than the cache holds, from a few clients at once.
rng = random.Random(int(os.environ.get("TF_SEED", "0")) or None)
sample = rng.sample(range(1, N + 1), CACHE + 200)
m = check_cached_sample(served, metrics, ["%d.many.test" % i for i in sample], CACHE, 300)

# The first names loaded went first: served again, loaded again.
before = m["tlsfront_cert_cache_loads_total"]
again = sample[:50]
bad = [i for i in again if served("%d.many.test" % i) != ["%d.many.test" % i]]
check(not bad, "evicted names served again with their certificate (%s)" % bad[:3])
after = metrics()
check(after["tlsfront_cert_cache_loads_total"] > before,
      "evicted names were loaded again (%d more loads)"
      % (after["tlsfront_cert_cache_loads_total"] - before))
check(after["tlsfront_cert_cache_hits_total"] > 0, "loaded names count as hits")

# A file corrupted after start: its name refused with a logged reason, once; others served.
with open(os.path.join(certs, "broken.pem"), "w") as f:
    f.write("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
errs = [refused("broken.test") for _ in range(3)]
check(all(e and "INTERNAL_ERROR" in e.upper() for e in errs),
      "a corrupted file's name is refused with internal_error (%s)" % errs[0])
check(tf.wait_for(r"name=broken\.test file .*broken\.pem: .*refused until a reload", 5)
      is not None, "the reason is logged with the file")
check(len(re.findall(r"broken\.pem: ", tf.stderr_text())) == 1, "logged once, not per handshake")
check(tf.wait_for(r"sni=broken\.test .*end=load_failed", 5, stream="out") is not None,
      "access log says end=load_failed")
check(wait_until(lambda: metrics()["tlsfront_cert_cache_load_failures_total"] == 1),
      "one load failure counted")
check(served("7.many.test") == ["7.many.test"] and served("alias.test")[0] == "alias.test",
      "other names are still served")

# SIGHUP indexes the directory again: the broken file is reported and its name unknown now,
# every other name is served (cold again, from the new index).
tf.signal(signal.SIGHUP)
check(tf.wait_for(r"reloaded: %d certificates" % (N + 3), 60) is not None,
      "reload re-indexes the directory")
err = refused("broken.test")
check(err is not None and "UNRECOGNIZED_NAME" in err.upper(),
      "after the reload the broken file's name is unknown (%s)" % err)
check(served("9.many.test") == ["9.many.test"], "names are served after the reload")
finish()
