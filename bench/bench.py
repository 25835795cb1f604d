#!/usr/bin/python3
"""proxyd benchmark: proxyd vs nginx vs HAProxy on one machine, in one run.

Run through bench/run.sh (see bench/README.md). Standard library only.

The run is driven by three tables below:
  PIN       - which CPUs each role may use (taskset), identical for all proxies;
  TARGETS   - how to configure and start each proxy (and the origin itself);
  SCENARIOS - what to measure. A scenario is one dict; adding one (e.g. TLS
              handshakes) is adding one entry, nothing else.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

# ---------------------------------------------------------------------------
# CPU pinning (taskset -c). The machine has 2 cores. Every proxy gets both
# cores, as its production configuration would (2 workers / 2 threads); the
# load generator and the origin share the same two cores, unpinned, so the
# kernel balances them the same way for every proxy. Change here to experiment
# (e.g. {"proxy": "0", "wrk": "1", "origin": "1"}); the values are printed with
# the results.
PIN = {
    "proxy": "0,1",
    "origin": "0,1",
    "wrk": "0,1",
    "client": "0,1",
}

PORTS = {"origin": 18080, "proxyd": 18081, "nginx": 18082, "haproxy": 18083, "relay": 18084, "varnish": 18085}
TLS_PORT_OFFSET = 100  # a proxy's TLS listener is on its port + 100

SMALL_BYTES = 100
BIG_BYTES = 1024 * 1024

# ---------------------------------------------------------------------------
# Scenarios. Keys:
#   id, title          - row label
#   kind               - "wrk" (throughput, bounded by --duration), "h2load" (the same
#                        over HTTP/2: conns x streams) or "hold" (N idle keep-alive
#                        connections, memory)
#   path, conns        - request path (/small = 100 B, /big = 1 MiB) and connections
#   headers            - extra request headers given to wrk
#   options            - proxy variant this scenario needs; proxies are started
#                        once per distinct options set: {"access_log": True}
#                        (proxyd to the journal, see JOURNALD), {"access_log":
#                        "file"} (proxyd to its buffered file target),
#                        {"tls": True} (listener with TLS, client speaks https),
#                        {"tls": True, "h2": True} (ALPN h2 offered), {"h2c": True}
#                        (a cleartext listener that takes HTTP/2 with prior knowledge)
#   targets            - which columns run it ("origin" = wrk straight to the origin)
#   metrics            - (key, label, better, {column: (op, ratio)}) where the
#                        dict holds the target for proxyd/column ratios
# Metric keys come from measure_wrk()/measure_hold():
#   rps, p99_ms, cpu_per_100k, mibps, cpu_per_gib, handshakes, rss_per_conn_kib,
#   pss_per_conn_kib, base_rss_mib, base_pss_mib
STANDARD = ("origin", "proxyd", "nginx", "haproxy")
# relay (bench/relay.c): copies bytes between each client and its own origin connection, no HTTP
# work at all; its figures in (a) are the floor any proxy pays on this machine.
ALL = STANDARD + ("relay",)
PROXIES = ("proxyd", "nginx", "haproxy")
# The cache scenarios (k1, k2) compare proxyd's cache with nginx's proxy_cache and Varnish
# (malloc storage); the origin serves /cached/* with Cache-Control: max-age=3600.
CACHES = ("proxyd", "nginx", "varnish")
COLUMNS = ALL + ("varnish",)

SCENARIOS = [
    dict(id="a", title="small 100 B, 50 keep-alive conns", kind="wrk", path="/small", conns=50,
         headers=[], options={}, targets=ALL,
         metrics=[("rps", "requests/s", "higher", {"nginx": (">=", 1.25)}),
                  ("p99_ms", "p99 latency ms", "lower", {"nginx": ("<=", 1.0)}),
                  ("cpu_per_100k", "CPU s / 100k req", "lower", {"nginx": ("<=", 0.7)})]),
    # a0: (a) for proxyd with `metrics = false`: what counting for /metrics costs (proxyd's
    # (a) column counts, as by default); `bench/run.sh --only a,a0 --targets proxyd`.
    dict(id="a0", title="(a) with proxyd's metrics off", kind="wrk", path="/small", conns=50,
         headers=[], options={"metrics": False}, targets=("proxyd",),
         metrics=[("rps", "requests/s", "higher", {}),
                  ("p99_ms", "p99 latency ms", "lower", {}),
                  ("cpu_per_100k", "CPU s / 100k req", "lower", {})]),
    # a1: (a) for proxyd with the traffic policy of issue 15 on: 3 rules that do not match,
    # 2 response headers and a rate limit that never rejects; `--only a,a1 --targets proxyd`.
    dict(id="a1", title="(a) with 3 rules, 2 add_header, a rate limit", kind="wrk", path="/small",
         conns=50, headers=[], options={"policy": True}, targets=("proxyd",),
         metrics=[("rps", "requests/s", "higher", {}),
                  ("p99_ms", "p99 latency ms", "lower", {}),
                  ("cpu_per_100k", "CPU s / 100k req", "lower", {})]),
    dict(id="b", title="1 MiB responses, 10 conns", kind="wrk", path="/big", conns=10,
         headers=[], options={}, targets=STANDARD,
         metrics=[("mibps", "MiB/s", "higher", {"nginx": (">=", 1.3), "haproxy": (">=", 1.0)}),
                  ("cpu_per_gib", "CPU s / GiB", "lower", {"nginx": ("<=", 0.5)})]),
    dict(id="c", title="small, client sends Connection: close", kind="wrk", path="/small", conns=50,
         headers=["Connection: close"], options={}, targets=STANDARD,
         metrics=[("rps", "requests/s", "higher", {"nginx": (">=", 1.2)})]),
    dict(id="d", title="5,000 idle keep-alive conns", kind="hold", path="/small", conns=5000,
         headers=[], options={}, targets=STANDARD,
         metrics=[("rss_per_conn_kib", "RSS KiB / idle conn", "lower", {"nginx": ("<=", 1.0)}),
                  ("pss_per_conn_kib", "PSS KiB / idle conn", "lower", {}),
                  ("base_rss_mib", "base RSS MiB (sum)", "lower", {"nginx": ("<=", 0.5)}),
                  ("base_pss_mib", "base PSS MiB (sum)", "lower", {})]),
    dict(id="e", title="(a) with access logs on", kind="wrk", path="/small", conns=50,
         headers=[], options={"access_log": True}, targets=PROXIES,
         metrics=[("rps", "requests/s", "higher", {"nginx": (">=", 1.25)}),
                  ("p99_ms", "p99 latency ms", "lower", {"nginx": ("<=", 1.0)}),
                  ("cpu_per_100k", "CPU s / 100k req (+log sink)", "lower", {"nginx": ("<=", 0.7)})]),
    # e2: as e, but proxyd writes its access log to its own buffered file
    # (64 KiB per worker, written at the latest about two seconds later), like nginx's
    # buffer=64k flush=1s; no journal involved.
    dict(id="e2", title="(a) with access logs to a buffered file", kind="wrk", path="/small", conns=50,
         headers=[], options={"access_log": "file"}, targets=PROXIES,
         metrics=[("rps", "requests/s", "higher", {"nginx": (">=", 1.25)}),
                  ("p99_ms", "p99 latency ms", "lower", {"nginx": ("<=", 1.0)}),
                  ("cpu_per_100k", "CPU s / 100k req", "lower", {"nginx": ("<=", 0.7)})]),
    # TLS: run for every proxy whose TLS listener answers (proxyd shows n/a
    # until it terminates TLS). Same certificate (ECDSA P-256) and protocol
    # settings (TLS 1.2/1.3, ECDHE + AEAD) for all.
    dict(id="f1", title="TLS full handshakes (Connection: close)", kind="wrk", path="/small", conns=50,
         headers=["Connection: close"], options={"tls": True}, targets=PROXIES,
         metrics=[("rps", "handshakes/s", "higher", {"nginx": (">=", 1.0)})]),
    dict(id="f2", title="TLS small, 50 keep-alive conns", kind="wrk", path="/small", conns=50,
         headers=[], options={"tls": True}, targets=PROXIES,
         metrics=[("rps", "requests/s", "higher", {"nginx": (">=", 1.0)}),
                  ("cpu_per_100k", "CPU s / 100k req", "lower", {"nginx": ("<=", 1.0)})]),
    # HTTP/2 to the client (h2load: 10 connections x 10 concurrent streams, 100 B
    # responses), over TLS (ALPN h2) and cleartext with prior knowledge (h2c); the upstream
    # side stays HTTP/1.1 keep-alive for every proxy.
    dict(id="h1", title="HTTP/2 over TLS, small, 10 conns x 10 streams", kind="h2load", path="/small",
         conns=10, streams=10, headers=[], options={"tls": True, "h2": True}, targets=PROXIES,
         metrics=[("rps", "requests/s", "higher", {"nginx": (">=", 1.3)}),
                  ("cpu_per_100k", "CPU s / 100k req", "lower", {"nginx": ("<=", 0.7)})]),
    dict(id="h2", title="h2c (prior knowledge), small, 10 conns x 10 streams", kind="h2load", path="/small",
         conns=10, streams=10, headers=[], options={"h2c": True}, targets=PROXIES,
         metrics=[("rps", "requests/s", "higher", {"nginx": (">=", 1.3)}),
                  ("cpu_per_100k", "CPU s / 100k req", "lower", {"nginx": ("<=", 0.7)})]),
    # Cache hits: the warm-up's first request stores the object, every measured request is a
    # hit (proxyd: cache = true, memory tier; nginx: proxy_cache; Varnish: -s malloc).
    dict(id="k1", title="cache hits, 100 B object, 50 keep-alive conns", kind="wrk", path="/cached/small",
         conns=50, headers=[], options={"cache": True}, targets=CACHES,
         metrics=[("rps", "requests/s", "higher", {"nginx": (">=", 1.3), "varnish": (">=", 1.0)}),
                  ("cpu_per_100k", "CPU s / 100k req", "lower", {"nginx": ("<=", 0.7)})]),
    dict(id="k2", title="cache hits, 1 MiB object, 50 keep-alive conns", kind="wrk", path="/cached/big",
         conns=50, headers=[], options={"cache": True}, targets=CACHES,
         metrics=[("rps", "requests/s", "higher", {"nginx": (">=", 1.3), "varnish": (">=", 1.0)}),
                  ("cpu_per_100k", "CPU s / 100k req", "lower", {"nginx": ("<=", 0.7)})]),
]

TLS_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
ACCESS_FILE = {"proxyd-file": "proxyd-access.log"}  # proxyd's own access-log file (e2)


# ---------------------------------------------------------------------------
# Process bookkeeping: everything we start is in its own session and is killed
# (whole process group) on exit, error, timeout or signal.

class Procs:
    def __init__(self):
        self.live = []

    def start(self, argv, cpus=None, stdout=None, stderr=None, env=None, stdin=subprocess.DEVNULL):
        if cpus:
            argv = ["taskset", "-c", cpus] + list(argv)
        p = subprocess.Popen(argv, stdout=stdout or subprocess.DEVNULL, stderr=stderr or subprocess.DEVNULL,
                             stdin=stdin, env=env, start_new_session=True, preexec_fn=raise_nofile)
        self.live.append(p)
        return p

    def stop(self, p, timeout=10):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=5)
        else:
            # the leader exited; make sure nothing of its group survives
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if p in self.live:
            self.live.remove(p)

    def stop_all(self):
        for p in list(reversed(self.live)):
            try:
                self.stop(p, timeout=5)
            except Exception:
                pass


PROCS = Procs()
ORIGIN = None  # the running origin (its CPU is subtracted when estimating foreign load)


def raise_nofile():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(argv, timeout, **kw):
    """Run a short helper command (bounded), returning CompletedProcess."""
    return subprocess.run(argv, timeout=timeout, **kw)


# ---------------------------------------------------------------------------
# /proc measurements

def descendants(pid):
    """pid and all its descendant processes (threads are accounted in their process)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu_split(pids):
    """(user, system) CPU seconds summed over pids."""
    user = system = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        user += int(fields[11])  # utime (field 14)
        system += int(fields[12])  # stime (field 15)
    return user / CLK_TCK, system / CLK_TCK


