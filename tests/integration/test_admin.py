#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The admin endpoint: metrics checked against the traffic sent (and with
promtool), every `proxyd ctl` command, runtime state across reloads, the
journal line naming the caller, and the separation from the public sockets."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (PROXYD, Backend, Proxyd, Reply, check, check_eq, connect,  # noqa: E402
                     free_port, log, parse_responses, recv_until_close, refused_port,
                     run_main, run_proxyd)

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def admin_request(path, method="GET", sock_path=None, tcp=None, src=None):
    """One request to the admin endpoint -> (status, headers dict, body bytes)."""
    if tcp:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(10)
        if src:
            s.bind((src, 0))
        s.connect(("127.0.0.1", tcp))
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(sock_path)
    try:
        s.sendall(("%s %s HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
                   % (method, path)).encode())
        data, _ = recv_until_close(s, 10)
    finally:
        s.close()
    rs, _ = parse_responses(data)
    if not rs:
        return None, {}, data
    r = rs[0]
    return r.status, {k.lower(): v for k, v in r.headers}, r.body


def ctl(sock_path, *args, popen=False):
    cmd = [PROXYD, "ctl", "--socket", sock_path] + list(args)
    if popen:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value}"""
    out = {}
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', ln)
        if not m:
            out[("__bad__", ln)] = 0
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return out


def metric(ms, name, **labels):
    return ms.get((name, frozenset(labels.items())))


def raw_request(port, target, extra=b""):
    """A request with Connection: close -> (bytes sent, bytes received, status)."""
    req = (b"GET " + target.encode() + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
           + extra + b"\r\n")
    s = connect(port)
    try:
        s.sendall(req)
        data, _ = recv_until_close(s, 10)
    finally:
        s.close()
    rs, _ = parse_responses(data)
    return len(req), len(data), rs[0].status if rs else None


class Gate:
    """A backend handler that holds requests to /hold until released."""

    def __init__(self):
        self.release = threading.Event()

    def __call__(self, req):
        if req.target.startswith("/slow/hold"):
            self.release.wait(20)
        return Reply(200, [("Content-Type", "text/plain")], b"held\n")


def health_handler(status):
    def h(req):
        if req.target == "/healthz":
            return Reply(status, [], b"hc\n")
        return Reply(200, [], b"ok\n")
    return h


CONFIG = """
workers = 2;
upstreams = {
  app  = { servers = ( { address = "%(a1)s"; }, { address = "%(a2)s"; } ); };
  slow = { servers = ( { address = "%(s1)s"; }, { address = "%(s2)s"; } ); };
  w    = { servers = ( { address = "%(w1)s"; }, { address = "%(w2)s"; } ); };
  flaky = { servers = ( { address = "%(bad)s"; max_fails = 1; }, { address = "%(a1)s"; } ); };
  hc   = { health_check = { path = "/healthz"; interval = "1h"; timeout = "5s"; };
           servers = ( { address = "%(h1)s"; }, { address = "%(h2)s"; } ); };
};
servers = (
  { name = "main"; listen = [ "http" ];
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
    locations = (
      { prefix = "/app/"; proxy_pass = "http://app"; },
      { prefix = "/slow/"; proxy_pass = "http://slow"; },
      { prefix = "/w/"; proxy_pass = "http://w"; },
      { prefix = "/flaky/"; proxy_pass = "http://flaky"; },
      { prefix = "/hc/"; proxy_pass = "http://hc"; },
      { exact = "/gone"; return = 410; body = "gone\\n"; },
      { prefix = "/"; proxy_pass = "http://app"; }
    ); }
);
"""


def main():
    gate = Gate()
    backends = {
        "a1": Backend(), "a2": Backend(), "s1": Backend(gate), "s2": Backend(gate),
        "w1": Backend(), "w2": Backend(),
        "h1": Backend(health_handler(200)), "h2": Backend(health_handler(500)),
    }
    addr = {k: b.address for k, b in backends.items()}
    addr["bad"] = "127.0.0.1:%d" % refused_port()
    port = free_port()
    sdir = tempfile.mkdtemp(prefix="proxyd-admin-")
    sock = os.path.join(sdir, "admin.sock")
    try:
        with Proxyd(CONFIG % addr, sockets=[("127.0.0.1:%d" % port, "http"), (sock, "admin")]) as p:
            run_checks(p, port, sock, backends, addr, gate)
    finally:
        gate.release.set()
        for b in backends.values():
            b.close()
        shutil.rmtree(sdir, ignore_errors=True)
    separation_and_config()
    explicit_admin_server()
    tls_admin_server()
    metrics_off()


def run_checks(p, port, sock, backends, addr, gate):
    # ---- traffic with known sizes ----
    sent = recv = 0
    for _ in range(6):
        n_out, n_in, st = raw_request(port, "/app/x")
        check_eq(st, 200, "GET /app/x through proxyd")
        sent += n_out
        recv += n_in
    for _ in range(3):
        n_out, n_in, st = raw_request(port, "/gone")
        check_eq(st, 410, "GET /gone (return 410)")
        sent += n_out
        recv += n_in
    check_eq(raw_request(port, "/flaky/y")[2], 200, "GET /flaky/y: the refused server is retried on the next one")

    status, hdr, body = admin_request("/metrics", sock_path=sock)
    check_eq(status, 200, "GET /metrics on the admin socket")
    check(hdr.get("content-type", "").startswith("text/plain; version=0.0.4"),
          "/metrics has the Prometheus text content type", hdr.get("content-type"))
    text = body.decode()
    ms = parse_metrics(text)
    check(not [k for k in ms if k[0] == "__bad__"], "every metrics line parses",
          [k[1] for k in ms if k[0] == "__bad__"][:3])
    h11 = dict(protocol="HTTP/1.1", scheme="http")
    check_eq(metric(ms, "proxyd_requests_total", server="main", location="/app/", code="2xx", **h11), 6.0,
             "requests_total for location /app/ and 2xx is 6")
    check_eq(metric(ms, "proxyd_requests_total", server="main", location="= /gone", code="4xx", **h11), 3.0,
             "requests_total for location = /gone and 4xx is 3")
    check_eq(metric(ms, "proxyd_server_requests_total", server="main", code="2xx", **h11), 7.0,
             "server_requests_total for main and 2xx is 7")
    check_eq(metric(ms, "proxyd_request_duration_seconds_count", server="main"), 10.0,
             "request_duration_seconds_count for main is 10")
    check_eq(metric(ms, "proxyd_request_duration_seconds_bucket", server="main", le="+Inf"), 10.0,
             "the +Inf bucket equals the count")
    n_bytes_in = metric(ms, "proxyd_received_bytes_total", server="main")
    n_bytes_out = metric(ms, "proxyd_sent_bytes_total", server="main")
    req_flaky = len(b"GET /flaky/y HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    check_eq(n_bytes_in, float(sent + req_flaky), "received_bytes_total is the bytes the test sent")
    check(n_bytes_out is not None and n_bytes_out > recv, "sent_bytes_total covers the bytes received",
          (n_bytes_out, recv))
    for k in ("a1", "a2"):
        sel = metric(ms, "proxyd_upstream_server_selected_total", upstream="app", server=addr[k])
        check_eq(sel, 3.0, "app server %s was selected 3 times (round robin over 6)" % k)
        check_eq(metric(ms, "proxyd_upstream_response_duration_seconds_count", upstream="app", server=addr[k]),
                 3.0, "upstream response duration count of %s is 3" % k)
        check_eq(metric(ms, "proxyd_upstream_server_state", upstream="app", server=addr[k], state="up"), 1.0,
                 "app server %s is up" % k)
    check_eq(metric(ms, "proxyd_upstream_server_failures_total", upstream="flaky", server=addr["bad"]), 1.0,
             "the refused flaky server has 1 failure")
    check_eq(metric(ms, "proxyd_upstream_server_state", upstream="flaky", server=addr["bad"], state="down"), 1.0,
             "the refused flaky server is down (max_fails = 1)")
    check_eq(metric(ms, "proxyd_upstream_server_failures_total", upstream="flaky", server=addr["a1"]), 0.0,
             "the good flaky server has no failure")
    check_eq(metric(ms, "proxyd_workers"), 2.0, "proxyd_workers is 2")
    check_eq(metric(ms, "proxyd_reloads_total"), 0.0, "no reload yet")
    check_eq(metric(ms, "proxyd_tls_handshakes_total"), 0.0, "no TLS handshake on plain sockets")
    check(metric(ms, "proxyd_connections") is not None and metric(ms, "proxyd_connections") >= 1,
          "proxyd_connections counts the scrape's own connection")
    if os.access(PROMTOOL, os.X_OK):
        pr = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        check(pr.returncode == 0, "promtool check metrics accepts /metrics", pr.stdout + pr.stderr)
    else:
        check(False, "promtool is installed (Debian package prometheus)", PROMTOOL)

    # ---- the public socket never reaches the admin handler ----
    before = len(backends["a1"].requests) + len(backends["a2"].requests)
    _, _, st = raw_request(port, "/metrics")
    after = len(backends["a1"].requests) + len(backends["a2"].requests)
    check(st == 200 and after == before + 1, "GET /metrics on the public socket is proxied to the backend",
          (st, before, after))
    _, _, st = raw_request(port, "/api/reload")
    check_eq(st, 200, "/api/reload on the public socket is an ordinary proxied request")

    # ---- read-only endpoints ----
    status, hdr, body = admin_request("/api/status", sock_path=sock)
    st_json = json.loads(body)
    check(status == 200 and st_json["workers"] == 2 and [s["name"] for s in st_json["servers"]] == ["main", "admin"],
          "/api/status lists the servers", body[:300])
    status, hdr, body = admin_request("/", sock_path=sock)
    check(status == 200 and hdr.get("content-type", "").startswith("text/html") and b"<table id=\"upstreams\"" in body
          and b"src=" not in body and b"href=" not in body,
          "/ is the self-contained status page", body[:200])
    status, hdr, _ = admin_request("/metrics", "POST", sock_path=sock)
    check_eq((status, hdr.get("allow")), (405, "GET, HEAD"), "POST /metrics is 405, Allow: GET, HEAD")
    status, hdr, _ = admin_request("/api/upstreams/drain?upstream=app&server=" + addr["a1"], "GET", sock_path=sock)
    check_eq((status, hdr.get("allow")), (405, "POST"), "a command with GET is 405, Allow: POST")
    status, hdr, _ = admin_request("/metrics", sock_path=sock)
    check(status == 200 and "allow" not in hdr, "a 200 has no Allow (it is the 405's alone)", hdr)
    check_eq(admin_request("/nothing", sock_path=sock)[0], 404, "an unknown admin path is 404")

    # ---- drain: in-flight requests finish, new ones go elsewhere ----
    s = connect(port, timeout=30)
    s.sendall(b"GET /slow/hold HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    held = backends["s1"]
    ok = False
    for _ in range(200):
        if held.requests:
            ok = True
            break
        threading.Event().wait(0.05)
    check(ok, "the held request reached slow server s1")
    ms = parse_metrics(admin_request("/metrics", sock_path=sock)[2].decode())
    check_eq(metric(ms, "proxyd_upstream_server_active_requests", upstream="slow", server=addr["s1"]), 1.0,
             "s1 has 1 active request")
    check_eq(metric(ms, "proxyd_requests_active"), 2.0, "2 requests in progress (the held one and the scrape)")
    cp = ctl(sock, "drain", "slow", addr["s1"], popen=True)
    out, err = cp.communicate(timeout=30)
    check(cp.returncode == 0 and '"state":"draining"' in out and '"active":1' in out,
          "proxyd ctl drain slow s1", out + err)
    m = p.wait_log(r"upstream slow: server %s draining \(by pid (\d+) uid (\d+)\)" % re.escape(addr["s1"]))
    check(m is not None and int(m.group(1)) == cp.pid and int(m.group(2)) == os.getuid(),
          "the drain is logged with the caller's pid and uid", m.group(0) if m else p.log_text()[-800:])
    for _ in range(4):
        check_eq(raw_request(port, "/slow/x")[2], 200, "GET /slow/x while s1 drains")
    check_eq(len(held.requests), 1, "no new request reached the draining s1")
    check_eq(len([r for r in backends["s2"].requests if r.target == "/slow/x"]), 4, "s2 took the 4 new requests")
    gate.release.set()
    data, _ = recv_until_close(s, 20)
    s.close()
    rs, _ = parse_responses(data)
    check(rs and rs[0].status == 200 and rs[0].body == b"held\n", "the in-flight request on s1 finished", data[:200])
    rc, out, err = ctl(sock, "list")
    line = [ln for ln in out.splitlines() if addr["s1"] in ln]
    check(rc == 0 and line and line[0].split()[:3] == ["slow", addr["s1"], "draining"],
          "proxyd ctl list shows s1 draining", out + err)

    # ---- disable / enable ----
    rc, out, err = ctl(sock, "disable", "slow", addr["s2"])
    check(rc == 0 and '"state":"disabled"' in out, "proxyd ctl disable slow s2", out + err)
    check_eq(raw_request(port, "/slow/x")[2], 502, "no usable server in slow: 502")
    rc, out, err = ctl(sock, "enable", "slow", addr["s1"])
    check(rc == 0 and '"state":"up"' in out, "proxyd ctl enable slow s1", out + err)
    n1 = len(held.requests)
    check_eq(raw_request(port, "/slow/x")[2], 200, "GET /slow/x after enabling s1")
    check_eq(len(held.requests), n1 + 1, "s1 takes requests again")

    # ---- weight ----
    rc, out, err = ctl(sock, "weight", "w", addr["w1"], "3")
    check_eq(rc, 0, "proxyd ctl weight w w1 3")
    for _ in range(8):
        raw_request(port, "/w/x")
    check_eq((len(backends["w1"].requests), len(backends["w2"].requests)), (6, 2),
             "weights 3:1 split 8 requests 6:2")
    rc, out, err = ctl(sock, "weight", "w", addr["w1"], "0")
    check(rc != 0 and "1 to 1000" in err, "weight 0 is refused", out + err)
    rc, out, err = ctl(sock, "drain", "nosuchgroup", addr["w1"])
    check(rc != 0 and "no upstream group nosuchgroup" in err, "an unknown group is an error", err)
    rc, out, err = ctl(sock, "drain", "w", "127.0.0.9:1")
    check(rc != 0 and "has no server" in err, "an unknown server is an error", err)

    # ---- forced health checks ----
    ms = parse_metrics(admin_request("/metrics", sock_path=sock)[2].decode())
    passed0 = metric(ms, "proxyd_upstream_server_health_checks_total", upstream="hc", server=addr["h1"],
                     result="pass")
    rc, out, err = ctl(sock, "check", "hc", addr["h1"])
    check(rc == 0 and '"result":"pass"' in out, "proxyd ctl check hc h1 passes", out + err)
    ms = parse_metrics(admin_request("/metrics", sock_path=sock)[2].decode())
    check_eq(metric(ms, "proxyd_upstream_server_health_checks_total", upstream="hc", server=addr["h1"],
                    result="pass"), passed0 + 1, "the forced check is counted as a pass")
    rc, out, err = ctl(sock, "check", "hc", addr["h2"])
    check(rc != 0 and '"result":"fail"' in out and "500" in out, "proxyd ctl check hc h2 fails (500)", out + err)
    check_eq(metric(parse_metrics(admin_request("/metrics", sock_path=sock)[2].decode()),
                    "proxyd_upstream_server_state", upstream="hc", server=addr["h2"], state="unhealthy"),
             1.0, "h2 is unhealthy")
    rc, out, err = ctl(sock, "check", "app", addr["a1"])
    check(rc != 0 and "no health_check" in err, "check on a group without health_check is an error", err)

    # ---- reload keeps overrides of unchanged servers ----
    ctl(sock, "drain", "app", addr["a2"])
    rc, out, err = ctl(sock, "reload")
    check(rc == 0 and '"generation":2' in out, "proxyd ctl reload", out + err)
    rc, out, err = ctl(sock, "list")
    states = {tuple(ln.split()[:2]): ln.split()[2] for ln in out.splitlines()[1:]}
    check_eq(states.get(("app", addr["a2"])), "draining", "a2 still drains after a reload")
    check_eq(states.get(("w", addr["w1"])), "up", "w1 is up")
    ms = parse_metrics(admin_request("/metrics", sock_path=sock)[2].decode())
    check_eq(metric(ms, "proxyd_upstream_server_weight", upstream="w", server=addr["w1"]), 3.0,
             "w1 keeps weight 3 after a reload")
    check_eq(metric(ms, "proxyd_reloads_total"), 1.0, "reloads_total is 1")
    check_eq(metric(ms, "proxyd_requests_total", server="main", location="/app/", code="2xx", **h11), 6.0,
             "counters go on across the reload")
    # the configuration changes a2: its override goes
    with open(p.conf_path) as f:
        conf = f.read()
    with open(p.conf_path, "w") as f:
        f.write(conf.replace('{ address = "%s"; } ); };' % addr["a2"],
                             '{ address = "%s"; weight = 2; } ); };' % addr["a2"]))
    rc, out, err = ctl(sock, "reload")
    check_eq(rc, 0, "reload with a2's weight changed")
    rc, out, err = ctl(sock, "list")
    states = {tuple(ln.split()[:2]): ln.split()[2] for ln in out.splitlines()[1:]}
    check_eq(states.get(("app", addr["a2"])), "up", "a2's drain is gone: its configuration changed")
    # a broken configuration
    with open(p.conf_path, "a") as f:
        f.write("\nbogus_setting = 1;\n")
    line = len(open(p.conf_path).read().splitlines())
    rc, out, err = ctl(sock, "reload")
    check(rc != 0 and re.search(r"proxyd\.conf:%d: .*bogus_setting" % line, err),
          "a failed reload returns file:line: why", out + err)
    ms = parse_metrics(admin_request("/metrics", sock_path=sock)[2].decode())
    check_eq(metric(ms, "proxyd_reload_failures_total"), 1.0, "reload_failures_total is 1")
    check_eq(metric(ms, "proxyd_config_generation"), 3.0, "generation 3 still serves")
    check_eq(raw_request(port, "/app/x")[2], 200, "the old configuration keeps serving")


def separation_and_config():
    rc, out, err, _ = run_proxyd(["-t", "-c", "{conf}"], config="""
