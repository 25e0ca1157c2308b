#!/usr/bin/env bash
# Model-checks the ring and wake-up protocol (model/ring.pml) with spin.
#
# Every check builds its own verifier (spin -a, gcc) in a temporary
# directory and runs it exhaustively. The correct model must show no error;
# each broken variant (the consumer index published with a release store as
# before da01c64, and the other deliberate breakages) must be caught, which
# proves the checks can fail. Prints one line per check and exits non-zero
# on any unexpected result. See docs/PROTOCOL.md, "Model-checked protocol".
#
#   scripts/model.sh            all checks
#   scripts/model.sh -k         keep the working directory (trails, pan output)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
model="$root/model/ring.pml"
keep=0
[[ ${1:-} == -k ]] && keep=1

for tool in spin gcc; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "model: $tool is missing (scripts/setup.sh installs spin; gcc comes with build-essential)" >&2
        exit 1
    }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/ring-model.XXXXXX")
if ((keep)); then
    echo "model: working directory $work"
else
    trap 'rm -rf "$work"' EXIT
fi

total_start=$(date +%s.%N)
jobs_max=$(nproc 2>/dev/null || echo 2)
names=()

# run_check NAME EXPECT PROPERTY [spin -D flags...]: writes NAME/result.
#   EXPECT   none (no error), end (invalid end state), cycle (acceptance
#            cycle), assert (assertion violation)
#   PROPERTY safety (assertions and end states, no claim), or the name of
#            an ltl formula of the model (checked under weak fairness)
run_check() {
    local name=$1 expect=$2 property=$3
    shift 3
    local dir="$work/$name"
    local result="$dir/result"
    cp "$model" "$dir/ring.pml"
    local gccflags panflags
    if [[ $property == safety ]]; then
        gccflags=(-DSAFETY -DNOCLAIM -DCOLLAPSE)
        panflags=()
    else
        gccflags=(-DNFAIR=3 -DCOLLAPSE)
        panflags=(-a -f -N "$property")
    fi
    # The large state spaces are worth an optimised verifier; the small
    # ones (the expected violations) are not worth the compile time.
    if [[ $expect == none ]]; then gccflags+=(-O1); else gccflags+=(-O0); fi
    local start end
    start=$(date +%s.%N)
    if ! (cd "$dir" && spin "$@" -a ring.pml >spin.out 2>&1); then
        { echo "FAIL  $name: spin -a failed:"; sed 's/^/      /' "$dir/spin.out"; } >"$result"
        return
    fi
    if ! (cd "$dir" && gcc -w "${gccflags[@]}" -o pan pan.c >gcc.out 2>&1); then
        { echo "FAIL  $name: gcc failed:"; sed 's/^/      /' "$dir/gcc.out"; } >"$result"
        return
    fi
    (cd "$dir" && ./pan -m200000 "${panflags[@]}" >pan.out 2>&1) || true
    end=$(date +%s.%N)
    local out="$dir/pan.out"
    local errors states seconds found first
    errors=$(grep -Eo 'errors: [0-9]+' "$out" | awk '{print $2}' || true)
    states=$(awk '/states, stored/ {print $1; exit}' "$out")
    seconds=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.2f", b - a}')
    first=$(grep -E '^pan:1: ' "$out" | head -1 | sed 's/^pan:1: //; s/ *(at depth.*//' || true)
    case "$first" in
        "invalid end state"*) found=end ;;
        "acceptance cycle"*) found=cycle ;;
        "assertion violated"*) found=assert ;;
        "") if [[ ${errors:-} == 0 ]]; then found=none; else found=unknown; fi ;;
        *) found=unknown ;;
    esac
    if grep -q 'max search depth too small' "$out"; then
        found=depth
    fi
    local summary
    summary=$(printf '%-25s %-9s %-46s %8s states %6ss' "$name" "$property" "$*" "${states:-?}" "$seconds")
    if [[ $found == "$expect" ]]; then
        if [[ $expect == none ]]; then
            echo "ok    $summary  errors: 0" >"$result"
        else
            echo "ok    $summary  caught: $first" >"$result"
        fi
    else
        { echo "FAIL  $summary  expected '$expect', got '$found'"; sed 's/^/      /' "$out" | head -40; } >"$result"
    fi
}

# check ...: runs run_check in the background, at most one per core.
check() {
    mkdir -p "$work/$1"
    names+=("$1")
    while (($(jobs -rp | wc -l) >= jobs_max)); do wait -n || true; done
    run_check "$@" &
}

echo "model: $(spin -V | awk '{print $1, $3}'), $model, $jobs_max at a time"

