#!/bin/bash
# Hot-path profile of proxyd: instructions per request under callgrind, the top
# functions by inclusive instructions, and perf counters when the machine has them.
#
#   bench/profile.sh [-n REQUESTS] [-w WARMUP] [-c CONNS] [-p PATH] [-b PROXYD_BINARY] [-t TOP] [-M] [-P]
#                    [-A cached|uncached] [-2 h2c|tls] [-C hit|miss]
#
# -M: proxyd runs with `metrics = false` (what counting for /metrics costs: compare).
# -P: the traffic policy of bench scenario a1 (3 rules that do not match, 2 add_header
#     fields, a rate limit that never rejects): compare with a run without -P.
# -A: the location has an auth_request to the origin's /auth (a 200 with X-User):
#     `uncached` asks it for every request, `cached` keeps the decision (what forward
#     authentication costs: compare with neither).
# -2: HTTP/2 clients instead (h2load, CONNS connections x 10 streams; h2c with prior
#     knowledge, or ALPN h2 over TLS with a throw-away certificate), as scenarios h2/h1.
# -C: the location caches (`cache = true`, store in the profile directory): "hit" with the
#     default key (every request after the first is a hit), "miss" with cache_key =
#     "$request_id" (every request misses, is fetched and stored). The origin sends
#     Cache-Control: max-age=3600 for /cached/small and /cached/big (same files); compare
#     with -p /cached/small without -C (the location does not cache).
#
# proxyd runs with 1 worker (callgrind serialises threads anyway) in front of
# a 1-worker nginx origin serving /small (100 B) and /big (1 MiB). A
# deterministic client (bench/client.py) sends exactly WARMUP and then
# WARMUP+REQUESTS keep-alive requests in two separate callgrind runs; the
# difference of the two totals divided by REQUESTS is the cost of one request
# with start-up and shutdown cancelled out. The second run's profile is
# annotated (inclusive) and kept in bench/out/profile-*/. CALLGRIND_OPTS (environment)
# is passed to valgrind, e.g. "--dump-instr=yes" for the cost of each instruction.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
N=2000
WARM=200
CONNS=1
URLPATH=/small
BIN=
TOP=30
METRICS=true
POLICY=false
AUTH=
H2=
CACHE=
while getopts "n:w:c:p:b:t:MPA:2:C:h" o; do
        case $o in
        n) N=$OPTARG ;; w) WARM=$OPTARG ;; c) CONNS=$OPTARG ;; p) URLPATH=$OPTARG ;;
        b) BIN=$OPTARG ;; t) TOP=$OPTARG ;; M) METRICS=false ;; P) POLICY=true ;; A) AUTH=$OPTARG ;;
        2) H2=$OPTARG ;; C) CACHE=$OPTARG ;;
        *) sed -n '2,29p' "$0"; exit 2 ;;
        esac
done

for t in valgrind callgrind_annotate nginx; do
        command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || {
                echo "installing missing packages" >&2
                DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends valgrind nginx-light >&2
                break
        }
done

if [ -z "$BIN" ]; then
        # release optimisation plus debug info, so callgrind can name inlined code and lines
        B="$HERE/out/build-profile"
        [ -f "$B/build.ninja" ] || meson setup "$B" "$REPO" -Dbuildtype=release -Ddebug=true >/dev/null
        ninja -C "$B" proxyd/proxyd >/dev/null
        BIN="$B/proxyd/proxyd"
fi

D="$HERE/out/profile-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$D/www" "$D/tmp"
head -c 99 /dev/zero | tr '\0' 'x' >"$D/www/small"; echo >>"$D/www/small"
head -c 1048576 /dev/urandom >"$D/www/big"
OPORT=18180
PPORT=18181

