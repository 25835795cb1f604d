/* SPDX-License-Identifier: MIT */
/*
 * An exchange's lifetime and decisions: routing (server, location), access rules, limits,
 * the local response source (`return`, redirects, error pages), the upstream request head
 * (headers, Upgrade, TLS names), the end of the exchange and its access entry. See
 * exchange.h; the client side is the session's (session.h), the upstream side
 * exchange-upstream.c's.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/epoll.h>

#include "exchange.h"
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

/* "address:port" of the client, for log lines: built when needed (connections are held by
 * the thousand, log lines are rare), in a per-thread buffer valid until the next call. */
static const char *address_text(int family, const char *addr, unsigned port) {
        static __thread char text[INET6_ADDRSTRLEN + 16];
        if (family == AF_INET6)
                snprintf(text, sizeof(text), "[%s]:%u", addr, port);
        else if (family == AF_INET)
                snprintf(text, sizeof(text), "%s:%u", addr, port);
        else
                snprintf(text, sizeof(text), "%s", addr);
        return text;
}

const char *session_text(const Session *s) {
        return address_text(s->remote_sa.sa.sa_family, s->remote_addr, s->remote_port);
}

const char *exchange_text(const Exchange *ex) {
        return address_text(ex->remote_sa.sa.sa_family, ex->remote_addr, ex->remote_port);
}

/* Exchanges freed by this thread, kept for its next ones: a request allocates and zeroes no
 * Exchange (it is large: peers tried, a tunnel). Given back to malloc when the thread ends.
 * Not with AddressSanitizer, which is to see every use of a freed exchange. */
#if defined(__SANITIZE_ADDRESS__)
#define EXCHANGE_CACHE_MAX 0
#else
#define EXCHANGE_CACHE_MAX 16
#endif

typedef struct ExchangeCache {
        Exchange *slot[EXCHANGE_CACHE_MAX + 1];
        unsigned n;
        bool registered; /* for the destructor at thread exit */
} ExchangeCache;

static __thread ExchangeCache exchange_cache;
static pthread_key_t exchange_cache_key;
static pthread_once_t exchange_cache_once = PTHREAD_ONCE_INIT;

static void exchange_cache_drop(void *p) {
        ExchangeCache *c = p;
        while (c->n > 0)
                free(c->slot[--c->n]);
}

static void exchange_cache_init(void) {
        (void) pthread_key_create(&exchange_cache_key, exchange_cache_drop);
}

static Exchange *exchange_alloc(void) {
        ExchangeCache *c = &exchange_cache;
        Exchange *ex = c->n > 0 ? c->slot[--c->n] : malloc(sizeof(Exchange));

        if (ex) {
                memset(ex, 0, offsetof(Exchange, pol.holds));
                ex->request_id[0] = 0;
                ex->peer_text[0] = 0;
        }
        return ex;
}

static void exchange_dealloc(Exchange *ex) {
        ExchangeCache *c = &exchange_cache;

        if (c->n >= EXCHANGE_CACHE_MAX) {
                free(ex);
                return;
        }
        if (!c->registered) {
                (void) pthread_once(&exchange_cache_once, exchange_cache_init);
                if (pthread_setspecific(exchange_cache_key, c) != 0) {
                        free(ex);
                        return;
                }
                c->registered = true;
        }
        c->slot[c->n++] = ex;
}

Exchange *exchange_new(Session *s, WorkerGen *gen, void *stream) {
        Exchange *ex = exchange_alloc();

        if (!ex)
                return NULL;
        s->worker->n_exchanges++;
        ex->s = s;
        memcpy(&ex->remote_sa, &s->remote_sa, sizeof(ex->remote_sa));
        memcpy(ex->remote_addr, s->remote_addr, sizeof(ex->remote_addr));
        ex->remote_port = s->remote_port;
        ex->gen = gen;
        ex->stream = stream;
        ex->start = now_usec(CLOCK_MONOTONIC);
        ex->minor = 1;
        return ex;
}

const char *exchange_request_id(Exchange *ex) {
        if (!ex->request_id[0])
                make_request_id(ex->s->worker, ex->request_id);
        return ex->request_id;
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
                worker_pipe_put(ex->s->worker, ex->pipe, ex->pipe_len == 0);
        cache_exchange_free(ex);
        buf_free(&ex->req_head);
        buf_free(&ex->up_out);
        buf_free(&ex->up_in);
        buf_free(&ex->resp_trailers);
        free(ex->method);
        free(ex->target);
        free(ex->tls_name);
        free(ex->upgrade_offered);
        exchange_policy_done(ex);
        exchange_rules_free(ex);
        exchange_auth_free(ex);
        ex->s->worker->n_exchanges--;
        ex->s->worker->exchanges_since_trim++;
        exchange_dealloc(ex);
        return NULL;
}

