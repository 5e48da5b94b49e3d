"""Debian's pebble (a real ACME CA) and pebble-challtestsrv (its DNS) for the e2e tests,
started on loopback with their own throwaway HTTPS CA, stopped by PID at the end."""
import json
import os
import re
import socket
import ssl
import subprocess
import time
import urllib.request

from tfcommon import Proc, bound, free_port, tmpdir


def _free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Pebble:
    """pebble + challtestsrv. tls_port: where pebble's validator dials for TLS-ALPN-01
    (tlsfront's port); http_port: where it dials for HTTP-01 (default 5002: nothing)."""

    def __init__(self, env=None, always_valid=False):
        self.dir = tmpdir()
        d = self.dir
        mk = os.path.join(os.environ.get("TF_SRC", "."), "certs", "mkcerts.sh")
        subprocess.run(["bash", mk, "leaf", d, "pebble", "localhost,127.0.0.1", "--days", "3"],
                       check=True, capture_output=True)
        self.ca_file = d + "/ca.crt"
        self.port = free_port()
        self.mgmt = free_port()
        self.dns_port = _free_udp_port()
        self.dns_mgmt = free_port()
        self.tls_port = None
        self.http_port = 5002
        self.dns = Proc("challtestsrv", ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1",
                                         "-defaultIPv6", "", "-dns01",
                                         "127.0.0.1:%d" % self.dns_port, "-http01", "",
                                         "-https01", "", "-tlsalpn01", "", "-management",
                                         "127.0.0.1:%d" % self.dns_mgmt])
        self.env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_AUTHZREUSE": "0",
                    "PEBBLE_WFE_NONCEREJECT": "0"}
        if always_valid:
            self.env["PEBBLE_VA_ALWAYS_VALID"] = "1"
        if env:
            self.env.update(env)
        self.proc = None

    def start(self, tls_port=None, http_port=None):
        """Start pebble; its validator dials tls_port (tlsfront's listening port) for
        TLS-ALPN-01 and http_port (tlsfront's --redirect-http port) for HTTP-01."""
        if tls_port:
            self.tls_port = tls_port
        if http_port:
            self.http_port = http_port
        cfg = {"pebble": {"listenAddress": "127.0.0.1:%d" % self.port,
                          "managementListenAddress": "127.0.0.1:%d" % self.mgmt,
                          "certificate": self.dir + "/pebble.crt",
                          "privateKey": self.dir + "/pebble.key",
                          "httpPort": self.http_port, "tlsPort": self.tls_port,
                          "ocspResponderURL": "", "externalAccountBindingRequired": False}}
        path = self.dir + "/pebble.json"
        with open(path, "w") as f:
            json.dump(cfg, f)
        self.proc = Proc("pebble", ["pebble", "-config", path, "-dnsserver",
                                    "127.0.0.1:%d" % self.dns_port], env=self.env)
        deadline = time.time() + bound(20)
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=bound(1)).close()
                return
            except OSError:
                time.sleep(0.05)
        self.proc.dump()
        raise RuntimeError("pebble did not start")

    def stop(self):
        self.proc.stop()

    @property
    def directory(self):
        return "https://127.0.0.1:%d/dir" % self.port

    def _get(self, url):
        ctx = ssl.create_default_context(cafile=self.ca_file)
        with urllib.request.urlopen(url, context=ctx, timeout=bound(10)) as r:
            return r.read()

    def root_pem(self):
        """pebble's issuing root, from its management API."""
        return self._get("https://127.0.0.1:%d/roots/0" % self.mgmt).decode()

    def intermediate_pem(self):
        return self._get("https://127.0.0.1:%d/intermediates/0" % self.mgmt).decode()

    def orders(self):
        """How many orders pebble created (newOrder requests it answered with an order)."""
        return len(re.findall(r"POST /order-plz", self.proc.stdout_text() + self.proc.stderr_text()))

    def log(self):
        return self.proc.stdout_text() + self.proc.stderr_text()

    def set_a(self, host, addr):
        """Point host's A record somewhere else (challtestsrv management API)."""
        body = json.dumps({"host": host, "addresses": [addr]}).encode()
        req = urllib.request.Request("http://127.0.0.1:%d/add-a" % self.dns_mgmt, data=body)
        urllib.request.urlopen(req, timeout=bound(10)).read()

    def tlsfront_args(self, storage):
        return ["--acme-directory", self.directory, "--acme-ca", self.ca_file,
                "--storage", storage, "--acme-email", "ops@example.test"]
