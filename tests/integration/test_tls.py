#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""TLS end to end, with certificates made at test time by certtool (gnutls-bin).

Termination: curl and gnutls-cli against proxyd's TLS listeners ($scheme is
https, ALPN h2 preferred over http/1.1, close_notify sent), certificate choice by SNI (exact,
wildcard, unknown name and no SNI get the first certificate), the protocol
surface (TLS 1.0/1.1, CBC-only, RSA and DHE key exchange refused; TLS 1.3 and
TLS 1.2 ECDHE-RSA/ECDHE-ECDSA with AES-GCM accepted; client renegotiation
refused), session resumption (TLS 1.2 and 1.3 tickets, gnutls-cli --resume and
openssl s_client -sess_out/-sess_in, the TLS 1.3 resumption keeping ECDHE),
client certificates (verify_client "on" and "optional", $ssl_client_s_dn).

HTTPS upstreams (python ssl backends): verified with ssl_trusted_certificate
and SNI, untrusted / wrong name -> 502 with the reason in the log,
ssl_verify = false (and the -t warning), ssl_server_name = false (no SNI),
kept-alive TLS upstream connections, TLS session resumption to the upstream,
a client certificate to the upstream.

Keys through $CREDENTIALS_DIRECTORY (%d/), reload (SIGHUP) re-reading the
certificates and keeping the old ones when the new pair is broken, -t checks
(expiring certificate warning, mismatched key, priority string position),
WebSocket over TLS, and the header deadline covering the handshake."""

import asyncio
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, Proxyd, Reply, check, check_eq, curl,  # noqa: E402
                     free_port, line_number, log, parse_responses,
                     recv_until_close, run_main, run_proxyd, wait_port)

import websockets  # noqa: E402
import websockets.exceptions  # noqa: E402


# --------------------------------------------------------------------------
# tools

def need_tool(name, package):
    if shutil.which(name) is None:
        raise RuntimeError("%s not found (install the Debian package %s)" % (name, package))


def run(argv, timeout=15.0, input=b""):
    """-> (rc, combined output); rc None on timeout."""
    try:
        p = subprocess.run(argv, input=input, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        return None, (e.stdout or b"").decode("utf-8", "replace")


# --------------------------------------------------------------------------
# certificates

class Certs:
    """A CA and the certificates the checks use, in a temp dir:
      ca                  the test CA
      example             example.test + localhost + 127.0.0.1 (RSA), default
      wild                *.wild.test (ECDSA)
      other               other.test (ECDSA)
      expiring            example.test, expires in 5 days
      renewed             example.test, new key, serial 0x77 (reload)
      broken              example.test, serial 0x78 (paired with a wrong key)
      upstream            localhost (ECDSA), for the HTTPS backends
      client              a client certificate (mTLS)
      selfsigned          localhost, self-signed: trusted by nobody
      rogue_client        a client certificate signed by an unknown CA"""

    def __init__(self):
        need_tool("certtool", "gnutls-bin")
        self.dir = tempfile.mkdtemp(prefix="proxyd-tls-")
        self._n = 0
        self.key("ca", "ecdsa")
        self._tmpl("ca", ['cn = "proxyd test CA"', 'organization = "proxyd tests"',
                          "serial = 1", "expiration_days = 30", "ca",
                          "cert_signing_key", "crl_signing_key"])
        self._run(["--generate-self-signed", "--load-privkey", self.k("ca"),
                   "--template", self._t("ca"), "--outfile", self.c("ca")])
        self.server("example", "rsa", "example.test", ["example.test", "localhost"],
                    ["127.0.0.1"], serial=0x10)
        self.server("wild", "ecdsa", "*.wild.test", ["*.wild.test"], [], serial=0x11)
        self.server("other", "ecdsa", "other.test", ["other.test"], [], serial=0x12)
        self.server("expiring", "rsa", "example.test", ["example.test"], [], serial=0x13,
                    days=5)
        self.server("renewed", "ecdsa", "example.test renewed", ["example.test", "localhost"],
                    ["127.0.0.1"], serial=0x77)
        self.server("broken", "ecdsa", "example.test broken", ["example.test", "localhost"],
                    ["127.0.0.1"], serial=0x78)
        self.server("upstream", "ecdsa", "localhost", ["localhost"], ["127.0.0.1"],
                    serial=0x20)
        self.client("client", "proxyd client", serial=0x30)
        # self-signed, not in any trust store
        self.key("selfsigned", "ecdsa")
        self._tmpl("selfsigned", ['cn = "localhost"', 'dns_name = "localhost"',
                                  "serial = 64", "expiration_days = 30", "tls_www_server",
                                  "signing_key", "encryption_key"])
        self._run(["--generate-self-signed", "--load-privkey", self.k("selfsigned"),
                   "--template", self._t("selfsigned"), "--outfile", self.c("selfsigned")])
        # a client certificate from a CA nobody trusts (the self-signed one as CA)
        self.key("rogueca", "ecdsa")
        self._tmpl("rogueca", ['cn = "rogue CA"', "serial = 65", "expiration_days = 30", "ca",
                               "cert_signing_key"])
        self._run(["--generate-self-signed", "--load-privkey", self.k("rogueca"),
                   "--template", self._t("rogueca"), "--outfile", self.c("rogueca")])
        self.client("rogue_client", "rogue client", serial=66, ca="rogueca")

    def k(self, name):
        return os.path.join(self.dir, name + ".key")

    def c(self, name):
        return os.path.join(self.dir, name + ".pem")

    def _t(self, name):
        return os.path.join(self.dir, name + ".tmpl")

    def _tmpl(self, name, lines):
        with open(self._t(name), "w") as f:
            f.write("\n".join(lines) + "\n")

    def _run(self, args):
        rc, out = run(["certtool", "--no-text"] + args, timeout=60)
        if rc != 0:
            raise RuntimeError("certtool %s failed: %s" % (" ".join(args), out))

    def key(self, name, kind):
        if kind == "rsa":
            self._run(["--generate-privkey", "--key-type=rsa", "--bits=2048",
                       "--outfile", self.k(name)])
        else:
            self._run(["--generate-privkey", "--key-type=ecdsa", "--outfile", self.k(name)])

    def _sign(self, name, lines, ca="ca"):
        self._tmpl(name, lines)
        self._run(["--generate-certificate", "--load-privkey", self.k(name),
                   "--load-ca-certificate", self.c(ca), "--load-ca-privkey", self.k(ca),
                   "--template", self._t(name), "--outfile", self.c(name)])

    def server(self, name, kind, cn, dns, ips, serial, days=30):
        self.key(name, kind)
        lines = ['cn = "%s"' % cn, 'organization = "proxyd tests"', "serial = %d" % serial,
                 "expiration_days = %d" % days, "tls_www_server", "signing_key",
                 "encryption_key"]
        lines += ['dns_name = "%s"' % d for d in dns]
        lines += ['ip_address = "%s"' % i for i in ips]
        self._sign(name, lines)

    def client(self, name, cn, serial, ca="ca"):
        self.key(name, "ecdsa")
        self._sign(name, ['cn = "%s"' % cn, 'organization = "proxyd tests"',
                          "serial = %d" % serial, "expiration_days = 30", "tls_www_client",
                          "signing_key"], ca=ca)

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# clients

def gnutls_cli(port, sni=None, priority=None, extra=(), cafile=None, timeout=10.0,
               input=b""):
    """gnutls-cli against 127.0.0.1:port. Without cafile the certificate is not
    verified (--insecure): these probes look at what the server offers.
    -> (rc, output)."""
    argv = ["gnutls-cli", "-p", str(port), "127.0.0.1"]
    if cafile:
        argv += ["--x509cafile", cafile]
    else:
        argv += ["--insecure"]
    if sni:
        argv += ["--sni-hostname", sni]
    if priority:
        argv += ["--priority", priority]
    argv += list(extra)
    return run(argv, timeout=timeout, input=input)


def served_subject(port, sni=None):
    """Subject of the leaf certificate the server sends, or None."""
    rc, out = gnutls_cli(port, sni=sni)
    m = re.search(r"subject `([^']*)'", out)
    return m.group(1) if m else None


def served_serial(port, sni="example.test"):
    rc, out = gnutls_cli(port, sni=sni)
    m = re.search(r"subject `[^']*', issuer `[^']*', serial (0x[0-9a-f]+)", out)
    return m.group(1) if m else None


def handshake_ok(out):
    return "Handshake was completed" in out


def client_context(certs, cert=None, key=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(certs.c("ca"))
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def tls_request(port, certs, target="/", sni="example.test", headers=(), cert=None,
                key=None, timeout=5.0):
    """One HTTP/1.1 request over TLS with Connection: close.
    -> (Response or None, clean_close, error)."""
    ctx = client_context(certs, cert, key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s = ctx.wrap_socket(raw, server_hostname=sni, suppress_ragged_eofs=False)
    except (OSError, ssl.SSLError) as e:
        raw.close()
        return None, False, e
    try:
        req = "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n" % (target, sni)
        req += "".join("%s: %s\r\n" % kv for kv in headers) + "\r\n"
        s.sendall(req.encode("latin-1"))
        data = bytearray()
        clean = False
        err = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except ssl.SSLEOFError as e:  # TCP closed without close_notify
                err = e
                break
            except (OSError, ssl.SSLError) as e:
                err = e
                break
            if not b:
                clean = True  # close_notify received
                break
            data += b
        rs, _ = parse_responses(bytes(data))
        return (rs[0] if rs else None), clean, err
    finally:
        s.close()


# --------------------------------------------------------------------------
# backends

class TlsBackend(Backend):
    """The recording Backend behind TLS (python's ssl). Records per accepted
    connection: the SNI the client sent, whether the session was resumed and
    the client certificate subject; handshake failures in .failures."""

    def __init__(self, cert, key, ca=None, require_client=False, handler=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        if ca:
            ctx.load_verify_locations(ca)
        if require_client:
            ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.sni_callback = self._sni_cb
        self.ctx = ctx
        self.tls = []        # per connection: {"sni":, "reused":, "client":, "version":}
        self.failures = []   # handshake errors
        self._sni_seen = {}  # id(sslsock) -> name
        super().__init__(handler=handler)

    def _sni_cb(self, sslobj, name, ctx):
        self._sni_seen[id(sslobj)] = name
        return None

    def _serve(self, c, cid, peer):
        c.settimeout(5)
        try:
            s = self.ctx.wrap_socket(c, server_side=True)
        except (OSError, ssl.SSLError) as e:
            with self.lock:
                self.failures.append(str(e))
                self._socks.discard(c)
            c.close()
            return
        subj = None
        pc = s.getpeercert()
        if pc:
            subj = ",".join("%s=%s" % kv for rdn in pc.get("subject", ()) for kv in rdn)
        with self.lock:
            self._socks.discard(c)
            self._socks.add(s)
            self.tls.append({"cid": cid, "sni": self._sni_seen.pop(id(s), None),
                             "reused": s.session_reused, "client": subj,
                             "version": s.version()})
        Backend._serve(self, s, cid, peer)


def echo_handler(req):
    hs = []
    if "/close/" in req.target:
        return Reply(200, [("Connection", "close")], b"closing\n", after="close")
    return Reply(200, hs, ("tls-backend %s\n" % req.target).encode())


class EchoServer:
    """A websockets echo server (plain ws) in its own thread."""

    def __init__(self):
        self.port = None
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop = None
        self._thr = threading.Thread(target=self._run, daemon=True)
        self._thr.start()
        if not self._ready.wait(10):
            raise RuntimeError("websockets server did not start")

    async def _handler(self, ws, path=None):
        try:
            async for m in ws:
                await ws.send(m)
        except websockets.exceptions.ConnectionClosed:
            pass

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self._stop = asyncio.Event()

        async def main():
            async with websockets.serve(self._handler, "127.0.0.1", 0,
                                        ping_interval=None, close_timeout=2) as srv:
                self.port = srv.sockets[0].getsockname()[1]
                self._ready.set()
                await self._stop.wait()
        try:
            self.loop.run_until_complete(main())
        finally:
            self.loop.close()

    def close(self):
        if self._stop is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass
        self._thr.join(5)


# --------------------------------------------------------------------------
# the main configuration

CONFIG = """
workers = 2;
log_level = "info";
servers = (
  {
    name = "main";
    listen = [ "127.0.0.1:%(p_tls)d" ];
    tls = {
      certificate = "%(d)s/example.pem";
      key = "%(d)s/example.key";
      certificates = (
        { certificate = "%(d)s/wild.pem"; key = "%(d)s/wild.key"; },
        { certificate = "%(d)s/other.pem"; key = "%(d)s/other.key"; }
      );
    };
    set_header = {
      X-Forwarded-For = "$proxy_add_x_forwarded_for";
      X-Forwarded-Proto = "$scheme";
    };
    locations = (
      { prefix = "/"; proxy_pass = "http://127.0.0.1:%(bport)d"; },
      { prefix = "/ws/"; proxy_pass = "http://127.0.0.1:%(wsport)d"; },
      { prefix = "/up/ok/"; proxy_pass = "https://localhost:%(tb_ok)d";
        ssl_trusted_certificate = "%(d)s/ca.pem"; },
      { prefix = "/up/nosni/"; proxy_pass = "https://localhost:%(tb_ok)d";
        ssl_trusted_certificate = "%(d)s/ca.pem";
        ssl_server_name = false; },
      { prefix = "/up/wrongname/"; proxy_pass = "https://localhost:%(tb_ok)d";
        ssl_trusted_certificate = "%(d)s/ca.pem"; ssl_name = "wrong.test"; },
      { prefix = "/up/untrusted/"; proxy_pass = "https://localhost:%(tb_self)d"; },
      { prefix = "/up/noverify/"; proxy_pass = "https://localhost:%(tb_self)d";
        ssl_verify = false; },
      { prefix = "/up/mtls/"; proxy_pass = "https://localhost:%(tb_mtls)d";
        ssl_trusted_certificate = "%(d)s/ca.pem";
        ssl_certificate = "%(d)s/client.pem"; ssl_certificate_key = "%(d)s/client.key"; },
      { prefix = "/up/mtls-nocert/"; proxy_pass = "https://localhost:%(tb_mtls)d";
        ssl_trusted_certificate = "%(d)s/ca.pem"; }
    );
  },
  {
    name = "plain";
    listen = [ "127.0.0.1:%(p_plain)d" ];
    set_header = {
      X-Forwarded-For = "$proxy_add_x_forwarded_for";
      X-Forwarded-Proto = "$scheme";
    };
    locations = ( { prefix = "/"; proxy_pass = "http://127.0.0.1:%(bport)d"; } );
  },
  {
    name = "mtls";
    listen = [ "127.0.0.1:%(p_mtls)d" ];
    tls = {
      certificate = "%(d)s/example.pem";
      key = "%(d)s/example.key";
      client_ca = "%(d)s/ca.pem";
      verify_client = "on";
    };
    set_header = {
      X-Forwarded-For = "$proxy_add_x_forwarded_for";
      X-Client-DN = "$ssl_client_s_dn";
    };
    locations = ( { prefix = "/"; proxy_pass = "http://127.0.0.1:%(bport)d"; } );
  },
  {
    name = "mtls-optional";
    listen = [ "127.0.0.1:%(p_mopt)d" ];
    tls = {
      certificate = "%(d)s/example.pem";
      key = "%(d)s/example.key";
      client_ca = "%(d)s/ca.pem";
      verify_client = "optional";
    };
    set_header = {
      X-Forwarded-For = "$proxy_add_x_forwarded_for";
      X-Client-DN = "$ssl_client_s_dn";
    };
    locations = ( { prefix = "/"; proxy_pass = "http://127.0.0.1:%(bport)d"; } );
  },
  {
    name = "deadline";
    listen = [ "127.0.0.1:%(p_dl)d" ];
    client_header_timeout = "1s";
    tls = {
      certificate = "%(d)s/example.pem";
      key = "%(d)s/example.key";
    };
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
    locations = ( { prefix = "/"; proxy_pass = "http://127.0.0.1:%(bport)d"; } );
  }
);
"""


def curl_https(port, path, certs, name="example.test", extra=()):
    return curl(["--cacert", certs.c("ca"), "--resolve", "%s:%d:127.0.0.1" % (name, port),
                 "-o", "-", "-w", "\n%{http_code}"] + list(extra) +
                ["https://%s:%d%s" % (name, port, path)], timeout=10)


def status_of(cp):
    """(status int or None, body) from curl_https's output."""
    if cp is None:
        return None, b""
    body, _, code = cp.stdout.rpartition(b"\n")
    try:
        return int(code), body
    except ValueError:
        return None, cp.stdout


# --------------------------------------------------------------------------
# 1. termination basics

def case_termination(ports, certs, backend):
    backend.reset()
    cp = curl_https(ports["p_tls"], "/hello", certs)
    st, body = status_of(cp)
    check_eq(st, 200, "https GET through the TLS listener to a plain backend")
    check(body == b"hello-backend /hello\n", "the backend's body arrives over TLS", body)
    reqs = backend.complete_requests()
    check(reqs and reqs[-1].header("X-Forwarded-Proto") == "https",
          "$scheme is https on the TLS listener (X-Forwarded-Proto)",
          reqs[-1].headers if reqs else "no request")
    backend.reset()
    cp = curl(["-o", "/dev/null", "http://127.0.0.1:%d/plain" % ports["p_plain"]])
    reqs = backend.complete_requests()
    check(reqs and reqs[-1].header("X-Forwarded-Proto") == "http",
          "$scheme is http on the plain listener", reqs[-1].headers if reqs else "no request")

    # HTTP/2 is on by default: h2 is preferred, http/1.1 still chosen when it is all a client offers
    cp = curl_https(ports["p_tls"], "/alpn", certs, extra=["-v"])
    err = cp.stderr.decode("utf-8", "replace") if cp else ""
    check("ALPN: server accepted h2" in err,
          "curl: the server selects ALPN h2 (offered h2,http/1.1)",
          "\n".join(ln for ln in err.splitlines() if "ALPN" in ln or "SSL" in ln))
    rc, out = gnutls_cli(ports["p_tls"], sni="example.test", cafile=certs.c("ca"),
                         extra=["--alpn", "http/1.1"])
    m = re.search(r"Application protocol: (\S+)", out)
    check(handshake_ok(out) and m and m.group(1) == "http/1.1",
          "gnutls-cli (verifying with the CA): ALPN http/1.1", out[-800:])
    rc, out = gnutls_cli(ports["p_tls"], sni="example.test", extra=["--alpn", "h2", "--alpn", "http/1.1"])
    check(re.search(r"Application protocol: h2", out),
          "an offer of h2 and http/1.1 is answered with h2", out[-400:])

    # close_notify: Connection: close ends with a TLS close, not a bare FIN
    r, clean, err = tls_request(ports["p_tls"], certs, "/cn")
    check(r is not None and r.status == 200 and clean,
          "a Connection: close response ends with close_notify (no ragged EOF)",
          "resp=%r clean=%r err=%r" % (r, clean, err))


# --------------------------------------------------------------------------
# 2. SNI

def case_sni(ports, certs):
    p = ports["p_tls"]
    for sni, want in (("example.test", "CN=example.test"),
                      ("a.wild.test", "CN=*.wild.test"),
                      ("other.test", "CN=other.test"),
                      ("unknown.invalid", "CN=example.test"),
                      (None, "CN=example.test")):
        got = served_subject(p, sni)
        check(got is not None and got.startswith(want + ","),
              "SNI %s gets the certificate %s" % (sni or "(none)", want), got)
    got = served_subject(p, "deep.a.wild.test")
    check(got is not None and got.startswith("CN=example.test,"),
          "a wildcard covers one label only: deep.a.wild.test gets the default", got)
    # and the name verifies end to end with the CA
    rc, out = gnutls_cli(p, sni="a.wild.test", cafile=certs.c("ca"),
                         extra=["--verify-hostname", "a.wild.test"])
    check(handshake_ok(out) and rc == 0, "a.wild.test verifies against the CA", out[-600:])
    cp = curl_https(p, "/sni-other", certs, name="other.test")
    check_eq(status_of(cp)[0], 200, "curl https://other.test (verified) through proxyd")


# --------------------------------------------------------------------------
# 3. protocol surface

REFUSED = (
    ("TLS 1.0", "NORMAL:-VERS-ALL:+VERS-TLS1.0"),
    ("TLS 1.1", "NORMAL:-VERS-ALL:+VERS-TLS1.1"),
    ("TLS 1.2 CBC-only", "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-CBC:+AES-256-CBC"
                         ":+CAMELLIA-128-CBC:+3DES-CBC"),
    ("TLS 1.2 RSA key exchange", "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA"),
    ("TLS 1.2 DHE-RSA key exchange", "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+DHE-RSA"),
)

ACCEPTED = (
    ("TLS 1.3", "example.test", "NORMAL:-VERS-ALL:+VERS-TLS1.3", "TLS1.3"),
    ("TLS 1.3 CHACHA20-POLY1305", "example.test",
     "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305", "CHACHA20-POLY1305"),
    ("TLS 1.2 ECDHE-RSA AES-128-GCM", "example.test",
     "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:-KX-ALL:+ECDHE-RSA",
     "(TLS1.2-X.509)-(ECDHE-"),
    ("TLS 1.2 ECDHE-RSA AES-256-GCM", "example.test",
     "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:-KX-ALL:+ECDHE-RSA", "AES-256-GCM"),
    ("TLS 1.2 ECDHE-ECDSA AES-128-GCM", "other.test",
     "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:-KX-ALL:+ECDHE-ECDSA",
     "(TLS1.2-X.509)-(ECDHE-"),
)


def case_protocols(ports, certs):
    p = ports["p_tls"]
    for what, prio in REFUSED:
        rc, out = gnutls_cli(p, sni="example.test", priority=prio)
        check(rc not in (0, None) and not handshake_ok(out),
              "%s is refused" % what, out[-400:])
    for what, sni, prio, want in ACCEPTED:
        rc, out = gnutls_cli(p, sni=sni, priority=prio)
        m = re.search(r"Description: (.*)", out)
        desc = m.group(1) if m else ""
        check(handshake_ok(out) and want in desc, "%s is accepted (%s)" % (what, desc),
              out[-400:])
    # an OpenSSL client (one X25519 key share, like browsers) gets a ServerHello at once,
    # not a HelloRetryRequest asking for another group
    rc, out = run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % p, "-servername",
                   "example.test", "-msg"])
    hellos = out.count("ServerHello")
    check(rc == 0 and hellos == 1 and "Server Temp Key: X25519" in out,
          "TLS 1.3 full handshake from OpenSSL: one ServerHello (no HelloRetryRequest), X25519",
          (rc, hellos, out[-600:]))
    # client-initiated renegotiation (TLS 1.2) is refused
    rc, out = gnutls_cli(p, sni="example.test", priority="NORMAL:-VERS-ALL:+VERS-TLS1.2",
                         extra=["--rehandshake"])
    check(handshake_ok(out) and "ReHandshake was completed" not in out and rc != 0,
          "client-initiated renegotiation is refused", out[-500:])
    # and the server still works afterwards
    check_eq(status_of(curl_https(p, "/after-reneg", certs))[0], 200,
             "the listener serves after the refused renegotiation")


