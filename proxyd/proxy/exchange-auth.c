/* SPDX-License-Identifier: MIT */
/*
 * Forward authentication (a location's auth_request; nginx auth_request, Traefik
 * forwardAuth): before a request is proxied, proxyd asks an auth service with a request of
 * its own (no body, chosen fields of the client's), and goes on only on a 2xx answer.
 *
 * The auth request is a sub-exchange: an Exchange of its own running source_upstream (so
 * peer selection, the keep-alive pool, timeouts and next_upstream are the upstream code's)
 * under an internal Session whose ops capture the answer (status, the fields that matter,
 * a bounded body) instead of writing to a client. The client's exchange meanwhile runs
 * source_auth: it steps the sub-exchange, and its deadline is the sub-exchange's or the
 * auth timeout, whichever comes first, so the sub-exchange needs no timer of its own. It
 * takes no request body (the session reads none of it: a denied request's body is never
 * read, let alone forwarded), and it has no output until the decision:
 *
 *   2xx      the request head saved at exchange_begin() is restored and proxying goes on
 *            (exchange_proxy_continue); copy_headers from the answer replace the client's
 *   401/403  that status to the client, with WWW-Authenticate, Location, Set-Cookie,
 *            Content-Type and the body (at most AUTH_BODY_MAX)
 *   3xx      the same (a login redirect)
 *   other    500, with a journal line saying why; so are a timeout and an unreachable service
 *
 * 2xx, 401 and 403 are kept in the decision cache (policy/auth-cache.c) per expanded
 * cache_key when the auth_request has `cache`.
 */
#include <stddef.h>

#include "auth-cache.h"
#include "exchange.h"
#include "log.h"
#include "tls.h"

#define AUTH_BODY_MAX (64u * 1024u)

/* The request of the client, kept valid past exchange_begin() (the session drops its head). */
typedef struct AuthSaved {
        HttpRequest req;
        HttpHeader *headers;
        char *strings; /* method, target, every field name and value */
        char *target;  /* what goes upstream */
        size_t target_len;
        char *host, *origin, *norm, *args; /* the Route, copied */
        Route rt;
} AuthSaved;

struct AuthState {
        Session session; /* the sub-exchange's: its ops capture the answer */
        Exchange *parent;
        Exchange *sub;
        const AuthRequest *conf;
        uint64_t deadline;
        AuthSaved saved;
        char *key; /* the expanded cache_key, or NULL */
        size_t key_len;

        int status;              /* the auth service's answer; 0: none yet */
        const char *fail_reason; /* the sub-exchange failed (no usable answer) */
        Buf upstream_fields;     /* copy_headers of a 2xx, "Name: value" CRLF each */
        Buf reply_fields;        /* the fields of a denial or redirect for the client */
        Buf body;                /* its body (at most AUTH_BODY_MAX) */
        bool body_cut;

        /* the denial being sent to the client */
        bool replying;
        bool reply_head_sent;
        size_t body_off;
        const char *word; /* for the access entry */
};

static AuthState *auth_of_session(Session *s) {
        return (AuthState *) ((char *) s - offsetof(AuthState, session));
}

static AuthState *auth_of(const Exchange *sub) {
        return auth_of_session(sub->s);
}

static bool field_listed(char *const *names, size_t n, const char *name, size_t len) {
        for (size_t i = 0; i < n; i++)
                if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
                        return true;
        return false;
}

static int append_line(Buf *b, const char *name, size_t name_len, const char *value, size_t value_len) {
        int r = buf_append(b, name, name_len);
        if (r >= 0)
                r = buf_append(b, ": ", 2);
        if (r >= 0)
                r = http1_append_field_value(b, value, value_len);
        if (r >= 0)
                r = buf_append(b, "\r\n", 2);
        return r;
}

/* ---- the internal session: what the auth service answers ---- */

static const char *const reply_names[] = { "WWW-Authenticate", "Location", "Set-Cookie", "Content-Type",
                                           "Proxy-Authenticate" };

static void auth_session_run(Session *s) {
        Exchange *parent = auth_of_session(s)->parent;
        parent->s->ops->run(parent->s);
}

static int auth_body_peek(Exchange *ex, const char **ret, size_t *ret_len) {
        (void) ex, (void) ret, (void) ret_len;
        return 0; /* an auth request has no body */
}

static void auth_body_consume(Exchange *ex, size_t n) {
        (void) ex, (void) n;
}

