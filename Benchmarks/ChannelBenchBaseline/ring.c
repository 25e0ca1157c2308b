// SPSC rings in memory shared by two processes, framed like the channel's
// rings (a 16-byte header, payload padded to 16 bytes, a padding frame over
// the tail when a frame does not fit before the end), so a channel's cost can
// be compared with a ring that does the same copies and crypto and nothing else.
#include "common.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "readers sleep on the low half of the 64-bit producer index"
#endif

/// One ring's shared indices (free-running), each on its own cache line so
/// the two sides' stores never contend for one line.
struct ring_control {
    _Alignas(64) _Atomic uint64_t produced;
    _Alignas(64) _Atomic uint64_t consumed;
    _Alignas(64) _Atomic uint32_t reader_waiting;
};

/// Controls share the first page; the rings follow page-aligned.
#define CONTROL_PAGE 4096u
_Static_assert(2 * sizeof(struct ring_control) <= CONTROL_PAGE, "two rings' controls fit the control page");

struct frame_header {
    uint32_t length;    // payload bytes on the wire, tag included
    uint16_t type;
    uint16_t reserved;
    uint64_t sequence;
};
_Static_assert(sizeof(struct frame_header) == 16, "16-byte frame headers");

enum { FRAME_DATA = 1, FRAME_PADDING = 2 };

/// A futex reader polls this often before it sleeps, to catch a reply already
/// on its way. Without PAUSE: at ~40 ns a PAUSE (recent AMD, Skylake and
/// later) would stretch these polls to ~10 us and hide the sleep and wake-up
/// this baseline is there to show.
#define POLLS_BEFORE_SLEEP 256u
/// A sleeping reader still wakes this often to check its deadline and the peer.
#define SLEEP_SLICE_NS 10000000L

static inline size_t frame_bytes(size_t wire) {
    return sizeof(struct frame_header) + ((wire + 15) & ~(size_t)15);
}

/// One process's end of one ring.
struct ring_end {
    struct ring_control *control;
    unsigned char *data;
    uint64_t size;
    uint64_t index;      // own index: produced for a writer, consumed for a reader
    uint64_t peer_index; // the other side's index as last read
    const struct cipher *cipher;
    uint64_t counter;    // the nonce of the next message
    enum baseline_wait wait;
    unsigned char *scratch; // reader with an AEAD: the private copy it opens
};

struct ring_set {
    unsigned char *base;
    size_t bytes, ring_bytes;
};

static int ring_geometry_ok(size_t size, enum baseline_aead aead, size_t ring_bytes) {
    size_t tag = aead == BASELINE_AEAD_NONE ? 0 : BASELINE_TAG_BYTES;
    // Half the ring: a frame plus the padding before it must always fit.
    if (size == 0 || size > ((size_t)1 << 30) || ring_bytes < 64 || ring_bytes > ((size_t)1 << 30) ||
        (ring_bytes & (ring_bytes - 1)) != 0 || frame_bytes(size + tag) > ring_bytes / 2) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

static int ring_set_map(struct ring_set *s, unsigned rings, size_t ring_bytes) {
    s->ring_bytes = ring_bytes;
    s->bytes = CONTROL_PAGE + rings * ring_bytes;
    s->base = shared_map(s->bytes);
    return s->base ? 0 : -1;
}

static void ring_set_unmap(struct ring_set *s) {
    int err = errno;
    munmap(s->base, s->bytes);
    errno = err;
}

static struct ring_end ring_end_make(const struct ring_set *s, unsigned ring, const struct cipher *cipher,
                                     enum baseline_wait wait, unsigned char *scratch) {
    struct ring_end e;
    memset(&e, 0, sizeof e);
    e.control = (struct ring_control *)s->base + ring;
    e.data = s->base + CONTROL_PAGE + ring * s->ring_bytes;
    e.size = s->ring_bytes;
    e.cipher = cipher;
    e.wait = wait;
    e.scratch = scratch;
    return e;
}

// The futex word is the low half of `produced`: shared, not FUTEX_PRIVATE,
// since the two sides are different processes.
static void futex_wait_slice(_Atomic uint64_t *word, uint32_t expected) {
    struct timespec slice = { 0, SLEEP_SLICE_NS };
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, &slice, NULL, 0);
}

