#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Building proxyd needs only its build dependencies (README command 1,
# tools/demo.sh): configure, build and check the shipped configuration from
# this source tree with a PATH from which every test-only tool is missing
# (certtool, gnutls-cli, nginx, wrk, openssl, haproxy, curl) and with Check's
# pkg-config file hidden, both the way demo.sh does it (-Dtests=false) and
# with the tests on (a missing certtool must not fail `meson setup`).
#
# Environment: PROXYD_SRCDIR (the source tree; default: two levels up).
# Output: "ok - ..." / "FAIL - ..." per check, then "N passed, M failed".

set -u
export LC_ALL=C.UTF-8
SRC=${PROXYD_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
PASSED=0
FAILED=0
TMP=$(mktemp -d /tmp/proxyd-build-deps.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

check() { # check DESCRIPTION COMMAND...
        local what=$1
        shift
        if "$@" >"$TMP/out" 2>&1; then
                PASSED=$((PASSED + 1))
                echo "ok - $what"
        else
                FAILED=$((FAILED + 1))
                echo "FAIL - $what"
                tail -20 "$TMP/out" | sed 's/^/#   /'
        fi
}

# A bin directory with every program of the system's except the test tools.
hidden="certtool gnutls-cli nginx wrk openssl haproxy curl checkmk nghttp h2load"
mkdir -p "$TMP/bin" "$TMP/pkgconfig"
for d in /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
        [ -d "$d" ] || continue
        for f in "$d"/*; do
                n=${f##*/}
                case " $hidden " in *" $n "*) continue ;; esac
                [ -e "$TMP/bin/$n" ] || ln -s "$f" "$TMP/bin/$n"
        done
done
# pkg-config's search path without check.pc
for d in $(pkg-config --variable pc_path pkg-config | tr ':' ' '); do
        [ -d "$d" ] || continue
        for f in "$d"/*.pc; do
                [ -e "$f" ] || continue
                n=${f##*/}
                [ "$n" = check.pc ] && continue
                [ -e "$TMP/pkgconfig/$n" ] || ln -s "$f" "$TMP/pkgconfig/$n"
        done
done
export PATH=$TMP/bin PKG_CONFIG_LIBDIR=$TMP/pkgconfig PKG_CONFIG_PATH=

check "the test tools are really out of reach" \
        sh -c '! command -v certtool && ! command -v nginx && ! command -v curl && ! pkg-config --exists check'
check "meson setup -Dtests=false succeeds with only the build dependencies" \
        meson setup "$TMP/b1" "$SRC" --prefix=/usr --sysconfdir=/etc -Dtests=false
check "ninja builds proxyd" ninja -C "$TMP/b1" proxyd/proxyd
check "the built proxyd accepts the shipped configuration (proxyd -t)" \
        "$TMP/b1/proxyd/proxyd" -t -c "$SRC/etc/proxyd.conf"
check "meson install into a staging directory" \
        env DESTDIR="$TMP/dest" meson install -C "$TMP/b1" --no-rebuild
check "the installed tree has the binary, the units and the configuration" \
        test -x "$TMP/dest/usr/sbin/proxyd" -a -e "$TMP/dest/etc/proxyd/proxyd.conf" \
        -a -n "$(find "$TMP/dest" -name proxyd.socket)"

# With the tests on but certtool missing, setup still succeeds (test-tls fails at run time).
# Check is needed for that configuration: put its pkg-config file back.
for d in $(env -u PKG_CONFIG_LIBDIR pkg-config --variable pc_path pkg-config | tr ':' ' '); do
        [ -e "$d/check.pc" ] && ln -sf "$d/check.pc" "$TMP/pkgconfig/check.pc" && break
done
check "meson setup with the tests on does not need certtool" \
        meson setup "$TMP/b2" "$SRC" --prefix=/usr --sysconfdir=/etc

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
