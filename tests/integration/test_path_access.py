#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Path normalization against access rules and `return` locations, nginx as oracle.

nginx 1.22 (/usr/sbin/nginx) and proxyd run side by side with equivalent servers,
each in front of its own Recorder backend. Every server protects "/admin" (the regex
servers "/secret") with one kind of location: a prefix `return 403`, a prefix with
`deny all`, an exact `return 403`, a regex `return 403` or a regex `deny all`, and sends
everything else to `location /`, once forwarding the target as received
(`proxy_pass http://B;`) and once rewritten (`proxy_pass http://B/;`).

Each probe of PROBES is sent to both. The checks:
  1. proxyd never forwards a request that nginx answered itself (403, 404, 400, ...);
  2. when both forward, the backend receives the same request line from both;
  3. when nginx answered itself, proxyd answers with the same status,
except for the cases listed in EXCEPTIONS, where proxyd is deliberately stricter
(it answers 400 and forwards nothing): for each of them the test checks exactly that.
Set PATH_ACCESS_TABLE=1 to print every probe's results."""

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (NGINX, Proxyd, check, free_port, log, nginx_config_text,  # noqa: E402
                     parse_responses, raw_exchange, run_main, start_nginx, stop_nginx,
                     wait_port)
from uri_cases import Recorder  # noqa: E402

# Request-targets; "admin" is replaced by "secret" (and "%61dmin" by "%73ecret",
# "ADMIN" by "SECRET") for the regex servers, "{host}" by the server's name.
PROBES = [
    "/admin", "/admin/", "/admin/x", "/public",
    "/api/../admin", "/api/../admin/", "/api/%2e%2e/admin", "/api/%2e%2e/admin/",
    "/%2e%2e/admin", "/api/%2E%2E/admin/", "/api/.%2e/admin/",
    "/admin%2F..%2Fpublic", "/admin%2f", "/admin%2fx", "/public%2F..%2Fadmin/",
    "/%61dmin", "/%61dmin/", "//admin", "//admin/", "/./admin", "/./admin/", "/admin/.",
    "/admin/./", "/api/..;/admin", "/api/..;/admin/", "/api/.;/admin/", "/api/..%3B/admin/",
    "/admin;/", "/admin%00", "/admin/%00", "/admin%20", "/admin/%20", "/ADMIN", "/ADMIN/",
    "/admin?x=/../", "/public?x=/../admin/", "/admin#frag", "/admin/#frag", "/public#/../admin/",
    "/api\\..\\admin", "/api\\..\\admin\\", "/api/%5C..%5Cadmin/",
    "/api/%c0%ae%c0%ae/admin/", "/admin%c0%ae", "/%c0%afadmin/",
    "/admin%2", "/admin/%2", "/admin%zz", "/admin/%zz", "/public%2",
    "http://{host}/../admin", "http://{host}/../admin/", "http://{host}/x/../admin/",
    "http://{host}/admin/", "http://{host}/public", "http://{host}/%61dmin/",
    "/../../admin", "/../../admin/", "/api/../../admin/",
    "/admin//..", "/admin/x//..", "/admin/x%2F../..", "/admin/x%2f..%2f..",
    "/admin/../public", "/admin/x/../..", "/public{x}|^",
]

# (server kind, nginx location block, proxyd location group, protected word)
PROTECT = [
    ("return", "location /admin { return 403; }",
     '{ prefix = "/admin"; return = 403; }', "admin"),
    ("deny", "location /admin/ { deny all; proxy_pass http://127.0.0.1:%(b)d; }",
     '{ prefix = "/admin/"; access = [ "deny all" ]; proxy_pass = "http://127.0.0.1:%(b)d"; }',
     "admin"),
    ("exact", "location = /admin { return 403; }",
     '{ exact = "/admin"; return = 403; }', "admin"),
    ("regex", "location ~ ^/secret { return 403; }",
     '{ regex = "^/secret"; return = 403; }', "secret"),
    ("regexdeny", "location ~ ^/secret { deny all; proxy_pass http://127.0.0.1:%(b)d; }",
     '{ regex = "^/secret"; access = [ "deny all" ]; proxy_pass = "http://127.0.0.1:%(b)d"; }',
     "secret"),
]
# `location /`: forward the target as received, or with a URI part (rewritten).
ROOT = [("raw", ""), ("uri", "/")]

