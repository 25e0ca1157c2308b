#!/usr/bin/env bash
# Coverage-guided fuzzing of the channel's parsers and protocol with
# libFuzzer and the address sanitizer (both ship with the Swift toolchain).
#
# Builds securechannel-fuzz once with -sanitize=fuzzer,address (release, in
# .build-fuzz/), then runs each target (Fuzz/Targets, docs/SECURITY.md
# "Fuzzing") for FUZZ_SECONDS on its corpus. The committed corpus in
# Fuzz/corpus/TARGET is read only; what libFuzzer adds goes to a working
# corpus under .build-fuzz/corpus/TARGET, kept between runs. A crash, a
# sanitizer report or a broken oracle is saved under .build-fuzz/crashes/
# and fails the run; move a fixed crash into Fuzz/corpus/TARGET/regressions/
# so the tests replay it from then on.
#
#   scripts/fuzz.sh                       every target, FUZZ_SECONDS each (default 300)
#   scripts/fuzz.sh ring session          the named targets
#   FUZZ_SECONDS=20 scripts/fuzz.sh       the short run make test does
#   scripts/fuzz.sh --seeds               rewrite the seed files in Fuzz/corpus
#   FUZZ_REPORT=FILE                      append one line of statistics per target to FILE
#
# On two cores a first build takes about two minutes.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$PATH:/opt/swift/usr/bin"
seconds=${FUZZ_SECONDS:-300}
scratch="$root/.build-fuzz"

if [[ ${1:-} == --seeds ]]; then
    swift build --product securechannel-fuzz
    .build/debug/securechannel-fuzz seeds Fuzz/corpus
    exit 0
fi

swift build --scratch-path "$scratch" -c release --product securechannel-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING \
    -Xlinker --undefined=LLVMFuzzerRunDriver -Xlinker --export-dynamic
binary="$scratch/release/securechannel-fuzz"

if (($# > 0)); then targets=("$@"); else
    targets=(ring session descriptor noise daemon services agent-config policy mux-frames)
fi

# symbolize=0: a report prints raw frames at once (symbolizing a Swift stack
# can take minutes); detect_leaks=0: the fuzz process keeps a daemon and
# key material for its whole life on purpose.
export ASAN_OPTIONS="symbolize=0:detect_leaks=0:abort_on_error=1:handle_abort=1"
failed=0
for target in "${targets[@]}"; do
    [[ -d Fuzz/corpus/$target ]] || { echo "fuzz: no corpus for '$target' in Fuzz/corpus" >&2; exit 2; }
    work="$scratch/corpus/$target"
    crashes="$scratch/crashes/$target"
    mkdir -p "$work" "$crashes"
    log="$scratch/$target.log"
    seeds=("Fuzz/corpus/$target")
    [[ -d Fuzz/corpus/$target/regressions ]] && seeds+=("Fuzz/corpus/$target/regressions")
    # Scripts (session, daemon) need room from the start: libFuzzer's length
    # control would otherwise keep them near the seeds' size for many runs.
    extra=()
    [[ $target == session || $target == daemon ]] && extra=(-len_control=0 -max_len=2048)
    # -timeout: one input may take at most 10 s (a hang is a failure);
    # the outer limit kills a process that outlives its budget by a minute.
    set +e
    FUZZ_TARGET=$target timeout -s KILL $((seconds + 60)) "$binary" "$work" "${seeds[@]}" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=8192 \
        -print_final_stats=1 -artifact_prefix="$crashes/" "${extra[@]}" >"$log" 2>&1
    status=$?
    set -e
    stats=$(grep -E '^#[0-9]+.*(DONE|cov:)' "$log" | tail -1 || true)
    runs=$(grep -E '^stat::number_of_executed_units:' "$log" | awk '{print $2}' || true)
    corpus=$(find "$work" -type f | wc -l)
    if ((status != 0)); then
        failed=1
        echo "fuzz: $target FAILED (exit $status); log $log, inputs in $crashes"
        grep -E 'ERROR: AddressSanitizer|oracle violated|Fatal error|deadly signal|timeout' "$log" | head -5 || true
    else
        echo "fuzz: $target ok: ${runs:-?} runs in ${seconds}s; $stats; working corpus $corpus"
    fi
    if [[ -n ${FUZZ_REPORT:-} ]]; then
        echo "$target|$status|${runs:-?}|$seconds|$stats|$corpus" >>"$FUZZ_REPORT"
    fi
done
exit $failed