static int auth_send_interim(Exchange *ex, int status, const HttpResponse *r) {
        (void) ex, (void) status, (void) r;
        return 0;
}

static int auth_send_head(Exchange *sub, const HttpResponse *r) {
        AuthState *st = auth_of(sub);
        const AuthRequest *a = st->conf;
        bool ok = r->status >= 200 && r->status < 300;
        int k = 0;

        st->status = r->status;
        for (size_t i = 0; i < r->n_headers && k >= 0; i++) {
                const HttpHeader *h = &r->headers[i];
                if (ok && field_listed(a->copy_headers, a->n_copy_headers, h->name, h->name_len))
                        k = append_line(&st->upstream_fields, h->name, h->name_len, h->value, h->value_len);
                else if (!ok && field_listed((char *const *) reply_names, ELEMENTSOF(reply_names), h->name, h->name_len))
                        k = append_line(&st->reply_fields, h->name, h->name_len, h->value, h->value_len);
        }
        return k;
}

static int auth_send_local(Exchange *sub, const LocalResponse *l) {
        AuthState *st = auth_of(sub);
        (void) l;
        st->fail_reason = sub->reason ?: "no answer from the auth service";
        return 0;
}

static ssize_t auth_send_data(Exchange *sub, const char *p, size_t n, bool last) {
        AuthState *st = auth_of(sub);
        (void) last;
        if (st->status >= 200 && st->status < 300)
                return (ssize_t) n; /* the body of an approval is not used */
        size_t keep = MIN(n, AUTH_BODY_MAX - buf_len(&st->body));
        if (keep < n)
                st->body_cut = true;
        if (keep > 0 && buf_append(&st->body, p, keep) < 0)
                return -ENOMEM;
        return (ssize_t) n;
}

static int auth_send_end(Exchange *sub) {
        (void) sub;
        return 0;
}

static bool auth_send_blocked(const Exchange *sub) {
        (void) sub;
        return false;
}

static const char *auth_client_subject(const Exchange *sub) {
        const Exchange *parent = auth_of(sub)->parent;
        return parent->s->ops->client_subject(parent);
}

static int auth_local_address(const Exchange *sub, struct sockaddr_storage *ret, socklen_t *ret_len) {
        const Exchange *parent = auth_of(sub)->parent;
        return parent->s->ops->local_address(parent, ret, ret_len);
}

static const SessionOps auth_session_ops = {
        .run = auth_session_run,
        .body_peek = auth_body_peek,
        .body_consume = auth_body_consume,
        .send_interim = auth_send_interim,
        .send_head = auth_send_head,
        .send_local = auth_send_local,
        .send_data = auth_send_data,
        .send_end = auth_send_end,
        .send_pipe = NULL,
        .send_blocked = auth_send_blocked,
        .client_subject = auth_client_subject,
        .local_address = auth_local_address,
};

/* ---- the request, saved and restored ---- */

static char *dup_or_null(const char *s, size_t n) {
        return s ? strndup(s, n) : NULL;
}

static int auth_save(AuthState *st, const Exchange *ex, const Route *rt, const char *target, size_t target_len) {
        AuthSaved *sv = &st->saved;
        const HttpRequest *req = &ex->req;
        size_t total = req->method_len + req->target_len + 2;

        for (size_t i = 0; i < req->n_headers; i++)
                total += req->headers[i].name_len + req->headers[i].value_len + 2;
        sv->strings = malloc(total);
        sv->headers = calloc(req->n_headers ?: 1, sizeof(HttpHeader));
        if (!sv->strings || !sv->headers)
                return -ENOMEM;
        char *p = sv->strings;
#define KEEP(dst, src, n)                     \
        do {                                  \
                memcpy(p, (src), (n));        \
                p[n] = 0;                     \
                (dst) = p;                    \
                p += (n) + 1;                 \
        } while (0)
        sv->req = *req;
        KEEP(sv->req.method, req->method, req->method_len);
        KEEP(sv->req.target, req->target, req->target_len);
        for (size_t i = 0; i < req->n_headers; i++) {
                const HttpHeader *h = &req->headers[i];
                sv->headers[i] = (HttpHeader){ .name_len = h->name_len, .value_len = h->value_len };
                KEEP(sv->headers[i].name, h->name, h->name_len);
                KEEP(sv->headers[i].value, h->value, h->value_len);
        }
#undef KEEP
        sv->req.headers = sv->headers;
        sv->target = strndup(target, target_len);
        sv->target_len = target_len;
        sv->host = dup_or_null(rt->host, rt->host_len);
        sv->origin = dup_or_null(rt->origin, rt->origin_len);
        sv->norm = dup_or_null(rt->norm, rt->norm_len);
        sv->args = dup_or_null(rt->args, rt->args_len);
        if (!sv->target || (rt->host && !sv->host) || (rt->origin && !sv->origin) || (rt->norm && !sv->norm) ||
            (rt->args && !sv->args))
                return -ENOMEM;
        sv->rt = *rt;
        sv->rt.host = sv->host;
        sv->rt.origin = sv->origin;
        sv->rt.norm = sv->norm;
        sv->rt.args = sv->args;
        return 0;
}

