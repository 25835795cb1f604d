/* SPDX-License-Identifier: MIT */
/*
 * GnuTLS wrapper: TLS streams (reads, gathered writes, close_notify), the handshake, the
 * client session cache, and what a stream tells about itself. GnuTLS return codes are
 * translated to -errno here (tls_errno()) and never leave the tls*.c files; the text of a
 * failure is kept per stream for the journal. Server contexts are in tls-server.c, client
 * contexts in tls-client.c, configuration checks in tls-check.c.
 */
#include "tls-internal.h"

const gnutls_datum_t tls_alpn_http11 = { .data = (unsigned char *) "http/1.1", .size = 8 };
const gnutls_datum_t tls_alpn_h2 = { .data = (unsigned char *) "h2", .size = 2 };

/* ---------------------------------------------------------------------------------------- */
/* Error translation */

static bool transport_errno(int e) {
        return e == ECONNRESET || e == EPIPE || e == ETIMEDOUT || e == ECONNREFUSED || e == ENOTCONN ||
               e == EHOSTUNREACH || e == ENETUNREACH || e == ECONNABORTED;
}

int tls_errno(int code, int saved_errno) {
        switch (code) {
        case GNUTLS_E_SUCCESS:
                return 0;
        case GNUTLS_E_AGAIN:
        case GNUTLS_E_INTERRUPTED:
                return -EAGAIN;
        case GNUTLS_E_MEMORY_ERROR:
                return -ENOMEM;
        case GNUTLS_E_PUSH_ERROR:
        case GNUTLS_E_PULL_ERROR:
                if (transport_errno(saved_errno))
                        return -saved_errno;
                return -EIO;
        case GNUTLS_E_PREMATURE_TERMINATION:
                return -ECONNRESET;
        case GNUTLS_E_TIMEDOUT:
                return -ETIMEDOUT;
        case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
        case GNUTLS_E_CERTIFICATE_ERROR:
        case GNUTLS_E_NO_CERTIFICATE_FOUND:
        case GNUTLS_E_CERTIFICATE_REQUIRED:
                return -EPERM;
        case GNUTLS_E_FILE_ERROR:
                return -ENOENT;
        case GNUTLS_E_CERTIFICATE_KEY_MISMATCH:
        case GNUTLS_E_INVALID_REQUEST:
        case GNUTLS_E_BASE64_DECODING_ERROR:
        case GNUTLS_E_ASN1_DER_ERROR:
        case GNUTLS_E_PARSING_ERROR:
                return -EINVAL;
        default:
                return -EPROTO;
        }
}


/* How often a GNUTLS_E_AGAIN that did not come from the socket is retried at once. */
#define TLS_AGAIN_RETRIES 16u

static TlsStream *tls_of(const Stream *s) {
        return s && s->ops == &tls_stream_ops ? s->impl : NULL;
}

void tls_set_reason(TlsStream *t, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(t->reason, sizeof(t->reason), fmt, ap);
        va_end(ap);
}

/* Record a failure (code from GnuTLS) and return it as -errno. */
static int tls_fail(TlsStream *t, int code, int saved_errno) {
        int r = tls_errno(code, saved_errno);

        t->failed = true;
        if (t->reason[0])
                return r;
        if (code == GNUTLS_E_FATAL_ALERT_RECEIVED)
                tls_set_reason(t, "peer sent alert: %s", gnutls_alert_get_name(gnutls_alert_get(t->session)));
        else if (code == GNUTLS_E_REHANDSHAKE)
                tls_set_reason(t, "peer requested renegotiation (refused)");
        else if ((code == GNUTLS_E_PUSH_ERROR || code == GNUTLS_E_PULL_ERROR) && r != -EIO)
                tls_set_reason(t, "%s", strerror(-r));
        else
                tls_set_reason(t, "%s", gnutls_strerror(code));
        return r;
}

void tls_stream_free_impl(TlsStream *t) {
        if (!t)
                return;
        if (t->session)
                gnutls_deinit(t->session);
        /* the session used the contexts' credentials: release them only now */
        tls_server_context_free(t->sctx);
        tls_client_context_free(t->cctx);
        free(t->wbuf);
        free(t->sni);
        free(t->client_dn);
        free(t->cache_key);
        free(t);
}

/* Client session cache */

