"""--check does what a start does short of listening: it loads the certificate directory
(a corrupt PEM fails it, exit 2 with one "tlsfront:" line), reads --acme-ca, opens the
storage when on-demand issuance is on (a storage path under a regular file fails it), reads
--webhook-secret-file and --webhook-ca (empty or without a certificate: exit 2), and
binds no port (it passes on an address another socket listens on, where a start exits 2)."""
import os
import socket
import subprocess

from tfcommon import BIN, check, finish, make_certs, tmpdir

certs = make_certs()
d = tmpdir()


def run_check(args):
    p = subprocess.run([BIN, "--check", "--backend", "127.0.0.1:9", "--workers", "1"] + args,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                       stdin=subprocess.DEVNULL)
    err = p.stderr.decode("utf-8", "replace")
    lines = [l for l in err.splitlines() if l.startswith("tlsfront:")]
    return p.returncode, p.stdout.decode(), err, lines


# An address something already listens on: --check must not try it.
held = socket.socket()
held.bind(("127.0.0.1", 0))
held.listen(1)
held_addr = "127.0.0.1:%d" % held.getsockname()[1]

storage = os.path.join(d, "storage")
rc, out, err, lines = run_check(["--certs", certs, "--listen", held_addr, "--allow",
                                 "*.example.test", "--storage", storage])
check(rc == 0 and "configuration ok" in out,
      "good config passes (rc=%s, stderr=%r)" % (rc, err[-300:]))
check(os.path.isdir(storage), "the storage directory was created as a start creates it")
check(not lines, "no error line on a good config")

# A start on that address exits 2 (the check above did not bind it).
p = subprocess.run([BIN, "--backend", "127.0.0.1:9", "--workers", "1", "--certs", certs,
                    "--listen", held_addr], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   timeout=60, stdin=subprocess.DEVNULL)
check(p.returncode == 2 and b"already listens" in p.stderr,
      "a start on the held address exits 2 (rc=%s) where --check passed" % p.returncode)
held.close()

# A corrupt PEM in the certificate directory.
bad = os.path.join(d, "bad-certs")
os.mkdir(bad)
for f in ("example.crt", "example.key"):
    with open(os.path.join(certs, f), "rb") as src, open(os.path.join(bad, f), "wb") as dst:
        dst.write(src.read())
with open(os.path.join(bad, "broken.pem"), "w") as f:
    f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
rc, out, err, lines = run_check(["--certs", bad])
check(rc == 2, "corrupt PEM: exit 2 (rc=%s)" % rc)
check(len(lines) == 1 and lines[0].startswith("tlsfront: --certs " + bad),
      "corrupt PEM: one line naming --certs (%r)" % lines)
check("broken.pem" in err, "corrupt PEM: the bad file is named")

# A storage that cannot be a directory: a path under a regular file (root ignores modes).
plain = os.path.join(d, "plain-file")
open(plain, "w").close()
rc, out, err, lines = run_check(["--certs", certs, "--allow", "*.example.test", "--storage",
                                 os.path.join(plain, "storage")])
check(rc == 2, "unwritable storage: exit 2 (rc=%s)" % rc)
check(len(lines) == 1 and "storage" in lines[0] and "not a directory" in lines[0],
      "unwritable storage: one line naming the storage (%r)" % lines)

# A static-only config never opens the storage (the default directory may not exist).
rc, out, err, lines = run_check(["--certs", certs, "--storage", os.path.join(plain, "x")])
check(rc == 0, "static-only: the storage is not touched (rc=%s)" % rc)

# --acme-ca that holds no certificate.
rc, out, err, lines = run_check(["--certs", certs, "--acme-ca", plain])
check(rc == 2 and len(lines) == 1 and lines[0].startswith("tlsfront: --acme-ca"),
      "empty --acme-ca: exit 2, one line (%r)" % lines)

# Webhook files: an empty secret and a trust anchor without a certificate.
hook = ["--certs", certs, "--webhook", "http://127.0.0.1:9/hook"]
rc, out, err, lines = run_check(hook + ["--webhook-secret-file", plain])
check(rc == 2 and len(lines) == 1 and lines[0].startswith("tlsfront: --webhook-secret-file") and
      "empty" in lines[0], "empty --webhook-secret-file: exit 2, one line (%r)" % lines)
rc, out, err, lines = run_check(hook + ["--webhook-ca", plain])
check(rc == 2 and len(lines) == 1 and lines[0].startswith("tlsfront: --webhook-ca"),
      "--webhook-ca without a certificate: exit 2, one line (%r)" % lines)
secret = os.path.join(d, "webhook.secret")
with open(secret, "w") as f:
    f.write("k3y\n")
rc, out, err, lines = run_check(hook + ["--webhook-secret-file", secret])
check(rc == 0, "a readable --webhook-secret-file passes (rc=%s, %r)" % (rc, lines))

finish()
