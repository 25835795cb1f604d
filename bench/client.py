#!/usr/bin/python3
"""Small deterministic HTTP/1.1 clients for the benchmark (standard library only).

  client.py hold HOST PORT PATH N [--hold-seconds S]
      Opens N keep-alive connections (in batches), sends one GET on each, reads
      each full response, prints "READY <n_ok>" and keeps all N connections open
      until stdin is closed, a signal arrives, or S seconds have passed
      (default 120). Used for the memory-per-idle-connection scenario.

  client.py requests HOST PORT PATH N [--conns C]
      Sends exactly N GET requests over C keep-alive connections (default 1),
      one request in flight per connection, and prints "DONE <n> <seconds>".
      Used by profile.sh, where a fixed request count matters more than speed.

Every network wait is bounded (--timeout, default 60 s overall).
"""

import argparse
import os
import resource
import selectors
import signal
import socket
import sys
import time


class Conn:
    __slots__ = ("sock", "buf", "want", "sent", "left")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.want = None  # total bytes of the current response once the head is parsed
        self.left = 0


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def request_bytes(host, port, path):
    return ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: bench-client\r\n\r\n" % (path, host, port)).encode()


def response_complete(c):
    """Return True when c.buf holds one full response (Content-Length framing or chunked)."""
    if c.want is None:
        end = c.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = c.buf[:end].decode("latin-1").lower()
        length = None
        chunked = False
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip() == "content-length":
                length = int(value.strip())
            elif name.strip() == "transfer-encoding" and "chunked" in value:
                chunked = True
        if chunked:
            # Only used against origins that send Content-Length; accept the terminator.
            if c.buf.endswith(b"0\r\n\r\n"):
                c.want = len(c.buf)
                return True
            return False
        c.want = end + 4 + (length or 0)
    return len(c.buf) >= c.want


def consume(c):
    """Drop the completed response from the buffer and reset the parser state."""
    c.buf = c.buf[c.want:]
    c.want = None


def open_batch(sel, host, port, req, n, deadline):
    """Open n connections, send req on each, wait for all responses. Returns list of Conn."""
    conns = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        c = Conn(s)
        conns.append(c)
        sel.register(s, selectors.EVENT_WRITE, c)
    pending = len(conns)
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError("timed out opening connections (%d pending)" % pending)
        for key, ev in sel.select(timeout=1.0):
            c = key.data
            if ev & selectors.EVENT_WRITE:
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
                c.sock.sendall(req)  # a small request always fits in an empty socket buffer
                sel.modify(c.sock, selectors.EVENT_READ, c)
                continue
            data = c.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed a connection before responding")
            c.buf += data
            if response_complete(c):
                consume(c)
                sel.unregister(c.sock)
                pending -= 1
    return conns


def cmd_hold(a):
    raise_nofile()
    req = request_bytes(a.host, a.port, a.path)
    deadline = time.monotonic() + a.timeout
    sel = selectors.DefaultSelector()
    conns = []
    left = a.n
    while left > 0:
        b = min(a.batch, left)
        conns += open_batch(sel, a.host, a.port, req, b, deadline)
        left -= b
    print("READY %d" % len(conns), flush=True)
    # Hold until stdin closes (the harness closes it), a signal, or the hold limit.
    end = time.monotonic() + a.hold_seconds
    stdin_sel = selectors.DefaultSelector()
    stdin_sel.register(sys.stdin, selectors.EVENT_READ)
    while time.monotonic() < end:
        if stdin_sel.select(timeout=0.5):
            if not sys.stdin.buffer.read1(4096):
                break
    for c in conns:
        c.sock.close()
    return 0


def cmd_requests(a):
    raise_nofile()
    req = request_bytes(a.host, a.port, a.path)
    deadline = time.monotonic() + a.timeout
    sel = selectors.DefaultSelector()
    t0 = time.monotonic()
    conns = open_batch(sel, a.host, a.port, req, min(a.conns, a.n), deadline)
    done = len(conns)
    issued = done
    active = 0
    for c in conns:
        if issued < a.n:
            c.sock.sendall(req)
            issued += 1
            sel.register(c.sock, selectors.EVENT_READ, c)
            active += 1
    while active:
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %d of %d requests" % (done, a.n))
        for key, _ in sel.select(timeout=1.0):
            c = key.data
            data = c.sock.recv(262144)
            if not data:
                raise ConnectionError("server closed a keep-alive connection")
            c.buf += data
            while response_complete(c):
                consume(c)
                done += 1
                if issued < a.n:
                    c.sock.sendall(req)
                    issued += 1
                else:
                    sel.unregister(c.sock)
                    active -= 1
                    break
    dt = time.monotonic() - t0
    for c in conns:
        c.sock.close()
    print("DONE %d %.3f" % (done, dt), flush=True)
    return 0 if done == a.n else 1


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("hold", "requests"):
        q = sub.add_parser(name)
        q.add_argument("host")
        q.add_argument("port", type=int)
        q.add_argument("path")
        q.add_argument("n", type=int)
        q.add_argument("--timeout", type=float, default=60.0)
        if name == "hold":
            q.add_argument("--batch", type=int, default=250)
            q.add_argument("--hold-seconds", type=float, default=120.0)
        else:
            q.add_argument("--conns", type=int, default=1)
    a = p.parse_args()
    try:
        return cmd_hold(a) if a.cmd == "hold" else cmd_requests(a)
    except (OSError, TimeoutError) as e:
        print("ERROR %s" % e, file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