static void client_cache_store(TlsClientContext *c, const char *key, gnutls_session_t session) {
        gnutls_datum_t data = {};
        CacheEntry *slot = NULL;

        if (!key || gnutls_session_get_data2(session, &data) < 0 || data.size == 0) {
                gnutls_free(data.data);
                return;
        }
        pthread_mutex_lock(&c->lock);
        c->clock++;
        for (size_t i = 0; i < TLS_CLIENT_CACHE_SIZE && !slot; i++)
                if (c->cache[i].key && streq(c->cache[i].key, key))
                        slot = &c->cache[i];
        if (!slot) {
                slot = &c->cache[0];
                for (size_t i = 0; i < TLS_CLIENT_CACHE_SIZE; i++) {
                        if (!c->cache[i].key) {
                                slot = &c->cache[i];
                                break;
                        }
                        if (c->cache[i].used < slot->used)
                                slot = &c->cache[i];
                }
                free(slot->key);
                slot->key = strdup(key);
                if (!slot->key) {
                        gnutls_free(slot->data.data);
                        slot->data = (gnutls_datum_t) {};
                        gnutls_free(data.data);
                        pthread_mutex_unlock(&c->lock);
                        return;
                }
        }
        gnutls_free(slot->data.data);
        slot->data = data;
        slot->used = c->clock;
        pthread_mutex_unlock(&c->lock);
}

void tls_client_cache_load(TlsClientContext *c, const char *key, gnutls_session_t session) {
        pthread_mutex_lock(&c->lock);
        c->clock++;
        for (size_t i = 0; i < TLS_CLIENT_CACHE_SIZE; i++)
                if (c->cache[i].key && streq(c->cache[i].key, key)) {
                        (void) gnutls_session_set_data(session, c->cache[i].data.data, c->cache[i].data.size);
                        c->cache[i].used = c->clock;
                        break;
                }
        pthread_mutex_unlock(&c->lock);
}

static void client_cache_drop(TlsClientContext *c, const char *key) {
        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < TLS_CLIENT_CACHE_SIZE; i++)
                if (c->cache[i].key && streq(c->cache[i].key, key)) {
                        free(c->cache[i].key);
                        gnutls_free(c->cache[i].data.data);
                        c->cache[i] = (CacheEntry) {};
                }
        pthread_mutex_unlock(&c->lock);
}

/* TLS 1.3 tickets arrive after the handshake: save the session once one has been received. */
static void client_maybe_save(TlsStream *t) {
        if (t->server || t->session_saved || !t->cctx || !t->handshake_done)
                return;
        if (gnutls_protocol_get_version(t->session) == GNUTLS_TLS1_3 &&
            !(gnutls_session_get_flags(t->session) & GNUTLS_SFLAGS_SESSION_TICKET))
                return;
        t->session_saved = true;
        client_cache_store(t->cctx, t->cache_key, t->session);
}

static ssize_t tls_read(Stream *s, void *buf, size_t n) {
        TlsStream *t = s->impl;
        int warnings = 0;

        if (t->failed)
                return -EIO;
        if (!t->handshake_done)
                return -EAGAIN;
        if (t->bye_pending) {
                int r = gnutls_bye(t->session, GNUTLS_SHUT_WR);
                if (r == GNUTLS_E_SUCCESS) {
                        t->bye_pending = false;
                        t->bye_done = true;
                        (void) shutdown(s->fd, SHUT_WR);
                } else if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED) {
                        t->bye_pending = false;
                        (void) shutdown(s->fd, SHUT_WR);
                }
        }
        for (unsigned again = 0;; again++) {
                ssize_t k;
                int saved;

                t->pull_eagain = false;
                k = gnutls_record_recv(t->session, buf, n);
                saved = errno;
                if (k == GNUTLS_E_AGAIN && !t->pull_eagain && gnutls_record_get_direction(t->session) == 0 &&
                    again < TLS_AGAIN_RETRIES) {
                        /* not the socket: a post-handshake message was consumed; more may wait */
                        client_maybe_save(t);
                        continue;
                }

                if (k >= 0) {
                        t->rd_want_write = false;
                        client_maybe_save(t);
                        return k;
                }
                switch (k) {
                case GNUTLS_E_INTERRUPTED:
                        continue;
                case GNUTLS_E_AGAIN:
                        t->rd_want_write = gnutls_record_get_direction(t->session) == 1;
                        client_maybe_save(t);
                        return -EAGAIN;
                case GNUTLS_E_PREMATURE_TERMINATION:
                        /* EOF without close_notify: like a plain socket's EOF */
                        return 0;
                case GNUTLS_E_WARNING_ALERT_RECEIVED:
                        if (++warnings <= TLS_WARNING_ALERTS_MAX)
                                continue;
                        return tls_fail(t, GNUTLS_E_UNEXPECTED_PACKET, saved);
                case GNUTLS_E_REHANDSHAKE:
                case GNUTLS_E_REAUTH_REQUEST:
                        /* no renegotiation, no post-handshake authentication */
                        (void) gnutls_alert_send(t->session, GNUTLS_AL_FATAL, GNUTLS_A_NO_RENEGOTIATION);
                        return tls_fail(t, GNUTLS_E_REHANDSHAKE, saved);
                default:
                        if (gnutls_error_is_fatal((int) k))
                                return tls_fail(t, (int) k, saved);
                        continue;
                }
        }
}

