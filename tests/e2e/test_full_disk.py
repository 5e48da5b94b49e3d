"""A full disk under the directory storage (--storage DIR), end to end against pebble with
real TLS-ALPN-01 validation. The storage lives on a small tmpfs mounted in a private mount
namespace (the test runs itself under `unshare --mount`: it needs root, and fails, never
skips, where mounts are not permitted); a filler file in the same tmpfs leaves an exact
number of free pages (a small file takes one page). The order lock takes one page, each
certificate file one page, so each case below is the disk filling up at a known step:

- no room at start-up: the start stops (exit 2) with a line naming the storage;
- first order, the account key cannot be saved (1 page: the lock takes it): the handshake
  is refused, the log names the account key and "no space left on device", the CA never
  sees a newAccount or an order, no account file is left;
- with room again: unpause, the name is obtained and served (the baseline);
- no page free: a new name's order cannot take its lock: refused, no order, a clear error;
- 1 page: the order runs, its key cannot be stored; 2 pages: its key is stored, its chain
  cannot be; 3 pages: key and chain are stored, its metadata cannot be. Each time the
  certificate is served from memory (the documented "used anyway") and the storage is left
  with nothing for the name rather than a key without its chain (what was written is
  removed); a renewal with 1 page keeps the old stored certificate whole;
- all the while the process stays up, the stored name is served on new connections, a
  keep-alive connection opened before keeps working, and the storage holds no temp file,
  no empty file, no incomplete or mismatched certificate, keys 0600;
- space freed: the refused name is unpaused and obtained, the names served from memory are
  renewed through the admin API, all stored in full; a restart on the same storage serves
  every name from storage with no new order, and `tlsfront certs` lists them all."""
import os
import subprocess
import sys

NS_ENV = "TF_FULL_DISK_NS"
if os.environ.get(NS_ENV) != "1":
    # Run this script again in a private mount namespace: the tmpfs mounted there vanishes
    # with the namespace, whatever happens to the test.
    print("running in a private mount namespace (unshare --mount; needs root)", flush=True)
    env = dict(os.environ, **{NS_ENV: "1"})
    try:
        rc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                             os.path.abspath(__file__)] + sys.argv[1:], env=env).returncode
    except OSError as e:
        print("FAIL cannot run unshare: %s" % e, flush=True)
        rc = 1
    if rc != 0:
        print("FAIL test_full_disk exited %d (in its mount namespace; where unshare or "
              "mount is refused, this test fails: it needs root)" % rc, flush=True)
    sys.exit(1 if rc else 0)

import atexit
import json
import re
import socket
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from clusterctl import admin_call, admin_port, fetch, pebble_root_file, secret_file
from pebblectl import Pebble
from tfcommon import (BIN, Backend, bound, check, finish, http_handler, start_tlsfront,
                      tmpdir, wait_until)

TOKEN = "full-disk-token-0123456789abcdef"
NOSPACE = "no space left on device"

mnt = tmpdir()
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tfdisk", mnt], check=True)
# Lazily: a process of ours may still hold a file there; the namespace ends with us anyway.
atexit.register(lambda: subprocess.run(["umount", "-l", mnt]))
storage = os.path.join(mnt, "store")
filler = os.path.join(mnt, "filler")
PAGE = os.statvfs(mnt).f_frsize


def free_pages():
    return os.statvfs(mnt).f_bavail


def leave_free(pages):
    """Resize the filler so that exactly pages pages of the tmpfs are free (None: empty it).
    Waits first until no order lock is held (a lease file takes a page while an order
    runs)."""
    wait_until(lambda: not lock_files(), timeout=30)
    with open(filler, "wb"):
        pass
    if pages is None:
        return True
    n = free_pages() - pages
    if n > 0:
        fd = os.open(filler, os.O_WRONLY)
        try:
            os.posix_fallocate(fd, 0, n * PAGE)
        finally:
            os.close(fd)
    return free_pages() == pages


def lock_files():
    d = os.path.join(storage, ".locks")
    return [f for f in os.listdir(d) if f.endswith(".lock")] if os.path.isdir(d) else []


