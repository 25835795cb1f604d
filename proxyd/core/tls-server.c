/* SPDX-License-Identifier: MIT */
/*
 * TLS server contexts: the certificates of the servers on one listener, chosen by SNI
 * (wildcards included), client certificate verification, session tickets. See tls.h.
 */
#include "tls-internal.h"

/* ---------------------------------------------------------------------------------------- */
/* Server side */

static bool entry_matches_name(const TlsServerEntry *e, const char *name) {
        for (size_t i = 0; i < e->n_leaves; i++)
                if (gnutls_x509_crt_check_hostname2(e->leaves[i], name, 0))
                        return true;
        return false;
}

static const TlsServerEntry *select_entry(const TlsServerContext *c, const char *sni) {
        const Server *srv;

        if (!sni || c->n == 1)
                return &c->entries[0];
        srv = router_select_server(c->servers, c->n, sni, strlen(sni));
        for (size_t i = 1; i < c->n; i++)
                if (c->entries[i].server == srv)
                        return &c->entries[i];
        /* Only the default server matched (maybe by default): prefer a server whose
         * certificate is valid for the name if the default's is not. */
        if (entry_matches_name(&c->entries[0], sni))
                return &c->entries[0];
        for (size_t i = 1; i < c->n; i++)
                if (entry_matches_name(&c->entries[i], sni))
                        return &c->entries[i];
        return &c->entries[0];
}

static int verify_client_cb(gnutls_session_t session) {
        TlsStream *t = gnutls_session_get_ptr(session);
        const gnutls_datum_t *peers;
        unsigned n = 0, status = 0;
        int r;

        peers = gnutls_certificate_get_peers(session, &n);
        if (!peers || n == 0) {
                if (t->entry && t->entry->server->tls_verify_client == TLS_VERIFY_CLIENT_ON) {
                        tls_set_reason(t, "client certificate required but none was sent");
                        return -1;
                }
                return 0;
        }
        r = gnutls_certificate_verify_peers2(session, &status);
        if (r < 0) {
                tls_set_reason(t, "client certificate verify failed: %s", gnutls_strerror(r));
                return -1;
        }
        if (status != 0) {
                gnutls_datum_t out = {};
                if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) >= 0) {
                        tls_set_reason(t, "client certificate verify failed: %.*s", (int) out.size,
                                   (const char *) out.data);
                        gnutls_free(out.data);
                } else
                        tls_set_reason(t, "client certificate verify failed");
                return -1;
        }
        return 0;
}

/* The certificate of e for an SNI name: an exact name first, then a wildcard; -1: none. */
static int entry_pick_certificate(const TlsServerEntry *e, const char *sni) {
        if (!e->single || !sni)
                return -1;
        for (size_t i = 0; i < e->n_leaves; i++)
                if (gnutls_x509_crt_check_hostname2(e->leaves[i], sni, GNUTLS_VERIFY_DO_NOT_ALLOW_WILDCARDS))
                        return (int) i;
        for (size_t i = 0; i < e->n_leaves; i++)
                if (gnutls_x509_crt_check_hostname2(e->leaves[i], sni, 0))
                        return (int) i;
        return -1;
}

static void entry_apply(TlsStream *t, const TlsServerEntry *e) {
        int pick = entry_pick_certificate(e, t->sni);
        t->entry = e;
        (void) gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE, pick >= 0 ? e->single[pick] : e->cred);
        (void) gnutls_priority_set(t->session, e->prio);
        switch (e->server->tls_verify_client) {
        case TLS_VERIFY_CLIENT_OFF:
                gnutls_certificate_server_set_request(t->session, GNUTLS_CERT_IGNORE);
                break;
        case TLS_VERIFY_CLIENT_OPTIONAL:
                gnutls_certificate_server_set_request(t->session, GNUTLS_CERT_REQUEST);
                break;
        case TLS_VERIFY_CLIENT_ON:
                gnutls_certificate_server_set_request(t->session, GNUTLS_CERT_REQUIRE);
                break;
        }
}

static int on_client_hello(gnutls_session_t session) {
        TlsStream *t = gnutls_session_get_ptr(session);
        char name[256];
        size_t len = sizeof(name) - 1;
        unsigned type = 0;
        const TlsServerEntry *e;

        if (gnutls_server_name_get(session, name, &len, &type, 0) == 0 && type == GNUTLS_NAME_DNS) {
                name[MIN(len, sizeof(name) - 1)] = 0;
                free(t->sni);
                t->sni = strdup(name);
        }
        e = select_entry(t->sctx, t->sni);
        if (e != t->entry || e->single)
                entry_apply(t, e);
        return 0;
}


