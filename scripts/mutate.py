#!/usr/bin/env python3
"""Mutation testing of the security checks: `make mutate`.

Each mutation in scripts/mutations.toml weakens one security check (one
condition, one call) in a scratch copy of the package, rebuilds it, and runs
the test filters named for it with a time limit. A mutation must be *killed*:
some test fails by name. Anything else is a gap in the tests:

  survived        every test passed with the check weakened
  timed out       a test waited past the limit instead of failing
  crashed         the test process died without naming a failing test
  build failed    the mutated package does not compile (fix the mutation)
  does not apply  the original text is not in the file exactly once (the
                  code changed: update the mutation)

The working tree is never modified: the package (every file git knows of,
plus Package.resolved) is copied into .build-mutate/tree and built with
--scratch-path .build-mutate/build, so .build is left alone too. Unchanged
files keep their time stamps, so later runs rebuild little.

Usage: scripts/mutate.py [--only NAME ...] [--markdown FILE] [--list]
Exit status: 0 if every mutation was killed, 1 otherwise, 2 for bad usage.
"""

import argparse
import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, ".build-mutate")
TREE = os.path.join(WORK, "tree")
SCRATCH = os.path.join(WORK, "build")
LOGS = os.path.join(WORK, "logs")
MUTATIONS = os.path.join(ROOT, "scripts", "mutations.toml")
BEGIN, END = "<!-- mutate:begin -->", "<!-- mutate:end -->"
BUILD_LIMIT = 1800


def swift():
    """The swift driver: on PATH, else the project machines' /opt/swift."""
    found = shutil.which("swift")
    if found:
        return found
    fallback = "/opt/swift/usr/bin/swift"
    if os.path.exists(fallback):
        return fallback
    sys.exit("mutate: swift not found on PATH or in /opt/swift/usr/bin")


def load_mutations():
    with open(MUTATIONS, "rb") as f:
        document = tomllib.load(f)
    mutations = document.get("mutation", [])
    required = {"name", "file", "original", "replacement", "filters", "timeout"}
    names = set()
    for m in mutations:
        missing = required - m.keys()
        if missing:
            sys.exit(f"mutate: {MUTATIONS}: mutation {m.get('name', '?')!r} lacks {sorted(missing)}")
        if m["name"] in names:
            sys.exit(f"mutate: {MUTATIONS}: two mutations are called {m['name']!r}")
        names.add(m["name"])
    return mutations


def package_files():
    """Every file git knows of (tracked or new, not ignored), and Package.resolved."""
    listed = subprocess.run(["git", "-C", ROOT, "ls-files", "-co", "--exclude-standard", "-z"],
                            check=True, capture_output=True).stdout.decode().split("\0")
    files = {f for f in listed if f and os.path.isfile(os.path.join(ROOT, f))}
    if os.path.exists(os.path.join(ROOT, "Package.resolved")):
        files.add("Package.resolved")
    return files


def sync_tree():
    """Makes TREE a copy of the working tree; unchanged files are not rewritten."""
    files = package_files()
    for relative in files:
        source, target = os.path.join(ROOT, relative), os.path.join(TREE, relative)
        with open(source, "rb") as f:
            content = f.read()
        if os.path.exists(target):
            with open(target, "rb") as f:
                if f.read() == content:
                    continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(content)
        shutil.copymode(source, target)
    for directory, _, names in os.walk(TREE):
        for name in names:
            path = os.path.join(directory, name)
            if os.path.relpath(path, TREE) not in files:
                os.remove(path)


