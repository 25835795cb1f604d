/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * TLS with GnuTLS: termination for clients (TlsServerContext, one per TLS listening socket)
 * and HTTPS towards upstreams (TlsClientContext), both as a Stream (see stream.h), so the
 * data path reads and writes the same way as on a plain socket.
 * GnuTLS codes become -errno here and nowhere else; a human-readable reason for the last
 * failure of a stream is kept for the journal (tls_stream_error()).
 *
 * Threads: contexts and ticket keys are shared by all workers (internally locked where
 * they change); one Stream is used by one thread at a time.
 *
 * Lifetime: contexts are reference counted; every stream holds a reference on its context,
 * so *_context_free() (dropping the creator's reference) is safe while streams made from it
 * still exist, e.g. pooled upstream connections after a reload. A server context points to
 * the Servers it was made from: keep the Config alive as long as its streams need them.
 *
 * Stream contract beyond stream.h:
 *  - A TLS stream must finish tls_stream_handshake() (0) before read/writev.
 *  - writev: when it returns -EAGAIN or a short count, the next writev must start with the
 *    data right after what was accepted (the same bytes the caller still holds); GnuTLS
 *    may already have encrypted part of it and sends that instead.
 *  - The epoll interest must go through stream_events(), and the events epoll reports
 *    through tls_stream_revents(): a read may have to wait for the socket to become
 *    writable (and the other way round), which this translates back.
 *  - Decrypted bytes can be buffered inside the stream (stream_pending()); they are returned
 *    by the next read without the socket becoming readable. Callers that keep reading until
 *    -EAGAIN (and keep "readable" set after a read returned data) need nothing else.
 */

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "stream.h"

typedef struct TlsServerContext TlsServerContext;
typedef struct TlsClientContext TlsClientContext;
typedef struct TlsClientSet TlsClientSet;
typedef struct TlsTicketKeys TlsTicketKeys;

/* TLS 1.2 and 1.3 only, AEAD ciphers, ECDHE (or TLS 1.3 groups) key exchange. X25519 is the
 * first group: it is the key share browsers and OpenSSL send first, and with server
 * precedence any other first choice costs every such client a HelloRetryRequest (one more
 * round trip and a second key exchange) on each full handshake. */
#define TLS_DEFAULT_PRIORITY                                                                                  \
        "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:" \
        "-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-X448:"              \
        "+GROUP-SECP384R1:+GROUP-SECP521R1:%SERVER_PRECEDENCE"

/* Session tickets: the master key is replaced every TLS_TICKET_ROTATE_SEC seconds (the
 * previous key is forgotten, so earlier tickets stop resuming and cannot be decrypted any
 * more); tickets are issued with this lifetime. */
#define TLS_TICKET_ROTATE_SEC 3600u

/* Certificates expiring within this many days give a warning at load. */
#define TLS_EXPIRY_WARN_DAYS 14

/* ---- configuration checks ---- */

/*
 * Check everything TLS in c that config_load() cannot (it does not link GnuTLS): each
 * server certificate chain and key are readable, parse and belong together; expired or
 * soon-expiring certificates (warning); priority strings (error with the position);
 * client_ca files; upstream ssl_certificate/ssl_certificate_key pairs and
 * ssl_trusted_certificate files. Diagnostics carry file:line. Returns 0 or -EINVAL (at
 * least one error added), -ENOMEM.
 */
int tls_check_config(const Config *c, ConfigDiags *d);
/* The same for one server only. */
int tls_check_server(const Server *s, ConfigDiags *d);

/* ---- session ticket keys (shared by every server context, survive reloads) ---- */

int tls_ticket_keys_new(TlsTicketKeys **ret);
TlsTicketKeys *tls_ticket_keys_free(TlsTicketKeys *k);
/* Replace the master key by a fresh random one. Thread-safe. */
int tls_ticket_keys_rotate(TlsTicketKeys *k);

/* ---- termination ---- */

/*
 * A context for one listening socket, serving servers[0..n) (default server first; all must
 * have tls). Certificates, keys, client CA and priority are read now. The certificate is
 * chosen by SNI: first the server whose server_name matches (as the router does), else a
 * server with a certificate valid for the name, else the default server; within that server,
 * the certificate whose names (SAN/CN, wildcards included) match, else its first one.
 * keys may be NULL (tickets then use a key of this context, never rotated).
 * On failure *ret_error (if given) is set to a malloc'ed message.
 */
int tls_server_context_new(Server *const *servers, size_t n, TlsTicketKeys *keys, TlsServerContext **ret,
                           char **ret_error);
TlsServerContext *tls_server_context_free(TlsServerContext *c);

/* Make s a TLS server stream over fd. fd belongs to s from now on: on failure s is a plain
 * stream over fd, to be stream_close()d. */
int tls_stream_server_init(Stream *s, int fd, TlsServerContext *ctx);

/* ---- HTTPS upstreams ---- */

/*
 * trusted: CA file (PEM), NULL for the system store. cert/key: client certificate for mTLS
 * to the upstream, or both NULL. Holds a small session cache (locked; shared by workers)
 * for resumption.
 */
int tls_client_context_new(const char *trusted, const char *cert, const char *key, TlsClientContext **ret,
                           char **ret_error);
TlsClientContext *tls_client_context_free(TlsClientContext *c);

/*
 * Make s a TLS client stream over fd (owned by s as for tls_stream_server_init()). sni: name
 * sent as SNI (NULL or an IP literal: none). verify: check the certificate chain and that it
 * is valid for verify_name. The session cache key is the peer address + sni + verify_name.
 */
int tls_stream_client_init(Stream *s, int fd, TlsClientContext *ctx, const char *sni, const char *verify_name,
                           bool verify);

/*
 * Every distinct (ssl_trusted_certificate, ssl_certificate, ssl_certificate_key) of the
 * https locations of c, each with its TlsClientContext. Build one per configuration
 * generation; look up with the location's settings.
 */
int tls_client_set_new(const Config *c, TlsClientSet **ret, char **ret_error);
TlsClientSet *tls_client_set_free(TlsClientSet *set);
TlsClientContext *tls_client_set_get(const TlsClientSet *set, const LocationSettings *s);

/* ---- stream state ---- */

/* 0 when done, -EAGAIN (wait for stream_events(s, 0)), or -errno (see tls_stream_error()):
 * -EPERM certificate verification failed, -EPROTO protocol/negotiation failure,
 * -ECONNRESET/-EPIPE/-EIO transport failure, -ENOMEM. */
int tls_stream_handshake(Stream *s);
bool tls_stream_is_tls(const Stream *s);
bool tls_stream_handshake_done(const Stream *s);
/* Map epoll's revents for s's socket to what they mean for the caller (see above). */
uint32_t tls_stream_revents(Stream *s, uint32_t revents);
/* Reason of the last failure ("certificate verify failed: ..."), or NULL. */
const char *tls_stream_error(const Stream *s);

/* After the handshake (NULL when not applicable): */
const char *tls_stream_sni(const Stream *s);            /* server side: name the client sent */
const char *tls_stream_client_subject(const Stream *s); /* server side: verified client cert DN (RFC 4514) */
const Server *tls_stream_server(const Stream *s);        /* server side: the server whose certificate was used */
const char *tls_stream_protocol(const Stream *s);       /* "TLS1.3" */
const char *tls_stream_cipher(const Stream *s);         /* "AES-128-GCM" */
const char *tls_stream_alpn(const Stream *s);           /* "h2", "http/1.1" */
bool tls_stream_resumed(const Stream *s);
