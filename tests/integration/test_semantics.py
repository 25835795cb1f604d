#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Response semantics (RFC 9112 / RFC 9110) against a scripted upstream.

The backend answers `/s/<name>` with fixed raw bytes; proxyd must turn them
into a correct response for the client:

  HEAD                the upstream's Content-Length (or chunked framing) is
                      passed without a body; the client connection stays usable
  204 / 304           never a body, even when the upstream wrongly sends one;
                      that upstream connection is then not reused
  1xx                 103 Early Hints and 102 Processing before the final
                      response are passed on; an unsolicited 100 Continue is dropped
  trailers            a chunked response is re-chunked to an HTTP/1.1 client:
                      body intact, trailers and chunk extensions dropped
  read until close    to an HTTP/1.1 client chunked with keep-alive; to an
                      HTTP/1.0 client raw, then close
  HTTP/1.0 clients    chunked upstream de-chunked with `Connection: close`;
                      `Connection: keep-alive` honoured for a response with a
                      length; never a 100 Continue
  Expect              100 Continue before the body is sent, then the final
                      response, the body forwarded once; a body over
                      client_max_body_size gets 413 without 100 and unread"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, Proxyd, Reply, check, connect, free_port,  # noqa: E402
                     log, parse_responses, recv_until_close, run_main)

