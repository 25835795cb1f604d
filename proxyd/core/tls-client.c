/* SPDX-License-Identifier: MIT */
/*
 * TLS client contexts for upstreams: trust anchors, client certificates, the session cache
 * keyed by peer and name, and the set of contexts a configuration needs. See tls.h.
 */
#include "tls-internal.h"

/* ---------------------------------------------------------------------------------------- */
/* Client side */

TlsClientContext *tls_client_context_free(TlsClientContext *c) {
        if (!c || atomic_fetch_sub(&c->refcount, 1) != 1)
                return NULL;
        if (c->cred)
                gnutls_certificate_free_credentials(c->cred);
        if (c->prio)
                gnutls_priority_deinit(c->prio);
        for (size_t i = 0; i < TLS_CLIENT_CACHE_SIZE; i++) {
                free(c->cache[i].key);
                gnutls_free(c->cache[i].data.data);
        }
        pthread_mutex_destroy(&c->lock);
        free(c->trusted);
        free(c->cert);
        free(c->key);
        free(c);
        return NULL;
}

static char *strdup_or_null(const char *s, bool *oom) {
        char *p;
        if (!s)
                return NULL;
        p = strdup(s);
        if (!p)
                *oom = true;
        return p;
}

int tls_client_context_new(const char *trusted, const char *cert, const char *key, TlsClientContext **ret,
                           char **ret_error) {
        TlsClientContext *c;
        bool oom = false;
        int r;

        if (!cert != !key)
                return tls_errorf(ret_error, -EINVAL, "a client certificate needs both certificate and key");
        c = calloc(1, sizeof(TlsClientContext));
        if (!c)
                return -ENOMEM;
        atomic_init(&c->refcount, 1);
        pthread_mutex_init(&c->lock, NULL);
        c->trusted = strdup_or_null(trusted, &oom);
        c->cert = strdup_or_null(cert, &oom);
        c->key = strdup_or_null(key, &oom);
        if (oom) {
                tls_client_context_free(c);
                return -ENOMEM;
        }
        r = gnutls_certificate_allocate_credentials(&c->cred);
        if (r < 0) {
                c->cred = NULL;
                tls_client_context_free(c);
                return tls_errno(r, 0);
        }
        if (trusted) {
                r = gnutls_certificate_set_x509_trust_file(c->cred, trusted, GNUTLS_X509_FMT_PEM);
                if (r <= 0) {
                        tls_client_context_free(c);
                        return tls_errorf(ret_error, r < 0 ? tls_errno(r, 0) : -EINVAL, "trusted certificates \"%s\": %s",
                                      trusted, r < 0 ? gnutls_strerror(r) : "no certificates found");
                }
        } else {
                r = gnutls_certificate_set_x509_system_trust(c->cred);
                if (r < 0) {
                        tls_client_context_free(c);
                        return tls_errorf(ret_error, tls_errno(r, 0), "system trust store: %s", gnutls_strerror(r));
                }
        }
        if (cert) {
                r = gnutls_certificate_set_x509_key_file2(c->cred, cert, key, GNUTLS_X509_FMT_PEM, NULL, 0);
                if (r < 0) {
                        tls_client_context_free(c);
                        return tls_errorf(ret_error, tls_errno(r, 0), "client certificate \"%s\" with key \"%s\": %s", cert,
                                      key, gnutls_strerror(r));
                }
        }
        r = gnutls_priority_init2(&c->prio, TLS_CLIENT_PRIORITY, NULL, 0);
        if (r < 0) {
                c->prio = NULL;
                tls_client_context_free(c);
                return tls_errno(r, 0);
        }
        *ret = c;
        return 0;
}