static void entry_done(TlsServerEntry *e) {
        if (e->cred)
                gnutls_certificate_free_credentials(e->cred);
        if (e->prio)
                gnutls_priority_deinit(e->prio);
        for (size_t i = 0; i < e->n_leaves; i++) {
                gnutls_x509_crt_deinit(e->leaves[i]);
                if (e->single && e->single[i])
                        gnutls_certificate_free_credentials(e->single[i]);
        }
        free(e->leaves);
        free(e->single);
}

/* Client certificate verification (mTLS) for one credential of a server. */
static int cred_setup_client_ca(gnutls_certificate_credentials_t cred, const Server *srv, char **ret_error) {
        int r;

        (void) gnutls_certificate_set_known_dh_params(cred, GNUTLS_SEC_PARAM_MEDIUM);
        if (srv->tls_verify_client == TLS_VERIFY_CLIENT_OFF || !srv->tls_client_ca)
                return 0;
        r = gnutls_certificate_set_x509_trust_file(cred, srv->tls_client_ca, GNUTLS_X509_FMT_PEM);
        if (r <= 0)
                return tls_errorf(ret_error, r < 0 ? tls_errno(r, 0) : -EINVAL, "%s:%d: client_ca \"%s\": %s",
                              srv->tls_file ?: "?", srv->tls_line, srv->tls_client_ca,
                              r < 0 ? gnutls_strerror(r) : "no certificates found");
        gnutls_certificate_set_verify_function(cred, verify_client_cb);
        return 0;
}

/* One credential per certificate, when a server has several (see TlsServerEntry.single). */
static int entry_init_single(TlsServerEntry *e, const Server *srv, char **ret_error) {
        int r;

        if (srv->n_tls_certificates < 2 || e->n_leaves != srv->n_tls_certificates)
                return 0;
        e->single = calloc(e->n_leaves, sizeof(gnutls_certificate_credentials_t));
        if (!e->single)
                return -ENOMEM;
        for (size_t i = 0; i < e->n_leaves; i++) {
                const TlsCertificate *tc = &srv->tls_certificates[i];
                r = gnutls_certificate_allocate_credentials(&e->single[i]);
                if (r < 0) {
                        e->single[i] = NULL;
                        return tls_errno(r, 0);
                }
                r = gnutls_certificate_set_x509_key_file2(e->single[i], tc->certificate, tc->key,
                                                          GNUTLS_X509_FMT_PEM, NULL, 0);
                if (r < 0)
                        return tls_errorf(ret_error, tls_errno(r, 0), "%s:%d: certificate \"%s\" with key \"%s\": %s",
                                      tc->file ?: "?", tc->line, tc->certificate, tc->key, gnutls_strerror(r));
                r = cred_setup_client_ca(e->single[i], srv, ret_error);
                if (r < 0)
                        return r;
        }
        return 0;
}

TlsServerContext *tls_server_context_free(TlsServerContext *c) {
        if (!c || atomic_fetch_sub(&c->refcount, 1) != 1)
                return NULL;
        for (size_t i = 0; i < c->n; i++)
                entry_done(&c->entries[i]);
        free(c->entries);
        free(c->servers);
        tls_ticket_keys_free(c->own_keys);
        free(c);
        return NULL;
}

int tls_errorf(char **ret_error, int r, const char *fmt, ...) {
        va_list ap;

        if (ret_error) {
                free(*ret_error);
                *ret_error = NULL;
                va_start(ap, fmt);
                if (vasprintf(ret_error, fmt, ap) < 0)
                        *ret_error = NULL;
                va_end(ap);
        }
        return r;
}

