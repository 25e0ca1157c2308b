#!/usr/bin/env bash
# The SecureChannel, SimPlatform and SimDaemon suites under AddressSanitizer
# and ThreadSanitizer (docs/SECURITY.md, "Sanitizers"). Not part of make test:
# each sanitizer needs a build of its own and the runs are several times
# slower than a normal one.
#
#   scripts/sanitize.sh                       both sanitizers, address first
#   SANITIZERS=thread scripts/sanitize.sh     one of them
#
# Each sanitizer builds into a scratch path of its own (.build-asan,
# .build-tsan) so the normal .build is left alone and a second run only
# rebuilds what changed. The suites run serially (--no-parallel), as in make
# test: the spin tests need both cores.
#
# Every process the tests start (the simulator daemon, guest processes,
# chanctl) is built with the same sanitizer and inherits its options, and
# every report goes to a file under SCRATCH/sanitizer-reports (log_path): a
# report from a background daemon would otherwise be lost in a pipe. The run
# fails if the tests fail or if any report file was written.
#
# Exceptions, each narrow and explained in docs/SECURITY.md and beside the
# suppression itself:
#   - SECURE_CHANNEL_SANITIZER tells the tests a sanitizer runs: the
#     allocation check (alloc-check interposes malloc, which the sanitizer's
#     runtime must own) is skipped.
#   - The guest-process test that expects a guest to die of SIGSEGV runs in
#     an invocation of its own with the sanitizer's SEGV handler off
#     (handle_segv=0) and the Swift runtime's backtracer off
#     (SWIFT_BACKTRACE=enable=no): either handler turns the expected signal
#     into a report and exit status 1, and the backtracer's memory reader
#     copies whole stack pages, redzones included, which ASan reports.
#   - scripts/lsan.supp: two leaks in XCTest's own runner (no suite here uses
#     XCTest; swift test still starts its runner).
#   - scripts/tsan.supp: accesses inside Mutex-protected critical sections
#     of MessageIteration, ordered by a lock hand-over TSan cannot see.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$PATH:/opt/swift/usr/bin"

sanitizers=${SANITIZERS:-address thread}
# Test IDs are Module.Type/function(); anchor on the module names.
suites='^(SecureChannelTests|SimPlatformTests|SimDaemonTests)\.'
# The one test that needs the SEGV handlers off (see above).
segv_test='^SimDaemonTests\.GuestProcessTests/mprotectTwoProcesses\(\)'

# Reports written by any process of the run; fails the run if there are any.
check_reports() {
    local dir=$1 name=$2
    if compgen -G "$dir/*" >/dev/null; then
        echo "sanitize: $name reports in $dir:" >&2
        cat "$dir"/* >&2
        return 1
    fi
    echo "sanitize: $name: no reports"
}

# run SANITIZER SCRATCH OPTIONS-VARIABLE OPTIONS: build, the suites, the SEGV
# test alone, then the report check.
run() {
    local sanitizer=$1 scratch=$2 variable=$3 options=$4
    local reports="$scratch/sanitizer-reports" status=0
    swift build --build-tests --sanitize="$sanitizer" --scratch-path "$scratch"
    rm -rf "$reports" && mkdir -p "$reports"
    options="$options:log_path=$reports/${sanitizer}"
    env SECURE_CHANNEL_SANITIZER="$sanitizer" "$variable=$options" \
        swift test --skip-build --no-parallel --sanitize="$sanitizer" --scratch-path "$scratch" \
        --filter "$suites" --skip "$segv_test" || status=1
    # The guest process must die of the SIGSEGV itself: the test checks the
    # signal it died of.
    env SECURE_CHANNEL_SANITIZER="$sanitizer" "$variable=$options:handle_segv=0" SWIFT_BACKTRACE=enable=no \
        swift test --skip-build --no-parallel --sanitize="$sanitizer" --scratch-path "$scratch" \
        --filter "$segv_test" || status=1
    check_reports "$reports" "$sanitizer" || status=1
    return $status
}

run_address() {
    # Leak detection is on by default on Linux; the suppressions cover
    # XCTest's runner and Foundation's Process.run.
    LSAN_OPTIONS="suppressions=$root/scripts/lsan.supp:print_suppressions=0" \
        run address "$root/.build-asan" ASAN_OPTIONS "detect_leaks=1"
}

run_thread() {
    run thread "$root/.build-tsan" TSAN_OPTIONS "suppressions=$root/scripts/tsan.supp:print_suppressions=0"
}

failed=0
for sanitizer in $sanitizers; do
    start=$SECONDS
    case $sanitizer in
        address) run_address || failed=1 ;;
        thread) run_thread || failed=1 ;;
        *) echo "sanitize: unknown sanitizer '$sanitizer' (address or thread)" >&2; exit 2 ;;
    esac
    echo "sanitize: $sanitizer took $((SECONDS - start)) s"
done
exit $failed