def cpu_seconds(pids):
    return sum(cpu_split(pids))


def tcp_out_segments():
    """The machine's TCP segments sent so far (/proc/net/snmp Tcp: OutSegs)."""
    with open("/proc/net/snmp") as f:
        rows = [ln.split() for ln in f if ln.startswith("Tcp:")]
    return int(rows[1][rows[0].index("OutSegs")])


def memory_kib(pids):
    """(sum of VmRSS, sum of Pss) in KiB over pids."""
    rss = pss = 0
    for p in pids:
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            continue
    return rss, pss


def machine_busy():
    """(busy CPU seconds, total CPU seconds) of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    total = sum(v[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


JOURNAL_SOCKET = "/run/systemd/journal/socket"
JOURNALD_BINARY = "/lib/systemd/systemd-journald"


def find_journald():
    if not os.path.exists(JOURNAL_SOCKET):
        return []
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/comm" % d) as f:
                    if f.read().strip() == "systemd-journal":
                        out.append(int(d))
            except OSError:
                pass
    return out


# The journal sink of proxyd's access log (scenario e). "mode" is what the
# run used: "unused" (no scenario logs to the journal), "off" (--no-journald),
# "existing" (a journald was already running), "started" (the benchmark
# started /lib/systemd/systemd-journald itself; stopped at the end like every
# other process it starts), "failed" (none running and starting one failed).
JOURNALD = {"mode": "unused", "proc": None, "pids": [], "detail": "", "events": []}


def wants_journal(opts):
    """proxyd logs this option set's access entries to the journal (when there is one)."""
    return opts.get("access_log") is True


