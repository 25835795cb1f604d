/* SPDX-License-Identifier: MIT */
/*
 * The upstream response source (source.h): peer selection and attempts (connect, pool,
 * TLS, next_upstream retries), the request relayed to the upstream (the body taken from the
 * session decoded, framed here), the response head parsed and given to the session, and
 * the body decoded and given to the session (spliced between plain sockets). See exchange.h.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>

#include "exchange.h"
#include "log.h"
#include "tls.h"
#include "upstream.h"

static void on_upstream_io(UpConn *u, uint32_t revents, void *userdata);

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
        switch (peer_report(ex->peer, failed, ex_now(ex))) {
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
        if (up->next_upstream_timeout > 0 && ex_now(ex) >= ex->first_try + up->next_upstream_timeout)
                return false;
        return true;
}

void exchange_release_upstream(Exchange *ex, bool reusable) {
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
                pool_put(&ex->s->worker->pool, ex->up, ex->upstream);
        } else
                upconn_free(ex->up);
        ex->up = NULL;
}

int exchange_connect(Exchange *ex) {
        Worker *w = ex->s->worker;
        int r;

        for (;;) {
                uint64_t now = ex_now(ex);
                Peer *p = upstream_pick_key(ex->upstream->rt, &ex->remote_sa.sa, ex->pol.hash_key,
                                            ex->pol.hash_key_len, ex->tried, ex->n_tried, now, &w->rng);
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

                r = pool_get(&w->pool, &p->addr, p->addrlen, p->text, ex->https ? &ex->tls : NULL,
                             on_upstream_io, ex, &ex->up);
                if (r >= 0)
                        break;
                log_warning_errno(r, "%s: connect() to upstream %s failed", ex_text(ex), ex->peer_text);
                exchange_end_attempt(ex, 502, "upstream connect failed");
                ex->up_sent_any = false;
                if (!exchange_may_retry(ex, NEXT_UPSTREAM_ERROR)) {
                        exchange_fail(ex, 502, "upstream connect failed");
                        return 0;
                }
        }
        ex->up_phase_start = ex->up_last_read = ex->up_last_write = ex_now(ex);
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
        bool stale = ex->up && ex->up->reused && !ex->up_got_any;
        /* Nothing of the request reached the socket (the first write failed): the head and any
         * body are still all here, whatever the method. */
        bool replayable = ex->req_body == HTTP_BODY_NONE || !ex->up_sent_any;
        bool retry_stale = stale && replayable && !ex->retried_stale;

        if (retry_stale)
                log_info("%s: upstream %s: kept-alive connection closed by the server (%s%s%s); retrying on a "
                         "new connection", ex_text(ex), ex->peer_text, what, error ? ": " : "",
                         error ? strerror(error) : "");
        else if (error != 0)
                log_warning_errno(error, "%s: upstream %s: %s", ex_text(ex), ex->peer_text, what);
        else
                log_warning("%s: upstream %s: %s", ex_text(ex), ex->peer_text, what);
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

/* The session runs the exchange after an event on its upstream socket. */
static void upstream_event(Exchange *ex) {
        const SessionOps *so = ex->s->ops;

        if (so->run_exchange)
                so->run_exchange(ex);
        else
                so->run(ex->s);
}

static void on_upstream_io(UpConn *u, uint32_t revents, void *userdata) {
        Exchange *ex = userdata;

        revents = tls_stream_revents(&u->stream, revents);
        if (u->connecting) {
                if (!u->tcp_connected) {
                        int err = 0;
                        socklen_t len = sizeof(err);
                        if (getsockopt(u->stream.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                                err = errno;
                        if (err != 0) {
                                exchange_upstream_error(ex, err, "connect failed");
                                upstream_event(ex);
                                return;
                        }
                        u->tcp_connected = true;
                }
                if (tls_stream_is_tls(&u->stream)) {
                        int r = tls_stream_handshake(&u->stream);
                        if (r == -EAGAIN) {
                                upstream_event(ex);
                                return;
                        }
                        if (r < 0) {
                                /* e.g. "certificate verify failed: ..." */
                                const char *why = tls_stream_error(&u->stream);
                                log_warning("%s: TLS handshake with upstream %s failed: %s", ex_text(ex),
                                            ex->peer_text, why ?: strerror(-r));
                                exchange_upstream_error(ex, 0, "upstream TLS handshake failed");
                                upstream_event(ex);
                                return;
                        }
                }
                u->connecting = false;
                u->wr_ready = true;
                ex->up_last_read = ex->up_last_write = ex_now(ex);
        }
        if (revents & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))
                u->rdhup = true;
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))
                u->rd_ready = true;
        if (revents & (EPOLLOUT | EPOLLHUP | EPOLLERR))
                u->wr_ready = true;
        upstream_event(ex);
}

