"""The shell examples of README.md and docs/*.md work as written.

Every fenced ```sh, ```bash or ```console block is extracted. Each must pass `bash -n`. A
block preceded (on the line just before its fence) by `<!-- example: illustrative ... -->`
is only syntax-checked: it needs what a test cannot have here (systemd, Docker, real DNS, a
public CA, minutes of benchmarking). Every other block that starts tlsfront is run for real
after the substitutions of SUBST below (the binary, the ports, the local backend, the
paths, the ask endpoint, and pebble as the CA through TLSFRONT_ACME_DIRECTORY/_CA), with
`bash -e` in the source tree: every tlsfront it starts must listen on its port and serve a
request through to the backend (the name to ask for is taken from its --certs or --allow).
A line that starts a server in the background is followed by a wait until that port
accepts connections, as a person typing the lines waits for the server to come up. An
unmarked block that does not start tlsfront (a build or bench command) cannot be run here
in seconds: it must be marked too, except in docs/benchmarks.md, whose blocks all run the
benchmark scripts. A broken example (a renamed flag, a wrong path, a failing curl) fails.
"""
import glob
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import time

from pebblectl import Pebble
from tfcommon import (BIN, SRC, Backend, ask_server, bound, check, finish, free_port,
                      http_handler, make_certs, tmpdir)

FENCE = re.compile(r"^```(sh|bash|console)\s*$")
MARK = re.compile(r"^<!--\s*example:\s*(\w+)\b.*-->\s*$")
# A tlsfront command: at the start of a line or after && ; | (not inside paths).
TF_CMD = re.compile(r"(?m)(^\s*|&&\s*|;\s*|\|\s*)(?:build/)?tlsfront(?=\s)")
BENCH_ONLY = {"docs/benchmarks.md"}


def blocks(rel):
    """(first line number, marker or None, text) of each shell block of the file rel."""
    out = []
    lines = open(os.path.join(SRC, rel)).read().split("\n")
    i = 0
    while i < len(lines):
        if FENCE.match(lines[i]):
            start = i + 1
            prev = next((l for l in reversed(lines[:i]) if l.strip()), "")
            m = MARK.match(prev.strip())
            j = start
            while j < len(lines) and lines[j].rstrip() != "```":
                j += 1
            text = "\n".join(lines[start:j]) + "\n"
            if FENCE.match(lines[i]).group(1) == "console":
                # Only the commands: "$ cmd" lines; output lines are not shell.
                text = "\n".join(l[2:] for l in text.split("\n") if l.startswith("$ ")) + "\n"
            out.append((start, m.group(1) if m else None, text))
            i = j
        i += 1
    return out


def bash_n(text):
    r = subprocess.run(["bash", "-n"], input=text.encode(), stderr=subprocess.PIPE, timeout=30)
    return r.returncode == 0, r.stderr.decode()


# The --ask endpoint of the examples: says yes to every name.
ASK_URL = ask_server(lambda name: 200, "/allowed")

demo = make_certs()
# A certbot layout (live/NAME/fullchain.pem + privkey.pem) made of the demo certificates.
certbot = tmpdir()
os.makedirs(os.path.join(certbot, "example.test"))
shutil.copy(os.path.join(demo, "example.crt"), os.path.join(certbot, "example.test", "fullchain.pem"))
shutil.copy(os.path.join(demo, "example.key"), os.path.join(certbot, "example.test", "privkey.pem"))


def substitute(text, ports, backend_port, paths):
    """The block as it runs here. ports: the doc's listen port -> a free port."""
    # The explicit table: what the docs name -> what this machine has.
    text = TF_CMD.sub(lambda m: m.group(1) + '"$TLSFRONT_BIN"', text)
    text = re.sub(r"https?://app\.internal/[^\s'\"]*", ASK_URL, text)
    for doc_path, here in paths.items():
        text = text.replace(doc_path, here)
    # A bare ":443" listens on every address: loopback only here.
    text = re.sub(r"(^|[\s'\"=])(?:127\.0\.0\.1)?:(443|8443)(?![0-9])",
                  lambda m: "%s127.0.0.1:%d" % (m.group(1), ports[m.group(2)]), text)
    text = re.sub(r":(443|8443)(?![0-9])", lambda m: ":%d" % ports[m.group(1)], text)
    text = re.sub(r"(?<![0-9])8080(?![0-9])", str(backend_port), text)
    return text


PRELUDE = r'''
tf_wait_port() {  # until 127.0.0.1:$1 accepts a connection, at most $2 seconds
    local end=$((SECONDS + $2))
    while ! (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; do
        [ $SECONDS -lt $end ] || { echo "nothing listens on port $1" >&2; return 1; }
        sleep 0.05
    done
}
'''


def add_waits(text, wait_s):
    """After each line that starts a server in the background, wait for its port."""
    out = []
    for line in text.split("\n"):
        out.append(line)
        code = line.split("#", 1)[0].rstrip()
        if not code.endswith("&") or code.endswith("&&"):
            continue
        m = re.search(r"--listen\s+['\"]?[\d.]*:(\d+)", code) or \
            re.search(r"http\.server\s+(\d+)", code)
        if m:
            out.append("tf_wait_port %s %d" % (m.group(1), wait_s))
    return "\n".join(out)