servers = (
  { name = "main"; listen = [ "http" ]; locations = ( { prefix = "/"; return = 200; } ); },
  { name = "ops"; admin = true; listen = [ "http" ]; }
);""")
    check(rc == 1 and "admin endpoint needs a socket of its own" in out + err,
          "an admin server sharing a socket with another server is an error", out + err)
    rc, out, err, _ = run_proxyd(["-t", "-c", "{conf}"], config="""
servers = ( { name = "main"; listen = [ "admin" ]; locations = ( { prefix = "/"; return = 200; } ); } );""")
    check(rc == 1 and "only a server" in out + err and "admin = true" in out + err,
          "an ordinary server on the socket named admin is an error", out + err)
    rc, out, err, _ = run_proxyd(["-t", "-c", "{conf}"], config="""
servers = ( { name = "ops"; admin = true; listen = [ "admin" ]; locations = ( { prefix = "/"; return = 200; } ); } );""")
    check(rc == 1 and "takes no \"locations\"" in out + err, "an admin server with locations is an error", out + err)


def explicit_admin_server():
    """A TCP admin socket (a drop-in with FileDescriptorName=admin) and access rules."""
    port, aport = free_port(), free_port()
    conf = """
servers = (
  { name = "main"; listen = [ "http" ];
    locations = ( { prefix = "/"; return = 200; body = "public\\n"; } ); },
  { name = "ops"; admin = true; listen = [ "admin" ];
    access = [ "allow 127.0.0.2", "deny all" ]; }
);"""
    with Proxyd(conf, sockets=[("127.0.0.1:%d" % port, "http"), ("127.0.0.1:%d" % aport, "admin")]):
        status, _, body = admin_request("/metrics", tcp=aport)
        check_eq(status, 403, "the admin server's access rules deny 127.0.0.1")
        status, _, body = admin_request("/metrics", tcp=aport, src="127.0.0.2")
        check(status == 200 and b"proxyd_server_requests_total" in body,
              "the admin server's access rules allow 127.0.0.2 over the TCP admin socket", body[:200])
        status, _, body = admin_request("/", tcp=port)
        check(status == 200 and body == b"public\n", "the public socket serves its own location")


def metrics_off():
    """metrics = false: requests are not counted; the endpoint still answers."""
    port, aport = free_port(), free_port()
    conf = """