/* Writing the request to the upstream failed. Before any byte of it was sent this is a
 * connection error like any other (a kept-alive connection the server closed, retried). After
 * that, the server may simply have answered early, e.g. a 413 for a body it will not take,
 * and closed the connection with the rest of the body unread: the reset that follows fails
 * our write, but the answer is still in the socket. So stop sending and read it; only when no
 * response head can be read is the send failure the exchange's error (upstream_read_head).
 * The client's unsent body is not read any further; its connection closes after the
 * response. Returns 1. */
static int exchange_send_failed(Exchange *ex, int error) {
        if (!ex->up_sent_any) {
                exchange_upstream_error(ex, error, "send failed");
                return 1;
        }
        log_info("%s: upstream %s: sending the request failed (%s); reading its response first",
                 ex_text(ex), ex->peer_text, strerror(error));
        ex->up_send_failed = true;
        ex->up_send_error = error;
        ex->close_after = true;
        ex->up->rd_ready = true; /* the reset (or FIN) is news for the read side as well */
        return 1;
}

/* The session could not deliver the request body: invalid framing, too large, or the client
 * went away (the session logged which). Returns 1. */
static int exchange_body_failed(Exchange *ex, int error) {
        switch (error) {
        case -EBADMSG:
                exchange_fail(ex, 400, "invalid chunked request body");
                break;
        case -EFBIG:
                exchange_fail(ex, 413, "request body too large");
                break;
        case -ENOMEM:
                exchange_fail(ex, 500, "out of memory");
                break;
        default:
                ex->status = 400;
                ex->reason = "client closed during request body";
                exchange_release_upstream(ex, false);
                ex->close_after = true;
                ex->resp_done = true;
                break;
        }
        return 1;
}

/* The request body the session holds, framed for the upstream: a Content-Length body is
 * written from the session's buffer as it is (*ret and *ret_len, at most what is left of it); a
 * body of unknown length is sent chunked, each run of data copied into up_out with its chunk
 * framing and taken from the session at once. 1: the caller has something to write; 0: not
 * (nothing now, or the body is over); <0: the exchange failed (1 returned by the caller). */
static int upstream_frame_body(Exchange *ex, const char **ret, size_t *ret_len) {
        const char *p = NULL;
        size_t n = 0;

        *ret = NULL;
        *ret_len = 0;
        ex->body_held = false;
        if (ex->req_done || buf_len(&ex->up_out) > 0)
                return 0;
        int r = ex->s->ops->body_peek(ex, &p, &n);
        if (r == -EAGAIN)
                return 0;
        if (r < 0)
                return r;
        if (r == 0) {
                /* the body is complete */
                ex->req_done = true;
                if (ex->req_body == HTTP_BODY_CHUNKED) {
                        size_t tl = 0;
                        const char *t = ex->s->ops->body_trailers ? ex->s->ops->body_trailers(ex, &tl) : NULL;
                        if (buf_append(&ex->up_out, "0\r\n", 3) < 0 || (t && buf_append(&ex->up_out, t, tl) < 0) ||
                            buf_append(&ex->up_out, "\r\n", 2) < 0)
                                return -ENOMEM;
                }
                return buf_len(&ex->up_out) > 0;
        }
        if (ex->req_body == HTTP_BODY_CHUNKED) {
                if (append_chunk(&ex->up_out, p, n) < 0)
                        return -ENOMEM;
                ex->s->ops->body_consume(ex, n);
                return 1;
        }
        *ret = p;
        *ret_len = (size_t) MIN((uint64_t) n, ex->req_left);
        ex->body_held = true;
        return 1;
}

