// CryptoBenchBaseline: the same AEAD loops as crypto-bench's Swift side, but
// calling libsodium straight from C, so the benchmark can state what the
// Swift wrapper (ChannelCrypto.AEADKey) adds. Names carry the `cbb_` prefix.
#ifndef SECURE_CHANNEL_CRYPTO_BENCH_BASELINE_H
#define SECURE_CHANNEL_CRYPTO_BENCH_BASELINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The algorithms, numbered as in the Swift side's table.
enum {
    CBB_CHACHA20_POLY1305 = 0,
    CBB_XCHACHA20_POLY1305 = 1,
    CBB_AES256_GCM = 2,
};

/// A key (and, for AES-256-GCM, its precomputed state) in guarded memory,
/// as AEADKey holds it. Opaque to Swift.
typedef struct cbb_context cbb_context;

/// Initialises libsodium; returns 0 on success.
int cbb_init(void);

/// 1 when this CPU can run libsodium's AES-256-GCM.
int cbb_aes256gcm_available(void);

/// CLOCK_MONOTONIC in nanoseconds: both sides of the benchmark time with it.
uint64_t cbb_now_ns(void);

/// A context for `algorithm` with the 32-byte `key`; NULL on failure.
cbb_context *cbb_context_create(int algorithm, const uint8_t *key);
void cbb_context_destroy(cbb_context *context);

/// Seals `length` bytes of `plaintext` into `output` (length + 16 bytes)
/// `iterations` times, with no AAD and a counter nonce: the counter, starting
/// at `*counter`, is stored little-endian in the first 8 bytes of `nonce`
/// before each call, exactly as the Swift loop does. Returns the elapsed
/// nanoseconds, or 0 if a call failed.
uint64_t cbb_seal_loop(cbb_context *context, const uint8_t *plaintext, size_t length,
                       uint8_t *nonce, uint8_t *output, uint64_t iterations, uint64_t *counter);

/// Opens the same `length`-byte ciphertext (tag included) into `output`
/// `iterations` times with the fixed `nonce` and no AAD. Returns the elapsed
/// nanoseconds, or 0 if a call failed (it never should: the ciphertext is valid).
uint64_t cbb_open_loop(cbb_context *context, const uint8_t *ciphertext, size_t length,
                       const uint8_t *nonce, uint8_t *output, uint64_t iterations);

#ifdef __cplusplus
}
#endif

#endif