/* Send one record's worth of plaintext at most: from the iovec directly if the current entry
 * is large enough (or the last), else gathered into wbuf. Returns the chunk in p and len. */
static int gather(TlsStream *t, const struct iovec *iov, int n_iov, int *i, size_t *off, const void **p,
                  size_t *len) {
        size_t avail = iov[*i].iov_len - *off, total = 0;

        if (avail >= TLS_RECORD_MAX || *i == n_iov - 1) {
                *p = (const char *) iov[*i].iov_base + *off;
                *len = MIN(avail, TLS_RECORD_MAX);
                return 0;
        }
        if (!t->wbuf) {
                t->wbuf = malloc(TLS_RECORD_MAX);
                if (!t->wbuf)
                        return -ENOMEM;
        }
        for (int k = *i; k < n_iov && total < TLS_RECORD_MAX; k++) {
                size_t o = k == *i ? *off : 0;
                size_t m = MIN(iov[k].iov_len - o, TLS_RECORD_MAX - total);
                memcpy(t->wbuf + total, (const char *) iov[k].iov_base + o, m);
                total += m;
        }
        *p = t->wbuf;
        *len = total;
        return 0;
}

static void advance(const struct iovec *iov, int n_iov, int *i, size_t *off, size_t n) {
        while (n > 0 && *i < n_iov) {
                size_t avail = iov[*i].iov_len - *off;
                if (n < avail) {
                        *off += n;
                        return;
                }
                n -= avail;
                (*i)++;
                *off = 0;
        }
        while (*i < n_iov && iov[*i].iov_len == 0)
                (*i)++;
}

static ssize_t tls_writev(Stream *s, const struct iovec *iov, int n_iov) {
        TlsStream *t = s->impl;
        size_t total = 0, offered = 0, off = 0;
        int i = 0;

        if (t->failed)
                return -EIO;
        if (!t->handshake_done)
                return -EAGAIN;
        if (t->bye_pending || t->bye_done)
                return -EPIPE;
        for (int k = 0; k < n_iov; k++)
                offered += iov[k].iov_len;
        if (offered == 0)
                return 0;
        advance(iov, n_iov, &i, &off, 0);

        if (t->wpending > 0) {
                /* GnuTLS holds the encrypted record of the first wpending bytes: finish it. The
                 * data argument is not looked at again; only the size must be the same. */
                ssize_t k;
                if (offered < t->wpending) {
                        tls_set_reason(t, "write retried with less data than a pending record");
                        t->failed = true;
                        return -EIO;
                }
                do
                        k = gnutls_record_send(t->session, iov[i].iov_base, t->wpending);
                while (k == GNUTLS_E_INTERRUPTED);
                if (k == GNUTLS_E_AGAIN)
                        return -EAGAIN;
                if (k < 0)
                        return tls_fail(t, (int) k, errno);
                t->wpending = 0;
                total = (size_t) k;
                advance(iov, n_iov, &i, &off, (size_t) k);
        }

        while (i < n_iov) {
                const void *p;
                size_t len;
                ssize_t k;
                int r = gather(t, iov, n_iov, &i, &off, &p, &len);

                if (r < 0)
                        return total > 0 ? (ssize_t) total : r;
                do
                        k = gnutls_record_send(t->session, p, len);
                while (k == GNUTLS_E_INTERRUPTED);
                if (k == GNUTLS_E_AGAIN) {
                        t->wpending = len;
                        return total > 0 ? (ssize_t) total : -EAGAIN;
                }
                if (k < 0) {
                        int e = tls_fail(t, (int) k, errno);
                        return total > 0 ? (ssize_t) total : e;
                }
                total += (size_t) k;
                advance(iov, n_iov, &i, &off, (size_t) k);
        }
        return (ssize_t) total;
}

