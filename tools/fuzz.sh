#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Run the libFuzzer targets of tests/fuzz for a while each and grow their corpora.
#
#   tools/fuzz.sh [-t SECONDS] [-j JOBS] [TARGET...]
#
#   -t SECONDS  time per target (default 600)
#   -j JOBS     targets run at the same time (default: number of CPUs)
#   TARGET      fuzz-http1-request fuzz-http1-response fuzz-chunked fuzz-config fuzz-uri fuzz-h2 (default: all)
#
# Builds BUILDDIR (default build-fuzz) with clang, -Dfuzz=true (libFuzzer + ASan + UBSan).
# Each target starts from tests/fuzz/corpus/TARGET; inputs it finds go to
# BUILDDIR/fuzz-work/TARGET/new and are then merged into the corpus directory (only those
# that add coverage). Crashes, leaks, timeouts and invariant failures are saved as
# BUILDDIR/fuzz-work/TARGET/crash-*, leak-*, timeout-*, oom-*; reproduce one with
#   BUILDDIR/tests/fuzz/TARGET FILE
# and minimize it with
#   BUILDDIR/tests/fuzz/TARGET -minimize_crash=1 -runs=100000 FILE
# Exit status: 0 if no target had a finding, 1 otherwise.

set -euo pipefail

cd "$(dirname "$0")/.."
SRCDIR=$PWD
BUILDDIR=${BUILDDIR:-build-fuzz}
SECONDS_PER_TARGET=600
JOBS=$(nproc 2>/dev/null || echo 1)
ALL_TARGETS=(fuzz-http1-request fuzz-http1-response fuzz-chunked fuzz-config fuzz-uri fuzz-h2)

while getopts "t:j:h" opt; do
        case $opt in
        t) SECONDS_PER_TARGET=$OPTARG ;;
        j) JOBS=$OPTARG ;;
        *) sed -n '3,22p' "$0"; exit 2 ;;
        esac
done
shift $((OPTIND - 1))
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")

command -v clang >/dev/null || { echo "clang is required" >&2; exit 2; }

if [ ! -f "$BUILDDIR/build.ninja" ]; then
        CC=clang meson setup "$BUILDDIR" -Dfuzz=true -Db_lundef=false
fi
ninja -C "$BUILDDIR" "${TARGETS[@]/#/tests/fuzz/}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-print_suppressions=0:suppressions=$SRCDIR/tests/fuzz/lsan.supp}

WORK=$BUILDDIR/fuzz-work

run_one() {
        local t=$1 bin=$BUILDDIR/tests/fuzz/$1 corpus=$SRCDIR/tests/fuzz/corpus/$1
        local w=$WORK/$1 dict=()
        rm -rf "$w"
        mkdir -p "$w/new" "$corpus"
        [ -f "$SRCDIR/tests/fuzz/$t.dict" ] && dict=(-dict="$SRCDIR/tests/fuzz/$t.dict")
        ls "$corpus" | wc -l >"$w/corpus-before"
        mkdir -p "$w/tmp"
        TMPDIR=$w/tmp "$bin" "${dict[@]}" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
                -print_final_stats=1 -artifact_prefix="$w/" "$w/new" "$corpus" >"$w/log" 2>&1 || true
        # keep only the new inputs that add coverage
        TMPDIR=$w/tmp "$bin" -merge=1 "$corpus" "$w/new" >"$w/merge.log" 2>&1 || true
}

pids=()
for t in "${TARGETS[@]}"; do
        while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
                wait -n || true
        done
        echo "fuzzing $t for ${SECONDS_PER_TARGET}s"
        run_one "$t" &
        pids+=($!)
done
wait "${pids[@]}" 2>/dev/null || true

status=0
printf '%-22s %12s %8s %14s %9s\n' target executions exec/s corpus findings
for t in "${TARGETS[@]}"; do
        w=$WORK/$t
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$w/log" | tail -1)
        speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$w/log" | tail -1)
        before=$(cat "$w/corpus-before")
        after=$(ls "$SRCDIR/tests/fuzz/corpus/$t" | wc -l)
        findings=$(find "$w" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
                -o -name 'oom-*' -o -name 'slow-unit-*' \) | wc -l)
        printf '%-22s %12s %8s %14s %9s\n' "$t" "${execs:-?}" "${speed:-?}" "$before -> $after" "$findings"
        if [ "$findings" -gt 0 ]; then
                status=1
                find "$w" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
                        -o -name 'oom-*' -o -name 'slow-unit-*' \) -printf '    %p\n'
                grep -m3 -E 'ERROR|invariant failed|runtime error' "$w/log" | sed 's/^/    /' || true
        fi
done
exit $status
