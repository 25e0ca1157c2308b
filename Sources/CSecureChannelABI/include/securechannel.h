/**
 * @file securechannel.h
 * @section DESCRIPTION
 *
 *  SecureChannel's C interface: a message channel between two guest agents
 *  in two VMs on one Xen host, over memory that only each domain's channel
 *  view of altp2m can reach. dom0 creates the channel (chanctl channel
 *  create) and publishes a descriptor sealed to this agent's X25519 key and
 *  signed with the host's Ed25519 key; sc_open checks the descriptor, maps
 *  the channel and runs a Noise handshake with the peer agent. Messages are
 *  then authenticated and encrypted (mode "encrypted", the default) or
 *  plain in memory no other code of either guest can reach ("isolated").
 *
 *  Messages, not a byte stream: each sc_send is one sc_recv on the other
 *  side, in order, whole or not at all. A message holds at most
 *  sc_max_message() bytes.
 *
 *  Linking: pkg-config --cflags --libs securechannel. libsecurechannel is
 *  written in Swift; it needs the Swift runtime at run time (see
 *  docs/C-API.md, "Linking").
 *
 *  Threads: a sc_channel is used by one thread at a time. Different
 *  channels may be used on different threads at once. The calls that take
 *  no channel (sc_options_init, sc_open, sc_strerror, sc_last_error,
 *  sc_version) may be called from any thread.
 *
 *  Errors: every call that can fail returns a negative SC_E* constant (or
 *  NULL and the constant through *error). The values are stable across
 *  versions. sc_strerror names the kind of problem; sc_last_error gives the
 *  details of the last failure on the calling thread (which check, which
 *  file, and the fix). No call aborts the process on bad input: a NULL
 *  pointer, a malformed key, an unknown channel or a closed handle each
 *  returns its error.
 *
 *  The process must sc_close every channel before it exits: on the
 *  simulator, a guest process that goes away while attached is taken for
 *  a crashed domain.
 */
#ifndef SECURECHANNEL_H
#define SECURECHANNEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The operation did not complete within its timeout (or, with a timeout
 *  of 0, would have had to wait). Nothing was sent or received. */
#define SC_ETIMEDOUT    (-1)
/** The peer closed the channel; every message it sent before was received. */
#define SC_EPEERCLOSED  (-2)
/** The peer's domain died or the host tore the channel down. */
#define SC_EPEERDIED    (-3)
/** The peer broke the wire protocol; the channel is unusable. */
#define SC_EPROTO       (-4)
/** Authentication failed: the peer holds other keys (at open), or a frame
 *  was forged, altered or replayed. The channel is unusable. */
#define SC_EAUTH        (-5)
/** The channel's descriptor was refused (bad signature or wrong host key,
 *  not sealed to this key, another name, expired, replayed), or no
 *  descriptor of that name is published for this domain. */
#define SC_EDESCRIPTOR  (-6)
/** The message is larger than sc_max_message() bytes (sc_send), or the
 *  next message does not fit the buffer (sc_recv; it stays first in line). */
#define SC_ETOOBIG      (-7)
/** The platform refused: no simulator or Xen, the domain is unknown, the
 *  backend is not available in this build, the window cannot be mapped, or
 *  the agent's state directory cannot be used. */
#define SC_EPLATFORM    (-8)
/** A bad argument: a NULL pointer, a malformed or missing key, an unknown
 *  backend or wait strategy, an invalid channel name, a closed handle, or a
 *  direction a one-way channel does not have. */
#define SC_EINVAL       (-9)

/** An open channel. Opaque; made by sc_open, freed by sc_close. */
typedef struct sc_channel sc_channel;

/** How to open a channel. Fill it with sc_options_init, then set fields.
 *  The strings are read during sc_open only. */
typedef struct sc_options {
    const char *domain;        /* this guest's domain name (the simulator) or NULL (Xen reads its own) */
    const char *key_file;      /* the agent's X25519 key file (guest-agent keygen) */
    const char *host_key_hex;  /* dom0's Ed25519 public key, 64 hex digits */
    const char *backend;       /* "sim", "xen-sim" or "xen"; NULL means "sim" */
    const char *state_dir;     /* the simulator's state directory, or NULL for the default */
    const char *wait;          /* "spin", "block" or "adaptive"; NULL means "adaptive" */
    int timeout_ms;            /* for open (the handshake); <0 waits indefinitely */
} sc_options;

