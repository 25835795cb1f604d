/* SPDX-License-Identifier: MIT */
/*
 * The HTTP/1 client session: reading and parsing request heads, the request body's framing
 * (Content-Length or chunked, decoded for the exchange), the response framed for the client
 * (Content-Length, chunked or until close; spliced between plain sockets), keep-alive and
 * pipelining, closing with a lingering drain, Upgrade tunnels, the client-side deadlines, and
 * the one function that drives it all (conn_run). The exchange sees it through the session
 * ops (session.h); see exchange.h.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>

#include "conn.h"
#include "exchange.h"
#include "h2.h"
#include "listener.h"
#include "log.h"
#include "tls.h"

#define LINGER_USEC (2 * USEC_PER_SEC)
#define LINGER_MAX_BYTES (256u * 1024u)
#define CONN_RUN_BUDGET 64 /* steps of one connection per event */

typedef enum ConnState {
        CONN_HEAD,    /* reading a request head (header deadline running) */
        CONN_IDLE,    /* keep-alive, waiting for the next request */
        CONN_BUSY,    /* an exchange is running */
        CONN_CLOSING, /* output flushed, write side shut down, draining input before close */
} ConnState;

typedef struct Conn Conn;

struct Conn {
        Session s; /* first: what the exchange sees (conn_of() casts back) */
        Conn *next, *prev;
        Stream client;
        WorkerIo io;
        TimerNode timer; /* in the worker's deadline heap */
        bool resume;     /* ran out of its step budget: continue from the timer */

        WorkerGen *gen; /* configuration for the current request (taken when it starts) */
        ConnState state;
        Buf in;  /* from the client: request heads and bodies */
        Buf out; /* to the client: response heads, framed body data, local responses */
        Exchange *ex;
        uint64_t phase_start; /* HEAD: first byte or accept; IDLE: end of last exchange */
        uint64_t last_read, last_write;
        uint64_t lingered;
        bool rd_ready, wr_ready;
        bool rdhup; /* the client's FIN (or an error) was seen */
        bool proxy_pending; /* the PROXY protocol header is still to be read (exchange-policy.c) */
        H2Conn *h2; /* the connection speaks HTTP/2 (h2.h): it runs everything from then on */
        unsigned n_requests;

        /* the current request's body, as the client frames it */
        HttpBodyKind body;
        size_t head_len;    /* of the head still in `in` while the exchange begins */
        uint64_t body_left; /* Content-Length: bytes not yet taken by the exchange */
        ChunkedDecoder body_dec;
        uint64_t body_chunked; /* decoded so far, against client_max_body_size */
        size_t run_off, run_len, run_total; /* a decoded chunk-data run in `in` not yet taken */
        /* the current response, as framed for the client */
        HttpBodyKind resp_out;
        bool final_queued; /* `out` holds (the start of) a final response */
};

static void conn_free(Conn *c);
void conn_run(Conn *c);

static inline Conn *conn_of(const Exchange *ex) {
        return (Conn *) ex->s;
}

static inline uint64_t conn_now(Conn *c) {
        return worker_now(c->s.worker);
}

static inline const char *conn_text(const Conn *c) {
        return session_text(&c->s);
}

static inline Generation *conn_generation(Conn *c) {
        return (c->gen ?: c->s.worker->gen)->gen;
}

/* Settings that apply before a server is chosen: those of the listener's default server. */
static Server *conn_default_server(Conn *c) {
        Generation *g = conn_generation(c);
        if (c->s.listener >= g->n_listeners || g->listener_servers[c->s.listener].n == 0)
                return NULL;
        return g->listener_servers[c->s.listener].servers[0];
}

