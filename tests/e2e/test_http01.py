"""HTTP-01 on the --redirect-http listener against Debian's pebble with real validation
(no ALWAYS_VALID). pebble's TLS-ALPN-01 port is closed in every case, its HTTP-01 port is
a tlsfront redirect listener:
- --acme-challenges http-01: a fresh name is served on its first connection, one order,
  validated through GET /.well-known/acme-challenge/TOKEN (200 in the access log); an
  unknown or malformed token gets 404, other paths (and other methods on the challenge
  path) are still redirected or refused as before; the admin endpoint counts the answers
  (tlsfront_http01_requests_total found / not_found) and the pending challenges gauge is
  back to 0;
- the default list (tls-alpn-01, then http-01 with --redirect-http): tls-alpn-01 fails, a
  second order validates with http-01, the name is served;
- nodes sharing Redis, pebble's HTTP-01 port on node B: a name first asked on node A is
  served, node B answering A's challenge (announced through the store); then pebble's
  validation connections are parked until a node C that missed the announcement has
  started, and C answers them from the store (an unknown token is looked up there); while
  they are parked, node A's tlsfront_pending_http01_challenges is 1;
- --acme-challenges errors exit 2 with one line naming the option."""
import re
import socket
import subprocess
import threading
import urllib.request

import clusterctl
from clusterctl import Balancer, Redis, storage_key_file
from legacycommon import Reader
from pebblectl import Pebble
from tfcommon import (BIN, Backend, bound, check, finish, free_port, http_handler,
                      start_tlsfront, tmpdir, wait_until)

backend = Backend(http_handler(b"http01 backend"))


def start(peb_args, extra, name):
    """A tlsfront with a redirect listener: (proc, tls port, redirect port)."""
    args = peb_args + ["--allow", "*.h01.test", "--backend", backend.addr, "--workers", "2",
                       "--log-level", "debug", "--redirect-http", "127.0.0.1:0"] + extra
    proc, port = start_tlsfront(args, name=name)
    m = proc.wait_for(r"redirect-http on [^ ]*:(\d+)", 20)
    check(m is not None, "%s: redirect listener started" % name)
    return proc, port, int(m.group(1))


def req(rport, raw):
    """(status, headers, body) of one request on the redirect listener."""
    s = socket.create_connection(("127.0.0.1", rport), timeout=bound(10))
    s.sendall(raw)
    r = Reader(s)
    try:
        st, f, body = r.response()
    except (EOFError, OSError, ValueError):
        st, f, body = None, {}, b""
    s.close()
    return st, f, body


def metric(admin_port, name):
    """The value of one sample on the admin endpoint's /metrics (None when absent)."""
    url = "http://127.0.0.1:%d/metrics" % admin_port
    with urllib.request.urlopen(url, timeout=bound(10)) as r:
        text = r.read().decode()
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


FOUND = 'tlsfront_http01_requests_total{result="found"}'
NOT_FOUND = 'tlsfront_http01_requests_total{result="not_found"}'
PENDING = "tlsfront_pending_http01_challenges"


def served(rootf, port, name, what):
    try:
        _, data = clusterctl.fetch(rootf, port, name)
    except Exception as e:  # noqa: BLE001 - reported by the check
        data = repr(e).encode()
    check(b"http01 backend" in data, "%s: %s served on its first connection (%r)"
          % (what, name, data[:120]))


# --- --acme-challenges http-01 only -------------------------------------------------------
peb = Pebble()
aport = free_port()
tf, port, rport = start(peb.tlsfront_args(tmpdir()), ["--acme-challenges", "http-01",
                                                      "--admin", "127.0.0.1:%d" % aport], "only")
check(metric(aport, FOUND) == 0 and metric(aport, NOT_FOUND) == 0
      and metric(aport, PENDING) == 0, "metrics: no HTTP-01 request answered yet, none pending")
peb.start(tls_port=free_port(), http_port=rport)
rootf = clusterctl.pebble_root_file(peb)
served(rootf, port, "a.h01.test", "http-01 only")
check(peb.orders() == 1, "http-01 only: one order (%d)" % peb.orders())
check(tf.wait_for(r"listener=redirect .*status=200", 10, stream="out") is not None,
      "http-01 only: the validation was answered 200 on the redirect listener")
check("answering tls-alpn-01" not in tf.stderr_text(), "http-01 only: tls-alpn-01 never tried")

P = b"/.well-known/acme-challenge/"
for target in [P + b"LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0", P + b"..", P + b"a/../b",
               P + b"tok?x=1", P, P + b"A" * 200]:
    st, f, body = req(rport, b"GET %s HTTP/1.1\r\nHost: a.h01.test\r\n\r\n" % target)
    check(st == 404 and body == b"not found\n", "GET %r: 404 (%s %r)" % (target[:60], st, body))
