#!/usr/bin/env bash
# Simulator throughput on the large scenario (not part of CI; run by hand).
# Generates the large hoster's 30-day trace as a file (generation is not timed), then
# times the whole `conductor simulate` process, report and plots included, and a run
# of a 10x shorter trace to show that memory does not grow with the trace's length.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/conductor
dir=${BENCH_DIR:-/tmp/conductor-bench}
mkdir -p "$dir"
# Same parameters as scenarios/large-hoster.toml's [trace.generate] table.
$bin trace generate --days 30 --customers 100000 --peak 3000 --tier-mix 50,40,10,0,0 \
  --always-on 0 --weekend-boost 1.6 --no-players --seed 5 --out "$dir/large.csv"
head -c $(( $(stat -c %s "$dir/large.csv") / 10 )) "$dir/large.csv" | sed '$d' > "$dir/large-tenth.csv"
rows=$(( $(wc -l < "$dir/large.csv") - 1 ))
echo "trace rows: $rows"
for run in 1 2 3; do
  out=$(/usr/bin/time -f "process %e s, max RSS %M KB" $bin simulate scenarios/large-hoster.toml \
    --set trace="$dir/large.csv" --set duration='"30d"' --out "$dir/out" --quiet 2>&1) || { echo "$out" >&2; exit 1; }
  # The CLI's own line: the run (parsing, core, simulated world, report and plots) and
  # every simulated event it handled (trace rows, container and VM completions, timers).
  echo "$out" | grep -E "^wall time" || true
  secs=$(echo "$out" | sed -nE 's/^process ([0-9.]+) s.*/\1/p')
  echo "$out" | grep -E "^process" || true
  awk -v r="$rows" -v s="$secs" 'BEGIN { if (s > 0) printf "  trace rows through the core: %.2f M rows/s of the whole process\n", r / s / 1e6 }'
done
grep -E '"(requests|events)"' "$dir/out/summary.json"
echo "tenth of the trace (memory should stay about the same):"
/usr/bin/time -f "process %e s, max RSS %M KB" $bin simulate scenarios/large-hoster.toml \
  --set trace="$dir/large-tenth.csv" --out "$dir/out-tenth" --quiet 2>&1 | grep -E "^(wall|process)" || true
