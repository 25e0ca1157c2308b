// The system libsodium, as one Clang module. Only ChannelCrypto imports it,
// and only `internal`, so no libsodium type reaches a public API.
#ifndef SECURE_CHANNEL_CSODIUM_SHIM_H
#define SECURE_CHANNEL_CSODIUM_SHIM_H
#include <sodium.h>
#endif