st, f, body = req(rport, b"GET /x HTTP/1.1\r\nHost: a.h01.test\r\n\r\n")
check(st == 308 and f.get("location") == ["https://a.h01.test/x"], "other paths redirect (%s)" % st)
st, f, body = req(rport, b"POST %sabc HTTP/1.1\r\nHost: a.h01.test\r\nContent-Length: 0\r\n\r\n" % P)
check(st == 308, "POST on the challenge path: redirected as before (%s)" % st)
st, f, body = req(rport, b"GET %sabc HTTP/1.1\r\nHost: evil.example\r\n\r\n" % P)
check(st == 404, "challenge path with a foreign Host: 404, not 400 (%s)" % st)
st, f, body = req(rport, b"GET /x HTTP/1.1\r\nHost: evil.example\r\n\r\n")
check(st == 400, "other paths for foreign names: still 400 (%s)" % st)
found, not_found = metric(aport, FOUND), metric(aport, NOT_FOUND)
check(found >= 1, "metrics: the validation counted as found (%s)" % found)
check(not_found == 7, "metrics: the seven 404s on the challenge path counted as not_found, "
      "redirects and 400s not (%s)" % not_found)
check(wait_until(lambda: metric(aport, PENDING) == 0, 10),
      "metrics: no HTTP-01 challenge pending once the name is issued")
peb.stop()

# --- fallback: tls-alpn-01 fails, http-01 succeeds ------------------------------------------
peb2 = Pebble()
tf2, port2, rport2 = start(peb2.tlsfront_args(tmpdir()), [], "fallback")
peb2.start(tls_port=free_port(), http_port=rport2)
rootf2 = clusterctl.pebble_root_file(peb2)
served(rootf2, port2, "b.h01.test", "fallback")
check(tf2.wait_for(r"name=b\.h01\.test tls-alpn-01 validation failed .*; trying http-01", 5)
      is not None, "fallback: tls-alpn-01 failed first, then http-01 was tried")
check(peb2.orders() == 2, "fallback: two orders, one per type (%d)" % peb2.orders())
peb2.stop()

# --- cluster: node B answers node A's challenge -----------------------------------------------
redis = Redis()
redis.start()
key = storage_key_file()
peb3 = Pebble()
bal = Balancer()
cl = ["--storage-key", key, "--acme-challenges", "http-01"]
aporta = free_port()
tfa, porta, _ = start(peb3.tlsfront_args(redis.url), cl + ["--admin", "127.0.0.1:%d" % aporta],
                      "nodeA")
tfb, _, rportb = start(peb3.tlsfront_args(redis.url), cl, "nodeB")
bal.backends = [rportb]
peb3.start(tls_port=free_port(), http_port=bal.port)
rootf3 = clusterctl.pebble_root_file(peb3)
served(rootf3, porta, "c.h01.test", "cluster")
check(tfb.wait_for(r"listener=redirect .*status=200", 10, stream="out") is not None,
      "cluster: node B answered node A's challenge")
check(peb3.orders() == 1, "cluster: one order (%d)" % peb3.orders())

# A node that missed the announcement finds the token in the store.
bal.hold = True
late = threading.Thread(target=served, args=(rootf3, porta, "d.h01.test", "late node"))
late.start()
check(wait_until(lambda: bal.held, 30), "late node: pebble's validation is parked")
check(metric(aporta, PENDING) == 1,
      "metrics: node A's challenge is pending while the validation is parked (%s)"
      % metric(aporta, PENDING))
tfc, _, rportc = start(peb3.tlsfront_args(redis.url), cl, "nodeC")
bal.backends = [rportc]
bal.release_held(forward=True)
late.join(bound(60))
check(tfc.wait_for(r"http-01 challenge token=\S+ taken from the shared store", 10) is not None,
      "late node: the unknown token was looked up in the store")
check(tfc.wait_for(r"listener=redirect .*status=200", 10, stream="out") is not None,
      "late node: node C answered the validation")
peb3.stop()
redis.stop()

# --- configuration errors ---------------------------------------------------------------
for extra, want in [(["--acme-challenges", "http-01"], "--acme-challenges: http-01 needs "
                     "--redirect-http"),
                    (["--acme-challenges", "dns-01"], "--acme-challenges: expected "
                     "tls-alpn-01|http-01")]:
    r = subprocess.run([BIN, "--backend", "127.0.0.1:9", "--check"] + extra,
                       capture_output=True, text=True, timeout=bound(30))
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 2 and len(lines) == 1 and want in lines[0],
          "%s: exit 2, one line (%s %r)" % (extra, r.returncode, r.stderr))

finish()
