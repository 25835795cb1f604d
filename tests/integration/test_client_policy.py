#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Per-client limits, client addresses and hashing, end to end with real clients.

limits: a request rate (burst, nodelay, delay) answered with 429 and Retry-After, exact
across 4 workers; requests in progress per key (conn); keys from a header; the access
entry names the limit. Client addresses: real_ip_from / real_ip_header /
real_ip_recursive over X-Forwarded-For and Forwarded, only from trusted peers, reset
between requests of one connection, used by access rules, limits, ip_hash and the log;
$forwarded / $proxy_add_forwarded / $realip_remote_addr. The PROXY protocol v1 and v2 from
raw sockets: accepted only from proxy_protocol_from, bad headers and silence closed,
headers split over several writes; sent to an upstream that asks for it (v1 and v2).
balance = "hash": a URI always reaches the same server, and removing one of three servers
(a reload) moves only the URIs that server had. Every etc/examples/*.conf passes -t."""

import glob
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, Proxyd, Reply, check, check_eq, connect, free_port,  # noqa: E402
                     http_request, parse_responses, recv_until, recv_until_close, run_main,
                     run_proxyd)

SRCDIR = os.environ.get("PROXYD_SRCDIR",
                        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def echo_client(req):
    """The backend answers with the client address proxyd sent it."""
    body = ("xrealip=%s fwd=%s realip=%s\n" % (req.header("X-Real-IP"), req.header("Forwarded"),
                                                req.header("X-Peer"))).encode()
    return Reply(200, [("Content-Type", "text/plain")], body)


def start(config, **kw):
    port = free_port()
    p = Proxyd(config.replace("PORT", str(port)), wait=("127.0.0.1", port), **kw)
    p.start()
    return p, port


# ---------------------------------------------------------------------------------------
# limits

LIMITS = """workers = 4;
log_level = "debug";
limits = {
  per_ip = { rate = "1r/m"; burst = 2; nodelay = true; };
  exact = { key = "$http_x_client"; rate = "1r/m"; burst = 9; nodelay = true; };
  slow = { key = "$http_x_client"; rate = "1r/s"; burst = 5; };
  one = { key = "$http_x_client"; conn = 1; };
  by_key = { key = "$http_x_api_key"; rate = "1r/m"; };
};
servers = ( { name = "lim"; listen = [ "127.0.0.1:PORT" ];
  set_header = { X-Real-IP = "$remote_addr"; };
  locations = (
    { prefix = "/rate/"; limit = [ "per_ip" ]; proxy_pass = "http://127.0.0.1:BPORT"; },
    { prefix = "/exact/"; limit = [ "exact" ]; proxy_pass = "http://127.0.0.1:BPORT"; },
    { prefix = "/slow/"; limit = [ "slow" ]; proxy_pass = "http://127.0.0.1:BPORT"; },
    { prefix = "/one/"; limit = [ "one" ]; proxy_pass = "http://127.0.0.1:BPORT"; },
    { prefix = "/key/"; limit = [ "by_key" ]; proxy_pass = "http://127.0.0.1:BPORT"; },
    { exact = "/local"; limit = [ "per_ip" ]; return = 200; body = "local\\n"; },
    { prefix = "/"; proxy_pass = "http://127.0.0.1:BPORT"; }
  ); } );
"""


def test_limits():
    release = threading.Event()

    def handler(req):
        if req.target.startswith("/one/hold"):
            release.wait(10)
        return Reply(200, [("Content-Type", "text/plain")], b"ok\n")

    with Backend(handler) as b:
        p, port = start(LIMITS.replace("BPORT", str(b.port)))
        try:
            # rate 1r/m, burst 2, nodelay: three at once pass, the fourth is 429
            st = [http_request(port, target="/rate/x") for _ in range(4)]
            check_eq([r.status if r else None for r in st], [200, 200, 200, 429], "rate: 1 + burst pass, then 429")
            ra = st[3].header("Retry-After") if st[3] else None
            check(ra is not None and ra.isdigit() and 1 <= int(ra) <= 60,
                  "429 says Retry-After in seconds (one request drains in a minute)", ra)
            check(http_request(port, target="/").status == 200, "a location without limits is not limited")
            r = http_request(port, target="/local")
            check(r and r.status == 200, "a return location is answered before limits (as nginx's return)")
            entries = [e for e in p.access_lines() if e.get("status") == "429"]
            check(len(entries) == 1 and entries[0].get("limit") == "per_ip" and
                  entries[0].get("reason", "").startswith("limit"),
                  "the access entry of the rejection names the limit", entries)

            # exact across 4 workers: 20 clients at once on their own connections, 10 pass
            results = []
            lock = threading.Lock()

            def one():
                r = http_request(port, target="/exact/y", headers=[("X-Client", "same")])
                with lock:
                    results.append(r.status if r else None)
            ts = [threading.Thread(target=one) for _ in range(20)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            check_eq((results.count(200), results.count(429)), (10, 10),
                     "exactly 1 + burst of 20 concurrent requests pass, over 4 workers")

            # keys from a header: each key its own bucket; no key is a key too ("")
            got = [http_request(port, target="/key/", headers=[("X-Api-Key", k)]).status
                   for k in ("a", "a", "b", "b", "c")]
            check_eq(got, [200, 429, 200, 429, 200], "a bucket per X-Api-Key")

            # requests in progress (conn = 1): a second one while the first is held: 429
            s = connect(port)
            s.sendall(b"GET /one/hold HTTP/1.1\r\nHost: x\r\nX-Client: k\r\n\r\n")
            deadline = time.monotonic() + 5
            while not any(r.target == "/one/hold" for r in b.requests) and time.monotonic() < deadline:
                time.sleep(0.02)
            r2 = http_request(port, target="/one/other", headers=[("X-Client", "k")])
            check(r2 and r2.status == 429 and r2.header("Retry-After") is None,
                  "conn = 1: a second request in progress is 429 (no Retry-After)")
            r3 = http_request(port, target="/one/other", headers=[("X-Client", "other")])
            check(r3 and r3.status == 200, "conn = 1: another key is not held back")
            release.set()
            data = recv_until(s, b"ok\n")
            check(b"200 OK" in data, "the held request completes")
            s.close()
            # the count is given back when the exchange ends, just after its last byte went out
            deadline = time.monotonic() + 5
            while True:
                r4 = http_request(port, target="/one/after", headers=[("X-Client", "k")])
                if (r4 and r4.status == 200) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            check(r4 and r4.status == 200, "conn = 1: once the first ended, the key may send again")

            # delay (no nodelay): 1r/s burst 5: the excess waits 1 s, 2 s... in order
            n0 = len(b.requests)
            res = {}

            def delayed(i):
                res[i] = http_request(port, target="/slow/%d" % i, headers=[("X-Client", "d")], timeout=10)
            ts = []
            for i in range(3):
                t = threading.Thread(target=delayed, args=(i,))
                t.start()
                ts.append(t)
                # the next one is sent once this one has been counted
                if i == 0:
                    b.wait_requests(n0 + 1)
                elif i == 1:
                    p.wait_log(r"/slow/1 delayed \d+ms")
            for t in ts:
                t.join()
            check(all(res[i] and res[i].status == 200 for i in range(3)), "delayed requests are answered", res)
            m1 = p.wait_log(r"/slow/1 delayed (\d+)ms by limit \"slow\"")
            m2 = p.wait_log(r"/slow/2 delayed (\d+)ms by limit \"slow\"")
            check(m1 and m2 and 0 < int(m1.group(1)) <= 1000 < int(m2.group(1)) <= 2000,
                  "the second waits up to one period (1r/s), the third longer, up to two (log)",
                  (m1 and m1.group(0), m2 and m2.group(0)))
            order = [r.target for r in b.requests[n0:]]
            check_eq(order, ["/slow/0", "/slow/1", "/slow/2"], "delayed requests reach the upstream in order")
        finally:
            release.set()
            p.close()


# ---------------------------------------------------------------------------------------
# client addresses from headers

REALIP = """log_level = "debug";
limits = { per_client = { rate = "1r/m"; }; };
upstreams = { two = { balance = "ip_hash"; servers = ( { address = "127.0.0.1:B1" }, { address = "127.0.0.1:B2" } ); }; };
servers = ( { name = "rip"; listen = [ "127.0.0.1:PORT" ];
  set_header = { X-Real-IP = "$remote_addr"; X-Peer = "$realip_remote_addr"; Forwarded = "$proxy_add_forwarded"; };
  real_ip_from = [ "127.0.0.1" ];
  locations = (
    { prefix = "/plain/"; proxy_pass = "http://127.0.0.1:B1"; },
    { prefix = "/recursive/"; real_ip_from = [ "127.0.0.0/8", "10.0.0.0/8" ]; real_ip_recursive = true;
      proxy_pass = "http://127.0.0.1:B1"; },
    { prefix = "/untrusted/"; real_ip_from = [ "10.0.0.0/8" ]; proxy_pass = "http://127.0.0.1:B1"; },
    { prefix = "/fwd/"; real_ip_header = "Forwarded"; proxy_pass = "http://127.0.0.1:B1"; },
    { prefix = "/acl/"; access = [ "allow 203.0.113.0/24", "deny all" ]; proxy_pass = "http://127.0.0.1:B1"; },
    { prefix = "/limited/"; limit = [ "per_client" ]; proxy_pass = "http://127.0.0.1:B1"; },
    { prefix = "/hash/"; proxy_pass = "http://two"; }
  ); } );
"""


def body_of(r):
    return r.body.decode() if r else ""


def test_real_ip():
    with Backend(echo_client) as b1, Backend(echo_client) as b2:
        p, port = start(REALIP.replace("B1", str(b1.port)).replace("B2", str(b2.port)))
        try:
            xff = [("X-Forwarded-For", "203.0.113.7, 10.9.9.9")]
            r = http_request(port, target="/plain/", headers=xff)
            check("xrealip=10.9.9.9 " in body_of(r), "non-recursive: the rightmost address", body_of(r))
            check("realip=127.0.0.1" in body_of(r), "$realip_remote_addr is the proxy in front", body_of(r))
            r = http_request(port, target="/recursive/", headers=xff)
            check("xrealip=203.0.113.7 " in body_of(r), "recursive: trusted addresses skipped", body_of(r))
            r = http_request(port, target="/untrusted/", headers=xff)
            check("xrealip=127.0.0.1 " in body_of(r), "a peer not in real_ip_from is not believed", body_of(r))
            r = http_request(port, target="/plain/", headers=[("X-Forwarded-For", "garbage")])
            check("xrealip=127.0.0.1 " in body_of(r), "a header without an address changes nothing", body_of(r))
            # several fields are one list
            r = http_request(port, target="/recursive/", headers=[("X-Forwarded-For", "198.51.100.1"),
                                                                 ("X-Forwarded-For", "10.0.0.1")])
            check("xrealip=198.51.100.1 " in body_of(r), "the list spans several fields", body_of(r))

            # RFC 7239 Forwarded, in and out
            r = http_request(port, target="/fwd/", headers=[("Forwarded", 'for="[2001:db8::7]:4711";proto=https')])
            check("xrealip=2001:db8::7 " in body_of(r), "real_ip_header = Forwarded", body_of(r))
            check('fwd=for="[2001:db8::7]:4711";proto=https, for="[2001:db8::7]";proto=http;host=test.local'
                  in body_of(r), "$proxy_add_forwarded appends this hop's element", body_of(r))
            r = http_request(port, target="/plain/")
            check("fwd=for=127.0.0.1;proto=http;host=test.local" in body_of(r), "Forwarded sent without one", body_of(r))

            # access rules see the real client; a spoofed header from an untrusted peer does not help
            r = http_request(port, target="/acl/", headers=[("X-Forwarded-For", "203.0.113.9")])
            check(r and r.status == 200, "access rule allows the real client")
            r = http_request(port, target="/acl/", headers=[("X-Forwarded-For", "198.51.100.9")])
            check(r and r.status == 403, "access rule denies the real client")
            acc = [e for e in p.access_lines() if e.get("uri") == "/acl/"]
            check(len(acc) == 2 and acc[0].get("client", "").startswith("203.0.113.9") and
                  acc[0].get("peer") == "127.0.0.1", "the access entry has the real client and the peer", acc)

            # limits per real client
            got = [http_request(port, target="/limited/", headers=[("X-Forwarded-For", a)]).status
                   for a in ("192.0.2.1", "192.0.2.1", "192.0.2.2")]
            check_eq(got, [200, 429, 200], "limits are keyed by the real client address")
            # one connection: the peer's key and a real client's key are counted apart, request by request
            s = connect(port)
            s.sendall(b"GET /limited/1 HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /limited/2 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.60\r\n\r\n"
                      b"GET /limited/3 HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /limited/4 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.60\r\n"
                      b"Connection: close\r\n\r\n")
            rs, _ = parse_responses(recv_until_close(s)[0])
            s.close()
            check_eq([r.status for r in rs], [200, 200, 429, 429],
                     "one connection: the peer (127.0.0.1) and 192.0.2.60 each have their own bucket")

            # keep-alive: the second request without the header is the connection's peer again
            s = connect(port)
            s.sendall(b"GET /plain/a HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.50\r\n\r\n"
                      b"GET /plain/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            rs, _ = parse_responses(recv_until_close(s)[0])
            s.close()
            check(len(rs) == 2 and b"xrealip=192.0.2.50 " in rs[0].body and b"xrealip=127.0.0.1 " in rs[1].body,
                  "each request of a connection starts from the connection's address", rs)

            # ip_hash by real client: a client always on one server; the clients spread over both
            seen = {}
            for i in range(24):
                a = "198.51.100.%d" % (i + 1)
                ports = set()
                for _ in range(2):
                    n1 = len(b1.requests)
                    http_request(port, target="/hash/", headers=[("X-Forwarded-For", a)])
                    ports.add(1 if len(b1.requests) > n1 else 2)
                seen[a] = ports
            check(all(len(v) == 1 for v in seen.values()), "ip_hash: one server per real client")
            check({next(iter(v)) for v in seen.values()} == {1, 2}, "ip_hash: real clients spread over both")
        finally:
            p.close()


# ---------------------------------------------------------------------------------------
# the PROXY protocol, from clients

PP = """defaults = { client_header_timeout = "1s"; };
limits = { pp_client = { rate = "1r/m"; }; };
servers = (
  { name = "pp"; listen = [ "127.0.0.1:PORT" ]; proxy_protocol = true; proxy_protocol_from = [ "127.0.0.0/8" ];
    set_header = { X-Real-IP = "$remote_addr"; X-Peer = "$realip_remote_addr"; };
    locations = ( { prefix = "/lim/"; limit = [ "pp_client" ]; proxy_pass = "http://127.0.0.1:BPORT"; },
                  { prefix = "/"; proxy_pass = "http://127.0.0.1:BPORT"; } ); },
  { name = "pp-far"; listen = [ "127.0.0.1:PORT2" ]; proxy_protocol = true; proxy_protocol_from = [ "10.0.0.0/8" ];
    set_header = { X-Real-IP = "$remote_addr"; };
    locations = ( { prefix = "/"; proxy_pass = "http://127.0.0.1:BPORT"; } ); }
);
"""

V2SIG = b"\r\n\r\n\x00\r\nQUIT\n"
GET = b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def v2_tcp4(src, dst, sport, dport, cmd=0x21):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">HH", sport, dport)
    return V2SIG + bytes([cmd, 0x11]) + struct.pack(">H", len(body)) + body


def v2_tcp6(src, dst, sport, dport):
    body = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) +
            struct.pack(">HH", sport, dport) + b"\x04\x00\x03abc")  # and a TLV
    return V2SIG + bytes([0x21, 0x21]) + struct.pack(">H", len(body)) + body


def send_parts(port, parts, pause=0.05):
    s = connect(port)
    for part in parts:
        s.sendall(part)
        time.sleep(pause)
    data, closed = recv_until_close(s)
    s.close()
    check(closed, "proxyd closed the connection")
    return data


def test_proxy_protocol_in():
    with Backend(echo_client) as b:
        port2 = free_port()
        p, port = start(PP.replace("BPORT", str(b.port)).replace("PORT2", str(port2)))
        try:
            d = send_parts(port, [b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 80\r\n" + GET])
            check(b"200 OK" in d and b"xrealip=192.0.2.10 " in d and b"realip=192.0.2.10" in d,
                  "v1 TCP4: the client address comes from the header", d[-80:])
            d = send_parts(port, [b"PROXY TCP6 2001:db8::10 ::1 40000 80\r\n", GET])
            check(b"xrealip=2001:db8::10 " in d, "v1 TCP6, the request in a later write", d[-80:])
            d = send_parts(port, [v2_tcp4("198.51.100.20", "127.0.0.1", 5555, 80) + GET])
            check(b"xrealip=198.51.100.20 " in d, "v2 TCP4", d[-80:])
            d = send_parts(port, [v2_tcp6("2001:db8::20", "::1", 5555, 80) + GET])
            check(b"xrealip=2001:db8::20 " in d, "v2 TCP6 with a TLV", d[-80:])
            d = send_parts(port, [V2SIG + b"\x20\x00\x00\x00" + GET])
            check(b"xrealip=127.0.0.1 " in d, "v2 LOCAL keeps the connection's address", d[-80:])
            d = send_parts(port, [b"PROXY UNKNOWN\r\n" + GET])
            check(b"xrealip=127.0.0.1 " in d, "v1 UNKNOWN keeps the connection's address", d[-80:])
            hdr = v2_tcp4("192.0.2.33", "127.0.0.1", 1, 80)
            d = send_parts(port, [hdr[:5], hdr[5:14], hdr[14:], GET])
            check(b"xrealip=192.0.2.33 " in d, "a v2 header split over writes", d[-80:])
            n = len(b.requests)
            d = send_parts(port, [GET])
            check(d == b"" and len(b.requests) == n, "plain HTTP on a PROXY listener: closed, nothing forwarded", d)
            check(p.wait_log(r"bad PROXY protocol header: not a PROXY protocol header"), "... and logged why")
            d = send_parts(port, [b"PROXY TCP4 300.1.1.1 127.0.0.1 1 2\r\n" + GET])
            check(d == b"", "an invalid address: closed")
            d = send_parts(port2, [b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 80\r\n" + GET])
            check(d == b"" and len(b.requests) == n, "a source not in proxy_protocol_from: closed", d)
            check(p.wait_log(r"not in proxy_protocol_from"), "... and logged why")
            # silence and a half header: closed at client_header_timeout, without an HTTP answer
            for part in (b"", b"PROXY TCP4 1.2"):
                s = connect(port, timeout=5)
                if part:
                    s.sendall(part)
                d, closed = recv_until_close(s, timeout=5)
                s.close()
                check(closed, "closed by proxyd")
                check(d == b"", "no full header within client_header_timeout: closed without a 408", d)
            check(p.wait_log(r"client_header_timeout expired during the PROXY protocol header"), "logged")
            # keep-alive after the header: several requests, one address
            d = send_parts(port, [b"PROXY TCP4 192.0.2.44 127.0.0.1 1 80\r\n" +
                                  b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n" + GET])
            rs, _ = parse_responses(d)
            check(len(rs) == 2 and all(b"xrealip=192.0.2.44 " in r.body for r in rs),
                  "every request of the connection has the header's address", rs)
            # limits are keyed by the header's address: each connection its own client
            lim = b"GET /lim/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            got = []
            for a in ("192.0.2.70", "192.0.2.70", "192.0.2.71", "192.0.2.70"):
                d = send_parts(port, [b"PROXY TCP4 %s 127.0.0.1 1 80\r\n" % a.encode() + lim])
                rs, _ = parse_responses(d)
                got.append(rs[0].status if rs else None)
            check_eq(got, [200, 429, 200, 429], "a limit keys on the PROXY header's address, per connection")
        finally:
            p.close()


PP_TLS = """servers = (
  { name = "pp-tls"; listen = [ "127.0.0.1:PORT" ]; proxy_protocol = true; proxy_protocol_from = [ "127.0.0.1" ];
    tls = { certificate = "CERT"; key = "KEY"; };
    set_header = { X-Real-IP = "$remote_addr"; };
    locations = ( { prefix = "/"; proxy_pass = "http://127.0.0.1:BPORT"; } ); } );
"""


def test_proxy_protocol_tls():
    """The header comes before the TLS handshake (HAProxy in TCP mode, AWS NLB)."""
    tmp = tempfile.mkdtemp(prefix="proxyd-pp-tls-")
    key, cert, tmpl = (os.path.join(tmp, n) for n in ("k.pem", "c.pem", "t.cfg"))
    with open(tmpl, "w") as f:
        f.write("cn = example.test\ndns_name = example.test\ntls_www_server\nexpiration_days = 30\n")
    subprocess.run(["certtool", "--generate-privkey", "--key-type=ecdsa", "--outfile", key],
                   check=True, capture_output=True)
    subprocess.run(["certtool", "--generate-self-signed", "--load-privkey", key, "--template", tmpl,
                    "--outfile", cert], check=True, capture_output=True)
    try:
        with Backend(echo_client) as b:
            p, port = start(PP_TLS.replace("BPORT", str(b.port)).replace("CERT", cert).replace("KEY", key))
            try:
                ctx = ssl.create_default_context(cafile=cert)
                s = connect(port)
                s.sendall(v2_tcp4("192.0.2.99", "127.0.0.1", 4444, 443))
                t = ctx.wrap_socket(s, server_hostname="example.test")
                t.sendall(GET)
                data, _ = recv_until_close(t)
                t.close()
                check(b"200 OK" in data and b"xrealip=192.0.2.99 " in data,
                      "PROXY v2 header, then TLS: the header's client", data[-80:])
                s = connect(port)
                try:
                    ctx.wrap_socket(s, server_hostname="example.test")
                    ok = False
                except (ssl.SSLError, OSError):
                    ok = True
                s.close()
                check(ok, "TLS without the PROXY header first: refused")
            finally:
                p.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# the PROXY protocol, to upstreams

class ProxyProtocolBackend:
    """Reads a PROXY header, then one HTTP request, answers with what the header said."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.headers = []
        self.stop = False
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                c.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    k = c.recv(4096)
                    if not k:
                        break
                    data += k
                if data.startswith(V2SIG):
                    n = 16 + struct.unpack(">H", data[14:16])[0]
                    hdr, rest = data[:n], data[n:]
                    fam = hdr[13]
                    if fam == 0x11:
                        what = "v2 %s:%d" % (socket.inet_ntoa(hdr[16:20]), struct.unpack(">H", hdr[24:26])[0])
                    elif fam == 0x21:
                        what = "v2 [%s]:%d" % (socket.inet_ntop(socket.AF_INET6, hdr[16:32]),
                                                struct.unpack(">H", hdr[48:50])[0])
                    else:
                        what = "v2 local"
                else:
                    line, _, rest = data.partition(b"\r\n")
                    what = line.decode("latin-1")
                self.headers.append((what, rest.split(b"\r\n")[0].decode("latin-1")))
                body = what.encode() + b"\n"
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)

    def close(self):
        self.stop = True
        self.sock.close()


PP_OUT = """upstreams = {
  v1 = { proxy_protocol = "v1"; servers = ( { address = "127.0.0.1:P1" } ); };
  v2 = { proxy_protocol = "v2"; keepalive = 8; servers = ( { address = "127.0.0.1:P1" } ); };
};
servers = ( { name = "out"; listen = [ "127.0.0.1:PORT" ]; real_ip_from = [ "127.0.0.1" ];
  set_header = { X-Real-IP = "$remote_addr"; };
  locations = ( { prefix = "/v1/"; proxy_pass = "http://v1"; }, { prefix = "/v2/"; proxy_pass = "http://v2"; } ); } );
"""


def test_proxy_protocol_out():
    be = ProxyProtocolBackend()
    p, port = start(PP_OUT.replace("P1", str(be.port)))
    try:
        r = http_request(port, target="/v1/a")
        check(r and r.status == 200 and r.body.startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 "),
              "v1 header sent before the request", r.body if r else None)
        check(be.headers and be.headers[-1][1] == "GET /v1/a HTTP/1.1", "the request follows the header",
              be.headers[-1:])
        r = http_request(port, target="/v2/b", headers=[("X-Forwarded-For", "203.0.113.77")])
        check(r and r.body.startswith(b"v2 203.0.113.77:0"), "v2 header with the real client address",
              r.body if r else None)
        r2 = http_request(port, target="/v2/c")
        check(r2 and r2.body.startswith(b"v2 127.0.0.1:"), "a new connection (and header) per client request",
              r2.body if r2 else None)
        check_eq(len(be.headers), 3, "three upstream connections for three requests (never reused)")
    finally:
        p.close()
        be.close()
    rc, _, err, _ = run_proxyd(["-t", "-c", "{conf}"], config=PP_OUT.replace("P1", "9").replace("PORT", "1").replace(
        'proxy_pass = "http://v1"', 'proxy_pass = "https://v1"'))
    check(rc != 0 and "sends the PROXY protocol" in err, "-t: the PROXY protocol towards https is an error", err)


# ---------------------------------------------------------------------------------------
# consistent hashing

HASH = """upstreams = { shard = { balance = "hash"; hash_key = "$request_uri"; servers = ( %s ); }; };
servers = ( { name = "h"; listen = [ "127.0.0.1:PORT" ];
  locations = ( { prefix = "/"; proxy_pass = "http://shard"; } ); } );
"""


def test_hash():
    bs = [Backend() for _ in range(3)]
    try:
        def servers(which):
            return ", ".join('{ address = "127.0.0.1:%d" }' % bs[i].port for i in which)

        port = free_port()
        p = Proxyd(HASH.replace("PORT", str(port)) % servers([0, 1, 2]), wait=("127.0.0.1", port))
        p.start()
        try:
            def where(uri):
                before = [len(b.requests) for b in bs]
                r = http_request(port, target=uri)
                check(r and r.status == 200, "hash: %s answered" % uri)
                return [i for i in range(3) if len(bs[i].requests) > before[i]][0]
            uris = ["/obj/%d" % i for i in range(90)]
            first = {u: where(u) for u in uris}
            again = {u: where(u) for u in uris[:30]}
            check(all(first[u] == again[u] for u in again), "hash: a URI always reaches the same server")
            counts = [list(first.values()).count(i) for i in range(3)]
            check(all(c > 0 for c in counts), "hash: URIs spread over the three servers", counts)
            # reload without server 2: only its URIs move
            with open(p.conf_path, "w") as f:
                f.write(HASH.replace("PORT", str(port)) % servers([0, 1]))
            import signal
            os.kill(p.pid, signal.SIGHUP)
            check(p.wait_log(r"Configuration #2 applied", timeout=5) is not None, "reloaded")
            # every worker has the new configuration once a URI of server 2 no longer reaches
            # it, several times in a row (on new connections, whichever worker takes them)
            u2 = [u for u in uris if first[u] == 2][0]
            deadline, row = time.monotonic() + 10, 0
            while row < 8 and time.monotonic() < deadline:
                row = row + 1 if where(u2) != 2 else 0
            after = {u: where(u) for u in uris}
            stayed = [u for u in uris if first[u] != 2]
            check(all(after[u] == first[u] for u in stayed),
                  "hash: removing a server leaves the other servers' URIs where they were")
            check(all(after[u] in (0, 1) for u in uris if first[u] == 2), "hash: its URIs go to the others")
        finally:
            p.close()
    finally:
        for b in bs:
            b.close()
    rc, _, err, _ = run_proxyd(["-t", "-c", "{conf}"], config=(HASH % '{ address = "127.0.0.1:9" }').replace(
        'hash_key = "$request_uri"; ', "").replace("PORT", "1"))
    check(rc != 0 and 'needs a hash_key' in err, "-t: balance = hash without hash_key is an error", err)


# ---------------------------------------------------------------------------------------
# configuration errors and the examples

def test_config_errors():
    conf = """limits = { a = { rate = "10r/x"; }; b = { burst = 3; }; c = { conn = 2; nodelay = true; }; };
servers = ( { name = "s"; listen = [ "127.0.0.1:1" ]; proxy_protocol = true;
  real_ip_from = [ "10.0.0.0/33" ]; real_ip_header = "X Bad";
  locations = ( { prefix = "/"; limit = [ "nope" ]; return = 200; } ); } );
"""
    rc, _, err, path = run_proxyd(["-t", "-c", "{conf}"], config=conf)
    check(rc != 0, "-t fails on bad limits and addresses")
    for line, what in ((1, 'invalid rate "10r/x"'), (1, 'limit "b" limits nothing'),
                       (1, '"burst", "delay" and "nodelay" need a "rate"'),
                       (3, 'invalid address "10.0.0.0/33" in "real_ip_from"'), (3, '"X Bad" is not a header name'),
                       (4, 'unknown limit "nope"')):
        check(("proxyd.conf:%d: " % line) in err and what in err, "-t says %s at line %d" % (what, line), err)
    conf2 = """servers = ( { name = "s"; listen = [ "127.0.0.1:1" ]; proxy_protocol = true;
  locations = ( { prefix = "/"; return = 200; } ); },
  { name = "t"; listen = [ "127.0.0.1:1" ]; proxy_protocol_from = [ "127.0.0.1" ];
  locations = ( { prefix = "/"; return = 200; } ); } );
"""
    rc, _, err, _ = run_proxyd(["-t", "-c", "{conf}"], config=conf2)
    check(rc != 0 and "proxyd.conf:1: " in err and "no proxy_protocol_from" in err,
          "-t: proxy_protocol without proxy_protocol_from (nothing is trusted by default)", err)
    check("proxyd.conf:3: " in err and "share listen" in err, "-t: servers of one socket disagree", err)


def test_dropin_limits():
    main = """limits = { a = { rate = "1r/s"; }; b = { rate = "1r/s"; }; };
servers = ( { name = "s"; listen = [ "127.0.0.1:1" ];
  locations = ( { prefix = "/"; limit = [ "a", "b", "c" ]; return = 200; } ); } );
"""
    drop = {"10-limits.conf": 'limits = { b = { conn = 3; }; c = { rate = "5r/s"; burst = 2; }; };\n'}
    rc, out, err, _ = run_proxyd(["-t", "-c", "{conf}"], config=main, dropins=drop)
    check(rc == 0, "drop-ins add limits by name (the main file's others stay)", err)
    rc, out, err, _ = run_proxyd(["--dump", "-c", "{conf}"], config=main, dropins=drop)
    check(rc == 0 and "conn = 3" in out and 'rate = "5r/s"' in out and 'rate = "1r/s"' in out,
          "--dump shows the merged limits", out[:400])


def test_examples():
    files = sorted(glob.glob(os.path.join(SRCDIR, "etc", "examples", "*.conf")))
    check(len(files) >= 3, "etc/examples has the examples", files)
    for f in files:
        rc, out, err, _ = run_proxyd(["-t", "-c", f])
        check(rc == 0 and "configuration OK" in out, "%s passes -t" % os.path.basename(f), err)


def main():
    test_config_errors()
    test_examples()
    test_dropin_limits()
    test_limits()
    test_real_ip()
    test_proxy_protocol_in()
    test_proxy_protocol_tls()
    test_proxy_protocol_out()
    test_hash()


if __name__ == "__main__":
    run_main(main)
