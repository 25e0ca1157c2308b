#!/usr/bin/env bash
# Installs the C libraries the package links (libsodium, Xen's tool libraries)
# when pkg-config cannot find them, the spin model checker (with gcc, which
# spin needs for its preprocessor and verifiers) for `make model`, readelf
# (binutils), with which a test checks that guest binaries need no dom0 Xen
# library, and man (man-db, with groff) and systemd-analyze (systemd) for
# make install-check, which renders the installed manual pages and verifies
# the systemd units. Idempotent and quiet when all is present.
set -euo pipefail

missing=()
pkg-config --exists libsodium 2>/dev/null || missing+=(libsodium-dev)
pkg-config --exists xencontrol xenstore 2>/dev/null || missing+=(libxen-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v spin >/dev/null 2>&1 || missing+=(spin)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v readelf >/dev/null 2>&1 || missing+=(binutils)
command -v man >/dev/null 2>&1 || missing+=(man-db)
command -v groff >/dev/null 2>&1 || missing+=(groff-base)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)

if ((${#missing[@]} == 0)); then
    exit 0
fi

echo "setup: installing ${missing[*]} (not found)"
if [[ $(id -u) -eq 0 ]]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "setup: not root and no password-less sudo." >&2
    echo "setup: install them yourself, then run make again:" >&2
    echo "    sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "${missing[@]}"

pkg-config --exists libsodium && pkg-config --exists xencontrol xenstore || {
    echo "setup: installed ${missing[*]} but pkg-config still cannot find libsodium, xencontrol or xenstore" >&2
    exit 1
}
command -v spin >/dev/null 2>&1 && command -v gcc >/dev/null 2>&1 && command -v readelf >/dev/null 2>&1 \
    && command -v man >/dev/null 2>&1 && command -v systemd-analyze >/dev/null 2>&1 || {
    echo "setup: installed ${missing[*]} but spin, gcc, readelf, man or systemd-analyze is still missing" >&2
    exit 1
}
