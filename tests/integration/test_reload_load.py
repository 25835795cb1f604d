#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Reloads under load lose nothing.

proxyd (socket-activated, workers = 2) proxies to a loopback backend while, at
the same time, wrk sends keep-alive GETs, two client threads send POSTs with
bodies from 3 bytes to 1 MiB (one on a keep-alive connection, one with
Connection: close on a fresh connection each time; the backend checksums every
body), and the configuration file is rewritten and SIGHUP sent 10 times,
alternating a valid change (a new set_header value, which the backend sees)
and an invalid file (a syntax error, an unknown setting).

Checked: wrk saw no non-2xx response and no socket error (connect, read,
write, timeout); every POST was answered 200 and the backend received it once
with exactly the bytes sent; each invalid reload is logged as file:line and the
previous configuration keeps serving; each valid one takes effect on new
connections and on a keep-alive connection opened before it; proxyd's
descriptors come back to what they were before the load; proxyd exits 0."""

import hashlib
import http.client
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, Proxyd, Reply, check, check_eq, free_port,  # noqa: E402
                     line_number, log, run_main)

WRK = "/usr/bin/wrk"
RELOADS = 10
REV_HEADER = "X-Config-Rev"

CONFIG = """workers = 2;
log_level = "info";
access_log = "%(tmp)s/access.log";
defaults = {
  client_max_body_size = "2m";
  set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
};
upstreams = {
  be = { keepalive = 32; keepalive_timeout = "2s";
         health_check = { path = "/healthz"; interval = "300ms"; timeout = "5s"; fails = 100; };
         servers = ( { address = "127.0.0.1:%(bport)d"; } ); };
};
servers = (
  {
    name = "main";
    listen = [ "http" ];
    locations = (
      { prefix = "/";
        proxy_pass = "http://be";
        set_header = { %(header)s = "%(rev)s"; };
      }
    );
  }
);
%(extra)s"""

# An unknown top-level setting, after a changed value that must not apply.
UNKNOWN = "frobnicate_on_reload = 1;\n"

# wrk: count statuses and the configuration revisions the backend reported.
WRK_LUA = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; bad = 0; revs = {} end
function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else bad = bad + 1 end
  local r = headers["X-Seen-Rev"] or "none"
  revs[r] = (revs[r] or 0) + 1
end
function done(summary, latency, requests)
  local o, b, all = 0, 0, {}
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); b = b + t:get("bad")
    for k, v in pairs(t:get("revs")) do all[k] = (all[k] or 0) + v end
  end
  io.write(string.format("RESULT requests=%d ok=%d bad=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, o, b, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout))
  for k, v in pairs(all) do io.write(string.format("REV %s %d\n", k, v)) end
end
"""

POST_SIZES = [3, 17, 1000, 4096, 65536, 65537, 200003, 524288, 1 << 20]


def config_text(tmp, bport, rev, kind="valid"):
    """kind: valid | syntax (an empty value) | unknown (an unknown setting)."""
    value = "%s = \"%s\"" % (REV_HEADER, rev)
    text = CONFIG % {"tmp": tmp, "bport": bport, "header": REV_HEADER, "rev": rev,
                     "extra": UNKNOWN if kind == "unknown" else ""}
    if kind == "syntax":
        text = text.replace(value, "%s = " % REV_HEADER)
    return text


class NoDelayBackend(Backend):
    """The harness backend writes head and body separately: without TCP_NODELAY each
    keep-alive response would wait for a delayed ACK."""

    def _serve(self, c, cid, peer):
        try:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        Backend._serve(self, c, cid, peer)


