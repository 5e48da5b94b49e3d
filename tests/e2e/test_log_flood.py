"""Log floods: a flood of handshakes for names the --ask endpoint denies, and for allowed
names the local budget refuses, with --access-log off, writes a bounded number of log lines
(the first one, then at most one per 10 s window with the count it held back), and every
line held back is counted in tlsfront_log_suppressed_total{class=...}."""
import http.client
import re
import socket
import ssl
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from tfcommon import ask_server, check, finish, make_certs, start_tlsfront, tmpdir

N = 200


# Denies the names under flood.test, allows the rest (a name must match --allow and be
# approved by --ask to be ordered).
ask_url = ask_server(lambda name: 403 if "flood.test" in name else 200)

certs = make_certs()
tf, port = start_tlsfront([
    "--certs", certs, "--backend", "127.0.0.1:9", "--access-log", "off",
    "--storage", tmpdir(), "--acme-directory", "https://127.0.0.1:9/dir",
    "--ask", ask_url,
    "--allow", "*.budget.test", "--allow", "*.flood.test", "--issue-burst", "1", "--issue-rate", "0.001",
    "--admin", "127.0.0.1:0"])
m = tf.wait_for(r"admin endpoint on 127\.0\.0\.1:(\d+)")
aport = int(m.group(1))


CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CA store to load per handshake
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE


def handshake(name):
    """One handshake for name; True if it was refused."""
    c = CTX
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        with c.wrap_socket(raw, server_hostname=name):
            return False
    except (ssl.SSLError, OSError):
        return True


def suppressed(cls):
    c = http.client.HTTPConnection("127.0.0.1", aport, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    m = re.search(r'^tlsfront_log_suppressed_total\{class="%s"\} (\d+)$' % cls, text, re.M)
    return int(m.group(1)) if m else None


def flood(suffix, pattern, cls, what):
    t0 = time.time()
    names = ["%s.%s" % (uuid.uuid4().hex[:12], suffix) for _ in range(N)]
    with ThreadPoolExecutor(16) as pool:
        refused = sum(pool.map(handshake, names))
    elapsed = time.time() - t0
    check(refused == N, "%s: %d of %d handshakes refused" % (what, refused, N))
    # The last refusal may still be on its way to the log: wait for the count to settle.
    lines = []
    for _ in range(100):
        lines = re.findall(pattern, tf.stderr_text())
        held = suppressed(cls)
        if held is not None and len(lines) + held >= N:
            break
        time.sleep(0.05)
    repeated = [int(x) for x in re.findall(pattern + r".*\(repeated (\d+) times in the last \d+ s\)$",
                                           tf.stderr_text(), re.M)]
    bound = 2 + int(elapsed / 10)  # the first line, then at most one per 10 s window
    check(1 <= len(lines) <= bound,
          "%s: %d log lines for %d refusals in %.1f s (at most %d)" % (what, len(lines), N,
                                                                        elapsed, bound))
    check(held is not None and len(lines) + held == N,
          "%s: lines written + tlsfront_log_suppressed_total{class=\"%s\"} = %d (%s + %s)"
          % (what, cls, N, len(lines), held))
    check(sum(repeated) <= (held or 0), "%s: the repeat counts in the log add up to at most the "
          "metric (%d <= %s)" % (what, sum(repeated), held))


flood("flood.test", r"name=[0-9a-f]{12}\.flood\.test not allowed", "name_not_allowed",
      "ask denials")
# The first allowed name takes the only token (its order fails: no CA there), so the budget
# refuses every other one.
handshake("first.budget.test")
flood("budget.test", r"name=[0-9a-f]{12}\.budget\.test order refused by the local budget",
      "order_refused_budget", "budget refusals")
finish()
