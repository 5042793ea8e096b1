#!/usr/bin/env bash
# Runs every fuzz target in turn, one libFuzzer job at a time.
#
#   fuzz/run.sh [seconds-per-target] [max-runs-per-target] [target...]
#
# Defaults: 60 s per target, no run limit, every target (fuzz/Cargo.toml's list). A target
# stops at whichever limit comes first. The long campaign of RELIABILITY.md ("Fuzzing") is
# `fuzz/run.sh 1800 10000000`.
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`). Each
# target starts from its kept seeds (fuzz/corpus/<target>/, read only) and its own working
# corpus (fuzz/work/<target>/, not in git, kept between runs); crashing inputs land in
# fuzz/artifacts/<target>/ and the libFuzzer log in fuzz/logs/<target>/. A crash stops that
# target, and the script goes on with the next and exits non-zero at the end. A summary line
# per target (executions, rate, coverage, crash) goes to fuzz/logs/summary.txt.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
secs="${1:-60}"
runs="${2:--1}"
shift $(( $# > 2 ? 2 : $# ))
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' "$here/Cargo.toml" | grep -v '^timed-fuzz$')
fi

# Debug assertions and overflow checks on: an arithmetic overflow on outside input is a
# finding. No sanitizer: timed and its decoders are safe Rust, and ASan would halve the rate.
flags=(-a -s none)
(cd "$here" && CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" cargo +nightly fuzz build "${flags[@]}") || exit 2
bin_dir="$here/target/x86_64-unknown-linux-gnu/release"

mkdir -p "$here/logs"
failed=0
for t in "${targets[@]}"; do
    mkdir -p "$here/work/$t" "$here/artifacts/$t" "$here/logs/$t"
    echo "== $t: up to ${secs}s, runs ${runs}"
    # libFuzzer writes the job's log (fuzz-0.log) into its working directory.
    (cd "$here/logs/$t" && rm -f fuzz-0.log && "$bin_dir/$t" \
        -jobs=1 -workers=1 \
        -max_total_time="$secs" -runs="$runs" \
        -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 \
        -artifact_prefix="$here/artifacts/$t/" \
        "$here/work/$t" "$here/corpus/$t" >/dev/null 2>&1)
    log="$here/logs/$t/fuzz-0.log"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    crash=$(grep -m1 -E '^==[0-9]+== ERROR|panicked at|Test unit written to' "$log" || true)
    line="$t execs=${execs:-?} rate=${rate:-?}/s ${cov:-cov: ?} $(date -u +%FT%TZ)"
    if [ -n "$crash" ]; then
        failed=1
        line="$line CRASH: $crash"
    fi
    echo "$line" | tee -a "$here/logs/summary.txt"
done
exit $failed