static void auth_saved_done(AuthSaved *sv) {
        free(sv->strings);
        free(sv->headers);
        free(sv->target);
        free(sv->host);
        free(sv->origin);
        free(sv->norm);
        free(sv->args);
}

/* ---- the auth request ---- */

/* The request head to the auth service: the method and path of `pass`, the client's
 * chosen fields, and what Traefik and nginx users expect to find there. */
static int auth_request_head(Buf *out, const Exchange *ex, const RequestInfo *ri, const AuthRequest *a) {
        const HttpRequest *req = &ex->req;
        const char *path = a->pass->uri ?: "/";
        const char *host = NULL;
        size_t host_len = 0;
        int r;

        if (req->host_index >= 0) {
                host = req->headers[req->host_index].value;
                host_len = req->headers[req->host_index].value_len;
        } else {
                host = ri->host;
                host_len = ri->host_len;
        }
        r = buf_printf(out, "%s %s HTTP/1.1\r\nHost: %s\r\n", a->method, path, a->pass->proxy_host);
        const struct {
                const char *name;
                const char *value;
                size_t len;
        } fixed[] = {
                { "X-Forwarded-Method", ex->method, strlen(ex->method) },
                { "X-Forwarded-Proto", ri->scheme, strlen(ri->scheme) },
                { "X-Forwarded-Host", host, host_len },
                { "X-Forwarded-Uri", ex->target, strlen(ex->target) },
                { "X-Forwarded-For", ex->remote_addr, strlen(ex->remote_addr) },
                { "X-Original-URI", ex->target, strlen(ex->target) },
                { "X-Original-Method", ex->method, strlen(ex->method) },
        };
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(fixed); i++)
                r = append_line(out, fixed[i].name, strlen(fixed[i].name), fixed[i].value, fixed[i].len);
        for (size_t i = 0; r >= 0 && i < req->n_headers; i++) {
                const HttpHeader *h = &req->headers[i];
                if (field_listed(a->headers, a->n_headers, h->name, h->name_len))
                        r = append_line(out, h->name, h->name_len, h->value, h->value_len);
        }
        if (r >= 0 && a->pass->upstream->keepalive == 0)
                r = buf_append_str(out, "Connection: close\r\n");
        if (r >= 0)
                r = buf_append(out, "\r\n", 2);
        return r;
}

static HttpMethod method_id(const char *m) {
        return streq(m, "GET") ? HTTP_METHOD_GET : streq(m, "HEAD") ? HTTP_METHOD_HEAD : HTTP_METHOD_OTHER;
}

