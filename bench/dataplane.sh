#!/usr/bin/env bash
# bench/dataplane.sh - portico's builtin data plane against no proxy, nginx,
# haproxy and caddy, in one run on this machine, judged by ratios to nginx
# measured in the same round.
#
#   wrk --(Host: bench.local)--> proxy 127.0.0.1:$HTTP_PORT --> origin nginx 127.0.0.1:$ORIGIN_PORT ("ok")
#   wrk --(SNI localhost)------> proxy 127.0.0.1:$HTTPS_PORT (TLS, ECDSA P-256) --> same origin
#
# For each worker count in WORKERS and each round, every proxy is started
# fresh (portico through its admin API: `portico serve` on a temporary
# state folder, the route PUT with require_healthy false), warmed up, then
# measured in four modes: keep-alive, Connection: close, TLS keep-alive,
# TLS Connection: close (a full handshake per request: handshakes/s).
# With one worker the proxy is pinned alone to CPU $PROXY_CPU and wrk and
# the origin share CPU $LOAD_CPU; with more workers than that, nothing is
# pinned and the figures show the whole machine's balance.
#
# Per run: requests/s, p50 and p99 latency, the proxy's CPU use (% of one
# core, its whole process tree), requests per proxy CPU-second, resident
# memory, and other% (CPU used meanwhile by processes that are not part of
# the benchmark; a run above QUIET_MAX is redone once).  The summary gives
# medians over rounds and, per proxy, the median over rounds of its ratio
# to nginx in the same round (paired).  Then, once per proxy with one
# worker, the resident memory each idle keep-alive connection costs.
#
# The control plane part (CONTROL=1) puts ROUTES routes into portico
# through the API, reads its memory, then times CHANGES route changes from
# the API call to the first request the new route serves: once polling
# while the call is in flight, once after its answer.
#
# Usage:  bench/dataplane.sh
#         ROUNDS=5 DURATION=10s WORKERS="1" PROXIES="nginx portico" bench/dataplane.sh
# Knobs:  ROUNDS=3 DURATION=5s CONNS=64 CLOSE_CONNS=16 SHORT=3s (close and TLS runs) WARMUP=1s
#         WORKERS="1 2" PROXIES="direct nginx haproxy caddy portico" TLS=1 IDLE_CONNS=2000
#         CONTROL=1 ROUTES=10000 CHANGES=20 PIN=1 PROXY_CPU=1 LOAD_CPU=0 QUIET_MAX=15 QUIET_WAIT=30
#         PORTICO_BIN=build/portico (a release build: `make`)
# Output: bench/results/dataplane-<stamp>/{summary.txt,runs.tsv,raw/,logs/}; the summary is printed.
# Every server started here runs in the foreground of this script and is
# stopped by its PID; only 127.0.0.1 is used; every wait is bounded.

set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PORTICO_BIN=${PORTICO_BIN:-$ROOT/build/portico}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
SHORT=${SHORT:-3s}
WARMUP=${WARMUP:-1s}
CONNS=${CONNS:-64}
CLOSE_CONNS=${CLOSE_CONNS:-16}
WORKERS=${WORKERS:-1 2}
PROXIES=${PROXIES:-direct nginx haproxy caddy portico}
TLS=${TLS:-1}
IDLE_CONNS=${IDLE_CONNS:-2000}
CONTROL=${CONTROL:-1}
ROUTES=${ROUTES:-10000}
CHANGES=${CHANGES:-20}
PIN=${PIN:-1}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
QUIET_MAX=${QUIET_MAX:-15}
QUIET_WAIT=${QUIET_WAIT:-30}
ORIGIN_PORT=${ORIGIN_PORT:-9001}
HTTP_PORT=${HTTP_PORT:-8080}
HTTPS_PORT=${HTTPS_PORT:-8443}
API_PORT=${API_PORT:-18100}
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
for c in nginx haproxy caddy wrk curl openssl python3 taskset ss awk; do
  command -v "$c" >/dev/null || die "missing $c (scripts/bootstrap bench)"
done
[[ -x $PORTICO_BIN ]] || die "no portico binary at $PORTICO_BIN (run make)"

