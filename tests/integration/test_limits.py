#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Client limits: each configurable, each with a safe default and its status.

Head limits (server level): client_max_request_line (414),
client_max_header_line, client_max_header_size, client_max_headers (431),
client_max_chunk_overhead (400 once framing outweighs the data); both the
configured values and the defaults (8k / 8k / 32k / 100 / 16k), just under and
just over. A head limit inside a location is a configuration error.

Location level: client_max_body_size counted on the decoded chunked body;
client_header_timeout as a deadline from accept (slowloris dripping a byte at
a time is still cut off) and, on a keep-alive connection, from the first byte
of the next request (idle time before it does not count);
client_body_min_rate (a slow POST is cut off with 408 even though no single
read waits longer than client_body_timeout, a fast long upload is not).

Top level: max_connections (every worker full: new connections get a 503 and
are closed, the daemon keeps serving and accepts again once connections go);
EMFILE on accept pauses accepting instead of spinning (proxyd's descriptor
limit is lowered to 64 with prlimit, CPU time is sampled from /proc while the
backlog is full), and serving resumes once descriptors are free."""

import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, Proxyd, Reply, check, connect, free_port,  # noqa: E402
                     log, parse_responses, recv_until_close, run_main, run_proxyd)


def handler(req):
    return Reply(200, [("Content-Type", "text/plain")],
                 b"%s %d\n" % (req.target.encode(), req.body_len))


LIMITS_CONFIG = """
workers = 1;
servers = (
  {
    name = "main";
    listen = [ "http" ];
    client_max_request_line = "256";
    client_max_header_line = "128";
    client_max_header_size = "1k";
    client_max_headers = 10;
    client_max_chunk_overhead = "512";
    client_header_timeout = "1s";
    keepalive_timeout = "3s";
    locations = (
      { prefix = "/slow/"; client_body_timeout = "1s"; client_body_min_rate = "1k";
        proxy_pass = "http://127.0.0.1:%(bport)d"; },
      { prefix = "/big/"; client_max_body_size = "100"; proxy_pass = "http://127.0.0.1:%(bport)d"; },
      { prefix = "/"; proxy_pass = "http://127.0.0.1:%(bport)d"; }
    );
  }
);
"""

DEFAULTS_CONFIG = """
workers = 1;
servers = (
  {
    name = "main";
    listen = [ "http" ];
    locations = ( { prefix = "/"; proxy_pass = "http://127.0.0.1:%(bport)d"; } );
  }
);
"""


def exchange(port, parts, timeout=4.0, gap=0.0):
    """Send the parts (a `gap` pause between them, stop at a send error), read
    until the peer closes or `timeout`. -> (data, closed, seconds)."""
    s = connect(port, timeout=timeout)
    t0 = time.monotonic()
    try:
        for i, p in enumerate(parts):
            if i and gap:
                time.sleep(gap)
            try:
                s.sendall(p)
            except OSError:
                break
        data, closed = recv_until_close(s, timeout)
        return data, closed, time.monotonic() - t0
    finally:
        s.close()


def status_of(data):
    rs, _ = parse_responses(data)
    return rs[0].status if rs else None


def read_one(s, timeout=4.0):
    """Read one complete response with a length from a kept-alive socket."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            c = s.recv(65536)
        except socket.timeout:
            break
        except OSError:
            break
        if not c:
            break
        data += c
        rs, rest = parse_responses(data)
        if rs and not rest and rs[0].header("Content-Length") is not None \
                and len(rs[0].body) == int(rs[0].header("Content-Length")):
            return rs[0]
    rs, _ = parse_responses(data)
    return rs[0] if rs else None


def head_with(line=b"GET / HTTP/1.1", fields=(), end=b"\r\n"):
    h = line + b"\r\nHost: a\r\n"
    for k, v in fields:
        h += k + b": " + v + b"\r\n"
    return h + end