static int entry_init(TlsServerEntry *e, const Server *srv, char **ret_error) {
        const char *prio = srv->tls_priority ?: TLS_DEFAULT_PRIORITY;
        const char *err_pos = NULL;
        int r;

        e->server = srv;
        r = gnutls_certificate_allocate_credentials(&e->cred);
        if (r < 0) {
                e->cred = NULL;
                return tls_errno(r, 0);
        }
        e->leaves = calloc(srv->n_tls_certificates ?: 1, sizeof(gnutls_x509_crt_t));
        if (!e->leaves)
                return -ENOMEM;
        for (size_t i = 0; i < srv->n_tls_certificates; i++) {
                const TlsCertificate *tc = &srv->tls_certificates[i];
                gnutls_datum_t raw = {};
                int idx = gnutls_certificate_set_x509_key_file2(e->cred, tc->certificate, tc->key,
                                                                GNUTLS_X509_FMT_PEM, NULL, 0);
                if (idx < 0)
                        return tls_errorf(ret_error, tls_errno(idx, 0), "%s:%d: certificate \"%s\" with key \"%s\": %s",
                                      tc->file ?: "?", tc->line, tc->certificate, tc->key, gnutls_strerror(idx));
                /* without GNUTLS_CERTIFICATE_API_V2 the call returns 0, not the index: the
                 * certificates are stored in the order they are added */
                r = gnutls_certificate_get_crt_raw(e->cred, (unsigned) i, 0, &raw);
                if (r >= 0 && gnutls_x509_crt_init(&e->leaves[e->n_leaves]) >= 0) {
                        if (gnutls_x509_crt_import(e->leaves[e->n_leaves], &raw, GNUTLS_X509_FMT_DER) >= 0)
                                e->n_leaves++;
                        else
                                gnutls_x509_crt_deinit(e->leaves[e->n_leaves]);
                }
        }
        r = cred_setup_client_ca(e->cred, srv, ret_error);
        if (r < 0)
                return r;
        r = entry_init_single(e, srv, ret_error);
        if (r < 0)
                return r;
        r = gnutls_priority_init2(&e->prio, prio, &err_pos, 0);
        if (r < 0) {
                e->prio = NULL;
                return tls_errorf(ret_error, -EINVAL, "%s:%d: invalid TLS priority at \"%s\": %s",
                              srv->tls_priority_file ?: srv->tls_file ?: "?",
                              srv->tls_priority_line ?: srv->tls_line, err_pos ?: prio, gnutls_strerror(r));
        }
        return 0;
}

int tls_server_context_new(Server *const *servers, size_t n, TlsTicketKeys *keys, TlsServerContext **ret,
                           char **ret_error) {
        TlsServerContext *c;
        int r;

        if (n == 0 || !servers)
                return -EINVAL;
        c = calloc(1, sizeof(TlsServerContext));
        if (!c)
                return -ENOMEM;
        atomic_init(&c->refcount, 1);
        c->entries = calloc(n, sizeof(TlsServerEntry));
        c->servers = calloc(n, sizeof(Server *));
        if (!c->entries || !c->servers) {
                tls_server_context_free(c);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                if (servers[i]->n_tls_certificates == 0)
                        continue; /* config_load() refuses mixing; be safe */
                c->servers[c->n] = servers[i];
                r = entry_init(&c->entries[c->n++], servers[i], ret_error);
                if (r < 0) {
                        tls_server_context_free(c);
                        return r;
                }
        }
        if (c->n == 0) {
                tls_server_context_free(c);
                return tls_errorf(ret_error, -EINVAL, "no server with tls");
        }
        if (!keys) {
                r = tls_ticket_keys_new(&c->own_keys);
                if (r < 0) {
                        tls_server_context_free(c);
                        return r;
                }
                keys = c->own_keys;
        }
        c->keys = keys;
        *ret = c;
        return 0;
}

int tls_stream_server_init(Stream *s, int fd, TlsServerContext *ctx) {
        TlsStream *t = NULL;
        /* h2 first when the listener's default server enables HTTP/2 (server precedence) */
        gnutls_datum_t alpn[2] = { tls_alpn_h2, tls_alpn_http11 };
        bool h2 = ctx->n > 0 && ctx->servers[0]->s.http2;
        int r;

        r = tls_stream_setup(s, fd, GNUTLS_SERVER, &t);
        if (r < 0)
                return r;
        t->server = true;
        atomic_fetch_add(&ctx->refcount, 1);
        t->sctx = ctx;
        entry_apply(t, &ctx->entries[0]);
        gnutls_handshake_set_post_client_hello_function(t->session, on_client_hello);
        r = gnutls_alpn_set_protocols(t->session, h2 ? alpn : alpn + 1, h2 ? 2 : 1,
                                      GNUTLS_ALPN_SERVER_PRECEDENCE);
        if (r >= 0)
                r = tls_ticket_enable(ctx->keys, t->session);
        if (r < 0) {
                tls_stream_free_impl(t);
                return tls_errno(r, 0);
        }
        gnutls_db_set_cache_expiration(t->session, TLS_TICKET_ROTATE_SEC);
        s->ops = &tls_stream_ops;
        s->impl = t;
        return 0;
}

