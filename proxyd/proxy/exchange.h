/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One request/response exchange, whatever the client protocol (docs/architecture.md, "The
 * data path"): routing and its decisions (exchange.c), then a response source (source.h:
 * source_local in exchange.c, source_upstream in exchange-upstream.c) that produces the
 * response and gives it to the client session (session.h) through the session ops. Private
 * to the proxy/ files; the worker sees only conn.h.
 *
 * The session drives everything: after any event it runs exchange_step(), which makes all the
 * progress it can without blocking, and derives the epoll interest and the next deadline from
 * exchange_wants_body(), exchange_has_output() and exchange_deadline(). Readiness is remembered
 * per socket (rd_ready/wr_ready, cleared on EAGAIN), so no syscall is made that is known to
 * fail. Bodies move through bounded buffers: a side is read only when what was read before has
 * been taken by the other, which is the backpressure.
 */

#include <fcntl.h>
#include <stdio.h>

#include "buf.h"
#include "http1-writer.h"
#include "client-policy.h"
#include "session.h"
#include "source.h"
#include "tunnel.h"
#include "upstream.h"

#define HEAD_READ_SIZE 4096u
#define BODY_BUF_SIZE 65536u
/* bodies (rests) at least this long are spliced when both sides are plain sockets */
#define SPLICE_MIN (32u * 1024u)
#define TIMER_ACCURACY_USEC (1 * USEC_PER_MSEC)

#define EXCHANGE_TRIES_MAX 32 /* peers one request may try */

struct Exchange {
        Session *s;
        /* The client as this request sees it: the session's (the socket's peer, or the PROXY
         * protocol's source), or the address real_ip_* took from a trusted proxy's header
         * (client_replaced). Per exchange: the streams of one HTTP/2 connection may each
         * carry another. */
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
        } remote_sa;
        char remote_addr[INET6_ADDRSTRLEN];
        unsigned remote_port;
        bool client_replaced;
        void *stream;   /* the session's own per-exchange state (an HTTP/2 stream), or NULL */
        WorkerGen *gen; /* the configuration this request runs under (the session holds it) */
        const SourceOps *src;
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
        const char *protocol; /* for the access entry: "HTTP/2.0"; NULL: HTTP/1.<minor> */
        bool client_keep_alive;
        char request_id[33];
        uint64_t start;

        /* request body, client -> source */
        HttpBodyKind req_body;    /* NONE, LENGTH (req_left bytes) or CHUNKED (length unknown) */
        uint64_t req_left;        /* LENGTH: bytes not yet taken by the source */
        uint64_t req_body_read;   /* body bytes read from the client (the session counts) */
        uint64_t body_wait_start; /* when the client last left us waiting for body bytes (0: not waiting) */
        uint64_t body_wait_total; /* time spent waiting for body bytes so far */
        bool req_done;            /* the whole body was taken by the source */
        bool body_held;           /* the session had body bytes the upstream could not take yet */

        /* local response (source_local) */
        LocalResponse local;

        /* upstream (source_upstream) */
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
        Buf up_out;   /* request body framing (and chunked data) for the upstream */
        Buf up_in;    /* from the upstream */
        size_t run_off, run_len, run_total; /* a decoded chunk-data run in up_in not yet taken */
        uint64_t up_phase_start, up_last_read, up_last_write;
        bool up_sent_any;   /* a byte of this request reached the upstream socket */
        bool up_got_any;    /* a byte of the response arrived */
        /* Writing the rest of the request failed after some of it was sent: nothing more is
         * sent, but the server may have answered before it stopped reading. */
        bool up_send_failed;
        int up_send_error;

        /* response, source -> session */
        HttpResponse resp;
        bool resp_head_done;
        HttpBodyKind resp_in; /* the upstream's framing */
        uint64_t resp_left;
        ChunkedDecoder resp_dec;
        Buf resp_trailers; /* trailer lines of a chunked response, for a session that takes them */
        bool resp_done;        /* the source has given the session everything */
        bool resp_truncated;
        bool client_head_sent; /* bytes of the final response reached the client (the session says) */
        /* A Content-Length body between plain sockets moves through a pipe (splice), never
         * through user space: pipe_len bytes of it are in the pipe. */
        bool has_pipe;
        int pipe[2];
        size_t pipe_len;

        /* Upgrade: the client asked for it (and the location allows it); after the 101 is
         * flushed the session turns the exchange into a tunnel. */
        bool upgrade;
        char *upgrade_offered; /* the allowed protocols of the client's Upgrade, as sent upstream */
        /* the Sec-WebSocket-Accept a 101 must carry when proxyd made the key (an HTTP/2
         * client's WebSocket, RFC 8441), else empty */
        char ws_accept[32];
        bool tunnel_pending;
        bool tunneling;
        Tunnel tunnel;
        uint64_t tunnel_last;

        /* the response cache (cache.c): its state, and whether body bytes given to the
         * session are teed into a new object (then nothing is spliced) */
        struct CacheState *cache;
        bool cache_tee;

        bool close_after;
        int status;
        int upstream_status;
        const char *reason;
        uint64_t bytes_sent;
        uint64_t bytes_received;
        ExchangePolicy pol; /* limits held, delay, hash key (exchange-policy.c) */
        struct ExchangeRules *rules; /* exchange-rules.c; NULL when nothing needs it */
        struct AuthState *auth; /* forward authentication (exchange-auth.c); NULL: none */
};