PIDS=()
cleanup() {
        local p
        for p in "${PIDS[@]}"; do
                kill -TERM -- "-$p" 2>/dev/null || true
        done
        sleep 0.5
        for p in "${PIDS[@]}"; do
                kill -KILL -- "-$p" 2>/dev/null || true
        done
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

cat >"$D/origin.conf" <<EOF
daemon off; master_process on; worker_processes 1; pid $D/origin.pid; error_log $D/origin-error.log warn;
events { worker_connections 4096; }
http {
  client_body_temp_path $D/tmp/cb; proxy_temp_path $D/tmp/p; fastcgi_temp_path $D/tmp/f;
  uwsgi_temp_path $D/tmp/u; scgi_temp_path $D/tmp/s;
  access_log off; sendfile on; keepalive_requests 100000000; keepalive_timeout 300s;
  default_type application/octet-stream;
  server { listen 127.0.0.1:$OPORT; root $D/www; location / { }
           location = /auth { add_header X-User bench; return 200; }
           location /cached/ { alias $D/www/; add_header Cache-Control "max-age=3600"; } }
}
EOF
LIMITS= SRVPOLICY= RULES=
if $POLICY; then # as bench/bench.py's scenario a1
        LIMITS='limits = { bench = { rate = "1000000r/s"; burst = 100000; nodelay = true; }; };'
        SRVPOLICY='limit = [ "bench" ];
              add_header = { X-Frame-Options = "DENY"; Strict-Transport-Security = "max-age=63072000"; };'
        RULES='rules = ( { method = "DELETE"; return = 405; },
                          { header = { User-Agent = "~*badbot"; }; return = 403; },
                          { arg = { debug = "1"; }; return = 404; } );'
fi
H2LISTEN=
case "$H2" in
"") ;;
h2c) H2LISTEN="http2_cleartext = true;" ;;
tls)
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$D/key.pem" \
                -out "$D/cert.pem" -days 2 -subj /CN=localhost 2>/dev/null
        H2LISTEN="tls = { certificate = \"$D/cert.pem\"; key = \"$D/key.pem\"; };" ;;
*) echo "-2 takes h2c or tls" >&2; exit 2 ;;
esac
case "$AUTH" in
"") AUTHCONF= ;;
uncached) AUTHCONF='auth_request = { pass = "http://origin/auth"; copy_headers = "X-User"; };' ;;
cached) AUTHCONF='auth_request = { pass = "http://origin/auth"; copy_headers = "X-User"; cache = "1h"; cache_key = "$http_authorization"; };' ;;
*) echo "-A cached or -A uncached" >&2; exit 2 ;;
esac
case "$CACHE" in
"") LOCCACHE= ;;
hit) LOCCACHE=' cache = true;' ;;
miss) LOCCACHE=' cache = true; cache_key = "$request_id";' ;;
*) echo "-C hit or -C miss" >&2; exit 2 ;;
esac
cat >"$D/proxyd.conf" <<EOF
cache_path = "$D/cache";
workers = 1;
metrics = $METRICS;
log_level = "warning";
access_log = false;
shutdown_timeout = "1s";
$LIMITS
upstreams = { origin = { keepalive = 64; servers = ( { address = "127.0.0.1:$OPORT"; } ); }; };
servers = ( { name = "profile"; listen = [ "127.0.0.1:$PPORT" ]; $H2LISTEN
              $SRVPOLICY
              locations = ( { prefix = "/"; proxy_pass = "http://origin"; $RULES $AUTHCONF$LOCCACHE } ); } );
EOF

setsid /usr/sbin/nginx -p "$D" -c "$D/origin.conf" &
PIDS+=($!)

