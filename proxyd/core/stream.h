/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A byte stream over a socket: plain, or (later) TLS. Everything above this layer reads
 * and writes through it, so the data path does not care which one it has.
 * Reads/writes return > 0 bytes, 0 on orderly EOF (reads), -EAGAIN when the socket is
 * not ready, or another -errno (the connection is broken).
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct Stream Stream;

typedef struct StreamOps {
        ssize_t (*read)(Stream *s, void *buf, size_t n);
        ssize_t (*writev)(Stream *s, const struct iovec *iov, int n_iov);
        int (*shutdown_write)(Stream *s);
        void (*close)(Stream *s);
        /* Translate the events the caller wants into the events the socket must wait for. */
        uint32_t (*events)(Stream *s, uint32_t wanted);
        /* Bytes already decrypted and buffered inside the stream (readable without epoll). */
        size_t (*pending)(Stream *s);
} StreamOps;

struct Stream {
        int fd;
        /* Plain sockets: the bytes being written are the last before the connection is
         * closed or shut down: send them with MSG_MORE, so that the FIN the close adds goes
         * out in the same segment (one segment, and one wake-up of the peer, fewer). */
        bool last_data;
        const StreamOps *ops; /* NULL: plain socket */
        void *impl;
};

#define STREAM_NULL ((Stream){ .fd = -EBADF })

static inline void stream_init_plain(Stream *s, int fd) {
        s->fd = fd;
        s->last_data = false;
        s->ops = NULL;
        s->impl = NULL;
}

static inline bool stream_is_plain(const Stream *s) {
        return !s->ops;
}

ssize_t stream_read(Stream *s, void *buf, size_t n);
ssize_t stream_write(Stream *s, const void *buf, size_t n);
ssize_t stream_writev(Stream *s, const struct iovec *iov, int n_iov);
int stream_shutdown_write(Stream *s);
uint32_t stream_events(Stream *s, uint32_t wanted);
size_t stream_pending(Stream *s);
/* Close the socket (and free any TLS state); the stream becomes STREAM_NULL. */
void stream_close(Stream *s);
