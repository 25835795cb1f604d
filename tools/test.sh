#!/bin/bash
# Install what proxyd's test suite needs (Debian 12) and run all of it:
# the Check unit suites and the integration tests in tests/integration/
# (real proxyd binary, socket-activated, against loopback backends, curl, wrk
# and nginx as the URI oracle).
#
# Usage: bash tools/test.sh            (from anywhere inside the repository)
# Environment: BUILD_DIR (default: build-test)
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-test}

packages=(
  gcc pkg-config meson ninja-build
  libsystemd-dev libconfig-dev libpcre2-dev libgnutls28-dev libc-ares-dev libnghttp2-dev check
  python3 curl wrk nginx-light
  systemd systemd-container gnutls-bin man-db python3-websockets openssl nghttp2-client python3-h2
  dpkg-dev debhelper devscripts lintian fakeroot logrotate iproute2
  prometheus chromium
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "tools/test.sh: installing ${missing[*]}"
  SUDO=
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "tools/test.sh: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
  fi
  # The tests start their own nginx; do not let the package start the system one.
  policy_created=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    policy_created=1
  fi
  cleanup() { [ -z "$policy_created" ] || $SUDO rm -f /usr/sbin/policy-rc.d; }
  trap cleanup EXIT
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  cleanup
  trap - EXIT
fi

if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  meson setup "$BUILD_DIR" --prefix=/usr --sysconfdir=/etc
fi
rc=0
meson test -C "$BUILD_DIR" --print-errorlogs || rc=$?
logs=("$BUILD_DIR/meson-logs/testlog.json")

# The same suite again, built with AddressSanitizer + UndefinedBehaviorSanitizer: any report
# fails it (see tools/sanitize.sh). PROXYD_SKIP_SANITIZE=1 skips this second pass.
if [ "${PROXYD_SKIP_SANITIZE:-0}" != 1 ]; then
  bash tools/sanitize.sh || rc=$?
  logs+=("build-sanitize/meson-logs/testlog.json")
fi

# One closing line with the counts, from meson's own record of the runs.
python3 - "${logs[@]}" <<'PY'
import json, sys
passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        lines = open(path).readlines()
    except OSError:
        failed += 1
        continue
    for line in lines:
        r = json.loads(line).get("result")
        if r == "OK":
            passed += 1
        elif r == "SKIP":
            skipped += 1
        else:
            failed += 1
print("tests: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
PY
exit $rc
