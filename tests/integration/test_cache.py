#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The response cache (RFC 9111, RFC 5861, RFC 9211) against a scripted origin.

Every case uses its own path; the origin counts the requests per path, so
"served from the cache" means "the origin did not see it". Staleness is made
without waiting: the origin sends an Age larger than max-age.

  freshness      max-age, s-maxage over max-age, Expires - Date, invalid
                 Expires, cache_valid, heuristic (Last-Modified), Age sent
  not stored     no-store, private, Set-Cookie, no freshness, Vary: *,
                 Authorization (unless public), larger than
                 cache_max_object_size, a truncated upstream body
  request        no-cache, max-age=0, min-fresh, max-stale, only-if-cached,
                 no-store; must-revalidate forbids max-stale
  Vary           one object per variant
  validation     If-None-Match / If-Modified-Since sent for a stale object,
                 304 merged (new freshness, stored body); client conditionals
                 answered 304 from the cache; HEAD from a stored GET; byte
                 ranges and If-Range from a stored response
  invalidation   POST invalidates its URI and its Location
  stale          stale-if-error and cache_use_stale for 5xx and a dead origin
  collapsing     concurrent misses: one origin request
  purge          PURGE of a key and of a prefix; not allowed elsewhere;
                 a purge during a hit does not disturb the hit
  key            cache_key with variables; the default key; cache_min_uses
  store          restart persistence, a corrupted or truncated file never
                 served, eviction by cache_disk_size, a full disk (on a small
                 tmpfs, where mounting one is possible)"""

import glob
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from email.utils import formatdate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, Proxyd, Reply, check, check_eq, connect, free_port,  # noqa: E402
                     http_request, parse_responses, recv_until_close, run_main, run_proxyd)

ROUTES = {}


def origin(req):
    path = req.target.split("?")[0]
    f = ROUTES.get(path)
    if f is None:
        return Reply(404, [("Content-Type", "text/plain")], b"no route\n")
    return f(req)


def seen(backend, path):
    return sum(1 for r in backend.requests if r.target.split("?")[0] == path)


CONFIG = """workers = 2;
cache_path = "%(store)s";
cache_memory_size = "%(mem)s";
cache_disk_size = "%(disk)s";
servers = (
  {
    name = "cache";
    listen = [ "127.0.0.1:%(port)d" ];
    set_header = { X-Forwarded-For = "$remote_addr"; };
    locations = (
      { prefix = "/valid/"; proxy_pass = "http://%(origin)s"; cache = true;
        cache_valid = [ "200 10m", "404 1m" ]; },
      { prefix = "/noheur/"; proxy_pass = "http://%(origin)s"; cache = true; cache_heuristic = 0; },
      { prefix = "/small/"; proxy_pass = "http://%(origin)s"; cache = true; cache_max_object_size = "1k"; },
      { prefix = "/usestale/"; proxy_pass = "http://%(origin)s"; cache = true;
        cache_use_stale = [ "error", "timeout", "http_500", "http_502", "http_503", "http_504" ]; },
      { prefix = "/dead/"; proxy_pass = "http://127.0.0.1:%(dead)d"; cache = true;
        cache_use_stale = [ "error" ]; },
      { prefix = "/bypass/"; proxy_pass = "http://%(origin)s"; cache = true; cache_bypass = "$http_x_bypass";
        cache_no_store = "$http_x_nostore"; },
      { prefix = "/purgeable/"; proxy_pass = "http://%(origin)s"; cache = true; cache_purge = true;
        access = [ "allow 127.0.0.1", "deny all" ]; },
      { prefix = "/plain/"; proxy_pass = "http://%(origin)s"; },
      { prefix = "/key/"; proxy_pass = "http://%(origin)s"; cache = true; cache_key = "$uri"; },
      { prefix = "/uses/"; proxy_pass = "http://%(origin)s"; cache = true; cache_min_uses = 3; },
      { prefix = "/"; proxy_pass = "http://%(origin)s"; cache = true; }
    );
  }
);
"""


def start(backend, store, mem="64m", disk="1g", dead=None):
    port = free_port()
    conf = CONFIG % {"store": store, "mem": mem, "disk": disk, "port": port,
                     "origin": backend.address, "dead": dead or free_port()}
    p = Proxyd(conf, wait=("127.0.0.1", port))
    p.start()
    return p, port


def get(port, path, headers=None, method="GET"):
    r = http_request(port, method=method, target=path, headers=headers)
    if r is None:
        raise RuntimeError("no response for %s %s" % (method, path))
    return r


def fixed(headers, body=b"body\n", status=200):
    return lambda req: Reply(status, list(headers), body)


def counter(headers, status=200):
    """A body that changes with every origin request."""
    n = [0]

    def f(req):
        n[0] += 1
        return Reply(status, list(headers), ("version %d\n" % n[0]).encode())
    return f


def stored_twice(port, backend, path, headers, what, request_headers=None):
    """Fetch twice; True when the origin saw only one request."""
    ROUTES[path] = counter(headers)
    a = get(port, path, request_headers)
    b = get(port, path, request_headers)
    n = seen(backend, path)
    return a, b, n


# ---- freshness ----

def test_freshness(port, backend):
    a, b, n = stored_twice(port, backend, "/f/maxage", [("Cache-Control", "max-age=60")], "max-age")
    check_eq(n, 1, "max-age=60: the origin sees one request")
    check_eq(b.body, a.body, "max-age=60: the hit has the stored body")
    check("fwd=uri-miss" in (a.header("Cache-Status") or "") and "stored" in a.header("Cache-Status"),
          "the miss says fwd=uri-miss and stored", a.header("Cache-Status"))
    check((b.header("Cache-Status") or "").startswith("proxyd; hit; ttl="), "the hit says hit and ttl",
          b.header("Cache-Status"))
    check(b.header("Age") is not None and b.header("Age").isdigit(), "a hit has an Age", b.header("Age"))

    _, _, n = stored_twice(port, backend, "/f/smaxage", [("Cache-Control", "max-age=0, s-maxage=60")], "s")
    check_eq(n, 1, "s-maxage=60 wins over max-age=0 in a shared cache")
    _, _, n = stored_twice(port, backend, "/f/maxage0", [("Cache-Control", "max-age=0")], "0")
    check_eq(n, 2, "max-age=0 is stale at once: the second request goes to the origin")
    now = time.time()
    _, _, n = stored_twice(port, backend, "/f/expires", [("Date", formatdate(now, usegmt=True)),
                                                        ("Expires", formatdate(now + 3600, usegmt=True))], "e")
    check_eq(n, 1, "Expires one hour after Date: fresh")
    _, _, n = stored_twice(port, backend, "/f/expired", [("Date", formatdate(now, usegmt=True)),
                                                         ("Expires", formatdate(now - 3600, usegmt=True))], "e")
    check_eq(n, 2, "Expires before Date: stale")
    _, _, n = stored_twice(port, backend, "/f/expires0", [("Expires", "0")], "e0")
    check_eq(n, 2, "an invalid Expires is already expired")
    _, b, n = stored_twice(port, backend, "/f/age", [("Cache-Control", "max-age=100"), ("Age", "40")], "age")
    check_eq(n, 1, "max-age=100 with Age: 40 is fresh")
    check(int(b.header("Age", "0")) >= 40, "the Age sent counts the origin's Age", b.header("Age"))
    _, _, n = stored_twice(port, backend, "/f/aged", [("Cache-Control", "max-age=100"), ("Age", "200")], "aged")
    check_eq(n, 2, "max-age=100 with Age: 200 is stale")
    _, _, n = stored_twice(port, backend, "/valid/x", [], "valid")
    check_eq(n, 1, "cache_valid \"200 10m\" gives freshness when the origin gives none")
    _, _, n = stored_twice(port, backend, "/f/none", [], "none")
    check_eq(n, 2, "no freshness, no validator: not stored")
    lm = [("Date", formatdate(now, usegmt=True)), ("Last-Modified", formatdate(now - 3600, usegmt=True))]
    _, _, n = stored_twice(port, backend, "/f/heuristic", lm, "h")
    check_eq(n, 1, "heuristic freshness: 10 % of the Last-Modified age (6 minutes)")
    _, _, n = stored_twice(port, backend, "/noheur/x", lm, "nh")
    check_eq(n, 2, "cache_heuristic = 0: no heuristic freshness")


def test_not_stored(port, backend):
    for name, headers in [("nostore", [("Cache-Control", "max-age=60, no-store")]),
                          ("private", [("Cache-Control", "private, max-age=60")]),
                          ("cookie", [("Cache-Control", "max-age=60"), ("Set-Cookie", "a=b")]),
                          ("varystar", [("Cache-Control", "max-age=60"), ("Vary", "*")])]:
        _, _, n = stored_twice(port, backend, "/n/" + name, headers, name)
        check_eq(n, 2, "%s: not stored" % name)
    _, _, n = stored_twice(port, backend, "/n/cookiepublic", [("Cache-Control", "public, max-age=60"),
                                                             ("Set-Cookie", "a=b")], "cp")
    check_eq(n, 1, "Set-Cookie with public: stored")
    auth = [("Authorization", "Basic dTpw")]
    _, _, n = stored_twice(port, backend, "/n/auth", [("Cache-Control", "max-age=60")], "auth", auth)
    check_eq(n, 2, "a response to Authorization without public/s-maxage/must-revalidate: not stored")
    _, _, n = stored_twice(port, backend, "/n/authpublic", [("Cache-Control", "public, max-age=60")], "ap", auth)
    check_eq(n, 1, "a response to Authorization with public: stored (RFC 9111 3.5)")
    # a stored non-shareable object is not given to a request with Authorization
    ROUTES["/n/authother"] = counter([("Cache-Control", "max-age=60")])
    get(port, "/n/authother")
    get(port, "/n/authother", auth)
    check_eq(seen(backend, "/n/authother"), 2, "a request with Authorization is not answered by a shared copy")

    big = b"x" * 4000
    ROUTES["/small/big"] = fixed([("Cache-Control", "max-age=60")], big)
    a = get(port, "/small/big")
    b = get(port, "/small/big")
    check(a.body == big and b.body == big, "a response over cache_max_object_size is delivered whole")
    check_eq(seen(backend, "/small/big"), 2, "and not stored")
    ROUTES["/small/bigchunked"] = lambda req: Reply(200, [("Cache-Control", "max-age=60")], [b"y" * 700] * 3,
                                                     chunked=True)
    a = get(port, "/small/bigchunked")
    get(port, "/small/bigchunked")
    check_eq(len(a.body), 2100, "a chunked response over the limit is delivered whole")
    check_eq(seen(backend, "/small/bigchunked"), 2, "and not stored")
    ROUTES["/n/chunked"] = lambda req: Reply(200, [("Cache-Control", "max-age=60")], [b"a" * 100, b"b" * 50],
                                              chunked=True)
    get(port, "/n/chunked")
    b = get(port, "/n/chunked")
    check_eq(seen(backend, "/n/chunked"), 1, "a chunked response is stored")
    check(b.body == b"a" * 100 + b"b" * 50 and b.header("Content-Length") == "150",
          "and served with its length", b.header("Content-Length"))

    # the upstream closes after half of its Content-Length
    ROUTES["/n/truncated"] = lambda req: Reply(200, [("Cache-Control", "max-age=60"), ("Content-Length", "100")],
                                                b"z" * 50, after="close")
    s = connect(port)
    s.sendall(b"GET /n/truncated HTTP/1.1\r\nHost: test.local\r\n\r\n")
    data, _ = recv_until_close(s)
    s.close()
    check(data.startswith(b"HTTP/1.1 200") and not data.endswith(b"z" * 100), "the truncated response is cut")
    ROUTES["/n/truncated"] = fixed([("Cache-Control", "max-age=60")], b"w" * 100)
    b = get(port, "/n/truncated")
    check_eq(seen(backend, "/n/truncated"), 2, "a truncated upstream body is never stored")
    check_eq(b.body, b"w" * 100, "the next request gets the origin's whole body")

    ROUTES["/bypass/x"] = counter([("Cache-Control", "max-age=60")])
    get(port, "/bypass/x", [("X-Nostore", "1")])
    get(port, "/bypass/x")
    get(port, "/bypass/x")
    r = get(port, "/bypass/x", [("X-Bypass", "1")])
    check_eq(seen(backend, "/bypass/x"), 3, "cache_no_store: not stored; then stored; cache_bypass: forwarded")
    check("fwd=bypass" in (r.header("Cache-Status") or ""), "a bypass says fwd=bypass", r.header("Cache-Status"))


def test_key(port, backend):
    ROUTES["/key/a"] = counter([("Cache-Control", "max-age=60")])
    a = get(port, "/key/a?x=1")
    b = get(port, "/key/a?x=2", [("Host", "other.example")])
    check_eq(seen(backend, "/key/a"), 1, "cache_key = \"$uri\": the query and the host are not part of the key")
    check_eq(b.body, a.body, "the second request gets the first one's object")
    ROUTES["/f/q"] = counter([("Cache-Control", "max-age=60")])
    get(port, "/f/q?x=1")
    get(port, "/f/q?x=2")
    get(port, "/f/q?x=1", [("Host", "other.example")])
    get(port, "/f/q?x=1")
    check_eq(seen(backend, "/f/q"), 3, "the default key is scheme, host and request URI")


def test_min_uses(port, backend):
    ROUTES["/uses/x"] = counter([("Cache-Control", "max-age=60")])
    for _ in range(5):
        get(port, "/uses/x")
    check_eq(seen(backend, "/uses/x"), 3, "cache_min_uses = 3: stored at the third request, then hits")


def test_request_directives(port, backend):
    path = "/r/nocache"
    ROUTES[path] = counter([("Cache-Control", "max-age=60"), ("ETag", '"e1"')])
    get(port, path)
    r = get(port, path, [("Cache-Control", "no-cache")])
    check_eq(seen(backend, path), 2, "request no-cache goes to the origin")
    check_eq(backend.requests[-1].header("If-None-Match"), '"e1"', "conditionally (If-None-Match of the stored ETag)")
    check("fwd=request" in (r.header("Cache-Status") or ""), "Cache-Status says fwd=request", r.header("Cache-Status"))
    get(port, path, [("Pragma", "no-cache")])
    check_eq(seen(backend, path), 3, "Pragma: no-cache without Cache-Control too")
    get(port, path, [("Cache-Control", "max-age=0")])
    check_eq(seen(backend, path), 4, "request max-age=0 too")
    get(port, path, [("Cache-Control", "max-age=100")])
    check_eq(seen(backend, path), 4, "request max-age=100 is served from the cache")
    get(port, path, [("Cache-Control", "min-fresh=30")])
    check_eq(seen(backend, path), 4, "min-fresh=30 with 60 s of freshness: from the cache")
    get(port, path, [("Cache-Control", "min-fresh=300")])
    check_eq(seen(backend, path), 5, "min-fresh=300: to the origin")

    stale = "/r/stale"
    ROUTES[stale] = counter([("Cache-Control", "max-age=10"), ("Age", "30")])
    get(port, stale)
    get(port, stale, [("Cache-Control", "max-stale=60")])
    check_eq(seen(backend, stale), 1, "max-stale=60 accepts a copy 20 s stale")
    get(port, stale, [("Cache-Control", "max-stale=5")])
    check_eq(seen(backend, stale), 2, "max-stale=5 does not")
    must = "/r/must"
    ROUTES[must] = counter([("Cache-Control", "max-age=10, must-revalidate"), ("Age", "30")])
    get(port, must)
    get(port, must, [("Cache-Control", "max-stale")])
    check_eq(seen(backend, must), 2, "must-revalidate: max-stale cannot have a stale copy")
    r = get(port, "/r/never-stored", [("Cache-Control", "only-if-cached")])
    check_eq(r.status, 504, "only-if-cached with nothing stored: 504")
    check_eq(seen(backend, "/r/never-stored"), 0, "and the origin is not asked")
    ROUTES["/r/nostorereq"] = counter([("Cache-Control", "max-age=60")])
    get(port, "/r/nostorereq", [("Cache-Control", "no-store")])
    get(port, "/r/nostorereq")
    check_eq(seen(backend, "/r/nostorereq"), 2, "request no-store: not stored")


def test_vary(port, backend):
    path = "/v/enc"
    ROUTES[path] = lambda req: Reply(200, [("Cache-Control", "max-age=60"), ("Vary", "Accept-Encoding")],
                                     ("enc=%s\n" % req.header("Accept-Encoding", "none")).encode())
    g = [("Accept-Encoding", "gzip")]
    i = [("Accept-Encoding", "identity")]
    a = get(port, path, g)
    b = get(port, path, i)
    c = get(port, path, g)
    d = get(port, path, i)
    e = get(port, path, [("Accept-Encoding", " gzip ")])
    check_eq(seen(backend, path), 2, "one origin request per variant")
    check(c.body == a.body == e.body == b"enc=gzip\n" and d.body == b.body == b"enc=identity\n",
          "each variant is served its own body", (a.body, b.body, c.body, d.body))
    f = get(port, path, [("Accept-Encoding", "br")])
    check_eq(seen(backend, path), 3, "a new value is a new variant")
    check("fwd=vary-miss" in (f.header("Cache-Status") or ""), "and says fwd=vary-miss", f.header("Cache-Status"))


def test_validation(port, backend):
    path = "/val/etag"
    state = {"n": 0}

    def f(req):
        state["n"] += 1
        if req.header("If-None-Match") == '"v1"':
            return Reply(304, [("ETag", '"v1"'), ("Cache-Control", "max-age=60"), ("X-Fresh", "yes")], b"")
        return Reply(200, [("ETag", '"v1"'), ("Cache-Control", "max-age=10"), ("Age", "30"),
                           ("Content-Type", "text/x-stored")], b"stored body\n")
    ROUTES[path] = f
    get(port, path)
    r = get(port, path)
    check_eq(seen(backend, path), 2, "a stale object is revalidated")
    check_eq(backend.requests[-1].header("If-None-Match"), '"v1"', "with If-None-Match")
    check(r.status == 200 and r.body == b"stored body\n", "a 304 serves the stored body", r)
    check_eq(r.header("X-Fresh"), "yes", "with the 304's fields merged")
    check_eq(r.header("Content-Type"), "text/x-stored", "and the stored ones kept")
    check("fwd=stale; fwd-status=304" in (r.header("Cache-Status") or ""), "Cache-Status fwd=stale fwd-status=304",
          r.header("Cache-Status"))
    r = get(port, path)
    check_eq(seen(backend, path), 2, "the merged freshness (max-age=60) holds")

    lm = "/val/lm"
    ROUTES[lm] = lambda req: (Reply(304, [("Cache-Control", "max-age=60")], b"")
                              if req.header("If-Modified-Since") == "Sun, 06 Nov 1994 08:49:37 GMT" else
                              Reply(200, [("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
                                          ("Cache-Control", "max-age=1"), ("Age", "5")], b"lm body\n"))
    get(port, lm)
    r = get(port, lm)
    check_eq(backend.requests[-1].header("If-Modified-Since"), "Sun, 06 Nov 1994 08:49:37 GMT",
             "Last-Modified is revalidated with If-Modified-Since")
    check_eq(r.body, b"lm body\n", "and the stored body served after the 304")

    # the client's conditionals, answered from the cache
    cond = "/val/client"
    ROUTES[cond] = fixed([("ETag", 'W/"c1"'), ("Cache-Control", "max-age=60"),
                          ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")], b"client body\n")
    a = get(port, cond, [("If-None-Match", '"c1"')])
    check(a.status == 200 and a.body == b"client body\n", "a miss with If-None-Match gets the whole response", a)
    check("If-None-Match" not in backend.requests[-1].raw_head.decode(), "the client's validator is not forwarded")
    r = get(port, cond, [("If-None-Match", '"x", "c1"')])
    check(r.status == 304 and r.body == b"", "If-None-Match matching the stored ETag (weakly): 304", r)
    check_eq(r.header("ETag"), 'W/"c1"', "the 304 has the ETag")
    r = get(port, cond, [("If-None-Match", '"other"')])
    check_eq(r.status, 200, "If-None-Match not matching: 200")
    r = get(port, cond, [("If-Modified-Since", "Sun, 06 Nov 1994 09:00:00 GMT")])
    check_eq(r.status, 304, "If-Modified-Since after Last-Modified: 304")
    r = get(port, cond, [("If-Modified-Since", "Sun, 06 Nov 1994 08:00:00 GMT")])
    check_eq(r.status, 200, "If-Modified-Since before Last-Modified: 200")
    r = get(port, cond, method="HEAD")
    check(r.status == 200 and r.body == b"" and r.header("Content-Length") == str(len(b"client body\n")),
          "HEAD from the stored GET: its Content-Length, no body", r)
    check_eq(seen(backend, cond), 1, "all of these from the cache")

    # a HEAD that misses is fetched as GET and stored (nginx proxy_cache_convert_head)
    hm = "/val/headmiss"
    ROUTES[hm] = fixed([("Cache-Control", "max-age=60"), ("X-Head", "1")], b"head miss body\n")
    s = connect(port)
    s.sendall(b"HEAD /val/headmiss HTTP/1.1\r\nHost: test.local\r\n\r\n"
              b"GET /val/headmiss HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n")
    data, _ = recv_until_close(s)
    s.close()
    head_end = data.find(b"\r\n\r\n")
    first, rest = data[:head_end + 4], data[head_end + 4:]
    check(first.startswith(b"HTTP/1.1 200") and b"Content-Length: 15" in first and rest.startswith(b"HTTP/1.1 200"),
          "a HEAD miss is answered with the head only (the next response follows at once)", data[:300])
    check(rest.endswith(b"head miss body\n"), "the GET after it gets the body", rest[-40:])
    check_eq([r.method for r in backend.requests if r.target == hm], ["GET"], "the HEAD was fetched as GET, once")

    # ranges from the stored (complete) response
    rng = "/val/range"
    body = bytes(range(256)) * 4
    ROUTES[rng] = fixed([("Cache-Control", "max-age=60"), ("ETag", '"r1"')], body)
    a = get(port, rng, [("Range", "bytes=0-9")])
    check(a.status == 200 and a.body == body, "a Range miss fetches and gets the whole response", a)
    check("Range" not in backend.requests[-1].raw_head.decode(), "Range is not sent upstream on a miss")
    for spec, want in (("bytes=10-19", (10, 20)), ("bytes=1000-", (1000, 1024)), ("bytes=-24", (1000, 1024)),
                       ("bytes=1020-5000", (1020, 1024))):
        r = get(port, rng, [("Range", spec)])
        check(r.status == 206 and r.body == body[want[0]:want[1]] and
              r.header("Content-Range") == "bytes %d-%d/1024" % (want[0], want[1] - 1),
              "%s: 206 from the stored response" % spec, (r.status, r.header("Content-Range"), len(r.body)))
    r = get(port, rng, [("Range", "bytes=2000-")])
    check(r.status == 416 and r.header("Content-Range") == "bytes */1024", "an unsatisfiable range: 416", r)
    r = get(port, rng, [("Range", "bytes=0-1,5-6")])
    check(r.status == 200 and r.body == body, "several ranges: the whole response", r.status)
    r = get(port, rng, [("Range", "bytes=0-9"), ("If-Range", '"r1"')])
    check_eq(r.status, 206, "If-Range with the stored ETag: the range")
    r = get(port, rng, [("Range", "bytes=0-9"), ("If-Range", '"old"')])
    check(r.status == 200 and r.body == body, "If-Range with another ETag: the whole response", r.status)
    check_eq(seen(backend, rng), 1, "every range from the one stored response")


def test_invalidation(port, backend):
    path = "/inv/item"
    ROUTES[path] = lambda req: (Reply(201, [("Location", "/inv/other")], b"created\n")
                                if req.method == "POST" else counter([("Cache-Control", "max-age=60")])(req))
    ROUTES["/inv/other"] = counter([("Cache-Control", "max-age=60")])
    get(port, path)
    get(port, "/inv/other")
    get(port, path)
    get(port, "/inv/other")
    check(seen(backend, path) == 1 and seen(backend, "/inv/other") == 1, "both stored")
    r = get(port, path, method="POST")
    check_eq(r.status, 201, "the POST is forwarded")
    get(port, path)
    get(port, "/inv/other")
    check_eq(seen(backend, path), 3, "a POST invalidates its target URI")
    check_eq(seen(backend, "/inv/other"), 2, "and its Location of the same origin")
    ROUTES["/inv/err"] = lambda req: (Reply(500, [], b"no\n") if req.method == "DELETE"
                                      else Reply(200, [("Cache-Control", "max-age=60")], b"keep\n"))
    get(port, "/inv/err")
    get(port, "/inv/err", method="DELETE")
    get(port, "/inv/err")
    check_eq(seen(backend, "/inv/err"), 2, "an error response does not invalidate")


def test_stale(port, backend, dead_origin):
    path = "/s/sie"
    state = {"fail": False}

    def f(req):
        if state["fail"]:
            return Reply(503, [], b"down\n")
        return Reply(200, [("Cache-Control", "max-age=10, stale-if-error=600"), ("Age", "30")], b"good\n")
    ROUTES[path] = f
    get(port, path)
    state["fail"] = True
    r = get(port, path)
    check(r.status == 200 and r.body == b"good\n", "stale-if-error: a 503 from the origin is answered stale", r)
    check("stale-if-error" in (r.header("Cache-Status") or ""), "Cache-Status says why", r.header("Cache-Status"))

    # a 5xx whose body comes late: its connection must not be reused for the next request
    def late_body():
        time.sleep(0.3)
        yield b"late body\n"
    late = "/s/late"
    state["fail"] = False
    ROUTES[late] = lambda req: (Reply(503, [], late_body(), length=10) if state["fail"] else
                                Reply(200, [("Cache-Control", "max-age=10, stale-if-error=600"), ("Age", "30")],
                                      b"late good\n"))
    get(port, late)
    state["fail"] = True
    r = get(port, late)
    check_eq(r.body, b"late good\n", "a 503 with a late body: the stale copy")
    time.sleep(0.5)  # the late body has arrived on that upstream connection by now
    ROUTES["/s/after"] = fixed([], b"after\n")
    after = [get(port, "/s/after").status for _ in range(6)]
    check_eq(after, [200] * 6, "the connection of the unread body was not reused")

    plain = "/s/plain"
    ROUTES[plain] = lambda req: (Reply(500, [], b"err\n") if state["fail"] else
                                 Reply(200, [("Cache-Control", "max-age=10"), ("Age", "30")], b"plain\n"))
    state["fail"] = False
    get(port, plain)
    state["fail"] = True
    r = get(port, plain)
    check_eq(r.status, 500, "without stale-if-error or cache_use_stale the 500 passes")
    ROUTES["/usestale/x"] = ROUTES[plain]
    state["fail"] = False
    get(port, "/usestale/x")
    state["fail"] = True
    r = get(port, "/usestale/x")
    check(r.status == 200 and r.body == b"plain\n", "cache_use_stale http_500: the stale copy", r)
    mr = "/usestale/must"
    ROUTES[mr] = lambda req: (Reply(502, [], b"err\n") if state["fail"] else
                              Reply(200, [("Cache-Control", "max-age=10, must-revalidate"), ("Age", "30")], b"m\n"))
    state["fail"] = False
    get(port, mr)
    state["fail"] = True
    r = get(port, mr)
    check_eq(r.status, 502, "must-revalidate: never stale, even with cache_use_stale")

    # an origin that goes away: connect errors
    dead_origin["serve"] = True
    r1 = get(port, "/dead/x")
    dead_origin["close"]()
    r2 = get(port, "/dead/x", [("Cache-Control", "max-age=0")])
    check(r1.status == 200 and r2.status == 200 and r2.body == r1.body,
          "cache_use_stale error: a dead origin is answered with the stored copy", (r1, r2))


def test_purge(port, backend):
    for p in ("/purgeable/a", "/purgeable/b", "/purgeable/sub/c"):
        ROUTES[p] = counter([("Cache-Control", "max-age=600")])
        get(port, p)
        get(port, p)
    check(all(seen(backend, p) == 1 for p in ("/purgeable/a", "/purgeable/b", "/purgeable/sub/c")), "stored")
    # from another address than the access rules allow
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.2", 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.sendall(b"PURGE /purgeable/a HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n")
    data, _ = recv_until_close(s)
    s.close()
    check(data.startswith(b"HTTP/1.1 403"), "PURGE from an address the access rules deny: 403", data[:40])
    get(port, "/purgeable/a")
    check_eq(seen(backend, "/purgeable/a"), 1, "and nothing was purged")
    r = get(port, "/purgeable/a", method="PURGE")
    check_eq(r.status, 200, "PURGE of a stored key: 200")
    r = get(port, "/purgeable/a", method="PURGE")
    check_eq(r.status, 404, "PURGE of a key not stored: 404")
    get(port, "/purgeable/a")
    get(port, "/purgeable/b")
    check(seen(backend, "/purgeable/a") == 2 and seen(backend, "/purgeable/b") == 1, "only that key went")
    r = get(port, "/purgeable/*", method="PURGE")
    check_eq(r.status, 200, "PURGE of a prefix")
    get(port, "/purgeable/b")
    get(port, "/purgeable/sub/c")
    check(seen(backend, "/purgeable/b") == 2 and seen(backend, "/purgeable/sub/c") == 2,
          "every key under the prefix went")
    ROUTES["/other"] = counter([("Cache-Control", "max-age=600")])
    get(port, "/other")
    get(port, "/other", method="PURGE")
    check_eq(backend.requests[-1].method, "PURGE", "PURGE where cache_purge is off is forwarded like any method")
    get(port, "/other")
    check_eq(seen(backend, "/other"), 3, "(and, as an unsafe method, invalidates)")

    # a purge while a large hit is being read slowly
    big = hashlib.sha256(b"seed").digest() * (4 << 20 >> 5)
    ROUTES["/purgeable/big"] = fixed([("Cache-Control", "max-age=600")], big)
    get(port, "/purgeable/big")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # before connect: a small window
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /purgeable/big HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n")
    first = s.recv(1024)
    r = get(port, "/purgeable/big", method="PURGE")
    check_eq(r.status, 200, "purged during the hit")
    data = first + recv_until_close(s, timeout=60)[0]
    s.close()
    rs, _ = parse_responses(data)
    check(rs and rs[0].body == big, "the hit being read when the purge came is complete and intact",
          (len(data), rs[0].head if rs else None, len(rs[0].body) if rs else None))
    check("hit" in (rs[0].header("Cache-Status") or "") if rs else False, "and was a hit")
    get(port, "/purgeable/big")
    check_eq(seen(backend, "/purgeable/big"), 2, "after the purge: a miss")


def test_collapsing(port, backend):
    """Concurrent misses for one key: one origin request; the others wait for it (the origin
    answers late, so they wait for its head; test_cache_follow.py has them follow the body)."""
    path = "/c/slow"
    gate = threading.Event()

    def slow(req):
        gate.wait(10)
        return Reply(200, [("Cache-Control", "max-age=60")], b"collapsed body " * 1000)
    ROUTES[path] = slow
    results = [None] * 6

    def fetch(i):
        results[i] = http_request(port, target=path, timeout=20)
    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    backend.wait_requests(1, timeout=5)
    time.sleep(1.0)  # the other requests arrive meanwhile (a late one would be a plain hit)
    gate.set()
    for t in threads:
        t.join(30)
    check_eq(seen(backend, path), 1, "%d concurrent misses: one origin request" % len(results))
    check(all(r is not None and r.status == 200 and r.body == b"collapsed body " * 1000 for r in results),
          "every one of them gets the whole body")
    collapsed = [r for r in results if r and "collapsed" in (r.header("Cache-Status") or "")]
    check(len(collapsed) >= 1, "the requests that waited say collapsed in Cache-Status", len(collapsed))


def test_access_and_status(p):
    words = [d.get("cache") for d in p.access_lines()]
    for w in ("MISS", "HIT", "EXPIRED", "REVALIDATED", "STALE", "BYPASS", "PURGE"):
        check(w in words, "the access entry has cache=%s" % w)
    plain = [d for d in p.access_lines() if d.get("uri", "").startswith("/plain/")]
    check(plain and all("cache" not in d for d in plain), "no cache field where the cache is off")


def test_status(backend):
    """STATUS= (sd_notify) counts hits, misses, objects, bytes and evictions."""
    store = tempfile.mkdtemp(prefix="proxyd-cache-status-")
    sock_path = os.path.join(store, "notify")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(sock_path)
    ns.settimeout(15)
    port = free_port()
    conf = CONFIG % {"store": os.path.join(store, "c"), "mem": "64m", "disk": "1g", "port": port,
                     "origin": backend.address, "dead": free_port()}
    p = Proxyd(conf, wait=("127.0.0.1", port), env={"NOTIFY_SOCKET": sock_path})
    try:
        p.start()
        ROUTES["/status/x"] = fixed([("Cache-Control", "max-age=60")], b"s" * 1000)
        get(port, "/status/x")
        get(port, "/status/x")
        status = ""
        deadline = time.monotonic() + 15
        while "cache:" not in status and time.monotonic() < deadline:
            msg = ns.recv(4096).decode()
            for ln in msg.splitlines():
                if ln.startswith("STATUS="):
                    status = ln
        check("1 hits, 1 misses, 1 objects" in status and "evictions" in status and "on disk" in status,
              "STATUS= has the cache's counts", status)
    finally:
        p.close()
        ns.close()
        shutil.rmtree(store, ignore_errors=True)


def test_example():
    src = os.environ.get("PROXYD_SRCDIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    with open(os.path.join(src, "etc", "examples", "cache.conf")) as f:
        rc, out, err, _ = run_proxyd(["-t", "-c", "{conf}"], config=f.read())
    check(rc == 0 and "configuration OK" in out + err and "warning" not in err,
          "etc/examples/cache.conf passes -t without warnings", (rc, err))


def test_store(backend):
    store = tempfile.mkdtemp(prefix="proxyd-cache-store-")
    try:
        p, port = start(backend, store)
        for name in ("keep", "corrupt", "truncate"):
            ROUTES["/st/" + name] = counter([("Cache-Control", "max-age=600")])
            get(port, "/st/" + name)
        p.close()
        files = [f for f in glob.glob(os.path.join(store, "*")) if not os.path.basename(f).startswith("tmp.")]
        check_eq(len(files), 3, "one file per object")

        def find(key):
            for f in files:
                with open(f, "rb") as fh:
                    if key.encode() in fh.read():
                        return f
            return None
        fc, ft = find("/st/corrupt"), find("/st/truncate")
        with open(fc, "r+b") as fh:
            data = fh.read()
            i = data.rfind(b"version")
            fh.seek(i)
            fh.write(b"VERSION")
        with open(ft, "r+b") as fh:
            fh.truncate(os.path.getsize(ft) - 5)
        with open(os.path.join(store, "tmp.1.1"), "wb") as fh:
            fh.write(b"an object that was never finished")

        p, port = start(backend, store)
        a = get(port, "/st/keep")
        b = get(port, "/st/corrupt")
        c = get(port, "/st/truncate")
        check_eq(seen(backend, "/st/keep"), 1, "after a restart the stored object is served from disk")
        check_eq(a.body, b"version 1\n", "intact")
        check_eq(seen(backend, "/st/corrupt"), 2, "a file whose checksum does not match is not served")
        check(b"VERSION" not in b.body, "the corrupt body never reaches a client", b.body)
        check_eq(seen(backend, "/st/truncate"), 2, "a truncated file is not served")
        check(not os.path.exists(os.path.join(store, "tmp.1.1")), "an unfinished temporary file is removed at start")
        os.kill(p.pid, signal.SIGHUP)
        check(p.wait_log(r"Configuration #2 applied", 10), "SIGHUP reloads")
        get(port, "/st/keep")
        check_eq(seen(backend, "/st/keep"), 1, "after a reload the cache is still there")
        p.close()

        # eviction: room for about two 2 KiB objects on disk
        shutil.rmtree(store)
        os.mkdir(store)
        p, port = start(backend, store, mem="1k", disk="5k")
        for i in range(4):
            ROUTES["/ev/%d" % i] = fixed([("Cache-Control", "max-age=600")], b"%d" % i * 2000)
            get(port, "/ev/%d" % i)
        get(port, "/ev/3")
        check_eq(seen(backend, "/ev/3"), 1, "the newest object is kept")
        get(port, "/ev/0")
        check_eq(seen(backend, "/ev/0"), 2, "the least recently used one was evicted")
        total = sum(os.path.getsize(f) for f in glob.glob(os.path.join(store, "*")))
        check(total <= 5 * 1024, "the disk store stays within cache_disk_size", total)
        p.close()
    finally:
        shutil.rmtree(store, ignore_errors=True)


def test_full_disk(backend):
    """A store on a file system that fills up: what does not fit stays in memory, no
    partial file is left, and after a restart only complete objects are served. Needs a
    tmpfs mount (root); without one this part is not checked (and not counted)."""
    mnt = tempfile.mkdtemp(prefix="proxyd-cache-full-")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
        print("# full disk: not checked (cannot mount a tmpfs here)")
        os.rmdir(mnt)
        return
    try:
        store = os.path.join(mnt, "store")
        bodies = {}
        p, port = start(backend, store)
        for i in range(6):
            path = "/full/%d" % i
            bodies[path] = hashlib.sha256(b"%d" % i).digest() * 600  # 19200 bytes
            ROUTES[path] = fixed([("Cache-Control", "max-age=600")], bodies[path])
            get(port, path)
        served = {path: get(port, path).body for path in bodies}
        check(all(served[k] == bodies[k] for k in bodies), "objects that did not fit on disk are served from memory")
        check(all(seen(backend, k) == 1 for k in bodies), "and were all hits")
        check("No space left on device" in p.log_text(), "the full disk is logged")
        p.close()
        left = os.listdir(store)
        check(not any(f.startswith("tmp.") for f in left), "no partial file is left behind", left)
        p, port = start(backend, store)
        again = {path: get(port, path).body for path in bodies}
        check(all(again[k] == bodies[k] for k in bodies), "after a restart every body is intact")
        on_disk = sum(1 for k in bodies if seen(backend, k) == 1)
        check(0 < on_disk < len(bodies), "the objects that were on disk survived the restart, the others refetched",
              on_disk)
        p.close()
    finally:
        subprocess.run(["umount", mnt], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(mnt, ignore_errors=True)


class DeadOrigin:
    """An origin for /dead/ that can be switched off."""

    def __init__(self):
        self.b = Backend(lambda req: Reply(200, [("Cache-Control", "max-age=10"), ("Age", "30")], b"dead-ok\n"))
        self.port = self.b.port

    def close(self):
        self.b.close()


def main():
    backend = Backend(origin)
    dead = DeadOrigin()
    store = tempfile.mkdtemp(prefix="proxyd-cache-")
    p = None
    try:
        p, port = start(backend, store, dead=dead.port)
        test_freshness(port, backend)
        test_not_stored(port, backend)
        test_key(port, backend)
        test_min_uses(port, backend)
        test_request_directives(port, backend)
        test_vary(port, backend)
        test_validation(port, backend)
        test_invalidation(port, backend)
        test_stale(port, backend, {"close": dead.close})
        test_purge(port, backend)
        test_collapsing(port, backend)
        ROUTES["/plain/x"] = counter([("Cache-Control", "max-age=60")])
        get(port, "/plain/x")
        get(port, "/plain/x")
        check_eq(seen(backend, "/plain/x"), 2, "a location without cache = true caches nothing")
        test_access_and_status(p)
        p.close()
        p = None
        test_store(backend)
        test_full_disk(backend)
        test_status(backend)
        test_example()
    finally:
        if p:
            p.close()
        backend.close()
        dead.close()
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
