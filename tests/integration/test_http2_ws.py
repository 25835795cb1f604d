#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""WebSocket over HTTP/2 (RFC 8441): a python3-h2 client sends extended CONNECT
(:protocol websocket) on an h2c connection and speaks WebSocket frames in the
stream's DATA; the upstreams speak HTTP/1.1.

Against a python3-websockets echo server: proxyd advertises
SETTINGS_ENABLE_CONNECT_PROTOCOL; the stream is answered :status 200; text and
a 1 MiB binary message echo both ways (more than the stream windows, so flow
control runs in both directions); a close from the client and one from the
server reach the other side with their code and reason, and the stream ends
with END_STREAM both ways; a RST_STREAM from the client closes the upstream
connection; tunnel_timeout resets an idle tunnel; `websocket = false` gives the
client no 200.

Against a scripted upstream: the request it gets is a GET with Connection:
upgrade, Upgrade: websocket, a Sec-WebSocket-Key made by proxyd (not the one
the client sent), the client's Version, Protocol and Extensions; its 101 with
the right Accept becomes a 200 with Sec-WebSocket-Protocol and -Extensions and
without the Accept, and raw bytes then pass both ways, half-closes included;
an upstream that resets its connection resets the stream (CONNECT_ERROR). A
101 with a wrong Accept is a 502, a 403 stays a 403, a 200 (no switch) is a
502. Plain CONNECT is refused (405), an unknown :protocol is 501."""

import base64
import hashlib
import os
import socket
import struct
import sys
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Proxyd, check, check_eq, free_port, log, run_main  # noqa: E402
from test_http2 import Client, serve_threads  # noqa: E402
from test_websocket import EchoServer  # noqa: E402

import h2.events  # noqa: E402
import h2.settings  # noqa: E402

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CANCEL, CONNECT_ERROR = 0x8, 0xa


def accept_of(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


# --------------------------------------------------------------------------
# WebSocket frames (RFC 6455) in the client: masked out, unmasked in

def ws_frame(opcode, payload, fin=True):
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_close(code, reason):
    return ws_frame(8, code.to_bytes(2, "big") + reason.encode())


class WsStream:
    """One WebSocket on a stream of a Client: frames sent as DATA, messages parsed
    from the DATA received (permessage-deflate undone when negotiated)."""

    def __init__(self, client, path, extra=(), authority="localhost"):
        self.c = client
        self.buf = b""
        self.sid = client.request([(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                                   (":path", path), (":authority", authority),
                                   ("sec-websocket-version", "13")] + list(extra), end=False)
        self.deflate = None
        self.taken = 0

    def head(self, timeout=10.0):
        c = self.c
        c.pump(lambda e: getattr(e, "stream_id", None) == self.sid and
               isinstance(e, (h2.events.ResponseReceived, h2.events.StreamReset, h2.events.StreamEnded)), timeout)
        status, headers, _ = c.response(self.sid)
        if "permessage-deflate" in headers.get("sec-websocket-extensions", ""):
            self.deflate = zlib.decompressobj(-15)
        return status, headers

    def send(self, data, end=False):
        self.c.send_body(self.sid, data, end=end)

    def _data(self):
        _, _, body = self.c.response(self.sid)
        new = body[self.taken:]
        self.taken = len(body)
        return new

    def message(self, timeout=10.0):
        """-> (opcode, payload) of the next complete message, or None."""
        deadline = time.monotonic() + timeout
        parts, opcode = [], None
        while True:
            self.buf += self._data()
            f = self._parse()
            if f is None:
                if time.monotonic() > deadline or self.c.done(self.sid) or self.c.closed:
                    return None
                self.c.pump(lambda e: getattr(e, "stream_id", None) == self.sid, 0.5)
                continue
            fin, rsv1, op, payload = f
            if op in (8, 9, 10):
                return op, payload
            if opcode is None:
                opcode, compressed = op, rsv1
            parts.append(payload)
            if fin:
                data = b"".join(parts)
                if compressed and self.deflate:
                    data = self.deflate.decompress(data + b"\x00\x00\xff\xff")
                return opcode, data

    def _parse(self):
        b = self.buf
        if len(b) < 2:
            return None
        n, off = b[1] & 0x7f, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, off = int.from_bytes(b[2:4], "big"), 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, off = int.from_bytes(b[2:10], "big"), 10
        if len(b) < off + n:
            return None
        self.buf = b[off + n:]
        return bool(b[0] & 0x80), bool(b[0] & 0x40), b[0] & 0x0f, b[off:off + n]


# --------------------------------------------------------------------------
# a scripted HTTP/1.1 upstream

class RawUpstream:
    """Per request head (path):
      /raw/good     101 with the right Accept, Protocol "chat", Extensions
                    "x-test"; then echoes raw bytes upper-cased, and when the
                    client half-closes sends "bye" and closes
      /raw/abort    101 with the right Accept, then a TCP reset
      /raw/bad101   101 with a wrong Accept
      /raw/refuse   403 with a body
      /raw/ok200    200 (no switch)"""

    def __init__(self):
        self.heads = []
        self.eof_seen = threading.Event()
        self.sock = serve_threads(self._serve)
        self.port = self.sock.getsockname()[1]

    def _serve(self, c):
        try:
            c.settimeout(10)
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, _, rest = buf.partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            fields = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.strip()
            self.heads.append((lines[0], fields))
            path = lines[0].split(" ")[1]
            key = fields.get("sec-websocket-key", "")
            if path == "/raw/good":
                c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: chat\r\n"
                           "Sec-WebSocket-Extensions: x-test\r\n\r\n" % accept_of(key)).encode())
                data = rest
                while True:
                    if data:
                        c.sendall(data.upper())
                    data = c.recv(65536)
                    if not data:
                        break
                self.eof_seen.set()
                c.sendall(b"bye")
                c.shutdown(socket.SHUT_WR)
            elif path == "/raw/abort":
                c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Accept: %s\r\n\r\n" % accept_of(key)).encode())
                time.sleep(0.3)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif path == "/raw/bad101":
                c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n")
                time.sleep(1)
            elif path == "/raw/refuse":
                c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 8\r\n\r\nrefused\n")
            else:
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.sock.close()


CONFIG = """
servers = ( { name = "h2c"; listen = [ "127.0.0.1:%(port)d" ]; http2_cleartext = true;
  set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; X-Host = "$http_host"; };
  locations = (
    { prefix = "/"; proxy_pass = "http://127.0.0.1:%(ws)d"; },
    { prefix = "/idle/"; tunnel_timeout = "1s"; proxy_pass = "http://127.0.0.1:%(ws)d"; },
    { prefix = "/nows/"; websocket = false; proxy_pass = "http://127.0.0.1:%(ws)d"; },
    { prefix = "/raw/"; proxy_pass = "http://127.0.0.1:%(raw)d"; } ); } );
