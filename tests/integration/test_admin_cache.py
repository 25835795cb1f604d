#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The admin endpoint and the response cache and per-client limits: purging
by key and by prefix through `proxyd ctl purge-cache` and POST
/api/cache/purge (checked with requests that miss again), the caller in the
journal line, and the proxyd_cache_* and proxyd_limit_rejected_total metrics
checked against the traffic the test sent (and with promtool)."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, Proxyd, Reply, check, check_eq, curl, free_port,  # noqa: E402
                     http_request, run_main)
from test_admin import PROMTOOL, admin_request, ctl, metric, parse_metrics  # noqa: E402

BODIES = {"/c/a": b"a" * 1000, "/c/b": b"b" * 1000, "/c/big": b"g" * 2000}

CONFIG = """workers = 2;
cache_path = "%(store)s";
cache_memory_size = "3500";
limits = {
  few = { rate = "1r/m"; burst = 2; nodelay = true; };
  unused = { rate = "1r/m"; burst = 5; nodelay = true; };
};
servers = ( { name = "main"; listen = [ "http" ];
  locations = (
    { prefix = "/c/"; proxy_pass = "http://%(origin)s"; cache = true; },
    { prefix = "/lim/"; limit = [ "few" ]; proxy_pass = "http://%(origin)s"; },
    { prefix = "/free/"; limit = [ "unused" ]; proxy_pass = "http://%(origin)s"; }
  ); } );
"""


def origin(req):
    if req.target in ("/lim/x", "/free/x"):
        return Reply(200, [], b"ok\n")
    body = BODIES.get(req.target)
    if body is None:
        return Reply(404, [], b"no\n")
    return Reply(200, [("Content-Type", "text/plain"), ("Cache-Control", "max-age=600")], body)


def seen(backend, path):
    return sum(1 for r in backend.requests if r.target == path)


def get(port, path):
    r = http_request(port, target=path)
    if r is None:
        raise RuntimeError("no response for GET %s" % path)
    return r


def cache_status(r):
    return r.header("Cache-Status") or ""


def metrics(sock):
    status, _, body = admin_request("/metrics", sock_path=sock)
    check_eq(status, 200, "GET /metrics")
    return body.decode(), parse_metrics(body.decode())


def curl_purge(sock, key, method="POST"):
    cp = curl(["--unix-socket", sock, "-X", method, "-w", "\n%{http_code}",
               "http://admin/api/cache/purge?key=" + key])
    out = cp.stdout.decode().rsplit("\n", 1)
    return int(out[1]), out[0]


def main():
    backend = Backend(origin)
    tmp = tempfile.mkdtemp(prefix="proxyd-admin-cache-")
    sock = os.path.join(tmp, "admin.sock")
    store = os.path.join(tmp, "store")
    os.mkdir(store)
    port = free_port()
    try:
        conf = CONFIG % {"store": store, "origin": backend.address}
        with Proxyd(conf, sockets=[("127.0.0.1:%d" % port, "http"), (sock, "admin")]) as p:
            cache_checks(p, port, sock, backend)
            limit_checks(port, sock)
    finally:
        backend.close()
        shutil.rmtree(tmp, ignore_errors=True)