T=$(mktemp -d /tmp/portico-bench.XXXXXX)
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=$ROOT/bench/results/dataplane-$STAMP
mkdir -p "$OUT/raw" "$T/logs"
STARTED=()
cleanup() {
  local p
  for p in "${STARTED[@]}"; do stop_pid "$p"; done
  cp -r "$T/logs" "$OUT/logs" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------- processes

start_bg() { # NAME CMD... : background, output to logs/NAME.log, sets PID
  local name=$1; shift
  "$@" >"$T/logs/$name.log" 2>&1 &
  PID=$!
  STARTED+=("$PID")
}
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
tree() { local p; echo "$1"; for p in $(ps -o pid= --ppid "$1"); do tree "$p"; done; }
cpu_ticks() { # utime+stime of a process tree (threads included)
  local p t=0 v
  for p in $(tree "$1"); do
    v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || true)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
rss_kb() { local p s=0 v; for p in $(tree "$1"); do v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || true); s=$((s + ${v:-0})); done; echo "$s"; }
busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
pin() { if [[ $PIN == 1 && $1 == 1 ]]; then echo "taskset -c $2"; fi; }
port_free() { ! ss -Htln "sport = :$1" | grep -q .; }
wait_ok() { # PORT HOST SCHEME : until the route answers "ok" (15 s)
  local i
  for ((i = 0; i < 300; i++)); do
    if [[ $(curl -sk -m 1 --resolve "localhost:$1:127.0.0.1" -H "Host: $2" "$3://localhost:$1/" 2>/dev/null) == ok ]]; then return 0; fi
    sleep 0.05
  done
  return 1
}

# ------------------------------------------------------------------ set-up

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -keyout "$T/key.pem" -out "$T/cert.pem" >/dev/null 2>&1
cat "$T/cert.pem" "$T/key.pem" >"$T/haproxy.pem"

start_origin() {
  mkdir -p "$T/origin"
  cat >"$T/origin/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $T/origin/nginx.pid;
error_log $T/origin/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 75s;
  client_body_temp_path $T/origin/tmp; proxy_temp_path $T/origin/tmp; fastcgi_temp_path $T/origin/tmp;
  uwsgi_temp_path $T/origin/tmp; scgi_temp_path $T/origin/tmp;
  server { listen 127.0.0.1:$ORIGIN_PORT backlog=4096; location / { default_type text/plain; return 200 "ok"; } }
}
EOF
  # shellcheck disable=SC2046
  start_bg origin $(pin 1 "$LOAD_CPU") nginx -p "$T/origin/" -e "$T/origin/error.log" -c "$T/origin/nginx.conf"
  ORIGIN_PID=$PID
  local i
  for ((i = 0; i < 100; i++)); do [[ $(curl -s -m 1 "http://127.0.0.1:$ORIGIN_PORT/") == ok ]] && return 0; sleep 0.05; done
  die "origin did not start"
}

start_nginx() { # WORKERS
  local d=$T/nginx; mkdir -p "$d"
  cat >"$d/nginx.conf" <<EOF
worker_processes $1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path $d/tmp; proxy_temp_path $d/tmp; fastcgi_temp_path $d/tmp; uwsgi_temp_path $d/tmp;
  scgi_temp_path $d/tmp;
  ssl_protocols TLSv1.2 TLSv1.3;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 256; }
  server { listen 127.0.0.1:$HTTP_PORT default_server; return 404 "nope\n"; }
  server {
    listen 127.0.0.1:$HTTP_PORT;
    listen 127.0.0.1:$HTTPS_PORT ssl;
    ssl_certificate $T/cert.pem;
    ssl_certificate_key $T/key.pem;
    server_name bench.local localhost;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
  # shellcheck disable=SC2046
  start_bg "nginx-w$1-r$ROUND" $(pin "$1" "$PROXY_CPU") nginx -p "$d/" -e "$d/error.log" -c "$d/nginx.conf"
}

