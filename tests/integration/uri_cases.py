# SPDX-License-Identifier: MIT
"""
Request-target rewriting cases shared by the URI oracle test.

Each case is one location and one request-target. The oracle test runs nginx and
proxyd side by side with equivalent configurations (nginx_location_block() and
proxyd_location() build them) and compares, byte for byte, the request line that a
Recorder backend receives from each.

"expect" is what nginx 1.22 sent upstream for the case (the request-target of the
upstream request line), or an int: the status nginx answered with when it sent
nothing upstream. tests/test-uri-rewrite.c carries the same values.

Targets use only characters RFC 9112 allows in a request-target. nginx also accepts raw
'"', '<', '>', '\\', '^', '`', '{', '|', '}' and '#', which the strict request parser
rejects, so they are left out.
"""

import socket
import threading

CASES = [
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": None, "target": "/api/users",
     "expect": "/api/users"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/users",
     "expect": "/users"},
    {"match": "prefix", "pattern": "/api", "proxy_pass_uri": "/", "target": "/api/x",
     "expect": "//x"},
    {"match": "prefix", "pattern": "/api", "proxy_pass_uri": "/", "target": "/api",
     "expect": "/"},
    {"match": "prefix", "pattern": "/api", "proxy_pass_uri": "/", "target": "/apix",
     "expect": "/x"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/",
     "expect": "/"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api",
     "expect": 301},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": None, "target": "/api",
     "expect": 301},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/v1/", "target": "/api/users?id=10&x=y",
     "expect": "/v1/users?id=10&x=y"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/v2", "target": "/api/x",
     "expect": "/v2x"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": None, "target": "/api/users?id=10",
     "expect": "/api/users?id=10"},
    {"match": "prefix", "pattern": "/", "proxy_pass_uri": "/app/", "target": "/",
     "expect": "/app/"},
    {"match": "prefix", "pattern": "/", "proxy_pass_uri": "/app/", "target": "/index.html?a=b",
     "expect": "/app/index.html?a=b"},
    {"match": "prefix", "pattern": "/", "proxy_pass_uri": "/app/", "target": "/a/b/c",
     "expect": "/app/a/b/c"},
    {"match": "exact", "pattern": "/exact", "proxy_pass_uri": "/dst", "target": "/exact",
     "expect": "/dst"},
    {"match": "exact", "pattern": "/exact", "proxy_pass_uri": "/dst/", "target": "/exact?q=1",
     "expect": "/dst/?q=1"},
    {"match": "exact", "pattern": "/exact", "proxy_pass_uri": None, "target": "/exact?q=1",
     "expect": "/exact?q=1"},
    {"match": "exact", "pattern": "/exact", "proxy_pass_uri": "/dst", "target": "/./exact",
     "expect": "/dst"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/a%20b",
     "expect": "/a%20b"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": None, "target": "/api/a%20b",
     "expect": "/api/a%20b"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/a%2Fb",
     "expect": "/a/b"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/a%2fb",
     "expect": "/a/b"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/a%3Fb?c=d",
     "expect": "/a%3Fb?c=d"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/a%25b",
     "expect": "/a%25b"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/caf%C3%A9",
     "expect": "/caf%C3%A9"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/caf%c3%a9",
     "expect": "/caf%C3%A9"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/%E2%82%AC",
     "expect": "/%E2%82%AC"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/a+b",
     "expect": "/a+b"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/a%2Bb",
     "expect": "/a+b"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/a%7Eb",
     "expect": "/a~b"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/a%23b",
     "expect": "/a%23b"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/a%22b%3C%3E%5C%5E%60%7B%7C%7D",
     "expect": "/a%22b%3C%3E%5C%5E%60%7B%7C%7D"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/a%01b%7F",
     "expect": "/a%01b%7F"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/a;p=1,2&x=$y'(*)!",
     "expect": "/a;p=1,2&x=$y'(*)!"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/a%00b",
     "expect": 400},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/a%2",
     "expect": 400},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/a%zzb",
     "expect": 400},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/../api/x",
     "expect": "/x"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/./x",
     "expect": "/x"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "//api//x",
     "expect": "/x"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": None, "target": "//api//x",
     "expect": "//api//x"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/%2e%2e/api/x",
     "expect": "/x"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/%2E/x",
     "expect": "/x"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x/..",
     "expect": "/"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x/.",
     "expect": "/x/"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x/../y/./z",
     "expect": "/y/z"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/.hidden/...",
     "expect": "/.hidden/..."},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/%2F%2Fx",
     "expect": "/x"},
    {"match": "prefix", "pattern": "/", "proxy_pass_uri": "/", "target": "/a/../../x",
     "expect": 400},
    {"match": "prefix", "pattern": "/", "proxy_pass_uri": "/", "target": "/..",
     "expect": 400},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x?",
     "expect": "/x"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": None, "target": "/api/x?",
     "expect": "/api/x?"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x?a=%20b&c=/../d",
     "expect": "/x?a=%20b&c=/../d"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x??a",
     "expect": "/x??a"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x/../?a=1",
     "expect": "/?a=1"},
    {"match": "regex", "pattern": "\\.php$", "proxy_pass_uri": None, "target": "/a/b.php?x=1",
     "expect": "/a/b.php?x=1"},
    {"match": "regex", "pattern": "^/img/.*\\.png$", "proxy_pass_uri": None, "target": "/img/%41//./b.png",
     "expect": "/img/%41//./b.png"},
    {"match": "regex", "pattern": "^/a b$", "proxy_pass_uri": None, "target": "/a%20b",
     "expect": "/a%20b"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x/...",
     "expect": "/x/..."},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x./",
     "expect": "/x./"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x/..%2F",
     "expect": "/"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x/%2e%2E",
     "expect": "/"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x/%2E%2E?q",
     "expect": "/?q"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/a%2?x",
     "expect": 400},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x?a=%00",
     "expect": "/x?a=%00"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x/..?",
     "expect": "/"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/./../api/y",
     "expect": "/y"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x/./.",
     "expect": "/x/"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x//./",
     "expect": "/x/"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x/.././../api/z",
     "expect": "/z"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x/%2e",
     "expect": "/x/"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/..a/b",
     "expect": "/..a/b"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/a..",
     "expect": "/a.."},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/%2e%2e%2fapi/q",
     "expect": "/q"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x%2F..%2Fy",
     "expect": "/y"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x///",
     "expect": "/x/"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/%",
     "expect": 400},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/a%a",
     "expect": 400},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/.",
     "expect": "/"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/./",
     "expect": "/"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x%3F?y",
     "expect": "/x%3F?y"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/a%40b%3A%2C%3B%3D%26%24%2B%21%27%28%29%2A",
     "expect": "/a@b:,;=&$+!'()*"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/%41%5A%61%7A%30%39%2D%2E%5F%7E",
     "expect": "/AZaz09-._~"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x%5C..%5Cy",
     "expect": "/x%5C..%5Cy"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/x/%2E",
     "expect": "/x/"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/%C3%A9?%C3%A9",
     "expect": "/%C3%A9?%C3%A9"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/.%2e/",
     "expect": 404},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/..",
     "expect": 404},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/", "target": "/api/%2E%2E",
     "expect": 404},
    {"match": "prefix", "pattern": "/", "proxy_pass_uri": "/r/", "target": "/api/x/.%2e/%2e./y",
     "expect": "/r/y"},
    {"match": "prefix", "pattern": "/", "proxy_pass_uri": "/r/", "target": "/api/x/../..",
     "expect": "/r/"},
    {"match": "prefix", "pattern": "/", "proxy_pass_uri": "/r/", "target": "/api/..",
     "expect": "/r/"},
    {"match": "prefix", "pattern": "/", "proxy_pass_uri": "/r/", "target": "/a/%2e%2e/%2E%2E/b",
     "expect": 400},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/v1/x/", "target": "/api/a%20b?c=%20",
     "expect": "/v1/x/a%20b?c=%20"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/v1/x/", "target": "/api/",
     "expect": "/v1/x/"},
    {"match": "prefix", "pattern": "/api/", "proxy_pass_uri": "/v1/%20/", "target": "/api/a",
     "expect": "/v1/%20/a"},
    {"match": "exact", "pattern": "/exact", "proxy_pass_uri": "/dst", "target": "/exact?",
     "expect": "/dst"},
    {"match": "exact", "pattern": "/exact", "proxy_pass_uri": "/dst", "target": "/exact/",
     "expect": 404},
    {"match": "exact", "pattern": "/exact", "proxy_pass_uri": "/dst", "target": "//exact",
     "expect": "/dst"},
]


