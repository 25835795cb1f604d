#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""nginx as an oracle for proxy_pass URI mapping.

For every case in uri_cases.CASES, nginx 1.22 (Debian's /usr/sbin/nginx) and
proxyd run with equivalent locations, each in front of its own Recorder. The
case's request-target is sent to both over a raw socket; the request line each
backend received must be identical byte for byte (or, where nginx answered
itself, both answer with the same status and send nothing upstream)."""

import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (NGINX, Proxyd, check, free_port, log, nginx_config_text,  # noqa: E402
                     parse_responses, raw_exchange, run_main, start_nginx, stop_nginx,
                     wait_port)
from uri_cases import CASES, Recorder, nginx_location_block, proxyd_location  # noqa: E402

def group_cases():
    """One virtual server per distinct (match, pattern, proxy_pass_uri)."""
    groups = {}
    order = []
    for c in CASES:
        key = (c["match"], c["pattern"], c["proxy_pass_uri"])
        if key not in groups:
            groups[key] = "g%d.test" % len(order)
            order.append(key)
    return groups, order


def nginx_config(tmp, port, backend_port, groups, order):
    servers = ["server {\n listen 127.0.0.1:%d default_server;\n server_name _;\n"
               " location / { return 404; }\n}\n" % port]
    for key in order:
        case = next(c for c in CASES
                    if (c["match"], c["pattern"], c["proxy_pass_uri"]) == key)
        servers.append("server {\n listen 127.0.0.1:%d;\n server_name %s;\n%s}\n"
                       % (port, groups[key], nginx_location_block(case, backend_port)))
    return nginx_config_text(tmp, "".join(servers))


def proxyd_config(backend_port, groups, order):
    servers = ['{ name = "default"; listen = [ "http" ];\n'
               '  locations = ( { prefix = "/"; return = 404; } ); }']
    for i, key in enumerate(order):
        case = next(c for c in CASES
                    if (c["match"], c["pattern"], c["proxy_pass_uri"]) == key)
        servers.append('{ name = "s%d"; listen = [ "http" ]; server_name = [ "%s" ];\n'
                       '  set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };\n'
                       '  locations = ( %s ); }'
                       % (i, groups[key], proxyd_location(case, backend_port)))
    return "workers = 1;\nservers = (\n%s\n);\n" % ",\n".join(servers)


def ask(port, target, host):
    req = ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
           % (target, host)).encode("latin-1")
    data, _ = raw_exchange(port, req, timeout=5)
    rs, _ = parse_responses(data)
    return rs[0].status if rs else None


def wait_lines(rec, n, timeout=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(rec.request_lines()) >= n:
            break
        time.sleep(0.01)
    return rec.request_lines()


def main():
    if not os.access(NGINX, os.X_OK):
        check(False, "nginx is installed at %s (the oracle; CI installs nginx-light)" % NGINX)
        return
    tmp = tempfile.mkdtemp(prefix="proxyd-oracle-")
    ngx = None
    rec_n = Recorder()
    rec_p = Recorder()
    try:
        groups, order = group_cases()
        nport = free_port()
        pport = free_port()
        ngx = start_nginx(tmp, nginx_config(tmp, nport, rec_n.port, groups, order))
        up = wait_port(nport, timeout=10, alive=lambda: ngx.poll() is None)
        if not check(up, "nginx oracle started"):
            with open(os.path.join(tmp, "nginx.stderr"), "rb") as f:
                log(f.read().decode("utf-8", "replace"))
            return
        with Proxyd(proxyd_config(rec_p.port, groups, order),
                    sockets=[("127.0.0.1:%d" % pport, "http")]) as p:
            for c in CASES:
                host = groups[(c["match"], c["pattern"], c["proxy_pass_uri"])]
                what = "%s %r proxy_pass %r, GET %s" % (c["match"], c["pattern"],
                                                        c["proxy_pass_uri"], c["target"])
                rec_n.clear()
                rec_p.clear()
                sn = ask(nport, c["target"], host)
                sp = ask(pport, c["target"], host)
                ln = wait_lines(rec_n, 1, 1.0 if sn == 200 else 0.2)
                lp = wait_lines(rec_p, 1, 1.0 if sp == 200 else 0.2)
                if ln:
                    check(lp == ln, "%s: backend request line %r (nginx %r)"
                          % (what, lp[0] if lp else None, ln[0]), (sp, lp))
                else:
                    check(not lp and sp == sn,
                          "%s: answered %s without upstream request (nginx %s)"
                          % (what, sp, sn), (sp, lp))
                exp = c["expect"]
                got = (ln[0].split(b" ")[1].decode("latin-1")
                       if ln and len(ln[0].split(b" ")) == 3 else sn)
                check(got == exp, "%s: nginx oracle agrees with the table (%r)" % (what, exp),
                      got)
            check(p.alive(), "proxyd still running")
    finally:
        stop_nginx(ngx)
        rec_n.close()
        rec_p.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    log("test_uri_oracle: proxyd=%s" % os.environ.get("PROXYD"))
    run_main(main)
