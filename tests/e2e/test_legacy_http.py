"""mode=http (issue 7) against a real backend that echoes the request heads it received:
X-Forwarded-* on a single request, keep-alive, 10 pipelined requests, HEAD framing, a 50 MB
chunked upload with matching SHA-256, a WebSocket upgrade echoing frames both ways,
X-Forwarded-For from an untrusted client replaced and from a trusted one appended, RFC 7239
Forwarded, Strict-Transport-Security on responses, a 502 page when the backend is down, and
mode=tcp still byte-for-byte next to it."""
import hashlib
import os
import re
import socket

from legacycommon import Reader, RecordingHTTP, ws_accept, ws_frame, ws_read
from tfcommon import (Backend, bound, check, client_ctx, echo_handler, finish, free_port,
                      make_certs, start_tlsfront, step)

certs = make_certs()
ctx = client_ctx(certs)
be = RecordingHTTP()
raw = Backend(echo_handler)
down = free_port()


def mute_handler(c):
    """Reads one request head, then closes without answering."""
    got = b""
    while b"\r\n\r\n" not in got:
        d = c.recv(65536)
        if not d:
            break
        got += d
    c.close()


mute = Backend(mute_handler)
tf, port = start_tlsfront([
    "--certs", certs, "--backend", be.addr + ",mode=http",
    "--route", "x.wild.test=%s" % raw.addr,
    "--route", "www.example.test=127.0.0.1:%d,mode=http" % down,
    "--route", "y.wild.test=%s,mode=http" % mute.addr,
    "--trusted-xff", "127.0.0.2", "--forwarded", "on", "--hsts", "max-age=63072000",
])


def conn(name="example.test", src="127.0.0.1", timeout=60):
    """A TLS connection to tlsfront; every read or write waits at most timeout seconds
    (scaled for sanitizer builds): a bound on waiting, not a speed requirement."""
    s = socket.create_connection(("127.0.0.1", port), timeout=bound(timeout),
                                 source_address=(src, 0))
    t = ctx.wrap_socket(s, server_hostname=name)
    return t, Reader(t)


def fields_of(head):
    out = {}
    for l in head.split(b"\r\n")[1:]:
        if b":" in l:
            k, v = l.split(b":", 1)
            out.setdefault(k.strip().lower().decode(), []).append(v.strip().decode())
    return out


def echoed(body):
    """The request head the backend saw, from its echo."""
    return fields_of(body.split(b"\r\n\r\n", 1)[0])


# Single request: our headers, HSTS on the response.
s, r = conn()
s.sendall(b"GET /one HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-For: 6.6.6.6\r\n"
          b"Forwarded: for=6.6.6.6\r\n\r\n")
st, f, body = r.response()
got = echoed(body)
check(st == 200 and body.startswith(b"GET /one HTTP/1.1\r\n"), "single request answered")
check(got.get("x-forwarded-for") == ["127.0.0.1"],
      "untrusted client: spoofed X-Forwarded-For replaced (%r)" % got.get("x-forwarded-for"))
check(got.get("x-forwarded-proto") == ["https"], "X-Forwarded-Proto: https")
check(got.get("x-forwarded-host") == ["example.test"], "X-Forwarded-Host from Host")
check(got.get("forwarded") == ['for=127.0.0.1;host=example.test;proto=https'] or
      (len(got.get("forwarded", [])) == 1 and "6.6.6.6" not in got["forwarded"][0]
       and "for=127.0.0.1" in got["forwarded"][0]),
      "untrusted client: Forwarded replaced (%r)" % got.get("forwarded"))
check(f.get("strict-transport-security") == ["max-age=63072000"], "HSTS added to the response")

# Keep-alive: three requests on the same connection, each with its own headers.
ok = True
for i in range(3):
    s.sendall(b"GET /ka%d HTTP/1.1\r\nHost: example.test\r\n\r\n" % i)
    st, f, body = r.response()
    ok = ok and st == 200 and body.startswith(b"GET /ka%d " % i) and \
        echoed(body).get("x-forwarded-for") == ["127.0.0.1"]
check(ok, "keep-alive: 3 more requests, each rewritten")

# HEAD: the response has a Content-Length but no body; the next response must still frame.
s.sendall(b"HEAD /h HTTP/1.1\r\nHost: example.test\r\n\r\nGET /after HTTP/1.1\r\nHost: example.test\r\n\r\n")
st1, f1, _ = r.response(head_only=True)
st2, f2, body2 = r.response()
check(st1 == 200 and f1.get("strict-transport-security") == ["max-age=63072000"],
      "HEAD response passed with HSTS")
check(st2 == 200 and body2.startswith(b"GET /after ") and
      f2.get("strict-transport-security") == ["max-age=63072000"],
      "response after a HEAD response framed correctly (HSTS on it too)")
s.close()

# 10 pipelined requests in one write.
s, r = conn()
s.sendall(b"".join(b"GET /p%d HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n" % i
                   for i in range(10)))