void exchange_log(Exchange *ex) {
        Worker *w = ex->s->worker;
        Generation *g = ex_generation(ex);

        atomic_fetch_add_explicit(&w->stats.requests, 1, memory_order_relaxed);
        exchange_count(ex);
        if (!g->config->access_log)
                return;
        const AccessEntry e = {
                .client = ex_text(ex),
                .server = ex->server ? ex->server->name : NULL,
                .method = ex->method ?: "-",
                .uri = ex->target ?: "-",
                .status = ex->status,
                .upstream = ex->n_tried > 0 ? ex->peer_text : NULL,
                .upstream_status = ex->upstream_status,
                .bytes_sent = ex->bytes_sent,
                .bytes_received = ex->bytes_received,
                .duration_usec = now_usec(CLOCK_MONOTONIC) - ex->start,
                .request_id = exchange_request_id(ex),
                .reason = ex->reason,
                .limit = ex->pol.limit,
                .peer = ex->client_replaced ? ex->s->remote_addr : NULL,
                .cache = cache_exchange_word(ex),
                .auth = exchange_auth_word(ex),
                .protocol = ex->protocol ?: ex->minor == 0 ? "HTTP/1.0" : "HTTP/1.1",
        };
        if (g->access_file)
                access_buf_add(&w->access_buf, g->access_file, &e);
        else
                log_access(&e);
}

/* The local source: the whole response is given to the session at once (it is small: an
 * error page or a configured `return`), so there is nothing left to do in a step. */
static int local_step(Exchange *ex) {
        (void) ex;
        return 0;
}

bool source_no_body(const Exchange *ex) {
        (void) ex;
        return false;
}

uint64_t source_no_deadline(const Exchange *ex, TimeoutKind *ret_kind) {
        (void) ex;
        *ret_kind = TIMEOUT_NONE;
        return USEC_INFINITY;
}

void source_no_timeout(Exchange *ex, TimeoutKind kind) {
        (void) ex;
        (void) kind;
}

void source_no_finish(Exchange *ex) {
        (void) ex;
}

const SourceOps source_local = {
        .name = "local",
        .step = local_step,
        .wants_body = source_no_body,
        .has_output = source_no_body,
        .deadline = source_no_deadline,
        .timeout = source_no_timeout,
        .finish = source_no_finish,
};

/* Answer with a local response (error page or `return`). */
int exchange_local_response(Exchange *ex, int status, const char *content_type, const char *body,
                                   size_t body_len, const char *location, bool keep_alive) {
        if (ex->src && ex->src != &source_local)
                ex->src->finish(ex);
        ex->src = &source_local;
        ex->status = status;
        ex->resp_done = true;
        ex->close_after = ex->close_after || !keep_alive;
        ex->local = (LocalResponse){ .status = status, .content_type = content_type, .body = body,
                                     .body_len = body_len, .location = location,
                                     .retry_after = ex->local.retry_after /* set by a limit's 429 */,
                                     .allow = ex->local.allow /* set with a 405 */ };
        return ex->s->ops->send_local(ex, &ex->local);
}

/* The exchange failed in proxyd or at the upstream. Before any response byte reached the
 * client an error page is sent; after that the client connection can only be closed. */
void exchange_fail(Exchange *ex, int status, const char *reason) {
        if ((status == 502 || status == 504) && cache_upstream_failed(ex, status))
                return; /* a stale copy is served instead */
        ex->reason = reason;
        if (ex->src)
                ex->src->finish(ex); /* the response is not complete: nothing is reused */
        if (ex->client_head_sent || ex->resp_head_done) {
                /* The status line is on its way: a truncated response must look truncated. */
                ex->resp_truncated = true;
                ex->resp_done = true;
                ex->close_after = true;
                return;
        }
        ex->close_after = true;
        (void) exchange_local_response(ex, status, NULL, NULL, 0, NULL, false);
}

void exchange_cut(Exchange *ex, const char *reason) {
        ex->reason = reason;
        ex->resp_truncated = ex->resp_done = ex->close_after = true;
        if (ex->src)
                ex->src->finish(ex); /* truncated: nothing is reused */
}

void exchange_client_failed(Exchange *ex, int error) {
        log_info("%s: client write failed: %s", ex_text(ex), error ? strerror(error) : "nothing written");
        exchange_cut(ex, "client write failed");
}

