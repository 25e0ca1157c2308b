#!/usr/bin/env bash
# Channel ping-pong latency against C baselines in the same run (see
# Benchmarks/ChannelBench), plus the allocation check of the data path.
# Builds in release first: debug timings mean nothing.
#
#   scripts/bench-channel.sh            the full run (5 rounds x 100 000 round trips per case)
#   scripts/bench-channel.sh --quick    3 rounds x 20 000
#
# Run it on a quiet machine and compare the ratios of one run, not absolute
# numbers across runs (the VMs this project uses have fast and slow phases).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/opt/swift/usr/bin"
SWIFT=${SWIFT:-swift}
SCRATCH=.build-bench
"$SWIFT" build -c release --scratch-path "$SCRATCH" -Xswiftc -enforce-exclusivity=unchecked \
    --product channel-bench >&2
"$SWIFT" build -c release --scratch-path "$SCRATCH" -Xswiftc -enforce-exclusivity=unchecked \
    --product alloc-check >&2
"$SCRATCH/release/alloc-check" 200000 64
"$SCRATCH/release/channel-bench" "$@"
