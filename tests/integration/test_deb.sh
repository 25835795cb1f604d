#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The Debian package, built and installed the way an administrator does it.
#
# Builds proxyd_VERSION_ARCH.deb (and -dbgsym) with `dpkg-buildpackage -us -uc -b`
# in a scratch copy of the source tree, runs lintian on it, builds it a second
# time with a higher version and a changed /etc/proxyd/proxyd.conf, then boots
# systemd in a container made from this machine's own /usr (systemd-nspawn
# --volatile=yes, with writable overlays over /usr and /var/lib/dpkg, so that
# dpkg inside the container installs for real and nothing reaches the host;
# --private-network: loopback only) and checks there:
#
#   - `apt-get install ./proxyd_*.deb`: proxyd.socket enabled and listening,
#     the packaged configuration answering "/" itself, the sandboxed service
#     (dynamic user, no capability), the access entry in `journalctl -u proxyd`,
#     logrotate of the file access log, the examples;
#   - an upgrade with `dpkg -i` to the rebuilt package while a request loop
#     runs: no request lost, the socket unit never restarted, the service
#     restarted on the new binary, the locally modified conffile kept after
#     dpkg's prompt (answered "N") and the new one left as .dpkg-dist;
#   - `dpkg -r` and `dpkg -P`: nothing left running or listening, purge removes
#     the package's files, enablement and logs, and nothing else.
#
# Environment:
#   PROXYD_SRCDIR   the source tree (default: two levels above this script)
#   DEB_VERBOSE=1   print more on failure
#
# Output: "ok - ..." / "FAIL - ..." per check, then "N passed, M failed".
# Exit: 0 all passed, 1 any failure, 77 this machine cannot run the container.

set -u
export LC_ALL=C.UTF-8
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

SRC=${PROXYD_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
VERBOSE=${DEB_VERBOSE:-0}
PY=/usr/bin/python3
MACHINE=proxyd-deb-$$
# shellcheck source=tests/integration/container.sh
. "$(dirname "$0")/container.sh"

finish() {
        container_finish
}

# check_prefix DESCRIPTION PREFIX GOT
check_prefix() {
        case "$3" in
        "$2"*) ok "$1" ;;
        *) fail "$1: got '$3', want '$2...'" ;;
        esac
}

# check_eq DESCRIPTION WANT GOT
check_eq() {
        if [ "$3" = "$2" ]; then
                ok "$1"
        else
                fail "$1: got '$3', want '$2'"
        fi
}


# ---------------------------------------------------------------- can we run?

container_require

# The packaging tools are test dependencies (tools/test.sh installs them): missing is a failure.
missing=
for t in dpkg-buildpackage dh dch lintian fakeroot curl ss logrotate apt-get "$PY"; do
        command -v "$t" >/dev/null || missing="$missing $t"
done
if [ -n "$missing" ]; then
        fail "tools missing:$missing (packages dpkg-dev debhelper devscripts lintian fakeroot curl iproute2 logrotate apt python3)"
        finish
fi

TMP=$(mktemp -d /tmp/proxyd-deb.XXXXXX) || exit 1
chmod 0755 "$TMP"

# ---------------------------------------------------------------- build

# copy_tree DEST: the source tree without build directories or git metadata.
copy_tree() {
        mkdir -p "$1"
        if git -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
                (cd "$SRC" && git ls-files -z --cached --others --exclude-standard |
                        while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
                        tar --null -T - -cf -) | tar -xf - -C "$1"
        else
                tar -C "$SRC" --exclude='./build*' --exclude=./.git --exclude='./obj-*' -cf - . | tar -xf - -C "$1"
        fi
}

ARCH=$(dpkg --print-architecture)
copy_tree "$TMP/v1/proxyd"
V1=$(cd "$TMP/v1/proxyd" && dpkg-parsechangelog -S Version)
V2="$V1+1"
copy_tree "$TMP/v2/proxyd"
# The second build: a higher version whose packaged configuration differs too,
# so that dpkg has a conffile question for a locally modified one.
if ! out=$(cd "$TMP/v2/proxyd" && DEBEMAIL=test@proxyd.invalid DEBFULLNAME="proxyd test" \
        dch --newversion "$V2" --distribution unstable --force-distribution \
        "Test rebuild (tests/integration/test_deb.sh)." 2>&1); then
        fail "dch --newversion $V2"
        echo "$out" | indent
        finish
