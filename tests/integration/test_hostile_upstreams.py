#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Hostile and broken upstreams.

A scripted backend answers `/r/<case>` with raw bytes and timings: it never
answers, trickles its response at 1 byte/s, resets the connection in the middle
of a body, answers 413 early while the client is still uploading, sends a 64 KiB
header field or an oversized head, sends 103 Early Hints, and sends stray bytes
after a HEAD or 304 response or after a Content-Length body. For each, proxyd
must give the client a correct (or visibly truncated) response, log it, leak no
descriptor, and never let stray bytes become the response to a later request on
a reused upstream connection.

nginx 1.22 (/usr/sbin/nginx) runs with an equivalent configuration in front of
its own copy of the backend; what it did is logged next to proxyd's result, and
where proxyd follows it, checked. Where they differ: nginx 1.22 takes a 103 for
the final response (relays it with Connection: close, never the 200), where
proxyd passes the 103 on to HTTP/1.1 clients and then the 200; and
answers 502 to a server that sent a 413 and reset the connection under the
upload (it buffers the whole body first); proxyd relays the 413. Like nginx, read_timeout bounds the whole response head but only the
silence between two reads of the body."""

import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (NGINX, Proxyd, check, connect, free_port, log,  # noqa: E402
                     nginx_config_text, parse_responses, recv_until_close, run_main,
                     start_nginx, stop_nginx, wait_port)

READ_TIMEOUT = 2  # seconds, both proxies
POISON = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Poison: 1\r\n\r\nPOISON"
BIG_FIELD = 64 << 10
UPLOAD = 8 << 20


def set_rst(c):
    """Make close() send RST instead of FIN."""
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Hostile:
    """A raw backend: reads a request head (and a Content-Length body unless
    the case reads it itself), then runs the case named by `/r/<case>`.
    Cases return True to keep the connection for the next request.
    .log: (connection id, request line) in order of arrival."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.log = []
        self.conns = 0
        self.early_drained = []  # body bytes an early-answering case read after answering
        self.socks = set()
        self.thr = threading.Thread(target=self._accept, daemon=True)
        self.thr.start()

    def close(self):
        self.stop.set()
        self.sock.close()
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thr.join(2)

    def reset(self):
        with self.lock:
            self.log = []
            self.early_drained = []

    def lines(self):
        with self.lock:
            return list(self.log)

    def _accept(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.conns += 1
                cid = self.conns
                self.socks.add(c)
            threading.Thread(target=self._serve, args=(c, cid), daemon=True).start()

    def _serve(self, c, cid):
        buf = bytearray()
        try:
            while not self.stop.is_set():
                while b"\r\n\r\n" not in buf:
                    b = c.recv(65536)
                    if not b:
                        return
                    buf += b
                i = buf.index(b"\r\n\r\n")
                head = bytes(buf[:i])
                del buf[:i + 4]
                line = head.split(b"\r\n")[0]
                with self.lock:
                    self.log.append((cid, line))
                parts = line.split(b" ")
                method = parts[0]
                name = parts[1].split(b"/")[-1].decode() if len(parts) == 3 else ""
                cl = 0
                for h in head.split(b"\r\n")[1:]:
                    k, _, v = h.partition(b":")
                    if k.strip().lower() == b"content-length":
                        cl = int(v)
                case = getattr(self, "case_" + name.replace("-", "_"), self.case_default)
                if not getattr(case, "reads_body", False):
                    while len(buf) < cl:
                        b = c.recv(65536)
                        if not b:
                            return
                        buf += b
                    del buf[:cl]
                if not case(c, method, buf, cl):
                    return
        except OSError:
            pass
        finally:
            with self.lock:
                self.socks.discard(c)
            c.close()

    # -- cases: (socket, method, bytes read past the head, request Content-Length)
    def case_default(self, c, method, buf, cl):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nfresh\n")
        return True

    def case_never(self, c, method, buf, cl):
        self.stop.wait(30)
        return False

    def _trickle(self, c, data, gap):
        for i in range(len(data)):
            if self.stop.wait(gap):
                return
            c.sendall(data[i:i + 1])

    def case_trickle(self, c, method, buf, cl):
        # The body at 1 byte/s: every gap is shorter than read_timeout, the whole body takes
        # longer than it.
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        self._trickle(c, b"abcde", 1.0)
        return True

    def case_trickle_head(self, c, method, buf, cl):
        # The end of the head at 1 byte/s, 5 s in all: no gap reaches read_timeout.
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        self._trickle(c, head[:5], 1.0)
        self._trickle(c, head[5:], 0.0)
        return False

    def case_trickle_stall(self, c, method, buf, cl):
        # 1 byte/s, then silence longer than read_timeout in the middle of the body.
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        self._trickle(c, b"ab", 1.0)
        self.stop.wait(READ_TIMEOUT * 2 + 2)
        return False

    def case_trickle_head_stall(self, c, method, buf, cl):
        # 1 byte/s of the status line, then silence: no head ever completes.
        self._trickle(c, b"HTTP/1.1", 1.0)
        self.stop.wait(READ_TIMEOUT * 2 + 2)
        return False

    def case_rst_length(self, c, method, buf, cl):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        time.sleep(0.2)
        set_rst(c)
        return False

    def case_rst_chunked(self, c, method, buf, cl):
        c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\npartial\r\n")
        time.sleep(0.2)
        set_rst(c)
        return False

    def _early_413(self, c, buf, cl):
        # Answer before reading the body.
        c.sendall(b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\n"
                  b"Content-Type: text/plain\r\nContent-Length: 9\r\n\r\ntoo large")

    def case_early_wait(self, c, method, buf, cl):
        """413 at once, then wait 0.3 s before closing with the body unread (a reset)."""
        self._early_413(c, buf, cl)
        time.sleep(0.3)
        return False
    case_early_wait.reads_body = True

    def case_early_linger(self, c, method, buf, cl):
        """413 at once, then read (and drop) what still comes for a while, then FIN."""
        self._early_413(c, buf, cl)
        c.shutdown(socket.SHUT_WR)
        got = len(buf)
        c.settimeout(0.5)
        deadline = time.monotonic() + 3
        try:
            while time.monotonic() < deadline:
                b = c.recv(65536)
                if not b:
                    break
                got += len(b)
        except OSError:
            pass
        with self.lock:
            self.early_drained.append(got)
        return False
    case_early_linger.reads_body = True

    def case_early_close(self, c, method, buf, cl):
        """413 at once, then close with the body unread: the kernel resets the connection."""
        self._early_413(c, buf, cl)
        return False
    case_early_close.reads_body = True

    def case_big_field(self, c, method, buf, cl):
        c.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * BIG_FIELD +
                  b"\r\nContent-Length: 2\r\n\r\nok")
        return True

    def case_big_head(self, c, method, buf, cl):
        # every field under the field limit (4 KiB), together over the head limit
        fields = b"".join(b"X-H%d: %s\r\n" % (i, b"h" * 4000) for i in range(20))
        c.sendall(b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 2\r\n\r\nok")
        return True

    def case_hints(self, c, method, buf, cl):
        c.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n")
        time.sleep(0.1)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Final: yes\r\n\r\nfinal\n")
        return True

    def case_head_cl(self, c, method, buf, cl):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-Head: yes\r\n\r\n")
        return True

    def case_head_stray(self, c, method, buf, cl):
        # a HEAD answered as if it were a GET: the "body" is a whole fake response
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(POISON) + POISON)
        return True

    def case_head_stray_late(self, c, method, buf, cl):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(POISON))
        time.sleep(0.3)
        c.sendall(POISON)
        return True

    def case_not_modified(self, c, method, buf, cl):
        c.sendall(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: %d\r\n\r\n"
                  % len(POISON) + POISON)
        return True

    def case_not_modified_late(self, c, method, buf, cl):
        c.sendall(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n")
        time.sleep(0.3)
        c.sendall(POISON)
        return True

    def case_overlong(self, c, method, buf, cl):
        # more bytes than Content-Length, in the same segment as the end of the body; the
        # body is long enough to be spliced
        n = 40000
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + b"x" * n + POISON)
        return True


