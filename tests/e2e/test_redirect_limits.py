"""--redirect-http under a greedy client: one address may hold at most --redirect-max-per-ip
connections (more are closed at once, without an answer, while its first ones and other
addresses are still served, and a freed slot can be used again), and a request head must
arrive within --handshake-timeout (a client that sends part of one is closed)."""
import socket

from legacycommon import Reader
from tfcommon import check, finish, make_certs, start_tlsfront, wait_until

CAP = 3
certs = make_certs()


def start(name, extra):
    tf, _ = start_tlsfront(["--certs", certs, "--backend", "127.0.0.1:9",
                            "--redirect-http", "127.0.0.1:0"] + extra, name=name)
    m = tf.wait_for(r"redirect-http on [^ ]*:(\d+)", 20)
    check(m is not None, "%s: redirect listener started" % name)
    return tf, int(m.group(1))


def closed_unanswered(s, timeout=60):
    """Waits for the server to close s; True if it closed without sending a byte."""
    s.settimeout(timeout)
    try:
        return s.recv(4096) == b""
    except ConnectionResetError:
        return True
    except OSError:
        return False


def redirect(s):
    """Sends a request on s and returns the status (None if closed)."""
    try:
        s.sendall(b"GET /x HTTP/1.1\r\nHost: example.test\r\n\r\n")
        st, _, _ = Reader(s).response()
        return st
    except (EOFError, OSError, ValueError):
        return None


def connect(rport, src="127.0.0.1"):
    return socket.create_connection(("127.0.0.1", rport), timeout=60, source_address=(src, 0))


# The per-address cap, with a header timeout long enough not to interfere.
tf, rport = start("tlsfront-cap", ["--redirect-max-per-ip", str(CAP),
                                   "--handshake-timeout", "120s"])
held = [connect(rport) for _ in range(CAP)]
extra = [connect(rport) for _ in range(2)]
check(all(closed_unanswered(s) for s in extra),
      "connections over --redirect-max-per-ip from one address are closed unanswered")
other = connect(rport, "127.0.0.2")
check(redirect(other) == 308, "another address is still served")
other.close()
check(all(redirect(s) == 308 for s in held), "the address's first %d connections are served" % CAP)
for s in held + extra:
    s.close()


def served_again():
    s = connect(rport)
    st = redirect(s)
    s.close()
    return st == 308


check(wait_until(served_again, timeout=30), "once its connections closed the address is served")
check(tf.wait_for(r"redirect: 127\.0\.0\.1:\d+: --redirect-max-per-ip \(3\) reached, closed",
                  10) is not None, "the refusal is logged")

# The header timeout is the TLS listeners' --handshake-timeout.
tf2, rport2 = start("tlsfront-timeout", ["--handshake-timeout", "250ms"])
s = connect(rport2)
s.sendall(b"GET /slow HTTP/1.1\r\nHost: exam")
# Generous next to the 250 ms limit, and below the fixed 10 s the listener used to allow.
check(closed_unanswered(s, timeout=8), "a partial request head is closed at the header timeout")
s.close()
s = connect(rport2)
check(redirect(s) == 308, "a complete request on the same listener is served")
s.close()
finish()
