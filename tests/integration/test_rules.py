#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Traffic policy end to end: response headers (add_header, replace_header,
add_header_always), `return` with variables, location rules (method, header, arg,
cookie, client address, server port; first match wins; return, proxy_pass, header
changes and access as outcomes), and the -t checks that go with them (open
redirects, conditions that cannot match, `file:line: why`).

proxyd runs socket-activated on two loopback ports in front of two recording
backends; requests come from curl and from raw sockets (one bound to 127.0.0.2
for the client-address rules)."""

import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, Proxyd, Reply, check, check_eq, curl, free_port,  # noqa: E402
                     http_request, line_number, log, parse_responses, raw_exchange,
                     recv_until_close, run_main, run_proxyd)

CONFIG = """
workers = 2;
defaults = {
  set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; X-Base = "base"; };
  add_header = { Strict-Transport-Security = "max-age=63072000"; X-Frame-Options = "DENY"; };
};
servers = (
  {
    name = "main";
    listen = [ "http", "second" ];
    add_header = { X-Served = "$host|$arg_q|$cookie_c|$request_method"; };
    replace_header = { X-Powered-By = "hidden"; };
    locations = (
      { prefix = "/hdr/"; proxy_pass = "http://127.0.0.1:%(a)d";
        add_header = { X-Frame-Options = ""; Cache-Control = "no-store"; };
        replace_header = { Server = "proxyd"; X-Powered-By = "nothing"; };
        hide_header = [ "X-Secret" ]; },
      { prefix = "/keep/"; proxy_pass = "http://127.0.0.1:%(a)d"; replace_header = { X-Powered-By = ""; }; },
      { prefix = "/always/"; proxy_pass = "http://127.0.0.1:%(a)d"; add_header_always = true; },
      { prefix = "/down/"; proxy_pass = "http://127.0.0.1:%(refused)d"; add_header_always = true; },
      { prefix = "/down-plain/"; proxy_pass = "http://127.0.0.1:%(refused)d"; },
      { prefix = "/uri/"; return = 200; body = "uri\\n"; add_header = { X-Uri = "$uri"; }; },
      { prefix = "/r/"; return = 301; location = "https://$host$request_uri"; },
      { prefix = "/rel/"; return = 302; location = "/moved$uri"; },
      { prefix = "/dollar/"; return = 200; body = "only $$ here\n"; },
      { prefix = "/b/"; return = 200; body = "hello $remote_addr q=$arg_q c=$cookie_c costs $$5\\n"; },
      { prefix = "/rules/"; proxy_pass = "http://127.0.0.1:%(a)d";
        rules = (
          { method = [ "!GET", "!HEAD" ]; return = 405; body = "only GET\\n";
            add_header = { Allow = "GET, HEAD"; }; add_header_always = true; },
          { header = { User-Agent = "~*(bot|crawler)"; }; return = 403; body = "no bots\\n"; },
          { header = { X-Forwarded-Proto = "http"; }; return = 301; location = "https://$host$request_uri"; },
          { arg = { debug = "*"; }; client = "!127.0.0.1"; access = [ "deny all" ]; },
          { arg = { debug = "*"; }; proxy_pass = "http://127.0.0.1:%(b)d"; },
          { cookie = { beta = "1"; }; proxy_pass = "http://127.0.0.1:%(b)d";
            set_header = { X-Beta = "yes"; }; add_header = { X-Backend = "beta"; }; },
          { cookie = { beta = "^"; }; return = 200; body = "second rule, never reached for beta=1\\n"; },
          { client = "127.0.0.2"; return = 200; body = "from 127.0.0.2\\n"; },
          { server_port = %(port2)d; return = 200; body = "second port $server_port\\n"; },
          { header = { X-Maint = "!*"; }; arg = { maint = "1"; }; return = 503; body = "maintenance\\n"; }
        ); }
    );
  }
);
"""


def backend_handler(name):
    def handler(req):
        hdrs = [("Content-Type", "text/plain"), ("X-Frame-Options", "SAMEORIGIN"),
                ("Server", "upstream/1.0"), ("X-Powered-By", "php"), ("X-Secret", "s3"),
                ("Cache-Control", "public")]
        status = 200
        if "/status404" in req.target:
            status = 404
        if "/status500" in req.target:
            status = 500
        return Reply(status, hdrs, ("%s %s %s\n" % (name, req.method, req.target)).encode())
    return handler


def from_addr(port, data, source, timeout=5.0):
    """Send data from a chosen loopback source address, read until close."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((source, 0))
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        s.sendall(data)
        return recv_until_close(s, timeout)[0]
    finally:
        s.close()