def journal_answers():
    """True when journald's native socket accepts datagrams (what sd_journal_send uses)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect(JOURNAL_SOCKET)
        return True
    except OSError:
        return False
    finally:
        s.close()


def ensure_journald(d, allowed):
    """Make sure a journald runs for proxyd's journal access log; start one if none.

    Returns the journald pids to count with proxyd's CPU ([] = proxyd logs to
    its stderr file). Bounded: waits at most 10 s for a started journald.
    """
    if not allowed:
        JOURNALD["mode"] = "off"
        return []
    ours = JOURNALD["proc"]
    if ours is not None and ours.poll() is None:
        return find_journald() or [ours.pid]
    jd = find_journald()
    if jd:
        if JOURNALD["mode"] in ("unused", "failed"):
            JOURNALD["mode"] = "existing"
        JOURNALD["pids"] = jd
        ev = "using the journald already running (pid %s)" % ",".join(map(str, jd))
        if ev not in JOURNALD["events"]:
            JOURNALD["events"].append(ev)
            log(ev)
        return jd
    if not os.access(JOURNALD_BINARY, os.X_OK):
        JOURNALD["mode"] = "failed"
        JOURNALD["detail"] = "%s not found" % JOURNALD_BINARY
        log("no journald running and %s; proxyd logs to its stderr file" % JOURNALD["detail"])
        return []
    outpath = os.path.join(d, "journald-output.log")
    with open(outpath, "ab") as out:
        # own process group (Procs.start), stopped with everything else
        p = PROCS.start([JOURNALD_BINARY], cpus=PIN["proxy"], stdout=out, stderr=out)
    end = time.monotonic() + 10
    while time.monotonic() < end and p.poll() is None:
        if p.pid in find_journald() and journal_answers():
            break
        time.sleep(0.1)
    if p.poll() is not None or p.pid not in find_journald() or not journal_answers():
        rc = p.poll()
        PROCS.stop(p)
        JOURNALD["mode"] = "failed"
        JOURNALD["detail"] = ("%s %s (see %s)" % (JOURNALD_BINARY, "exited with status %s" % rc
                                                   if rc is not None else "did not answer within 10 s", outpath))
        log("no journald running and starting one failed: %s; proxyd logs to its stderr file" % JOURNALD["detail"])
        return []
    JOURNALD.update(mode="started", proc=p, pids=[p.pid])
    ev = "started %s (pid %d, own process group)" % (JOURNALD_BINARY, p.pid)
    JOURNALD["events"].append(ev)
    log(ev)
    return find_journald()


def stop_journald():
    """Stop the journald this benchmark started (never one it found running)."""
    p = JOURNALD["proc"]
    if p is not None:
        PROCS.stop(p)
        JOURNALD["proc"] = None
        JOURNALD["stopped"] = p.pid
        log("stopped journald pid %d (started by the benchmark)" % p.pid)


def journal_count(pids, since, timeout=60):
    """Access entries (PROXYD_ACCESS=1) of these processes received since `since` (epoch seconds)."""
    argv = ["journalctl", "--no-pager", "-q", "-o", "cat", "--since", "@%.6f" % since, "PROXYD_ACCESS=1"]
    argv += ["_PID=%d" % p for p in pids]  # same field twice = OR
    try:
        r = run(argv, timeout, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None
    return r.stdout.count(b"\n")


# ---------------------------------------------------------------------------
# Configurations. Equivalent for all three: upstream keep-alive (64 idle per
# worker/pool), HTTP/1.1 to the origin, response buffering on, client
# keep-alive 75 s without a request limit, no extra proxy headers, access
# logs off unless the scenario turns them on.

def nginx_common(d, name):
    tmp = os.path.join(d, name + "-tmp")
    os.makedirs(tmp, exist_ok=True)
    return ("daemon off;\nmaster_process on;\npid %s/%s.pid;\nerror_log %s/%s-error.log warn;\n"
            "worker_rlimit_nofile 20000;\nevents { worker_connections 16000; multi_accept off; }\n"
            % (d, name, d, name), tmp)


def nginx_temp_paths(tmp):
    return "".join("  %s_temp_path %s/%s;\n" % (k, tmp, k)
                   for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


def render_origin(d, opts):
    head, tmp = nginx_common(d, "origin")
    return head + (
        "worker_processes 1;\n"
        "http {\n" + nginx_temp_paths(tmp) +
        "  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  tcp_nodelay on;\n"
        "  keepalive_requests 100000000;\n  keepalive_timeout 300s;\n"
        "  open_file_cache max=100 inactive=300s;\n"
        "  default_type application/octet-stream;\n"
        "  server {\n    listen %s:%d backlog=4096;\n    root %s/www;\n"
        "    location / { }\n"
        "    location /cached/ { alias %s/www/; add_header Cache-Control \"max-age=3600\"; }\n"
        "  }\n}\n") % (HOST, PORTS["origin"], d, d)


def render_nginx(d, opts):
    head, tmp = nginx_common(d, "nginx")
    port = PORTS["nginx"]
    if opts.get("access_log"):
        alog = "access_log %s/nginx-access.log combined buffer=64k flush=1s;" % d
    else:
        alog = "access_log off;"
    listen = "listen %s:%d backlog=4096;" % (HOST, port)
    if opts.get("tls"):
        listen = ("listen %s:%d ssl backlog=4096;\n    ssl_certificate %s/cert.pem;\n"
                  "    ssl_certificate_key %s/key.pem;\n    ssl_protocols TLSv1.2 TLSv1.3;\n"
                  "    ssl_ciphers %s;\n    ssl_prefer_server_ciphers on;"
                  % (HOST, port + TLS_PORT_OFFSET, d, d, TLS_CIPHERS))
        if opts.get("h2"):
            listen = listen.replace(" ssl backlog", " ssl http2 backlog", 1)
    elif opts.get("h2c"):
        listen = "listen %s:%d http2 backlog=4096;" % (HOST, port)
    return head + (
        "worker_processes 2;\n"
        "http {\n" + nginx_temp_paths(tmp) +
        "  %s\n  keepalive_requests 100000000;\n  keepalive_timeout 75s;\n  tcp_nodelay on;\n"
        "  upstream origin {\n    server %s:%d;\n    keepalive 64;\n"
        "    keepalive_requests 100000000;\n    keepalive_timeout 300s;\n  }\n"
        "%s"
        "  server {\n    %s\n"
        "    location / {\n      proxy_pass http://origin;\n      proxy_http_version 1.1;\n"
        "      proxy_set_header Connection \"\";\n      proxy_buffering on;\n%s    }\n  }\n}\n"
    ) % (alog, HOST, PORTS["origin"],
         ("  proxy_cache_path %s/nginx-cache levels=1:2 keys_zone=bench:10m max_size=1g inactive=1h "
          "use_temp_path=off;\n" % d) if opts.get("cache") else "",
         listen, "      proxy_cache bench;\n" if opts.get("cache") else "")


def render_haproxy(d, opts):
    port = PORTS["haproxy"]
    logs = opts.get("access_log")
    bind = "bind %s:%d" % (HOST, port)
    if opts.get("tls"):
        bind = ("bind %s:%d ssl crt %s/combined.pem ssl-min-ver TLSv1.2 ciphers %s"
                % (HOST, port + TLS_PORT_OFFSET, d, TLS_CIPHERS))
        if opts.get("h2"):
            bind += " alpn h2,http/1.1"
    elif opts.get("h2c"):
        bind += " proto h2"
    return (
        "global\n  nbthread 2\n  maxconn 9000\n" +
        ("  log stdout format raw local0\n" if logs else "") +
        "defaults\n  mode http\n  option http-keep-alive\n  http-reuse always\n" +
        ("  log global\n  option httplog\n" if logs else "") +
        "  maxconn 9000\n  timeout connect 5s\n  timeout client 75s\n  timeout server 60s\n"
        "  timeout http-keep-alive 75s\n  timeout http-request 10s\n"
        "frontend fe\n  %s\n  default_backend be\n"
        "backend be\n  server origin %s:%d\n") % (bind, HOST, PORTS["origin"])


def cfg_string(v):
    """A libconfig string literal."""
    return '"%s"' % v.replace("\\", "\\\\").replace('"', '\\"')


def render_proxyd(d, opts):
    port = PORTS["proxyd"]
    tls = ""
    if opts.get("tls"):
        port += TLS_PORT_OFFSET
        tls = ('    tls = { certificate = "%s/cert.pem"; key = "%s/key.pem"; };\n' % (d, d))
        tls += "    http2 = %s;\n" % ("true" if opts.get("h2") else "false")
    elif opts.get("h2c"):
        tls = "    http2_cleartext = true;\n"
    alog = opts.get("access_log")
    if alog == "file":
        # proxyd's buffered file target: 64 KiB per worker, written within about two seconds
        alog = cfg_string(os.path.join(d, ACCESS_FILE["proxyd-file"]))
    else:
        # true: to the journal when stderr is the journal stream, else to stderr
        alog = "true" if alog else "false"
    metrics = "metrics = false;\n" if opts.get("metrics") is False else ""
    if opts.get("cache"):
        metrics += 'cache_path = %s;\ncache_memory_size = "256m";\n' % cfg_string(os.path.join(d, "proxyd-cache"))
    policy = ""
    if opts.get("policy"):
        metrics += 'limits = { bench = { rate = "1000000r/s"; burst = 100000; nodelay = true; }; };\n'
        policy = ('    limit = [ "bench" ];\n'
                  '    add_header = { X-Frame-Options = "DENY"; Strict-Transport-Security = "max-age=63072000"; };\n')
    return metrics + (
        "workers = 2;\nlog_level = \"warning\";\naccess_log = %s;\n"
        "upstreams = {\n  origin = {\n    keepalive = 64;\n"
        "    servers = ( { address = \"%s:%d\"; } );\n  };\n};\n"
        "servers = (\n  {\n    name = \"bench\";\n    listen = [ \"%s:%d\" ];\n%s%s"
        "    locations = ( { prefix = \"/\"; proxy_pass = \"http://origin\";%s } );\n  }\n);\n"
    ) % (alog, HOST, PORTS["origin"], HOST, port, tls, policy,
         (" cache = true;" if opts.get("cache") else "") +
         (("\n        rules = ( { method = \"DELETE\"; return = 405; },"
          " { header = { User-Agent = \"~*badbot\"; }; return = 403; },"
          " { arg = { debug = \"1\"; }; return = 404; } );") if opts.get("policy") else ""))


def argv_nginx(conf, d, opts, binary):
    return ["/usr/sbin/nginx", "-p", d, "-c", conf]


def argv_haproxy(conf, d, opts, binary):
    return [shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", conf]


def argv_proxyd(conf, d, opts, binary):
    return [binary, "-c", conf]


def render_varnish(d, opts):
    return ("vcl 4.1;\nbackend default { .host = \"%s\"; .port = \"%d\"; }\n" % (HOST, PORTS["origin"]))


def argv_varnish(conf, d, opts, binary):
    # foreground, no jail (the work dir is ours), no management port, malloc storage; the
    # default 2 thread pools
    work = os.path.join(d, "varnish-work")
    shutil.rmtree(work, ignore_errors=True)
    return ["/usr/sbin/varnishd", "-F", "-j", "none", "-n", work, "-f", conf, "-T", "none",
            "-a", "%s:%d" % (HOST, PORTS["varnish"]), "-s", "malloc,512m"]


def render_relay(d, opts):
    return "# bench/relay.c takes no configuration: relay %d -> %s:%d, 2 threads\n" % (
        PORTS["relay"], HOST, PORTS["origin"])


def argv_relay(conf, d, opts, binary):
    return [RELAY_BIN, str(PORTS["relay"]), str(PORTS["origin"]), "2"]


# name -> (config renderer, config file suffix, argv builder, access-log file when on)
TARGETS = {
    "origin": (render_origin, "conf", argv_nginx, None),
    "proxyd": (render_proxyd, "conf", argv_proxyd, "proxyd-stderr.log"),
    "nginx": (render_nginx, "conf", argv_nginx, "nginx-access.log"),
    "haproxy": (render_haproxy, "cfg", argv_haproxy, "haproxy-stdout.log"),
    "relay": (render_relay, "conf", argv_relay, None),
    "varnish": (render_varnish, "vcl", argv_varnish, None),
}


def access_log_file(name, opts):
    """The file a proxy's access log goes to with these options (None: no file)."""
    if not opts.get("access_log"):
        return None
    if name == "proxyd" and opts.get("access_log") == "file":
        return ACCESS_FILE["proxyd-file"]
    return TARGETS[name][3]


