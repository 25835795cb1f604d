#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Soak: no mixing and no leaks, bounded in time (SOAK_SECONDS of load) and count.

Two recording backends echo a unique marker from every request (the X-Marker
header and the request path) in their response. Backend A serves only good
responses; backend B also answers `GET /r/<id>` with the broken bytes of the
upstream rows of test_http_strict.py (plus a response followed by extra bytes
and unsolicited bytes on an idle keep-alive connection). Both are named
upstreams with a keep-alive pool, so broken and good exchanges share pooled
upstream connections. The unsolicited-bytes row alone uses its own backend
(a third instance, so its own pool: proxyd pools by address), strictly
sequentially: bytes that arrive after a pooled connection was handed
to a new request cannot be told apart from that request's response.

While the load runs:
  - WELL_BEHAVED keep-alive clients (threads) send GET, POST and pipelined
    pairs with unique markers to both backends and check that every response
    carries their own marker;
  - MALFORMED threads replay every client row of test_http_strict.py's table
    (imported; up to MALFORMED_ROUNDS times each) and check that every one is
    answered with an error status (or closed, where the row allows it), never 2xx;
  - BROKEN_UP threads replay the upstream rows against backend B, check the
    status each row must give, and on a connection proxyd keeps open send a
    follow-up request that must get its own marker back;
  - an ABORT thread starts large downloads and half-sent POSTs and closes the
    connection early.

