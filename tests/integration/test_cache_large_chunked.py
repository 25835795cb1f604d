#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Objects of unknown length larger than the memory tier: a chunked 64 MiB response passes
through a cache with a 4 MiB memory tier (test_cache_large.py does this for Content-Length).

  fill     the client gets it whole; once the body outgrows the memory tier it goes to its
           file as it arrives: proxyd's RSS grows by far less than the object
  hit      the next request is a hit served from the file, whole, the origin asked once
  cut      a chunked response cut midway is not stored: the next request goes to the origin
           and no file is left of it
  restart  after a restart the object is still a hit, whole"""

import glob
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Backend, DataStream, Proxyd, Reply, check, check_eq, free_port, run_main  # noqa: E402
from test_cache_large import CONFIG, SIZE, fetch, fill_then_hit, header  # noqa: E402

CUT = 16 << 20


def cut_body(data):
    """The first CUT bytes of data, then the connection goes (no last chunk)."""
    sent = 0
    for b in data.blocks(256 << 10):
        if sent >= CUT:
            raise OSError("cut")
        sent += len(b)
        yield b


def main():
    data = DataStream(SIZE, seed=11)
    want = data.sha256()

    def handler(req):
        if req.target == "/cut":
            return Reply(200, [("Cache-Control", "max-age=600")], cut_body(data), chunked=True)
        return Reply(200, [("Cache-Control", "max-age=600")], data.blocks(256 << 10), chunked=True)

    backend = Backend(handler)
    store = tempfile.mkdtemp(prefix="proxyd-chunked-")
    port = free_port()
    conf = CONFIG % {"store": store, "port": port, "origin": backend.address}
    p = Proxyd(conf, wait=("127.0.0.1", port))
    try:
        p.start()
        head = fill_then_hit(p, port, backend, store, want)
        check_eq(header(head, "Content-Length"), str(SIZE), "hit: with its length now known")

        head, sha, n = fetch(port, "/cut")
        check(n < SIZE, "cut: the client does not get a whole body", n)
        head, sha, n = fetch(port, "/cut")
        check_eq(len([r for r in backend.requests if r.target == "/cut"]), 2,
                 "cut: not stored, the next request goes to the origin")
        left = sorted(os.path.basename(f) for f in glob.glob(os.path.join(store, "*")))
        check(len(left) == 1, "cut: no file is left of it (only the whole object's)", left)
        p.close()

        p = Proxyd(conf, wait=("127.0.0.1", port))
        p.start()
        head, sha, n = fetch(port, "/big")
        check(n == SIZE and sha == want, "restart: the client gets all 64 MiB", n)
        check("hit" in (header(head, "Cache-Status") or "").split("; "), "restart: a hit",
              header(head, "Cache-Status"))
        check_eq(len(backend.requests), 3, "restart: the origin was not asked for it")
    finally:
        p.close()
        backend.close()
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
