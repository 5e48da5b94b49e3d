"""mode=http (issue 7): requests that smuggle or are malformed get 400 (or 431 for header
blocks over the cap) and a closed connection, and the backend never sees them. Each case
runs on its own connection: a valid request first (it must reach the backend and be
answered), then the bad one in a single write with a unique marker that the recording
backend must never receive."""
import socket

from legacycommon import Reader, RecordingHTTP
from tfcommon import bound, check, client_ctx, finish, make_certs, start_tlsfront

certs = make_certs()
ctx = client_ctx(certs)
be = RecordingHTTP()
tf, port = start_tlsfront(["--certs", certs, "--backend", be.addr + ",mode=http"])

H = b"Host: example.test\r\n"
CASES = [
    ("Content-Length and Transfer-Encoding together", 400,
     b"POST /M HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("two different Content-Length", 400,
     b"POST /M HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nxx"),
    ("Content-Length list", 400,
     b"POST /M HTTP/1.1\r\n" + H + b"Content-Length: 1, 2\r\n\r\nxx"),
    ("negative Content-Length", 400,
     b"POST /M HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n"),
    ("Content-Length with junk", 400,
     b"POST /M HTTP/1.1\r\n" + H + b"Content-Length: 1a\r\n\r\nx"),
    ("chunk size not hex", 400,
     b"POST /M HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n"),
    ("chunk size overflow", 400,
     b"POST /M HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nx\r\n"),
    ("chunked not the final coding", 400,
     b"POST /M HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
    ("obs-fold continuation line", 400,
     b"GET /M HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n"),
    ("whitespace before the colon", 400,
     b"GET /M HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n"),
    ("control byte in a header value", 400,
     b"GET /M HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n"),
    ("NUL in a header value", 400,
     b"GET /M HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n"),
    ("bare LF line endings", 400,
     b"GET /M HTTP/1.1\n" + b"Host: example.test\n\n"),
    ("bare CR inside a value", 400,
     b"GET /M HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n"),
    ("empty header name", 400,
     b"GET /M HTTP/1.1\r\n" + H + b": x\r\n\r\n"),
    ("invalid byte in a header name", 400,
     b"GET /M HTTP/1.1\r\n" + H + b"X(A): 1\r\n\r\n"),
    ("space inside the request target", 400,
     b"GET /M x HTTP/1.1\r\n" + H + b"\r\n"),
    ("HTTP/2.0 request line on HTTP/1", 400,
     b"GET /M HTTP/2.0\r\n" + H + b"\r\n"),
    ("invalid method token", 400,
     b"G(T /M HTTP/1.1\r\n" + H + b"\r\n"),
    ("header block over the cap", 431,
     b"GET /M HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 40000 + b"\r\n\r\n"),
    ("too many header lines", 431,
     b"GET /M HTTP/1.1\r\n" + H + b"".join(b"X-%d: 1\r\n" % i for i in range(300)) + b"\r\n"),
]


def run(i, what, want, bad):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=bound(15)),
                        server_hostname="example.test")
    r = Reader(s)
    ok_marker = b"/ok-%d " % i
    s.sendall(b"GET /ok-%d HTTP/1.1\r\nHost: example.test\r\n\r\n" % i)
    st, _, body = r.response()
    first_ok = st == 200 and ok_marker in body
    marker = b"BAD-%d-" % i
    s.sendall(bad.replace(b"/M", b"/" + marker, 1).replace(b"X-A", b"X-" + marker, 1))
    try:
        st, fields, body = r.response()
        tail = r.rest()
    except (EOFError, OSError, ValueError):
        st, fields, tail = None, {}, b""
    s.close()
    check(first_ok and st == want and fields.get("connection") == ["close"] and tail == b""
          and not be.saw(marker),
          "%-48s -> %s, closed, backend never saw it" % (what, st))


for i, (what, want, bad) in enumerate(CASES):
    run(i, what, want, bad)

check(be.saw(b"/ok-0 ") and be.saw(b"/ok-%d " % (len(CASES) - 1)),
      "the valid requests before each bad one reached the backend")
finish()