static int tls_shutdown_write(Stream *s) {
        TlsStream *t = s->impl;
        int r;

        if (t->bye_done)
                return 0;
        if (t->failed || !t->handshake_done) {
                t->bye_done = true;
                return shutdown(s->fd, SHUT_WR) < 0 ? -errno : 0;
        }
        do
                r = gnutls_bye(t->session, GNUTLS_SHUT_WR);
        while (r == GNUTLS_E_INTERRUPTED);
        if (r == GNUTLS_E_AGAIN) {
                t->bye_pending = true;
                return -EAGAIN;
        }
        t->bye_pending = false;
        t->bye_done = true;
        t->wpending = 0;
        (void) shutdown(s->fd, SHUT_WR);
        return r < 0 ? tls_fail(t, r, errno) : 0;
}

static void tls_close(Stream *s) {
        TlsStream *t = s->impl;

        if (!t)
                return;
        /* Best effort close_notify if nothing else was sent yet (never blocks). */
        if (t->handshake_done && !t->failed && !t->bye_done && !t->bye_pending && t->wpending == 0)
                (void) gnutls_bye(t->session, GNUTLS_SHUT_WR);
        tls_stream_free_impl(t);
        s->impl = NULL;
}

static uint32_t tls_events(Stream *s, uint32_t wanted) {
        TlsStream *t = s->impl;
        uint32_t ev = wanted & ~(uint32_t) (EPOLLIN | EPOLLOUT);

        if (t->failed)
                return wanted;
        if (!t->handshake_done)
                return ev | (t->hs_want_write ? EPOLLOUT : EPOLLIN);
        if (wanted & EPOLLIN)
                ev |= t->rd_want_write ? EPOLLOUT : EPOLLIN;
        if (wanted & EPOLLOUT)
                ev |= EPOLLOUT;
        if (t->wpending > 0 || t->bye_pending)
                ev |= EPOLLOUT;
        return ev;
}

static size_t tls_pending(Stream *s) {
        TlsStream *t = s->impl;
        return t->handshake_done && !t->failed ? gnutls_record_check_pending(t->session) : 0;
}

const StreamOps tls_stream_ops = {
        .read = tls_read,
        .writev = tls_writev,
        .shutdown_write = tls_shutdown_write,
        .close = tls_close,
        .events = tls_events,
        .pending = tls_pending,
};

uint32_t tls_stream_revents(Stream *s, uint32_t revents) {
        TlsStream *t = tls_of(s);

        if (!t)
                return revents;
        if ((revents & EPOLLOUT) && (t->rd_want_write || t->bye_pending || !t->handshake_done))
                revents |= EPOLLIN;
        if ((revents & EPOLLIN) && !t->handshake_done)
                revents |= EPOLLOUT;
        return revents;
}

static ssize_t tls_pull(gnutls_transport_ptr_t p, void *buf, size_t n) {
        TlsStream *t = p;
        ssize_t k;

        do
                k = recv(t->fd, buf, n, 0);
        while (k < 0 && errno == EINTR);
        if (k < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                        t->pull_eagain = true;
                gnutls_transport_set_errno(t->session, errno);
        }
        return k;
}

static int tls_pull_timeout(gnutls_transport_ptr_t p, unsigned ms) {
        TlsStream *t = p;
        struct pollfd pfd = { .fd = t->fd, .events = POLLIN };
        int r;

        /* ms is 0 on the paths proxyd uses; a bounded wait otherwise, never indefinite */
        do
                r = poll(&pfd, 1, ms == GNUTLS_INDEFINITE_TIMEOUT ? 0 : (int) MIN(ms, 1000u));
        while (r < 0 && errno == EINTR);
        if (r < 0)
                gnutls_transport_set_errno(t->session, errno);
        return r;
}

static ssize_t tls_vec_push(gnutls_transport_ptr_t p, const giovec_t *iov, int n) {
        TlsStream *t = p;
        struct msghdr mh = { .msg_iov = (struct iovec *) iov, .msg_iovlen = (size_t) n };
        ssize_t k;

        do
                k = sendmsg(t->fd, &mh, MSG_NOSIGNAL);
        while (k < 0 && errno == EINTR);
        if (k < 0)
                gnutls_transport_set_errno(t->session, errno);
        return k;
}