Afterwards: zero mismatched markers, every well-behaved request answered 200;
proxyd's fd count returns to its baseline once the upstream keep-alive timeout
(2s) has expired (the idle pooled upstream connections left right after the load
are counted and printed, then must be gone); RSS within +8 MiB of its value
after warm-up; no CLOSE-WAIT socket among proxyd's fds (/proc/net/tcp{,6}
matched by socket inode)."""

import collections
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, Proxyd, Reply, check, free_port, log,  # noqa: E402
                     run_main)
from test_http_strict import RAW as STRICT_RAW  # noqa: E402
from test_http_strict import REJECT, UPSTREAM_ROWS  # noqa: E402

SOAK_SECONDS = 30.0
WELL_BEHAVED = 12
MALFORMED = 4
BROKEN_UP = 2
MALFORMED_ROUNDS = 100  # per malformed thread: each round replays every client row
RSS_SLACK_KIB = 8 * 1024
UP_KEEPALIVE_TIMEOUT = 2.0

EVIL = b"EVIL-SMUGGLED"
RAW = dict(STRICT_RAW)
# extra bytes after a complete response on a keep-alive upstream connection
RAW["X01"] = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
              b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n" + EVIL, None)
# a complete response, then unsolicited bytes on the idle connection (see later)
RAW["X02"] = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", None)
LATER = {"X02": b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n" + EVIL}
ROWS = list(UPSTREAM_ROWS) + [("X01", 200, False), ("X02", 200, False)]

BIG = b"B" * (1 << 20)

CONFIG = """
workers = 2;
log_level = "warning";
access_log = false;
upstreams = {
  good = {
    keepalive = 8; keepalive_timeout = "%(ukt)s";
    servers = ( { address = "127.0.0.1:%(aport)d"; } );
  };
  broken = {
    keepalive = 8; keepalive_timeout = "%(ukt)s";
    servers = ( { address = "127.0.0.1:%(bport)d"; } );
  };
  unsolicited = {
    keepalive = 8; keepalive_timeout = "%(ukt)s";
    servers = ( { address = "127.0.0.1:%(cport)d"; } );
  };
};
servers = (
  {
    name = "main";
    listen = [ "http" ];
    client_header_timeout = "2s";
    keepalive_timeout = "5s";
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
    locations = (
      { prefix = "/"; proxy_pass = "http://good"; },
      { prefix = "/b/"; proxy_pass = "http://broken"; },
      { prefix = "/r/"; read_timeout = "1s"; proxy_pass = "http://broken"; },
      { prefix = "/x/"; proxy_pass = "http://unsolicited/"; }
    );
  }
);
"""


# --------------------------------------------------------------------------
# backends

def marker_reply(req, tag):
    m = req.header("X-Marker") or "-"
    if req.target.endswith("/big"):
        return Reply(200, [("X-Marker-Echo", m)], BIG)
    body = ("%s marker=%s target=%s len=%d\n" % (tag, m, req.target, req.body_len)).encode()
    return Reply(200, [("X-Marker-Echo", m), ("Content-Type", "text/plain")], body)


def good_handler(req):
    return marker_reply(req, "A")


class BrokenBackend(Backend):
    """Answers /r/<id> with RAW[id]; rows in LATER also get unsolicited bytes
    on the connection 0.2 s after the response. Everything else: marker echo."""

    def _send(self, c, req, r):
        keep = super()._send(c, req, r)
        later = getattr(r, "later", None)
        if later is not None and keep:
            self._stop.wait(0.2)
            try:
                c.sendall(later)
            except OSError:
                return False
        return keep


def broken_handler(req):
    t = req.target
    if t.startswith("/r/") and t[3:] in RAW:
        raw, after = RAW[t[3:]]
        r = Reply(raw=raw, after=after)
        r.later = LATER.get(t[3:])
        return r
    return marker_reply(req, "B")


# --------------------------------------------------------------------------
# a small blocking HTTP/1.1 response reader for keep-alive client sockets

class Closed(Exception):
    pass


class Conn:
    def __init__(self, port, timeout=5.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.closed = False
        self.last_status = None  # status of the last response head, even if truncated

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        try:
            b = self.s.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            b = b""
        if not b:
            self.closed = True
            raise Closed()
        self.buf += b

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        ln, _, self.buf = self.buf.partition(b"\r\n")
        return ln

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        b, self.buf = self.buf[:n], self.buf[n:]
        return b

    def response(self, head_only=False):
        """-> (status, {lower name: value}, body). Raises Closed on EOF
        before a complete response, socket.timeout on timeout."""
        while True:
            while b"\r\n\r\n" not in self.buf:
                self._fill()
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                raise ValueError("bad status line %r" % lines[0][:80])
            status = int(parts[1])
            h = {}
            for ln in lines[1:]:
                k, _, v = ln.partition(b":")
                h[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
            if 100 <= status < 200:
                continue
            break
        self.last_status = status
        if head_only or status in (204, 304):
            return status, h, b""
        if "chunked" in h.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line() != b"":
                        pass
                    break
                body += self._exact(size)
                if self._line() != b"":
                    raise ValueError("bad chunk end")
            return status, h, body
        if "content-length" in h:
            return status, h, self._exact(int(h["content-length"]))
        body = self.buf
        self.buf = b""
        try:
            while True:
                self._fill()
        except Closed:
            pass
        body += self.buf
        self.buf = b""
        return status, h, body


# --------------------------------------------------------------------------
# observation of proxyd

def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def socket_inodes(pid):
    out = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if t.startswith("socket:["):
                out.add(t[8:-1])
    except OSError:
        pass
    return out


TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
              "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
              "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def tcp_sockets(pid):
    """proxyd's TCP sockets: list of (state name, local port, remote port)."""
    inodes = socket_inodes(pid)
    out = []
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(f) as fh:
                next(fh)
                for ln in fh:
                    p = ln.split()
                    if len(p) > 9 and p[9] in inodes:
                        lport = int(p[1].rsplit(":", 1)[1], 16)
                        rport = int(p[2].rsplit(":", 1)[1], 16)
                        out.append((TCP_STATES.get(p[3], p[3]), lport, rport))
        except OSError:
            pass
    return out


def upstream_conns(pid, ports):
    return sum(1 for st, _, rp in tcp_sockets(pid) if rp in ports and st == "ESTABLISHED")


