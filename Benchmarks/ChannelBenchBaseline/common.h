// What the baseline files share: the clock, the two-process runner, the
// deadline every wait carries, and the AEAD helpers. Private to this target.
#ifndef SECURE_CHANNEL_BASELINE_COMMON_H
#define SECURE_CHANNEL_BASELINE_COMMON_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ChannelBenchBaseline.h"

#include <sched.h>
#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/// How long any wait may go without progress before the run is abandoned.
#define BASELINE_TIMEOUT_NS (10ull * 1000000000ull)
/// Both AEADs append a 16-byte tag.
#define BASELINE_TAG_BYTES 16u

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__)
    __asm__ __volatile__("pause" ::: "memory");
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

// ---- two processes ----------------------------------------------------------

/// The forked child as the parent tracks it.
struct peer {
    pid_t pid;
    bool reaped;
    int status;          // from waitpid, valid once reaped (-1: reaped elsewhere)
    uint64_t checked_at; // last liveness check, to keep waitpid off the fast path
};

/// What each side of a run is told: the peer to watch (NULL in the child,
/// whose parent's death kills it) and whether both sides share one CPU.
struct side {
    struct peer *peer;
    bool shared_cpu;
};

/// One side's work: 0, or -1 with errno. In the child it must stay in C and
/// must not allocate (the fork may have copied another thread's locks).
typedef int (*side_fn)(void *ctx, const struct side *side);

/// Forks; the child pins itself to cpu_child, runs `child` and _exits with 0
/// or its errno; this thread pins itself to cpu_parent, runs `parent`, then
/// reaps the child (killing it if `parent` failed or it does not exit) and
/// restores its affinity. 0 when both sides succeeded, else -1 with errno.
int run_two_processes(int cpu_parent, int cpu_child, side_fn parent, side_fn child, void *ctx);

/// False once the child has exited (it is reaped then).
bool peer_alive(struct peer *p);

/// An anonymous MAP_SHARED mapping, populated; NULL on failure.
void *shared_map(size_t bytes);

// ---- bounded waits ------------------------------------------------------------

/// The state of one wait: when it started to look long, and whom to check.
struct watch {
    struct peer *peer;
    bool yield;
    unsigned spins;
    uint64_t since;
};

void watch_init(struct watch *w, const struct side *side);

/// Call when a wait begins: each one gets the full timeout.
static inline void watch_reset(struct watch *w) {
    w->spins = 0;
    w->since = 0;
}

/// Reads the clock: -1 with ETIMEDOUT past the deadline, ECHILD once the
/// child died. Callers re-check their condition before giving up, since the
/// child may have finished its part and exited normally.
int watch_check(struct watch *w);

/// One failed poll of a spin loop. The clock is read only every 256 spins so
/// the fast path stays a load and a pause. With one CPU for both sides the
/// peer cannot run while we spin, so hand it the CPU instead.
static inline int watch_spin(struct watch *w) {
    if (w->yield)
        sched_yield();
    else
        cpu_relax();
    if ((++w->spins & 255) == 0) return watch_check(w);
    return 0;
}

// ---- AEAD ------------------------------------------------------------------------

/// One direction's key (AES-GCM also expanded once, as a channel would).
struct cipher {
    enum baseline_aead aead;
    unsigned char key[32];
    crypto_aead_aes256gcm_state aes;
};

/// A fresh random key; ENOTSUP when AES-GCM lacks hardware support, EINVAL
/// for an unknown AEAD. Calls sodium_init, so do it before any fork.
int cipher_init(struct cipher *c, enum baseline_aead aead);

static inline size_t cipher_tag_bytes(const struct cipher *c) {
    return c->aead == BASELINE_AEAD_NONE ? 0 : BASELINE_TAG_BYTES;
}

/// Writes len + 16 bytes to `out`; the nonce is the 64-bit counter.
void cipher_seal(const struct cipher *c, uint64_t counter, unsigned char *out, const unsigned char *msg, size_t len,
                 const unsigned char *ad, size_t ad_len);

/// Opens in_len bytes (tag included) into `msg`; -1 with EBADMSG on forgery.
int cipher_open(const struct cipher *c, uint64_t counter, unsigned char *msg, const unsigned char *in, size_t in_len,
                const unsigned char *ad, size_t ad_len);

#endif
