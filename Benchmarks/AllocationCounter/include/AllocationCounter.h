// Counts every heap allocation of the process it is linked into, by
// interposing malloc and friends (the executable's definitions take
// precedence over glibc's) and forwarding to glibc's own entry points.
// Only the `alloc-check` executable links it.
#ifndef SECURE_CHANNEL_ALLOCATION_COUNTER_H
#define SECURE_CHANNEL_ALLOCATION_COUNTER_H
#include <stdint.h>

/// Allocations (malloc, calloc, realloc, memalign family) since start.
uint64_t allocation_counter_allocations(void);
/// Frees since start.
uint64_t allocation_counter_frees(void);

#endif
