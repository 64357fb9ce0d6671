#!/bin/bash
# A/B of small-request throughput (issue 13): starts one build's server (every model in $REPO, default: that
# build's models/) with the node flags given, warms up, then autocannon at 32 connections for $D seconds (default 8)
# on language-id's POST /predict (bench/inputs/sentence.txt) and on GET /v2/health/live; prints req/s, non-2xx, the
# server's CPU per request (all its threads, from /proc: steadier than req/s on a shared VM) and its peak RSS. Run
# variants in alternation, several pairs, on a quiet machine:
#   for i in 1 2 3; do bash bench/small-requests-ab.sh default . ""; bash bench/small-requests-ab.sh semi64 . "--max-semi-space-size=64"; done
# usage: small-requests-ab.sh <label> <build root> "<node flags>" [NAME=value ...]
set -u
label=$1; root=$(cd "$2" && pwd); flags=$3; shift 3
here=$(cd "$(dirname "$0")/.." && pwd)
port=${PORT:-18140}
cd "$root"
env "$@" MALLOC_ARENA_MAX=2 MUON_MODEL_REPOSITORY="${REPO:-$root/models}" MUON_DEFAULT_MODEL=language-id HOST=127.0.0.1 \
  PORT=$port node --initial-old-space-size=128 $flags dist/main.js > /tmp/small-requests-ab.log 2>&1 &
pid=$!
for _ in $(seq 1 200); do curl -s http://127.0.0.1:$port/v2/health/ready | grep -q '"ready":true' && break; sleep 0.3; done
cd "$here"
cpu() { awk '{print $14 + $15}' /proc/$pid/stat; } # user + system clock ticks (100 per second)
# one measured run of autocannon (its arguments): req/s, non-2xx and microseconds of server CPU per request
measure() {
  local c0 out
  c0=$(cpu)
  out=$(npx autocannon -j -c 32 -d "${D:-8}" "$@" 2>/dev/null)
  node -e 'const j=JSON.parse(process.argv[3]);const us=(process.argv[2]-process.argv[1])*1e4/j.requests.total;console.log(Math.round(j.requests.average), j.non2xx, `${us.toFixed(1)} us/req`)' "$c0" "$(cpu)" "$out"
}
body=(-m POST -H content-type=text/plain -i bench/inputs/sentence.txt)
npx autocannon -c 32 -d 2 "${body[@]}" http://127.0.0.1:$port/predict >/dev/null 2>&1
p=$(measure "${body[@]}" http://127.0.0.1:$port/predict)
npx autocannon -c 32 -d 2 http://127.0.0.1:$port/v2/health/live >/dev/null 2>&1
h=$(measure http://127.0.0.1:$port/v2/health/live)
rss=$(awk '/VmHWM/{print $2}' /proc/$pid/status)
kill -INT $pid; wait $pid
echo "$label: predict $p | live $h | peak RSS $((rss / 1024)) MiB"
