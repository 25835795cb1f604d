#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""HTTP/2 to clients: negotiation, semantics and the floods.

Real clients: curl --http2 (ALPN h2 over TLS) and --http2-prior-knowledge
(h2c), nghttp (many streams on one connection), h2load (10 connections x 10
streams, every response a 2xx). python3-h2 and raw frames for the frame-level
cases: invalid fields (uppercase name, connection-specific field, pseudo-header
after a regular one, CR/LF in a value) reset the stream and never reach the
backend; :authority against Host; Content-Length against the DATA; CONNECT;
trailers dropped; request bodies larger than the stream window (WINDOW_UPDATE
after the backend took the bytes); HEAD, 204, 304; hop-by-hop response fields
removed. The limits: Rapid Reset, PING and SETTINGS floods, a CONTINUATION
flood, an HPACK bomb (431), a header block that never ends, a zero-window stall
kept alive by trickled WINDOW_UPDATEs, the idle and PING deadlines: each a GOAWAY ENHANCE_YOUR_CALM (or a
reset) and a journal line, and no request of an aborted flood reaches the
backend. Per-stream location settings (access rules, client_max_body_size).
SIGTERM: GOAWAY, and the stream in flight completes. h2c is off by default,
`http2 = false` offers only http/1.1, `Upgrade: h2c` is not honoured, and
`proxyd -t` warns about h2c on a public address."""

import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, DataStream, Proxyd, Reply, check, check_eq,  # noqa: E402
                     curl, free_port, http_request, log, run_main, run_proxyd)

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
import h2.settings  # noqa: E402
import hpack  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, END_HEADERS = 0x1, 0x4
PROTOCOL_ERROR, CANCEL, ENHANCE_YOUR_CALM = 0x1, 0x8, 0xb
BIG = 3 << 20


def handler(req):
    t = req.target
    if t == "/big":
        d = DataStream(BIG, seed=7)
        return Reply(200, [("Content-Type", "application/octet-stream")], d.blocks(), length=BIG)
    if t == "/chunked":
        return Reply(200, [("Keep-Alive", "timeout=5"), ("X-Hop", "1"), ("Connection", "X-Hop")],
                     [b"one ", b"two\n"], chunked=True)
    if t == "/204":
        return Reply(204, [], b"")
    if t == "/304":
        return Reply(304, [("ETag", '"x"')], b"")
    if t == "/delay":
        return Reply(200, [], b"after the stop\n", delay=1.5)
    if t == "/slow":
        return Reply(200, [], b"late\n", delay=20)
    if t == "/head":
        return Reply(200, [("Content-Type", "text/plain")], b"twelve bytes")
    return Reply(200, [("Content-Type", "text/plain")], b"ok\n")


def config(backend, h2c, plain, tls, idle, tmp):
    return """
