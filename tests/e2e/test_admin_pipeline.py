"""Many pipelined admin requests behind an action answered later: /metrics pages are still
being written when the action (DELETE of a name: a storage operation) defers its answer, and
the requests behind it (more than one read buffer's worth) wait, part in the read buffer and
part unread, until it is answered. Every answer must arrive, complete and in the order asked:
the pages' write callbacks must not restart reading while the action's answer is owed (a
read then would overwrite the requests still waiting in the read buffer)."""
import re
import socket
import threading

from clusterctl import admin_port, secret_file
from pebblectl import Pebble
from tfcommon import (Backend, bound, check, finish, http_handler, read_to_eof, start_tlsfront,
                      tmpdir)

TOKEN = "pipeline-token-0123456789abcdef"
backend = Backend(http_handler(b"hi"))
peb = Pebble()  # never started: the action below only touches the storage
tf, port = start_tlsfront(peb.tlsfront_args(tmpdir()) + [
    "--allow", "*.pipe.test", "--backend", backend.addr, "--workers", "1",
    "--admin", "127.0.0.1:0", "--admin-token-file", secret_file(TOKEN)])
aport = admin_port(tf)

def get(path):
    s = socket.create_connection(("127.0.0.1", aport), timeout=bound(30))
    s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
    data = read_to_eof(s)
    s.close()
    return data


page = len(get("/metrics"))
check(page > 1000, "a /metrics page is %d bytes" % page)
N_BEFORE = 40  # pages written before the action (about 400 KB)
N_AFTER = 300  # requests behind the action: several 4 KB read buffers' worth


def requests():
    """The pipelined requests, and what each must be answered with: (status, body marker)."""
    out, want = [], []
    for _ in range(N_BEFORE):
        out.append(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        want.append((200, b"tlsfront_"))
    out.append(b"DELETE /certs/nothing.pipe.test HTTP/1.1\r\nHost: x\r\n"
               b"Authorization: Bearer %s\r\n\r\n" % TOKEN.encode())
    want.append((404, b"nothing.pipe.test"))
    for i in range(N_AFTER):
        path = "/certs/n%d.pipe.test" % i
        out.append(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        want.append((404, None))
    out.append(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    want.append((200, b"ok"))
    return b"".join(out), want


def parse(data):
    """Split data into responses (Content-Length framed): [(status, body)], leftover bytes."""
    out = []
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return out, data
        head = data[:end].decode("latin-1")
        m = re.search(r"(?im)^content-length: *(\d+)", head)
        n = int(m.group(1)) if m else 0
        if len(data) < end + 4 + n:
            return out, data
        out.append((int(head.split()[1]), data[end + 4:end + 4 + n]))
        data = data[end + 4 + n:]


for rnd in range(3):
    payload, want = requests()
    s = socket.create_connection(("127.0.0.1", aport), timeout=bound(60))
    sender = threading.Thread(target=s.sendall, args=(payload,), daemon=True)
    sender.start()
    got = read_to_eof(s)
    s.close()
    sender.join(bound(10))
    resps, rest = parse(got)
    codes = [r[0] for r in resps]
    ok = len(resps) == len(want) and not rest and all(
        c == w and (m is None or m in b) for (c, b), (w, m) in zip(resps, want))
    check(ok, "round %d: %d answers in order and complete (want %d; %d statuses: %s...; "
          "%d bytes left over)" % (rnd, len(resps), len(want), len(codes),
                                   codes[N_BEFORE - 2:N_BEFORE + 4], len(rest)))
check(tf.p.poll() is None, "tlsfront still runs")
finish()
