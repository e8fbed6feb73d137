#!/usr/bin/env bash
# Load on the live API (not part of CI, which only builds examples/api_load.rs; run by hand).
# Builds release, starts `conductor run --dry-run` with a few big nodes on the local Docker
# socket (a dry run executes no mutating call; probes of the local daemon work), then runs the
# load generator: CLIENTS concurrent clients doing start/stop on their own server ids for
# DURATION_S seconds. Prints requests/s, p50/p95/p99/max latency, errors and a consistency check
# (GET /v1/queue and /v1/fleet against what the clients were told). Target on a 2-core machine:
# 5,000 requests/s with p99 below 20 ms and no error.
#   CLIENTS=64 DURATION_S=10 bash scripts/bench-api.sh           # closed loop: the ceiling
#   CLIENTS=64 DURATION_S=10 RATE=5000 bash scripts/bench-api.sh # open loop at 5,000 requests/s
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin conductor --example api_load
dir=$(mktemp -d "${BENCH_DIR:-/tmp}/conductor-bench-api.XXXXXX")
port=${PORT:-18480}
cat > "$dir/conductor.toml" <<TOML
[api]
listen = "127.0.0.1:$port"

[database]
path = "bench.db"

[players]
interval_s = 0

[[nodes]]
name = "big-1"
address = "local"
ram_mb = 16000000

[[nodes]]
name = "big-2"
address = "local"
ram_mb = 16000000

[[nodes]]
name = "big-3"
address = "local"
ram_mb = 16000000

[[nodes]]
name = "big-4"
address = "local"
ram_mb = 16000000

[conductor]
startup_delay_s = 0

[conductor.health]
interval_s = 5

[conductor.scaling]
enabled = false
TOML
export CONDUCTOR_API_TOKEN="bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"$target/release/conductor" run --dry-run --config "$dir/conductor.toml" 2> "$dir/conductor.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.1
done
# The nodes must be healthy before anything is placed (first probe round).
for _ in $(seq 100); do
  [ "$(curl -s -H "Authorization: Bearer $CONDUCTOR_API_TOKEN" "http://127.0.0.1:$port/v1/fleet" \
    | sed -n 's/.*"healthy_nodes":\([0-9]*\).*/\1/p')" = 4 ] && break
  sleep 0.1
done
"$target/release/examples/api_load" --url "http://127.0.0.1:$port" \
  --clients "${CLIENTS:-64}" --duration-s "${DURATION_S:-10}" --window "${WINDOW:-4}" --rate "${RATE:-0}"
echo "conductor log: $dir/conductor.log ($(wc -l < "$dir/conductor.log") lines)"
