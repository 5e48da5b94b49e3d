"""On-demand TLS against Debian's pebble with real TLS-ALPN-01 validation (no ALWAYS_VALID):
first connection for an allowed name gets a pebble-issued certificate and the backend's
reply in one handshake; 20 concurrent first connections make one order; refusals (not
allowed, invalid SNI, ask deny, ask timeout, 1,000 random names) cost zero orders; --allow
and --ask combine with AND (a name outside the patterns is refused without asking even
though the endpoint would say yes), --allow alone and --ask alone issue on their own; a
restart serves the stored certificate with no new order; acme-tls/1 without a pending challenge is
refused; the challenge certificate captured during a real validation is checked with an
independent parser; a failed validation backs the name off with the CA's problem logged."""
import base64
import hashlib
import json
import os
import random
import re
import socket
import ssl
import string
import subprocess
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ObjectIdentifier

from pebblectl import Pebble
from tfcommon import (Backend, ask_server, bound, check, finish, http_handler, start_tlsfront,
                      tmpdir, wait_until)

ACME_ID = ObjectIdentifier("1.3.6.1.5.5.7.1.31")

# An --ask endpoint: hangs on "slow-*", denies "denied*", allows the rest; records requests.
asked = []


def ask(name):
    asked.append(name)
    if name.startswith("slow-"):
        time.sleep(3)
    return 403 if name.startswith("denied") else 200


ask_url = ask_server(ask)

backend = Backend(http_handler(b"backend says hi"))
storage = tmpdir()
peb = Pebble()
args = peb.tlsfront_args(storage) + [
    "--allow", "*.demo.test", "--ask", ask_url, "--ask-timeout", "1s",
    "--backend", backend.addr, "--workers", "2", "--log-level", "debug",
    "--backoff-base", "30s"]
tf, port = start_tlsfront(args)
peb.start(port)
root = peb.root_pem()
rootf = os.path.join(tmpdir(), "root.pem")
with open(rootf, "w") as f:
    f.write(root)


def ctx():
    c = ssl.create_default_context(cafile=rootf)
    c.set_alpn_protocols(["http/1.1"])
    return c


