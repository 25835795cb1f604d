#!/bin/bash
# SPDX-License-Identifier: MIT
#
# End-to-end test of proxyd under a real systemd.
#
# Boots systemd in a container made from this machine's own /usr
# (systemd-nspawn --volatile=yes: / and /etc are an empty tmpfs, /usr is the
# host's, read-only), with proxyd's `meson install` tree laid over /usr, and
# /etc/proxyd bound from a scratch copy of the installed configuration. Then it
# drives proxyd the way an administrator does: systemctl, journalctl, drop-ins.
#
# Environment:
#   PROXYD_BUILDDIR  configured and built meson build directory (prefix /usr,
#                    sysconfdir /etc); installed with `meson install --destdir`
#   PROXYD_DESTDIR   alternatively, an already installed tree (skips install)
#   E2E_REQUESTS     requests sent during `systemctl restart` (default 300)
#   E2E_VERBOSE=1    print the commands' output on failure and more
#
# Output: "ok - ..." / "FAIL - ..." per check, then "N passed, M failed".
# Exit: 0 all passed, 1 any failure, 77 this machine cannot run the container.

set -u
export LC_ALL=C.UTF-8
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

N_REQUESTS=${E2E_REQUESTS:-300}
VERBOSE=${E2E_VERBOSE:-0}
PY=/usr/bin/python3
MACHINE=proxyd-e2e-$$
# shellcheck source=tests/integration/container.sh
. "$(dirname "$0")/container.sh"

# count_until TRIES COMMAND...: runs COMMAND (it prints a count) every 0.1 s until the count
# is at least 1 or TRIES runs are done; prints the last count (0 if none).
count_until() {
        local tries=$1 n=0 i
        shift
        for i in $(seq 1 "$tries"); do
                n=$("$@" || true)
                [ "${n:-0}" -ge 1 ] && break
                sleep 0.1
        done
        echo "${n:-0}"
}



# ---------------------------------------------------------------- can we run?

container_require
[ -x "$PY" ] || skip "no $PY"
for t in curl journalctl systemctl; do
        [ -x /usr/bin/$t ] || skip "no /usr/bin/$t for the container"
done

TMP=$(mktemp -d /tmp/proxyd-e2e.XXXXXX) || exit 1
chmod 0755 "$TMP"

if [ -n "${PROXYD_DESTDIR:-}" ]; then
        D=$PROXYD_DESTDIR
else
        [ -n "${PROXYD_BUILDDIR:-}" ] || { echo "FAIL - set PROXYD_BUILDDIR (or PROXYD_DESTDIR)"; exit 1; }
        D=$TMP/dest
        if ! out=$(meson install -C "$PROXYD_BUILDDIR" --no-rebuild --destdir "$D" 2>&1); then
                echo "$out" | tail -n 20 | sed 's/^/#   /'
                echo "FAIL - meson install --destdir"
                echo "0 passed, 1 failed"
                exit 1
        fi
fi

# Debian merges /lib into /usr/lib: units installed into /lib/systemd/system
# (what Debian 12's systemd.pc reports) belong in /usr/lib/systemd/system.
mkdir -p "$TMP/usr/lib/systemd/system" "$TMP/usr/sbin"
cp -a "$D/usr/." "$TMP/usr/"
if [ -d "$D/lib/systemd/system" ] && [ ! -L "$D/lib" ]; then
        cp -a "$D/lib/systemd/system/." "$TMP/usr/lib/systemd/system/"
fi
mkdir -p "$TMP/etc-proxyd"
if [ -d "$D/etc/proxyd" ]; then
        cp -a "$D/etc/proxyd/." "$TMP/etc-proxyd/"
fi

check "installed: /usr/sbin/proxyd" test -x "$TMP/usr/sbin/proxyd"
for u in proxyd.service proxyd.socket proxyd-https.socket proxyd-admin.socket; do
        check "installed: unit $u" test -f "$TMP/usr/lib/systemd/system/$u"
done
check "installed: /etc/proxyd/proxyd.conf" test -f "$TMP/etc-proxyd/proxyd.conf"
check "installed: /etc/proxyd/proxyd.conf.d/" test -d "$TMP/etc-proxyd/proxyd.conf.d"
check "installed: man pages proxyd(8), proxyd-ctl(8) and proxyd.conf(5)" \
        test -f "$TMP/usr/share/man/man8/proxyd.8" -a -f "$TMP/usr/share/man/man8/proxyd-ctl.8" \
        -a -f "$TMP/usr/share/man/man5/proxyd.conf.5"