def rejected(port, b, req, want, what, close=True):
    b.reset()
    data, closed, _ = exchange(port, [req], timeout=4)
    st = status_of(data)
    check(st == want, "%s -> %d" % (what, want), data[:200])
    if close:
        check(closed, "%s: connection closed" % what)
    time.sleep(0.1)
    check(not b.complete_requests(), "%s: nothing reached the backend" % what, b.requests)


def accepted(port, b, req, what, body_len=None):
    b.reset()
    data, closed, _ = exchange(port, [req], timeout=4)
    rs, _ = parse_responses(data)
    ok = len(rs) == 1 and rs[0].status == 200
    if ok and body_len is not None:
        ok = rs[0].body.endswith(b" %d\n" % body_len)
    check(ok, "%s -> 200" % what, data[:200])


def chunked_post(target, chunks, trailers=b"", close=True):
    req = b"POST " + target + b" HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    if close:
        req += b"Connection: close\r\n"
    req += b"\r\n" + b"".join(chunks) + b"0\r\n" + trailers + b"\r\n"
    return req


# ---------------------------------------------------------------- configured

def configured_head_limits(port, b):
    close = (b"Connection", b"close")
    # request line: 256 bytes
    line = b"GET /" + b"a" * 200 + b" HTTP/1.1"          # 214 bytes
    accepted(port, b, head_with(line, [close]), "request line of 214 bytes (limit 256)")
    line = b"GET /" + b"a" * 300 + b" HTTP/1.1"          # 314 bytes
    rejected(port, b, head_with(line, [close]), 414, "request line of 314 bytes (limit 256)")

    # one field: 128 bytes
    accepted(port, b, head_with(fields=[close, (b"X-F", b"v" * 100)]),
             "header field of 105 bytes (limit 128)")
    rejected(port, b, head_with(fields=[close, (b"X-F", b"v" * 160)]), 431,
             "header field of 165 bytes (limit 128)")

    # count: 10 (Host + Connection + 8 = 10; + 10 = 12)
    accepted(port, b, head_with(fields=[close] + [(b"X-%d" % i, b"v") for i in range(8)]),
             "10 header fields (limit 10)")
    rejected(port, b, head_with(fields=[close] + [(b"X-%d" % i, b"v") for i in range(10)]), 431,
             "12 header fields (limit 10)")

    # whole head: 1k, each field under 128 and the count within 10
    f = [(b"X-%d" % i, b"v" * 110) for i in range(6)]
    accepted(port, b, head_with(fields=[close] + f), "head of about 750 bytes (limit 1k)")
    big = head_with(fields=[close] + [(b"X-%d" % i, b"v" * 120) for i in range(8)])
    check(len(big) > 1024, "(the 431 head really is over 1k: %d bytes)" % len(big))
    rejected(port, b, big, 431, "head of %d bytes (limit 1k)" % len(big))

    # the limits hold on a kept-alive connection too: a second request's head
    # is measured on its own, and an oversized one is refused there
    b.reset()
    s = connect(port)
    try:
        s.sendall(head_with(line=b"GET /ka1 HTTP/1.1", fields=[(b"X-F", b"v" * 100)]))
        r1 = read_one(s)
        s.sendall(head_with(line=b"GET /ka2 HTTP/1.1", fields=[(b"X-F", b"v" * 100)]))
        r2 = read_one(s)
        s.sendall(head_with(line=b"GET /ka3 HTTP/1.1", fields=[(b"X-F", b"v" * 200)]))
        data, closed = recv_until_close(s, 4)
    finally:
        s.close()
    check(r1 is not None and r1.status == 200 and r2 is not None and r2.status == 200,
          "keep-alive: two requests with 105-byte fields -> 200, 200", (r1, r2))
    check(status_of(data) == 431 and closed,
          "keep-alive: third request with a 205-byte field -> 431 and close", data[:200])
    check([q.target for q in b.complete_requests()] == ["/ka1", "/ka2"],
          "keep-alive: the oversized request never reached the backend", b.requests)