fi
printf '\n# proxyd %s (test rebuild): the packaged configuration changed.\n' "$V2" >>"$TMP/v2/proxyd/etc/proxyd.conf"

t0=$(date +%s)
for v in v1 v2; do
        if (cd "$TMP/$v/proxyd" && dpkg-buildpackage -us -uc -b) >"$TMP/$v/build.log" 2>&1; then
                ok "dpkg-buildpackage -us -uc -b ($v, $(cd "$TMP/$v/proxyd" && dpkg-parsechangelog -S Version))"
        else
                fail "dpkg-buildpackage -us -uc -b ($v)"
                tail -n 30 "$TMP/$v/build.log" | indent
                finish
        fi
done
note "both builds took $(($(date +%s) - t0))s"
DEB1=$TMP/v1/proxyd_${V1}_${ARCH}.deb
DEB2=$TMP/v2/proxyd_${V2}_${ARCH}.deb
check "built proxyd_${V1}_${ARCH}.deb" test -f "$DEB1"
check "built proxyd-dbgsym_${V1}_${ARCH}.deb" test -f "$TMP/v1/proxyd-dbgsym_${V1}_${ARCH}.deb"
[ -f "$DEB1" ] && [ -f "$DEB2" ] || finish
check "dpkg --compare-versions $V2 gt $V1" dpkg --compare-versions "$V2" gt "$V1"

# lintian: no error, no warning (debian/*.lintian-overrides say why for what is overridden).
lintian --fail-on error,warning "$TMP/v1/proxyd_${V1}_${ARCH}.changes" >"$TMP/lintian.out" 2>&1
lrc=$?
lout=$(grep -v 'running with root privileges' "$TMP/lintian.out")
if [ "$lrc" = 0 ]; then
        ok "lintian: no error or warning${lout:+ ($(echo "$lout" | wc -l) other tags)}"
else
        fail "lintian: no error or warning (exit $lrc)"
fi
[ -n "$lout" ] && echo "$lout" | indent

# The source tree is left as it was (the builds ran in copies).
if git -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        check "source tree has no build products" test -z "$(git -C "$SRC" status --porcelain --ignored -- debian 'obj-*' | grep '^!!')"
fi

mkdir -p "$TMP/debs"
cp "$DEB1" "$DEB2" "$TMP/debs/"

# ---------------------------------------------------------------- boot

# /etc starts empty. A machine ID makes this boot a machine's usual boot, not
# its first, which would apply the presets of the host's /usr to every unit
# there (enabling unrelated services); the package's own `systemctl preset`
# then finds the Debian default (enable) for proxyd.socket, as on any machine.
mkdir -p "$TMP/usr-upper" "$TMP/dpkg-upper" "$TMP/var/lib/dpkg" "$TMP/var/tmp"
# man-db's trigger wants its cache directory (owned by a user this empty /etc lacks).
mkdir -p "$TMP/var/cache/man"
chmod 1777 "$TMP/var/tmp"
# dpkg resolves the users and groups of its statoverrides: the host's
# databases, copied into the container's /etc once it runs (not bound as files:
# systemd-sysusers, which makes the package's proxyd-admin group, replaces
# /etc/group by renaming a new file over it).
mkdir -p "$TMP/accounts"
for f in passwd group shadow gshadow; do
        [ -f /etc/$f ] && cp -p /etc/$f "$TMP/accounts/$f"
done
accounts=(--bind-ro="$TMP/accounts":/run/host-accounts)
[ -d /etc/apt ] && accounts+=(--bind-ro=/etc/apt)
systemd-id128 new >"$TMP/machine-id"
: >"$TMP/console.log"
systemd-nspawn -D / --volatile=yes -b --register=no --keep-unit --private-network \
        -M "$MACHINE" \
        --overlay=/usr:"$TMP/usr-upper":/usr \
        --bind="$TMP/var":/var \
        --overlay=/var/lib/dpkg:"$TMP/dpkg-upper":/var/lib/dpkg \
        --bind-ro="$TMP/debs":/debs \
        --bind-ro="$TMP/machine-id":/etc/machine-id \
        "${accounts[@]}" \
        --console=read-only \
        systemd.firstboot=off </dev/null >"$TMP/console.log" 2>&1 &
