// A counting allocator for the data-path allocation check. glibc exports its
// allocator under __libc_* names, so these definitions can forward without
// dlsym (which itself allocates) and without recursion.
#include "AllocationCounter.h"
#include <errno.h>
#include <stddef.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static uint64_t allocations;
static uint64_t frees;

static inline void count_allocation(void) { __atomic_fetch_add(&allocations, 1, __ATOMIC_RELAXED); }

uint64_t allocation_counter_allocations(void) { return __atomic_load_n(&allocations, __ATOMIC_RELAXED); }
uint64_t allocation_counter_frees(void) { return __atomic_load_n(&frees, __ATOMIC_RELAXED); }

void *malloc(size_t size) { count_allocation(); return __libc_malloc(size); }
void *calloc(size_t n, size_t size) { count_allocation(); return __libc_calloc(n, size); }
void *realloc(void *p, size_t size) { count_allocation(); return __libc_realloc(p, size); }
void *memalign(size_t alignment, size_t size) { count_allocation(); return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) { count_allocation(); return __libc_memalign(alignment, size); }
int posix_memalign(void **out, size_t alignment, size_t size) {
    count_allocation();
    void *p = __libc_memalign(alignment, size);
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
}
void free(void *p) {
    if (p != NULL) __atomic_fetch_add(&frees, 1, __ATOMIC_RELAXED);
    __libc_free(p);
}