int tls_stream_setup(Stream *s, int fd, unsigned flags, TlsStream **ret) {
        TlsStream *t;
        int r;

        stream_init_plain(s, fd);
        t = calloc(1, sizeof(TlsStream));
        if (!t)
                return -ENOMEM;
        r = gnutls_init(&t->session, flags | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
        if (r < 0) {
                t->session = NULL;
                tls_stream_free_impl(t);
                return tls_errno(r, 0);
        }
        gnutls_session_set_ptr(t->session, t);
        /* Our own transport functions: the event loop is edge-triggered, so proxyd must know
         * whether a GNUTLS_E_AGAIN means "the socket is drained" (wait for the next edge) or
         * something else (GnuTLS handled a post-handshake message, say): then it reads again. */
        t->fd = fd;
        gnutls_transport_set_ptr(t->session, t);
        gnutls_transport_set_pull_function(t->session, tls_pull);
        gnutls_transport_set_pull_timeout_function(t->session, tls_pull_timeout);
        gnutls_transport_set_vec_push_function(t->session, tls_vec_push);
        /* the caller's header/connect deadline bounds the handshake */
        gnutls_handshake_set_timeout(t->session, 0);
        *ret = t;
        return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Handshake */

static void server_collect(TlsStream *t) {
        char name[256];
        size_t len = sizeof(name) - 1;
        unsigned type = 0;
        const gnutls_datum_t *peers;
        unsigned n = 0;

        if (!t->sni && gnutls_server_name_get(t->session, name, &len, &type, 0) == 0 && type == GNUTLS_NAME_DNS) {
                name[MIN(len, sizeof(name) - 1)] = 0;
                t->sni = strdup(name);
        }
        if (!t->entry || t->entry->server->tls_verify_client == TLS_VERIFY_CLIENT_OFF)
                return;
        peers = gnutls_certificate_get_peers(t->session, &n);
        if (peers && n > 0) {
                gnutls_x509_crt_t crt;
                gnutls_datum_t dn = {};
                if (gnutls_x509_crt_init(&crt) < 0)
                        return;
                if (gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) >= 0 &&
                    gnutls_x509_crt_get_dn3(crt, &dn, 0) >= 0) {
                        t->client_dn = strndup((const char *) dn.data, dn.size);
                        gnutls_free(dn.data);
                }
                gnutls_x509_crt_deinit(crt);
        }
}

int tls_stream_handshake(Stream *s) {
        TlsStream *t = tls_of(s);
        int warnings = 0;

        if (!t)
                return 0;
        if (t->handshake_done)
                return 0;
        if (t->failed)
                return -EIO;
        for (unsigned again = 0;; again++) {
                int r, saved;

                t->pull_eagain = false;
                r = gnutls_handshake(t->session);
                saved = errno;
                if (r == GNUTLS_E_SUCCESS)
                        break;
                if (r == GNUTLS_E_INTERRUPTED)
                        continue;
                if (r == GNUTLS_E_AGAIN && !t->pull_eagain && gnutls_record_get_direction(t->session) == 0 &&
                    again < TLS_AGAIN_RETRIES)
                        continue;
                if (r == GNUTLS_E_AGAIN) {
                        t->hs_want_write = gnutls_record_get_direction(t->session) == 1;
                        return -EAGAIN;
                }
                if (r == GNUTLS_E_WARNING_ALERT_RECEIVED && ++warnings <= TLS_WARNING_ALERTS_MAX)
                        continue;
                if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR && !t->reason[0]) {
                        gnutls_datum_t out = {};
                        unsigned status = gnutls_session_get_verify_cert_status(t->session);
                        if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) >= 0) {
                                tls_set_reason(t, "certificate verify failed: %.*s", (int) out.size,
                                           (const char *) out.data);
                                gnutls_free(out.data);
                        } else
                                tls_set_reason(t, "certificate verify failed");
                } else if ((r == GNUTLS_E_NO_CERTIFICATE_FOUND || r == GNUTLS_E_CERTIFICATE_REQUIRED) &&
                           t->server && !t->reason[0])
                        tls_set_reason(t, "client certificate required but none was sent");
                if (r != GNUTLS_E_PUSH_ERROR && r != GNUTLS_E_PULL_ERROR && r != GNUTLS_E_PREMATURE_TERMINATION &&
                    r != GNUTLS_E_FATAL_ALERT_RECEIVED)
                        (void) gnutls_alert_send_appropriate(t->session, r);
                if (t->cctx && t->cache_key)
                        client_cache_drop(t->cctx, t->cache_key);
                return tls_fail(t, r, saved);
        }
        t->handshake_done = true;
        t->resumed = gnutls_session_is_resumed(t->session) != 0;
        if (t->server)
                server_collect(t);
        else
                client_maybe_save(t);
        return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Ticket keys */

