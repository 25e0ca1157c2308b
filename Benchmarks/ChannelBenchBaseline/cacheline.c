// One cache line bounced between two processes: the floor under every
// shared-memory round trip, since any ring needs at least this much traffic.
#include "common.h"

#include <errno.h>
#include <stdatomic.h>
#include <sys/mman.h>

struct line_job {
    _Atomic uint64_t *word;
    size_t warmup, count;
    uint64_t *samples;
};

static int wait_for(_Atomic uint64_t *word, uint64_t value, struct watch *w) {
    watch_reset(w);
    while (atomic_load_explicit(word, memory_order_acquire) != value) {
        if (watch_spin(w) < 0) return atomic_load_explicit(word, memory_order_acquire) == value ? 0 : -1;
    }
    return 0;
}

static int line_ping(void *ctx, const struct side *side) {
    struct line_job *j = ctx;
    struct watch w;
    watch_init(&w, side);
    for (uint64_t i = 1; i <= j->warmup + j->count; i++) {
        uint64_t start = now_ns();
        atomic_store_explicit(j->word, 2 * i - 1, memory_order_release);
        if (wait_for(j->word, 2 * i, &w) < 0) return -1;
        if (i > j->warmup) j->samples[i - 1 - j->warmup] = now_ns() - start;
    }
    return 0;
}

static int line_echo(void *ctx, const struct side *side) {
    struct line_job *j = ctx;
    struct watch w;
    watch_init(&w, side);
    for (uint64_t i = 1; i <= j->warmup + j->count; i++) {
        if (wait_for(j->word, 2 * i - 1, &w) < 0) return -1;
        atomic_store_explicit(j->word, 2 * i, memory_order_release);
    }
    return 0;
}

int baseline_cacheline_pingpong(int cpu_ping, int cpu_echo, size_t warmup, size_t count, uint64_t *samples) {
    if (count > 0 && samples == NULL) {
        errno = EINVAL;
        return -1;
    }
    size_t bytes = 4096;
    _Atomic uint64_t *word = shared_map(bytes);
    if (word == NULL) return -1;
    struct line_job job = { word, warmup, count, samples };
    int rc = run_two_processes(cpu_ping, cpu_echo, line_ping, line_echo, &job);
    int err = errno;
    munmap(word, bytes);
    errno = err;
    return rc;
}
