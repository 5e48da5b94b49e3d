"""servers.py: start and stop the terminators bench.py compares, each on loopback with one
worker/thread, pinned to core 0, forwarding to the plaintext backend. Every process started
here is recorded and stopped by PID (never by name)."""
import os
import signal
import socket
import subprocess
import time

SERVER_CORE = "0"
CLIENT_CORE = "1"
SUITE = "TLS_AES_128_GCM_SHA256"

_started = []  # every Popen made here, stopped by stop_all()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, timeout=60.0):
    """Wait until 127.0.0.1:port accepts; returns seconds waited. Fails if proc exits."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (proc.args[2:4], proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return time.monotonic() - t0
        except OSError:
            time.sleep(0.005)
    raise RuntimeError("port %d did not open within %.0f s" % (port, timeout))


def spawn(argv, log, env=None, core=SERVER_CORE):
    e = dict(os.environ)
    if env:
        e.update(env)
    f = open(log, "ab")
    p = subprocess.Popen(["taskset", "-c", core] + argv, stdout=f, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, env=e)
    f.close()
    _started.append(p)
    return p


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def stop(proc, timeout=10.0):
    if proc.poll() is None:
        kids = children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        for k in kids:  # workers of a master that did not take them down
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if proc in _started:
        _started.remove(proc)


def stop_all():
    for p in list(_started):
        stop(p)


class Server:
    """One running terminator: .port, .pids (all its processes), .proc (to stop)."""

    def __init__(self, name, proc, port, startup):
        self.name = name
        self.proc = proc
        self.port = port
        self.startup = startup
        pids = [proc.pid]
        deadline = time.monotonic() + 5
        # masters fork their workers after the port opens (nginx, hitch): wait for them
        while (name.startswith("nginx") or name == "hitch") and len(pids) < 2 and \
                time.monotonic() < deadline:
            time.sleep(0.02)
            pids = [proc.pid] + children(proc.pid)
        self.pids = pids

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        stop(self.proc)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def start_tlsfront(w, name, certdir, backend, workers=1, extra=(), port=None, mode="tcp"):
    """mode="http": the backend in mode=http, with the default backend keep-alive pool."""
    port = port or free_port()
    argv = [w.tlsfront, "--listen", "127.0.0.1:%d" % port,
            "--backend", "127.0.0.1:%d%s" % (backend, ",mode=http" if mode == "http" else ""),
            "--workers", str(workers), "--log-level", "warn", "--idle-timeout", "10m",
            "--max-connections", "12000", "--access-log", "off"]
    if certdir:
        argv += ["--certs", certdir]
    argv += list(extra)
    t0 = time.monotonic()
    # access log off, as the peers' logs are
    with open(os.devnull, "wb") as null:
        e = dict(os.environ)
        p = subprocess.Popen(["taskset", "-c", SERVER_CORE] + argv, stdout=null,
                             stderr=open(os.path.join(w.dir, name + ".log"), "ab"),
                             stdin=subprocess.DEVNULL, env=e)
    _started.append(p)
    wait_port(port, p)
    return Server(name, p, port, time.monotonic() - t0)


def start_haproxy(w, name, pem, backend, crt_list=None, port=None, threads=1, core=SERVER_CORE):
    port = port or free_port()
    crt = "crt-list %s" % crt_list if crt_list else "crt %s" % pem
    cfg = _write(os.path.join(w.dir, name + ".cfg"), """global
  nbthread %d
  maxconn 8000
  ssl-default-bind-ciphersuites %s
  ssl-default-bind-options ssl-min-ver TLSv1.3
  tune.ssl.default-dh-param 2048
defaults
  mode tcp
  timeout connect 5s
  timeout client 600s
  timeout server 600s
frontend fe
  bind 127.0.0.1:%d ssl %s alpn http/1.1
  default_backend be
backend be
  server s1 127.0.0.1:%d
""" % (threads, SUITE, port, crt, backend))
    t0 = time.monotonic()
    p = spawn(["haproxy", "-db", "-f", cfg], os.path.join(w.dir, name + ".log"), core=core)
    wait_port(port, p, timeout=600)
    return Server(name, p, port, time.monotonic() - t0)


def start_hitch(w, name, pem, backend):
    port = free_port()
    cfg = _write(os.path.join(w.dir, name + ".conf"), """frontend = "[127.0.0.1]:%d"
