#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The access log as a buffered file (access_log = "/path"): one complete line
per request with the same fields as the journal entry, lines written in blocks
but at the latest about two seconds later, every line whole when two workers
write at once, everything written on stop, a reload reopens the file (log
rotation), a file that cannot be opened fails -t and a reload with file:line
(the old configuration keeps serving and logging), and a bad value is a
file:line error."""

import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, Proxyd, Reply, check, check_eq, free_port,  # noqa: E402
                     http_request, line_number, run_main, run_proxyd)

CONFIG = """workers = 2;
access_log = "%(log)s";
servers = (
  {
    name = "logged";
    listen = [ "127.0.0.1:%(port)d" ];
    locations = (
      { exact = "/local"; return = 204; },
      { prefix = "/"; proxy_pass = "http://127.0.0.1:%(bport)d"; }
    );
  }
);
"""

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (client=\S+ server=\S+ method=\S+ uri=\S+ "
                  r"status=\d+ upstream=\S+ upstream_status=\d+ bytes=\d+ bytes_received=\d+ "
                  r"duration_ms=[\d.]+ request_id=[0-9a-f]{32} protocol=HTTP/1\.[01])( reason=.*)?$")


def fields(line):
    m = LINE.match(line)
    if not m:
        return None
    d = dict(kv.split("=", 1) for kv in m.group(2).split(" "))
    d["time"] = m.group(1)
    return d


def read_lines(path):
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return [], ""
    return data.splitlines(), data


def wait_lines(path, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        lines, data = read_lines(path)
        if len(lines) >= n or time.monotonic() > deadline:
            return lines, data
        time.sleep(0.05)


def main():
    tmp = tempfile.mkdtemp(prefix="proxyd-alog-")
    b = Backend(lambda req: Reply(200, [("Content-Type", "text/plain")], b"hello\n"))
    try:
        path = os.path.join(tmp, "access.log")
        port = free_port()
        conf = CONFIG % {"log": path, "port": port, "bport": b.port}
        with Proxyd(conf, wait=("127.0.0.1", port)) as px:
            # 1. one line per request, fields like the journal entry
            t0 = time.monotonic()
            for i in range(10):
                r = http_request(port, target="/a/%d" % i)
                check(r is not None and r.status == 200, "request %d proxied" % i)
            check_eq(http_request(port, target="/local").status, 204, "local response")
            lines, data = wait_lines(path, 11)
            dt = time.monotonic() - t0
            check_eq(len(lines), 11, "11 requests -> 11 lines in %s (within %.1fs)" % (path, dt))
            parsed = [fields(ln) for ln in lines]
            check(all(parsed), "every line has the timestamp and every field", data[:600])
            if all(parsed):
                # each worker writes its own block, so lines are ordered per worker only
                check_eq(sorted(p["uri"] for p in parsed), sorted(["/a/%d" % i for i in range(10)] + ["/local"]),
                         "one line per request, with its URI")
                proxied = [p for p in parsed if p["uri"].startswith("/a/")]
                local = [p for p in parsed if p["uri"] == "/local"]
                check(len(proxied) == 10 and all(p["status"] == "200" and p["upstream"] == "127.0.0.1:%d" % b.port and
                                                 p["upstream_status"] == "200" and p["server"] == "logged"
                                                 for p in proxied),
                      "proxied: status 200, upstream address and status, server name", proxied[:2])
                check(len(local) == 1 and local[0]["status"] == "204" and local[0]["upstream"] == "-",
                      "local response: 204, no upstream", local)
                check(parsed[0]["client"].startswith("127.0.0.1:"), "client address:port", parsed[0])
            check("access:" not in px.log_text(), "nothing of it on stderr (the journal stream)",
                  px.log_text()[-300:])
            st = os.stat(path)
            check_eq(oct(st.st_mode & 0o777), "0o640", "the file is created with mode 0640")

            # 2. two workers, many concurrent requests: whole lines only
            before = len(read_lines(path)[0])
            errors = []

            def client(k):
                for i in range(100):
                    r = http_request(port, target="/c/%d/%d" % (k, i))
                    if r is None or r.status != 200:
                        errors.append((k, i))
            threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            check_eq(errors, [], "800 concurrent requests answered")
            lines, data = wait_lines(path, before + 800)
            new = lines[before:]
            check_eq(len(new), 800, "800 more lines")
            check(all(fields(ln) for ln in new) and data.endswith("\n"),
                  "every line whole (no interleaving between the workers)",
                  [ln for ln in new if not fields(ln)][:3])
            uris = sorted(fields(ln)["uri"] for ln in new if fields(ln))
            check_eq(uris, sorted("/c/%d/%d" % (k, i) for k in range(8) for i in range(100)),
                     "each request exactly once")
            workers = {w.split("/")[0] for w in os.listdir("/proc/%d/task" % px.pid)}
            check(len(workers) >= 3, "workers = 2 running (threads: %d)" % len(workers))

            # 3. rotation: move the file away, reload, new lines go to a new file
            rotated = path + ".1"
            os.rename(path, rotated)
            http_request(port, target="/before-reload")
            os.kill(px.pid, signal.SIGHUP)
            check(px.wait_log(r"Reloading", 5), "SIGHUP reloads")
            deadline = time.monotonic() + 5
            while not os.path.exists(path) and time.monotonic() < deadline:
                time.sleep(0.05)
            check(os.path.exists(path), "the reload created a new %s" % os.path.basename(path))
            time.sleep(0.3)
            http_request(port, target="/after-reload")
            lines, _ = wait_lines(path, 1)
            check(any("uri=/after-reload " in ln for ln in lines), "new requests go to the new file", lines)
            old, _ = wait_lines(rotated, before + 801)
            check(any("uri=/before-reload " in ln for ln in old),
                  "the request before the reload stays in the rotated file", old[-2:])

            def fds_on(p):
                n = 0
                for fd in os.listdir("/proc/%d/fd" % px.pid):
                    try:
                        if os.readlink("/proc/%d/fd/%s" % (px.pid, fd)) == p:
                            n += 1
                    except OSError:
                        pass
                return n
            deadline = time.monotonic() + 5
            while fds_on(rotated) and time.monotonic() < deadline:
                time.sleep(0.1)
            check_eq(fds_on(rotated), 0, "the rotated file is closed after the reload (disk space comes back)")

            # 4. a reload whose file cannot be opened fails; logging goes on in the old one
            with open(px.conf_path, "w") as f:
                f.write(CONFIG % {"log": os.path.join(tmp, "missing-dir", "access.log"), "port": port,
                                  "bport": b.port})
            n_failed = px.log_text().count("Reload failed")
            os.kill(px.pid, signal.SIGHUP)
            deadline = time.monotonic() + 5
            while px.log_text().count("Reload failed") == n_failed and time.monotonic() < deadline:
                time.sleep(0.05)
            text = px.log_text()
            check(px.log_text().count("Reload failed") > n_failed, "unopenable access log fails the reload",
                  text[-600:])
            check(re.search(r"%s:2: cannot open the access log \"[^\"]*missing-dir/access.log\": "
                            r"No such file or directory" % re.escape(px.conf_path), text),
                  "the log says file:line and why", text[-600:])
            http_request(port, target="/after-failed-reload")
            lines, _ = wait_lines(path, 2)
            check(any("uri=/after-failed-reload " in ln for ln in lines),
                  "the old configuration keeps serving and logging to the old file", lines[-2:])

            # 5. stop: buffered lines are written before exit
            for i in range(5):
                http_request(port, target="/last/%d" % i)
            px.stop()
        lines, _ = read_lines(path)
        check_eq(sum(1 for ln in lines if "uri=/last/" in ln), 5, "lines buffered at SIGTERM are written")

        # 6. -t: a file that cannot be opened, and a bad value, with file:line
        bad = CONFIG % {"log": "/nonexistent-dir/x/access.log", "port": port, "bport": b.port}
        rc, out, err, conf_path = run_proxyd(["-t", "-c", "{conf}"], config=bad)
        check(rc == 1 and re.search(r"proxyd.conf:2: cannot open the access log \"/nonexistent-dir/x/access.log\": "
                                    r"No such file or directory", err),
              "-t: unopenable access log -> file:line: why, exit 1", (rc, err))
        rel = CONFIG % {"log": "relative/access.log", "port": port, "bport": b.port}
        rc, out, err, conf_path = run_proxyd(["-t", "-c", "{conf}"], config=rel)
        check(rc == 1 and 'proxyd.conf:%d: "access_log" must be true, false or an absolute file name'
              % line_number(rel, "access_log") in err,
              "-t: a relative file name -> file:line error", (rc, err))
        ok = CONFIG % {"log": os.path.join(tmp, "t.log"), "port": port, "bport": b.port}
        rc, out, err, conf_path = run_proxyd(["-t", "-c", "{conf}"], config=ok)
        check(rc == 0 and "configuration OK" in out, "-t: a writable file is OK", (rc, out, err))
        check(not os.path.exists(os.path.join(tmp, "t.log")),
              "-t creates no file (a root-owned file would lock out the service's user)")
    finally:
        b.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
