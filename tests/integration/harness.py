# SPDX-License-Identifier: MIT
"""Shared helpers for proxyd's integration tests.

Everything here uses loopback only (127.0.0.1, ::1 and unix sockets in temp
dirs), is bounded in time, and cleans up the processes and directories it made.

  check()/summary()      print "ok - ..." / "FAIL - ..." and the final count
  free_port()            a currently unused loopback TCP port
  Proxyd                 runs the proxyd binary (socket-activated or standalone)
  Backend                a recording HTTP/1.1 backend (keep-alive, CL and chunked,
                         streaming bodies), TCP or unix socket
  NeverAnswerBackend     accepts and reads, never answers
  ClosingBackend         accepts and closes at once (after reading the head)
  raw_exchange()         send raw bytes, read until close or timeout
  parse_responses()      split a byte stream into HTTP/1.1 responses
  curl()                 run curl with a time bound
"""

import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

PYTHON = "/usr/bin/python3"
PROXYD = os.environ.get("PROXYD", "")
SRCDIR = os.environ.get(
    "PROXYD_SRCDIR",
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))


# --------------------------------------------------------------------------
# check / summary

_passed = 0
_failed = 0


def check(cond, what, detail=None):
    """Record one check; print `ok - what` or `FAIL - what (detail)`."""
    global _passed, _failed
    if cond:
        _passed += 1
        print("ok - %s" % what, flush=True)
    else:
        _failed += 1
        if detail is not None:
            d = detail if isinstance(detail, str) else repr(detail)
            if len(d) > 600:
                d = d[:600] + "..."
            print("FAIL - %s: %s" % (what, d), flush=True)
        else:
            print("FAIL - %s" % what, flush=True)
    return bool(cond)


def check_eq(got, want, what):
    return check(got == want, what, "got %r, want %r" % (got, want))


def failed():
    return _failed


def summary():
    """Print `N passed, M failed` and exit (non-zero if anything failed)."""
    if _passed == 0 and _failed == 0:
        print("FAIL - no checks ran", flush=True)
        print("0 passed, 1 failed", flush=True)
        sys.exit(1)
    print("%d passed, %d failed" % (_passed, _failed), flush=True)
    sys.exit(1 if _failed else 0)


def run_main(main):
    """Run main(); an exception counts as a failed check, then summary()."""
    try:
        main()
    except Exception as e:  # noqa: BLE001 - report and count it
        import traceback
        traceback.print_exc()
        check(False, "test body raised %s: %s" % (type(e).__name__, e))
    summary()


def require_proxyd():
    if not PROXYD or not os.access(PROXYD, os.X_OK):
        print("FAIL - $PROXYD is not an executable proxyd binary: %r" % PROXYD)
        print("0 passed, 1 failed")
        sys.exit(1)


def log(msg):
    print("# " + msg, flush=True)


# --------------------------------------------------------------------------
# ports and sockets

def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def split_addr(addr):
    """'127.0.0.1:80' / '[::1]:80' -> (host, port)."""
    if addr.startswith("["):
        host, _, port = addr[1:].partition("]:")
        return host, int(port)
    host, _, port = addr.rpartition(":")
    return host, int(port)


