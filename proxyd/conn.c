/* SPDX-License-Identifier: MIT */
/*
 * Client connections and the exchange (one request/response) running on them.
 *
 * Everything is driven by one function, conn_run(): after any event it makes all the
 * progress it can without blocking (read, parse, route, connect, relay in both
 * directions), then derives the epoll interest of both sockets and the next deadline from
 * the state that is left. Readiness is remembered per socket (rd_ready/wr_ready, cleared on
 * EAGAIN), so no syscall is made that is known to fail. Bodies are relayed through bounded
 * buffers: a side is read only when what was read before has been written, which is the
 * backpressure.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/epoll.h>

#include "conn.h"
#include "http1-writer.h"
#include "listener.h"
#include "log.h"
#include "router.h"
#include "tls.h"
#include "tunnel.h"
#include "upstream.h"
#include "uri-rewrite.h"

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

static void conn_run(Conn *c);
static void conn_free(Conn *c);
static void on_upstream_io(UpConn *u, uint32_t revents, void *userdata);

/* ---------------------------------------------------------------------------------------- */

static uint64_t conn_now(Conn *c) {
        return worker_now(c->worker);
}

/* "address:port" of the client, for log lines: built when needed (connections are held by
 * the thousand, log lines are rare), in a per-thread buffer valid until the next call. */
static const char *conn_text(const Conn *c) {
        static __thread char text[INET6_ADDRSTRLEN + 16];
        if (c->remote_sa.sa.sa_family == AF_INET6)
                snprintf(text, sizeof(text), "[%s]:%u", c->remote_addr, c->remote_port);
        else if (c->remote_sa.sa.sa_family == AF_INET)
                snprintf(text, sizeof(text), "%s:%u", c->remote_addr, c->remote_port);
        else
                snprintf(text, sizeof(text), "%s", c->remote_addr);
        return text;
}

static Generation *conn_generation(Conn *c) {
        return (c->gen ?: c->worker->gen)->gen;
}

/* Settings that apply before a server is chosen: those of the listener's default server. */
static Server *conn_default_server(Conn *c) {
        Generation *g = conn_generation(c);
        if (c->listener >= g->n_listeners || g->listener_servers[c->listener].n == 0)
                return NULL;
        return g->listener_servers[c->listener].servers[0];
}

static const LocationSettings *ex_settings(const Exchange *ex) {
        if (ex->loc)
                return &ex->loc->s;
        if (ex->server)
                return &ex->server->s;
        return NULL;
}

static const LocationSettings *conn_settings(Conn *c) {
        if (c->ex && ex_settings(c->ex))
                return ex_settings(c->ex);
        Server *s = conn_default_server(c);
        return s ? &s->s : NULL;
}

