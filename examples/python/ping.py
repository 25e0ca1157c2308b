#!/usr/bin/env python3
"""Round trips over a channel to an echo agent (guest-agent run), from
Python through libsecurechannel (securechannel.py, ctypes).

    ping.py --domain left --key left.key --host-key HEX --channel NAME
            [--state-dir DIR] [--count 1000] [--size 64] [--wait spin] [--json]

Prints p50, p90, p99 and max of the timed round trips (the first, right
after the handshake, is not counted), or one JSON object with --json.
Exit status: 0 success, 1 failure.
"""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from securechannel import Channel, SecureChannelError, version  # noqa: E402


def percentile(sorted_samples, q):
    """Nearest rank, as sc_ping.c: the smallest sample at or above fraction q."""
    rank = min(len(sorted_samples), max(1, math.ceil(q * len(sorted_samples))))
    return sorted_samples[rank - 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--host-key", required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--state-dir")
    parser.add_argument("--backend")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--wait", default="spin")
    parser.add_argument("--timeout-ms", type=int, default=10000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    message = bytes((i * 31 + 7) & 0xFF for i in range(args.size))
    samples = []
    try:
        with Channel.open(args.channel, domain=args.domain, key_file=args.key, host_key_hex=args.host_key,
                          backend=args.backend, state_dir=args.state_dir, wait=args.wait,
                          timeout_ms=args.timeout_ms) as channel:
            for i in range(args.count + 1):
                start = time.monotonic_ns()
                channel.send(message, args.timeout_ms)
                reply = channel.recv(args.timeout_ms)
                elapsed = time.monotonic_ns() - start
                if reply != message:
                    print(f"ping.py: the echo on {args.channel} is not the message sent", file=sys.stderr)
                    return 1
                if i > 0:
                    samples.append(elapsed)
    except SecureChannelError as error:
        print(f"ping.py: {error}", file=sys.stderr)
        return 1
    samples.sort()
    stats = {q: percentile(samples, q / 100) for q in (50, 90, 99)}
    if args.json:
        print(json.dumps({"ok": True, "channel": args.channel, "count": args.count, "size": args.size,
                          "p50_ns": stats[50], "p90_ns": stats[90], "p99_ns": stats[99],
                          "max_ns": samples[-1], "version": version()}))
    else:
        print(f"channel {args.channel}: {args.count} round trips of {args.size} bytes ({version()}, Python)")
        for q in (50, 90, 99):
            print(f"  p{q}  {stats[q]} ns")
        print(f"  max  {samples[-1]} ns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