/* Start the sub-exchange; a failure to start it is recorded like any other. */
static int auth_start(AuthState *st, const RequestInfo *ri) {
        Exchange *ex = st->parent, *sub;
        int r;

        st->session = (Session){ .ops = &auth_session_ops, .worker = ex->s->worker, .listener = ex->s->listener,
                                 .local_port = ex->s->local_port, .remote_port = ex->remote_port,
                                 .tls = ex->s->tls, .fd = -1 };
        memcpy(&st->session.remote_sa, &ex->remote_sa, sizeof(st->session.remote_sa));
        memcpy(st->session.remote_addr, ex->remote_addr, sizeof(st->session.remote_addr));
        sub = st->sub = exchange_new(&st->session, ex->gen, NULL);
        if (!sub)
                return -ENOMEM;
        memcpy(sub->request_id, ex->request_id, sizeof(sub->request_id));
        sub->server = ex->server;
        sub->loc = ex->loc;
        sub->method_id = method_id(st->conf->method);
        sub->req_body = HTTP_BODY_NONE;
        sub->req_done = true;
        sub->upstream = st->conf->pass->upstream;
        r = auth_request_head(&sub->req_head, ex, ri, st->conf);
        if (r < 0)
                return r;
        if (st->conf->pass->https) {
                /* the location's ssl_* settings; the name is the host of pass */
                const LocationSettings *s = ex_settings(ex);
                sub->tls_name = strdup(st->conf->pass->proxy_host);
                if (!sub->tls_name)
                        return -ENOMEM;
                host_strip_port(sub->tls_name);
                sub->https = true;
                sub->tls = (UpTls){ .ctx = tls_client_set_get(ex_generation(ex)->tls_clients, s),
                                    .sni = s->ssl_server_name ? sub->tls_name : NULL,
                                    .verify_name = sub->tls_name, .verify = s->ssl_verify };
                if (!sub->tls.ctx) {
                        st->fail_reason = "no TLS client context for the auth service";
                        return 0;
                }
        }
        sub->src = &source_upstream;
        (void) exchange_connect(sub); /* 0: failed, and auth_send_local said why */
        return 0;
}

/* ---- the decision cache ---- */

/* A decision as the cache keeps it: the status, then the length of the fields, the fields
 * (upstream fields for a 2xx, the reply's for a denial) and the body. */
static void auth_cache_store(AuthState *st, uint64_t now) {
        const AuthRequest *a = st->conf;
        bool ok = st->status >= 200 && st->status < 300;

        if (!st->key || !a->rt || !(ok || st->status == 401 || st->status == 403) || st->body_cut)
                return;
        const Buf *f = ok ? &st->upstream_fields : &st->reply_fields;
        uint32_t flen = (uint32_t) buf_len(f);
        Buf blob = {};
        int r = buf_append(&blob, &flen, sizeof(flen));
        if (r >= 0)
                r = buf_append(&blob, buf_head(f), flen);
        if (r >= 0 && !ok)
                r = buf_append(&blob, buf_head(&st->body), buf_len(&st->body));
        if (r >= 0)
                (void) auth_cache_put(a->rt, st->key, st->key_len, st->status, buf_head(&blob), buf_len(&blob),
                                      now + a->cache, now);
        buf_free(&blob);
}

/* 1 when a cached decision was loaded into st (as if the auth service had answered), 0 when
 * there is none, <0 on error. */
static int auth_cache_load(AuthState *st, uint64_t now) {
        void *data = NULL;
        size_t len = 0;
        int status = 0, r;
        uint32_t flen;

        r = auth_cache_get(st->conf->rt, st->key, st->key_len, now, &status, &data, &len);
        if (r <= 0)
                return r;
        if (len < sizeof(flen)) {
                free(data);
                return 0;
        }
        memcpy(&flen, data, sizeof(flen));
        if (flen > len - sizeof(flen)) {
                free(data);
                return 0;
        }
        const char *p = (const char *) data + sizeof(flen);
        bool ok = status >= 200 && status < 300;
        r = buf_append(ok ? &st->upstream_fields : &st->reply_fields, p, flen);
        if (r >= 0)
                r = buf_append(&st->body, p + flen, len - sizeof(flen) - flen);
        free(data);
        if (r < 0)
                return r;
        st->status = status;
        return 1;
}

/* ---- the client's side: source_auth ---- */

static int auth_decide(Exchange *ex, bool cached);

/* The denial (or redirect) to the client, through the session like a proxied response. */
static int auth_reply_step(Exchange *ex) {
        AuthState *st = ex->auth;
        int progress = 0;

        if (!st->reply_head_sent) {
                HttpHeader h[32];
                size_t n = 0;
                const char *p = buf_head(&st->reply_fields), *e = p + buf_len(&st->reply_fields);
                while (p < e && n < ELEMENTSOF(h)) {
                        const char *colon = memchr(p, ':', (size_t) (e - p)), *eol = memchr(p, '\r', (size_t) (e - p));
                        if (!colon || !eol || colon > eol)
                                break;
                        h[n++] = (HttpHeader){ p, (size_t) (colon - p), colon + 2, (size_t) (eol - colon - 2) };
                        p = eol + 2;
                }
                bool head = ex->method_id == HTTP_METHOD_HEAD;
                HttpResponse r = { .version_minor = 1, .status = st->status, .headers = h, .n_headers = n,
                                   .body = head ? HTTP_BODY_NONE : HTTP_BODY_LENGTH,
                                   .content_length = head ? 0 : buf_len(&st->body), .keep_alive = true };
                ex->status = st->status;
                st->reply_head_sent = true;
                if (ex->s->ops->send_head(ex, &r) < 0) {
                        exchange_cut(ex, "client write failed");
                        return 1;
                }
                progress = 1;
                if (head || buf_len(&st->body) == 0) {
                        ex->resp_done = true;
                        return 1;
                }
        }
        while (st->body_off < buf_len(&st->body)) {
                size_t left = buf_len(&st->body) - st->body_off;
                ssize_t k = ex->s->ops->send_data(ex, buf_head(&st->body) + st->body_off, left, true);
                if (k < 0) {
                        exchange_client_failed(ex, (int) -k);
                        return 1;
                }
                if (k == 0)
                        break;
                st->body_off += (size_t) k;
                progress = 1;
        }
        if (st->body_off == buf_len(&st->body))
                ex->resp_done = true;
        return progress;
}