# --------------------------------------------------------------------------
# 4. resumption

def case_resumption(ports, certs):
    p = ports["p_tls"]
    for ver in ("TLS1.3", "TLS1.2"):
        rc, out = gnutls_cli(p, sni="example.test", priority="NORMAL:-VERS-ALL:+VERS-" + ver,
                             extra=["--resume"])
        check("This is a resumed session" in out,
              "gnutls-cli --resume: %s session resumed" % ver, out[-500:])
    need_tool("openssl", "openssl")
    tmp = tempfile.mkdtemp(prefix="proxyd-sess-")
    try:
        for flag, ver in (("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")):
            sess = os.path.join(tmp, "sess" + flag)
            base = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % p,
                    "-servername", "example.test", "-CAfile", certs.c("ca"), flag]
            # a whole request and response on the first connection, so that the session
            # ticket (sent after the TLS 1.3 handshake) is read before s_client leaves
            req = b"GET /healthz HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
            rc1, out1 = run(base + ["-ign_eof", "-sess_out", sess], timeout=10, input=req)
            rc2, out2 = run(base + ["-sess_in", sess], timeout=10)
            check(re.search(r"^New, %s" % ver, out1, re.M) and
                  "Verify return code: 0 (ok)" in out1,
                  "openssl s_client %s: new verified session" % ver, out1[-500:])
            check(re.search(r"^Reused, %s" % ver, out2, re.M),
                  "openssl s_client -sess_in %s: Reused" % ver, out2[-500:])
            if ver == "TLSv1.3":
                # openssl offers only psk_dhe_ke: the resumed session still has ECDHE
                check("Server Temp Key: ECDH" in out2 or "Server Temp Key: X25519" in out2,
                      "TLS 1.3 resumption keeps an ECDHE exchange (forward secrecy)",
                      out2[-500:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# 5. HTTPS upstreams

def case_upstreams(ports, certs, px, tb_ok, tb_self, tb_mtls):
    p = ports["p_tls"]
    tb_ok.reset()
    tb_ok.tls.clear()
    st, body = status_of(curl_https(p, "/up/ok/a", certs))
    check_eq(st, 200, "https upstream with ssl_trusted_certificate: 200")
    check(body == b"tls-backend /up/ok/a\n", "the TLS backend's body arrives", body)
    snis = [v["sni"] for v in tb_ok.tls]
    check(snis and all(s == "localhost" for s in snis),
          "the upstream saw SNI \"localhost\" ($proxy_host)", snis)
    reqs = tb_ok.complete_requests()
    check(reqs and reqs[-1].header("Host") == "localhost:%d" % tb_ok.port,
          "Host to the https upstream is $proxy_host", reqs[-1].headers if reqs else None)

    # upstream keep-alive over TLS: several requests on one client connection
    tb_ok.reset()
    tb_ok.tls.clear()
    urls = ["https://example.test:%d/up/ok/ka%d" % (p, i) for i in range(6)]
    args = ["--cacert", certs.c("ca"), "--resolve", "example.test:%d:127.0.0.1" % p,
            "-w", "%{http_code}\n"]
    for u in urls:
        args += ["-o", "/dev/null", u]
    cp = curl(args, timeout=15)
    codes = cp.stdout.decode().split() if cp else []
    check(codes == ["200"] * 6, "six requests over one client TLS connection: all 200", codes)
    reqs = tb_ok.complete_requests()
    conns = sorted({r.conn_id for r in reqs})
    check(len(reqs) == 6 and len(conns) == 1,
          "the six upstream requests share one kept-alive TLS connection",
          "requests=%d upstream connections=%r" % (len(reqs), conns))

    # TLS session resumption towards the upstream: the backend closes after each
    tb_ok.reset()
    tb_ok.tls.clear()
    # (the first requests may still find kept-alive connections in the workers' pools)
    for i in range(6):
        curl_https(p, "/up/ok/close/%d" % i, certs)
    info = list(tb_ok.tls)
    check(len(info) >= 3 and all(x["reused"] for x in info[1:]),
          "a new TLS connection to the upstream resumes the earlier session",
          info)

    # no SNI
    tb_ok.tls.clear()
    st, _ = status_of(curl_https(p, "/up/nosni/x", certs))
    check_eq(st, 200, "ssl_server_name = false: 200")
    snis = [v["sni"] for v in tb_ok.tls]
    check(snis and all(s is None for s in snis), "ssl_server_name = false: no SNI sent", snis)

    # wrong name
    st, _ = status_of(curl_https(p, "/up/wrongname/x", certs))
    check_eq(st, 502, "ssl_name = \"wrong.test\" (certificate is for localhost): 502")
    check(px.wait_log(r"TLS handshake with upstream \S+ failed: certificate verify failed"
                      r".*(?:name|host)", 3),
          "the log names the verification failure (wrong name)", px.log_text()[-1200:])

    # untrusted (self-signed, system store)
    st, _ = status_of(curl_https(p, "/up/untrusted/x", certs))
    check_eq(st, 502, "self-signed upstream without ssl_trusted_certificate: 502")
    m = px.wait_log(r"TLS handshake with upstream \S*:%d failed: certificate verify failed: \S"
                    % tb_self.port, 3)
    check(m,
          "the log says `TLS handshake with upstream ...:%d failed: certificate verify failed: ...`"
          % tb_self.port, px.log_text()[-1200:])
    check(not tb_self.complete_requests(), "the untrusted upstream never got the request",
          tb_self.complete_requests())

    # ssl_verify = false
    st, body = status_of(curl_https(p, "/up/noverify/y", certs))
    check_eq(st, 200, "ssl_verify = false reaches the self-signed upstream: 200")

    # client certificate to the upstream
    tb_mtls.tls.clear()
    st, body = status_of(curl_https(p, "/up/mtls/z", certs))
    check_eq(st, 200, "client certificate to an upstream that requires one: 200")
    subs = [v["client"] for v in tb_mtls.tls]
    check(subs and all(s and "commonName=proxyd client" in s for s in subs),
          "the upstream saw proxyd's client certificate", subs)
    st, _ = status_of(curl_https(p, "/up/mtls-nocert/z", certs))
    check_eq(st, 502, "without ssl_certificate that upstream refuses: 502")


def case_check_warnings(config):
    rc, out, err, _ = run_proxyd(["-c", "{conf}", "-t"], config=config)
    text = out + err
    ln_v = line_number(config, "ssl_verify = false")
    ln_s = line_number(config, "ssl_server_name = false")
    check(rc == 0, "-t accepts the TLS configuration", text)
    check(re.search(r"proxyd\.conf:(%d|%d): warning: .*ssl_verify" % (ln_v, ln_v - 1), text),
          "-t warns about ssl_verify = false with file:line", text)
    check(re.search(r"proxyd\.conf:(%d|%d|%d): warning: .*ssl_server_name"
                    % (ln_s, ln_s - 1, ln_s - 2), text),
          "-t warns about ssl_server_name = false with file:line", text)


# --------------------------------------------------------------------------
# 6. client certificates on the listener

def case_mtls(ports, certs, backend):
    p = ports["p_mtls"]
    backend.reset()
    cp = curl_https(p, "/mtls-none", certs)
    st, _ = status_of(cp)
    check(st != 200 and cp is not None and cp.returncode != 0,
          "verify_client = on: no client certificate, no response",
          cp.stderr if cp else "timeout")
    cp = curl_https(p, "/mtls-rogue", certs,
                    extra=["--cert", certs.c("rogue_client"), "--key", certs.k("rogue_client")])
    check(status_of(cp)[0] != 200 and cp.returncode != 0,
          "verify_client = on: a certificate from an unknown CA is refused",
          cp.stderr if cp else "timeout")
    check(not [r for r in backend.complete_requests() if r.target.startswith("/mtls-")],
          "nothing reached the backend without a valid client certificate")
    backend.reset()
    cp = curl_https(p, "/mtls-ok", certs,
                    extra=["--cert", certs.c("client"), "--key", certs.k("client")])
    check_eq(status_of(cp)[0], 200, "verify_client = on: with the client certificate 200")
    reqs = backend.complete_requests()
    dn = reqs[-1].header("X-Client-DN") if reqs else None
    check(dn is not None and "CN=proxyd client" in dn and "O=proxyd tests" in dn,
          "$ssl_client_s_dn reaches the backend with the subject", dn)

    p = ports["p_mopt"]
    backend.reset()
    cp = curl_https(p, "/opt-none", certs)
    check_eq(status_of(cp)[0], 200, "verify_client = optional: without a certificate 200")
    reqs = backend.complete_requests()
    dn = reqs[-1].header("X-Client-DN") if reqs else "no request"
    check(not dn, "verify_client = optional without a certificate: $ssl_client_s_dn empty", dn)
    backend.reset()
    cp = curl_https(p, "/opt-cert", certs,
                    extra=["--cert", certs.c("client"), "--key", certs.k("client")])
    check_eq(status_of(cp)[0], 200, "verify_client = optional: with a certificate 200")
    reqs = backend.complete_requests()
    dn = reqs[-1].header("X-Client-DN") if reqs else None
    check(dn is not None and "CN=proxyd client" in dn,
          "verify_client = optional: $ssl_client_s_dn with a certificate", dn)


# --------------------------------------------------------------------------
# 10. WebSocket over TLS

def case_websocket(ports, certs):
    ctx = client_context(certs)

    async def go():
        async with websockets.connect("wss://localhost:%d/ws/echo" % ports["p_tls"], ssl=ctx,
                                      open_timeout=10, close_timeout=3,
                                      ping_interval=None) as ws:
            await ws.send("hello over tls")
            a = await asyncio.wait_for(ws.recv(), 5)
            blob = bytes(range(256)) * 400
            await ws.send(blob)
            b = await asyncio.wait_for(ws.recv(), 5)
            return a, b == blob

    try:
        a, b = asyncio.run(asyncio.wait_for(go(), 20))
        check(a == "hello over tls" and b, "WebSocket over TLS echoes text and 100 KB binary",
              (a, b))
    except Exception as e:  # noqa: BLE001
        check(False, "WebSocket over TLS echoes", "%s: %s" % (type(e).__name__, e))


# --------------------------------------------------------------------------
# 11. the header deadline covers the handshake

def client_hello_bytes():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="example.test")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def timed_silence(port, send=b""):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        t0 = time.monotonic()
        if send:
            s.sendall(send)
        data, closed = recv_until_close(s, timeout=5)
        return closed, time.monotonic() - t0
    finally:
        s.close()


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def case_deadline(ports, certs, px):
    p = ports["p_dl"]
    base = fd_count(px.pid)
    closed, dt = timed_silence(p)
    check(closed and 0.7 <= dt <= 3.0,
          "a TCP client sending nothing is closed after client_header_timeout (1s)",
          "closed=%r after %.2fs" % (closed, dt))
    ch = client_hello_bytes()
    closed, dt = timed_silence(p, ch[:len(ch) // 2])
    check(closed and 0.7 <= dt <= 3.0,
          "half a ClientHello is closed after client_header_timeout (1s)",
          "closed=%r after %.2fs" % (closed, dt))
    # handshake done, request head never sent: the same deadline
    ctx = client_context(certs)
    raw = socket.create_connection(("127.0.0.1", p), timeout=5)
    try:
        t0 = time.monotonic()
        s = ctx.wrap_socket(raw, server_hostname="example.test")
        s.sendall(b"GET / HTTP/1.1\r\nHost: exa")
        s.settimeout(5)
        try:
            data = s.recv(4096)
        except (OSError, ssl.SSLError):
            data = b""
        dt = time.monotonic() - t0
        check(dt <= 3.0 and b" 200 " not in data,
              "a TLS client with a partial request head is cut off at the deadline",
              "after %.2fs got %r" % (dt, data[:100]))
        s.close()
    finally:
        raw.close()
    # a prompt client still gets through
    check_eq(status_of(curl_https(p, "/prompt", certs))[0], 200,
             "a prompt TLS client on the 1s-deadline listener gets 200")
    # connections stuck in the handshake are released: 20 silent clients, past
    # the deadline they are gone from proxyd (whether or not the client left)
    socks = [socket.create_connection(("127.0.0.1", p), timeout=5) for _ in range(20)]
    try:
        time.sleep(2.5)
        during = fd_count(px.pid)
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 5
    after = fd_count(px.pid)
    while after > base and time.monotonic() < deadline:
        time.sleep(0.1)
        after = fd_count(px.pid)
    check(during <= base + 2,
          "20 silent TLS clients past client_header_timeout hold no proxyd fds",
          "fds: before %d, 2.5s after connecting 20 silent clients %d" % (base, during))
    check(after <= base,
          "once those clients have gone, proxyd's fd count is back to its baseline",
          "fds: before %d, 5s after the clients closed %d" % (base, after))


# --------------------------------------------------------------------------
# 7. keys through $CREDENTIALS_DIRECTORY

CRED_CONFIG = """
servers = (
  {
    name = "cred";
    listen = [ "%(listen)s" ];
    tls = {
      certificate = "%(d)s/example.pem";
      key = "%%d/site.key";
    };
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
    locations = ( { prefix = "/"; return = 200; body = "cred-ok\\n"; } );
  }
);
"""


def case_credentials(certs):
    cred = tempfile.mkdtemp(prefix="proxyd-cred-")
    try:
        shutil.copy(certs.k("example"), os.path.join(cred, "site.key"))
        os.chmod(os.path.join(cred, "site.key"), 0o400)
        env = {"CREDENTIALS_DIRECTORY": cred}
        port = free_port()
        conf = CRED_CONFIG % {"listen": "127.0.0.1:%d" % port, "d": certs.dir}
        with Proxyd(conf, env=env, wait=("127.0.0.1", port)) as px:
            st, body = status_of(curl_https(port, "/", certs))
            check(st == 200 and body == b"cred-ok\n",
                  "key = \"%d/site.key\" with $CREDENTIALS_DIRECTORY: https 200", (st, body))
            check(px.alive(), "proxyd runs with the key from the credentials directory")
        # socket-activated, as under systemd (LoadCredential= + .socket)
        port = free_port()
        conf = CRED_CONFIG % {"listen": "https", "d": certs.dir}
        with Proxyd(conf, env=env, sockets=[("127.0.0.1:%d" % port, "https")]) as px:
            st, body = status_of(curl_https(port, "/", certs))
            check(st == 200 and body == b"cred-ok\n",
                  "socket-activated TLS listener with the key from %d/: 200", (st, body))
        conf = CRED_CONFIG % {"listen": "127.0.0.1:%d" % port, "d": certs.dir}
        rc, out, err, _ = run_proxyd(["-c", "{conf}", "-t"], config=conf,
                                     env={"CREDENTIALS_DIRECTORY": cred})
        check(rc == 0, "-t with $CREDENTIALS_DIRECTORY set: OK", out + err)
        saved = os.environ.pop("CREDENTIALS_DIRECTORY", None)
        try:
            rc, out, err, _ = run_proxyd(["-c", "{conf}", "-t"], config=conf)
        finally:
            if saved is not None:
                os.environ["CREDENTIALS_DIRECTORY"] = saved
        ln = line_number(conf, "%d/site.key")
        check(rc not in (0, None) and
              re.search(r"proxyd\.conf:%d: .*CREDENTIALS_DIRECTORY" % ln, out + err),
              "-t without $CREDENTIALS_DIRECTORY: error at proxyd.conf:%d naming it" % ln,
              out + err)
        os.unlink(os.path.join(cred, "site.key"))
        rc, out, err, _ = run_proxyd(["-c", "{conf}", "-t"], config=conf,
                                     env={"CREDENTIALS_DIRECTORY": cred})
        check(rc not in (0, None) and re.search(r"proxyd\.conf:%d: .*site\.key" % ln, out + err),
              "-t with the credential missing: error at proxyd.conf:%d" % ln, out + err)
    finally:
        shutil.rmtree(cred, ignore_errors=True)


# --------------------------------------------------------------------------
# 8. reload

RELOAD_CONFIG = """
servers = (
  {
    name = "reload";
    listen = [ "127.0.0.1:%(port)d" ];
    tls = {
      certificate = "%(rd)s/site.pem";
      key = "%(rd)s/site.key";
    };
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
    locations = ( { prefix = "/"; return = 200; body = "reload-ok\\n"; } );
  }
);
"""


def install_pair(rd, certs, cert, key):
    for src, dst in ((certs.c(cert), "site.pem"), (certs.k(key), "site.key")):
        tmp = os.path.join(rd, dst + ".new")
        shutil.copy(src, tmp)
        os.rename(tmp, os.path.join(rd, dst))


def wait_serial(port, want, timeout=5.0):
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = served_serial(port)
        if got == want:
            return got
        time.sleep(0.2)
    return got


def case_reload(certs):
    rd = tempfile.mkdtemp(prefix="proxyd-reload-")
    try:
        install_pair(rd, certs, "example", "example")
        port = free_port()
        with Proxyd(RELOAD_CONFIG % {"port": port, "rd": rd},
                    wait=("127.0.0.1", port)) as px:
            check_eq(served_serial(port), "0x10", "before reload: the first certificate is served")
            install_pair(rd, certs, "renewed", "renewed")
            os.kill(px.pid, signal.SIGHUP)
            check(px.wait_log(r"Reloading", 5), "SIGHUP reloads", px.log_text()[-500:])
            got = wait_serial(port, "0x77")
            check_eq(got, "0x77", "after reload: the new certificate (serial 0x77) is served")
            check("CN=example.test renewed" in (served_subject(port, "example.test") or ""),
                  "after reload: the new subject is served")
            st, body = status_of(curl_https(port, "/", certs))
            check(st == 200 and body == b"reload-ok\n", "the renewed certificate verifies: 200",
                  (st, body))
            # a mismatched pair: the reload fails, the old certificate keeps serving
            install_pair(rd, certs, "broken", "example")
            n_before = px.log_text().count("Reloading")
            os.kill(px.pid, signal.SIGHUP)
            m = px.wait_log(r"Reload failed[^\n]*", 5)
            check(m and px.log_text().count("Reloading") > n_before,
                  "a mismatched key/certificate pair fails the reload", px.log_text()[-800:])
            tail = px.log_text()
            check(re.search(r"does not match|mismatch", tail[tail.rfind("Reloading"):]),
                  "the log says why (key does not match the certificate)", tail[-800:])
            time.sleep(0.3)
            check_eq(served_serial(port), "0x77",
                     "after the failed reload the previous certificate keeps serving")
            check_eq(status_of(curl_https(port, "/", certs))[0], 200,
                     "and requests still succeed")
            # a missing key
            os.unlink(os.path.join(rd, "site.key"))
            n_failed = px.log_text().count("Reload failed")
            os.kill(px.pid, signal.SIGHUP)
            deadline = time.monotonic() + 5
            while px.log_text().count("Reload failed") == n_failed and \
                    time.monotonic() < deadline:
                time.sleep(0.05)
            check(px.log_text().count("Reload failed") > n_failed,
                  "a missing key fails the reload", px.log_text()[-600:])
            check_eq(served_serial(port), "0x77", "the previous certificate still serves")
            check(px.alive(), "proxyd survived the failed reloads")
    finally:
        shutil.rmtree(rd, ignore_errors=True)


# --------------------------------------------------------------------------
# 9. -t

T_CONFIG = """
servers = (
  {
    name = "t";
    listen = [ "127.0.0.1:%(port)d" ];
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
    tls = {
      certificate = "%(cert)s";
      key = "%(key)s";
%(extra)s
    };
    locations = ( { prefix = "/"; return = 200; } );
  }
);
"""


def t_run(certs, cert, key, extra=""):
    conf = T_CONFIG % {"port": free_port(), "cert": certs.c(cert), "key": certs.k(key),
                       "extra": extra}
    rc, out, err, _ = run_proxyd(["-c", "{conf}", "-t"], config=conf)
    return conf, rc, out + err


def case_test_flag(certs):
    conf, rc, text = t_run(certs, "expiring", "expiring")
    ln = line_number(conf, "tls = {")
    check(rc == 0, "-t: an expiring certificate is a warning only (exit 0)", text)
    check(re.search(r'proxyd\.conf:(%d|%d): warning: certificate "%s" expires in [45] days'
                    % (ln, ln + 1, re.escape(certs.c("expiring"))), text),
          "-t: `file:line: warning: certificate \"...\" expires in N days`", text)
    conf, rc, text = t_run(certs, "example", "example")
    check(rc == 0 and "expires in" not in text and "configuration OK" in text,
          "-t: a 30-day certificate gives no expiry warning", text)
    conf, rc, text = t_run(certs, "example", "other")
    check_eq(rc, 1, "-t: mismatched key and certificate: exit 1")
    check(re.search(r"proxyd\.conf:\d+: .*(does not match|mismatch)", text),
          "-t: mismatched key: file:line error", text)
    conf, rc, text = t_run(certs, "example", "example",
                           '      priority = "NORMAL:-VERS-ALL:+VERS-TLS1.2:+BOGUS-THING";')
    ln = line_number(conf, "priority =")
    check(rc not in (0, None) and
          re.search(r"proxyd\.conf:%d: .*priority.*\+BOGUS-THING" % ln, text),
          "-t: a bad priority string: error at its line with the position", text)
    conf, rc, text = t_run(certs, "example", "example",
                           '      priority = "NORMAL:-VERS-ALL:+VERS-TLS1.3";')
    check(rc == 0, "-t: a valid priority string is accepted", text)
    conf, rc, text = t_run(certs, "example", "example",
                           '      verify_client = "on";')
    check(rc not in (0, None) and "client_ca" in text,
          "-t: verify_client without client_ca is an error", text)


def case_priority_override(certs):
    """priority overrides the default: a TLS 1.3-only listener refuses TLS 1.2."""
    port = free_port()
    conf = T_CONFIG % {"port": port, "cert": certs.c("example"), "key": certs.k("example"),
                       "extra": '      priority = "NORMAL:-VERS-ALL:+VERS-TLS1.3";'}
    with Proxyd(conf, wait=("127.0.0.1", port)):
        rc, out = gnutls_cli(port, sni="example.test", priority="NORMAL:-VERS-ALL:+VERS-TLS1.2")
        check(not handshake_ok(out), "priority = TLS 1.3 only: a TLS 1.2 client is refused",
              out[-300:])
        rc, out = gnutls_cli(port, sni="example.test", priority="NORMAL:-VERS-ALL:+VERS-TLS1.3")
        check(handshake_ok(out), "priority = TLS 1.3 only: TLS 1.3 works", out[-300:])


# --------------------------------------------------------------------------

HEALTH_CONFIG = """workers = 1;
upstreams = {
  good = { servers = ( { address = "127.0.0.1:%(good)d"; } );
           health_check = { path = "/healthz"; interval = "200ms"; timeout = "1s"; }; };
  mixed = { servers = ( { address = "127.0.0.1:%(bad)d"; }, { address = "127.0.0.1:%(good)d"; } );
            health_check = { path = "/healthz"; interval = "200ms"; timeout = "1s"; }; };
};
servers = ( { name = "main"; listen = [ "127.0.0.1:%(port)d" ];
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
    locations = (
      { prefix = "/good/"; proxy_pass = "https://good"; ssl_name = "localhost";
        ssl_trusted_certificate = "%(d)s/ca.pem"; },
      { prefix = "/mixed/"; proxy_pass = "https://mixed"; ssl_name = "localhost";
        ssl_trusted_certificate = "%(d)s/ca.pem"; } ); } );
"""


def case_health_checks(certs):
    """health_check on groups reached over https: the probes speak TLS with the location's
    settings (trust, name), so a good server stays up and one whose certificate does not
    verify is taken out."""
    good = TlsBackend(certs.c("upstream"), certs.k("upstream"), handler=echo_handler)
    bad = TlsBackend(certs.c("selfsigned"), certs.k("selfsigned"), handler=echo_handler)
    try:
        port = free_port()
        conf = HEALTH_CONFIG % dict(good=good.port, bad=bad.port, port=port, d=certs.dir)
        with Proxyd(conf, wait=("127.0.0.1", port)) as px:
            deadline = time.monotonic() + 8
            probes = []
            while time.monotonic() < deadline:
                probes = [r for r in good.complete_requests() if r.target == "/healthz"]
                if len(probes) >= 6 and px.wait_log(r"unhealthy", 0.1) is not None:
                    break
                time.sleep(0.2)
            check(len(probes) >= 6,
                  "health probes reach the https server over TLS (%d GET /healthz received "
                  "through the TLS backend)" % len(probes))
            check(probes and all(r.header("User-Agent") == "proxyd-health-check" for r in probes),
                  "they are proxyd's probes", probes[-1].headers if probes else None)
            snis = {v["sni"] for v in good.tls}
            check(snis == {"localhost"}, "the probes send the location's ssl_name as SNI", snis)
            log_text = px.log_text()
            check(re.search(r"good.*unhealthy|unhealthy.*%d" % good.port, log_text) is None,
                  "the server whose certificate verifies stays healthy", log_text[-600:])
            line = next((ln for ln in log_text.splitlines()
                         if "unhealthy" in ln and str(bad.port) in ln), None)
            check(line is not None and "certificate" in line,
                  "the server whose certificate does not verify is taken out, and the journal "
                  "line says why", line or log_text[-800:])
            codes = []
            for i in range(6):
                st, body = status_of(curl(["-o", "-", "-w", "\n%{http_code}",
                                           "http://127.0.0.1:%d/mixed/r%d" % (port, i)], timeout=10))
                codes.append(st)
            check(codes == [200] * 6,
                  "requests to the mixed group all go to the healthy server", codes)
            check(px.alive(), "proxyd still running", px.log_text()[-400:])
    finally:
        good.close()
        bad.close()


def backend_handler(req):
    return Reply(200, [("Content-Type", "text/plain")],
                 ("hello-backend %s\n" % req.target).encode())


def main():
    need_tool("gnutls-cli", "gnutls-bin")
    need_tool("curl", "curl")
    certs = Certs()
    closers = [certs.close]
    try:
        backend = Backend(handler=backend_handler)
        closers.append(backend.close)
        tb_ok = TlsBackend(certs.c("upstream"), certs.k("upstream"), handler=echo_handler)
        closers.append(tb_ok.close)
        tb_self = TlsBackend(certs.c("selfsigned"), certs.k("selfsigned"), handler=echo_handler)
        closers.append(tb_self.close)
        tb_mtls = TlsBackend(certs.c("upstream"), certs.k("upstream"), ca=certs.c("ca"),
                             require_client=True, handler=echo_handler)
        closers.append(tb_mtls.close)
        ws = EchoServer()
        closers.append(ws.close)
        ports = {k: free_port() for k in ("p_tls", "p_plain", "p_mtls", "p_mopt", "p_dl")}
        config = CONFIG % dict(ports, d=certs.dir, bport=backend.port, wsport=ws.port,
                               tb_ok=tb_ok.port, tb_self=tb_self.port, tb_mtls=tb_mtls.port)
        with Proxyd(config, wait=("127.0.0.1", ports["p_tls"])) as px:
            for p in ports.values():
                wait_port(p, timeout=5)
            cases = [
                ("termination", lambda: case_termination(ports, certs, backend)),
                ("sni", lambda: case_sni(ports, certs)),
                ("protocols", lambda: case_protocols(ports, certs)),
                ("resumption", lambda: case_resumption(ports, certs)),
                ("upstreams", lambda: case_upstreams(ports, certs, px, tb_ok, tb_self,
                                                     tb_mtls)),
                ("mtls", lambda: case_mtls(ports, certs, backend)),
                ("websocket", lambda: case_websocket(ports, certs)),
                ("deadline", lambda: case_deadline(ports, certs, px)),
            ]
            for name, fn in cases:
                log(name)
                try:
                    fn()
                except Exception as e:  # noqa: BLE001
                    import traceback
                    traceback.print_exc()
                    check(False, "%s raised %s: %s" % (name, type(e).__name__, e))
            check(px.alive(), "proxyd is still running after the TLS checks",
                  px.log_text()[-1000:])
        log("-t warnings of the main configuration")
        case_check_warnings(config)
        for name, fn in (("credentials", lambda: case_credentials(certs)),
                         ("reload", lambda: case_reload(certs)),
                         ("-t", lambda: case_test_flag(certs)),
                         ("priority", lambda: case_priority_override(certs)),
                         ("health checks", lambda: case_health_checks(certs))):
            log(name)
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                import traceback
                traceback.print_exc()
                check(False, "%s raised %s: %s" % (name, type(e).__name__, e))
    finally:
        for c in reversed(closers):
            try:
                c()
            except Exception:  # noqa: BLE001
                pass


if __name__ == "__main__":
    run_main(main)