check "installed: /usr/lib/sysusers.d/proxyd.conf (the proxyd-admin group)" test -f "$TMP/usr/lib/sysusers.d/proxyd.conf"
mkdir -p "$TMP/etc-proxyd/proxyd.conf.d"
if [ ! -x "$TMP/usr/sbin/proxyd" ] || [ ! -f "$TMP/usr/lib/systemd/system/proxyd.service" ]; then
        echo "$PASSED passed, $FAILED failed"
        exit 1
fi

exposure=$(systemd-analyze security --offline=yes --no-pager \
        "$TMP/usr/lib/systemd/system/proxyd.service" 2>&1 |
        sed -n 's/.*Overall exposure level for proxyd.service: \([0-9.]*\).*/\1/p')
if [ -n "$exposure" ] && awk -v e="$exposure" 'BEGIN { exit !(e <= 1.5) }'; then
        ok "systemd-analyze security --offline=yes: exposure $exposure <= 1.5"
else
        fail "systemd-analyze security --offline=yes: exposure '${exposure:-?}' (want <= 1.5)"
fi

# ---------------------------------------------------------------- boot

: >"$TMP/console.log"
# /etc starts empty, so systemd treats the boot as the first one and applies
# the presets of the host's /usr, enabling unrelated services (and proxyd's
# own sockets, behind the test's back). A preset file disables them all.
mkdir -p "$TMP/preset"
echo 'disable *' >"$TMP/preset/00-proxyd-e2e.preset"
# man(1) needs its configuration to check the units' Documentation=man:... .
extra=()
VERIFY_MAN=--man=no
if [ -f /etc/manpath.config ] && [ -x /usr/bin/man ]; then
        extra+=(--bind-ro=/etc/manpath.config)
        VERIFY_MAN=--man=yes
fi
systemd-nspawn -D / --volatile=yes -b --register=no --keep-unit --private-network \
        -M "$MACHINE" \
        --overlay-ro=/usr:"$TMP/usr":/usr \
        --bind="$TMP/etc-proxyd":/etc/proxyd \
        --bind-ro="$TMP/preset":/etc/systemd/system-preset \
        --console=read-only \
        "${extra[@]}" \
        systemd.firstboot=off </dev/null >"$TMP/console.log" 2>&1 &
NSPAWN_PID=$!

container_wait_leader
container_wait_booted
[ "$BOOT_STATE" = degraded ] && [ "$VERBOSE" = 1 ] && c systemctl --failed --no-pager | sed 's/^/#   /'

# systemd-analyze verify where the units really are: the binary exists, and
# Documentation=man:... must find the installed man pages.
out=$(c systemd-analyze verify "$VERIFY_MAN" proxyd.service proxyd.socket proxyd-https.socket proxyd-admin.socket 2>&1)
if [ $? = 0 ] && [ -z "$out" ]; then
        ok "systemd-analyze verify $VERIFY_MAN: clean"
else
        fail "systemd-analyze verify: clean"
        echo "$out" | sed 's/^/#   /'
fi

# ---------------------------------------------------------------- helpers


expect_http() {
        local what=$1 path=$2 want=$3 got
        got=$(http "$path")
        if [ "$got" = "$want" ]; then
                ok "$what"
        else
                fail "$what: GET $path gave '$got', want '$want'"
        fi
}

expect_code() {
        local what=$1 path=$2 want=$3 got
        got=$(http "$path")
        if [ "${got%% *}" = "$want" ]; then
                ok "$what"
        else
                fail "$what: GET $path gave '$got', want status $want"
        fi
}

# wait_http PATH WANT SECONDS: polls until the answer is WANT.
wait_http() {
        local path=$1 want=$2 secs=$3 got i
        for i in $(seq 1 $((secs * 10))); do
                got=$(http "$path")
                [ "$got" = "$want" ] && return 0
                sleep 0.1
        done
        echo "GET $path gave '$got', want '$want'"
        return 1
}

journal_since() {
        c journalctl --no-pager -u proxyd.service --since "@$1" "${@:2}" 2>/dev/null
}

dump_journal() {
        c journalctl --no-pager -u proxyd.service -n 40 -o short-monotonic 2>&1 | sed 's/^/#   /'
}

# ---------------------------------------------------------------- setup

# The backend: a static file server inside the container, as a transient unit.
c /bin/sh -c 'mkdir -p /run/e2e-www && echo "backend e2e content" >/run/e2e-www/e2e-file.txt'
check "backend started (systemd-run python3 -m http.server 127.0.0.1:8081)" \
        c systemd-run --unit=e2e-backend --property=Type=exec \
        "$PY" -m http.server --bind 127.0.0.1 --directory /run/e2e-www 8081
