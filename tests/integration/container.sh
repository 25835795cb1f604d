# SPDX-License-Identifier: MIT
#
# Sourced by the tests that boot systemd in a container (test_systemd_e2e.sh,
# test_deb.sh): result lines, the cleanup of the container and its mounts, and
# the steps every such test takes to start one and reach into it.
#
# The sourcing script sets TMP (its scratch directory, removed on exit) and
# starts `systemd-nspawn ... -b ... &` itself, with its own mounts, setting
# NSPAWN_PID; then container_wait_leader and container_wait_booted.
#
# Output: "ok - ..." / "FAIL - ..." per check, "# ..." notes, and the closing
# "N passed, M failed" of container_finish.

PASSED=0
FAILED=0
TMP=
NSPAWN_PID=
LEADER=

skip() {
        echo "skip - $*"
        exit 77
}

ok() {
        echo "ok - $*"
        PASSED=$((PASSED + 1))
}

fail() {
        echo "FAIL - $*"
        FAILED=$((FAILED + 1))
}

note() {
        echo "# $*"
}

indent() {
        sed 's/^/#   /'
}

# The closing count, and the exit status it implies.
container_finish() {
        echo "$PASSED passed, $FAILED failed"
        [ "$FAILED" = 0 ]
        exit
}

# check DESCRIPTION COMMAND...: passes when COMMAND succeeds; else the tail of its output.
check() {
        local what=$1 out
        shift
        if out=$("$@" 2>&1); then
                ok "$what"
        else
                fail "$what"
                [ -n "$out" ] && echo "$out" | tail -n 30 | indent
        fi
}

container_cleanup() {
        local i
        if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
                # SIGTERM makes nspawn ask the container's systemd to power off.
                kill -TERM "$NSPAWN_PID" 2>/dev/null
                for i in $(seq 1 100); do
                        kill -0 "$NSPAWN_PID" 2>/dev/null || break
                        sleep 0.1
                done
                if kill -0 "$NSPAWN_PID" 2>/dev/null; then
                        kill -KILL "$NSPAWN_PID" 2>/dev/null
                        [ -n "$LEADER" ] && kill -KILL "$LEADER" 2>/dev/null
                fi
                wait "$NSPAWN_PID" 2>/dev/null
        fi
        if [ -n "$TMP" ] && [ -d "$TMP" ]; then
                # nspawn unmounts its own mounts; make sure nothing of ours stays.
                findmnt -rn -o TARGET | grep -F "$TMP" | sort -r | while read -r m; do
                        umount -l "$m" 2>/dev/null
                done
                rm -rf "$TMP"
        fi
}
trap container_cleanup EXIT
trap 'exit 130' INT TERM

# What every container test needs of the machine; a machine without it skips (77).
container_require() {
        [ "$(id -u)" = 0 ] || skip "needs root to run systemd-nspawn"
        command -v systemd-nspawn >/dev/null || skip "systemd-nspawn is not installed (package systemd-container)"
        command -v nsenter >/dev/null || skip "nsenter is not installed (package util-linux)"
        [ -x /usr/lib/systemd/systemd ] || skip "no /usr/lib/systemd/systemd to boot in the container"
}

# The leader is the container's systemd, nspawn's child (nspawn first forks short-lived
# helpers, so wait for the process that is systemd). Skips when this machine cannot start
# containers at all; fails otherwise.
container_wait_leader() {
        local i p
        for i in $(seq 1 200); do
                LEADER=
                for p in $(pgrep -P "$NSPAWN_PID"); do
                        [ "$(cat /proc/"$p"/comm 2>/dev/null)" = systemd ] && LEADER=$p
                done
                [ -n "$LEADER" ] && return 0
                kill -0 "$NSPAWN_PID" 2>/dev/null || break
                sleep 0.1
        done
        tail -n 20 "$TMP/console.log" | indent
        if grep -qiE 'not supported|permission denied|operation not permitted|failed to (create|mount)' "$TMP/console.log"; then
                skip "systemd-nspawn cannot start a container on this machine (see above)"
        fi
        fail "systemd-nspawn started a container"
        container_finish
}

# c COMMAND...: run it inside the container.
c() {
        nsenter -t "$LEADER" -a "$@"
}

# c_write PATH: stdin becomes PATH inside the container.
c_write() {
        c /bin/sh -c 'mkdir -p "$(dirname "$1")" && cat >"$1"' sh "$1"
}

# Wait until the container's systemd has finished booting (running or degraded); sets
# BOOT_STATE. Fails and ends the test if it does not.
container_wait_booted() {
        local i
        BOOT_STATE=
        for i in $(seq 1 300); do
                BOOT_STATE=$(c systemctl is-system-running 2>/dev/null)
                case "$BOOT_STATE" in
                running | degraded) break ;;
                esac
                sleep 0.2
        done
        case "$BOOT_STATE" in
        running | degraded) ok "container's systemd booted ($BOOT_STATE)" ;;
        *)
                fail "container's systemd booted (state '$BOOT_STATE')"
                tail -n 30 "$TMP/console.log" | indent
                container_finish
                ;;
        esac
}

# http PATH [curl args]: prints "STATUS BODY" (body on one line), from inside the container.
http() {
        local p=$1
        shift
        c curl -sS --max-time 10 -o /dev/stdout -w ' %{http_code}' "$@" "http://127.0.0.1:8080$p" 2>&1 |
                tr '\n' ' ' | awk '{ s = $NF; $NF = ""; sub(/ +$/, ""); print s " " $0 }'
}

# prop UNIT PROPERTY
prop() {
        c systemctl show -P "$2" "$1" 2>/dev/null
}
