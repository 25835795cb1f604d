#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Reliability and security regressions, each found by using proxyd the way a
new user would, with nginx's behaviour as the reference.

Stale upstream connections: a backend that answers HTTP/1.1 with
Content-Length (no Connection: close) and then closes the socket. proxyd must
never send a request onto such a connection: GET, pause, POST with a body,
20 times for each pause of 0, 10 ms, 50 ms and 200 ms, zero failed POSTs; and
a 32 MiB upload after a download on the same client connection arrives whole.

Upgrade smuggling: `Upgrade: h2c` (with HTTP2-Settings) to an allowed path is
not forwarded (the backend sees no Upgrade, the client gets the backend's
ordinary response, and what the client sends next is parsed by proxyd as a
request, so a `return = 403` location still answers 403); an Upgrade on a
request with a body is not forwarded; a 101 whose Upgrade is not what was
offered is a 502, never a tunnel; `websocket` (any case) is still tunnelled,
and a location's `upgrade_protocols` list allows another token.

Underscores in header names: `X_Remote_User` does not reach the backend (and
so cannot stand in for the `X-Remote-User` that set_header strips), the debug
journal line says so, `underscores_in_headers = true` passes it.
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, Proxyd, Reply, Request, check, connect,  # noqa: E402
                     free_port, parse_responses, recv_until, recv_until_close,
                     run_main, DataStream)


# --------------------------------------------------------------------------
# backends

class UpgradeBackend(Backend):
    """Answers an Upgrade request with 101 (Upgrade: the offered value, or
    `force` when set), then echoes every byte back prefixed by "TUNNEL:".
    Other requests get 200 with the request's Upgrade header (or "-") in the
    body. Records requests as Backend does."""

    def __init__(self, force=None):
        self.force = force
        super().__init__(self._handler)

    def _handler(self, req):
        return Reply(200, [("Content-Type", "text/plain")],
                     ("upgrade=%s path=%s\n" % (req.header("Upgrade") or "-",
                                                req.target)).encode())

    def on_connection(self, c, rf, cid, peer):
        head = rf.read_head()
        while head is not None:
            req = Request()
            req.conn_id = cid
            req.parse_head(head)
            cl = int(req.header("Content-Length") or "0")
            rf.read_exact(cl, lambda b: None)
            req.complete = True
            with self.cond:
                self.requests.append(req)
                self.cond.notify_all()
            up = req.header("Upgrade")
            if up:
                c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\n"
                           "Connection: Upgrade\r\n\r\n" % (self.force or up)).encode())
                while True:
                    if rf.buf:
                        data = bytes(rf.buf)
                        rf.buf.clear()
                    else:
                        data = c.recv(65536)
                    if not data:
                        return
                    c.sendall(b"TUNNEL:" + data)
            self._send(c, req, self._handler(req))
            head = rf.read_head()


# --------------------------------------------------------------------------

class CorkedClosingBackend(Backend):
    """Answers every request with Content-Length and no Connection: close,
    then closes. The socket is corked, so the last response bytes and the FIN
    leave in one segment: proxyd sees the end of the response and the close in
    one event, every time (the case whose edge-triggered event is consumed
    while the response is read)."""

    def _send(self, c, req, r):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        super()._send(c, req, r)
        return False