for i in $(seq 1 50); do
        c curl -s -o /dev/null --max-time 1 http://127.0.0.1:8081/e2e-file.txt && break
        sleep 0.1
done

shipped=$(c proxyd -t 2>&1)
rc=$?
if [ $rc = 0 ]; then
        ok "shipped /etc/proxyd/proxyd.conf passes proxyd -t"
else
        fail "shipped /etc/proxyd/proxyd.conf passes proxyd -t (exit $rc)"
        echo "$shipped" | sed 's/^/#   /'
fi

# The test's own main configuration (the shipped one stays aside).
c cp /etc/proxyd/proxyd.conf /etc/proxyd/proxyd.conf.shipped
c_write /etc/proxyd/proxyd.conf <<'EOF'
log_level = "info";
access_log = true;
shutdown_timeout = "10s";
limits = { e2e = { rate = "1r/m"; }; };
servers = (
  {
    name = "main";
    listen = [ "http" ];
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
    locations = (
      { exact = "/healthz"; return = 200; body = "ok\n"; },
      { prefix = "/dead/"; proxy_pass = "http://127.0.0.1:9"; },
      { exact = "/limited/e2e-file.txt"; limit = [ "e2e" ]; proxy_pass = "http://127.0.0.1:8081/e2e-file.txt"; },
      { exact = "/cached/e2e-file.txt"; cache = true; cache_valid = [ "200 10m" ];
        proxy_pass = "http://127.0.0.1:8081/e2e-file.txt"; },
      { prefix = "/"; proxy_pass = "http://127.0.0.1:8081"; }
    );
  }
);
EOF
check "test configuration passes proxyd -t" c proxyd -t

# ---------------------------------------------------------------- socket activation

check "systemctl start proxyd.socket" c systemctl start proxyd.socket
check "proxyd.socket is listening on 127.0.0.1:8080" \
        c /bin/sh -c 'systemctl show -P Listen proxyd.socket | grep -q "127.0.0.1:8080 (Stream)"'
s=$(prop proxyd.service ActiveState)
if [ "$s" = inactive ]; then
        ok "proxyd.service not started before the first connection"
else
        fail "proxyd.service not started before the first connection (state $s)"
fi

t0=$(date +%s)
expect_http "first connection starts proxyd.service and is answered" /healthz "200 ok"
s=$(prop proxyd.service ActiveState)
if [ "$s" = active ]; then
        ok "proxyd.service active after the first connection"
else
        fail "proxyd.service active after the first connection (state $s)"
        dump_journal
fi
PID1=$(prop proxyd.service MainPID)

expect_http "request proxied to the backend" /e2e-file.txt "200 backend e2e content"
expect_code "backend's 404 passed through" /no-such-file 404

# Sandbox in effect: not root, no capabilities.
st=$(c cat /proc/"$PID1"/status 2>/dev/null)
uid=$(echo "$st" | awk '/^Uid:/ { print $3 }')
capeff=$(echo "$st" | awk '/^CapEff:/ { print $2 }')
if [ -n "$uid" ] && [ "$uid" != 0 ] && [ "$capeff" = 0000000000000000 ]; then
        ok "proxyd runs as a dynamic user (uid $uid) with no capabilities"
else
        fail "proxyd runs as a dynamic user with no capabilities (uid '$uid', CapEff '$capeff')"
fi

# ---------------------------------------------------------------- journal

access_json() {
        # access_json URI: the newest access entry for URI, as one JSON object.
        c journalctl --no-pager -u proxyd.service -o json PROXYD_URI="$1" 2>/dev/null | tail -n 1
}
j=
for i in $(seq 1 50); do
        j=$(access_json /e2e-file.txt)
        [ -n "$j" ] && break
        sleep 0.1
