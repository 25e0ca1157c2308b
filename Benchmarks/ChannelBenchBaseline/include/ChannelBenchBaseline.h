// Baselines for the channel benchmark, written in C so they show the physical
// limits and the usual alternatives without any Swift cost.
//
// Every two-sided baseline runs as two processes, like two guests would: the
// caller forks a child (the echo or writer side) pinned to one CPU, and
// measures in the calling thread pinned to the other (restored on return).
// Shared memory is an anonymous MAP_SHARED mapping made before the fork. The
// child runs only C code and ends with _exit(); it is always reaped, also on
// errors. No wait is unbounded: 10 s without progress gives ETIMEDOUT, a dead
// child ECHILD. Bad arguments give EINVAL, AES-GCM without hardware ENOTSUP.
#ifndef SECURE_CHANNEL_CHANNEL_BENCH_BASELINE_H
#define SECURE_CHANNEL_CHANNEL_BENCH_BASELINE_H
#include <stddef.h>
#include <stdint.h>

/// The AEAD a ring baseline applies per message (libsodium, counter nonces).
enum baseline_aead { BASELINE_AEAD_NONE = 0, BASELINE_AEAD_CHACHAPOLY = 1, BASELINE_AEAD_AESGCM = 2 };
/// How a ring reader waits: spin on the index, or announce "waiting" in a shared flag and futex_wait (the writer futex_wakes only when the flag is set: the same protocol SecureChannel's block wait uses).
enum baseline_wait { BASELINE_WAIT_SPIN = 0, BASELINE_WAIT_FUTEX = 1 };

// Latency: `warmup` untimed round trips, then `count` timed ones; samples[i] = round-trip ns (CLOCK_MONOTONIC). 0 on success, -1 with errno.

/// One shared cache line bounced between the two processes (the parent
/// writes an odd value, the child answers with the next even one): the
/// physical floor of any shared-memory round trip.
int baseline_cacheline_pingpong(int cpu_ping, int cpu_echo, size_t warmup, size_t count, uint64_t *samples);

/// An SPSC ring of `ring_bytes` (a power of two) per direction: 16-byte frame
/// headers, copy in, copy out to private memory; with an AEAD each message is
/// sealed into the ring and opened from the private copy, and the echo opens
/// and re-seals. A frame larger than ring_bytes / 2 is EINVAL.
int baseline_ring_pingpong(int cpu_ping, int cpu_echo, size_t size, enum baseline_aead aead, enum baseline_wait wait,
                           size_t ring_bytes, size_t warmup, size_t count, uint64_t *samples);

/// Two pipes, one per direction. Pipes have no receive timeout, so both ends
/// are non-blocking and every wait is a poll() with a deadline.
int baseline_pipe_pingpong(int cpu_ping, int cpu_echo, size_t size, size_t warmup, size_t count, uint64_t *samples);

/// socketpair(AF_UNIX, SOCK_STREAM): blocking reads and writes (with
/// SO_RCVTIMEO/SO_SNDTIMEO), looping until a whole message has moved.
int baseline_unix_stream_pingpong(int cpu_ping, int cpu_echo, size_t size, size_t warmup, size_t count, uint64_t *samples);

/// socketpair(AF_UNIX, SOCK_SEQPACKET): one call sends or receives one whole
/// message; anything shorter is EPROTO.
int baseline_unix_seqpacket_pingpong(int cpu_ping, int cpu_echo, size_t size, size_t warmup, size_t count, uint64_t *samples);

/// TCP over 127.0.0.1: the parent listens on an ephemeral port before the
/// fork, the child connects; TCP_NODELAY on both ends, blocking full reads.
int baseline_tcp_loopback_pingpong(int cpu_ping, int cpu_echo, size_t size, size_t warmup, size_t count, uint64_t *samples);

// Throughput, one way: the child writes `total` bytes in messages of `size` bytes through a ring of ring_bytes (aead NONE = a plain memcpy ring; else each message sealed by the writer, copied out and opened by the reader, as SecureChannel does); returns bytes per second as the reader (parent) sees them from its first message to its last, or -1 with errno.

/// The reader's clock starts once the first message has arrived, so the
/// figure covers total / size - 1 messages (at least two are needed). Both
/// sides spin; the writer waits for room when the ring is full.
double baseline_ring_stream(int cpu_writer, int cpu_reader, size_t size, enum baseline_aead aead, size_t ring_bytes, size_t total);

// Single-core AEAD throughput: seals `total` bytes in messages of `size` bytes (counter nonces, one key) in this process; bytes per second, or -1.

/// No fork and no pinning: the ceiling a one-way encrypted stream could reach
/// if sealing were its only cost. aead NONE is EINVAL.
double baseline_aead_throughput(size_t size, enum baseline_aead aead, size_t total);

#endif