"""


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_echo(port, echo):
    c = Client(port)
    c.pump(lambda e: isinstance(e, h2.events.RemoteSettingsChanged), 5)
    check_eq(c.c.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL), 1,
             "SETTINGS_ENABLE_CONNECT_PROTOCOL = 1")

    log("extended CONNECT to a websockets echo server: 200, text and 1 MiB binary echo")
    ws = WsStream(c, "/chat/echo", [("sec-websocket-extensions", "permessage-deflate"),
                                    ("sec-websocket-key", "Y2xpZW50IGtleSAxMjM0NQ==")])
    status, headers = ws.head()
    check_eq(status, 200, "the stream is answered 200")
    check("sec-websocket-accept" not in headers, "no Sec-WebSocket-Accept towards the HTTP/2 client", headers)
    check("permessage-deflate" in headers.get("sec-websocket-extensions", ""),
          "the server's Sec-WebSocket-Extensions is passed back", headers)
    h = echo.heads.get("/chat/echo")
    check(h is not None and h.get("Sec-WebSocket-Key") not in (None, "Y2xpZW50IGtleSAxMjM0NQ=="),
          "the upstream got a key of proxyd's, not the client's", h and dict(h))
    check(h is not None and h.get("Sec-WebSocket-Version") == "13", "Sec-WebSocket-Version is passed on")
    ws.send(ws_frame(1, b"hello over h2"))
    check_eq(ws.message(), (1, b"hello over h2"), "a text message echoes")
    big = os.urandom(1 << 20)
    ws.send(ws_frame(2, big))
    m = ws.message(30)
    check(m is not None and m[0] == 2 and m[1] == big, "a 1 MiB binary message echoes whole",
          m and (m[0], len(m[1])))
    check_eq(echo.received.get("/chat/echo"), hashlib.sha256(big).hexdigest(), "the server got it whole")

    log("close from the client: code and reason reach the server, the stream ends both ways")
    ws.send(ws_close(4000, "client-bye"))
    m = ws.message()
    check(m is not None and m[0] == 8 and m[1][:2] == (4000).to_bytes(2, "big"), "the server's close comes back", m)
    ws.send(b"", end=True)
    c.wait(ws.sid)
    check(any(isinstance(e, h2.events.StreamEnded) and e.stream_id == ws.sid for e in c.events),
          "proxyd ends the stream (END_STREAM) after the upstream closed")
    check(wait_for(lambda: echo.closes.get("/chat/echo") == (4000, "client-bye")),
          "the server saw 4000 client-bye", echo.closes.get("/chat/echo"))

    log("close from the server")
    ws = WsStream(c, "/chat/server-close")
    check_eq(ws.head()[0], 200, "200")
    ws.send(ws_frame(1, b"go"))
    m = ws.message()
    check(m is not None and m[0] == 8 and m[1] == (4001).to_bytes(2, "big") + b"server-bye",
          "the client gets the server's close 4001 server-bye", m)
    ws.send(ws_close(4001, ""), end=True)
    c.wait(ws.sid)
    check(c.done(ws.sid) and c.reset(ws.sid) is None, "the stream ends without a reset")
    check(wait_for(lambda: echo.closes.get("/chat/server-close", (None,))[0] == 4001), "the server saw its close done")

    log("RST_STREAM from the client closes the upstream connection")
    ws = WsStream(c, "/chat/reset")
    check_eq(ws.head()[0], 200, "200")
    ws.send(ws_frame(1, b"x"))
    check_eq(ws.message(), (1, b"x"), "echo before the reset")
    c.c.reset_stream(ws.sid, CANCEL)
    c.flush()
    check(wait_for(lambda: "/chat/reset" in echo.closes), "the upstream connection was closed after the reset")
    check(echo.closes.get("/chat/reset", (None,))[0] == 1006, "(abnormally: no close frame)", echo.closes)

    log("another stream on the connection still works afterwards")
    c.close()
    c = Client(port)
    sid = c.request([(":method", "GET"), (":scheme", "http"), (":path", "/nows/x"), (":authority", "localhost")])
    c.wait(sid)
    log("websocket = false: no tunnel, and no 200 for the extended CONNECT")
    ws = WsStream(c, "/nows/chat")
    status, _ = ws.head()
    check(status is not None and status != 200, "the client gets no 200 (%s)" % status)

    log("tunnel_timeout: an idle tunnel is reset")
    ws = WsStream(c, "/idle/chat")
    check_eq(ws.head()[0], 200, "200")
    ws.send(ws_frame(1, b"once"))
    check_eq(ws.message(), (1, b"once"), "echo")
    c.pump(lambda e: isinstance(e, h2.events.StreamReset) and e.stream_id == ws.sid, 10)
    check_eq(c.reset(ws.sid), CANCEL, "the idle tunnel's stream is reset (CANCEL)")
    check(wait_for(lambda: "/idle/chat" in echo.closes), "and its upstream connection closed")
    c.close()


def test_scripted(port, raw):
    c = Client(port)
    log("the upstream request and the 200 made of its 101")
    ws = WsStream(c, "/raw/good", [("sec-websocket-protocol", "chat, superchat"),
                                   ("sec-websocket-extensions", "x-test")])
    status, headers = ws.head()
    check_eq(status, 200, "a 101 with the right Accept: 200")
    check_eq(headers.get("sec-websocket-protocol"), "chat", "Sec-WebSocket-Protocol passed back")
    check_eq(headers.get("sec-websocket-extensions"), "x-test", "Sec-WebSocket-Extensions passed back")
    check("sec-websocket-accept" not in headers and "upgrade" not in headers, "no Accept, no Upgrade", headers)
    line, f = raw.heads[-1]
    check_eq(line, "GET /raw/good HTTP/1.1", "the upstream gets a GET")
    check_eq(f.get("upgrade"), "websocket", "Upgrade: websocket")
    check_eq(f.get("connection", "").lower(), "upgrade", "Connection: upgrade")
    check_eq(len(base64.b64decode(f.get("sec-websocket-key", ""))), 16, "a 16-byte Sec-WebSocket-Key")
    check_eq(f.get("sec-websocket-version"), "13", "Version")
    check_eq(f.get("sec-websocket-protocol"), "chat, superchat", "Protocol")
    check_eq(f.get("x-host"), "localhost", ":authority is the request's Host ($http_host)")
    keys = {f.get("sec-websocket-key")}

    log("bytes both ways, then the client's half-close reaches the upstream and its answer comes back")
    ws.send(b"abc")
    c.pump(lambda e: False, 0.5)
    ws.send(b"def", end=True)
    check(raw.eof_seen.wait(10), "the upstream saw EOF after END_STREAM")
    c.wait(ws.sid)
    _, _, body = c.response(ws.sid)
    check_eq(body, b"ABCDEFbye", "what the upstream sent, after the half-close too")
    check(c.reset(ws.sid) is None and c.done(ws.sid), "the stream ended with END_STREAM")

    ws2 = WsStream(c, "/raw/good")
    ws2.head()
    keys.add(raw.heads[-1][1].get("sec-websocket-key"))
    check_eq(len(keys), 2, "every handshake gets a fresh key")
    c.c.reset_stream(ws2.sid, CANCEL)
    c.flush()

    log("an upstream that resets its connection: RST_STREAM CONNECT_ERROR")
    ws = WsStream(c, "/raw/abort")
    check_eq(ws.head()[0], 200, "200")
    c.wait(ws.sid)
    check_eq(c.reset(ws.sid), CONNECT_ERROR, "the stream is reset with CONNECT_ERROR")

    for path, want, what in (("/raw/bad101", 502, "a 101 with a wrong Accept"),
                             ("/raw/refuse", 403, "a refusing upstream's status"),
                             ("/raw/ok200", 502, "a 200 instead of a 101")):
        ws = WsStream(c, path)
        c.wait(ws.sid)
        status, _, body = c.response(ws.sid)
        check_eq(status, want, "%s: %d" % (what, want))
        if want == 403:
            check_eq(body, b"refused\n", "with its body")

    log("plain CONNECT is refused; an unknown :protocol is 501")
    sid = c.request([(":method", "CONNECT"), (":authority", "localhost:443")], end=False)
    st, _, _ = c.wait(sid)
    check(st == 405 or c.reset(sid) is not None, "plain CONNECT: 405 or reset (%s)" % st)
    sid = c.request([(":method", "CONNECT"), (":protocol", "smtp"), (":scheme", "http"), (":path", "/raw/x"),
                     (":authority", "localhost")], end=False)
    check_eq(c.wait(sid)[0], 501, ":protocol smtp: 501")
    check(not c.closed, "the connection stays open")
    c.close()


def main():
    echo = EchoServer()
    raw = RawUpstream()
    port = free_port()
    try:
        with Proxyd(CONFIG % {"port": port, "ws": echo.port, "raw": raw.port}, wait=("127.0.0.1", port)) as px:
            test_echo(port, echo)
            test_scripted(port, raw)
            check(wait_for(lambda: echo.open == 0), "every upstream WebSocket is closed at the end", echo.open)
            check(px.alive(), "proxyd is still running")
    finally:
        echo.close()
        raw.close()


if __name__ == "__main__":
    run_main(main)