void exchange_reject(Exchange *ex, int status, const char *reason, size_t offset) {
        log_warning("%s: bad request: %s (offset %zu), status %d", ex_text(ex), reason ?: "malformed", offset,
                    status);
        ex->reason = reason;
        ex->close_after = true;
        (void) exchange_local_response(ex, status ?: 400, NULL, NULL, 0, NULL, false);
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
        Generation *g = ex_generation(ex);
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
                log_debug("%s: Upgrade \"%.*s\" on a request with a body: not upgraded", ex_text(ex),
                          (int) MIN(h->value_len, 64u), h->value);
                return 0;
        }
        char *v = malloc(h->value_len + 1);
        if (!v)
                return -ENOMEM;
        if (http1_upgrade_filter(h->value, h->value_len, s->upgrade_protocols, s->n_upgrade_protocols, v) == 0) {
                log_debug("%s: Upgrade \"%.*s\" is not in upgrade_protocols: dropped", ex_text(ex),
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
static bool underscore_field(const HttpHeader *h, void *userdata) {
        const Exchange *ex = userdata;
        if (!http1_name_has_underscore(h->name, h->name_len))
                return false;
        log_debug("%s: dropped request header field \"%.*s\" (underscores_in_headers is off)", ex_text(ex),
                  (int) MIN(h->name_len, 64u), h->name);
        return true;
}

static void request_drop_underscores(Exchange *ex) {
        http1_request_drop_fields(&ex->req, underscore_field, ex);
}

/* set_header values with variables: the request head needs the request's variables. */
static bool set_header_has_variables(const LocationSettings *s) {
        for (size_t i = 0; i < s->n_set_header; i++)
                if (s->set_header[i].value && !var_template_is_literal(s->set_header[i].value))
                        return true;
        return false;
}

/* The location proxies: build the upstream request head and start the first attempt. */
static int exchange_start_proxy(Exchange *ex, ExchangeVars *vars) {
        const Route *rt = vars->rt;
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
                        exchange_reject(ex, 400, "request-target would be resolved differently by the upstream", 0);
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

        ex->upstream = pp->upstream;
        r = exchange_limits(ex, vars, s);
        if (r != 0)
                return r < 0 ? r : 0;
        r = exchange_upstream_prepare(ex, vars);
        if (r < 0)
                return r;
        if (pp->https) {
                r = exchange_setup_tls(ex, exchange_vars(vars), s);
                if (r < 0)
                        return r;
        }
        HttpHeader upgrade = {};
        r = exchange_decide_upgrade(ex, s, &upgrade);
        if (r < 0)
                return r;
        r = s->auth_request ? exchange_auth_begin(ex, exchange_vars(vars), rt, target, target_len) : 0;
        if (r != 0)
                return r < 0 ? r : 0; /* answered, or waiting for the auth service */
        return exchange_proxy_continue(ex, vars, target, target_len);
}

int exchange_proxy_continue(Exchange *ex, ExchangeVars *vars, const char *target, size_t target_len) {
        const LocationSettings *s = ex_settings(ex);
        HttpHeader upgrade = {};
        int r;

        if (ex->upgrade)
                upgrade = (HttpHeader){ .name = "Upgrade", .name_len = 7, .value = ex->upgrade_offered,
                                        .value_len = strlen(ex->upgrade_offered) };
        r = s->cache ? cache_request(ex, exchange_vars(vars)) : 0;
        if (r != 0)
                return r < 0 ? r : 0; /* answered from the cache */
        /* without set_header variables the head needs only the request and $proxy_host */
        const RequestInfo head_ri = { .req = &ex->req, .proxy_host = ex->loc->proxy->proxy_host };
        r = http1_write_request_head(&ex->req_head, set_header_has_variables(s) ? exchange_vars(vars) : &head_ri,
                                     target, target_len, s, ex->req_body, ex->req_left, ex->upstream->keepalive > 0,
                                     ex->upgrade ? &upgrade : NULL);
        if (r >= 0)
                r = cache_request_head(ex, &ex->req_head);
        if (r >= 0)
                r = exchange_auth_request_head(ex, &ex->req_head);
        if (r < 0)
                return r;

        if (ex->req.expect_continue && !ex->req_done)
                (void) ex->s->ops->send_interim(ex, 100, NULL);
        if (ex->pol.delay_until > 0) {
                ex->src = &source_limit_wait; /* then source_upstream */
                return 1;
        }
        ex->src = &source_upstream;
        if (cache_wait(ex))
                return 0; /* another request is fetching it: wait for that one */
        return exchange_connect(ex);
}

int exchange_begin(Exchange *ex) {
        HttpRequest *req = &ex->req;
        Generation *g = ex_generation(ex);
        const ListenerServers *ls = &g->listener_servers[ex->s->listener];
        _cleanup_free_ char *norm = NULL;
        const char *host, *args = NULL, *origin;
        size_t host_len, norm_len = 0, args_len = 0, origin_len, match_len = 0;
        int r;

        ex->method = strndup(req->method, req->method_len);
        ex->target = strndup(req->target, req->target_len);
        if (!ex->method || !ex->target)
                return -ENOMEM;
        ex->method_id = req->method_id;
        ex->minor = req->version_minor;
        ex->client_keep_alive = req->keep_alive;
        ex->req_body = req->body;
        ex->req_left = req->body == HTTP_BODY_LENGTH ? req->content_length : 0;
        if (req->body == HTTP_BODY_NONE || (req->body == HTTP_BODY_LENGTH && req->content_length == 0)) {
                ex->req_done = true;
                ex->req_body = HTTP_BODY_NONE;
        }

        if (ls->n > 0 && ls->servers[0]->admin)
                return admin_exchange_begin(ex, ls->servers[0]);
        request_host(ex, &host, &host_len);
        ex->server = router_select_server(ls->servers, ls->n, host, host_len);
        if (!ex->server) {
                return exchange_local_response(ex, 500, NULL, NULL, 0, NULL, false);
        }

        request_origin_target(req, &origin, &origin_len);
        r = uri_normalize(origin, origin_len, &norm, &norm_len, &args, &args_len);
        if (r < 0) {
                if (r == -ENOMEM)
                        return r;
                exchange_reject(ex, 400, "request-target cannot be normalized", 0);
                return 0;
        }
        Route rt = { .host = host, .origin = origin, .norm = norm, .args = args, .host_len = host_len,
                     .origin_len = origin_len, .norm_len = norm_len, .args_len = args_len };
        ExchangeVars vars;
        exchange_vars_init(&vars, ex, &rt);

        Location *redirect = router_auto_redirect(ex->server, norm, norm_len);
        if (redirect) {
                _cleanup_free_ char *where = NULL;
                if (asprintf(&where, "%s%s%.*s", redirect->pattern, args ? "?" : "", (int) args_len,
                             args ?: "") < 0)
                        return -ENOMEM;
                ex->loc = redirect;
                return exchange_local_response(ex, 301, NULL, NULL, 0, where, !ex->req_done);
        }

        ex->loc = router_select_location(ex->server, norm, norm_len, &match_len);
        rt.match_len = match_len;
        /* The client's address first (real_ip_* of the location routing found): the rules'
         * client conditions, the access rules and the limits all see the same one. */
        r = exchange_client_identity(ex, ex_settings(ex));
        if (r < 0)
                return r;
        r = exchange_rules_route(ex, &vars);
        if (r != 0)
                return r < 0 ? r : 0;
        const LocationSettings *s = ex_settings(ex);
        bool body_pending = !ex->req_done;

        if (!ex->loc) {
                return exchange_local_response(ex, 404, NULL, NULL, 0, NULL, !body_pending);
        }
        if (s->n_access > 0) {
                if (!access_check(s->access, s->n_access, &ex->remote_sa.sa)) {
                        log_info("%s: access to %s forbidden by rule", ex_text(ex), ex->target);
                        ex->reason = "access denied";
                        return exchange_local_response(ex, 403, NULL, NULL, 0, NULL, !body_pending);
                }
        }
        if (s->client_max_body_size > 0 && req->body == HTTP_BODY_LENGTH &&
            req->content_length > s->client_max_body_size) {
                log_info("%s: request body of %llu bytes exceeds client_max_body_size", ex_text(ex),
                         (unsigned long long) req->content_length);
                ex->reason = "request body too large";
                return exchange_local_response(ex, 413, NULL, NULL, 0, NULL, false);
        }
        if (ex->loc->return_status > 0)
                return exchange_rules_return(ex, &vars, !body_pending);
        return exchange_start_proxy(ex, &vars);
}

uint64_t exchange_deadline(const Exchange *ex, TimeoutKind *ret_kind) {
        if (!ex->src) {
                *ret_kind = TIMEOUT_NONE;
                return USEC_INFINITY;
        }
        return ex->src->deadline(ex, ret_kind);
}

void exchange_timeout(Exchange *ex, TimeoutKind kind) {
        if (ex->src)
                ex->src->timeout(ex, kind);
}

void exchange_end(Exchange *ex) {
        if (ex->src)
                ex->src->finish(ex);
        cache_exchange_end(ex);
        exchange_log(ex);
        exchange_free(ex);
}
