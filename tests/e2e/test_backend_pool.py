"""mode=http backend keep-alive pool (--backend-keepalive) against real backends that count the
connections they accept: 100 sequential requests over 100 client connections use at most the
pool cap of backend connections (and 10 use 10 with the pool off); a backend that closes
every connection shortly after answering costs no client an error; a POST on a pooled
connection that the backend closes unanswered is not sent again (502), while a GET there is
sent once more on a fresh connection; pipelined and concurrent clients each get exactly their
own responses, in order."""
import http.client
import random
import re
import threading
import time

from legacycommon import Reader, RecordingHTTP
from tfcommon import (Backend, bound, check, client_ctx, finish, make_certs, start_tlsfront,
                      step, tls_connect)

CAP = 4
certs = make_certs()
ctx = client_ctx(certs)
be = RecordingHTTP()


def read_head(c, buf):
    while b"\r\n\r\n" not in buf:
        d = c.recv(65536)
        if not d:
            return None, buf
        buf += d
    i = buf.index(b"\r\n\r\n") + 4
    head, buf = buf[:i], buf[i:]
    m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    n = int(m.group(1)) if m else 0
    while len(buf) < n:
        d = c.recv(65536)
        if not d:
            return None, buf
        buf += d
    return head + buf[:n], buf[n:]


def ok(body):
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def closer_handler(c):
    """Answers one request with keep-alive, then closes the connection soon after (at once,
    or after a few milliseconds): the pool sees some closes while idle, others race."""
    head, _ = read_head(c, b"")
    if head is None:
        return
    c.sendall(ok(b"closer " + head.split(b" ")[1]))
    time.sleep(random.choice([0, 0, 0.001, 0.003, 0.01]))


class Stale:
    """Per connection: answers the first request, then reads the second one (head and body),
    records it and closes without answering: a pooled connection the backend dropped just
    as it was reused."""

    def __init__(self):
        self.seen = []
        self.lock = threading.Lock()
        self.b = Backend(self.handle)

    def handle(self, c):
        head, rest = read_head(c, b"")
        if head is None:
            return
        c.sendall(ok(b"first " + head.split(b" ")[1]))
        head, _ = read_head(c, rest)
        if head is None:
            return
        with self.lock:
            self.seen.append(b" ".join(head.split(b" ")[:2]))


closer = Backend(closer_handler)
stale = Stale()
tf, port = start_tlsfront([
    "--certs", certs, "--workers", "1", "--backend", be.addr + ",mode=http",
    "--route", "closer.wild.test=%s,mode=http" % closer.addr,
    "--route", "stale.wild.test=%s,mode=http" % stale.b.addr,
    "--backend-keepalive", str(CAP), "--admin", "127.0.0.1:0",
])
aport = int(tf.wait_for(r"admin endpoint on 127\.0\.0\.1:(\d+)").group(1))
off, off_port = start_tlsfront(["--certs", certs, "--workers", "1", "--backend",
                                be.addr + ",mode=http", "--backend-keepalive", "0"],
                               name="tlsfront-off")


def metric(name, labels=""):
    c = http.client.HTTPConnection("127.0.0.1", aport, timeout=bound(10))
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    m = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    return float(m.group(1)) if m else None


def request(name, raw, p=None):
    """One request on a new client connection; (status, whole response) or (None, why)."""
    s = tls_connect(p or port, name, ctx, timeout=30)
    try:
        s.sendall(raw)
        st, _, body = Reader(s).response()
        return st, body
    except (EOFError, OSError, ValueError) as e:
        return None, repr(e).encode()
    finally:
        s.close()


def get(name, path, p=None):
    return request(name, b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, name.encode()), p)


step("100 sequential requests, 100 client connections")
good = 0
for i in range(100):
    st, body = get("example.test", b"/seq/%d" % i)
    good += st == 200 and b"GET /seq/%d " % i in body
check(good == 100, "100 sequential requests answered with their own response (%d)" % good)
check(be.b.conns <= CAP, "at most %d backend connections for 100 clients (%d)" % (CAP, be.b.conns))
hits = metric("tlsfront_backend_pool_total", '{result="hit"}')
misses = metric("tlsfront_backend_pool_total", '{result="miss"}')
check(hits is not None and misses is not None and hits + misses == 100 and hits >= 100 - CAP,
      "pool metrics: hits %s + misses %s = 100" % (hits, misses))

step("--backend-keepalive 0: one backend connection per client connection")
before = be.b.conns
good = sum(get("example.test", b"/off/%d" % i, off_port)[0] == 200 for i in range(10))
check(good == 10 and be.b.conns - before == 10,
      "pool off: 10 requests, 10 backend connections (%d)" % (be.b.conns - before))

