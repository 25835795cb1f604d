/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Private to tls.c (streams, handshake, the client session cache), tls-server.c (server
 * contexts: certificates by SNI, client certificates, tickets) and tls-client.c (client
 * contexts for upstreams). Nothing here leaves core/.
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

extern const StreamOps tls_stream_ops;
extern const gnutls_datum_t tls_alpn_http11;
extern const gnutls_datum_t tls_alpn_h2;

/* The text of a failure, kept per stream for the journal. */
void tls_set_reason(TlsStream *t, const char *fmt, ...) _printf_(2, 3);

/* GnuTLS code -> -errno (saved_errno: errno right after the call, for transport errors). */
int tls_errno(int code, int saved_errno);
/* A TlsStream for fd with the session flags, set up as s's implementation. */
int tls_stream_setup(Stream *s, int fd, unsigned flags, TlsStream **ret);
void tls_stream_free_impl(TlsStream *t);
int tls_ticket_enable(TlsTicketKeys *k, gnutls_session_t session);
void tls_client_cache_load(TlsClientContext *c, const char *key, gnutls_session_t session);
/* *ret_error = the formatted text (when ret_error is not NULL); returns r. */
int tls_errorf(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);