access_log = true;
servers = (
  { name = "main"; listen = [ "127.0.0.1:%d" ]; http2_cleartext = true;
    client_header_timeout = "1s"; send_timeout = "1s"; http2_initial_window = 16384;
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
    locations = ( { exact = "/local"; return = 200; body = "hello\\n"; },
                  { prefix = "/denied/"; access = [ "deny all" ]; proxy_pass = "http://127.0.0.1:%d"; },
                  { prefix = "/limited/"; client_max_body_size = "100k"; proxy_pass = "http://127.0.0.1:%d"; },
                  { prefix = "/"; proxy_pass = "http://127.0.0.1:%d"; } ); },
  { name = "plain"; listen = [ "127.0.0.1:%d" ];
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
    locations = ( { prefix = "/"; proxy_pass = "http://127.0.0.1:%d"; } ); },
  { name = "tls"; listen = [ "127.0.0.1:%d" ];
    tls = { certificate = "%s/cert.pem"; key = "%s/key.pem"; };
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; X-Host = "$http_host"; X-Scheme = "$scheme"; };
    locations = ( { prefix = "/"; proxy_pass = "http://127.0.0.1:%d"; } ); },
  { name = "idle"; listen = [ "127.0.0.1:%d" ]; http2_cleartext = true;
    http2_idle_timeout = "1s"; http2_ping_timeout = "1s";
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
    locations = ( { prefix = "/"; proxy_pass = "http://127.0.0.1:%d"; } ); }
);
""" % (h2c, backend.port, backend.port, backend.port, plain, backend.port, tls, tmp, tmp, backend.port, idle, backend.port)


# --------------------------------------------------------------------------
# raw frames

def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def read_frames(s, until, timeout=10.0):
    """Frames (type, flags, sid, payload) until until(frame) is true, the
    connection closes, or the timeout; -> (frames, closed)."""
    buf = b""
    out = []
    deadline = time.monotonic() + timeout
    closed = False
    while time.monotonic() < deadline:
        while len(buf) >= 9:
            n = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + n:
                break
            f = (buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff, buf[9:9 + n])
            buf = buf[9 + n:]
            out.append(f)
            if until(f):
                return out, closed
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            break
        if not d:
            closed = True
            break
        buf += d
    return out, closed


def goaway_code(frames):
    for t, _, _, p in frames:
        if t == GOAWAY and len(p) >= 8:
            return int.from_bytes(p[4:8], "big")
    return None


def raw_conn(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(PREFACE + frame(SETTINGS, 0, 0))
    return s


def request_block(enc, path, extra=(), method="GET"):
    return enc.encode([(":method", method), (":scheme", "http"), (":path", path),
                       (":authority", "localhost")] + list(extra))


# --------------------------------------------------------------------------
# python3-h2 client

class Client:
    def __init__(self, port, window=None):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_outbound_headers=False,
                                        normalize_outbound_headers=False,
                                        validate_inbound_headers=False)
        self.c = h2.connection.H2Connection(config=cfg)
        if window is not None:
            self.c.local_settings = h2.settings.Settings(
                client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.c.initiate_connection()
        self.flush()
        self.events = []
        self.closed = False
        self.window_updates = 0

    def flush(self):
        d = self.c.data_to_send()
        if d:
            self.s.sendall(d)

    def request(self, headers, body=None, end=True, trailers=None):
        sid = self.c.get_next_available_stream_id()
        self.c.send_headers(sid, headers, end_stream=end and body is None and trailers is None)
        if body is not None:
            self.send_body(sid, body, end=end and trailers is None)
        if trailers:
            self.c.send_headers(sid, trailers, end_stream=True)
        self.flush()
        return sid

    def send_body(self, sid, body, end=True):
        off = 0
        while off < len(body):
            if self.reset(sid) is not None or self.closed:
                return  # answered early (e.g. 413) and reset: the rest is not wanted
            n = min(self.c.local_flow_control_window(sid), self.c.max_outbound_frame_size, len(body) - off)
            if n <= 0:
                self.flush()
                self.pump(lambda e: isinstance(e, (h2.events.WindowUpdated, h2.events.StreamReset)), 10.0)
                continue
            self.c.send_data(sid, body[off:off + n])
            off += n
        if end and self.reset(sid) is None:
            self.c.end_stream(sid)
        self.flush()

    def pump(self, until, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.closed:
            self.s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                d = b""
            if not d:
                self.closed = True
                return False
            new = self.c.receive_data(d)
            for e in new:
                if isinstance(e, h2.events.DataReceived):
                    self.c.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                if isinstance(e, h2.events.WindowUpdated):
                    self.window_updates += 1
                if isinstance(e, h2.events.ConnectionTerminated):
                    self.closed = True  # (python3-h2 takes no frame after a GOAWAY)
            self.events += new
            self.flush()
            if any(until(e) for e in new):
                return True
        return False

    def done(self, sid):
        return any(getattr(e, "stream_id", None) == sid and
                   isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) for e in self.events)

    def wait(self, sid, timeout=10.0):
        if not self.done(sid):
            self.pump(lambda e: getattr(e, "stream_id", None) == sid and
                      isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)), timeout)
        return self.response(sid)

    def response(self, sid):
        """-> (status, headers dict, body) or None when reset."""
        status, headers, body = None, {}, b""
        for e in self.events:
            if getattr(e, "stream_id", None) != sid:
                continue
            if isinstance(e, h2.events.ResponseReceived):
                headers = {k: v for k, v in e.headers}
                status = int(headers.get(":status", 0))
            elif isinstance(e, h2.events.DataReceived):
                body += e.data
        return status, headers, body

    def reset(self, sid):
        for e in self.events:
            if isinstance(e, h2.events.StreamReset) and e.stream_id == sid:
                return e.error_code
        return None

    def goaway(self):
        for e in self.events:
            if isinstance(e, h2.events.ConnectionTerminated):
                return e.error_code
        return None

    def close(self):
        self.s.close()


def get(path, authority="localhost", extra=(), method="GET"):
    return [(":method", method), (":scheme", "http"), (":path", path), (":authority", authority)] + list(extra)


# --------------------------------------------------------------------------
# the cases

def test_clients(px, backend, h2c, plain, tls):
    log("curl --http2 over TLS: ALPN h2")
    r = curl(["-k", "--http2", "-w", "\n%{http_version}", "https://localhost:%d/x" % tls])
    check(r is not None and r.returncode == 0, "curl --http2 over TLS succeeds", r and r.stderr)
    check_eq(r.stdout, b"ok\n\n2", "TLS: the body, over HTTP/2")
    req = backend.requests[-1]
    check_eq(req.header("X-Host"), "localhost:%d" % tls, ":authority is the request's Host ($http_host)")
    check_eq(req.header("X-Scheme"), "https", "$scheme is https")
    check_eq(req.version, "HTTP/1.1", "the upstream request is HTTP/1.1")

    log("curl --http1.1 on the same TLS listener still works (ALPN http/1.1)")
    r = curl(["-k", "--http1.1", "-w", "\n%{http_version}", "https://localhost:%d/x" % tls])
    check_eq(r.stdout if r else None, b"ok\n\n1.1", "ALPN http/1.1 is offered too")

    log("curl --http2-prior-knowledge (h2c)")
    r = curl(["--http2-prior-knowledge", "-w", "\n%{http_version}", "http://127.0.0.1:%d/local" % h2c])
    check_eq(r.stdout if r else None, b"hello\n\n2", "h2c: a local response over HTTP/2")
    r = curl(["--http2-prior-knowledge", "http://127.0.0.1:%d/x" % plain])
    check(r is not None and r.returncode != 0, "h2c is off by default: the preface is not HTTP/2 there",
          r and r.stdout)

    log("a 3 MiB response streamed over TLS and h2c")
    want = DataStream(BIG, seed=7).sha256()
    for url in ("https://localhost:%d/big" % tls, "http://127.0.0.1:%d/big" % h2c):
        p = subprocess.run("curl -sS -k --http2-prior-knowledge --http2 %s | sha256sum" % url, shell=True,
                           capture_output=True, timeout=60)
        check_eq(p.stdout.split()[0].decode() if p.stdout else None, want, "the body arrives whole: " + url)

    log("curl POST of 1 MiB over h2c: the stream window (16k) is reopened as the backend takes it")
    body = os.urandom(1 << 20)
    with tempfile.NamedTemporaryFile() as f:
        f.write(body)
        f.flush()
        backend.reset()
        r = curl(["--http2-prior-knowledge", "--data-binary", "@" + f.name, "http://127.0.0.1:%d/post" % h2c])
    check_eq(r.stdout if r else None, b"ok\n", "the POST is answered")
    import hashlib
    reqs = backend.complete_requests()
    check(len(reqs) == 1 and reqs[0].body_sha256 == hashlib.sha256(body).hexdigest(),
          "the backend got the whole body", reqs)

    log("nghttp: 20 requests as streams of one connection")
    backend.reset()
    p = subprocess.run(["nghttp", "-n", "-s", "-m", "20", "http://127.0.0.1:%d/x" % h2c],
                       capture_output=True, timeout=60)
    check_eq(p.returncode, 0, "nghttp succeeds")
    check_eq(len(backend.complete_requests()), 20, "20 requests reached the backend")

    log("h2load: 10 connections x 10 streams, TLS and h2c")
    for url in ("http://127.0.0.1:%d/x" % h2c, "https://localhost:%d/x" % tls):
        p = subprocess.run(["h2load", "-n", "1000", "-c", "10", "-m", "10", url], capture_output=True,
                           timeout=120)
        out = p.stdout.decode()
        check("1000 succeeded" in out and "status codes: 1000 2xx" in out, "h2load: 1000 2xx on " + url,
              out[-600:])

    log("access entries say protocol=HTTP/2.0")
    check(any(a.get("protocol") == "HTTP/2.0" and a.get("uri") == "/big" for a in px.access_lines()),
          "an access entry with protocol=HTTP/2.0")


def test_semantics(backend, h2c):
    c = Client(h2c)
    log("HEAD, 204, 304: no body")
    for path, method, status in (("/head", "HEAD", 200), ("/204", "GET", 204), ("/304", "GET", 304)):
        sid = c.request(get(path, method=method))
        st, hd, body = c.wait(sid)
        check_eq((st, body), (status, b""), "%s %s: %d without a body" % (method, path, status))
        if path == "/head":
            check_eq(hd.get("content-length"), "12", "HEAD keeps the upstream's Content-Length")

    log("a chunked response: no hop-by-hop field reaches the client")
    sid = c.request(get("/chunked"))
    st, hd, body = c.wait(sid)
    check_eq((st, body), (200, b"one two\n"), "the chunked body, unframed")
    for name in ("connection", "keep-alive", "transfer-encoding", "x-hop"):
        check(name not in hd, "no %s field in the HTTP/2 response" % name, hd)

    log("cookies are joined, trailers are no header fields upstream, TE: trailers not forwarded")
    backend.reset()
    sid = c.request(get("/cookies", extra=[("cookie", "a=1"), ("cookie", "b=2"), ("te", "trailers")]),
                    body=b"x" * 10, trailers=[("x-trailer", "t")])
    st, _, _ = c.wait(sid)
    check_eq(st, 200, "the request with trailers is answered")
    req = backend.complete_requests()[-1]
    check_eq(req.header_all("cookie"), ["a=1; b=2"], "one Cookie field, joined with '; '")
    check_eq(req.header("te"), None, "TE is not forwarded")
    check_eq(req.header("x-trailer"), None, "the trailer is not a field of the head")
    check_eq(req.body, b"x" * 10, "the body arrives (sent without Content-Length, chunked upstream)")

    log("a request body larger than the window, without Content-Length")
    backend.reset()
    body = os.urandom(300000)
    sid = c.request(get("/upload", extra=[]), body=body)
    st, _, _ = c.wait(sid, 20)
    check_eq(st, 200, "the upload is answered")
    import hashlib
    reqs = backend.complete_requests()
    check(reqs and reqs[-1].body_sha256 == hashlib.sha256(body).hexdigest(), "the backend got it whole")
    check(c.window_updates > 0, "WINDOW_UPDATEs reopened the window", c.window_updates)

    log(":authority and Host that disagree: 400")
    sid = c.request(get("/x", extra=[("host", "other.example")]))
    check_eq(c.wait(sid)[0], 400, "disagreeing Host: 400")

    log("per-stream location settings: access rules, client_max_body_size")
    sid = c.request(get("/denied/x"))
    check_eq(c.wait(sid)[0], 403, "access = deny all: 403 on that stream")
    sid = c.request(get("/limited/x", extra=[("content-length", "200000")], method="POST"), body=b"", end=False)
    check_eq(c.wait(sid)[0], 413, "Content-Length over client_max_body_size: 413")
    backend.reset()
    sid = c.request(get("/limited/nolen", method="POST"), body=b"y" * 150000)
    check_eq(c.wait(sid, 20)[0], 413, "a body without length over client_max_body_size: 413")
    sid = c.request(get("/after"))
    check_eq(c.wait(sid)[0], 200, "the connection serves the next stream")

    log("CONNECT: 405")
    sid = c.request([(":method", "CONNECT"), (":authority", "example.com:443")])
    check_eq(c.wait(sid)[0], 405, "CONNECT is refused")
    c.close()

    log("invalid fields reset the stream and never reach the backend")
    cases = [
        ("uppercase name", get("/bad1", extra=[("X-Upper", "1")])),
        ("connection-specific field", get("/bad2", extra=[("connection", "keep-alive")])),
        ("pseudo-header after a regular field", [(":method", "GET"), (":scheme", "http"), ("x-a", "1"),
                                                 (":path", "/bad3"), (":authority", "localhost")]),
        ("CR LF in a value", get("/bad4", extra=[("x-a", "1\r\nx-b: 2")])),
        ("a repeated pseudo-header", get("/bad5", extra=[(":path", "/again")])),
        ("leading whitespace in a value", get("/bad6", extra=[("x-a", " 1")])),
        ("TE other than trailers", get("/bad7", extra=[("te", "gzip")])),
    ]
    backend.reset()
    for what, headers in cases:
        c = Client(h2c)
        sid = c.request(headers)
        c.wait(sid)
        code = c.reset(sid)
        check(code == PROTOCOL_ERROR or c.goaway() == PROTOCOL_ERROR or c.response(sid)[0] == 400,
              "%s: rejected (RST_STREAM/GOAWAY PROTOCOL_ERROR or 400)" % what, (code, c.goaway(), c.response(sid)))
        c.close()
    check_eq([r.target for r in backend.requests if r.target.startswith("/bad")], [],
             "no invalid request reached the backend")

    log("Content-Length against the DATA received")
    backend.reset()
    c = Client(h2c)
    sid = c.request(get("/cl", extra=[("content-length", "10")]), body=b"12345")
    c.wait(sid)
    check_eq(c.reset(sid), PROTOCOL_ERROR, "5 bytes for Content-Length 10: RST_STREAM PROTOCOL_ERROR")
    c.close()
    c = Client(h2c)
    sid = c.request(get("/cl2", extra=[("content-length", "3")]), body=b"12345")
    c.wait(sid)
    check(c.reset(sid) == PROTOCOL_ERROR or c.goaway() == PROTOCOL_ERROR,
          "5 bytes for Content-Length 3: PROTOCOL_ERROR", (c.reset(sid), c.goaway()))
    c.close()
    time.sleep(0.3)
    check_eq([r.body_len for r in backend.complete_requests() if r.target == "/cl2" and r.body_len > 3], [],
             "no over-long body reached the backend")

    log("Upgrade: h2c over HTTP/1 is not honoured")
    backend.reset()
    r = http_request(h2c, "GET", "/up", headers=[("Host", "x"), ("Connection", "Upgrade, HTTP2-Settings"),
                                               ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAAQAAP__")])
    check_eq(r.status if r else None, 200, "the request is answered over HTTP/1.1")
    req = backend.complete_requests()[-1] if backend.complete_requests() else None
    check(req is not None and req.header("upgrade") is None, "no Upgrade reaches the backend", req)


def test_floods(px, backend, h2c):
    enc = hpack.Encoder()

    log("Rapid Reset: streams opened and reset at once")
    backend.reset()
    s = raw_conn(h2c)
    data = b""
    for i in range(400):
        sid = 2 * i + 1
        data += frame(HEADERS, END_HEADERS | END_STREAM, sid, request_block(enc, "/rapid"))
        data += frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL))
    s.sendall(data)
    frames, _ = read_frames(s, lambda f: f[0] == GOAWAY)
    check_eq(goaway_code(frames), ENHANCE_YOUR_CALM, "GOAWAY ENHANCE_YOUR_CALM")
    s.close()
    check(px.wait_log(r"rapid reset") is not None, "a journal line says why")
    time.sleep(0.3)
    check_eq(len([r for r in backend.requests if r.target == "/rapid"]), 0,
             "no request of the flood reached the backend")

    for what, payload in (("PING", lambda: frame(PING, 0, 0, b"12345678")),
                          ("SETTINGS", lambda: frame(SETTINGS, 0, 0)),
                          ("PRIORITY", lambda: frame(PRIORITY, 0, 1, b"\0\0\0\0\x10")),
                          ("empty DATA", None)):
        log("%s flood" % what)
        s = raw_conn(h2c)
        if payload is None:
            enc2 = hpack.Encoder()
            data = frame(HEADERS, END_HEADERS, 1, request_block(enc2, "/empty", method="POST"))
            data += frame(DATA, 0, 1) * 1200
        else:
            data = payload() * 1200
        s.sendall(data)
        frames, _ = read_frames(s, lambda f: f[0] == GOAWAY)
        check_eq(goaway_code(frames), ENHANCE_YOUR_CALM, "%s flood: GOAWAY ENHANCE_YOUR_CALM" % what)
        s.close()
    check(px.wait_log(r"flood of PING frames") is not None, "the journal names the PING flood")

    log("CONTINUATION flood")
    backend.reset()
    s = raw_conn(h2c)
    block = request_block(hpack.Encoder(), "/cont", extra=[("x-pad", "p" * 20)])
    data = frame(HEADERS, 0, 1, block[:4])
    for i in range(4, len(block)):  # the rest of a valid block, one byte per CONTINUATION
        data += frame(CONTINUATION, END_HEADERS if i == len(block) - 1 else 0, 1, block[i:i + 1])
    s.sendall(data)
    frames, _ = read_frames(s, lambda f: f[0] == GOAWAY)
    check_eq(goaway_code(frames), ENHANCE_YOUR_CALM, "CONTINUATION flood: GOAWAY ENHANCE_YOUR_CALM")
    s.close()

    log("HPACK bomb: a 4000-byte entry referenced 200 times")
    backend.reset()
    s = raw_conn(h2c)
    # the encoder adds x-bomb to the dynamic table last: index 62, referenced 200 times more
    e2 = hpack.Encoder()
    block = e2.encode([(":method", "GET"), (":scheme", "http"), (":path", "/bomb"), (":authority", "localhost"),
                       ("x-bomb", "b" * 4000)])
    idx = 62  # the most recent dynamic entry is x-bomb
    ref = bytes([0x80 | 0x7f]) + bytes([idx - 127]) if idx >= 127 else bytes([0x80 | idx])
    block += ref * 200
    s.sendall(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
    frames, closed = read_frames(s, lambda f: f[0] in (HEADERS, RST_STREAM, GOAWAY) and f[2] in (0, 1))
    dec = hpack.Decoder()
    status = None
    for t, fl, sid, p in frames:
        if t == HEADERS and sid == 1:
            status = dict(dec.decode(p)).get(":status")
    check_eq(status, "431", "the bomb gets 431")
    s.close()
    check_eq(len([r for r in backend.requests if r.target == "/bomb"]), 0, "the bomb never reaches the backend")

    log("a header block that never ends (client_header_timeout 1s)")
    s = raw_conn(h2c)
    s.sendall(frame(HEADERS, 0, 1, request_block(hpack.Encoder(), "/slow")))
    frames, _ = read_frames(s, lambda f: f[0] == GOAWAY, timeout=15)
    check_eq(goaway_code(frames), ENHANCE_YOUR_CALM, "an endless header block: GOAWAY ENHANCE_YOUR_CALM")
    s.close()

    log("a zero window kept alive by 1-byte WINDOW_UPDATEs (send_timeout 1s)")
    c = Client(h2c, window=0)
    # (python3-h2 sizes a stream's window from the settings in force when it opens it: the
    # zero window counts once proxyd acknowledged it, else the client opens the window wide)
    c.pump(lambda e: isinstance(e, h2.events.SettingsAcknowledged), 5)
    sid = c.request(get("/big"))
    c.pump(lambda e: isinstance(e, h2.events.ResponseReceived), 5)
    deadline = time.monotonic() + 15
    code = c.reset(sid)  # (on a loaded machine the reset may come with the head)
    while time.monotonic() < deadline and code is None and not c.closed:
        c.c.increment_flow_control_window(1, sid)
        c.flush()
        c.pump(lambda e: isinstance(e, h2.events.StreamReset), 0.2)
        code = c.reset(sid)
    check_eq(code, CANCEL, "the stalled stream is reset (CANCEL) although bytes trickle")
    c.close()
    check(px.wait_log(r"took no response bytes for send_timeout") is not None, "a journal line for the stall")


def test_idle_and_ping(px, idle):
    log("http2_idle_timeout: GOAWAY NO_ERROR when no stream is open")
    c = Client(idle)
    sid = c.request(get("/x"))
    check_eq(c.wait(sid)[0], 200, "a request first")
    c.pump(lambda e: isinstance(e, h2.events.ConnectionTerminated), 15)
    check_eq(c.goaway(), 0, "then GOAWAY NO_ERROR")
    c.close()

    log("http2_ping_timeout: a client that does not answer PING is closed")
    c = Client(idle)
    c.request(get("/slow"))
    s = c.s
    frames, closed = read_frames(s, lambda f: False, timeout=15)  # read, never answer
    check(any(t == PING and not (fl & 1) for t, fl, _, _ in frames), "proxyd sent a PING", frames[-3:])
    check(closed, "and closed the connection when no answer came")
    c.close()
    check(px.wait_log(r"did not answer a PING") is not None, "a journal line for the missing PING answer")


def test_drain_and_off(backend, tmp):
    log("http2 = false: ALPN offers http/1.1 only; SIGTERM: GOAWAY, the stream in flight completes")
    h2c, tls = free_port(), free_port()
    conf = """