RAW = {
    "204body": (b"HTTP/1.1 204 No Content\r\nX-Kind: 204\r\n\r\nSTRAY-204-BODY", None),
    "304body": (b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 15\r\n\r\n"
                b"STRAY-304-BODY!", None),
    # the stray bytes come 0.1 s after the head: the connection sits in the
    # pool by then and must be dropped, not handed to the next request
    "204late": ([b"HTTP/1.1 204 No Content\r\nX-Kind: 204\r\n\r\n", b"STRAY-LATE-BYTES"], None),
    "304": (b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n", None),
    "early": (b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
              b"HTTP/1.1 102 Processing\r\n\r\n"
              b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nfinal-early", None),
    "cont": (b"HTTP/1.1 100 Continue\r\n\r\n"
             b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfinal-cont", None),
    "trailers": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
                 b"5;ext=one\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 0xabc\r\nX-Other: t2\r\n\r\n",
                 None),
    "untilclose": (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
                   b"read until the upstream closes", "close"),
    "http10": (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold upstream body", "close"),
    "chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"9\r\nchunk-one\r\n1\r\n,\r\n9\r\nchunk-two\r\n0\r\n\r\n", None),
}


class ScriptBackend(Backend):
    """Backend whose raw replies may be a list of parts sent 0.1 s apart."""

    def _send(self, c, req, r):
        if isinstance(r.raw, list):
            for i, part in enumerate(r.raw):
                if i:
                    time.sleep(0.1)
                c.sendall(part)
            r = Reply(raw=b"", after=r.after)
        return Backend._send(self, c, req, r)


def handler(req):
    t = req.target
    if t.startswith("/s/"):
        name = t[3:]
        if name in RAW:
            raw, after = RAW[name]
            return Reply(raw=raw, after=after)
    if t.startswith("/head-chunked"):
        return Reply(200, [("Content-Type", "text/plain")], b"x" * 100, chunked=True)
    if t.startswith("/head"):
        return Reply(200, [("Content-Type", "text/plain")], b"x" * 1234)
    return Reply(200, [("Content-Type", "text/plain")],
                 b"%s %d\n" % (t.encode(), req.body_len))


CONFIG = """
workers = 1;
servers = (
  {
    name = "main";
    listen = [ "http" ];
    keepalive_timeout = "5s";
    client_header_timeout = "5s";
    read_timeout = "3s";
    locations = (
      { prefix = "/small/"; client_max_body_size = "100"; proxy_pass = "http://127.0.0.1:%(bport)d"; },
      { prefix = "/"; proxy_pass = "http://127.0.0.1:%(bport)d"; }
    );
  }
);
"""


class Client:
    """A client connection that reads responses one at a time."""

    def __init__(self, port):
        self.s = connect(port)
        self.buf = b""
        self.closed = False

    def send(self, data):
        self.s.sendall(data)

    def _recv(self, deadline):
        self.s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            c = self.s.recv(65536)
        except socket.timeout:
            return False
        except OSError:
            self.closed = True
            return False
        if not c:
            self.closed = True
            return False
        self.buf += c
        return True

    def response(self, head=False, timeout=4.0, settle=0.3):
        """One complete response with its framing (CL, chunked, no body), then
        `settle` seconds more to catch stray bytes. -> (Response | None, raw)."""
        deadline = time.monotonic() + timeout
        while True:
            rs, rest = parse_responses(self.buf, head_request=head)
            final = [r for r in rs if r.status >= 200]
            if final and not rest and self._framed(final[0], head):
                break
            if self.closed or time.monotonic() >= deadline or not self._recv(deadline):
                break
        end = time.monotonic() + settle
        while not self.closed and time.monotonic() < end and self._recv(end):
            pass
        raw, self.buf = self.buf, b""
        rs, _ = parse_responses(raw, head_request=head)
        final = [r for r in rs if r.status >= 200]
        return (final[0] if final else None), raw

    @staticmethod
    def _framed(r, head):
        if head or r.status in (204, 304):
            return True
        if "chunked" in (r.header("Transfer-Encoding") or "").lower():
            return True  # parse_responses leaves `rest` while a chunked body is incomplete
        return r.header("Content-Length") is not None

    def until_close(self, timeout=4.0):
        data, closed = recv_until_close(self.s, timeout)
        data = self.buf + data
        self.buf = b""
        self.closed = self.closed or closed
        return data, self.closed

    def still_open(self, wait=0.3):
        """True when the peer has not closed within `wait` seconds."""
        end = time.monotonic() + wait
        while not self.closed and time.monotonic() < end:
            self._recv(end)
        return not self.closed

    def close(self):
        self.s.close()


def get(path, extra=b"", version=b"HTTP/1.1", method=b"GET"):
    h = method + b" " + path + b" " + version + b"\r\n"
    if version == b"HTTP/1.1":
        h += b"Host: a\r\n"
    return h + extra + b"\r\n"


def check_follow_up(c, b, what, prev_conn=None):
    """A normal request on the same client connection gets its own answer; with
    prev_conn, it must reach the backend on another upstream connection."""
    n = len(b.complete_requests())
    c.send(get(b"/after"))
    r, raw = c.response()
    check(r is not None and r.status == 200 and r.body == b"/after 0\n",
          "%s: the next request on the same client connection gets its own 200" % what,
          raw[:300])
    if prev_conn is not None:
        qs = b.complete_requests()[n:]
        check(len(qs) == 1 and qs[0].conn_id != prev_conn,
              "%s: that upstream connection is not reused" % what,
              [(q.target, q.conn_id) for q in b.complete_requests()])


def last_conn(b, target):
    for q in reversed(b.complete_requests()):
        if q.target == target:
            return q.conn_id
    return None


# ------------------------------------------------------------------ checks

def head_requests(port, b):
    c = Client(port)
    try:
        c.send(get(b"/head/x", method=b"HEAD"))
        r, raw = c.response(head=True)
        check(r is not None and r.status == 200 and r.header("Content-Length") == "1234",
              "HEAD: the upstream's Content-Length: 1234 is passed", raw[:300])
        check(raw.endswith(b"\r\n\r\n") and raw.count(b"\r\n\r\n") == 1,
              "HEAD: no body after the head", raw[-100:])
        check_follow_up(c, b, "HEAD")
        # upstream announces chunked framing for a HEAD: still no body, no wait
        t0 = time.monotonic()
        c.send(get(b"/head-chunked/x", method=b"HEAD"))
        r, raw = c.response(head=True)
        dt = time.monotonic() - t0
        check(r is not None and r.status == 200 and raw.endswith(b"\r\n\r\n")
              and raw.count(b"\r\n\r\n") == 1 and dt < 2.0,
              "HEAD with a chunked upstream response: head only, at once (%.2fs)" % dt,
              raw[:300])
        check_follow_up(c, b, "HEAD (chunked)")
    finally:
        c.close()


def no_body_statuses(port, b):
    # baseline: the upstream connection is pooled between normal requests
    c = Client(port)
    try:
        c.send(get(b"/pool/1"))
        c.response()
        c.send(get(b"/pool/2"))
        c.response()
    finally:
        c.close()
    check(last_conn(b, "/pool/1") is not None and last_conn(b, "/pool/1") == last_conn(b, "/pool/2"),
          "(baseline: consecutive requests share one upstream connection)",
          [(q.target, q.conn_id) for q in b.complete_requests()])

    for name, status in (("204body", 204), ("304body", 304), ("204late", 204)):
        c = Client(port)
        try:
            c.send(get(b"/s/" + name.encode()))
            r, raw = c.response()
            what = "%d with a stray upstream body%s" % (status, " (late)" if "late" in name else "")
            check(r is not None and r.status == status, "%s: client gets %d" % (what, status),
                  raw[:300])
            check(b"STRAY" not in raw and raw.endswith(b"\r\n\r\n"),
                  "%s: no body relayed" % what, raw[:300])
            if status == 204:
                check(r is not None and r.header("Transfer-Encoding") is None
                      and r.header("Content-Length") is None,
                      "204: neither Transfer-Encoding nor Content-Length added", raw[:300])
            else:
                check(r is not None and r.header("Transfer-Encoding") is None
                      and r.header("ETag") == '"v1"',
                      "304: ETag passed, no Transfer-Encoding added", raw[:300])
            check_follow_up(c, b, what, prev_conn=last_conn(b, "/s/" + name))
        finally:
            c.close()

    c = Client(port)
    try:
        c.send(get(b"/s/304", b'If-None-Match: "v1"\r\n'))
        r, raw = c.response()
        check(r is not None and r.status == 304 and raw.endswith(b"\r\n\r\n")
              and r.header("Transfer-Encoding") is None,
              "plain 304: relayed without a body", raw[:300])
        check_follow_up(c, b, "plain 304")
    finally:
        c.close()


def informational(port, b):
    # RFC 9110 15.2: a proxy passes on the 1xx responses it did not ask for itself; a 100
    # Continue is proxyd's own business (it answers Expect itself), so an upstream's is dropped.
    for name, want, interim, what in (
            ("early", b"final-early",
             b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n",
             "103 Early Hints + 102 Processing"),
            ("cont", b"final-cont", b"", "unsolicited 100 Continue")):
        c = Client(port)
        try:
            c.send(get(b"/s/" + name.encode()))
            r, raw = c.response()
            check(raw.startswith(interim + b"HTTP/1.1 200 "),
                  "%s before the final response: %s" % (
                      what, "passed on, then the 200" if interim else "dropped, the client sees 200 first"),
                  raw[:300])
            check(r is not None and r.body == want and raw.count(b"HTTP/1.") == 1 + interim.count(b"HTTP/1."),
                  "%s: then the final response, with its body" % what, raw[:300])
            check_follow_up(c, b, what)
        finally:
            c.close()


def trailers(port, b):
    c = Client(port)
    try:
        c.send(get(b"/s/trailers"))
        r, raw = c.response()
        check(r is not None and r.status == 200 and r.body == b"hello world",
              "chunked response with trailers: body intact", raw[:300])
        check(r is not None and "chunked" in (r.header("Transfer-Encoding") or "").lower(),
              "chunked response with trailers: relayed chunked to an HTTP/1.1 client",
              raw[:300])
        check(b"X-Sum" not in raw and b"X-Other" not in raw and b"0xabc" not in raw,
              "trailers dropped", raw[:400])
        check(b"ext=one" not in raw, "chunk extensions dropped (re-chunked)", raw[:400])
        check(raw.endswith(b"0\r\n\r\n"), "the re-chunked body ends with an empty last chunk",
              raw[-40:])
        check_follow_up(c, b, "trailers")
    finally:
        c.close()


def until_close(port, b):
    for name, want in (("untilclose", b"read until the upstream closes"),
                       ("http10", b"old upstream body")):
        c = Client(port)
        try:
            c.send(get(b"/s/" + name.encode()))
            r, raw = c.response()
            check(r is not None and r.status == 200 and r.body == want,
                  "%s response without length -> HTTP/1.1 client: body intact" % name, raw[:300])
            check(r is not None and "chunked" in (r.header("Transfer-Encoding") or "").lower()
                  and r.header("Content-Length") is None,
                  "%s -> HTTP/1.1 client: sent chunked" % name, raw[:300])
            check(c.still_open(), "%s -> HTTP/1.1 client: connection kept alive" % name)
            check_follow_up(c, b, "%s (HTTP/1.1 client)" % name)
        finally:
            c.close()

        c = Client(port)
        try:
            c.send(get(b"/s/" + name.encode(), version=b"HTTP/1.0"))
            data, closed = c.until_close()
            rs, _ = parse_responses(data)
            check(len(rs) == 1 and rs[0].status == 200 and rs[0].body == want
                  and rs[0].header("Transfer-Encoding") is None,
                  "%s -> HTTP/1.0 client: raw body, not chunked" % name, data[:300])
            check(closed, "%s -> HTTP/1.0 client: then the connection closes" % name)
        finally:
            c.close()

        # HTTP/1.0 client asking for keep-alive: without a length the only
        # delimiter is the close
        c = Client(port)
        try:
            c.send(get(b"/s/" + name.encode(), b"Connection: keep-alive\r\n", version=b"HTTP/1.0"))
            data, closed = c.until_close()
            rs, _ = parse_responses(data)
            ok = len(rs) == 1 and rs[0].body == want and rs[0].header("Transfer-Encoding") is None
            framed = rs and rs[0].header("Content-Length") == str(len(want))
            check(ok and (closed or framed),
                  "%s -> HTTP/1.0 keep-alive client: raw body, delimited by close or a length"
                  % name, (closed, data[:300]))
        finally:
            c.close()


def http10_clients(port, b):
    c = Client(port)
    try:
        c.send(get(b"/s/chunked", version=b"HTTP/1.0"))
        data, closed = c.until_close()
    finally:
        c.close()
    rs, _ = parse_responses(data)
    check(len(rs) == 1 and rs[0].status == 200 and rs[0].body == b"chunk-one,chunk-two"
          and rs[0].header("Transfer-Encoding") is None,
          "HTTP/1.0 client, chunked upstream: de-chunked body", data[:300])
    check(rs and (rs[0].header("Connection") or "").lower() == "close",
          "HTTP/1.0 client, chunked upstream: Connection: close", data[:300])
    check(closed, "HTTP/1.0 client, chunked upstream: connection closed")

    # keep-alive requested, response with a Content-Length
    c = Client(port)
    try:
        c.send(get(b"/ka10/1", b"Connection: keep-alive\r\n", version=b"HTTP/1.0"))
        r, raw = c.response()
        check(r is not None and r.status == 200 and r.body == b"/ka10/1 0\n",
              "HTTP/1.0 keep-alive client: 200", raw[:300])
        check(r is not None and (r.header("Connection") or "").lower() == "keep-alive",
              "HTTP/1.0 keep-alive client: Connection: keep-alive in the response", raw[:300])
        check(c.still_open(0.5), "HTTP/1.0 keep-alive client: connection stays open")
        c.send(get(b"/ka10/2", b"Connection: keep-alive\r\n", version=b"HTTP/1.0"))
        r, raw = c.response()
        check(r is not None and r.status == 200 and r.body == b"/ka10/2 0\n",
              "HTTP/1.0 keep-alive client: a second request on the connection", raw[:300])
        c.send(get(b"/ka10/3", version=b"HTTP/1.0"))
        data, closed = c.until_close()
        rs, _ = parse_responses(data)
        check(len(rs) == 1 and rs[0].body == b"/ka10/3 0\n" and closed,
              "HTTP/1.0: a request without keep-alive ends the connection", data[:300])
    finally:
        c.close()

    # HTTP/1.0 client with Expect: never a 100 Continue (RFC 9110 10.1.1)
    c = Client(port)
    try:
        c.send(b"POST /e10 HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello")
        data, closed = c.until_close()
    finally:
        c.close()
    rs, _ = parse_responses(data)
    check(b"100 Continue" not in data and len(rs) == 1 and rs[0].status == 200
          and rs[0].body == b"/e10 5\n",
          "HTTP/1.0 client with Expect: 100-continue: no 100, final 200", data[:300])


def expect_continue(port, b):
    b.reset()
    c = Client(port)
    try:
        c.send(b"POST /exp/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n"
               b"Expect: 100-continue\r\n\r\n")
        deadline = time.monotonic() + 3
        while b"\r\n\r\n" not in c.buf and time.monotonic() < deadline and c._recv(deadline):
            pass
        interim = c.buf
        check(interim.startswith(b"HTTP/1.1 100 Continue\r\n") and interim.endswith(b"\r\n\r\n")
              and interim.count(b"\r\n\r\n") == 1,
              "Expect: 100-continue: 100 Continue arrives before the body is sent", interim[:200])
        c.buf = b""
        c.send(b"hello world")
        r, raw = c.response()
        check(r is not None and r.status == 200 and r.body == b"/exp/1 11\n"
              and b"100 Continue" not in raw,
              "Expect: then the final 200, no second 100", raw[:300])
        # second exchange on the same connection, chunked body
        c.send(b"POST /exp/2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
               b"Expect: 100-continue\r\n\r\n")
        deadline = time.monotonic() + 3
        while b"\r\n\r\n" not in c.buf and time.monotonic() < deadline and c._recv(deadline):
            pass
        interim = c.buf
        c.buf = b""
        c.send(b"3\r\nabc\r\n0\r\n\r\n")
        r, raw = c.response()
        check(interim.startswith(b"HTTP/1.1 100 Continue\r\n") and r is not None
              and r.status == 200 and r.body == b"/exp/2 3\n",
              "Expect with a chunked body on a kept-alive connection: 100, then 200",
              (interim[:100], raw[:300]))
    finally:
        c.close()
    qs = [q for q in b.complete_requests() if q.target.startswith("/exp/")]
    check([(q.target, q.body) for q in qs] == [("/exp/1", b"hello world"), ("/exp/2", b"abc")],
          "Expect: each body forwarded once", [(q.target, q.body, q.conn_id) for q in qs])
    check(all(q.header("Expect") is None for q in qs),
          "Expect is answered by proxyd, not forwarded", [q.headers for q in qs])

    # over client_max_body_size (100): 413 at once, no 100, the body is never read
    b.reset()
    c = Client(port)
    try:
        t0 = time.monotonic()
        c.send(b"POST /small/exp HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r, raw = c.response(settle=0.3)
        dt = time.monotonic() - t0
        check(r is not None and r.status == 413 and dt < 2.0,
              "Expect with Content-Length over client_max_body_size: 413 without sending "
              "the body (%.2fs)" % dt, raw[:300])
        check(b"100 Continue" not in raw, "Expect over the limit: no 100 Continue", raw[:300])
    finally:
        c.close()
    time.sleep(0.1)
    check(not b.requests, "Expect over the limit: nothing reached the backend", b.requests)


def main():
    b = ScriptBackend(handler)
    try:
        port = free_port()
        with Proxyd(CONFIG % {"bport": b.port}, sockets=[("127.0.0.1:%d" % port, "http")]) as p:
            head_requests(port, b)
            no_body_statuses(port, b)
            informational(port, b)
            trailers(port, b)
            until_close(port, b)
            http10_clients(port, b)
            expect_continue(port, b)
            check(p.alive(), "proxyd still running after every case")
    finally:
        b.close()


if __name__ == "__main__":
    log("test_semantics: proxyd=%s" % os.environ.get("PROXYD"))
    run_main(main)
