#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""proxyd end to end: proxy_pass forms and the trailing-slash rule, headers
(set_header variables, default Host, hop-by-hop removal, X-Forwarded-For,
hide_header), upstream keep-alive, client keep-alive/pipelining/HTTP/1.0,
return/access/client_max_body_size/404, server_name routing, IPv6, access
log lines and worker threads."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, Proxyd, Reply, check, check_eq, connect, curl,  # noqa: E402
                     free_port, http_request, log, parse_responses, raw_exchange,
                     recv_until_close, run_main)


def handler(req):
    t = req.target
    if t.startswith("/api/hdrs") or t.startswith("/hdr/"):
        return Reply(200, [("X-Powered-By", "php/0.1"), ("X-Keep", "yes"),
                           ("Connection", "X-Resp-Hop"), ("X-Resp-Hop", "secret"),
                           ("Keep-Alive", "timeout=9")], b"hdrs\n")
    if t.endswith("/chunked"):
        return Reply(200, [], [b"chunk-one,", b"chunk-two"], chunked=True)
    return Reply(200, [("Content-Type", "text/plain")], t.encode() + b"\n")


CONFIG = """
workers = 2;
log_level = "info";
access_log = true;
upstreams = {
  grp = {
    keepalive = 8;
    servers = ( { address = "127.0.0.1:%(bport)d"; } );
  };
};
servers = (
  {
    name = "main";
    listen = [ "http", "http6" ];
    set_header = {
      X-Forwarded-For = "$proxy_add_x_forwarded_for";
    };
    locations = (
      { exact = "/healthz"; return = 200; body = "ok\\n"; },
      { prefix = "/api/"; proxy_pass = "http://127.0.0.1:%(bport)d/"; },
      { prefix = "/raw/"; proxy_pass = "http://127.0.0.1:%(bport)d"; },
      { prefix = "/grp/"; proxy_pass = "http://grp/"; },
      { prefix = "/grpraw/"; proxy_pass = "http://grp"; },
      { prefix = "/unix/"; proxy_pass = "http://unix:%(usock)s:/u/"; },
      { prefix = "/hdr/"; proxy_pass = "http://127.0.0.1:%(bport)d";
        set_header = {
          X-Real-IP = "$remote_addr";
          X-Forwarded-Proto = "$scheme";
          X-Orig-Host = "$host";
          X-Req-Uri = "$request_uri";
          X-Uri = "$uri";
          X-Args = "$args";
          X-Foo-Copy = "$http_x_foo";
          X-Req-Id = "$request_id";
          X-Removed = "";
        };
        hide_header = [ "X-Powered-By" ];
      },
      { prefix = "/hosthdr/"; proxy_pass = "http://127.0.0.1:%(bport)d";
        set_header = { Host = "$host"; }; },
      { prefix = "/denied/"; access = [ "deny all" ]; proxy_pass = "http://127.0.0.1:%(bport)d"; },
      { prefix = "/allowed/"; access = [ "allow 127.0.0.1", "allow ::1", "deny all" ];
        proxy_pass = "http://127.0.0.1:%(bport)d"; },
      { prefix = "/small/"; client_max_body_size = "10"; proxy_pass = "http://127.0.0.1:%(bport)d"; },
      { regex = "\\\\.png$"; proxy_pass = "http://127.0.0.1:%(bport)d"; },
      { prefix = "/static/"; stop_regex = true; proxy_pass = "http://127.0.0.1:%(bport)d/s/"; }
    );
  },
  {
    name = "other";
    listen = [ "http" ];
    server_name = [ "b.example", "*.wild.example" ];
    locations = ( { prefix = "/"; return = 200; body = "server b\\n"; } );
  }
);
"""


def last_req(b, n=1, timeout=3.0):
    b.wait_requests(n, timeout)
    rs = b.complete_requests()
    return rs[-1] if rs else None


def main():
    tmp = tempfile.mkdtemp(prefix="proxyd-basic-")
    b = ub = None
    try:
        b = Backend(handler)
        usock = os.path.join(tmp, "backend.sock")
        ub = Backend(handler, unix_path=usock)
        port = free_port()
        port6 = free_port("::1")
        conf = CONFIG % {"bport": b.port, "usock": usock}
        with Proxyd(conf, sockets=[("127.0.0.1:%d" % port, "http"),
                                   ("[::1]:%d" % port6, "http6")]) as p:
            run_checks(p, port, port6, b, ub)
    finally:
        for x in (b, ub):
            if x:
                x.close()
        shutil.rmtree(tmp, ignore_errors=True)