static const LocationSettings *conn_settings(Conn *c) {
        if (c->ex && ex_settings(c->ex))
                return ex_settings(c->ex);
        Server *s = conn_default_server(c);
        return s ? &s->s : NULL;
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

/* ---------------------------------------------------------------------------------------- */
/* The session ops: the request body */

/* Read more body from the client into `in`. 1 on bytes, -EAGAIN, -ECONNRESET. */
static int conn_read_body(Conn *c, Exchange *ex) {
        if (!c->rd_ready)
                return -EAGAIN;
        ssize_t n = read_into(&c->client, &c->in, BODY_BUF_SIZE, c->rdhup, &c->rd_ready);
        if (n == -EAGAIN) {
                c->rd_ready = false;
                if (ex->body_wait_start == 0)
                        ex->body_wait_start = conn_now(c);
                return -EAGAIN;
        }
        if (n <= 0) {
                log_info("%s: client closed the connection during the request body", conn_text(c));
                buf_reset(&c->out);
                return -ECONNRESET;
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

/* A chunked body decoded in place: a run of data in `in` is given as it is, the framing
 * around it consumed once the run has been taken. */
static int conn_peek_chunked(Conn *c, Exchange *ex, const char **ret, size_t *ret_len) {
        if (c->run_len > 0) {
                *ret = buf_head(&c->in) + c->run_off;
                *ret_len = c->run_len;
                return 1;
        }
        while (buf_len(&c->in) > 0 && !c->body_dec.done) {
                size_t off = 0, dlen = 0;
                ssize_t n = chunked_decode(&c->body_dec, buf_head(&c->in), buf_len(&c->in), &off, &dlen);
                if (n < 0) {
                        log_warning("%s: bad request: invalid chunked body", conn_text(c));
                        return -EBADMSG;
                }
                if (n == 0)
                        break;
                c->body_chunked += dlen;
                uint64_t max = ex_settings(ex)->client_max_body_size;
                if (max > 0 && c->body_chunked > max) {
                        log_info("%s: chunked request body exceeds client_max_body_size", conn_text(c));
                        return -EFBIG;
                }
                if (dlen > 0) {
                        c->run_off = off;
                        c->run_len = dlen;
                        c->run_total = (size_t) n;
                        *ret = buf_head(&c->in) + off;
                        *ret_len = dlen;
                        return 1;
                }
                buf_consume(&c->in, (size_t) n);
        }
        return c->body_dec.done ? 0 : -EAGAIN;
}

static int h1_body_peek(Exchange *ex, const char **ret, size_t *ret_len) {
        Conn *c = conn_of(ex);

        for (;;) {
                int r;
                if (c->body == HTTP_BODY_LENGTH) {
                        if (c->body_left == 0)
                                return 0;
                        if (buf_len(&c->in) > 0) {
                                *ret = buf_head(&c->in);
                                *ret_len = (size_t) MIN((uint64_t) buf_len(&c->in), c->body_left);
                                return 1;
                        }
                } else if (c->body == HTTP_BODY_CHUNKED) {
                        r = conn_peek_chunked(c, ex, ret, ret_len);
                        if (r != -EAGAIN)
                                return r;
                } else
                        return 0;
                r = conn_read_body(c, ex);
                if (r < 0)
                        return r;
        }
}

static void h1_body_consume(Exchange *ex, size_t n) {
        Conn *c = conn_of(ex);

        if (c->body == HTTP_BODY_LENGTH) {
                buf_consume(&c->in, n);
                c->body_left -= n;
                return;
        }
        c->run_off += n;
        c->run_len -= n;
        if (c->run_len == 0)
                buf_consume(&c->in, c->run_total);
}

/* ---------------------------------------------------------------------------------------- */
/* The session ops: the response */

static int h1_send_interim(Exchange *ex, int status, const HttpResponse *r) {
        Conn *c = conn_of(ex);

        if (r) {
                /* an upstream's 1xx: HTTP/1.0 has none (RFC 9110 15.2) */
                if (ex->minor == 0 || c->final_queued)
                        return 0;
                return http1_write_response_head(&c->out, r, ex_settings(ex), HTTP_BODY_NONE, true, 1, NULL);
        }
        /* Body bytes that came with the head: the client did not wait for the 100. */
        if (status != 100 || buf_len(&c->in) > c->head_len)
                return 0;
        return buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
}

static int h1_send_head(Exchange *ex, const HttpResponse *r) {
        Conn *c = conn_of(ex);
        bool keep_alive = ex->client_keep_alive && !ex->close_after && !c->s.draining;
        ResponseFields rf;

        c->final_queued = true;
        if (r->status == 101) {
                c->resp_out = HTTP_BODY_UNTIL_CLOSE;
                return http1_write_response_head(&c->out, r, ex_settings(ex), HTTP_BODY_UNTIL_CLOSE, false, ex->minor,
                                                 NULL);
        }
        switch (r->body) {
        case HTTP_BODY_NONE:
        case HTTP_BODY_LENGTH:
                c->resp_out = r->body;
                break;
        case HTTP_BODY_CHUNKED:
        case HTTP_BODY_UNTIL_CLOSE:
                /* length unknown: chunked to HTTP/1.1 clients, until close to HTTP/1.0 ones */
                if (ex->minor >= 1)
                        c->resp_out = HTTP_BODY_CHUNKED;
                else {
                        c->resp_out = HTTP_BODY_UNTIL_CLOSE;
                        keep_alive = false;
                }
                break;
        }
        if (!keep_alive)
                ex->close_after = true;
        return http1_write_response_head(&c->out, r, ex_settings(ex), c->resp_out, keep_alive, ex->minor,
                                         exchange_rules_fields(ex, r->status, &rf));
}

static int h1_send_local(Exchange *ex, const LocalResponse *l) {
        Conn *c = conn_of(ex);
        ResponseFields rf;

        if (!c->final_queued)
                buf_reset(&c->out); /* e.g. a 100 Continue not written yet */
        c->final_queued = true;
        c->resp_out = HTTP_BODY_NONE;
        return http1_write_local_response(&c->out, l, !ex->close_after, ex->method_id == HTTP_METHOD_HEAD,
                                          exchange_rules_fields(ex, l->status, &rf));
}

static ssize_t h1_send_data(Exchange *ex, const char *p, size_t n, bool last) {
        Conn *c = conn_of(ex);
        ssize_t k;

        if (c->resp_out == HTTP_BODY_CHUNKED) {
                /* framed into `out`, up to the buffer bound */
                if (buf_len(&c->out) >= BODY_BUF_SIZE)
                        return 0;
                return append_chunk(&c->out, p, n) < 0 ? -ENOMEM : (ssize_t) n;
        }
        if (c->resp_out == HTTP_BODY_NONE)
                return (ssize_t) n; /* nothing of it may reach the client */
        /* Content-Length or until close: written as it is, a queued head together with it. */
        if (!c->wr_ready)
                return 0;
        c->client.last_data = ex->close_after && last;
        if (buf_len(&c->out) > 0) {
                size_t head = buf_len(&c->out);
                struct iovec iov[2] = { { buf_head(&c->out), head }, { (void *) p, n } };
                k = stream_writev(&c->client, iov, 2);
                if (k > 0) {
                        c->last_write = conn_now(c);
                        ex->bytes_sent += (uint64_t) k;
                        ex->client_head_sent = true;
                        size_t h = MIN((size_t) k, head);
                        buf_consume(&c->out, h);
                        if ((size_t) k < head + n)
                                c->wr_ready = false;
                        return k - (ssize_t) h;
                }
                if (k == -EAGAIN)
                        c->wr_ready = false;
        } else {
                k = client_write(c, p, n);
                if (k > 0) {
                        ex->client_head_sent = true;
                        return k;
                }
        }
        if (k == -EAGAIN)
                return 0;
        buf_reset(&c->out);
        return k < 0 ? k : -EPIPE;
}

static int h1_send_end(Exchange *ex) {
        Conn *c = conn_of(ex);

        if (c->resp_out == HTTP_BODY_CHUNKED)
                return buf_append(&c->out, "0\r\n\r\n", 5);
        return 0;
}

static ssize_t h1_send_pipe(Exchange *ex, int pipe_fd, size_t n, bool last) {
        Conn *c = conn_of(ex);

        (void) last;
        if (c->resp_out != HTTP_BODY_LENGTH || buf_len(&c->out) > 0 || !stream_is_plain(&c->client))
                return -EOPNOTSUPP;
        if (!c->wr_ready)
                return 0;
        ssize_t k = splice_nb(pipe_fd, c->client.fd, n);
        if (k == -EAGAIN) {
                c->wr_ready = false;
                return 0;
        }
        if (k <= 0)
                return k < 0 ? k : -EPIPE;
        c->last_write = conn_now(c);
        ex->bytes_sent += (uint64_t) k;
        ex->client_head_sent = true;
        if ((size_t) k < n)
                c->wr_ready = false; /* a short write: the socket buffer is full */
        return k;
}

static bool h1_send_blocked(const Exchange *ex) {
        return buf_len(&conn_of(ex)->out) > 0;
}

static const char *h1_client_subject(const Exchange *ex) {
        return tls_stream_client_subject(&conn_of(ex)->client);
}

static int h1_local_address(const Exchange *ex, struct sockaddr_storage *ret, socklen_t *ret_len) {
        *ret_len = sizeof(*ret);
        return getsockname(conn_of(ex)->client.fd, (struct sockaddr *) ret, ret_len) < 0 ? -errno : 0;
}

static void h1_run(Session *s) {
        conn_run((Conn *) s);
}

static const SessionOps h1_session_ops = {
        .run = h1_run,
        .body_peek = h1_body_peek,
        .body_consume = h1_body_consume,
        .send_interim = h1_send_interim,
        .send_head = h1_send_head,
        .send_local = h1_send_local,
        .send_data = h1_send_data,
        .send_end = h1_send_end,
        .send_pipe = h1_send_pipe,
        .send_blocked = h1_send_blocked,
        .client_subject = h1_client_subject,
        .local_address = h1_local_address,
};

/* ---------------------------------------------------------------------------------------- */
/* The connection */

static int conn_new_exchange(Conn *c) {
        if (!c->gen)
                c->gen = worker_gen_ref(c->s.worker->gen);
        if (!c->ex)
                c->ex = exchange_new(&c->s, c->gen, NULL);
        return c->ex ? 0 : -ENOMEM;
}

static void bad_request(Conn *c, const HttpError *err) {
        c->state = CONN_BUSY;
        exchange_reject(c->ex, err->status, err->reason, err->offset);
        buf_reset(&c->in);
}

/* A request head of head_len bytes was parsed into c->ex->req: start the exchange. */
static int conn_begin(Conn *c, size_t head_len) {
        Exchange *ex = c->ex;
        const HttpRequest *req = &ex->req;

        c->state = CONN_BUSY;
        c->n_requests++;
        ex->bytes_received = head_len;
        c->body = req->body;
        c->body_left = req->body == HTTP_BODY_LENGTH ? req->content_length : 0;
        c->body_chunked = 0;
        c->run_len = 0;
        c->head_len = head_len;
        int r = exchange_begin(ex);
        c->head_len = 0;
        if (r < 0)
                return r;
        if (c->body == HTTP_BODY_CHUNKED) {
                Server *srv = ex->server ?: conn_default_server(c);
                chunked_decoder_init(&c->body_dec, srv ? srv->limits.max_chunk_overhead : 0);
        }
        /* The head was serialized (or answered); `in` now holds only body (and what follows). */
        buf_consume(&c->in, head_len);
        ex->req_body_read = buf_len(&c->in); /* body bytes that came with the head count too */
        return 0;
}

/* Write what is queued for the client. Returns 1 on progress (a failed write counts: the
 * exchange is cut then). */
static int conn_flush(Conn *c) {
        Exchange *ex = c->ex;
        int progress = 0;

        while (buf_len(&c->out) > 0 && c->wr_ready) {
                c->client.last_data = ex->close_after && ex->resp_done && !exchange_has_output(ex);
                ssize_t n = client_write(c, buf_head(&c->out), buf_len(&c->out));
                if (n == -EAGAIN)
                        break;
                if (n < 0) {
                        buf_reset(&c->out);
                        exchange_client_failed(ex, (int) -n);
                        return 1;
                }
                if (c->final_queued)
                        ex->client_head_sent = true;
                buf_consume(&c->out, (size_t) n);
                progress = 1;
        }
        return progress;
}

/* The exchange is over (its response written, or cut): keep-alive or close. Returns -1 when
 * that freed the connection, else 1. */
static int conn_end_exchange(Conn *c) {
        Exchange *ex = c->ex;

        if (!ex->req_done)
                /* The response is complete but the request body is not: the upstream connection
                 * cannot be reused and the client's rest is not read. */
                ex->close_after = true;
        bool keep = !ex->close_after && ex->req_done && ex->client_keep_alive && !c->s.draining;
        bool client_keep_alive = ex->client_keep_alive, req_done = ex->req_done;

        exchange_end(ex);
        c->ex = NULL;
        c->gen = worker_gen_unref(c->gen);
        c->body = HTTP_BODY_NONE;
        c->run_len = 0;
        c->resp_out = HTTP_BODY_NONE;
        c->final_queued = false;

        if (!keep) {
                char probe;
                /* Close at once when the client asked for it and sent nothing more (or has
                 * closed already, as most clients do on reading Connection: close); otherwise
                 * linger, so unread input does not turn the close into a reset under the
                 * response. */
                if (!client_keep_alive && stream_is_plain(&c->client) && buf_len(&c->in) == 0 && req_done) {
                        /* The last read drained the socket and no event for it came since: it
                         * holds nothing, no need to ask the kernel. */
                        bool drained = !c->rd_ready && !worker_io_pending(c->s.worker, &c->io);
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

/* After an Upgrade's 101 is flushed, bytes flow both ways unchanged: the upstream source
 * hands its connection over to a tunnel. */
static int conn_tunnel_step(Conn *c) {
        Exchange *ex = c->ex;

        if (!ex->tunneling) {
                ex->tunnel_pending = false;
                ex->tunneling = true;
                ex->client_head_sent = true;
                ex->tunnel_last = conn_now(c);
                (void) tunnel_init(&ex->tunnel, &c->client, &c->rd_ready, &c->wr_ready, &c->in, &ex->up->stream,
                                   &ex->up->rd_ready, &ex->up->wr_ready, &ex->up_in);
                return 1;
        }
        int r = tunnel_pump(&ex->tunnel);
        if (r < 0)
                log_info("%s: tunnel to %s broken: %s", conn_text(c), ex->peer_text, strerror(-r));
        if (r < 0 || r == 2) {
                ex->bytes_sent += ex->tunnel.bytes[1];
                ex->bytes_received += ex->tunnel.bytes[0];
                ex->resp_done = ex->close_after = true;
                return conn_end_exchange(c);
        }
        if (r > 0)
                ex->tunnel_last = conn_now(c);
        return r;
}

static void conn_h2_close(void *owner) {
        conn_close_now(owner);
}

/* ALPN said "h2", or the h2c preface arrived: the HTTP/2 session takes over. Returns -1 (the
 * connection is no longer the HTTP/1 session's to step). */
static int conn_start_h2(Conn *c) {
        const H2Host host = { .client = &c->client, .rd_ready = &c->rd_ready, .wr_ready = &c->wr_ready,
                              .rdhup = &c->rdhup, .timer = &c->timer, .gen = c->s.worker->gen,
                              .close = conn_h2_close, .owner = c };
        int r = h2_conn_new(&c->s, &host, &c->in, &c->h2);
        if (r < 0) {
                log_error_errno(r, "%s: cannot start the HTTP/2 session", conn_text(c));
                conn_close_now(c);
                return -1;
        }
        worker_timer_remove(c->s.worker, &c->timer);
        h2_conn_run(c->h2);
        return -1;
}

/* 1: the bytes read so far are the h2c preface on a listener that accepts it; 0: they are
 * not; -EAGAIN: they could still become it. */
static int conn_h2c_preface(Conn *c) {
        Server *def = conn_default_server(c);
        size_t n = MIN(buf_len(&c->in), (size_t) H2_PREFACE_LEN);

        if (!def || !def->s.http2_cleartext || tls_stream_is_tls(&c->client) || c->n_requests > 0 ||
            memcmp(buf_head(&c->in), H2_PREFACE, n) != 0)
                return 0;
        return n == H2_PREFACE_LEN ? 1 : -EAGAIN;
}

/* Reading and parsing a request head (after the TLS handshake). */
static int conn_head_step(Conn *c) {
        ssize_t n;

        if (_unlikely_(c->proxy_pending)) {
                int r = c->rd_ready ? session_read_proxy_header(&c->s, c->client.fd, c->rdhup) : -EAGAIN;
                if (r == -EAGAIN) {
                        c->rd_ready = false;
                        return 0;
                }
                if (r < 0) {
                        conn_close_now(c);
                        return -1;
                }
                c->proxy_pending = false;
        }
        if (_unlikely_(tls_stream_is_tls(&c->client) && !tls_stream_handshake_done(&c->client))) {
                /* Counted in the header deadline: it runs from accept. */
                int r = tls_stream_handshake(&c->client);
                if (r == -EAGAIN) {
                        c->rd_ready = false;
                        return 0;
                }
                metrics_tls_handshake(&c->s.worker->metrics, r >= 0);
                if (r < 0) {
                        log_info("%s: TLS handshake failed: %s", conn_text(c), tls_stream_error(&c->client) ?: strerror(-r));
                        conn_close_now(c);
                        return -1;
                }
                const char *alpn = tls_stream_alpn(&c->client);
                if (alpn && streq(alpn, "h2"))
                        return conn_start_h2(c);
                return 1;
        }
        int h2c = buf_len(&c->in) > 0 ? conn_h2c_preface(c) : 0;
        if (h2c > 0)
                return conn_start_h2(c);
        if (buf_len(&c->in) > 0 && h2c == 0) {
                Server *def;
                HttpError err = {};

                if (conn_new_exchange(c) < 0) {
                        conn_close_now(c);
                        return -1;
                }
                if (c->state == CONN_IDLE) {
                        c->state = CONN_HEAD;
                        c->phase_start = conn_now(c);
                }
                def = conn_default_server(c);
                HttpHeader *headers = def ? worker_header_scratch(c->s.worker, def->limits.max_headers) : NULL;
                if (!headers) {
                        conn_close_now(c);
                        return -1;
                }
                n = http1_parse_request(buf_head(&c->in), buf_len(&c->in), &def->limits, &c->ex->req, headers,
                                        def->limits.max_headers, &err);
                if (n < 0) {
                        bad_request(c, &err);
                        return 1;
                }
                if (n > 0) {
                        int r = conn_begin(c, (size_t) n);
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
                /* Read a new head into the worker's scratch buffer and keep only what arrived: a
                 * keep-alive connection whose next request is not there yet allocates nothing. */
                char *scratch = worker_read_scratch(c->s.worker);
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
                        log_info("%s: client closed the connection in the middle of a request head", conn_text(c));
                conn_close_now(c);
                return -1;
        }
        c->last_read = conn_now(c);
        return 1;
}

/* Returns 1 on progress, 0 when blocked, -1 when the connection was freed. */
static int conn_step(Conn *c) {
        switch (c->state) {
        case CONN_IDLE:
        case CONN_HEAD:
                return conn_head_step(c);
        case CONN_BUSY: {
                Exchange *ex = c->ex;
                if (ex->tunneling || (ex->tunnel_pending && buf_len(&c->out) == 0 && ex->up))
                        return conn_tunnel_step(c);
                int p = conn_flush(c);
                p |= exchange_step(ex);
                if (ex->resp_done && buf_len(&c->out) == 0 && !exchange_has_output(ex))
                        return conn_end_exchange(c);
                return p;
        }
        case CONN_CLOSING: {
                char scratch[4096];
                if (!c->rd_ready)
                        return 0;
                ssize_t n = stream_read(&c->client, scratch, sizeof(scratch));
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
/* Deadlines */

/* The client holds no body bytes the exchange has not taken. */
static bool conn_body_wanted(const Conn *c) {
        return exchange_wants_body(c->ex) && buf_len(&c->in) == 0;
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
                if (conn_body_wanted(c) && !c->rd_ready) {
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
                if ((buf_len(&c->out) > 0 || exchange_has_output(ex)) && !c->wr_ready)
                        CONSIDER(c->last_write + s->send_timeout, TIMEOUT_SEND);
                TimeoutKind sk;
                uint64_t sd = exchange_deadline(ex, &sk);
                CONSIDER(sd, sk);
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
                worker_timer_remove(c->s.worker, &c->timer);
                return;
        }
        /* Progress moves deadlines later; a deadline that comes early is re-queued when it
         * fires (conn_timeout), so only an earlier deadline needs the heap updated now. */
        if (d < c->timer.when || c->timer.idx == TIMER_NOT_QUEUED)
                (void) worker_timer_set(c->s.worker, &c->timer, d);
}

static Conn *conn_from_timer(TimerNode *t) {
        return (Conn *) ((char *) t - offsetof(Conn, timer));
}

static void conn_timeout(Conn *c) {
        TimeoutKind kind;
        uint64_t d, now;

        if (c->h2) {
                h2_conn_timeout(c->h2);
                return;
        }
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
                (void) worker_timer_set(c->s.worker, &c->timer, d);
                return;
        }

        switch (kind) {
        case TIMEOUT_HEADER: {
                if (c->proxy_pending || (tls_stream_is_tls(&c->client) && !tls_stream_handshake_done(&c->client))) {
                        /* No HTTP can be spoken yet: just close. */
                        log_info("%s: client_header_timeout expired during the %s", conn_text(c),
                                 c->proxy_pending ? "PROXY protocol header" : "TLS handshake");
                        conn_close_now(c);
                        return;
                }
                log_info("%s: client_header_timeout expired before the request head was complete", conn_text(c));
                if (conn_new_exchange(c) < 0) {
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
        case TIMEOUT_UP_READ:
        case TIMEOUT_UP_SEND:
        case TIMEOUT_LIMIT_DELAY:
        case TIMEOUT_CACHE_WAIT:
                exchange_timeout(c->ex, kind);
                break;
        case TIMEOUT_NONE:
                break;
        }
        conn_run(c);
}

void conn_run(Conn *c) {
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
                        (void) worker_timer_set(c->s.worker, &c->timer, conn_now(c));
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
        if (c->h2) {
                h2_conn_run(c->h2);
                return;
        }
        conn_run(c);
}

static void conn_free(Conn *c) {
        Worker *w = c->s.worker;

        c->h2 = h2_conn_free(c->h2);
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

/* Close now (shutdown timeout, worker exit). */
static void conn_abort_all(Worker *w) {
        while (w->conns)
                conn_free(w->conns);
}

/* Graceful stop: an idle connection closes now, a busy one after its current response. */
static void conn_drain(Conn *c) {
        ssize_t n;

        c->s.draining = true;
        if (c->h2) {
                h2_conn_drain(c->h2);
                return;
        }
        if (c->state != CONN_IDLE && !(c->state == CONN_HEAD && buf_len(&c->in) == 0))
                return; /* busy: its response goes out with "Connection: close" */

        /* A last look before closing: the request may already be in the socket buffer. */
        if (c->proxy_pending || (tls_stream_is_tls(&c->client) && !tls_stream_handshake_done(&c->client)))
                return; /* still in the PROXY header or the handshake: treat as a fresh connection */
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

static int conn_new(Worker *w, int fd, size_t listener, unsigned local_port, const struct sockaddr *peer,
             socklen_t peerlen) {
        Conn *c = calloc(1, sizeof(Conn));
        int r;

        if (!c) {
                close(fd);
                atomic_fetch_sub_explicit(&w->stats.connections, 1, memory_order_relaxed);
                return -ENOMEM;
        }
        c->s.ops = &h1_session_ops;
        c->s.worker = w;
        stream_init_plain(&c->client, fd);
        TlsServerContext *tls = listener < w->gen->gen->n_listeners && w->gen->gen->tls_servers ?
                                        w->gen->gen->tls_servers[listener] : NULL;
        c->s.listener = listener;
        c->state = CONN_HEAD;
        c->rd_ready = true;
        c->wr_ready = true;
        c->timer = TIMER_NODE_INIT;
        c->phase_start = c->last_read = c->last_write = conn_now(c);

        if (peer->sa_family == AF_UNIX) {
                c->s.remote_sa.sa.sa_family = AF_UNIX;
                snprintf(c->s.remote_addr, sizeof(c->s.remote_addr), "unix:");
        } else {
                memcpy(&c->s.remote_sa, peer, MIN((size_t) peerlen, sizeof(c->s.remote_sa)));
                sockaddr_format_host(peer, c->s.remote_addr, sizeof(c->s.remote_addr));
                c->s.remote_port = sockaddr_port(peer);
        }
        c->s.local_port = local_port;
        c->s.fd = fd;

        c->next = w->conns;
        if (w->conns)
                w->conns->prev = c;
        w->conns = c;
        w->n_conns++;

        r = session_expects_proxy_header(&c->s);
        c->proxy_pending = r > 0;
        if (r >= 0 && tls)
                r = tls_stream_server_init(&c->client, fd, tls);
        c->s.tls = tls != NULL;
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

static void conn_drain_all(Worker *w) {
        for (Conn *c = w->conns, *next; c; c = next) {
                next = c->next;
                conn_drain(c);
        }
}

static void conn_on_timer(TimerNode *t) {
        conn_timeout(conn_from_timer(t));
}

const WorkerSessionOps conn_sessions = {
        .accepted = conn_new,
        .timeout = conn_on_timer,
        .drain_all = conn_drain_all,
        .abort_all = conn_abort_all,
};