class Seen:
    """What the backend received, kept small (wrk sends tens of thousands of requests)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.posts = {}  # seq -> list of (length, sha256, rev)
        self.revs = {}   # rev -> requests

    def handler(self, b):
        def handle(req):
            rev = req.header(REV_HEADER, "none")
            with self.lock:
                self.revs[rev] = self.revs.get(rev, 0) + 1
                seq = req.header("X-Seq")
                if req.method == "POST" and seq is not None:
                    self.posts.setdefault(seq, []).append((req.body_len, req.body_sha256, rev))
            with b.lock:
                if len(b.requests) > 256:
                    del b.requests[:-16]
            hs = [("Content-Type", "text/plain"), ("X-Seen-Rev", rev)]
            if req.method == "POST":
                hs.append(("X-Body-Sha256", req.body_sha256))
            return Reply(200, hs, b"ok\n")
        return handle


def fd_list(pid):
    out = []
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return out
    for fd in names:
        try:
            out.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            pass
    return out


def fd_summary(pid):
    kinds = {}
    for t in fd_list(pid):
        k = re.sub(r"\[\d+\]|:\d+", "", t) if t.startswith(("socket:", "pipe:", "anon_inode:")) else t
        kinds[k] = kinds.get(k, 0) + 1
    return kinds


class PostClient(threading.Thread):
    """POSTs of varied sizes until stopped; keepalive: one connection reused, else a
    fresh connection with Connection: close per request."""

    def __init__(self, port, keepalive, seed, stop):
        super().__init__(daemon=True)
        self.port = port
        self.keepalive = keepalive
        self.rng = random.Random(seed)
        self.prefix = "ka" if keepalive else "cl"
        self.stop = stop
        self.sent = {}      # seq -> (length, sha256)
        self.failures = []  # (seq, what)
        self.server_closed = 0
        self.base = random.Random(seed + 1).randbytes(1 << 20)

    def body(self, seq, size):
        tag = ("%s|" % seq).encode()
        return (tag + self.base)[:size] if size >= len(tag) else tag[:size]

    def run(self):
        conn = None
        i = 0
        while not self.stop.is_set():
            i += 1
            seq = "%s-%d" % (self.prefix, i)
            size = self.rng.choice(POST_SIZES)
            body = self.body(seq, size)
            want = hashlib.sha256(body).hexdigest()
            self.sent[seq] = (size, want)
            headers = {"Host": "reload.test", "X-Seq": seq, "Content-Type": "application/octet-stream"}
            if not self.keepalive:
                headers["Connection"] = "close"
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("POST", "/post/%s" % seq, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200 or data != b"ok\n":
                    self.failures.append((seq, "status %d body %r" % (resp.status, data[:80])))
                elif resp.getheader("X-Body-Sha256") != want:
                    self.failures.append((seq, "backend checksum %s" % resp.getheader("X-Body-Sha256")))
                if resp.will_close:
                    if self.keepalive:
                        self.server_closed += 1
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                self.failures.append((seq, "%s: %s" % (type(e).__name__, e)))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


def probe_fresh(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", "/probe/fresh", headers={"Host": "reload.test", "Connection": "close"})
        r = c.getresponse()
        r.read()
        return r.status, r.getheader("X-Seen-Rev")
    except (OSError, http.client.HTTPException) as e:
        return None, "%s: %s" % (type(e).__name__, e)
    finally:
        c.close()


def probe_kept(c):
    """A GET on a connection opened before the reloads; -> (status, rev, still open)."""
    try:
        c.request("GET", "/probe/kept", headers={"Host": "reload.test"})
        r = c.getresponse()
        r.read()
        return r.status, r.getheader("X-Seen-Rev"), not r.will_close
    except (OSError, http.client.HTTPException) as e:
        return None, "%s: %s" % (type(e).__name__, e), False


def wait_count(px, pattern, n, timeout=30.0):
    """Wait until `pattern` occurs at least n times in the log; -> the count."""
    deadline = time.monotonic() + timeout
    while True:
        k = len(re.findall(pattern, px.log_text()))
        if k >= n or time.monotonic() > deadline:
            return k
        time.sleep(0.05)


class Wrk:
    """One wrk run against proxyd until stop() (SIGINT: wrk stops and prints its results)."""

    def __init__(self, name, lua, port, connections, extra_headers=()):
        self.name = name
        argv = [WRK, "-t2", "-c%d" % connections, "-d50s", "--timeout", "20s", "-s", lua,
                "-H", "Host: reload.test"]
        for h in extra_headers:
            argv += ["-H", h]
        argv.append("http://127.0.0.1:%d/wrk/%s" % (port, name))
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.out = ""

    def running(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.out, _ = self.proc.communicate()

    def check(self, valid):
        """The checks on its results; -> the number of requests it completed."""
        m = re.search(r"RESULT requests=(\d+) ok=(\d+) bad=(\d+) connect=(\d+) read=(\d+) write=(\d+) "
                      r"status=(\d+) timeout=(\d+)", self.out)
        revs = {k: int(v) for k, v in re.findall(r"^REV (\S+) (\d+)$", self.out, re.M)}
        if not check(m, "wrk (%s) ran and reported" % self.name, self.out[-1500:]):
            return 0
        res = dict(zip(("requests", "ok", "bad", "connect", "read", "write", "status", "timeout"),
                       (int(x) for x in m.groups())))
        log("wrk (%s): %r" % (self.name, res))
        log("wrk (%s) responses by configuration: %r" % (self.name, revs))
        check(res["requests"] > 0 and res["ok"] == res["requests"],
              "wrk (%s): all %d responses 2xx" % (self.name, res["requests"]), res)
        check_eq((res["bad"], res["status"]), (0, 0), "wrk (%s): no non-2xx response" % self.name)
        check_eq({k: res[k] for k in ("connect", "read", "write", "timeout")},
                 {"connect": 0, "read": 0, "write": 0, "timeout": 0},
                 "wrk (%s): no socket error (connect, read, write, timeout)" % self.name)
        check(set(revs) <= valid and len(revs) >= 2,
              "wrk (%s): served by valid configurations only, and by more than one" % self.name,
              (revs, sorted(valid)))
        return res["requests"]


def reload_loop(px, port, bport, kept, wrks):
    """The 10 reloads, each checked; -> the set of revisions that were valid."""
    rev = "rev-0"
    valid = {rev}
    applied = 1  # "Configuration #N applied" is logged for reloads only
    failed = 0
    for i in range(1, RELOADS + 1):
        if i % 2 == 1:
            new = "rev-%d" % i
            text = config_text(px.tmp, bport, new)
            kind = "valid"
        else:
            kind = "syntax" if i % 4 == 2 else "unknown"
            new = "rev-bad-%d" % i
            text = config_text(px.tmp, bport, new, kind)
        with open(px.conf_path, "w") as f:
            f.write(text)
        before_failed = len(re.findall(r"Reload failed", px.log_text()))
        before_applied = len(re.findall(r"Configuration #\d+ applied", px.log_text()))
        os.kill(px.pid, signal.SIGHUP)
        if kind == "valid":
            got = wait_count(px, r"Configuration #\d+ applied", before_applied + 1)
            check(got > before_applied, "reload %d (valid, %s): applied by both workers" % (i, new),
                  px.log_text()[-800:])
            rev = new
            valid.add(rev)
            applied += 1
        else:
            got = wait_count(px, r"Reload failed", before_failed + 1)
            failed += 1
            text_log = px.log_text()
            check(got > before_failed, "reload %d (%s error): refused" % (i, kind), text_log[-800:])
            if kind == "syntax":
                line = line_number(text, "%s = " % REV_HEADER)
                want = "%s:%d: syntax error" % (px.conf_path, line)
            else:
                line = line_number(text, "frobnicate_on_reload")
                want = '%s:%d: unknown setting "frobnicate_on_reload"' % (px.conf_path, line)
            check(want in text_log, "reload %d: logs %r" % (i, want[len(px.tmp) + 1:]), text_log[-800:])
            check(re.search(r"Reload failed, still serving configuration #\d+: .*%s" % re.escape(want[len(px.tmp):]),
                            text_log),
                  "reload %d: says the old configuration keeps serving" % i, text_log[-400:])
        st, seen = probe_fresh(port)
        check(st == 200 and seen == rev, "reload %d: a new connection is served with %s" % (i, rev), (st, seen))
        st, seen, still_open = probe_kept(kept)
        check(st == 200 and seen == rev and still_open,
              "reload %d: the keep-alive connection from before is served with %s and stays open" % (i, rev),
              (st, seen, still_open))
        check(all(w.running() for w in wrks), "reload %d happened while wrk was running" % i)
        time.sleep(0.5)
    return valid, applied, failed


ACCESS_LINE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z client=\S+ server=main method=(\S+) uri=(\S+) status=(\d+) .*"
                         r"request_id=[0-9a-f]{32}")


def check_access_log(path, posters, n_wrk):
    """Every generation opens the access log again; each request is still logged once, in
    whole lines, including those that ran across a reload."""
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError as e:
        check(False, "the access log can be read", str(e))
        return
    parsed = [ACCESS_LINE.match(ln) for ln in lines]
    check(all(parsed), "access log: every line whole (%d lines)" % len(lines),
          [ln for ln, m in zip(lines, parsed) if not m][:3])
    posts = {}
    for m in parsed:
        if m and m.group(1) == "POST":
            posts[m.group(2)] = posts.get(m.group(2), 0) + 1
    sent = ["/post/%s" % seq for p in posters for seq in p.sent]
    check(all(posts.get(u) == 1 for u in sent) and len(posts) == len(sent),
          "access log: each of the %d POSTs logged exactly once" % len(sent),
          [(u, posts.get(u)) for u in sent if posts.get(u) != 1][:5])
    # wrk's requests cut off when it stopped are logged too, but not counted by wrk
    gets = sum(1 for m in parsed if m and m.group(2).startswith("/wrk/"))
    check(gets >= n_wrk, "access log: at least the %d requests wrk completed (%d)" % (n_wrk, gets))


def main():
    if not os.access(WRK, os.X_OK):
        check(False, "wrk is installed at %s" % WRK)
        return
    seen = Seen()
    b = NoDelayBackend()
    b.handler = seen.handler(b)
    tmp = tempfile.mkdtemp(prefix="proxyd-reload-")
    try:
        port = free_port()
        lua = os.path.join(tmp, "count.lua")
        with open(lua, "w") as f:
            f.write(WRK_LUA)
        with Proxyd(config_text("{tmp}", b.port, "rev-0"), sockets=[("127.0.0.1:%d" % port, "http")]) as px:
            st, rev = probe_fresh(port)
            check(st == 200 and rev == "rev-0", "serves the first configuration", (st, rev))
            # the descriptors proxyd holds with nothing going on (pooled upstream
            # connections closed after keepalive_timeout, pipes when idle)
            time.sleep(3.5)
            base, base_kinds = 1 << 30, {}
            for _ in range(8):
                if len(fd_list(px.pid)) < base:
                    base, base_kinds = len(fd_list(px.pid)), fd_summary(px.pid)
                time.sleep(0.2)
            log("proxyd holds %d descriptors at rest: %r" % (base, base_kinds))

            kept = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            st, rev, still_open = probe_kept(kept)
            check(st == 200 and rev == "rev-0" and still_open, "the keep-alive probe connection is open")

            # keep-alive connections, and a new connection for every request
            wrks = [Wrk("keepalive", lua, port, 16), Wrk("close", lua, port, 4, ["Connection: close"])]
            stop = threading.Event()
            posters = [PostClient(port, True, 1, stop), PostClient(port, False, 2, stop)]
            for p in posters:
                p.start()
            try:
                time.sleep(1.0)
                valid, applied, failed = reload_loop(px, port, b.port, kept, wrks)
                time.sleep(1.0)
            finally:
                stop.set()
                for w in wrks:
                    w.stop()
                for p in posters:
                    p.join(60)
            kept.close()
            n_wrk = sum(w.check(valid) for w in wrks)

            n_posts = 0
            for p in posters:
                n_posts += len(p.sent)
                check_eq(p.failures[:5], [], "%s POSTs (%d): every one answered 200 with the body checksummed at "
                         "the backend" % ("keep-alive" if p.keepalive else "Connection: close", len(p.sent)))
                missing, wrong, twice = [], [], []
                for seq, (size, sha) in p.sent.items():
                    got = seen.posts.get(seq, [])
                    if not got:
                        missing.append(seq)
                    elif len(got) > 1:
                        twice.append(seq)
                    elif got[0][:2] != (size, sha):
                        wrong.append((seq, size, got[0][0]))
                check(not wrong and not twice and not missing,
                      "%s POSTs: the backend received each exactly once with the exact body"
                      % ("keep-alive" if p.keepalive else "Connection: close"),
                      {"missing": missing[:5], "wrong": wrong[:5], "twice": twice[:5]})
                if p.keepalive:
                    log("keep-alive POST connection closed by proxyd (with Connection: close) %d times"
                        % p.server_closed)
            sizes = {s for p in posters for s, _ in p.sent.values()}
            check(n_posts >= 2 * len(POST_SIZES) and len(sizes) >= len(POST_SIZES) - 1,
                  "POSTs of many sizes were sent during the reloads (%d POSTs, sizes %s)" % (n_posts, sorted(sizes)))
            check_eq((applied, failed), (1 + RELOADS // 2, RELOADS // 2), "5 valid and 5 invalid reloads")
            log("backend requests by configuration: %r" % (seen.revs,))
            check(not any(r.startswith("rev-bad") for r in seen.revs),
                  "no request was ever proxied with an invalid configuration", seen.revs)

            # descriptors: back to what proxyd held before, once the load has stopped
            deadline = time.monotonic() + 20
            while len(fd_list(px.pid)) > base and time.monotonic() < deadline:
                time.sleep(0.2)
            now = len(fd_list(px.pid))
            log("proxyd holds %d descriptors after the load and %d reloads" % (now, RELOADS))
            check(now <= base, "proxyd's descriptors did not grow across the reloads (%d -> %d)" % (base, now),
                  {"before": base_kinds, "after": fd_summary(px.pid)})
            check(px.alive(), "proxyd still running")
            text = px.log_text()
            check("Sanitizer" not in text and "runtime error:" not in text, "no sanitizer report")
            log("%d wrk requests, %d POSTs, %d reloads (%d valid, %d invalid)"
                % (n_wrk, n_posts, RELOADS, applied - 1, failed))
            access_path = os.path.join(px.tmp, "access.log")
            px.stop()  # records: exit status 0 after SIGTERM
            check_access_log(access_path, posters, n_wrk)
    finally:
        b.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