servers = (
  { name = "h2c"; listen = [ "127.0.0.1:%d" ]; http2_cleartext = true;
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
    locations = ( { prefix = "/"; proxy_pass = "http://127.0.0.1:%d"; } ); },
  { name = "tls"; listen = [ "127.0.0.1:%d" ]; http2 = false;
    tls = { certificate = "%s/cert.pem"; key = "%s/key.pem"; };
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
    locations = ( { prefix = "/"; proxy_pass = "http://127.0.0.1:%d"; } ); }
);
""" % (h2c, backend.port, tls, tmp, tmp, backend.port)
    with Proxyd(conf, wait=("127.0.0.1", h2c)) as px:
        r = curl(["-k", "--http2", "-w", "\n%{http_version}", "https://localhost:%d/x" % tls])
        check_eq(r.stdout if r else None, b"ok\n\n1.1", "http2 = false: curl --http2 gets HTTP/1.1")
        s = raw_conn(h2c)
        s.sendall(frame(HEADERS, END_HEADERS | END_STREAM, 1, request_block(hpack.Encoder(), "/delay")))
        time.sleep(0.5)  # the request is at the backend, which answers 1.5 s after it came
        px.proc.send_signal(signal.SIGTERM)
        frames, closed = read_frames(s, lambda f: False, timeout=15)
        s.close()
        check_eq(goaway_code(frames), 0, "SIGTERM: GOAWAY NO_ERROR")
        dec = hpack.Decoder()
        heads = [dict(dec.decode(p)) for t, _, sid, p in frames if t == HEADERS and sid == 1]
        body = b"".join(p for t, _, sid, p in frames if t == DATA and sid == 1)
        check_eq((heads[0].get(":status") if heads else None, body), ("200", b"after the stop\n"),
                 "the stream in flight completes after the GOAWAY")
        check(closed, "then the connection is closed")
        # The SIGTERM above was the stop: wait for the exit it started (px.stop() would find the
        # daemon already gone, or not yet, depending on timing).
        try:
            px.proc.wait(10)
            px._check_exit("after SIGTERM")  # status 0, no sanitizer report
        except subprocess.TimeoutExpired:
            check(False, "proxyd exits within 10 s of the SIGTERM that drained it")


def serve_threads(serve):
    """A listening socket on 127.0.0.1 (closing it stops it) whose connections are each
    served by serve(conn) in a thread of its own."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)

    def accept():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return ls


