/* SPDX-License-Identifier: MIT */
/*
 * GnuTLS wrapper. GnuTLS return codes are translated to -errno here (tls_errno()) and
 * never leave this file; the text of a failure is kept per stream for the journal.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config-merge.h"
#include "listener.h"
#include "router.h"
#include "tls.h"
#include "util.h"

#define TLS_RECORD_MAX 16384u
#define TLS_CLIENT_CACHE_SIZE 64u
#define TLS_CLIENT_PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%PROFILE_LOW"
#define TLS_WARNING_ALERTS_MAX 16

static const gnutls_datum_t alpn_http11 = { .data = (unsigned char *) "http/1.1", .size = 8 };

/* ---------------------------------------------------------------------------------------- */
/* Error translation */

static bool transport_errno(int e) {
        return e == ECONNRESET || e == EPIPE || e == ETIMEDOUT || e == ECONNREFUSED || e == ENOTCONN ||
               e == EHOSTUNREACH || e == ENETUNREACH || e == ECONNABORTED;
}

static int tls_errno(int code, int saved_errno) {
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

/* ---------------------------------------------------------------------------------------- */
/* Streams */

typedef struct TlsServerEntry {
        const Server *server;
        gnutls_certificate_credentials_t cred; /* all of the server's certificates */
        gnutls_priority_t prio;
        gnutls_x509_crt_t *leaves; /* leaf certificate of each chain, for name matching */
        size_t n_leaves;
        /* With several certificates, one credential per certificate (aligned with leaves):
         * proxyd picks by SNI itself, wildcards included, which GnuTLS does not. */
        gnutls_certificate_credentials_t *single;
} TlsServerEntry;

struct TlsServerContext {
        atomic_uint refcount;
        TlsServerEntry *entries;
        size_t n;
        Server **servers; /* entries[i].server, for router_select_server() */
        TlsTicketKeys *keys;
        TlsTicketKeys *own_keys;
};

struct TlsTicketKeys {
        pthread_mutex_t lock;
        unsigned char key[64];
        size_t size;
};

typedef struct CacheEntry {
        char *key;
        gnutls_datum_t data;
        uint64_t used;
} CacheEntry;

struct TlsClientContext {
        atomic_uint refcount;
        gnutls_certificate_credentials_t cred;
        gnutls_priority_t prio;
        char *trusted, *cert, *key;
        pthread_mutex_t lock;
        CacheEntry cache[TLS_CLIENT_CACHE_SIZE];
        uint64_t clock;
};

typedef struct TlsStream {
        gnutls_session_t session;
        bool server;
        bool handshake_done;
        bool failed;
        bool hs_want_write;   /* the handshake waits for the socket to become writable */
        bool rd_want_write;   /* the last read returned -EAGAIN waiting for writability */
        bool bye_pending;     /* close_notify could not be sent completely yet */
        bool bye_done;
        bool resumed;
        bool session_saved;
        bool pull_eagain;     /* the socket itself said EAGAIN on the last read GnuTLS made */
        int fd;
        size_t wpending;      /* plaintext size of a record GnuTLS holds, partly sent */
        unsigned char *wbuf;  /* coalescing buffer for small iovec entries (lazy) */

        TlsServerContext *sctx;
        const TlsServerEntry *entry;
        char *sni;
        char *client_dn;

        TlsClientContext *cctx;
        char *cache_key;

        char reason[256];
} TlsStream;

static const StreamOps tls_ops;

/* How often a GNUTLS_E_AGAIN that did not come from the socket is retried at once. */
#define TLS_AGAIN_RETRIES 16u

static TlsStream *tls_of(const Stream *s) {
        return s && s->ops == &tls_ops ? s->impl : NULL;
}

_printf_(2, 3) static void set_reason(TlsStream *t, const char *fmt, ...) {
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
                set_reason(t, "peer sent alert: %s", gnutls_alert_get_name(gnutls_alert_get(t->session)));
        else if (code == GNUTLS_E_REHANDSHAKE)
                set_reason(t, "peer requested renegotiation (refused)");
        else if ((code == GNUTLS_E_PUSH_ERROR || code == GNUTLS_E_PULL_ERROR) && r != -EIO)
                set_reason(t, "%s", strerror(-r));
        else
                set_reason(t, "%s", gnutls_strerror(code));
        return r;
}

static void stream_free_impl(TlsStream *t) {
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

static void client_cache_load(TlsClientContext *c, const char *key, gnutls_session_t session) {
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
                        set_reason(t, "write retried with less data than a pending record");
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
        stream_free_impl(t);
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

static const StreamOps tls_ops = {
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

static int stream_setup(Stream *s, int fd, unsigned flags, TlsStream **ret) {
        TlsStream *t;
        int r;

        stream_init_plain(s, fd);
        t = calloc(1, sizeof(TlsStream));
        if (!t)
                return -ENOMEM;
        r = gnutls_init(&t->session, flags | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
        if (r < 0) {
                t->session = NULL;
                stream_free_impl(t);
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
                                set_reason(t, "certificate verify failed: %.*s", (int) out.size,
                                           (const char *) out.data);
                                gnutls_free(out.data);
                        } else
                                set_reason(t, "certificate verify failed");
                } else if ((r == GNUTLS_E_NO_CERTIFICATE_FOUND || r == GNUTLS_E_CERTIFICATE_REQUIRED) &&
                           t->server && !t->reason[0])
                        set_reason(t, "client certificate required but none was sent");
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

static int ticket_enable(TlsTicketKeys *k, gnutls_session_t session) {
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
                        set_reason(t, "client certificate required but none was sent");
                        return -1;
                }
                return 0;
        }
        r = gnutls_certificate_verify_peers2(session, &status);
        if (r < 0) {
                set_reason(t, "client certificate verify failed: %s", gnutls_strerror(r));
                return -1;
        }
        if (status != 0) {
                gnutls_datum_t out = {};
                if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) >= 0) {
                        set_reason(t, "client certificate verify failed: %.*s", (int) out.size,
                                   (const char *) out.data);
                        gnutls_free(out.data);
                } else
                        set_reason(t, "client certificate verify failed");
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

static int errorf(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);

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
                return errorf(ret_error, r < 0 ? tls_errno(r, 0) : -EINVAL, "%s:%d: client_ca \"%s\": %s",
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
                        return errorf(ret_error, tls_errno(r, 0), "%s:%d: certificate \"%s\" with key \"%s\": %s",
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

static int errorf(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);
static int errorf(char **ret_error, int r, const char *fmt, ...) {
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
                        return errorf(ret_error, tls_errno(idx, 0), "%s:%d: certificate \"%s\" with key \"%s\": %s",
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
                return errorf(ret_error, -EINVAL, "%s:%d: invalid TLS priority at \"%s\": %s",
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
                return errorf(ret_error, -EINVAL, "no server with tls");
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
        gnutls_datum_t alpn = alpn_http11;
        int r;

        r = stream_setup(s, fd, GNUTLS_SERVER, &t);
        if (r < 0)
                return r;
        t->server = true;
        atomic_fetch_add(&ctx->refcount, 1);
        t->sctx = ctx;
        entry_apply(t, &ctx->entries[0]);
        gnutls_handshake_set_post_client_hello_function(t->session, on_client_hello);
        r = gnutls_alpn_set_protocols(t->session, &alpn, 1, GNUTLS_ALPN_SERVER_PRECEDENCE);
        if (r >= 0)
                r = ticket_enable(ctx->keys, t->session);
        if (r < 0) {
                stream_free_impl(t);
                return tls_errno(r, 0);
        }
        gnutls_db_set_cache_expiration(t->session, TLS_TICKET_ROTATE_SEC);
        s->ops = &tls_ops;
        s->impl = t;
        return 0;
}

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
                return errorf(ret_error, -EINVAL, "a client certificate needs both certificate and key");
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
                        return errorf(ret_error, r < 0 ? tls_errno(r, 0) : -EINVAL, "trusted certificates \"%s\": %s",
                                      trusted, r < 0 ? gnutls_strerror(r) : "no certificates found");
                }
        } else {
                r = gnutls_certificate_set_x509_system_trust(c->cred);
                if (r < 0) {
                        tls_client_context_free(c);
                        return errorf(ret_error, tls_errno(r, 0), "system trust store: %s", gnutls_strerror(r));
                }
        }
        if (cert) {
                r = gnutls_certificate_set_x509_key_file2(c->cred, cert, key, GNUTLS_X509_FMT_PEM, NULL, 0);
                if (r < 0) {
                        tls_client_context_free(c);
                        return errorf(ret_error, tls_errno(r, 0), "client certificate \"%s\" with key \"%s\": %s", cert,
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
        gnutls_datum_t alpn = alpn_http11;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        char peer[160] = "?";
        int r;

        r = stream_setup(s, fd, GNUTLS_CLIENT, &t);
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
                stream_free_impl(t);
                return tls_errno(r, 0);
        }
        if (verify)
                gnutls_session_set_verify_cert(t->session, verify_name && *verify_name ? verify_name : NULL, 0);

        if (getpeername(fd, (struct sockaddr *) &ss, &sl) == 0)
                sockaddr_format((struct sockaddr *) &ss, sl, peer, sizeof(peer));
        if (asprintf(&t->cache_key, "%s|%s|%s|%d", peer, sni ?: "", verify_name ?: "", verify) < 0) {
                t->cache_key = NULL;
                stream_free_impl(t);
                return -ENOMEM;
        }
        client_cache_load(ctx, t->cache_key, t->session);
        s->ops = &tls_ops;
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

                        if (!loc->proxy || !loc->proxy->https || tls_client_set_get(set, &loc->s))
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
        /* the only protocol we offer */
        return p.size == alpn_http11.size && memcmp(p.data, alpn_http11.data, p.size) == 0 ? "http/1.1" : NULL;
}

bool tls_stream_resumed(const Stream *s) {
        TlsStream *t = tls_of(s);
        return t && t->resumed;
}
