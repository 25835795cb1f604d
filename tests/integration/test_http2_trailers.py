#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Trailers through the HTTP/2 session, against a scripted HTTP/1.1 origin.

Response trailers of a chunked upstream response reach an HTTP/2 client that
sent `te: trailers` (as gRPC does) as a HEADERS frame after the DATA, which
ends the stream; framing fields among them (Content-Length) are left out.
Without `te: trailers` they are dropped and the stream ends with the DATA.
Request trailers of an HTTP/2 client follow the last chunk of the body sent
upstream chunked (Content-Length and Host among them dropped); a body with
Content-Length goes upstream without them. An HTTP/1.1 client still gets the
chunked response without the trailer section."""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Proxyd, check, check_eq, free_port, log, run_main  # noqa: E402
from test_http2 import (DATA, END_HEADERS, END_STREAM, HEADERS, Client, frame, get,  # noqa: E402
                        raw_conn, read_frames, request_block, serve_threads)

import h2.events  # noqa: E402
import hpack  # noqa: E402

TRAILERS = b"grpc-status: 0\r\ngrpc-message: all good\r\nContent-Length: 99\r\n"


class Origin:
    """Reads each request whole (head, body by Content-Length or chunked with
    its trailer section) and records it raw; answers /grpc... chunked with
    trailers, anything else with a Content-Length body."""

    def __init__(self):
        self.requests = []  # (head, raw body incl. chunk framing and trailers)
        self.sock = serve_threads(self._serve)
        self.port = self.sock.getsockname()[1]

    @staticmethod
    def _read_until(c, buf, marker):
        while marker not in buf:
            d = c.recv(65536)
            if not d:
                raise EOFError
            buf += d
        i = buf.index(marker) + len(marker)
        return buf[:i], buf[i:]

    def _serve(self, c):
        buf = b""
        try:
            while True:
                head, buf = self._read_until(c, buf, b"\r\n\r\n")
                fields = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    k, _, v = line.partition(":")
                    fields[k.strip().lower()] = v.strip()
                raw = b""
                if "chunked" in fields.get("transfer-encoding", ""):
                    while True:
                        line, buf = self._read_until(c, buf, b"\r\n")
                        raw += line
                        size = int(line.split(b";")[0], 16)
                        if size == 0:
                            rest, buf = self._read_until(c, b"\r\n" + buf, b"\r\n\r\n")
                            raw += rest[2:]
                            break
                        while len(buf) < size + 2:
                            buf += c.recv(65536)
                        raw += buf[:size + 2]
                        buf = buf[size + 2:]
                elif "content-length" in fields:
                    n = int(fields["content-length"])
                    while len(buf) < n:
                        buf += c.recv(65536)
                    raw, buf = buf[:n], buf[n:]
                self.requests.append((head, raw))
                path = head.split(b" ")[1]
                if path.startswith(b"/grpc"):
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\nTransfer-Encoding: chunked\r\n"
                              b"Trailer: grpc-status, grpc-message\r\n\r\n"
                              b"6\r\nhello \r\n5\r\nworld\r\n0\r\n" + TRAILERS + b"\r\n")
                else:
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        except (OSError, EOFError, ValueError):
            pass
        finally:
            c.close()

    def close(self):
        self.sock.close()


def trailers_of(c, sid):
    for e in c.events:
        if isinstance(e, h2.events.TrailersReceived) and e.stream_id == sid:
            return dict(e.headers)
    return None


def test_response(port):
    c = Client(port)
    log("te: trailers: the upstream's trailers come as a HEADERS frame after the DATA")
    sid = c.request(get("/grpc/call", extra=[("te", "trailers"), ("content-type", "application/grpc")]))
    st, hd, body = c.wait(sid)
    check_eq((st, body), (200, b"hello world"), "the body")
    t = trailers_of(c, sid)
    check(t is not None, "a trailing HEADERS frame", c.events[-5:])
    t = t or {}
    check_eq(t.get("grpc-status"), "0", "grpc-status")
    check_eq(t.get("grpc-message"), "all good", "grpc-message")
    check("content-length" not in t, "no Content-Length among the trailers", t)
    check(any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in c.events), "the stream ended")
    ends = [e for e in c.events if getattr(e, "stream_id", None) == sid]
    check(isinstance(ends[-1], h2.events.StreamEnded) and isinstance(ends[-2], h2.events.TrailersReceived),
          "the trailers end the stream", ends[-3:])

    log("without te: trailers they are dropped")
    sid = c.request(get("/grpc/call"))
    st, hd, body = c.wait(sid)
    check_eq((st, body), (200, b"hello world"), "the body")
    check(trailers_of(c, sid) is None, "no trailers")
    check(c.done(sid) and c.reset(sid) is None, "the stream ends with the DATA")
    c.close()


def test_request(port, origin):
    c = Client(port)
    log("request trailers follow the last chunk upstream")
    sid = c.request(get("/upload", method="POST"), body=b"0123456789",
                    trailers=[("x-checksum", "abc123"), ("content-length", "10"), ("x-more", "2")])
    check_eq(c.wait(sid)[0], 200, "answered")
    head, raw = origin.requests[-1]
    check(b"transfer-encoding: chunked" in head.lower(), "the body went upstream chunked", head)
    check_eq(raw, b"a\r\n0123456789\r\n0\r\nx-checksum: abc123\r\nx-more: 2\r\n\r\n",
             "the trailer section after the last chunk, without Content-Length")

    log("HEADERS, DATA and the trailers in one read: the body and the trailers still go upstream")
    for with_trailers in (False, True):
        s = raw_conn(port)
        enc = hpack.Encoder()
        data = frame(HEADERS, END_HEADERS, 1, request_block(enc, "/upload", method="POST"))
        data += frame(DATA, 0 if with_trailers else END_STREAM, 1, b"same read")
        if with_trailers:
            data += frame(HEADERS, END_HEADERS | END_STREAM, 1, enc.encode([("x-late", "yes")]))
        s.sendall(data)
        frames, _ = read_frames(s, lambda f: f[2] == 1 and f[1] & END_STREAM)
        s.close()
        head, raw = origin.requests[-1]
        if with_trailers:
            check_eq(raw, b"9\r\nsame read\r\n0\r\nx-late: yes\r\n\r\n", "chunked, with the trailer")
        else:
            check_eq(raw, b"same read", "the body")
            check(b"content-length: 9" in head.lower(), "with its length (all of it had arrived)", head)

    log("a body with Content-Length goes upstream without them")
    sid = c.request(get("/upload", method="POST", extra=[("content-length", "4")]), body=b"abcd",
                    trailers=[("x-checksum", "zz")])
    check_eq(c.wait(sid)[0], 200, "answered")
    head, raw = origin.requests[-1]
    check_eq(raw, b"abcd", "the body alone")
    check(b"x-checksum" not in head.lower(), "and no trailer in the head", head)
    c.close()


def test_http1(port):
    log("an HTTP/1.1 client gets the chunked response without the trailer section")
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /grpc/h1 HTTP/1.1\r\nHost: localhost\r\nTE: trailers\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    check(data.startswith(b"HTTP/1.1 200"), "200", data[:40])
    check(data.endswith(b"0\r\n\r\n") and b"grpc-status" not in data, "chunked, no trailers", data[-80:])


def main():
    origin = Origin()
    port = free_port()
    conf = """
servers = ( { name = "h2c"; listen = [ "127.0.0.1:%d" ]; http2_cleartext = true;
  set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
  locations = ( { prefix = "/"; proxy_pass = "http://127.0.0.1:%d"; } ); } );
""" % (port, origin.port)
    try:
        with Proxyd(conf, wait=("127.0.0.1", port)) as px:
            test_response(port)
            test_request(port, origin)
            test_http1(port)
            check(px.alive(), "proxyd is still running")
    finally:
        origin.close()


if __name__ == "__main__":
    run_main(main)