wait_port() { # port seconds
        local i
        for ((i = 0; i < $2 * 10; i++)); do
                (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
                sleep 0.1
        done
        echo "nothing listens on port $1 after $2 s" >&2
        return 1
}
wait_port $OPORT 10

# one callgrind run: proxyd under valgrind, exactly $1 requests, then SIGTERM
callgrind_run() { # requests outfile
        setsid valgrind --tool=callgrind ${CALLGRIND_OPTS:-} --callgrind-out-file="$2" "$BIN" -c "$D/proxyd.conf" \
                >"$D/valgrind-$1.log" 2>&1 &
        local vp=$!
        PIDS+=($vp)
        wait_port $PPORT 60
        if [ -n "$H2" ]; then
                local scheme=http
                [ "$H2" = tls ] && scheme=https
                timeout 300 h2load -n "$1" -c "$CONNS" -m 10 "$scheme://127.0.0.1:$PPORT$URLPATH" >"$D/client-$1.log"
                grep -q "$1 succeeded" "$D/client-$1.log" || { echo "h2load: not every request succeeded" >&2; false; }
        else
                timeout 300 /usr/bin/python3 "$HERE/client.py" requests 127.0.0.1 $PPORT "$URLPATH" "$1" \
                        --conns "$CONNS" --timeout 280 >"$D/client-$1.log"
        fi
        kill -TERM "$vp"
        timeout 60 tail --pid="$vp" -f /dev/null || { kill -KILL -- "-$vp"; false; }
}
total_ir() { # callgrind out file -> total Ir
        callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ && !t { gsub(",", "", $1); t = $1 } END { print t }'
}

echo "callgrind: $WARM and $((WARM + N)) requests of $URLPATH over $CONNS keep-alive connection(s), 1 worker" >&2
callgrind_run "$WARM" "$D/callgrind.base"
callgrind_run "$((WARM + N))" "$D/callgrind.out"
IR0=$(total_ir "$D/callgrind.base")
IR1=$(total_ir "$D/callgrind.out")

echo
echo "== proxyd $URLPATH: $(( (IR1 - IR0) / N )) instructions per request" \
        "(callgrind, ($IR1 - $IR0) / $N; start-up and shutdown cancelled out)"
echo
echo "== top $TOP functions by inclusive instructions ($((WARM + N)) requests incl. start-up)"
callgrind_annotate --inclusive=yes "$D/callgrind.out" 2>/dev/null |
        awk '/^-+$/ { dashes++; next } dashes >= 3 && NF { print }' | head -n "$TOP" || true
echo
echo "== top $TOP functions by self instructions"
callgrind_annotate "$D/callgrind.out" 2>/dev/null |
        awk '/^-+$/ { dashes++; next } dashes >= 3 && NF { print }' | head -n "$TOP" || true

# perf: hardware counters when the CPU/VM exposes them, else the software task-clock (not
# with -2: client.py speaks HTTP/1.1).
if [ -z "$H2" ] && command -v perf >/dev/null; then
        EV=instructions,cycles,task-clock
        if perf stat -e instructions true 2>&1 | grep -q "not supported"; then
                EV=task-clock,context-switches
                echo
                echo "== perf: hardware counters not supported here; software events only ($EV)"
        fi
        setsid "$BIN" -c "$D/proxyd.conf" >"$D/proxyd-perf.log" 2>&1 &
        PP=$!
        PIDS+=($PP)
        wait_port $PPORT 10
        /usr/bin/python3 "$HERE/client.py" requests 127.0.0.1 $PPORT "$URLPATH" "$WARM" --conns "$CONNS" >/dev/null
        setsid perf stat -e "$EV" -p "$PP" -o "$D/perf-stat.txt" &
        PS=$!
        PIDS+=($PS)
        sleep 0.3
        timeout 120 /usr/bin/python3 "$HERE/client.py" requests 127.0.0.1 $PPORT "$URLPATH" "$N" \
                --conns "$CONNS" >"$D/client-perf.log"
        kill -INT "$PS"
        timeout 10 tail --pid="$PS" -f /dev/null || true
        kill -TERM "$PP"
        echo
        echo "== perf stat over exactly $N requests (divide by $N for per-request figures)"
        grep -E "^ +[0-9<]" "$D/perf-stat.txt" || cat "$D/perf-stat.txt"
fi
echo
echo "files: $D (callgrind.out: open with callgrind_annotate or kcachegrind)"
