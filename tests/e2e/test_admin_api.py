"""The admin API's actions against real pebble (real TLS-ALPN-01 validation): every action
answers 401 without the token and with a wrong one (403 when no --admin-token-file is set),
bad input gets a JSON 400/404/405/413; GET /certs/NAME describes a name; renew gives the name
a new certificate; a failed name is backed off, unpaused, then issued; DELETE forgets a name
(memory and storage) and the next handshake orders it again, through the cached --ask answer
until /ask-cache/purge drops it; revoke through the API, through `tlsfront revoke` with the
account key and with the certificate's key: pebble reports each certificate revoked and the
next handshake gets a new one. Bad token files stop the start with exit 2."""
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import urllib.request

from clusterctl import ask_yes, fetch, pebble_root_file
from pebblectl import Pebble
from tfcommon import (BIN, Backend, bound, check, finish, http_handler, read_to_eof,
                      start_tlsfront, tmpdir, wait_until)

TOKEN = "s3cret-token-0123456789abcdef"
ask_url, asked = ask_yes()

work = tmpdir()
tokf = os.path.join(work, "token")
with open(tokf, "w") as f:
    f.write(TOKEN + "\n")
os.chmod(tokf, 0o600)

backend = Backend(http_handler(b"hi"))
storage = tmpdir()
peb = Pebble()
base = ["--allow", "*.api.test", "--ask", ask_url, "--backend", backend.addr, "--workers", "2",
        "--admin", "127.0.0.1:0", "--backoff-base", "1h"]
tf, port = start_tlsfront(peb.tlsfront_args(storage) + base + ["--admin-token-file", tokf])
peb.start(port)
rootf = pebble_root_file(peb)


def admin_port(proc):
    return int(proc.wait_for(r"admin endpoint on 127\.0\.0\.1:(\d+)").group(1))


aport = admin_port(tf)


def call(method, path, body=None, token=TOKEN, raw_headers=None):
    """One request: (status, headers dict, parsed JSON or text)."""
    c = http.client.HTTPConnection("127.0.0.1", aport, timeout=bound(60))
    h = dict(raw_headers or {})
    if token is not None:
        h["Authorization"] = "Bearer " + token
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = text
    return r.status, dict(r.getheaders()), doc


def status_by_serial(serial):
    """pebble's management view of a certificate: "Valid" or "Revoked"."""
    ctx = ssl.create_default_context(cafile=peb.ca_file)
    url = "https://127.0.0.1:%d/cert-status-by-serial/%x" % (peb.mgmt, serial)
    with urllib.request.urlopen(url, context=ctx, timeout=bound(10)) as r:
        return json.loads(r.read())["Status"]


def serial_of(name, p=None):
    return fetch(rootf, p or port, name)[0]


# --- issue a first name; reads are open, actions need the token ---------------------------
s1 = serial_of("a.api.test")
check(len(asked) == 1, "first name issued after one --ask request")
st, _, doc = call("GET", "/certs/a.api.test", token=None)
check(st == 200 and doc["serial"].lower().lstrip("0") == "%x" % s1 and doc["managed"] and
      doc["not_after"] > 0 and doc["ca"] == peb.directory and doc["last_error"] is None and
      "ari_window" in doc and doc["last_used"],
      "GET /certs/NAME without a token: CA, serial, not-after, ARI window, last use (%s)" % doc)

actions = [("POST", "/certs/a.api.test/renew"), ("DELETE", "/certs/a.api.test"),
           ("POST", "/certs/a.api.test/unpause"), ("POST", "/certs/a.api.test/revoke"),
           ("POST", "/ask-cache/purge")]
for m, p in actions:
    st, hd, doc = call(m, p, token=None)
    check(st == 401 and "Bearer" in hd.get("WWW-Authenticate", "") and "error" in doc,
          "%s %s without a token: 401 with a JSON error" % (m, p))
    st, _, doc = call(m, p, token="wrong-token-0123456789")
    check(st == 401 and "error" in doc, "%s %s with a wrong token: 401" % (m, p))