def _libconfig_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _nginx_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def nginx_location_block(case, backend_port):
    """nginx `location` block for a case, proxying to 127.0.0.1:backend_port."""
    url = "http://127.0.0.1:%d%s" % (backend_port, case["proxy_pass_uri"] or "")
    match = case["match"]
    if match == "prefix":
        head = "location %s" % _nginx_string(case["pattern"])
    elif match == "exact":
        head = "location = %s" % _nginx_string(case["pattern"])
    elif match == "regex":
        head = "location ~ %s" % _nginx_string(case["pattern"])
    else:
        raise ValueError("unknown match kind %r" % match)
    return "%s {\n    proxy_pass %s;\n}\n" % (head, url)


def proxyd_location(case, backend_port):
    """proxyd libconfig location group for a case, proxying to 127.0.0.1:backend_port."""
    url = "http://127.0.0.1:%d%s" % (backend_port, case["proxy_pass_uri"] or "")
    match = case["match"]
    if match not in ("prefix", "exact", "regex"):
        raise ValueError("unknown match kind %r" % match)
    return "{ %s = %s; proxy_pass = %s; }" % (match, _libconfig_string(case["pattern"]),
                                               _libconfig_string(url))


class Recorder:
    """Loopback HTTP backend that answers every request with a fixed 200 "ok",
    closes the connection, and keeps the raw request heads (bytes) it received."""

    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

    def __init__(self):
        self.requests = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        with conn:
            conn.settimeout(10)
            data = b""
            try:
                while b"\r\n\r\n" not in data and len(data) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                head = data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" if b"\r\n\r\n" in data else data
                with self._lock:
                    self.requests.append(head)
                conn.sendall(self.RESPONSE)
            except OSError:
                pass

    def request_lines(self):
        """First line of every recorded request head, as bytes."""
        with self._lock:
            return [h.split(b"\r\n", 1)[0] for h in self.requests]

    def clear(self):
        with self._lock:
            self.requests.clear()

    def close(self):
        if not self._closed:
            self._closed = True
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