/* Request direction: the head, then the body as the session gives it, one writev for what is
 * ready. Returns 1 on progress. */
static int upstream_send(Exchange *ex) {
        UpConn *u = ex->up;
        int progress = 0;

        if (!u || u->connecting || ex->up_send_failed)
                return 0;
        for (;;) {
                const char *body;
                size_t body_len;
                int r = upstream_frame_body(ex, &body, &body_len);
                if (r < 0)
                        return exchange_body_failed(ex, r);
                size_t head = buf_len(&ex->req_head) - ex->req_head_off, framed = buf_len(&ex->up_out);
                if (head + framed + body_len == 0)
                        break;
                if (!u->wr_ready)
                        break;
                struct iovec iov[3];
                int k = 0;
                if (head > 0)
                        iov[k++] = (struct iovec){ buf_head(&ex->req_head) + ex->req_head_off, head };
                if (framed > 0)
                        iov[k++] = (struct iovec){ buf_head(&ex->up_out), framed };
                if (body_len > 0)
                        iov[k++] = (struct iovec){ (void *) body, body_len };
                ssize_t n = stream_writev(&u->stream, iov, k);
                if (n == -EAGAIN) {
                        u->wr_ready = false;
                        break;
                }
                if (n < 0)
                        return exchange_send_failed(ex, (int) -n);
                ex->up_sent_any = true;
                ex->up_last_write = ex->up_last_read = ex_now(ex);
                size_t left = (size_t) n, h = MIN(left, head);
                ex->req_head_off += h;
                left -= h;
                size_t f = MIN(left, framed);
                buf_consume(&ex->up_out, f);
                left -= f;
                if (left > 0) {
                        ex->s->ops->body_consume(ex, left);
                        ex->req_left -= left;
                        ex->body_held = left < body_len;
                        if (ex->req_left == 0)
                                ex->req_done = true;
                }
                progress = 1;
                if ((size_t) n < head + framed + body_len) {
                        u->wr_ready = false;
                        break;
                }
        }
        return progress;
}

/* The final response head arrived: give it to the session, which frames it for its client. */
static int exchange_start_response(Exchange *ex) {
        const HttpResponse *r = &ex->resp;

        ex->upstream_status = r->status;
        ex->status = r->status;
        if (r->status == 101) {
                ex->tunnel_pending = true;
                ex->close_after = true;
                return ex->s->ops->send_head(ex, r);
        }
        ex->resp_in = r->body;
        ex->resp_left = r->content_length;
        /* RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 response is faulty framing; the
         * body is decoded as chunked and the client connection closed after it. */
        if (r->body == HTTP_BODY_CHUNKED && r->version_minor == 0)
                ex->close_after = true;
        if (r->body == HTTP_BODY_CHUNKED)
                chunked_decoder_init(&ex->resp_dec, ex->server->limits.max_chunk_overhead);
        int k = cache_response(ex, &r);
        if (k != 0) {
                /* the cache serves the response (after this step): this one ends here */
                ex->resp_done = k > 0;
                return k < 0 ? k : 0;
        }
        k = ex->s->ops->send_head(ex, r);
        if (k < 0)
                return k;
        /* (the upstream's framing: the head the session got may say less, e.g. a HEAD the
         * cache fetched as GET) */
        if (ex->resp.body == HTTP_BODY_NONE || (ex->resp.body == HTTP_BODY_LENGTH && ex->resp.content_length == 0))
                ex->resp_done = true;
        return 0;
}

/* The response cannot go on (client gone, upstream gone mid-body): what reached the client
 * is all it gets, and the connection closes after it so the truncation shows. Returns 1. */
static int exchange_cut_response(Exchange *ex, const char *reason) {
        exchange_cut(ex, reason);
        return 1;
}

static int exchange_client_write_failed(Exchange *ex, int error) {
        exchange_client_failed(ex, error);
        return 1;
}