st, _, _ = call("POST", "/certs/a.api.test/renew", token=None,
                raw_headers={"Authorization": "Basic " + TOKEN})
check(st == 401, "another scheme than Bearer: 401")
check(serial_of("a.api.test") == s1, "refused actions changed nothing")

# --- bad input ----------------------------------------------------------------------------
st, hd, doc = call("GET", "/certs/a.api.test/renew")
check(st == 405 and hd.get("Allow") == "POST" and "error" in doc, "GET on an action: 405, Allow: POST")
st, hd, _ = call("PUT", "/certs/a.api.test")
check(st == 405 and "DELETE" in hd.get("Allow", ""), "PUT /certs/NAME: 405 naming GET, HEAD, DELETE")
for bad in ["/certs/bad_name!/renew", "/certs/-x.api.test/renew", "/certs/a..b/renew",
            "/certs/%2e%2e/renew", "/certs/" + "a" * 64 + ".test/renew"]:
    st, _, doc = call("POST", bad)
    check(st == 400 and "error" in doc, "bad name %s: 400 JSON" % bad[:40])
for body in [b"not json", b"[]", {"reason": "bogus"}, {"reason": 1}, {"other": "x"}]:
    st, _, doc = call("POST", "/certs/a.api.test/revoke", body)
    check(st == 400 and "error" in doc, "revoke body %r: 400" % (body,))
for body in [{"name": 5}, {"name": "bad name"}, {"x": 1}, b"{"]:
    st, _, doc = call("POST", "/ask-cache/purge", body)
    check(st == 400 and "error" in doc, "purge body %r: 400" % (body,))
st, _, doc = call("POST", "/ask-cache/purge", b"x" * 5000)
check(st == 413 and "error" in doc, "a body over 4 KiB: 413")
st, _, doc = call("POST", "/certs/unknown.api.test/renew")
check(st == 404 and "error" in doc, "renew of a name not managed: 404")
st, _, doc = call("GET", "/certs/unknown.api.test")
check(st == 404, "GET of a name nobody knows: 404")
st, _, doc = call("POST", "/certs/unknown.api.test/revoke")
check(st == 404, "revoke of a name not managed: 404")
check(serial_of("a.api.test") == s1 and peb.orders() == 1, "bad input changed nothing")

# Pipelined: an action answered later (a storage lookup) holds the requests behind it, which
# are answered after it, in order; Connection: close after an action ends the connection.
auth = "Authorization: Bearer %s\r\n" % TOKEN
raw = socket.create_connection(("127.0.0.1", aport), timeout=bound(30))
raw.sendall(("DELETE /certs/unknown.api.test HTTP/1.1\r\nHost: x\r\n%s\r\n"
             "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
             "POST /certs/unknown.api.test/unpause HTTP/1.1\r\nHost: x\r\n%s"
             "Connection: close\r\n\r\n" % (auth, auth)).encode())
got = read_to_eof(raw)
raw.close()
codes = [int(x) for x in re.findall(rb"HTTP/1.1 (\d+)", got)]
check(codes == [404, 200, 200] and b"ok\n" in got and b"backoff_cleared" in got,
      "pipelined action, read, action with Connection: close: %s" % codes)

# --- renew --------------------------------------------------------------------------------
st, _, doc = call("POST", "/certs/a.api.test/renew")
check(st == 202 and doc.get("status") == "renewing", "renew: 202 %s" % doc)
check(wait_until(lambda: call("GET", "/certs/a.api.test")[2]["serial"].lower().lstrip("0")
                 != "%x" % s1, 60), "renewed: the detail shows a new serial")
s2 = serial_of("a.api.test")
check(s2 != s1 and peb.orders() == 2, "renew: the next handshake gets the new certificate")
check("renewing now (operator" in tf.stderr_text() and "/renew from 127.0.0.1:" in tf.stderr_text(),
      "the action is logged with who asked")

# --- a failed name: backed off, then unpaused ---------------------------------------------
peb.set_a("broken.api.test", "127.0.0.9")
try:
    serial_of("broken.api.test", None)
    check(False, "validation against a wrong address fails")
