/* SPDX-License-Identifier: MIT */
/*
 * The upstream side of an exchange: peer selection and attempts (connect, pool, TLS,
 * next_upstream retries), the request relayed to the upstream, the response head parsed and
 * re-framed, and the body relayed to the client (spliced between plain sockets). See
 * exchange.h.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>

#include "exchange.h"
#include "exchange-policy.h"
#include "log.h"
#include "tls.h"
#include "upstream.h"

static void on_upstream_io(UpConn *u, uint32_t revents, void *userdata);

static bool method_idempotent(HttpMethod m) {
        return m == HTTP_METHOD_GET || m == HTTP_METHOD_HEAD || m == HTTP_METHOD_PUT || m == HTTP_METHOD_DELETE ||
               m == HTTP_METHOD_OPTIONS || m == HTTP_METHOD_TRACE;
}

/* Count the attempt's outcome for passive health (once) and log a state change. */
void exchange_report(Exchange *ex, bool failed) {
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
void exchange_end_attempt(Exchange *ex, int status, const char *reason) {
        ex->last_fail_status = status;
        ex->last_fail_reason = reason;
        exchange_report(ex, true);
        peer_release(ex->peer);
        ex->peer = NULL;
}

/* May the request go to another server after a failure of kind `cond` (NEXT_UPSTREAM_*)? */
bool exchange_may_retry(Exchange *ex, unsigned cond) {
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

int exchange_connect(Exchange *ex) {
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
int exchange_pump_request(Exchange *ex) {
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
        ResponseFields rf;

        ex->upstream_status = r->status;
        ex->status = r->status;
        if (r->status == 101) {
                ex->tunnel_pending = true;
                ex->close_after = true;
                return http1_write_response_head(&c->out, r, ex_settings(ex), HTTP_BODY_UNTIL_CLOSE, false, ex->minor,
                                                 exchange_policy_fields(ex, r->status, &rf));
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

        int k = http1_write_response_head(&c->out, r, ex_settings(ex), ex->resp_out, keep_alive, ex->minor,
                                          exchange_policy_fields(ex, r->status, &rf));
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

/* A 101 must switch to (one of) the protocols sent upstream, and say which. */
static bool upgrade_answer_matches(const Exchange *ex, const HttpResponse *r) {
        int i = http1_find_header(r->headers, r->n_headers, "Upgrade");
        if (i < 0 || !ex->upgrade_offered)
                return false;
        return http1_upgrade_matches(r->headers[i].value, r->headers[i].value_len, ex->upgrade_offered,
                                     strlen(ex->upgrade_offered));
}

/* Flush what is queued for the client first: the bound on buffered data. A response head
 * goes out together with the Content-Length body bytes already read. Returns 1 on progress
 * (a failed write counts: the exchange is failed then). */
static int exchange_flush_client(Exchange *ex) {
        Conn *c = ex->c;
        int progress = 0;
        ssize_t n;

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
        return progress;
}

/* The response head: parse what arrived (interim responses, retries on 50x, the 101 check),
 * else read more. Returns 1 on progress. */
static int exchange_read_response_head(Exchange *ex, int progress) {
        Conn *c = ex->c;
        UpConn *u = ex->up;
        ssize_t n;

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

/* The response body, re-framed for the client (or spliced). Returns 1 on progress. */
static int exchange_relay_body(Exchange *ex, int progress) {
        Conn *c = ex->c;
        UpConn *u = ex->up;
        ssize_t n;

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

/* Response direction. Returns 1 on progress. */
int exchange_pump_response(Exchange *ex) {
        Conn *c = ex->c;
        int progress = exchange_flush_client(ex);
        UpConn *u = ex->up; /* after the flush: a failed client write releases it */

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

        if (!ex->resp_head_done)
                return exchange_read_response_head(ex, progress);
        return exchange_relay_body(ex, progress);
}

/* Did the upstream send anything (bytes or EOF) past the end of its response? Such bytes must
 * not go back to the pool: the next request sent on the connection would read them as its
 * response. They may be in the socket without being in up_in: a spliced body is taken out
 * by its exact length, and a HEAD or 304 response has no body to delimit what follows. A plain
 * socket whose last read was short and that has had no event since holds nothing (the check
 * costs no syscall then); otherwise it is asked. */
bool upconn_has_unread(UpConn *u, Worker *w) {
        char probe;

        if (stream_pending(&u->stream) > 0)
                return true;
        if (!stream_is_plain(&u->stream) || (!u->rd_ready && !worker_io_pending(w, &u->io)))
                return false;
        ssize_t k = recv(u->stream.fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
        return !(k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}
