/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The byte shovel behind an Upgrade (WebSocket) after the 101: both directions copied until
 * each side has closed its sending half. Between plain sockets the bytes go through a pipe
 * with splice() and never enter user space; with TLS on either side they go through a buffer.
 * Readiness flags are the owners' (cleared here on EAGAIN, set by their io callbacks).
 *
 * The client side may also be something other than a socket (an HTTP/2 stream, RFC 8441):
 * then it is reached through TunnelEndOps and the bytes always go through the buffers.
 */

#include <stdint.h>

#include "buf.h"
#include "stream.h"

/* A side that is not a socket: read gives >0 bytes, 0 at its end, -EAGAIN or -errno; write
 * takes >0 bytes, -EAGAIN or -errno; shutdown_write ends what the side is sent. */
typedef struct TunnelEndOps {
        ssize_t (*read)(void *ctx, char *p, size_t n);
        ssize_t (*write)(void *ctx, const char *p, size_t n);
        void (*shutdown_write)(void *ctx);
} TunnelEndOps;

typedef struct TunnelDir {
        Stream *src, *dst;  /* NULL: that side is src_ops/dst_ops */
        const TunnelEndOps *src_ops, *dst_ops;
        void *src_ctx, *dst_ctx;
        bool *src_rd, *dst_wr;
        Buf buf;       /* bytes waiting for dst: leftovers from the HTTP phase, or non-splice data */
        int pipe[2];   /* splice path, -EBADF when unused */
        size_t in_pipe;
        bool src_eof;  /* src sent FIN / close_notify */
        bool shut;     /* dst's write half shut down after src_eof and all data flushed */
} TunnelDir;

typedef struct Tunnel {
        TunnelDir dir[2]; /* [0] client -> upstream, [1] upstream -> client */
        uint64_t bytes[2];
} Tunnel;

/* Takes over the leftover bytes of each side's buffer (moved, the Bufs are emptied). */
int tunnel_init(Tunnel *t, Stream *client, bool *client_rd, bool *client_wr, Buf *from_client, Stream *up,
                bool *up_rd, bool *up_wr, Buf *from_up);
/* The same with a client side reached through ops (ctx passed to them). */
int tunnel_init_ops(Tunnel *t, const TunnelEndOps *client_ops, void *client_ctx, bool *client_rd, bool *client_wr,
                    Stream *up, bool *up_rd, bool *up_wr, Buf *from_up);
/* 1: progress, 0: blocked, 2: both directions finished, -errno: broken. */
int tunnel_pump(Tunnel *t);
void tunnel_done(Tunnel *t);
