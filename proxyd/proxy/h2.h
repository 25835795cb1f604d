/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The HTTP/2 client session (h2.c, RFC 9113, framing and HPACK by libnghttp2): one
 * connection, one exchange per stream. The HTTP/1 connection (conn.c) accepts the socket,
 * does the TLS handshake and reads the first bytes; when ALPN chose "h2", or the h2c
 * connection preface arrived on a listener whose default server has http2_cleartext, it hands
 * the connection over: from then on its events, its deadline and its drain go to the H2Conn,
 * while the socket, the epoll entry and the deadline slot stay the HTTP/1 connection's (which
 * the worker lists and frees).
 */

#include "buf.h"
#include "session.h"
#include "stream.h"

typedef struct H2Conn H2Conn;

/* The client connection preface (RFC 9113 section 3.4). */
#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24u

/* What the HTTP/1 connection lends to the HTTP/2 session. */
typedef struct H2Host {
        Stream *client;
        bool *rd_ready, *wr_ready, *rdhup; /* set by the connection's epoll handler */
        TimerNode *timer;                  /* the connection's slot in the worker's deadline heap */
        WorkerGen *gen;                    /* configuration for the connection (a reference is taken) */
        void (*close)(void *owner);        /* free the connection (and with it this session) */
        void *owner;
} H2Host;

/* Take over a connection: base says who the client is, in holds bytes already read (moved). */
int h2_conn_new(const Session *base, const H2Host *host, Buf *in, H2Conn **ret);
/* Free the session (from the owner's free): every exchange still running is logged and freed. */
H2Conn *h2_conn_free(H2Conn *h);
/* An event on the socket (the flags are set), or a step budget to resume. */
void h2_conn_run(H2Conn *h);
/* The deadline slot fired. */
void h2_conn_timeout(H2Conn *h);
/* Graceful stop: GOAWAY now, close when the streams are done. */
void h2_conn_drain(H2Conn *h);
