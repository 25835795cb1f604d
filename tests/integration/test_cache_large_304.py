#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A 304 for an object whose body is on disk only: a 64 MiB object (ETag, max-age=1) in a
cache with a 4 MiB memory tier is revalidated once stale; the origin answers 304 with a new
field (X-Version: 2) and a new Cache-Control (max-age=3600).

  merged   the client gets 200, the whole stored body, X-Version: 2
  hit      the next request is a hit with X-Version: 2, the origin not asked
  restart  after a restart still a hit with X-Version: 2 and the whole body: the merged head
           was written to the object's file (one file, its checksum right)"""

import glob
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Backend, DataStream, Proxyd, Reply, check, check_eq, free_port, log, run_main  # noqa: E402
from test_cache_large import CONFIG, SANITIZED, SIZE, fetch, header, measured  # noqa: E402


def is_hit(head):
    return "hit" in (header(head, "Cache-Status") or "").split("; ")


def main():
    data = DataStream(SIZE, seed=13)
    want = data.sha256()

    def handler(req):
        if req.header("If-None-Match") == '"v1"':
            return Reply(304, [("ETag", '"v1"'), ("X-Version", "2"), ("Cache-Control", "max-age=3600")], b"")
        return Reply(200, [("ETag", '"v1"'), ("X-Version", "1"), ("Cache-Control", "max-age=1")],
                     data.blocks(256 << 10), length=SIZE)

    backend = Backend(handler)
    store = tempfile.mkdtemp(prefix="proxyd-304-")
    port = free_port()
    conf = CONFIG % {"store": store, "port": port, "origin": backend.address}
    p = Proxyd(conf, wait=("127.0.0.1", port))
    try:
        p.start()
        head, sha, n = fetch(port, "/big")
        check(n == SIZE and sha == want and header(head, "X-Version") == "1", "fill: stored with X-Version: 1",
              (head[:200], n))
        time.sleep(2.2)  # max-age=1: stale from now on

        (head, sha, n), base, peak = measured(p, port, "/big")
        log("merged: RSS %d KiB before, %d KiB at most" % (base, peak))
        check_eq(len(backend.requests), 2, "merged: the stale object was revalidated")
        check_eq(backend.requests[-1].header("If-None-Match"), '"v1"', "merged: with its ETag")
        check(head.startswith("HTTP/1.1 200"), "merged: the client gets 200", head[:40])
        check(n == SIZE and sha == want, "merged: the client gets the stored 64 MiB", n)
        check_eq(header(head, "X-Version"), "2", "merged: with the 304's field")
        check_eq(header(head, "Content-Length"), str(SIZE), "merged: with the stored length")
        if not SANITIZED:
            check(peak - base < 24 * 1024, "merged: proxyd's RSS grows by less than 24 MiB (%d KiB)" % (peak - base))

        head, sha, n = fetch(port, "/big")
        check(is_hit(head), "hit: from the cache", header(head, "Cache-Status"))
        check_eq(header(head, "X-Version"), "2", "hit: with the 304's field")
        check(n == SIZE and sha == want, "hit: the whole body", n)
        check_eq(len(backend.requests), 2, "hit: fresh for an hour, the origin not asked")
        files = [f for f in glob.glob(os.path.join(store, "*"))]
        check(len(files) == 1 and os.path.getsize(files[0]) > SIZE, "hit: one file for the object", files)
        p.close()

        p = Proxyd(conf, wait=("127.0.0.1", port))
        p.start()
        head, sha, n = fetch(port, "/big")
        check(is_hit(head), "restart: a hit", header(head, "Cache-Status"))
        check_eq(header(head, "X-Version"), "2", "restart: the merged head was stored")
        check(n == SIZE and sha == want, "restart: the whole body", n)
        check_eq(len(backend.requests), 2, "restart: the origin not asked")
        check(p.wait_log("damaged", 1) is None, "restart: the file is not damaged")
    finally:
        p.close()
        backend.close()
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