# Documented exceptions: probe -> (root forms it applies to, what proxyd does, why).
# What proxyd does is ("status", N): it answers N and forwards nothing, or ("target", T):
# it forwards request-target T (with "admin" replaced like the probe). A target forwarded
# as received that a backend resolving it by RFC 3986 would read as another path than the
# one proxyd routed (uri_raw_is_unambiguous()) is a 400. Where nginx answered itself,
# proxyd only has to forward nothing.
BOTH = ("raw", "uri")
EXCEPTIONS = {
    "/api/..;/admin": (BOTH, ("status", 404), "'..;' is '..' to backends that strip path parameters"),
    "/api/..;/admin/": (BOTH, ("status", 404), "'..;' is '..' to backends that strip path parameters"),
    "/api/.;/admin/": (BOTH, ("status", 404), "'.;' is '.' to backends that strip path parameters"),
    "/api/..%3B/admin/": (BOTH, ("status", 404),
                          "'..;' once decoded; nginx's rewritten form even sends the ';' raw"),
    "/api/%c0%ae%c0%ae/admin/": (BOTH, ("status", 404), "overlong UTF-8 for '.', '.' to lenient decoders"),
    "/admin%c0%ae": (BOTH, ("status", 404), "overlong UTF-8 for '.'"),
    "/%c0%afadmin/": (BOTH, ("status", 404), "overlong UTF-8 for '/'"),
    "/api\\..\\admin": (("uri",), ("target", "/api%5C..%5Cadmin"),
                        "a raw '\\' is sent percent-encoded in the rewritten form, like every "
                        "byte outside RFC 3986 (nginx escapes only when the target had a '%')"),
    "/api\\..\\admin\\": (("uri",), ("target", "/api%5C..%5Cadmin%5C"), "as above"),
    "/public{x}|^": (("uri",), ("target", "/public%7Bx%7D%7C%5E"), "as above"),
    "/admin//..": (("raw",), ("status", 400), "'/' to proxyd, '/admin/' by RFC 3986"),
    "/admin/x%2F../..": (("raw",), ("status", 400), "'/' to proxyd, '/admin/' by RFC 3986"),
    "/admin/x%2f..%2f..": (("raw",), ("status", 400), "'/' to proxyd, '/admin/x%2f..%2f..' by RFC 3986"),
    "/admin%2F..%2Fpublic": (("raw",), ("status", 400), "'/public' to proxyd, '/admin/../public' decoded"),
    "/admin/x//..": (("raw",), ("status", 400), "'/admin/' to proxyd, '/admin/x/' by RFC 3986"),
    "/public%2F..%2Fadmin/": (("raw",), ("status", 400),
                              "'/admin/' to proxyd, one segment 'public%2F..%2Fadmin' by RFC 3986"),
}


def word(probe, w):
    if w == "admin":
        return probe
    return probe.replace("%61dmin", "%73ecret").replace("admin", w).replace("ADMIN", w.upper())


def servers():
    out = []
    for kind, _, _, w in PROTECT:
        for form, uri in ROOT:
            out.append(("%s-%s.test" % (kind, form), kind, form, uri, w))
    return out


def nginx_config(tmp, port, backend):
    blocks = ["server {\n listen 127.0.0.1:%d default_server;\n server_name _;\n"
              " location / { return 404; }\n}\n" % port]
    for name, kind, form, uri, w in servers():
        prot = next(p for p in PROTECT if p[0] == kind)[1] % {"b": backend}
        blocks.append("server {\n listen 127.0.0.1:%d;\n server_name %s;\n %s\n"
                      " location / { proxy_pass http://127.0.0.1:%d%s; }\n}\n"
                      % (port, name, prot, backend, uri))
    return nginx_config_text(tmp, "".join(blocks))