def run_checks(p, port, port6, b, ub):
    # --- return location
    b.reset()
    r = http_request(port, target="/healthz")
    check(r is not None and r.status == 200 and r.body == b"ok\n",
          "return location /healthz -> 200 'ok\\n'", r)
    time.sleep(0.2)
    check_eq(len(b.requests), 0, "return location does not reach the backend")

    # --- the seed's trailing-slash rule
    for target, want in [("/api/users", "/users"),
                         ("/api/users?id=10", "/users?id=10"),
                         ("/api/", "/"),
                         ("/raw/users", "/raw/users"),
                         ("/raw/a%2Fb?x=%20y", "/raw/a%2Fb?x=%20y"),
                         ("/grp/users", "/users"),
                         ("/grpraw/users", "/grpraw/users"),
                         ("/img/logo.png", "/img/logo.png"),
                         ("/static/x.png", "/s/x.png")]:
        b.reset()
        r = http_request(port, target=target)
        q = last_req(b)
        check(r is not None and r.status == 200 and q is not None
              and q.request_line == ("GET %s HTTP/1.1" % want).encode(),
              "GET %s reaches the backend as %s" % (target, want),
              (r, q and q.request_line))

    # --- unix socket upstream
    ub.reset()
    r = http_request(port, target="/unix/users?q=1")
    q = last_req(ub)
    check(r is not None and r.status == 200 and q is not None
          and q.request_line == b"GET /u/users?q=1 HTTP/1.1",
          "unix socket upstream: /unix/users?q=1 -> /u/users?q=1",
          (r, q and q.request_line))
    check(q is not None and q.header("Host") == "localhost",
          "unix socket upstream: default Host is 'localhost'", q and q.headers)

    # --- default Host = $proxy_host
    b.reset()
    http_request(port, target="/raw/h", headers=[("Host", "client.example")])
    q = last_req(b)
    check(q is not None and q.header_all("Host") == ["127.0.0.1:%d" % b.port],
          "default Host is $proxy_host (127.0.0.1:PORT)", q and q.headers)
    b.reset()
    http_request(port, target="/grp/h", headers=[("Host", "client.example")])
    q = last_req(b)
    check(q is not None and q.header_all("Host") == ["grp"],
          "default Host for a named upstream is the upstream name", q and q.headers)
    b.reset()
    http_request(port, target="/hosthdr/h", headers=[("Host", "client.example")])
    q = last_req(b)
    check(q is not None and q.header_all("Host") == ["client.example"],
          "set_header Host = $host passes the client's Host", q and q.headers)

    # --- set_header variables, XFF, hop-by-hop, hide_header
    b.reset()
    r = http_request(port, target="/hdr/path?a=1&b=2", headers=[
        ("Host", "front.example"),
        ("X-Forwarded-For", "10.1.2.3"),
        ("X-Foo", "foo-value"),
        ("X-Removed", "must-not-pass"),
        ("Connection", "close, X-Secret-Hop"),
        ("X-Secret-Hop", "hop"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("X-Plain", "plain"),
    ])
    q = last_req(b)
    hv = (lambda n: q.header_all(n)) if q else (lambda n: None)
    check(r is not None and r.status == 200, "GET /hdr/path -> 200", r)
    check_eq(hv("X-Real-IP"), ["127.0.0.1"], "X-Real-IP = $remote_addr")
    check_eq(hv("X-Forwarded-For"), ["10.1.2.3, 127.0.0.1"],
             "$proxy_add_x_forwarded_for appends the client address")
    check_eq(hv("X-Forwarded-Proto"), ["http"], "X-Forwarded-Proto = $scheme")
    check_eq(hv("X-Orig-Host"), ["front.example"], "$host is the client's Host")
    check_eq(hv("X-Req-Uri"), ["/hdr/path?a=1&b=2"], "$request_uri")
    check_eq(hv("X-Uri"), ["/hdr/path"], "$uri")
    check_eq(hv("X-Args"), ["a=1&b=2"], "$args")
    check_eq(hv("X-Foo-Copy"), ["foo-value"], "$http_x_foo")
    check_eq(hv("X-Removed"), [], "set_header NAME = \"\" removes the header")
    check_eq(hv("X-Plain"), ["plain"], "ordinary client header passed")
    rid = (hv("X-Req-Id") or [""])[0]
    check(re.fullmatch(r"[0-9a-f]{32}", rid) is not None, "$request_id is 32 hex digits",
          rid)
    for h in ("X-Secret-Hop", "Keep-Alive", "Proxy-Connection", "TE"):
        check_eq(hv(h), [], "hop-by-hop %s not forwarded" % h)
    conn_vals = " ".join(hv("Connection") or []).lower()
    check("x-secret-hop" not in conn_vals, "Connection tokens not forwarded", conn_vals)
    check(r is not None and r.header("X-Powered-By") is None,
          "hide_header X-Powered-By hidden from the client", r and r.headers)
    check(r is not None and r.header("X-Keep") == "yes",
          "other response headers passed", r and r.headers)
    check(r is not None and r.header("X-Resp-Hop") is None
          and r.header("Keep-Alive") is None,
          "response hop-by-hop headers (named in Connection) removed", r and r.headers)
    # inherited set_header (server level) merges by name with the location's
    b.reset()
    http_request(port, target="/raw/xff")
    q = last_req(b)
    check(q is not None and q.header_all("X-Forwarded-For") == ["127.0.0.1"],
          "server-level set_header inherited; XFF without a client value",
          q and q.headers)

    # access log entry for the /hdr/ request
    al = [a for a in p.access_lines() if a.get("uri", "").startswith("/hdr/path")]
    check(len(al) == 1, "one access line for the /hdr/ request", p.access_lines()[-3:])
    if al:
        a = al[0]
        check(re.fullmatch(r"127\.0\.0\.1:\d+", a.get("client", "")) is not None,
              "access: client=IP:PORT", a)
        check_eq(a.get("method"), "GET", "access: method")
        check_eq(a.get("status"), "200", "access: status")
        check_eq(a.get("upstream"), "127.0.0.1:%d" % b.port, "access: upstream")
        check_eq(a.get("upstream_status"), "200", "access: upstream_status")
        check(re.fullmatch(r"\d+", a.get("bytes", "")) is not None, "access: bytes", a)
        check(re.fullmatch(r"[0-9.]+", a.get("duration_ms", "")) is not None,
              "access: duration_ms", a)
        check_eq(a.get("request_id"), rid, "access: request_id equals $request_id sent")

    # --- access lists, body size, 404
    b.reset()
    r = http_request(port, target="/denied/x")
    check(r is not None and r.status == 403, "access deny all -> 403", r)
    r = http_request(port, target="/allowed/x")
    check(r is not None and r.status == 200, "access allow 127.0.0.1 -> 200", r)
    r = http_request(port6, host="::1", target="/allowed/v6")
    check(r is not None and r.status == 200, "access allow ::1 over IPv6 -> 200", r)
    check_eq([q.target for q in b.complete_requests()], ["/allowed/x", "/allowed/v6"],
             "denied request never reached the backend")

    b.reset()
    r = http_request(port, method="POST", target="/small/x", body=b"x" * 11)
    check(r is not None and r.status == 413, "client_max_body_size 10, 11 bytes -> 413", r)
    r = http_request(port, method="POST", target="/small/y", body=b"x" * 10)
    check(r is not None and r.status == 200, "client_max_body_size 10, 10 bytes -> 200", r)
    r = http_request(port, method="POST", target="/small/z",
                     headers=[("Transfer-Encoding", "chunked")],
                     body=b"b\r\nxxxxxxxxxxx\r\n0\r\n\r\n")
    check(r is not None and r.status == 413,
          "client_max_body_size 10, chunked 11 bytes -> 413", r)
    check_eq([q.target for q in b.complete_requests()], ["/small/y"],
             "only the small body reached the backend complete")

    r = http_request(port, target="/nowhere")
    check(r is not None and r.status == 404, "no matching location -> 404", r)

    # --- server_name routing on a shared socket
    for host, want in [("b.example", b"server b\n"), ("x.wild.example", b"server b\n"),
                       ("B.EXAMPLE", b"server b\n"), ("c.example", None)]:
        r = http_request(port, target="/healthz", headers=[("Host", host)])
        if want is None:
            check(r is not None and r.status == 200 and r.body == b"ok\n",
                  "Host %s -> default (first) server" % host, r)
        else:
            check(r is not None and r.status == 200 and r.body == want,
                  "Host %s -> server_name match" % host, r)

    # --- IPv6 client
    b.reset()
    r = http_request(port6, host="::1", target="/hdr/v6")
    q = last_req(b)
    check(r is not None and r.status == 200 and q is not None
          and q.header("X-Real-IP") == "::1" and q.header("X-Forwarded-For") == "::1",
          "IPv6 client: $remote_addr and XFF are ::1", q and q.headers)

    # --- client keep-alive: several requests on one connection
    b.reset()
    s = connect(port)
    try:
        bodies = []
        for i in range(4):
            s.sendall(b"GET /raw/ka%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
            data = b""
            deadline = time.monotonic() + 5
            rs = []
            while time.monotonic() < deadline:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    chunk = s.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
                rs, rest = parse_responses(data)
                if rs and not rest and len(rs[0].body) == int(rs[0].header("Content-Length", "-1")):
                    break
            bodies.append(rs[0].body if rs else None)
        check_eq(bodies, [b"/raw/ka%d\n" % i for i in range(4)],
                 "four requests on one client keep-alive connection")
    finally:
        s.close()
    conns = {q.conn_id for q in b.complete_requests()}
    check(len(conns) == 1 and len(b.complete_requests()) == 4,
          "implicit upstream keep-alive: 4 requests on one backend connection",
          [(q.target, q.conn_id) for q in b.complete_requests()])

    # named upstream with keepalive = 8
    b.reset()
    s = connect(port)
    try:
        req = b"".join(b"GET /grp/k%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(5))
        req += b"GET /grp/last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        # one at a time, so the pool is the only reason connections are shared
        for ln in req.split(b"\r\n\r\n")[:-1]:
            s.sendall(ln + b"\r\n\r\n")
            time.sleep(0.05)
        data, closed = recv_until_close(s, 5)
    finally:
        s.close()
    rs, _ = parse_responses(data)
    check_eq([x.body for x in rs], [b"/k%d\n" % i for i in range(5)] + [b"/last\n"],
             "six responses in order on one client connection")
    check(closed, "Connection: close honoured after the last response")
    conns = {q.conn_id for q in b.complete_requests()}
    check(len(conns) == 1 and len(b.complete_requests()) == 6,
          "upstream keepalive = 8: 6 requests on one backend connection",
          [(q.target, q.conn_id) for q in b.complete_requests()])

    # --- pipelining: all requests in one write
    b.reset()
    req = (b"GET /raw/p1 HTTP/1.1\r\nHost: a\r\n\r\n"
           b"GET /raw/p2 HTTP/1.1\r\nHost: a\r\n\r\n"
           b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
           b"GET /raw/p3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    data, closed = raw_exchange(port, req, timeout=5)
    rs, _ = parse_responses(data)
    check_eq([(x.status, x.body) for x in rs],
             [(200, b"/raw/p1\n"), (200, b"/raw/p2\n"), (200, b"ok\n"), (200, b"/raw/p3\n")],
             "pipelined requests answered in order")
    check(closed, "pipelined: connection closed after Connection: close")

    # --- HTTP/1.0 client
    data, closed = raw_exchange(port, b"GET /raw/ten HTTP/1.0\r\n\r\n", timeout=5)
    rs, _ = parse_responses(data)
    check(len(rs) == 1 and rs[0].status == 200 and rs[0].body == b"/raw/ten\n",
          "HTTP/1.0 request without Host -> 200", data[:300])
    check(closed, "HTTP/1.0 without keep-alive: connection closed")
    data, closed = raw_exchange(port, b"GET /raw/chunked HTTP/1.0\r\n\r\n", timeout=5)
    rs, _ = parse_responses(data)
    check(len(rs) == 1 and rs[0].header("Transfer-Encoding") is None
          and rs[0].body == b"chunk-one,chunk-two" and data.startswith(b"HTTP/1."),
          "HTTP/1.0 client gets a chunked upstream body de-chunked", data[:400])
    data, closed = raw_exchange(port, b"GET /raw/chunked HTTP/1.1\r\nHost: a\r\n"
                                b"Connection: close\r\n\r\n", timeout=5)
    rs, _ = parse_responses(data)
    check(len(rs) == 1 and rs[0].body == b"chunk-one,chunk-two",
          "HTTP/1.1 client gets a chunked upstream body intact", data[:400])

    # --- curl end to end
    cp = curl(["-i", "http://127.0.0.1:%d/api/curl?x=1" % port], timeout=10)
    check(cp is not None and cp.returncode == 0 and b"200" in cp.stdout.split(b"\r\n")[0]
          and cp.stdout.endswith(b"/curl?x=1\n"), "curl through proxyd", cp and cp.stdout)

    # --- workers: threads exist and both serve
    tasks = p.threads()
    check(len(tasks) >= 3, "workers = 2: at least 3 threads (main + 2 workers)", tasks)
    before = cpu_by_thread(p.pid)
    try:
        subprocess.run(["wrk", "-t2", "-c16", "-d2s",
                        "http://127.0.0.1:%d/healthz" % port],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
        after = cpu_by_thread(p.pid)
        busy = [t for t in after if after[t] - before.get(t, 0) >= 5]
        check(len(busy) >= 2, "both worker threads used CPU under load",
              {t: after[t] - before.get(t, 0) for t in after})
    except FileNotFoundError:
        check(False, "wrk not installed (needed for the worker load check)")
    check(p.alive(), "proxyd still running after all checks")


def cpu_by_thread(pid):
    out = {}
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/stat" % (pid, t)) as f:
                    st = f.read()
            except OSError:
                continue
            fields = st[st.rfind(")") + 2:].split()
            out[t] = int(fields[11]) + int(fields[12])  # utime + stime (ticks)
    except OSError:
        pass
    return out


if __name__ == "__main__":
    log("test_proxy_basic: proxyd=%s" % os.environ.get("PROXYD"))
    run_main(main)
