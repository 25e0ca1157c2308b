// The C side of crypto-bench: libsodium called directly, in loops shaped like
// the Swift ones (same buffers, same counter nonce, same clock), so the ratio
// of the two is the cost of the Swift wrapper and nothing else.
#include "CryptoBenchBaseline.h"

#include <sodium.h>
#include <string.h>
#include <time.h>

struct cbb_context {
    int algorithm;
    unsigned char *key;                      // 32 bytes, sodium_malloc
    crypto_aead_aes256gcm_state *aes_state;  // AES only, sodium_malloc (16-byte aligned)
};

int cbb_init(void) { return sodium_init() < 0 ? -1 : 0; }

int cbb_aes256gcm_available(void) { return crypto_aead_aes256gcm_is_available(); }

uint64_t cbb_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

cbb_context *cbb_context_create(int algorithm, const uint8_t *key) {
    cbb_context *c = sodium_malloc(sizeof *c);
    if (c == NULL) return NULL;
    c->algorithm = algorithm;
    c->aes_state = NULL;
    c->key = sodium_malloc(32);
    if (c->key == NULL) { sodium_free(c); return NULL; }
    memcpy(c->key, key, 32);
    if (algorithm == CBB_AES256_GCM) {
        if (!crypto_aead_aes256gcm_is_available()) { cbb_context_destroy(c); return NULL; }
        c->aes_state = sodium_malloc(crypto_aead_aes256gcm_statebytes());
        if (c->aes_state == NULL) { cbb_context_destroy(c); return NULL; }
        crypto_aead_aes256gcm_beforenm(c->aes_state, c->key);
    }
    return c;
}

void cbb_context_destroy(cbb_context *c) {
    if (c == NULL) return;
    if (c->aes_state != NULL) sodium_free(c->aes_state);
    if (c->key != NULL) sodium_free(c->key);
    sodium_free(c);
}

static inline void store_counter(uint8_t *nonce, uint64_t counter) {
    // Little-endian, like the Swift side's storeBytes(of: counter.littleEndian).
    for (int i = 0; i < 8; i++) nonce[i] = (uint8_t)(counter >> (8 * i));
}

uint64_t cbb_seal_loop(cbb_context *c, const uint8_t *plaintext, size_t length,
                       uint8_t *nonce, uint8_t *output, uint64_t iterations, uint64_t *counter) {
    unsigned long long written = 0;
    uint64_t ctr = *counter;
    int failed = 0;
    uint64_t start = cbb_now_ns();
    switch (c->algorithm) {
    case CBB_CHACHA20_POLY1305:
        for (uint64_t i = 0; i < iterations; i++) {
            store_counter(nonce, ctr++);
            failed |= crypto_aead_chacha20poly1305_ietf_encrypt(output, &written, plaintext, length,
                                                                NULL, 0, NULL, nonce, c->key);
        }
        break;
    case CBB_XCHACHA20_POLY1305:
        for (uint64_t i = 0; i < iterations; i++) {
            store_counter(nonce, ctr++);
            failed |= crypto_aead_xchacha20poly1305_ietf_encrypt(output, &written, plaintext, length,
                                                                 NULL, 0, NULL, nonce, c->key);
        }
        break;
    case CBB_AES256_GCM:
        for (uint64_t i = 0; i < iterations; i++) {
            store_counter(nonce, ctr++);
            failed |= crypto_aead_aes256gcm_encrypt_afternm(output, &written, plaintext, length,
                                                            NULL, 0, NULL, nonce, c->aes_state);
        }
        break;
    default:
        return 0;
    }
    uint64_t elapsed = cbb_now_ns() - start;
    *counter = ctr;
    return failed ? 0 : elapsed;
}

uint64_t cbb_open_loop(cbb_context *c, const uint8_t *ciphertext, size_t length,
                       const uint8_t *nonce, uint8_t *output, uint64_t iterations) {
    unsigned long long written = 0;
    int failed = 0;
    uint64_t start = cbb_now_ns();
    switch (c->algorithm) {
    case CBB_CHACHA20_POLY1305:
        for (uint64_t i = 0; i < iterations; i++)
            failed |= crypto_aead_chacha20poly1305_ietf_decrypt(output, &written, NULL, ciphertext, length,
                                                                NULL, 0, nonce, c->key);
        break;
    case CBB_XCHACHA20_POLY1305:
        for (uint64_t i = 0; i < iterations; i++)
            failed |= crypto_aead_xchacha20poly1305_ietf_decrypt(output, &written, NULL, ciphertext, length,
                                                                 NULL, 0, nonce, c->key);
        break;
    case CBB_AES256_GCM:
        for (uint64_t i = 0; i < iterations; i++)
            failed |= crypto_aead_aes256gcm_decrypt_afternm(output, &written, NULL, ciphertext, length,
                                                            NULL, 0, nonce, c->aes_state);
        break;
    default:
        return 0;
    }
    uint64_t elapsed = cbb_now_ns() - start;
    return failed ? 0 : elapsed;
}
