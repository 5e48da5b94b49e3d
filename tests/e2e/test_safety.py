"""Safety rails of the binary: a misspelt TLSFRONT_* variable is warned about with a
did-you-mean and a leftover TLSFRONT_CHECK does not turn the service into a config check that
exits 0 at once; SIGUSR1 drains and stops like SIGTERM; common config slips exit 2 with one
line that says what to type; binding a port below 1024 without CAP_NET_BIND_SERVICE says how
to get it (root here drops the capability with setpriv)."""
import os
import shutil
import signal
import socket
import subprocess

from tfcommon import (BIN, Backend, check, client_ctx, echo_handler, finish, make_certs,
                      start_tlsfront, tls_connect, wait_until)

certs = make_certs()
ctx = client_ctx(certs)
echo = Backend(echo_handler)

# A misspelt variable and a leftover TLSFRONT_CHECK: the service runs, and says why they did
# nothing.
tf, port = start_tlsfront(["--certs", certs, "--backend", echo.addr, "--workers", "1",
                           "--grace", "20s"],
                          env={"TLSFRONT_ROUTES": "x.example.test=127.0.0.1:1",
                               "TLSFRONT_CHECK": "1"},
                          wait=False)
m = tf.wait_for(r"listening on [^ ]*:(\d+)", timeout=30)
check(m is not None and tf.p.poll() is None,
      "TLSFRONT_CHECK=1 in the environment: the service starts and keeps running")
port = int(m.group(1)) if m else 0
err = tf.stderr_text()
check("TLSFRONT_ROUTES: unknown variable, ignored (did you mean TLSFRONT_ROUTE?)" in err,
      "misspelt TLSFRONT_ROUTES warned about with a did-you-mean")
check("TLSFRONT_CHECK: --check is a command-line flag only" in err,
      "TLSFRONT_CHECK warned about as a flag-only option")

# SIGUSR1: HAProxy's graceful stop, the same drain as SIGTERM.
live = tls_connect(port, "example.test", ctx)
live.sendall(b"before\n")
check(live.recv(100) == b"before\n", "connection established before SIGUSR1")
tf.signal(signal.SIGUSR1)
check(tf.wait_for(r"SIGUSR1: draining", 10) is not None, "SIGUSR1: draining logged")


def refused():
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


check(wait_until(refused, 10), "SIGUSR1: new connections refused")
live.sendall(b"during drain\n")
check(live.recv(100) == b"during drain\n", "SIGUSR1: open connection still served")
check(tf.p.poll() is None, "SIGUSR1: process waits for the open connection")
live.close()
rc = tf.wait(20)
check(rc == 0, "SIGUSR1: exit 0 once the last connection closed (rc=%s)" % rc)

# Config slips: exit 2, one line naming the flag and saying what to type instead.
cases = [
    (["--listen", "443"], 'did you mean ":443"?'),
    (["--listen", "localhost:8443"], '"127.0.0.1:8443" for loopback'),
    (["--backend", "http://app:8080"], 'drop the scheme'),
    (["--allow", "*.*.example.com"], 'a wildcard is only "*." at the start'),
    (["--allow", "shop_1.example.com"], "'_' is not allowed"),
]
for args, needle in cases:
    a = [BIN, "--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1"] + args
    r = subprocess.run(a, capture_output=True, timeout=20)
    lines = [l for l in r.stderr.decode().splitlines() if l.strip()]
    check(r.returncode == 2 and len(lines) == 1 and args[0] in lines[0] and needle in lines[0],
          "%s %s -> exit 2, one line with the hint (rc=%d: %s)" % (args[0], args[1], r.returncode,
                                                                   lines[:2]))

# A port below 1024 without CAP_NET_BIND_SERVICE. As root, drop the capability from the
# bounding set so the exec'd binary lacks it; as another user, it lacks it anyway.
cmd = [BIN, "--listen", "127.0.0.1:1", "--backend", "127.0.0.1:1", "--workers", "1"]
if os.geteuid() == 0:
    setpriv = shutil.which("setpriv")
    probe = subprocess.run([setpriv, "--bounding-set=-net_bind_service", "true"],
                           capture_output=True) if setpriv else None
    if probe is None or probe.returncode != 0:
        cmd = None
        print("skip bind EACCES: cannot drop CAP_NET_BIND_SERVICE here (setpriv %s)"
              % ("missing" if not setpriv else probe.stderr.decode().strip()), flush=True)
    else:
        cmd = [setpriv, "--bounding-set=-net_bind_service"] + cmd
if cmd:
    r = subprocess.run(cmd, capture_output=True, timeout=20)
    err = r.stderr.decode()
    check(r.returncode == 2 and "--listen 127.0.0.1:1: Permission denied" in err
          and "CAP_NET_BIND_SERVICE" in err,
          "bind EACCES on a port below 1024 names --listen and CAP_NET_BIND_SERVICE (rc=%d: %s)"
          % (r.returncode, err.strip()[-300:]))
finish()
