"""PROXY protocol (issue 7) checked by a real peer, HAProxy from Debian.

Out: HAProxy is the backend with accept-proxy and answers every request with the client
address it received (and the v2 AUTHORITY TLV); tlsfront sends v1 or v2 per route, for IPv4
and IPv6 clients. In: HAProxy in tcp mode in front of a ",proxy" listener with send-proxy and
send-proxy-v2; the original client (127.0.0.2 or ::1) shows in tlsfront's access log and in
the X-Forwarded-For the backend gets. Plus: a PROXY header on a plain listener is garbage,
a bad or late header on a proxy listener closes the connection, --proxy-from is enforced."""
import re
import socket
import ssl
import time

from legacycommon import (Reader, RecordingHTTP, free_port, free_port6, haproxy,
                          listening_ports, wait_port)
from tfcommon import (bound, check, client_ctx, finish, make_certs, start_tlsfront,
                      wait_until)

certs = make_certs()
ctx = client_ctx(certs)

# --- HAProxy as the backend (accept-proxy) ---------------------------------------------
hp_port = free_port()
hap_be = haproxy("""
frontend fe
  mode http
  bind 127.0.0.1:%d accept-proxy
  log-format "hap-got client=%%ci dst=%%fi"
  http-request return status 200 content-type text/plain lf-string "src=%%[src] authority=%%[fc_pp_authority] end\\n"
""" % hp_port, name="haproxy-backend")
check(wait_port(hp_port), "HAProxy backend listening")

app = RecordingHTTP()
tf, _ = start_tlsfront([
    "--listen", "127.0.0.1:0", "--listen", "[::1]:0", "--listen", "127.0.0.1:0,proxy",
    "--certs", certs, "--backend", app.addr + ",mode=http",
    "--route", "example.test=127.0.0.1:%d,proxy=v1" % hp_port,
    "--route", "www.example.test=127.0.0.1:%d,proxy=v2" % hp_port,
    "--route", "a.multi.test=127.0.0.1:%d,proxy=v2,mode=http" % hp_port,
    "--proxy-from", "127.0.0.1", "--handshake-timeout", "2s",
])
p4, p6, pp = listening_ports(tf)[:3]


def ask(name, host, port, source=None):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam)
    s.settimeout(bound(15))
    if source:
        s.bind((source, 0))
    s.connect((host, port))
    t = ctx.wrap_socket(s, server_hostname=name)
    r = Reader(t)
    t.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % name.encode())
    st, f, body = r.response()
    t.close()
    return st, body.decode("utf-8", "replace")


for name, ver in (("example.test", "v1"), ("www.example.test", "v2"), ("a.multi.test", "v2+http")):
    for host, port, want in (("127.0.0.1", p4, "127.0.0.1"), ("::1", p6, "::1")):
        st, body = ask(name, host, port)
        check(st == 200 and ("src=%s " % want) in body,
              "PROXY out %s, %s client: HAProxy saw src=%s (%r)" % (ver, host, want, body.strip()))
        if ver != "v1":
            check(("authority=%s " % name) in body,
                  "PROXY out %s, %s client: AUTHORITY TLV carries the SNI" % (ver, host))
check(hap_be.wait_for(r"hap-got client=::1 ", 10, stream="out") is not None and
      hap_be.wait_for(r"hap-got client=127\.0\.0\.1 ", 10, stream="out") is not None,
      "HAProxy's own log shows the IPv4 and IPv6 client addresses")

# --- HAProxy in front (send-proxy / send-proxy-v2) -------------------------------------
lb4, lb6 = free_port(), free_port6()
hap_lb = haproxy("""
frontend lb4
  mode tcp
  bind 127.0.0.1:%d
  default_backend tf_v1
frontend lb6
  mode tcp
  bind [::1]:%d
  default_backend tf_v2
backend tf_v1
  mode tcp
  server t 127.0.0.1:%d send-proxy
backend tf_v2
  mode tcp
  server t 127.0.0.1:%d send-proxy-v2
""" % (lb4, lb6, pp, pp), name="haproxy-lb")
check(wait_port(lb4) and wait_port(lb6), "HAProxy load balancer listening")