backend = "[127.0.0.1]:%d"
pem-file = "%s"
workers = 1
tls-protos = TLSv1.3
ciphersuites = "%s"
alpn-protos = "http/1.1"
daemon = off
backlog = 4096
syslog = off
log-level = 1
user = "nobody"
group = "nogroup"
""" % (port, backend, pem, SUITE))
    t0 = time.monotonic()
    p = spawn(["hitch", "--config", cfg], os.path.join(w.dir, name + ".log"))
    wait_port(port, p)
    return Server(name, p, port, time.monotonic() - t0)


_NGINX_HTTP = """
http {
  access_log off;
  client_body_temp_path %(d)s/ngx-body; proxy_temp_path %(d)s/ngx-proxy;
  fastcgi_temp_path %(d)s/ngx-fcgi; uwsgi_temp_path %(d)s/ngx-uwsgi; scgi_temp_path %(d)s/ngx-scgi;
  upstream b { server 127.0.0.1:%(backend)d; %(keepalive)s }
  keepalive_requests 1000000; keepalive_timeout 600s;
  server {
    listen 127.0.0.1:%(port)d ssl;
    ssl_certificate %(crt)s; ssl_certificate_key %(key)s;
    ssl_protocols TLSv1.3; ssl_conf_command Ciphersuites %(suite)s;
    client_max_body_size 0;
    location / {
      proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering off; proxy_request_buffering off;
    }
  }
}
"""

_NGINX_STREAM = """
stream {
  server {
    listen 127.0.0.1:%(port)d ssl;
    ssl_certificate %(crt)s; ssl_certificate_key %(key)s;
    ssl_protocols TLSv1.3; ssl_conf_command Ciphersuites %(suite)s;
    proxy_pass 127.0.0.1:%(backend)d; proxy_timeout 600s;
  }
}
"""


def start_nginx(w, name, crt, key, backend, stream=False, keepalive=True, workers=1,
                core=SERVER_CORE):
    """keepalive=False: nginx http without upstream keepalive (a backend connection per
    client connection, as a TCP forwarder makes). workers: worker_processes."""
    port = free_port()
    d = os.path.join(w.dir, name)
    os.makedirs(d, exist_ok=True)
    v = {"d": d, "port": port, "backend": backend, "crt": crt, "key": key, "suite": SUITE,
         "keepalive": "keepalive 64;" if keepalive else ""}
    body = (_NGINX_STREAM if stream else _NGINX_HTTP) % v
    mods = os.environ.get("TLSFRONT_NGINX_MODULES", "/usr/lib/nginx/modules")  # device.sh
    load = "load_module %s/ngx_stream_module.so;\n" % mods if stream else ""
    cfg = _write(os.path.join(d, "nginx.conf"), load + """daemon off;
master_process on;
user root;
worker_processes %d;
worker_rlimit_nofile 19000;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 12000; }
""" % (workers, d, d) + body)
    t0 = time.monotonic()
    p = spawn(["nginx", "-p", d, "-c", cfg], os.path.join(w.dir, name + ".log"), core=core)
    wait_port(port, p)
    return Server(name, p, port, time.monotonic() - t0)


def start_caddy(w, name, crt, key, backend, port=None, ondemand=None):
    """ondemand: dict(directory=, ca=, ask_port=, site=) for Caddy's on-demand TLS for the
    names matching site (e.g. *.od.test)."""
    port = port or free_port()
    d = os.path.join(w.dir, name)
    os.makedirs(d, exist_ok=True)
    if ondemand:
        tls = """tls {
      on_demand
      issuer acme {
        dir %s
        trusted_roots %s
        disable_http_challenge
      }
    }""" % (ondemand["directory"], ondemand["ca"])
        glob = "on_demand_tls {\n    ask http://127.0.0.1:%d/\n  }\n  ocsp_stapling off\n" % \
            ondemand["ask_port"]
    else:
        tls = "tls %s %s {\n      protocols tls1.3\n    }" % (crt, key)
        glob = ""
    cfg = _write(os.path.join(d, "Caddyfile"), """{
  admin off
  auto_https disable_redirects
  storage file_system %s/storage
  %s
}
%s:%d {
  bind 127.0.0.1
  %s
  reverse_proxy 127.0.0.1:%d {
    flush_interval -1
  }
}
""" % (d, glob, "https://" + ondemand["site"] if ondemand else "https://", port, tls, backend))
    env = {"GOMAXPROCS": "1", "HOME": d, "XDG_DATA_HOME": d, "XDG_CONFIG_HOME": d}
    t0 = time.monotonic()
    p = spawn(["caddy", "run", "--adapter", "caddyfile", "--config", cfg],
              os.path.join(w.dir, name + ".log"), env=env)
    wait_port(port, p)
    return Server(name, p, port, time.monotonic() - t0)