class Runner:
    """Runs commands in their own process group, killed whole on a limit or Ctrl-C."""

    def __init__(self):
        self.child = None

    def run(self, arguments, limit, log):
        started = time.monotonic()
        with open(log, "wb") as out:
            self.child = subprocess.Popen(arguments, stdout=out, stderr=subprocess.STDOUT,
                                          cwd=TREE, start_new_session=True)
            try:
                status = self.child.wait(timeout=limit)
                timed_out = False
            except subprocess.TimeoutExpired:
                self.kill()
                status, timed_out = None, True
            except BaseException:
                self.kill()   # Ctrl-C: no build or test is left running
                raise
            finally:
                self.child = None
        with open(log, "r", encoding="utf-8", errors="replace") as f:
            return status, timed_out, f.read(), time.monotonic() - started

    def kill(self):
        if self.child is None:
            return
        try:
            os.killpg(self.child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.child.wait()


FAILED = re.compile(r'^✘ Test (?!run with )(.+?) (?:with \d+ test cases? )?failed after', re.M)
ISSUE = re.compile(r'^✘ Test (.+?) recorded an issue(?: with \d+ arguments? .*?)? at (\S+?:\d+):\d+: (.*)$', re.M)
XCTEST_FAILED = re.compile(r"^Test Case '(.+?)' failed", re.M)
CRASH = re.compile(r"(Program crashed: [^*\n]+?(?= \*\*\*|$)|Exited with unexpected signal code \d+|Fatal error: [^\n]*"
                   r"|Segmentation fault|Illegal instruction)", re.M)
CRASH_SITE = re.compile(r" at (/\S+?\.swift:\d+)")


def failing_tests(output):
    """Failing tests by name, each with the file and line of its first failure."""
    issues = {}
    for name, where, message in ISSUE.findall(output):
        issues.setdefault(name, f"{os.path.basename(where.split(':')[0])}:{where.split(':')[1]}")
    names = []
    for name in FAILED.findall(output) + XCTEST_FAILED.findall(output):
        if name not in names:
            names.append(name)
    return [f"{name} ({issues[name]})" if name in issues else name for name in names]


def classify(mutation, runner, swift_path):
    """Applies one mutation to TREE, builds, runs its filters, and restores the file."""
    path = os.path.join(TREE, mutation["file"])
    if not os.path.exists(path):
        return "does not apply", f"{mutation['file']} does not exist"
    with open(path, encoding="utf-8") as f:
        pristine = f.read()
    count = pristine.count(mutation["original"])
    if count != 1:
        return "does not apply", f"the original text occurs {count} times in {mutation['file']}"
    log = os.path.join(LOGS, mutation["name"])
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(pristine.replace(mutation["original"], mutation["replacement"]))
        status, timed_out, output, _ = runner.run(
            [swift_path, "build", "--build-tests", "--scratch-path", SCRATCH], BUILD_LIMIT, log + ".build.log")
        if timed_out or status != 0:
            errors = re.findall(r"error: [^\n]*", output)
            return "build failed", errors[0] if errors else f"swift build exit {status}"
        for number, test_filter in enumerate(mutation["filters"]):
            status, timed_out, output, took = runner.run(
                [swift_path, "test", "--skip-build", "--no-parallel", "--scratch-path", SCRATCH,
                 "--filter", test_filter], mutation["timeout"], f"{log}.test{number}.log")
            failed = failing_tests(output)
            if failed:
                return "killed", "; ".join(failed[:3]) + (f"; and {len(failed) - 3} more" if len(failed) > 3 else "")
            if timed_out:
                return "timed out", f"--filter {test_filter!r} ran past {mutation['timeout']} s with no failure"
            if status != 0:
                crash = CRASH.search(output)
                if not crash:
                    return "crashed", f"--filter {test_filter!r}: exit {status}"
                # The crashed thread's first frame in Swift source, if any.
                site = CRASH_SITE.search(output, crash.end())
                where = f" in {os.path.basename(site.group(1))}" if site else ""
                what = re.sub(r" at 0x[0-9a-fA-F]+", "", crash.group(1))   # the same text every run
                return "crashed", f"--filter {test_filter!r}: {what}{where}"
            if re.search(r"Test run with 0 tests|No matching test cases were run", output):
                return "survived", f"--filter {test_filter!r} matched no test"
        return "survived", "every test passed: " + ", ".join(repr(f) for f in mutation["filters"])
    finally:
        with open(path, "w", encoding="utf-8") as f:
            f.write(pristine)


def markdown(results, elapsed):
    day = datetime.date.today().isoformat()
    lines = [f"Last run: {day}, {len(results)} mutations in {elapsed / 60:.0f} min "
             f"({sum(r[1] == 'killed' for r in results)} killed).", "",
             "| Mutation | File | Result | Detail |", "|---|---|---|---|"]
    for mutation, result, detail in results:
        cell = detail.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {mutation['name']} | {mutation['file'].split('/')[-1]} | {result} | {cell} |")
    return "\n".join(lines)


def write_markdown(file, table):
    """Writes the "Mutation testing" section, whole, between the markers (so
    other sections of the file are never touched), appending it if absent."""
    block = (f"{BEGIN}\n## Mutation testing\n\n"
             "`make mutate` (scripts/mutate.py) weakens each security check listed in\n"
             "scripts/mutations.toml in a scratch copy of the package, one at a time,\n"
             "and runs the tests named for it with a time limit. Every mutation must be\n"
             "killed by a test that fails by name; one that survives, times out or\n"
             "crashes is a gap in the tests, and one that does not apply means the code\n"
             "changed under it (update its text in scripts/mutations.toml). This section\n"
             "is written by `make mutate MUTATE_ARGS=\"--markdown docs/SECURITY.md\"`.\n\n"
             f"{table}\n{END}")
    text = open(file, encoding="utf-8").read() if os.path.exists(file) else "# Security\n"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(file, "w", encoding="utf-8") as f:
        f.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations")
    parser.add_argument("--markdown", metavar="FILE", help="write the table between the mutate markers of FILE")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    arguments = parser.parse_args()
    mutations = load_mutations()
    if arguments.list:
        for m in mutations:
            print(f"{m['name']}  ({m['file']}; {', '.join(m['filters'])})")
        return 0
    if arguments.only and arguments.markdown:
        print("mutate: --markdown records every mutation; it cannot be combined with --only", file=sys.stderr)
        return 2
    if arguments.only:
        unknown = set(arguments.only) - {m["name"] for m in mutations}
        if unknown:
            print(f"mutate: no mutation called {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        mutations = [m for m in mutations if m["name"] in arguments.only]

    swift_path = swift()
    os.makedirs(LOGS, exist_ok=True)
    runner = Runner()
    started = time.monotonic()
    results = []
    try:
        sync_tree()
        print(f"mutate: building the unmutated copy in {os.path.relpath(TREE, ROOT)} ...", flush=True)
        status, timed_out, output, took = runner.run(
            [swift_path, "build", "--build-tests", "--scratch-path", SCRATCH], BUILD_LIMIT,
            os.path.join(LOGS, "baseline.build.log"))
        if timed_out or status != 0:
            errors = re.findall(r"error: [^\n]*", output)
            print(f"mutate: the unmutated package does not build: {errors[0] if errors else status}", file=sys.stderr)
            return 1
        for mutation in mutations:
            print(f"mutate: {mutation['name']} ...", end=" ", flush=True)
            began = time.monotonic()
            result, detail = classify(mutation, runner, swift_path)
            print(f"{result} ({time.monotonic() - began:.0f} s): {detail}", flush=True)
            results.append((mutation, result, detail))
    except KeyboardInterrupt:
        runner.kill()
        print("\nmutate: interrupted; the working tree was never changed", file=sys.stderr)
        return 130
    elapsed = time.monotonic() - started

    width = max(len(m["name"]) for m, _, _ in results) if results else 0
    print(f"\n{'mutation'.ljust(width)}  {'result':<14}  detail")
    for mutation, result, detail in results:
        print(f"{mutation['name'].ljust(width)}  {result:<14}  {detail}")
    print(f"\n{len(results)} mutations, {sum(r[1] == 'killed' for r in results)} killed, in {elapsed:.0f} s; "
          f"logs in {os.path.relpath(LOGS, ROOT)}")
    if arguments.markdown:
        write_markdown(arguments.markdown, markdown(results, elapsed))
    return 0 if all(result == "killed" for _, result, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