def fetch(port, name, cafile):
    """One TLS connection to tlsfront, one request: the response bytes."""
    ctx = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection(("127.0.0.1", port), timeout=bound(30))
    with ctx.wrap_socket(raw, server_hostname=name) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % name.encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                return data
            data += d


def listens(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=bound(1)).close()
        return True
    except OSError:
        return False


def serve_name(cmd):
    """The name a request to this tlsfront command should use, and whether it is issued."""
    m = re.search(r"--allow\s+['\"]?([^\s'\"]+)", cmd)
    if m:
        return m.group(1).replace("*.", "docs-example."), True
    if "--ask" in cmd:
        return "docs-example.example.com", True
    return "example.test", False


def run_block(where, text):
    d = tmpdir()
    ports = {"443": free_port(), "8443": free_port()}
    backend = None
    if "http.server" in text:
        backend_port = free_port()  # the block starts its own backend
    else:
        backend = Backend(http_handler(b"docs backend"))
        backend_port = backend.port
    paths = {"/tmp/certs": os.path.join(d, "certs"), "/etc/letsencrypt/live": certbot,
             "/etc/tlsfront/certs": demo, "/var/lib/tlsfront": os.path.join(d, "storage")}
    script = substitute(text, ports, backend_port, paths)
    # Every tlsfront line with its own listen port (a command continued with "\" is joined).
    joined = script.replace("\\\n", " ")
    tf_lines = [l for l in joined.split("\n") if '"$TLSFRONT_BIN"' in l.split("#", 1)[0]]
    # The binary's path goes in as a shell variable of the script, not the environment
    # (tlsfront warns about a TLSFRONT_* variable that is no option of its own).
    script = "TLSFRONT_BIN=%s\n%s" % (shlex.quote(BIN), script)
    env = dict(os.environ)
    pebble = None
    if any("--allow" in l or "--ask" in l for l in tf_lines):
        pebble = Pebble()
        # The examples' tlsfront listen where the CA validates: the doc's port 443.
        pebble.start(ports["443"])
        env["TLSFRONT_ACME_DIRECTORY"] = pebble.directory
        env["TLSFRONT_ACME_CA"] = pebble.ca_file
    full = PRELUDE + add_waits(script, int(bound(30)))
    path = os.path.join(d, "example.sh")
    with open(path, "w") as f:
        f.write(full)
    out = open(os.path.join(d, "example.out"), "wb")
    p = subprocess.Popen(["bash", "-e", path], cwd=SRC, env=env, stdout=out,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    listen = []
    for l in tf_lines:
        m = re.search(r"--listen\s+['\"]?[\d.]*:(\d+)", l)
        if m:
            listen.append((int(m.group(1)), l))
    try:
        # A tlsfront in the foreground keeps the script running: it is up once it listens.
        # Otherwise the script ends by itself (after its own curl, say) and must exit 0.
        fg = any(not l.split("#", 1)[0].rstrip().endswith("&") for l in tf_lines)
        deadline = time.time() + bound(60)
        while time.time() < deadline:
            if p.poll() is not None or (fg and all(listens(pt) for pt, _ in listen)):
                break
            time.sleep(0.05)
        rc = p.poll()
        check(rc == 0 or (fg and rc is None),
              "%s: the example runs (%s)" % (where, "exit %s" % rc if rc is not None else
                                             "tlsfront in the foreground"))
        check(bool(listen), "%s: the example starts tlsfront on a port" % where)
        for port, cmd in listen:
            name, issued = serve_name(cmd)
            # The block's own certs/mkcerts.sh CA when it made one, else the prepared one.
            ca = os.path.join(d, "certs", "ca.crt")
            if not os.path.exists(ca):
                ca = os.path.join(demo, "ca.crt")
            if issued:
                ca = os.path.join(d, "pebble-root.pem")
                with open(ca, "w") as f:
                    f.write(pebble.root_pem())
            try:
                resp = fetch(port, name, ca)
            except (OSError, ssl.SSLError) as e:
                resp = repr(e).encode()
            check(resp.startswith(b"HTTP/1.") and b" 200 " in resp.split(b"\r\n")[0],
                  "%s: tlsfront on the example's port serves %s%s (%r)" %
                  (where, name, " (certificate issued on demand)" if issued else "", resp[:60]))
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # the block's session: only what it started
        except ProcessLookupError:
            pass
        p.wait()
        out.close()
        log = open(os.path.join(d, "example.out"), "rb").read().decode("utf-8", "replace")
        print("----- %s: script -----\n%s----- output -----\n%s" % (where, script, log[-4000:]))
        if pebble:
            pebble.stop()
            pebble.dns.stop()
        if backend:
            backend.close()


files = ["README.md"] + sorted(os.path.relpath(f, SRC) for f in
                               glob.glob(os.path.join(SRC, "docs", "*.md")))
ran = 0
for rel in files:
    for line, mark, text in blocks(rel):
        where = "%s:%d" % (rel, line)
        ok, err = bash_n(text)
        check(ok, "%s: bash -n %s" % (where, err.strip()))
        check(mark in (None, "illustrative"), "%s: known marker (%s)" % (where, mark))
        if mark == "illustrative":
            continue
        if not TF_CMD.search(text):
            check(rel in BENCH_ONLY,
                  "%s: starts no tlsfront: make it runnable or mark it "
                  "<!-- example: illustrative -->" % where)
            continue
        run_block(where, text)
        ran += 1
check(ran >= 3, "at least 3 examples ran for real (%d)" % ran)
finish()