def configured_chunk_limits(port, b):
    # plenty of framing, but the data outweighs it: 200 chunks of 100 bytes,
    # about 1200 bytes of chunk lines (over 512), 20000 bytes of data
    chunks = [b"64\r\n" + b"d" * 100 + b"\r\n" for _ in range(200)]
    accepted(port, b, chunked_post(b"/ch/ok", chunks),
             "chunked body, 1200 bytes of framing for 20000 bytes of data (overhead 512)", 20000)

    # 1-byte chunks: 300 bytes of data in 1500 bytes of framing
    chunks = [b"1\r\nX\r\n" for _ in range(300)]
    rejected(port, b, chunked_post(b"/ch/tiny", chunks), 400,
             "300 one-byte chunks (framing outweighs data beyond 512 bytes)")

    # long chunk extensions
    chunks = [b"4;ext=" + b"e" * 100 + b"\r\nabcd\r\n" for _ in range(10)]
    rejected(port, b, chunked_post(b"/ch/ext", chunks), 400,
             "chunk extensions of 100 bytes on 4-byte chunks (overhead 512)")

    # trailers count as overhead
    trailers = b"".join(b"X-T%d: %s\r\n" % (i, b"t" * 100) for i in range(8))
    rejected(port, b, chunked_post(b"/ch/trl", [b"4\r\nabcd\r\n"], trailers), 400,
             "800 bytes of trailers after a 4-byte body (overhead 512)")
    trailers = b"X-T: small\r\n"
    accepted(port, b, chunked_post(b"/ch/trl-ok", [b"4\r\nabcd\r\n"], trailers),
             "a small trailer after a 4-byte body", 4)


def body_size_decoded(port, b):
    # /big/ has client_max_body_size = 100; chunked bodies count decoded bytes
    chunks = [b"a;e=xxxxxxxx\r\n" + b"z" * 10 + b"\r\n" for _ in range(10)]
    req = chunked_post(b"/big/100", chunks)
    check(len(req) > 200, "(the 100-byte chunked body is %d bytes on the wire)" % len(req))
    accepted(port, b, req, "chunked body of 100 decoded bytes (client_max_body_size 100)", 100)
    chunks.append(b"1\r\nz\r\n")
    rejected(port, b, chunked_post(b"/big/101", chunks), 413,
             "chunked body of 101 decoded bytes (client_max_body_size 100)", close=False)


def header_deadline(port, b):
    # slowloris: a byte every 0.25 s keeps every read short, the deadline from
    # accept still fires (client_header_timeout 1s)
    req = b"GET /slowloris HTTP/1.1\r\nHost: a\r\nX-Drip: " + b"d" * 60
    s = connect(port)
    t0 = time.monotonic()
    data = b""
    closed = False
    try:
        s.settimeout(0.25)
        for ch in req:
            try:
                s.sendall(bytes([ch]))
            except OSError:
                closed = True
                break
            try:
                c = s.recv(4096)
                if not c:
                    closed = True
                    break
                data += c
            except socket.timeout:
                pass
            except OSError:
                closed = True
                break
            if time.monotonic() - t0 > 6:
                break
        if not closed:
            more, closed = recv_until_close(s, 2)
            data += more
    finally:
        s.close()
    dt = time.monotonic() - t0
    check(data.startswith(b"HTTP/1.1 408"), "slowloris (a byte every 0.25 s) -> 408", data[:200])
    check(closed and 0.7 <= dt <= 2.5,
          "slowloris: closed about client_header_timeout = 1s after accept (took %.2fs)" % dt)

    # keep-alive: idle time before the next request does not count toward its
    # header deadline; the deadline starts at its first byte
    b.reset()
    s = connect(port)
    try:
        s.sendall(b"GET /ka/first HTTP/1.1\r\nHost: a\r\n\r\n")
        r1 = read_one(s)
        time.sleep(1.6)  # longer than client_header_timeout, shorter than keepalive_timeout
        s.sendall(b"GET /ka/second HTTP/1.1\r\nHost: a\r\n\r\n")
        r2 = read_one(s)
        check(r1 is not None and r1.status == 200 and r2 is not None and r2.status == 200,
              "keep-alive: a request 1.6 s after the previous one (header timeout 1s) -> 200",
              (r1, r2))
        time.sleep(0.5)
        t0 = time.monotonic()
        s.sendall(b"GET /ka/third HTTP/1.1\r\n")
        data, closed = recv_until_close(s, 5)
        dt = time.monotonic() - t0
    finally:
        s.close()
    check(data.startswith(b"HTTP/1.1 408") and closed,
          "keep-alive: an incomplete second head -> 408 and close", data[:200])
    check(0.7 <= dt <= 2.5,
          "keep-alive: 408 about 1s after the head's first byte (took %.2fs)" % dt)