def hints_backend():
    """A raw backend: every request gets 103 Early Hints, then a 200 (keep-alive)."""
    def serve(c):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                buf = buf.split(b"\r\n\r\n", 1)[1]
                c.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n"
                          b"Connection: X-Drop\r\nX-Drop: 1\r\n\r\n")
                time.sleep(0.05)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nfinal\n")
        except OSError:
            pass
        finally:
            c.close()

    return serve_threads(serve)


def test_early_hints():
    log("1xx: an upstream's 103 Early Hints is passed on as a HEADERS frame before the final one")
    ls = hints_backend()
    h2c = free_port()
    conf = """
servers = ( { name = "h2c"; listen = [ "127.0.0.1:%d" ]; http2_cleartext = true;
  set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
  locations = ( { prefix = "/"; proxy_pass = "http://127.0.0.1:%d"; } ); } );
""" % (h2c, ls.getsockname()[1])
    with Proxyd(conf, wait=("127.0.0.1", h2c)):
        s = raw_conn(h2c)
        s.sendall(frame(HEADERS, END_HEADERS | END_STREAM, 1, request_block(hpack.Encoder(), "/page")))
        frames, _ = read_frames(s, lambda f: f[2] == 1 and f[1] & END_STREAM)
        s.close()
        dec = hpack.Decoder()
        heads = [(f[1], dict(dec.decode(f[3]))) for f in frames if f[0] == HEADERS and f[2] == 1]
        body = b"".join(f[3] for f in frames if f[0] == DATA and f[2] == 1)
        check_eq([h.get(":status") for _, h in heads], ["103", "200"], "HEADERS 103, then HEADERS 200")
        first = heads[0][1] if heads else {}
        check_eq(first.get("link"), "</style.css>; rel=preload; as=style", "the 103 carries the Link field")
        check("x-drop" not in first and "connection" not in first,
              "hop-by-hop fields of the 103 are dropped", first)
        check(bool(heads) and not heads[0][0] & END_STREAM, "the 103 does not end the stream", heads)
        check_eq(body, b"final\n", "then the final body")
    ls.close()


