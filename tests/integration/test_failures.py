#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Failures and timeouts: unreachable backend -> 502, backend that closes
without answering -> 502, backend that never answers -> 504 after
read_timeout, client_header_timeout -> 408 and close, client_body_timeout
closes, keepalive_timeout closes an idle client connection, send_timeout
closes a connection whose client stops reading a (spliced) 64 MiB body."""

import os
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, ClosingBackend, DataStream, NeverAnswerBackend,  # noqa: E402
                     Proxyd, Reply, check, connect, free_port, http_request, log,
                     recv_until_close, run_main)

BIG = 64 << 20


def big_handler(req):
    return Reply(200, [("Content-Type", "application/octet-stream")], DataStream(BIG).blocks(),
                 length=BIG)

CONFIG = """
workers = 2;
servers = (
  {
    name = "main";
    listen = [ "http" ];
    read_timeout = "1s";
    connect_timeout = "2s";
    client_header_timeout = "1s";
    client_body_timeout = "1s";
    keepalive_timeout = "1s";
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
    locations = (
      { exact = "/healthz"; return = 200; body = "ok\\n"; },
      { prefix = "/refused/"; proxy_pass = "http://127.0.0.1:%(refused)d"; },
      { prefix = "/nosock/"; proxy_pass = "http://unix:%(nosock)s:"; },
      { prefix = "/never/"; proxy_pass = "http://127.0.0.1:%(never)d"; },
      { prefix = "/closing/"; proxy_pass = "http://127.0.0.1:%(closing)d"; },
      { prefix = "/slow/"; read_timeout = "5s"; proxy_pass = "http://127.0.0.1:%(never)d"; },
      { prefix = "/big/"; send_timeout = "1s"; proxy_pass = "http://127.0.0.1:%(big)d"; },
      { prefix = "/ok/"; proxy_pass = "http://127.0.0.1:%(ok)d"; }
    );
  }
);
"""


def timed_request(port, target, timeout=8.0):
    t0 = time.monotonic()
    r = http_request(port, target=target, timeout=timeout)
    return r, time.monotonic() - t0


def main():
    tmp = tempfile.mkdtemp(prefix="proxyd-fail-")
    never = closing = ok = big = None
    try:
        big = Backend(big_handler)
        never = NeverAnswerBackend()
        closing = ClosingBackend()
        ok = Backend()
        refused = free_port()
        port = free_port()
        conf = CONFIG % {"refused": refused, "nosock": os.path.join(tmp, "absent.sock"),
                         "never": never.port, "closing": closing.port, "ok": ok.port,
                         "big": big.port}
        with Proxyd(conf, sockets=[("127.0.0.1:%d" % port, "http")]) as p:
            run_checks(p, port, never, closing, ok)
    finally:
        for b in (never, closing, ok, big):
            if b:
                b.close()
        shutil.rmtree(tmp, ignore_errors=True)


def run_checks(p, port, never, closing, ok):
    r, dt = timed_request(port, "/refused/x")
    check(r is not None and r.status == 502 and dt < 3,
          "unreachable backend (connection refused) -> 502 quickly", (r, dt))
    acc = [a for a in p.access_lines() if a.get("uri") == "/refused/x"]
    check(len(acc) == 1 and acc[0].get("status") == "502",
          "access line for the 502 says status=502", acc)

    r, dt = timed_request(port, "/nosock/x")
    check(r is not None and r.status == 502, "missing unix socket upstream -> 502", r)

    r, dt = timed_request(port, "/closing/x")
    check(r is not None and r.status == 502,
          "backend closes without a response -> 502", r)
    check(closing.wait_requests(1, 1), "closing backend received the request")

    r, dt = timed_request(port, "/never/x")
    check(r is not None and r.status == 504, "backend never answers -> 504", r)
    check(0.8 <= dt <= 4.0, "504 arrives after read_timeout = 1s (took %.2fs)" % dt)
    check(never.wait_requests(1, 1), "silent backend received the request")

    # a longer location-level read_timeout overrides the server's 1s
    r, dt = timed_request(port, "/slow/x", timeout=12)
    check(r is not None and r.status == 504 and 4.0 <= dt <= 8.0,
          "location read_timeout = 5s overrides the server's 1s (took %.2fs)" % dt, r)

    # client_header_timeout: an incomplete head gets 408 and the connection closes
    s = connect(port)
    try:
        t0 = time.monotonic()
        s.sendall(b"GET /ok/x HTTP/1.1\r\nHost: a\r\n")
        data, closed = recv_until_close(s, 6)
        dt = time.monotonic() - t0
    finally:
        s.close()
    check(data.startswith(b"HTTP/1.1 408"), "incomplete head -> 408", data[:200])
    check(closed and 0.8 <= dt <= 4.0,
          "connection closed after client_header_timeout = 1s (took %.2fs)" % dt)

    # a connection that sends nothing is closed too
    s = connect(port)
    try:
        t0 = time.monotonic()
        data, closed = recv_until_close(s, 6)
        dt = time.monotonic() - t0
    finally:
        s.close()
    check(closed and dt <= 4.0,
          "silent client connection closed within the header timeout (took %.2fs)" % dt)

    # client_body_timeout: the body stalls
    ok.reset()
    s = connect(port)
    try:
        t0 = time.monotonic()
        s.sendall(b"POST /ok/body HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n123")
        data, closed = recv_until_close(s, 8)
        dt = time.monotonic() - t0
    finally:
        s.close()
    check(closed and dt <= 5.0,
          "stalled request body: connection closed after client_body_timeout (took %.2fs)"
          % dt)
    check(not data or data.startswith(b"HTTP/1.1 408") or data.startswith(b"HTTP/1.1 400"),
          "stalled body: no success response", data[:200])
    check(not ok.complete_requests(), "stalled body never completed at the backend")

    # keepalive_timeout: an idle keep-alive connection is closed
    s = connect(port)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        first = b""
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not first.endswith(b"ok\n"):
            s.settimeout(1)
            c = s.recv(4096)
            if not c:
                break
            first += c
        check(first.startswith(b"HTTP/1.1 200") and first.endswith(b"ok\n"),
              "keep-alive: first response", first[:200])
        time.sleep(0.4)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        second = b""
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not second.endswith(b"ok\n"):
            s.settimeout(1)
            c = s.recv(4096)
            if not c:
                break
            second += c
        check(second.startswith(b"HTTP/1.1 200"),
              "keep-alive: second request 0.4s later still served", second[:200])
        t0 = time.monotonic()
        data, closed = recv_until_close(s, 6)
        dt = time.monotonic() - t0
    finally:
        s.close()
    check(closed and 0.6 <= dt <= 4.0,
          "idle client connection closed after keepalive_timeout = 1s (took %.2fs)" % dt)
    check(data == b"", "nothing sent on the idle connection before closing", data[:200])

    # send_timeout: the client reads the head, then nothing; proxyd gives up on it
    fds_before = len(os.listdir("/proc/%d/fd" % p.pid))
    s = connect(port, timeout=10)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"GET /big/x HTTP/1.1\r\nHost: a\r\n\r\n")
        head = s.recv(4096)
        m = p.wait_log(r"send_timeout expired writing to the client", 8)
        check(head.startswith(b"HTTP/1.1 200") and m,
              "a client that stops reading a 64 MiB body: send_timeout = 1s closes it", head[:100])
        data, closed = recv_until_close(s, 10, limit=BIG + (1 << 20))
        check(closed and len(head) + len(data) < BIG,
              "the client connection is closed before the body is complete (%d bytes arrived)"
              % (len(head) + len(data)))
    finally:
        s.close()
    deadline = time.monotonic() + 5
    while len(os.listdir("/proc/%d/fd" % p.pid)) > fds_before and time.monotonic() < deadline:
        time.sleep(0.1)
    check(len(os.listdir("/proc/%d/fd" % p.pid)) <= fds_before,
          "no descriptor (socket, pipe) left behind", (fds_before, os.listdir("/proc/%d/fd" % p.pid)))

    # still healthy afterwards
    r = http_request(port, target="/ok/after")
    check(r is not None and r.status == 200, "proxyd still proxies after the failures", r)
    check(p.alive(), "proxyd still running")


if __name__ == "__main__":
    log("test_failures: proxyd=%s" % os.environ.get("PROXYD"))
    run_main(main)