done
jcheck=$(echo "$j" | "$PY" -c '
import json, sys
line = sys.stdin.read().strip()
if not line:
    print("no journal entry with PROXYD_URI=/e2e-file.txt"); sys.exit(1)
e = json.loads(line)
want = {
    "PROXYD_STATUS": lambda v: v == "200",
    "PROXYD_METHOD": lambda v: v == "GET",
    "PROXYD_URI": lambda v: v == "/e2e-file.txt",
    "PROXYD_CLIENT": lambda v: v.startswith("127.0.0.1"),
    "PROXYD_UPSTREAM": lambda v: "127.0.0.1:8081" in v,
    "PROXYD_UPSTREAM_STATUS": lambda v: v == "200",
    "PROXYD_BYTES": lambda v: v.isdigit() and int(v) > len("backend e2e content"),
    "PROXYD_DURATION_USEC": lambda v: v.isdigit(),
    "PROXYD_REQUEST_ID": lambda v: len(v) > 0,
    "MESSAGE": lambda v: "/e2e-file.txt" in v,
    "PRIORITY": lambda v: v.isdigit(),
}
bad = [f"{k}={e.get(k)!r}" for k, f in want.items() if not isinstance(e.get(k), str) or not f(e[k])]
if bad:
    print("unexpected fields: " + ", ".join(bad)); sys.exit(1)
' 2>&1)
if [ $? = 0 ]; then
        ok "journalctl -u proxyd -o json: access entry with PROXYD_STATUS=200 and all PROXYD_* fields"
else
        fail "journalctl -u proxyd -o json: access entry fields: $jcheck"
        [ -n "$j" ] && echo "#   $j"
fi

n404=0
for i in $(seq 1 30); do
        n404=$(c journalctl --no-pager -u proxyd.service -o cat PROXYD_STATUS=404 2>/dev/null | grep -c /no-such-file)
        [ "$n404" -ge 1 ] && break
        sleep 0.1
done
if [ "$n404" -ge 1 ] && ! c journalctl --no-pager -u proxyd.service -o cat PROXYD_STATUS=404 | grep -q /e2e-file.txt; then
        ok "journalctl -u proxyd PROXYD_STATUS=404 selects the 404 request only"
else
        fail "journalctl -u proxyd PROXYD_STATUS=404 selects the 404 request only ($n404 matches)"
fi

expect_code "unreachable upstream (connection refused): 502" /dead/x 502
count_502() { c journalctl --no-pager -u proxyd.service -o cat PROXYD_STATUS=502 2>/dev/null | grep -c /dead/x; }
n502=$(count_until 30 count_502)
if [ "$n502" -ge 1 ]; then
        ok "journalctl -u proxyd PROXYD_STATUS=502 finds the failed request"
else
        fail "journalctl -u proxyd PROXYD_STATUS=502 finds the failed request"
fi

# A limit's rejection and the cache's verdict are fields of the access entry too.
expect_code "a limit: the first request passes" /limited/e2e-file.txt 200
expect_code "a limit: the second within the minute is 429" /limited/e2e-file.txt 429
limit_field() {
        c journalctl --no-pager -u proxyd.service -o json PROXYD_STATUS=429 PROXYD_URI=/limited/e2e-file.txt \
                2>/dev/null | "$PY" -c 'import json, sys
print(sum(1 for l in sys.stdin if json.loads(l).get("PROXYD_LIMIT") == "e2e"))'
}
n=$(count_until 30 limit_field)
if [ "$n" -ge 1 ]; then
        ok "journalctl -u proxyd PROXYD_STATUS=429: the entry names the limit (PROXYD_LIMIT=e2e)"
else
        fail "journalctl -u proxyd PROXYD_STATUS=429: an entry with PROXYD_LIMIT=e2e"
fi
expect_http "a cached location: the first request (a miss)" /cached/e2e-file.txt "200 backend e2e content"
expect_http "a cached location: the second request (a hit)" /cached/e2e-file.txt "200 backend e2e content"
cache_fields() {
        c journalctl --no-pager -u proxyd.service -o json PROXYD_URI=/cached/e2e-file.txt 2>/dev/null |
                "$PY" -c 'import json, sys
print(" ".join(json.loads(l).get("PROXYD_CACHE_STATUS", "?") for l in sys.stdin))'
}
got=
for i in $(seq 1 30); do
        got=$(cache_fields)
        [ "$got" = "MISS HIT" ] && break
        sleep 0.1
done
if [ "$got" = "MISS HIT" ]; then
        ok "journalctl -u proxyd: PROXYD_CACHE_STATUS=MISS, then HIT"
else
        fail "journalctl -u proxyd: PROXYD_CACHE_STATUS of the two cached requests: '$got', want 'MISS HIT'"
fi

# ---------------------------------------------------------------- status

status=$(c systemctl status --no-pager proxyd.service 2>&1)
sline=$(echo "$status" | grep -E '^ +Status: "' | head -n 1)
if [ -n "$sline" ]; then
        ok "systemctl status proxyd shows a Status: line ($(echo "$sline" | sed 's/^ *//'))"
else
        fail "systemctl status proxyd shows a Status: line"
        echo "$status" | head -n 12 | sed 's/^/#   /'
fi

# ---------------------------------------------------------------- config drop-in + reload

before=$(http /dropin)
c_write /etc/proxyd/proxyd.conf.d/50-e2e.conf <<'EOF'
servers = (
  {
    name = "main";
    locations = (
      { exact = "/healthz"; return = 200; body = "ok\n"; },
      { exact = "/dropin"; return = 200; body = "dropin\n"; },
      { prefix = "/"; proxy_pass = "http://127.0.0.1:8081"; }
    );
  }
);
EOF
check "config drop-in passes proxyd -t" c proxyd -t
case "$before" in
"200 dropin") fail "/dropin is not served before the drop-in is loaded" ;;
*) ok "/dropin is not served before the drop-in is loaded ($before)" ;;
esac
check "systemctl reload proxyd" c systemctl reload proxyd.service
got=$(http /dropin)
if [ "$got" = "200 dropin" ]; then
        ok "config drop-in in effect when systemctl reload returns"