# The protocol as the code implements it, sleeps that never time out: a lost
# wake-up would leave a side asleep for ever (safety: invalid end state;
# woken: a side asleep on a word that changed is eventually woken).
check stream                 none safety   -DSCRIPT=STREAM -DSIZE=2 -DNMSG=3
check stream-woken           none woken    -DSCRIPT=STREAM -DSIZE=2 -DNMSG=3
check stream-3slots          none safety   -DSCRIPT=STREAM -DSIZE=3 -DNMSG=4
check half-close             none safety   -DSCRIPT=HALF -DSIZE=2 -DNMSG=2
check half-close-woken       none woken    -DSCRIPT=HALF -DSIZE=2 -DNMSG=2
check pingpong               none safety   -DSCRIPT=PINGPONG -DSIZE=2 -DNMSG=3
check pingpong-woken         none woken    -DSCRIPT=PINGPONG -DSIZE=2 -DNMSG=3
check oneway                 none safety   -DONEWAY -DSIZE=2 -DNMSG=3
check oneway-woken           none woken    -DONEWAY -DSIZE=2 -DNMSG=3
check oneway-3slots          none safety   -DONEWAY -DSIZE=3 -DNMSG=4
check duplex-close-woken     none woken    -DSCRIPT=DUPLEX -DSIZE=2 -DNMSG=1

# With the 10 ms bound on every sleep: both sides always finish (weak
# fairness), including two sides closing at once with data left unread,
# and a one-way reader behind a .spin writer (which never wakes it).
check stream-timeout         none finishes -DTIMEOUT -DSCRIPT=STREAM -DSIZE=2 -DNMSG=2
check half-close-timeout     none finishes -DTIMEOUT -DSCRIPT=HALF -DSIZE=2 -DNMSG=1
check duplex-close-timeout   none finishes -DTIMEOUT -DSCRIPT=DUPLEX -DSIZE=2 -DNMSG=1
check oneway-timeout         none finishes -DTIMEOUT -DONEWAY -DSIZE=2 -DNMSG=2
check oneway-spin-writer     none finishes -DTIMEOUT -DONEWAY -DWAIT_A=SPIN -DSIZE=2 -DNMSG=2
# A reader that reads one message and closes: the writer's blocked send
# (2 slots, 3 messages) or its flush (3 slots, 2 messages) ends in peerClosed.
check quitter-send-timeout   none finishes -DTIMEOUT -DSCRIPT=QUITTER -DSIZE=2 -DNMSG=3
check quitter-flush-timeout  none finishes -DTIMEOUT -DSCRIPT=QUITTER -DSIZE=3 -DNMSG=2

# What the 10 ms bound is needed for (no time-outs: expected to stall).
# close() sets stoppedReading without waking a peer that sleeps for room,
# and a notify cannot help: the futex word (the consumer index) does not
# change, so a notify that comes before the sleep is lost.
check duplex-close-no-timeout end safety   -DSCRIPT=DUPLEX -DSIZE=2 -DNMSG=1
check quitter-no-timeout     end   safety  -DSCRIPT=QUITTER -DSIZE=2 -DNMSG=3
check duplex-close-notify    end safety    -DSCRIPT=DUPLEX -DSIZE=2 -DNMSG=1 -DCLOSE_WAKES
check oneway-spin-no-timeout end safety    -DONEWAY -DWAIT_A=SPIN -DSIZE=2 -DNMSG=2

# Broken variants: each must be caught.
# The bug fixed in da01c64: the consumer index published with a release
# store, which waits in the store buffer while the consumer reads the
# producer's waiting flag.
check old-release-consumer   end   safety  -DRELEASE_CONSUMER -DSCRIPT=STREAM -DSIZE=2 -DNMSG=3
check old-release-consumer-w cycle woken   -DRELEASE_CONSUMER -DSCRIPT=STREAM -DSIZE=2 -DNMSG=3
check oneway-release-consumer end  safety  -DRELEASE_CONSUMER -DONEWAY -DSIZE=2 -DNMSG=3
check release-producer       end   safety  -DRELEASE_PRODUCER -DSCRIPT=STREAM -DSIZE=2 -DNMSG=3
# The hang fixed in da01c64: a wait for room that re-reads the consumer
# index on entry instead of using the value reserve saw; it loops even with
# the 10 ms re-check.
check old-space-observed     cycle finishes -DOLD_SPACE_OBSERVED -DTIMEOUT -DSCRIPT=STREAM -DSIZE=2 -DNMSG=3
# A reader that reads the wake word after the poll that found the ring
# empty; a side that sleeps without setting its waiting bit.
check late-observed          end   safety  -DLATE_OBSERVED -DSCRIPT=STREAM -DSIZE=2 -DNMSG=3
check no-announce            end   safety  -DNO_ANNOUNCE -DSCRIPT=STREAM -DSIZE=2 -DNMSG=3

wait
failures=0
for name in "${names[@]}"; do
    if [[ -f $work/$name/result ]]; then
        cat "$work/$name/result"
        grep -q '^FAIL' "$work/$name/result" && failures=$((failures + 1))
    else
        echo "FAIL  $name: no result"
        failures=$((failures + 1))
    fi
done
total_end=$(date +%s.%N)
elapsed=$(awk -v a="$total_start" -v b="$total_end" 'BEGIN {printf "%.1f", b - a}')
if ((failures)); then
    echo "model: $failures of ${#names[@]} checks FAILED (${elapsed}s)"
    exit 1
fi
echo "model: all ${#names[@]} checks as expected (${elapsed}s)"
