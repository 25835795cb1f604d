/* SPDX-License-Identifier: MIT */
#pragma once

/* Private to the HTTP/2 session: h2.c (the connection, nghttp2's callbacks, the session
 * ops) and h2-request.c (a stream's header block as an HttpRequest). */
#include <nghttp2/nghttp2.h>

#include "exchange.h"
#include "h2.h"
#include "log.h"
#include "tls.h"

#define H2_RUN_BUDGET 64                  /* rounds of one connection per event */
#define H2_OUT_MAX (64u * 1024u)          /* serialized frames gathered before one write */
#define H2_STREAM_OUT_MAX (64u * 1024u)   /* response bytes buffered per stream */
#define H2_CONN_OUT_MAX (1u << 20)        /* ... and for all streams of a connection */
#define H2_CONN_WINDOW (1u << 20)         /* request body bytes in flight per connection */
#define H2_MEM_MAX (4u << 20)             /* memory nghttp2 may hold for one connection */
#define H2_FLOOD_INTERVAL (10 * USEC_PER_SEC)
#define H2_MAX_RESETS 200                 /* streams reset by the client per interval */
#define H2_MAX_CONTROL 1000               /* SETTINGS, PING, PRIORITY, empty frames per interval */
#define H2_MAX_CONTINUATIONS 16           /* CONTINUATION frames of one header block */

typedef struct H2Stream H2Stream;

struct H2Stream {
        H2Conn *h;
        H2Stream *next, *prev;
        int32_t id;
        Exchange *ex; /* once its header block is complete */
        WorkerGen *gen; /* the configuration its request runs under (the worker's when it began) */

        /* the decoded header block: entries [u32 name_len][u32 value_len][name][value] */
        Buf fields;
        size_t n_fields;
        uint64_t field_bytes; /* RFC 9113 section 6.5.2 accounting: name + value + 32 each */
        bool fields_too_big;
        bool headers_done; /* the request's header block is complete: begin the exchange */
        bool end_in;       /* END_STREAM from the client */
        bool closed;       /* nghttp2 closed the stream */
        bool dirty;        /* something happened for it: its exchange is run in the next round */
        uint32_t close_error;

        Buf body;          /* request body received, not yet consumed by the exchange */
        uint64_t body_received;
        uint64_t last_data; /* the last DATA from the client (client_body_timeout) */

        bool resp_submitted;    /* a final response head was given to nghttp2 */
        bool resp_body;         /* ... with a body (a data source) */
        bool resp_eof;          /* the body is complete in `resp` */
        bool deferred;          /* the data source waits for bytes (nghttp2_session_resume_data) */
        bool reset_sent;
        Buf resp;               /* response body bytes not yet taken by nghttp2 */
        uint64_t stalled_since; /* `resp` became non-empty (0: empty): send_timeout */
        bool te_trailers;       /* the client sent te: trailers */
        Buf trailers;           /* the response's trailer lines, sent after the body */
        Buf req_trailers;       /* the request's trailer lines, "name: value\r\n" */

        /* WebSocket over HTTP/2 (RFC 8441, h2-ws.c): an extended CONNECT run as an HTTP/1.1
         * Upgrade; after the upstream's 101 the stream's DATA is the tunnel's client side */
        bool ws;
        bool ws_open;          /* the 200 was submitted: the tunnel runs (or will) */
        bool tun_rd, tun_wr;   /* the tunnel's readiness flags for the stream side */
        char ws_key[32];       /* the Sec-WebSocket-Key proxyd sent upstream */
};

struct H2Conn {
        Session s; /* first: what the exchanges see */
        H2Host host;
        Server *def;                 /* the listener's default server */
        const LocationSettings *set; /* and its settings, which apply to the connection */
        nghttp2_session *ng;
        Buf in;  /* bytes read before the hand-over, fed first */
        Buf out; /* frames serialized, not yet written */
        H2Stream *streams;
        unsigned n_streams;
        size_t mem; /* bytes nghttp2 holds for this connection */
        size_t resp_bytes; /* response bytes in the streams' buffers (H2_CONN_OUT_MAX) */
        bool resume;   /* the deadline slot is due now: run the connection after the batch */
        bool all_dirty; /* run every stream's exchange in the next round */
        bool goaway;   /* a GOAWAY was queued: no new streams, close when the streams are done */
        bool fatal;    /* a limit was hit or the session failed: ignore input, flush and close */
        uint64_t accepted, last_read, last_write, idle_since, ping_sent;
        /* the header block in progress (HEADERS without END_HEADERS, then CONTINUATION) */
        bool in_block;
        uint64_t block_start;
        unsigned block_frames;
        /* flood counters, per H2_FLOOD_INTERVAL */
        uint64_t interval_start;
        unsigned resets, control;
        bool any_stream;
};

static inline H2Conn *h2_of(const Exchange *ex) {
        return (H2Conn *) ex->s;
}

static inline uint64_t h2_now(const H2Conn *h) {
        return worker_now(h->s.worker);
}

static inline const char *h2_text(const H2Conn *h) {
        return session_text(&h->s);
}

/* h2.c, for h2-ws.c */
/* Up to n response bytes into the stream's buffer, as the per-stream and per-connection
 * budgets allow (force: all of them, for a local response): how many, or -ENOMEM. */
ssize_t h2_resp_append(H2Stream *st, const char *p, size_t n, bool force);
void h2_resp_consume(H2Stream *st, size_t n);
void h2_resp_drop(H2Stream *st); /* all of them dropped */
void h2_stream_reset(H2Stream *st, uint32_t code);
void h2_resume(H2Stream *st);
ssize_t h2_on_data_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length, uint32_t *data_flags,
                        nghttp2_data_source *source, void *ud);

/* h2-head.c: submit the head in head[0..len) (an HTTP/1 response head, modified in place)
 * for st, with a body (a data source) when body is true, as an interim HEADERS frame when
 * interim is. 0 or -errno. */
int h2_submit_head(H2Stream *st, char *head, size_t len, int status, bool body, bool interim);
/* The response's trailer lines (st->trailers) as the HEADERS frame that ends the stream. */
int h2_submit_trailers(H2Stream *st);

/* h2-ws.c: WebSocket over HTTP/2 (RFC 8441). */
/* The request of an extended CONNECT with :protocol websocket as the HTTP/1.1 Upgrade sent
 * upstream: Upgrade and a fresh Sec-WebSocket-Key appended to headers[*n], the Accept
 * expected recorded in the exchange. */
int h2_ws_request(H2Stream *st, HttpRequest *req, HttpHeader *headers, size_t *n);
/* The upstream's 101 (its Accept checked already): :status 200 on the stream. */
int h2_ws_answer(H2Stream *st, const HttpResponse *r);
/* Run the tunnel of a stream whose 200 was submitted. 1 on progress. */
int h2_ws_step(H2Stream *st);

/* h2-request.c: the stream's header block is complete: build its request and begin its
 * exchange. 0, or -errno (the stream was reset). */
int h2_stream_begin(H2Stream *st);
