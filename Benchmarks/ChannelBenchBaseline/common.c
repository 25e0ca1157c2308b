// The two-process runner, bounded waits and the AEAD helpers (common.h).
#include "common.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    // A machine with fewer CPUs than asked for runs both sides unpinned: the
    // figures are then worse, not wrong.
    (void)sched_setaffinity(0, sizeof set, &set);
}

// ---- two processes ----------------------------------------------------------

static _Noreturn void child_main(pid_t parent, int cpu, side_fn fn, void *ctx, bool shared_cpu) {
    // If the forking thread dies (a crash, a kill), take the child with it;
    // the parent may already be gone by the time the request is in place.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(ECHILD);
    // Writes to a vanished parent must fail with EPIPE, not kill silently.
    struct sigaction ignore;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ignore, NULL);
    pin(cpu);
    struct side side = { NULL, shared_cpu };
    int rc = fn(ctx, &side);
    _exit(rc == 0 ? 0 : (errno > 0 && errno < 256 ? errno : EIO));
}

bool peer_alive(struct peer *p) {
    if (p->reaped) return false;
    int status;
    pid_t r = waitpid(p->pid, &status, WNOHANG);
    if (r == 0 || (r < 0 && errno == EINTR)) return true;
    // ECHILD: something else in the process reaped it; it is gone either way.
    p->status = r == p->pid ? status : -1;
    p->reaped = true;
    return false;
}

static void peer_kill(struct peer *p) {
    if (p->reaped) return;
    kill(p->pid, SIGKILL);
    int status;
    while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR) {}
    p->reaped = true;
}

/// After the parent's side succeeded: the child should be exiting on its own.
static int peer_finish(struct peer *p) {
    uint64_t start = now_ns();
    long nap_ns = 20000;
    while (peer_alive(p)) {
        if (now_ns() - start > BASELINE_TIMEOUT_NS) {
            peer_kill(p);
            errno = ETIMEDOUT;
            return -1;
        }
        struct timespec nap = { 0, nap_ns };
        nanosleep(&nap, NULL);
        if (nap_ns < 10000000) nap_ns *= 2;
    }
    // Reaped by someone else: the parent's side completed, so the child did its part.
    if (p->status == -1) return 0;
    if (WIFEXITED(p->status) && WEXITSTATUS(p->status) == 0) return 0;
    errno = WIFEXITED(p->status) ? WEXITSTATUS(p->status) : ECHILD;
    return -1;
}

int run_two_processes(int cpu_parent, int cpu_child, side_fn parent, side_fn child, void *ctx) {
    // The caller's own affinity says nothing here (a benchmark may have
    // pinned it to one CPU already), so count what the machine has.
    bool shared_cpu = cpu_parent == cpu_child || sysconf(_SC_NPROCESSORS_ONLN) < 2;
    cpu_set_t saved;
    bool restore = sched_getaffinity(0, sizeof saved, &saved) == 0;
    pid_t self = getpid();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) child_main(self, cpu_child, child, ctx, shared_cpu);

    struct peer peer = { .pid = pid };
    struct side side = { &peer, shared_cpu };
    pin(cpu_parent);
    int rc = parent(ctx, &side);
    int err = errno;
    if (rc == 0) {
        rc = peer_finish(&peer);
        err = errno;
    } else {
        peer_kill(&peer);
    }
    if (restore) sched_setaffinity(0, sizeof saved, &saved);
    errno = err;
    return rc;
}

void *shared_map(size_t bytes) {
    // Populated now so neither side takes page faults in the timed loop.
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

// ---- bounded waits ------------------------------------------------------------

void watch_init(struct watch *w, const struct side *side) {
    w->peer = side->peer;
    w->yield = side->shared_cpu;
    watch_reset(w);
}

int watch_check(struct watch *w) {
    uint64_t now = now_ns();
    if (w->since == 0) {
        w->since = now;
    } else if (now - w->since > BASELINE_TIMEOUT_NS) {
        errno = ETIMEDOUT;
        return -1;
    }
    if (w->peer && now - w->peer->checked_at >= 1000000) {
        w->peer->checked_at = now;
        if (!peer_alive(w->peer)) {
            errno = ECHILD;
            return -1;
        }
    }
    return 0;
}

// ---- AEAD ------------------------------------------------------------------------

int cipher_init(struct cipher *c, enum baseline_aead aead) {
    memset(c, 0, sizeof *c);
    c->aead = aead;
    if (aead == BASELINE_AEAD_NONE) return 0;
    if (aead != BASELINE_AEAD_CHACHAPOLY && aead != BASELINE_AEAD_AESGCM) {
        errno = EINVAL;
        return -1;
    }
    if (sodium_init() < 0) {
        errno = EIO;
        return -1;
    }
    if (aead == BASELINE_AEAD_AESGCM && !crypto_aead_aes256gcm_is_available()) {
        errno = ENOTSUP;
        return -1;
    }
    randombytes_buf(c->key, sizeof c->key);
    if (aead == BASELINE_AEAD_AESGCM) crypto_aead_aes256gcm_beforenm(&c->aes, c->key);
    return 0;
}

static inline void nonce_from(uint64_t counter, unsigned char nonce[12]) {
    memset(nonce, 0, 4);
    memcpy(nonce + 4, &counter, 8);
}

void cipher_seal(const struct cipher *c, uint64_t counter, unsigned char *out, const unsigned char *msg, size_t len,
                 const unsigned char *ad, size_t ad_len) {
    unsigned char nonce[12];
    nonce_from(counter, nonce);
    if (c->aead == BASELINE_AEAD_CHACHAPOLY)
        crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, msg, len, ad, ad_len, NULL, nonce, c->key);
    else
        crypto_aead_aes256gcm_encrypt_afternm(out, NULL, msg, len, ad, ad_len, NULL, nonce, &c->aes);
}

int cipher_open(const struct cipher *c, uint64_t counter, unsigned char *msg, const unsigned char *in, size_t in_len,
                const unsigned char *ad, size_t ad_len) {
    unsigned char nonce[12];
    nonce_from(counter, nonce);
    int rc = c->aead == BASELINE_AEAD_CHACHAPOLY
        ? crypto_aead_chacha20poly1305_ietf_decrypt(msg, NULL, NULL, in, in_len, ad, ad_len, nonce, c->key)
        : crypto_aead_aes256gcm_decrypt_afternm(msg, NULL, NULL, in, in_len, ad, ad_len, nonce, &c->aes);
    if (rc != 0) {
        errno = EBADMSG;
        return -1;
    }
    return 0;
}
