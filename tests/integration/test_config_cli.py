#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Command line and configuration: --version, --help, -t on good, broken and
warning-only files (exact file:line), --dump (and that the dump re-parses),
$PROXYD_CONFIG, drop-ins merged in lexical order (visible in behaviour), the
shipped etc/proxyd.conf and README examples pass -t, standalone vs
socket-activated listeners, and a handed-over socket no server uses."""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (PROXYD, SRCDIR, Proxyd, check, free_port,  # noqa: E402
                     http_request, line_number, log, require_proxyd, run_main,
                     run_proxyd, wait_port)

GOOD = """# a good configuration
workers = 2;
log_level = "info";
upstreams = {
  app = { keepalive = 4; servers = ( { address = "127.0.0.1:9"; } ); };
};
servers = (
  {
    name = "main";
    listen = [ "http", "127.0.0.1:18080" ];
    set_header = {
      X-Forwarded-For = "$proxy_add_x_forwarded_for";
      X-Real-IP = "$remote_addr";
    };
    locations = (
      { exact = "/healthz"; return = 200; body = "ok\\n"; },
      { prefix = "/api/"; proxy_pass = "http://app/"; read_timeout = "30s"; },
      { regex = "\\\\.png$"; proxy_pass = "http://127.0.0.1:9"; },
      { prefix = "/"; proxy_pass = "http://127.0.0.1:9"; }
    );
  }
);
"""

HEAD = """workers = 1;
servers = (
  {
    name = "main";
    listen = [ "http" ];
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
"""

# (description, text, needle on the offending line)
BROKEN = [
    ("libconfig syntax error",
     HEAD + "    read_timeout = = \"1s\";\n"
            "    locations = ( { prefix = \"/\"; proxy_pass = \"http://127.0.0.1:9\"; } );\n  }\n);\n",
     "read_timeout = ="),
    ("proxy_pass outside a location",
     HEAD + "    proxy_pass = \"http://127.0.0.1:9\";\n"
            "    locations = ( { prefix = \"/\"; return = 200; } );\n  }\n);\n",
     "    proxy_pass ="),
    ("proxy_pass with a URI in a regex location",
     HEAD + "    locations = (\n      { regex = \"^/x\"; proxy_pass = \"http://127.0.0.1:9/y/\"; }\n    );\n  }\n);\n",
     "regex = \"^/x\""),
    ("regex that does not compile",
     HEAD + "    locations = (\n      { regex = \"(unclosed\"; proxy_pass = \"http://127.0.0.1:9\"; }\n    );\n  }\n);\n",
     "(unclosed"),
    ("unknown variable in set_header",
     HEAD + "    locations = (\n      { prefix = \"/\"; proxy_pass = \"http://127.0.0.1:9\";\n"
            "        set_header = { X-Foo = \"$no_such_variable\"; }; }\n    );\n  }\n);\n",
     "$no_such_variable"),
    ("invalid duration",
     HEAD + "    read_timeout = \"5 fortnights\";\n"
            "    locations = ( { prefix = \"/\"; proxy_pass = \"http://127.0.0.1:9\"; } );\n  }\n);\n",
     "fortnights"),
    ("invalid size",
     HEAD + "    client_max_body_size = \"lots\";\n"
            "    locations = ( { prefix = \"/\"; proxy_pass = \"http://127.0.0.1:9\"; } );\n  }\n);\n",
     "\"lots\""),
    ("proxy_pass to an upstream-like name that is not defined and does not resolve",
     HEAD + "    locations = (\n      { prefix = \"/\"; proxy_pass = \"http://no-such-upstream.invalid/\"; }\n    );\n  }\n);\n",
     "no-such-upstream.invalid"),
]

WARN = HEAD + """    locations = (
      { prefix = "/api"; proxy_pass = "http://127.0.0.1:9/"; }
    );
  }
);
"""

NO_XFF = """workers = 1;
servers = (
  {
    name = "main";
    listen = [ "http" ];
    locations = (
      { prefix = "/"; proxy_pass = "http://127.0.0.1:9"; }
    );
  }
);
"""


def project_version():
    try:
        with open(os.path.join(SRCDIR, "meson.build")) as f:
            m = re.search(r"version\s*:\s*'([^']+)'", f.read())
            return m.group(1) if m else None
    except OSError:
        return None


def cli_checks():
    rc, out, err, _ = run_proxyd(["--version"])
    ver = project_version()
    check(rc == 0 and "proxyd" in out + err and (ver is None or ver in out + err),
          "--version exits 0 and prints 'proxyd %s'" % ver, (rc, out, err))
    rc, out, err, _ = run_proxyd(["--help"])
    txt = out + err
    check(rc == 0 and "-c" in txt and "--test" in txt and "--dump" in txt,
          "--help exits 0 and lists -c, --test, --dump", (rc, txt[:300]))
    rc, out, err, _ = run_proxyd(["--no-such-option"])
    check(rc not in (0, None), "an unknown option exits non-zero", (rc, err))

    rc, out, err, conf = run_proxyd(["-t", "-c", "{conf}"], config=GOOD)
    check(rc == 0 and "configuration OK" in out + err,
          "-t on a good file: 'configuration OK', exit 0", (rc, out, err))
    check("warning" not in err and "error" not in err.lower(),
          "-t on a good file: no warnings", err)
    rc, out, err, conf = run_proxyd(["--test", "-c", "{conf}"], config=GOOD)
    check(rc == 0 and "configuration OK" in out + err, "--test is the same as -t", (rc, err))

    for what, text, needle in BROKEN:
        rc, out, err, conf = run_proxyd(["-t", "-c", "{conf}"], config=text)
        ln = line_number(text, needle)
        want = "%s:%d:" % (conf, ln)
        check(rc not in (0, None), "-t, %s: exits non-zero" % what, (rc, err))
        check(any(l.startswith(want) for l in err.splitlines()),
              "-t, %s: stderr names %s" % (what, want.replace(conf, "proxyd.conf")), err)
        check("configuration OK" not in out + err, "-t, %s: no 'configuration OK'" % what)

    # errors in a drop-in name the drop-in file and line
    bad_dropin = ("# drop-in\nservers = (\n  { name = \"main\";\n"
                  "    read_timeout = \"never\";\n  }\n);\n")
    rc, out, err, conf = run_proxyd(["-t", "-c", "{conf}"], config=GOOD,
                                    dropins={"50-bad.conf": bad_dropin})
    want = "%s.d/50-bad.conf:%d:" % (conf, line_number(bad_dropin, "never"))
    check(rc not in (0, None) and any(l.startswith(want) for l in err.splitlines()),
          "-t names the drop-in file and line (proxyd.conf.d/50-bad.conf:4:)", (rc, err))

    # warnings do not fail -t
    rc, out, err, conf = run_proxyd(["-t", "-c", "{conf}"], config=WARN)
    want = "%s:%d: warning:" % (conf, line_number(WARN, 'prefix = "/api"'))
    check(rc == 0 and "configuration OK" in out + err,
          "-t with only warnings: exit 0 and 'configuration OK'", (rc, err))
    check(any(l.startswith(want) for l in err.splitlines()),
          "-t warns about the trailing-slash mismatch at proxyd.conf:%d"
          % line_number(WARN, 'prefix = "/api"'), err)
    rc, out, err, conf = run_proxyd(["-t", "-c", "{conf}"], config=NO_XFF)
    check(rc == 0 and re.search(r"^%s:\d+: warning: .*" % re.escape(conf), err, re.M),
          "-t warns when a proxying server forwards no client address", (rc, err))

    # $PROXYD_CONFIG
    rc, out, err, conf = run_proxyd(["-t"], config=GOOD, env={"PROXYD_CONFIG": "{conf}"})
    check(rc == 0 and "configuration OK" in out + err, "$PROXYD_CONFIG selects the file",
          (rc, err))
    text = BROKEN[1][1]
    rc, out, err, conf = run_proxyd(["-t"], config=text, env={"PROXYD_CONFIG": "{conf}"})
    check(rc not in (0, None) and conf in err, "$PROXYD_CONFIG errors name that file",
          (rc, err))
    rc, out, err, conf = run_proxyd(["-t", "-c", "{conf}.missing"], config=GOOD)
    check(rc not in (0, None) and "missing" in err, "-t on a missing file fails and says which",
          (rc, err))

    # --dump: merged, and parseable again
    d1 = "servers = (\n  { name = \"main\"; read_timeout = \"7s\"; }\n);\nworkers = 3;\n"
    rc, out, err, conf = run_proxyd(["--dump", "-c", "{conf}"], config=GOOD,
                                    dropins={"10-x.conf": d1})
    check(rc == 0 and re.search(r"^\s*workers\s*=\s*3\s*;", out, re.M),
          "--dump shows the drop-in's top-level value (workers = 3)", (rc, out[:400], err))
    check(re.search(r"read_timeout\s*=\s*\"7s\"", out) and "/healthz" in out and "app" in out,
          "--dump shows main-file and drop-in settings merged", out[:800])
    tmp = tempfile.mkdtemp(prefix="proxyd-dump-")
    try:
        path = os.path.join(tmp, "dumped.conf")
        with open(path, "w") as f:
            f.write(out)
        rc2, out2, err2, _ = run_proxyd(["-t", "-c", path])
        check(rc2 == 0 and "configuration OK" in out2 + err2,
              "--dump output passes -t itself", (rc2, err2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # the shipped configuration and the README's examples
    shipped = os.path.join(SRCDIR, "etc", "proxyd.conf")
    with open(shipped) as f:
        rc, out, err, conf = run_proxyd(["-t", "-c", "{conf}"], config=f.read())
    check(rc == 0 and "configuration OK" in out + err, "etc/proxyd.conf passes -t", (rc, err))
    check("warning" not in err, "etc/proxyd.conf has no -t warnings", err)
    try:
        with open(os.path.join(SRCDIR, "README.md")) as f:
            readme = f.read()
    except OSError:
        readme = ""
    examples = sorted(glob.glob(os.path.join(SRCDIR, "etc", "examples", "*.conf")))
    check(len(examples) >= 6, "etc/examples/ has the example files (%d)" % len(examples))
    for path in examples:
        with open(path) as f:
            rc, out, err, _ = run_proxyd(["-t", "-c", "{conf}"], config=f.read())
        check(rc == 0 and "configuration OK" in out + err and "warning" not in err,
              "etc/examples/%s passes -t without warnings" % os.path.basename(path), (rc, err))
    blocks = re.findall(r"```libconfig\n(.*?)```", readme, re.S)
    check(len(blocks) >= 3, "README.md has complete libconfig examples (%d)" % len(blocks))
    for i, blk in enumerate(blocks, 1):
        rc, out, err, _ = run_proxyd(["-t", "-c", "{conf}"], config=blk)
        check(rc == 0 and "configuration OK" in out + err,
              "README example %d passes -t" % i, (rc, err, blk[:200]))


def behaviour_checks():
    # drop-ins: later file wins per server name, new servers appended, non-.conf ignored
    port = free_port()
    main = """workers = 2;