def get(port, target, headers=None, method="GET", body=b""):
    r = http_request(port, method=method, target=target, headers=headers, body=body)
    check(r is not None, "%s %s: a response" % (method, target))
    return r


def response_headers(p, port, a):
    # proxied 200: add_header merged by name (defaults + server + location), the
    # location's "" removes the inherited X-Frame-Options, the upstream's stays
    r = get(port, "/hdr/x?q=1", headers=[("Cookie", "c=42; d=1"), ("Host", "Example.COM:8080")])
    check_eq(r.status, 200, "proxied response")
    check_eq(r.header("Strict-Transport-Security"), "max-age=63072000", "defaults add_header reaches a location")
    check_eq(r.header("X-Served"), "example.com|1|42|GET", "server add_header with $host, $arg_, $cookie_")
    check_eq(r.header_all("X-Frame-Options"), ["SAMEORIGIN"],
             "location X-Frame-Options = \"\" removes the inherited one; the upstream's passes")
    check_eq(r.header_all("Cache-Control"), ["public", "no-store"],
             "add_header appends: the upstream's field stays")
    check_eq(r.header_all("Server"), ["proxyd"], "replace_header replaces the upstream's Server")
    check_eq(r.header_all("X-Powered-By"), ["nothing"], "replace_header replaces X-Powered-By")
    check(r.header("X-Secret") is None, "hide_header still hides", r.headers)
    r = get(port, "/always/x")
    check_eq(r.header_all("X-Powered-By"), ["hidden"], "server-level replace_header")
    r = get(port, "/keep/x")
    check_eq(r.header_all("X-Powered-By"), ["php"], "replace_header = \"\" in a location: the upstream's passes")

    # upstream 404 / 500: no add_header (nginx's status list) unless add_header_always
    r = get(port, "/hdr/status404")
    check_eq(r.status, 404, "upstream 404 passed")
    check(r.header("Strict-Transport-Security") is None and r.header("Cache-Control") == "public",
          "no add_header on an upstream 404", r.headers)
    check_eq(r.header_all("Server"), ["upstream/1.0"], "no replace_header on a 404 either")
    r = get(port, "/always/status500")
    check_eq(r.status, 500, "upstream 500 passed")
    check_eq(r.header("Strict-Transport-Security"), "max-age=63072000", "add_header_always: on a 500 too")

    # proxyd's own responses: return (200, 3xx), error pages only with add_header_always
    r = get(port, "/b/")
    check_eq(r.header("X-Frame-Options"), "DENY", "add_header on a return 200")
    r = get(port, "/nowhere")
    check_eq(r.status, 404, "no location: 404")
    check(r.header("Strict-Transport-Security") is None, "no add_header on proxyd's 404", r.headers)
    r = get(port, "/down/x")
    check_eq(r.status, 502, "refused upstream: 502")
    check_eq(r.header("Strict-Transport-Security"), "max-age=63072000", "add_header_always on proxyd's 502")
    r = get(port, "/down-plain/x")
    check(r.status == 502 and r.header("Strict-Transport-Security") is None,
          "no add_header on proxyd's 502 without add_header_always", r.headers)

    # a decoded $uri with CR LF cannot split the head
    data, _ = raw_exchange(port, b"GET /uri/a%0d%0aSet-Cookie:%20x=1 HTTP/1.1\r\nHost: t\r\n"
                           b"Connection: close\r\n\r\n")
    head = data.split(b"\r\n\r\n", 1)[0]
    check(b"\r\nSet-Cookie" not in head and b"X-Uri: /uri/a%0D%0ASet-Cookie: x=1" in head,
          "CR LF from $uri is percent-encoded in add_header", head)

    # curl sees them as well
    c = curl(["-si", "http://127.0.0.1:%d/hdr/c" % port])
    out = c.stdout.decode("latin-1") if c else ""
    check("Strict-Transport-Security: max-age=63072000" in out and "Server: proxyd" in out,
          "curl: HSTS and the replaced Server", out[:400])