NSPAWN_PID=$!

container_wait_leader
container_wait_booted
c /bin/sh -c 'cp -p /run/host-accounts/* /etc/'

listening() {
        c ss -Hltn 'sport = :8080' 2>/dev/null | grep -c 127.0.0.1:8080
}

dump_journal() {
        c journalctl --no-pager -u proxyd.service -u proxyd.socket -n 30 -o short-monotonic 2>&1 | indent
}

# A machine without proxyd: hide what a `meson install` on the host
# (tools/demo.sh) would show through the /usr overlay, and a policy-rc.d that
# tools/test.sh may have in place while it installs packages.
for f in /usr/sbin/proxyd /usr/lib/systemd/system/proxyd.service /usr/lib/systemd/system/proxyd.socket \
        /usr/lib/systemd/system/proxyd-https.socket /usr/lib/systemd/system/proxyd-admin.socket \
        /usr/lib/sysusers.d/proxyd.conf /usr/share/man/man8/proxyd.8 /usr/share/man/man8/proxyd-ctl.8 \
        /usr/share/man/man5/proxyd.conf.5 \
        /usr/sbin/policy-rc.d; do
        if c test -e "$f" && ! c dpkg -S "$f" >/dev/null 2>&1; then
                c rm -f "$f"
        fi
done
c systemctl daemon-reload
snapshot() {
        c find /etc /var /usr -xdev -name '*proxyd*' 2>/dev/null | grep -v '^/var/lib/dpkg/' | sort
}
before=$(snapshot)

# ---------------------------------------------------------------- install

out=$(cd / && c /bin/sh -c 'cd /debs && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ./'"$(basename "$DEB1")" 2>&1)
rc=$?
if [ $rc = 0 ]; then
        ok "apt-get install ./$(basename "$DEB1") in the container"
else
        fail "apt-get install ./$(basename "$DEB1") (exit $rc)"
        echo "$out" | tail -n 30 | indent
        finish
fi
[ "$VERBOSE" = 1 ] && echo "$out" | indent
check_eq "dpkg: proxyd $V1 installed" "install ok installed $V1" "$(c dpkg-query -W -f='${Status} ${Version}' proxyd 2>&1)"
conffiles=$(c dpkg-query -W -f='${Conffiles}' proxyd | awk '{ print $1 }' | sort | tr '\n' ' ')
check_eq "conffiles: /etc/logrotate.d/proxyd and /etc/proxyd/proxyd.conf" "/etc/logrotate.d/proxyd /etc/proxyd/proxyd.conf " "$conffiles"
for f in /usr/sbin/proxyd /lib/systemd/system/proxyd.service /lib/systemd/system/proxyd.socket \
        /lib/systemd/system/proxyd-https.socket /etc/logrotate.d/proxyd \
        /usr/share/doc/proxyd/examples/proxyd.conf /usr/share/doc/proxyd/examples/50-backend.conf; do
        check "installed: $f" c test -f "$f"
done
check "installed: /etc/proxyd/proxyd.conf.d/" c test -d /etc/proxyd/proxyd.conf.d
check "installed: man pages proxyd(8) and proxyd.conf(5)" \
        c test -f /usr/share/man/man8/proxyd.8.gz -a -f /usr/share/man/man5/proxyd.conf.5.gz
check_eq "proxyd -t on the packaged configuration: OK, no warning" "configuration OK" "$(c proxyd -t 2>&1)"

check_eq "proxyd.socket enabled" enabled "$(c systemctl is-enabled proxyd.socket 2>&1)"
check_eq "proxyd.socket active" active "$(c systemctl is-active proxyd.socket 2>&1)"
check_eq "proxyd-admin.socket enabled" enabled "$(c systemctl is-enabled proxyd-admin.socket 2>&1)"
check_eq "proxyd-admin.socket active" active "$(c systemctl is-active proxyd-admin.socket 2>&1)"
check_eq "/run/proxyd/admin.sock: mode 0660, root:proxyd-admin" "660 root proxyd-admin" \
        "$(c stat -c '%a %U %G' /run/proxyd/admin.sock 2>&1)"