def stale_connections():
    """Backend closes after every response without saying Connection: close."""
    def handler(req):
        return Reply(200, [("Content-Type", "text/plain")],
                     b"body=%d\n" % req.body_len)

    with CorkedClosingBackend(handler) as b:
        port = free_port()
        conf = """
workers = 1;
defaults = { client_max_body_size = "0"; };
servers = ( { name = "m"; listen = [ "http" ];
  locations = ( { prefix = "/"; proxy_pass = "http://%s"; } ); } );
""" % b.address
        with Proxyd(conf, sockets=[("127.0.0.1:%d" % port, "http")]) as p:
            for pause in (0, 0.01, 0.05, 0.2):
                statuses = []
                for _ in range(20):
                    s = connect(port)
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    recv_until(s, b"body=0\n")
                    time.sleep(pause)
                    s.sendall(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                              b"Connection: close\r\n\r\n" + b"x" * 100)
                    d2, _ = recv_until_close(s)
                    s.close()
                    rs, _ = parse_responses(d2)
                    statuses.append((rs[0].status, rs[0].body) if rs else None)
                bad = [x for x in statuses if x != (200, b"body=100\n")]
                check(not bad, "backend that closes after each response: 20 POSTs after a GET "
                      "with a %d ms pause all answered 200 with the body forwarded" % (pause * 1000),
                      bad[:5])
            check("send failed" not in p.log_text() and
                  "without a response" not in p.log_text(),
                  "no request was sent onto a connection the backend had closed",
                  p.log_text()[-800:])

            # A download then a large upload on the same client connection.
            size = 32 << 20
            data = DataStream(size, seed=7)
            s = connect(port, timeout=30)
            s.sendall(b"GET /down HTTP/1.1\r\nHost: x\r\n\r\n")
            recv_until(s, b"body=0\n")
            s.sendall(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                      b"Connection: close\r\n\r\n" % size)
            for blk in data.blocks():
                s.sendall(blk)
            d2, _ = recv_until_close(s, timeout=30)
            s.close()
            rs, _ = parse_responses(d2)
            got = [r for r in b.complete_requests() if r.target == "/up"]
            check(rs and rs[0].status == 200 and got and got[-1].body_len == size and
                  got[-1].body_sha256 == data.sha256(),
                  "a 32 MiB upload after a download on one client connection reaches the "
                  "backend whole", (rs[0].status if rs else None,
                                    got[-1].body_len if got else None))


UPGRADE_CONF = """
workers = 1;
log_level = "debug";
servers = ( { name = "m"; listen = [ "http" ];
  locations = (
    { prefix = "/"; proxy_pass = "http://%(up)s"; },
    { prefix = "/admin"; return = 403; },
    { prefix = "/denied"; access = [ "deny all" ]; proxy_pass = "http://%(up)s"; },
    { prefix = "/explicit/"; proxy_pass = "http://%(up)s";
      set_header = { Upgrade = "$http_upgrade"; Connection = "upgrade"; }; },
    { prefix = "/custom/"; upgrade_protocols = [ "websocket", "x-custom" ];
      proxy_pass = "http://%(up)s"; },
    { prefix = "/mismatch/"; proxy_pass = "http://%(bad)s"; }
  ); } );
"""