metrics = false;
servers = ( { name = "main"; listen = [ "http" ]; locations = ( { prefix = "/"; return = 200; } ); } );"""
    with Proxyd(conf, sockets=[("127.0.0.1:%d" % port, "http"), ("127.0.0.1:%d" % aport, "admin")]):
        for _ in range(2):
            check_eq(raw_request(port, "/")[2], 200, "GET / with metrics = false")
        status, _, body = admin_request("/metrics", tcp=aport)
        ms = parse_metrics(body.decode())
        check(status == 200 and metric(ms, "proxyd_request_duration_seconds_count", server="main") == 0.0
              and not [k for k in ms if k[0] == "proxyd_requests_total"],
              "metrics = false: no request is counted", body[:300])


def tls_admin_server():
    """TLS with required client certificates on the admin endpoint, and the TLS metrics."""
    from test_tls import Certs, curl_https, status_of
    certs = Certs()
    port, aport = free_port(), free_port()
    conf = """
servers = (
  { name = "main"; listen = [ "http" ]; locations = ( { prefix = "/"; return = 200; } ); },
  { name = "ops"; admin = true; listen = [ "admin" ];
    tls = { certificate = "%s"; key = "%s"; client_ca = "%s"; verify_client = "on"; }; }
);""" % (certs.c("example"), certs.k("example"), certs.c("ca"))
    try:
        with Proxyd(conf, sockets=[("127.0.0.1:%d" % port, "http"), ("127.0.0.1:%d" % aport, "admin")]):
            mtls = ["--cert", certs.c("client"), "--key", certs.k("client")]
            st, body = status_of(curl_https(aport, "/metrics", certs, extra=mtls))
            ms = parse_metrics(body.decode())
            check(st == 200 and metric(ms, "proxyd_tls_handshakes_total") == 1.0,
                  "the TLS admin endpoint answers a client with a certificate; 1 handshake counted", (st, body[:200]))
            st, _ = status_of(curl_https(aport, "/metrics", certs))
            check(st != 200, "without a client certificate the TLS admin endpoint refuses", st)
            st, body = status_of(curl_https(aport, "/metrics", certs, extra=mtls))
            ms = parse_metrics(body.decode())
            check_eq((metric(ms, "proxyd_tls_handshakes_total"), metric(ms, "proxyd_tls_handshake_failures_total")),
                     (3.0, 1.0), "3 TLS handshakes counted, 1 of them failed")
    finally:
        certs.close()


if __name__ == "__main__":
    run_main(main)
