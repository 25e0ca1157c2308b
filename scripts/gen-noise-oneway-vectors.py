#!/usr/bin/env python3
"""Generates known-answer vectors for the one-way Noise patterns the channel
uses (K and Kpsk0 with 25519, ChaChaPoly/AESGCM and BLAKE2b), with an
implementation independent of ours: the `noiseprotocol` package
(pip install --user noiseprotocol).

The output is in the Noise wiki's test-vector format, the shape of
Tests/ChannelCryptoTests/Vectors/cacophony-25519.json, so the existing
vector runner reads it. One-way patterns have a single handshake message;
every later message is a transport message from the initiator (the only
sender of a one-way pattern).

Every input is fixed, so a run reproduces the committed file byte for byte:
keys and the PSK are derived from labels with BLAKE2b (readable, and not
copied from anywhere), payloads are fixed strings and patterns.

    python3 scripts/gen-noise-oneway-vectors.py \
        > Tests/ChannelCryptoTests/Vectors/noise-oneway-25519.json
"""

import hashlib
import importlib.metadata
import json
import sys
import warnings

from noise.connection import Keypair, NoiseConnection


# Fixing the ephemeral key is the point of a known-answer vector; the
# package warns about it on every handshake.
warnings.filterwarnings("ignore", message="One of ephemeral keypairs is already set")


def derived(label: str) -> bytes:
    """32 fixed bytes named by `label` (a private key, a PSK)."""
    return hashlib.blake2b(("noise-oneway-vectors " + label).encode(), digest_size=32).digest()


PROLOGUE = b"secure-channel one-way vectors"
INIT_STATIC = derived("initiator static")
INIT_EPHEMERAL = derived("initiator ephemeral")
RESP_STATIC = derived("responder static")
PSK = derived("pre-shared key")

# Transport payloads: empty, short, block-sized edges and a longer one, so
# counters and tag placement are exercised on more than one length.
TRANSPORT_PAYLOADS = [
    b"",
    b"first message of the stream",
    bytes(range(64)),
    bytes((i * 7 + 3) & 0xFF for i in range(65)),
    b"Z" * 1000,
    b"last",
]


def public(private: bytes, name: str) -> bytes:
    """The X25519 public key of `private`, computed by the package itself."""
    conn = NoiseConnection.from_name(name.encode())
    conn.set_keypair_from_private_bytes(Keypair.STATIC, private)
    return conn.noise_protocol.keypairs["s"].public_bytes


def vector(name: str, handshake_payload: bytes) -> dict:
    psk = "psk" in name.split("_")[1]
    initiator = NoiseConnection.from_name(name.encode())
    initiator.set_as_initiator()
    initiator.set_prologue(PROLOGUE)
    initiator.set_keypair_from_private_bytes(Keypair.STATIC, INIT_STATIC)
    initiator.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, public(RESP_STATIC, name))
    initiator.set_keypair_from_private_bytes(Keypair.EPHEMERAL, INIT_EPHEMERAL)

    responder = NoiseConnection.from_name(name.encode())
    responder.set_as_responder()
    responder.set_prologue(PROLOGUE)
    responder.set_keypair_from_private_bytes(Keypair.STATIC, RESP_STATIC)
    responder.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, public(INIT_STATIC, name))
    if psk:
        initiator.set_psks(psk=PSK)
        responder.set_psks(psk=PSK)

    initiator.start_handshake()
    responder.start_handshake()

    messages = []
    ciphertext = bytes(initiator.write_message(handshake_payload))
    # The generator checks its own output end to end before writing it.
    assert bytes(responder.read_message(ciphertext)) == handshake_payload
    assert initiator.handshake_finished and responder.handshake_finished
    messages.append({"payload": handshake_payload.hex(), "ciphertext": ciphertext.hex()})
    for payload in TRANSPORT_PAYLOADS:
        ciphertext = initiator.encrypt(payload)
        assert responder.decrypt(ciphertext) == payload
        messages.append({"payload": payload.hex(), "ciphertext": ciphertext.hex()})

    handshake_hash = initiator.get_handshake_hash()
    assert handshake_hash == responder.get_handshake_hash()

    entry = {
        "protocol_name": name,
        "init_prologue": PROLOGUE.hex(),
    }
    if psk:
        entry["init_psks"] = [PSK.hex()]
    entry.update({
        "init_static": INIT_STATIC.hex(),
        "init_ephemeral": INIT_EPHEMERAL.hex(),
        "init_remote_static": public(RESP_STATIC, name).hex(),
        "resp_prologue": PROLOGUE.hex(),
    })
    if psk:
        entry["resp_psks"] = [PSK.hex()]
    entry.update({
        "resp_static": RESP_STATIC.hex(),
        "resp_remote_static": public(INIT_STATIC, name).hex(),
        "handshake_hash": handshake_hash.hex(),
        "messages": messages,
    })
    return entry


def main() -> None:
    vectors = []
    for pattern in ["K", "Kpsk0"]:
        for cipher in ["ChaChaPoly", "AESGCM"]:
            name = f"Noise_{pattern}_25519_{cipher}_BLAKE2b"
            # The channel's handshake carries an empty payload; a non-empty
            # one checks the payload encryption inside the handshake message.
            vectors.append(vector(name, b""))
            vectors.append(vector(name, b"one-way handshake payload"))
    version = importlib.metadata.version("noiseprotocol")
    document = {
        "generator": f"scripts/gen-noise-oneway-vectors.py with the Python noiseprotocol package {version}",
        "vectors": vectors,
    }
    json.dump(document, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