# --------------------------------------------------------------------------
# the two proxies

def proxyd_config(bport):
    return """
workers = 1;
upstreams = { hostile = { keepalive = 8; servers = ( { address = "127.0.0.1:%(b)d"; } ); }; };
servers = (
  {
    name = "main";
    listen = [ "http" ];
    read_timeout = "%(rt)ds";
    connect_timeout = "2s";
    client_max_body_size = "0";
    locations = ( { prefix = "/"; proxy_pass = "http://hostile"; } );
  }
);
""" % {"b": bport, "rt": READ_TIMEOUT}


def nginx_config(tmp, port, bport):
    return nginx_config_text(tmp, """
  upstream hostile { server 127.0.0.1:%(b)d; keepalive 8; }
  server {
    listen 127.0.0.1:%(p)d;
    client_max_body_size 0;
    location / {
      proxy_pass http://hostile;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout %(rt)ds;
      proxy_connect_timeout 2s;
      proxy_next_upstream off;
    }
  }
""" % {"p": port, "b": bport, "rt": READ_TIMEOUT}, worker_connections=256)


class Nginx:
    def __init__(self, bport):
        self.tmp = tempfile.mkdtemp(prefix="proxyd-hostile-ngx-")
        self.port = free_port()
        self.proc = start_nginx(self.tmp, nginx_config(self.tmp, self.port, bport))
        self.up = wait_port(self.port, timeout=10, alive=lambda: self.proc.poll() is None)

    def error_log(self):
        try:
            with open(os.path.join(self.tmp, "error.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def close(self):
        stop_nginx(self.proc)
        shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# client side

def exchange(port, data, timeout=10.0, head=False):
    """Send raw bytes, read until close/timeout -> (responses, rest, closed, seconds)."""
    t0 = time.monotonic()
    s = connect(port, timeout=timeout)
    try:
        s.sendall(data)
        raw, closed = recv_until_close(s, timeout)
    finally:
        s.close()
    rs, rest = parse_responses(raw, head_request=head)
    return rs, rest, closed, time.monotonic() - t0, raw


def get(name, method=b"GET", extra=b""):
    return b"%s /r/%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n" % (
        method, name.encode(), extra)


def keepalive_pair(port, first_method, name):
    """`first_method /r/name` then `GET /r/next` on one client connection; both
    go to the same upstream (a reused connection where the proxy pools it).
    -> (raw bytes of the first response, raw bytes of the second, closed)."""
    s = connect(port, timeout=8)
    try:
        s.sendall(b"%s /r/%s HTTP/1.1\r\nHost: t\r\n\r\n" % (first_method, name.encode()))
        first = b""
        s.settimeout(1.0)
        # the first response has no body (HEAD/304): its head is all of it; wait a little
        # longer for anything that should not come
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                return first, b"", True
            first += b
        s.sendall(b"GET /r/next HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        second, closed = recv_until_close(s, 6)
        return first, second, closed
    finally:
        s.close()


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def wait_fds(pid, limit, timeout=5.0):
    deadline = time.monotonic() + timeout
    while fds(pid) > limit and time.monotonic() < deadline:
        time.sleep(0.1)
    return fds(pid)


def access(p, uri):
    """Access lines for uri; "reason" (unquoted, last) holds the rest of the line."""
    out = []
    lines = [ln for ln in p.log_text().splitlines() if "access: " in ln]
    for a, ln in zip(p.access_lines(), lines):
        if a.get("uri") == uri:
            i = ln.find(" reason=")
            a["reason"] = ln[i + 8:] if i >= 0 else ""
            out.append(a)
    return out


# --------------------------------------------------------------------------

def main():
    hp = Hostile()
    hn = Hostile()
    ngx = None
    try:
        ngx = Nginx(hn.port) if os.access(NGINX, os.X_OK) else None
        if not check(ngx is not None and ngx.up, "nginx oracle started"):
            ngx = None
        port = free_port()
        with Proxyd(proxyd_config(hp.port), sockets=[("127.0.0.1:%d" % port, "http")]) as p:
            run(p, port, hp, ngx, hn)
            check(p.alive(), "proxyd still running after every case")
    finally:
        if ngx:
            ngx.close()
        hp.close()
        hn.close()


def run(p, port, hp, ngx, hn):
    nport = ngx.port if ngx else None
    # warm up: one request so that the worker's lazily made resources exist
    rs, _, _, _, _ = exchange(port, get("warm"))
    check(rs and rs[0].status == 200, "warm-up request proxied", rs)
    base = fds(p.pid)

    for name, fn in CASES:
        log("--- %s" % name)
        hp.reset()
        hn.reset()
        t0 = time.monotonic()
        fn(p, port, hp, nport, hn)
        log("%s took %.1fs" % (name, time.monotonic() - t0))
        left = wait_fds(p.pid, base)
        check(left <= base, "%s: no descriptor left behind (%d, was %d)" % (name, left, base))


CASES = []


def case(fn):
    CASES.append((fn.__name__, fn))
    return fn


def both(nport, fn):
    """Run fn(nginx port) in a thread (None without nginx); .result() joins it."""
    class T:
        def __init__(self):
            self.value = None
            self.t = None
            if nport:
                self.t = threading.Thread(target=self._run, daemon=True)
                self.t.start()

        def _run(self):
            try:
                self.value = fn(nport)
            except Exception as e:  # noqa: BLE001 - the oracle's failure is only logged
                self.value = e

        def result(self):
            if self.t:
                self.t.join(60)
            return self.value
    return T()


def summarize(rs, closed, raw):
    if not rs:
        return "no response (%d bytes%s)" % (len(raw), ", closed" if closed else "")
    return "%s%s" % (", ".join("%d body=%r" % (r.status, r.body[:40]) for r in rs),
                     ", closed" if closed else "")


def oracle(ng, what, status=None, body=None):
    """Log what nginx answered (an exchange() result); with `status`, check it agrees."""
    n = ng.result()
    if not n or isinstance(n, Exception):
        return
    log("nginx: %s after %.1fs" % (summarize(n[0], n[2], n[4]), n[3]))
    if status is not None:
        check(n[0] and n[0][0].status == status and (body is None or n[0][0].body == body),
              "%s: nginx also answers %d%s" % (what, status, "" if body is None else " %r" % body),
              summarize(n[0], n[2], n[4]))


@case
def never_answers(p, port, hp, nport, hn):
    ng = both(nport, lambda np: exchange(np, get("never")))
    rs, _, closed, dt, raw = exchange(port, get("never"))
    check(rs and rs[0].status == 504, "never answers: 504", summarize(rs, closed, raw))
    check(READ_TIMEOUT - 0.2 <= dt <= READ_TIMEOUT + 5,
          "never answers: 504 after read_timeout = %ds (took %.1fs)" % (READ_TIMEOUT, dt))
    check(p.wait_log(r"upstream 127\.0\.0\.1:%d: read_timeout expired" % hp.port, 2),
          "never answers: journal line says read_timeout expired")
    a = access(p, "/r/never")
    check(a and a[-1].get("status") == "504" and "timed out" in a[-1].get("reason", ""),
          "never answers: access line status=504 with the reason", a)
    oracle(ng, "never answers", 504)


@case
def trickle(p, port, hp, nport, hn):
    # Body: each gap (1 s) is shorter than read_timeout, the whole body (5 s) longer: as in
    # nginx, read_timeout bounds the silence between two reads of the body.
    ng = both(nport, lambda np: exchange(np, get("trickle"), timeout=15))
    rs, _, closed, dt, raw = exchange(port, get("trickle"), timeout=15)
    check(rs and rs[0].status == 200 and rs[0].body == b"abcde",
          "body at 1 byte/s: the whole response arrives", summarize(rs, closed, raw))
    check(dt > READ_TIMEOUT + 2, "body at 1 byte/s: it took longer than read_timeout (%.1fs)" % dt)
    oracle(ng, "body at 1 byte/s", 200, b"abcde")

    # Head: as in nginx, read_timeout bounds the whole response head, so a server that
    # trickles it cannot hold the client for longer (32 KiB at 1 byte/s would be 9 hours).
    ng = both(nport, lambda np: exchange(np, get("trickle-head"), timeout=15))
    rs, _, closed, dt, raw = exchange(port, get("trickle-head"), timeout=15)
    check(rs and rs[0].status == 504 and dt < READ_TIMEOUT + 2.5,
          "head at 1 byte/s, no gap as long as read_timeout: 504 after read_timeout (%.1fs)" % dt,
          summarize(rs, closed, raw))
    a = access(p, "/r/trickle-head")
    check(a and a[-1].get("status") == "504" and "timed out" in a[-1].get("reason", ""),
          "head at 1 byte/s: access line status=504, timed out", a)
    oracle(ng, "head at 1 byte/s", 504)

    ng = both(nport, lambda np: exchange(np, get("trickle-stall"), timeout=15))
    rs, rest, closed, dt, raw = exchange(port, get("trickle-stall"), timeout=15)
    check(rs and rs[0].status == 200 and rs[0].body == b"ab" and closed,
          "trickle, then silence mid-body: 200 head, 2 of 10 bytes, connection closed",
          summarize(rs, closed, raw))
    check(dt < 2 + READ_TIMEOUT + 5, "trickle then silence: closed after read_timeout (%.1fs)" % dt)
    a = access(p, "/r/trickle-stall")
    check(a and a[-1].get("status") == "200" and "timed out" in a[-1].get("reason", ""),
          "trickle then silence: access line keeps status=200 and says it timed out", a)
    oracle(ng, "")

    ng = both(nport, lambda np: exchange(np, get("trickle-head-stall"), timeout=15))
    rs, _, closed, dt, raw = exchange(port, get("trickle-head-stall"), timeout=15)
    check(rs and rs[0].status == 504, "1 byte/s of a status line, then silence: 504",
          summarize(rs, closed, raw))
    oracle(ng, "")


@case
def reset_mid_body(p, port, hp, nport, hn):
    for name, framing in (("rst-length", "Content-Length"), ("rst-chunked", "chunked")):
        ng = both(nport, lambda np: exchange(np, get(name)))
        rs, rest, closed, dt, raw = exchange(port, get(name))
        check(rs and rs[0].status == 200 and rs[0].body == b"partial" and closed,
              "%s: RST mid-body: 200 head, the 7 bytes, then the connection closes" % framing,
              summarize(rs, closed, raw))
        if framing == "chunked":
            check(raw.startswith(b"HTTP/1.1 200") and not raw.endswith(b"0\r\n\r\n"),
                  "chunked: RST mid-body: no last-chunk reaches the client", raw[-40:])
        else:
            check(rs and rs[0].header("Content-Length") == "100",
                  "Content-Length: RST mid-body: the client sees 7 of 100 bytes", rs)
        a = access(p, "/r/" + name)
        check(a and a[-1].get("status") == "200" and
              "prematurely closed" in a[-1].get("reason", ""),
              "%s: access line says the upstream closed prematurely" % framing, a)
        oracle(ng, framing)
    # the next request cannot go over the reset connection: it works, on a new one
    conns = hp.conns
    rs, _, closed, dt, raw = exchange(port, get("after-rst"))
    check(rs and rs[0].status == 200 and rs[0].body == b"fresh\n" and hp.conns > conns,
          "after the resets: the next request is served over a new upstream connection",
          (summarize(rs, closed, raw), conns, hp.conns))


def upload(port, name, size=UPLOAD, timeout=15.0):
    """POST `size` bytes with Content-Length, reading the response while sending (as
    curl does). -> (responses, closed, bytes sent, error text)."""
    s = connect(port, timeout=timeout)
    sent = [0]
    err = [None]

    def sender():
        chunk = b"u" * 65536
        try:
            s.sendall(b"POST /r/%s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                      % (name.encode(), size))
            while sent[0] < size:
                k = s.send(chunk[:min(len(chunk), size - sent[0])])
                sent[0] += k
        except OSError as e:
            err[0] = "%s" % e

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    raw, closed = b"", False
    deadline = time.monotonic() + timeout
    try:
        # until the peer closes, or 2 s after a whole response (a proxy that keeps the
        # connection open discards the rest of the body first)
        while not closed and time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            closed = not b
            raw += b
            if parse_responses(raw)[0]:
                deadline = min(deadline, time.monotonic() + 2)
    except OSError as e:
        closed = True
        err[0] = (err[0] or "") + " recv: %s" % e
    t.join(timeout)
    s.close()
    rs, _ = parse_responses(raw)
    return rs, closed, sent[0], err[0], raw


@case
def early_response(p, port, hp, nport, hn):
    for name in ("early-linger", "early-wait", "early-close"):
        ng = both(nport, lambda np: upload(np, name))
        rs, closed, sent, err, raw = upload(port, name)
        check(rs and rs[0].status == 413 and rs[0].body == b"too large",
              "%s: 413 before the upload ends reaches the client (not a 502)" % name,
              (summarize(rs, closed, raw), sent, err))
        check(closed, "%s: the client connection is closed after the 413" % name)
        a = access(p, "/r/" + name)
        check(a and a[-1].get("status") == "413", "%s: access line says 413" % name, a)
        n = ng.result()
        if n and not isinstance(n, Exception):
            log("nginx: %s, %d bytes sent, %s" % (summarize(n[0], n[1], n[4]), n[2], n[3]))
            # nginx reads the whole body before it sends the request (request buffering),
            # and when the server has reset the connection by then, answers 502 itself
            if name != "early-close":
                check(n[0] and n[0][0].status == 413, "%s: nginx also relays the 413" % name,
                      summarize(n[0], n[1], n[4]))
    # a client that reads only after it has sent everything (or failed to)
    s = connect(port, timeout=15)
    try:
        s.sendall(b"POST /r/early-close HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % UPLOAD)
        sent = 0
        try:
            while sent < UPLOAD:
                sent += s.send(b"s" * min(65536, UPLOAD - sent))
        except OSError as e:
            log("sequential uploader: send failed after %d bytes: %s" % (sent, e))
        try:
            raw, closed = recv_until_close(s, 10)
        except OSError as e:
            raw, closed = b"", True
            log("sequential uploader: recv failed: %s" % e)
    finally:
        s.close()
    rs, _ = parse_responses(raw)
    check(rs and rs[0].status == 413,
          "early-close, a client that reads only after sending: it still reads the 413",
          (summarize(rs, closed, raw), sent))

    # curl, the common uploader, sees the same
    tmpf = tempfile.NamedTemporaryFile(prefix="proxyd-upload-", delete=False)
    try:
        tmpf.write(b"c" * UPLOAD)
        tmpf.close()
        r = subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", "15", "-H", "Expect:",
                            "-o", "-", "-w", "\n%{http_code}", "--data-binary", "@" + tmpf.name,
                            "http://127.0.0.1:%d/r/early-close" % port],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=25)
        out = r.stdout.decode("latin-1")
        check(out.endswith("\n413") and out.startswith("too large"),
              "curl uploading 8 MiB to an early 413: gets the 413", (out[-200:], r.stderr[-300:]))
    finally:
        os.unlink(tmpf.name)


@case
def oversized_head(p, port, hp, nport, hn):
    for name, why in (("big-field", "64 KiB header field"), ("big-head", "80 KB response head")):
        ng = both(nport, lambda np: exchange(np, get(name)))
        rs, _, closed, dt, raw = exchange(port, get(name))
        check(rs and rs[0].status == 502 and b"bbbb" not in raw and b"hhhh" not in raw,
              "%s: 502, nothing of the upstream head relayed" % why, summarize(rs, closed, raw))
        check(p.wait_log(r"upstream 127\.0\.0\.1:%d sent an invalid response: [^\n]*too" % hp.port, 2),
              "%s: journal line names the reason" % why)
        a = access(p, "/r/" + name)
        check(a and a[-1].get("status") == "502" and a[-1].get("reason"),
              "%s: access line status=502 with a reason" % why, a)
        oracle(ng, why, 502)


@case
def early_hints(p, port, hp, nport, hn):
    ng = both(nport, lambda np: exchange(np, get("hints")))
    rs, rest, closed, dt, raw = exchange(port, get("hints"))
    check(len(rs) == 2 and rs[0].status == 103 and rs[1].status == 200 and rs[1].body == b"final\n" and
          rs[1].header("X-Final") == "yes" and not rest,
          "103 then 200: the client gets the 103, then the final 200", summarize(rs, closed, raw))
    check(raw.startswith(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n"
                         b"HTTP/1.1 200 "),
          "the 103 is passed on whole, with its Link field (RFC 9110 15.2)", raw[:200])
    rs0, rest0, closed0, dt0, raw0 = exchange(port, b"GET /r/hints HTTP/1.0\r\nHost: t\r\n\r\n")
    check(len(rs0) == 1 and rs0[0].status == 200 and b" 103 " not in raw0 and b"Link:" not in raw0,
          "an HTTP/1.0 client gets no 103, only the final 200", raw0[:200])
    a = access(p, "/r/hints")
    check(a and a[-1].get("status") == "200", "103 then 200: access line says 200", a)
    n = ng.result()
    if n and not isinstance(n, Exception):
        # nginx 1.22 takes the 103 for the final response: it relays it with
        # "Connection: close" and never sends the 200
        log("nginx: %s, 103 relayed: %s" % (summarize(n[0], n[2], n[4]), b" 103 " in n[4]))


def no_poison(p, port, hp, nport, hn, method, name, what):
    ng = both(nport, lambda np: keepalive_pair(np, method, name))
    first, second, closed = keepalive_pair(port, method, name)
    rs1, rest1 = parse_responses(first, head_request=True)
    want = 304 if method == b"GET" else 200
    check(len(rs1) == 1 and rs1[0].status == want and rest1 == b"",
          "%s: the client gets the %d head and not a byte more" % (what, want), first[:300])
    rs2, rest2 = parse_responses(second)
    check(len(rs2) == 1 and rs2[0].status == 200 and rs2[0].body == b"fresh\n" and
          b"POISON" not in second,
          "%s: the next request gets its own response, not the stray bytes" % what, second[:300])
    lines = hp.lines()
    check(len(lines) == 2 and lines[1][1].startswith(b"GET /r/next"),
          "%s: the backend saw both requests" % what, lines)
    n = ng.result()
    if n and not isinstance(n, Exception):
        nrs1, nrest1 = parse_responses(n[0], head_request=True)
        nrs2, _ = parse_responses(n[1])
        log("nginx: first %s (+%d stray bytes), second %s, upstream connections %s" % (
            summarize(nrs1, False, n[0]), len(nrest1), summarize(nrs2, n[2], n[1]),
            [c for c, _ in hn.lines()]))
        check(b"POISON" not in n[1], "%s: nginx does not relay the stray bytes" % what)


@case
def head_response(p, port, hp, nport, hn):
    no_poison(p, port, hp, nport, hn, b"HEAD", "head-cl", "HEAD with Content-Length: 1234")
    rs, _, closed, dt, raw = exchange(port, get("head-cl", b"HEAD"), head=True)
    check(rs and rs[0].header("Content-Length") == "1234" and raw.endswith(b"\r\n\r\n"),
          "HEAD: Content-Length is relayed as the upstream sent it, no body", raw[:300])
    for name in ("head-stray", "head-stray-late"):
        hp.reset()
        hn.reset()
        no_poison(p, port, hp, nport, hn, b"HEAD", name, "HEAD answered with a body (%s)" % name)


@case
def not_modified(p, port, hp, nport, hn):
    for name in ("not-modified", "not-modified-late"):
        hp.reset()
        hn.reset()
        no_poison(p, port, hp, nport, hn, b"GET", name, "304 with stray bytes (%s)" % name)


@case
def overlong_body(p, port, hp, nport, hn):
    # bytes past the end of a (spliced) Content-Length body
    s = connect(port, timeout=8)
    try:
        s.sendall(b"GET /r/overlong HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        s.settimeout(5)
        while True:
            rs, rest = parse_responses(data)
            if rs and len(rs[0].body) == 40000:
                break
            b = s.recv(65536)
            if not b:
                break
            data += b
        time.sleep(0.3)
        s.sendall(b"GET /r/next HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        second, closed = recv_until_close(s, 6)
    finally:
        s.close()
    check(rs and rs[0].status == 200 and rs[0].body == b"x" * 40000 and b"POISON" not in data,
          "bytes after a 40000-byte body: the client gets exactly the body", data[-100:])
    rs2, _ = parse_responses(second)
    check(rs2 and rs2[0].body == b"fresh\n" and b"POISON" not in second,
          "bytes after a Content-Length body never become the next response", second[:300])


if __name__ == "__main__":
    log("test_hostile_upstreams: proxyd=%s" % os.environ.get("PROXYD"))
    run_main(main)