/* ---------------------------------------------------------------------------------------- */
/* Small helpers shared by the proxy/ files */

static inline uint64_t ex_now(const Exchange *ex) {
        return worker_now(ex->s->worker);
}

static inline Generation *ex_generation(const Exchange *ex) {
        return ex->gen->gen;
}

const char *exchange_text(const Exchange *ex);
static inline const char *ex_text(const Exchange *ex) {
        return exchange_text(ex);
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

/* splice() without blocking (retried when interrupted); -errno on failure */
static inline ssize_t splice_nb(int from, int to, size_t n) {
        for (;;) {
                ssize_t k = splice(from, NULL, to, NULL, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (k >= 0)
                        return k;
                if (errno != EINTR)
                        return -errno;
        }
}

/* One chunk of a chunked body, framed canonically. */
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

/* ---------------------------------------------------------------------------------------- */
/* exchange.c: lifetime, routing, local responses. What a session calls. */

/* A new exchange on session s, running under gen (held by the session for its lifetime). */
Exchange *exchange_new(Session *s, WorkerGen *gen, void *stream);
Exchange *exchange_free(Exchange *ex);
/* The session parsed a request head into ex->req (its fields valid during the call): route
 * it and start its response source. bytes_received is the session's to set. <0: fatal. */
int exchange_begin(Exchange *ex);
/* Run the response source: 1 on progress. */
static inline int exchange_step(Exchange *ex) {
        return ex->src ? ex->src->step(ex) : 0;
}
/* The source would take request body bytes now (and the body deadlines run). */
static inline bool exchange_wants_body(const Exchange *ex) {
        return ex->src && ex->src->wants_body(ex);
}
/* The source holds response bytes for the session. */
static inline bool exchange_has_output(const Exchange *ex) {
        return ex->src && ex->src->has_output(ex);
}
uint64_t exchange_deadline(const Exchange *ex, TimeoutKind *ret_kind);
void exchange_timeout(Exchange *ex, TimeoutKind kind);
/* The session is done with the exchange (the response was written or the client went
 * away): the source gives back what it holds (a reusable upstream connection to the pool),
 * the access entry is written, the exchange freed. */
void exchange_end(Exchange *ex);
void exchange_log(Exchange *ex);

/* Answer with a local response (error page or `return`): the source becomes source_local. */
int exchange_local_response(Exchange *ex, int status, const char *content_type, const char *body,
                            size_t body_len, const char *location, bool keep_alive);
/* The exchange failed in proxyd or at the upstream: an error page, or a cut response. */
void exchange_fail(Exchange *ex, int status, const char *reason);
/* The response cannot go on: what reached the client is all it gets, and the connection
 * closes after it so the truncation shows. */
void exchange_cut(Exchange *ex, const char *reason);
/* Writing to the client failed (error: the errno, 0 when nothing was written). */
void exchange_client_failed(Exchange *ex, int error);
/* A request proxyd will not serve (400 and friends): logged, answered, connection closed. */
void exchange_reject(Exchange *ex, int status, const char *reason, size_t offset);

/* exchange-policy.c: the traffic policy, called from routing (exchange.c) and from the
 * sessions' serializers: a location's rules (match.c), the variables of `return`, the response
 * fields of add_header / replace_header. */

/* What routing found out about the request, for the rules and the proxy part. */
typedef struct Route {
        const char *host, *origin, *norm, *args;
        size_t host_len, origin_len, norm_len, args_len;
        size_t match_len; /* of a prefix location */
} Route;

/* The variables of the request (RequestInfo) from the exchange and its route; host_lower
 * holds $host. $proxy_host is the location's proxy_pass host, or "". */
void exchange_request_info(const Exchange *ex, const Route *rt, char host_lower[static 256], RequestInfo *ri);

/* Once the location is chosen (ex->loc; NULL for a 404): the first of its rules whose
 * conditions hold makes ex->loc that rule's location; response fields with variables are
 * expanded. 0: go on; 1: answered (a condition could not be decided: 500); <0: -errno. */
int exchange_rules_route(Exchange *ex, const Route *rt);

/* Answer with ex->loc's `return`, body and Location with their variables expanded. */
int exchange_rules_return(Exchange *ex, const Route *rt, bool keep_alive);

/* The configured response fields for a response with this status (in *buf), or NULL. */
const ResponseFields *exchange_rules_fields(const Exchange *ex, int status, ResponseFields *buf);

void exchange_rules_free(Exchange *ex);

/* exchange.c: the part of proxying after forward authentication allowed the request (ri: the
 * request's variables, its headers valid during the call; target: the request-target sent
 * upstream): the cache, the upstream request head, the first attempt. <0: fatal. */
int exchange_proxy_continue(Exchange *ex, const RequestInfo *ri, const char *target, size_t target_len);

/* exchange-auth.c: forward authentication (a location's auth_request) */

typedef struct AuthState AuthState;
/* Before proxying (limits passed): 0 go on now (no auth_request, or a cached approval),
 * 1 answered or waiting for the auth service (the source is source_auth, which calls
 * exchange_proxy_continue on approval), <0 fatal. rt and target are saved for later. */
int exchange_auth_begin(Exchange *ex, const RequestInfo *ri, const Route *rt, const char *target,
                        size_t target_len);
/* The upstream request head was written: add the approval's copy_headers. */
int exchange_auth_request_head(Exchange *ex, Buf *head);
void exchange_auth_free(Exchange *ex);
/* The word for the access entry (allow, deny, redirect, error, allow-cached, deny-cached), or NULL. */
const char *exchange_auth_word(const Exchange *ex);
extern const SourceOps source_auth;

/* exchange-upstream.c: the upstream source */

/* Give the upstream connection back to the pool (reusable) or close it. */
void exchange_release_upstream(Exchange *ex, bool reusable);
/* Pick a peer and get a connection to it; 1 when an attempt started, 0 when it failed. */
int exchange_connect(Exchange *ex);

/* exchange-policy.c: client addresses (the PROXY protocol, real_ip_*) and limits */

/* A new client connection: 1 when it must start with a PROXY protocol header, 0 when not,
 * -EPERM when it must but comes from an address not in proxy_protocol_from (logged). */
int session_expects_proxy_header(Session *s);
/* Take the PROXY protocol header from fd (before anything else, TLS included): 0 done
 * (s->remote_* say whose connection it is), -EAGAIN not complete yet (edge-triggered: wait for
 * bytes), another -errno: the connection must be closed (a bad header, logged). */
int session_read_proxy_header(Session *s, int fd, bool hup);

/* exchange.c, once the location is known: real_ip_* of s. 0, or -ENOMEM. */
int exchange_client_identity(Exchange *ex, const LocationSettings *s);
/* The limits of s for a request about to be proxied. 0: go on (perhaps delayed: then the
 * exchange's source is source_limit_wait until ex->pol.delay_until), 1: answered (429),
 * <0: error. */
int exchange_limits(Exchange *ex, const RequestInfo *ri, const LocationSettings *s);
/* The upstream's hash_key, when it balances by hash; and its PROXY protocol header, in front
 * of the request head (ex->req_head, empty so far). */
int exchange_upstream_prepare(Exchange *ex, const RequestInfo *ri);
void exchange_policy_done(Exchange *ex);

/* A request a rate limit delays: nothing happens until ex->pol.delay_until, then the upstream
 * source starts. */
extern const SourceOps source_limit_wait;
/* admin-http.c: the admin endpoint (a socket whose server has admin = true: its own response
 * source), and the exchange's count in the metrics (from exchange_log) */

int admin_exchange_begin(Exchange *ex, Server *srv);
void exchange_count(Exchange *ex);
/* cache.c: the response cache's hooks (cache.h; the cache source is source_cache) */

/* Routing chose a location that proxies (ri: the request's variables, headers valid during
 * the call): purge, answer from the cache, or prepare to store. 1: the exchange was answered
 * (a hit, a purge, 504 for only-if-cached); 0: go to the upstream; <0: fatal. */
int cache_request(Exchange *ex, const RequestInfo *ri);
/* The upstream request head was written: add the validators of a revalidation. */
int cache_request_head(Exchange *ex, Buf *head);
/* The request is about to go upstream: true when another request for the same object is
 * being fetched (request collapsing); the exchange then waits in the cache source, and
 * is served the object once it is stored, or goes upstream after all. */
bool cache_wait(Exchange *ex);
/* The final upstream response head: 1 when the cache takes the response over (a 304 merged,
 * a stale copy for a 5xx; the caller sends nothing and ends the upstream response), else 0
 * with *r the head to send (Cache-Status added). <0: fatal. */
int cache_response(Exchange *ex, const HttpResponse **r);
/* After an upstream step: a response the cache took over starts being served. */
int cache_after_upstream_step(Exchange *ex);
/* Body bytes the session took from the upstream source. */
void cache_tee(Exchange *ex, const char *p, size_t n);
/* The upstream failed with status (502, 504) before any response head: 1 when a stale copy
 * is served instead. */
bool cache_upstream_failed(Exchange *ex, int status);
/* The exchange ends: store what was filled, invalidate what an unsafe method changed, count. */
void cache_exchange_end(Exchange *ex);
void cache_exchange_free(Exchange *ex);
/* The word for the access entry, or NULL. */
const char *cache_exchange_word(const Exchange *ex);
