#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""WebSocket / Upgrade tunnelling through proxyd, with a real WebSocket client
and server (Debian's python3-websockets, asyncio API).

The upstream is a websockets echo server on 127.0.0.1 running in a thread;
proxyd is socket-activated in front of it. Checked through proxyd: text and
binary echo, a 10 MB message (sha256 on both sides), ping/pong both ways,
the close handshake both ways (code and reason reach the other side, and the
TCP connection then closes promptly), 1,000 concurrent tunnels each echoing a
unique message, the explicit `set_header = { Upgrade = "$http_upgrade";
Connection = "upgrade"; }` form, `websocket = false` (the Upgrade is not
forwarded, the client never gets a 101), the tunnel idle timeout
(tunnel_timeout = "1s") closing a silent tunnel but not a busy one, and that
proxyd's fd count returns to its baseline once every tunnel is closed, with
no CLOSE-WAIT socket left.

Raw sockets: an Upgrade request answered 200 is an ordinary response (no
tunnel); bytes the client sends right behind its Upgrade request (to /raw/,
whose upgrade_protocols allows "rawproto") are held
back until the 101 and then reach the upstream through the tunnel."""

import asyncio
import hashlib
import os
import resource
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Proxyd, check, connect, free_port, log,  # noqa: E402
                     parse_responses, recv_until_close, run_main)

import websockets  # noqa: E402
import websockets.exceptions  # noqa: E402

TUNNELS = 1000

CONFIG = """
workers = 2;
servers = (
  {
    name = "main";
    listen = [ "http" ];
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
    locations = (
      { prefix = "/"; proxy_pass = "http://127.0.0.1:%(wsport)d"; },
      { prefix = "/explicit/"; proxy_pass = "http://127.0.0.1:%(wsport)d";
        set_header = { Upgrade = "$http_upgrade"; Connection = "upgrade"; }; },
      { prefix = "/nows/"; websocket = false; proxy_pass = "http://127.0.0.1:%(wsport)d"; },
      { prefix = "/idle/"; tunnel_timeout = "1s"; proxy_pass = "http://127.0.0.1:%(wsport)d"; },
      { prefix = "/raw/"; upgrade_protocols = [ "websocket", "rawproto" ];
        proxy_pass = "http://127.0.0.1:%(rawport)d"; }
    );
  }
);
"""


# --------------------------------------------------------------------------
# the upstream: a websockets echo server in its own thread and event loop

class EchoServer:
    """Echoes every message. Paths:
      /.../server-close  the server closes with 4001 "server-bye"
      /.../server-ping   the server pings, waits for the pong, sends "pong-ok"
    Records per path: the request headers and the close code/reason the
    server saw."""

    def __init__(self):
        self.heads = {}     # path -> websockets Headers
        self.closes = {}    # path -> (code, reason)
        self.received = {}  # path -> sha256 of the last binary message
        self.open = 0
        self.accepted = 0
        self.port = None
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop = None
        self._thr = threading.Thread(target=self._run, daemon=True)
        self._thr.start()
        if not self._ready.wait(10):
            raise RuntimeError("websockets server did not start")

    async def _process_request(self, path, headers):
        self.heads[path] = headers
        return None

    async def _handler(self, ws, path=None):
        path = ws.path
        self.accepted += 1
        self.open += 1
        try:
            if path.endswith("/server-close"):
                await ws.recv()
                await ws.close(4001, "server-bye")
            elif path.endswith("/server-ping"):
                waiter = await ws.ping(b"srv-ping")
                await asyncio.wait_for(waiter, 5)
                await ws.send("pong-ok")
                async for m in ws:
                    await ws.send(m)
            else:
                async for m in ws:
                    if isinstance(m, bytes):
                        self.received[path] = hashlib.sha256(m).hexdigest()
                    await ws.send(m)
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            await ws.wait_closed()
            self.closes[path] = (ws.close_code, ws.close_reason)
            self.open -= 1

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self._stop = asyncio.Event()

        async def main():
            async with websockets.serve(self._handler, "127.0.0.1", 0,
                                        process_request=self._process_request,
                                        max_size=None, ping_interval=None,
                                        backlog=4096, close_timeout=5) as srv:
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
        self._thr.join(10)


# --------------------------------------------------------------------------
# a raw upstream for the byte-level Upgrade cases

class RawUpgradeBackend:
    """Accepts connections; per request head:
      /raw/200   answers 200 with body "plain" (Connection: close)
      /raw/101   waits 0.4 s, records any bytes that arrived after the head
                 (must be none: the proxy holds them back until the 101),
                 answers 101, then records what arrives and echoes it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.heads = []
        self.before_101 = []
        self.after_101 = []
        self.extra_after_200 = []
        self._stop = threading.Event()
        self._conns = []
        self._thr = threading.Thread(target=self._accept, daemon=True)
        self._thr.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.settimeout(5)
            buf = b""
            while b"\r\n\r\n" not in buf:
                b = c.recv(65536)
                if not b:
                    return
                buf += b
            head, _, rest = buf.partition(b"\r\n\r\n")
            self.heads.append(head)
            target = head.split(b"\r\n")[0].split(b" ")[1]
            if target.startswith(b"/raw/200"):
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nplain")
                # whatever arrives now (it should be nothing) is recorded
                c.settimeout(1.0)
                got = rest
                try:
                    while True:
                        b = c.recv(65536)
                        if not b:
                            break
                        got += b
                except (socket.timeout, OSError):
                    pass
                self.extra_after_200.append(got)
                return
            if target.startswith(b"/raw/101"):
                time.sleep(0.4)
                got = rest
                c.setblocking(False)
                try:
                    while True:
                        b = c.recv(65536)
                        if not b:
                            break
                        got += b
                except (BlockingIOError, OSError):
                    pass
                c.setblocking(True)
                c.settimeout(5)
                self.before_101.append(got)
                c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: rawproto\r\n"
                          b"Connection: Upgrade\r\n\r\n")
                after = b""
                while True:
                    try:
                        b = c.recv(65536)
                    except (socket.timeout, OSError):
                        break
                    if not b:
                        break
                    after += b
                    c.sendall(b"echo:" + b)
                self.after_101.append(after)
        finally:
            try:
                c.close()
            except OSError:
                pass

    def close(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        for c in self._conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thr.join(3)


# --------------------------------------------------------------------------
# helpers

def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def wait_fds(pid, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    n = fd_count(pid)
    while n > want and time.monotonic() < deadline:
        time.sleep(0.1)
        n = fd_count(pid)
    return n


def close_wait_sockets(pid):
    """proxyd's sockets in CLOSE-WAIT (/proc/net/tcp{,6} matched by inode)."""
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if t.startswith("socket:["):
                inodes.add(t[8:-1])
    except OSError:
        pass
    out = []
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(f) as fh:
                next(fh)
                for ln in fh:
                    p = ln.split()
                    if len(p) > 9 and p[9] in inodes and p[3] == "08":
                        out.append((p[1], p[2]))
        except OSError:
            pass
    return out


def url(port, path):
    return "ws://127.0.0.1:%d%s" % (port, path)


def ws_connect(port, path, **kw):
    kw.setdefault("max_size", None)
    kw.setdefault("ping_interval", None)
    kw.setdefault("open_timeout", 10)
    kw.setdefault("close_timeout", 5)
    return websockets.connect(url(port, path), **kw)


# --------------------------------------------------------------------------
# the cases

async def case_echo(port, srv):
    async with ws_connect(port, "/echo/text") as ws:
        await ws.send("hello, tunnel ✓")
        got = await asyncio.wait_for(ws.recv(), 5)
        check(got == "hello, tunnel ✓", "text message echoed", got)
        blob = bytes(range(256)) * 4 + b"\x00\xff"
        await ws.send(blob)
        got = await asyncio.wait_for(ws.recv(), 5)
        check(got == blob, "binary message echoed", got[:40] if isinstance(got, bytes) else got)
        # several messages in a row keep their order
        for i in range(50):
            await ws.send("m%d" % i)
        got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(50)]
        check(got == ["m%d" % i for i in range(50)], "50 messages echoed in order", got[:5])
    h = srv.heads.get("/echo/text")
    check(h is not None and h.get("Upgrade", "").lower() == "websocket"
          and "upgrade" in h.get("Connection", "").lower(),
          "upstream received Upgrade: websocket and Connection: upgrade",
          h and list(h.raw_items()))


async def case_big(port, srv):
    big = os.urandom(10 * 1024 * 1024)
    want = hashlib.sha256(big).hexdigest()
    t0 = time.monotonic()
    async with ws_connect(port, "/echo/big") as ws:
        await ws.send(big)
        got = await asyncio.wait_for(ws.recv(), 60)
    dt = time.monotonic() - t0
    check(isinstance(got, bytes) and len(got) == len(big) and
          hashlib.sha256(got).hexdigest() == want,
          "10 MB binary message echoed intact (sha256, %.2fs)" % dt,
          "got %d bytes" % len(got))
    check(srv.received.get("/echo/big") == want, "upstream received the 10 MB message intact")


async def case_ping(port, srv):
    async with ws_connect(port, "/echo/ping") as ws:
        waiter = await ws.ping(b"cli-ping")
        try:
            await asyncio.wait_for(waiter, 5)
            ok = True
        except asyncio.TimeoutError:
            ok = False
        check(ok, "client ping answered by the upstream's pong")
    async with ws_connect(port, "/echo/server-ping") as ws:
        try:
            got = await asyncio.wait_for(ws.recv(), 6)
        except (asyncio.TimeoutError, websockets.exceptions.ConnectionClosed) as e:
            got = repr(e)
        check(got == "pong-ok", "upstream ping answered by the client's pong", got)


async def case_close(port, srv):
    # client-initiated
    ws = await ws_connect(port, "/echo/client-close")
    await ws.send("x")
    await asyncio.wait_for(ws.recv(), 5)
    t0 = time.monotonic()
    await ws.close(4000, "client-bye")
    dt = time.monotonic() - t0
    for _ in range(50):
        if "/echo/client-close" in srv.closes:
            break
        await asyncio.sleep(0.1)
    check(srv.closes.get("/echo/client-close") == (4000, "client-bye"),
          "client close code 4000 and reason reach the upstream",
          srv.closes.get("/echo/client-close"))
    check(ws.close_code == 4000 and ws.close_reason == "client-bye",
          "the upstream's close echo reaches the client", (ws.close_code, ws.close_reason))
    check(dt < 3.0, "client-initiated close completes promptly (%.2fs)" % dt)

    # server-initiated
    ws = await ws_connect(port, "/echo/server-close")
    await ws.send("close please")
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(ws.recv(), 5)
        err = None
    except websockets.exceptions.ConnectionClosed as e:
        err = e
    except asyncio.TimeoutError as e:
        err = e
    await asyncio.wait_for(ws.wait_closed(), 10)
    dt = time.monotonic() - t0
    check(isinstance(err, websockets.exceptions.ConnectionClosed) and
          ws.close_code == 4001 and ws.close_reason == "server-bye",
          "server close code 4001 and reason reach the client",
          (repr(err), ws.close_code, ws.close_reason))
    for _ in range(50):
        if "/echo/server-close" in srv.closes:
            break
        await asyncio.sleep(0.1)
    check(srv.closes.get("/echo/server-close") == (4001, "server-bye"),
          "the client's close echo reaches the upstream", srv.closes.get("/echo/server-close"))
    check(dt < 3.0, "server-initiated close and TCP close reach the client promptly (%.2fs)" % dt)


async def case_explicit(port, srv):
    async with ws_connect(port, "/explicit/x") as ws:
        await ws.send("explicit")
        got = await asyncio.wait_for(ws.recv(), 5)
        check(got == "explicit", "explicit set_header Upgrade/Connection form: echo works", got)
    h = srv.heads.get("/explicit/x")
    check(h is not None and h.get("Upgrade", "").lower() == "websocket"
          and "upgrade" in h.get("Connection", "").lower()
          and len(h.get_all("Upgrade")) == 1,
          "explicit form: upstream got one Upgrade: websocket and Connection: upgrade",
          h and list(h.raw_items()))


async def case_no_websocket(port, srv):
    status = None
    err = None
    try:
        async with ws_connect(port, "/nows/x") as ws:
            status = 101
            await ws.close()
    except websockets.exceptions.InvalidStatusCode as e:
        status = e.status_code
    except Exception as e:  # noqa: BLE001
        err = e
    check(status is not None and status != 101,
          "websocket = false: the client gets no 101 (got %s)" % status, repr(err))
    check(status == 426, "websocket = false: the upstream's plain-GET answer 426 is relayed",
          status)
    h = srv.heads.get("/nows/x")
    check(h is not None and "Upgrade" not in h
          and "upgrade" not in h.get("Connection", "").lower(),
          "websocket = false: upstream saw a plain GET (no Upgrade, no Connection: upgrade)",
          h and list(h.raw_items()))


async def case_idle(port, srv):
    # a busy tunnel outlives tunnel_timeout (the timeout is idle time, not age)
    async with ws_connect(port, "/idle/busy") as ws:
        ok = True
        t0 = time.monotonic()
        i = 0
        try:
            while time.monotonic() - t0 < 2.6:
                await ws.send("b%d" % i)
                got = await asyncio.wait_for(ws.recv(), 2)
                ok = ok and got == "b%d" % i
                i += 1
                await asyncio.sleep(0.4)
        except (websockets.exceptions.ConnectionClosed, asyncio.TimeoutError) as e:
            ok = False
            log("busy tunnel: %r" % e)
        check(ok, "a tunnel with traffic every 0.4s survives 2.6s with tunnel_timeout = 1s")
    # a silent tunnel is closed after about tunnel_timeout
    ws = await ws_connect(port, "/idle/silent")
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(ws.wait_closed(), 6)
        closed = True
    except asyncio.TimeoutError:
        closed = False
    dt = time.monotonic() - t0
    check(closed and 0.8 <= dt <= 4.0,
          "a silent tunnel is closed by the idle timeout (tunnel_timeout = 1s, after %.2fs)" % dt)
    for _ in range(50):
        if "/idle/silent" in srv.closes:
            break
        await asyncio.sleep(0.1)
    check("/idle/silent" in srv.closes, "the idle timeout also closes the upstream side",
          srv.closes.get("/idle/silent"))
    if not closed:
        ws.transport.abort()


async def case_many(port, srv, pid):
    sem = asyncio.Semaphore(200)
    conns = [None] * TUNNELS
    errors = []

    async def open_one(i):
        async with sem:
            try:
                conns[i] = await ws_connect(port, "/many/%d" % i, open_timeout=30)
            except Exception as e:  # noqa: BLE001
                errors.append((i, repr(e)))

    t0 = time.monotonic()
    await asyncio.gather(*(open_one(i) for i in range(TUNNELS)))
    opened = sum(1 for c in conns if c is not None)
    peak_fds = fd_count(pid)
    check(opened == TUNNELS, "%d concurrent tunnels opened (%.2fs)" % (opened, time.monotonic() - t0),
          errors[:5])
    check(peak_fds >= 2 * TUNNELS,
          "all tunnels open at once: proxyd holds %d fds (>= %d)" % (peak_fds, 2 * TUNNELS))
    check(srv.open >= TUNNELS, "upstream has %d open WebSocket connections at once" % srv.open)

    async def echo(i):
        ws = conns[i]
        if ws is None:
            return False
        msg = "tunnel-%d-%s" % (i, os.urandom(6).hex())
        try:
            await ws.send(msg)
            got = await asyncio.wait_for(ws.recv(), 30)
            return got == msg
        except Exception:  # noqa: BLE001
            return False

    res = await asyncio.gather(*(echo(i) for i in range(TUNNELS)))
    good = sum(1 for r in res if r)
    check(good == TUNNELS, "%d/%d concurrent tunnels echoed their own unique message"
          % (good, TUNNELS))

    async def close_one(ws):
        if ws is None:
            return
        try:
            await ws.close()
        except Exception:  # noqa: BLE001
            pass
    await asyncio.gather(*(close_one(c) for c in conns))
    clean = sum(1 for c in conns if c is not None and c.close_code == 1000)
    check(clean == TUNNELS, "%d/%d tunnels closed with a clean close handshake"
          % (clean, TUNNELS))


def raw_cases(port, raw):
    # an Upgrade request answered 200: a plain response, no tunnel
    s = connect(port, timeout=5)
    try:
        s.sendall(b"GET /raw/200 HTTP/1.1\r\nHost: a\r\nUpgrade: rawproto\r\n"
                  b"Connection: upgrade\r\n\r\n")
        data = b""
        s.settimeout(3)
        while True:
            rs, _ = parse_responses(data)
            if rs and len(rs[0].body) >= 5:
                break
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            data += b
        rs, _ = parse_responses(data)
        check(len(rs) == 1 and rs[0].status == 200 and rs[0].body == b"plain",
              "Upgrade answered 200: relayed as an ordinary 200 response", data[:300])
        # bytes after it are not tunnelled to the upstream
        try:
            s.sendall(b"NOT-HTTP-AT-ALL\r\n\r\n")
        except OSError:
            pass
        rest, closed = recv_until_close(s, 3)
    finally:
        s.close()
    time.sleep(0.3)
    st = rest[:12]
    check(closed and (rest == b"" or st.startswith(b"HTTP/1.1 400")),
          "Upgrade answered 200: following junk gets 400 or close, not a tunnel", rest[:200])
    check(not any(b"NOT-HTTP" in x for x in raw.extra_after_200) and
          not any(b"NOT-HTTP" in h for h in raw.heads),
          "Upgrade answered 200: junk sent afterwards never reaches the upstream",
          raw.extra_after_200)

    # leftover bytes behind the Upgrade request
    s = connect(port, timeout=5)
    try:
        s.sendall(b"GET /raw/101 HTTP/1.1\r\nHost: a\r\nUpgrade: rawproto\r\n"
                  b"Connection: upgrade\r\n\r\nEARLY-BYTES")
        data = b""
        s.settimeout(4)
        while b"echo:EARLY-BYTES" not in data:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            data += b
        check(data.startswith(b"HTTP/1.1 101 "), "raw upgrade: 101 relayed", data[:200])
        check(b"echo:EARLY-BYTES" in data,
              "raw upgrade: bytes sent right behind the request reach the upstream "
              "through the tunnel", data[:300])
        try:
            s.sendall(b"LATER")
            s.settimeout(3)
            more = b""
            while b"echo:LATER" not in more:
                b = s.recv(65536)
                if not b:
                    break
                more += b
        except OSError:
            more = b""
        check(b"echo:LATER" in more, "raw upgrade: later bytes flow both ways", more[:200])
    finally:
        s.close()
    time.sleep(0.5)
    check(raw.before_101 == [b""],
          "raw upgrade: nothing after the request head reached the upstream before its 101",
          raw.before_101)
    check(raw.after_101 and raw.after_101[0].startswith(b"EARLY-BYTES"),
          "raw upgrade: the upstream received EARLY-BYTES first after the 101", raw.after_101)
    check(raw.heads and raw.heads[-1].split(b"\r\n")[0] == b"GET /raw/101 HTTP/1.1"
          and b"EARLY" not in raw.heads[-1],
          "raw upgrade: request head forwarded without the early bytes", raw.heads[-1:])


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # proxyd: client socket, upstream socket and two splice pipes per tunnel
    need = 6 * TUNNELS + 500
    if soft < need and hard >= need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        soft = need
    log("fd limit %d (need about %d for %d tunnels)" % (soft, need, TUNNELS))
    check(soft >= need, "fd limit %d allows %d tunnels" % (soft, TUNNELS))

    srv = EchoServer()
    raw = RawUpgradeBackend()
    try:
        port = free_port()
        conf = CONFIG % {"wsport": srv.port, "rawport": raw.port}
        with Proxyd(conf, sockets=[("127.0.0.1:%d" % port, "http")]) as p:
            # warm-up: one tunnel, then measure the baseline
            async def warm():
                async with ws_connect(port, "/warm") as ws:
                    await ws.send("w")
                    await ws.recv()
            asyncio.run(warm())
            time.sleep(0.5)
            base = fd_count(p.pid)
            log("proxyd pid %d fd baseline %d" % (p.pid, base))

            asyncio.run(case_echo(port, srv))
            asyncio.run(case_big(port, srv))
            asyncio.run(case_ping(port, srv))
            asyncio.run(case_close(port, srv))
            asyncio.run(case_explicit(port, srv))
            asyncio.run(case_no_websocket(port, srv))
            asyncio.run(case_idle(port, srv))
            raw_cases(port, raw)
            asyncio.run(case_many(port, srv, p.pid))

            after = wait_fds(p.pid, base, 15)
            log("proxyd fds: baseline %d, after all tunnels closed %d" % (base, after))
            check(after <= base, "proxyd's fd count returns to its baseline (%d -> %d)"
                  % (base, after))
            cw = close_wait_sockets(p.pid)
            check(not cw, "no CLOSE-WAIT socket left in proxyd (%d)" % len(cw), cw)
            for _ in range(50):
                if srv.open == 0:
                    break
                time.sleep(0.1)
            check(srv.open == 0, "upstream has no WebSocket connection left (%d)" % srv.open)
            check(p.alive(), "proxyd still running")
    finally:
        raw.close()
        srv.close()


if __name__ == "__main__":
    log("test_websocket: proxyd=%s" % os.environ.get("PROXYD"))
    run_main(main)
