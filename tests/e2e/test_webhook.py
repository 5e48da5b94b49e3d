"""Event webhooks against Debian's pebble with real TLS-ALPN-01 validation. Two receivers
(plain http, and https verified through --webhook-ca) check every event's HMAC-SHA256
signature the way docs/operations.md tells operators to: an on-demand issuance gives
certificate_obtained with the name and the served certificate's serial (after a 503 that the
sender retries with the same delivery id); a renewal forced through the admin API (POST
/certs/NAME/renew with the bearer token) gives certificate_renewed with the new certificate's
serial, the one the next handshake gets; a name the --ask endpoint refuses gives
name_denied_by_ask; a failed validation gives certificate_failed with the CA's problem. A
second tlsfront whose receivers are down (connection refused) or never answer still
completes every on-demand handshake, drops what does not fit in --webhook-queue 2 (counted),
counts the refused deliveries as failed once their attempts are spent (logged without the
URL's path and query), and stops on SIGTERM
within --grace although a delivery still hangs."""
import hashlib
import hmac
import http.server
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.request

from clusterctl import fetch, pebble_root_file
from pebblectl import Pebble
from tfcommon import (Backend, bound, check, finish, free_port, http_handler, start_tlsfront,
                      tmpdir, wait_until)

SECRET = b"s3cret-for-the-panel"
ADMIN_TOKEN = "admin-token-0123456789abcdef"


def verify(secret, headers, body, tolerance=300):
    """The receiver's check, as docs/operations.md gives it: HMAC-SHA256 of
    "<X-Tlsfront-Timestamp>.<body>" keyed by the secret, compared in constant time, and a
    timestamp within tolerance seconds of now."""
    ts = headers.get("X-Tlsfront-Timestamp", "")
    sig = headers.get("X-Tlsfront-Signature", "")
    if not ts.isdigit() or not sig.startswith("sha256="):
        return False
    want = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(sig[len("sha256="):], want) and abs(time.time() - int(ts)) <= tolerance


def serve(answer, path, tls_dir=None):
    """A loopback HTTP/1.1 server on a thread: answer(method, path, headers, body) gives the
    status of each request (no body). Returns its URL for path."""

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(answer(self.command, self.path, dict(self.headers), body))
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = reply

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    scheme = "http"
    if tls_dir:
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        c.load_cert_chain(tls_dir + "/hook.crt", tls_dir + "/hook.key")
        srv.socket = c.wrap_socket(srv.socket, server_side=True)
        scheme = "https"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return "%s://127.0.0.1:%d%s" % (scheme, srv.server_address[1], path)


class Receiver:
    """A webhook receiver: records (headers, body) of every POST; answers 503 to the first
    fail_first requests, 204 after."""

    def __init__(self, tls_dir=None, fail_first=0):
        self.got = []
        self.fail_left = fail_first
        self.lock = threading.Lock()
        self.url = serve(self._answer, "/hooks/tlsfront", tls_dir)

    def _answer(self, method, path, headers, body):
        with self.lock:
            self.got.append((headers, body))
            fail = self.fail_left > 0
            self.fail_left -= 1 if fail else 0
        return 503 if fail else 204

    def events(self, kind=None):
        with self.lock:
            out = [(h, b, json.loads(b)) for h, b in self.got]
        return [e for e in out if kind is None or e[2]["event"] == kind]


