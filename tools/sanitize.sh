#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Build proxyd and its tests with AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer
# included) in a separate build directory and run the whole test suite there.
#
#   tools/sanitize.sh [MESON TEST ARGS...]     e.g. tools/sanitize.sh --suite unit
#
# Without arguments every suite runs except 'systemd': that end-to-end test starts proxyd from
# its hardened unit (SystemCallFilter=@system-service, ProtectProc=...), where LeakSanitizer
# cannot stop the threads it has to scan and aborts the daemon at exit ("LeakSanitizer has
# encountered a fatal error"); it runs in the normal (unsanitized) suite.
#
# Environment: BUILDDIR (default build-sanitize), CC (default: the system compiler).
#
# Any sanitizer report fails the run:
#  - ASAN_OPTIONS/UBSAN_OPTIONS/LSAN_OPTIONS are exported, so every test and every process it
#    starts (proxyd, proxyd -t, ...) stops at the first report (halt_on_error, abort_on_error):
#    a unit test dies with SIGABRT; a daemon that hits a report aborts, and the integration
#    test talking to it fails on the lost connection or on the daemon's exit status;
#  - the same stop-at-first-report options (without file paths) are compiled into every
#    sanitized binary through the sanitizers' default-options hooks, because
#    systemd-socket-activate, which the integration tests use to start the daemon, passes only
#    a few environment variables on; such a daemon writes its report to its stderr, which
#    the test harness keeps as the daemon's log;
#  - processes that inherit the environment also write every report to
#    BUILDDIR/sanitizer-reports/ (log_path); the run fails if that directory is not empty at
#    the end, even when the test that caused a report passed (e.g. a leak reported when
#    the daemon exits after its test's last check).

set -euo pipefail

cd "$(dirname "$0")/.."
SRCDIR=$PWD
BUILDDIR=${BUILDDIR:-build-sanitize}
case $BUILDDIR in /*) ;; *) BUILDDIR=$SRCDIR/$BUILDDIR ;; esac
REPORTS=$BUILDDIR/sanitizer-reports
SUPP=$SRCDIR/tests/fuzz/lsan.supp

ASAN_BASE="halt_on_error=1:abort_on_error=1:detect_leaks=1"
UBSAN_BASE="print_stacktrace=1:halt_on_error=1:abort_on_error=1"

mkdir -p "$BUILDDIR"
# Defaults compiled into every sanitized binary (the environment still overrides them).
# The LeakSanitizer suppressions are those of tests/fuzz/lsan.supp (libconfig internals).
supp=$(grep -v '^#' "$SUPP" | grep . | tr '\n' ' ' | sed 's/ /\\n/g')
cat >"$BUILDDIR/sanitizer-defaults.c" <<C
const char *__asan_default_options(void);
const char *__ubsan_default_options(void);
const char *__lsan_default_suppressions(void);
const char *__asan_default_options(void) { return "$ASAN_BASE"; }
const char *__ubsan_default_options(void) { return "$UBSAN_BASE"; }
const char *__lsan_default_suppressions(void) { return "$supp"; }
C
${CC:-cc} -c -O1 -fPIC -o "$BUILDDIR/sanitizer-defaults.o" "$BUILDDIR/sanitizer-defaults.c"

if [ ! -f "$BUILDDIR/build.ninja" ]; then
        meson setup "$BUILDDIR" --prefix=/usr --sysconfdir=/etc \
                -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized \
                -Dc_args=-fno-omit-frame-pointer \
                -Dc_link_args="$BUILDDIR/sanitizer-defaults.o"
fi
ninja -C "$BUILDDIR"

rm -rf "$REPORTS"
mkdir -p "$REPORTS"
export ASAN_OPTIONS="$ASAN_BASE:log_path=$REPORTS/asan"
export UBSAN_OPTIONS="$UBSAN_BASE:log_path=$REPORTS/ubsan"
export LSAN_OPTIONS="print_suppressions=0:suppressions=$SUPP"
# Tests skip checks that a sanitized build cannot pass by design (RSS under ASan's quarantine).
export PROXYD_SANITIZED=1

[ $# -gt 0 ] || set -- --no-suite systemd
rc=0
meson test -C "$BUILDDIR" --print-errorlogs "$@" || rc=$?

reports=$(find "$REPORTS" -type f | sort)
if [ -n "$reports" ]; then
        echo "tools/sanitize.sh: sanitizer reports:" >&2
        for f in $reports; do
                echo "==== $f" >&2
                cat "$f" >&2
        done
        rc=1
fi
if [ $rc -eq 0 ]; then
        echo "tools/sanitize.sh: all tests passed under ASan+UBSan, no sanitizer reports"
else
        echo "tools/sanitize.sh: FAILED (meson test and/or sanitizer reports above)" >&2
fi
exit $rc
