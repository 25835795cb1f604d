#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Background refresh (RFC 5861 stale-while-revalidate) against a scripted origin whose
refresh answers wait until the test releases them.

  refresh     a stale object within its stale-while-revalidate window is answered at
              once (Cache-Status fwd=stale) while the origin still holds the refresh;
              N concurrent stale hits: one origin request; once released the next
              request is a hit with the new body
  revalidate  the refresh carries the stored validator; a 304 makes the copy fresh
  failures    a refresh answered 500 or cut off by the origin keeps the stale copy
  lifetime    a reload while a refresh waits lets it end and store; a stop while one
              waits exits cleanly (status 0, no sanitizer report)"""

import os
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, Proxyd, Reply, check, check_eq, free_port,  # noqa: E402
                     http_request, run_main)

SWR = [("Cache-Control", "max-age=1, stale-while-revalidate=600"), ("Age", "5")]
FRESH = [("Cache-Control", "max-age=600")]

CONFIG = """workers = 2;
cache_path = "%(store)s";
servers = (
  {
    name = "refresh";
    listen = [ "127.0.0.1:%(port)d" ];
    locations = (
      { prefix = "/"; proxy_pass = "http://%(origin)s"; cache = true; }
    );
  }
);
"""


class Origin:
    """Per path: the first request is answered at once (stale within
    stale-while-revalidate), every later one waits for the path's gate and
    is answered by the path's `later` function."""

    def __init__(self):
        self.paths = {}
        self.backend = Backend(self.handle)

    def add(self, path, first, later):
        self.paths[path] = {"gate": threading.Event(), "first": first, "later": later, "n": 0}
        return self.paths[path]["gate"]

    def handle(self, req):
        p = self.paths.get(req.target)
        if p is None:
            return Reply(404, [], b"no route\n")
        p["n"] += 1
        if p["n"] == 1:
            return p["first"](req)
        p["gate"].wait(20)
        return p["later"](req)

    def seen(self, path):
        return sum(1 for r in self.backend.requests if r.target == path)

    def wait_seen(self, path, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        while self.seen(path) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.seen(path)


def get(port, path, timeout=10.0):
    r = http_request(port, target=path, timeout=timeout)
    if r is None:
        raise RuntimeError("no response for %s" % path)
    return r


def refreshes_ended(p, path):
    return sum(1 for d in p.access_lines() if d.get("uri") == path and d.get("cache") == "REFRESH")


def wait_refreshes(p, path, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while refreshes_ended(p, path) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return refreshes_ended(p, path)


def test_refresh(p, port, o):
    path = "/r/new"
    gate = o.add(path, lambda req: Reply(200, list(SWR), b"version 1\n"),
                 lambda req: Reply(200, list(FRESH), b"version 2\n"))
    first = get(port, path)
    check_eq(first.body, b"version 1\n", "the first request fetches version 1")
    n = 8
    results = [None] * n

    def fetch(i):
        results[i] = http_request(port, target=path, timeout=10)
    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    check(not gate.is_set(), "the origin still holds the refresh")
    check(all(r is not None and r.status == 200 and r.body == b"version 1\n" for r in results),
          "%d concurrent stale hits are answered with the stored copy while the refresh waits" % n,
          [r and (r.status, r.body) for r in results])
    statuses = [r.header("Cache-Status") or "" for r in results if r]
    check(all("fwd=stale" in s and "stale-while-revalidate" in s for s in statuses),
          "Cache-Status says fwd=stale, detail=stale-while-revalidate", statuses[:2])
    check_eq(o.wait_seen(path, 2), 2, "the origin got one refresh request")
    refresh_req = o.backend.requests[-1]
    check_eq(refresh_req.method, "GET", "the refresh is a GET")
    gate.set()
    check_eq(wait_refreshes(p, path, 1), 1, "the refresh ended (its access entry says cache=REFRESH)")
    after = get(port, path)
    check_eq(after.body, b"version 2\n", "after the refresh, the new body is served")
    check("hit" in (after.header("Cache-Status") or "").split("; "), "and it is a hit",
          after.header("Cache-Status"))
    check_eq(o.seen(path), 2, "no more origin requests than the one refresh")


def test_revalidate(p, port, o):
    path = "/r/etag"
    seen_inm = []

    def later(req):
        seen_inm.append(req.header("If-None-Match"))
        return Reply(304, [("Cache-Control", "max-age=600"), ("ETag", '"e1"')], b"")
    gate = o.add(path, lambda req: Reply(200, list(SWR) + [("ETag", '"e1"')], b"etag body\n"), later)
    get(port, path)
    r = get(port, path)
    check(r.body == b"etag body\n" and "fwd=stale" in (r.header("Cache-Status") or ""),
          "stale within stale-while-revalidate: answered at once", r)
    gate.set()
    check_eq(wait_refreshes(p, path, 1), 1, "the revalidating refresh ended")
    check_eq(seen_inm, ['"e1"'], "the refresh asked with the stored ETag")
    r = get(port, path)
    check(r.body == b"etag body\n" and "hit" in (r.header("Cache-Status") or "").split("; "),
          "the 304 made the stored copy fresh: a hit with the stored body", (r, r.header("Cache-Status")))
    check_eq(o.seen(path), 2, "one origin request for the refresh")


def test_failures(p, port, o):
    for path, later, what in (
            ("/r/500", lambda req: Reply(500, [], b"broken\n"), "a refresh answered 500"),
            ("/r/cut", lambda req: Reply(200, list(FRESH), b"partial", length=100, after="close"),
             "a refresh whose body the origin cuts"),
            ("/r/closed", lambda req: Reply(raw=b"", after="close"), "a refresh the origin closes")):
        gate = o.add(path, lambda req: Reply(200, list(SWR), b"the stale copy\n"), later)
        gate.set()
        get(port, path)
        r = get(port, path)
        check_eq(r.body, b"the stale copy\n", "%s: the client got the stale copy" % what)
        check(wait_refreshes(p, path, 1) >= 1, "%s: the refresh ended" % what)
        r = get(port, path)
        check(r.status == 200 and r.body == b"the stale copy\n" and "fwd=stale" in (r.header("Cache-Status") or ""),
              "%s: the stale copy is kept and served" % what, (r, r.header("Cache-Status")))


def test_reload_and_stop(store):
    """A reload while a refresh waits: it ends and stores under the old configuration; a
    stop while one waits: proxyd exits cleanly."""
    o = Origin()
    port = free_port()
    p = Proxyd(CONFIG % {"store": store, "port": port, "origin": o.backend.address},
               wait=("127.0.0.1", port))
    p.start()
    try:
        path = "/r/reload"
        gate = o.add(path, lambda req: Reply(200, list(SWR), b"old\n"),
                     lambda req: Reply(200, list(FRESH), b"new\n"))
        get(port, path)
        get(port, path)
        check_eq(o.wait_seen(path, 2), 2, "reload: the refresh reached the origin")
        os.kill(p.pid, signal.SIGHUP)
        check(p.wait_log(r"[Rr]eload", 10) is not None, "reload: proxyd reloaded", p.log_text()[-2000:])
        gate.set()
        check_eq(wait_refreshes(p, path, 1), 1, "reload: the refresh ended after the reload")
        check_eq(get(port, path).body, b"new\n", "reload: what it fetched was stored")

        path = "/r/stop"
        o.add(path, lambda req: Reply(200, list(SWR), b"old\n"), lambda req: Reply(200, list(FRESH), b"new\n"))
        get(port, path)
        get(port, path)
        check_eq(o.wait_seen(path, 2), 2, "stop: a refresh is waiting at the origin")
        rc = p.stop()
        check_eq(rc, 0, "stop: proxyd exits with status 0 while a refresh waits")
    finally:
        p.close()
        o.backend.close()


def main():
    o = Origin()
    store = tempfile.mkdtemp(prefix="proxyd-refresh-")
    port = free_port()
    p = Proxyd(CONFIG % {"store": store, "port": port, "origin": o.backend.address},
               wait=("127.0.0.1", port))
    try:
        p.start()
        test_refresh(p, port, o)
        test_revalidate(p, port, o)
        test_failures(p, port, o)
        p.close()
        p = None
        test_reload_and_stop(tempfile.mkdtemp(dir=store))
    finally:
        if p:
            p.close()
        for path in o.paths.values():
            path["gate"].set()
        o.backend.close()
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
