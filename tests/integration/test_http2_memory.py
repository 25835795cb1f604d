#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""What one HTTP/2 client can make proxyd hold: proxyd's resident memory
(VmRSS from /proc) is read before and after a client pushes, and must not
grow past the per-connection cap (4 MiB) plus a margin for the allocator.

 - 128 streams asking for 8 MiB responses with a window of 0 (the client
   reads nothing): every stream gets its response head, proxyd holds at most
   its per-connection response budget and reads the upstreams no further
   (backpressure);
 - the same from a client that stops reading its socket altogether;
 - 64 streams each sending a 4 MiB body to an upstream that never reads:
   the client's connection window closes (proxyd acknowledges only what an
   upstream socket took), and proxyd holds at most that window.

Each time proxyd stays up, and answers the next connection."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Backend, DataStream, Proxyd, Reply, check, free_port, log,  # noqa: E402
                     run_main)
from test_http2 import Client, get  # noqa: E402

import h2.events  # noqa: E402

MIB = 1 << 20
CAP = 4 * MIB
MARGIN = 3 * MIB  # allocator arenas, page granularity, the upstream connections' own buffers
BIG = 8 * MIB


def handler(req):
    if req.target.startswith("/big"):
        return Reply(200, [("Content-Type", "application/octet-stream")], DataStream(BIG, seed=3).blocks(),
                     length=BIG)
    return Reply(200, [("Content-Type", "text/plain")], b"ok\n")


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def settled_rss(pid, rounds=40):
    """VmRSS once it stopped changing for a few samples (or after rounds)."""
    last, same = -1, 0
    for _ in range(rounds):
        v = rss(pid)
        same = same + 1 if v == last else 0
        if same >= 4:
            break
        last = v
        time.sleep(0.1)
    return last


def still_serves(port):
    c = Client(port)
    sid = c.request(get("/small"))
    st, _, body = c.wait(sid)
    c.close()
    return st == 200 and body == b"ok\n"


def warm_up(port):
    """The worker's scratch buffers, the upstream pool, nghttp2's tables: allocated once."""
    for _ in range(3):
        c = Client(port)
        sids = [c.request(get("/big/warm")) for _ in range(4)]
        for sid in sids:
            c.wait(sid, 30)
        c.close()


def test_zero_window(px, port):
    log("128 streams of 8 MiB responses with a zero window")
    before = settled_rss(px.pid)
    c = Client(port, window=0)
    c.pump(lambda e: isinstance(e, h2.events.SettingsAcknowledged), 5)  # (the zero window in force)
    sids = [c.request(get("/big/%d" % i)) for i in range(128)]
    c.pump(lambda e: False, 2.0)
    during = settled_rss(px.pid)
    heads = sum(1 for e in c.events if isinstance(e, h2.events.ResponseReceived))
    log("VmRSS %.1f MiB -> %.1f MiB (%d response heads)" % (before / MIB, during / MIB, heads))
    check(during - before <= CAP + MARGIN, "proxyd grew by %.1f MiB, at most the 4 MiB cap (+%d MiB margin)"
          % ((during - before) / MIB, MARGIN // MIB))
    check(heads == len(sids), "every stream got its response head (the streams were begun)", heads)
    c.close()
    check(px.alive() and still_serves(port), "proxyd is up and serves the next connection")


def test_not_reading(px, port):
    log("128 streams of 8 MiB responses, the client never reads its socket")
    before = settled_rss(px.pid)
    c = Client(port)
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for i in range(128):
        c.request(get("/big/nr%d" % i))
    time.sleep(2)
    during = settled_rss(px.pid)
    log("VmRSS %.1f MiB -> %.1f MiB" % (before / MIB, during / MIB))
    check(during - before <= CAP + MARGIN, "proxyd grew by %.1f MiB, at most the cap" % ((during - before) / MIB))
    c.close()
    check(px.alive() and still_serves(port), "proxyd is up and serves the next connection")


def test_bodies(px, port, sink_port):
    log("64 streams pushing 4 MiB bodies to an upstream that never reads")
    before = settled_rss(px.pid)
    c = Client(port)
    body = b"b" * (4 * MIB)
    sids = [c.request(get("/sink/%d" % i, method="POST", extra=[("content-length", str(len(body)))]), end=False)
            for i in range(64)]
    sent = 0
    stalled = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        progress = False
        for sid in sids:
            n = min(c.c.local_flow_control_window(sid), c.c.max_outbound_frame_size, 65536)
            if n > 0:
                c.c.send_data(sid, body[:n])
                sent += n
                progress = True
        c.flush()
        if not progress:
            # nothing can be sent: wait for WINDOW_UPDATEs that do not come
            if not c.pump(lambda e: isinstance(e, h2.events.WindowUpdated), 2.0):
                stalled = True
                break
    during = settled_rss(px.pid)
    log("sent %.1f MiB of %d MiB; VmRSS %.1f MiB -> %.1f MiB" % (sent / MIB, 64 * 4, before / MIB, during / MIB))
    check(stalled and sent < 64 * len(body), "the client's windows closed: backpressure (%.1f MiB sent)" % (sent / MIB))
    check(during - before <= CAP + MARGIN, "proxyd grew by %.1f MiB, at most the cap" % ((during - before) / MIB))
    c.close()
    check(px.alive() and still_serves(port), "proxyd is up and serves the next connection")


def main():
    # the upstream that never reads: a small receive buffer (set before listen, inherited by
    # the connections), so that the kernel does not take the bodies for it
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ls.bind(("127.0.0.1", 0))
    ls.listen(128)
    port = free_port()
    with Backend(handler) as backend:
        conf = """
workers = 1;
servers = ( { name = "h2c"; listen = [ "127.0.0.1:%d" ]; http2_cleartext = true; send_timeout = "60s";
  set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
  locations = ( { prefix = "/sink/"; proxy_pass = "http://127.0.0.1:%d"; read_timeout = "60s";
                  client_max_body_size = "8m"; },
                { prefix = "/"; proxy_pass = "http://127.0.0.1:%d"; } ); } );
""" % (port, ls.getsockname()[1], backend.port)
        with Proxyd(conf, wait=("127.0.0.1", port)) as px:
            warm_up(port)
            test_zero_window(px, port)
            test_not_reading(px, port)
            test_bodies(px, port, ls.getsockname()[1])
            check(px.alive(), "proxyd is still running")
    ls.close()


if __name__ == "__main__":
    run_main(main)
