/* SPDX-License-Identifier: MIT */
/* Client policy on the request path: client addresses and limits. See exchange-policy.h. */
#include <sys/socket.h>

#include "exchange.h"
#include "listener.h"
#include "log.h"
#include "proxy-protocol.h"
#include "realip.h"

/* ---- the connection's client ---- */

int session_expects_proxy_header(Session *s) {
        Generation *g = s->worker->gen->gen;
        Server *srv;

        if (s->listener >= g->n_listeners || g->listener_servers[s->listener].n == 0)
                return 0;
        srv = g->listener_servers[s->listener].servers[0];
        if (!srv->proxy_protocol)
                return 0;
        if (!cidr_match(srv->proxy_protocol_rules, srv->n_proxy_protocol_from, &s->remote_sa.sa)) {
                log_warning("%s: not in proxy_protocol_from of server \"%s\", which expects the PROXY protocol: closed",
                            session_text(s), srv->name);
                return -EPERM;
        }
        return 1;
}

static void set_remote(Session *s, const struct sockaddr *sa) {
        size_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
        memset(&s->remote_sa, 0, sizeof(s->remote_sa));
        memcpy(&s->remote_sa, sa, MIN(len, sizeof(s->remote_sa)));
        sockaddr_format_host(sa, s->remote_addr, sizeof(s->remote_addr));
        s->remote_port = sockaddr_port(sa);
        s->remote_key_ok = false;
}

int session_read_proxy_header(Session *s, int fd, bool hup) {
        char buf[PROXY_V2_MAX];
        const char *err = NULL;
        ProxyHeader h;
        ssize_t n, k;

        /* Peeked, not read: TLS (or HTTP) must find its first byte where the header ended. */
        n = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return -EAGAIN;
        if (n <= 0) {
                if (n < 0)
                        log_info("%s: reading the PROXY protocol header: %m", session_text(s));
                return n < 0 ? -errno : -ECONNRESET;
        }
        k = proxy_header_parse(buf, (size_t) n, &h, &err);
        if (k == 0) {
                if (hup) {
                        log_info("%s: connection closed inside the PROXY protocol header", session_text(s));
                        return -ECONNRESET;
                }
                return -EAGAIN; /* edge-triggered: more bytes bring a new event */
        }
        if (k < 0) {
                log_warning("%s: bad PROXY protocol header: %s", session_text(s), err);
                return -EPROTO;
        }
        if (recv(fd, buf, (size_t) k, MSG_DONTWAIT) != k)
                return -EIO;
        if (h.has_addr) {
                char from[INET6_ADDRSTRLEN + 16];
                snprintf(from, sizeof(from), "%s", session_text(s));
                set_remote(s, (struct sockaddr *) &h.src);
                log_debug("%s: PROXY protocol v%d: client %s", from, h.version, session_text(s));
        }
        return 0;
}

/* ---- the request's client ---- */

/* The trusted header's field values, joined by ", " (a list may come in several fields). */
static int header_values(const HttpRequest *req, const char *name, Buf *out) {
        bool first = true;
        for (size_t i = 0; i < req->n_headers; i++) {
                const HttpHeader *h = &req->headers[i];
                if (!memcaseeq(h->name, h->name_len, name))
                        continue;
                if ((!first && buf_append(out, ", ", 2) < 0) || buf_append(out, h->value, h->value_len) < 0)
                        return -ENOMEM;
                first = false;
        }
        return first ? 0 : 1;
}