res = [r.response() for _ in range(10)]
check(all(x[0] == 200 and x[2].startswith(b"GET /p%d " % i) for i, x in enumerate(res)),
      "10 pipelined requests answered in order")
check(all(echoed(x[2]).get("x-forwarded-for") == ["127.0.0.1"] for x in res),
      "10 pipelined requests each got X-Forwarded-For")
s.close()

# Trusted client (127.0.0.2 is in --trusted-xff): its X-Forwarded-For is appended to.
s, r = conn(src="127.0.0.2")
s.sendall(b"GET /t HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n")
st, f, body = r.response()
got = echoed(body)
check(got.get("x-forwarded-for") == ["203.0.113.7, 127.0.0.2"],
      "trusted client: X-Forwarded-For appended (%r)" % got.get("x-forwarded-for"))
s.close()

# 50 MB chunked upload, streamed, SHA-256 checked by the backend. Each write waits for
# tlsfront and the backend to drain, and the answer comes only once the backend has hashed
# everything: under ASan on a busy 2-core machine that is minutes, hence the wide bound.
s, r = conn(timeout=120)
s.sendall(b"POST /up HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n")
h = hashlib.sha256()
block = os.urandom(1 << 16)
total = 50 * 1024 * 1024
sent = 0
with step("50 MB upload: sending the body"):
    while sent < total:
        piece = block[: min(len(block), total - sent)]
        h.update(piece)
        s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sent += len(piece)
    s.sendall(b"0\r\n\r\n")
with step("50 MB upload: waiting for the backend's answer"):
    st, f, body = r.response()
m = re.search(rb"bodylen=(\d+) sha256=([0-9a-f]+)", body)
check(st == 200 and m and int(m.group(1)) == total and m.group(2).decode() == h.hexdigest(),
      "50 MB chunked upload: backend got the same SHA-256")
s.close()

# WebSocket: 101 then frames both ways through the tunnel.
s, r = conn()
key = b"dGhlIHNhbXBsZSBub25jZQ=="
s.sendall(b"GET /ws HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key)
st, f, _ = r.response()
check(st == 101 and f.get("sec-websocket-accept") == [ws_accept(key).decode()],
      "WebSocket: 101 with the right Sec-WebSocket-Accept")
check("strict-transport-security" not in f, "no HSTS on the 101")
op, data = ws_read(r)
check(op == 1 and data == b"hello from backend", "WebSocket: frame from the backend")
msgs = [b"x" * n for n in (1, 125, 126, 70000)]
ok = True
for m_ in msgs:
    s.sendall(ws_frame(m_, True))
    op, data = ws_read(r)
    ok = ok and op == 1 and data == b"echo:" + m_
check(ok, "WebSocket: 4 frames (1 B .. 70 kB) echoed both ways")
s.sendall(bytes([0x88, 0x80]) + b"\0\0\0\0")
op, _ = ws_read(r)
check(op == 8, "WebSocket: close frame answered")
s.close()

# An Upgrade the backend declines (200, not 101): parsing goes on with the next request.
s, r = conn()
s.sendall(b"GET /u HTTP/1.1\r\nHost: example.test\r\nUpgrade: foo/1\r\nConnection: Upgrade\r\n\r\n"
          b"GET /next HTTP/1.1\r\nHost: example.test\r\n\r\n")
st1, _, b1 = r.response()
st2, _, b2 = r.response()
check(st1 == 200 and b1.startswith(b"GET /u ") and st2 == 200 and b2.startswith(b"GET /next ") and
      echoed(b2).get("x-forwarded-for") == ["127.0.0.1"],
      "declined upgrade: the request after it is parsed and rewritten")
s.close()

# An upgrade the backend closes on without answering: a 502 now, not a client held until
# the idle timeout (5 minutes here; the client gives up after 30 s, scaled, which stays
# below it).
s, r = conn("y.wild.test", timeout=30)
s.sendall(b"GET /ws HTTP/1.1\r\nHost: y.wild.test\r\nUpgrade: websocket\r\n"
          b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key)
try:
    st, _, _ = r.response()
except (EOFError, OSError, ValueError):
    st = None
check(st == 502, "upgrade closed by the backend unanswered: 502 (got %s)" % st)
s.close()

# Backend down in mode=http: a 502 page, not a bare close.
s, r = conn("www.example.test")
s.sendall(b"GET / HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
try:
    st, f, body = r.response()
except (EOFError, OSError):
    st, body = None, b""
check(st == 502 and b"502" in body, "backend down: 502 page (status %r)" % st)
s.close()

# mode=tcp next to it: bytes pass unchanged, nothing added.
s, r = conn("x.wild.test")
msg = b"GET / HTTP/1.1\r\nHost: x.wild.test\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n"
s.sendall(msg)
check(r.exact(len(msg)) == msg, "mode=tcp: request echoed byte for byte, no headers added")
s.close()

check(tf.wait_for(r"requests=10 ", 30, stream="out") is not None,
      "access log: the pipelined connection logged requests=10")
finish()
