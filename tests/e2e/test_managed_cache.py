"""Managed certificates at scale: a --storage directory of 3,000 stored certificates, larger
than --cert-cache 200, is indexed from each name's meta.json at start (no certificate
decoded: the cache's load counter stays 0) and loaded from the storage on first use, like a
--certs directory. A random sample of names is served with the right certificate each, the
cache never holds more than 200, an evicted name is served again, a name stored without a
meta.json is decoded once at start and served, a stored certificate corrupted after start
refuses only its name (internal_error, logged once). A name obtained from pebble while the
store is lazy is served at once; after a restart it is a stub loaded from the storage, and
a renewal of it serves the new certificate. A stub revoked through the admin API before any
handshake asked for it is revoked with the stored certificate's serial.

The store is built here in the storage layout (certs/<name>/cert.pem, key.pem, meta.json)
from certs/mkcerts.sh many (one CA, leaves sharing one key)."""
import calendar
import functools
import json
import os
import random
import re
import shutil
import ssl
import warnings

from cryptography import x509
from clusterctl import admin_call, admin_port, fetch, pebble_root_file
from pebblectl import Pebble
from tfcommon import (Backend, cert_cache_metrics, check, check_cached_sample, finish,
                      http_handler, many_certs, served_sans, start_tlsfront, tls_refusal, tmpdir,
                      wait_until)

N = 3000
CACHE = 200
TOKEN = "s3cret-token-0123456789abcdef"

many = many_certs(N)
storage = tmpdir()
warnings.filterwarnings("ignore", category=DeprecationWarning)  # not_valid_* on new versions


def store(name, pem, meta=True):
    """name's certificate (leaf then key, as mkcerts writes it) in the storage layout."""
    cut = pem.index("-----BEGIN PRIVATE KEY-----")
    d = os.path.join(storage, "certs", name)
    os.makedirs(d)
    with open(os.path.join(d, "cert.pem"), "w") as f:
        f.write(pem[:cut])
    fd = os.open(os.path.join(d, "key.pem"), os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pem[cut:])
    if meta:
        c = x509.load_pem_x509_certificate(pem[:cut].encode())
        doc = {"name": name, "ca_id": "", "kind": "ec",
               "not_before": calendar.timegm(c.not_valid_before.utctimetuple()),
               "not_after": calendar.timegm(c.not_valid_after.utctimetuple())}
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump(doc, f)


for i in range(1, N + 1):
    with open(os.path.join(many, "%d.many.test.pem" % i)) as f:
        pem = f.read()
    store("%d.many.test" % i, pem, meta=i != 1)  # 1.many.test: stored by an older version

tokf = os.path.join(tmpdir(), "token")
with open(tokf, "w") as f:
    f.write(TOKEN + "\n")
os.chmod(tokf, 0o600)
backend = Backend(http_handler(b"hi"))
peb = Pebble()
args = peb.tlsfront_args(storage) + [
    "--allow", "*.renew.test", "--backend", backend.addr, "--workers", "2",
    "--cert-cache", str(CACHE), "--admin", "127.0.0.1:0", "--admin-token-file", tokf]
tf, port = start_tlsfront(args)
peb.start(port)
aport = admin_port(tf)
check(tf.wait_for(r"stored certificates: %d indexed, 0 skipped, 1 of them decoded for want "
                  r"of a usable meta\.json" % N, 60) is not None,
      "start-up indexes the store from meta.json (one name without it decoded once)")
served = functools.partial(served_sans, port,
                           ssl.create_default_context(cafile=os.path.join(many, "ca.crt")))
refused = functools.partial(tls_refusal, served)


def metrics():
    return cert_cache_metrics(aport)


m = metrics()
check(m["tlsfront_cert_cache_loads_total"] == 0 and m["tlsfront_cert_cache_size"] == 0,
      "no stored certificate decoded into the cache at start (%s)" % m)
check(served("1.many.test") == ["1.many.test"], "a name stored without meta.json is served")

# A random sample, more names than the cache holds, from a few clients at once.
rng = random.Random(int(os.environ.get("TF_SEED", "0")) or None)
sample = rng.sample(range(2, N + 1), CACHE + 200)
m = check_cached_sample(served, metrics, ["%d.many.test" % i for i in sample], CACHE, 100)

