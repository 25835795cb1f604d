#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""HTTP/1.1 strictness, from docs' robustness table (rows Q01..Q64 on the
client side, R01..R20 on the upstream side).

Client side: each row's exact bytes go to proxyd over a raw socket. Checked:
the status, that the connection is closed where the row says so, that a
`bad request` line is logged for rejected input, and what the recording
backend received (nothing for rejected input; exactly the expected requests
for the positive rows).

Upstream side: a backend answers `GET /r/<id>` with the row's bytes; checked
are the status the client gets and whether its connection is closed, and that
a normal request afterwards still works (nothing leaks between requests)."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, Proxyd, Reply, check, connect, free_port,  # noqa: E402
                     log, parse_responses, run_main)

P = None  # pause marker in a byte sequence (0.5 s)

# (id, what, bytes or [parts], accepted statuses, close expected)
# A status set of {400, "close"} also accepts a close without any response.
REJECT = [
    ("Q01", "CL+TE (CL.TE)",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX",
     {400}),
    ("Q03", "duplicate CL, different values",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 0\r\n\r\nZ", {400}),
    ("Q04", "duplicate CL, same value",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nZ", {400}),
    ("Q06", "CL with + sign",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", {400}),
    ("Q08", "CL hex 0x10",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\nZ", {400}),
    ("Q09", "CL negative",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -48\r\n\r\n", {400}),
    ("Q10", "CL empty",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", {400}),
    ("Q12", "CL trailing junk 1Z",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1Z\r\n\r\nZ", {400}),
    ("Q14", "TE chunked twice (2 lines)",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\n\r\n",
     {400}),
    ("Q15", "TE chunked, chunked",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", {400}),
    ("Q16", "TE chunked not last",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", {400}),
    ("Q17", "TE gzip only",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", {501}),
    ("Q18", "TE unknown coding + chunked",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", {501}),
    ("Q19", "TE identity + CL",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\nContent-Length: 1\r\n\r\nZ", {400, 501}),
    ("Q21", "TE with space before colon + CL",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
     {400}),
    ("Q23", "TE value \\x08chunked",
     b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x08chunked\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\n\r\n",
     {400, 501}),
    ("Q25", "CL name with trailing space",
     b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 34\r\n\r\nGET / HTTP/1.1\r\nHost: whatever\r\n\r\n",
     {400}),
    ("Q26", "whitespace-prefixed first header",
     b"GET / HTTP/1.1\r\n\tContent-Length: 1\r\nHost: a\r\n\r\nX", {400}),
    ("Q27", "obs-fold in ordinary header",
     b"GET / HTTP/1.1\r\nHost: a\r\nX-Foo: a\r\n b\r\n\r\n", {400}),
    ("Q29", "bare LF line endings", b"GET / HTTP/1.1\nHost: a\n\n", {400}),
    ("Q30", "bare CR inside header value",
     b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", {400}),
    ("Q32", "NUL in header value",
     b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", {400}),
    ("Q33", "control char in header name",
     b"GET / HTTP/1.1\r\nHost: a\r\nfoo\x02: bar\r\n\r\n", {400}),
    ("Q34", "empty header name",
     b"GET / HTTP/1.1\r\nHost: a\r\n: ignored\r\n\r\n", {400}),
    ("Q35", "header line without colon",
     b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length 10\r\n\r\n0123456789", {400}),
    ("Q37", "space in request-target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("Q38", "control char in request-target", b"GET /\x02 HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("Q39", "bad version HTTP/11.1",
     b"GET / HTTP/11.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\n\r\n", {400}),
    ("Q40", "bad protocol HTP/1.1", b"GET / HTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("Q41", "junk method token",
     b"G=\":<>(e),[T];?\" /get HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("Q42", "HTTP/0.9 request", b"GET /\r\n", {400, "close"}),
    ("Q43", "HTTP/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n", {400}),
    ("Q44", "two Host headers", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    ("Q46", "invalid chunk-size z",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nz\r\nabc\r\n0\r\n\r\n", {400}),
    ("Q48", "chunk-size 0x prefix",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\nZ\r\n0\r\n\r\n", {400}),
    ("Q49", "chunk-size leading spaces",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n   1\r\nZ\r\n0\r\n\r\n", {400}),
    ("Q51", "chunk line bare LF",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\n\r\n", {400}),
    ("Q52", "chunk data not CRLF-terminated",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nAAAAAXX\r\n0\r\n\r\n", {400}),
    ("Q63", "70 KB request-target", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
     {414}),
    ("Q64", "70 KB single header",
     b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", {431}),
]

# rows whose head is well-formed and whose body is malformed: a streaming proxy
# may have begun the upstream request, but it must never complete there
BODY_ERRORS = {"Q46", "Q48", "Q49", "Q51", "Q52"}

RAW = {
    "R01": (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: foo\r\n\r\n", "close"),
    "R02": (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
            "close"),
    "R04": (b"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: foo\r\n\r\n", "close"),
    "R05": (b"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "close"),
    "R07": (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "close"),
    "R08": (b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok", None),
    "R10": (b"HTTP/1.1 200 OK\r\nConnection: close\r\nX-Foo: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
            "close"),
    "R11": (b"HTTP/1.1 200 OK\r\nConnection: close\r\nX-Foo : a\r\nContent-Length: 2\r\n\r\nok",
            "close"),
    "R12": (b"HTTP/1.1 200 OK\r\nConnection: close\r\nX-Foo: a\x00b\r\nContent-Length: 2\r\n\r\nok",
            "close"),
    "R14": (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nok", "close"),
    "R16": (b"", "close"),
    "R17": (b"", "hang"),
    "R18": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-ten!!", "close"),
    "R20": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", "rst"),
    # R18 with a body long enough to be spliced (upstream -> pipe -> client)
    "R18L": (b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + b"x" * 300000, "close"),
}

# (id, expected status, client connection must close, body check)
UPSTREAM_ROWS = [
    ("R01", 502, False), ("R02", 200, False), ("R04", 502, False), ("R05", 502, False),
    ("R07", 200, True), ("R08", 502, False), ("R10", 502, False), ("R11", 502, False),
    ("R12", 502, False), ("R14", 502, False), ("R16", 502, False), ("R17", 504, False),
    ("R18", 200, True), ("R20", 200, True), ("R18L", 200, True),
]


def handler(req):
    t = req.target
    if t.startswith("/r/"):
        name = t[3:]
        if name in RAW:
            raw, after = RAW[name]
            return Reply(raw=raw, after=after)
    return Reply(200, [("Content-Type", "text/plain")], t.encode() + b"\n")


CONFIG = """
workers = 2;
servers = (
  {
    name = "main";
    listen = [ "http" ];
    client_header_timeout = "2s";
    # far beyond every exchange() timeout: a close seen by a test is proxyd deciding to close
    keepalive_timeout = "60s";
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
    locations = (
      { prefix = "/r/"; read_timeout = "1s"; proxy_pass = "http://127.0.0.1:%(bport)d"; },
      { prefix = "/"; proxy_pass = "http://127.0.0.1:%(bport)d"; }
    );
  }
);
"""


def exchange(port, parts, want=None, timeout=4.0):
    """Send parts (None = 0.5 s pause). Read until the peer closes, the
    timeout, or (with `want`) until `want` final responses are complete.
    -> (data, closed_by_peer, seconds until the first byte)."""
    s = connect(port, timeout=timeout)
    data = b""
    closed = False
    first = None
    t0 = time.monotonic()
    try:
        for p in parts if isinstance(parts, list) else [parts]:
            if p is None:
                time.sleep(0.5)
                continue
            try:
                s.sendall(p)
            except (BrokenPipeError, ConnectionResetError):
                break
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                c = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                closed = True
                break
            if not c:
                closed = True
                break
            if first is None:
                first = time.monotonic() - t0
            data += c
            if want is not None:
                rs, rest = parse_responses(data)
                final = [r for r in rs if r.status >= 200]
                if len(final) >= want and not rest:
                    last = final[want - 1]
                    cl = last.header("Content-Length")
                    if cl is None or len(last.body) >= int(cl):
                        break
    finally:
        s.close()
    return data, closed, first


def bad_request_count(p):
    return sum(1 for ln in p.log_text().splitlines() if "bad request" in ln)


def wait_bad_request(p, before, timeout=1.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bad_request_count(p) > before:
            return True
        time.sleep(0.05)
    return False


def first_status(data):
    rs, _ = parse_responses(data)
    return rs[0].status if rs else None


def client_rows(p, port, b):
    for rid, what, raw, want in REJECT:
        b.reset()
        before = bad_request_count(p)
        data, closed, _ = exchange(port, raw, timeout=4.0)
        st = first_status(data)
        name = "%s %s" % (rid, what)
        if "close" in want:
            check((st in want) or (data == b"" and closed),
                  "%s: answered %s or closed silently" % (name, sorted(x for x in want if x != "close")),
                  data[:120])
        else:
            check(st in want, "%s: status %s" % (name, "/".join(map(str, sorted(want)))),
                  data[:160])
        check(closed, "%s: connection closed" % name)
        if st is not None and st >= 400:
            check(wait_bad_request(p, before), "%s: 'bad request' logged" % name,
                  p.log_text().splitlines()[-3:])
        time.sleep(0.1)
        if rid in BODY_ERRORS:
            check(not b.complete_requests(), "%s: no complete request at the backend" % name,
                  b.requests)
        else:
            check(not b.requests, "%s: backend received nothing" % name, b.requests)
        check_no_more_responses(data, name)

    # Q56 pipelined pair
    b.reset()
    data, closed, _ = exchange(port, b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
                               want=2)
    rs, _ = parse_responses(data)
    check([(r.status, r.body) for r in rs] == [(200, b"/1\n"), (200, b"/2\n")],
          "Q56 pipelined pair: two 200s in order", data[:300])
    b.wait_requests(2, 2)
    check([q.request_line for q in b.complete_requests()]
          == [b"GET /1 HTTP/1.1", b"GET /2 HTTP/1.1"],
          "Q56: backend received /1 then /2", b.requests)

    # Q57 bytes after Connection: close
    b.reset()
    data, closed, _ = exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                               b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    rs, _ = parse_responses(data)
    check(len(rs) == 1 and rs[0].status == 200 and closed,
          "Q57 bytes after Connection: close: one 200, then close", data[:300])
    time.sleep(0.2)
    check([q.target for q in b.requests] == ["/"], "Q57: /x never forwarded", b.requests)

    # Q58 GET with a Content-Length body
    b.reset()
    data, closed, _ = exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n1234567890",
                               want=1, timeout=3)
    rs, _ = parse_responses(data)
    check(len(rs) == 1 and rs[0].status == 200, "Q58 GET with CL body: 200", data[:200])
    b.wait_requests(1, 2)
    time.sleep(0.2)
    qs = b.requests
    check(len(qs) == 1 and qs[0].complete and qs[0].body == b"1234567890"
          and qs[0].header("Content-Length") == "10",
          "Q58: backend got one request with CL 10 and the body", qs)

    # Q60 Expect: 100-continue
    b.reset()
    data, closed, _ = exchange(port, [b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                                      b"Expect: 100-continue\r\n\r\n", P, b"hello"], want=1)
    check(data.startswith(b"HTTP/1.1 100 Continue\r\n"),
          "Q60 Expect: 100-continue: interim 100 Continue first", data[:200])
    rs, _ = parse_responses(data)
    final = [r for r in rs if r.status >= 200]
    check(len(final) == 1 and final[0].status == 200, "Q60: then 200", data[:300])
    b.wait_requests(1, 2)
    time.sleep(0.2)
    qs = b.requests
    check(len(qs) == 1 and qs[0].complete and qs[0].body == b"hello",
          "Q60: body of 5 bytes forwarded once", qs)

    # Q62 TE CHUNKED uppercase
    b.reset()
    data, closed, _ = exchange(port, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n"
                               b"1\r\nZ\r\n0\r\n\r\n", want=1)
    rs, _ = parse_responses(data)
    check(len(rs) == 1 and rs[0].status == 200, "Q62 TE CHUNKED uppercase: 200", data[:200])
    b.wait_requests(1, 2)
    time.sleep(0.2)
    qs = b.requests
    check(len(qs) == 1 and qs[0].complete and qs[0].body == b"Z",
          "Q62: backend got one request with body 'Z'", qs)


def check_no_more_responses(data, name):
    rs, _ = parse_responses(data)
    check(len(rs) <= 1, "%s: at most one response" % name, data[:300])


def upstream_rows(p, port, b):
    for rid, want, must_close in UPSTREAM_ROWS:
        b.reset()
        t0 = time.monotonic()
        data, closed, _ = exchange(port, b"GET /r/%s HTTP/1.1\r\nHost: a\r\n\r\n" % rid.encode(),
                                   want=None if must_close else 1, timeout=5)
        dt = time.monotonic() - t0
        rs, rest = parse_responses(data)
        st = rs[0].status if rs else None
        check(st == want, "%s: client gets %d" % (rid, want), data[:200])
        check(b.requests and b.requests[0].target == "/r/%s" % rid,
              "%s: backend received the request" % rid, b.requests)
        if rid == "R02":
            check(rs and rs[0].body == b"" and
                  rs[0].header_all("Content-Length") in ([], ["0"]),
                  "R02: duplicate identical Content-Length collapsed, empty body", data[:200])
        if rid == "R07":
            check(rs and rs[0].body == b"" and closed,
                  "R07: empty body, then the client connection closes", data[:200])
        if rid == "R17":
            check(0.8 <= dt <= 4.0, "R17: 504 after read_timeout = 1s (took %.2fs)" % dt)
        if rid in ("R18", "R20", "R18L"):
            got = data.partition(b"\r\n\r\n")[2]
            announced = 1048576 if rid == "R18L" else 100
            check(closed and len(got) < announced,
                  "%s: client connection closed before the announced %d bytes (got %d)"
                  % (rid, announced, len(got)))
        if must_close:
            check(closed, "%s: client connection closed" % rid)
        # nothing leaks into the next exchange
        data2, _, _ = exchange(port, b"GET /after/%s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                               % rid.encode(), timeout=4)
        rs2, _ = parse_responses(data2)
        check(len(rs2) == 1 and rs2[0].status == 200 and rs2[0].body == b"/after/%s\n" % rid.encode(),
              "%s: next request on a new connection gets its own 200" % rid, data2[:200])


def main():
    b = Backend(handler)
    try:
        port = free_port()
        with Proxyd(CONFIG % {"bport": b.port}, sockets=[("127.0.0.1:%d" % port, "http")]) as p:
            client_rows(p, port, b)
            upstream_rows(p, port, b)
            check(p.alive(), "proxyd still running after every row")
    finally:
        b.close()


if __name__ == "__main__":
    log("test_http_strict: proxyd=%s" % os.environ.get("PROXYD"))
    run_main(main)
