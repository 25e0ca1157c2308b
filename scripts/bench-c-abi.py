#!/usr/bin/env python3
"""The C interface's latency beside the Swift agent's, in one run.

Builds (release) chanctl, guest-agent and libsecurechannel, installs the
library into .build-cabi-bench/root with scripts/install-lib.sh, builds
examples/c against it through pkg-config, starts a private simulator with
two domains and one `guest-agent run --wait spin` echo agent, then, for
each mode and round, pings it once with `guest-agent ping` and once with
`sc_ping` (the order alternating between rounds), each on a fresh channel,
64-byte messages, spin. Prints every round's p50 and, per mode, the median
of the rounds and the ratio sc_ping / guest-agent ping; --markdown prints
the table docs/BENCHMARKS.md keeps.

    python3 scripts/bench-c-abi.py [--rounds 9] [--count 20000] [--no-build] [--markdown]
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRATCH = os.path.join(ROOT, ".build-cabi-bench")
RELEASE = ["-c", "release", "-Xswiftc", "-enforce-exclusivity=unchecked"]


def run(arguments, **kwargs):
    """Runs a command to completion (at most 10 minutes); its output on failure."""
    result = subprocess.run(arguments, capture_output=True, text=True, timeout=600, **kwargs)
    if result.returncode != 0:
        sys.exit(f"bench-c-abi: {' '.join(arguments)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


def build(swift):
    for product in ["chanctl", "guest-agent", "securechannel", "securechannel-static"]:
        run([swift, "build", *RELEASE, "--product", product], cwd=ROOT)


def install():
    """The library into SCRATCH/root, the examples into SCRATCH; returns the environment to use them."""
    shutil.rmtree(SCRATCH, ignore_errors=True)
    destdir = os.path.join(SCRATCH, "root")
    run([os.path.join(ROOT, "scripts/install-lib.sh"), os.path.join(ROOT, ".build/release")],
        env={**os.environ, "DESTDIR": destdir, "PREFIX": "/usr/local"})
    libdir = destdir + "/usr/local/lib"
    env = {**os.environ, "PKG_CONFIG_PATH": libdir + "/pkgconfig", "PKG_CONFIG": "pkg-config --define-prefix",
           "LD_LIBRARY_PATH": libdir}
    run(["make", "-s", "-C", os.path.join(ROOT, "examples/c"), f"OUT={SCRATCH}"], env=env)
    return env


class World:
    """A private simulator with domains left and right, keys, a policy rule and an echo agent on right."""

    def __init__(self, binaries):
        self.binaries = binaries
        self.tmp = tempfile.mkdtemp(prefix="bench-c-abi-")
        self.state = os.path.join(self.tmp, "state")
        self.chanctl("sim", "start")
        for domain in ["left", "right"]:
            self.chanctl("domain", "create", domain, "--altp2m", "external")
            key = json.loads(run([self.agent, "keygen", "--out", self.key(domain), "--json"]))
            self.chanctl("keys", "register", domain, key["public_key"])
        self.chanctl("policy", "allow", "left", "right", "--modes", "encrypted,isolated")
        # A fresh channel per ping: four per round.
        self.chanctl("policy", "limit", "--max-channels-per-domain", "4096")
        self.host_key = self.chanctl("keys", "show")["public_key"]
        self.echo = subprocess.Popen([self.agent, "run", "--wait", "spin", *self.options("right")],
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.tmp, "run.err"), "w"))

    @property
    def agent(self):
        return os.path.join(self.binaries, "guest-agent")

    def key(self, domain):
        return os.path.join(self.tmp, domain + ".key")

    def options(self, domain):
        return ["--domain", domain, "--key", self.key(domain), "--host-key", self.host_key, "--state-dir", self.state]

    def chanctl(self, *arguments):
        return json.loads(run([os.path.join(self.binaries, "chanctl"), *arguments, "--state-dir", self.state, "--json"]))

    def close(self):
        if self.echo.poll() is None:
            self.echo.send_signal(signal.SIGTERM)
            try:
                self.echo.wait(10)
            except subprocess.TimeoutExpired:
                self.echo.kill()
                self.echo.wait()
        subprocess.run([os.path.join(self.binaries, "chanctl"), "sim", "stop", "--state-dir", self.state],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.tmp, ignore_errors=True)


def ping(world, tool, channel, count, env):
    common = ["--channel", channel, "--count", str(count), "--size", "64", "--wait", "spin", "--json",
              *world.options("left")]
    if tool == "sc_ping":
        output = run([os.path.join(SCRATCH, "sc_ping"), *common], env=env)
    else:
        output = run([world.agent, "ping", *common])
    return json.loads(output)["p50_ns"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="at most 1000")
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--no-build", action="store_true", help="use the release build already there")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    swift = shutil.which("swift") or "/opt/swift/usr/bin/swift"
    if not args.no_build:
        build(swift)
    env = install()
    world = World(os.path.join(ROOT, ".build/release"))
    p50 = {}
    try:
        for round in range(args.rounds):
            for mode in ["encrypted", "isolated"]:
                tools = ["guest-agent ping", "sc_ping"]
                for tool in tools if round % 2 == 0 else reversed(tools):
                    channel = f"{'c' if tool == 'sc_ping' else 'swift'}-{mode}-{round}"
                    world.chanctl("channel", "create", channel, "--between", "left", "right", "--pages", "4", "--mode", mode)
                    value = ping(world, tool, channel, args.count, env)
                    p50.setdefault((mode, tool), []).append(value)
                    print(f"round {round + 1}: {mode:9} {tool:16} p50 {value} ns", file=sys.stderr)
    finally:
        world.close()
    rows = []
    for mode in ["encrypted", "isolated"]:
        swift_p50 = statistics.median(p50[(mode, "guest-agent ping")])
        c_p50 = statistics.median(p50[(mode, "sc_ping")])
        rows.append((mode, swift_p50, c_p50, c_p50 / swift_p50))
    if args.markdown:
        print("| 64 B round trip, spin | guest-agent ping p50 | sc_ping p50 (C, libsecurechannel.so) | ratio |")
        print("|---|---:|---:|---:|")
        for mode, swift_p50, c_p50, ratio in rows:
            print(f"| {mode} | {swift_p50 / 1000:.2f} µs | {c_p50 / 1000:.2f} µs | {ratio:.2f} |")
    else:
        for mode, swift_p50, c_p50, ratio in rows:
            print(f"{mode}: guest-agent ping p50 {swift_p50:.0f} ns, sc_ping p50 {c_p50:.0f} ns, ratio {ratio:.3f}")
    print("per round (ns): " + json.dumps({f"{m}, {t}": v for (m, t), v in p50.items()}), file=sys.stderr)


if __name__ == "__main__":
    main()