static int exchange_upstream_cut(Exchange *ex, int error) {
        if (error)
                log_warning_errno(error, "%s: reading the response body from upstream %s failed", ex_text(ex),
                                  ex->peer_text);
        else
                log_warning("%s: upstream %s closed the connection before the end of the response body",
                            ex_text(ex), ex->peer_text);
        return exchange_cut_response(ex, "upstream prematurely closed the connection");
}

/* The rest of a Content-Length body from a plain upstream socket through a pipe to the
 * session (send_pipe: splice() into the client socket), the pipe filled only when empty (the
 * same backpressure as the buffers). Returns 1 on progress, 0 when blocked, -EOPNOTSUPP when
 * no pipe can be had or the session cannot take it (the caller copies instead). */
static int exchange_splice_response(Exchange *ex) {
        UpConn *u = ex->up;
        ssize_t n;

        if (!ex->has_pipe) {
                if (worker_pipe_get(ex->s->worker, ex->pipe) < 0)
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
                ex->up_last_read = ex_now(ex);
                return 1;
        }
        n = ex->s->ops->send_pipe(ex, ex->pipe[0], ex->pipe_len, ex->pipe_len == ex->resp_left);
        if (n == 0 || n == -EAGAIN)
                return 0;
        if (n < 0)
                return exchange_client_write_failed(ex, (int) -n);
        ex->pipe_len -= (size_t) n;
        ex->resp_left -= (uint64_t) n;
        if (ex->resp_left == 0)
                ex->resp_done = true;
        return 1;
}

/* A 101 must switch to (one of) the protocols sent upstream, and say which (and, for a key
 * proxyd made, prove it read it: Sec-WebSocket-Accept). */
static bool upgrade_answer_matches(const Exchange *ex, const HttpResponse *r) {
        int i = http1_find_header(r->headers, r->n_headers, "Upgrade");
        if (i < 0 || !ex->upgrade_offered)
                return false;
        if (ex->ws_accept[0]) {
                int a = http1_find_header(r->headers, r->n_headers, "Sec-WebSocket-Accept");
                if (a < 0 || r->headers[a].value_len != strlen(ex->ws_accept) ||
                    memcmp(r->headers[a].value, ex->ws_accept, r->headers[a].value_len) != 0)
                        return false;
        }
        return http1_upgrade_matches(r->headers[i].value, r->headers[i].value_len, ex->upgrade_offered,
                                     strlen(ex->upgrade_offered));
}

/* The response head: parse what arrived (interim responses, retries on 50x, the 101 check),
 * else read more. Returns 1 on progress. */
