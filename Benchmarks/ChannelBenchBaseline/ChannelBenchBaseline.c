// C baselines for Benchmarks/ChannelBench (see the header for what each is).
#define _GNU_SOURCE
#include "ChannelBenchBaseline.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void relax(void) {
#if defined(__x86_64__)
    __asm__ __volatile__("pause" ::: "memory");
#endif
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof(set), &set);
}

// ---- one cache line ----------------------------------------------------------

struct line_args { _Atomic uint64_t *word; int cpu; size_t total; };

static void *line_echo(void *p) {
    struct line_args *a = p;
    pin(a->cpu);
    for (uint64_t i = 1; i <= a->total; i++) {
        while (atomic_load_explicit(a->word, memory_order_acquire) != 2 * i - 1) relax();
        atomic_store_explicit(a->word, 2 * i, memory_order_release);
    }
    return NULL;
}

int baseline_cacheline_pingpong(int cpu_ping, int cpu_echo, size_t warmup, size_t count, uint64_t *samples) {
    _Atomic uint64_t *word = aligned_alloc(64, 64);
    if (!word) return -1;
    atomic_store(word, 0);
    struct line_args a = { word, cpu_echo, warmup + count };
    pthread_t t;
    if (pthread_create(&t, NULL, line_echo, &a) != 0) { free(word); return -1; }
    pin(cpu_ping);
    for (uint64_t i = 1; i <= warmup + count; i++) {
        uint64_t start = now_ns();
        atomic_store_explicit(word, 2 * i - 1, memory_order_release);
        while (atomic_load_explicit(word, memory_order_acquire) != 2 * i) relax();
        if (i > warmup) samples[i - 1 - warmup] = now_ns() - start;
    }
    pthread_join(t, NULL);
    free(word);
    return 0;
}

// ---- SPSC rings --------------------------------------------------------------

#define RING_SIZE (1u << 16)

struct ring {
    _Alignas(64) _Atomic uint64_t produced;
    _Alignas(64) _Atomic uint64_t consumed;
    _Alignas(64) unsigned char data[RING_SIZE];
};

struct side {
    struct ring *out, *in;
    size_t size;
    enum baseline_aead aead;
    unsigned char key[32];
    crypto_aead_aes256gcm_state *aes;
    uint64_t send_nonce, receive_nonce;
    unsigned char *scratch;
};

static inline size_t frame_bytes(size_t payload) { return (16 + payload + 15) & ~(size_t)15; }

static void ring_send(struct side *s, const unsigned char *msg) {
    size_t wire = s->size + (s->aead ? 16 : 0);
    size_t frame = frame_bytes(wire);
    uint64_t p = atomic_load_explicit(&s->out->produced, memory_order_relaxed);
    size_t pos = p & (RING_SIZE - 1);
    if (RING_SIZE - pos < frame) { p += RING_SIZE - pos; pos = 0; }  // skip the tail
    while (p + frame - atomic_load_explicit(&s->out->consumed, memory_order_acquire) > RING_SIZE) relax();
    unsigned char *slot = s->out->data + pos;
    uint32_t len = (uint32_t)wire;
    memcpy(slot, &len, 4);
    memcpy(slot + 8, &s->send_nonce, 8);
    if (s->aead) {
        unsigned char nonce[12] = {0};
        memcpy(nonce + 4, &s->send_nonce, 8);
        unsigned long long clen;
        if (s->aead == BASELINE_AEAD_CHACHAPOLY)
            crypto_aead_chacha20poly1305_ietf_encrypt(slot + 16, &clen, msg, s->size, slot, 16, NULL, nonce, s->key);
        else
            crypto_aead_aes256gcm_encrypt_afternm(slot + 16, &clen, msg, s->size, slot, 16, NULL, nonce, s->aes);
    } else {
        memcpy(slot + 16, msg, s->size);
    }
    s->send_nonce++;
    atomic_store_explicit(&s->out->produced, p + frame, memory_order_seq_cst);
}

static void ring_receive(struct side *s, unsigned char *msg) {
    size_t wire = s->size + (s->aead ? 16 : 0);
    size_t frame = frame_bytes(wire);
    uint64_t c = atomic_load_explicit(&s->in->consumed, memory_order_relaxed);
    size_t pos = c & (RING_SIZE - 1);
    if (RING_SIZE - pos < frame) { c += RING_SIZE - pos; pos = 0; }
    while (atomic_load_explicit(&s->in->produced, memory_order_acquire) < c + frame) relax();
    // Copy out, then verify and decrypt the private copy.
    memcpy(s->scratch, s->in->data + pos, 16 + wire);
    atomic_store_explicit(&s->in->consumed, c + frame, memory_order_release);
    if (s->aead) {
        unsigned char nonce[12] = {0};
        memcpy(nonce + 4, &s->receive_nonce, 8);
        unsigned long long mlen;
        int rc = s->aead == BASELINE_AEAD_CHACHAPOLY
            ? crypto_aead_chacha20poly1305_ietf_decrypt(msg, &mlen, NULL, s->scratch + 16, wire, s->scratch, 16, nonce, s->key)
            : crypto_aead_aes256gcm_decrypt_afternm(msg, &mlen, NULL, s->scratch + 16, wire, s->scratch, 16, nonce, s->aes);
        if (rc != 0) abort();
    } else {
        memcpy(msg, s->scratch + 16, s->size);
    }
    s->receive_nonce++;
}

struct ring_echo_args { struct side side; int cpu; size_t total; };

static void *ring_echo(void *p) {
    struct ring_echo_args *a = p;
    pin(a->cpu);
    unsigned char *msg = malloc(a->side.size + 16);
    for (size_t i = 0; i < a->total; i++) {
        ring_receive(&a->side, msg);
        ring_send(&a->side, msg);
    }
    free(msg);
    return NULL;
}