check_eq "proxyd-https.socket not enabled" disabled "$(c systemctl is-enabled proxyd-https.socket 2>&1)"
check_eq "proxyd-https.socket not started" inactive "$(c systemctl is-active proxyd-https.socket 2>&1)"
check_eq "proxyd.service not started before the first connection" inactive "$(c systemctl is-active proxyd.service 2>&1)"
check_eq "127.0.0.1:8080 is listening (ss)" 1 "$(listening)"

got=$(http /deb-probe-1)
case "$got" in
"200 proxyd is running."*) ok "GET / answered by the packaged configuration ($(echo "$got" | cut -c1-40)...)" ;;
*)
        fail "GET /deb-probe-1 answered by the packaged configuration: '$got'"
        dump_journal
        ;;
esac
check_eq "GET /healthz" "200 ok" "$(http /healthz)"
check "proxyd ctl status answers on /run/proxyd/admin.sock" c /bin/sh -c 'proxyd ctl status | grep -q "\"workers\":"'
check_eq "proxyd.service socket-activated" active "$(c systemctl is-active proxyd.service 2>&1)"
pid=$(prop proxyd.service MainPID)
# (awk runs on the host: the container's empty /etc has no /etc/alternatives/awk)
uid=$(c cat /proc/"$pid"/status 2>/dev/null | awk '/^Uid:/ { print $2 }')
capeff=$(c cat /proc/"$pid"/status 2>/dev/null | awk '/^CapEff:/ { print $2 }')
if [ -n "$uid" ] && [ "$uid" != 0 ] && [ "$capeff" = 0000000000000000 ]; then
        ok "sandboxed: proxyd runs as dynamic user $uid without capabilities"
else
        fail "sandboxed: proxyd (PID $pid) runs as uid '$uid' with CapEff '$capeff'"
        c head -n 12 /proc/"$pid"/status 2>&1 | indent
fi

count_access() {
        c journalctl --no-pager -u proxyd -o cat PROXYD_ACCESS=1 PROXYD_URI="$1" 2>/dev/null | grep -c .
}
n=0
for i in $(seq 1 30); do
        n=$(count_access /deb-probe-1)
        [ "${n:-0}" -ge 1 ] && break
        sleep 0.1
done
if [ "${n:-0}" -ge 1 ]; then
        ok "journalctl -u proxyd has the access entry (PROXYD_URI=/deb-probe-1)"
else
        fail "journalctl -u proxyd has the access entry for /deb-probe-1"
        dump_journal
fi

# ---------------------------------------------------------------- examples and logrotate

c /bin/sh -c 'mkdir -p /run/deb-www && echo "backend behind the packaged proxyd" >/run/deb-www/index.html'
c systemd-run --quiet --unit=deb-backend --property=Type=exec \
        "$PY" -m http.server --bind 127.0.0.1 --directory /run/deb-www 8081
for i in $(seq 1 50); do
        c curl -s -o /dev/null --max-time 1 http://127.0.0.1:8081/ && break
        sleep 0.1
done
c cp /usr/share/doc/proxyd/examples/50-backend.conf /etc/proxyd/proxyd.conf.d/50-backend.conf
check "examples/50-backend.conf as a drop-in passes proxyd -t" c proxyd -t
check "systemctl reload proxyd" c systemctl reload proxyd.service
check_eq "with the drop-in, / is proxied to the backend" "200 backend behind the packaged proxyd" "$(http /)"
c rm -f /etc/proxyd/proxyd.conf.d/50-backend.conf

echo 'access_log = "/var/log/proxyd/access.log";' | c_write /etc/proxyd/proxyd.conf.d/60-access-file.conf
c systemctl reload proxyd.service
# wait_grep PATTERN FILE: the file access log is written in blocks, at the latest 2 s later.
wait_grep() {
        local i
        for i in $(seq 1 50); do
                c grep -q -e "$1" "$2" 2>/dev/null && return 0
                sleep 0.1
        done
        return 1
}
http /deb-rotate-1 >/dev/null
check "file access log /var/log/proxyd/access.log has the request" wait_grep 'uri=/deb-rotate-1 ' /var/log/proxyd/access.log
check "logrotate -f /etc/logrotate.d/proxyd" c logrotate -f -s /run/deb-logrotate.state /etc/logrotate.d/proxyd
http /deb-rotate-2 >/dev/null
if wait_grep 'uri=/deb-rotate-2 ' /var/log/proxyd/access.log && c grep -q 'uri=/deb-rotate-1 ' /var/log/proxyd/access.log.1; then
        ok "after rotation (postrotate reload) proxyd writes to a new access.log, old lines in access.log.1"