def cache_checks(p, port, sock, backend):
    _, ms = metrics(sock)
    check_eq([metric(ms, n) for n in ("proxyd_cache_hits_total", "proxyd_cache_misses_total",
                                      "proxyd_cache_objects", "proxyd_cache_evictions_total")],
             [0.0] * 4, "before any request the cache counts nothing")

    # two objects stored, each then served from the cache
    for path in ("/c/a", "/c/b"):
        r = get(port, path)
        check(r.status == 200 and "fwd=uri-miss" in cache_status(r) and "stored" in cache_status(r),
              "GET %s is a miss, stored" % path, cache_status(r))
    for path in ("/c/a", "/c/b"):
        r = get(port, path)
        check(r.status == 200 and r.body == BODIES[path] and "; hit" in cache_status(r),
              "GET %s again is a hit" % path, cache_status(r))
    check_eq((seen(backend, "/c/a"), seen(backend, "/c/b")), (1, 1), "the origin saw each path once")
    text, ms = metrics(sock)
    check_eq(metric(ms, "proxyd_cache_hits_total"), 2.0, "proxyd_cache_hits_total is 2")
    check_eq(metric(ms, "proxyd_cache_misses_total"), 2.0, "proxyd_cache_misses_total is 2")
    check_eq(metric(ms, "proxyd_cache_stores_total"), 2.0, "proxyd_cache_stores_total is 2")
    check_eq(metric(ms, "proxyd_cache_objects"), 2.0, "proxyd_cache_objects is 2")
    check_eq(metric(ms, "proxyd_cache_evictions_total"), 0.0, "no eviction yet")
    mem, disk = metric(ms, "proxyd_cache_memory_bytes"), metric(ms, "proxyd_cache_disk_bytes")
    check(mem is not None and 2000 < mem <= 3500, "proxyd_cache_memory_bytes holds both bodies", mem)
    check(disk is not None and disk > 2000, "proxyd_cache_disk_bytes holds both files", disk)
    pr = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    check(pr.returncode == 0, "promtool check metrics accepts /metrics with the cache families",
          pr.stdout + pr.stderr)

    # one key through proxyd ctl
    cp = ctl(sock, "purge-cache", "http://test.local/c/a", popen=True)
    out, err = cp.communicate(timeout=30)
    ans = json.loads(out) if cp.returncode == 0 else {}
    check(cp.returncode == 0 and ans.get("purged") == 1 and ans.get("prefix") is False,
          "proxyd ctl purge-cache KEY purges 1 object", out + err)
    m = p.wait_log(r"cache purge of http://test\.local/c/a: 1 object\(s\) removed \(by pid (\d+) uid (\d+)\)")
    check(m is not None and int(m.group(1)) == cp.pid and int(m.group(2)) == os.getuid(),
          "the purge is logged with the caller's pid and uid", m.group(0) if m else p.log_text()[-800:])
    r = get(port, "/c/a")
    check(r.status == 200 and "fwd=uri-miss" in cache_status(r) and seen(backend, "/c/a") == 2,
          "after the purge GET /c/a is a miss that reaches the origin", cache_status(r))
    r = get(port, "/c/b")
    check("; hit" in cache_status(r), "GET /c/b (not purged) is still a hit", cache_status(r))

    # the rest by prefix through curl
    status, body = curl_purge(sock, "http://test.local/c/*")
    ans = json.loads(body) if status == 200 else {}
    check(status == 200 and ans.get("purged") == 2 and ans.get("prefix") is True
          and ans.get("key") == "http://test.local/c/*",
          "POST /api/cache/purge?key=PREFIX* (curl) purges 2 objects", (status, body))
    check(p.wait_log(r"cache purge of http://test\.local/c/\*: 2 object\(s\) removed \(by pid \d+ uid %d\)"
                     % os.getuid()) is not None, "the prefix purge is logged with the caller")
    for path in ("/c/a", "/c/b"):
        r = get(port, path)
        check("fwd=uri-miss" in cache_status(r), "after the prefix purge GET %s is a miss" % path,
              cache_status(r))
    check_eq((seen(backend, "/c/a"), seen(backend, "/c/b")), (3, 2), "the origin saw the misses")

    # the other way round: a key through curl, a prefix through proxyd ctl
    status, body = curl_purge(sock, "http://test.local/c/b")
    check(status == 200 and json.loads(body).get("purged") == 1, "curl purges one key", (status, body))
    status, body = curl_purge(sock, "http://test.local/c/b")
    check(status == 200 and json.loads(body).get("purged") == 0, "a key no longer stored: purged 0",
          (status, body))
    rc, out, err = ctl(sock, "purge-cache", "http://test.local/*")
    check(rc == 0 and json.loads(out).get("purged") == 1, "proxyd ctl purge-cache PREFIX* purges 1", out + err)
    for path in ("/c/a", "/c/b"):
        r = get(port, path)
        check("fwd=uri-miss" in cache_status(r), "after the second purge GET %s is a miss" % path,
              cache_status(r))

    # errors
    check_eq(curl_purge(sock, "x", method="GET")[0], 405, "GET /api/cache/purge is 405")
    status, body = curl_purge(sock, "")
    check(status == 400 and "key=" in body, "a purge without key= is 400", body)
    rc, out, err = ctl(sock, "purge-cache")
    check(rc != 0 and "expected 1 argument" in err, "proxyd ctl purge-cache without KEY is refused", err)
    check_eq(admin_request("/api/upstreams/purge?upstream=x&server=y", "POST", sock_path=sock)[0], 404,
             "purge is not an upstream command")

    # a third object over cache_memory_size: the oldest body in memory is dropped (kept on disk)
    _, before = metrics(sock)
    r = get(port, "/c/big")
    check("stored" in cache_status(r), "GET /c/big is stored", cache_status(r))
    _, ms = metrics(sock)
    check_eq(metric(ms, "proxyd_cache_evictions_total"), 1.0, "one eviction to stay within 3500 bytes")
    check(metric(ms, "proxyd_cache_memory_bytes") <= 3500, "memory bytes within cache_memory_size",
          metric(ms, "proxyd_cache_memory_bytes"))
    check_eq(metric(ms, "proxyd_cache_objects"), 3.0, "the evicted body stays on disk: 3 objects")
    # traffic of this test: misses 2 + 1 + 2 + 2 + 1 (big) = 8; hits 2 + 1 (/c/b) = 3
    check_eq((metric(ms, "proxyd_cache_hits_total"), metric(ms, "proxyd_cache_misses_total")), (3.0, 8.0),
             "hits and misses match the requests sent")
    check_eq(metric(ms, "proxyd_cache_purged_total"), 5.0, "proxyd_cache_purged_total is 1 + 2 + 1 + 1")
    r = get(port, "/c/a")
    check(r.body == BODIES["/c/a"] and "; hit" in cache_status(r),
          "the object whose body left memory is a hit from disk", cache_status(r))


def limit_checks(port, sock):
    codes = [get(port, "/lim/x").status for _ in range(7)]
    n429 = codes.count(429)
    check(codes[:3] == [200] * 3 and n429 == 4, "1 request and a burst of 2 pass, 4 are rejected", codes)
    for _ in range(2):
        check_eq(get(port, "/free/x").status, 200, "a request under the unused limit passes")
    text, ms = metrics(sock)
    check_eq(metric(ms, "proxyd_limit_rejected_total", limit="few"), float(n429),
             "proxyd_limit_rejected_total{limit=\"few\"} is the number of 429s")
    check_eq(metric(ms, "proxyd_limit_rejected_total", limit="unused"), 0.0,
             "a limit that rejected nothing shows 0")
    pr = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    check(pr.returncode == 0, "promtool check metrics accepts /metrics with the limit family",
          pr.stdout + pr.stderr)


if __name__ == "__main__":
    run_main(main)