def opts_key(opts):
    return ",".join("%s=%s" % kv for kv in sorted(opts.items())) or "default"


class Running:
    def __init__(self, name, proc, opts, logfile, extra_pids, journal=False):
        self.name, self.proc, self.opts, self.logfile, self.extra_pids = name, proc, opts, logfile, extra_pids
        self.journal = journal  # access entries go to journald (counted there, not in logfile)

    def pids(self):
        return descendants(self.proc.pid) + list(self.extra_pids)


def url_for(name, opts, path):
    port = PORTS[name]
    if opts.get("tls"):
        return "https://%s:%d%s" % (HOST, port + TLS_PORT_OFFSET, path)
    return "http://%s:%d%s" % (HOST, port, path)


def probe(name, opts, timeout, proc=None):
    """GET /small until it answers 200 with the right size, or timeout, or proc exits. True/False."""
    port = PORTS[name] + (TLS_PORT_OFFSET if opts.get("tls") else 0)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        if opts.get("h2c"):
            # nginx's and HAProxy's h2c listeners speak HTTP/2 only
            r = run(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                     "http://%s:%d/small" % (HOST, port)], 5, capture_output=True, text=True)
            if r.stdout.strip() == "200 %d" % SMALL_BYTES:
                return True
            time.sleep(0.1)
            continue
        try:
            if opts.get("tls"):
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                c = http.client.HTTPSConnection(HOST, port, timeout=2, context=ctx)
            else:
                c = http.client.HTTPConnection(HOST, port, timeout=2)
            c.request("GET", "/small")
            r = c.getresponse()
            body = r.read()
            c.close()
            if r.status == 200 and len(body) == SMALL_BYTES:
                return True
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    return False


START_ERRORS = {}  # name -> why its last start failed (for the notes)


