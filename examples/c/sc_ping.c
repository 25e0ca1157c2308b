/*
 * sc_ping: round trips over a channel to an echo agent (guest-agent run),
 * through libsecurechannel's C interface; the C counterpart of
 * guest-agent ping, measured the same way.
 *
 *   sc_ping --domain left --key left.key --host-key HEX --channel NAME
 *           [--state-dir DIR] [--backend sim] [--count 10000] [--size 64]
 *           [--wait spin|block|adaptive] [--timeout-ms 10000] [--json]
 *
 * Sends COUNT messages of SIZE bytes one at a time from one buffer and
 * receives each echo into another (the library copies between the caller's
 * buffers and the ring: nothing is allocated per message), timing each round
 * trip with CLOCK_MONOTONIC. The first round trip (right after the
 * handshake) is not counted. Prints p50, p90, p99, p99.9 and max (nearest
 * rank over every sample), or one JSON object with --json.
 *
 * Exit status: 0 success, 1 failure (the message names the problem), 2 usage.
 */
#include <getopt.h>
#include <securechannel.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest sample at or above fraction q of them. */
static uint64_t percentile(const uint64_t *sorted, size_t n, double q) {
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return sorted[rank - 1];
}

static void usage(const char *why) {
    fprintf(stderr, "sc_ping: %s\nusage: sc_ping --domain NAME --key FILE --host-key HEX --channel NAME "
                    "[--state-dir DIR] [--backend sim|xen] [--count N] [--size BYTES] "
                    "[--wait spin|block|adaptive] [--timeout-ms MS] [--json]\n", why);
    exit(2);
}

static int fail(const char *what, int error) {
    fprintf(stderr, "sc_ping: %s: %s (%s)\n", what, sc_strerror(error), sc_last_error());
    return 1;
}

int main(int argc, char **argv) {
    sc_options opts;
    sc_options_init(&opts);
    opts.wait = "spin";
    const char *channel = NULL;
    long count = 10000, size = 64;
    int json = 0;
    static const struct option options[] = {
        {"domain", required_argument, 0, 'd'}, {"key", required_argument, 0, 'k'},
        {"host-key", required_argument, 0, 'H'}, {"channel", required_argument, 0, 'c'},
        {"state-dir", required_argument, 0, 's'}, {"backend", required_argument, 0, 'b'},
        {"count", required_argument, 0, 'n'}, {"size", required_argument, 0, 'z'},
        {"wait", required_argument, 0, 'w'}, {"timeout-ms", required_argument, 0, 't'},
        {"json", no_argument, 0, 'j'}, {0, 0, 0, 0},
    };
    for (int c; (c = getopt_long(argc, argv, "", options, NULL)) != -1;) {
        switch (c) {
        case 'd': opts.domain = optarg; break;
        case 'k': opts.key_file = optarg; break;
        case 'H': opts.host_key_hex = optarg; break;
        case 'c': channel = optarg; break;
        case 's': opts.state_dir = optarg; break;
        case 'b': opts.backend = optarg; break;
        case 'n': count = strtol(optarg, NULL, 10); break;
        case 'z': size = strtol(optarg, NULL, 10); break;
        case 'w': opts.wait = optarg; break;
        case 't': opts.timeout_ms = atoi(optarg); break;
        case 'j': json = 1; break;
        default: usage("unknown option");
        }
    }
    if (!channel) usage("--channel is required");
    if (count < 1 || count > 100000000) usage("bad --count: expected 1...100000000");
    if (size < 1 || size > (1 << 20)) usage("bad --size: expected 1...1048576 bytes");

    int error = 0;
    uint64_t open_start = now_ns();
    sc_channel *ch = sc_open(channel, &opts, &error);
    if (!ch) return fail("sc_open", error);
    uint64_t open_ns = now_ns() - open_start;
    size_t capacity = sc_max_message(ch);
    if ((size_t)size > capacity) {
        fprintf(stderr, "sc_ping: --size %ld is larger than one message on %s (at most %zu bytes)\n", size, channel, capacity);
        sc_close(ch);
        return 1;
    }
    unsigned char *message = malloc((size_t)size), *reply = malloc(capacity);
    uint64_t *samples = malloc(sizeof(uint64_t) * (size_t)count);
    if (!message || !reply || !samples) { sc_close(ch); fprintf(stderr, "sc_ping: out of memory\n"); return 1; }
    for (long i = 0; i < size; i++) message[i] = (unsigned char)(i * 31 + 7);

    int timeout = opts.timeout_ms;
    uint64_t first = 0;
    for (long i = -1; i < count; i++) {
        uint64_t start = now_ns();
        int sent = sc_send(ch, message, (size_t)size, timeout);
        if (sent != 0) { sc_close(ch); return fail("sc_send", sent); }
        long n = sc_recv(ch, reply, capacity, timeout);
        uint64_t rtt = now_ns() - start;
        if (n < 0) { sc_close(ch); return fail("sc_recv", (int)n); }
        if (n != size || memcmp(message, reply, (size_t)size) != 0) {
            fprintf(stderr, "sc_ping: the echo on %s is not the message sent (%ld bytes for %ld); is the peer an echo agent?\n", channel, n, size);
            sc_close(ch);
            return 1;
        }
        if (i < 0) first = rtt; else samples[i] = rtt;
    }
    int closed = sc_close(ch);
    if (closed != 0) fprintf(stderr, "sc_ping: closing %s: %s (%s)\n", channel, sc_strerror(closed), sc_last_error());

    qsort(samples, (size_t)count, sizeof(uint64_t), compare_u64);
    uint64_t p50 = percentile(samples, (size_t)count, 0.50), p90 = percentile(samples, (size_t)count, 0.90);
    uint64_t p99 = percentile(samples, (size_t)count, 0.99), p999 = percentile(samples, (size_t)count, 0.999);
    uint64_t max = samples[count - 1], min = samples[0];
    if (json) {
        printf("{\"ok\":true,\"channel\":\"%s\",\"count\":%ld,\"size\":%ld,\"wait\":\"%s\",\"p50_ns\":%llu,"
               "\"p90_ns\":%llu,\"p99_ns\":%llu,\"p999_ns\":%llu,\"max_ns\":%llu,\"min_ns\":%llu,"
               "\"open_ns\":%llu,\"first_round_trip_ns\":%llu,\"version\":\"%s\"}\n",
               channel, count, size, opts.wait ? opts.wait : "adaptive", (unsigned long long)p50,
               (unsigned long long)p90, (unsigned long long)p99, (unsigned long long)p999,
               (unsigned long long)max, (unsigned long long)min, (unsigned long long)open_ns,
               (unsigned long long)first, sc_version());
    } else {
        printf("channel %s: %ld round trips of %ld bytes (wait %s, %s)\n", channel, count, size,
               opts.wait ? opts.wait : "adaptive", sc_version());
        printf("  p50    %llu ns\n  p90    %llu ns\n  p99    %llu ns\n  p99.9  %llu ns\n  max    %llu ns\n",
               (unsigned long long)p50, (unsigned long long)p90, (unsigned long long)p99,
               (unsigned long long)p999, (unsigned long long)max);
    }
    free(message);
    free(reply);
    free(samples);
    return 0;
}