int exchange_client_identity(Exchange *ex, const LocationSettings *s) {
        struct sockaddr_storage ss;
        Buf v = {};
        int r;

        if (_likely_(s->n_real_ip_from == 0))
                return 0;
        if (!cidr_match(s->real_ip_rules, s->n_real_ip_from, &ex->remote_sa.sa))
                return 0;
        r = header_values(&ex->req, s->real_ip_header, &v);
        if (r > 0)
                r = realip_walk(buf_head(&v), buf_len(&v),
                                strcasecmp(s->real_ip_header, "Forwarded") == 0 ? REALIP_FORWARDED : REALIP_LIST,
                                s->real_ip_recursive, s->real_ip_rules, s->n_real_ip_from, &ss);
        buf_free(&v);
        if (r <= 0)
                return r;
        size_t len = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
        memset(&ex->remote_sa, 0, sizeof(ex->remote_sa));
        memcpy(&ex->remote_sa, &ss, MIN(len, sizeof(ex->remote_sa)));
        sockaddr_format_host((struct sockaddr *) &ss, ex->remote_addr, sizeof(ex->remote_addr));
        ex->remote_port = sockaddr_port((struct sockaddr *) &ss);
        ex->client_replaced = true;
        return 0;
}

/* ---- limits ---- */

int exchange_limits(Exchange *ex, ExchangeVars *vars, const LocationSettings *s) {
        uint64_t now = ex_now(ex), delay = 0, retry = 0;
        LimitResult why = LIMIT_PASS;
        Buf key = {};
        int r = 0;

        if (_likely_(s->n_limit == 0))
                return 0;
        for (size_t i = 0; i < s->n_limit; i++) {
                const LimitZone *z = s->limit_zones[i];
                const char *k = ex->remote_addr;
                size_t k_len;
                uint64_t h;
                LimitVerdict v;

                bool by_addr = var_template_is_var(z->key, VAR_REMOTE_ADDR); /* the default key: no copy */

                if (by_addr && !ex->client_replaced) {
                        /* the connection's address: measured and hashed once for all its requests */
                        Session *c = ex->s;
                        if (!c->remote_key_ok) {
                                c->remote_addr_len = strlen(c->remote_addr);
                                c->remote_key_hash = limit_key_hash(c->remote_addr, c->remote_addr_len);
                                c->remote_key_ok = true;
                        }
                        k = c->remote_addr;
                        k_len = c->remote_addr_len;
                        h = c->remote_key_hash;
                } else {
                        if (by_addr) /* from real_ip_header */
                                k_len = strlen(k);
                        else {
                                buf_reset(&key);
                                r = var_expand(&key, z->key, exchange_vars(vars));
                                k = buf_head(&key);
                                k_len = buf_len(&key);
                        }
                        h = limit_key_hash(k, k_len);
                }
                if (r >= 0)
                        r = limit_check_hashed(z->rt, &z->params, k, k_len, h, now, &v,
                                               &ex->pol.holds[ex->pol.n_holds]);
                if (r < 0)
                        break;
                if (ex->pol.holds[ex->pol.n_holds].table)
                        ex->pol.n_holds++;
                if (v.result == LIMIT_DELAY && v.delay_usec > delay) {
                        delay = v.delay_usec;
                        ex->pol.limit = z->name;
                }
                if (v.result >= LIMIT_REJECT_RATE) {
                        why = v.result;
                        retry = v.retry_after_usec;
                        ex->pol.limit = z->name;
                        limit_count_rejected(z->rt);
                        break;
                }
        }
        if (key.data)
                buf_free(&key);
        if (r < 0)
                return r;
        if (why == LIMIT_PASS) {
                if (delay > 0) {
                        ex->pol.delay_until = now + delay;
                        log_debug("%s: %s delayed %llums by limit \"%s\"", ex_text(ex), ex->target,
                                  (unsigned long long) (delay / USEC_PER_MSEC), ex->pol.limit);
                }
                return 0;
        }
        /* rejected: what the other limits counted for this request is given back */
        for (size_t i = 0; i < ex->pol.n_holds; i++)
                limit_release(&ex->pol.holds[i]);
        ex->pol.n_holds = 0;
        ex->reason = why == LIMIT_REJECT_RATE   ? "limit: request rate"
                     : why == LIMIT_REJECT_CONN ? "limit: requests in progress"
                                                : "limit: table full";
        log_info("%s: %s rejected by limit \"%s\" (%s)", ex_text(ex), ex->target, ex->pol.limit, ex->reason + 7);
        ex->local.retry_after = why == LIMIT_REJECT_RATE ? (unsigned) MAX((retry + USEC_PER_SEC - 1) / USEC_PER_SEC, 1) : 0;
        r = exchange_local_response(ex, 429, NULL, NULL, 0, NULL, ex->req_done);
        return r < 0 ? r : 1;
}