int tls_ticket_keys_new(TlsTicketKeys **ret) {
        TlsTicketKeys *k = calloc(1, sizeof(TlsTicketKeys));
        int r;

        if (!k)
                return -ENOMEM;
        pthread_mutex_init(&k->lock, NULL);
        r = tls_ticket_keys_rotate(k);
        if (r < 0) {
                tls_ticket_keys_free(k);
                return r;
        }
        *ret = k;
        return 0;
}

TlsTicketKeys *tls_ticket_keys_free(TlsTicketKeys *k) {
        if (!k)
                return NULL;
        explicit_bzero(k->key, sizeof(k->key));
        pthread_mutex_destroy(&k->lock);
        free(k);
        return NULL;
}

int tls_ticket_keys_rotate(TlsTicketKeys *k) {
        gnutls_datum_t d = {};
        int r = gnutls_session_ticket_key_generate(&d);

        if (r < 0)
                return tls_errno(r, 0);
        if (d.size > sizeof(k->key)) {
                gnutls_memset(d.data, 0, d.size);
                gnutls_free(d.data);
                return -EINVAL;
        }
        pthread_mutex_lock(&k->lock);
        memcpy(k->key, d.data, d.size);
        k->size = d.size;
        pthread_mutex_unlock(&k->lock);
        gnutls_memset(d.data, 0, d.size);
        gnutls_free(d.data);
        return 0;
}

int tls_ticket_enable(TlsTicketKeys *k, gnutls_session_t session) {
        unsigned char key[sizeof(k->key)];
        gnutls_datum_t d = { .data = key };
        int r;

        pthread_mutex_lock(&k->lock);
        memcpy(key, k->key, k->size);
        d.size = (unsigned) k->size;
        pthread_mutex_unlock(&k->lock);
        r = gnutls_session_ticket_enable_server(session, &d);
        explicit_bzero(key, sizeof(key));
        return r;
}

/* ---------------------------------------------------------------------------------------- */
/* Stream state */

bool tls_stream_is_tls(const Stream *s) {
        return tls_of(s) != NULL;
}

bool tls_stream_handshake_done(const Stream *s) {
        TlsStream *t = tls_of(s);
        return !t || t->handshake_done;
}

const char *tls_stream_error(const Stream *s) {
        TlsStream *t = tls_of(s);
        return t && t->reason[0] ? t->reason : NULL;
}

const char *tls_stream_sni(const Stream *s) {
        TlsStream *t = tls_of(s);
        return t ? t->sni : NULL;
}

const char *tls_stream_client_subject(const Stream *s) {
        TlsStream *t = tls_of(s);
        return t && t->handshake_done ? t->client_dn : NULL;
}

const Server *tls_stream_server(const Stream *s) {
        TlsStream *t = tls_of(s);
        return t && t->entry ? t->entry->server : NULL;
}

const char *tls_stream_protocol(const Stream *s) {
        TlsStream *t = tls_of(s);
        return t && t->handshake_done ? gnutls_protocol_get_name(gnutls_protocol_get_version(t->session)) : NULL;
}

const char *tls_stream_cipher(const Stream *s) {
        TlsStream *t = tls_of(s);
        return t && t->handshake_done ? gnutls_cipher_get_name(gnutls_cipher_get(t->session)) : NULL;
}

const char *tls_stream_alpn(const Stream *s) {
        TlsStream *t = tls_of(s);
        gnutls_datum_t p = {};

        if (!t || !t->handshake_done || gnutls_alpn_get_selected_protocol(t->session, &p) < 0)
                return NULL;
        if (p.size == tls_alpn_h2.size && memcmp(p.data, tls_alpn_h2.data, p.size) == 0)
                return "h2";
        return p.size == tls_alpn_http11.size && memcmp(p.data, tls_alpn_http11.data, p.size) == 0 ? "http/1.1" : NULL;
}

bool tls_stream_resumed(const Stream *s) {
        TlsStream *t = tls_of(s);
        return t && t->resumed;
}
