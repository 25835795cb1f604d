#!/bin/bash
# Take a Debian 12 machine (as root) to proxyd running socket-activated on
# 127.0.0.1:8080 with etc/proxyd.conf, in front of a demo backend on
# 127.0.0.1:8081:
#
#   1. install the build dependencies (apt-get),
#   2. build and install proxyd (meson; binary, units and /etc/proxyd/proxyd.conf),
#   3. start the demo backend (python3 -m http.server serving a generated page),
#   4. start proxyd.socket (with systemd as PID 1), or else hand the socket
#      over with systemd-socket-activate (containers without systemd),
#   5. fetch http://127.0.0.1:8080/ through proxyd.
#
# Usage: bash tools/demo.sh            (from anywhere inside the repository)
set -euo pipefail

cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "tools/demo.sh: run as root (it installs packages, proxyd and its units)" >&2
  exit 1
fi

DEMO_DIR=/var/lib/proxyd-demo
STATE_DIR=/run/proxyd-demo

echo "==> installing build dependencies"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
  gcc pkg-config meson ninja-build libsystemd-dev libconfig-dev libpcre2-dev libgnutls28-dev libc-ares-dev libnghttp2-dev \
  python3 curl systemd ca-certificates

echo "==> building and installing proxyd"
# Only the build dependencies are needed here: the test suites (Check, certtool, curl,
# nginx, ...) are tools/test.sh's business.
if [ -f build/build.ninja ]; then
  meson setup --reconfigure build --prefix=/usr --sysconfdir=/etc -Dtests=false
else
  meson setup build --prefix=/usr --sysconfdir=/etc -Dtests=false
fi
ninja -C build
meson install -C build

if [ -d /run/systemd/system ] && [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
  systemd_pid1=1
else
  systemd_pid1=
fi

echo "==> starting the demo backend on 127.0.0.1:8081"
mkdir -p "$DEMO_DIR" "$STATE_DIR"
cat > "$DEMO_DIR/index.html" <<HTML
<!doctype html>
<title>proxyd demo backend</title>
<h1>Hello from the demo backend</h1>
<p>This page was served by python3 -m http.server on 127.0.0.1:8081, through proxyd on 127.0.0.1:8080.</p>
HTML
backend=(/usr/bin/python3 -m http.server 8081 --bind 127.0.0.1 --directory "$DEMO_DIR")
if [ -n "$systemd_pid1" ]; then
  systemctl stop proxyd-demo-backend.service 2>/dev/null || true
  systemctl reset-failed proxyd-demo-backend.service 2>/dev/null || true
  systemd-run --unit=proxyd-demo-backend --description="proxyd demo backend" \
    -p DynamicUser=yes "${backend[@]}"
else
  if [ -f "$STATE_DIR/backend.pid" ]; then
    kill "$(cat "$STATE_DIR/backend.pid")" 2>/dev/null || true
    sleep 0.5
  fi
  nohup "${backend[@]}" >"$STATE_DIR/backend.log" 2>&1 &
  echo $! >"$STATE_DIR/backend.pid"
fi
for _ in $(seq 50); do
  curl -s -o /dev/null http://127.0.0.1:8081/ && break
  sleep 0.1
done

echo "==> checking /etc/proxyd/proxyd.conf"
/usr/sbin/proxyd -t -c /etc/proxyd/proxyd.conf

echo "==> starting proxyd, socket-activated on 127.0.0.1:8080"
if [ -n "$systemd_pid1" ]; then
  systemctl daemon-reload
  systemctl stop proxyd.service proxyd.socket 2>/dev/null || true
  systemctl start proxyd.socket
else
  if [ -f "$STATE_DIR/proxyd.pid" ]; then
    kill "$(cat "$STATE_DIR/proxyd.pid")" 2>/dev/null || true
    sleep 0.5
  fi
  # systemd-socket-activate binds the socket, names it "http" and starts
  # proxyd on the first connection, as proxyd.socket does.
  nohup systemd-socket-activate -l 127.0.0.1:8080 --fdname=http \
    -E PROXYD_CONFIG=/etc/proxyd/proxyd.conf /usr/sbin/proxyd \
    >"$STATE_DIR/proxyd.log" 2>&1 &
  echo $! >"$STATE_DIR/proxyd.pid"
  for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && break
    sleep 0.1
  done
fi

echo "==> GET http://127.0.0.1:8080/"
curl -s --retry 5 --retry-connrefused --retry-delay 1 http://127.0.0.1:8080/
echo "==> GET http://127.0.0.1:8080/healthz"
curl -s http://127.0.0.1:8080/healthz
if [ -n "$systemd_pid1" ]; then
  echo "proxyd is running: systemctl status proxyd.socket proxyd.service; journalctl -u proxyd"
else
  echo "proxyd is running (pid $(cat "$STATE_DIR/proxyd.pid")); log: $STATE_DIR/proxyd.log"
fi
