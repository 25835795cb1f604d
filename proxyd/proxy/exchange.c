/* SPDX-License-Identifier: MIT */
/*
 * An exchange's lifetime and decisions: routing (server, location), access rules, limits,
 * local responses and `return`, the upstream request head (headers, Upgrade, TLS names),
 * the end of the exchange and its access entry. See exchange.h.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>

#include "exchange.h"
#include "exchange-policy.h"
#include "listener.h"
#include "log.h"
#include "router.h"
#include "tls.h"
#include "upstream.h"
#include "uri-rewrite.h"

static void make_request_id(Worker *w, char out[static 33]) {
        static const char hex[] = "0123456789abcdef";
        uint64_t a = worker_random(w), b = worker_random(w);
        for (int i = 0; i < 16; i++) {
                out[i] = hex[(a >> (i * 4)) & 15];
                out[16 + i] = hex[(b >> (i * 4)) & 15];
        }
        out[32] = 0;
}

Exchange *exchange_new(Conn *c) {
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
                pool_put(&ex->c->worker->pool, ex->up, ex->upstream);
        } else
                upconn_free(ex->up);
        ex->up = NULL;
}

Exchange *exchange_free(Exchange *ex) {
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
        exchange_policy_free(ex);
        ex->c->worker->n_exchanges--;
        ex->c->worker->exchanges_since_trim++;
        free(ex);
        return NULL;
}

void exchange_log(Exchange *ex) {
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

/* Queue a local response (error page or `return`). */
int exchange_local_response(Exchange *ex, int status, const char *content_type, const char *body,
                                   size_t body_len, const char *location, bool keep_alive) {
        Conn *c = ex->c;
        ResponseFields rf;
        ex->status = status;
        ex->resp_done = true;
        ex->close_after = ex->close_after || !keep_alive;
        return http1_write_local_response(&c->out, status, content_type, body, body_len, location,
                                          !ex->close_after, ex->method_id == HTTP_METHOD_HEAD,
                                          exchange_policy_fields(ex, status, &rf));
}

/* The exchange failed in proxyd or at the upstream. Before any response byte reached the
 * client an error page is sent; after that the client connection can only be closed. */
void exchange_fail(Exchange *ex, int status, const char *reason) {
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

void bad_request(Conn *c, const HttpError *err) {
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

/* The location proxies: build the upstream request head and start the first attempt. */
static int exchange_start_proxy(Conn *c, size_t head_len, const Route *rt) {
        Exchange *ex = c->ex;
        HttpRequest *req = &ex->req;
        const LocationSettings *s = ex_settings(ex);
        _cleanup_free_ char *rewritten = NULL;
        const char *origin = rt->origin, *norm = rt->norm, *args = rt->args;
        size_t origin_len = rt->origin_len, norm_len = rt->norm_len, args_len = rt->args_len,
               match_len = rt->match_len;
        int r;

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
        RequestInfo ri;
        exchange_request_info(ex, rt, host_lower, &ri);
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

int exchange_begin(Conn *c, size_t head_len) {
        Exchange *ex = c->ex;
        HttpRequest *req = &ex->req;
        Generation *g = conn_generation(c);
        const ListenerServers *ls = &g->listener_servers[c->listener];
        _cleanup_free_ char *norm = NULL;
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
        Route rt = { .host = host, .origin = origin, .norm = norm, .args = args, .host_len = host_len,
                     .origin_len = origin_len, .norm_len = norm_len, .args_len = args_len };

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
        rt.match_len = match_len;
        r = exchange_policy_route(ex, &rt, head_len);
        if (r != 0)
                return r < 0 ? r : 0;
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
                buf_consume(&c->in, head_len);
                return exchange_policy_return(ex, &rt, !body_pending);
        }
        return exchange_start_proxy(c, head_len, &rt);
}

/* Ends the exchange; returns -1 when that closed (freed) the connection, else 1. */
int exchange_finish(Conn *c) {
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
