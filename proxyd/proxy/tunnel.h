/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The byte shovel behind an Upgrade (WebSocket) after the 101: both directions copied until
 * each side has closed its sending half. Between plain sockets the bytes go through a pipe
 * with splice() and never enter user space; with TLS on either side they go through a buffer.
 * Readiness flags are the owners' (cleared here on EAGAIN, set by their io callbacks).
 */

#include <stdint.h>

#include "buf.h"
#include "stream.h"

typedef struct TunnelDir {
        Stream *src, *dst;
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
/* 1: progress, 0: blocked, 2: both directions finished, -errno: broken. */
int tunnel_pump(Tunnel *t);
void tunnel_done(Tunnel *t);