H2C = (b"GET /public HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
       b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")


def upgrade_smuggling():
    with UpgradeBackend() as up, UpgradeBackend(force="h2c") as bad:
        port = free_port()
        conf = UPGRADE_CONF % {"up": up.address, "bad": bad.address}
        with Proxyd(conf, sockets=[("127.0.0.1:%d" % port, "http")]) as p:
            for name, req in (
                    ("h2c", H2C),
                    ("h2c via set_header $http_upgrade",
                     H2C.replace(b"/public", b"/explicit/x")),
                    ("h2c listed before websocket's absence",
                     H2C.replace(b"Upgrade: h2c", b"Upgrade: h2c, TLS/1.2"))):
                up.reset()
                s = connect(port)
                s.sendall(req)
                time.sleep(0.3)
                # What a smuggler sends next: an HTTP/2 preface, then a request for /admin.
                s.sendall(b"GET /admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                d, _ = recv_until_close(s, timeout=5)
                s.close()
                rs, _ = parse_responses(d)
                reqs = up.complete_requests()
                check([r.status for r in rs] == [200, 403] and b"TUNNEL:" not in d,
                      "%s: no 101, the backend's 200, then proxyd's own 403 for /admin" % name,
                      d[:300])
                check(reqs and all(r.header("Upgrade") is None for r in reqs) and
                      not any("admin" in r.target for r in reqs),
                      "%s: the backend saw no Upgrade field and no /admin request" % name,
                      [(r.target, r.headers) for r in reqs])
            check(p.wait_log(r"Upgrade \"h2c\" is not in upgrade_protocols: dropped"),
                  "the debug journal line says why the Upgrade was dropped", p.log_text()[-500:])

            # Upgrade on a request with a body: not forwarded.
            up.reset()
            s = connect(port)
            s.sendall(b"POST /public HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                      b"Upgrade: websocket\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd")
            d, _ = recv_until_close(s)
            s.close()
            rs, _ = parse_responses(d)
            reqs = up.complete_requests()
            check(rs and rs[0].status == 200 and reqs and reqs[0].header("Upgrade") is None,
                  "an Upgrade on a request with a body is not forwarded", (d[:200], reqs))

            # A 101 that switches to something else than what was offered.
            s = connect(port)
            s.sendall(b"GET /mismatch/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                      b"Upgrade: websocket\r\n\r\n")
            time.sleep(0.3)
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            d, _ = recv_until_close(s)
            s.close()
            check(d.startswith(b"HTTP/1.1 502") and b"TUNNEL:" not in d,
                  "a 101 with Upgrade: h2c to a websocket request is a 502, not a tunnel", d[:200])

            # websocket (any case) still tunnels; the location's list allows x-custom.
            for path, token in (("/ws", "websocket"), ("/ws", "WebSocket"),
                                ("/custom/x", "x-custom"), ("/explicit/y", "websocket")):
                s = connect(port)
                s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                           "Upgrade: %s\r\n\r\n" % (path, token)).encode())
                d = recv_until(s, b"\r\n\r\n")
                s.sendall(b"hello")
                got = recv_until(s, b"TUNNEL:hello")
                s.close()
                check(d.startswith(b"HTTP/1.1 101") and b"TUNNEL:hello" in d + got,
                      "Upgrade: %s to %s is tunnelled" % (token, path), (d + got)[:200])
            # x-custom elsewhere is not.
            s = connect(port)
            s.sendall(b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                      b"Upgrade: x-custom\r\nConnection: close\r\n\r\n")
            d, _ = recv_until_close(s)
            s.close()
            check(d.startswith(b"HTTP/1.1 200") and b"upgrade=-" in d,
                  "Upgrade: x-custom outside the location that lists it is dropped", d[:200])


def underscores():
    with Backend() as b:
        port = free_port()
        conf = """
workers = 1;
log_level = "debug";
defaults = { set_header = { X-Remote-User = ""; }; };
servers = ( { name = "m"; listen = [ "http" ];
  locations = (
    { prefix = "/"; proxy_pass = "http://%(b)s"; },
    { prefix = "/pass/"; underscores_in_headers = true; proxy_pass = "http://%(b)s"; }
  ); } );
""" % {"b": b.address}
        with Proxyd(conf, sockets=[("127.0.0.1:%d" % port, "http")]) as p:
            s = connect(port)
            s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\nX_Remote_User: admin\r\n"
                      b"X-Remote-User: admin\r\nX_Forwarded_For: 10.9.9.9\r\n"
                      b"Accept: */*\r\nConnection: close\r\n\r\n")
            d, _ = recv_until_close(s)
            s.close()
            reqs = b.complete_requests()
            names = [k.lower() for k, _ in reqs[-1].headers] if reqs else []
            check(d.startswith(b"HTTP/1.1 200") and "x_remote_user" not in names and
                  "x-remote-user" not in names and "x_forwarded_for" not in names and
                  "accept" in names,
                  "X_Remote_User / X_Forwarded_For are dropped, other fields pass", names)
            check(p.wait_log(r'dropped request header field "X_Remote_User"'),
                  "the debug journal line names the dropped field", p.log_text()[-400:])
            s = connect(port)
            s.sendall(b"GET /pass/x HTTP/1.1\r\nHost: x\r\nX_Custom_Thing: 1\r\n"
                      b"Connection: close\r\n\r\n")
            d, _ = recv_until_close(s)
            s.close()
            reqs = b.complete_requests()
            check(reqs and reqs[-1].header("X_Custom_Thing") == "1",
                  "underscores_in_headers = true passes them",
                  reqs[-1].headers if reqs else None)


def main():
    stale_connections()
    upgrade_smuggling()
    underscores()


if __name__ == "__main__":
    run_main(main)