def app_xff(marker):
    for h in app.heads:
        if marker in h:
            m = re.search(rb"\r\nX-Forwarded-For: ([^\r]*)\r\n", h)
            return m.group(1).decode() if m else None
    return None


st, body = ask("rsa.test", "127.0.0.1", lb4, source="127.0.0.2")
check(st == 200 and "GET / HTTP/1.1" in body, "PROXY in v1: request through HAProxy answered")
check(app_xff(b"Host: rsa.test") == "127.0.0.2",
      "PROXY in v1: backend's X-Forwarded-For is the original client 127.0.0.2")
check(tf.wait_for(r"client=127\.0\.0\.2:\d+ proxy_peer=127\.0\.0\.1:\d+ sni=rsa\.test", 10,
                  stream="out") is not None,
      "PROXY in v1: access log has client=127.0.0.2 and the load balancer as proxy_peer")

st, body = ask("dual.test", "::1", lb6)
check(st == 200, "PROXY in v2: request through HAProxy (IPv6 client) answered")
check(app_xff(b"Host: dual.test") == "::1",
      "PROXY in v2: backend's X-Forwarded-For is the original client ::1")
check(tf.wait_for(r"client=\[::1\]:\d+ proxy_peer=127\.0\.0\.1:\d+ sni=dual\.test", 10,
                  stream="out") is not None,
      "PROXY in v2: access log has client=[::1] and the load balancer as proxy_peer")

# --- negative cases ----------------------------------------------------------------------
# A PROXY header on a listener without ",proxy" is garbage: TLS fails, 9.9.9.9 never used.
s = socket.create_connection(("127.0.0.1", p4), timeout=bound(10))
s.sendall(b"PROXY TCP4 9.9.9.9 127.0.0.1 1111 443\r\n")
try:
    ctx.wrap_socket(s, server_hostname="example.test")
    plain_ok = False
except (ssl.SSLError, OSError):
    plain_ok = True
check(plain_ok, "plain listener: a PROXY header makes the TLS handshake fail")
check("9.9.9.9" not in tf.stdout_text(), "plain listener: the header's address is never used")

# A TLS client straight to the ",proxy" listener: not a PROXY header, closed and logged.
s = socket.create_connection(("127.0.0.1", pp), timeout=bound(10))
try:
    ctx.wrap_socket(s, server_hostname="example.test")
    bad_ok = False
except (ssl.SSLError, OSError):
    bad_ok = True
check(bad_ok and tf.wait_for(r"end=proxy_header_invalid", 10, stream="out") is not None,
      "proxy listener: no header -> closed, end=proxy_header_invalid")

# An incomplete header: closed when the handshake timer (2 s) fires.
s = socket.create_connection(("127.0.0.1", pp), timeout=bound(10))
s.sendall(b"PROXY TCP4 1.2.3.4 ")
t0 = time.time()
try:
    got = s.recv(100)
except OSError:
    got = b""
check(got == b"" and time.time() - t0 < 8 and
      tf.wait_for(r"end=proxy_header_timeout", 10, stream="out") is not None,
      "proxy listener: incomplete header -> closed after the timeout, logged")
s.close()

# --proxy-from 127.0.0.1: a "load balancer" at 127.0.0.2 is refused before reading anything.
s = socket.socket()
s.bind(("127.0.0.2", 0))
s.settimeout(bound(10))
s.connect(("127.0.0.1", pp))
s.sendall(b"PROXY TCP4 5.5.5.5 127.0.0.1 1111 443\r\n")
try:
    got = s.recv(100)
except OSError:
    got = b""
check(got == b"" and tf.wait_for(r"client=127\.0\.0\.2:\d+ proxy_peer=- .*end=proxy_source_denied",
                                  10, stream="out") is not None,
      "--proxy-from: other sources are closed (end=proxy_source_denied)")
s.close()
finish()