except (ssl.SSLError, OSError):
    pass
st, _, doc = call("GET", "/certs/broken.api.test")
check(st == 200 and doc["last_error"] and doc["backoff_until"] and not doc["managed"],
      "the failed name's detail: last error and backoff (%s)" % doc)
before = peb.orders()
try:
    serial_of("broken.api.test")
    check(False, "backed-off name refused")
except (ssl.SSLError, OSError):
    check(peb.orders() == before, "backed off: refused with no order")
clear = urllib.request.Request("http://127.0.0.1:%d/clear-a" % peb.dns_mgmt,
                               data=json.dumps({"host": "broken.api.test"}).encode())
urllib.request.urlopen(clear, timeout=bound(10)).read()  # back to challtestsrv's default
st, _, doc = call("POST", "/certs/broken.api.test/unpause")
check(st == 200 and doc["backoff_cleared"] is True, "unpause: backoff cleared (%s)" % doc)
check(serial_of("broken.api.test") > 0 and peb.orders() == before + 1,
      "after unpause the name is issued at the next handshake")
st, _, doc = call("GET", "/certs/broken.api.test")
check(doc["managed"] and doc["last_error"] is None and doc["backoff_until"] is None,
      "issued: no error, no backoff")

# --- forget, the ask cache, purge ---------------------------------------------------------
n_ask = len(asked)
st, _, doc = call("DELETE", "/certs/a.api.test")
check(st == 200 and doc["forgotten_memory"] and doc["forgotten_storage"], "DELETE: %s" % doc)
check(not any(os.path.exists(os.path.join(storage, "certs", "a.api.test", f))
               for f in ("cert.pem", "key.pem", "meta.json")),
      "DELETE removed the stored certificate, key and metadata")
st, _, _ = call("DELETE", "/certs/a.api.test")
check(st == 404, "DELETE again: 404")
s3 = serial_of("a.api.test")
check(s3 not in (s1, s2) and len(asked) == n_ask,
      "after DELETE the next handshake orders anew, through the cached --ask answer")
call("DELETE", "/certs/a.api.test")
st, _, doc = call("POST", "/ask-cache/purge", {"name": "a.api.test"})
check(st == 200 and doc["purged"] == 1, "purge one name: %s" % doc)
s4 = serial_of("a.api.test")
check(len(asked) == n_ask + 1 and s4 != s3, "after the purge the endpoint is asked again")
st, _, doc = call("POST", "/ask-cache/purge")
check(st == 200 and doc["purged"] >= 2, "purge all: %s" % doc)

# --- revoke through the API ---------------------------------------------------------------
check(status_by_serial(s4) == "Valid", "pebble: the certificate is valid before")
st, _, doc = call("POST", "/certs/a.api.test/revoke", {"reason": "superseded"})
check(st == 200 and doc.get("revoked") and doc["forgotten_storage"], "admin revoke: %s" % doc)
check(status_by_serial(s4) == "Revoked", "pebble reports the certificate revoked")
s5 = serial_of("a.api.test")
check(s5 != s4, "the next handshake gets a new certificate")

# --- SIGHUP re-reads the token file ------------------------------------------------------
NEW = "rotated-token-9876543210fedcba"
with open(tokf, "w") as f:
    f.write(NEW + "\n")
tf.signal(1)
check(tf.wait_for(r"reloaded:", 30) is not None, "reloaded")
st, _, _ = call("POST", "/ask-cache/purge")
check(st == 401, "after SIGHUP the old token is refused")
st, _, _ = call("POST", "/ask-cache/purge", token=NEW)
check(st == 200, "after SIGHUP the new token works")
with open(tokf, "w") as f:
    f.write("bad\n")
tf.signal(1)
check(tf.wait_for(r"reload failed, keeping the running config: --admin-token-file", 30) is not None,
      "a token file gone bad fails the reload")
