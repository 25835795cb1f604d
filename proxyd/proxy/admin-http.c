/* SPDX-License-Identifier: MIT */
/*
 * The admin endpoint on the request path: a socket whose server has admin = true (the socket
 * named "admin" by default, proxyd-admin.socket) is answered here and never routed to
 * locations; the public sockets never get here (config.c refuses a socket shared by the
 * admin server and another). Reading endpoints are answered at once, from the worker's
 * thread, as local responses; a command goes to the manager thread (core/admin.c) while the
 * exchange runs source_admin, a response source that only waits, until the answer comes back
 * to this worker. Also the request path's one call for the metrics (exchange_count).
 *
 *   GET  /                   the status page (HTML, refreshes itself from /api/status)
 *   GET  /metrics            Prometheus text format
 *   GET  /api/status         servers, upstream groups and their servers (JSON)
 *   GET  /api/upstreams      the upstream groups and their servers (JSON)
 *   POST /api/upstreams/ACTION?upstream=GROUP&server=ADDRESS[&weight=N]
 *                            ACTION: drain, disable, enable, weight, check
 *   POST /api/reload         reload; the answer says file:line: why on failure
 *   POST /api/cache/purge?key=KEY
 *                            purge the response cache: one cache key (every variant of
 *                            it), or every key starting with KEY without its final '*'
 */
#include <sys/socket.h>

#include "admin.h"
#include "exchange.h"
#include "log.h"
#include "tls.h"

extern const char admin_page_html[];
extern const size_t admin_page_html_len;

void exchange_count(Exchange *ex) {
        if (!ex_generation(ex)->config->metrics)
                return;
        Worker *w = ex->s->worker;
        Peer *last = ex->n_tried > 0 && ex->upstream_status > 0 ? ex->tried[ex->n_tried - 1] : NULL;
        const MetricsExchange e = {
                .server = ex->server,
                .loc = ex->loc,
                .status = ex->status,
                .tls = ex->s->tls,
                .minor = ex->minor,
                .bytes_in = ex->bytes_received,
                .bytes_out = ex->bytes_sent,
                .duration_usec = now_usec(CLOCK_MONOTONIC) - ex->start,
                .group = last && ex->upstream ? ex->upstream->name : NULL,
                .peer = last,
                .upstream_usec = ex_now(ex) - ex->up_phase_start,
        };
        metrics_count_exchange(&w->metrics, w->host->metrics, &e);
}

/* The source of an exchange that waits for the manager's answer: nothing to do meanwhile
 * (no body is read, no deadline runs); when the exchange ends first, the answer is dropped. */
static int admin_step(Exchange *ex) {
        (void)ex;
        return 0;
}

static bool admin_no(const Exchange *ex) {
        (void)ex;
        return false;
}

static uint64_t admin_deadline(const Exchange *ex, TimeoutKind *ret_kind) {
        (void)ex;
        *ret_kind = TIMEOUT_NONE;
        return USEC_INFINITY;
}

static void admin_timeout(Exchange *ex, TimeoutKind kind) {
        (void)ex;
        (void)kind;
}

static void admin_finish(Exchange *ex) {
        Worker *w = ex->s->worker;
        admin_forget(w->host->admin, w, ex);
}

static const SourceOps source_admin = {
        .name = "admin",
        .step = admin_step,
        .wants_body = admin_no,
        .has_output = admin_no,
        .deadline = admin_deadline,
        .timeout = admin_timeout,
        .finish = admin_finish,
};

static int answer(Exchange *ex, int status, const char *type, const char *body, size_t len) {
        return exchange_local_response(ex, status, type, body, len, NULL, ex->req_done);
}

static int answer_json_error(Exchange *ex, int status, const char *msg) {
        Buf b = {};
        int r = buf_append_str(&b, "{\"ok\":false,\"error\":");
        if (r >= 0)
                r = json_append_string(&b, msg);
        if (r >= 0)
                r = buf_append_str(&b, "}\n");
        if (r >= 0)
                r = answer(ex, status, "application/json", buf_head(&b), buf_len(&b));
        buf_free(&b);
        return r;
}

