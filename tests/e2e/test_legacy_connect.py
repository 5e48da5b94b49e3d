"""CONNECT on mode=http routes against a real catch-all backend that answers every request
with 200: without ",connect=on" tlsfront answers 405 itself and the backend never sees the
CONNECT nor anything pipelined after it (a 2xx would have turned the connection into a
tunnel that skips X-Forwarded-* rewriting and the smuggling checks); requests before it on
the same connection are still served. With ",connect=on" the 2xx opens the tunnel as
before."""
import socket

from legacycommon import Reader, RecordingHTTP
from tfcommon import check, client_ctx, finish, make_certs, start_tlsfront

certs = make_certs()
ctx = client_ctx(certs)
plain = RecordingHTTP()
tunnel = RecordingHTTP()
tf, port = start_tlsfront([
    "--certs", certs, "--backend", plain.addr + ",mode=http",
    "--route", "x.wild.test=%s,mode=http,connect=on" % tunnel.addr,
])


def conn(name):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    t = ctx.wrap_socket(s, server_hostname=name)
    return t, Reader(t)


def response(r):
    try:
        return r.response()
    except (EOFError, OSError, ValueError):
        return None, {}, b""


SPOOF = b"GET /after HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n"

# A keep-alive request, then CONNECT with a spoofing request pipelined behind it.
s, r = conn("example.test")
s.sendall(b"GET /first HTTP/1.1\r\nHost: example.test\r\n\r\n"
          b"CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n\r\n" + SPOOF)
st1, _, body1 = response(r)
st2, f2, _ = response(r)
rest = r.rest()
s.close()
check(st1 == 200 and body1.startswith(b"GET /first HTTP/1.1\r\n"),
      "the request before CONNECT is served (got %s)" % st1)
check(st2 == 405, "CONNECT without connect=on: 405 from tlsfront (got %s)" % st2)
check(f2.get("connection") == ["close"] and rest == b"",
      "the connection closes after the 405 (rest %r)" % rest[:80])
check(not plain.saw(b"CONNECT"), "the backend never saw the CONNECT request")
check(not plain.saw(b"6.6.6.6") and not plain.saw(b"/after"),
      "nothing pipelined after CONNECT reached the backend")
check(tf.wait_for(r"access .*sni=example\.test .*requests=1 end=http_405", 10, stream="out") is not None,
      "access log: end=http_405")

# CONNECT alone on a fresh connection: same answer, nothing forwarded.
s, r = conn("example.test")
s.sendall(b"CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n\r\n")
st, _, _ = response(r)
s.close()
check(st == 405 and not plain.saw(b"CONNECT"), "a lone CONNECT: 405 (got %s)" % st)

# connect=on: the backend's 2xx opens a byte tunnel, bytes after it pass verbatim.
s, r = conn("x.wild.test")
s.sendall(b"CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n\r\n")
st, _, _ = response(r)
check(st == 200 and tunnel.saw(b"CONNECT internal.example:22 HTTP/1.1\r\n"),
      "connect=on: CONNECT forwarded and answered 200 (got %s)" % st)
s.sendall(SPOOF)
st, _, body = response(r)
s.close()
check(st == 200 and b"X-Forwarded-For: 6.6.6.6\r\n" in body
      and b"X-Forwarded-Proto" not in body,
      "connect=on: bytes after the 2xx are a tunnel, passed unchanged (got %s)" % st)
finish()
