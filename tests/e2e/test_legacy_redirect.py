"""--redirect-http (issue 7): every request on the plain-HTTP listener gets a 308 to
https://HOST/PATH?QUERY when HOST is a name tlsfront serves (a loaded certificate, or an
--allow pattern), and a 400 otherwise: unknown names, IP literals, CRLF injection, "@",
bad characters, several Host headers or none, and non-origin request targets."""
import socket
import time

from legacycommon import Reader
from tfcommon import bound, check, finish, make_certs, start_tlsfront

certs = make_certs()
tf, port = start_tlsfront(["--certs", certs, "--backend", "127.0.0.1:9",
                           "--redirect-http", "127.0.0.1:0", "--allow", "*.ondemand.test",
                           "--storage", certs + "/storage",
                           "--acme-directory", "https://127.0.0.1:9/dir"])
m = tf.wait_for(r"redirect-http on [^ ]*:(\d+)", 20)
check(m is not None, "redirect listener started")
rport = int(m.group(1))


def req(raw):
    s = socket.create_connection(("127.0.0.1", rport), timeout=bound(10))
    s.sendall(raw)
    r = Reader(s)
    try:
        st, f, _ = r.response()
        rest = r.rest()
    except (EOFError, OSError, ValueError):
        st, f, rest = None, {}, b""
    s.close()
    return st, f, rest


GOOD = [
    (b"/", b"example.test", "https://example.test/"),
    (b"/a/b?x=1&y=%20", b"example.test:80", "https://example.test/a/b?x=1&y=%20"),
    (b"/p", b"WWW.Example.TEST", "https://www.example.test/p"),
    (b"/w", b"x.wild.test", "https://x.wild.test/w"),
    (b"/o?q", b"new.ondemand.test", "https://new.ondemand.test/o?q"),
    (b"//evil.example/x", b"example.test", "https://example.test//evil.example/x"),
]
for target, host, want in GOOD:
    st, f, rest = req(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, host))
    check(st == 308 and f.get("location") == [want] and rest == b"",
          "308 %s %s -> %s (got %s %r)" % (host.decode(), target.decode(), want, st,
                                           f.get("location")))

BAD = [
    ("unknown name", b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"),
    ("wildcard too deep", b"GET / HTTP/1.1\r\nHost: a.b.wild.test\r\n\r\n"),
    ("IPv4 literal", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    ("IPv6 literal", b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"),
    ("CRLF injection in Host", b"GET / HTTP/1.1\r\nHost: example.test\r\nLocation: x\rX: y\r\n\r\n"),
    ("userinfo @", b"GET / HTTP/1.1\r\nHost: evil.example@example.test\r\n\r\n"),
    ("bad characters", b"GET / HTTP/1.1\r\nHost: exa_mple.test/x\r\n\r\n"),
    ("port not digits", b"GET / HTTP/1.1\r\nHost: example.test:8o\r\n\r\n"),
    ("two Host headers", b"GET / HTTP/1.1\r\nHost: example.test\r\nHost: evil.example\r\n\r\n"),
    ("no Host", b"GET / HTTP/1.1\r\n\r\n"),
    ("absolute-form target", b"GET http://evil.example/ HTTP/1.1\r\nHost: example.test\r\n\r\n"),
    ("CRLF in target", b"GET /a\r\nLocation: http://evil.example/ HTTP/1.1\r\nHost: example.test\r\n\r\n"),
    ("not HTTP", b"\x16\x03\x01\x00\x05hello\r\n\r\n"),
]
for what, raw in BAD:
    st, f, _ = req(raw)
    check(st == 400 and "location" not in f, "hostile request (%s) -> 400 (got %s)" % (what, st))

# A header name far longer than the 32-byte field buffer, in pieces (one parser callback
# per read), within the 16 KB head limit: an ordinary request (308), nothing overwritten,
# and the listener still answers the next one.
s = socket.create_connection(("127.0.0.1", rport), timeout=bound(10))
s.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\n")
for _ in range(4):
    try:
        s.sendall(b"X" * 3500)
    except OSError:
        break
    time.sleep(0.05)
try:
    s.sendall(b": v\r\n\r\n")
    st, _, _ = Reader(s).response()
except (EOFError, OSError, ValueError):
    st = None
s.close()
check(st == 308, "14 KB header name in pieces: still a valid request (got %s)" % st)
st, f, _ = req(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
check(st == 308, "redirect listener still answers after a long header name (got %s)" % st)

check(tf.wait_for(r"listener=redirect client=127\.0\.0\.1:\d+ host=example\.test status=308", 5,
                  stream="out") is not None, "redirects are in the access log")
finish()
