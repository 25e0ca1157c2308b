// Forwarders for Linux interfaces that need _GNU_SOURCE, which Swift's Glibc
// module is not built with. Keep this file small: logic belongs in Swift.
#ifndef _GNU_SOURCE
#error "CPlatform must be compiled with _GNU_SOURCE (see Package.swift)"
#endif

#include "CPlatform.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <ucontext.h>
#include <linux/futex.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
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

uint64_t cplatform_monotonic_coarse_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
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

// Descriptor passing: the CMSG_* macros are not importable into Swift.
long cplatform_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds) {
    if (nfds < 0 || nfds > 8) { errno = EINVAL; return -1; }
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    union { struct cmsghdr align; char bytes[CMSG_SPACE(8 * sizeof(int))]; } control;
    memset(&control, 0, sizeof(control));
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
        msg.msg_control = control.bytes;
        msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(cmsg), fds, (size_t)nfds * sizeof(int));
    }
    ssize_t n;
    do { n = sendmsg(sock, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return (long)n;
}

long cplatform_recv_with_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds) {
    *nfds = 0;
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    union { struct cmsghdr align; char bytes[CMSG_SPACE(8 * sizeof(int))]; } control;
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.bytes;
    msg.msg_controllen = sizeof(control.bytes);
    ssize_t n;
    do { n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg); cmsg != NULL; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
        if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int received[8];
        if (count > 8) count = 8;
        memcpy(received, CMSG_DATA(cmsg), (size_t)count * sizeof(int));
        for (int i = 0; i < count; i++) {
            if (*nfds < maxfds) fds[(*nfds)++] = received[i];
            else close(received[i]);
        }
    }
    return (long)n;
}

int cplatform_peer_pid(int sock) {
    struct ucred cred;
    socklen_t size = sizeof(cred);
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &size) != 0) return -1;
    return (int)cred.pid;
}

int cplatform_peer_uid(int sock, unsigned int *uid) {
    struct ucred cred;
    socklen_t size = sizeof(cred);
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &size) != 0) return -1;
    *uid = (unsigned int)cred.uid;
    return 0;
}

// --- VMFUNC with the refusal caught -----------------------------------------

#if defined(__x86_64__)
// The addresses of the one VMFUNC instruction of cplatform_vmfunc_try and of
// the instruction after it (labels in the asm below).
extern const char cplatform_vmfunc_site[];
extern const char cplatform_vmfunc_resume[];

static struct sigaction cplatform_previous_sigill;
static pthread_once_t cplatform_sigill_once = PTHREAD_ONCE_INIT;

static void cplatform_sigill(int signal, siginfo_t *info, void *context) {
    ucontext_t *uc = (ucontext_t *)context;
    if ((const char *)uc->uc_mcontext.gregs[REG_RIP] == cplatform_vmfunc_site) {
        // #UD at our VMFUNC: resume after it with eax = 1 ("refused").
        uc->uc_mcontext.gregs[REG_RAX] = 1;
        uc->uc_mcontext.gregs[REG_RIP] = (greg_t)cplatform_vmfunc_resume;
        return;
    }
    // Not ours: behave as the handler before us would have.
    if (cplatform_previous_sigill.sa_flags & SA_SIGINFO) {
        if (cplatform_previous_sigill.sa_sigaction != NULL) {
            cplatform_previous_sigill.sa_sigaction(signal, info, context);
            return;
        }
    } else if (cplatform_previous_sigill.sa_handler != SIG_DFL && cplatform_previous_sigill.sa_handler != SIG_IGN) {
        cplatform_previous_sigill.sa_handler(signal);
        return;
    }
    // Default action: restore it and raise again; the signal stays blocked
    // until this handler returns, then terminates the process as it would
    // have without us (a faulting instruction would fault again anyway).
    struct sigaction fallback;
    memset(&fallback, 0, sizeof fallback);
    fallback.sa_handler = SIG_DFL;
    sigemptyset(&fallback.sa_mask);
    sigaction(SIGILL, &fallback, NULL);
    raise(signal);
}

static void cplatform_install_sigill(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = cplatform_sigill;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    sigaction(SIGILL, &action, &cplatform_previous_sigill);
}

// noinline and noclone: the labels must exist exactly once.
__attribute__((noinline, noclone))
int cplatform_vmfunc_try(uint32_t view) {
    pthread_once(&cplatform_sigill_once, cplatform_install_sigill);
    uint32_t eax = 0;
    __asm__ __volatile__(".globl cplatform_vmfunc_site\n"
                         "cplatform_vmfunc_site:\n\t"
                         ".byte 0x0f, 0x01, 0xd4\n" /* vmfunc */
                         ".globl cplatform_vmfunc_resume\n"
                         "cplatform_vmfunc_resume:\n"
                         : "+a"(eax) : "c"(view) : "memory");
    return eax == 0;
}
#else
int cplatform_vmfunc_try(uint32_t view) {
    (void)view;
    return 0;
}
#endif

// --- Threads and CPUs ---------------------------------------------------------

static __thread int pinned_cpu = -1;
static __thread uint64_t thread_identity = 0;

int cplatform_pin_to_current_cpu(void) {
    int cpu = sched_getcpu();
    if (cpu < 0) return -errno;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) return -errno;
    pinned_cpu = cpu;
    thread_identity = ((uint64_t)(uint32_t)getpid() << 32) | (uint32_t)syscall(SYS_gettid);
    return cpu;
}

int cplatform_pinned_cpu(void) { return pinned_cpu; }

uint64_t cplatform_thread_identity(void) { return thread_identity; }
