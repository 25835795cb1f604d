#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Upstream groups against real backends on loopback: distribution over
10,000 requests per algorithm (exact for round-robin, smooth 5,1,1 order),
ip_hash stickiness and consistency, failover when a backend dies mid-load
(no failed GET), active health checks removing and restoring a server, a DNS
answer change followed (a tiny DNS server in this file), and a POST never sent
twice."""

import http.server
import os
import socket
import socketserver
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, Proxyd, Reply, check, check_eq, free_port,  # noqa: E402
                     http_request, log, run_main)


def whole(status, body):
    """A response sent in one write (no Nagle/delayed-ACK stall between head and body)."""
    return Reply(raw=b"HTTP/1.1 %d X\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                 % (status, len(body), body))


def named(name, health=None):
    """A backend answering its name; /healthz answers health[0] when given."""
    def handler(req):
        if req.target == "/healthz" and health is not None:
            return whole(health[0], b"hz\n")
        return whole(200, name.encode() + b"\n")
    return handler


def served(backend):
    return len([r for r in backend.complete_requests() if r.target != "/healthz"])


class Client:
    """One keep-alive client connection (optionally from a given source
    address) sending GETs one after another; -> body text or None."""

    def __init__(self, port, src=None):
        self.port = port
        self.src = src
        self.s = None
        self.buf = b""

    def _open(self):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.s.settimeout(10)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.src:
            self.s.bind((self.src, 0))
        self.s.connect(("127.0.0.1", self.port))
        self.buf = b""

    def close(self):
        if self.s:
            self.s.close()
        self.s = None

    def _read_response(self):
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                return None, None
            self.buf += d
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        close = False
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v.strip())
            if k.strip().lower() == b"connection" and v.strip().lower() == b"close":
                close = True
        while len(rest) < length:
            d = self.s.recv(65536)
            if not d:
                return None, None
            rest += d
        body, self.buf = rest[:length], rest[length:]
        if close:
            self.close()
        return status, body

    def get(self, target="/"):
        for attempt in range(2):
            try:
                if not self.s:
                    self._open()
                self.s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target).encode())
                status, body = self._read_response()
                if status is None:
                    raise OSError("closed")
                return status, body.decode("latin-1").strip()
            except OSError:
                # the client connection itself was closed (keepalive limits): reconnect once
                self.close()
                if attempt == 1:
                    return None, None
        return None, None


def load(port, n, threads=4, target="/", srcs=None):
    """n GETs from `threads` keep-alive clients; -> (Counter of bodies, failures list)."""
    counts = {}
    failures = []
    lock = threading.Lock()

    def run(k, share):
        c = Client(port, srcs[k % len(srcs)] if srcs else None)
        for _ in range(share):
            status, body = c.get(target)
            with lock:
                if status != 200:
                    failures.append((status, body))
                else:
                    counts[body] = counts.get(body, 0) + 1
        c.close()

    ts = []
    for k in range(threads):
        share = n // threads + (1 if k < n % threads else 0)
        t = threading.Thread(target=run, args=(k, share), daemon=True)
        ts.append(t)
        t.start()
    for t in ts:
        t.join(timeout=300)
    return counts, failures


CONFIG = """
workers = 2;
access_log = false;
log_level = "info";
%(resolver)s
upstreams = {
%(upstreams)s
};
servers = (
  {
    name = "main";
    listen = [ "127.0.0.1:%(port)d" ];
    read_timeout = "2s";
    connect_timeout = "1s";
    keepalive_timeout = "30s";
    locations = (
%(locations)s
    );
  }
);
"""


def make_config(port, groups, resolver=""):
    ups = []
    locs = []
    for name, body in groups.items():
        ups.append("  %s = { %s };" % (name, body))
        locs.append('      { prefix = "/%s/"; proxy_pass = "http://%s"; }' % (name, name))
    return CONFIG % {"port": port, "upstreams": "\n".join(ups), "locations": ",\n".join(locs),
                     "resolver": resolver}


def servers(backends, extra=""):
    return "servers = ( %s );" % ", ".join(
        '{ address = "%s"; %s }' % (b.address, extra) for b in backends)


def test_algorithms():
    bs = [Backend(named(n)) for n in ("a", "b", "c")]
    w = [Backend(named(n)) for n in ("a", "b", "c")]
    port = free_port()
    groups = {
        "rr": servers(bs),
        "wrr": 'servers = ( { address = "%s"; weight = 5; }, { address = "%s"; }, { address = "%s"; } );'
               % (w[0].address, w[1].address, w[2].address),
        "lc": 'balance = "least_conn"; ' + servers(bs),
        "ih": 'balance = "ip_hash"; ' + servers(bs),
        "rnd": 'balance = "random"; ' + servers(bs),
    }
    try:
        with Proxyd(make_config(port, groups), wait=("127.0.0.1", port)) as p:
            # smooth weighted round-robin: 5,1,1 -> a a b a c a a
            c = Client(port)
            seq = "".join(c.get("/wrr/")[1] for _ in range(14))
            c.close()
            check_eq(seq, "aabacaa" * 2, "weights 5,1,1 give a a b a c a a")

            counts, fails = load(port, 10000, threads=24, target="/rr/")
            check_eq(fails, [], "round_robin: no failed requests")
            check_eq(sorted(counts.values()), [3333, 3333, 3334],
                     "round_robin over 3 servers, 2 workers, 24 clients: exact thirds of 10,000")

            counts, fails = load(port, 10000, threads=24, target="/lc/")
            check_eq(fails, [], "least_conn: no failed requests")
            check(len(counts) == 3 and all(2500 <= v <= 4200 for v in counts.values()),
                  "least_conn: each server gets about a third", counts)

            counts, fails = load(port, 10000, threads=24, target="/rnd/")
            check_eq(fails, [], "random: no failed requests")
            check(len(counts) == 3 and all(2800 <= v <= 3900 for v in counts.values()),
                  "random two choices: each server gets about a third", counts)

            # ip_hash: 100 client addresses x 100 requests
            srcs = ["127.0.%d.%d" % (1 + i // 50, 10 + i % 50) for i in range(100)]
            owner = {}
            seen = {}

            def ih_client(src):
                c = Client(port, src)
                seen[src] = {c.get("/ih/")[1] for _ in range(100)}
                c.close()
            ts = [threading.Thread(target=ih_client, args=(src,), daemon=True) for src in srcs]
            for t in ts:
                t.start()
            for t in ts:
                t.join(timeout=120)
            sticky = len(seen) == len(srcs) and all(len(v) == 1 for v in seen.values())
            for src, v in seen.items():
                owner[src] = next(iter(v)) if len(v) == 1 else None
            check(sticky, "ip_hash: 100 client addresses x 100 requests: each address always reaches the same server")
            per = {}
            for v in owner.values():
                per[v] = per.get(v, 0) + 1
            check(len(per) == 3 and all(v >= 15 for v in per.values()),
                  "ip_hash: 100 client addresses spread over the 3 servers", per)
            # take server b away: only its clients move
            bs[1].close()
            moved_ok = True
            for src in srcs:
                c = Client(port, src)
                got = c.get("/ih/")[1]
                got2 = c.get("/ih/")[1]
                c.close()
                if owner[src] != "b" and (got != owner[src] or got2 != owner[src]):
                    moved_ok = False
                if owner[src] == "b" and (got not in ("a", "c") or got2 != got):
                    moved_ok = False
            check(moved_ok, "ip_hash: with b gone only b's clients move, and they stick to their new server")
            check(p.wait_log(r"upstream ih: server \S+ .* marked unavailable", 2) is not None,
                  "a dead server is logged as unavailable")
    finally:
        for b in bs + w:
            b.close()


def test_failover():
    bs = [Backend(named(n)) for n in ("a", "b", "c")]
    port = free_port()
    groups = {"fo": servers(bs, 'max_fails = 1; fail_timeout = "30s";')}
    try:
        with Proxyd(make_config(port, groups), wait=("127.0.0.1", port)) as p:
            result = {}

            def run():
                result["r"] = load(port, 6000, threads=24, target="/fo/")

            t = threading.Thread(target=run, daemon=True)
            t.start()
            deadline = time.monotonic() + 30
            while served(bs[1]) < 600 and time.monotonic() < deadline:
                time.sleep(0.01)
            bs[1].close()  # dies mid-load, with requests in flight
            t.join(timeout=120)
            counts, fails = result.get("r", ({}, ["load did not finish"]))
            check_eq(fails, [], "backend killed mid-load: zero failed GET requests")
            check_eq(sum(counts.values()), 6000, "all 6000 requests answered")
            before = served(bs[0]) + served(bs[2])
            c = Client(port)
            r = [c.get("/fo/")[1] for _ in range(30)]
            c.close()
            check("b" not in r and served(bs[0]) + served(bs[2]) == before + 30,
                  "the dead server gets no more requests", r)
            check(p.wait_log(r"upstream fo: server 127\.0\.0\.1:%d .* marked unavailable" % bs[1].port, 2)
                  is not None, "the state change is logged")
    finally:
        for b in bs:
            b.close()


def test_all_down_and_backup():
    port = free_port()
    main = Backend(named("main"))
    backup = Backend(named("backup"))
    dead = free_port()
    groups = {
        "bk": 'servers = ( { address = "%s"; }, { address = "%s"; backup = true; } );' % (main.address, backup.address),
        "dead": 'servers = ( { address = "127.0.0.1:%d"; fail_timeout = "1s"; } );' % dead,
    }
    try:
        with Proxyd(make_config(port, groups), wait=("127.0.0.1", port)):
            c = Client(port)
            got = {c.get("/bk/")[1] for _ in range(20)}
            check_eq(got, {"main"}, "backup server unused while the primary works")
            main.close()
            got = [c.get("/bk/")[1] for _ in range(20)]
            check_eq(set(got), {"backup"}, "backup server takes over when the primary is down")
            c.close()
            r = http_request(port, target="/dead/")
            check(r is not None and r.status == 502, "connect refused: 502")
            t0 = time.monotonic()
            r = http_request(port, target="/dead/")
            dt = time.monotonic() - t0
            check(r is not None and r.status == 502 and dt < 0.5, "all servers down: 502 at once (%.3fs)" % dt)
    finally:
        main.close()
        backup.close()


def test_health_checks():
    health = [200]
    bs = [Backend(named("a")), Backend(named("b")), Backend(named("c", health))]
    port = free_port()
    hc = 'health_check = { path = "/healthz"; interval = "300ms"; timeout = "1s"; status = [ 200 ]; fails = 2; passes = 2; };'
    groups = {"hc": hc + " slow_start = \"1s\"; " + servers(bs)}
    try:
        with Proxyd(make_config(port, groups), wait=("127.0.0.1", port)) as p:
            counts, fails = load(port, 300, threads=1, target="/hc/")
            check_eq(counts.get("c"), 100, "healthy c gets its third")
            health[0] = 500
            m = p.wait_log(r"upstream hc: server 127\.0\.0\.1:%d .* is unhealthy" % bs[2].port, 5)
            check(m is not None, "failing health checks mark c unhealthy (logged)", p.log_text()[-2000:])
            counts, fails = load(port, 300, threads=6, target="/hc/")
            check(fails == [] and "c" not in counts and sum(counts.values()) == 300,
                  "an unhealthy server receives no traffic", counts)
            health[0] = 200
            m = p.wait_log(r"upstream hc: server 127\.0\.0\.1:%d .* is healthy again" % bs[2].port, 5)
            check(m is not None, "passing checks restore c (logged)")
            time.sleep(1.2)  # slow start over
            counts, fails = load(port, 300, threads=1, target="/hc/")
            check_eq(counts.get("c"), 100, "a restored server is used again")
            hz = [r for r in bs[0].complete_requests() if r.target == "/healthz"]
            check(len(hz) >= 3 and hz[0].header("Connection") == "close" and hz[0].method == "GET",
                  "probes are GET /healthz with Connection: close", hz[:1])
    finally:
        for b in bs:
            b.close()


# ---- a tiny DNS server: A answers from a mutable table, AAAA: no data ----

class DnsServer:
    def __init__(self, answers, ttl=1):
        self.answers = answers  # name -> ipv4 text
        self.ttl = ttl
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thr = threading.Thread(target=self._loop, daemon=True)
        self._thr.start()

    def close(self):
        self._stop.set()
        self._thr.join(timeout=2)
        self.sock.close()

    def _loop(self):
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self.sock.sendto(self._answer(data), peer)
            except (OSError, ValueError, struct.error):
                pass

    def _answer(self, q):
        qid, flags, qd = struct.unpack("!HHH", q[:6])
        i = 12
        labels = []
        while q[i] != 0:
            labels.append(q[i + 1:i + 1 + q[i]].decode().lower())
            i += 1 + q[i]
        qtype, qclass = struct.unpack("!HH", q[i + 1:i + 5])
        question = q[12:i + 5]
        name = ".".join(labels)
        self.queries += 1
        addr = self.answers.get(name)
        an = b""
        rcode = 0
        if addr is None:
            rcode = 3  # NXDOMAIN
        elif qtype == 1:
            an = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, self.ttl, 4) + socket.inet_aton(addr)
        flags = 0x8180 | rcode
        return struct.pack("!HHHHHH", qid, flags, 1, 1 if an else 0, 0, 0) + question + an


class NameServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def http_named(host, port, name):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = name.encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass
    srv = NameServer((host, port), H)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return srv


def test_dns():
    bport = free_port("127.0.0.2")
    b1 = http_named("127.0.0.2", bport, "first")
    b2 = http_named("127.0.0.3", bport, "second")
    dns = DnsServer({"backend.proxyd.test": "127.0.0.2"}, ttl=1)
    port = free_port()
    groups = {"dns": 'servers = ( { address = "backend.proxyd.test:%d"; resolve = "1s"; } );' % bport}
    try:
        conf = make_config(port, groups, resolver='resolver = [ "127.0.0.1:%d" ];' % dns.port)
        with Proxyd(conf, wait=("127.0.0.1", port)) as p:
            m = p.wait_log(r"upstream dns server backend\.proxyd\.test:%d: addresses now 127\.0\.0\.2:%d" % (bport, bport), 5)
            check(m is not None, "the name is resolved through the configured resolver", p.log_text()[-1500:])
            r = http_request(port, target="/dns/")
            check(r is not None and r.body == b"first\n", "requests reach the first address")
            dns.answers["backend.proxyd.test"] = "127.0.0.3"
            m = p.wait_log(r"addresses now 127\.0\.0\.3:%d" % bport, 5)
            check(m is not None, "a changed DNS answer is followed within the TTL (logged)")
            got = {http_request(port, target="/dns/").body for _ in range(10)}
            check_eq(got, {b"second\n"}, "new requests go to the new address")
            q = dns.queries
            time.sleep(2.2)
            check(dns.queries - q <= 8, "re-resolution at most about once a second (%d queries in 2.2s)"
                  % (dns.queries - q))
            del dns.answers["backend.proxyd.test"]
            m = p.wait_log(r"cannot resolve backend\.proxyd\.test", 5)
            check(m is not None, "a failing name is logged")
            r = http_request(port, target="/dns/")
            check(r is not None and r.body == b"second\n", "a failed query keeps the current addresses")
    finally:
        dns.close()
        for s in (b1, b2):
            s.shutdown()
            s.server_close()


def test_post_never_twice():
    def failing(req):
        return whole(502, b"bad\n")

    def closing(req):
        return Reply(raw=b"", after="close")
    a = Backend(failing)
    b = Backend(named("b"))
    c = Backend(closing)
    port = free_port()
    groups = {
        "p502": 'next_upstream = [ "error", "timeout", "http_502" ]; ' + servers([a, b]),
        "pclose": servers([c, b]),
        "pall": 'next_upstream = [ "error", "http_502", "non_idempotent" ]; ' + servers([a, b]),
    }
    try:
        with Proxyd(make_config(port, groups), wait=("127.0.0.1", port)):
            st = [http_request(port, method="POST", target="/p502/", body=b"x=1").status for _ in range(10)]
            posts = len([r for r in a.complete_requests() + b.complete_requests() if r.method == "POST"])
            check_eq(posts, 10, "10 POSTs answered 502 by one server reach the backends exactly 10 times")
            check(st[0] == 502 and st.count(502) >= 1, "the 502 of a POST is passed on, not retried", st)
            a.reset()
            b.reset()
            gets = [http_request(port, target="/p502/").status for _ in range(10)]
            check_eq(gets, [200] * 10, "GETs answered 502 by one server are retried on the other")

            b.reset()
            st = [http_request(port, method="POST", target="/pclose/", body=b"x=1").status for _ in range(10)]
            posts = len([r for r in c.requests + b.requests if r.method == "POST"])
            check_eq(posts, 10, "POSTs to a server that closes without answering are never sent twice")
            check(st.count(502) >= 1, "those POSTs get 502", st)

            a.reset()
            b.reset()
            # (a request body is streamed, not kept: only a bodiless request can be sent again)
            st = [http_request(port, method="POST", target="/pall/").status for _ in range(4)]
            check_eq(st, [200] * 4, "with non_idempotent a bodiless POST answered 502 is retried on the other server")
    finally:
        for x in (a, b, c):
            x.close()


def main():
    log("algorithms")
    test_algorithms()
    log("failover")
    test_failover()
    log("backup and all down")
    test_all_down_and_backup()
    log("health checks")
    test_health_checks()
    log("dns")
    test_dns()
    log("non-idempotent requests")
    test_post_never_twice()


if __name__ == "__main__":
    run_main(main)
