// Forwarders for Linux interfaces that need _GNU_SOURCE, which Swift's Glibc
// module is not built with. Keep this file small: logic belongs in Swift.
#ifndef _GNU_SOURCE
#error "CPlatform must be compiled with _GNU_SOURCE (see Package.swift)"
#endif

#include "CPlatform.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

const unsigned int CPLATFORM_MFD_CLOEXEC = MFD_CLOEXEC;
const unsigned int CPLATFORM_MFD_ALLOW_SEALING = MFD_ALLOW_SEALING;

uint64_t cplatform_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t cplatform_rdtscp(void) {
#if defined(__x86_64__)
    uint32_t lo, hi, aux;
    __asm__ __volatile__("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
    return ((uint64_t)hi << 32) | lo;
#else
    return cplatform_monotonic_ns();
#endif
}

int cplatform_memfd_create(const char *name, unsigned int flags) {
    return memfd_create(name, flags);
}

int cplatform_futex_wait(volatile uint32_t *word, uint32_t expected, int64_t timeout_ns) {
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        tsp = &ts;
    }
    return (int)syscall(SYS_futex, word, FUTEX_WAIT, expected, tsp, NULL, 0);
}

int cplatform_futex_wake(volatile uint32_t *word, int count) {
    return (int)syscall(SYS_futex, word, FUTEX_WAKE, count, NULL, NULL, 0);
}

int cplatform_pin_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set);
}

int cplatform_available_cpus(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
    return CPU_COUNT(&set);
}
