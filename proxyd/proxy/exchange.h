/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The request path's shared state: a client connection (Conn, the HTTP/1 session: conn.c)
 * and the exchange running on it (Exchange: routing and its decisions in exchange.c, the
 * upstream attempt and the relay in both directions in exchange-upstream.c). Private to those
 * three files; the worker sees only conn.h.
 *
 * Everything is driven by one function, conn_run(): after any event it makes all the
 * progress it can without blocking (read, parse, route, connect, relay in both
 * directions), then derives the epoll interest of both sockets and the next deadline from
 * the state that is left. Readiness is remembered per socket (rd_ready/wr_ready, cleared on
 * EAGAIN), so no syscall is made that is known to fail. Bodies are relayed through bounded
 * buffers: a side is read only when what was read before has been written, which is the
 * backpressure.
 */

#include <stdio.h>

#include "buf.h"
#include "conn.h"
#include "http1-writer.h"
#include "tunnel.h"
#include "upstream.h"

#define HEAD_READ_SIZE 4096u
#define BODY_BUF_SIZE 65536u
/* bodies (rests) at least this long are spliced when both sides are plain sockets */
#define SPLICE_MIN (32u * 1024u)
#define LINGER_USEC (2 * USEC_PER_SEC)
#define LINGER_MAX_BYTES (256u * 1024u)
#define TIMER_ACCURACY_USEC (1 * USEC_PER_MSEC)
#define CONN_RUN_BUDGET 64 /* steps of one connection per event */

typedef enum ConnState {
        CONN_HEAD,    /* reading a request head (header deadline running) */
        CONN_IDLE,    /* keep-alive, waiting for the next request */
        CONN_BUSY,    /* an exchange is running */
        CONN_CLOSING, /* output flushed, write side shut down, draining input before close */
} ConnState;

typedef struct Exchange Exchange;
typedef struct ExchangePolicy ExchangePolicy;

#define EXCHANGE_TRIES_MAX 32 /* peers one request may try */

struct Conn {
        Worker *worker;
        Conn *next, *prev;
        Stream client;
        WorkerIo io;
        TimerNode timer; /* in the worker's deadline heap */
        bool resume;     /* ran out of its step budget: continue from the timer */
        size_t listener;

        WorkerGen *gen; /* configuration for the current request (taken when it starts) */
        char remote_addr[INET6_ADDRSTRLEN];
        unsigned remote_port;
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
        } remote_sa; /* the balancer's ip_hash key; a unix peer keeps only its family */
        unsigned local_port;

        ConnState state;
        Buf in;  /* from the client: request heads and bodies */
        Buf out; /* to the client: response heads, re-framed body data, local responses */
        Exchange *ex;
        uint64_t phase_start; /* HEAD: first byte or accept; IDLE: end of last exchange */
        uint64_t last_read, last_write;
        uint64_t lingered;
        bool rd_ready, wr_ready;
        bool rdhup; /* the client's FIN (or an error) was seen */
        bool draining;
        unsigned n_requests;
};

struct Exchange {
        Conn *c;
        /* req.headers (and resp.headers) point into the worker's scratch array and are valid
         * only while the head is being parsed and serialized (exchange_begin,
         * exchange_start_response). */
        Server *server;
        Location *loc;
        HttpRequest req;
        char *method;
        char *target;
        HttpMethod method_id;
        int minor;
        bool client_keep_alive;
        char request_id[33];
        uint64_t start;

        /* request body, client -> upstream */
        HttpBodyKind req_body;
        uint64_t req_left;
        ChunkedDecoder req_dec;
        uint64_t req_chunked_bytes; /* decoded so far, against client_max_body_size */
        uint64_t req_body_read;     /* body bytes read from the client */
        uint64_t body_wait_start;   /* when the client last left us waiting for body bytes (0: not waiting) */
        uint64_t body_wait_total;   /* time spent waiting for body bytes so far */
        bool req_done;

        /* upstream */
        bool https;
        UpTls tls;
        char *tls_name; /* expanded ssl_name, for SNI and verification */
        const Upstream *upstream;
        Peer *peer;                      /* acquired for the current attempt */
        Peer *tried[EXCHANGE_TRIES_MAX]; /* peers tried for this request (references) */
        size_t n_tried;
        char peer_text[128];             /* the last peer's address, for logs */
        bool peer_reported;              /* the attempt's outcome was counted (success) */
        int last_fail_status;            /* 502/504 for the last failed attempt */
        const char *last_fail_reason;    /* and why it failed, for the log of the final error */
        uint64_t first_try;              /* next_upstream_timeout counts from here */
        UpConn *up;
        unsigned tries;
        bool retried_stale;
        Buf req_head; /* the request head as sent upstream (kept for a retry) */
        size_t req_head_off;
        Buf up_out;   /* re-framed request body data */
        Buf up_in;    /* from the upstream */
        uint64_t up_phase_start, up_last_read, up_last_write;
        bool up_sent_any;   /* a byte of this request reached the upstream socket */
        bool up_got_any;    /* a byte of the response arrived */
        /* Writing the rest of the request failed after some of it was sent: nothing more is
         * sent, but the server may have answered before it stopped reading. */
        bool up_send_failed;
        int up_send_error;

        /* response, upstream -> client */
        HttpResponse resp;
        bool resp_head_done;
        HttpBodyKind resp_in;
        HttpBodyKind resp_out;
        uint64_t resp_left;
        ChunkedDecoder resp_dec;
        bool resp_done;
        bool resp_truncated;
        bool client_head_sent; /* bytes of the final response reached the client */
        /* A Content-Length body between plain sockets moves through a pipe (splice), never
         * through user space: pipe_len bytes of it are in the pipe. */
        bool has_pipe;
        int pipe[2];
        size_t pipe_len;