def redirects(p, port):
    r = get(port, "/r/a/b?x=1&y=2", headers=[("Host", "www.example.org")])
    check_eq(r.status, 301, "return 301")
    check_eq(r.header("Location"), "https://www.example.org/r/a/b?x=1&y=2",
             "Location with $host$request_uri")
    check_eq(r.header("Strict-Transport-Security"), "max-age=63072000", "add_header on a 301")
    r = get(port, "/rel/x%0d%0aSet-Cookie:a")
    head = r.head if isinstance(r.head, bytes) else r.head.encode("latin-1")
    check(r.status == 302 and r.header("Set-Cookie") is None and
          r.header("Location") == "/moved/rel/x%0D%0ASet-Cookie:a",
          "CR LF from $uri in a Location is percent-encoded", r.headers)
    r = get(port, "/b/?q=hi", headers=[("Cookie", "c=cv")])
    check_eq(r.body, b"hello 127.0.0.1 q=hi c=cv costs $5\n", "return body with variables and $$")
    check_eq(r.header("Content-Length"), str(len(r.body)), "Content-Length of the expanded body")
    r = get(port, "/dollar/")
    check_eq(r.body, b"only $ here\n", "a body with $$ and no variable")
    r = http_request(port, method="HEAD", target="/r/h")
    check(r is not None and r.status == 301 and r.header("Location") == "https://test.local/r/h",
          "HEAD: 301 with Location", r)
    c = curl(["-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
              "-H", "Host: shop.example", "http://127.0.0.1:%d/r/cart?id=7" % port])
    check(c is not None and c.stdout == b"301 https://shop.example/r/cart?id=7",
          "curl follows the redirect target", c.stdout if c else None)