else
        fail "after rotation proxyd writes to a new access.log"
        c ls -la /var/log/proxyd/ 2>&1 | indent
fi
c rm -f /etc/proxyd/proxyd.conf.d/60-access-file.conf
c systemctl reload proxyd.service

# ---------------------------------------------------------------- upgrade under load

c sed -i 's/proxyd is running\./proxyd, as modified by the administrator./' /etc/proxyd/proxyd.conf
c systemctl reload proxyd.service
check_prefix "modified conffile in effect" "200 proxyd, as modified by the administrator." "$(http /x)"

c_write /run/deb-load.py <<'EOF'
# Requests from 4 concurrent clients (a new connection each) until /run/deb-load.stop exists.
import http.client, os, sys, threading, time
lock = threading.Lock()
state = {"n": 0, "fail": 0, "errors": []}
def client():
    while not os.path.exists("/run/deb-load.stop"):
        with lock:
            i = state["n"]
            state["n"] += 1
        try:
            c = http.client.HTTPConnection("127.0.0.1", 8080, timeout=20)
            c.request("GET", "/load-%d" % i)
            r = c.getresponse()
            body = r.read()
            c.close()
            good = r.status == 200 and body.startswith(b"proxyd, as modified by the administrator.")
            err = "#%d: %d %r" % (i, r.status, body[:60])
        except Exception as e:
            good = False
            err = "#%d: %r" % (i, e)
        if not good:
            with lock:
                state["fail"] += 1
                state["errors"].append(err)
threads = [threading.Thread(target=client) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("%d requests from 4 clients, %d failed" % (state["n"], state["fail"]))
for e in state["errors"][:10]:
    print(e)
sys.exit(1 if state["fail"] or state["n"] < 50 else 0)
EOF
http /before-upgrade >/dev/null
pid0=$(prop proxyd.service MainPID)
sock0=$(prop proxyd.socket ActiveEnterTimestampMonotonic)
c rm -f /run/deb-load.stop
c "$PY" /run/deb-load.py >"$TMP/load.out" 2>&1 &
load_pid=$!
sleep 1
# dpkg asks about the modified conffile; the administrator keeps theirs (N).
out=$(printf 'N\n' | c dpkg -i "/debs/$(basename "$DEB2")" 2>&1)
rc=$?
sleep 1
c touch /run/deb-load.stop
wait "$load_pid"
load_rc=$?
[ "$VERBOSE" = 1 ] && echo "$out" | indent
if [ $rc = 0 ]; then
        ok "dpkg -i $(basename "$DEB2") (upgrade)"
else
        fail "dpkg -i $(basename "$DEB2") (exit $rc)"
        echo "$out" | tail -n 30 | indent
fi
if echo "$out" | grep -q "Configuration file '/etc/proxyd/proxyd.conf'" &&
        echo "$out" | grep -q 'Modified (by you or by a script) since installation'; then
        ok "dpkg prompted about the modified /etc/proxyd/proxyd.conf"
else
        fail "dpkg prompted about the modified /etc/proxyd/proxyd.conf"
        echo "$out" | tail -n 20 | indent
fi
if [ $load_rc = 0 ]; then
        ok "request loop during the upgrade lost nothing: $(head -n 1 "$TMP/load.out")"
else
        fail "request loop during the upgrade lost nothing"
        indent <"$TMP/load.out"
        dump_journal
fi
check_eq "dpkg: proxyd $V2 installed" "install ok installed $V2" "$(c dpkg-query -W -f='${Status} ${Version}' proxyd 2>&1)"
check "modified conffile kept" c grep -q 'proxyd, as modified by the administrator' /etc/proxyd/proxyd.conf
check "the package's new conffile is /etc/proxyd/proxyd.conf.dpkg-dist" \
        c grep -q "proxyd $V2 (test rebuild)" /etc/proxyd/proxyd.conf.dpkg-dist
pid1=$(prop proxyd.service MainPID)
if [ -n "$pid1" ] && [ "$pid1" != 0 ] && [ "$pid1" != "$pid0" ]; then
        ok "proxyd.service restarted by the upgrade (MainPID $pid0 -> $pid1)"
else
        fail "proxyd.service restarted by the upgrade (MainPID $pid0 -> $pid1)"
fi
exe=$(c readlink /proc/"$pid1"/exe 2>&1)
check_eq "the running proxyd is the upgraded binary (its /proc/PID/exe is not deleted)" /usr/sbin/proxyd "$exe"
check_eq "proxyd.socket was not restarted (the listening socket stayed)" "$sock0" "$(prop proxyd.socket ActiveEnterTimestampMonotonic)"
check_eq "proxyd.socket still enabled" enabled "$(c systemctl is-enabled proxyd.socket 2>&1)"
check_prefix "after the upgrade the modified configuration serves" "200 proxyd, as modified by the administrator." "$(http /after-upgrade)"
check_eq "after the upgrade: proxyd-admin.socket active" active "$(c systemctl is-active proxyd-admin.socket 2>&1)"
check "after the upgrade: proxyd ctl status answers" c /bin/sh -c 'proxyd ctl status | grep -q "\"workers\":"'

# ---------------------------------------------------------------- remove and purge

http /start-before-remove >/dev/null
out=$(c dpkg -r proxyd 2>&1)
rc=$?
check_eq "dpkg -r proxyd" 0 "$rc"
[ $rc = 0 ] || echo "$out" | tail -n 20 | indent
check_eq "after remove: proxyd.service not running" inactive "$(c systemctl is-active proxyd.service 2>&1)"
check_eq "after remove: proxyd.socket not running" inactive "$(c systemctl is-active proxyd.socket 2>&1)"
check_eq "after remove: no proxyd unit loaded" "" "$(c systemctl list-units --no-legend --plain 'proxyd*' 2>&1)"
check_eq "after remove: nothing listens on 127.0.0.1:8080" 0 "$(listening)"
en=$(c systemctl is-enabled proxyd.socket 2>&1)
case "$en" in
enabled*) fail "after remove: proxyd.socket cannot be started (is-enabled: $en)" ;;
*) ok "after remove: proxyd.socket cannot be started (is-enabled: $(echo "$en" | head -n 1))" ;;
esac
check "after remove: systemctl start proxyd.socket fails (no unit file)" \
        sh -c "! nsenter -t $LEADER -a systemctl start proxyd.socket"