class Silent:
    """Accepts connections and never reads or answers (a receiver that hangs)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.held = []
        self.url = "http://127.0.0.1:%d/hook" % self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return


# --ask: refuses "denied*", allows the rest.
ask_url = serve(lambda m, path, h, b: 403 if path.split("domain=", 1)[-1].startswith("denied")
                else 200, "/check")

hook_tls = tmpdir()
subprocess.run(["bash", os.path.join(os.environ.get("TF_SRC", "."), "certs", "mkcerts.sh"),
                "leaf", hook_tls, "hook", "localhost,127.0.0.1"], check=True, capture_output=True)
secret_file = os.path.join(tmpdir(), "webhook.secret")
with open(secret_file, "wb") as f:
    f.write(SECRET + b"\n")  # the trailing newline is not part of the key
token_file = os.path.join(tmpdir(), "admin.token")
with open(token_file, "w") as f:
    f.write(ADMIN_TOKEN + "\n")
os.chmod(token_file, 0o600)

backend = Backend(http_handler(b"backend says hi"))


def start(peb, extra):
    args = peb.tlsfront_args(tmpdir()) + [
        "--allow", "*.demo.test", "--ask", ask_url, "--backend", backend.addr,
        "--workers", "2", "--admin", "127.0.0.1:0", "--backoff-base", "30s"] + extra
    tf, port = start_tlsfront(args)
    aport = int(tf.wait_for(r"admin endpoint on 127\.0\.0\.1:(\d+)").group(1))
    peb.start(port)
    return tf, port, aport, pebble_root_file(peb)


def metric(aport, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % aport, timeout=bound(10)) as r:
        m = re.search(r"^%s (\S+)$" % re.escape(name), r.read().decode(), re.M)
    return float(m.group(1)) if m else None


def renew(aport, name):
    """POST /certs/NAME/renew on the admin API with the token: the status."""
    req = urllib.request.Request("http://127.0.0.1:%d/certs/%s/renew" % (aport, name),
                                 data=b"", method="POST",
                                 headers={"Authorization": "Bearer " + ADMIN_TOKEN})
    with urllib.request.urlopen(req, timeout=bound(10)) as r:
        return r.status


def handshake(port, rootf, name):
    """One verified connection and request: (serial, reply), or (None, the error)."""
    try:
        return fetch(rootf, port, name, timeout=bound(60))
    except (ssl.SSLError, OSError) as e:
        return None, str(e)


# --- one tlsfront, two working receivers ---------------------------------------------------
plain = Receiver(fail_first=1)
tls = Receiver(tls_dir=hook_tls)
peb = Pebble()
tf, port, aport, rootf = start(peb, [
    "--webhook", plain.url, "--webhook", tls.url, "--webhook-secret-file", secret_file,
    "--webhook-ca", hook_tls + "/ca.crt", "--admin-token-file", token_file])

name = "first.demo.test"
serial, data = handshake(port, rootf, name)
check(serial is not None and b"backend says hi" in data,
      "on-demand handshake for %s completes with a pebble certificate" % name)
for rcv, what in ((plain, "http"), (tls, "https (--webhook-ca)")):
    wait_until(lambda: rcv.events("certificate_obtained") and
               (rcv is tls or len(rcv.events()) >= 2), timeout=30)
    ev = rcv.events("certificate_obtained")
    check(len(ev) >= 1 and ev[-1][2]["name"] == name and
          int(ev[-1][2]["serial"], 16) == serial and ev[-1][2]["ca"] == peb.directory and
          ev[-1][2]["error"] is None and ev[-1][2]["not_after"].endswith("Z"),
          "%s receiver: certificate_obtained with the name, the served serial and the CA (%s)"
          % (what, ev[-1][2] if ev else None))
    check(all(verify(SECRET, h, b) for h, b, j in ev),
          "%s receiver: every delivery's signature and timestamp verify" % what)
    check(all(h.get("X-Tlsfront-Event") == "certificate_obtained" and
              h.get("Content-Type") == "application/json" for h, b, j in ev),
          "%s receiver: X-Tlsfront-Event and Content-Type headers" % what)
ev = plain.events("certificate_obtained")
check(len(ev) == 2 and ev[0][0]["X-Tlsfront-Delivery"] == ev[1][0]["X-Tlsfront-Delivery"] and
      ev[0][1] == ev[1][1],
      "a 503 is retried: the same delivery id and body arrive again (%d deliveries)" % len(ev))
check(not verify(b"another secret", ev[0][0], ev[0][1]) and
      not verify(SECRET, ev[0][0], ev[0][1].replace(b"first", b"fir5t")),
      "the check rejects a wrong secret and a changed body")

# A renewal forced through the admin API.
check(renew(aport, name) == 202, "POST /certs/%s/renew with the token: 202" % name)
wait_until(lambda: plain.events("certificate_renewed") and tls.events("certificate_renewed"),
           timeout=60)
new_serial, data = handshake(port, rootf, name)
check(new_serial is not None and new_serial != serial,
      "after the renewal the next handshake gets a new certificate (%s, was %s)"
      % (new_serial, serial))
for rcv, what in ((plain, "http"), (tls, "https (--webhook-ca)")):
    ev = rcv.events("certificate_renewed")
    check(len(ev) == 1 and ev[0][2]["name"] == name and
          int(ev[0][2]["serial"], 16) == new_serial and ev[0][2]["ca"] == peb.directory and
          ev[0][2]["error"] is None and verify(SECRET, ev[0][0], ev[0][1]) and
          ev[0][0].get("X-Tlsfront-Event") == "certificate_renewed",
          "%s receiver: one signed certificate_renewed with the new serial (%s)"
          % (what, ev[0][2] if ev else None))

# A name the ask endpoint refuses.
serial, err = handshake(port, rootf, "denied-x.demo.test")
check(serial is None, "denied name refused (%s)" % err)
wait_until(lambda: plain.events("name_denied_by_ask") and tls.events("name_denied_by_ask"),
           timeout=30)
ev = plain.events("name_denied_by_ask")
check(len(ev) == 1 and ev[0][2]["name"] == "denied-x.demo.test" and ev[0][2]["serial"] is None
      and verify(SECRET, ev[0][0], ev[0][1]),
      "name_denied_by_ask for the refused name, signed (%s)" % (ev[0][2] if ev else None))

# A failed validation: pebble's DNS sends the validator elsewhere.
peb.set_a("broken.demo.test", "127.0.0.9")
serial, err = handshake(port, rootf, "broken.demo.test")
check(serial is None, "broken name: handshake fails (%s)" % err)
wait_until(lambda: plain.events("certificate_failed") and tls.events("certificate_failed"),
           timeout=60)
ev = tls.events("certificate_failed")
check(len(ev) == 1 and ev[0][2]["name"] == "broken.demo.test" and
      "urn:ietf:params:acme:error:" in (ev[0][2]["error"] or "") and
      verify(SECRET, ev[0][0], ev[0][1]),
      "certificate_failed with the CA's problem, signed (%s)" % (ev[0][2] if ev else None))
wait_until(lambda: metric(aport, "tlsfront_webhook_sent_total") == 8, timeout=30)
check(metric(aport, "tlsfront_webhook_sent_total") == 8 and
      metric(aport, "tlsfront_webhook_failed_total") == 0 and
      metric(aport, "tlsfront_webhook_dropped_total") == 0,
      "metrics: 8 deliveries sent (4 events x 2 receivers), none failed or dropped")
tf.signal(15)
check(tf.wait(30) == 0, "first tlsfront: SIGTERM exits 0")
peb.stop()

# --- a second tlsfront whose receivers are down or hang -----------------------------------
silent = Silent()
# Nothing listens there: connection refused. The query holds a token logs must not show.
down_url = "http://127.0.0.1:%d/hook?token=not-for-logs" % free_port()
peb2 = Pebble()
tf2, port2, aport2, rootf2 = start(peb2, [
    "--webhook", down_url, "--webhook", silent.url, "--webhook-queue", "2", "--grace", "2s"])
check(re.search(r"sent unsigned", tf2.stderr_text()) is not None,
      "no --webhook-secret-file: a warning says events go unsigned")
ok = []
for n in ("one.demo.test", "two.demo.test"):
    serial, data = handshake(port2, rootf2, n)
    ok.append(serial is not None and b"backend says hi" in data)
check(all(ok), "both on-demand handshakes complete although one receiver refuses connections "
      "and the other never answers")
check((metric(aport2, "tlsfront_webhook_dropped_total") or 0) >= 1,
      "--webhook-queue 2 full (a hanging delivery holds its place): the second event's "
      "deliveries are dropped and counted (%s)" % metric(aport2, "tlsfront_webhook_dropped_total"))
check(len(silent.held) >= 1, "the hanging receiver got a connection")
wait_until(lambda: (metric(aport2, "tlsfront_webhook_failed_total") or 0) >= 1, timeout=90)
check((metric(aport2, "tlsfront_webhook_failed_total") or 0) >= 1 and
      metric(aport2, "tlsfront_webhook_sent_total") == 0,
      "the refused delivery is counted failed once its attempts are spent; nothing sent")
log = tf2.stderr_text()
check(re.search(r"url=http://127\.0\.0\.1:\d+ not delivered after 5 attempts", log) is not None
      and "not-for-logs" not in log,
      "the given-up delivery is logged with the receiver's origin only, not its path or query")
serial, data = handshake(port2, rootf2, "one.demo.test")
check(serial is not None, "the issued name is still served")
tf2.signal(15)
rc = tf2.wait(30)
check(rc == 0, "SIGTERM with a delivery still hanging: exits 0 within --grace, not after the "
      "delivery's attempts (rc=%s)" % rc)
check(re.search(r"delivering \d+ held event", tf2.stderr_text()) is not None,
      "the held deliveries were given the rest of the grace period")
finish()