st, _, _ = call("POST", "/ask-cache/purge", token=NEW)
check(st == 200, "the running token stays after a failed reload")
with open(tokf, "w") as f:
    f.write(NEW + "\n")

# --- revoke from the command line (server stopped), account key ---------------------------
tf.signal(15)
check(tf.wait(30) == 0, "stopped")
acme = ["--storage", storage, "--acme-directory", peb.directory, "--acme-ca", peb.ca_file]
r = subprocess.run([BIN, "revoke"] + acme + ["a.api.test", "--reason", "cessationOfOperation"],
                   capture_output=True, text=True, timeout=bound(120))
check(r.returncode == 0 and "account key" in r.stdout, "tlsfront revoke: %s %s" % (r.stdout, r.stderr[-400:]))
check(status_by_serial(s5) == "Revoked", "pebble reports the CLI-revoked certificate revoked")
check(not os.path.exists(os.path.join(storage, "certs", "a.api.test", "cert.pem")),
      "the CLI removed it from the storage")

# Restart without a token file: actions are off (403); the handshake gets a new certificate.
tf2, _ = start_tlsfront(peb.tlsfront_args(storage) + base + ["--listen", "127.0.0.1:%d" % port],
                        name="tlsfront-notoken")
aport = admin_port(tf2)
st, _, doc = call("POST", "/certs/a.api.test/renew")
check(st == 403 and "disabled" in doc["error"], "no --admin-token-file: actions 403 (%s)" % doc)
s6 = serial_of("a.api.test")
check(s6 != s5, "after the CLI revoke the next handshake gets a new certificate")
tf2.signal(15)
check(tf2.wait(30) == 0, "stopped again")

# --- revoke with the certificate's key (a storage without the account) --------------------
alone = tmpdir()
shutil.copytree(os.path.join(storage, "certs", "a.api.test"), os.path.join(alone, "certs", "a.api.test"))
r = subprocess.run([BIN, "revoke", "--storage", alone, "--acme-directory", peb.directory,
                    "--acme-ca", peb.ca_file, "--reason=keyCompromise", "a.api.test"],
                   capture_output=True, text=True, timeout=bound(120))
check(r.returncode == 0 and "certificate's key" in r.stdout,
      "revoke signed with the certificate's key: %s %s" % (r.stdout, r.stderr[-400:]))
check(status_by_serial(s6) == "Revoked", "pebble reports the key-signed revocation")

# --- bad token files and usage ------------------------------------------------------------
short = os.path.join(work, "short")
with open(short, "w") as f:
    f.write("abc\n")
for extra, what in [(["--admin-token-file", os.path.join(work, "missing")], "missing"),
                    (["--admin-token-file", short], "shorter than 16"),
                    (["--admin-token-reads", "on"], "needs --admin-token-file")]:
    r = subprocess.run([BIN, "--listen", "127.0.0.1:0", "--backend", backend.addr, "--admin",
                        "127.0.0.1:0"] + extra, capture_output=True, text=True, timeout=bound(30))
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    check(r.returncode == 2 and any(what in l for l in lines),
          "bad token option (%s): exit 2 with one line (%s)" % (what, lines[-1:] if lines else ""))
    r = subprocess.run([BIN, "--check", "--backend", backend.addr, "--admin", "127.0.0.1:0"]
                       + extra, capture_output=True, text=True, timeout=bound(30))
    check(r.returncode == 2 and r.stderr.count("\n") == 1 and what in r.stderr,
          "--check names the bad token option (%s): %s" % (what, r.stderr.strip()))
r = subprocess.run([BIN, "--check", "--backend", backend.addr, "--admin", "127.0.0.1:0",
                    "--admin-token-file", tokf], capture_output=True, text=True, timeout=bound(30))
check(r.returncode == 0, "--check accepts a good token file (%s)" % r.stderr.strip())
r = subprocess.run([BIN, "revoke", "--storage", storage, "a.api.test", "--reason", "bogus"],
                   capture_output=True, text=True, timeout=bound(30))
check(r.returncode == 2 and "--reason" in r.stderr, "revoke with a bad reason: exit 2")
finish()