check "after remove: no proxyd process" sh -c "! nsenter -t $LEADER -a pgrep -x proxyd"
check "after remove: /usr/sbin/proxyd gone" c test ! -e /usr/sbin/proxyd
check "after remove: /etc/proxyd/proxyd.conf kept (a conffile)" c test -f /etc/proxyd/proxyd.conf

# Not the package's: an administrator's drop-in and another service's log.
echo '# mine' | c_write /etc/proxyd/proxyd.conf.d/99-admin.conf
echo 'mine' | c_write /var/log/private/other/keep.log
out=$(c dpkg -P proxyd 2>&1)
rc=$?
check_eq "dpkg -P proxyd" 0 "$rc"
[ $rc = 0 ] || echo "$out" | tail -n 20 | indent
check_eq "after purge: dpkg knows no proxyd" "" "$(c dpkg-query -W -f='${Status}' proxyd 2>/dev/null | grep -v '^unknown ok not-installed$')"
after=$(snapshot)
expected=$(printf '%s\n' "$before" /etc/proxyd /etc/proxyd/proxyd.conf.d | grep . | sort)
if [ "$after" = "$expected" ]; then
        ok "after purge: no proxyd file left but the administrator's drop-in"
else
        fail "after purge: files named *proxyd* differ from before the install (+ the admin's drop-in)"
        diff <(echo "$expected") <(echo "$after") | indent
fi
check "after purge: the administrator's drop-in is kept" c test -f /etc/proxyd/proxyd.conf.d/99-admin.conf
check "after purge: another service's log is kept" c test -f /var/log/private/other/keep.log
check "after purge: no enablement symlink left" \
        sh -c "test -z \"\$(nsenter -t $LEADER -a find /etc/systemd -name 'proxyd*' 2>/dev/null)\""
check_eq "after purge: nothing listens on 127.0.0.1:8080" 0 "$(listening)"
check_eq "after purge: no proxyd unit loaded" "" "$(c systemctl list-units --all --no-legend --plain 'proxyd*' 2>&1 | grep -v not-found)"

finish