static void futex_wake_one(_Atomic uint64_t *word) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

// ---- writer ----------------------------------------------------------------------

static inline bool has_room(struct ring_end *w, uint64_t needed) {
    w->peer_index = atomic_load_explicit(&w->control->consumed, memory_order_acquire);
    return w->size - (w->index - w->peer_index) >= needed;
}

static int wait_for_room(struct ring_end *w, uint64_t needed, struct watch *watch) {
    watch_reset(watch);
    while (!has_room(w, needed)) {
        if (watch_spin(watch) < 0) return has_room(w, needed) ? 0 : -1;
    }
    return 0;
}

static int ring_send(struct ring_end *w, const unsigned char *msg, size_t len, struct watch *watch) {
    size_t wire = len + cipher_tag_bytes(w->cipher);
    uint64_t frame = frame_bytes(wire);
    uint64_t position = w->index & (w->size - 1);
    uint64_t to_end = w->size - position;
    uint64_t needed = frame <= to_end ? frame : frame + to_end;
    // Trust the cached consumer index while it shows room: reading the
    // shared one every time would pull its line over from the reader's core.
    if (w->size - (w->index - w->peer_index) < needed && wait_for_room(w, needed, watch) < 0) return -1;
    if (frame > to_end) {
        struct frame_header pad = { (uint32_t)(to_end - sizeof pad), FRAME_PADDING, 0, 0 };
        memcpy(w->data + position, &pad, sizeof pad);
        w->index += to_end;
        position = 0;
    }
    struct frame_header header = { (uint32_t)wire, FRAME_DATA, 0, w->counter };
    unsigned char *slot = w->data + position;
    memcpy(slot, &header, sizeof header);
    if (w->cipher->aead == BASELINE_AEAD_NONE)
        memcpy(slot + sizeof header, msg, len);
    else
        cipher_seal(w->cipher, w->counter, slot + sizeof header, msg, len, (const unsigned char *)&header, sizeof header);
    w->counter++;
    w->index += frame;
    if (w->wait == BASELINE_WAIT_SPIN) {
        atomic_store_explicit(&w->control->produced, w->index, memory_order_release);
    } else {
        // Sequentially consistent on both sides (Dekker): a release store
        // could still sit in the store buffer while the flag is read, and a
        // reader going to sleep at that moment would never be woken.
        atomic_store_explicit(&w->control->produced, w->index, memory_order_seq_cst);
        if (atomic_load_explicit(&w->control->reader_waiting, memory_order_seq_cst)) futex_wake_one(&w->control->produced);
    }
    return 0;
}

// ---- reader ----------------------------------------------------------------------

static inline bool has_data(struct ring_end *r) {
    r->peer_index = atomic_load_explicit(&r->control->produced, memory_order_acquire);
    return r->peer_index != r->index;
}

static int sleep_for_data(struct ring_end *r, struct watch *watch) {
    atomic_store_explicit(&r->control->reader_waiting, 1, memory_order_seq_cst);
    // Re-check after announcing: the writer may have published just before it
    // could see the flag. Indices never run 2^32 apart, so the low halves differ
    // whenever the indices do.
    if ((uint32_t)atomic_load_explicit(&r->control->produced, memory_order_seq_cst) == (uint32_t)r->index)
        futex_wait_slice(&r->control->produced, (uint32_t)r->index);
    atomic_store_explicit(&r->control->reader_waiting, 0, memory_order_relaxed);
    return watch_check(watch);
}

static int wait_for_data(struct ring_end *r, struct watch *watch) {
    watch_reset(watch);
    if (r->wait == BASELINE_WAIT_FUTEX) {
        for (unsigned i = 0; i < POLLS_BEFORE_SLEEP; i++) {
            if (has_data(r)) return 0;
        }
    }
    while (!has_data(r)) {
        int rc = r->wait == BASELINE_WAIT_FUTEX ? sleep_for_data(r, watch) : watch_spin(watch);
        if (rc < 0) return has_data(r) ? 0 : -1;
    }
    return 0;
}