step("clients that say Connection: close: their close stays theirs, the backend's is pooled")


def get_close(i, p=None):
    """A request with Connection: close; (status, body, what came after the response, head
    the backend saw). The client keeps its side open: tlsfront must end the connection."""
    s = tls_connect(p or port, "example.test", ctx, timeout=bound(10))
    try:
        s.sendall(b"GET /close/%d HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n" % i)
        r = Reader(s)
        st, _, body = r.response()
        return st, body, r.rest()
    except (EOFError, OSError, ValueError) as e:
        return None, repr(e).encode(), None
    finally:
        s.close()


before = be.b.conns
res = [get_close(i) for i in range(30)]
good = sum(st == 200 and b"GET /close/%d " % i in body for i, (st, body, _) in enumerate(res))
check(good == 30, "30 Connection: close requests answered with their own response (%d)" % good)
check(all(rest == b"" for _, _, rest in res),
      "each client connection ended by tlsfront after its response (%s)" %
      [rest for _, _, rest in res if rest != b""][:2])
check(be.b.conns - before <= CAP, "pooled backend connections served them: %d new for 30 clients"
      % (be.b.conns - before))
check(not any(b"\r\nconnection: close" in body.lower() for _, body, _ in res),
      "the backend never saw the client's close")
st, body, rest = get_close(99, off_port)
check(st == 200 and b"\r\nConnection: close\r\n" in body and rest == b"",
      "pool off: the close goes to the backend, as before (%s)" % st)

step("a backend that closes its idle connections")
errors = []
for i in range(60):
    st, body = get("closer.wild.test", b"/c/%d" % i)
    if st != 200 or body != b"closer /c/%d" % i:
        errors.append((i, st, body[:80]))
check(not errors, "60 requests to a backend closing idle connections: no error (%s)" % errors[:3])

step("POST on a stale pooled connection: not replayed")
st, body = get("stale.wild.test", b"/warm")
check(st == 200 and body == b"first /warm", "first request on a fresh backend connection")
retries0 = metric("tlsfront_backend_pool_stale_retries_total")
st, body = request("stale.wild.test", b"POST /post HTTP/1.1\r\nHost: stale.wild.test\r\n"
                   b"Content-Length: 5\r\n\r\nhello")
check(st == 502, "POST on the dropped pooled connection: 502, not replayed (got %s)" % st)
with stale.lock:
    posts = stale.seen.count(b"POST /post")
check(posts == 1, "the backend saw the POST once (%d)" % posts)
check(stale.b.conns == 1, "no new backend connection for the POST (%d)" % stale.b.conns)
check(metric("tlsfront_backend_pool_stale_retries_total") == retries0, "no stale retry counted")

step("GET on a stale pooled connection: sent again on a fresh one")
st, body = get("stale.wild.test", b"/warm2")
check(st == 200 and body == b"first /warm2", "a fresh backend connection (the pool is empty)")
st, body = get("stale.wild.test", b"/again")
check(st == 200 and body == b"first /again", "GET replayed on a fresh connection: 200 (%s %r)"
      % (st, body[:60]))
check(stale.b.conns == 3, "backend connections: warm, warm2, the retry (%d)" % stale.b.conns)
check(metric("tlsfront_backend_pool_stale_retries_total") == retries0 + 1, "one stale retry")

step("pipelined and concurrent clients")
mixups = []


def pipelined(tid, rounds):
    for j in range(rounds):
        s = tls_connect(port, "example.test", ctx, timeout=30)
        try:
            paths = [b"/p%d/%d/%d" % (tid, j, k) for k in range(10)]
            s.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: example.test\r\n\r\n" % p
                               for p in paths))
            r = Reader(s)
            for p in paths:
                st, _, body = r.response()
                if st != 200 or b"GET %s " % p not in body:
                    mixups.append((p, st, body[:60]))
        except (EOFError, OSError, ValueError) as e:
            mixups.append((tid, j, repr(e)))
        finally:
            s.close()


def single(tid, rounds):
    for j in range(rounds):
        p = b"/s%d/%d" % (tid, j)
        st, body = get("example.test", p)
        if st != 200 or b"GET %s " % p not in body:
            mixups.append((p, st, body[:60]))


ts = [threading.Thread(target=pipelined, args=(i, 5)) for i in range(4)]
ts += [threading.Thread(target=single, args=(i, 20)) for i in range(4)]
for t in ts:
    t.start()
for t in ts:
    t.join(bound(300))
check(not any(t.is_alive() for t in ts), "every client finished")
check(not mixups, "each client got exactly its own responses, in order (%s)" % mixups[:3])
with be.lock:
    heads = list(be.heads)
check(all(h.count(b"\r\nHost:") == 1 for h in heads), "one request per head at the backend")

finish()
