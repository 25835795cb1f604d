#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Objects larger than the memory tier: a 64 MiB response passes through a cache with a
4 MiB memory tier.

  fill     the client gets it whole while it is written to disk as it arrives; proxyd's
           RSS grows by far less than the object (it is never all in memory)
  hit      the next request is a hit served from the file, whole, with the RSS still low;
           over HTTP/2 (h2c) too, where the file is read in pieces instead of spliced
  checked  after a restart a file whose body was changed is not served: the request
           goes to the origin"""

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, DataStream, Proxyd, Reply, check, check_eq, connect, free_port,  # noqa: E402
                     log, run_main)

SIZE = 64 << 20
# ASan's quarantine keeps freed memory resident: the RSS bound cannot hold in such a build
SANITIZED = bool(os.environ.get("PROXYD_SANITIZED"))
CONFIG = """workers = 2;
cache_path = "%(store)s";
cache_memory_size = "4m";
servers = (
  {
    name = "large";
    listen = [ "127.0.0.1:%(port)d" ];
    http2_cleartext = true;
    locations = (
      { prefix = "/"; proxy_pass = "http://%(origin)s"; cache = true; cache_max_object_size = "128m"; }
    );
  }
);
"""


def fetch(port, path):
    """GET on a connection of its own, read to its end: (head text, sha256 and length of the
    body, chunked framing taken off; a body cut short counts up to where it was cut)."""
    s = connect(port, timeout=60)
    s.sendall(("GET %s HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n" % path).encode())
    data = bytearray()
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        data += b
    s.close()
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    head = head.decode("latin-1")
    if (header(head, "Transfer-Encoding") or "").lower() != "chunked":
        return head, hashlib.sha256(rest).hexdigest(), len(rest)
    h, n, at = hashlib.sha256(), 0, 0
    while True:
        eol = rest.find(b"\r\n", at)
        if eol < 0:
            break
        size = int(rest[at:eol].split(b";")[0] or b"0", 16)
        if size == 0:
            break
        piece = rest[eol + 2:eol + 2 + size]
        h.update(piece)
        n += len(piece)
        at = eol + 4 + size
    return head, h.hexdigest(), n


def header(head, name):
    for ln in head.split("\r\n")[1:]:
        k, _, v = ln.partition(":")
        if k.strip().lower() == name.lower():
            return v.strip()
    return None


class RssPeak(threading.Thread):
    def __init__(self, p):
        super().__init__(daemon=True)
        self.p, self.peak, self.stop = p, 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.p.rss_kib() or 0)
            time.sleep(0.01)


def measured(p, port, path):
    base = p.rss_kib()
    t = RssPeak(p)
    t.start()
    r = fetch(port, path)
    t.stop.set()
    t.join()
    return r, base, t.peak


def fill_then_hit(p, port, backend, store, want):
    """The first GET stores the 64 MiB object (one file), the second is a hit from it; proxyd's
    RSS grows by far less than the object both times. The hit's head."""
    (head, sha, n), base, peak = measured(p, port, "/big")
    log("fill: RSS %d KiB before, %d KiB at most while 64 MiB passed" % (base, peak))
    check(head.startswith("HTTP/1.1 200") and n == SIZE and sha == want, "fill: the client gets all 64 MiB",
          (head[:40], n))
    check("stored" in (header(head, "Cache-Status") or ""), "fill: it is stored", header(head, "Cache-Status"))
    if not SANITIZED:
        check(peak - base < 24 * 1024, "fill: proxyd's RSS grows by less than 24 MiB (%d KiB)" % (peak - base))
    files = [f for f in glob.glob(os.path.join(store, "*")) if os.path.getsize(f) > SIZE]
    check_eq(len(files), 1, "fill: the object is one file on disk")

    (head, sha, n), base, peak = measured(p, port, "/big")
    log("hit: RSS %d KiB before, %d KiB at most" % (base, peak))
    check(n == SIZE and sha == want, "hit: the client gets all 64 MiB", n)
    check("hit" in (header(head, "Cache-Status") or "").split("; "), "hit: from the cache",
          header(head, "Cache-Status"))
    check_eq(len(backend.requests), 1, "hit: the origin saw one request")
    if not SANITIZED:
        check(peak - base < 24 * 1024, "hit: proxyd's RSS grows by less than 24 MiB (%d KiB)" % (peak - base))
    return head


def main():
    data = DataStream(SIZE, seed=7)
    want = data.sha256()
    backend = Backend(lambda req: Reply(200, [("Cache-Control", "max-age=600")], data.blocks(256 << 10),
                                        length=SIZE))
    store = tempfile.mkdtemp(prefix="proxyd-large-")
    port = free_port()
    conf = CONFIG % {"store": store, "port": port, "origin": backend.address}
    p = Proxyd(conf, wait=("127.0.0.1", port))
    try:
        p.start()
        fill_then_hit(p, port, backend, store, want)
        files = [f for f in glob.glob(os.path.join(store, "*")) if os.path.getsize(f) > SIZE]

        # the same key: the same host (test.local, as the requests above)
        r = subprocess.run("curl -sS --http2-prior-knowledge --resolve test.local:%d:127.0.0.1 -D %s/h2-head "
                           "http://test.local:%d/big | sha256sum" % (port, store, port),
                           shell=True, capture_output=True, timeout=120)
        with open(os.path.join(store, "h2-head")) as f:
            h2head = f.read()
        os.unlink(os.path.join(store, "h2-head"))
        check(r.stdout.split()[0].decode() == want if r.stdout else False,
              "hit over HTTP/2: the client gets all 64 MiB", r.stderr)
        check(h2head.startswith("HTTP/2 200") and "; hit" in h2head, "hit over HTTP/2: from the cache", h2head[:200])
        check_eq(len(backend.requests), 1, "hit over HTTP/2: still one origin request")
        p.close()

        # a changed body byte: after a restart the file is checked whole before a hit is served
        with open(files[0], "r+b") as f:
            f.seek(os.path.getsize(files[0]) - 4096)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0xFF]))
        p = Proxyd(conf, wait=("127.0.0.1", port))
        p.start()
        head, sha, n = fetch(port, "/big")
        check(n == SIZE and sha == want, "checked: the client gets the right 64 MiB", n)
        check_eq(len(backend.requests), 2, "checked: the damaged file was not served; the origin was asked")
        check(p.wait_log("damaged", 5) is not None, "checked: the damage is logged")
    finally:
        p.close()
        backend.close()
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