before = m["tlsfront_cert_cache_loads_total"]
bad = [i for i in sample[:30] if served("%d.many.test" % i) != ["%d.many.test" % i]]
check(not bad, "evicted managed names served again with their certificate (%s)" % bad[:3])
check(metrics()["tlsfront_cert_cache_loads_total"] > before, "evicted names were loaded again")

# A stored certificate corrupted after start: only its name is refused, logged once.
victim = next(i for i in range(2, N + 1) if i not in sample)
with open(os.path.join(storage, "certs", "%d.many.test" % victim, "cert.pem"), "w") as f:
    f.write("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
errs = [refused("%d.many.test" % victim) for _ in range(3)]
check(all(e and "INTERNAL_ERROR" in e.upper() for e in errs),
      "a corrupted stored certificate's name is refused with internal_error (%s)" % errs[0])
pat = r"name=%d\.many\.test stored certificate certs/%d\.many\.test/cert\.pem: " % (victim, victim)
check(tf.wait_for(pat, 5) is not None, "the reason is logged with the storage key")
check(len(re.findall(pat, tf.stderr_text())) == 1, "logged once, not per handshake")
check(wait_until(lambda: metrics()["tlsfront_cert_cache_load_failures_total"] == 1),
      "one load failure counted")
check(served("%d.many.test" % sample[0]) == ["%d.many.test" % sample[0]],
      "other stored names are still served")

# A name obtained while the store is lazy: served at once (its certificate goes straight to
# the cache), stored with a meta.json that the next start indexes.
rootf = pebble_root_file(peb)
first, _ = fetch(rootf, port, "site.renew.test")
check(first > 0, "a name obtained on demand is served")
rev, _ = fetch(rootf, port, "rev.renew.test")
with open(os.path.join(storage, "certs", "site.renew.test", "meta.json")) as f:
    meta = json.load(f)
check(meta.get("kind") == "ec" and meta.get("cert_id") and meta.get("not_after"),
      "its meta.json holds what the index needs (%s)" % sorted(meta))
tf.signal(15)
check(tf.wait(60) == 0, "first instance stopped cleanly")

# Restart: the obtained name is a stub loaded from the storage; a renewal replaces it and
# the new certificate (not the cached old one) is served.
shutil.rmtree(os.path.join(storage, "certs", "%d.many.test" % victim))
tf2, _ = start_tlsfront(args + ["--listen", "127.0.0.1:%d" % port], name="tlsfront-2")
aport = admin_port(tf2)
# N - 1 stored names (the corrupted one is removed) and the two obtained ones.
check(tf2.wait_for(r"stored certificates: %d indexed, 0 skipped, 1 of them decoded" % (N + 1), 60)
      is not None, "second start indexes the store")
check(metrics()["tlsfront_cert_cache_loads_total"] == 0, "nothing decoded at the second start")
check(fetch(rootf, port, "site.renew.test")[0] == first,
      "the obtained name is served from the storage after a restart")
check(metrics()["tlsfront_cert_cache_loads_total"] == 1, "loaded on its first handshake")
st, doc = admin_call(TOKEN, aport, "GET", "/certs/site.renew.test")
check(st == 200 and doc.get("last_used"),
      "a handshake stamps the stub's last use, which renewal reads (%s)" % doc)

st, doc = admin_call(TOKEN, aport, "POST", "/certs/site.renew.test/renew")
check(st == 202, "renewal asked through the admin API (%d)" % st)
check(wait_until(lambda: fetch(rootf, port, "site.renew.test")[0] != first, 60, 0.2),
      "the renewed certificate is served, not the old one loaded before")
check(tf2.wait_for(r"name=site\.renew\.test .*certificate obtained", 10) is not None,
      "the renewal obtained a new certificate")

# Revoking a name no handshake asked for since the start: its certificate is read from the
# storage for the CA.
loads = metrics()["tlsfront_cert_cache_loads_total"]
st, doc = admin_call(TOKEN, aport, "POST", "/certs/rev.renew.test/revoke")
check(st == 200 and doc.get("revoked"), "a stub's certificate revoked (%d %s)"
      % (st, doc))
check(tf2.wait_for(r"(?i)name=rev\.renew\.test serial=0*%x revoked" % rev, 10) is not None,
      "the revoked serial is the stored certificate's")
check(metrics()["tlsfront_cert_cache_loads_total"] == loads, "without loading it into the cache")
finish()