def leaf_and_key(d):
    """The leaf of d/cert.pem and the key of d/key.pem (either may raise)."""
    with open(os.path.join(d, "cert.pem"), "rb") as f:
        leaf = x509.load_pem_x509_certificate(f.read())  # the leaf: first
    with open(os.path.join(d, "key.pem"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    return leaf, key


def spki(pub):
    return pub.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_problems(name, d, files):
    """What is wrong with the stored certificate of name in directory d."""
    if files != {"key.pem", "cert.pem", "meta.json"}:
        return ["certs/%s incomplete: %s" % (name, sorted(files))]
    try:
        leaf, key = leaf_and_key(d)
        with open(os.path.join(d, "meta.json")) as f:
            meta = json.load(f)
    except (ValueError, OSError) as e:
        return ["certs/%s unreadable: %s" % (name, e)]
    out = []
    if spki(leaf.public_key()) != spki(key.public_key()):
        out.append("certs/%s: key.pem does not match the leaf of cert.pem" % name)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    if name not in sans.get_values_for_type(x509.DNSName):
        out.append("certs/%s: the leaf does not cover the name" % name)
    if meta.get("name") != name or meta.get("serial", "").lower().lstrip("0") != \
            "%x" % leaf.serial_number:
        out.append("certs/%s: meta.json does not describe cert.pem (%s)" % (name, meta))
    return out


def storage_problems():
    """Everything in the storage that is not whole: temp files, empty files, key files not
    0600, certificates without all three files or with a key that is not the leaf's, account
    keys that do not parse."""
    out = []
    for dp, _, fns in os.walk(storage):
        for fn in fns:
            p = os.path.join(dp, fn)
            rel = os.path.relpath(p, storage)
            st = os.lstat(p)
            if ".tmp." in fn or fn.startswith(".probe."):
                out.append("temp file left: " + rel)
            elif st.st_size == 0 and rel != os.path.join(".locks", ".guard"):
                out.append("empty file: " + rel)
            if fn in ("key.pem", "account.key") and st.st_mode & 0o777 != 0o600:
                out.append("%s mode %o" % (rel, st.st_mode & 0o777))
            if fn == "account.key":
                try:
                    with open(p, "rb") as f:
                        serialization.load_pem_private_key(f.read(), None)
                except ValueError as e:
                    out.append("%s does not parse: %s" % (rel, e))
    certs = os.path.join(storage, "certs")
    for name in sorted(os.listdir(certs)) if os.path.isdir(certs) else []:
        d = os.path.join(certs, name)
        files = set(os.listdir(d))
        if files:  # an empty directory is nothing stored
            out += cert_problems(name, d, files)
    return out


def stored_names():
    certs = os.path.join(storage, "certs")
    return sorted(n for n in (os.listdir(certs) if os.path.isdir(certs) else [])
                  if os.listdir(os.path.join(certs, n)))


def stored_serial(name):
    return leaf_and_key(os.path.join(storage, "certs", name))[0].serial_number


backend = Backend(http_handler(b"backend says hi"))
peb = Pebble()
tokf = secret_file(TOKEN)
args = peb.tlsfront_args(storage) + [
    "--allow", "*.disk.test", "--backend", backend.addr, "--workers", "2",
    "--admin", "127.0.0.1:0", "--admin-token-file", tokf, "--backoff-base", "1h",
    # A long lease: no renewal of the order lock (one more page) inside a test step.
    "--storage-lease", "10m"]
# --- no room at all at start-up: the start stops with the storage named ------------------
check(leave_free(0), "disk full before the start (%d pages free)" % free_pages())
tf0, _ = start_tlsfront(args, wait=False, name="tlsfront-no-room")
tf0.graceful = False
check(tf0.wait(30) == 2 and re.search(r"storage %s: not writable: No space left on device"
                                      % re.escape(storage), tf0.stderr_text()),
      "a full storage at start-up: exit 2, one line naming it (%s)" % tf0.stderr_text().strip())
leave_free(None)

tf, port = start_tlsfront(args)
peb.start(port)
aport = admin_port(tf)
rootf = pebble_root_file(peb)


def admin(method, path):
    return admin_call(TOKEN, aport, method, path)


def served(name, p=None):
    """(serial, reply) of one verified connection for name."""
    return fetch(rootf, p or port, name, timeout=bound(60))


def refusal(name):
    """The TLS error of a refused handshake for name, or None when it was served."""
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=bound(60))
    try:
        with c.wrap_socket(raw, server_hostname=name):
            return None
    except ssl.SSLError as e:
        return str(e)
    except OSError as e:
        return "closed: %s" % e


def accounts():
    return len(re.findall(r"POST /sign-me-up", peb.log()))


def log_has(pattern):
    return re.search(pattern, tf.stderr_text(), re.I) is not None


class KeepAlive:
    """One TLS connection kept open across the test's events, one request at a time."""

    def __init__(self, name):
        c = ssl.create_default_context(cafile=rootf)
        raw = socket.create_connection(("127.0.0.1", port), timeout=bound(30))
        self.s = c.wrap_socket(raw, server_hostname=name)
        self.name = name
        self.buf = b""

    def get(self, path):
        try:
            self.s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path.encode(),
                                                                      self.name.encode()))
            while b"\r\n\r\n" not in self.buf:
                d = self.s.recv(65536)
                if not d:
                    return b""
                self.buf += d
            head, rest = self.buf.split(b"\r\n\r\n", 1)
            n = int(re.search(rb"content-length: *(\d+)", head, re.I).group(1))
            while len(rest) < n:
                d = self.s.recv(65536)
                if not d:
                    return b""
                rest += d
            self.buf = rest[n:]
            return rest[:n]
        except OSError:
            return b""


