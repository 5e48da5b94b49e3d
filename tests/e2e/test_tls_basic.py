"""Core TLS behaviour with real clients: certificate choice by SNI (exact, wildcard,
multi-SAN, ECDSA vs RSA), TLS 1.2 and 1.3, ALPN, unknown names, the default certificate,
session resumption, curl and openssl s_client through the proxy to a real backend."""
import os
import signal
import socket
import ssl
import subprocess

from tfcommon import (Backend, check, client_ctx, finish, http_handler, make_certs,
                      start_tlsfront, tls_connect)

certs = make_certs()
ca = os.path.join(certs, "ca.crt")
backend = Backend(http_handler(b"hello"))
other = Backend(http_handler(b"other-backend"))
tf, port = start_tlsfront(["--certs", certs, "--backend", backend.addr,
                           "--route", "rsa.test=%s" % other.addr, "--workers", "2"])


def peer_names(name, **kw):
    ctx = client_ctx(certs, **kw)
    with tls_connect(port, name, ctx) as s:
        cert = s.getpeercert()
        sans = sorted(v for k, v in cert.get("subjectAltName", ()) if k == "DNS")
        return sans, s.version(), s.selected_alpn_protocol()


def get(name, path="/", **kw):
    ctx = client_ctx(certs, **kw)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with tls_connect(port, name, ctx) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path.encode(), name.encode()))
        data = b""
        while b"\n" not in data.split(b"\r\n\r\n", 1)[-1] or b"\r\n\r\n" not in data:
            d = s.recv(4096)
            if not d:
                break
            data += d
        return data, s.selected_alpn_protocol()


# Certificate by SNI: exact, second SAN, wildcard, multi-SAN.
sans, ver, _ = peer_names("example.test")
check("example.test" in sans, "exact name gets its certificate (%s)" % sans)
sans, _, _ = peer_names("www.example.test")
check("www.example.test" in sans, "second SAN of the same certificate")
sans, _, _ = peer_names("foo.wild.test")
check("*.wild.test" in sans, "wildcard covers one label")
sans, _, _ = peer_names("b.multi.test")
check("b.multi.test" in sans, "multi-SAN certificate")

# A wildcard covers exactly one label: a.b.wild.test is unknown -> unrecognized_name.
try:
    peer_names("a.b.wild.test")
    check(False, "two labels under a wildcard refused")
except ssl.SSLError as e:
    check("UNRECOGNIZED_NAME" in str(e).upper(), "two labels under a wildcard refused (%s)" % e)

try:
    peer_names("nobody.test")
    check(False, "unknown name refused")
except ssl.SSLError as e:
    check("UNRECOGNIZED_NAME" in str(e).upper(), "unknown name refused with unrecognized_name")

# TLS versions.
_, ver, _ = peer_names("example.test", tls_max=ssl.TLSVersion.TLSv1_2)
check(ver == "TLSv1.2", "TLS 1.2 negotiated when the client caps at 1.2 (%s)" % ver)
_, ver, _ = peer_names("example.test", tls_min=ssl.TLSVersion.TLSv1_3)
check(ver == "TLSv1.3", "TLS 1.3 negotiated (%s)" % ver)

# Through to the backend, and ALPN (default http/1.1; h2 not advertised for a plain backend).
data, alpn = get("example.test", "/x")
check(b"hello path=/x" in data, "request reaches the default backend")
check(alpn == "http/1.1", "ALPN http/1.1 selected (%s)" % alpn)
data, _ = get("rsa.test", "/y")
check(b"other-backend path=/y" in data, "route by SNI picks the routed backend")


def s_client(name, extra=()):
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", name, "-CAfile", ca, "-brief"] + list(extra),
                       input=b"", capture_output=True, timeout=20)
    return (r.stdout + r.stderr).decode("utf-8", "replace")


# ECDSA vs RSA for a name with both.
out = s_client("dual.test")
check("ECDSA" in out or "ecdsa" in out, "dual.test: ECDSA served to a client that supports it")
out = s_client("dual.test", ["-tls1_2", "-sigalgs", "RSA-PSS+SHA256:RSA+SHA256",
                             "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"])
check("RSA" in out and "Verification: OK" in out,
      "dual.test: RSA served to an RSA-only client")
out = s_client("rsa.test")
check("Verification: OK" in out and "RSA" in out, "RSA-only certificate served (s_client)")
# HelloRetryRequest: the first key share (P-521) is not offered by the server, so the
# handshake goes through a second ClientHello after the switch to the certificate's context.
out = s_client("example.test", ["-tls1_3", "-groups", "P-521:X25519", "-alpn", "http/1.1"])
check("Verification: OK" in out and "Server Temp Key: X25519" in out,
      "HelloRetryRequest to X25519 completes with the name's certificate")

# curl through the proxy, TLS 1.2 and 1.3.
for flags, label in ((["--tlsv1.3"], "1.3"), (["--tlsv1.2", "--tls-max", "1.2"], "1.2")):
    r = subprocess.run(["curl", "-sS", "--cacert", ca, "--resolve",
                        "example.test:%d:127.0.0.1" % port] + flags +
                       ["https://example.test:%d/curl" % port], capture_output=True, timeout=20)
    check(r.returncode == 0 and b"hello path=/curl" in r.stdout,
          "curl TLS %s through the proxy (%s)" % (label, r.stderr.decode()[:200]))

# Session resumption with tickets (TLS 1.2 and 1.3).
for ver in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
    ctx = client_ctx(certs, tls_max=ver, tls_min=ver)
    with tls_connect(port, "example.test", ctx) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
        s.recv(4096)
        sess = s.session
    raw = socket.create_connection(("127.0.0.1", port))
    with ctx.wrap_socket(raw, server_hostname="example.test", session=sess) as s2:
        s2.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
        s2.recv(4096)
        check(s2.session_reused, "session resumed with a ticket (%s)" % ver.name)

# No SNI without a default certificate -> refused.
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
try:
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port))) as s:
        check(False, "no SNI refused without --default-cert")
except ssl.SSLError as e:
    check("UNRECOGNIZED_NAME" in str(e).upper(), "no SNI refused without --default-cert")

# With --default-cert, no SNI and unknown names get the default.
tf2, port2 = start_tlsfront(["--certs", certs, "--backend", backend.addr,
                             "--default-cert", "example.test", "--access-log", "off"],
                            name="tlsfront-default")
with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port2))) as s:
    sans = [v for k, v in s.getpeercert().get("subjectAltName", ())]
    check("example.test" in sans, "no SNI gets the default certificate")

# The access log names the SNI, version and end reason.
log = tf.stdout_text()
check("sni=example.test" in log and "tls=TLSv1.3" in log, "access log has sni and tls version")
check("end=unknown_name" in log, "access log records unknown_name refusals")
# --access-log off: the same connections, no line (stdout is complete once it has exited).
tf2.signal(signal.SIGTERM)
check(tf2.wait(60) == 0, "tlsfront-default: SIGTERM exits 0")
check(" access " not in tf2.stdout_text() and tf2.stdout_text().strip() == "",
      "--access-log off: no access line")
finish()