def tail_of(path, offset, n=3):
    """The last n non-empty lines written to path after offset."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()[-8192:]
    except OSError:
        return ""
    lines = [x.strip() for x in data.decode("utf-8", "replace").splitlines() if x.strip()]
    return " / ".join(lines[-n:])


def start_target(name, opts, d, binary, journal_ok=True):
    """Start a proxy (or the origin) with these options; a Running, or None if it does not answer
    (START_ERRORS[name] says why). journal_ok: proxyd may log to the journal (not --no-journald)."""
    render, suffix, argv_of, _logname = TARGETS[name]
    logname = access_log_file(name, opts)
    conf = os.path.join(d, "%s-%s.%s" % (name, opts_key(opts).replace("=", "-").replace(",", "_"), suffix))
    with open(conf, "w") as f:
        f.write(render(d, opts))
    env = dict(os.environ)
    extra = []
    journal = False
    logfile = None
    if logname:
        logfile = os.path.join(d, logname)
        if os.path.exists(logfile):
            os.unlink(logfile)
    errpath = os.path.join(d, "%s-output.log" % name)
    errlog = open(errpath, "ab")
    out = err = errlog
    if name == "proxyd":
        env.pop("JOURNAL_STREAM", None)
        if wants_journal(opts):
            # As users run it: under systemd stderr is the journal stream and
            # proxyd sends access entries to journald, whose CPU we then count.
            # Without a journald (none running and we may not or could not
            # start one), proxyd writes them to stderr: a file.
            errpath = logfile
            err = open(logfile, "ab")
            jd = ensure_journald(d, journal_ok)
            if jd:
                st = os.fstat(err.fileno())
                env["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
                extra = jd
                journal = True
        # access_log = "file" (e2): stderr stays proxyd-output.log, no JOURNAL_STREAM
    if name == "haproxy" and opts.get("access_log"):
        out = open(logfile, "ab")
    err_offset = os.fstat(err.fileno()).st_size
    try:
        p = PROCS.start(argv_of(conf, d, opts, binary), cpus=PIN["origin" if name == "origin" else "proxy"],
                        stdout=out, stderr=err, env=env)
    finally:
        for f in {errlog, out, err}:
            f.close()  # the child has its own copies
    if not probe(name, opts, 10, proc=p):
        rc = p.poll()
        PROCS.stop(p)
        why = "exited with status %s" % rc if rc is not None else "did not answer within 10 s"
        said = tail_of(errpath, err_offset)
        START_ERRORS[name] = "%s with options %s%s (see %s)" % (
            why, opts_key(opts), ": " + said if said else "", errpath)
        return None
    START_ERRORS.pop(name, None)
    time.sleep(0.5)  # let every worker finish starting
    return Running(name, p, opts, logfile, extra, journal)


# ---------------------------------------------------------------------------
# Measurements

WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\"requests\": %d, \"bytes\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p99_us\": %d, " ..
    "\"connect\": %d, \"read\": %d, \"write\": %d, \"status\": %d, \"timeout\": %d}\n",
    summary.requests, summary.bytes, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def run_client(argv, outpath, timeout):
    """Run a load generator on the client CPUs; -> its output."""
    with open(outpath, "w") as f:
        p = PROCS.start(argv, cpus=PIN["wrk"], stdout=f, stderr=subprocess.STDOUT)
        try:
            p.wait(timeout=timeout)
        finally:
            PROCS.stop(p)
    with open(outpath) as f:
        return f.read()


def wrk(url, conns, headers, duration, d, timeout_pad=30):
    threads = 2 if conns >= 2 else 1
    argv = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % duration, "--latency", "--timeout", "5s",
            "-s", os.path.join(d, "report.lua")]
    for h in headers:
        argv += ["-H", h]
    argv.append(url)
    text = run_client(argv, os.path.join(d, "wrk.out"), duration + timeout_pad)
    for line in text.splitlines():
        if line.startswith("BENCHJSON "):
            return json.loads(line[len("BENCHJSON "):])
    raise RuntimeError("wrk gave no result: %s" % text[-500:])


def measure_wrk(sc, target, a, d):
    url = url_for(target.name, target.opts, sc["path"])
    if a.warmup > 0:
        wrk(url, sc["conns"], sc["headers"], a.warmup, d)
    logs = bool(target.opts.get("access_log")) and (target.logfile or target.journal)
    if logs:
        # Let buffered logs (nginx flush=1s, proxyd's file target) and
        # journald's socket queue catch up, so the counts below cover the
        # measured run only. Same pause for every proxy.
        time.sleep(LOG_SETTLE_S)
    lines0 = count_lines(target.logfile)
    since = time.time()
    import resource
    origin_pids = ORIGIN.pids() if ORIGIN and target is not ORIGIN else []
    u0 = cpu_split(target.pids())
    c0 = sum(u0)
    s0 = tcp_out_segments()
    x0 = cpu_seconds(target.extra_pids)
    o0 = cpu_seconds(origin_pids)
    m0 = machine_busy()
    w0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = wrk(url, sc["conns"], sc["headers"], a.duration, d)
    w1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    m1 = machine_busy()
    u1 = cpu_split(target.pids())
    c1 = sum(u1)
    s1 = tcp_out_segments()
    x1 = cpu_seconds(target.extra_pids)
    o1 = cpu_seconds(origin_pids)
    secs = r["duration_us"] / 1e6
    cpu = c1 - c0
    wrk_cpu = (w1.ru_utime + w1.ru_stime) - (w0.ru_utime + w0.ru_stime)
    # CPU used by processes that are not part of the benchmark (a busy machine skews results)
    foreign = (m1[0] - m0[0]) - cpu - (o1 - o0) - wrk_cpu
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    # A read error is how wrk counts the server closing after Connection: close.
    if "Connection: close" in sc["headers"]:
        errors -= r["read"]
    res = {
        "rps": r["requests"] / secs,
        "p99_ms": r["p99_us"] / 1000.0,
        "mibps": r["bytes"] / secs / 1048576.0,
        "cpu_s": cpu,
        "cpu_per_100k": cpu / r["requests"] * 1e5 if r["requests"] else None,
        "cpu_per_gib": cpu / (r["bytes"] / 1073741824.0) if r["bytes"] else None,
        "requests": r["requests"],
        "errors": errors,
        "wrk_cpu_s": wrk_cpu,
        "origin_cpu_s": o1 - o0,
        "foreign_cpu_share": max(0.0, foreign) / max(1e-9, m1[1] - m0[1]),
        # where the proxy's CPU goes: user space vs the kernel (TCP, epoll, scheduling),
        # and the TCP segments the whole machine sent per request (loopback: each is
        # received on the machine too)
        "user_per_100k": (u1[0] - u0[0]) / r["requests"] * 1e5 if r["requests"] else None,
        "sys_per_100k": (u1[1] - u0[1]) / r["requests"] * 1e5 if r["requests"] else None,
        "segs_per_req": (s1 - s0) / r["requests"] if r["requests"] else None,
    }
    if target.extra_pids:
        res["log_sink_cpu_s"] = x1 - x0  # journald's share of cpu_s
    if logs:
        time.sleep(LOG_SETTLE_S)
        if target.journal:
            n = journal_count(descendants(target.proc.pid), since)
            res["log_sink"] = "journal"
            if n is not None:
                res["log_lines"] = n
            else:
                res["log_count_failed"] = "journalctl failed"
        else:
            res["log_sink"] = "file"
            res["log_lines"] = count_lines(target.logfile) - lines0
    return res


def h2load(url, conns, streams, duration, d, timeout_pad=30):
    """h2load for duration seconds: {"requests", "failed", "duration_us"}."""
    argv = ["h2load", "-t", "2" if conns >= 2 else "1", "-c", str(conns), "-m", str(streams),
            "-D", str(duration), url]
    text = run_client(argv, os.path.join(d, "h2load.out"), duration + timeout_pad)
    import re
    fin = re.search(r"finished in ([\d.]+)(m?s)", text)
    req = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                    r"(\d+) errored, (\d+) timeout", text)
    codes = re.search(r"status codes: (\d+) 2xx", text)
    if not fin or not req or not codes:
        raise RuntimeError("h2load gave no result: %s" % text[-500:])
    secs = float(fin.group(1)) / (1000.0 if fin.group(2) == "ms" else 1.0)
    ok = int(codes.group(1))
    return {"requests": ok, "failed": int(req.group(4)) + int(req.group(5)) + int(req.group(6)),
            "duration_us": secs * 1e6}


def measure_h2load(sc, target, a, d):
    url = url_for(target.name, target.opts, sc["path"])
    if a.warmup > 0:
        h2load(url, sc["conns"], sc["streams"], a.warmup, d)
    import resource
    c0 = cpu_seconds(target.pids())
    w0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = h2load(url, sc["conns"], sc["streams"], a.duration, d)
    w1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu_seconds(target.pids()) - c0
    secs = r["duration_us"] / 1e6
    return {
        "rps": r["requests"] / secs,
        "cpu_s": cpu,
        "cpu_per_100k": cpu / r["requests"] * 1e5 if r["requests"] else None,
        "requests": r["requests"],
        "errors": r["failed"],
        "h2load_cpu_s": (w1.ru_utime + w1.ru_stime) - (w0.ru_utime + w0.ru_stime),
    }


LOG_SETTLE_S = 2.5  # > the flush delay of the buffered file logs (nginx flush=1s, proxyd <= 2 s)


def count_lines(path):
    if not path or not os.path.exists(path):
        return 0
    n = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return n
            n += b.count(b"\n")


def measure_hold(sc, target, a, d, base):
    """base: (rss, pss) KiB right after start, or None (origin: shared, already warm)."""
    res = {}
    if base:
        res["base_rss_mib"] = base[0] / 1024.0
        res["base_pss_mib"] = base[1] / 1024.0
    port = PORTS[target.name]
    n = sc["conns"] if not a.quick else min(sc["conns"], 2000)
    # warm up: a few requests so pools and caches exist before the "before" sample
    p = PROCS.start(["/usr/bin/python3", os.path.join(HERE, "client.py"), "requests", HOST, str(port),
                     sc["path"], "200", "--conns", "4", "--timeout", "20"], cpus=PIN["client"])
    p.wait(timeout=30)
    PROCS.stop(p)
    time.sleep(0.5)
    before = memory_kib(target.pids())
    holder = PROCS.start(["/usr/bin/python3", os.path.join(HERE, "client.py"), "hold", HOST, str(port),
                          sc["path"], str(n), "--timeout", "60", "--hold-seconds", "90"],
                         cpus=PIN["client"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=open(os.path.join(d, "client.err"), "ab"))
    try:
        line = b""
        end = time.monotonic() + 70
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(holder.stdout, selectors.EVENT_READ)
        while time.monotonic() < end and not line.endswith(b"\n"):
            if sel.select(timeout=1):
                ch = holder.stdout.read1(64) if hasattr(holder.stdout, "read1") else holder.stdout.read(1)
                if not ch:
                    break
                line += ch
        if not line.startswith(b"READY"):
            raise RuntimeError("hold client failed against %s: %r" % (target.name, line))
        held = int(line.split()[1])
        # let idle upstream connections settle, and memory freed after the burst go back
        # (proxyd trims its heap once a second, so within two seconds of the burst)
        time.sleep(2.5)
        after = memory_kib(target.pids())
    finally:
        try:
            holder.stdin.close()
        except OSError:
            pass
        try:
            holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        PROCS.stop(holder)
    res["rss_per_conn_kib"] = (after[0] - before[0]) / held
    res["pss_per_conn_kib"] = (after[1] - before[1]) / held
    res["held"] = held
    return res


# ---------------------------------------------------------------------------
# Setup

APT_FOR = {"nginx": "nginx-light", "haproxy": "haproxy", "wrk": "wrk", "curl": "curl", "h2load": "nghttp2-client",
           "openssl": "openssl", "taskset": "util-linux", "varnishd": "varnish"}
BUILD_TOOLS = {"meson": "meson", "ninja": "ninja-build", "cc": "gcc", "pkg-config": "pkg-config"}
BUILD_LIBS = ["libsystemd-dev", "libconfig-dev", "libpcre2-dev", "libgnutls28-dev", "libc-ares-dev", "libnghttp2-dev"]


def ensure_packages():
    missing = []
    for cmd, pkg in list(APT_FOR.items()) + list(BUILD_TOOLS.items()):
        if not shutil.which(cmd) and not os.path.exists("/usr/sbin/" + cmd):
            missing.append(pkg)
    for pkg in BUILD_LIBS:
        r = run(["dpkg-query", "-W", "-f=${Status}", pkg], 30, capture_output=True, text=True)
        if "install ok installed" not in r.stdout:
            missing.append(pkg)
    if missing:
        log("installing: %s" % " ".join(missing))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update"], 600, env=env, check=True)
        run(["apt-get", "install", "-y", "--no-install-recommends"] + missing, 1200, env=env, check=True)
    # the Debian nginx package starts a system nginx on port 80; it is not ours to stop.


def build_proxyd():
    bdir = os.path.join(OUT, "build")
    if not os.path.exists(os.path.join(bdir, "build.ninja")):
        run(["meson", "setup", bdir, REPO, "-Dbuildtype=release"], 300, check=True,
            stdout=subprocess.DEVNULL)
    else:
        run(["meson", "configure", bdir, "-Dbuildtype=release"], 120, check=True)
    r = run(["ninja", "-C", bdir, "proxyd/proxyd"], 900, capture_output=True, text=True)
    if r.returncode != 0:
        log(r.stdout[-3000:] + r.stderr[-2000:])
        raise SystemExit("proxyd does not build in %s (output above); "
                         "use --proxyd-binary PATH to benchmark an existing binary" % bdir)
    return os.path.join(bdir, "proxyd", "proxyd")


RELAY_BIN = os.path.join(OUT, "relay")


def build_relay():
    run(["cc", "-O2", "-Wall", "-o", RELAY_BIN, os.path.join(REPO, "bench", "relay.c"), "-lpthread"],
        120, check=True)


def prepare_dir(d):
    os.makedirs(os.path.join(d, "www"), exist_ok=True)
    with open(os.path.join(d, "www", "small"), "wb") as f:
        f.write((b"0123456789abcdef" * 8)[:SMALL_BYTES - 1] + b"\n")
    with open(os.path.join(d, "www", "big"), "wb") as f:
        f.write(os.urandom(BIG_BYTES))
    with open(os.path.join(d, "report.lua"), "w") as f:
        f.write(WRK_LUA)
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", os.path.join(d, "key.pem"), "-out", os.path.join(d, "cert.pem"), "-days", "7",
         "-subj", "/CN=localhost"], 60, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(os.path.join(d, "combined.pem"), "w") as out:
        for n in ("cert.pem", "key.pem"):
            with open(os.path.join(d, n)) as f:
                out.write(f.read())


# ---------------------------------------------------------------------------
# Reporting

def fmt(v):
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1000:
        return "%.0f" % v
    if a >= 100:
        return "%.1f" % v
    if a >= 10:
        return "%.2f" % v
    return "%.3f" % v


def cell(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a", None
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med), med
    return "%s (%s..%s)" % (fmt(med), fmt(min(vals)), fmt(max(vals))), med


def verdict(ratio, target):
    if ratio is None or target is None:
        return ""
    op, want = target
    ok = ratio >= want if op == ">=" else ratio <= want
    return "%s %s%g %s" % ("", op, want, "PASS" if ok else "MISS")


def table(results, scenarios, a):
    # the Varnish columns only when a selected scenario has Varnish (the cache scenarios)
    varnish = any("varnish" in sc["targets"] for sc in scenarios)
    columns = COLUMNS if varnish else ALL
    others = ("nginx", "haproxy", "varnish") if varnish else ("nginx", "haproxy")
    cols = ["scenario", "metric", "origin-direct", "proxyd", "nginx", "haproxy", "relay (floor)"] + \
        (["varnish"] if varnish else []) + \
        sum((["proxyd/%s" % o, "target"] for o in others), [])
    rows = []
    for sc in scenarios:
        for key, label, _better, targets in sc["metrics"]:
            row = ["%s: %s" % (sc["id"], sc["title"]), label]
            meds = {}
            for col in columns:
                if col not in sc["targets"]:
                    row.append("")
                    continue
                runs = results.get(sc["id"], {}).get(col, [])
                if not runs:
                    row.append("")
                    continue
                text, med = cell([r.get(key) for r in runs])
                if any(r.get("unavailable") for r in runs) and med is None:
                    text = "n/a"
                meds[col] = med
                row.append(text)
            for other in others:
                p, o = meds.get("proxyd"), meds.get(other)
                ratio = p / o if p is not None and o else None
                row.append("%.2f" % ratio if ratio is not None else "-")
                tg = targets.get(other)
                row.append(verdict(ratio, tg).strip() if tg else "")
            rows.append(row)
    widths = [max(len(str(r[i])) for r in rows + [cols]) for i in range(len(cols))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(cols, widths)),
             "-+-".join("-" * w for w in widths)]
    last = None
    for r in rows:
        r = list(r)
        if r[0] == last:
            r[0] = ""
        else:
            last = r[0]
        lines.append(" | ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    return "\n".join(lines)


def warnings_of(results):
    out = []
    for sid, per in results.items():
        for col, runs in per.items():
            for i, r in enumerate(runs):
                if r.get("errors"):
                    out.append("%s/%s run %d: %d wrk errors (non-2xx, connect, timeouts)"
                               % (sid, col, i + 1, r["errors"]))
                if "log_lines" in r and r.get("requests"):
                    if r.get("log_sink") == "journal":
                        what = "journal entries (PROXYD_ACCESS=1) stored by journald"
                    else:
                        what = "access-log lines written"
                    out.append("%s/%s run %d: %d %s during %d measured requests (%.1f%%)"
                               % (sid, col, i + 1, r["log_lines"], what, r["requests"],
                                  100.0 * r["log_lines"] / r["requests"]))
                if "log_sink_cpu_s" in r:
                    out.append("%s/%s run %d: journald used %.2f s of the %.2f s CPU counted for %s"
                               % (sid, col, i + 1, r["log_sink_cpu_s"], r["cpu_s"], col))
                if r.get("log_count_failed"):
                    out.append("%s/%s run %d: access entries not counted: %s"
                               % (sid, col, i + 1, r["log_count_failed"]))
                if r.get("unavailable"):
                    out.append("%s/%s: %s" % (sid, col, r["unavailable"]))
    for sid, per in results.items():
        for col, runs in per.items():
            ok = [r for r in runs if r.get("user_per_100k") is not None and r.get("sys_per_100k") is not None]
            if ok and sid in ("a", "c"):
                out.append("%s/%s: CPU s/100k req = user %.3f + system %.3f (median over runs); "
                           "%.2f TCP segments per request on the machine"
                           % (sid, col, statistics.median(r["user_per_100k"] for r in ok),
                              statistics.median(r["sys_per_100k"] for r in ok),
                              statistics.median(r["segs_per_req"] for r in ok)))
    per_a = results.get("a", {})
    if per_a.get("relay") and per_a.get("nginx"):
        def med(col, key):
            v = [r[key] for r in per_a[col] if r.get(key) is not None]
            return statistics.median(v) if v else None
        rc, nc, pc = med("relay", "cpu_per_100k"), med("nginx", "cpu_per_100k"), med("proxyd", "cpu_per_100k") \
            if per_a.get("proxyd") else None
        rr, nr = med("relay", "rps"), med("nginx", "rps")
        if rc and nc and rr and nr:
            out.append("a/relay (the floor: bytes copied between each client and its own origin connection, "
                       "no HTTP work): %.2fx nginx's CPU per request and %.2fx its requests/s%s"
                       % (rc / nc, rr / nr, "; proxyd's CPU per request is %.2fx the floor's" % (pc / rc)
                          if pc else ""))
    shares = [r["foreign_cpu_share"] for per in results.values() for runs in per.values() for r in runs
              if "foreign_cpu_share" in r]
    if shares:
        out.append("CPU used by processes outside the benchmark during measured runs: median %.0f%%, "
                   "max %.0f%% of the machine%s" % (100 * statistics.median(shares), 100 * max(shares),
                                                     " - results are skewed, rerun on an idle machine"
                                                     if max(shares) > 0.05 else ""))
    return sorted(set(out))


def access_log_notes(scenarios, cols, d):
    """How each proxy wrote its access log in the access-log scenarios that ran."""
    ids = [s["id"] for s in scenarios if s["options"].get("access_log")]
    if not ids:
        return ""
    out = []
    if "e" in ids:
        m = JOURNALD["mode"]
        pids = ",".join(map(str, JOURNALD["pids"]))
        if "proxyd" not in cols:
            how = "not run"
        elif m == "started":
            how = ("to the journal, via %s started by the benchmark for this run (pid %s, own process group, "
                   "stopped at the end%s); journald's CPU counted with proxyd's"
                   % (JOURNALD_BINARY, pids, "" if JOURNALD.get("stopped") else " - NOT confirmed"))
        elif m == "existing":
            how = ("to the journal, via the journald already running (pid %s, left running); "
                   "journald's CPU counted with proxyd's" % pids)
        elif m == "off":
            how = "to stderr redirected to a file (--no-journald: journal not used)"
        elif m == "failed":
            how = ("to stderr redirected to a file (no journald running and starting one failed: %s)"
                   % JOURNALD["detail"])
        else:
            how = "to stderr redirected to a file (no journald)"
        if len(JOURNALD["events"]) > 1:
            how += " [journald during the run: %s]" % "; ".join(JOURNALD["events"])
        out.append("access logs (e): nginx to a file with buffer=64k flush=1s; HAProxy `log stdout` (foreground) "
                   "to a file; proxyd %s" % how)
    if "e2" in ids:
        out.append("access logs (e2): nginx and HAProxy as in (e); proxyd to its buffered file target "
                   "(access_log = \"%s\": 64 KiB per worker, written within about two seconds), stderr a plain file, "
                   "no journal" % os.path.join(d, ACCESS_FILE["proxyd-file"]))
    return "\n\n" + "\n".join(out)


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description="proxyd vs nginx vs HAProxy benchmark")
    ap.add_argument("--quick", action="store_true", help="smoke check: 3 s runs, 1 warm-up second, 1 run")
    ap.add_argument("--runs", type=int, default=None, help="runs per scenario (default 2; --quick: 1)")
    ap.add_argument("--duration", type=int, default=None, help="seconds per measured wrk run (default 10)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up seconds before each run (default 2)")
    ap.add_argument("--only", default="", help="comma-separated scenario ids to run (default: all)")
    ap.add_argument("--targets", default=",".join(COLUMNS), help="comma-separated columns to run")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get missing packages")
    ap.add_argument("--pin", default="", help="override pinning, e.g. proxy=0,1/wrk=1/origin=0/client=1")
    ap.add_argument("--proxyd-binary", default="", help="benchmark this proxyd binary instead of building one")
    ap.add_argument("--no-journald", action="store_true",
                    help="scenario e: neither start nor use a journald; proxyd writes its access log to "
                         "stderr (a file). Default: use the running journald, or start %s for the run"
                         % JOURNALD_BINARY)
    a = ap.parse_args()
    for item in (x for x in a.pin.split("/") if x):
        role, _, cpus = item.partition("=")
        if role not in PIN:
            ap.error("--pin: unknown role %r (roles: %s)" % (role, ", ".join(PIN)))
        PIN[role] = cpus
    a.runs = a.runs or (1 if a.quick else 2)
    a.duration = a.duration or (3 if a.quick else 10)
    a.warmup = a.warmup if a.warmup is not None else (1 if a.quick else 2)
    only = set(x for x in a.only.split(",") if x)
    scenarios = [s for s in SCENARIOS if not only or s["id"] in only]
    cols = [c for c in COLUMNS if c in a.targets.split(",")]
    # proxyd logs to the journal in some selected scenario (e)
    need_journal = "proxyd" in cols and any("proxyd" in s["targets"] and wants_journal(s["options"])
                                            for s in scenarios)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    # Hard bound on the whole run: every measured run plus generous slack.
    n_wrk = sum(len(s["targets"]) for s in scenarios if s["kind"] in ("wrk", "h2load"))
    n_logs = sum(len(s["targets"]) for s in scenarios if s["options"].get("access_log"))
    limit = 900 + a.runs * (n_wrk * (a.duration + a.warmup + 15) + 3 * 120) \
        + a.runs * n_logs * (2 * LOG_SETTLE_S + 60) + (30 if need_journal else 0)
    limit = int(limit)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(limit)

    with open("/proc/loadavg") as f:
        load_start = " ".join(f.read().split()[:3])
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    d = os.path.join(OUT, "run-" + stamp)
    os.makedirs(d, exist_ok=True)
    results = {}
    try:
        if not a.no_install:
            ensure_packages()
        if not a.proxyd_binary:
            log("building proxyd (release) in %s" % os.path.join(OUT, "build"))
        binary = os.path.abspath(a.proxyd_binary) if a.proxyd_binary else build_proxyd()
        if "relay" in cols and any("relay" in s["targets"] for s in scenarios):
            build_relay()
        prepare_dir(d)
        log("work dir %s; pinning %s; %d run(s) x %d s (+%d s warm-up)"
            % (d, PIN, a.runs, a.duration, a.warmup))
        if need_journal:
            # before any proxy starts: use the running journald or start one (own process group,
            # stopped at the end with everything else); --no-journald: proxyd logs to a file
            ensure_journald(d, not a.no_journald)
        global ORIGIN
        origin = ORIGIN = start_target("origin", {}, d, binary)
        if not origin:
            raise RuntimeError("origin nginx did not start; see %s/origin-output.log" % d)
        for rn in range(a.runs):
            # rotate the order of proxies each run so drift does not favour one
            order = cols[rn % len(cols):] + cols[:rn % len(cols)]
            for col in order:
                variants = []
                for sc in scenarios:
                    if col in sc["targets"] and sc["options"] not in variants:
                        variants.append(sc["options"])
                for opts in variants:
                    group = [s for s in scenarios if col in s["targets"] and s["options"] == opts]
                    group.sort(key=lambda s: s["kind"] != "hold")  # memory first, on a fresh proxy
                    if col == "origin":
                        tgt, base = origin, None
                    else:
                        tgt = start_target(col, opts, d, binary, journal_ok=not a.no_journald)
                        if tgt:
                            time.sleep(0.5)
                            base = memory_kib(tgt.pids())
                    if not tgt:
                        why = START_ERRORS.get(col) or ("did not answer with options %s (see %s/%s-output.log)"
                                                        % (opts_key(opts), d, col))
                        log("%s %s" % (col, why))
                        for s in group:
                            results.setdefault(s["id"], {}).setdefault(col, []).append({"unavailable": why})
                        continue
                    try:
                        for s in group:
                            log("run %d/%d  %-8s %-3s %s" % (rn + 1, a.runs, col, s["id"], s["title"]))
                            if s["kind"] == "hold":
                                r = measure_hold(s, tgt, a, d, base)
                            elif s["kind"] == "h2load":
                                r = measure_h2load(s, tgt, a, d)
                            else:
                                r = measure_wrk(s, tgt, a, d)
                            results.setdefault(s["id"], {}).setdefault(col, []).append(r)
                            log("    " + ", ".join("%s=%s" % (k, fmt(v) if isinstance(v, float) else v)
                                                   for k, v in sorted(r.items())))
                    finally:
                        if col != "origin":
                            PROCS.stop(tgt.proc)
        PROCS.stop(origin.proc)
    finally:
        signal.alarm(0)
        try:
            stop_journald()
        finally:
            PROCS.stop_all()

    kern = platform.release()
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ver = {}
    for name, argv in (("nginx", ["/usr/sbin/nginx", "-v"]), ("haproxy", ["haproxy", "-v"]),
                       ("wrk", ["wrk", "--version"])):
        try:
            r = run(argv, 10, capture_output=True, text=True)
            ver[name] = (r.stdout + r.stderr).strip().splitlines()[0]
        except Exception:
            ver[name] = "?"
    header = ("proxyd benchmark %s  host=%s  cpus=%d (%s)  kernel=%s\n"
              "runs=%d duration=%ds warmup=%ds  pinning=%s\n%s; %s; %s\n"
              "load average before the run: %s\n"
              "cells: median (min..max) over runs; ratios are of medians; targets from issue 7"
              % (datetime.datetime.now().isoformat(timespec="seconds"), platform.node(), os.cpu_count(), cpu,
                 kern, a.runs, a.duration, a.warmup, json.dumps(PIN), ver["nginx"], ver["haproxy"], ver["wrk"], load_start))
    text = header + "\n\n" + table(results, scenarios, a)
    warns = warnings_of(results)
    if warns:
        text += "\n\nnotes:\n" + "\n".join("  " + w for w in warns)
    text += access_log_notes(scenarios, cols, d)
    print(text)
    with open(os.path.join(d, "results.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(d, "results.json"), "w") as f:
        json.dump({"pin": PIN, "args": vars(a), "results": results,
                   "journald": {k: v for k, v in JOURNALD.items() if k != "proc"}}, f, indent=1)
    log("results: %s/results.txt and results.json" % d)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit as e:
        PROCS.stop_all()
        if isinstance(e.code, int) and e.code > 128:
            log("stopped by signal %d; every process the benchmark started has been stopped" % (e.code - 128))
        raise
    except BaseException:
        PROCS.stop_all()
        raise