def still_fine(what, ka):
    """The process is up, the stored name served on a new connection and on ka, the storage
    whole."""
    check(tf.p.poll() is None, "%s: tlsfront still running" % what)
    try:
        serial, reply = served("first.disk.test")
    except (OSError, ssl.SSLError) as e:
        serial, reply = None, repr(e).encode()
    check(b"backend says hi path=/" in reply,
          "%s: the stored name is served on a new connection (%s)" % (what, reply[:60]))
    body = ka.get("/" + what.replace(" ", "-"))
    check(b"backend says hi" in body,
          "%s: the keep-alive connection opened before still answers (%s)" % (what, body[:60]))
    probs = storage_problems()
    check(not probs, "%s: nothing half written in the storage (%s)" % (what, probs))


# --- the first order: the account key cannot be saved --------------------------------------
check(leave_free(1), "1 page free (%d)" % free_pages())
r = refusal("first.disk.test")
check(r is not None, "no room for the account key: the first handshake is refused (%s)" % r)
check(log_has(r"account\.key: %s" % NOSPACE),
      "the log names the account key and the full disk")
check(accounts() == 0 and peb.orders() == 0,
      "the CA saw no newAccount and no order (%d, %d)" % (accounts(), peb.orders()))
acct = [f for _, _, fns in os.walk(storage) for f in fns if f.startswith("account")]
check(not acct and not storage_problems(),
      "no account file, nothing half written (%s, %s)" % (acct, storage_problems()))
st, doc = admin("GET", "/certs/first.disk.test")
err = (doc.get("last_error") or {}).get("reason", "") if st == 200 else ""
check(NOSPACE in err, "GET /certs/NAME shows the storage error (%d %s)" % (st, doc))

# --- room again: unpause, the name is obtained and served (the baseline) -------------------
leave_free(None)
st, doc = admin("POST", "/certs/first.disk.test/unpause")
check(st == 200 and doc.get("backoff_cleared"), "unpaused (%d %s)" % (st, doc))
serial, reply = served("first.disk.test")
check(b"backend says hi path=/" in reply and peb.orders() == 1 and accounts() == 1,
      "with room: the name is obtained (one account, one order) and served")
check(stored_names() == ["first.disk.test"] and stored_serial("first.disk.test") == serial,
      "and stored in full: the certificate served is the one stored")
check(not storage_problems(), "storage whole (%s)" % storage_problems())
ka = KeepAlive("first.disk.test")
check(b"backend says hi" in ka.get("/ka-before"), "a keep-alive connection answers")

# --- no page free: a new name's order cannot take its lock ----------------------------------
check(leave_free(0), "disk full (%d pages free)" % free_pages())
orders = peb.orders()
r = refusal("full.disk.test")
check(r is not None and "INTERNAL ERROR" in r.upper().replace("_", " "),
      "disk full: the new name's handshake is refused with internal_error (%s)" % r)
check(log_has(r"name=full\.disk\.test.*order lock: %s" % NOSPACE),
      "the log says the order lock could not be stored: %s" % NOSPACE)
check(peb.orders() == orders, "no order at the CA")
still_fine("disk full", ka)

# --- a new name's certificate that cannot be stored in full ---------------------------------


def not_stored(pages, name, what, orders_before):
    """With pages pages free, name's first handshake: the order runs, its files cannot all be
    stored (what); served from memory, nothing left in the storage for it. Its serial."""
    check(leave_free(pages), "%d pages free (%d)" % (pages, free_pages()))
    serial, reply = served(name)
    check(b"backend says hi path=/" in reply and peb.orders() == orders_before + 1,
          "%s: the certificate is obtained and served from memory" % what)
    check(log_has(r"name=%s certificate not stored: %s" % (re.escape(name), NOSPACE)),
          "%s: the log says the certificate was not stored: %s" % (what, NOSPACE))
    check(name not in stored_names(), "%s: nothing left stored for %s (%s)"
          % (what, name, stored_names()))
    still_fine(what, ka)
    return serial