elif wait_http /dropin "200 dropin" 5 >/dev/null; then
        fail "config drop-in in effect when systemctl reload returns (got '$got'; in effect a moment later)"
else
        fail "config drop-in + reload changes behaviour: GET /dropin gave '$got'"
        dump_journal
fi
pid=$(prop proxyd.service MainPID)
if [ "$pid" = "$PID1" ] && [ "$(prop proxyd.service ActiveState)" = active ]; then
        ok "reload kept the same process (MainPID $pid) and the service active"
else
        fail "reload kept the same process (MainPID $PID1 -> $pid, state $(prop proxyd.service ActiveState))"
fi
expect_http "proxying still works after reload" /e2e-file.txt "200 backend e2e content"

# A broken drop-in: proxy_pass with a URI inside a regex location (line 5).
t_broken=$(c date +%s)
sleep 1
c_write /etc/proxyd/proxyd.conf.d/90-broken.conf <<'EOF'
servers = (
  {
    name = "main";
    locations = (
      { regex = "^/broken"; proxy_pass = "http://127.0.0.1:8081/x"; }
    );
  }
);
EOF
t_out=$(c proxyd -t 2>&1)
rc=$?
if [ $rc != 0 ] && echo "$t_out" | grep -q '90-broken.conf:5'; then
        ok "proxyd -t rejects the broken drop-in with file:line (90-broken.conf:5)"
else
        fail "proxyd -t rejects the broken drop-in with file:line (exit $rc)"
        echo "$t_out" | sed 's/^/#   /'
fi
c systemctl reload proxyd.service >/dev/null 2>&1
sleep 1
expect_http "broken drop-in + reload keeps the old configuration (/dropin)" /dropin "200 dropin"
expect_http "broken drop-in + reload keeps proxying" /e2e-file.txt "200 backend e2e content"
pid=$(prop proxyd.service MainPID)
if [ "$pid" = "$PID1" ] && [ "$(prop proxyd.service ActiveState)" = active ]; then
        ok "broken reload: same process, service still active"
else
        fail "broken reload: same process, service still active (MainPID $PID1 -> $pid)"
fi
jl=
for i in $(seq 1 30); do
        jl=$(journal_since "$t_broken" -p err -o cat | grep '90-broken.conf:5')
        [ -n "$jl" ] && break
        sleep 0.1
done
if [ -n "$jl" ]; then
        ok "journal shows the error at priority err with file:line ($(echo "$jl" | head -n 1))"
        loc=$(journal_since "$t_broken" -p err -o json | grep '90-broken.conf:5' | tail -n 1 |
                "$PY" -c 'import json, sys; e = json.loads(sys.stdin.read()); print(e.get("CODE_FILE", "") + ":" + e.get("CODE_LINE", ""))' 2>/dev/null)
        case "$loc" in
        ?*:[0-9]*) ok "the error entry carries its code location (CODE_FILE:CODE_LINE $loc)" ;;
        *) fail "the error entry carries its code location (got '$loc')" ;;
        esac
else
        fail "journal shows the error at priority err with 90-broken.conf:5"
        journal_since "$t_broken" -o cat | tail -n 10 | sed 's/^/#   /'
fi
stext=$(prop proxyd.service StatusText)
if echo "$stext" | grep -qi 'fail'; then
        ok "STATUS= reports the failed reload ($stext)"
else
        fail "STATUS= reports the failed reload (StatusText '$stext')"