start_haproxy() {
  local d=$T/haproxy; mkdir -p "$d"
  cat >"$d/haproxy.cfg" <<EOF
global
  nbthread $1
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 30s
frontend fe
  bind 127.0.0.1:$HTTP_PORT
  bind 127.0.0.1:$HTTPS_PORT ssl crt $T/haproxy.pem alpn http/1.1
  use_backend be_app if { hdr(host) -i bench.local } || { ssl_fc }
  default_backend be_404
backend be_app
  http-reuse always
  server origin 127.0.0.1:$ORIGIN_PORT
backend be_404
  http-request return status 404 content-type text/plain string "nope"
EOF
  # shellcheck disable=SC2046
  start_bg "haproxy-w$1-r$ROUND" $(pin "$1" "$PROXY_CPU") haproxy -db -f "$d/haproxy.cfg"
}

start_caddy() {
  local d=$T/caddy; mkdir -p "$d/xdg"
  cat >"$d/caddy.json" <<EOF
{
  "admin": {"disabled": true},
  "logging": {"logs": {"default": {"level": "ERROR"}}},
  "apps": {
    "tls": {"certificates": {"load_files": [{"certificate": "$T/cert.pem", "key": "$T/key.pem"}]}},
    "http": {"servers": {
      "plain": {"listen": ["127.0.0.1:$HTTP_PORT"], "automatic_https": {"disable": true},
        "routes": [{"match": [{"host": ["bench.local"]}],
                    "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:$ORIGIN_PORT"}],
                                "transport": {"protocol": "http", "keep_alive": {"max_idle_conns_per_host": 256}}}],
                    "terminal": true},
                   {"handle": [{"handler": "static_response", "status_code": 404, "body": "nope"}]}]},
      "tls": {"listen": ["127.0.0.1:$HTTPS_PORT"], "automatic_https": {"disable": true},
        "tls_connection_policies": [{}],
        "routes": [{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:$ORIGIN_PORT"}],
                                "transport": {"protocol": "http", "keep_alive": {"max_idle_conns_per_host": 256}}}]}]}
    }}
  }
}
EOF
  # shellcheck disable=SC2046
  start_bg "caddy-w$1-r$ROUND" env GOMAXPROCS="$1" HOME="$d/xdg" XDG_CONFIG_HOME="$d/xdg" XDG_DATA_HOME="$d/xdg" \
    $(pin "$1" "$PROXY_CPU") caddy run --config "$d/caddy.json"
}

api() { # METHOD PATH [JSON]
  curl -s -m 30 -o /dev/null -w '%{http_code}' -X "$1" -H 'Content-Type: application/json' \
    ${3:+--data-binary "$3"} "http://127.0.0.1:$API_PORT$2"
}

start_portico() { # WORKERS
  local d=$T/portico-w$1-r$ROUND; rm -rf "$d"; mkdir -p "$d"
  # shellcheck disable=SC2046
  # env -u: PORTICO_* variables are settings to portico, and this one is not.
  start_bg "portico-w$1-r$ROUND" $(pin "$1" "$PROXY_CPU") env -u PORTICO_BIN "$PORTICO_BIN" serve --api_listen=127.0.0.1:$API_PORT \
    --http_listen=127.0.0.1:$HTTP_PORT --https_listen=127.0.0.1:$HTTPS_PORT --state_dir="$d" --workers="$1" \
    --log_level=warn --access_log=
  local i pid=$PID
  for ((i = 0; i < 200; i++)); do
    [[ $(api GET /proxy-manager/health) == 200 ]] && break
    sleep 0.05
  done
  local cert key
  cert=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$T/cert.pem")
  key=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$T/key.pem")
  [[ $(api PUT /certificates/localhost "{\"certificate\": $cert, \"key\": $key}") == 20? ]] || die "portico: certificate refused"
  [[ $(api PUT /proxies/bench "{\"domain\":\"bench.local\",\"upstream_host\":\"127.0.0.1\",\"upstream_port\":$ORIGIN_PORT,\"require_healthy\":false}") == 20? ]] ||
    die "portico: route refused"
  [[ $(api PUT /proxies/benchtls "{\"domain\":\"localhost\",\"upstream_host\":\"127.0.0.1\",\"upstream_port\":$ORIGIN_PORT,\"require_healthy\":false}") == 20? ]] ||
    die "portico: TLS route refused"
  PID=$pid
}

