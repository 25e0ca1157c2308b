// The kernel transports a channel replaces: pipes, Unix stream and seqpacket
// sockets, TCP over loopback. All four share one ping-pong; they differ only
// in how their descriptors are made and whether one call moves one message.
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum transport { TRANSPORT_PIPE, TRANSPORT_UNIX_STREAM, TRANSPORT_UNIX_SEQPACKET, TRANSPORT_TCP };

/// Where one side reads and writes: one socket, or the ends of two pipes.
struct endpoint {
    int in, out;
};

struct socket_job {
    enum transport transport;
    struct endpoint ping, echo;
    int listener;              // TCP: the child connects to it after the fork
    struct sockaddr_in address;
    unsigned char *ping_msg, *echo_msg;
    size_t size, warmup, count;
    uint64_t *samples;
};

static void endpoint_close(struct endpoint *e) {
    if (e->in >= 0) close(e->in);
    if (e->out >= 0 && e->out != e->in) close(e->out);
    e->in = e->out = -1;
}

static void job_close(struct socket_job *j) {
    int err = errno;
    endpoint_close(&j->ping);
    endpoint_close(&j->echo);
    if (j->listener >= 0) close(j->listener);
    j->listener = -1;
    errno = err;
}

/// Blocking as applications use sockets, with timeouts so a stuck peer ends
/// the run instead of hanging it.
static int socket_tune(int fd, bool tcp) {
    struct timeval timeout = { (time_t)(BASELINE_TIMEOUT_NS / 1000000000ull), 0 };
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout) < 0)
        return -1;
    if (tcp && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) return -1;
    return 0;
}

static int job_open(struct socket_job *j) {
    j->ping = j->echo = (struct endpoint){ -1, -1 };
    j->listener = -1;
    int a[2], b[2];
    switch (j->transport) {
    case TRANSPORT_PIPE:
        // Pipes have no receive timeout: non-blocking ends, and waits in poll().
        if (pipe2(a, O_CLOEXEC | O_NONBLOCK) < 0) return -1;
        if (pipe2(b, O_CLOEXEC | O_NONBLOCK) < 0) {
            int err = errno;
            close(a[0]);
            close(a[1]);
            errno = err;
            return -1;
        }
        j->ping = (struct endpoint){ b[0], a[1] };
        j->echo = (struct endpoint){ a[0], b[1] };
        return 0;
    case TRANSPORT_UNIX_STREAM:
    case TRANSPORT_UNIX_SEQPACKET: {
        int type = j->transport == TRANSPORT_UNIX_STREAM ? SOCK_STREAM : SOCK_SEQPACKET;
        if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, a) < 0) return -1;
        j->ping = (struct endpoint){ a[0], a[0] };
        j->echo = (struct endpoint){ a[1], a[1] };
        if (socket_tune(a[0], false) < 0 || socket_tune(a[1], false) < 0) {
            job_close(j);
            return -1;
        }
        return 0;
    }
    case TRANSPORT_TCP: {
        j->listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (j->listener < 0) return -1;
        memset(&j->address, 0, sizeof j->address);
        j->address.sin_family = AF_INET;
        j->address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t length = sizeof j->address;
        if (bind(j->listener, (struct sockaddr *)&j->address, sizeof j->address) < 0 || listen(j->listener, 1) < 0 ||
            getsockname(j->listener, (struct sockaddr *)&j->address, &length) < 0) {
            job_close(j);
            return -1;
        }
        return 0;
    }
    }
    errno = EINVAL;
    return -1;
}

/// Waits in slices so a child that died without closing anything (it has
/// not connected yet, say) is noticed well before the deadline.
static int wait_fd(int fd, short events, struct peer *peer) {
    uint64_t start = now_ns();
    for (;;) {
        struct pollfd p = { fd, events, 0 };
        int r = poll(&p, 1, 100);
        if (r > 0) return 0; // readiness, or an error or hang-up the next call reports
        if (r < 0 && errno != EINTR) return -1;
        if (now_ns() - start > BASELINE_TIMEOUT_NS) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (peer && !peer_alive(peer)) {
            errno = ECHILD;
            return -1;
        }
    }
}

/// A result of read, write, recv or send that moved nothing: retry (1) or
/// fail (-1, with errno saying what happened to the peer).
static int io_stalled(const struct socket_job *j, ssize_t n, int fd, short events, struct peer *peer) {
    if (n == 0) {
        errno = ECHILD; // end of file: the other side is gone
        return -1;
    }
    if (errno == EINTR) return 1;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (j->transport != TRANSPORT_PIPE) {
            errno = ETIMEDOUT; // SO_RCVTIMEO or SO_SNDTIMEO ran out
            return -1;
        }
        return wait_fd(fd, events, peer) < 0 ? -1 : 1;
    }
    if (errno == EPIPE || errno == ECONNRESET) errno = ECHILD;
    return -1;
}

static int read_message(const struct socket_job *j, int fd, unsigned char *buf, struct peer *peer) {
    size_t done = 0;
    while (done < j->size) {
        // Waiting in poll before the read keeps a blocking read's behaviour
        // (sleep until data) while bounding it.
        if (j->transport == TRANSPORT_PIPE && wait_fd(fd, POLLIN, peer) < 0) return -1;
        ssize_t n = j->transport == TRANSPORT_PIPE ? read(fd, buf + done, j->size - done)
                                                   : recv(fd, buf + done, j->size - done, 0);
        if (n > 0) {
            if (j->transport == TRANSPORT_UNIX_SEQPACKET && (size_t)n != j->size) {
                errno = EPROTO;
                return -1;
            }
            done += (size_t)n;
        } else if (io_stalled(j, n, fd, POLLIN, peer) < 0) {
            return -1;
        }
    }
    return 0;
}