static int ring_receive(struct ring_end *r, unsigned char *msg, size_t capacity, size_t *length, struct watch *watch) {
    size_t tag = cipher_tag_bytes(r->cipher);
    for (;;) {
        if (r->index == r->peer_index && wait_for_data(r, watch) < 0) return -1;
        uint64_t position = r->index & (r->size - 1);
        uint64_t to_end = r->size - position;
        uint64_t available = r->peer_index - r->index;
        // Copy the header out before trusting it: the peer can rewrite the
        // ring at any moment, so only a private copy is checked and used.
        struct frame_header header;
        memcpy(&header, r->data + position, sizeof header);
        if (header.type == FRAME_PADDING && header.length + sizeof header == to_end && available >= to_end) {
            r->index += to_end;
            continue;
        }
        uint64_t frame = frame_bytes(header.length);
        if (header.type != FRAME_DATA || header.length < tag || header.length - tag > capacity || frame > to_end ||
            frame > available) {
            errno = EPROTO;
            return -1;
        }
        const unsigned char *payload = r->data + position + sizeof header;
        size_t len = header.length - tag;
        // Copy out, release the space, then open the private copy (never the
        // shared bytes, which could change between verifying and decrypting).
        if (tag == 0) {
            memcpy(msg, payload, len);
            r->index += frame;
            atomic_store_explicit(&r->control->consumed, r->index, memory_order_release);
        } else {
            memcpy(r->scratch, payload, header.length);
            r->index += frame;
            atomic_store_explicit(&r->control->consumed, r->index, memory_order_release);
            if (cipher_open(r->cipher, r->counter, msg, r->scratch, header.length, (const unsigned char *)&header,
                            sizeof header) < 0)
                return -1;
        }
        r->counter++;
        *length = len;
        return 0;
    }
}

// ---- ping-pong -------------------------------------------------------------------

struct ring_pingpong {
    struct ring_end ping_out, ping_in, echo_in, echo_out;
    unsigned char *ping_msg, *echo_msg;
    size_t size, warmup, count;
    uint64_t *samples;
};

static int ring_ping(void *ctx, const struct side *side) {
    struct ring_pingpong *j = ctx;
    struct watch w;
    watch_init(&w, side);
    for (size_t i = 0; i < j->warmup + j->count; i++) {
        uint64_t start = now_ns();
        size_t len;
        if (ring_send(&j->ping_out, j->ping_msg, j->size, &w) < 0) return -1;
        if (ring_receive(&j->ping_in, j->ping_msg, j->size, &len, &w) < 0) return -1;
        uint64_t end = now_ns();
        if (len != j->size) {
            errno = EPROTO;
            return -1;
        }
        if (i >= j->warmup) j->samples[i - j->warmup] = end - start;
    }
    return 0;
}

static int ring_echo(void *ctx, const struct side *side) {
    struct ring_pingpong *j = ctx;
    struct watch w;
    watch_init(&w, side);
    for (size_t i = 0; i < j->warmup + j->count; i++) {
        size_t len;
        if (ring_receive(&j->echo_in, j->echo_msg, j->size, &len, &w) < 0) return -1;
        if (ring_send(&j->echo_out, j->echo_msg, len, &w) < 0) return -1;
    }
    return 0;
}

/// Room for a message or its sealed form, cache-line apart.
static size_t buffer_stride(size_t size) {
    return (size + BASELINE_TAG_BYTES + 63) & ~(size_t)63;
}