def close_wait(pid):
    return [x for x in tcp_sockets(pid) if x[0] == "CLOSE_WAIT"]


# --------------------------------------------------------------------------
# load

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = collections.Counter()
        self.problems = collections.defaultdict(list)

    def add(self, key, n=1):
        with self.lock:
            self.c[key] += n

    def problem(self, key, detail):
        with self.lock:
            self.c[key] += 1
            if len(self.problems[key]) < 5:
                self.problems[key].append(detail)


def well_behaved(idx, port, stop, st):
    conn = None
    n = 0
    try:
        while not stop.is_set():
            if conn is None:
                conn = Conn(port)
            n += 1
            prefix = "/b/" if n % 3 == 0 else "/"
            kind = n % 4
            try:
                if kind == 3:
                    # pipelined pair
                    ms = ["w%d-%d-%s" % (idx, n, s) for s in ("p1", "p2")]
                    conn.send(b"".join(
                        ("GET %sm/%s HTTP/1.1\r\nHost: soak\r\nX-Marker: %s\r\n\r\n"
                         % (prefix, m, m)).encode() for m in ms))
                    expect = [(m, "%sm/%s" % (prefix, m), 0) for m in ms]
                elif kind == 2:
                    m = "w%d-%d-post" % (idx, n)
                    body = ("body-of-%s" % m).encode()
                    conn.send(("POST %sm/%s HTTP/1.1\r\nHost: soak\r\nX-Marker: %s\r\n"
                               "Content-Length: %d\r\n\r\n" % (prefix, m, m, len(body))).encode()
                              + body)
                    expect = [(m, "%sm/%s" % (prefix, m), len(body))]
                else:
                    m = "w%d-%d-get" % (idx, n)
                    conn.send(("GET %sm/%s?q=%d HTTP/1.1\r\nHost: soak\r\nX-Marker: %s\r\n\r\n"
                               % (prefix, m, n, m)).encode())
                    expect = [(m, "%sm/%s?q=%d" % (prefix, m, n), 0)]
                for m, target, blen in expect:
                    st.add("requests")
                    status, h, body = conn.response()
                    tag = "B" if prefix == "/b/" else "A"
                    want = ("%s marker=%s target=%s len=%d\n" % (tag, m, target, blen)).encode()
                    if status != 200:
                        st.problem("failed", (m, status, body[:100]))
                    elif body != want or h.get("x-marker-echo") != m:
                        st.problem("mismatch", (m, body[:120], h.get("x-marker-echo")))
                    else:
                        st.add("ok")
                    if EVIL in body:
                        st.problem("smuggled", (m, body[:120]))
            except (Closed, OSError, ValueError) as e:
                st.problem("failed", (idx, n, repr(e)))
                conn.close()
                conn = None
            if n % 50 == 0 and conn is not None:
                # a fresh client connection now and then
                conn.close()
                conn = None
    finally:
        if conn is not None:
            conn.close()


def malformed(idx, port, stop, st):
    i = idx
    while not stop.is_set() and i < idx + MALFORMED_ROUNDS * len(REJECT):
        rid, what, raw, want = REJECT[i % len(REJECT)]
        i += 1
        time.sleep(0.004)  # spread the replays over the soak
        try:
            c = Conn(port, timeout=4)
        except OSError as e:
            st.problem("malformed_connect", repr(e))
            continue
        try:
            try:
                c.send(raw)
            except OSError:
                pass
            try:
                status, _, body = c.response()
            except Closed:
                status, body = None, b""
            except (socket.timeout, OSError, ValueError) as e:
                status, body = "err:%r" % e, b""
            st.add("malformed")
            if isinstance(status, int) and 200 <= status < 300:
                st.problem("malformed_2xx", (rid, status, body[:80]))
            elif status is None and "close" not in want:
                st.problem("malformed_silent", rid)
            elif isinstance(status, str):
                st.problem("malformed_error", (rid, status))
            if EVIL in body:
                st.problem("smuggled", (rid, body[:120]))
        finally:
            c.close()