def fetch(name, path="/", timeout=30):
    """One connection: handshake (verified against pebble's root) + one request."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=bound(timeout))
    with ctx().wrap_socket(raw, server_hostname=name) as s:
        cert = s.getpeercert()
        s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path.encode(), name.encode()))
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        return cert, data


def refused(name, alpn=None, timeout=10):
    """Returns the alert text if the handshake is refused, else None."""
    c = ssl.create_default_context(cafile=rootf)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    if alpn:
        c.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", port), timeout=bound(timeout))
    try:
        with c.wrap_socket(raw, server_hostname=name) as s:
            return None
    except ssl.SSLError as e:
        return str(e)
    except OSError as e:
        return "closed: %s" % e


def issuer_cn(cert):
    for rdn in cert["issuer"]:
        for k, v in rdn:
            if k == "commonName":
                return v
    return "?"


# acme-tls/1 without a pending challenge: refused, never a normal certificate.
r = refused("nothing-pending.demo.test", alpn=["acme-tls/1"])
check(r is not None and "NO APPLICATION PROTOCOL" in r.upper().replace("_", " "),
      "acme-tls/1 without a pending challenge refused with no_application_protocol (%s)" % r)
check(peb.orders() == 0, "no order for an acme-tls/1 probe")

# A challenge-certificate grabber: while the first order runs, probe acme-tls/1 until a
# pending challenge answers, and keep the certificate for the independent check below.
grab = {}
stop_grab = threading.Event()


def grabber(name):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.set_alpn_protocols(["acme-tls/1"])
    deadline = time.time() + bound(30)
    while not stop_grab.is_set() and time.time() < deadline and "der" not in grab:
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=bound(5))
            with c.wrap_socket(raw, server_hostname=name) as s:
                grab["der"] = s.getpeercert(binary_form=True)
                grab["alpn"] = s.selected_alpn_protocol()
        except (ssl.SSLError, OSError):
            time.sleep(0.001)


first = "first.demo.test"
g = threading.Thread(target=grabber, args=(first,))
g.start()
t0 = time.time()
cert, data = fetch(first, "/hello")
dt = time.time() - t0
stop_grab.set()
g.join()
sans = [v for k, v in cert.get("subjectAltName", ())]
check(first in sans and b"backend says hi path=/hello" in data,
      "first connection for an allowed name: one handshake, certificate for it, backend's reply "
      "(%.2fs, issuer %s)" % (dt, issuer_cn(cert)))
check("pebble" in issuer_cn(cert).lower(), "certificate issued by pebble (verified against its root)")
check(first in asked, "pattern match + ask yes: the endpoint was asked and the name issued")
check(peb.orders() == 1, "exactly one order so far (%d)" % peb.orders())

# The challenge certificate, checked by an independent parser (python3-cryptography).
if check("der" in grab, "challenge certificate captured during the real validation"):
    c = x509.load_der_x509_certificate(grab["der"])
    ext = c.extensions.get_extension_for_oid(ACME_ID)
    val = ext.value.value
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = san.get_values_for_type(x509.DNSName)
    check(ext.critical, "challenge cert: acmeIdentifier extension is critical")
    check(len(val) == 34 and val[:2] == b"\x04\x20", "challenge cert: value is a DER OCTET STRING of 32 bytes")
    check(names == [first] and len(list(san)) == 1, "challenge cert: exactly one SAN, the name")
    check(grab.get("alpn") == "acme-tls/1", "challenge connection negotiated acme-tls/1")
    # Key authorization = token "." thumbprint(account key): token from tlsfront's debug log,
    # thumbprint recomputed here from the stored account key (RFC 7638).
    m = re.search(r"name=%s challenge published token=([A-Za-z0-9_-]+)" % re.escape(first),
                  tf.stderr_text())
    keyfile = None
    for dp, dn, fn in os.walk(storage):
        if "account.key" in fn:
            keyfile = os.path.join(dp, "account.key")
    if check(m is not None and keyfile is not None, "token logged and account key stored"):
        key = serialization.load_pem_private_key(open(keyfile, "rb").read(), None)
        nums = key.public_key().public_numbers()
        b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
        jwk = '{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}' % (
            b64(nums.x.to_bytes(32, "big")), b64(nums.y.to_bytes(32, "big")))
        thumb = b64(hashlib.sha256(jwk.encode()).digest())
        ka = m.group(1) + "." + thumb
        check(val[2:] == hashlib.sha256(ka.encode()).digest(),
              "challenge cert: value equals SHA-256 of the key authorization")

# 20 concurrent first connections for one fresh name: all succeed, exactly one order.
before = peb.orders()
results = []
name = "burst.demo.test"


def one():
    try:
        cert, data = fetch(name, "/b")
        results.append(b"backend says hi path=/b" in data)
    except Exception as e:
        results.append(repr(e))


ts = [threading.Thread(target=one) for _ in range(20)]
[t.start() for t in ts]
[t.join() for t in ts]
check(results.count(True) == 20, "20 concurrent first connections all succeed (%s)" %
      [r for r in results if r is not True][:3])
check(peb.orders() - before == 1, "20 concurrent first connections made exactly one order (%d)"
      % (peb.orders() - before))

# Refusals: fast, zero orders, no ask call for invalid names.
before = peb.orders()
asked.clear()
t0 = time.time()
r = refused("bad_label.demo.test")
check(r and "UNRECOGNIZED NAME" in r.upper().replace("_", " ") and not asked, "invalid SNI refused, no ask call (%s)" % r)
r = refused("denied.demo.test")
check(r and "UNRECOGNIZED NAME" in r.upper().replace("_", " ") and asked == ["denied.demo.test"],
      "pattern match + ask no: refused with unrecognized_name (%s)" % r)
r = refused("ok-tenant.other.test")
check(r and "UNRECOGNIZED NAME" in r.upper().replace("_", " ") and asked == ["denied.demo.test"],
      "no pattern match: refused without asking, though the endpoint would say yes (%s, asked %s)"
      % (r, asked))
t1 = time.time()
r = refused("slow-x.demo.test", timeout=20)
dt = time.time() - t1
check(r and "UNRECOGNIZED NAME" in r.upper().replace("_", " ") and dt < 3,
      "ask timeout -> refused promptly (%.2fs, %s)" % (dt, r))
n_ask = len(asked)
r = refused("denied.demo.test")
check(r and len(asked) == n_ask, "ask answer cached: no second request for a denied name")
check(peb.orders() == before, "refusals made zero orders")

# 1,000 random names outside the patterns (the endpoint would allow them all), while an
# issued name is served: all refused, none asked.
served = []
stop = threading.Event()


def keep_serving():
    while not stop.is_set():
        try:
            _, d = fetch(first, "/during")
            served.append(b"path=/during" in d)
        except Exception:
            served.append(False)


st = threading.Thread(target=keep_serving)
st.start()
flood_refused = 0
for i in range(1000):
    n = "".join(random.choice(string.ascii_lowercase) for _ in range(12)) + ".flood.test"
    r = refused(n)
    flood_refused += bool(r)
stop.set()
st.join()
check(flood_refused == 1000, "1,000 random disallowed names refused (%d)" % flood_refused)
check(len(asked) == n_ask, "1,000 random names outside the patterns: no ask request (%d)"
      % (len(asked) - n_ask))
check(peb.orders() == before, "1,000 random names made zero orders")
check(served and all(served), "an issued name kept being served during the flood (%d ok)" % len(served))

# A validation that fails: point the name elsewhere in pebble's DNS -> order fails with the
# CA's problem in the log, the name is backed off (refused fast, no second order).
peb.set_a("broken.demo.test", "127.0.0.9")
before = peb.orders()
r = refused("broken.demo.test", timeout=60)
check(r is not None and "INTERNAL ERROR" in r.upper().replace("_", " "), "failed validation -> handshake fails with internal_error (%s)" % r)
log = tf.stderr_text()
check(re.search(r"broken\.demo\.test.*(urn:ietf:params:acme:error:\w+)", log) is not None,
      "the CA's problem document is logged for the failed order")
r = refused("broken.demo.test")
check(r is not None and "UNRECOGNIZED NAME" in r.upper().replace("_", " ") and peb.orders() == before + 1,
      "failed name is backed off: refused fast, no new order (%s)" % r)

# Restart: the stored certificate is served, no new order.
before = peb.orders()
tf.signal(15)
check(tf.wait(30) == 0, "SIGTERM exits 0 with orders done")
tf2, port2 = start_tlsfront(peb.tlsfront_args(storage) + [
    "--listen", "127.0.0.1:%d" % port, "--allow", "*.demo.test",
    "--backend", backend.addr], name="tlsfront-restart")
cert, data = fetch(first, "/again")
check(b"path=/again" in data and peb.orders() == before,
      "after a restart the stored certificate is served with no new order")

# --allow alone: a matching name is issued without any ask request; others are refused.
n_ask = len(asked)
cert, data = fetch("denied-but-allowed.demo.test", "/allow-only")
check(b"path=/allow-only" in data and peb.orders() == before + 1 and len(asked) == n_ask,
      "--allow only: a matching name is issued, nobody asked")
r = refused("ok-x.other.test")
check(r and "UNRECOGNIZED NAME" in r.upper().replace("_", " "), "--allow only: other names refused")

# --ask alone: the endpoint decides every name.
tf2.signal(15)
check(tf2.wait(30) == 0, "SIGTERM exits 0")
tf3, port3 = start_tlsfront(peb.tlsfront_args(storage) + [
    "--listen", "127.0.0.1:%d" % port, "--ask", ask_url, "--backend", backend.addr],
    name="tlsfront-ask-only")
before = peb.orders()
cert, data = fetch("ok-tenant.other.test", "/ask-only")
check(b"path=/ask-only" in data and "ok-tenant.other.test" in asked and peb.orders() == before + 1,
      "--ask only: an approved name outside any pattern is issued")
r = refused("denied-x.else.test")
check(r and "UNRECOGNIZED NAME" in r.upper().replace("_", " ") and "denied-x.else.test" in asked,
      "--ask only: a name the endpoint denies is refused")
finish()
