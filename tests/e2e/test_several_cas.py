"""Several CAs (--acme-directory repeated) against real pebbles with real TLS-ALPN-01
validation: the first directory is unreachable (a closed port), the second is a pebble whose
validator dials a closed port (every validation fails), the third a working pebble. Each
directory has its own ca= trust anchor (every pebble has its own HTTPS CA). A name asked for
once is served, in that same handshake, with a certificate from the third CA (verified
against that pebble's root only, issuer checked); the log names each CA that failed and the
next one tried; the failing pebble really saw the order; each CA that answered has its own
account in storage; the stored metadata names the CA that issued; tlsfront_ca_orders_total
counts per CA. A second name goes the same way (the first CAs' failures did not back it
off), and a restart serves both from storage with no new order anywhere, the admin API's
detail of a name naming the CA that issued it (read back from the stored metadata)."""
import json
import os
import re
import urllib.request

from cryptography import x509
from cryptography.x509.oid import NameOID

import clusterctl
from pebblectl import Pebble
from tfcommon import (Backend, bound, check, finish, free_port, http_handler, start_tlsfront,
                      tmpdir)

backend = Backend(http_handler(b"backend says hi"))
storage = tmpdir()
failing = Pebble()
good = Pebble()
closed_port = free_port()  # nothing listens there: the unreachable CA
unreachable = "https://127.0.0.1:%d/dir" % closed_port
admin_port = free_port()
args = ["--acme-directory", unreachable + ",ca=" + failing.ca_file,
        "--acme-directory", failing.directory + ",ca=" + failing.ca_file,
        "--acme-directory", good.directory + ",ca=" + good.ca_file,
        "--storage", storage, "--acme-email", "ops@example.test",
        "--allow", "*.multi.test", "--backend", backend.addr, "--workers", "2",
        "--hold-timeout", "90s", "--admin", "127.0.0.1:%d" % admin_port]
tf, port = start_tlsfront(args)
failing.start(free_port())  # its validator dials a port nobody listens on
good.start(port)
rootf = os.path.join(tmpdir(), "good-root.pem")
with open(rootf, "w") as f:
    f.write(good.root_pem())
good_issuer = x509.load_pem_x509_certificate(good.intermediate_pem().encode()).subject
good_issuer = good_issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def fetch(name, tf_port=None):
    """One connection verified against the good pebble's root only, one request: (the
    served certificate's serial, the reply)."""
    return clusterctl.fetch(rootf, tf_port or port, name, timeout=bound(120))


def stored(name):
    """The leaf stored for name."""
    with open(os.path.join(storage, "certs", name, "cert.pem"), "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def metrics():
    url = "http://127.0.0.1:%d/metrics" % admin_port
    with urllib.request.urlopen(url, timeout=bound(10)) as r:
        return r.read().decode()


def detail(name, at_port):
    """The admin API's GET /certs/NAME document."""
    url = "http://127.0.0.1:%d/certs/%s" % (at_port, name)
    with urllib.request.urlopen(url, timeout=bound(10)) as r:
        return json.loads(r.read().decode())


def host(url):
    return url.split("://", 1)[1].split("/", 1)[0]


serial, data = fetch("a.multi.test")
check(b"backend says hi" in data, "the name is served in the first handshake after two CAs failed")
leaf = stored("a.multi.test")
issuer = leaf.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
check(leaf.serial_number == serial and issuer == good_issuer,
      "the certificate served is the stored one, from the third CA (issuer %s)" % issuer)
log = tf.stderr_text()
check(re.search(r"name=a\.multi\.test ca=%s not issued \(.*\); trying ca=%s"
                % (re.escape(host(unreachable)), re.escape(host(failing.directory))), log),
      "unreachable CA skipped for the next one, both named in the log")
check(re.search(r"name=a\.multi\.test ca=%s not issued \(.*urn:ietf:params:acme:error:.*\); "
                r"trying ca=%s" % (re.escape(host(failing.directory)),
                                   re.escape(host(good.directory))), log),
      "failing validation at the second CA: its problem logged, the third CA tried")
check(failing.orders() == 1 and good.orders() == 1,
      "the failing pebble got the order (%d), the good one one order (%d)"
      % (failing.orders(), good.orders()))
check("backed off" not in log.split("trying ca=%s" % host(good.directory))[0].split(
    "name=a.multi.test")[-1], "the name did not back off before the last CA")

meta = json.load(open(os.path.join(storage, "certs", "a.multi.test", "meta.json")))
check(meta.get("ca") == good.directory, "stored metadata names the issuing CA (%s)" % meta.get("ca"))
accounts = sorted(d for d in os.listdir(os.path.join(storage, "acme"))
                  if os.path.exists(os.path.join(storage, "acme", d, "account.key")))
check(len(accounts) == 2, "one account per CA that answered (%s)" % accounts)

m = metrics()
for url, result, n in ((unreachable, "failed", 1), (failing.directory, "failed", 1),
                       (good.directory, "ok", 1), (good.directory, "failed", 0)):
    line = 'tlsfront_ca_orders_total{ca="%s",result="%s"} %d' % (host(url), result, n)
    check(line in m, "metrics: %s" % line)

# A second name: the earlier CAs' failures for a.multi.test did not back this one off.
serial, data = fetch("b.multi.test")
check(b"backend says hi" in data and good.orders() == 2 and failing.orders() == 2,
      "a second name also falls back to the third CA")

# Restart with the same CAs: both names come from storage, no order anywhere.
tf.signal(15)
check(tf.wait(30) == 0, "SIGTERM exits 0")
admin_port2 = free_port()
tf2, port2 = start_tlsfront(args[:-2] + ["--listen", "127.0.0.1:%d" % port,
                                         "--admin", "127.0.0.1:%d" % admin_port2],
                            name="tlsfront-restart")
for name in ("a.multi.test", "b.multi.test"):
    serial, data = fetch(name, port2)
    check(b"backend says hi" in data and serial == stored(name).serial_number,
          "after a restart %s is served from storage" % name)
check(good.orders() == 2 and failing.orders() == 2, "no new order after the restart")
for name in ("a.multi.test", "b.multi.test"):
    ca = detail(name, admin_port2).get("ca")
    check(ca == good.directory,
          "after a restart the admin detail of %s names the CA that issued it (%s)" % (name, ca))
finish()