static void make_request_id(Worker *w, char out[static 33]) {
        static const char hex[] = "0123456789abcdef";
        uint64_t a = worker_random(w), b = worker_random(w);
        for (int i = 0; i < 16; i++) {
                out[i] = hex[(a >> (i * 4)) & 15];
                out[16 + i] = hex[(b >> (i * 4)) & 15];
        }
        out[32] = 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Exchange lifetime */

static Exchange *exchange_new(Conn *c) {
        Exchange *ex = calloc(1, sizeof(Exchange));

        if (!ex)
                return NULL;
        c->worker->n_exchanges++;
        ex->c = c;
        ex->start = now_usec(CLOCK_MONOTONIC);
        ex->minor = 1;
        make_request_id(c->worker, ex->request_id);
        return ex;
}

static void exchange_release_upstream(Exchange *ex, bool reusable) {
        if (ex->peer && ex->peer_reported) {
                /* the attempt succeeded and is over: the peer's active count drops */
                peer_release(ex->peer);
                ex->peer = NULL;
        }
        if (!ex->up)
                return;
        if (reusable && ex->upstream) {
                ex->up->handler = NULL;
                ex->up->userdata = NULL;
                pool_put(&ex->c->worker->pool, ex->up, ex->upstream);
        } else
                upconn_free(ex->up);
        ex->up = NULL;
}

static Exchange *exchange_free(Exchange *ex) {
        if (!ex)
                return NULL;
        if (ex->tunneling)
                tunnel_done(&ex->tunnel);
        exchange_release_upstream(ex, false);
        peer_release(ex->peer);
        for (size_t i = 0; i < ex->n_tried; i++)
                peer_unref(ex->tried[i]);
        if (ex->has_pipe)
                worker_pipe_put(ex->c->worker, ex->pipe, ex->pipe_len == 0);
        buf_free(&ex->req_head);
        buf_free(&ex->up_out);
        buf_free(&ex->up_in);
        free(ex->method);
        free(ex->target);
        free(ex->tls_name);
        free(ex->upgrade_offered);
        ex->c->worker->n_exchanges--;
        ex->c->worker->exchanges_since_trim++;
        free(ex);
        return NULL;
}

static void exchange_log(Exchange *ex) {
        Conn *c = ex->c;
        Generation *g = conn_generation(c);

        atomic_fetch_add_explicit(&c->worker->stats.requests, 1, memory_order_relaxed);
        if (!g->config->access_log)
                return;
        const AccessEntry e = {
                .client = conn_text(c),
                .server = ex->server ? ex->server->name : NULL,
                .method = ex->method ?: "-",
                .uri = ex->target ?: "-",
                .status = ex->status,
                .upstream = ex->n_tried > 0 ? ex->peer_text : NULL,
                .upstream_status = ex->upstream_status,
                .bytes_sent = ex->bytes_sent,
                .bytes_received = ex->bytes_received,
                .duration_usec = now_usec(CLOCK_MONOTONIC) - ex->start,
                .request_id = ex->request_id,
                .reason = ex->reason,
        };
        if (g->access_file)
                access_buf_add(&c->worker->access_buf, g->access_file, &e);
        else
                log_access(&e);
}

/* ---------------------------------------------------------------------------------------- */
/* I/O helpers */

/* A short read from a plain socket means its receive queue was empty at that moment: with
 * edge-triggered events, any byte arriving later produces a new event, so the socket need not
 * be read again until then (this saves the EAGAIN read after every request). Once the peer's
 * FIN has been seen (hup), reading goes on until EOF is read. */
static void note_short_read(const Stream *s, ssize_t n, size_t asked, bool hup, bool *ready) {
        if (n > 0 && (size_t) n < asked && !hup && stream_is_plain(s))
                *ready = false;
}

/* Read from s into b, making room for up to `want` bytes. >0 bytes, 0 EOF, -EAGAIN, -errno. */
static ssize_t read_into(Stream *s, Buf *b, size_t want, bool hup, bool *ready) {
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
static int append_chunk(Buf *out, const char *data, size_t len) {
        int r = buf_append_hex(out, len);
        if (r >= 0)
                r = buf_append(out, "\r\n", 2);
        if (r >= 0)
                r = buf_append(out, data, len);
        if (r >= 0)
                r = buf_append(out, "\r\n", 2);
        return r;
}

static ssize_t client_write(Conn *c, const void *p, size_t n) {
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
/* Closing */

static void conn_close_now(Conn *c) {
        conn_free(c);
}

/* Output is flushed: shut down our side and drain what the client still sends, so that
 * closing does not reset the connection under a response the client has not read yet. */
static void conn_start_closing(Conn *c) {
        c->state = CONN_CLOSING;
        c->phase_start = conn_now(c);
        c->lingered = 0;
        buf_free(&c->out);
        buf_reset(&c->in);
        (void) stream_shutdown_write(&c->client);
}

/* Queue a local response (error page or `return`). */
static int exchange_local_response(Exchange *ex, int status, const char *content_type, const char *body,
                                   size_t body_len, const char *location, bool keep_alive) {
        Conn *c = ex->c;
        ex->status = status;
        ex->resp_done = true;
        ex->close_after = ex->close_after || !keep_alive;
        return http1_write_local_response(&c->out, status, content_type, body, body_len, location,
                                          !ex->close_after, ex->method_id == HTTP_METHOD_HEAD);
}

/* The exchange failed in proxyd or at the upstream. Before any response byte reached the
 * client an error page is sent; after that the client connection can only be closed. */
static void exchange_fail(Exchange *ex, int status, const char *reason) {
        Conn *c = ex->c;

        ex->reason = reason;
        exchange_release_upstream(ex, false);
        if (ex->client_head_sent || ex->resp_head_done) {
                /* The status line is on its way: a truncated response must look truncated. */
                ex->resp_truncated = true;
                ex->resp_done = true;
                ex->close_after = true;
                return;
        }
        buf_reset(&c->out);
        ex->close_after = true;
        (void) exchange_local_response(ex, status, NULL, NULL, 0, NULL, false);
}

/* ---------------------------------------------------------------------------------------- */
/* Upstream side */

static bool method_idempotent(HttpMethod m) {
        return m == HTTP_METHOD_GET || m == HTTP_METHOD_HEAD || m == HTTP_METHOD_PUT || m == HTTP_METHOD_DELETE ||
               m == HTTP_METHOD_OPTIONS || m == HTTP_METHOD_TRACE;
}

/* Count the attempt's outcome for passive health (once) and log a state change. */
static void exchange_report(Exchange *ex, bool failed) {
        const UpstreamServer *s;

        if (!ex->peer || ex->peer_reported)
                return;
        ex->peer_reported = true;
        s = ex->peer->conf;
        switch (peer_report(ex->peer, failed, conn_now(ex->c))) {
        case PEER_WENT_DOWN: {
                char d[32];
                log_upstream_event(LOG_WARNING, ex->upstream->name, ex->peer->text, "down",
                                   "upstream %s: server %s (%s) marked unavailable for %s after %u failure(s)",
                                   ex->upstream->name, ex->peer->text, s->address,
                                   format_duration(s->fail_timeout, d, sizeof(d)), s->max_fails);
                break;
        }
        case PEER_CAME_UP:
                log_upstream_event(LOG_INFO, ex->upstream->name, ex->peer->text, "up",
                                   "upstream %s: server %s (%s) is available again", ex->upstream->name,
                                   ex->peer->text, s->address);
                break;
        case PEER_UNCHANGED:
                break;
        }
}

/* The current attempt failed with `status` (502, or 504 for timeouts) for `reason`: report
 * it, give the peer back (it stays in the tried list). */
static void exchange_end_attempt(Exchange *ex, int status, const char *reason) {
        ex->last_fail_status = status;
        ex->last_fail_reason = reason;
        exchange_report(ex, true);
        peer_release(ex->peer);
        ex->peer = NULL;
}

/* May the request go to another server after a failure of kind `cond` (NEXT_UPSTREAM_*)? */
static bool exchange_may_retry(Exchange *ex, unsigned cond) {
        const Upstream *up = ex->upstream;

        if (!(up->next_upstream & cond) || ex->client_head_sent || ex->n_tried >= EXCHANGE_TRIES_MAX)
                return false;
        if (ex->up_sent_any) {
                /* The request reached the server: send it again only if it can be sent whole
                 * (no body streamed) and repeating it is harmless or allowed. */
                if (ex->req_body != HTTP_BODY_NONE)
                        return false;
                if (!method_idempotent(ex->method_id) && !(up->next_upstream & NEXT_UPSTREAM_NON_IDEMPOTENT))
                        return false;
        }
        if (up->next_upstream_tries > 0 && ex->tries >= up->next_upstream_tries)
                return false;
        if (up->next_upstream_timeout > 0 && conn_now(ex->c) >= ex->first_try + up->next_upstream_timeout)
                return false;
        return true;
}

static int exchange_connect(Exchange *ex) {
        Conn *c = ex->c;
        int r;

        for (;;) {
                uint64_t now = conn_now(c);
                Peer *p = upstream_pick(ex->upstream->rt, (const struct sockaddr *) &c->remote_sa, ex->tried,
                                        ex->n_tried, now, &c->worker->rng);
                if (!p) {
                        if (ex->tries > 0 && ex->last_fail_status)
                                /* the log says why the last attempt failed, not only that
                                 * there was nothing left to try */
                                exchange_fail(ex, ex->last_fail_status,
                                              ex->last_fail_reason ?: "no other upstream server to try");
                        else
                                exchange_fail(ex, 502, "no upstream server available");
                        return 0;
                }
                ex->peer = p;
                ex->peer_reported = false;
                if (ex->n_tried < EXCHANGE_TRIES_MAX)
                        ex->tried[ex->n_tried++] = peer_ref(p);
                size_t tl = strnlen(p->text, sizeof(ex->peer_text) - 1);
                memcpy(ex->peer_text, p->text, tl);
                ex->peer_text[tl] = 0;
                if (ex->tries == 0)
                        ex->first_try = now;
                ex->tries++;

                r = pool_get(&c->worker->pool, &p->addr, p->addrlen, p->text, ex->https ? &ex->tls : NULL,
                             on_upstream_io, ex, &ex->up);
                if (r >= 0)
                        break;
                log_warning_errno(r, "%s: connect() to upstream %s failed", conn_text(c), ex->peer_text);
                exchange_end_attempt(ex, 502, "upstream connect failed");
                ex->up_sent_any = false;
                if (!exchange_may_retry(ex, NEXT_UPSTREAM_ERROR)) {
                        exchange_fail(ex, 502, "upstream connect failed");
                        return 0;
                }
        }
        ex->up_phase_start = ex->up_last_read = ex->up_last_write = conn_now(c);
        ex->req_head_off = 0;
        ex->up_sent_any = false;
        ex->up_got_any = false;
        ex->up_send_failed = false;
        ex->up->requests++;
        return 1;
}

/* Connecting failed or a reused connection turned out to be closed: try the next server as
 * next_upstream allows, else fail. */
static void exchange_upstream_error(Exchange *ex, int error, const char *what) {
        Conn *c = ex->c;
        bool stale = ex->up && ex->up->reused && !ex->up_got_any;
        /* Nothing of the request reached the socket (the first write failed): the head and any
         * body are still all here, whatever the method. */
        bool replayable = ex->req_body == HTTP_BODY_NONE || !ex->up_sent_any;
        bool retry_stale = stale && replayable && !ex->retried_stale;

        if (retry_stale)
                log_info("%s: upstream %s: kept-alive connection closed by the server (%s%s%s); retrying on a "
                         "new connection", conn_text(c), ex->peer_text, what, error ? ": " : "",
                         error ? strerror(error) : "");
        else if (error != 0)
                log_warning_errno(error, "%s: upstream %s: %s", conn_text(c), ex->peer_text, what);
        else
                log_warning("%s: upstream %s: %s", conn_text(c), ex->peer_text, what);
        exchange_release_upstream(ex, false);

        if (retry_stale) {
                /* A pooled connection the server had already closed: not the server's failure;
                 * retry once on a fresh connection (the same peer may be picked again). */
                ex->retried_stale = true;
                peer_release(ex->peer);
                ex->peer = NULL;
                if (ex->n_tried > 0) {
                        ex->n_tried--;
                        ex->tried[ex->n_tried] = peer_unref(ex->tried[ex->n_tried]);
                }
                if (ex->tries > 0)
                        ex->tries--;
                (void) exchange_connect(ex);
                return;
        }
        exchange_end_attempt(ex, 502, what);
        if (exchange_may_retry(ex, NEXT_UPSTREAM_ERROR)) {
                (void) exchange_connect(ex);
                return;
        }
        exchange_fail(ex, 502, what);
}

static void on_upstream_io(UpConn *u, uint32_t revents, void *userdata) {
        Exchange *ex = userdata;
        Conn *c = ex->c;

        revents = tls_stream_revents(&u->stream, revents);
        if (u->connecting) {
                if (!u->tcp_connected) {
                        int err = 0;
                        socklen_t len = sizeof(err);
                        if (getsockopt(u->stream.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                                err = errno;
                        if (err != 0) {
                                exchange_upstream_error(ex, err, "connect failed");
                                conn_run(c);
                                return;
                        }
                        u->tcp_connected = true;
                }
                if (tls_stream_is_tls(&u->stream)) {
                        int r = tls_stream_handshake(&u->stream);
                        if (r == -EAGAIN) {
                                conn_run(c);
                                return;
                        }
                        if (r < 0) {
                                /* e.g. "certificate verify failed: ..." */
                                const char *why = tls_stream_error(&u->stream);
                                log_warning("%s: TLS handshake with upstream %s failed: %s", conn_text(c),
                                            ex->peer_text, why ?: strerror(-r));
                                exchange_upstream_error(ex, 0, "upstream TLS handshake failed");
                                conn_run(c);
                                return;
                        }
                }
                u->connecting = false;
                u->wr_ready = true;
                ex->up_last_read = ex->up_last_write = conn_now(c);
        }
        if (revents & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))
                u->rdhup = true;
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))
                u->rd_ready = true;
        if (revents & (EPOLLOUT | EPOLLHUP | EPOLLERR))
                u->wr_ready = true;
        conn_run(c);
}

/* Writing the request to the upstream failed. Before any byte of it was sent this is a
 * connection error like any other (a kept-alive connection the server closed, retried). After
 * that, the server may simply have answered early, e.g. a 413 for a body it will not take,
 * and closed the connection with the rest of the body unread: the reset that follows fails
 * our write, but the answer is still in the socket. So stop sending and read it; only when no
 * response head can be read is the send failure the exchange's error (exchange_pump_response).
 * The client's unsent body is not read any further; its connection closes after the
 * response. Returns 1. */
static int exchange_send_failed(Exchange *ex, int error) {
        if (!ex->up_sent_any) {
                exchange_upstream_error(ex, error, "send failed");
                return 1;
        }
        log_info("%s: upstream %s: sending the request failed (%s); reading its response first",
                 conn_text(ex->c), ex->peer_text, strerror(error));
        ex->up_send_failed = true;
        ex->up_send_error = error;
        ex->close_after = true;
        ex->up->rd_ready = true; /* the reset (or FIN) is news for the read side as well */
        return 1;
}

/* Request direction. Returns 1 on progress. */
static int exchange_pump_request(Exchange *ex) {
        Conn *c = ex->c;
        UpConn *u = ex->up;
        int progress = 0;
        ssize_t n;

        if (!u || u->connecting || ex->up_send_failed)
                return 0;

        /* Head first, then re-framed body data, then (Content-Length) body bytes already read:
         * one syscall for what is ready. */
        while (u->wr_ready && (ex->req_head_off < buf_len(&ex->req_head) || buf_len(&ex->up_out) > 0)) {
                struct iovec iov[3];
                int k = 0;
                size_t head = buf_len(&ex->req_head) - ex->req_head_off, framed = buf_len(&ex->up_out), body = 0;
                if (head > 0)
                        iov[k++] = (struct iovec){ buf_head(&ex->req_head) + ex->req_head_off, head };
                if (framed > 0)
                        iov[k++] = (struct iovec){ buf_head(&ex->up_out), framed };
                if (ex->req_body == HTTP_BODY_LENGTH && !ex->req_done && buf_len(&c->in) > 0) {
                        body = (size_t) MIN((uint64_t) buf_len(&c->in), ex->req_left);
                        iov[k++] = (struct iovec){ buf_head(&c->in), body };
                }
                n = stream_writev(&u->stream, iov, k);
                if (n == -EAGAIN) {
                        u->wr_ready = false;
                        break;
                }
                if (n < 0)
                        return exchange_send_failed(ex, (int) -n);
                ex->up_sent_any = true;
                ex->up_last_write = ex->up_last_read = conn_now(c);
                size_t left = (size_t) n, h = MIN(left, head);
                ex->req_head_off += h;
                left -= h;
                size_t f = MIN(left, framed);
                buf_consume(&ex->up_out, f);
                left -= f;
                if (left > 0) {
                        buf_consume(&c->in, left);
                        ex->req_left -= left;
                        if (ex->req_left == 0)
                                ex->req_done = true;
                }
                if ((size_t) n < head + framed + body)
                        u->wr_ready = false;
                progress = 1;
        }
        if (ex->req_head_off < buf_len(&ex->req_head) || buf_len(&ex->up_out) > 0 || ex->req_done)
                return progress;

        /* Body data waiting in the client buffer. */
        if (buf_len(&c->in) > 0) {
                if (ex->req_body == HTTP_BODY_LENGTH) {
                        if (!u->wr_ready)
                                return progress;
                        size_t k = (size_t) MIN((uint64_t) buf_len(&c->in), ex->req_left);
                        n = stream_write(&u->stream, buf_head(&c->in), k);
                        if (n == -EAGAIN) {
                                u->wr_ready = false;
                                return progress;
                        }
                        if (n < 0)
                                return exchange_send_failed(ex, (int) -n);
                        ex->up_sent_any = true;
                        ex->up_last_write = ex->up_last_read = conn_now(c);
                        buf_consume(&c->in, (size_t) n);
                        ex->req_left -= (uint64_t) n;
                        if (ex->req_left == 0)
                                ex->req_done = true;
                        return 1;
                }
                /* chunked: decode, re-frame into up_out */
                while (buf_len(&c->in) > 0 && !ex->req_done && buf_len(&ex->up_out) < BODY_BUF_SIZE) {
                        size_t off = 0, dlen = 0;
                        n = chunked_decode(&ex->req_dec, buf_head(&c->in), buf_len(&c->in), &off, &dlen);
                        if (n < 0) {
                                log_warning("%s: bad request: invalid chunked body", conn_text(c));
                                exchange_fail(ex, 400, "invalid chunked request body");
                                return 1;
                        }
                        if (n == 0)
                                break;
                        ex->req_chunked_bytes += dlen;
                        if (ex_settings(ex)->client_max_body_size > 0 &&
                            ex->req_chunked_bytes > ex_settings(ex)->client_max_body_size) {
                                log_info("%s: chunked request body exceeds client_max_body_size", conn_text(c));
                                exchange_fail(ex, 413, "request body too large");
                                return 1;
                        }
                        if (dlen > 0) {
                                if (append_chunk(&ex->up_out, buf_head(&c->in) + off, dlen) < 0) {
                                        exchange_fail(ex, 500, "out of memory");
                                        return 1;
                                }
                        }
                        buf_consume(&c->in, (size_t) n);
                        if (ex->req_dec.done) {
                                if (buf_append(&ex->up_out, "0\r\n\r\n", 5) < 0) {
                                        exchange_fail(ex, 500, "out of memory");
                                        return 1;
                                }
                                ex->req_done = true;
                        }
                        progress = 1;
                }
                return progress;
        }

        /* Need more body from the client. */
        if (!c->rd_ready)
                return progress;
        n = read_into(&c->client, &c->in, BODY_BUF_SIZE, c->rdhup, &c->rd_ready);
        if (n == -EAGAIN) {
                c->rd_ready = false;
                if (ex->body_wait_start == 0)
                        ex->body_wait_start = conn_now(c);
                return progress;
        }
        if (n <= 0) {
                log_info("%s: client closed the connection during the request body", conn_text(c));
                ex->status = 400;
                ex->reason = "client closed during request body";
                exchange_release_upstream(ex, false);
                ex->close_after = true;
                ex->resp_done = true;
                buf_reset(&c->out);
                return 1;
        }
        c->last_read = conn_now(c);
        ex->bytes_received += (uint64_t) n;
        ex->req_body_read += (uint64_t) n;
        if (ex->body_wait_start > 0) {
                ex->body_wait_total += c->last_read - ex->body_wait_start;
                ex->body_wait_start = 0;
        }
        if (!c->rd_ready)
                ex->body_wait_start = c->last_read; /* a short read: waiting for the client again */
        return 1;
}

/* The final response head arrived: decide the framing towards the client and queue the head. */
static int exchange_start_response(Exchange *ex) {
        Conn *c = ex->c;
        const HttpResponse *r = &ex->resp;
        bool keep_alive = ex->client_keep_alive && !ex->close_after && !c->draining;

        ex->upstream_status = r->status;
        ex->status = r->status;
        if (r->status == 101) {
                ex->tunnel_pending = true;
                ex->close_after = true;
                return http1_write_response_head(&c->out, r, ex_settings(ex), HTTP_BODY_UNTIL_CLOSE, false, ex->minor);
        }
        ex->resp_in = r->body;
        ex->resp_left = r->content_length;
        switch (r->body) {
        case HTTP_BODY_NONE:
                ex->resp_out = HTTP_BODY_NONE;
                break;
        case HTTP_BODY_LENGTH:
                ex->resp_out = HTTP_BODY_LENGTH;
                break;
        case HTTP_BODY_CHUNKED:
        case HTTP_BODY_UNTIL_CLOSE:
                if (ex->minor >= 1)
                        ex->resp_out = HTTP_BODY_CHUNKED;
                else {
                        ex->resp_out = HTTP_BODY_UNTIL_CLOSE;
                        keep_alive = false;
                }
                break;
        }
        /* RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 response is faulty framing; the
         * body is decoded as chunked and the client connection closed after it. */
        if (r->body == HTTP_BODY_CHUNKED && r->version_minor == 0)
                keep_alive = false;
        if (r->body == HTTP_BODY_CHUNKED)
                chunked_decoder_init(&ex->resp_dec, ex->server->limits.max_chunk_overhead);
        if (!keep_alive)
                ex->close_after = true;

        int k = http1_write_response_head(&c->out, r, ex_settings(ex), ex->resp_out, keep_alive, ex->minor);
        if (k < 0)
                return k;
        if (r->body == HTTP_BODY_NONE || (r->body == HTTP_BODY_LENGTH && r->content_length == 0))
                ex->resp_done = true;
        return 0;
}

/* The response cannot go on (client gone, upstream gone mid-body): what reached the client
 * is all it gets, and the connection closes after it so the truncation shows. Returns 1. */
static int exchange_cut_response(Exchange *ex, const char *reason) {
        ex->reason = reason;
        ex->resp_truncated = ex->resp_done = ex->close_after = true;
        exchange_release_upstream(ex, false);
        return 1;
}

static int exchange_client_write_failed(Exchange *ex, int error) {
        log_info("%s: client write failed: %s", conn_text(ex->c), error ? strerror(error) : "nothing written");
        return exchange_cut_response(ex, "client write failed");
}

static int exchange_upstream_cut(Exchange *ex, int error) {
        if (error)
                log_warning_errno(error, "%s: reading the response body from upstream %s failed", conn_text(ex->c),
                                  ex->peer_text);
        else
                log_warning("%s: upstream %s closed the connection before the end of the response body",
                            conn_text(ex->c), ex->peer_text);
        return exchange_cut_response(ex, "upstream prematurely closed the connection");
}

/* splice() without blocking (retried when interrupted); -errno on failure */
static ssize_t splice_nb(int from, int to, size_t n) {
        for (;;) {
                ssize_t k = splice(from, NULL, to, NULL, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (k >= 0)
                        return k;
                if (errno != EINTR)
                        return -errno;
        }
}

/* The rest of a Content-Length body from a plain upstream socket to a plain client socket:
 * upstream -> pipe -> client with splice(), the pipe filled only when empty (the same
 * backpressure as the buffers). Returns 1 on progress, 0 when blocked, -EOPNOTSUPP when no
 * pipe can be had (the caller copies instead). */
static int exchange_splice_response(Exchange *ex) {
        Conn *c = ex->c;
        UpConn *u = ex->up;
        ssize_t n;

        if (!ex->has_pipe) {
                if (worker_pipe_get(c->worker, ex->pipe) < 0)
                        return -EOPNOTSUPP;
                ex->has_pipe = true;
        }
        if (ex->pipe_len == 0) {
                if (!u->rd_ready)
                        return 0;
                size_t want = (size_t) MIN(ex->resp_left, (uint64_t) WORKER_PIPE_SIZE);
                n = splice_nb(u->stream.fd, ex->pipe[1], want);
                if (n == -EAGAIN) {
                        /* the pipe is empty, so it is the socket that has nothing */
                        u->rd_ready = false;
                        return 0;
                }
                if (n <= 0)
                        return exchange_upstream_cut(ex, (int) -n);
                /* A short splice need not mean the socket is drained (the pipe may have run out
                 * of slots): rd_ready stays, and the next fill says EAGAIN if it is. */
                ex->pipe_len = (size_t) n;
                ex->up_last_read = conn_now(c);
                return 1;
        }
        if (!c->wr_ready)
                return 0;
        n = splice_nb(ex->pipe[0], c->client.fd, ex->pipe_len);
        if (n == -EAGAIN) {
                c->wr_ready = false;
                return 0;
        }
        if (n <= 0)
                return exchange_client_write_failed(ex, (int) -n);
        c->last_write = conn_now(c);
        ex->bytes_sent += (uint64_t) n;
        ex->client_head_sent = true;
        ex->pipe_len -= (size_t) n;
        ex->resp_left -= (uint64_t) n;
        if (ex->pipe_len > 0)
                c->wr_ready = false; /* a short write: the socket buffer is full */
        if (ex->resp_left == 0)
                ex->resp_done = true;
        return 1;
}

/* Response direction. Returns 1 on progress. */
/* A 101 must switch to (one of) the protocols sent upstream, and say which. */
static bool upgrade_answer_matches(const Exchange *ex, const HttpResponse *r) {
        int i = http1_find_header(r->headers, r->n_headers, "Upgrade");
        if (i < 0 || !ex->upgrade_offered)
                return false;
        return http1_upgrade_matches(r->headers[i].value, r->headers[i].value_len, ex->upgrade_offered,
                                     strlen(ex->upgrade_offered));
}

static int exchange_pump_response(Exchange *ex) {
        Conn *c = ex->c;
        UpConn *u = ex->up;
        int progress = 0;
        ssize_t n;

        /* Flush what is queued for the client first: the bound on buffered data. A response
         * head goes out together with the Content-Length body bytes already read. */
        while (buf_len(&c->out) > 0 && c->wr_ready) {
                size_t body = 0;
                if (ex->resp_head_done && !ex->resp_done && ex->resp_in == HTTP_BODY_LENGTH &&
                    ex->resp_out == HTTP_BODY_LENGTH && buf_len(&ex->up_in) > 0)
                        body = (size_t) MIN((uint64_t) buf_len(&ex->up_in), ex->resp_left);
                if (body > 0) {
                        size_t head = buf_len(&c->out);
                        struct iovec iov[2] = { { buf_head(&c->out), head }, { buf_head(&ex->up_in), body } };
                        c->client.last_data = ex->close_after && body == ex->resp_left;
                        n = stream_writev(&c->client, iov, 2);
                        if (n > 0) {
                                c->last_write = conn_now(c);
                                ex->bytes_sent += (uint64_t) n;
                                ex->client_head_sent = true;
                                size_t h = MIN((size_t) n, head), b = (size_t) n - h;
                                buf_consume(&c->out, h);
                                buf_consume(&ex->up_in, b);
                                ex->resp_left -= b;
                                if (ex->resp_left == 0)
                                        ex->resp_done = true;
                                if ((size_t) n < head + body)
                                        c->wr_ready = false;
                                progress = 1;
                                continue;
                        }
                        if (n == -EAGAIN)
                                c->wr_ready = false;
                } else {
                        c->client.last_data = ex->close_after && ex->resp_done;
                        n = client_write(c, buf_head(&c->out), buf_len(&c->out));
                }
                if (n == -EAGAIN)
                        break;
                if (n < 0) {
                        buf_reset(&c->out);
                        return exchange_client_write_failed(ex, (int) -n);
                }
                if (ex->resp_head_done)
                        ex->client_head_sent = true;
                buf_consume(&c->out, (size_t) n);
                progress = 1;
        }
        if (ex->tunnel_pending && buf_len(&c->out) == 0 && u) {
                /* The 101 is out: from here on bytes flow both ways unchanged. */
                ex->tunnel_pending = false;
                ex->tunneling = true;
                ex->client_head_sent = true;
                ex->tunnel_last = conn_now(c);
                (void) tunnel_init(&ex->tunnel, &c->client, &c->rd_ready, &c->wr_ready, &c->in, &u->stream,
                                   &u->rd_ready, &u->wr_ready, &ex->up_in);
                return 1;
        }
        if (buf_len(&c->out) > 0 || ex->resp_done || !u || u->connecting || ex->tunnel_pending)
                return progress;

        if (!ex->resp_head_done) {
                if (buf_len(&ex->up_in) > 0) {
                        HttpError err = {};
                        /* Header fields are parsed into the worker's scratch array: the head is
                         * serialized for the client right away and not looked at again. */
                        size_t max_headers = ex->server->limits.max_headers;
                        HttpHeader *headers = worker_header_scratch(c->worker, max_headers);
                        if (!headers) {
                                exchange_fail(ex, 500, "out of memory");
                                return 1;
                        }
                        n = http1_parse_response(buf_head(&ex->up_in), buf_len(&ex->up_in), &ex->server->limits,
                                                 ex->method_id, &ex->resp, headers, max_headers, &err);
                        if (n < 0) {
                                log_warning("%s: upstream %s sent an invalid response: %s (offset %zu)",
                                            conn_text(c), ex->peer_text, err.reason ?: "malformed",
                                            err.offset);
                                exchange_release_upstream(ex, false);
                                exchange_end_attempt(ex, 502, "invalid response from upstream");
                                if (exchange_may_retry(ex, NEXT_UPSTREAM_INVALID_HEADER)) {
                                        buf_reset(&ex->up_in);
                                        (void) exchange_connect(ex);
                                        return 1;
                                }
                                exchange_fail(ex, 502, "invalid response from upstream");
                                return 1;
                        }
                        if (n > 0) {
                                if (ex->resp.status == 101 && ex->upgrade &&
                                    !upgrade_answer_matches(ex, &ex->resp)) {
                                        log_warning("%s: upstream %s switched to a protocol that was not asked for",
                                                    conn_text(c), ex->peer_text);
                                        exchange_fail(ex, 502, "101 with an Upgrade that was not offered");
                                        return 1;
                                }
                                if (ex->resp.status < 200 && !(ex->resp.status == 101 && ex->upgrade)) {
                                        /* 1xx: 100 was answered by proxyd itself; 101 needs a tunnel,
                                         * which this request did not ask for. Others are dropped. */
                                        if (ex->resp.status == 101) {
                                                exchange_fail(ex, 502, "unexpected 101 from upstream");
                                                return 1;
                                        }
                                        buf_consume(&ex->up_in, (size_t) n);
                                        return 1;
                                }
                                unsigned cond = ex->resp.status == 502   ? NEXT_UPSTREAM_HTTP_502
                                                : ex->resp.status == 503 ? NEXT_UPSTREAM_HTTP_503
                                                : ex->resp.status == 504 ? NEXT_UPSTREAM_HTTP_504
                                                                         : 0;
                                bool failed = cond && (ex->upstream->next_upstream & cond);
                                if (failed) {
                                        log_warning("%s: upstream %s answered %d", conn_text(c), ex->peer_text,
                                                    ex->resp.status);
                                        if (exchange_may_retry(ex, cond)) {
                                                exchange_release_upstream(ex, false);
                                                exchange_end_attempt(ex, 502, NULL);
                                                buf_reset(&ex->up_in);
                                                (void) exchange_connect(ex);
                                                return 1;
                                        }
                                }
                                exchange_report(ex, failed);
                                int r = exchange_start_response(ex);
                                buf_consume(&ex->up_in, (size_t) n);
                                ex->resp_head_done = true;
                                ex->up_last_read = conn_now(c);
                                if (r < 0) {
                                        exchange_fail(ex, 502, "cannot build response head");
                                        return 1;
                                }
                                return 1;
                        }
                }
                if (!u->rd_ready)
                        return progress;
                n = read_into(&u->stream, &ex->up_in, HEAD_READ_SIZE, u->rdhup, &u->rd_ready);
                if (n == -EAGAIN) {
                        u->rd_ready = false;
                        return progress;
                }
                if (n <= 0) {
                        if (ex->up_send_failed)
                                /* no early answer: the failed send was the end of it */
                                exchange_upstream_error(ex, ex->up_send_error, "send failed");
                        else
                                exchange_upstream_error(ex, n < 0 ? (int) -n : 0,
                                                        ex->up_got_any ? "upstream closed the connection in the response head"
                                                                       : "upstream closed the connection without a response");
                        return 1;
                }
                /* up_last_read is not moved: read_timeout bounds the whole response head
                 * (interim 1xx responses included), counted from the last byte of the request
                 * that was sent, so a server trickling its head cannot hold the client for
                 * longer. From the final head on it bounds the silence between two reads. */
                ex->up_got_any = true;
                return 1;
        }

        /* Body. */
        if (buf_len(&ex->up_in) > 0) {
                if (ex->resp_in == HTTP_BODY_CHUNKED) {
                        while (buf_len(&ex->up_in) > 0 && !ex->resp_done && buf_len(&c->out) < BODY_BUF_SIZE) {
                                size_t off = 0, dlen = 0;
                                n = chunked_decode(&ex->resp_dec, buf_head(&ex->up_in), buf_len(&ex->up_in), &off,
                                                   &dlen);
                                if (n < 0) {
                                        log_warning("%s: upstream %s sent an invalid chunked body", conn_text(c),
                                                    ex->peer_text);
                                        exchange_fail(ex, 502, "invalid chunked body from upstream");
                                        return 1;
                                }
                                if (n == 0)
                                        break;
                                if (dlen > 0) {
                                        const char *data = buf_head(&ex->up_in) + off;
                                        int r = ex->resp_out == HTTP_BODY_CHUNKED ? append_chunk(&c->out, data, dlen)
                                                                                  : buf_append(&c->out, data, dlen);
                                        if (r < 0) {
                                                exchange_fail(ex, 500, "out of memory");
                                                return 1;
                                        }
                                }
                                buf_consume(&ex->up_in, (size_t) n);
                                if (ex->resp_dec.done) {
                                        if (ex->resp_out == HTTP_BODY_CHUNKED && buf_append(&c->out, "0\r\n\r\n", 5) < 0) {
                                                exchange_fail(ex, 500, "out of memory");
                                                return 1;
                                        }
                                        ex->resp_done = true;
                                }
                        }
                        return 1;
                }
                if (ex->resp_out == HTTP_BODY_CHUNKED) {
                        /* until-close upstream body to an HTTP/1.1 client: chunk it */
                        size_t k = buf_len(&ex->up_in);
                        if (append_chunk(&c->out, buf_head(&ex->up_in), k) < 0) {
                                exchange_fail(ex, 500, "out of memory");
                                return 1;
                        }
                        buf_consume(&ex->up_in, k);
                        return 1;
                }
                /* Content-Length or raw: straight from the upstream buffer to the client. */
                if (!c->wr_ready)
                        return progress;
                size_t k = buf_len(&ex->up_in);
                if (ex->resp_in == HTTP_BODY_LENGTH)
                        k = (size_t) MIN((uint64_t) k, ex->resp_left);
                n = client_write(c, buf_head(&ex->up_in), k);
                if (n == -EAGAIN)
                        return progress;
                if (n < 0) {
                        return exchange_client_write_failed(ex, (int) -n);
                }
                ex->client_head_sent = true;
                buf_consume(&ex->up_in, (size_t) n);
                if (ex->resp_in == HTTP_BODY_LENGTH) {
                        ex->resp_left -= (uint64_t) n;
                        if (ex->resp_left == 0)
                                ex->resp_done = true;
                }
                return 1;
        }

        if (ex->resp_in == HTTP_BODY_LENGTH && ex->resp_out == HTTP_BODY_LENGTH && buf_len(&c->out) == 0 &&
            (ex->pipe_len > 0 || ex->resp_left >= SPLICE_MIN) && stream_is_plain(&c->client) &&
            stream_is_plain(&u->stream)) {
                int r = exchange_splice_response(ex);
                if (r != -EOPNOTSUPP)
                        return r > 0 ? 1 : progress;
        }

        if (!u->rd_ready)
                return progress;
        n = read_into(&u->stream, &ex->up_in, BODY_BUF_SIZE, u->rdhup, &u->rd_ready);
        if (n == -EAGAIN) {
                u->rd_ready = false;
                return progress;
        }
        if (n == 0 && ex->resp_in == HTTP_BODY_UNTIL_CLOSE) {
                ex->resp_done = true;
                ex->close_after = ex->close_after || ex->resp_out == HTTP_BODY_UNTIL_CLOSE;
                if (ex->resp_out == HTTP_BODY_CHUNKED && buf_append(&c->out, "0\r\n\r\n", 5) < 0)
                        ex->close_after = true;
                exchange_release_upstream(ex, false);
                return 1;
        }
        if (n <= 0)
                return exchange_upstream_cut(ex, n < 0 ? (int) -n : 0);
        ex->up_last_read = conn_now(c);
        return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Request start: route and decide */

static void bad_request(Conn *c, const HttpError *err) {
        Exchange *ex = c->ex;
        log_warning("%s: bad request: %s (offset %zu), status %d", conn_text(c), err->reason ?: "malformed",
                    err->offset, err->status);
        ex->reason = err->reason;
        ex->close_after = true;
        c->state = CONN_BUSY;
        (void) exchange_local_response(ex, err->status ?: 400, NULL, NULL, 0, NULL, false);
        buf_reset(&c->in);
}

/* $host: from an absolute-form target, else the Host field, else the server's name. */
static void request_host(const Exchange *ex, const char **ret, size_t *ret_len) {
        const HttpRequest *req = &ex->req;
        const char *h = NULL;
        size_t n = 0;

        if (req->target_len > 7 && (strncasecmp(req->target, "http://", 7) == 0 ||
                                    strncasecmp(req->target, "https://", 8) == 0)) {
                const char *p = memchr(req->target, ':', req->target_len) + 3;
                const char *e = req->target + req->target_len;
                h = p;
                while (p < e && *p != '/' && *p != '?')
                        p++;
                n = (size_t) (p - h);
        } else if (req->host_index >= 0) {
                h = req->headers[req->host_index].value;
                n = req->headers[req->host_index].value_len;
        }
        /* strip the port */
        if (h && n > 0) {
                if (h[0] == '[') {
                        const char *rb = memchr(h, ']', n);
                        if (rb)
                                n = (size_t) (rb - h) + 1;
                } else {
                        const char *colon = memchr(h, ':', n);
                        if (colon)
                                n = (size_t) (colon - h);
                }
        }
        *ret = h;
        *ret_len = h ? n : 0;
}

/* The origin-form part of the request-target (absolute-form is reduced to its path). */
static void request_origin_target(const HttpRequest *req, const char **ret, size_t *ret_len) {
        const char *t = req->target, *e = req->target + req->target_len;
        if (req->target_len > 0 && t[0] != '/') {
                const char *p = memchr(t, ':', req->target_len);
                if (p && e - p >= 3) {
                        p += 3;
                        while (p < e && *p != '/' && *p != '?')
                                p++;
                        if (p == e || *p == '?') {
                                /* "http://h" or "http://h?x": the path is "/" */
                                static const char slash[] = "/";
                                if (p == e) {
                                        *ret = slash;
                                        *ret_len = 1;
                                        return;
                                }
                        }
                        *ret = p;
                        *ret_len = (size_t) (e - p);
                        return;
                }
        }
        *ret = t;
        *ret_len = req->target_len;
}

/* https upstream: the client context for the location, and ssl_name expanded (without a
 * port or IPv6 brackets) as the name to send (SNI) and to verify. */
static int exchange_setup_tls(Exchange *ex, const RequestInfo *ri, const LocationSettings *s) {
        Generation *g = conn_generation(ex->c);
        Buf name = {};
        int r;

        r = var_expand(&name, s->ssl_name, ri);
        if (r >= 0)
                r = buf_append(&name, "", 1);
        if (r < 0) {
                buf_free(&name);
                return r;
        }
        char *n = buf_head(&name);
        host_strip_port(n);
        ex->tls_name = strdup(n);
        buf_free(&name);
        if (!ex->tls_name)
                return -ENOMEM;
        ex->https = true;
        ex->tls = (UpTls){
                .ctx = tls_client_set_get(g->tls_clients, s),
                .sni = s->ssl_server_name ? ex->tls_name : NULL,
                .verify_name = ex->tls_name,
                .verify = s->ssl_verify,
        };
        return ex->tls.ctx ? 0 : -ENOENT;
}

/* Tunnel only what the location allows (upgrade_protocols, "websocket" by default) on a
 * body-less HTTP/1.1 request that asks for it with Connection: upgrade. Any other Upgrade is
 * hop-by-hop and dropped: an h2c upgrade tunnelled to the backend would let the client send
 * it requests that no location of proxyd ever sees. */
static int exchange_decide_upgrade(Exchange *ex, const LocationSettings *s, HttpHeader *ret) {
        const HttpRequest *req = &ex->req;

        ex->upgrade = false;
        if (!s->websocket || !(req->connection & HTTP_CONN_UPGRADE) || req->upgrade_index < 0 ||
            req->version_minor < 1)
                return 0;
        const HttpHeader *h = &req->headers[req->upgrade_index];
        if (ex->req_body != HTTP_BODY_NONE) {
                log_debug("%s: Upgrade \"%.*s\" on a request with a body: not upgraded", conn_text(ex->c),
                          (int) MIN(h->value_len, 64u), h->value);
                return 0;
        }
        char *v = malloc(h->value_len + 1);
        if (!v)
                return -ENOMEM;
        if (http1_upgrade_filter(h->value, h->value_len, s->upgrade_protocols, s->n_upgrade_protocols, v) == 0) {
                log_debug("%s: Upgrade \"%.*s\" is not in upgrade_protocols: dropped", conn_text(ex->c),
                          (int) MIN(h->value_len, 64u), h->value);
                free(v);
                return 0;
        }
        free(ex->upgrade_offered);
        ex->upgrade_offered = v;
        ex->upgrade = true;
        *ret = (HttpHeader){ .name = "Upgrade", .name_len = 7, .value = v, .value_len = strlen(v) };
        return 0;
}

/* Header fields whose names contain '_' are dropped unless underscores_in_headers is on: CGI,
 * WSGI and PHP fold '_' and '-' into one variable, so "X_Remote_User" would pass for the
 * "X-Remote-User" that a set_header strips or sets. The indices the parser derived follow. */
static void request_drop_underscores(Exchange *ex) {
        HttpRequest *req = &ex->req;
        size_t j = 0;
        int host = -1, upgrade = -1;

        for (size_t i = 0; i < req->n_headers; i++) {
                const HttpHeader *h = &req->headers[i];
                if (http1_name_has_underscore(h->name, h->name_len)) {
                        log_debug("%s: dropped request header field \"%.*s\" (underscores_in_headers is off)",
                                  conn_text(ex->c), (int) MIN(h->name_len, 64u), h->name);
                        continue;
                }
                if ((int) i == req->host_index)
                        host = (int) j;
                if ((int) i == req->upgrade_index)
                        upgrade = (int) j;
                req->headers[j++] = *h;
        }
        req->n_headers = j;
        req->host_index = host;
        req->upgrade_index = upgrade;
}

static int exchange_begin(Conn *c, size_t head_len) {
        Exchange *ex = c->ex;
        HttpRequest *req = &ex->req;
        Generation *g = conn_generation(c);
        const ListenerServers *ls = &g->listener_servers[c->listener];
        _cleanup_free_ char *norm = NULL;
        _cleanup_free_ char *rewritten = NULL;
        const char *host, *args = NULL, *origin;
        size_t host_len, norm_len = 0, args_len = 0, origin_len, match_len = 0;
        int r;

        c->state = CONN_BUSY;
        c->n_requests++;
        ex->method = strndup(req->method, req->method_len);
        ex->target = strndup(req->target, req->target_len);
        if (!ex->method || !ex->target)
                return -ENOMEM;
        ex->method_id = req->method_id;
        ex->minor = req->version_minor;
        ex->client_keep_alive = req->keep_alive;
        ex->bytes_received = head_len;
        ex->req_body = req->body;
        ex->req_left = req->body == HTTP_BODY_LENGTH ? req->content_length : 0;
        if (req->body == HTTP_BODY_NONE || (req->body == HTTP_BODY_LENGTH && req->content_length == 0)) {
                ex->req_done = true;
                ex->req_body = HTTP_BODY_NONE;
        }

        request_host(ex, &host, &host_len);
        ex->server = router_select_server(ls->servers, ls->n, host, host_len);
        if (!ex->server) {
                buf_consume(&c->in, head_len);
                return exchange_local_response(ex, 500, NULL, NULL, 0, NULL, false);
        }
        if (req->body == HTTP_BODY_CHUNKED)
                chunked_decoder_init(&ex->req_dec, ex->server->limits.max_chunk_overhead);

        request_origin_target(req, &origin, &origin_len);
        r = uri_normalize(origin, origin_len, &norm, &norm_len, &args, &args_len);
        if (r < 0) {
                HttpError err = { .status = 400, .reason = "request-target cannot be normalized" };
                if (r == -ENOMEM)
                        return r;
                bad_request(c, &err);
                return 0;
        }

        Location *redirect = router_auto_redirect(ex->server, norm, norm_len);
        if (redirect) {
                _cleanup_free_ char *where = NULL;
                if (asprintf(&where, "%s%s%.*s", redirect->pattern, args ? "?" : "", (int) args_len,
                             args ?: "") < 0)
                        return -ENOMEM;
                ex->loc = redirect;
                buf_consume(&c->in, head_len);
                return exchange_local_response(ex, 301, NULL, NULL, 0, where, !ex->req_done);
        }

        ex->loc = router_select_location(ex->server, norm, norm_len, &match_len);
        const LocationSettings *s = ex_settings(ex);
        bool body_pending = !ex->req_done;

        if (!ex->loc) {
                buf_consume(&c->in, head_len);
                return exchange_local_response(ex, 404, NULL, NULL, 0, NULL, !body_pending);
        }
        if (s->n_access > 0) {
                struct sockaddr_storage ss = {};
                socklen_t len = sizeof(ss);
                if (getpeername(c->client.fd, (struct sockaddr *) &ss, &len) < 0)
                        ss.ss_family = AF_UNIX;
                if (!access_check(s->access, s->n_access, (struct sockaddr *) &ss)) {
                        log_info("%s: access to %s forbidden by rule", conn_text(c), ex->target);
                        ex->reason = "access denied";
                        buf_consume(&c->in, head_len);
                        return exchange_local_response(ex, 403, NULL, NULL, 0, NULL, !body_pending);
                }
        }
        if (s->client_max_body_size > 0 && req->body == HTTP_BODY_LENGTH &&
            req->content_length > s->client_max_body_size) {
                log_info("%s: request body of %llu bytes exceeds client_max_body_size", conn_text(c),
                         (unsigned long long) req->content_length);
                ex->reason = "request body too large";
                buf_consume(&c->in, head_len);
                return exchange_local_response(ex, 413, NULL, NULL, 0, NULL, false);
        }
        if (ex->loc->return_status > 0) {
                const char *body = ex->loc->return_body;
                buf_consume(&c->in, head_len);
                return exchange_local_response(ex, ex->loc->return_status, "text/plain", body ?: "",
                                               body ? strlen(body) : 0, ex->loc->return_location, !body_pending);
        }

        /* Proxy. */
        if (!s->underscores_in_headers)
                request_drop_underscores(ex);
        const ProxyPass *pp = ex->loc->proxy;
        if (!pp->uri) {
                /* Forwarded as received: a backend resolving "/admin//.." or "/admin/x%2F../.."
                 * by RFC 3986 would land below a location that proxyd did not route to. */
                r = uri_raw_is_unambiguous(origin, origin_len, norm, norm_len);
                if (r == -ENOMEM)
                        return r;
                if (r == 0) {
                        HttpError err = { .status = 400,
                                          .reason = "request-target would be resolved differently by the upstream" };
                        bad_request(c, &err);
                        return 0;
                }
        }
        const char *target = origin;
        size_t target_len = origin_len;
        if (pp->uri) {
                r = uri_rewrite(norm, norm_len, ex->loc->match == MATCH_EXACT ? norm_len : match_len, pp->uri,
                                args, args_len, &rewritten);
                if (r < 0)
                        return r;
                target = rewritten;
                target_len = strlen(rewritten);
        }

        char host_lower[256];
        size_t hl = MIN(host_len, sizeof(host_lower) - 1);
        for (size_t i = 0; i < hl; i++)
                host_lower[i] = ascii_tolower(host[i]);
        host_lower[hl] = 0;
        const char *server_name = ex->server->n_server_names > 0 ? ex->server->server_names[0] : ex->server->name;
        RequestInfo ri = {
                .req = req,
                .remote_addr = c->remote_addr,
                .remote_port = c->remote_port,
                .scheme = tls_stream_is_tls(&c->client) ? "https" : "http",
                .ssl_client_s_dn = tls_stream_client_subject(&c->client),
                .host = hl > 0 ? host_lower : server_name,
                .host_len = hl > 0 ? hl : strlen(server_name),
                .uri = norm,
                .uri_len = norm_len,
                .args = args,
                .args_len = args_len,
                .server_name = server_name,
                .server_port = c->local_port,
                .proxy_host = pp->proxy_host,
                .request_id = ex->request_id,
        };
        ex->upstream = pp->upstream;
        if (pp->https) {
                r = exchange_setup_tls(ex, &ri, s);
                if (r < 0)
                        return r;
        }
        bool up_keep_alive = pp->upstream->keepalive > 0;
        HttpHeader upgrade = {};
        r = exchange_decide_upgrade(ex, s, &upgrade);
        if (r < 0)
                return r;
        r = http1_write_request_head(&ex->req_head, &ri, target, target_len, s, ex->req_body,
                                     ex->req_left, up_keep_alive, ex->upgrade ? &upgrade : NULL);
        if (r < 0)
                return r;

        if (req->expect_continue && !ex->req_done && buf_len(&c->in) == head_len)
                (void) buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");

        /* The head is serialized; the client buffer now holds only body (and what follows). */
        buf_consume(&c->in, head_len);
        ex->req_body_read = buf_len(&c->in); /* body bytes that came with the head count too */
        return exchange_connect(ex);
}

/* ---------------------------------------------------------------------------------------- */

/* Did the upstream send anything (bytes or EOF) past the end of its response? Such bytes must
 * not go back to the pool: the next request sent on the connection would read them as its
 * response. They may be in the socket without being in up_in: a spliced body is taken out
 * by its exact length, and a HEAD or 304 response has no body to delimit what follows. A plain
 * socket whose last read was short and that has had no event since holds nothing (the check
 * costs no syscall then); otherwise it is asked. */
static bool upconn_has_unread(UpConn *u, Worker *w) {
        char probe;

        if (stream_pending(&u->stream) > 0)
                return true;
        if (!stream_is_plain(&u->stream) || (!u->rd_ready && !worker_io_pending(w, &u->io)))
                return false;
        ssize_t k = recv(u->stream.fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
        return !(k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

/* Ends the exchange; returns -1 when that closed (freed) the connection, else 1. */
static int exchange_finish(Conn *c) {
        Exchange *ex = c->ex;
        bool up_reusable = ex->up && ex->resp_done && ex->req_done && !ex->resp_truncated && ex->resp.keep_alive &&
                           ex->req_head_off == buf_len(&ex->req_head) && buf_len(&ex->up_out) == 0;
        if (up_reusable && (buf_len(&ex->up_in) > 0 || upconn_has_unread(ex->up, c->worker))) {
                log_warning("%s: upstream %s sent data after the end of its response; not reusing the connection",
                            conn_text(c), ex->peer_text);
                up_reusable = false;
        }
        bool keep = !ex->close_after && ex->req_done && ex->client_keep_alive && !c->draining;
        bool client_keep_alive = ex->client_keep_alive, req_done = ex->req_done;

        exchange_release_upstream(ex, up_reusable);
        exchange_log(ex);
        c->ex = exchange_free(ex);
        c->gen = worker_gen_unref(c->gen);

        if (!keep) {
                char probe;
                /* Close at once when the client asked for it and sent nothing more (or has
                 * closed already, as most clients do on reading Connection: close); otherwise
                 * linger, so unread input does not turn the close into a reset under the
                 * response. */
                if (!client_keep_alive && stream_is_plain(&c->client) && buf_len(&c->in) == 0 && req_done) {
                        /* The last read drained the socket and no event for it came since: it
                         * holds nothing, no need to ask the kernel. */
                        bool drained = !c->rd_ready && !worker_io_pending(c->worker, &c->io);
                        ssize_t k = drained ? -1 : recv(c->client.fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
                        if (drained || k == 0 || (k < 0 && errno == EAGAIN)) {
                                conn_close_now(c);
                                return -1;
                        }
                }
                conn_start_closing(c);
                return 1;
        }
        c->phase_start = conn_now(c);
        if (buf_len(&c->in) > 0)
                c->state = CONN_HEAD;
        else {
                c->state = CONN_IDLE;
                /* Idle connections hold no buffers. */
                buf_free(&c->in);
                buf_free(&c->out);
        }
        return 1;
}

/* Returns 1 on progress, 0 when blocked, -1 when the connection was freed. */
static int conn_step(Conn *c) {
        ssize_t n;

        switch (c->state) {
        case CONN_IDLE:
        case CONN_HEAD: {
                if (_unlikely_(tls_stream_is_tls(&c->client) && !tls_stream_handshake_done(&c->client))) {
                        /* Counted in the header deadline: it runs from accept. */
                        int r = tls_stream_handshake(&c->client);
                        if (r == -EAGAIN) {
                                c->rd_ready = false;
                                return 0;
                        }
                        if (r < 0) {
                                log_info("%s: TLS handshake failed: %s", conn_text(c),
                                         tls_stream_error(&c->client) ?: strerror(-r));
                                conn_close_now(c);
                                return -1;
                        }
                        return 1;
                }
                if (buf_len(&c->in) > 0) {
                        Server *def;
                        HttpError err = {};

                        if (!c->gen)
                                c->gen = worker_gen_ref(c->worker->gen);
                        if (!c->ex) {
                                c->ex = exchange_new(c);
                                if (!c->ex) {
                                        conn_close_now(c);
                                        return -1;
                                }
                        }
                        if (c->state == CONN_IDLE) {
                                c->state = CONN_HEAD;
                                c->phase_start = conn_now(c);
                        }
                        def = conn_default_server(c);
                        HttpHeader *headers = def ? worker_header_scratch(c->worker, def->limits.max_headers) : NULL;
                        if (!headers) {
                                conn_close_now(c);
                                return -1;
                        }
                        n = http1_parse_request(buf_head(&c->in), buf_len(&c->in), &def->limits, &c->ex->req,
                                                headers, def->limits.max_headers, &err);
                        if (n < 0) {
                                bad_request(c, &err);
                                return 1;
                        }
                        if (n > 0) {
                                int r = exchange_begin(c, (size_t) n);
                                if (r < 0) {
                                        log_error_errno(r, "%s: cannot start the request", conn_text(c));
                                        conn_close_now(c);
                                        return -1;
                                }
                                return 1;
                        }
                }
                if (!c->rd_ready)
                        return 0;
                if (buf_len(&c->in) == 0) {
                        /* Read a new head into the worker's scratch buffer and keep only what
                         * arrived: a keep-alive connection whose next request is not there yet
                         * allocates nothing. */
                        char *scratch = worker_read_scratch(c->worker);
                        if (!scratch) {
                                conn_close_now(c);
                                return -1;
                        }
                        n = stream_read(&c->client, scratch, WORKER_READ_SCRATCH);
                        note_short_read(&c->client, n, WORKER_READ_SCRATCH, c->rdhup, &c->rd_ready);
                        if (n > 0 && buf_append(&c->in, scratch, (size_t) n) < 0) {
                                conn_close_now(c);
                                return -1;
                        }
                } else
                        n = read_into(&c->client, &c->in, HEAD_READ_SIZE, c->rdhup, &c->rd_ready);
                if (n == -EAGAIN) {
                        c->rd_ready = false;
                        return 0;
                }
                if (n <= 0) {
                        if (buf_len(&c->in) > 0)
                                log_info("%s: client closed the connection in the middle of a request head",
                                         conn_text(c));
                        conn_close_now(c);
                        return -1;
                }
                c->last_read = conn_now(c);
                return 1;
        }
        case CONN_BUSY: {
                Exchange *ex = c->ex;
                if (ex->tunneling) {
                        int r = tunnel_pump(&ex->tunnel);
                        if (r < 0)
                                log_info("%s: tunnel to %s broken: %s", conn_text(c), ex->peer_text,
                                         strerror(-r));
                        if (r < 0 || r == 2) {
                                ex->bytes_sent += ex->tunnel.bytes[1];
                                ex->bytes_received += ex->tunnel.bytes[0];
                                ex->resp_done = ex->close_after = true;
                                return exchange_finish(c);
                        }
                        if (r > 0)
                                ex->tunnel_last = conn_now(c);
                        return r;
                }
                int p = exchange_pump_request(ex);
                p |= exchange_pump_response(ex);
                if (ex->resp_done && buf_len(&c->out) == 0) {
                        if (!ex->req_done) {
                                /* The response is complete but the request body is not: the upstream
                                 * connection cannot be reused and the client's rest is not read. */
                                ex->close_after = true;
                        }
                        return exchange_finish(c);
                }
                return p;
        }
        case CONN_CLOSING: {
                char scratch[4096];
                if (!c->rd_ready)
                        return 0;
                n = stream_read(&c->client, scratch, sizeof(scratch));
                if (n == -EAGAIN) {
                        c->rd_ready = false;
                        return 0;
                }
                if (n <= 0 || (c->lingered += (uint64_t) n) > LINGER_MAX_BYTES) {
                        conn_close_now(c);
                        return -1;
                }
                return 1;
        }
        }
        return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Interest and deadlines */

static bool ex_wants_client_read(const Exchange *ex) {
        const Conn *c = ex->c;
        return !ex->req_done && !ex->resp_done && ex->up && !ex->up->connecting && !ex->up_send_failed &&
               ex->req_head_off == buf_len(&ex->req_head) && buf_len(&ex->up_out) == 0 && buf_len(&c->in) == 0;
}

static bool ex_wants_client_write(const Exchange *ex) {
        const Conn *c = ex->c;
        return buf_len(&c->out) > 0 || ex->pipe_len > 0 ||
               (ex->resp_head_done && !ex->resp_done && buf_len(&ex->up_in) > 0 &&
                ex->resp_out != HTTP_BODY_CHUNKED && ex->resp_in != HTTP_BODY_CHUNKED);
}

static bool ex_wants_up_read(const Exchange *ex) {
        const Conn *c = ex->c;
        if (!ex->up || ex->up->connecting || ex->resp_done)
                return false;
        if (!ex->resp_head_done)
                return true;
        return buf_len(&c->out) == 0 && buf_len(&ex->up_in) == 0 && ex->pipe_len == 0;
}

static bool ex_wants_up_write(const Exchange *ex) {
        const Conn *c = ex->c;
        if (!ex->up || ex->up_send_failed)
                return false;
        if (ex->up->connecting)
                return true;
        if (ex->req_head_off < buf_len(&ex->req_head) || buf_len(&ex->up_out) > 0)
                return true;
        return !ex->req_done && ex->req_body == HTTP_BODY_LENGTH && buf_len(&c->in) > 0;
}

/* The earliest deadline for the connection's current state, and which one it is. */
static uint64_t conn_deadline(Conn *c, TimeoutKind *ret_kind) {
        const LocationSettings *s = conn_settings(c);
        uint64_t d = USEC_INFINITY;
        TimeoutKind kind = TIMEOUT_NONE;

#define CONSIDER(value, k)                    \
        do {                                  \
                uint64_t _v = (value);        \
                if (_v < d) {                 \
                        d = _v;               \
                        kind = (k);           \
                }                             \
        } while (0)

        if (!s) {
                *ret_kind = TIMEOUT_NONE;
                return USEC_INFINITY;
        }
        switch (c->state) {
        case CONN_HEAD:
                CONSIDER(c->phase_start + s->client_header_timeout, TIMEOUT_HEADER);
                break;
        case CONN_IDLE:
                CONSIDER(c->phase_start + s->keepalive_timeout, TIMEOUT_KEEPALIVE);
                break;
        case CONN_CLOSING:
                CONSIDER(c->phase_start + LINGER_USEC, TIMEOUT_LINGER);
                break;
        case CONN_BUSY: {
                Exchange *ex = c->ex;
                if (ex->tunneling) {
                        CONSIDER(ex->tunnel_last + s->tunnel_timeout, TIMEOUT_TUNNEL);
                        break;
                }
                if (ex_wants_client_read(ex) && !c->rd_ready) {
                        CONSIDER(c->last_read + s->client_body_timeout, TIMEOUT_BODY);
                        /* Slow bodies: after a grace of client_body_timeout, the time spent
                         * waiting for the client may not exceed what client_body_min_rate allows
                         * for the bytes received so far. */
                        if (s->client_body_min_rate > 0 && ex->body_wait_start > 0) {
                                uint64_t allowed = s->client_body_timeout +
                                                   ex->req_body_read * USEC_PER_SEC / s->client_body_min_rate;
                                uint64_t used = ex->body_wait_total;
                                CONSIDER(ex->body_wait_start + (allowed > used ? allowed - used : 0), TIMEOUT_BODY);
                        }
                }
                if (ex_wants_client_write(ex) && !c->wr_ready)
                        CONSIDER(c->last_write + s->send_timeout, TIMEOUT_SEND);
                if (ex->up) {
                        if (ex->up->connecting)
                                CONSIDER(ex->up_phase_start + s->connect_timeout, TIMEOUT_CONNECT);
                        else {
                                if (ex_wants_up_read(ex) && !ex->up->rd_ready)
                                        CONSIDER(ex->up_last_read + s->read_timeout, TIMEOUT_UP_READ);
                                if (ex_wants_up_write(ex) && !ex->up->wr_ready)
                                        CONSIDER(ex->up_last_write + s->send_timeout, TIMEOUT_UP_SEND);
                        }
                }
                break;
        }
        }
#undef CONSIDER
        *ret_kind = kind;
        return d;
}

static void conn_update_timer(Conn *c) {
        TimeoutKind kind;
        uint64_t d = conn_deadline(c, &kind);

        if (d == USEC_INFINITY) {
                worker_timer_remove(c->worker, &c->timer);
                return;
        }
        /* Progress moves deadlines later; a deadline that comes early is re-queued when it
         * fires (conn_timeout), so only an earlier deadline needs the heap updated now. */
        if (d < c->timer.when || c->timer.idx == TIMER_NOT_QUEUED)
                (void) worker_timer_set(c->worker, &c->timer, d);
}

Conn *conn_from_timer(TimerNode *t) {
        return (Conn *) ((char *) t - offsetof(Conn, timer));
}

void conn_timeout(Conn *c) {
        TimeoutKind kind;
        uint64_t d, now;

        if (c->resume) {
                c->resume = false;
                conn_run(c);
                return;
        }
        d = conn_deadline(c, &kind);
        now = conn_now(c);

        if (d == USEC_INFINITY)
                return;
        if (now + TIMER_ACCURACY_USEC < d) {
                (void) worker_timer_set(c->worker, &c->timer, d);
                return;
        }

        switch (kind) {
        case TIMEOUT_HEADER: {
                if (tls_stream_is_tls(&c->client) && !tls_stream_handshake_done(&c->client)) {
                        /* No HTTP can be spoken yet: just close. */
                        log_info("%s: client_header_timeout expired during the TLS handshake", conn_text(c));
                        conn_close_now(c);
                        return;
                }
                log_info("%s: client_header_timeout expired before the request head was complete", conn_text(c));
                if (!c->gen)
                        c->gen = worker_gen_ref(c->worker->gen);
                if (!c->ex)
                        c->ex = exchange_new(c);
                if (!c->ex) {
                        conn_close_now(c);
                        return;
                }
                c->state = CONN_BUSY;
                c->ex->reason = "client_header_timeout";
                c->ex->close_after = true;
                buf_reset(&c->in);
                (void) exchange_local_response(c->ex, 408, NULL, NULL, 0, NULL, false);
                break;
        }
        case TIMEOUT_KEEPALIVE:
        case TIMEOUT_LINGER:
                conn_close_now(c);
                return;
        case TIMEOUT_TUNNEL:
                log_info("%s: tunnel idle for too long, closing", conn_text(c));
                c->ex->bytes_sent += c->ex->tunnel.bytes[1];
                c->ex->bytes_received += c->ex->tunnel.bytes[0];
                conn_close_now(c);
                return;
        case TIMEOUT_BODY:
                log_info("%s: request body too slow (client_body_timeout / client_body_min_rate)", conn_text(c));
                exchange_fail(c->ex, 408, "client_body_timeout");
                c->ex->close_after = true;
                break;
        case TIMEOUT_SEND:
                log_info("%s: send_timeout expired writing to the client", conn_text(c));
                c->ex->reason = "send_timeout";
                conn_close_now(c);
                return;
        case TIMEOUT_CONNECT:
                log_warning("%s: upstream %s: connect_timeout expired", conn_text(c), c->ex->peer_text);
                exchange_release_upstream(c->ex, false);
                exchange_end_attempt(c->ex, 504, "upstream connect timed out");
                c->ex->up_sent_any = false;
                if (exchange_may_retry(c->ex, NEXT_UPSTREAM_TIMEOUT))
                        (void) exchange_connect(c->ex);
                else
                        exchange_fail(c->ex, 504, "upstream connect timed out");
                break;
        case TIMEOUT_UP_READ:
                log_warning("%s: upstream %s: read_timeout expired", conn_text(c), c->ex->peer_text);
                if (!c->ex->resp_head_done) {
                        exchange_release_upstream(c->ex, false);
                        exchange_end_attempt(c->ex, 504, "upstream timed out");
                        if (exchange_may_retry(c->ex, NEXT_UPSTREAM_TIMEOUT)) {
                                buf_reset(&c->ex->up_in);
                                (void) exchange_connect(c->ex);
                                break;
                        }
                }
                exchange_fail(c->ex, 504, "upstream timed out");
                break;
        case TIMEOUT_UP_SEND:
                log_warning("%s: upstream %s: send_timeout expired", conn_text(c), c->ex->peer_text);
                exchange_fail(c->ex, 504, "upstream send timed out");
                break;
        case TIMEOUT_NONE:
                break;
        }
        conn_run(c);
}

/* ---------------------------------------------------------------------------------------- */

static void conn_run(Conn *c) {
        for (unsigned i = 0;; i++) {
                int r = conn_step(c);
                if (r < 0)
                        return; /* freed */
                if (r == 0)
                        break;
                if (i >= CONN_RUN_BUDGET) {
                        /* Fairness: other connections get their turn, and this one resumes
                         * from the deadline heap in the next loop iteration (with edge-triggered
                         * events nothing else would wake it for the work left). */
                        c->resume = true;
                        (void) worker_timer_set(c->worker, &c->timer, conn_now(c));
                        return;
                }
        }
        conn_update_timer(c);
}

static void on_client_io(void *userdata, uint32_t revents) {
        Conn *c = userdata;

        revents = tls_stream_revents(&c->client, revents);
        if (revents & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))
                c->rdhup = true;
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))
                c->rd_ready = true;
        if (revents & (EPOLLOUT | EPOLLHUP | EPOLLERR))
                c->wr_ready = true;
        conn_run(c);
}

static void conn_free(Conn *c) {
        Worker *w = c->worker;

        if (c->ex) {
                if (c->ex->status == 0)
                        c->ex->status = 499; /* closed before a status could be sent */
                if (c->ex->method)
                        exchange_log(c->ex);
                c->ex = exchange_free(c->ex);
        }
        c->gen = worker_gen_unref(c->gen);
        if (c->io.handler)
                worker_io_forget(w, &c->io);
        worker_timer_remove(w, &c->timer);
        stream_close(&c->client);
        buf_free(&c->in);
        buf_free(&c->out);
        if (c->prev)
                c->prev->next = c->next;
        else
                w->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        free(c);
        worker_conn_closed(w);
}

Conn *conn_next(Conn *c) {
        return c->next;
}

void conn_abort(Conn *c) {
        conn_free(c);
}

void conn_drain(Conn *c) {
        ssize_t n;

        c->draining = true;
        if (c->state != CONN_IDLE && !(c->state == CONN_HEAD && buf_len(&c->in) == 0))
                return; /* busy: its response goes out with "Connection: close" */

        /* A last look before closing: the request may already be in the socket buffer. */
        if (tls_stream_is_tls(&c->client) && !tls_stream_handshake_done(&c->client))
                return; /* still in the handshake: treat as a fresh connection */
        n = read_into(&c->client, &c->in, HEAD_READ_SIZE, c->rdhup, &c->rd_ready);
        if (n > 0) {
                c->last_read = conn_now(c);
                if (c->state == CONN_IDLE) {
                        c->state = CONN_HEAD;
                        c->phase_start = c->last_read;
                }
                conn_run(c);
                return;
        }
        /* A connection that has not sent its first request yet was accepted for one: keep it
         * (client_header_timeout and shutdown_timeout bound the wait). An idle keep-alive
         * connection is closed; clients retry requests that race with that close. */
        if (n == -EAGAIN && c->n_requests == 0) {
                c->rd_ready = false;
                return;
        }
        conn_free(c);
}

int conn_new(Worker *w, int fd, size_t listener, unsigned local_port, const struct sockaddr *peer,
             socklen_t peerlen) {
        Conn *c = calloc(1, sizeof(Conn));
        int r;

        if (!c) {
                close(fd);
                atomic_fetch_sub_explicit(&w->stats.connections, 1, memory_order_relaxed);
                return -ENOMEM;
        }
        c->worker = w;
        stream_init_plain(&c->client, fd);
        TlsServerContext *tls = listener < w->gen->gen->n_listeners && w->gen->gen->tls_servers ?
                                        w->gen->gen->tls_servers[listener] : NULL;
        c->listener = listener;
        c->state = CONN_HEAD;
        c->rd_ready = true;
        c->wr_ready = true;
        c->timer = TIMER_NODE_INIT;
        c->phase_start = c->last_read = c->last_write = conn_now(c);

        if (peer->sa_family == AF_UNIX) {
                c->remote_sa.sa.sa_family = AF_UNIX;
                snprintf(c->remote_addr, sizeof(c->remote_addr), "unix:");
        } else {
                memcpy(&c->remote_sa, peer, MIN((size_t) peerlen, sizeof(c->remote_sa)));
                sockaddr_format_host(peer, c->remote_addr, sizeof(c->remote_addr));
                c->remote_port = sockaddr_port(peer);
        }
        c->local_port = local_port;

        c->next = w->conns;
        if (w->conns)
                w->conns->prev = c;
        w->conns = c;
        w->n_conns++;

        r = tls ? tls_stream_server_init(&c->client, fd, tls) : 0;
        /* Edge-triggered, both directions, registered once: readiness is remembered in
         * rd_ready/wr_ready and cleared on EAGAIN, so no epoll_ctl() is needed per request. */
        if (r >= 0) {
                c->io = (WorkerIo){ .handler = on_client_io, .userdata = c };
                r = worker_io_add(w, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &c->io);
                if (r < 0)
                        c->io.handler = NULL;
        }
        if (r < 0) {
                conn_free(c);
                return r;
        }
        conn_run(c);
        return 0;
}