def body_min_rate(port, b):
    # 200 bytes every 0.5 s = 400 B/s, under client_body_min_rate 1k; no
    # single wait reaches client_body_timeout (1s), the rate rule must cut it
    b.reset()
    s = connect(port)
    t0 = time.monotonic()
    data = b""
    closed = False
    try:
        s.sendall(b"POST /slow/drip HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
        s.settimeout(0.5)
        while time.monotonic() - t0 < 10:
            try:
                s.sendall(b"p" * 200)
            except OSError:
                closed = True
                break
            try:
                c = s.recv(4096)
                if not c:
                    closed = True
                    break
                data += c
            except socket.timeout:
                pass
            except OSError:
                closed = True
                break
        dt = time.monotonic() - t0
        if not closed:
            more, closed = recv_until_close(s, 1)
            data += more
    finally:
        s.close()
    check(data.startswith(b"HTTP/1.1 408") or (closed and data == b""),
          "slow POST at 400 B/s (min rate 1k) -> 408", data[:200])
    check(data.startswith(b"HTTP/1.1 408"), "slow POST: the 408 is sent", data[:200])
    check(closed and 1.2 <= dt <= 5.0,
          "slow POST: connection closed after the grace plus the rate allowance (took %.2fs)"
          % dt)
    time.sleep(0.1)
    check(not b.complete_requests(), "slow POST never completed at the backend", b.requests)

    # body bytes that arrive in the same packet as the head are received too:
    # 1024 of them buy one more second of waiting. Then 200 bytes every 0.5 s:
    # the allowance 1 s + (1024 + 200 k) / 1024 s runs out at about 3.4 s
    # (without crediting the first 1024 bytes it would be at about 1.6 s)
    b.reset()
    s = connect(port)
    t0 = time.monotonic()
    data = b""
    closed = False
    try:
        s.sendall(b"POST /slow/head HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n"
                  + b"h" * 1024)
        s.settimeout(0.5)
        while time.monotonic() - t0 < 10:
            try:
                c = s.recv(4096)
                if not c:
                    closed = True
                    break
                data += c
            except socket.timeout:
                pass
            except OSError:
                closed = True
                break
            try:
                s.sendall(b"p" * 200)
            except OSError:
                closed = True
                break
        dt = time.monotonic() - t0
        if not closed:
            more, closed = recv_until_close(s, 1)
            data += more
    finally:
        s.close()
    check(data.startswith(b"HTTP/1.1 408") and closed,
          "slow POST after 1 KiB sent with the head -> 408 and close", data[:200])
    check(2.8 <= dt <= 6.0,
          "slow POST: the 1 KiB that came with the head counts toward the rate allowance "
          "(cut after %.2fs; allowance runs out at about 3.4 s)" % dt)

    # fast enough: 4000 bytes every 0.5 s (8 kB/s) for about 3 s, longer than
    # client_body_timeout in total -> 200
    b.reset()
    n = 6 * 4000
    s = connect(port)
    try:
        s.sendall(b"POST /slow/fine HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n"
                  b"Connection: close\r\n\r\n" % n)
        for i in range(6):
            time.sleep(0.5)
            s.sendall(b"q" * 4000)
        data, closed = recv_until_close(s, 4)
    finally:
        s.close()
    rs, _ = parse_responses(data)
    check(len(rs) == 1 and rs[0].status == 200 and rs[0].body == b"/slow/fine %d\n" % n,
          "upload at 8 kB/s lasting 3 s (body timeout 1s, min rate 1k) -> 200", data[:200])


def location_level_errors():
    for key, val in [("client_max_request_line", '"1k"'), ("client_max_header_line", '"1k"'),
                     ("client_max_header_size", '"64k"'), ("client_max_headers", "20"),
                     ("client_max_chunk_overhead", '"4k"')]:
        conf = """servers = ( { name = "main"; listen = [ "127.0.0.1:1" ];
    locations = ( { prefix = "/"; %s = %s; return = 200; } ); } );
""" % (key, val)
        rc, out, err, _ = run_proxyd(["-t", "-c", "{conf}"], config=conf, timeout=10)
        check(rc not in (0, None) and key in (out + err),
              "%s inside a location: -t fails and names it" % key, (rc, out + err))
        conf = """defaults = { %s = %s; };
servers = ( { name = "main"; listen = [ "127.0.0.1:1" ];
    locations = ( { prefix = "/"; return = 200; } ); } );
""" % (key, val)
        rc, out, err, _ = run_proxyd(["-t", "-c", "{conf}"], config=conf, timeout=10)
        check(rc == 0, "%s in defaults: -t accepts it" % key, (rc, out + err))


# ---------------------------------------------------------------- defaults

def default_limits(port, b):
    close = (b"Connection", b"close")
    line = b"GET /" + b"a" * 8000 + b" HTTP/1.1"
    accepted(port, b, head_with(line, [close]), "default: request line of 8014 bytes")
    line = b"GET /" + b"a" * 8300 + b" HTTP/1.1"
    rejected(port, b, head_with(line, [close]), 414, "default: request line of 8314 bytes")

    accepted(port, b, head_with(fields=[close, (b"X-F", b"v" * 8000)]),
             "default: header field of 8005 bytes")
    rejected(port, b, head_with(fields=[close, (b"X-F", b"v" * 8300)]), 431,
             "default: header field of 8305 bytes")

    accepted(port, b, head_with(fields=[close] + [(b"X-%d" % i, b"v") for i in range(90)]),
             "default: 92 header fields")
    rejected(port, b, head_with(fields=[close] + [(b"X-%d" % i, b"v") for i in range(110)]), 431,
             "default: 112 header fields")

    accepted(port, b, head_with(fields=[close] + [(b"X-%d" % i, b"v" * 7000) for i in range(4)]),
             "default: head of about 28 kB")
    rejected(port, b, head_with(fields=[close] + [(b"X-%d" % i, b"v" * 7000) for i in range(5)]),
             431, "default: head of about 35 kB")

    chunks = [b"1\r\nX\r\n" for _ in range(5000)]
    rejected(port, b, chunked_post(b"/ch/tiny", chunks), 400,
             "default: 5000 one-byte chunks (25 kB of framing, 16k overhead)")
    chunks = [b"1;" + b"e" * 1000 + b"\r\nX\r\n" for _ in range(20)]
    rejected(port, b, chunked_post(b"/ch/ext", chunks), 400,
             "default: 20 chunk extensions of 1000 bytes on 1-byte chunks")
    chunks = [b"400\r\n" + b"d" * 1024 + b"\r\n" for _ in range(900)]
    accepted(port, b, chunked_post(b"/ch/ok", chunks),
             "default: 900 chunks of 1 KiB (about 6 kB of framing)", 900 * 1024)
    chunks = [b"64\r\n" + b"d" * 100 + b"\r\n" for _ in range(4000)]
    accepted(port, b, chunked_post(b"/ch/many", chunks),
             "default: 4000 chunks of 100 bytes (24 kB of framing over 16k, 400 kB of data)",
             400000)


# ---------------------------------------------------------------- connections

def max_connections(b):
    port = free_port()
    conf = """workers = 2;
max_connections = 3;
servers = ( { name = "main"; listen = [ "http" ]; client_header_timeout = "20s";
    keepalive_timeout = "20s";
    locations = ( { prefix = "/"; proxy_pass = "http://127.0.0.1:%d"; } ); } );
""" % b.port
    with Proxyd(conf, sockets=[("127.0.0.1:%d" % port, "http")]) as p:
        held = []
        try:
            # wait_port's probe connection is gone; 2 workers x 3 = 6 slots
            time.sleep(0.3)
            statuses = []
            refused_closed = []
            for i in range(10):
                s = connect(port)
                s.sendall(b"GET /held/%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
                r = read_one(s, 3)
                statuses.append(r.status if r is not None else None)
                if r is not None and r.status == 200:
                    held.append(s)
                    continue
                rest, closed = recv_until_close(s, 2)
                refused_closed.append(closed and rest == b"")
                s.close()
            check(statuses[:7] == [200] * 6 + [503],
                  "max_connections 3 x 2 workers: 6 connections served, the 7th gets 503 "
                  "(a 503 only when every worker is full)", statuses)
            check(statuses.count(200) <= 6,
                  "never more than 6 client connections served at once", statuses)
            check(statuses[-3:] == [503] * 3 and refused_closed and all(refused_closed),
                  "at the cap, each further connection gets 503 and is closed "
                  "(accepting goes on)", (statuses, refused_closed))
            # the held connections keep working
            held[0].sendall(b"GET /held/again HTTP/1.1\r\nHost: a\r\n\r\n")
            r = read_one(held[0])
            check(r is not None and r.status == 200,
                  "at the cap, an existing keep-alive connection is still served", r)
            check(p.wait_log(r"max_connections", 2) is not None,
                  "the refusal is logged", p.log_text()[-300:])
            # free two slots, a new connection is served again
            for s in held[:2]:
                s.close()
            held = held[2:]
            ok = None
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                data, closed, _ = exchange(port, [b"GET /after HTTP/1.1\r\nHost: a\r\n"
                                                  b"Connection: close\r\n\r\n"], timeout=3)
                ok = status_of(data)
                if ok == 200:
                    break
                time.sleep(0.2)
            check(ok == 200, "after connections close, a new connection is served", ok)
        finally:
            for s in held:
                s.close()


def proc_cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def emfile(b):
    port = free_port()
    conf = """workers = 1;
servers = ( { name = "main"; listen = [ "127.0.0.1:%d" ]; client_header_timeout = "30s";
    keepalive_timeout = "30s";
    locations = ( { exact = "/healthz"; return = 200; body = "ok\\n"; },
                  { prefix = "/"; proxy_pass = "http://127.0.0.1:%d"; } ); } );
""" % (port, b.port)
    with Proxyd(conf, wait=("127.0.0.1", port)) as p:
        base = fd_count(p.pid)
        check(base is not None and base < 40, "proxyd uses few descriptors at start (%s)" % base)
        cp = subprocess.run(["prlimit", "--pid", str(p.pid), "--nofile=64:64"],
                            capture_output=True, timeout=10)
        check(cp.returncode == 0, "prlimit --nofile=64:64 on proxyd", cp.stderr[-300:])
        socks = []
        try:
            for i in range(100):
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=2)
                    # a first byte: listeners defer accepting until a client has sent one
                    s.sendall(b"G")
                except OSError:
                    break
                socks.append(s)
            time.sleep(0.5)
            n = fd_count(p.pid)
            check(n is not None and n >= 60,
                  "proxyd at its descriptor limit with %d client connections open (%s fds)"
                  % (len(socks), n))
            check(p.wait_log(r"accept\(\) failed", 3) is not None,
                  "accept failure is logged", p.log_text()[-400:])
            c0 = proc_cpu_seconds(p.pid)
            time.sleep(2.0)
            c1 = proc_cpu_seconds(p.pid)
            check(c1 - c0 < 0.5,
                  "out of descriptors for 2 s: proxyd used %.2f s of CPU (< 0.5, no busy loop)"
                  % (c1 - c0))
            fails = [ln for ln in p.log_text().splitlines() if "accept() failed" in ln]
            check(len(fails) < 100,
                  "accept failures logged at most ~10/s (%d lines in 2.5 s)" % len(fails),
                  fails[-3:])
            check(p.alive(), "proxyd alive at the descriptor limit")
        finally:
            for s in socks:
                s.close()
        ok = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                data, closed, _ = exchange(port, [b"GET /healthz HTTP/1.1\r\nHost: a\r\n"
                                                  b"Connection: close\r\n\r\n"], timeout=3)
            except OSError:
                data = b""
            ok = status_of(data)
            if ok == 200:
                break
            time.sleep(0.2)
        check(ok == 200, "descriptors free again: proxyd serves a new connection", ok)
        data, closed, _ = exchange(port, [b"GET /proxied HTTP/1.1\r\nHost: a\r\n"
                                          b"Connection: close\r\n\r\n"], timeout=3)
        check(status_of(data) == 200, "and proxies to the backend again", data[:200])


def deferred_accept(b):
    """Listeners accept a connection once its first bytes arrived (TCP_DEFER_ACCEPT): a
    silent connection costs proxyd nothing until then, is taken after about a second and
    then meets client_header_timeout; one that sends is served at once. Checked on a
    socket proxyd binds itself and on one handed over by the service manager."""
    for how in ("bound", "handed over"):
        port = free_port()
        listen = '"127.0.0.1:%d"' % port if how == "bound" else '"http"'
        conf = """workers = 1;
servers = ( { name = "main"; listen = [ %s ]; client_header_timeout = "1s";
    locations = ( { prefix = "/"; return = 200; body = "ok\\n"; } ); } );
""" % listen
        kw = {"wait": ("127.0.0.1", port)} if how == "bound" else \
            {"sockets": [("127.0.0.1:%d" % port, "http")]}
        with Proxyd(conf, **kw) as p:
            time.sleep(0.3)
            base = fd_count(p.pid)
            silent = [connect(port) for _ in range(5)]
            talker = connect(port)
            talker.sendall(b"GET /deferred HTTP/1.1\r\n")
            time.sleep(0.4)
            n = fd_count(p.pid)
            check(base is not None and n == base + 1,
                  "%s listener: of 5 silent connections and 1 that sent bytes, only the "
                  "latter is accepted (fds %s -> %s)" % (how, base, n))
            talker.sendall(b"Host: a\r\nConnection: close\r\n\r\n")
            r = read_one(talker, 3)
            check(r is not None and r.status == 200,
                  "%s listener: the connection that sent bytes is served" % how, r)
            talker.close()
            t0 = time.monotonic()
            ends = []
            for s in silent:
                rest, closed = recv_until_close(s, 8)
                ends.append((closed, round(time.monotonic() - t0, 1)))
                s.close()
            check(all(c for c, _ in ends) and all(t < 7 for _, t in ends),
                  "%s listener: silent connections are still accepted in the end and closed "
                  "by the header deadline (closed, seconds): %s" % (how, ends))
            # (a timed-out connection lingers until the client's close reaches proxyd)
            deadline = time.monotonic() + 3
            while fd_count(p.pid) != base and time.monotonic() < deadline:
                time.sleep(0.05)
            check(fd_count(p.pid) == base,
                  "%s listener: no descriptor left behind (%s, %s at start)"
                  % (how, fd_count(p.pid), base))


def main():
    b = Backend(handler)
    try:
        port = free_port()
        with Proxyd(LIMITS_CONFIG % {"bport": b.port},
                    sockets=[("127.0.0.1:%d" % port, "http")]) as p:
            configured_head_limits(port, b)
            configured_chunk_limits(port, b)
            body_size_decoded(port, b)
            header_deadline(port, b)
            body_min_rate(port, b)
            check(p.alive(), "proxyd still running after the configured limits")
        location_level_errors()
        port = free_port()
        with Proxyd(DEFAULTS_CONFIG % {"bport": b.port},
                    sockets=[("127.0.0.1:%d" % port, "http")]) as p:
            default_limits(port, b)
            check(p.alive(), "proxyd still running after the default limits")
        max_connections(b)
        deferred_accept(b)
        emfile(b)
    finally:
        b.close()


if __name__ == "__main__":
    log("test_limits: proxyd=%s" % os.environ.get("PROXYD"))
    run_main(main)