/* ---- towards the upstream ---- */

static void to_v6(const struct sockaddr *sa, struct sockaddr_in6 *out) {
        const struct sockaddr_in *in = (const void *) sa;
        *out = (struct sockaddr_in6){ .sin6_family = AF_INET6, .sin6_port = in->sin_port };
        out->sin6_addr.s6_addr[10] = out->sin6_addr.s6_addr[11] = 0xff;
        memcpy(&out->sin6_addr.s6_addr[12], &in->sin_addr, 4);
}

int exchange_upstream_prepare(Exchange *ex, ExchangeVars *vars) {
        const Upstream *u = ex->upstream;
        Session *c = ex->s;
        int r;

        if (u->balance == BALANCE_HASH && u->hash_key) {
                Buf k = {};
                r = var_expand(&k, u->hash_key, exchange_vars(vars));
                if (r >= 0)
                        r = buf_append(&k, "", 1);
                if (r < 0) {
                        buf_free(&k);
                        return r;
                }
                free(ex->pol.hash_key);
                ex->pol.hash_key_len = buf_len(&k) - 1;
                ex->pol.hash_key = strdup(buf_head(&k));
                buf_free(&k);
                if (!ex->pol.hash_key)
                        return -ENOMEM;
        }
        if (u->proxy_protocol != PROXY_PROTOCOL_OFF) {
                struct sockaddr_storage local = {};
                struct sockaddr_in6 s6, d6;
                socklen_t len = sizeof(local);
                const struct sockaddr *src = &ex->remote_sa.sa, *dst = (struct sockaddr *) &local;
                char hdr[PROXY_V1_MAX + 64];

                if (!c->ops->local_address || c->ops->local_address(ex, &local, &len) < 0)
                        local.ss_family = AF_UNSPEC;
                /* one family for both: an IPv4 client (from a header) on an IPv6 socket is mapped */
                if (src->sa_family == AF_INET && dst->sa_family == AF_INET6)
                        to_v6(src, &s6), src = (struct sockaddr *) &s6;
                else if (src->sa_family == AF_INET6 && dst->sa_family == AF_INET)
                        to_v6(dst, &d6), dst = (struct sockaddr *) &d6;
                ssize_t n = proxy_header_write(u->proxy_protocol == PROXY_PROTOCOL_V1 ? 1 : 2, src, dst, hdr, sizeof(hdr));
                if (n < 0)
                        return (int) n;
                r = buf_append(&ex->req_head, hdr, (size_t) n);
                if (r < 0)
                        return r;
        }
        return 0;
}

void exchange_policy_done(Exchange *ex) {
        for (size_t i = 0; i < ex->pol.n_holds; i++)
                limit_release(&ex->pol.holds[i]);
        ex->pol.n_holds = 0;
        free(ex->pol.hash_key);
        ex->pol.hash_key = NULL;
}

/* ---- the delay of a rate limit: a source that waits ---- */

static int wait_step(Exchange *ex) {
        (void) ex;
        return 0;
}

static bool wait_nothing(const Exchange *ex) {
        (void) ex;
        return false;
}

static uint64_t wait_deadline(const Exchange *ex, TimeoutKind *ret_kind) {
        *ret_kind = TIMEOUT_LIMIT_DELAY;
        return ex->pol.delay_until;
}

static void wait_timeout(Exchange *ex, TimeoutKind kind) {
        (void) kind;
        ex->pol.delay_until = 0;
        ex->src = &source_upstream;
        (void) exchange_connect(ex);
}

static void wait_finish(Exchange *ex) {
        (void) ex;
}

const SourceOps source_limit_wait = {
        .name = "limit-wait",
        .step = wait_step,
        .wants_body = wait_nothing,
        .has_output = wait_nothing,
        .deadline = wait_deadline,
        .timeout = wait_timeout,
        .finish = wait_finish,
};