static int write_message(const struct socket_job *j, int fd, const unsigned char *buf, struct peer *peer) {
    size_t done = 0;
    while (done < j->size) {
        // MSG_NOSIGNAL: a dead peer must be an error, not a SIGPIPE.
        ssize_t n = j->transport == TRANSPORT_PIPE ? write(fd, buf + done, j->size - done)
                                                   : send(fd, buf + done, j->size - done, MSG_NOSIGNAL);
        if (n > 0) {
            if (j->transport == TRANSPORT_UNIX_SEQPACKET && (size_t)n != j->size) {
                errno = EPROTO;
                return -1;
            }
            done += (size_t)n;
        } else if (io_stalled(j, n, fd, POLLOUT, peer) < 0) {
            return -1;
        }
    }
    return 0;
}

static int tcp_connect(struct socket_job *j) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    j->echo = (struct endpoint){ fd, fd };
    // SO_SNDTIMEO also bounds connect().
    if (socket_tune(fd, true) < 0) return -1;
    while (connect(fd, (struct sockaddr *)&j->address, sizeof j->address) < 0) {
        if (errno != EINTR) return -1;
    }
    return 0;
}

static int tcp_accept(struct socket_job *j, struct peer *peer) {
    if (wait_fd(j->listener, POLLIN, peer) < 0) return -1;
    int fd = accept4(j->listener, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) return -1;
    j->ping = (struct endpoint){ fd, fd };
    close(j->listener);
    j->listener = -1;
    return socket_tune(fd, true);
}

static int socket_ping(void *ctx, const struct side *side) {
    struct socket_job *j = ctx;
    // The child's ends must close here, or the child's death would never
    // show as end of file.
    endpoint_close(&j->echo);
    if (j->transport == TRANSPORT_TCP && tcp_accept(j, side->peer) < 0) return -1;
    for (size_t i = 0; i < j->warmup + j->count; i++) {
        uint64_t start = now_ns();
        if (write_message(j, j->ping.out, j->ping_msg, side->peer) < 0) return -1;
        if (read_message(j, j->ping.in, j->ping_msg, side->peer) < 0) return -1;
        if (i >= j->warmup) j->samples[i - j->warmup] = now_ns() - start;
    }
    return 0;
}

static int socket_echo(void *ctx, const struct side *side) {
    (void)side;
    struct socket_job *j = ctx;
    endpoint_close(&j->ping);
    if (j->listener >= 0) close(j->listener);
    if (j->transport == TRANSPORT_TCP && tcp_connect(j) < 0) return -1;
    for (size_t i = 0; i < j->warmup + j->count; i++) {
        if (read_message(j, j->echo.in, j->echo_msg, NULL) < 0) return -1;
        if (write_message(j, j->echo.out, j->echo_msg, NULL) < 0) return -1;
    }
    return 0;
}

/// A write into a pipe whose reader died raises SIGPIPE in the writing
/// thread, and the default action would kill the whole caller. Block it for
/// the run and discard one that arrived.
static void sigpipe_block(sigset_t *saved) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, saved);
}

static void sigpipe_restore(const sigset_t *saved) {
    if (sigismember(saved, SIGPIPE)) return;
    sigset_t pending, set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
        struct timespec zero = { 0, 0 };
        sigtimedwait(&set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, saved, NULL);
}

static int socket_pingpong(enum transport transport, int cpu_ping, int cpu_echo, size_t size, size_t warmup,
                           size_t count, uint64_t *samples) {
    if (size == 0 || (count > 0 && samples == NULL)) {
        errno = EINVAL;
        return -1;
    }
    struct socket_job job = { .transport = transport, .size = size, .warmup = warmup, .count = count, .samples = samples };
    // Both buffers before the fork: the child must not call malloc.
    unsigned char *buffers = calloc(2, size);
    if (buffers == NULL) return -1;
    job.ping_msg = buffers;
    job.echo_msg = buffers + size;
    memset(job.ping_msg, 0x5a, size);
    if (job_open(&job) < 0) {
        int err = errno;
        free(buffers);
        errno = err;
        return -1;
    }
    sigset_t saved;
    sigpipe_block(&saved);
    int rc = run_two_processes(cpu_ping, cpu_echo, socket_ping, socket_echo, &job);
    int err = errno;
    sigpipe_restore(&saved);
    job_close(&job);
    free(buffers);
    errno = err;
    return rc;
}

int baseline_pipe_pingpong(int cpu_ping, int cpu_echo, size_t size, size_t warmup, size_t count, uint64_t *samples) {
    return socket_pingpong(TRANSPORT_PIPE, cpu_ping, cpu_echo, size, warmup, count, samples);
}

int baseline_unix_stream_pingpong(int cpu_ping, int cpu_echo, size_t size, size_t warmup, size_t count,
                                  uint64_t *samples) {
    return socket_pingpong(TRANSPORT_UNIX_STREAM, cpu_ping, cpu_echo, size, warmup, count, samples);
}

int baseline_unix_seqpacket_pingpong(int cpu_ping, int cpu_echo, size_t size, size_t warmup, size_t count,
                                     uint64_t *samples) {
    return socket_pingpong(TRANSPORT_UNIX_SEQPACKET, cpu_ping, cpu_echo, size, warmup, count, samples);
}

int baseline_tcp_loopback_pingpong(int cpu_ping, int cpu_echo, size_t size, size_t warmup, size_t count,
                                   uint64_t *samples) {
    return socket_pingpong(TRANSPORT_TCP, cpu_ping, cpu_echo, size, warmup, count, samples);
}