/* A 405 says which methods the endpoint takes (RFC 9110 15.5.6). */
static int answer_wrong_method(Exchange *ex, const char *allow, const char *msg) {
        ex->local.allow = allow;
        return answer_json_error(ex, 405, msg);
}

static int hexval(char ch) {
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        ch = (char)(ch | 0x20);
        return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* The value of `name` in the query (percent-decoded, '+' as space), or NULL. */
static char *query_get(const char *q, size_t qlen, const char *name) {
        size_t nl = strlen(name);
        const char *p = q, *end = q + qlen;

        while (p && p < end) {
                const char *amp = memchr(p, '&', (size_t)(end - p)), *e = amp ?: end;
                if ((size_t)(e - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') {
                        char *v = malloc((size_t)(e - p) + 1), *o = v;
                        if (!v)
                                return NULL;
                        for (const char *s = p + nl + 1; s < e; s++) {
                                if (*s == '%' && e - s >= 3 && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
                                        *o++ = (char)(hexval(s[1]) * 16 + hexval(s[2]));
                                        s += 2;
                                } else
                                        *o++ = *s == '+' ? ' ' : *s;
                        }
                        *o = 0;
                        if (strlen(v) != (size_t)(o - v)) { /* a NUL inside */
                                free(v);
                                return NULL;
                        }
                        return v;
                }
                p = amp ? amp + 1 : NULL;
        }
        return NULL;
}

/* The answer came back from the manager: the exchange that waits for it (unless it ended
 * meanwhile: the client went away) sends it, and its session runs. */
static void on_replied(Worker *w, AdminRequest *req) {
        Exchange *ex = req->waiter;

        (void)w;
        if (ex) {
                Session *s = ex->s;
                if (answer(ex, req->status, "application/json", buf_head(&req->body), buf_len(&req->body)) <
                    0)
                        exchange_fail(ex, 500, "out of memory");
                s->ops->run(s);
        }
        admin_request_free(req);
}

static void caller(Exchange *ex, AdminRequest *req) {
        struct ucred cred = {};
        socklen_t len = sizeof(cred);

        if (ex->s->remote_sa.sa.sa_family == AF_UNIX && ex->s->fd >= 0 &&
            getsockopt(ex->s->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
                req->have_cred = true;
                req->pid = cred.pid;
                req->uid = cred.uid;
                snprintf(req->who, sizeof(req->who), "pid %d uid %u", (int)cred.pid, (unsigned)cred.uid);
        } else
                snprintf(req->who, sizeof(req->who), "%s", ex_text(ex));
}

static int submit(Exchange *ex, AdminAction action, const char *q, size_t qlen) {
        Worker *w = ex->s->worker;
        AdminRequest *req = calloc(1, sizeof(AdminRequest));
        _cleanup_free_ char *weight = NULL;
        int r;

        if (!req)
                return -ENOMEM;
        req->action = action;
        req->waiter = ex;
        req->replied = on_replied;
        caller(ex, req);
        if (action == ADMIN_PURGE) {
                req->key = query_get(q, qlen, "key");
                if (!req->key || !*req->key) {
                        admin_request_free(req);
                        return answer_json_error(ex, 400, "key= is required (a cache key, or a prefix ending in *)");
                }
        } else if (action != ADMIN_RELOAD) {
                req->group = query_get(q, qlen, "upstream");
                req->server = query_get(q, qlen, "server");
                if (!req->group || !req->server) {
                        admin_request_free(req);
                        return answer_json_error(ex, 400, "upstream= and server= are required");
                }
        }
        if (action == ADMIN_WEIGHT) {
                char *end = NULL;
                unsigned long v = 0;
                weight = query_get(q, qlen, "weight");
                if (weight && *weight)
                        v = strtoul(weight, &end, 10);
                if (!end || *end || v < 1 || v > 1000) {
                        admin_request_free(req);
                        return answer_json_error(ex, 400, "weight= must be an integer from 1 to 1000");
                }
                req->weight = (unsigned)v;
        }
        r = admin_submit(w->host->admin, w, req);
        if (r < 0) {
                admin_request_free(req);
                return answer_json_error(ex, 500, "cannot reach the manager");
        }
        ex->src = &source_admin; /* the exchange waits: on_replied answers */
        return 0;
}

static bool path_is(const char *p, size_t n, const char *want) {
        return n == strlen(want) && memcmp(p, want, n) == 0;
}

static int admin_route(Exchange *ex, const char *path, size_t plen, const char *q, size_t qlen) {
        Worker *w = ex->s->worker;
        Admin *a = w->host->admin;
        bool get = ex->method_id == HTTP_METHOD_GET || ex->method_id == HTTP_METHOD_HEAD;
        bool post = ex->method_id == HTTP_METHOD_POST;
        Buf b = {};
        int r;

        if (path_is(path, plen, "/") || path_is(path, plen, "/index.html")) {
                if (!get)
                        return answer_wrong_method(ex, "GET, HEAD", "use GET");
                return answer(ex, 200, "text/html; charset=utf-8", admin_page_html, admin_page_html_len);
        }
        if (path_is(path, plen, "/metrics") || path_is(path, plen, "/api/status") ||
            path_is(path, plen, "/api/upstreams")) {
                if (!get)
                        return answer_wrong_method(ex, "GET, HEAD", "use GET");
                const char *type = "application/json";
                if (path[1] == 'm') {
                        r = admin_render_metrics(a, w, &b);
                        type = "text/plain; version=0.0.4; charset=utf-8";
                } else if (path_is(path, plen, "/api/status"))
                        r = admin_render_status(a, w, &b);
                else {
                        _cleanup_free_ char *format = query_get(q, qlen, "format");
                        bool text = format && streq(format, "text");
                        r = admin_render_upstreams(a, w, &b, text);
                        if (text)
                                type = "text/plain; charset=utf-8";
                }
                if (r >= 0)
                        r = answer(ex, 200, type, buf_head(&b), buf_len(&b));
                buf_free(&b);
                return r;
        }
        if (path_is(path, plen, "/api/cache/purge")) {
                if (!post)
                        return answer_wrong_method(ex, "POST", "commands need POST");
                return submit(ex, ADMIN_PURGE, q, qlen);
        }
        bool reload = path_is(path, plen, "/api/reload");
        const char *pre = "/api/upstreams/";
        if (!reload && !(plen > strlen(pre) && memcmp(path, pre, strlen(pre)) == 0))
                return answer_json_error(ex, 404, "no such admin endpoint");
        char name[16] = "reload";
        if (!reload) {
                size_t n = plen - strlen(pre);
                if (n >= sizeof(name))
                        return answer_json_error(ex, 404, "no such command");
                memcpy(name, path + strlen(pre), n);
                name[n] = 0;
        }
        int action = admin_action_from_name(name);
        if (action < 0 || action == ADMIN_PURGE || (action == ADMIN_RELOAD) != reload)
                return answer_json_error(ex, 404, "no such command");
        if (!post)
                return answer_wrong_method(ex, "POST", "commands need POST");
        return submit(ex, (AdminAction)action, q, qlen);
}

int admin_exchange_begin(Exchange *ex, Server *srv) {
        const char *t = ex->target, *q;
        size_t tlen = strlen(ex->target), plen;

        ex->server = srv;
        if (srv->s.n_access > 0 && !access_check(srv->s.access, srv->s.n_access, &ex->remote_sa.sa)) {
                log_info("%s: admin endpoint %s forbidden by rule", ex_text(ex), ex->target);
                ex->reason = "access denied";
                return exchange_local_response(ex, 403, NULL, NULL, 0, NULL, ex->req_done);
        }
        if (!ex->req_done) {
                /* commands take their arguments in the query; a body is not read */
                ex->reason = "request body on the admin endpoint";
                return exchange_local_response(ex, 413, NULL, NULL, 0, NULL, false);
        }
        if (tlen == 0 || t[0] != '/') {
                ex->reason = "admin endpoint: origin-form target required";
                return answer_json_error(ex, 400, "the request-target must start with /");
        }
        q = memchr(t, '?', tlen);
        plen = q ? (size_t)(q - t) : tlen;
        return admin_route(ex, t, plen, q ? q + 1 : "", q ? tlen - plen - 1 : 0);
}
