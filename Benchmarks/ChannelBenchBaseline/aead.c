// Sealing alone on one core: the ceiling for a one-way encrypted stream, to
// which a channel's streaming throughput is compared.
#include "common.h"

#include <errno.h>
#include <stdlib.h>

double baseline_aead_throughput(size_t size, enum baseline_aead aead, size_t total) {
    if (aead == BASELINE_AEAD_NONE || size == 0 || total / size == 0) {
        errno = EINVAL;
        return -1;
    }
    struct cipher key;
    if (cipher_init(&key, aead) < 0) return -1;
    unsigned char *in = calloc(1, size), *out = malloc(size + BASELINE_TAG_BYTES);
    if (in == NULL || out == NULL) {
        free(in);
        free(out);
        errno = ENOMEM;
        return -1;
    }
    size_t messages = total / size;
    uint64_t start = now_ns();
    for (size_t i = 0; i < messages; i++) cipher_seal(&key, i, out, in, size, NULL, 0);
    uint64_t elapsed = now_ns() - start;
    free(in);
    free(out);
    sodium_memzero(&key, sizeof key);
    return (double)(messages * size) / ((double)(elapsed ? elapsed : 1) / 1e9);
}