/**
 * Zeroes the options and sets the defaults: backend "sim", wait
 * "adaptive", state_dir NULL (the simulator's default), timeout_ms 10000.
 * domain, key_file and host_key_hex stay NULL: set them.
 *
 * @param opts The options to fill; NULL is ignored.
 */
void sc_options_init(sc_options *opts);

/**
 * Opens the channel this domain was given under a name: attaches to the
 * platform (vCPU 0 of the domain on the simulator), waits up to
 * timeout_ms for the descriptor to be published, checks it (signed by
 * host_key_hex, sealed to key_file's key, for this name and domain, not
 * expired, newer than every descriptor this domain accepted: the domain's
 * replay guard file in the state directory, shared with guest-agent),
 * maps the channel and runs the handshake with the peer, waiting up to
 * timeout_ms for the peer to open its end.
 *
 * Backends: "sim" is the simulator (chanctl sim start); "xen" is a Xen
 * HVM guest with altp2m (off Xen: SC_EPLATFORM); "xen-sim" is the Xen
 * backend's code over the simulator's Xen libraries (descriptors are read
 * from the simulator's xenstore, where chanctl --backend xen-sim puts them).
 *
 * @param channel_name The channel's name (letters, digits, '_' and '-').
 * @param opts The options (sc_options_init, then domain, key_file and
 *        host_key_hex at least).
 * @param error Where to store the error when NULL is returned; may be NULL.
 * @return The channel, or NULL with *error one of SC_EINVAL (NULL name or
 *         options, a missing or malformed key file or host key, an unknown
 *         backend or wait value, no domain on the simulator, a bad channel
 *         name), SC_EPLATFORM, SC_EDESCRIPTOR (no such channel for this
 *         domain, or its descriptor refused), SC_ETIMEDOUT (the peer did not
 *         open its end in time), SC_EAUTH (the peer holds other keys),
 *         SC_EPEERDIED (the host tore the channel down meanwhile) or SC_EPROTO.
 */
sc_channel *sc_open(const char *channel_name, const sc_options *opts, int *error);

/**
 * Sends one message, waiting for room in the ring (back-pressure: nothing
 * is ever dropped). Copies from the caller's buffer; allocates nothing.
 *
 * @param ch The channel.
 * @param data The message; may be NULL only when length is 0.
 * @param length Its size in bytes, at most sc_max_message(ch).
 * @param timeout_ms How long to wait for room: <0 indefinitely, 0 not at all.
 * @return 0, or SC_EINVAL (NULL or closed channel, NULL data, the reading
 *         end of a one-way channel), SC_ETOOBIG, SC_ETIMEDOUT (nothing
 *         was sent), SC_EPEERCLOSED (the peer stopped reading), SC_EPEERDIED,
 *         SC_EPROTO, SC_EAUTH or SC_EPLATFORM.
 */
int sc_send(sc_channel *ch, const void *data, size_t length, int timeout_ms);

/**
 * Receives the next message into the caller's buffer. Allocates nothing.
 *
 * @param ch The channel.
 * @param buffer Where to copy the message; may be NULL only when capacity is 0.
 * @param capacity The buffer's size; sc_max_message(ch) always suffices.
 * @param timeout_ms How long to wait for a message: <0 indefinitely, 0 not
 *        at all (SC_ETIMEDOUT means "would block").
 * @return The message's length (0 for an empty message), or SC_EINVAL,
 *         SC_ETOOBIG (the buffer is too small; the message stays first in
 *         line), SC_ETIMEDOUT, SC_EPEERCLOSED (the peer closed and every
 *         message it sent was received), SC_EPEERDIED, SC_EPROTO, SC_EAUTH
 *         or SC_EPLATFORM.
 */
long sc_recv(sc_channel *ch, void *buffer, size_t capacity, int timeout_ms);

/**
 * The largest message sc_send accepts on this channel, and a receive
 * buffer size that always suffices.
 *
 * @param ch The channel.
 * @return The size in bytes, or 0 when ch is NULL or closed.
 */
size_t sc_max_message(const sc_channel *ch);