static bool is_ip_literal(const char *s) {
        unsigned char buf[16];
        return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

int tls_stream_client_init(Stream *s, int fd, TlsClientContext *ctx, const char *sni, const char *verify_name,
                           bool verify) {
        TlsStream *t = NULL;
        gnutls_datum_t alpn = tls_alpn_http11;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        char peer[160] = "?";
        int r;

        r = tls_stream_setup(s, fd, GNUTLS_CLIENT, &t);
        if (r < 0)
                return r;
        atomic_fetch_add(&ctx->refcount, 1);
        t->cctx = ctx;
        r = gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE, ctx->cred);
        if (r >= 0)
                r = gnutls_priority_set(t->session, ctx->prio);
        if (r >= 0)
                r = gnutls_alpn_set_protocols(t->session, &alpn, 1, 0);
        if (r >= 0 && sni && *sni && !is_ip_literal(sni))
                r = gnutls_server_name_set(t->session, GNUTLS_NAME_DNS, sni, strlen(sni));
        if (r < 0) {
                tls_stream_free_impl(t);
                return tls_errno(r, 0);
        }
        if (verify)
                gnutls_session_set_verify_cert(t->session, verify_name && *verify_name ? verify_name : NULL, 0);

        if (getpeername(fd, (struct sockaddr *) &ss, &sl) == 0)
                sockaddr_format((struct sockaddr *) &ss, sl, peer, sizeof(peer));
        if (asprintf(&t->cache_key, "%s|%s|%s|%d", peer, sni ?: "", verify_name ?: "", verify) < 0) {
                t->cache_key = NULL;
                tls_stream_free_impl(t);
                return -ENOMEM;
        }
        tls_client_cache_load(ctx, t->cache_key, t->session);
        s->ops = &tls_stream_ops;
        s->impl = t;
        return 0;
}

/* Client context set */

struct TlsClientSet {
        TlsClientContext **items;
        size_t n;
};

TlsClientSet *tls_client_set_free(TlsClientSet *set) {
        if (!set)
                return NULL;
        for (size_t i = 0; i < set->n; i++)
                tls_client_context_free(set->items[i]);
        free(set->items);
        free(set);
        return NULL;
}

TlsClientContext *tls_client_set_get(const TlsClientSet *set, const LocationSettings *s) {
        if (!set || !s)
                return NULL;
        for (size_t i = 0; i < set->n; i++) {
                TlsClientContext *c = set->items[i];
                if (streq_ptr(c->trusted, s->ssl_trusted_certificate) && streq_ptr(c->cert, s->ssl_certificate) &&
                    streq_ptr(c->key, s->ssl_certificate_key))
                        return c;
        }
        return NULL;
}

int tls_client_set_new(const Config *c, TlsClientSet **ret, char **ret_error) {
        TlsClientSet *set = calloc(1, sizeof(TlsClientSet));
        int r;

        if (!set)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_servers; i++)
                for (size_t k = 0; k < c->servers[i]->n_locations; k++) {
                        const Location *loc = c->servers[i]->locations[k];
                        TlsClientContext *ctx = NULL, **a;

                        bool https = (loc->proxy && loc->proxy->https) ||
                                     (loc->s.auth_request && loc->s.auth_request->pass->https);
                        if (!https || tls_client_set_get(set, &loc->s))
                                continue;
                        r = tls_client_context_new(loc->s.ssl_trusted_certificate, loc->s.ssl_certificate,
                                                   loc->s.ssl_certificate_key, &ctx, ret_error);
                        if (r < 0) {
                                if (ret_error && *ret_error) {
                                        char *m = NULL;
                                        if (asprintf(&m, "%s:%d: %s", loc->file ?: "?", loc->line, *ret_error) >= 0) {
                                                free(*ret_error);
                                                *ret_error = m;
                                        }
                                }
                                tls_client_set_free(set);
                                return r;
                        }
                        a = reallocarray(set->items, set->n + 1, sizeof(*a));
                        if (!a) {
                                tls_client_context_free(ctx);
                                tls_client_set_free(set);
                                return -ENOMEM;
                        }
                        set->items = a;
                        a[set->n++] = ctx;
                }
        *ret = set;
        return 0;
}