def proxyd_config(backend):
    groups = ['{ name = "default"; listen = [ "http" ];\n'
              '  locations = ( { prefix = "/"; return = 404; } ); }']
    for i, (name, kind, form, uri, w) in enumerate(servers()):
        prot = next(p for p in PROTECT if p[0] == kind)[2] % {"b": backend}
        groups.append('{ name = "s%d"; listen = [ "http" ]; server_name = [ "%s" ];\n'
                      '  locations = ( %s,\n'
                      '    { prefix = "/"; proxy_pass = "http://127.0.0.1:%d%s"; } ); }'
                      % (i, name, prot, backend, uri))
    return "workers = 1;\nservers = (\n%s\n);\n" % ",\n".join(groups)


def ask(port, rec, target, host):
    """-> (status or None, request line the backend got or None)."""
    rec.clear()
    req = (b"GET " + target.encode("latin-1") + b" HTTP/1.1\r\nHost: " + host.encode() +
           b"\r\nConnection: close\r\n\r\n")
    data, _ = raw_exchange(port, req, timeout=5)
    rs, _ = parse_responses(data)
    status = rs[0].status if rs else None
    # The Recorder stores the head before it answers, so a forwarded request is
    # recorded by the time its 200 arrives; anything else was never forwarded.
    lines = rec.request_lines()
    return status, (lines[0].decode("latin-1") if lines else None)


def main():
    if not os.access(NGINX, os.X_OK):
        check(False, "nginx is installed at %s (the oracle; CI installs nginx-light)" % NGINX)
        return
    table = os.environ.get("PATH_ACCESS_TABLE")
    tmp = tempfile.mkdtemp(prefix="proxyd-pathacc-")
    ngx = None
    rec_n = Recorder()
    rec_p = Recorder()
    try:
        nport = free_port()
        pport = free_port()
        ngx = start_nginx(tmp, nginx_config(tmp, nport, rec_n.port))
        up = wait_port(nport, timeout=10, alive=lambda: ngx.poll() is None)
        if not check(up, "nginx oracle started"):
            with open(os.path.join(tmp, "nginx.stderr"), "rb") as f:
                log(f.read().decode("utf-8", "replace"))
            return
        used = set()
        with Proxyd(proxyd_config(rec_p.port),
                    sockets=[("127.0.0.1:%d" % pport, "http")]) as p:
            for name, kind, form, uri, w in servers():
                for probe in PROBES:
                    target = word(probe, w).replace("{host}", name)
                    what = "%s: GET %s" % (name, target)
                    sn, ln = ask(nport, rec_n, target, name)
                    sp, lp = ask(pport, rec_p, target, name)
                    if table:
                        log("%-16s %-28s nginx %s %-36s proxyd %s %s"
                            % (name, target, sn, ln, sp, lp))
                    exc = EXCEPTIONS.get(probe)
                    if exc is not None and form in exc[0]:
                        used.add(probe)
                        what += " (%s)" % exc[2]
                        if ln is None:
                            check(lp is None, "%s: nginx answered %s itself, proxyd forwards "
                                  "nothing" % (what, sn), (sp, lp))
                        elif exc[1][0] == "status":
                            check(sp == exc[1][1] and lp is None,
                                  "%s: proxyd answers %d and forwards nothing (nginx forwards %r)"
                                  % (what, exc[1][1], ln), (sp, lp))
                        elif exc[1][0] == "target":
                            want = "GET %s HTTP/1.1" % word(exc[1][1], w)
                            check(lp == want, "%s: proxyd forwards %r (nginx %r)" % (what, want, ln),
                                  (sp, lp))
                        else:
                            check(lp == ln or (sp == 400 and lp is None),
                                  "%s: proxyd forwards %r like nginx or answers 400" % (what, ln),
                                  (sp, lp))
                        continue
                    if ln is None:
                        check(lp is None,
                              "%s: nginx answered %s itself, proxyd forwards nothing"
                              % (what, sn), (sp, lp))
                        check(sp == sn, "%s: proxyd answers %s like nginx" % (what, sn), sp)
                    else:
                        check(lp == ln, "%s: backend request line %r like nginx's"
                              % (what, ln), (sp, lp))
            check(p.alive(), "proxyd still running")
        check(used == set(EXCEPTIONS), "every listed exception is probed",
              sorted(set(EXCEPTIONS) - used))
    finally:
        stop_nginx(ngx)
        rec_n.close()
        rec_p.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    log("test_path_access: proxyd=%s" % os.environ.get("PROXYD"))
    run_main(main)
