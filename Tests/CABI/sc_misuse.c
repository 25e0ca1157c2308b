/*
 * sc_misuse: calls every function of securechannel.h with bad input (NULL
 * pointers, a missing and a corrupt key file, a malformed and a wrong host
 * key, unknown options, an unknown channel, a closed handle) and checks
 * that each returns its documented error without crashing. Run by the
 * end-to-end test "C interface: every function with bad input" against a
 * simulator with a channel NAME between DOMAIN and a peer running
 * guest-agent run (echo).
 *
 *   sc_misuse DOMAIN KEY_FILE PEER_KEY_FILE HOST_KEY_HEX STATE_DIR NAME SCRATCH_DIR
 *
 * Prints one line per check ("ok" or "FAIL", the call, what came back and
 * sc_last_error) and exits 0 when every check passed.
 */
#include <securechannel.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int failures;

static void check(const char *what, long got, long expected) {
    int ok = got == expected;
    if (!ok) failures++;
    printf("%s %s: got %ld (%s), expected %ld | %s\n", ok ? "ok  " : "FAIL", what, got,
           got < 0 ? sc_strerror((int)got) : "", expected, sc_last_error());
}

static void check_true(const char *what, int condition) {
    if (!condition) failures++;
    printf("%s %s\n", condition ? "ok  " : "FAIL", what);
}