int baseline_ring_pingpong(int cpu_ping, int cpu_echo, size_t size, enum baseline_aead aead,
                           size_t warmup, size_t count, uint64_t *samples) {
    if (sodium_init() < 0) return -1;
    if (aead == BASELINE_AEAD_AESGCM && !crypto_aead_aes256gcm_is_available()) { errno = ENOTSUP; return -1; }
    struct ring *r0 = aligned_alloc(64, sizeof(struct ring)), *r1 = aligned_alloc(64, sizeof(struct ring));
    crypto_aead_aes256gcm_state *aes = aligned_alloc(16, sizeof(crypto_aead_aes256gcm_state) + 16);
    unsigned char *msg = malloc(size + 16), *s0 = malloc(size + 64), *s1 = malloc(size + 64);
    if (!r0 || !r1 || !aes || !msg || !s0 || !s1) return -1;
    memset(r0, 0, sizeof(*r0));
    memset(r1, 0, sizeof(*r1));
    memset(msg, 0x5a, size);
    unsigned char key[32];
    randombytes_buf(key, sizeof key);
    if (aead == BASELINE_AEAD_AESGCM) crypto_aead_aes256gcm_beforenm(aes, key);
    struct side ping = { r0, r1, size, aead, {0}, aes, 0, 0, s0 };
    memcpy(ping.key, key, 32);
    struct ring_echo_args echo = { { r1, r0, size, aead, {0}, aes, 0, 0, s1 }, cpu_echo, warmup + count };
    memcpy(echo.side.key, key, 32);
    pthread_t t;
    if (pthread_create(&t, NULL, ring_echo, &echo) != 0) return -1;
    pin(cpu_ping);
    for (size_t i = 0; i < warmup + count; i++) {
        uint64_t start = now_ns();
        ring_send(&ping, msg);
        ring_receive(&ping, msg);
        if (i >= warmup) samples[i - warmup] = now_ns() - start;
    }
    pthread_join(t, NULL);
    free(r0); free(r1); free(aes); free(msg); free(s0); free(s1);
    return 0;
}

// ---- Unix stream socket --------------------------------------------------------

static int read_full(int fd, unsigned char *buf, size_t n) {
    while (n > 0) {
        ssize_t r = read(fd, buf, n);
        if (r <= 0) { if (r < 0 && errno == EINTR) continue; return -1; }
        buf += r; n -= (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const unsigned char *buf, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w <= 0) { if (w < 0 && errno == EINTR) continue; return -1; }
        buf += w; n -= (size_t)w;
    }
    return 0;
}

struct socket_echo_args { int fd; int cpu; size_t size; size_t total; };

static void *socket_echo(void *p) {
    struct socket_echo_args *a = p;
    pin(a->cpu);
    unsigned char *msg = malloc(a->size);
    for (size_t i = 0; i < a->total; i++) {
        if (read_full(a->fd, msg, a->size) != 0 || write_full(a->fd, msg, a->size) != 0) break;
    }
    free(msg);
    return NULL;
}

int baseline_unix_socket_pingpong(int cpu_ping, int cpu_echo, size_t size,
                                  size_t warmup, size_t count, uint64_t *samples) {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return -1;
    struct socket_echo_args a = { fds[1], cpu_echo, size, warmup + count };
    pthread_t t;
    if (pthread_create(&t, NULL, socket_echo, &a) != 0) return -1;
    pin(cpu_ping);
    unsigned char *msg = calloc(1, size);
    int rc = 0;
    for (size_t i = 0; i < warmup + count; i++) {
        uint64_t start = now_ns();
        if (write_full(fds[0], msg, size) != 0 || read_full(fds[0], msg, size) != 0) { rc = -1; break; }
        if (i >= warmup) samples[i - warmup] = now_ns() - start;
    }
    close(fds[0]);
    pthread_join(t, NULL);
    close(fds[1]);
    free(msg);
    return rc;
}

// ---- raw AEAD throughput ------------------------------------------------------

double baseline_aead_throughput(size_t size, enum baseline_aead aead, size_t total) {
    if (sodium_init() < 0 || aead == BASELINE_AEAD_NONE) return -1;
    if (aead == BASELINE_AEAD_AESGCM && !crypto_aead_aes256gcm_is_available()) return -1;
    unsigned char key[32];
    randombytes_buf(key, sizeof key);
    crypto_aead_aes256gcm_state *aes = aligned_alloc(16, sizeof(crypto_aead_aes256gcm_state) + 16);
    unsigned char *in = calloc(1, size), *out = malloc(size + 16);
    if (!aes || !in || !out) return -1;
    if (aead == BASELINE_AEAD_AESGCM) crypto_aead_aes256gcm_beforenm(aes, key);
    uint64_t counter = 0;
    size_t messages = total / size;
    uint64_t start = now_ns();
    for (size_t i = 0; i < messages; i++) {
        unsigned char nonce[12] = {0};
        memcpy(nonce + 4, &counter, 8);
        counter++;
        unsigned long long clen;
        if (aead == BASELINE_AEAD_CHACHAPOLY)
            crypto_aead_chacha20poly1305_ietf_encrypt(out, &clen, in, size, NULL, 0, NULL, nonce, key);
        else
            crypto_aead_aes256gcm_encrypt_afternm(out, &clen, in, size, NULL, 0, NULL, nonce, aes);
    }
    double seconds = (double)(now_ns() - start) / 1e9;
    free(aes); free(in); free(out);
    return (double)(messages * size) / seconds;
}