servers = (
  { name = "main"; listen = [ "http" ];
    locations = ( { exact = "/healthz"; return = 200; body = "main\\n"; },
                  { exact = "/kept"; return = 200; body = "kept\\n"; } ); }
);
"""
    a = """servers = ( { name = "main";
    locations = ( { exact = "/healthz"; return = 200; body = "dropin-10\\n"; } ); } );
"""
    b = """servers = ( { name = "main";
    locations = ( { exact = "/healthz"; return = 200; body = "dropin-20\\n"; } ); },
  { name = "extra"; listen = [ "http" ]; server_name = [ "extra.test" ];
    locations = ( { prefix = "/"; return = 200; body = "extra\\n"; } ); } );
"""
    c = """servers = ( { name = "main";
    locations = ( { exact = "/healthz"; return = 200; body = "ignored\\n"; } ); } );
"""
    with Proxyd(main, sockets=[("127.0.0.1:%d" % port, "http")],
                dropins={"20-b.conf": b, "10-a.conf": a, "30-c.conf.disabled": c}) as p:
        r = http_request(port, target="/healthz")
        check(r is not None and r.body == b"dropin-20\n",
              "drop-ins apply in lexical order; 20-b.conf wins; *.disabled ignored", r)
        r = http_request(port, target="/kept")
        check(r is not None and r.status == 404,
              "a drop-in's locations replace the server's list whole", r)
        r = http_request(port, target="/", headers=[("Host", "extra.test")])
        check(r is not None and r.body == b"extra\n", "a drop-in's new server is appended", r)

    # standalone: proxyd binds the addresses itself (IPv4 and IPv6)
    p4 = free_port()
    p6 = free_port("::1")
    conf = """workers = 1;