def broken_upstream(idx, port, stop, st):
    i = idx
    n = 0
    while not stop.is_set():
        rid, want, must_close = ROWS[i % len(ROWS)]
        i += 1
        if rid == "R17" and (i // len(ROWS)) % 4:
            continue  # the 1 s timeout row only every 4th round
        if rid == "X02" and idx != 0:
            continue  # one thread only: its own upstream pool, strictly sequential
        # X02 goes to its own backend and pool (/x/): unsolicited bytes that arrive
        # after the pool handed the connection to a new request cannot be told apart
        # from its response by any HTTP/1.1 client, so nothing else may share it
        loc, fprefix, seen = ((b"/x/r/", "/x/", "/") if rid == "X02"
                              else (b"/r/", "/b/", "/b/"))
        try:
            c = Conn(port, timeout=5)
        except OSError as e:
            st.problem("broken_connect", repr(e))
            continue
        try:
            c.send(b"GET %s%s HTTP/1.1\r\nHost: soak\r\n\r\n" % (loc, rid.encode()))
            h = {}
            try:
                status, h, body = c.response()
            except Closed:
                # a truncated body (R18, R20) still counts by its status line
                status, body = c.last_status, b""
            except (socket.timeout, OSError, ValueError) as e:
                status, body = "err:%r" % e, b""
            st.add("broken")
            if status != want:
                st.problem("broken_status", (rid, status, want))
            if EVIL in body:
                st.problem("smuggled", (rid, body[:120]))
            if must_close or c.closed or status != want or rid in ("R18", "R20") \
                    or "close" in h.get("connection", "").lower():
                continue
            if rid == "X02":
                time.sleep(0.5)  # the unsolicited bytes are on the idle pooled connection now
            # the client connection is still usable: a follow-up gets its own marker
            n += 1
            m = "u%d-%d-%s" % (idx, n, rid)
            try:
                c.send(("GET %sm/%s HTTP/1.1\r\nHost: soak\r\nX-Marker: %s\r\n\r\n"
                        % (fprefix, m, m)).encode())
                status2, h2, body2 = c.response()
            except (Closed, socket.timeout, OSError, ValueError) as e:
                status2, body2 = "err:%r" % e, b""
            st.add("followups")
            st.add("requests")
            want2 = ("B marker=%s target=%sm/%s len=0\n" % (m, seen, m)).encode()
            if status2 != 200:
                st.problem("failed", (m, status2, body2[:100]))
            elif body2 != want2:
                st.problem("mismatch", (m, body2[:120]))
            else:
                st.add("ok")
        finally:
            c.close()


def aborter(port, stop, st):
    n = 0
    while not stop.is_set():
        n += 1
        try:
            c = Conn(port, timeout=4)
        except OSError as e:
            st.problem("abort_connect", repr(e))
            continue
        try:
            if n % 2:
                # start a 1 MiB download, read the head only, close
                prefix = "/b/" if n % 4 == 1 else "/"
                c.send(("GET %sm/big HTTP/1.1\r\nHost: soak\r\nX-Marker: abort-%d\r\n\r\n"
                        % (prefix, n)).encode())
                try:
                    c.response(head_only=True)
                except (Closed, socket.timeout, OSError, ValueError):
                    pass
            else:
                # a POST that announces 100 bytes and sends 10
                c.send(b"POST /m/halfpost HTTP/1.1\r\nHost: soak\r\nContent-Length: 100\r\n\r\n"
                       b"0123456789")
                time.sleep(0.05)
            st.add("aborts")
        except OSError:
            pass
        finally:
            c.close()
        time.sleep(0.02)


def drive(port, st, seconds, wb=WELL_BEHAVED, mal=MALFORMED, bro=BROKEN_UP, abort=True):
    stop = threading.Event()
    ths = []
    for i in range(wb):
        ths.append(threading.Thread(target=well_behaved, args=(i, port, stop, st), daemon=True))
    for i in range(mal):
        ths.append(threading.Thread(target=malformed, args=(i * 11, port, stop, st), daemon=True))
    for i in range(bro):
        ths.append(threading.Thread(target=broken_upstream, args=(i * 7, port, stop, st),
                                    daemon=True))
    if abort:
        ths.append(threading.Thread(target=aborter, args=(port, stop, st), daemon=True))
    try:
        for t in ths:
            t.start()
        stop.wait(seconds)
    finally:
        stop.set()
        for t in ths:
            t.join(15)
    return sum(1 for t in ths if t.is_alive())


class Sampler:
    def __init__(self, p):
        self.p = p
        self.peak_rss = 0
        self.peak_fds = 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop.is_set():
            r = self.p.rss_kib() or 0
            f = fd_count(self.p.pid)
            self.peak_rss = max(self.peak_rss, r)
            self.peak_fds = max(self.peak_fds, f)
            self.stop.wait(0.2)

    def close(self):
        self.stop.set()
        self.t.join(2)


def wait_quiet(pid, base_fds, ports, timeout):
    deadline = time.monotonic() + timeout
    while True:
        n = fd_count(pid)
        if n <= base_fds and upstream_conns(pid, ports) == 0 and not close_wait(pid):
            return n
        if time.monotonic() > deadline:
            return n
        time.sleep(0.2)


def main():
    t_start = time.monotonic()
    a = Backend(good_handler)
    b = BrokenBackend(broken_handler)
    x = BrokenBackend(broken_handler)
    try:
        port = free_port()
        conf = CONFIG % {"aport": a.port, "bport": b.port, "cport": x.port,
                         "ukt": "%ds" % UP_KEEPALIVE_TIMEOUT}
        ports = {a.port, b.port, x.port}
        with Proxyd(conf, sockets=[("127.0.0.1:%d" % port, "http")]) as p:
            pid = p.pid
            # warm-up: every kind of traffic for a short while
            wst = Stats()
            drive(port, wst, 3.0, wb=4, mal=1, bro=1)
            check(wst.c["mismatch"] == 0 and wst.c["failed"] == 0,
                  "warm-up: %d requests, no mismatch, no failure" % wst.c["requests"],
                  dict(wst.problems))
            base_fds = wait_quiet(pid, 10 ** 6, ports, 0)
            base_fds = wait_quiet(pid, 0, ports, UP_KEEPALIVE_TIMEOUT + 2.0)
            base_rss = p.rss_kib()
            base_pool = upstream_conns(pid, ports)
            log("baseline after warm-up and upstream keepalive_timeout: fds %d, RSS %d KiB, "
                "pooled upstream conns %d" % (base_fds, base_rss, base_pool))

            sampler = Sampler(p)
            st = Stats()
            t0 = time.monotonic()
            try:
                left = drive(port, st, SOAK_SECONDS)
            finally:
                sampler.close()
            dur = time.monotonic() - t0
            check(left == 0, "all load threads stopped (%d left)" % left)
            pooled_after_load = upstream_conns(pid, ports)
            fds_after_load = fd_count(pid)
            c = st.c
            log("soak %.1fs: %d well-behaved requests (%d ok, %d follow-ups on kept "
                "connections), %d malformed client cases replayed (%d rows), %d broken-upstream "
                "exchanges (%d rows), %d aborted exchanges"
                % (dur, c["requests"], c["ok"], c["followups"], c["malformed"], len(REJECT),
                   c["broken"], len(ROWS), c["aborts"]))
            log("right after the load: fds %d, idle pooled upstream connections %d"
                % (fds_after_load, pooled_after_load))

            check(c["requests"] >= 1000, "soak ran %d well-behaved requests (>= 1000)"
                  % c["requests"])
            check(c["mismatch"] == 0, "zero mismatched markers (%d)" % c["mismatch"],
                  st.problems.get("mismatch"))
            check(c["smuggled"] == 0, "no smuggled upstream bytes reached any client (%d)"
                  % c["smuggled"], st.problems.get("smuggled"))
            check(c["failed"] == 0 and c["ok"] == c["requests"],
                  "every well-behaved request got its 200 (%d/%d, %d failed)"
                  % (c["ok"], c["requests"], c["failed"]), st.problems.get("failed"))
            check(c["malformed"] >= 2 * len(REJECT),
                  "every malformed client row replayed many times (%d replays of %d rows)"
                  % (c["malformed"], len(REJECT)))
            check(c["malformed_2xx"] == 0, "no malformed client request answered 2xx (%d)"
                  % c["malformed_2xx"], st.problems.get("malformed_2xx"))
            check(c["malformed_silent"] == 0 and c["malformed_error"] == 0,
                  "every malformed client request answered with an error status "
                  "(silent %d, timeouts/errors %d)" % (c["malformed_silent"], c["malformed_error"]),
                  [st.problems.get("malformed_silent"), st.problems.get("malformed_error")])
            check(c["broken"] >= 2 * len(ROWS),
                  "every broken-upstream row replayed many times (%d replays of %d rows)"
                  % (c["broken"], len(ROWS)))
            check(c["broken_status"] == 0, "broken-upstream rows gave their status every time "
                  "(%d wrong)" % c["broken_status"], st.problems.get("broken_status"))
            check(c["aborts"] >= 50, "client aborts mid-exchange (%d)" % c["aborts"])

            # after: pooled upstream connections expire after keepalive_timeout = 2s
            after_fds = wait_quiet(pid, base_fds, ports, UP_KEEPALIVE_TIMEOUT + 10.0)
            after_pool = upstream_conns(pid, ports)
            cw = close_wait(pid)
            after_rss = p.rss_kib()
            log("fds: baseline %d, peak %d, after load %d, after upstream keepalive_timeout %d"
                % (base_fds, sampler.peak_fds, fds_after_load, after_fds))
            log("RSS KiB: baseline %d, peak %d, after %d (delta %+d)"
                % (base_rss, sampler.peak_rss, after_rss, after_rss - base_rss))
            check(after_fds <= base_fds, "proxyd's fd count returns to its baseline (%d -> %d)"
                  % (base_fds, after_fds), tcp_sockets(pid))
            check(after_pool == 0, "idle pooled upstream connections closed after "
                  "keepalive_timeout (%d left, %d right after the load)"
                  % (after_pool, pooled_after_load))
            check(not cw, "no CLOSE-WAIT socket left in proxyd (%d)" % len(cw), cw)
            if os.environ.get("PROXYD_SANITIZED"):
                # AddressSanitizer keeps freed memory in quarantine: RSS says nothing there.
                log("RSS check not made: sanitizer build")
            else:
                check(after_rss <= base_rss + RSS_SLACK_KIB,
                      "RSS back near baseline: %d KiB after, baseline %d KiB (+%d KiB allowed)"
                      % (after_rss, base_rss, RSS_SLACK_KIB))

            # still serving normally
            conn = Conn(port)
            try:
                conn.send(b"GET /m/final HTTP/1.1\r\nHost: soak\r\nX-Marker: final\r\n"
                          b"Connection: close\r\n\r\n")
                status, _, body = conn.response()
            finally:
                conn.close()
            check(status == 200 and body == b"A marker=final target=/m/final len=0\n",
                  "proxyd still answers normally after the soak", (status, body))
            check(p.alive(), "proxyd still running")
    finally:
        x.close()
        b.close()
        a.close()
    log("whole test took %.1fs" % (time.monotonic() - t_start))


if __name__ == "__main__":
    log("test_soak: proxyd=%s" % os.environ.get("PROXYD"))
    run_main(main)
