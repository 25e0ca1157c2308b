/*
 * sc_echo: serves one channel with echo, waiting in poll() on sc_fd; the C
 * counterpart of guest-agent run's echo service, for one channel.
 *
 *   sc_echo --domain right --key right.key --host-key HEX --channel NAME
 *           [--state-dir DIR] [--backend sim] [--wait block|adaptive|spin]
 *           [--timeout-ms 30000]
 *
 * Opens the channel (waiting up to --timeout-ms for the descriptor and the
 * peer), then loops: poll() on sc_fd until it is readable, take every
 * message with sc_recv(timeout 0) until it says SC_ETIMEDOUT ("would
 * block"), send each one back. When the peer closes, or on SIGTERM or
 * SIGINT, it closes the channel (sc_close, so the simulator sees this
 * guest detach rather than die), says how many messages it echoed, and
 * exits 0.
 *
 * Exit status: 0 success, 1 failure (the message names the problem), 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <securechannel.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop_requested;

static void on_stop(int signal) {
    (void)signal;
    stop_requested = 1;
}

static void usage(const char *why) {
    fprintf(stderr, "sc_echo: %s\nusage: sc_echo --domain NAME --key FILE --host-key HEX --channel NAME "
                    "[--state-dir DIR] [--backend sim|xen] [--wait spin|block|adaptive] [--timeout-ms MS]\n", why);
    exit(2);
}

/* Sends every waiting message back; 0 while the channel lasts, 1 once the
   peer closed, a negative SC_E* on failure. */
static int echo_waiting(sc_channel *ch, unsigned char *buffer, size_t capacity, unsigned long *echoed) {
    for (;;) {
        long n = sc_recv(ch, buffer, capacity, 0);
        if (n == SC_ETIMEDOUT) return 0;          /* drained: poll again */
        if (n == SC_EPEERCLOSED) return 1;
        if (n < 0) return (int)n;
        int sent = sc_send(ch, buffer, (size_t)n, 5000);
        if (sent == SC_EPEERCLOSED) return 1;     /* the peer stopped reading */
        if (sent != 0) return sent;
        (*echoed)++;
    }
}

int main(int argc, char **argv) {
    sc_options opts;
    sc_options_init(&opts);
    opts.wait = "block";
    opts.timeout_ms = 30000;
    const char *channel = NULL;
    static const struct option options[] = {
        {"domain", required_argument, 0, 'd'}, {"key", required_argument, 0, 'k'},
        {"host-key", required_argument, 0, 'H'}, {"channel", required_argument, 0, 'c'},
        {"state-dir", required_argument, 0, 's'}, {"backend", required_argument, 0, 'b'},
        {"wait", required_argument, 0, 'w'}, {"timeout-ms", required_argument, 0, 't'}, {0, 0, 0, 0},
    };
    for (int c; (c = getopt_long(argc, argv, "", options, NULL)) != -1;) {
        switch (c) {
        case 'd': opts.domain = optarg; break;
        case 'k': opts.key_file = optarg; break;
        case 'H': opts.host_key_hex = optarg; break;
        case 'c': channel = optarg; break;
        case 's': opts.state_dir = optarg; break;
        case 'b': opts.backend = optarg; break;
        case 'w': opts.wait = optarg; break;
        case 't': opts.timeout_ms = atoi(optarg); break;
        default: usage("unknown option");
        }
    }
    if (!channel) usage("--channel is required");

    /* No SA_RESTART: a signal ends poll() with EINTR, and the loop closes. */
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_stop;
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);

    int error = 0;
    sc_channel *ch = sc_open(channel, &opts, &error);
    if (!ch) {
        fprintf(stderr, "sc_echo: sc_open: %s (%s)\n", sc_strerror(error), sc_last_error());
        return 1;
    }
    size_t capacity = sc_max_message(ch);
    unsigned char *buffer = malloc(capacity);
    int fd = sc_fd(ch);
    if (!buffer || fd < 0) {
        fprintf(stderr, "sc_echo: %s (%s)\n", buffer ? sc_strerror(fd) : "out of memory", sc_last_error());
        sc_close(ch);
        return 1;
    }
    fprintf(stderr, "sc_echo: serving %s (%s)\n", channel, sc_version());

    unsigned long echoed = 0;
    int status = 0;
    while (!stop_requested) {
        struct pollfd ready = {.fd = fd, .events = POLLIN};
        int polled = poll(&ready, 1, 1000);
        if (polled < 0 && errno != EINTR) { perror("sc_echo: poll"); status = 1; break; }
        if (polled <= 0) continue;
        int outcome = echo_waiting(ch, buffer, capacity, &echoed);
        if (outcome == 1) {
            fprintf(stderr, "sc_echo: the peer closed %s after %lu messages\n", channel, echoed);
            break;
        }
        if (outcome < 0) {
            fprintf(stderr, "sc_echo: %s: %s (%s)\n", channel, sc_strerror(outcome), sc_last_error());
            status = 1;
            break;
        }
    }
    if (stop_requested) fprintf(stderr, "sc_echo: stopped by a signal after %lu messages\n", echoed);
    sc_stats stats;
    if (sc_statistics(ch, &stats, sizeof stats) == 0)
        fprintf(stderr, "sc_echo: %s: %llu messages (%llu bytes) received, %llu (%llu bytes) sent, %llu waits, %llu sleeps\n",
                channel, (unsigned long long)stats.messages_received, (unsigned long long)stats.bytes_received,
                (unsigned long long)stats.messages_sent, (unsigned long long)stats.bytes_sent,
                (unsigned long long)stats.waits, (unsigned long long)stats.sleeps);
    int closed = sc_close(ch);
    if (closed != 0 && closed != SC_EPEERCLOSED)
        fprintf(stderr, "sc_echo: closing %s: %s (%s)\n", channel, sc_strerror(closed), sc_last_error());
    printf("echoed %lu messages\n", echoed);
    free(buffer);
    return status;
}