static int upstream_read_head(Exchange *ex) {
        UpConn *u = ex->up;
        ssize_t n;

        if (buf_len(&ex->up_in) > 0) {
                HttpError err = {};
                /* Header fields are parsed into the worker's scratch array: the head is
                 * serialized for the client right away and not looked at again. */
                size_t max_headers = ex->server->limits.max_headers;
                HttpHeader *headers = worker_header_scratch(ex->s->worker, max_headers);
                if (!headers) {
                        exchange_fail(ex, 500, "out of memory");
                        return 1;
                }
                n = http1_parse_response(buf_head(&ex->up_in), buf_len(&ex->up_in), &ex->server->limits,
                                         ex->method_id, &ex->resp, headers, max_headers, &err);
                if (n < 0) {
                        log_warning("%s: upstream %s sent an invalid response: %s (offset %zu)",
                                    ex_text(ex), ex->peer_text, err.reason ?: "malformed",
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
                                            ex_text(ex), ex->peer_text);
                                exchange_fail(ex, 502, "101 with an Upgrade that was not offered");
                                return 1;
                        }
                        if (ex->resp.status < 200 && !(ex->resp.status == 101 && ex->upgrade)) {
                                /* 1xx: 100 was answered by proxyd itself (or not asked for);
                                 * 101 needs a tunnel, which this request did not ask for; the
                                 * others (103 Early Hints, 102) are passed on (RFC 9110 15.2),
                                 * the session's queued output bounding how many wait. */
                                if (ex->resp.status == 101) {
                                        exchange_fail(ex, 502, "unexpected 101 from upstream");
                                        return 1;
                                }
                                if (ex->resp.status != 100 &&
                                    ex->s->ops->send_interim(ex, ex->resp.status, &ex->resp) < 0) {
                                        exchange_fail(ex, 502, "cannot pass on an interim response");
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
                                log_warning("%s: upstream %s answered %d", ex_text(ex), ex->peer_text,
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
                        ex->up_last_read = ex_now(ex);
                        if (r < 0) {
                                exchange_fail(ex, 502, "cannot build response head");
                                return 1;
                        }
                        return 1;
                }
        }
        if (!u->rd_ready)
                return 0;
        n = read_into(&u->stream, &ex->up_in, HEAD_READ_SIZE, u->rdhup, &u->rd_ready);
        if (n == -EAGAIN) {
                u->rd_ready = false;
                return 0;
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

/* Give body data from up_in to the session: a chunked body decoded run by run (a run the
 * session took only part of stays in up_in, run_off/run_len say where), any other as it is.
 * Returns 1 on progress. */
static int upstream_give_body(Exchange *ex) {
        const SessionOps *so = ex->s->ops;
        int progress = 0;

        while (buf_len(&ex->up_in) > 0 && !ex->resp_done) {
                const char *data;
                size_t len;
                bool last = false;
                if (ex->resp_in == HTTP_BODY_CHUNKED) {
                        if (ex->run_len == 0) {
                                size_t off = 0, dlen = 0;
                                ssize_t n = chunked_decode(&ex->resp_dec, buf_head(&ex->up_in),
                                                           buf_len(&ex->up_in), &off, &dlen);
                                if (n < 0) {
                                        log_warning("%s: upstream %s sent an invalid chunked body", ex_text(ex),
                                                    ex->peer_text);
                                        exchange_fail(ex, 502, "invalid chunked body from upstream");
                                        return 1;
                                }
                                if (n == 0)
                                        break;
                                if (dlen == 0) {
                                        /* (trailers beyond max_head_size are dropped) */
                                        if (ex->resp_dec.trailer_len > 0 && so->send_trailers &&
                                            buf_len(&ex->resp_trailers) + ex->resp_dec.trailer_len <=
                                                    ex->server->limits.max_head_size &&
                                            buf_append(&ex->resp_trailers,
                                                       buf_head(&ex->up_in) + ex->resp_dec.trailer_off,
                                                       ex->resp_dec.trailer_len) < 0) {
                                                exchange_fail(ex, 502, "out of memory");
                                                return 1;
                                        }
                                        buf_consume(&ex->up_in, (size_t) n);
                                        progress = 1;
                                        if (ex->resp_dec.done) {
                                                if (buf_len(&ex->resp_trailers) > 0 &&
                                                    so->send_trailers(ex, buf_head(&ex->resp_trailers),
                                                                      buf_len(&ex->resp_trailers)) < 0)
                                                        ex->close_after = true;
                                                if (so->send_end(ex) < 0)
                                                        ex->close_after = true;
                                                ex->resp_done = true;
                                        }
                                        continue;
                                }
                                ex->run_off = off;
                                ex->run_len = dlen;
                                ex->run_total = (size_t) n;
                        }
                        data = buf_head(&ex->up_in) + ex->run_off;
                        len = ex->run_len;
                } else {
                        data = buf_head(&ex->up_in);
                        len = buf_len(&ex->up_in);
                        if (ex->resp_in == HTTP_BODY_LENGTH) {
                                len = (size_t) MIN((uint64_t) len, ex->resp_left);
                                last = len == ex->resp_left;
                        }
                }
                ssize_t k = so->send_data(ex, data, len, last);
                if (k < 0)
                        return exchange_client_write_failed(ex, (int) -k);
                if (k == 0)
                        break;
                if (ex->cache_tee)
                        cache_tee(ex, data, (size_t) k);
                progress = 1;
                if (ex->resp_in == HTTP_BODY_CHUNKED) {
                        ex->run_off += (size_t) k;
                        ex->run_len -= (size_t) k;
                        if (ex->run_len == 0) {
                                buf_consume(&ex->up_in, ex->run_total);
                                if (ex->resp_dec.done) {
                                        if (so->send_end(ex) < 0)
                                                ex->close_after = true;
                                        ex->resp_done = true;
                                }
                        }
                        continue;
                }
                buf_consume(&ex->up_in, (size_t) k);
                if (ex->resp_in == HTTP_BODY_LENGTH) {
                        ex->resp_left -= (uint64_t) k;
                        if (ex->resp_left == 0)
                                ex->resp_done = true;
                }
                if ((size_t) k < len)
                        break;
        }
        return progress;
}

/* The response body: what is buffered goes to the session first; then more is read (or
 * spliced) from the upstream, but only when the session holds nothing unwritten. Returns 1
 * on progress. */
static int upstream_relay_body(Exchange *ex) {
        const SessionOps *so = ex->s->ops;
        UpConn *u = ex->up;
        ssize_t n;

        if (buf_len(&ex->up_in) > 0)
                return upstream_give_body(ex);
        if (so->send_blocked(ex))
                return 0;
        if (ex->resp_in == HTTP_BODY_LENGTH && so->send_pipe && !ex->cache_tee &&
            (ex->pipe_len > 0 || ex->resp_left >= SPLICE_MIN) &&
            stream_is_plain(&u->stream)) {
                int r = exchange_splice_response(ex);
                if (r != -EOPNOTSUPP)
                        return r > 0;
        }
        if (!u->rd_ready)
                return 0;
        n = read_into(&u->stream, &ex->up_in, BODY_BUF_SIZE, u->rdhup, &u->rd_ready);
        if (n == -EAGAIN) {
                u->rd_ready = false;
                return 0;
        }
        if (n == 0 && ex->resp_in == HTTP_BODY_UNTIL_CLOSE) {
                ex->resp_done = true;
                if (so->send_end(ex) < 0)
                        ex->close_after = true;
                exchange_release_upstream(ex, false);
                return 1;
        }
        if (n <= 0)
                return exchange_upstream_cut(ex, n < 0 ? (int) -n : 0);
        ex->up_last_read = ex_now(ex);
        return 1;
}

/* Response direction. Returns 1 on progress. */
static int upstream_receive(Exchange *ex) {
        UpConn *u = ex->up;

        if (ex->resp_done || !u || u->connecting || ex->tunnel_pending)
                return 0;
        if (!ex->resp_head_done) {
                /* an interim response the session queued goes out first */
                if (ex->s->ops->send_blocked(ex))
                        return 0;
                int r = upstream_read_head(ex);
                /* Body bytes that came with the head go to the session at once: it writes the
                 * queued head together with them (one writev, one segment for a small
                 * response) instead of flushing the head alone first. */
                if (ex->resp_head_done && !ex->resp_done && ex->up && buf_len(&ex->up_in) > 0)
                        r |= upstream_give_body(ex);
                return r;
        }
        return upstream_relay_body(ex);
}

/* One step in each direction; the session repeats while there is progress. */
static int upstream_step(Exchange *ex) {
        int p = upstream_send(ex);
        if (ex->src != &source_upstream)
                return 1; /* failed over to a local response */
        p |= upstream_receive(ex);
        return p | cache_after_upstream_step(ex);
}

static bool upstream_wants_body(const Exchange *ex) {
        return !ex->req_done && !ex->resp_done && ex->up && !ex->up->connecting && !ex->up_send_failed &&
               ex->req_head_off == buf_len(&ex->req_head) && buf_len(&ex->up_out) == 0 && !ex->body_held;
}

/* (Once the response is done or cut, nothing of it is left to give.) */
static bool upstream_has_output(const Exchange *ex) {
        return !ex->resp_done && ex->resp_head_done &&
               (ex->pipe_len > 0 || (buf_len(&ex->up_in) > 0 && (ex->resp_in != HTTP_BODY_CHUNKED || ex->run_len > 0)));
}

static bool upstream_wants_read(const Exchange *ex) {
        if (!ex->up || ex->up->connecting || ex->resp_done)
                return false;
        if (!ex->resp_head_done)
                return true;
        return !ex->s->ops->send_blocked(ex) && buf_len(&ex->up_in) == 0 && ex->pipe_len == 0;
}

static bool upstream_wants_write(const Exchange *ex) {
        if (!ex->up || ex->up_send_failed)
                return false;
        if (ex->up->connecting)
                return true;
        return ex->req_head_off < buf_len(&ex->req_head) || buf_len(&ex->up_out) > 0 ||
               (!ex->req_done && ex->body_held);
}

static uint64_t upstream_deadline(const Exchange *ex, TimeoutKind *ret_kind) {
        const LocationSettings *s = ex_settings(ex);
        uint64_t d = USEC_INFINITY;

        *ret_kind = TIMEOUT_NONE;
        if (!ex->up || !s)
                return d;
        if (ex->up->connecting) {
                *ret_kind = TIMEOUT_CONNECT;
                return ex->up_phase_start + s->connect_timeout;
        }
        if (upstream_wants_read(ex) && !ex->up->rd_ready) {
                d = ex->up_last_read + s->read_timeout;
                *ret_kind = TIMEOUT_UP_READ;
        }
        if (upstream_wants_write(ex) && !ex->up->wr_ready && ex->up_last_write + s->send_timeout < d) {
                d = ex->up_last_write + s->send_timeout;
                *ret_kind = TIMEOUT_UP_SEND;
        }
        return d;
}

static void upstream_timeout(Exchange *ex, TimeoutKind kind) {
        switch (kind) {
        case TIMEOUT_CONNECT:
                log_warning("%s: upstream %s: connect_timeout expired", ex_text(ex), ex->peer_text);
                exchange_release_upstream(ex, false);
                exchange_end_attempt(ex, 504, "upstream connect timed out");
                ex->up_sent_any = false;
                if (exchange_may_retry(ex, NEXT_UPSTREAM_TIMEOUT))
                        (void) exchange_connect(ex);
                else
                        exchange_fail(ex, 504, "upstream connect timed out");
                break;
        case TIMEOUT_UP_READ:
                log_warning("%s: upstream %s: read_timeout expired", ex_text(ex), ex->peer_text);
                if (!ex->resp_head_done) {
                        exchange_release_upstream(ex, false);
                        exchange_end_attempt(ex, 504, "upstream timed out");
                        if (exchange_may_retry(ex, NEXT_UPSTREAM_TIMEOUT)) {
                                buf_reset(&ex->up_in);
                                (void) exchange_connect(ex);
                                break;
                        }
                }
                exchange_fail(ex, 504, "upstream timed out");
                break;
        case TIMEOUT_UP_SEND:
                log_warning("%s: upstream %s: send_timeout expired", ex_text(ex), ex->peer_text);
                exchange_fail(ex, 504, "upstream send timed out");
                break;
        default:
                break;
        }
}

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

/* The exchange ends: a connection whose response was read exactly to its end, with the whole
 * request sent, goes back to the pool. */
static void upstream_finish(Exchange *ex) {
        bool reusable = ex->up && ex->resp_done && ex->req_done && !ex->resp_truncated && ex->resp.keep_alive &&
                        !ex->tunneling && ex->req_head_off == buf_len(&ex->req_head) && buf_len(&ex->up_out) == 0;
        if (reusable && (buf_len(&ex->up_in) > 0 || upconn_has_unread(ex->up, ex->s->worker))) {
                log_warning("%s: upstream %s sent data after the end of its response; not reusing the connection",
                            ex_text(ex), ex->peer_text);
                reusable = false;
        }
        exchange_release_upstream(ex, reusable);
}

const SourceOps source_upstream = {
        .name = "upstream",
        .step = upstream_step,
        .wants_body = upstream_wants_body,
        .has_output = upstream_has_output,
        .deadline = upstream_deadline,
        .timeout = upstream_timeout,
        .finish = upstream_finish,
};
