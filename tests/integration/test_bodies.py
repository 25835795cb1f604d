#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Bodies stream through proxyd intact, both ways, with Content-Length and
chunked framing: 0 B, 1 KiB, 10 MiB and 1 GiB (sha256 compared end to end),
while proxyd's resident memory stays bounded (VmRSS sampled during the
transfers). Data is generated and hashed in 1 MiB blocks, never held whole."""

import hashlib
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, DataStream, Proxyd, Reply, check, connect,  # noqa: E402
                     free_port, log, run_main)

RSS_LIMIT_KIB = 64 * 1024
SIZES = [("0B", 0), ("1KiB", 1024), ("10MiB", 10 << 20), ("1GiB", 1 << 30)]
if os.environ.get("PROXYD_TEST_QUICK"):
    SIZES = SIZES[:3]

CONFIG = """
workers = 2;
servers = (
  {
    name = "main";
    listen = [ "http" ];
    client_max_body_size = "2g";
    read_timeout = "60s";
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
    locations = (
      { prefix = "/"; proxy_pass = "http://127.0.0.1:%(bport)d"; }
    );
  }
);
"""


def handler(req):
    parts = req.target.split("/")
    if len(parts) >= 4 and parts[1] == "dl":
        size = int(parts[2])
        ds = DataStream(size, seed=size + 7)
        return Reply(200, [("Content-Type", "application/octet-stream")], ds.blocks(),
                     chunked=(parts[3] == "chunked"), length=size)
    body = ("%d %s %s\n" % (req.body_len, req.body_sha256,
                            "chunked" if req.chunked else "length")).encode()
    return Reply(200, [("Content-Type", "text/plain")], body)


class RssSampler:
    def __init__(self, p):
        self.p = p
        self.max = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            v = self.p.rss_kib()
            if v:
                self.max = max(self.max, v)
            self._stop.wait(0.05)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join(2)


def download(port, size, framing, timeout):
    """curl GET; stdout hashed as it streams. -> (rc, sha256, length)."""
    url = "http://127.0.0.1:%d/dl/%d/%s" % (port, size, framing)
    pr = subprocess.Popen(["curl", "-sS", "--noproxy", "*", "--max-time", str(timeout),
                           "-o", "-", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    h = hashlib.sha256()
    n = 0
    try:
        while True:
            b = pr.stdout.read(1 << 20)
            if not b:
                break
            h.update(b)
            n += len(b)
        pr.wait(timeout + 5)
    finally:
        if pr.poll() is None:
            pr.kill()
            pr.wait()
    return pr.returncode, h.hexdigest(), n


def upload(port, size, framing, timeout):
    """curl PUT from stdin, fed block by block. -> (rc, response body)."""
    url = "http://127.0.0.1:%d/up/%d/%s" % (port, size, framing)
    args = ["curl", "-sS", "--noproxy", "*", "--max-time", str(timeout), "-T", "-",
            "-H", "Expect:"]
    if framing == "length":
        args += ["-H", "Transfer-Encoding:", "-H", "Content-Length: %d" % size]
    pr = subprocess.Popen(args + [url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    out = []
    rd = threading.Thread(target=lambda: out.append(pr.stdout.read()), daemon=True)
    rd.start()
    try:
        for b in DataStream(size, seed=size + 3).blocks():
            pr.stdin.write(b)
        pr.stdin.close()
        pr.wait(timeout + 5)
        rd.join(5)
    except (BrokenPipeError, subprocess.TimeoutExpired):
        pass
    finally:
        if pr.poll() is None:
            pr.kill()
            pr.wait()
    return pr.returncode, (out[0] if out else b"")


def main():
    b = Backend(handler)
    try:
        port = free_port()
        with Proxyd(CONFIG % {"bport": b.port},
                    sockets=[("127.0.0.1:%d" % port, "http")]) as p:
            run_checks(p, port, b)
    finally:
        b.close()


def keepalive_downloads(port, b, n, size):
    """n downloads of `size` bytes one after the other on one client connection:
    -> (all intact, backend connection ids)."""
    b.reset()
    want = DataStream(size, seed=size + 7).sha256()
    s = connect(port, timeout=30)
    ok = True
    buf = b""
    try:
        for i in range(n):
            s.sendall(b"GET /dl/%d/length HTTP/1.1\r\nHost: a\r\n\r\n" % size)
            while b"\r\n\r\n" not in buf:
                c = s.recv(65536)
                if not c:
                    return False, []
                buf += c
            head, _, buf = buf.partition(b"\r\n\r\n")
            h = hashlib.sha256()
            got = 0
            while got < size:
                if not buf:
                    buf = s.recv(1 << 20)
                    if not buf:
                        return False, []
                k = min(len(buf), size - got)
                h.update(buf[:k])
                got += k
                buf = buf[k:]
            ok = ok and head.startswith(b"HTTP/1.1 200") and h.hexdigest() == want
    finally:
        s.close()
    return ok and not buf, [r.conn_id for r in b.complete_requests()]


def run_checks(p, port, b):
    # Content-Length bodies between plain sockets are spliced; the upstream connection
    # must come out of it clean and be reused
    ok, conns = keepalive_downloads(port, b, 5, 3 << 20)
    check(ok and len(conns) == 5, "5 x 3 MiB on one keep-alive connection: all intact", (ok, conns))
    check(len(set(conns)) == 1, "the upstream connection is reused after each spliced body", conns)

    base = p.rss_kib() or 0
    log("proxyd VmRSS at start: %d KiB" % base)
    for label, size in SIZES:
        timeout = 300 if size >= (1 << 30) else 60
        for framing in ("length", "chunked"):
            want = DataStream(size, seed=size + 7).sha256()
            with RssSampler(p) as rs:
                t0 = time.monotonic()
                rc, got, n = download(port, size, framing, timeout)
                dt = time.monotonic() - t0
            check(rc == 0 and n == size and got == want,
                  "download %s (%s): %d bytes, sha256 matches (%.1fs)"
                  % (label, framing, n, dt), (rc, n, got))
            check(rs.max < RSS_LIMIT_KIB,
                  "download %s (%s): proxyd max VmRSS %d KiB < %d KiB"
                  % (label, framing, rs.max, RSS_LIMIT_KIB))

            b.reset()
            want = DataStream(size, seed=size + 3).sha256()
            with RssSampler(p) as rs:
                t0 = time.monotonic()
                rc, out = upload(port, size, framing, timeout)
                dt = time.monotonic() - t0
            fields = out.decode("latin-1").split()
            check(rc == 0 and len(fields) >= 2 and fields[0] == str(size)
                  and fields[1] == want,
                  "upload %s (%s): backend got %s bytes, sha256 matches (%.1fs)"
                  % (label, framing, fields[0] if fields else "?", dt), (rc, out[:200]))
            check(rs.max < RSS_LIMIT_KIB,
                  "upload %s (%s): proxyd max VmRSS %d KiB < %d KiB"
                  % (label, framing, rs.max, RSS_LIMIT_KIB))
            reqs = b.complete_requests()
            check(len(reqs) == 1, "upload %s (%s): exactly one request at the backend"
                  % (label, framing), reqs)

    # backpressure: a client that does not read must not make proxyd buffer
    size = 256 << 20
    want = DataStream(size, seed=size + 7).sha256()
    s = connect(port, timeout=60)
    try:
        s.sendall(b"GET /dl/%d/length HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % size)
        with RssSampler(p) as rs:
            time.sleep(2.0)
            stalled = rs.max
            h = hashlib.sha256()
            buf = b""
            while b"\r\n\r\n" not in buf:
                c = s.recv(65536)
                if not c:
                    break
                buf += c
            head, _, rest = buf.partition(b"\r\n\r\n")
            h.update(rest)
            n = len(rest)
            while True:
                c = s.recv(1 << 20)
                if not c:
                    break
                h.update(c)
                n += len(c)
    finally:
        s.close()
    check(head.startswith(b"HTTP/1.1 200") and n == size and h.hexdigest() == want,
          "slow reader: 256 MiB arrives intact after a 2s stall", (head[:100], n))
    check(stalled < RSS_LIMIT_KIB and rs.max < RSS_LIMIT_KIB,
          "slow reader: proxyd VmRSS stays bounded (stalled %d KiB, max %d KiB)"
          % (stalled, rs.max))
    check(p.alive(), "proxyd still running")


if __name__ == "__main__":
    log("test_bodies: proxyd=%s" % os.environ.get("PROXYD"))
    run_main(main)
