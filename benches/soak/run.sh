#!/usr/bin/env bash
# The long soak of RELIABILITY.md ("Soak"): a fresh 4-node localnet at a steady rate, each
# node's memory, open files, database size and CPU and the latency percentiles sampled every
# minute, then drawn.
#
#   benches/soak/run.sh [rate/s] [length] [nodes]        defaults: 1150 60m 4
#   benches/soak/plot.py benches/soak/soak.csv benches/soak/soak.png   # redraw only
#
# 1,150 transfers/s is about half of the 4-node localnet's measured capacity on the 2-core
# machine (2,290-2,460 final/s at its ceiling in BENCHMARKS.md "stop 25", 2,395-2,515 in
# "stop 28"; kept at 1,150 so soaks compare across stops). Each node's page cache is 256 MiB
# (TIMED_DB_CACHE_MB; what a 2 GiB VPS gets by default), so that memory shows whether anything
# grows beyond the bounded cache; the recent soaks ran with TIMED_DB_CACHE_MB=64.
# Writes benches/soak/soak.csv, soak.txt (the bench's output) and soak.png.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
rate="${1:-1150}"
length="${2:-60m}"
nodes="${3:-4}"
export TIMED_DB_CACHE_MB="${TIMED_DB_CACHE_MB:-256}"
cd "$root"
cargo build --release --quiet
if ! python3 -c "import matplotlib" 2>/dev/null; then
    python3 -m pip install --quiet matplotlib
fi
./target/release/timed bench --start "$nodes" --rates "$rate" --soak "$length" \
    --sample-every 60s --csv "$here/soak.csv" | tee "$here/soak.txt"
python3 "$here/plot.py" "$here/soak.csv" "$here/soak.png" \
    "timed soak: $nodes nodes, $rate transfers/s for $length, ${TIMED_DB_CACHE_MB} MiB cache each ($(date -u +%F))"