static void auth_sub_end(AuthState *st) {
        if (!st->sub)
                return;
        if (st->sub->src)
                st->sub->src->finish(st->sub); /* a connection read to the end goes back to the pool */
        st->sub = exchange_free(st->sub);
}

static bool auth_answered(const AuthState *st) {
        return st->fail_reason || (st->status > 0 && st->sub->resp_done);
}

static int auth_step(Exchange *ex) {
        AuthState *st = ex->auth;
        int progress = 0;

        if (st->replying)
                return st->reply_head_sent && ex->resp_done ? 0 : auth_reply_step(ex);
        while (!auth_answered(st) && exchange_step(st->sub) > 0)
                progress = 1;
        if (!auth_answered(st))
                return progress;
        if (!st->fail_reason && st->sub->resp_truncated)
                st->fail_reason = st->sub->reason ?: "the auth service's answer was cut short";
        return auth_decide(ex, false);
}

static bool auth_has_output(const Exchange *ex) {
        const AuthState *st = ex->auth;
        return st->replying && !ex->resp_done;
}

static uint64_t auth_deadline(const Exchange *ex, TimeoutKind *ret_kind) {
        const AuthState *st = ex->auth;
        uint64_t d = USEC_INFINITY;

        *ret_kind = TIMEOUT_NONE;
        if (st->replying || !st->sub)
                return d;
        d = st->sub->src->deadline(st->sub, ret_kind);
        if (st->deadline < d) {
                d = st->deadline;
                *ret_kind = TIMEOUT_UP_READ; /* told apart in auth_timeout by the time */
        }
        return d;
}

static void auth_timeout(Exchange *ex, TimeoutKind kind) {
        AuthState *st = ex->auth;

        if (st->replying || !st->sub)
                return;
        /* the earlier of the two is due (the session fires a little ahead of time) */
        TimeoutKind k;
        if (st->deadline <= st->sub->src->deadline(st->sub, &k)) {
                st->fail_reason = "auth request timed out";
                (void) auth_decide(ex, false);
                return;
        }
        st->sub->src->timeout(st->sub, kind);
}

static void auth_finish(Exchange *ex) {
        auth_sub_end(ex->auth);
}

const SourceOps source_auth = {
        .name = "auth",
        .step = auth_step,
        .wants_body = source_no_body,
        .has_output = auth_has_output,
        .deadline = auth_deadline,
        .timeout = auth_timeout,
        .finish = auth_finish,
};

/* Go on with the saved request: the 2xx case. */
static int auth_resume(Exchange *ex) {
        AuthState *st = ex->auth;
        char host_lower[256];
        RequestInfo ri;

        ex->req = st->saved.req;
        exchange_request_info(ex, &st->saved.rt, host_lower, &ri);
        ex->src = NULL;
        int r = exchange_proxy_continue(ex, &ri, st->saved.target, st->saved.target_len);
        if (r < 0)
                exchange_fail(ex, 500, "out of memory");
        return 1;
}

