"""Session resumption as browsers do it (RFC 8446, C.4): each ticket is offered once, so a
returning client resumes only if every handshake, full or resumed, hands it a fresh ticket.
Chains of resumptions with Python's ssl module, each connection offering the newest ticket it
received and never one it already offered: every connection after the first must resume.
Covered: a name served by its certificate's own SSL_CTX (one ECDSA certificate from the
--certs directory), a name whose certificates are installed on the listener's context (ECDSA
and RSA), the --default-cert for a client without SNI. TLS 1.2 clients may offer a session
again, and do: the same chains resume with the session they hold, and a TLS 1.2 ticket sealed
under a key that has since rotated is renewed on resumption. A ticket one worker issued
resumes on the other (each worker has its own OpenSSL library context and TLS contexts; the
ticket keys are the process's)."""
import re
import socket
import ssl

from tfcommon import (Backend, check, client_ctx, finish, http_handler, make_certs,
                      start_tlsfront, wait_until)

CHAIN = 4  # one full handshake, then three chained resumptions

certs = make_certs()
backend = Backend(http_handler(b"hello"))
tf, port = start_tlsfront(["--certs", certs, "--backend", backend.addr,
                           "--default-cert", "example.test", "--workers", "2"])


def exchange(ctx, name, session, to=None):
    """One connection offering session (or none); returns (resumed, the session it leaves)."""
    raw = socket.create_connection(("127.0.0.1", to or port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname=name, session=session) as s:
        # A request and its answer: a TLS 1.3 ticket arrives after the handshake, so reading
        # the answer makes sure the client has processed it.
        s.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
        data = b""
        while b"hello" not in data:
            d = s.recv(4096)
            if not d:
                break
            data += d
        check(b"hello" in data, "%s: answer through the proxy" % name)
        return s.session_reused, s.session


def chain(name, ver, sni=True):
    ctx = client_ctx(certs, tls_min=ver, tls_max=ver)
    if not sni:
        ctx.check_hostname = False
    offered = set()  # ids of the sessions already offered: a ticket is used once
    newest = None
    resumed = []
    for i in range(CHAIN):
        if newest is not None:
            offered.add(newest.id)
        reused, sess = exchange(ctx, name if sni else None, newest)
        resumed.append(reused)
        # The next connection offers the session this one left, unless it is the one just
        # offered (no new ticket came): then a TLS 1.3 client has nothing to offer, while a
        # TLS 1.2 one offers it again.
        fresh = sess is not None and sess.has_ticket and sess.id not in offered
        if not fresh and ver == ssl.TLSVersion.TLSv1_3:
            newest = None
        elif fresh:
            newest = sess
    label = "%s %s" % (name if sni else "no SNI (default certificate)", ver.name)
    check(not resumed[0], "%s: the first connection is a full handshake" % label)
    check(all(resumed[1:]), "%s: every later connection resumes (%s)" % (label, resumed))


for ver in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
    chain("example.test", ver)        # one ECDSA certificate: its own SSL_CTX
    chain("dual.test", ver)           # ECDSA and RSA: installed on the listener's context
    chain("example.test", ver, sni=False)



def worker_of(client_port):
    """The worker that served the connection from client_port and whether it resumed, from
    its access log line (the top 16 bits of conn= are the worker's number)."""
    m = tf.wait_for(r"conn=([0-9a-f]+) client=127\.0\.0\.1:%d .*resumed=(\d)" % client_port,
                    10, stream="out")
    check(m is not None, "access log line for client port %d" % client_port)
    return int(m.group(1), 16) >> 48, m.group(2) == "1"


def pair(ctx):
    """A full handshake, then a connection offering its ticket: (issuer, resumer, resumed)."""
    ports, sess = [], None
    for _ in range(2):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        ports.append(raw.getsockname()[1])
        with ctx.wrap_socket(raw, server_hostname="example.test", session=sess) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
            while s.recv(4096):
                pass
            sess = s.session
    (issuer, _), (resumer, resumed) = worker_of(ports[0]), worker_of(ports[1])
    return issuer, resumer, resumed


# The kernel spreads connections over the workers by their addresses: pairs until one
# crossed workers (each does with odds 1/2), every offered ticket resuming.
ctx13 = client_ctx(certs, tls_min=ssl.TLSVersion.TLSv1_3)
crossed = False
for _ in range(64):
    issuer, resumer, resumed = pair(ctx13)
    check(resumed, "a ticket from worker %d resumes on worker %d" % (issuer, resumer))
    if issuer != resumer:
        crossed = True
        break
check(crossed, "a ticket issued by one worker resumed on the other")

# TLS 1.2: a ticket whose key has rotated (still in the ring) resumes and is replaced by one
# under the current key. The rotation reaches the worker after the control loop logs it, so a
# try that finds the old key still current (no new ticket yet) or the key already dropped (no
# resumption) starts over, within a generous bound.
tf2, port2 = start_tlsfront(["--certs", certs, "--backend", backend.addr, "--workers", "1",
                             "--ticket-rotate", "1s", "--log-level", "debug"],
                            name="tlsfront-rotate")
ctx12 = client_ctx(certs, tls_min=ssl.TLSVersion.TLSv1_2, tls_max=ssl.TLSVersion.TLSv1_2)


def rotations():
    return tf2.stderr_text().count("session ticket keys rotated")


def renewed_after_rotation():
    _, sess = exchange(ctx12, "example.test", None, port2)
    n0 = rotations()
    if not wait_until(lambda: rotations() > n0, timeout=30):
        return False
    reused, sess2 = exchange(ctx12, "example.test", sess, port2)
    return reused and sess2.has_ticket and sess2.id != sess.id


check(wait_until(renewed_after_rotation, timeout=120, step=0),
      "TLS 1.2: a ticket under a rotated key resumes and gets a ticket under the new key")
finish()