/**
 * A file descriptor for poll, select or epoll (POLLIN / EPOLLIN), readable
 * when a message may be waiting or the channel ended (peer closed or died).
 *
 * Level-triggered after a miss: the descriptor is readable when sc_fd first
 * returns it, and becomes not readable only when sc_recv returns
 * SC_ETIMEDOUT ("would block"); from then on it turns readable when the
 * peer sends, closes or dies. So after poll reports it readable, call
 * sc_recv with timeout 0 until it returns SC_ETIMEDOUT, then poll again.
 * Readiness may be spurious (sc_recv then returns SC_ETIMEDOUT at once).
 * Do not read from or write to it, and do not close it: sc_close does.
 * It says nothing about room to send; sc_send waits for room itself.
 *
 * The first call starts the notification machinery (on the simulator, a
 * thread that turns the peer's wake-ups into a readable pipe); channels that
 * never call sc_fd pay nothing for it.
 *
 * @param ch The channel.
 * @return The descriptor (>= 0), or SC_EINVAL (NULL or closed channel,
 *         the writing end of a one-way channel) or SC_EPLATFORM (the
 *         backend has none, or no pipe or thread could be made).
 */
int sc_fd(const sc_channel *ch);

/** What one open channel end has done since it opened (sc_statistics): plain
 *  counters, the same as SecureChannel.statistics in Swift. A channel
 *  opened again (after SC_EPEERDIED from a restarted peer) starts at zero.
 *  Later versions only append fields; sc_statistics fills as many bytes as the
 *  caller's size says. */
typedef struct sc_stats {
    uint64_t messages_sent;           /* data messages sent (no control frames) */
    uint64_t bytes_sent;              /* their payload bytes */
    uint64_t messages_received;       /* data messages received and delivered */
    uint64_t bytes_received;          /* their payload bytes */
    uint64_t handshakes;              /* 1 after the open, +1 per fresh in-band handshake */
    uint64_t rekeys;                  /* key switches without a handshake, both directions */
    uint64_t protocol_violations;     /* peer frames that broke the protocol */
    uint64_t authentication_failures; /* frames that failed authentication */
    uint64_t waits;                   /* waits for the peer (empty or full ring) */
    uint64_t sleeps;                  /* of which went to sleep (never in spin mode) */
    uint64_t wakeups_sent;            /* notifications sent to a sleeping peer */
    uint64_t ns_since_handshake;      /* age of the session keys, nanoseconds */
} sc_stats;

/**
 * Copies the channel's counters into *out. Like the other calls on a
 * channel, call it from the thread that uses the channel (or between its
 * uses): the counters are bumped without locks.
 *
 * @param ch The channel.
 * @param out Where to write them.
 * @param size sizeof(*out) as the caller was compiled: a smaller size (an
 *        older header) gets the leading fields, a larger one the rest
 *        zeroed.
 * @return 0, or SC_EINVAL (NULL or closed channel, NULL out, or size 0).
 */
int sc_statistics(const sc_channel *ch, sc_stats *out, size_t size);

/**
 * Closes the sending direction (waiting up to 5 s for the peer to take
 * every message already sent), closes the channel, detaches from the
 * platform and frees everything. The handle must not be used again; a
 * later call with it returns SC_EINVAL (a small record of the closed
 * handle stays allocated for that), and a second sc_close too.
 *
 * @param ch The channel.
 * @return 0, or SC_EINVAL (NULL or already closed), or the error that kept
 *         the flush from completing (SC_ETIMEDOUT, SC_EPEERDIED, ...); the
 *         channel is closed and freed either way.
 */
int sc_close(sc_channel *ch);

/**
 * A message naming the problem an error code stands for.
 *
 * @param error A value returned by a call of this interface.
 * @return A static string, never NULL (for an unknown value, a message
 *         saying it is not a SecureChannel error; for 0 or more, "success").
 */
const char *sc_strerror(int error);

/**
 * The details of the last failure on the calling thread: which check
 * failed and how to fix it ("descriptor rejected: ...; check that key_file
 * is the key registered for this domain"). Calls that succeed leave it
 * as it was.
 *
 * @return A string owned by the library, valid until the calling thread's
 *         next failing call; "" when nothing has failed on this thread.
 */
const char *sc_last_error(void);

/**
 * The library's version, "securechannel MAJOR.MINOR.PATCH"; the major
 * number is the ABI version (the soname libsecurechannel.so.MAJOR).
 *
 * @return A static string.
 */
const char *sc_version(void);

#ifdef __cplusplus
}
#endif

#endif /* SECURECHANNEL_H */
