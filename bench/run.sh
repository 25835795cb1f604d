#!/bin/sh
# One command for the benchmark: bench/run.sh [--quick] [--runs N] [--only a,b] ...
# Installs missing Debian packages, builds proxyd (release) in bench/out/build,
# runs every scenario against the origin, proxyd, nginx and HAProxy and prints
# the table. See bench/README.md.
exec /usr/bin/python3 "$(dirname "$0")/bench.py" "$@"
