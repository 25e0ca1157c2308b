// Baselines for the channel ping-pong benchmark, written in C so they show
// the physical limits and the usual alternatives without any Swift cost.
// Each runs two threads pinned to two CPUs (a "ping" side that measures and
// an "echo" side), does `warmup` untimed round trips, then `count` timed
// ones, and writes each round trip's duration in nanoseconds to `samples`.
// They return 0, or -1 with errno set.
#ifndef SECURE_CHANNEL_CHANNEL_BENCH_BASELINE_H
#define SECURE_CHANNEL_CHANNEL_BENCH_BASELINE_H
#include <stddef.h>
#include <stdint.h>

/// The AEAD a ring baseline applies per message (libsodium, counter nonces).
enum baseline_aead { BASELINE_AEAD_NONE = 0, BASELINE_AEAD_CHACHAPOLY = 1, BASELINE_AEAD_AESGCM = 2 };

/// One shared cache line bounced between the two CPUs: the physical floor.
int baseline_cacheline_pingpong(int cpu_ping, int cpu_echo, size_t warmup, size_t count, uint64_t *samples);

/// An SPSC ring per direction (16-byte headers, free-running indices, copy
/// in and copy out), messages of `size` bytes, optionally sealed on the way
/// in and opened from a private copy on the way out, like the channel does.
int baseline_ring_pingpong(int cpu_ping, int cpu_echo, size_t size, enum baseline_aead aead,
                           size_t warmup, size_t count, uint64_t *samples);

/// A Unix stream socket pair (blocking reads, as applications use it).
int baseline_unix_socket_pingpong(int cpu_ping, int cpu_echo, size_t size,
                                  size_t warmup, size_t count, uint64_t *samples);

/// Single-core AEAD throughput: seals `total` bytes in messages of `size`
/// bytes (counter nonces, one key), returns bytes per second, or -1.
double baseline_aead_throughput(size_t size, enum baseline_aead aead, size_t total);

#endif