def rules(p, port, port2, a, b):
    a.reset()
    r = get(port, "/rules/x", method="POST", body=b"data")
    check_eq(r.status, 405, "method rule: POST -> 405")
    check_eq(r.body, b"only GET\n", "method rule body")
    check_eq(r.header("Allow"), "GET, HEAD", "the rule's add_header (always) on the 405")
    r = get(port, "/rules/x", method="DELETE")
    check_eq(r.status, 405, "method rule: DELETE -> 405")
    r = get(port, "/rules/x")
    check(r.status == 200 and r.body == b"A GET /rules/x\n", "GET passes the rules to the location's upstream",
          (r.status, r.body))
    check(all(q.method == "GET" for q in a.requests), "no refused method reached the upstream",
          [q.method for q in a.requests])

    r = get(port, "/rules/x", headers=[("User-Agent", "Mozilla/5.0 (compatible; Googlebot/2.1)")])
    check(r.status == 403 and r.body == b"no bots\n", "user-agent rule (caseless regex)", (r.status, r.body))
    c = curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-A", "MyCrawler/1", "http://127.0.0.1:%d/rules/" % port])
    check(c is not None and c.stdout == b"403", "curl -A: 403", c.stdout if c else None)
    c = curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:%d/rules/" % port])
    check(c is not None and c.stdout == b"200", "curl with its own user agent: 200", c.stdout if c else None)

    r = get(port, "/rules/p?a=1", headers=[("X-Forwarded-Proto", "http"), ("Host", "app.example")])
    check(r.status == 301 and r.header("Location") == "https://app.example/rules/p?a=1",
          "X-Forwarded-Proto: http -> redirect to https", r.headers)
    r = get(port, "/rules/p", headers=[("X-Forwarded-Proto", "https")])
    check_eq(r.status, 200, "X-Forwarded-Proto: https is proxied")

    # arg rule: proxy_pass elsewhere (first the access rule, which does not hold for 127.0.0.1)
    b.reset()
    r = get(port, "/rules/d?x=1&debug")
    check(r.status == 200 and r.body == b"B GET /rules/d?x=1&debug\n", "arg rule: proxy_pass to B", r.body)
    data = from_addr(port, b"GET /rules/d?debug=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "127.0.0.2")
    rs, _ = parse_responses(data)
    check(rs and rs[0].status == 403, "arg rule with client \"!127.0.0.1\" from 127.0.0.2: access deny -> 403",
          data[:200])

    # cookie rule: proxy_pass, set_header merged with the inherited ones, add_header
    b.reset()
    r = get(port, "/rules/c", headers=[("Cookie", "x=y; beta=1")])
    check(r.status == 200 and r.body.startswith(b"B "), "cookie rule: proxy_pass to B", r.body)
    check_eq(r.header("X-Backend"), "beta", "the rule's add_header")
    check_eq(r.header("X-Frame-Options"), "SAMEORIGIN", "a proxied response keeps the upstream's field")
    q = b.requests[-1] if b.requests else None
    check(q is not None and q.header("X-Beta") == "yes" and q.header("X-Base") == "base" and
          q.header("X-Forwarded-For") == "127.0.0.1",
          "the rule's set_header, merged by name with the inherited ones", q.headers if q else None)
    r = get(port, "/rules/c", headers=[("Cookie", "beta=2")])
    check(r.status == 200 and r.body.startswith(b"second rule"), "beta=2: the next rule", r.body)

    # client address rule, raw socket from 127.0.0.2
    data = from_addr(port, b"GET /rules/z HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "127.0.0.2")
    check(b"from 127.0.0.2" in data, "client rule: 127.0.0.2", data[:200])
    r = get(port, "/rules/z")
    check(r.status == 200 and r.body == b"A GET /rules/z\n", "client rule: not for 127.0.0.1", r.body)

    # server_port rule: the same server on its second socket
    r = get(port2, "/rules/z")
    check(r.status == 200 and r.body == b"second port %d\n" % port2, "server_port rule", r.body)

    # two conditions in one rule: both must hold
    r = get(port, "/rules/m?maint=1")
    check_eq(r.status, 503, "maintenance switch: maint=1 without X-Maint")
    r = get(port, "/rules/m?maint=1", headers=[("X-Maint", "bypass")])
    check_eq(r.status, 200, "maintenance switch: X-Maint present bypasses it")

    # pipelined on one connection: a refused request does not disturb the next
    data, _ = raw_exchange(port, b"PUT /rules/1 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
                           b"GET /rules/2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    rs, _ = parse_responses(data)
    check([x.status for x in rs] == [405, 200] and rs[1].body == b"A GET /rules/2\n",
          "pipelined: 405 then the proxied GET", [(x.status, x.body) for x in rs])


BAD = """
servers = (
  { name = "main"; listen = [ "127.0.0.1:18099" ];
    locations = (
      { prefix = "/a/"; return = 302; location = "https://$http_x_forwarded_host/x"; },
      { prefix = "/b/"; return = 302; location = "/$uri"; },
      { prefix = "/c/"; return = 302; location = "$arg_next"; },
      { prefix = "/d/"; return = 302; location = "https://$host$request_uri"; },
      { prefix = "/e/"; return = 302; location = "$scheme://$host/$arg_x"; },
      { prefix = "/"; return = 200;
        add_header = { Content-Length = "5"; };
        rules = (
          { return = 403; },
          { method = [ "GET", "!POST" ]; return = 403; },
          { scheme = "https"; return = 403; },
          { server_port = 9999; return = 403; },
          { header = { User-Agent = "~(unclosed"; }; return = 403; },
          { header = { X-A = " padded"; }; return = 403; },
          { arg = { a = "x&y"; }; return = 403; },
          { client = "300.1.1.1"; return = 403; },
          { client = [ "!all" ]; return = 403; },
          { method = "get"; return = 403; },
          { header = { X-Fine = "1"; }; },
          { header = { X-Fine = "2"; }; client_max_header_size = "1k"; },
          { header = { X-Fine = "3"; }; body = "x"; }
        ); }
    ); }
);
"""


def config_checks():
    rc, out, err, _ = run_proxyd(["-t", "-c", "{conf}"], config=BAD)
    check(rc == 1, "-t fails on the bad rules", (rc, out, err))
    text = BAD

    def diag(needle, what, nth=1, warning=False):
        ln = line_number(text, needle, nth)
        want = "proxyd.conf:%d: %s" % (ln, "warning: " if warning else "")
        lines = [x for x in err.splitlines() if want in x]
        check(any(what in x for x in lines), "-t at line %d: %s" % (ln, what), err)

    diag("$http_x_forwarded_host", "open redirect", warning=True)
    diag('"/$uri"', "open redirect", warning=True)
    diag("$arg_next", "open redirect", warning=True)
    check("%d: warning" % line_number(text, "$scheme://$host/$arg_x") not in err,
          "no open-redirect warning for $arg_ in the path", err)
    check("%d: warning" % line_number(text, "https://$host$request_uri") not in err,
          "no open-redirect warning for https://$host$request_uri", err)
    diag("Content-Length", "cannot be set in a response")
    diag("{ return = 403; }", "a rule needs a condition")
    diag('"GET", "!POST"', "mixes \"!\" entries")
    diag('scheme = "https"', "can never match")
    diag("server_port = 9999", "can never match")
    diag("~(unclosed", "does not compile")
    diag('" padded"', "can never match")
    diag('"x&y"', "can never match")
    diag('"300.1.1.1"', "invalid client")
    diag('"!all"', "can never match")
    diag('method = "get"', "case-sensitive", warning=True)
    diag('X-Fine = "1"', "changes nothing", warning=True)
    diag("client_max_header_size", "server-level setting")
    diag('body = "x"', "only valid with \"return\"")

    # a drop-in: rules on a replaced location list, checked like the main file
    good = """servers = ( { name = "main"; listen = [ "127.0.0.1:18098" ];
      locations = ( { prefix = "/"; return = 200; } ); } );"""
    drop = """servers = ( { name = "main";
      locations = ( { prefix = "/"; return = 200;
        rules = ( { client = "!10.0.0.0/8"; return = 503; body = "maintenance\\n"; } ); } ); } );"""
    rc, out, err, _ = run_proxyd(["-t", "-c", "{conf}"], config=good, dropins={"50-maint.conf": drop})
    check(rc == 0 and "configuration OK" in out + err and "warning" not in err, "maintenance drop-in passes -t",
          (rc, err))


def main():
    a = Backend(backend_handler("A"))
    b = Backend(backend_handler("B"))
    refused = free_port()
    port, port2 = free_port(), free_port()
    try:
        conf = CONFIG % {"a": a.port, "b": b.port, "refused": refused, "port2": port2}
        rc, out, err, _ = run_proxyd(["-t", "-c", "{conf}"], config=conf.replace(
            'listen = [ "http", "second" ]', 'listen = [ "127.0.0.1:%d", "127.0.0.1:%d" ]' % (port, port2)))
        check(rc == 0 and "warning" not in err, "the test configuration passes -t without warnings", err)
        with Proxyd(conf.replace('[ "http", "second" ]', '[ "127.0.0.1:%d", "127.0.0.1:%d" ]' % (port, port2)),
                    sockets=[("127.0.0.1:%d" % port, "a"), ("127.0.0.1:%d" % port2, "b")]) as p:
            response_headers(p, port, a)
            redirects(p, port)
            rules(p, port, port2, a, b)
    finally:
        a.close()
        b.close()
    config_checks()


if __name__ == "__main__":
    log("test_rules: proxyd=%s" % os.environ.get("PROXYD"))
    run_main(main)