servers = ( { name = "main"; listen = [ "127.0.0.1:%d", "[::1]:%d" ];
    locations = ( { exact = "/healthz"; return = 200; body = "standalone\\n"; } ); } );
""" % (p4, p6)
    p = Proxyd(conf, wait=("127.0.0.1", p4))
    try:
        p.start()
        r = http_request(p4, target="/healthz")
        check(r is not None and r.body == b"standalone\n", "standalone: serves 127.0.0.1", r)
        check(wait_port(p6, "::1", 3), "standalone: listens on [::1]")
        r = http_request(p6, host="::1", target="/healthz")
        check(r is not None and r.body == b"standalone\n", "standalone: serves [::1]", r)
        rc = p.stop()
        check(rc == 0, "SIGTERM: exits 0 (rc=%s)" % rc)
    except RuntimeError as e:
        check(False, "standalone proxyd starts", str(e))
    finally:
        p.close()

    # socket-activated, matched by address instead of name
    port = free_port()
    conf = """workers = 1;
servers = ( { name = "main"; listen = [ "127.0.0.1:%d" ];
    locations = ( { exact = "/healthz"; return = 200; body = "by-address\\n"; } ); } );
""" % port
    with Proxyd(conf, sockets=[("127.0.0.1:%d" % port, "whatever")]) as p:
        r = http_request(port, target="/healthz")
        check(r is not None and r.body == b"by-address\n",
              "socket-activated: handed-over socket matched by bound address", r)

    # two handed-over sockets, matched by name, routed to different servers
    pa, pb = free_port(), free_port()
    conf = """workers = 1;