def test_config_warning(h2c_port):
    rc, out, err, _ = run_proxyd(["-t", "-c", "{conf}"], config="""
servers = ( { name = "pub"; listen = [ "0.0.0.0:%d" ]; http2_cleartext = true;
  set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
  locations = ( { prefix = "/"; return = 200; } ); } );
""" % h2c_port)
    text = out + err
    check_eq(rc, 0, "-t: a warning does not fail the check")
    check("warning: server \"pub\" enables http2_cleartext" in text, "-t warns about h2c on 0.0.0.0", text)


def main():
    tmp = tempfile.mkdtemp(prefix="proxyd-h2-")
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", tmp + "/key.pem", "-out", tmp + "/cert.pem", "-days", "30",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                       capture_output=True)
    if p.returncode != 0:
        raise RuntimeError("openssl: " + p.stderr.decode())
    with Backend(handler) as backend:
        h2c, plain, tls, idle = free_port(), free_port(), free_port(), free_port()
        with Proxyd(config(backend, h2c, plain, tls, idle, tmp), wait=("127.0.0.1", plain)) as px:
            test_clients(px, backend, h2c, plain, tls)
            test_semantics(backend, h2c)
            test_floods(px, backend, h2c)
            test_idle_and_ping(px, idle)
            check(px.alive(), "proxyd is still running")
        test_drain_and_off(backend, tmp)
    test_early_hints()
    test_config_warning(free_port())


if __name__ == "__main__":
    run_main(main)
