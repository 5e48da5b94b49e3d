"""--env-file: TLSFRONT_* lines read at start and at every SIGHUP, above the environment and
below flags. A reload applies a changed backend from the file; a changed --admin is not
applied but logged as "needs a restart: --admin"; a broken file keeps the running config
and says which line; a bad line at start exits 2 with one line."""
import os
import signal
import subprocess
import time

from tfcommon import (BIN, Backend, check, client_ctx, finish, free_port, http_handler,
                      make_certs, start_tlsfront, tls_connect, tmpdir)

certs = make_certs()
ctx = client_ctx(certs)
one = Backend(http_handler(b"one"))
two = Backend(http_handler(b"two"))
env_backend = Backend(http_handler(b"environment"))
d = tmpdir()
envfile = os.path.join(d, "tlsfront.env")


def write_env(text):
    tmp = envfile + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, envfile)


def who_answers():
    s = tls_connect(port, "example.test", ctx)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        return data.split(b"\r\n\r\n", 1)[-1].split(b" ")[0].decode()
    finally:
        s.close()


def hup_and_wait(pattern):
    before = len(tf.stderr_text())
    tf.signal(signal.SIGHUP)
    deadline = time.time() + 20
    while time.time() < deadline:
        text = tf.stderr_text()[before:]
        if pattern in text:
            return text
        time.sleep(0.02)
    return None


write_env("# tlsfront settings\n\nTLSFRONT_BACKEND=%s\nexport TLSFRONT_LOG_LEVEL=\"info\"\n"
          % one.addr)
tf, port = start_tlsfront(["--certs", certs, "--env-file", envfile, "--workers", "1"],
                          env={"TLSFRONT_BACKEND": env_backend.addr})
check(who_answers() == "one", "the env file's backend beats the environment's")

write_env("TLSFRONT_BACKEND=%s\n" % two.addr)
text = hup_and_wait("reloaded:")
check(text is not None and "needs a restart" not in text, "SIGHUP reloads the env file")
check(who_answers() == "two", "the changed backend is applied after SIGHUP")

admin_port = free_port()
write_env("TLSFRONT_BACKEND=%s\nTLSFRONT_ADMIN=127.0.0.1:%d\n" % (two.addr, admin_port))
text = hup_and_wait("reloaded:")
check(text is not None and "needs a restart: --admin" in text,
      "a changed --admin is logged as needing a restart (%r)" % (text or "")[-300:])
check(who_answers() == "two", "still served after the restart-only change")

write_env("TLSFRONT_BACKEND=%s\nthis line has no equals sign\n" % one.addr)
text = hup_and_wait("reload failed")
check(text is not None and "tlsfront.env:2:" in text,
      "a broken env file keeps the running config and names the line (%r)" % (text or "")[-300:])
check(who_answers() == "two", "the running config stays after a failed reload")

# A flag beats the env file.
write_env("TLSFRONT_BACKEND=%s\n" % one.addr)
p = subprocess.run([BIN, "--check", "--env-file", envfile, "--backend", "x"],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
check(p.returncode == 2 and p.stderr.startswith(b"tlsfront: --backend"),
      "a flag is applied over the env file's value (its error names the flag)")

# A bad env file at start: exit 2, one line.
bad = os.path.join(d, "bad.env")
with open(bad, "w") as f:
    f.write("TLSFRONT_BACKEND=%s\nTLSFRONT_IDLE_TIMEOUT=soon\n" % one.addr)
p = subprocess.run([BIN, "--check", "--env-file", bad], stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, timeout=30)
lines = p.stderr.decode().splitlines()
check(p.returncode == 2 and len(lines) == 1 and "bad.env: TLSFRONT_IDLE_TIMEOUT" in lines[0],
      "bad value in the env file: exit 2, one line naming file and variable (%r)" % lines)
p = subprocess.run([BIN, "--check", "--env-file", os.path.join(d, "missing.env"), "--backend",
                    one.addr], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
check(p.returncode == 2 and b"--env-file" in p.stderr, "missing env file: exit 2")
finish()
