// CPlatform: the few things Swift cannot express or cannot see on Linux.
//
// Every function here exists for a reason stated beside it; everything else
// belongs in Swift. Names carry the `cplatform_` prefix so they never clash
// with libc.
#ifndef SECURE_CHANNEL_CPLATFORM_H
#define SECURE_CHANNEL_CPLATFORM_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// --- CPU instructions -------------------------------------------------------

/// Executes VMFUNC leaf 0 (EPTP switching) to the altp2m view `view`.
/// There is no intrinsic for VMFUNC. Outside a Xen HVM guest whose vCPU had
/// `vcpu_enable_notify` this raises #UD (SIGILL): only the Xen backend calls it.
static inline void cplatform_vmfunc_switch_view(uint32_t view) {
#if defined(__x86_64__)
    __asm__ __volatile__(".byte 0x0f, 0x01, 0xd4" /* vmfunc */
                         : : "a"(0), "c"(view) : "memory");
#else
    (void)view;
    __builtin_trap();
#endif
}

/// VMFUNC leaf 0 to `view`, with a refusal reported instead of killing the
/// process: returns 1 when the switch happened, 0 when the CPU raised #UD
/// (the view is not enabled, not visible, or this is not a Xen HVM guest
/// with VMFUNC). On hardware a refused VMFUNC is #UD, which Linux delivers
/// as SIGILL; a process-wide SIGILL handler (installed on first use)
/// recognises the fault at this function's one VMFUNC instruction, resumes
/// after it and reports the refusal. A SIGILL anywhere else goes to the
/// handler that was there before (or the default action), as if ours did
/// not exist.
int cplatform_vmfunc_try(uint32_t view);

// --- Threads and CPUs -------------------------------------------------------
// Swift cannot use the CPU_SET macros, and the pinned CPU and thread
// identity must be readable on every view switch without a system call
// (a thread-local variable).

/// Pins the calling thread to the CPU it runs on now (`sched_getcpu`, then
/// `sched_setaffinity` with that one CPU) and records the CPU and the
/// thread's identity (process id << 32 | thread id) for the two readers
/// below. Returns the CPU, or -errno.
int cplatform_pin_to_current_cpu(void);

/// The CPU `cplatform_pin_to_current_cpu` pinned the calling thread to, or -1.
int cplatform_pinned_cpu(void);

/// The identity recorded when the calling thread was pinned, or 0.
uint64_t cplatform_thread_identity(void);

/// One byte read the compiler may neither drop nor merge (a "touch" that
/// makes the CPU translate the address through the current view).
static inline uint8_t cplatform_read_once(const void *address) {
    return *(const volatile uint8_t *)address;
}

/// The spin-wait hint (`pause` on x86): lowers power and avoids the memory
/// order mis-speculation penalty when a spinning loop finally sees the store.
static inline void cplatform_cpu_relax(void) {
#if defined(__x86_64__)
    __asm__ __volatile__("pause" ::: "memory");
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

/// A serialising timestamp read (`rdtscp`) for latency measurement; falls back
/// to CLOCK_MONOTONIC nanoseconds where there is no TSC.
uint64_t cplatform_rdtscp(void);

/// CLOCK_MONOTONIC in nanoseconds, without Foundation.
uint64_t cplatform_monotonic_ns(void);

/// CLOCK_MONOTONIC_COARSE in nanoseconds: the last timer tick (a few ms
/// resolution), read in a few nanoseconds; for limits measured in seconds on
/// the data path (key age), where a precise clock read per message would cost
/// more than the message.
uint64_t cplatform_monotonic_coarse_ns(void);

// --- Linux system calls Swift's Glibc module does not expose -----------------
// Glibc is imported without _GNU_SOURCE, so these need forwarders compiled with
// it (see Package.swift). Each returns -1 and sets errno on failure.

/// memfd_create(2): anonymous shared memory that can be passed over a Unix
/// socket; the simulator's machine memory lives in one.
int cplatform_memfd_create(const char *name, unsigned int flags);
extern const unsigned int CPLATFORM_MFD_CLOEXEC;
extern const unsigned int CPLATFORM_MFD_ALLOW_SEALING;

/// FUTEX_WAIT on a 32-bit word in shared memory (not the private variant: the
/// waiter and the waker are different processes). `timeout_ns` < 0 waits
/// forever. Returns 0 when woken, -1 with errno EAGAIN (value changed),
/// ETIMEDOUT or EINTR otherwise.
int cplatform_futex_wait(volatile uint32_t *word, uint32_t expected, int64_t timeout_ns);

/// FUTEX_WAKE: wakes up to `count` waiters; returns how many were woken.
int cplatform_futex_wake(volatile uint32_t *word, int count);

/// sched_setaffinity for the calling thread, so benchmarks can pin the two
/// ends of a ping-pong to different cores. Returns 0 or -1 with errno.
int cplatform_pin_to_cpu(int cpu);

/// The number of CPUs the calling thread may run on.
int cplatform_available_cpus(void);

// --- Unix-socket descriptor passing (the simulator daemon and its guests) ----
// SCM_RIGHTS needs the CMSG_* macros, which Swift cannot import (they are
// function-like macros over pointer arithmetic), and SO_PEERCRED's
// `struct ucred` is hidden without _GNU_SOURCE. The simulator daemon hands a
// guest process its memory and control-region descriptors this way.

/// sendmsg(2) of `len` bytes with `nfds` descriptors attached as one
/// SCM_RIGHTS control message (`nfds` at most 8). MSG_NOSIGNAL, so a closed
/// peer gives EPIPE instead of killing the process. Returns the bytes sent or
/// -1 with errno.
long cplatform_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds);

/// recvmsg(2) into `buf`; descriptors that arrive with the bytes (SCM_RIGHTS,
/// received MSG_CMSG_CLOEXEC) are stored in `fds` (at most `maxfds`, extra ones
/// are closed) and their count in `*nfds`. Returns the bytes received, 0 at end
/// of stream, or -1 with errno.
long cplatform_recv_with_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds);

/// The process id of the peer of a connected Unix socket (SO_PEERCRED), or -1
/// with errno. The daemon uses it to notice a guest process that died.
int cplatform_peer_pid(int sock);

/// The user id of the peer of a connected Unix socket (SO_PEERCRED) in
/// `*uid`; 0, or -1 with errno. The daemon's extensions (the grant module's
/// audit log) record who asked.
int cplatform_peer_uid(int sock, unsigned int *uid);

#ifdef __cplusplus
}
#endif

#endif