fi
c rm -f /etc/proxyd/proxyd.conf.d/90-broken.conf
c systemctl reload proxyd.service >/dev/null 2>&1
check "after removing the broken drop-in, reload succeeds again" wait_http /dropin "200 dropin" 5

# ---------------------------------------------------------------- access log to a file
# The sandbox leaves one writable place, LogsDirectory=proxyd; -t (run as root) must not
# create the file there, or the service's dynamic user could not open it.
echo 'access_log = "/var/log/proxyd/access.log";' | c_write /etc/proxyd/proxyd.conf.d/60-access-file.conf
check "access_log file drop-in passes proxyd -t" c proxyd -t
check "proxyd -t created no access log file" c test ! -e /var/log/proxyd/access.log
check "systemctl reload proxyd (access log to /var/log/proxyd/access.log)" c systemctl reload proxyd.service
expect_http "proxying with the file access log" /e2e-file.txt "200 backend e2e content"
count_file_lines() { c cat /var/log/proxyd/access.log 2>/dev/null | grep -c 'uri=/e2e-file.txt status=200'; }
lines=$(count_until 50 count_file_lines)
if [ "$lines" -ge 1 ]; then
        ok "the request is in /var/log/proxyd/access.log (written by the sandboxed service)"
else
        fail "the request is in /var/log/proxyd/access.log"
        c ls -la /var/log/proxyd/ /var/log/private/ 2>&1 | sed 's/^/#   /'
        dump_journal
fi
c rm -f /etc/proxyd/proxyd.conf.d/60-access-file.conf
c systemctl reload proxyd.service >/dev/null 2>&1
check "back to the journal access log after removing the drop-in" wait_http /dropin "200 dropin" 5

# ---------------------------------------------------------------- restart under load