static int auth_decide(Exchange *ex, bool cached) {
        AuthState *st = ex->auth;
        char up[sizeof(ex->peer_text)];
        bool keep_alive = ex->req_done;

        /* for the log lines: the auth service's address, or pass as written */
        snprintf(up, sizeof(up), "%s", st->sub && st->sub->n_tried > 0 ? st->sub->peer_text : st->conf->pass->text);
        auth_sub_end(st);
        if (st->fail_reason) {
                log_warning("%s: auth request to %s for %s failed: %s; answering 500", ex_text(ex), up, ex->target,
                            st->fail_reason);
                st->word = "error";
                ex->reason = st->fail_reason;
                return exchange_local_response(ex, 500, NULL, NULL, 0, NULL, keep_alive), 1;
        }
        if (!cached)
                auth_cache_store(st, ex_now(ex));
        if (st->status >= 200 && st->status < 300) {
                st->word = cached ? "allow-cached" : "allow";
                return auth_resume(ex);
        }
        if (st->status == 401 || st->status == 403 || (st->status >= 300 && st->status < 400 && st->status != 304)) {
                st->word = st->status >= 400 ? (cached ? "deny-cached" : "deny") : "redirect";
                ex->reason = st->status >= 400 ? "denied by the auth service" : "redirected by the auth service";
                log_info("%s: auth service %s answered %d for %s", ex_text(ex), up, st->status, ex->target);
                /* a denied request's body is never read: the connection closes after the answer */
                ex->close_after = ex->close_after || !keep_alive;
                st->replying = true;
                return auth_reply_step(ex);
        }
        log_warning("%s: auth service %s answered %d for %s (only 2xx, 3xx, 401 and 403 are decisions); answering 500",
                    ex_text(ex), up, st->status, ex->target);
        st->word = "error";
        ex->reason = "unexpected status from the auth service";
        return exchange_local_response(ex, 500, NULL, NULL, 0, NULL, keep_alive), 1;
}

/* ---- what exchange.c calls ---- */

static bool copy_field(const HttpHeader *h, void *userdata) {
        const AuthRequest *a = userdata;
        return field_listed(a->copy_headers, a->n_copy_headers, h->name, h->name_len);
}

int exchange_auth_begin(Exchange *ex, const RequestInfo *ri, const Route *rt, const char *target,
                        size_t target_len) {
        const AuthRequest *a = ex_settings(ex)->auth_request;
        AuthState *st;
        int r;

        if (!a)
                return 0;
        /* the client never sets what the auth service vouches for */
        http1_request_drop_fields(&ex->req, copy_field, (void *) a);
        st = ex->auth = calloc(1, sizeof(AuthState));
        if (!st)
                return -ENOMEM;
        st->parent = ex;
        st->conf = a;
        st->deadline = ex_now(ex) + a->timeout;
        if (a->rt && a->cache_key) {
                Buf k = {};
                r = var_expand(&k, a->cache_key, ri);
                if (r < 0) {
                        buf_free(&k);
                        return r;
                }
                st->key_len = buf_len(&k);
                st->key = buf_len(&k) > 0 ? strndup(buf_head(&k), buf_len(&k)) : strdup("");
                buf_free(&k);
                if (!st->key)
                        return -ENOMEM;
                r = auth_cache_load(st, ex_now(ex));
                if (r < 0)
                        return r;
                if (r > 0) {
                        if (st->status >= 200 && st->status < 300) {
                                st->word = "allow-cached";
                                return 0; /* proxying goes on now, with the cached fields */
                        }
                        ex->src = &source_auth;
                        return auth_decide(ex, true);
                }
        }
        r = auth_save(st, ex, rt, target, target_len);
        if (r >= 0)
                r = auth_start(st, ri);
        if (r < 0)
                return r;
        ex->src = &source_auth;
        if (st->fail_reason)
                return auth_decide(ex, false);
        return 1;
}

int exchange_auth_request_head(Exchange *ex, Buf *head) {
        const AuthState *st = ex->auth;

        if (!st || buf_len(&st->upstream_fields) == 0 || buf_len(head) < 4)
                return 0;
        head->end -= 2; /* the blank line */
        int r = buf_append(head, buf_head(&st->upstream_fields), buf_len(&st->upstream_fields));
        if (r >= 0)
                r = buf_append(head, "\r\n", 2);
        return r;
}

void exchange_auth_free(Exchange *ex) {
        AuthState *st = ex->auth;

        if (!st)
                return;
        auth_sub_end(st);
        auth_saved_done(&st->saved);
        free(st->key);
        buf_free(&st->upstream_fields);
        buf_free(&st->reply_fields);
        buf_free(&st->body);
        free(st);
        ex->auth = NULL;
}

const char *exchange_auth_word(const Exchange *ex) {
        return ex->auth ? ex->auth->word : NULL;
}
