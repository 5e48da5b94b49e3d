"""Helpers for the legacy-backend tests (issue 7): an HTTP/1.1 backend that records every byte
it receives and echoes each request head back, a WebSocket echo, an HTTP response reader
for the client side, and HAProxy driven from a temp-dir config."""
import base64
import hashlib
import os
import re
import socket
import struct
import threading

from tfcommon import Backend, Proc, free_port, tmpdir, wait_until

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"


class Reader:
    """Buffered reads of HTTP/1.1 messages from a socket (plain or TLS)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.pos = 0

    def fill(self):
        d = self.sock.recv(1 << 20)
        if not d:
            raise EOFError("peer closed")
        self.add(d)

    def add(self, d):
        if self.pos > (1 << 20):
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += d

    def take(self, end):
        out = bytes(self.buf[self.pos:end])
        self.pos = end
        return out

    def until(self, marker):
        while True:
            i = self.buf.find(marker, self.pos)
            if i >= 0:
                return self.take(i + len(marker))
            self.fill()

    def exact(self, n):
        while len(self.buf) - self.pos < n:
            self.fill()
        return self.take(self.pos + n)

    def chunked(self):
        # A bytearray: appending to bytes copies the whole body per chunk, which made a
        # 50 MB upload of 64 KiB chunks copy about 20 GB (minutes under load).
        body = bytearray()
        while True:
            line = self.until(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                self.until(b"\r\n")  # no trailers from our backends
                return bytes(body)
            body += self.exact(size)
            self.until(b"\r\n")

    def head(self):
        """(status, {lower-name: [values]}, raw head bytes)."""
        raw = self.until(b"\r\n\r\n")
        lines = raw[:-4].split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        fields = {}
        for l in lines[1:]:
            k, v = l.split(b":", 1)
            fields.setdefault(k.strip().lower().decode(), []).append(v.strip().decode())
        return status, fields, raw

    def response(self, head_only=False):
        status, fields, raw = self.head()
        if head_only or status in (101, 204, 304) or 100 <= status < 200:
            return status, fields, b""
        if "chunked" in ",".join(fields.get("transfer-encoding", [])).lower():
            return status, fields, self.chunked()
        n = int(fields.get("content-length", ["0"])[0])
        return status, fields, self.exact(n)

    def rest(self):
        """Everything until EOF (or a reset)."""
        try:
            while True:
                self.fill()
        except (EOFError, OSError):
            pass
        return self.take(len(self.buf))


class RecordingHTTP:
    """HTTP/1.1 backend: keeps every byte received (self.raw, all connections), answers each
    request with its head echoed in the body plus the body's length and SHA-256; answers
    HEAD with a Content-Length and no body; accepts WebSocket upgrades and echoes frames,
    sending one frame of its own first."""

    def __init__(self, host="127.0.0.1"):
        self.raw = bytearray()
        self.heads = []
        self.lock = threading.Lock()
        self.b = Backend(self._handle, host=host)
        self.port = self.b.port
        self.addr = ("[%s]:%d" if ":" in host else "%s:%d") % (host, self.port)

    def saw(self, marker):
        with self.lock:
            return marker in self.raw

    def _recv(self, c, r):
        d = c.recv(1 << 20)
        if not d:
            raise EOFError
        with self.lock:
            self.raw += d
        r.add(d)

    def _handle(self, c):
        r = Reader(c)
        r.fill = lambda: self._recv(c, r)
        try:
            while True:
                if not self._one(c, r):
                    return
        except (EOFError, ValueError):
            return

    def _one(self, c, r):
        raw = r.until(b"\r\n\r\n")
        lines = raw[:-4].split(b"\r\n")
        while lines and lines[0] == b"":
            lines.pop(0)
        if lines and lines[0].startswith(b"PROXY "):
            lines.pop(0)
        method = lines[0].split(b" ")[0]
        fields = {}
        for l in lines[1:]:
            k, v = l.split(b":", 1)
            fields.setdefault(k.strip().lower(), []).append(v.strip())
        with self.lock:
            self.heads.append(raw)
        h = hashlib.sha256()
        n = 0
        if b"chunked" in b",".join(fields.get(b"transfer-encoding", [])).lower():
            body = r.chunked()
            h.update(body)
            n = len(body)
        else:
            clen = int(fields.get(b"content-length", [b"0"])[0])
            while clen > 0:
                d = r.exact(min(clen, 1 << 20))
                h.update(d)
                n += len(d)
                clen -= len(d)
        if fields.get(b"upgrade", [b""])[0].lower() == b"websocket":
            ws_serve(c, r, fields[b"sec-websocket-key"][0])
            return False
        body = raw + b"bodylen=%d sha256=%s\n" % (n, h.hexdigest().encode())
        if method == b"HEAD":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        else:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return b"close" not in b",".join(fields.get(b"connection", [])).lower()


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest())


def ws_frame(payload, mask):
    hdr = bytes([0x81])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        hdr += bytes([m | n])
    elif n < 65536:
        hdr += bytes([m | 126]) + struct.pack("!H", n)
    else:
        hdr += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    return hdr + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def ws_read(r):
    """One frame: (opcode, payload), unmasking when masked."""
    b0, b1 = r.exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", r.exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", r.exact(8))[0]
    key = r.exact(4) if b1 & 0x80 else None
    data = r.exact(n)
    if key:
        data = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    return b0 & 0x0F, data


def ws_serve(c, r, key):
    # One write: the 101 and the first frame usually reach tlsfront in one read.
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % ws_accept(key) +
              ws_frame(b"hello from backend", False))
    while True:
        op, data = ws_read(r)
        if op == 8:
            c.sendall(bytes([0x88, 0]))
            return
        c.sendall(ws_frame(b"echo:" + data, False))


def haproxy(cfg_body, name="haproxy"):
    """Start HAProxy with cfg_body (global/defaults added) from a temp dir; returns the Proc
    once it runs. Logs go to stdout (log stdout format raw)."""
    d = tmpdir()
    path = os.path.join(d, "haproxy.cfg")
    with open(path, "w") as f:
        f.write("global\n  log stdout format raw local0\n  maxconn 256\n\n"
                "defaults\n  log global\n  timeout connect 5s\n  timeout client 30s\n"
                "  timeout server 30s\n\n" + cfg_body)
    p = Proc(name, ["haproxy", "-db", "-f", path])
    return p


def wait_port(port, timeout=10):
    """Wait until something listens on port (read from /proc, so no connection is made)."""
    def up():
        for f in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(f) as fh:
                for line in fh.readlines()[1:]:
                    parts = line.split()
                    if int(parts[1].split(":")[1], 16) == port and parts[3] == "0A":
                        return True
        return False
    return wait_until(up, timeout)


def listening_ports(tf):
    """Every 'listening on ADDR:PORT' port of a tlsfront, in order."""
    return [int(p) for p in re.findall(r"listening on [^ ]*:(\d+)", tf.stderr_text())]


def free_port6():
    s = socket.socket(socket.AF_INET6)
    s.bind(("::1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


__all__ = ["Reader", "RecordingHTTP", "ws_frame", "ws_read", "ws_accept", "haproxy",
           "wait_port", "listening_ports", "free_port", "free_port6"]