servers = (
  { name = "a"; listen = [ "sock-a" ];
    locations = ( { exact = "/healthz"; return = 200; body = "a\\n"; } ); },
  { name = "b"; listen = [ "sock-b" ];
    locations = ( { exact = "/healthz"; return = 200; body = "b\\n"; } ); } );
"""
    with Proxyd(conf, sockets=[("127.0.0.1:%d" % pa, "sock-a"),
                               ("127.0.0.1:%d" % pb, "sock-b")]) as p:
        ra = http_request(pa, target="/healthz")
        rb = http_request(pb, target="/healthz")
        check(ra is not None and rb is not None and ra.body == b"a\n" and rb.body == b"b\n",
              "socket-activated: sockets matched by FileDescriptorName", (ra, rb))

    # a handed-over socket that no server uses: refuse to start
    pa, pb = free_port(), free_port()
    conf = """workers = 1;
servers = ( { name = "main"; listen = [ "http" ];
    locations = ( { exact = "/healthz"; return = 200; } ); } );
"""
    p = Proxyd(conf, sockets=[("127.0.0.1:%d" % pa, "http"), ("127.0.0.1:%d" % pb, "stray")],
               expect_start=False)
    try:
        p.start()
        wait_port(pa, timeout=5)  # systemd-socket-activate starts proxyd on a connection
        try:
            rc = p.proc.wait(10)
        except subprocess.TimeoutExpired:
            rc = None
        check(rc not in (0, None), "a handed-over socket no server uses: proxyd exits "
              "non-zero at start (rc=%s)" % rc, p.log_text()[-400:])
        check("stray" in p.log_text(), "the refusal names the unused socket 'stray'",
              p.log_text()[-400:])
    finally:
        p.close()

    # a listen name that was not handed over, when not socket-activated
    rc, out, err, _ = run_proxyd(["-c", "{conf}"], config=conf, timeout=10)
    check(rc not in (0, None), "standalone with a socket name it cannot bind: exits non-zero",
          (rc, err[-300:]))


def main():
    require_proxyd()
    cli_checks()
    behaviour_checks()


if __name__ == "__main__":
    log("test_config_cli: proxyd=%s" % PROXYD)
    run_main(main)