/* sc_open that must fail with `expected`, the pointer staying NULL. */
static void open_fails(const char *what, const char *name, const sc_options *opts, int expected) {
    int error = 12345;
    sc_channel *ch = sc_open(name, opts, &error);
    if (ch) { sc_close(ch); check_true(what, 0); return; }
    check(what, error, expected);
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: sc_misuse DOMAIN KEY_FILE PEER_KEY_FILE HOST_KEY_HEX STATE_DIR NAME SCRATCH_DIR\n");
        return 2;
    }
    const char *domain = argv[1], *key = argv[2], *peer_key = argv[3], *host_key = argv[4];
    const char *state = argv[5], *name = argv[6], *scratch = argv[7];

    /* Error codes: distinct, negative, named. */
    const int codes[] = {SC_ETIMEDOUT, SC_EPEERCLOSED, SC_EPEERDIED, SC_EPROTO, SC_EAUTH,
                         SC_EDESCRIPTOR, SC_ETOOBIG, SC_EPLATFORM, SC_EINVAL};
    int distinct = 1;
    for (int i = 0; i < 9; i++) {
        if (codes[i] >= 0 || !sc_strerror(codes[i]) || !*sc_strerror(codes[i])) distinct = 0;
        for (int j = 0; j < i; j++)
            if (codes[i] == codes[j] || strcmp(sc_strerror(codes[i]), sc_strerror(codes[j])) == 0) distinct = 0;
    }
    check_true("the nine SC_E* codes are negative and distinct, each with its own message", distinct);
    check_true("sc_strerror(0) is \"success\"", strcmp(sc_strerror(0), "success") == 0);
    check_true("sc_strerror of an unknown value says so", strstr(sc_strerror(-4242), "not a SecureChannel error") != NULL);
    check_true("sc_version names the library", strncmp(sc_version(), "securechannel ", 14) == 0);
    check_true("sc_last_error is never NULL", sc_last_error() != NULL);

    /* NULL pointers. */
    sc_options_init(NULL);
    sc_options opts;
    sc_options_init(&opts);
    check_true("sc_options_init sets the defaults", opts.timeout_ms == 10000 && !opts.backend && !opts.wait && !opts.domain);
    opts.domain = domain; opts.key_file = key; opts.host_key_hex = host_key; opts.state_dir = state;
    opts.timeout_ms = 300;
    open_fails("sc_open(NULL name)", NULL, &opts, SC_EINVAL);
    open_fails("sc_open(NULL options)", name, NULL, SC_EINVAL);
    check_true("sc_open with a NULL error pointer returns NULL", sc_open(NULL, &opts, NULL) == NULL);
    check("sc_send(NULL channel)", sc_send(NULL, "x", 1, 0), SC_EINVAL);
    check("sc_recv(NULL channel)", sc_recv(NULL, NULL, 0, 0), SC_EINVAL);
    check("sc_max_message(NULL)", (long)sc_max_message(NULL), 0);
    check("sc_fd(NULL)", sc_fd(NULL), SC_EINVAL);
    check("sc_close(NULL)", sc_close(NULL), SC_EINVAL);

    sc_options bad = opts;
    bad.key_file = NULL;
    open_fails("sc_open(key_file NULL)", name, &bad, SC_EINVAL);
    bad = opts; bad.host_key_hex = NULL;
    open_fails("sc_open(host_key_hex NULL)", name, &bad, SC_EINVAL);
    bad = opts; bad.domain = NULL;
    open_fails("sc_open(domain NULL on the simulator)", name, &bad, SC_EINVAL);

    /* Bad key files and host keys. */
    char missing[4096], corrupt[4096];
    snprintf(missing, sizeof missing, "%s/missing.key", scratch);
    snprintf(corrupt, sizeof corrupt, "%s/corrupt.key", scratch);
    FILE *file = fopen(corrupt, "w");
    if (file) { fputs("not a key\n", file); fclose(file); }
    chmod(corrupt, 0600);  /* private, as a key file must be: only its content is wrong */
    bad = opts; bad.key_file = missing;
    open_fails("sc_open(a key file that does not exist)", name, &bad, SC_EINVAL);
    bad = opts; bad.key_file = corrupt;
    open_fails("sc_open(a corrupt key file)", name, &bad, SC_EINVAL);
    bad = opts; bad.host_key_hex = "xyz";
    open_fails("sc_open(a malformed host key)", name, &bad, SC_EINVAL);
    bad = opts; bad.host_key_hex = "abababababababababababababababababababababababababababababababab";
    open_fails("sc_open(a wrong host key: the signature does not verify)", name, &bad, SC_EDESCRIPTOR);
    bad = opts; bad.key_file = peer_key;
    open_fails("sc_open(another agent's key: not sealed to it)", name, &bad, SC_EDESCRIPTOR);

    /* Unknown names and values. */
    open_fails("sc_open(an unknown channel)", "no-such-channel", &opts, SC_EDESCRIPTOR);
    open_fails("sc_open(an invalid channel name)", "a/b", &opts, SC_EINVAL);
    bad = opts; bad.backend = "vmware";
    open_fails("sc_open(an unknown backend)", name, &bad, SC_EINVAL);
    bad = opts; bad.backend = "xen-sim"; bad.domain = "no-such-domain";
    open_fails("sc_open(backend xen-sim, a domain the simulator does not have)", name, &bad, SC_EPLATFORM);
    bad = opts; bad.backend = "xen";
    open_fails("sc_open(backend xen, off Xen)", name, &bad, SC_EPLATFORM);
    bad = opts; bad.wait = "sometimes";
    open_fails("sc_open(an unknown wait)", name, &bad, SC_EINVAL);
    bad = opts; bad.domain = "no-such-domain";
    open_fails("sc_open(an unknown domain)", name, &bad, SC_EPLATFORM);

    /* A real channel: bad arguments on it, then a closed handle. */
    opts.timeout_ms = 20000;
    int error = 0;
    sc_channel *ch = sc_open(name, &opts, &error);
    check("sc_open(the channel)", ch ? 0 : error, 0);
    if (!ch) return 1;
    size_t max = sc_max_message(ch);
    check_true("sc_max_message is positive", max > 0);
    unsigned char *buffer = calloc(1, max + 1);
    check("sc_send(NULL data, length 5)", sc_send(ch, NULL, 5, 0), SC_EINVAL);
    check("sc_send(one byte over sc_max_message)", sc_send(ch, buffer, max + 1, 0), SC_ETOOBIG);
    check("sc_send(length SIZE_MAX)", sc_send(ch, buffer, SIZE_MAX, 0), SC_ETOOBIG);
    check("sc_recv(NULL buffer, capacity 10)", sc_recv(ch, NULL, 10, 0), SC_EINVAL);
    check("sc_recv(nothing waiting, timeout 0)", sc_recv(ch, buffer, max, 0), SC_ETIMEDOUT);
    check("sc_send(100 bytes to the echo)", sc_send(ch, buffer, 100, 5000), 0);
    check("sc_recv(a 10-byte buffer for the 100-byte echo)", sc_recv(ch, buffer, 10, 5000), SC_ETOOBIG);
    check("sc_recv(the echo, still first in line)", sc_recv(ch, buffer, max, 5000), 100);
    check("sc_send(an empty message)", sc_send(ch, NULL, 0, 5000), 0);
    check("sc_recv(its echo)", sc_recv(ch, buffer, SIZE_MAX, 5000), 0);
    /* Counters: two messages each way so far (100 bytes, then empty). */
    sc_stats stats;
    memset(&stats, 0xff, sizeof stats);
    check("sc_statistics", sc_statistics(ch, &stats, sizeof stats), 0);
    check("sc_statistics: messages sent", (long)stats.messages_sent, 2);
    check("sc_statistics: bytes sent", (long)stats.bytes_sent, 100);
    check("sc_statistics: messages received", (long)stats.messages_received, 2);
    check("sc_statistics: bytes received", (long)stats.bytes_received, 100);
    check("sc_statistics: handshakes", (long)stats.handshakes, 1);
    check("sc_statistics: authentication failures", (long)stats.authentication_failures, 0);
    /* An older caller's smaller struct gets the leading fields only; a
       newer caller's larger one gets the rest zeroed. */
    uint64_t older[3] = {7, 7, 7};
    check("sc_statistics(two fields)", sc_statistics(ch, (sc_stats *)older, 2 * sizeof(uint64_t)), 0);
    check_true("sc_statistics(two fields) wrote two", older[0] == 2 && older[1] == 100 && older[2] == 7);
    unsigned char newer[sizeof(sc_stats) + 16];
    memset(newer, 0xff, sizeof newer);
    check("sc_statistics(a larger struct)", sc_statistics(ch, (sc_stats *)newer, sizeof newer), 0);
    int zeroed = 1;
    for (size_t i = sizeof(sc_stats); i < sizeof newer; i++) zeroed &= newer[i] == 0;
    check_true("sc_statistics(a larger struct) zeroes the unknown tail", zeroed);
    check("sc_statistics(NULL channel)", sc_statistics(NULL, &stats, sizeof stats), SC_EINVAL);
    check("sc_statistics(NULL out)", sc_statistics(ch, NULL, sizeof stats), SC_EINVAL);
    check("sc_statistics(size 0)", sc_statistics(ch, &stats, 0), SC_EINVAL);
    int fd = sc_fd(ch);
    check_true("sc_fd gives a descriptor", fd >= 0);
    check("sc_fd again gives the same one", sc_fd(ch), fd);
    check("sc_close", sc_close(ch), 0);
    check("sc_send(closed)", sc_send(ch, buffer, 1, 0), SC_EINVAL);
    check("sc_recv(closed)", sc_recv(ch, buffer, max, 0), SC_EINVAL);
    check("sc_max_message(closed)", (long)sc_max_message(ch), 0);
    check("sc_fd(closed)", sc_fd(ch), SC_EINVAL);
    check("sc_statistics(closed)", sc_statistics(ch, &stats, sizeof stats), SC_EINVAL);
    check("sc_close(closed)", sc_close(ch), SC_EINVAL);
    check_true("sc_last_error says the channel was closed", strstr(sc_last_error(), "closed") != NULL);
    free(buffer);

    printf("%d failed\n", failures);
    return failures == 0 ? 0 : 1;
}