def connect(port, host="127.0.0.1", timeout=5.0):
    s = socket.socket(_family(host), socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


def recv_until_close(s, timeout=5.0, limit=64 << 20):
    """Read until the peer closes or the deadline; -> (data, closed_by_peer)."""
    data = bytearray()
    deadline = time.monotonic() + timeout
    closed = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            break
        if not b:
            closed = True
            break
        data += b
        if len(data) > limit:
            break
    return bytes(data), closed


def recv_until(s, marker, timeout=5.0):
    """Read until `marker` has arrived, the peer closes or the deadline; -> the bytes."""
    data = bytearray()
    deadline = time.monotonic() + timeout
    while marker not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            b = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not b:
            break
        data += b
    return bytes(data)


def raw_exchange(port, data, timeout=3.0, host="127.0.0.1", pause=0.5):
    """Send `data` (bytes, or a list of bytes with None meaning `pause` seconds)
    and read until the peer closes or `timeout` passes.
    Returns (response bytes, closed_by_peer)."""
    s = connect(port, host, timeout=timeout)
    try:
        parts = data if isinstance(data, list) else [data]
        for p in parts:
            if p is None:
                time.sleep(pause)
                continue
            try:
                s.sendall(p)
            except (BrokenPipeError, ConnectionResetError):
                break
        return recv_until_close(s, timeout)
    finally:
        s.close()


def wait_port(port, host="127.0.0.1", timeout=10.0, alive=None):
    """Poll until a TCP connect succeeds. `alive()` False aborts early."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# --------------------------------------------------------------------------
# HTTP/1.1 message parsing (client side, for checking proxyd's responses)

class Response:
    def __init__(self, status, reason, headers, body, head):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) str
        self.body = body
        self.head = head

    def header(self, name, default=None):
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default

    def header_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def __repr__(self):
        return "<Response %d %r body=%d bytes>" % (self.status, self.headers,
                                                   len(self.body))


def _parse_head(head):
    lines = head.split(b"\r\n")
    first = lines[0].decode("latin-1")
    headers = []
    for ln in lines[1:]:
        if not ln:
            continue
        k, _, v = ln.decode("latin-1").partition(":")
        headers.append((k, v.strip()))
    return first, headers


def parse_responses(data, head_request=False):
    """Split bytes into complete responses. Returns (list of Response, rest).
    A response without framing takes everything up to the end (close-delimited)."""
    out = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        head = data[pos:end]
        first, headers = _parse_head(head)
        m = re.match(r"HTTP/(\d)\.(\d) (\d{3})(?: (.*))?$", first)
        if not m:
            break
        status = int(m.group(3))
        reason = m.group(4) or ""
        body_start = end + 4
        hmap = {k.lower(): v for k, v in headers}
        if head_request or status in (204, 304) or 100 <= status < 200:
            body = b""
            nxt = body_start
        elif "chunked" in hmap.get("transfer-encoding", "").lower():
            body = bytearray()
            p = body_start
            ok = False
            while True:
                le = data.find(b"\r\n", p)
                if le < 0:
                    break
                try:
                    size = int(data[p:le].split(b";")[0], 16)
                except ValueError:
                    break
                p = le + 2
                if size == 0:
                    # trailers up to empty line
                    te = data.find(b"\r\n\r\n", p - 2)
                    if te < 0:
                        break
                    p = te + 4
                    ok = True
                    break
                if p + size + 2 > len(data):
                    break
                body += data[p:p + size]
                p += size + 2
            if not ok:
                out.append(Response(status, reason, headers, bytes(body), head))
                return out, data[pos:]
            body = bytes(body)
            nxt = p
        elif "content-length" in hmap:
            n = int(hmap["content-length"])
            body = data[body_start:body_start + n]
            nxt = body_start + n
            if len(body) < n:
                out.append(Response(status, reason, headers, body, head))
                return out, data[pos:]
        else:
            body = data[body_start:]
            nxt = len(data)
        out.append(Response(status, reason, headers, body, head))
        pos = nxt
    return out, data[pos:]


def http_request(port, method="GET", target="/", headers=None, body=b"",
                 host="127.0.0.1", timeout=5.0, version="1.1"):
    """One request on a fresh connection with Connection: close.
    Returns a Response or None (no parsable response)."""
    h = [("Host", "test.local")]
    if headers:
        names = {k.lower() for k, _ in headers}
        h = [x for x in h if x[0].lower() not in names] + list(headers)
    if body and not any(k.lower() in ("content-length", "transfer-encoding")
                        for k, _ in h):
        h.append(("Content-Length", str(len(body))))
    if not any(k.lower() == "connection" for k, _ in h):
        h.append(("Connection", "close"))
    req = ("%s %s HTTP/%s\r\n" % (method, target, version)).encode("latin-1")
    req += b"".join(("%s: %s\r\n" % (k, v)).encode("latin-1") for k, v in h)
    req += b"\r\n" + body
    data, _ = raw_exchange(port, req, timeout=timeout, host=host)
    rs, _ = parse_responses(data, head_request=(method == "HEAD"))
    return rs[0] if rs else None


# --------------------------------------------------------------------------
# deterministic streamed data (no large buffers in memory)

BLOCK = 1 << 20


class DataStream:
    """`size` bytes of deterministic pseudo-random data, produced in 1 MiB
    blocks. Every block carries its index, so misordered or repeated blocks
    change the checksum."""

    _base = None

    def __init__(self, size, seed=1):
        self.size = size
        self.seed = seed
        if DataStream._base is None:
            import random
            r = random.Random(12345)
            DataStream._base = r.randbytes(BLOCK)

    def blocks(self, block=BLOCK):
        left = self.size
        i = 0
        base = DataStream._base
        while left > 0:
            n = min(left, BLOCK)
            b = struct.pack("<QQ", self.seed, i) + base[16:n] if n > 16 else \
                struct.pack("<QQ", self.seed, i)[:n]
            if block == BLOCK:
                yield b
            else:
                for o in range(0, len(b), block):
                    yield b[o:o + block]
            left -= n
            i += 1

    def sha256(self):
        h = hashlib.sha256()
        for b in self.blocks():
            h.update(b)
        return h.hexdigest()


# --------------------------------------------------------------------------
# backends

class Request:
    """What a backend received."""

    def __init__(self):
        self.conn_id = None
        self.request_line = b""
        self.method = ""
        self.target = ""
        self.version = ""
        self.headers = []  # (name, value) as str, in order
        self.raw_head = b""
        self.body_len = 0
        self.body_sha256 = hashlib.sha256().hexdigest()
        self.body = b""  # first 1 MiB only
        self.chunked = False
        self.complete = False
        self.peer = None
        self.time = 0.0

    def parse_head(self, head):
        """Fill request line and headers from a raw head (without the blank line)."""
        self.raw_head = head
        lines = head.split(b"\r\n")
        self.request_line = lines[0]
        parts = lines[0].decode("latin-1").split(" ")
        if len(parts) == 3:
            self.method, self.target, self.version = parts
        for ln in lines[1:]:
            if ln:
                k, _, v = ln.decode("latin-1").partition(":")
                self.headers.append((k, v.strip()))

    def header(self, name, default=None):
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default

    def header_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def __repr__(self):
        return "<Request conn=%s %r body=%d>" % (self.conn_id, self.request_line,
                                                 self.body_len)


class Reply:
    """What a backend handler returns.

    status/headers/body: body is bytes, or an iterable of bytes (streamed).
    chunked: send with Transfer-Encoding: chunked (else Content-Length is set
    from `length` or len(body)).
    raw: bytes sent verbatim instead of building a response.
    after: None | "close" | "rst" | "hang" (after sending).
    delay: seconds to sleep before answering."""

    def __init__(self, status=200, headers=None, body=b"ok\n", chunked=False,
                 length=None, raw=None, after=None, delay=0.0):
        self.status = status
        self.headers = headers or []
        self.body = body
        self.chunked = chunked
        self.length = length
        self.raw = raw
        self.after = after
        self.delay = delay


def default_handler(req):
    return Reply(200, [("Content-Type", "text/plain")], b"ok\n")


class _BadRequest(Exception):
    pass


class Backend:
    """A recording HTTP/1.1 backend running in threads.

    Backend(handler=None, host="127.0.0.1" | unix_path=...)
    .port, .address ("127.0.0.1:PORT" or "unix:/path"), .requests (list of
    Request, in order of arrival), .connections (accepted count),
    .wait_requests(n, timeout)."""

    def __init__(self, handler=None, host="127.0.0.1", unix_path=None,
                 keep_body=1 << 20):
        self.handler = handler or default_handler
        self.keep_body = keep_body
        self.requests = []
        self.connections = 0
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self._stop = threading.Event()
        self._socks = set()
        self.unix_path = unix_path
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
            self.port = None
            self.address = "unix:" + unix_path
        else:
            self.sock = socket.socket(_family(host), socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, 0))
            self.port = self.sock.getsockname()[1]
            self.address = ("[%s]:%d" if ":" in host else "%s:%d") % (host, self.port)
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self._thr = threading.Thread(target=self._accept_loop, daemon=True)
        self._thr.start()

    # -- lifecycle
    def close(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        self._thr.join(timeout=2)
        if self.unix_path:
            try:
                os.unlink(self.unix_path)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def reset(self):
        with self.lock:
            self.requests = []
            self.connections = 0

    def wait_requests(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while len([r for r in self.requests if r.complete]) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def complete_requests(self):
        with self.lock:
            return [r for r in self.requests if r.complete]

    # -- serving
    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                cid = self.connections
                self._socks.add(c)
            t = threading.Thread(target=self._serve, args=(c, cid, peer), daemon=True)
            t.start()

    def _serve(self, c, cid, peer):
        c.settimeout(None)
        rf = _Reader(c, self._stop)
        try:
            self.on_connection(c, rf, cid, peer)
        except (OSError, _BadRequest, EOFError):
            pass
        finally:
            with self.lock:
                self._socks.discard(c)
            try:
                c.close()
            except OSError:
                pass

    def on_connection(self, c, rf, cid, peer):
        while not self._stop.is_set():
            req = Request()
            req.conn_id = cid
            req.peer = peer
            head = rf.read_head()
            if head is None:
                return
            req.time = time.monotonic()
            req.parse_head(head)
            with self.cond:
                self.requests.append(req)
            te = (req.header("Transfer-Encoding") or "").lower()
            cl = req.header("Content-Length")
            h = hashlib.sha256()
            kept = bytearray()

            def sink(b):
                h.update(b)
                req.body_len += len(b)
                if len(kept) < self.keep_body:
                    kept.extend(b[:self.keep_body - len(kept)])

            if "chunked" in te:
                req.chunked = True
                rf.read_chunked(sink)
            elif cl is not None:
                rf.read_exact(int(cl), sink)
            req.body_sha256 = h.hexdigest()
            req.body = bytes(kept)
            with self.cond:
                req.complete = True
                self.cond.notify_all()
            reply = self.handler(req)
            if reply is None:
                reply = default_handler(req)
            if reply.delay:
                self._stop.wait(reply.delay)
            keep = self._send(c, req, reply)
            if not keep:
                return

    def _send(self, c, req, r):
        if r.raw is not None:
            c.sendall(r.raw)
        else:
            hs = list(r.headers)
            names = {k.lower() for k, _ in hs}
            body = r.body
            if r.chunked:
                hs.append(("Transfer-Encoding", "chunked"))
            elif "content-length" not in names:
                n = r.length if r.length is not None else len(body)
                hs.append(("Content-Length", str(n)))
            head = "HTTP/1.1 %d %s\r\n" % (r.status, "OK" if r.status == 200 else "X")
            head += "".join("%s: %s\r\n" % (k, v) for k, v in hs) + "\r\n"
            c.sendall(head.encode("latin-1"))
            if req.method != "HEAD":
                it = [body] if isinstance(body, (bytes, bytearray)) else body
                for b in it:
                    if not b:
                        continue
                    if r.chunked:
                        c.sendall(b"%x\r\n" % len(b) + bytes(b) + b"\r\n")
                    else:
                        c.sendall(b)
                if r.chunked:
                    c.sendall(b"0\r\n\r\n")
        if r.after == "close":
            return False
        if r.after == "rst":
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if r.after == "hang":
            self._stop.wait(3600)
            return False
        conn = (req.header("Connection") or "").lower()
        if "close" in conn:
            return False
        if req.version == "HTTP/1.0" and "keep-alive" not in conn:
            return False
        return True


class _Reader:
    """Buffered reader over a socket that streams bodies."""

    def __init__(self, s, stop):
        self.s = s
        self.buf = bytearray()
        self.stop = stop

    def _fill(self):
        b = self.s.recv(1 << 18)
        if not b:
            raise EOFError
        self.buf += b

    def read_head(self, limit=1 << 20):
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head = bytes(self.buf[:i])
                del self.buf[:i + 4]
                return head
            if len(self.buf) > limit:
                raise _BadRequest
            try:
                self._fill()
            except EOFError:
                return None

    def read_line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                ln = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return ln
            if len(self.buf) > 65536:
                raise _BadRequest
            self._fill()

    def read_exact(self, n, sink):
        while n > 0:
            if not self.buf:
                self._fill()
            take = min(n, len(self.buf))
            sink(bytes(self.buf[:take]))
            del self.buf[:take]
            n -= take

    def read_chunked(self, sink):
        while True:
            ln = self.read_line()
            try:
                size = int(ln.split(b";")[0].strip(), 16)
            except ValueError:
                raise _BadRequest
            if size == 0:
                while self.read_line() != b"":
                    pass
                return
            self.read_exact(size, sink)
            if self.read_line() != b"":
                raise _BadRequest


class NeverAnswerBackend(Backend):
    """Accepts, reads whatever comes, never answers."""

    def on_connection(self, c, rf, cid, peer):
        head = rf.read_head()
        if head is not None:
            r = Request()
            r.conn_id = cid
            r.raw_head = head
            r.request_line = head.split(b"\r\n")[0]
            r.complete = True
            with self.cond:
                self.requests.append(r)
                self.cond.notify_all()
        self._stop.wait(3600)


class ClosingBackend(Backend):
    """Accepts, reads the request head, closes without a byte."""

    def on_connection(self, c, rf, cid, peer):
        head = rf.read_head()
        if head is not None:
            r = Request()
            r.conn_id = cid
            r.raw_head = head
            r.request_line = head.split(b"\r\n")[0]
            r.complete = True
            with self.cond:
                self.requests.append(r)
                self.cond.notify_all()


def refused_port():
    """A loopback port nothing listens on (connect gets ECONNREFUSED)."""
    return free_port()


# --------------------------------------------------------------------------
# proxyd

class Proxyd:
    """Run proxyd with a configuration text.

    sockets: list of (address, fdname) handed over the way
      `systemd-socket-activate -l ADDR --fdname=NAME` does; None = standalone
      (proxyd binds the `listen` addresses itself; give `wait=(host, port)`).
    dropins: {"10-x.conf": text} written to <conf>.d/.
    The config text may use {tmp} for the temp dir.
    expect_clean_exit: when stopped, record a check that proxyd was still
      running, exited with status 0 after SIGTERM (not killed, not aborted),
      and that its log has no sanitizer report ("Sanitizer", "runtime
      error:"). Default: the value of expect_start. Pass False for a test
      that kills proxyd itself or expects it to fail."""

    def __init__(self, config, sockets=None, dropins=None, args=None, env=None,
                 wait=None, start_timeout=10.0, expect_start=True,
                 expect_clean_exit=None):
        self.config = config
        self.sockets = sockets
        self.dropins = dropins or {}
        self.args = args or []
        self.env = env
        self.wait = wait
        self.start_timeout = start_timeout
        self.expect_start = expect_start
        self.expect_clean_exit = (expect_start if expect_clean_exit is None
                                  else expect_clean_exit)
        self._exit_checked = False
        self.proc = None
        self.tmp = None
        self.conf_path = None
        self.stderr_path = None
        self._errf = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *a):
        self.close()

    def start(self):
        require_proxyd()
        self.tmp = tempfile.mkdtemp(prefix="proxyd-it-")
        try:
            self._start()
        except BaseException:
            # the failed start is reported by the caller; no exit check on top
            self._exit_checked = True
            self.close()
            raise
        return self

    def _start(self):
        self.conf_path = os.path.join(self.tmp, "proxyd.conf")
        with open(self.conf_path, "w") as f:
            f.write(self.config.replace("{tmp}", self.tmp))
        if self.dropins:
            d = self.conf_path + ".d"
            os.mkdir(d)
            for name, text in self.dropins.items():
                with open(os.path.join(d, name), "w") as f:
                    f.write(text.replace("{tmp}", self.tmp))
        self.stderr_path = os.path.join(self.tmp, "stderr.log")
        self._errf = open(self.stderr_path, "wb")
        env = dict(os.environ)
        for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
                  "JOURNAL_STREAM", "PROXYD_CONFIG", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(k, None)
        if self.env:
            env.update(self.env)
        cmd = [PROXYD, "-c", self.conf_path] + self.args
        if self.sockets:
            sa = ["systemd-socket-activate"]
            for addr, _ in self.sockets:
                sa += ["-l", addr]
            sa.append("--fdname=" + ":".join(n for _, n in self.sockets))
            # systemd-socket-activate passes only TERM, PATH, HOME and -E.
            for k, v in (self.env or {}).items():
                sa += ["-E", "%s=%s" % (k, v)]
            cmd = sa + cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=self._errf, stderr=self._errf, env=env,
                                     start_new_session=True)
        if not self.expect_start:
            return
        if self.sockets:
            host, port = split_addr(self.sockets[0][0])
            # systemd-socket-activate starts the program at the first
            # connection; the listening sockets exist before that.
            if not wait_port(port, host, self.start_timeout, alive=self.alive):
                raise RuntimeError("socket %s never accepted; log:\n%s" %
                                   (self.sockets[0][0], self.log_text()))
            self._wait_exec()
        elif self.wait:
            host, port = self.wait
            if not wait_port(port, host, self.start_timeout, alive=self.alive):
                raise RuntimeError("proxyd did not start listening on %s:%d; log:\n%s"
                                   % (host, port, self.log_text()))
        time.sleep(0.1)
        if not self.alive():
            raise RuntimeError("proxyd exited at start (rc=%s); log:\n%s"
                               % (self.proc.returncode, self.log_text()))

    def _wait_exec(self):
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return
            try:
                with open("/proc/%d/comm" % self.pid) as f:
                    if f.read().strip().startswith("proxyd"):
                        return
            except OSError:
                return
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    def access_lines(self):
        """Parsed access lines: list of dicts of key=value fields."""
        out = []
        for ln in self.log_text().splitlines():
            i = ln.find("access: ")
            if i < 0:
                continue
            d = {}
            for m in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', ln[i + 8:]):
                v = m.group(2)
                if v.startswith('"'):
                    v = v[1:-1]
                d[m.group(1)] = v
            out.append(d)
        return out

    def wait_log(self, pattern, timeout=5.0):
        """Wait until a regex matches the log; -> match or None."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.log_text())
            if m or time.monotonic() > deadline:
                return m
            time.sleep(0.05)

    def rss_kib(self):
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for ln in f:
                    if ln.startswith("VmRSS:"):
                        return int(ln.split()[1])
        except OSError:
            return None
        return None

    def threads(self):
        try:
            return os.listdir("/proc/%d/task" % self.pid)
        except OSError:
            return []

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit code.
        With expect_clean_exit, the first stop records the exit checks."""
        if self.proc is None:
            return None
        how = "exited by itself before it was stopped"
        if self.proc.poll() is None:
            how = "after SIGTERM"
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                how = "did not exit within %.0fs of SIGTERM, SIGKILLed" % timeout
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self._check_exit(how)
        return self.proc.returncode

    def _check_exit(self, how):
        if self._exit_checked or not self.expect_clean_exit:
            return
        self._exit_checked = True
        rc = self.proc.returncode
        text = self.log_text()
        check(how == "after SIGTERM" and rc == 0,
              "proxyd (pid %d) exited with status 0 after SIGTERM" % self.proc.pid,
              "%s, rc=%s; log tail:\n%s" % (how, rc, text[-1500:]))
        bad = [ln for ln in text.splitlines()
               if "Sanitizer" in ln or "runtime error:" in ln]
        check(not bad, "proxyd (pid %d) log has no sanitizer report" % self.proc.pid,
              "\n".join(bad[:10]))

    def close(self):
        try:
            self.stop()
        finally:
            if self._errf:
                self._errf.close()
                self._errf = None
            if self.tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)
                self.tmp = None


# --------------------------------------------------------------------------
# nginx, the oracle (Debian's nginx-light; tools/test.sh installs it)

NGINX = "/usr/sbin/nginx"

NGINX_HTTP = """
daemon off;
master_process off;
worker_processes 1;
pid %(t)s/nginx.pid;
error_log %(t)s/error.log info;
events { worker_connections %(wc)d; }
http {
  access_log %(t)s/access.log;
  client_body_temp_path %(t)s/client_body;
  proxy_temp_path %(t)s/proxy;
  fastcgi_temp_path %(t)s/fastcgi;
  uwsgi_temp_path %(t)s/uwsgi;
  scgi_temp_path %(t)s/scgi;
  proxy_http_version 1.1;
%(servers)s
}
"""


def nginx_config_text(tmp, servers, worker_connections=128):
    """A whole foreground, single-process nginx configuration keeping its files in tmp,
    with the given `server { ... }` (and `upstream { ... }`) blocks in its http block."""
    return NGINX_HTTP % {"t": tmp, "servers": servers, "wc": worker_connections}


def start_nginx(tmp, config, nginx=NGINX):
    """Write config to tmp/nginx.conf and start nginx on it in its own session.
    -> the Popen; its stdout and stderr go to tmp/nginx.stderr."""
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(config)
    with open(os.path.join(tmp, "nginx.stderr"), "wb") as errf:
        return subprocess.Popen([nginx, "-p", tmp + "/", "-e", tmp + "/error.log", "-c", conf],
                                stdin=subprocess.DEVNULL, stdout=errf, stderr=errf,
                                start_new_session=True)


def stop_nginx(proc):
    """Stop an nginx started by start_nginx(): SIGTERM, then SIGKILL to its session."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def run_proxyd(args, config=None, timeout=20.0, env=None, dropins=None):
    """Run proxyd to completion (for -t, --dump, ...). With `config`, writes it
    to a temp dir and substitutes {conf} in args with its path.
    Returns (rc, stdout, stderr, conf_path); the temp dir is removed."""
    require_proxyd()
    tmp = tempfile.mkdtemp(prefix="proxyd-cli-")
    try:
        conf = os.path.join(tmp, "proxyd.conf")
        if config is not None:
            with open(conf, "w") as f:
                f.write(config.replace("{tmp}", tmp))
        if dropins:
            os.mkdir(conf + ".d")
            for name, text in dropins.items():
                with open(os.path.join(conf + ".d", name), "w") as f:
                    f.write(text.replace("{tmp}", tmp))
        e = dict(os.environ)
        for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
                  "JOURNAL_STREAM", "PROXYD_CONFIG"):
            e.pop(k, None)
        if env:
            e.update({k: v.replace("{conf}", conf) for k, v in env.items()})
        argv = [PROXYD] + [a.replace("{conf}", conf) for a in args]
        try:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=timeout, env=e)
        except subprocess.TimeoutExpired as ex:
            return (None, (ex.stdout or b"").decode("utf-8", "replace"),
                    (ex.stderr or b"").decode("utf-8", "replace"), conf)
        return (p.returncode, p.stdout.decode("utf-8", "replace"),
                p.stderr.decode("utf-8", "replace"), conf)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# curl

def curl(args, timeout=30.0, input=None, stdout=subprocess.PIPE):
    """Run curl (quiet, no proxy from the environment). -> CompletedProcess,
    or None on timeout."""
    argv = ["curl", "-sS", "--noproxy", "*", "--max-time", str(int(timeout))] + list(args)
    try:
        return subprocess.run(argv, input=input, stdout=stdout,
                              stderr=subprocess.PIPE, timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        return None


def line_number(text, needle, nth=1):
    """1-based line number of the nth line containing needle."""
    seen = 0
    for i, ln in enumerate(text.splitlines(), 1):
        if needle in ln:
            seen += 1
            if seen == nth:
                return i
    raise ValueError("%r not in text" % needle)