# 1 page: the lock takes it, the key cannot be written.
serial_one = not_stored(1, "one.disk.test", "key not stored", orders)
# 2 pages: the key is written, the chain cannot be (no key may stay alone).
serial_two = not_stored(2, "two.disk.test", "chain not stored", orders + 1)
# 3 pages: key and chain are written, the metadata cannot be (if the chain ever took two
# pages, this is the chain case again: the checks still hold).
serial_three = not_stored(3, "three.disk.test", "metadata not stored", orders + 2)

# --- a renewal with 1 page: the lock takes it, the new key cannot be written ----------------
# (On a filesystem that counts pages, a renewal frees each old file's page as its new one
# replaces it: the key written and then the chain refused happens to a new name above, and
# to a renewal in tests/unit/acme/test_acme_store.c.)
check(leave_free(1), "1 page free (%d)" % free_pages())
old = serial
st, doc = admin("POST", "/certs/first.disk.test/renew")
check(st == 202, "renewal started (%d %s)" % (st, doc))
serial = wait_until(lambda: served("first.disk.test")[0] != old and served("first.disk.test")[0],
                    timeout=60)
check(serial and serial != old and peb.orders() == orders + 4,
      "the renewed certificate is served from memory")
wait_until(lambda: not lock_files(), timeout=30)
check(log_has(r"name=first\.disk\.test certificate not stored: %s" % NOSPACE),
      "the log says the renewed certificate was not stored")
check("first.disk.test" in stored_names() and stored_serial("first.disk.test") == old,
      "the storage keeps the old certificate whole (%s)" % stored_names())
still_fine("renewal not stored", ka)

# --- space freed: everything is obtained again and stored in full ---------------------------
leave_free(None)
st, doc = admin("POST", "/certs/full.disk.test/unpause")
check(st == 200, "the refused name unpaused (%d %s)" % (st, doc))
serial_full, reply = served("full.disk.test")
check(b"backend says hi path=/" in reply, "the refused name is obtained and served")
names = ["first.disk.test", "full.disk.test", "one.disk.test", "three.disk.test",
         "two.disk.test"]
memory = {"first.disk.test": serial, "one.disk.test": serial_one, "two.disk.test": serial_two,
          "three.disk.test": serial_three}
for n, s in sorted(memory.items()):
    st, doc = admin("POST", "/certs/%s/renew" % n)
    check(st == 202, "%s: renewal started to store it (%d %s)" % (n, st, doc))
    got = wait_until(lambda: served(n)[0] != s, timeout=60)
    wait_until(lambda: not lock_files(), timeout=30)
    check(got and n in stored_names() and stored_serial(n) == served(n)[0],
          "%s: renewed with room, stored in full" % n)
wait_until(lambda: not lock_files(), timeout=30)
check(stored_names() == names, "all names stored (%s)" % stored_names())
check(not storage_problems(), "storage whole (%s)" % storage_problems())
for n in names:
    check(served(n)[0] == stored_serial(n), "%s: the stored certificate is the one served" % n)
check(b"backend says hi" in ka.get("/ka-after"), "the keep-alive connection still answers")
ka.s.close()
check(tf.p.poll() is None, "tlsfront never stopped")

# --- restart on the same storage: everything from storage, no order -------------------------
orders = peb.orders()
tf.signal(15)
check(tf.wait(30) == 0, "SIGTERM exits 0")
tf2, port2 = start_tlsfront(peb.tlsfront_args(storage) + [
    "--listen", "127.0.0.1:%d" % port, "--allow", "*.disk.test", "--backend", backend.addr],
    name="tlsfront-restart")
for n in names:
    s, reply = served(n, port2)
    check(b"backend says hi" in reply and s == stored_serial(n),
          "after a restart %s is served from storage" % n)
check(peb.orders() == orders, "no new order after the restart (%d)" % (peb.orders() - orders))
out = subprocess.run([BIN, "certs", "--storage", storage], capture_output=True, text=True)
listed = [n for n in names if re.search(r"^%s\s" % re.escape(n), out.stdout, re.M)]
check(out.returncode == 0 and listed == names and "ERROR" not in out.stdout,
      "tlsfront certs lists every name, none in error (%s)" % (out.stdout + out.stderr).strip())
finish()