        /* Upgrade: the client asked for it (and the location allows it); after the 101 is
         * flushed the exchange becomes a tunnel. */
        bool upgrade;
        char *upgrade_offered; /* the allowed protocols of the client's Upgrade, as sent upstream */
        bool tunnel_pending;
        bool tunneling;
        Tunnel tunnel;
        uint64_t tunnel_last;

        bool close_after;
        int status;
        int upstream_status;
        const char *reason;
        uint64_t bytes_sent;
        uint64_t bytes_received;
        struct ExchangePolicy *policy; /* exchange-policy.c; NULL when nothing needs it */
};

typedef enum TimeoutKind {
        TIMEOUT_NONE,
        TIMEOUT_HEADER,
        TIMEOUT_KEEPALIVE,
        TIMEOUT_BODY,
        TIMEOUT_SEND,
        TIMEOUT_CONNECT,
        TIMEOUT_UP_READ,
        TIMEOUT_UP_SEND,
        TIMEOUT_LINGER,
        TIMEOUT_TUNNEL,
} TimeoutKind;

/* ---------------------------------------------------------------------------------------- */
/* Small helpers shared by the three files */

static inline uint64_t conn_now(Conn *c) {
        return worker_now(c->worker);
}

static inline Generation *conn_generation(Conn *c) {
        return (c->gen ?: c->worker->gen)->gen;
}

static inline const LocationSettings *ex_settings(const Exchange *ex) {
        if (ex->loc)
                return &ex->loc->s;
        if (ex->server)
                return &ex->server->s;
        return NULL;
}

/* A short read from a plain socket means its receive queue was empty at that moment: with
 * edge-triggered events, any byte arriving later produces a new event, so the socket need not
 * be read again until then (this saves the EAGAIN read after every request). Once the peer's
 * FIN has been seen (hup), reading goes on until EOF is read. */
static inline void note_short_read(const Stream *s, ssize_t n, size_t asked, bool hup, bool *ready) {
        if (n > 0 && (size_t) n < asked && !hup && stream_is_plain(s))
                *ready = false;
}

/* Read from s into b, making room for up to `want` bytes. >0 bytes, 0 EOF, -EAGAIN, -errno. */
static inline ssize_t read_into(Stream *s, Buf *b, size_t want, bool hup, bool *ready) {
        if (buf_space(b) < want && buf_reserve(b, want) < 0)
                return -ENOMEM;
        size_t asked = buf_space(b);
        ssize_t n = stream_read(s, buf_tail(b), asked);
        if (n > 0)
                b->end += (size_t) n;
        note_short_read(s, n, asked, hup, ready);
        return n;
}

/* One chunk of a chunked body, re-framed canonically. */
static inline int append_chunk(Buf *out, const char *data, size_t len) {
        int r = buf_append_hex(out, len);
        if (r >= 0)
                r = buf_append(out, "\r\n", 2);
        if (r >= 0)
                r = buf_append(out, data, len);
        if (r >= 0)
                r = buf_append(out, "\r\n", 2);
        return r;
}

static inline ssize_t client_write(Conn *c, const void *p, size_t n) {
        ssize_t k = stream_write(&c->client, p, n);
        if (k > 0) {
                c->last_write = conn_now(c);
                if (c->ex)
                        c->ex->bytes_sent += (uint64_t) k;
                if ((size_t) k < n)
                        c->wr_ready = false;
        } else if (k == -EAGAIN)
                c->wr_ready = false;
        return k;
}

/* ---------------------------------------------------------------------------------------- */
/* conn.c: the client connection */

const char *conn_text(const Conn *c);
const LocationSettings *conn_settings(Conn *c);
void conn_run(Conn *c);
void conn_close_now(Conn *c);
void conn_start_closing(Conn *c);

/* exchange.c: lifetime, routing and local responses */

Exchange *exchange_new(Conn *c);
Exchange *exchange_free(Exchange *ex);
void exchange_log(Exchange *ex);
/* Give the upstream connection back to the pool (reusable) or close it. */
void exchange_release_upstream(Exchange *ex, bool reusable);
/* Queue a local response (error page or `return`). */
int exchange_local_response(Exchange *ex, int status, const char *content_type, const char *body,
                            size_t body_len, const char *location, bool keep_alive);
/* The exchange failed in proxyd or at the upstream: an error page, or a cut response. */
void exchange_fail(Exchange *ex, int status, const char *reason);
void bad_request(Conn *c, const HttpError *err);
/* A request head of head_len bytes was parsed into c->ex->req: route it and start it. */
int exchange_begin(Conn *c, size_t head_len);
/* Ends the exchange; returns -1 when that closed (freed) the connection, else 1. */
int exchange_finish(Conn *c);

/* exchange-upstream.c: attempts (connect, pool, retry) and the relay */

void exchange_report(Exchange *ex, bool failed);
void exchange_end_attempt(Exchange *ex, int status, const char *reason);
bool exchange_may_retry(Exchange *ex, unsigned cond);
/* Pick a peer and get a connection to it; 1 when an attempt started, 0 when it failed. */
int exchange_connect(Exchange *ex);
/* Request and response direction; each returns 1 on progress. */
int exchange_pump_request(Exchange *ex);
int exchange_pump_response(Exchange *ex);
bool upconn_has_unread(UpConn *u, Worker *w);