# ------------------------------------------------------------ measurement

# run_wrk TAG CONNS DURATION WORKERS URL [wrk args] : prints "rps p50 p99 requests errors"
run_wrk() {
  local tag=$1 c=$2 dur=$3 w=$4 url=$5; shift 5
  local raw=$OUT/raw/$tag.txt threads=1
  [[ $w -gt 1 ]] && threads=2
  # shellcheck disable=SC2046
  $(pin "$W" "$LOAD_CPU") wrk -t"$threads" -c"$c" -d"$dur" --timeout 5s --latency "$@" "$url" >"$raw" 2>&1 || true
  awk 'function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
       /Requests\/sec:/ { rps = $2 } / 50%/ { p50 = ms($2) } / 99%/ { p99 = ms($2) } /requests in/ { n = $1 }
       /Socket errors/ { gsub(",", ""); e += $4 + $6 + $8 + $10 } /Non-2xx/ { e += $5 }
       END { printf "%s %s %s %s %d\n", rps ? rps : 0, p50 ? p50 : "-", p99 ? p99 : "-", n ? n : 0, e }' "$raw"
}

# measure NAME MODE TAG CONNS DURATION URL [wrk args] : one run, appended to runs.tsv
measure() {
  local name=$1 mode=$2 tag=$3; shift 3
  local try res c0 c1 b0 b1 o0 o1 t0 t1 cpu other wr0 wr1
  for try in 1 2; do
    c0=$(cpu_ticks "$PID"); o0=$(cpu_ticks "$ORIGIN_PID"); b0=$(busy_ticks); times >"$T/times"; wr0=$(awk -v hz="$CLK_TCK" 'NR==2{split($1,u,/[ms]/);split($2,s,/[ms]/);printf "%.0f",(u[1]*60+u[2]+s[1]*60+s[2])*hz}' "$T/times")
    t0=$EPOCHREALTIME
    res=$(run_wrk "$tag-t$try" "$1" "$2" "$W" "$3" "${@:4}")
    t1=$EPOCHREALTIME
    c1=$(cpu_ticks "$PID"); o1=$(cpu_ticks "$ORIGIN_PID"); b1=$(busy_ticks); times >"$T/times"; wr1=$(awk -v hz="$CLK_TCK" 'NR==2{split($1,u,/[ms]/);split($2,s,/[ms]/);printf "%.0f",(u[1]*60+u[2]+s[1]*60+s[2])*hz}' "$T/times")
    cpu=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", 100*d/hz/(b-a)}')
    other=$(awk -v d=$(((b1 - b0) - (c1 - c0) - (o1 - o0) - (wr1 - wr0))) -v hz="$CLK_TCK" -v a="$t0" -v b="$t1" \
      'BEGIN{v=100*d/hz/(b-a); printf "%.0f", v < 0 ? 0 : v}')
    if [[ $name == direct ]]; then cpu=-; fi
    ((other <= QUIET_MAX)) && break
    log "  $tag: other processes used $other% of a core; redoing it"
    sleep 3
  done
  # shellcheck disable=SC2086  # $res is five fields
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$W" "$ROUND" "$name" "$mode" $res "$cpu" "$other" >>"$OUT/runs.tsv"
}

# wait_quiet : up to QUIET_WAIT s for a 1 s window in which processes that
# are not ours use at most QUIET_MAX % of a core (the machine may be shared).
wait_quiet() {
  local deadline=$((SECONDS + QUIET_WAIT)) b0 b1 o0 o1 pct
  while :; do
    b0=$(busy_ticks); o0=$(cpu_ticks "$ORIGIN_PID"); sleep 1; b1=$(busy_ticks); o1=$(cpu_ticks "$ORIGIN_PID")
    pct=$(((b1 - b0 - (o1 - o0)) * 100 / CLK_TCK))
    if ((pct <= QUIET_MAX || SECONDS >= deadline)); then break; fi
    sleep 2
  done
  ((pct <= QUIET_MAX)) || log "machine busy (${pct}% of a core used by others); measuring anyway"
}

