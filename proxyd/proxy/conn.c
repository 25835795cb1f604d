/* SPDX-License-Identifier: MIT */
/*
 * The client connection (HTTP/1): reading and parsing request heads, keep-alive and
 * pipelining, closing with a lingering drain, the deadlines of every phase, and the one
 * function that drives it all (conn_run). See exchange.h.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>

#include "exchange.h"
#include "listener.h"
#include "log.h"
#include "tls.h"

static void conn_free(Conn *c);

/* Settings that apply before a server is chosen: those of the listener's default server. */
static Server *conn_default_server(Conn *c) {
        Generation *g = conn_generation(c);
        if (c->listener >= g->n_listeners || g->listener_servers[c->listener].n == 0)
                return NULL;
        return g->listener_servers[c->listener].servers[0];
}

const LocationSettings *conn_settings(Conn *c) {
        if (c->ex && ex_settings(c->ex))
                return ex_settings(c->ex);
        Server *s = conn_default_server(c);
        return s ? &s->s : NULL;
}

/* "address:port" of the client, for log lines: built when needed (connections are held by
 * the thousand, log lines are rare), in a per-thread buffer valid until the next call. */
const char *conn_text(const Conn *c) {
        static __thread char text[INET6_ADDRSTRLEN + 16];
        if (c->remote_sa.sa.sa_family == AF_INET6)
                snprintf(text, sizeof(text), "[%s]:%u", c->remote_addr, c->remote_port);
        else if (c->remote_sa.sa.sa_family == AF_INET)
                snprintf(text, sizeof(text), "%s:%u", c->remote_addr, c->remote_port);
        else
                snprintf(text, sizeof(text), "%s", c->remote_addr);
        return text;
}

void conn_close_now(Conn *c) {
        conn_free(c);
}

/* Output is flushed: shut down our side and drain what the client still sends, so that
 * closing does not reset the connection under a response the client has not read yet. */
void conn_start_closing(Conn *c) {
        c->state = CONN_CLOSING;
        c->phase_start = conn_now(c);
        c->lingered = 0;
        buf_free(&c->out);
        buf_reset(&c->in);
        (void) stream_shutdown_write(&c->client);
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
                        metrics_tls_handshake(&c->worker->metrics, r >= 0);
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

static Conn *conn_from_timer(TimerNode *t) {
        return (Conn *) ((char *) t - offsetof(Conn, timer));
}

static void conn_timeout(Conn *c) {
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

/* Close now (shutdown timeout, worker exit). */
static void conn_abort_all(Worker *w) {
        while (w->conns)
                conn_free(w->conns);
}

/* Graceful stop: an idle connection closes now, a busy one after its current response. */
static void conn_drain(Conn *c) {
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

static int conn_new(Worker *w, int fd, size_t listener, unsigned local_port, const struct sockaddr *peer,
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
