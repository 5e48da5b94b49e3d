"""The admin endpoint against the real binary: /healthz and /readyz states (ready, then 503
while draining), /metrics validated by promtool and moving exactly with the traffic driven,
/certs JSON, 400/404/405, and 1,000 scrapes during a load test with no error on either side."""
import http.client
import json
import re
import shutil
import signal
import socket
import subprocess
import threading

from tfcommon import (Backend, check, client_ctx, finish, http_handler, make_certs,
                      start_tlsfront, tls_connect)

certs = make_certs()
backend = Backend(http_handler(b"hi"))
tf, port = start_tlsfront(["--certs", certs, "--backend", backend.addr, "--workers", "2",
                           "--admin", "127.0.0.1:0", "--grace", "10s"])
m = tf.wait_for(r"admin endpoint on 127\.0\.0\.1:(\d+)")
aport = int(m.group(1))


def get(path, method="GET", raw=None):
    if raw is not None:
        s = socket.create_connection(("127.0.0.1", aport), timeout=5)
        s.sendall(raw)
        data = s.recv(65536)
        s.close()
        return int(data.split(b" ")[1]), data
    c = http.client.HTTPConnection("127.0.0.1", aport, timeout=5)
    c.request(method, path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def metric(text, name, labels=""):
    rx = re.compile(r"^%s%s (\S+)$" % (re.escape(name), re.escape(labels)), re.M)
    mm = rx.search(text)
    return float(mm.group(1)) if mm else None


check(get("/healthz")[0] == 200, "/healthz 200 when the loops turn")
check(get("/readyz")[0] == 200, "/readyz 200 with listeners bound and certificates loaded")
check(get("/nope")[0] == 404, "unknown path -> 404")
check(get("/metrics", "POST")[0] == 405, "POST -> 405")
check(get(None, raw=b"GARBAGE\r\n\r\n")[0] == 400, "malformed request -> 400")
st, body = get("/metrics", "HEAD")
check(st == 200 and body == b"", "HEAD /metrics -> 200, no body")

st, body = get("/metrics")
text = body.decode()
if shutil.which("promtool"):
    r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    check(r.returncode == 0, "promtool check metrics accepts /metrics (%s)" % r.stdout.decode()[:200])
else:
    check(False, "promtool installed (scripts/deps.sh installs prometheus)")
before = metric(text, "tlsfront_handshakes_total", '{result="ok"}')

ctx = client_ctx(certs)
N = 7
for i in range(N):
    with tls_connect(port, "example.test", ctx) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
        s.recv(1000)
text = get("/metrics")[1].decode()
after = metric(text, "tlsfront_handshakes_total", '{result="ok"}')
check(after - before == N, "handshake count went up by exactly %d (%s -> %s)" % (N, before, after))

certs_json = json.loads(get("/certs")[1])
names = sorted(n for c in certs_json for n in c["names"])
check("example.test" in names and all("not_after" in c and "issuer" in c for c in certs_json),
      "/certs lists the certificates with issuer and expiry (%d)" % len(certs_json))

# 1,000 scrapes while a load runs; no error on either side.
load_err = []
load_ok = [0]
stop = threading.Event()


def load():
    while not stop.is_set() and load_ok[0] < 3000:
        try:
            with tls_connect(port, "example.test", ctx) as s:
                s.sendall(b"GET /l HTTP/1.1\r\nHost: example.test\r\n\r\n")
                if b"hi path=/l" not in s.recv(1000):
                    load_err.append("bad reply")
                load_ok[0] += 1
        except Exception as e:
            load_err.append(repr(e))


lt = [threading.Thread(target=load) for _ in range(2)]
[t.start() for t in lt]
scrape_err = 0
c = http.client.HTTPConnection("127.0.0.1", aport, timeout=5)
for i in range(1000):
    try:
        c.request("GET", "/metrics")
        r = c.getresponse()
        if r.status != 200 or b"tlsfront_connections_total" not in r.read():
            scrape_err += 1
    except Exception:
        scrape_err += 1
        c = http.client.HTTPConnection("127.0.0.1", aport, timeout=5)
stop.set()
[t.join() for t in lt]
check(scrape_err == 0, "1,000 scrapes during load: no scrape error")
check(not load_err and load_ok[0] > 0, "load during scrapes: %d requests, %d errors" % (load_ok[0], len(load_err)))

# Draining: not ready any more (still healthy) while a connection is open.
live = tls_connect(port, "example.test", ctx)
tf.signal(signal.SIGTERM)
tf.wait_for(r"draining", 5)
check(get("/readyz")[0] == 503, "/readyz 503 while draining")
live.close()
check(tf.wait(15) == 0, "drained and exited 0")
finish()