int baseline_ring_pingpong(int cpu_ping, int cpu_echo, size_t size, enum baseline_aead aead, enum baseline_wait wait,
                           size_t ring_bytes, size_t warmup, size_t count, uint64_t *samples) {
    if (ring_geometry_ok(size, aead, ring_bytes) < 0) return -1;
    if ((wait != BASELINE_WAIT_SPIN && wait != BASELINE_WAIT_FUTEX) || (count > 0 && samples == NULL)) {
        errno = EINVAL;
        return -1;
    }
    struct cipher keys[2]; // one per direction, as a channel has
    if (cipher_init(&keys[0], aead) < 0 || cipher_init(&keys[1], aead) < 0) return -1;
    struct ring_set set;
    if (ring_set_map(&set, 2, ring_bytes) < 0) return -1;
    // Private memory is allocated before the fork: the child must not call malloc.
    size_t stride = buffer_stride(size);
    unsigned char *buffers = malloc(4 * stride);
    if (buffers == NULL) {
        ring_set_unmap(&set);
        return -1;
    }
    struct ring_pingpong job = {
        .ping_out = ring_end_make(&set, 0, &keys[0], wait, NULL),
        .echo_in = ring_end_make(&set, 0, &keys[0], wait, buffers + 2 * stride),
        .echo_out = ring_end_make(&set, 1, &keys[1], wait, NULL),
        .ping_in = ring_end_make(&set, 1, &keys[1], wait, buffers + 3 * stride),
        .ping_msg = buffers,
        .echo_msg = buffers + stride,
        .size = size, .warmup = warmup, .count = count, .samples = samples,
    };
    memset(job.ping_msg, 0x5a, size);
    int rc = run_two_processes(cpu_ping, cpu_echo, ring_ping, ring_echo, &job);
    int err = errno;
    free(buffers);
    ring_set_unmap(&set);
    sodium_memzero(keys, sizeof keys);
    errno = err;
    return rc;
}

// ---- one-way stream --------------------------------------------------------------

struct ring_stream {
    struct ring_end out, in;
    const unsigned char *source;
    unsigned char *sink;
    size_t size, messages;
    uint64_t elapsed_ns;
};

static int stream_read(void *ctx, const struct side *side) {
    struct ring_stream *j = ctx;
    struct watch w;
    watch_init(&w, side);
    uint64_t start = 0;
    for (size_t i = 0; i < j->messages; i++) {
        size_t len;
        if (ring_receive(&j->in, j->sink, j->size, &len, &w) < 0) return -1;
        if (len != j->size) {
            errno = EPROTO;
            return -1;
        }
        if (i == 0) start = now_ns(); // the writer's start-up is not throughput
    }
    j->elapsed_ns = now_ns() - start;
    return 0;
}

static int stream_write(void *ctx, const struct side *side) {
    struct ring_stream *j = ctx;
    struct watch w;
    watch_init(&w, side);
    for (size_t i = 0; i < j->messages; i++) {
        if (ring_send(&j->out, j->source, j->size, &w) < 0) return -1;
    }
    return 0;
}

double baseline_ring_stream(int cpu_writer, int cpu_reader, size_t size, enum baseline_aead aead, size_t ring_bytes,
                            size_t total) {
    if (ring_geometry_ok(size, aead, ring_bytes) < 0) return -1;
    if (total / size < 2) {
        errno = EINVAL;
        return -1;
    }
    struct cipher key;
    if (cipher_init(&key, aead) < 0) return -1;
    struct ring_set set;
    if (ring_set_map(&set, 1, ring_bytes) < 0) return -1;
    size_t stride = buffer_stride(size);
    unsigned char *buffers = malloc(3 * stride);
    if (buffers == NULL) {
        ring_set_unmap(&set);
        return -1;
    }
    memset(buffers, 0x5a, size);
    struct ring_stream job = {
        .out = ring_end_make(&set, 0, &key, BASELINE_WAIT_SPIN, NULL),
        .in = ring_end_make(&set, 0, &key, BASELINE_WAIT_SPIN, buffers + 2 * stride),
        .source = buffers,
        .sink = buffers + stride,
        .size = size,
        .messages = total / size,
    };
    int rc = run_two_processes(cpu_reader, cpu_writer, stream_read, stream_write, &job);
    int err = errno;
    free(buffers);
    ring_set_unmap(&set);
    sodium_memzero(&key, sizeof key);
    errno = err;
    if (rc != 0) return -1;
    return (double)((job.messages - 1) * size) / ((double)(job.elapsed_ns ? job.elapsed_ns : 1) / 1e9);
}