c_write /run/e2e-load.py <<'EOF'
# N requests from 4 concurrent clients (a new connection each); three
# `systemctl restart proxyd` are started, without waiting, at 1/4, 1/2, 3/4.
import http.client, subprocess, sys, threading
n = int(sys.argv[1])
marks = {n // 4, n // 2, (3 * n) // 4}
lock = threading.Lock()
state = {"next": 0, "fail": 0, "errors": [], "procs": []}

def client():
    while True:
        with lock:
            i = state["next"]
            if i >= n:
                return
            state["next"] = i + 1
            if i in marks:
                state["procs"].append(subprocess.Popen(["systemctl", "restart", "proxyd.service"]))
        try:
            c = http.client.HTTPConnection("127.0.0.1", 8080, timeout=20)
            c.request("GET", "/e2e-file.txt")
            r = c.getresponse()
            body = r.read()
            c.close()
            ok = r.status == 200 and body == b"backend e2e content\n"
            err = f"#{i}: {r.status} {body[:60]!r}"
        except Exception as e:
            ok = False
            err = f"#{i}: {e!r}"
        if not ok:
            with lock:
                state["fail"] += 1
                state["errors"].append(err)

threads = [threading.Thread(target=client) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
rc = [p.wait() for p in state["procs"]]
print(f"{n} requests from 4 clients, {state['fail']} failed, restarts exit {rc}")
for e in state["errors"][:10]:
    print(e)
sys.exit(1 if state["fail"] or any(rc) or len(rc) != 3 else 0)
EOF
nr0=$(prop proxyd.service NRestarts)
pid0=$(prop proxyd.service MainPID)
out=$(c "$PY" /run/e2e-load.py "$N_REQUESTS" 2>&1)
rc=$?
sleep 0.5
pid1=$(prop proxyd.service MainPID)
if [ $rc = 0 ] && [ "$pid1" != "$pid0" ] && [ "$(prop proxyd.service ActiveState)" = active ]; then
        ok "systemctl restart (x3) during $N_REQUESTS requests loses none: $(echo "$out" | head -n 1)"
else
        fail "systemctl restart during $N_REQUESTS requests loses none (MainPID $pid0 -> $pid1)"
        echo "$out" | sed 's/^/#   /'
fi

# Stop: SIGTERM, STOPPING=1, exit 0.
check "systemctl stop proxyd.service" c systemctl stop proxyd.service
res=$(prop proxyd.service Result)
code=$(prop proxyd.service ExecMainStatus)
if [ "$res" = success ] && [ "$code" = 0 ]; then
        ok "proxyd exits 0 on SIGTERM (Result=success)"
else
        fail "proxyd exits 0 on SIGTERM (Result=$res, ExecMainStatus=$code)"
        dump_journal
fi
expect_http "socket still held by systemd: the next connection starts proxyd again" /healthz "200 ok"

# ---------------------------------------------------------------- watchdog

c_write /etc/systemd/system/proxyd.service.d/50-watchdog.conf <<'EOF'
[Service]
WatchdogSec=3s
TimeoutAbortSec=3s
EOF
c systemctl daemon-reload
c systemctl restart proxyd.service
wd=$(prop proxyd.service WatchdogUSec)
if [ "$wd" = 3s ]; then
        ok "unit drop-in WatchdogSec=3s applied"
else
        fail "unit drop-in WatchdogSec=3s applied (WatchdogUSec=$wd)"
fi
expect_http "proxyd answers with WatchdogSec=3s" /healthz "200 ok"
sleep 5
pid0=$(prop proxyd.service MainPID)
nr0=$(prop proxyd.service NRestarts)
if [ "$(prop proxyd.service ActiveState)" = active ] && [ "$nr0" = "$(prop proxyd.service NRestarts)" ]; then
        ok "a healthy proxyd keeps the watchdog fed (still PID $pid0 after 5s)"
else
        fail "a healthy proxyd keeps the watchdog fed"
fi
c kill -STOP "$pid0"
restarted=0
for i in $(seq 1 300); do
        nr=$(prop proxyd.service NRestarts)
        pid=$(prop proxyd.service MainPID)
        if [ "$nr" -gt "$nr0" ] && [ "$pid" != "$pid0" ] && [ "$pid" != 0 ] &&
                [ "$(prop proxyd.service ActiveState)" = active ]; then
                restarted=1
                break
        fi
        sleep 0.1
done
if [ $restarted = 1 ]; then
        ok "watchdog: stalled proxyd (SIGSTOP) restarted by systemd (NRestarts $nr0 -> $nr, PID $pid0 -> $pid)"
else
        fail "watchdog: stalled proxyd restarted (NRestarts $nr0 -> $(prop proxyd.service NRestarts), state $(prop proxyd.service ActiveState))"
        c kill -CONT "$pid0" 2>/dev/null
fi
if journal_since "$(($(c date +%s) - 60))" -o cat | grep -qi 'watchdog timeout'; then
        ok "journal records the watchdog timeout"
else
        fail "journal records the watchdog timeout"
fi
expect_http "restarted proxyd answers" /e2e-file.txt "200 backend e2e content"
c rm -f /etc/systemd/system/proxyd.service.d/50-watchdog.conf
c systemctl daemon-reload

# ---------------------------------------------------------------- unit drop-in: config path

c_write /etc/proxyd/alt.conf <<'EOF'
servers = (
  {
    name = "alt";
    listen = [ "http" ];
    set_header = { X-Forwarded-For = "$proxy_add_x_forwarded_for"; };
    locations = (
      { exact = "/which"; return = 200; body = "alt\n"; },
      { prefix = "/"; proxy_pass = "http://127.0.0.1:8081"; }
    );
  }
);
EOF
expect_code "main configuration has no /which (backend's 404)" /which 404
c_write /etc/systemd/system/proxyd.service.d/60-config.conf <<'EOF'
[Service]
Environment=PROXYD_CONFIG=/etc/proxyd/alt.conf
EOF
c systemctl daemon-reload
check "systemctl restart proxyd with Environment=PROXYD_CONFIG drop-in" c systemctl restart proxyd.service
expect_http "unit drop-in Environment=PROXYD_CONFIG=/etc/proxyd/alt.conf takes effect" /which "200 alt"
c rm -f /etc/systemd/system/proxyd.service.d/60-config.conf
c systemctl daemon-reload
c systemctl restart proxyd.service
expect_http "without the drop-in, the main configuration is back" /dropin "200 dropin"

# ---------------------------------------------------------------- admin socket

# systemd refuses to start a socket unit whose service runs: stop proxyd first; the next
# connection starts it again, with every socket.
check "systemctl stop proxyd (before starting proxyd-admin.socket)" c systemctl stop proxyd.service
if c systemctl start proxyd-admin.socket; then
        ok "systemctl start proxyd-admin.socket"
else
        fail "systemctl start proxyd-admin.socket"
        c systemctl status --no-pager proxyd-admin.socket 2>&1 | sed 's/^/#   /'
        c journalctl --no-pager -n 20 -u proxyd-admin.socket -u systemd-sysusers.service 2>&1 | sed 's/^/#   /'
fi
perm=$(c stat -c '%a %U %G' /run/proxyd/admin.sock 2>&1)
if [ "$perm" = "660 root proxyd-admin" ]; then
        ok "/run/proxyd/admin.sock is mode 0660, root:proxyd-admin"
else
        fail "/run/proxyd/admin.sock is mode 0660, root:proxyd-admin (got '$perm')"
fi
expect_http "proxyd started by a connection, with the admin socket handed over" /e2e-file.txt "200 backend e2e content"
metrics=$(c curl -s --max-time 5 --unix-socket /run/proxyd/admin.sock http://localhost/metrics)
if echo "$metrics" | grep -Eq '^proxyd_server_requests_total\{server="main",code="2xx",protocol="HTTP/1.1",scheme="http"\} [1-9]'; then
        ok "curl --unix-socket /run/proxyd/admin.sock /metrics counts the request"
else
        fail "curl --unix-socket /run/proxyd/admin.sock /metrics counts the request"
        echo "$metrics" | head -n 20 | sed 's/^/#   /'
        dump_journal
fi
expect_code "/metrics on the public socket is not the admin endpoint (backend's 404)" /metrics 404
list=$(c proxyd ctl list 2>&1)
if echo "$list" | grep -Eq '^127\.0\.0\.1:8081 +127\.0\.0\.1:8081 +up '; then
        ok "proxyd ctl list shows the upstream server up"
else
        fail "proxyd ctl list shows the upstream server up"
        echo "$list" | sed 's/^/#   /'
fi
check "proxyd ctl drain 127.0.0.1:8081 127.0.0.1:8081" c proxyd ctl drain 127.0.0.1:8081 127.0.0.1:8081
expect_code "a drained sole server gets no request: 502" /e2e-file.txt 502
drain_entry() { c journalctl --no-pager -u proxyd.service -o json PROXYD_ADMIN_ACTION=drain 2>/dev/null | tail -n 1; }
j=
for i in $(seq 1 30); do
        j=$(drain_entry)
        [ -n "$j" ] && break
        sleep 0.1
done
if echo "$j" | "$PY" -c '
import json, sys
e = json.loads(sys.stdin.read())
ok = e.get("PROXYD_ADMIN_UID") == "0" and e.get("PROXYD_ADMIN_PID", "").isdigit() and \
     e.get("PROXYD_UPSTREAM_SERVER") == "127.0.0.1:8081" and "draining" in e.get("MESSAGE", "")
sys.exit(0 if ok else 1)' 2>/dev/null; then
        ok "the drain is in the journal with PROXYD_ADMIN_PID= and PROXYD_ADMIN_UID=0"
else
        fail "the drain is in the journal with PROXYD_ADMIN_PID= and PROXYD_ADMIN_UID=0"
        echo "#   $j"
fi
check "proxyd ctl enable 127.0.0.1:8081 127.0.0.1:8081" c proxyd ctl enable 127.0.0.1:8081 127.0.0.1:8081
expect_http "enabled again: proxied" /e2e-file.txt "200 backend e2e content"
out=$(c proxyd ctl reload 2>&1)
if echo "$out" | grep -q '"ok":true'; then
        ok "proxyd ctl reload ($out)"
else
        fail "proxyd ctl reload: $out"
fi

# A TCP address for the admin endpoint: a drop-in with the same FileDescriptorName.
c mkdir -p /etc/systemd/system/proxyd-admin.socket.d
c_write /etc/systemd/system/proxyd-admin.socket.d/50-tcp.conf <<'EOF'
[Socket]
ListenStream=127.0.0.1:9145
EOF
c systemctl daemon-reload
c systemctl stop proxyd.service
check "systemctl restart proxyd-admin.socket with a TCP drop-in" c systemctl restart proxyd-admin.socket
expect_http "proxyd started again by a connection" /e2e-file.txt "200 backend e2e content"
got=$(c curl -s --max-time 5 -o /dev/null -w '%{http_code}' http://127.0.0.1:9145/metrics)
if [ "$got" = 200 ]; then
        ok "the drop-in's 127.0.0.1:9145 serves /metrics"
else
        fail "the drop-in's 127.0.0.1:9145 serves /metrics (got '$got')"
fi
if journal_since "$(($(c date +%s) - 60))" -o cat | grep -q 'admin socket 127.0.0.1:9145 is not a unix socket'; then
        ok "the journal warns that the TCP admin socket has no access rules"
else
        fail "the journal warns that the TCP admin socket has no access rules"
fi
c rm -rf /etc/systemd/system/proxyd-admin.socket.d
c systemctl daemon-reload

# ---------------------------------------------------------------- done

fails=$(c systemctl show -P NRestarts proxyd.service)
note "proxyd.service NRestarts=$fails at the end"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
