#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The admin endpoint's status page in headless Chromium: the DOM after the
page's scripts ran shows the upstream table with each server's state, and a
screenshot of it is a real picture."""

import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (PROXYD, Backend, Proxyd, Reply, check, check_eq, free_port,  # noqa: E402
                     log, run_main)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

CONFIG = """
upstreams = {
  app = { servers = ( { address = "%(a1)s"; }, { address = "%(a2)s"; }, { address = "%(a3)s"; } ); };
  hc  = { health_check = { path = "/healthz"; interval = "1h"; };
          servers = ( { address = "%(h1)s"; }, { address = "%(h2)s"; } ); };
};
servers = (
  { name = "main"; listen = [ "http" ];
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
    locations = ( { prefix = "/"; proxy_pass = "http://app"; } ); }
);
"""


def chromium(args, tmp):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--user-data-dir=" + os.path.join(tmp, "profile"),
           "--virtual-time-budget=10000"] + args
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def png_pixels(path):
    """Decode an 8-bit RGB/RGBA PNG -> (width, height, set of distinct pixels sampled)."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    pos, idat = 8, b""
    w = h = depth = ctype = None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", chunk[:10])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + n
    if depth != 8 or ctype not in (2, 6):
        return w, h, None
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev = bytearray(stride)
    colors = set()
    i = 0
    for y in range(h):
        f = raw[i]
        line = bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if y % 4 == 0:
            for x in range(0, stride, bpp * 4):
                colors.add(bytes(line[x:x + 3]))
        prev = line
    return w, h, colors


def hc_handler(status):
    def h(req):
        return Reply(status if req.target == "/healthz" else 200, [], b"x\n")
    return h


def main():
    if not os.access(CHROMIUM, os.X_OK):
        check(False, "chromium is installed (Debian package chromium)", CHROMIUM)
        return
    backends = {"a1": Backend(), "a2": Backend(), "a3": Backend(),
                "h1": Backend(hc_handler(200)), "h2": Backend(hc_handler(503))}
    addr = {k: b.address for k, b in backends.items()}
    port, aport = free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="proxyd-page-")
    try:
        with Proxyd(CONFIG % addr, sockets=[("127.0.0.1:%d" % port, "http"), ("127.0.0.1:%d" % aport, "admin")]) as px:
            check(px.wait_log(r"warning: The admin socket 127\.0\.0\.1:%d is not a unix socket" % aport),
                  "a TCP admin socket without an admin server is warned about", px.log_text()[-500:])
            for cmd in (["drain", "app", addr["a2"]], ["disable", "app", addr["a3"]], ["check", "hc", addr["h2"]]):
                # the TCP admin socket, as a drop-in of proxyd-admin.socket would give it
                p = subprocess.run(["curl", "-s", "-X", "POST",
                                    "http://127.0.0.1:%d/api/upstreams/%s?upstream=%s&server=%s"
                                    % (aport, cmd[0], cmd[1], cmd[2])],
                                   capture_output=True, text=True, timeout=30)
                check(p.returncode == 0 and '"server"' in p.stdout, "POST %s %s %s" % tuple(cmd), p.stdout)
            for _ in range(3):
                subprocess.run(["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:%d/" % port], timeout=30)

            url = "http://127.0.0.1:%d/" % aport
            r = chromium(["--dump-dom", url], tmp)
            dom = r.stdout
            check(r.returncode == 0 and 'data-loaded="1"' in dom, "chromium ran the page's script (data-loaded)",
                  (r.returncode, r.stderr[-500:], dom[:300]))
            rows = re.findall(r'<tr class="([a-z]+)" data-group="([^"]+)" data-server="([^"]+)" '
                              r'data-state="([a-z]+)">(.*?)</tr>', dom)
            states = {(g, s): st for _, g, s, st, _ in rows}
            want = {("app", addr["a1"]): "up", ("app", addr["a2"]): "draining",
                    ("app", addr["a3"]): "disabled", ("hc", addr["h1"]): "up", ("hc", addr["h2"]): "unhealthy"}
            check_eq(states, want, "the upstream table shows every server with its state")
            cells = {(g, s): re.findall(r"<td[^>]*>([^<]*)</td>", body) for _, g, s, _, body in rows}
            a1 = cells.get(("app", addr["a1"]), [])
            check(len(a1) >= 6 and a1[2] == "up" and a1[5] == "3",
                  "a1's row shows state up and 3 selections (a2, a3 out of rotation)", a1)
            check(re.search(r"<td class=\"name\">main</td><td>3</td>", dom) is not None,
                  "the servers table shows main with 3 requests", dom[:2000])

            shot = os.path.join(tmp, "status.png")
            r = chromium(["--screenshot=" + shot, "--window-size=1200,700", "--hide-scrollbars", url], tmp)
            info = png_pixels(shot) if os.path.exists(shot) else None
            log("screenshot: %s" % (info[:2] if info else None,))
            check(info is not None and info[0] == 1200 and info[1] == 700, "the screenshot is a 1200x700 PNG",
                  (r.returncode, r.stderr[-500:]))
            colors = info[2] if info else None
            check(colors is not None and len(colors) > 20, "the screenshot is not blank (it has text and colours)",
                  len(colors) if colors else colors)
            # the state colours of the table: green (up), yellow (draining), red (unhealthy)
            check(colors is not None and bytes((0xd8, 0xf5, 0xd8)) in colors and bytes((0xff, 0xf1, 0xc2)) in colors
                  and bytes((0xf8, 0xd0, 0xd0)) in colors,
                  "the screenshot shows the up, draining and unhealthy colours")
    finally:
        for b in backends.values():
            b.close()
        if os.environ.get("PROXYD_KEEP_SCREENSHOT"):
            shutil.copy(os.path.join(tmp, "status.png"), os.environ["PROXYD_KEEP_SCREENSHOT"])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
