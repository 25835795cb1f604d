#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Collapsed requests follow the response being stored as it streams in.

  follow   the origin sends the head and half the body, then waits for the test: all
           5 concurrent clients (and one more over HTTP/2, curl h2c) have the first half
           before the rest is released; one origin request; every client gets the whole,
           identical body; the followers say collapsed in Cache-Status; the object is a
           hit afterwards
  cut      the origin cuts the body after half: no client gets a response that looks
           complete (fewer bytes than its Content-Length, then the connection ends), and
           nothing is stored"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, Proxyd, Reply, check, check_eq, connect, free_port,  # noqa: E402
                     http_request, run_main)

SIZE = 256 * 1024
HALF = SIZE // 2
BODY = bytes((i * 7 + i // 251) & 0xFF for i in range(SIZE))
CLIENTS = 5

CONFIG = """workers = 2;
cache_path = "%(store)s";
servers = (
  {
    name = "follow";
    listen = [ "127.0.0.1:%(port)d" ];
    http2_cleartext = true;
    locations = (
      { prefix = "/"; proxy_pass = "http://%(origin)s"; cache = true; }
    );
  }
);
"""


class Client(threading.Thread):
    """GET path on a connection of its own, reading until the connection ends."""

    def __init__(self, port, path):
        super().__init__(daemon=True)
        self.port, self.path = port, path
        self.data = b""
        self.half = threading.Event()
        self.closed = False

    def run(self):
        s = connect(self.port, timeout=20)
        s.sendall(("GET %s HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n" % self.path).encode())
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    self.closed = True
                    break
                self.data += b
                i = self.data.find(b"\r\n\r\n")
                if i >= 0 and len(self.data) - i - 4 >= HALF:
                    self.half.set()
        except OSError:
            self.closed = True
        finally:
            s.close()

    def head_body(self):
        i = self.data.find(b"\r\n\r\n")
        if i < 0:
            return "", b""
        return self.data[:i].decode("latin-1"), self.data[i + 4:]

    def header(self, name):
        for ln in self.head_body()[0].split("\r\n")[1:]:
            k, _, v = ln.partition(":")
            if k.strip().lower() == name.lower():
                return v.strip()
        return None


def run_clients(port, backend, path):
    clients = [Client(port, path) for _ in range(CLIENTS)]
    clients[0].start()
    backend.wait_requests(1, timeout=10)  # the first one's fetch is on its way
    for c in clients[1:]:
        c.start()
    return clients


def test_follow(port, backend, routes):
    path = "/follow/ok"
    gate = threading.Event()

    def body():
        yield BODY[:HALF]
        gate.wait(20)
        yield BODY[HALF:]
    routes[path] = lambda req: Reply(200, [("Cache-Control", "max-age=600")], body(), length=SIZE)
    clients = run_clients(port, backend, path)
    out = os.path.join(tempfile.gettempdir(), "proxyd-follow-h2-%d" % os.getpid())
    h2 = subprocess.Popen(["curl", "-sS", "-N", "--http2-prior-knowledge", "--resolve", "test.local:%d:127.0.0.1" % port,
                           "-D", out + ".head", "-o", out, "http://test.local:%d%s" % (port, path)])
    got_half = all(c.half.wait(10) for c in clients)
    deadline = time.monotonic() + 10
    while (not os.path.exists(out) or os.path.getsize(out) < HALF) and time.monotonic() < deadline:
        time.sleep(0.02)
    h2_half = os.path.exists(out) and os.path.getsize(out) >= HALF
    check(not gate.is_set(), "the origin still holds the second half")
    check(h2_half, "the HTTP/2 client has the first half too", os.path.exists(out) and os.path.getsize(out))
    check(got_half, "all %d clients have the first half before the rest is released" % CLIENTS,
          [len(c.data) for c in clients])
    gate.set()
    for c in clients:
        c.join(20)
    h2.wait(20)
    with open(out, "rb") as f:
        h2_body = f.read()
    with open(out + ".head") as f:
        h2_head = f.read()
    os.unlink(out)
    os.unlink(out + ".head")
    check(h2_body == BODY and "collapsed" in h2_head, "the HTTP/2 client got the whole body, collapsed",
          (len(h2_body), h2_head[:200]))
    check_eq(sum(1 for r in backend.requests if r.target == path), 1, "one origin request")
    for i, c in enumerate(clients):
        head, b = c.head_body()
        check(head.startswith("HTTP/1.1 200") and b == BODY and c.closed,
              "client %d got the whole body" % i, (head[:40], len(b)))
    followers = [c for c in clients[1:] if "collapsed" in (c.header("Cache-Status") or "")]
    check_eq(len(followers), CLIENTS - 1, "the followers say collapsed in Cache-Status")
    r = http_request(port, target=path, timeout=10)
    check(r is not None and r.body == BODY and "hit" in (r.header("Cache-Status") or "").split("; "),
          "afterwards the object is a hit", r and r.header("Cache-Status"))
    check_eq(sum(1 for r in backend.requests if r.target == path), 1, "still one origin request")


def test_cut(port, backend, routes):
    path = "/follow/cut"
    gate = threading.Event()
    calls = [0]

    def body():
        yield BODY[:HALF]
        gate.wait(20)
        raise OSError("cut")  # the backend closes the connection

    def handler(req):
        calls[0] += 1
        if calls[0] == 1:
            return Reply(200, [("Cache-Control", "max-age=600")], body(), length=SIZE)
        return Reply(200, [("Cache-Control", "max-age=600")], b"whole\n")
    routes[path] = handler
    backend.reset()
    clients = run_clients(port, backend, path)
    got_half = all(c.half.wait(10) for c in clients)
    check(got_half, "cut: every client follows the first half", [len(c.data) for c in clients])
    gate.set()
    for c in clients:
        c.join(20)
    for i, c in enumerate(clients):
        head, b = c.head_body()
        length = int(c.header("Content-Length") or -1)
        check(c.closed and length == SIZE and len(b) < length,
              "cut: client %d saw the connection end before its Content-Length" % i, (head[:40], len(b), length))
    r = http_request(port, target=path, timeout=10)
    check(r is not None and r.body == b"whole\n", "cut: nothing was stored; the next request goes upstream",
          r and (r.status, r.body[:20]))


def main():
    routes = {}

    def origin(req):
        f = routes.get(req.target)
        return f(req) if f else Reply(404, [], b"no route\n")
    backend = Backend(origin)
    store = tempfile.mkdtemp(prefix="proxyd-follow-")
    port = free_port()
    p = Proxyd(CONFIG % {"store": store, "port": port, "origin": backend.address}, wait=("127.0.0.1", port))
    try:
        p.start()
        test_follow(port, backend, routes)
        test_cut(port, backend, routes)
    finally:
        p.close()
        backend.close()
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