bench_one() { # NAME
  local name=$1 target=$HTTP_PORT
  wait_quiet
  PID=
  if [[ $name == direct ]]; then
    PID=$ORIGIN_PID; target=$ORIGIN_PORT
  else
    port_free "$HTTP_PORT" && port_free "$HTTPS_PORT" || die "ports $HTTP_PORT/$HTTPS_PORT are busy"
    "start_$name" "$W"
    wait_ok "$HTTP_PORT" bench.local http || { log "$name did not serve; skipped"; stop_pid "$PID"; return 0; }
    [[ $(curl -s -m 2 -H 'Host: other.invalid' "http://127.0.0.1:$HTTP_PORT/") != ok ]] || log "WARNING: $name routes an unknown Host"
  fi
  log "W=$W round $ROUND: $name"
  run_wrk "w$W-r$ROUND-$name-warmup" "$CONNS" "$WARMUP" "$W" "http://127.0.0.1:$target/" -H "Host: bench.local" >/dev/null
  measure "$name" keepalive "w$W-r$ROUND-$name-ka" "$CONNS" "$DURATION" "http://127.0.0.1:$target/" -H "Host: bench.local"
  RSS[$name]=$(rss_kb "$PID")
  sed -i "\$s/\$/\t${RSS[$name]}/" "$OUT/runs.tsv"
  measure "$name" close "w$W-r$ROUND-$name-close" "$CLOSE_CONNS" "$SHORT" "http://127.0.0.1:$target/" \
    -H "Host: bench.local" -H "Connection: close"
  if [[ $TLS == 1 && $name != direct ]]; then
    wait_ok "$HTTPS_PORT" localhost https || log "$name: TLS route not ready"
    measure "$name" tls-ka "w$W-r$ROUND-$name-tls-ka" "$CONNS" "$SHORT" "https://localhost:$HTTPS_PORT/"
    measure "$name" tls-handshake "w$W-r$ROUND-$name-tls-hs" "$CLOSE_CONNS" "$SHORT" "https://localhost:$HTTPS_PORT/" \
      -H "Connection: close"
  fi
  if [[ $name != direct ]]; then stop_pid "$PID"; fi
  sleep 1
}

# idle_cost NAME : resident memory per idle keep-alive connection (one worker)
idle_cost() {
  local name=$1 before after
  W=1 ROUND=idle; "start_$name" 1
  wait_ok "$HTTP_PORT" bench.local http || { stop_pid "$PID"; return 0; }
  before=$(rss_kb "$PID")
  python3 - "$HTTP_PORT" "$IDLE_CONNS" "$T/idle.ready" "$T/idle.done" <<'EOF' &
import os, socket, sys, time
port, n, ready, done = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench.local\r\n\r\n")
    buf = b""
    while b"ok" not in buf:
        buf += s.recv(4096)
    socks.append(s)
open(ready, "w").close()
deadline = time.time() + 60
while not os.path.exists(done) and time.time() < deadline:
    time.sleep(0.05)
EOF
  local py=$! i
  for ((i = 0; i < 1200; i++)); do [[ -e $T/idle.ready ]] && break; sleep 0.05; done
  sleep 0.5
  after=$(rss_kb "$PID")
  touch "$T/idle.done"; wait "$py" || true; rm -f "$T/idle.ready" "$T/idle.done"
  printf '%s\t%s\t%s\t%s\n' "$name" "$before" "$after" "$(awk -v a="$before" -v b="$after" -v n="$IDLE_CONNS" 'BEGIN{printf "%.0f", (b-a)*1024/n}')" >>"$OUT/idle.tsv"
  stop_pid "$PID"; sleep 1
}

# ----------------------------------------------------------- control plane

control_plane() {
  local d=$T/control; mkdir -p "$d"
  W=1 ROUND=control
  start_bg control env -u PORTICO_BIN "$PORTICO_BIN" serve --api_listen=127.0.0.1:$API_PORT --http_listen=127.0.0.1:$HTTP_PORT \
    --https_listen= --state_dir="$d" --workers=1 --log_level=warn
  local pid=$PID i
  for ((i = 0; i < 200; i++)); do [[ $(api GET /proxy-manager/health) == 200 ]] && break; sleep 0.05; done
  python3 - "$API_PORT" "$HTTP_PORT" "$ORIGIN_PORT" "$ROUTES" "$CHANGES" "$pid" >"$OUT/control.txt" <<'EOF'
import http.client, json, socket, statistics, sys, threading, time
api, http_port, origin, n, changes, pid = map(int, sys.argv[1:])
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
conn = http.client.HTTPConnection("127.0.0.1", api, timeout=60)
def put(name, domain):
    body = json.dumps({"domain": domain, "upstream_host": "127.0.0.1", "upstream_port": origin, "require_healthy": False})
    conn.request("PUT", f"/proxies/{name}", body, {"Content-Type": "application/json"})
    r = conn.getresponse(); r.read()
    assert r.status in (200, 201), r.status
def serves(domain):
    s = socket.create_connection(("127.0.0.1", http_port), timeout=5)
    s.sendall(f"GET / HTTP/1.1\r\nHost: {domain}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        d = s.recv(4096)
        if not d: break
        data += d
    s.close()
    return data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok")
rss0 = rss()
t0 = time.monotonic()
for i in range(n):
    put(f"r{i}", f"r{i}.bench.local")
fill = time.monotonic() - t0
rss1 = rss()
# Two clocks per change, both from the moment the PUT is sent: when the
# route first serves (a second client polls while the call is in flight:
# the swap happens before the store commit and the answer), and when the
# answer has come back and the route serves (what a script that waits for
# the answer sees).
lat, live, api_ms = [], [], []
for k in range(changes):
    name = f"c{k}"
    first = []
    def poll():
        while not serves(f"{name}.bench.local"):
            pass
        first.append(time.monotonic())
    t = time.monotonic()
    poller = threading.Thread(target=poll)
    poller.start()
    put(name, f"{name}.bench.local")
    api_ms.append((time.monotonic() - t) * 1000)
    while not serves(f"{name}.bench.local"):
        pass
    lat.append((time.monotonic() - t) * 1000)
    poller.join()
    live.append((first[0] - t) * 1000)
rss2 = rss()
time.sleep(6)  # portico gives free heap pages back 2 to 4 s after the last change
print(f"routes={n} fill_s={fill:.1f} rss_start_kb={rss0} rss_kb={rss1} rss_after_changes_kb={rss2} rss_settled_kb={rss()}")
print(f"change_to_serving_ms median={statistics.median(lat):.2f} max={max(lat):.2f} api_call_ms median={statistics.median(api_ms):.2f}")
print(f"serving_while_call_in_flight_ms median={statistics.median(live):.2f} max={max(live):.2f}")
EOF
  stop_pid "$pid"
}

# --------------------------------------------------------------- summary

summary() {
  {
    echo "portico data-plane benchmark, $(date -Is), $(uname -sr), $(nproc) CPUs ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo))"
    echo "nginx $(nginx -v 2>&1 | sed 's/.*\///'), haproxy $(haproxy -v | awk 'NR==1{print $3}'), caddy $(caddy version | awk '{print $1}'), wrk $(wrk -v 2>&1 | awk 'NR==1{print $2}'), portico $PORTICO_BIN"
    echo "rounds=$ROUNDS keep-alive: c=$CONNS $DURATION; close and TLS: c=$CLOSE_CONNS/$CONNS $SHORT; PIN=$PIN (1 worker: proxy on CPU $PROXY_CPU, wrk+origin on CPU $LOAD_CPU)"
    echo "medians over rounds; x/ngx = median of per-round ratios to nginx; req/cpu-s = requests per proxy CPU-second; err = non-2xx + socket errors"
    awk -F'\t' -v QM="$QUIET_MAX" '
      function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        if (n == 0) return "-"; return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
      { w = $1; r = $2; p = $3; m = $4; key = w SUBSEP m SUBSEP p
        if (!(w SUBSEP m in seen)) { seen[w SUBSEP m] = 1; order[++no] = w SUBSEP m }
        if (!(key in pseen)) { pseen[key] = 1; plist[w SUBSEP m] = plist[w SUBSEP m] " " p }
        rps[key, r] = $5; p50[key, r] = $6; p99[key, r] = $7; err[key] += $9; cpu[key, r] = $10; oth[key, r] = $11
        if (NF >= 12) rss[key, r] = $12; rounds[key] = rounds[key] " " r }
      END {
        for (o = 1; o <= no; o++) {
          split(order[o], wm, SUBSEP); printf "\n== workers=%s %s ==\n", wm[1], wm[2]
          printf "%-8s %2s %8s %7s %7s %5s %9s %7s %4s %7s %7s %7s\n", "proxy", "n", "rps", "p50ms", "p99ms", "cpu%", "req/cpu-s", "RSSMiB", "err", "rps/ngx", "p99/ngx", "eff/ngx"
          np = split(plist[order[o]], ps, " ")
          for (k = 1; k <= np; k++) {
            p = ps[k]; key = order[o] SUBSEP p; nk = split(rounds[key], rs, " ")
            delete A; delete B; delete C; delete D; delete E; delete R1; delete R2; delete R3; delete M
            na = 0; nr = 0; nm = 0
            for (i = 1; i <= nk; i++) { r = rs[i]; if (oth[key, r] > QM) continue
              na++; A[na] = rps[key, r]; B[na] = p50[key, r]; C[na] = p99[key, r]
              D[na] = (cpu[key, r] == "-" || cpu[key, r] == 0) ? 0 : rps[key, r] * 100 / cpu[key, r]; E[na] = cpu[key, r]
              if ((key, r) in rss) { nm++; M[nm] = rss[key, r] }
              nk2 = order[o] SUBSEP "nginx"
              if ((nk2, r) in rps && rps[nk2, r] > 0 && oth[nk2, r] <= QM) { nr++
                R1[nr] = rps[key, r] / rps[nk2, r]; R2[nr] = (p99[nk2, r] > 0) ? p99[key, r] / p99[nk2, r] : 0
                R3[nr] = (cpu[nk2, r] > 0 && cpu[key, r] > 0) ? (rps[key, r] / cpu[key, r]) / (rps[nk2, r] / cpu[nk2, r]) : 0 } }
            mr = med(M, nm)
            printf "%-8s %2d %8.0f %7.2f %7.2f %5s %9.0f %7s %4d %7.2f %7.2f %7.2f\n", p, na, med(A, na), med(B, na), med(C, na),
                   (p == "direct") ? "-" : sprintf("%.0f", med(E, na)), med(D, na), (mr == "-") ? "-" : sprintf("%.1f", mr / 1024),
                   err[key], med(R1, nr), med(R2, nr), (p == "direct") ? 0 : med(R3, nr)
          }
        }
      }' "$OUT/runs.tsv"
    if [[ -s $OUT/idle.tsv ]]; then
      echo; echo "== resident memory per idle keep-alive connection ($IDLE_CONNS connections, 1 worker) =="
      awk -F'\t' '{printf "%-8s %6.1f MiB -> %6.1f MiB  %6s bytes/connection\n", $1, $2/1024, $3/1024, $4}' "$OUT/idle.tsv"
    fi
    if [[ -s $OUT/control.txt ]]; then echo; echo "== control plane (portico) =="; cat "$OUT/control.txt"; fi
  } | tee "$OUT/summary.txt"
}

# ------------------------------------------------------------------ main

declare -A RSS
port_free "$ORIGIN_PORT" || die "port $ORIGIN_PORT is busy"
start_origin
read -r -a LIST <<<"$PROXIES"
for W in $WORKERS; do
  for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    n=${#LIST[@]}
    for ((i = 0; i < n; i++)); do
      p=${LIST[$(((i + ROUND - 1) % n))]}
      if [[ $p == direct && $W != "${WORKERS%% *}" ]]; then continue; fi
      bench_one "$p"
    done
  done
done
if ((IDLE_CONNS > 0)); then
  for p in "${LIST[@]}"; do [[ $p == direct ]] || idle_cost "$p"; done
fi
if [[ $CONTROL == 1 ]]; then control_plane; fi
stop_pid "$ORIGIN_PID"
summary
log "results in $OUT"
