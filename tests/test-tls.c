/* SPDX-License-Identifier: MIT */
/*
 * TLS streams driven in-process: both ends over a non-blocking socketpair, stepped in a
 * loop. Certificates are generated with certtool into a temporary directory at start.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "stream.h"
#include "tls.h"
#include "util.h"

static char dir[] = "/tmp/proxyd-test-tls-XXXXXX";

static void names_free(char **a, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(a[i]);
        free(a);
}

static const char *path(const char *name) {
        static char buf[8][512];
        static unsigned k;
        char *p = buf[k++ % ELEMENTSOF(buf)];
        snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
        return p;
}

static void write_file(const char *name, const char *text) {
        FILE *f = fopen(path(name), "we");
        if (!f) {
                perror(name);
                exit(EXIT_FAILURE);
        }
        fputs(text, f);
        fclose(f);
}

static void run(const char *fmt, ...) _printf_(1, 2);
static void run(const char *fmt, ...) {
        char cmd[4096];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(cmd, sizeof(cmd), fmt, ap);
        va_end(ap);
        if (system(cmd) != 0) {
                fprintf(stderr, "failed: %s\n", cmd);
                exit(EXIT_FAILURE);
        }
}

static void gen_key(const char *certtool, const char *name) {
        run("%s --generate-privkey --key-type=ecdsa --outfile %s >/dev/null 2>&1", certtool, path(name));
}

static void gen_cert(const char *certtool, const char *name, const char *ca, const char *tmpl) {
        char t[64], k[64], c[64], cak[64];

        snprintf(t, sizeof(t), "%s.tmpl", name);
        snprintf(k, sizeof(k), "%s.key", name);
        snprintf(c, sizeof(c), "%s.pem", name);
        write_file(t, tmpl);
        gen_key(certtool, k);
        if (!ca)
                run("%s --generate-self-signed --load-privkey %s --template %s --outfile %s >/dev/null 2>&1",
                    certtool, path(k), path(t), path(c));
        else {
                char cac[64];
                snprintf(cac, sizeof(cac), "%s.pem", ca);
                snprintf(cak, sizeof(cak), "%s.key", ca);
                run("%s --generate-certificate --load-privkey %s --load-ca-certificate %s --load-ca-privkey %s "
                    "--template %s --outfile %s >/dev/null 2>&1",
                    certtool, path(k), path(cac), path(cak), path(t), path(c));
        }
}

static void make_fixtures(void) {
        const char *certtool = getenv("CERTTOOL") ?: "certtool";
        char probe[512];

        snprintf(probe, sizeof(probe), "%s --version >/dev/null 2>&1", certtool);
        if (system(probe) != 0) {
                fprintf(stderr, "test-tls: %s does not run: install gnutls-bin (tools/test.sh does)\n", certtool);
                exit(EXIT_FAILURE);
        }
        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                exit(EXIT_FAILURE);
        }
        gen_cert(certtool, "ca", NULL, "cn = \"Test CA\"\nca\ncert_signing_key\nexpiration_days = 30\n");
        gen_cert(certtool, "ca2", NULL, "cn = \"Other CA\"\nca\ncert_signing_key\nexpiration_days = 30\n");
        gen_cert(certtool, "s1", "ca",
                 "cn = \"example.test\"\ndns_name = \"example.test\"\ndns_name = \"*.wild.test\"\n"
                 "tls_www_server\nsigning_key\nexpiration_days = 365\n");
        gen_cert(certtool, "s2", "ca",
                 "cn = \"other.test\"\ndns_name = \"other.test\"\ntls_www_server\nsigning_key\nexpiration_days = 365\n");
        gen_cert(certtool, "soon", "ca",
                 "cn = \"soon.test\"\ndns_name = \"soon.test\"\ntls_www_server\nsigning_key\nexpiration_days = 5\n");
        gen_cert(certtool, "expired", "ca",
                 "cn = \"expired.test\"\ndns_name = \"expired.test\"\ntls_www_server\nsigning_key\n"
                 "activation_date = \"2019-01-01 00:00:00\"\nexpiration_date = \"2020-01-01 00:00:00\"\n");
        gen_cert(certtool, "untrusted", "ca2",
                 "cn = \"example.test\"\ndns_name = \"example.test\"\ntls_www_server\nsigning_key\n"
                 "expiration_days = 365\n");
        gen_cert(certtool, "client", "ca",
                 "cn = \"client one\"\norganization = \"Test Org\"\ntls_www_client\nsigning_key\n"
                 "expiration_days = 365\n");
        gen_cert(certtool, "client2", "ca2",
                 "cn = \"client two\"\ntls_www_client\nsigning_key\nexpiration_days = 365\n");
}

static void remove_fixtures(void) {
        run("rm -rf %s", dir);
}

/* ---- helpers ---- */

static TlsCertificate cert(const char *name) {
        char c[64], k[64];
        snprintf(c, sizeof(c), "%s.pem", name);
        snprintf(k, sizeof(k), "%s.key", name);
        return (TlsCertificate) {
                .certificate = strdup(path(c)),
                .key = strdup(path(k)),
                .file = "test.conf",
                .line = 10,
        };
}

static Server *server_new(const char *name, const char *const *certs, size_t n) {
        Server *s = calloc(1, sizeof(Server));
        ck_assert_ptr_nonnull(s);
        s->name = strdup(name);
        s->file = "test.conf";
        s->line = 5;
        s->tls_file = "test.conf";
        s->tls_line = 9;
        s->tls_certificates = calloc(n, sizeof(TlsCertificate));
        for (size_t i = 0; i < n; i++)
                s->tls_certificates[i] = cert(certs[i]);
        s->n_tls_certificates = n;
        return s;
}

static void server_free(Server *s) {
        for (size_t i = 0; i < s->n_tls_certificates; i++) {
                free(s->tls_certificates[i].certificate);
                free(s->tls_certificates[i].key);
        }
        free(s->tls_certificates);
        names_free(s->server_names, s->n_server_names);
        free(s->tls_priority);
        free(s->tls_client_ca);
        free(s->name);
        free(s);
}

static void pair(int fds[2]) {
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
}

/* Step both handshakes until neither can progress. */
static void handshake(Stream *c, Stream *s, int *rc, int *rs) {
        *rc = *rs = -EAGAIN;
        for (int i = 0; i < 1000 && (*rc == -EAGAIN || *rs == -EAGAIN); i++) {
                if (*rc == -EAGAIN)
                        *rc = tls_stream_handshake(c);
                if (*rs == -EAGAIN)
                        *rs = tls_stream_handshake(s);
        }
}

static TlsServerContext *server_ctx(Server *const *servers, size_t n, TlsTicketKeys *keys) {
        TlsServerContext *ctx = NULL;
        char *err = NULL;
        int r = tls_server_context_new(servers, n, keys, &ctx, &err);
        ck_assert_msg(r == 0, "server context: %s", err ?: strerror(-r));
        return ctx;
}

static TlsClientContext *client_ctx(const char *ca, const char *cert_name) {
        TlsClientContext *ctx = NULL;
        char *err = NULL, c[64], k[64];
        int r;

        if (cert_name) {
                snprintf(c, sizeof(c), "%s.pem", cert_name);
                snprintf(k, sizeof(k), "%s.key", cert_name);
        }
        r = tls_client_context_new(ca ? path(ca) : NULL, cert_name ? path(c) : NULL, cert_name ? path(k) : NULL, &ctx,
                                   &err);
        ck_assert_msg(r == 0, "client context: %s", err ?: strerror(-r));
        return ctx;
}

typedef struct Conn2 {
        Stream c, s;
        int rc, rs;
} Conn2;

static void connect2(Conn2 *x, TlsClientContext *cc, TlsServerContext *sc, const char *sni, const char *name,
                     bool verify) {
        int fds[2];

        pair(fds);
        ck_assert_int_eq(tls_stream_client_init(&x->c, fds[0], cc, sni, name, verify), 0);
        ck_assert_int_eq(tls_stream_server_init(&x->s, fds[1], sc), 0);
        handshake(&x->c, &x->s, &x->rc, &x->rs);
}

static void close2(Conn2 *x) {
        stream_close(&x->c);
        stream_close(&x->s);
}

/* Move a message from a to b and check it arrives whole. */
static void echo(Stream *a, Stream *b, const char *msg) {
        char buf[256];
        size_t got = 0, len = strlen(msg);
        ssize_t k;

        ck_assert_int_eq(stream_write(a, msg, len), (ssize_t) len);
        for (int i = 0; i < 100 && got < len; i++) {
                k = stream_read(b, buf + got, sizeof(buf) - got);
                if (k == -EAGAIN)
                        continue;
                ck_assert_int_gt(k, 0);
                got += (size_t) k;
        }
        ck_assert_uint_eq(got, len);
        ck_assert(memcmp(buf, msg, len) == 0);
}

/* Read whatever is there (to process tickets and alerts); returns the last result. */
static ssize_t pump(Stream *s) {
        char buf[1024];
        ssize_t k;
        do
                k = stream_read(s, buf, sizeof(buf));
        while (k > 0);
        return k;
}

/* ---- tests ---- */

START_TEST(test_handshake_default) {
        const char *certs[] = { "s1" };
        Server *srv = server_new("a", certs, 1);
        TlsServerContext *sc = server_ctx(&srv, 1, NULL);
        TlsClientContext *cc = client_ctx("ca.pem", NULL);
        Conn2 x;
        int fds[2];

        /* Before anything arrives, both sides wait for input. */
        pair(fds);
        ck_assert_int_eq(tls_stream_client_init(&x.c, fds[0], cc, "example.test", "example.test", true), 0);
        ck_assert_int_eq(tls_stream_server_init(&x.s, fds[1], sc), 0);
        ck_assert(tls_stream_is_tls(&x.s));
        ck_assert_int_eq(tls_stream_handshake(&x.s), -EAGAIN);
        ck_assert_uint_eq(stream_events(&x.s, 0), EPOLLIN);
        ck_assert_int_eq(tls_stream_handshake(&x.c), -EAGAIN);
        ck_assert_uint_eq(stream_events(&x.c, EPOLLOUT), EPOLLIN);
        ck_assert(!tls_stream_handshake_done(&x.c));
        handshake(&x.c, &x.s, &x.rc, &x.rs);
        ck_assert_int_eq(x.rc, 0);
        ck_assert_int_eq(x.rs, 0);

        ck_assert_str_eq(tls_stream_protocol(&x.s), "TLS1.3");
        ck_assert_str_eq(tls_stream_protocol(&x.c), "TLS1.3");
        ck_assert_str_eq(tls_stream_alpn(&x.s), "http/1.1");
        ck_assert_str_eq(tls_stream_alpn(&x.c), "http/1.1");
        ck_assert_str_eq(tls_stream_sni(&x.s), "example.test");
        ck_assert_ptr_eq(tls_stream_server(&x.s), srv);
        ck_assert_ptr_null(tls_stream_client_subject(&x.s));
        ck_assert(!tls_stream_resumed(&x.c));
        ck_assert_uint_eq(stream_events(&x.s, EPOLLIN), EPOLLIN);
        ck_assert_uint_eq(stream_events(&x.s, EPOLLIN | EPOLLOUT), EPOLLIN | EPOLLOUT);

        /* streams keep their contexts alive */
        tls_client_context_free(cc);
        tls_server_context_free(sc);

        echo(&x.c, &x.s, "GET / HTTP/1.1\r\nHost: example.test\r\n\r\n");
        echo(&x.s, &x.c, "HTTP/1.1 204 No Content\r\n\r\n");

        /* close_notify reads as EOF on the other side */
        ck_assert_int_eq(stream_shutdown_write(&x.s), 0);
        ck_assert_int_eq(pump(&x.c), 0);
        ck_assert_int_eq(stream_shutdown_write(&x.c), 0);
        ck_assert_int_eq(pump(&x.s), 0);

        close2(&x);
        server_free(srv);
}
END_TEST

/* A raw GnuTLS client with a given priority string against our server. */
static int probe(TlsServerContext *sc, const char *priority, int *server_r) {
        gnutls_certificate_credentials_t cred;
        gnutls_session_t cs;
        Stream s;
        int fds[2], rc = GNUTLS_E_AGAIN, rs = -EAGAIN;

        pair(fds);
        ck_assert_int_eq(tls_stream_server_init(&s, fds[1], sc), 0);
        ck_assert_int_eq(gnutls_certificate_allocate_credentials(&cred), 0);
        ck_assert_int_eq(gnutls_init(&cs, GNUTLS_CLIENT | GNUTLS_NONBLOCK), 0);
        ck_assert_int_eq(gnutls_priority_set_direct(cs, priority, NULL), 0);
        gnutls_credentials_set(cs, GNUTLS_CRD_CERTIFICATE, cred);
        gnutls_transport_set_int(cs, fds[0]);
        for (int i = 0; i < 1000 && (rc == GNUTLS_E_AGAIN || rs == -EAGAIN); i++) {
                if (rc == GNUTLS_E_AGAIN)
                        rc = gnutls_handshake(cs);
                if (rs == -EAGAIN)
                        rs = tls_stream_handshake(&s);
        }
        *server_r = rs;
        gnutls_deinit(cs);
        gnutls_certificate_free_credentials(cred);
        close(fds[0]);
        stream_close(&s);
        return rc;
}

START_TEST(test_protocol_surface) {
        const char *certs[] = { "s1" };
        Server *srv = server_new("a", certs, 1);
        TlsServerContext *sc = server_ctx(&srv, 1, NULL);
        int rs;

        ck_assert_int_eq(probe(sc, "NORMAL:-VERS-ALL:+VERS-TLS1.1", &rs), GNUTLS_E_FATAL_ALERT_RECEIVED);
        ck_assert_int_lt(rs, 0);
        ck_assert_int_eq(probe(sc, "NORMAL:-VERS-ALL:+VERS-TLS1.0", &rs), GNUTLS_E_FATAL_ALERT_RECEIVED);
        ck_assert_int_lt(rs, 0);
        /* CBC suites only */
        ck_assert_int_lt(probe(sc, "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-CBC:+AES-256-CBC", &rs), 0);
        ck_assert_int_eq(rs, -EPROTO);
        /* static RSA key exchange only */
        ck_assert_int_lt(probe(sc, "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA", &rs), 0);
        ck_assert_int_eq(rs, -EPROTO);
        /* TLS 1.2 with ECDHE + AEAD is fine */
        ck_assert_int_eq(probe(sc, "NORMAL:-VERS-ALL:+VERS-TLS1.2", &rs), 0);
        ck_assert_int_eq(rs, 0);
        ck_assert_int_eq(probe(sc, "NORMAL", &rs), 0);
        ck_assert_int_eq(rs, 0);

        tls_server_context_free(sc);
        server_free(srv);
}
END_TEST

START_TEST(test_renegotiation_refused) {
        const char *certs[] = { "s1" };
        Server *srv = server_new("a", certs, 1);
        TlsServerContext *sc = server_ctx(&srv, 1, NULL);
        gnutls_certificate_credentials_t cred;
        gnutls_session_t cs;
        Stream s;
        int fds[2], rc = GNUTLS_E_AGAIN, rs = -EAGAIN;
        char buf[64];
        ssize_t k = -EAGAIN;

        pair(fds);
        ck_assert_int_eq(tls_stream_server_init(&s, fds[1], sc), 0);
        ck_assert_int_eq(gnutls_certificate_allocate_credentials(&cred), 0);
        ck_assert_int_eq(gnutls_init(&cs, GNUTLS_CLIENT | GNUTLS_NONBLOCK), 0);
        ck_assert_int_eq(gnutls_priority_set_direct(cs, "NORMAL:-VERS-ALL:+VERS-TLS1.2", NULL), 0);
        gnutls_credentials_set(cs, GNUTLS_CRD_CERTIFICATE, cred);
        gnutls_transport_set_int(cs, fds[0]);
        for (int i = 0; i < 1000 && (rc == GNUTLS_E_AGAIN || rs == -EAGAIN); i++) {
                if (rc == GNUTLS_E_AGAIN)
                        rc = gnutls_handshake(cs);
                if (rs == -EAGAIN)
                        rs = tls_stream_handshake(&s);
        }
        ck_assert_int_eq(rc, 0);
        ck_assert_int_eq(rs, 0);
        ck_assert_str_eq(tls_stream_protocol(&s), "TLS1.2");

        /* client-initiated renegotiation: a new ClientHello on the established session */
        rc = gnutls_handshake(cs);
        ck_assert_int_eq(rc, GNUTLS_E_AGAIN);
        for (int i = 0; i < 100 && k == -EAGAIN; i++)
                k = stream_read(&s, buf, sizeof(buf));
        ck_assert_int_eq(k, -EPROTO);
        ck_assert_ptr_nonnull(strstr(tls_stream_error(&s), "renegotiation"));

        gnutls_deinit(cs);
        gnutls_certificate_free_credentials(cred);
        close(fds[0]);
        stream_close(&s);
        tls_server_context_free(sc);
        server_free(srv);
}
END_TEST

START_TEST(test_sni) {
        const char *certs[] = { "s1", "s2" };
        Server *srv = server_new("a", certs, 2);
        TlsServerContext *sc = server_ctx(&srv, 1, NULL);
        TlsClientContext *cc = client_ctx("ca.pem", NULL);
        static const struct {
                const char *sni, *name;
                int rc;
        } cases[] = {
                { "example.test", "example.test", 0 },
                { "other.test", "other.test", 0 },
                { "x.wild.test", "x.wild.test", 0 },
                { "unknown.test", "example.test", 0 }, /* default: the first certificate */
                { NULL, "example.test", 0 },
                { "unknown.test", "unknown.test", -EPERM },
                { "other.test", "example.test", -EPERM },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Conn2 x;
                connect2(&x, cc, sc, cases[i].sni, cases[i].name, true);
                ck_assert_msg(x.rc == cases[i].rc, "case %zu (%s): %d %s", i, cases[i].sni ?: "-", x.rc,
                              tls_stream_error(&x.c) ?: "");
                if (x.rc == 0) {
                        ck_assert_int_eq(x.rs, 0);
                        if (cases[i].sni)
                                ck_assert_str_eq(tls_stream_sni(&x.s), cases[i].sni);
                        else
                                ck_assert_ptr_null(tls_stream_sni(&x.s));
                }
                close2(&x);
        }
        tls_client_context_free(cc);
        tls_server_context_free(sc);
        server_free(srv);
}
END_TEST

START_TEST(test_sni_servers) {
        const char *c1[] = { "s1" }, *c2[] = { "s2" };
        Server *a = server_new("a", c1, 1), *b = server_new("b", c2, 1);
        Server *both[] = { a, b };
        TlsServerContext *sc;
        TlsClientContext *cc = client_ctx("ca.pem", NULL);
        Conn2 x;

        /* b named by server_name */
        b->server_names = calloc(1, sizeof(char *));
        b->server_names[0] = strdup("other.test");
        b->n_server_names = 1;
        sc = server_ctx(both, 2, NULL);
        connect2(&x, cc, sc, "other.test", "other.test", true);
        ck_assert_int_eq(x.rc, 0);
        ck_assert_ptr_eq(tls_stream_server(&x.s), b);
        close2(&x);
        connect2(&x, cc, sc, "example.test", "example.test", true);
        ck_assert_int_eq(x.rc, 0);
        ck_assert_ptr_eq(tls_stream_server(&x.s), a);
        close2(&x);
        connect2(&x, cc, sc, "nothing.test", "example.test", true);
        ck_assert_int_eq(x.rc, 0);
        ck_assert_ptr_eq(tls_stream_server(&x.s), a);
        close2(&x);
        tls_server_context_free(sc);

        /* no server_name: chosen by the certificate names */
        names_free(b->server_names, b->n_server_names);
        b->server_names = NULL;
        b->n_server_names = 0;
        sc = server_ctx(both, 2, NULL);
        connect2(&x, cc, sc, "other.test", "other.test", true);
        ck_assert_int_eq(x.rc, 0);
        ck_assert_ptr_eq(tls_stream_server(&x.s), b);
        close2(&x);

        tls_server_context_free(sc);
        tls_client_context_free(cc);
        server_free(a);
        server_free(b);
}
END_TEST

static void resumption(const char *priority) {
        const char *certs[] = { "s1" };
        Server *srv = server_new("a", certs, 1);
        TlsTicketKeys *keys = NULL;
        TlsServerContext *sc;
        TlsClientContext *cc = client_ctx("ca.pem", NULL);
        Conn2 x;

        if (priority)
                srv->tls_priority = strdup(priority);
        ck_assert_int_eq(tls_ticket_keys_new(&keys), 0);
        sc = server_ctx(&srv, 1, keys);

        connect2(&x, cc, sc, "example.test", "example.test", true);
        ck_assert_int_eq(x.rc, 0);
        ck_assert(!tls_stream_resumed(&x.c));
        echo(&x.s, &x.c, "hello"); /* the TLS 1.3 ticket arrives with this */
        close2(&x);

        connect2(&x, cc, sc, "example.test", "example.test", true);
        ck_assert_int_eq(x.rc, 0);
        ck_assert(tls_stream_resumed(&x.c));
        ck_assert(tls_stream_resumed(&x.s));
        echo(&x.s, &x.c, "hello");
        close2(&x);

        /* a new ticket key: earlier tickets no longer resume */
        ck_assert_int_eq(tls_ticket_keys_rotate(keys), 0);
        connect2(&x, cc, sc, "example.test", "example.test", true);
        ck_assert_int_eq(x.rc, 0);
        ck_assert(!tls_stream_resumed(&x.s));
        echo(&x.s, &x.c, "hello");
        close2(&x);

        connect2(&x, cc, sc, "example.test", "example.test", true);
        ck_assert_int_eq(x.rc, 0);
        ck_assert(tls_stream_resumed(&x.s));
        close2(&x);

        tls_server_context_free(sc);
        tls_ticket_keys_free(keys);
        tls_client_context_free(cc);
        server_free(srv);
}

START_TEST(test_resumption_tls13) {
        resumption(NULL);
}
END_TEST

START_TEST(test_resumption_tls12) {
        resumption("NORMAL:-VERS-ALL:+VERS-TLS1.2");
}
END_TEST

START_TEST(test_verify_failures) {
        const char *good[] = { "s1" }, *bad[] = { "untrusted" };
        Server *s1 = server_new("a", good, 1), *s2 = server_new("b", bad, 1);
        TlsServerContext *sc1 = server_ctx(&s1, 1, NULL), *sc2 = server_ctx(&s2, 1, NULL);
        TlsClientContext *cc = client_ctx("ca.pem", NULL);
        Conn2 x;

        connect2(&x, cc, sc1, "example.test", "wrong.test", true);
        ck_assert_int_eq(x.rc, -EPERM);
        ck_assert_msg(strncmp(tls_stream_error(&x.c), "certificate verify failed: ", 27) == 0, "%s",
                      tls_stream_error(&x.c));
        ck_assert_int_lt(x.rs, 0);
        close2(&x);

        connect2(&x, cc, sc2, "example.test", "example.test", true);
        ck_assert_int_eq(x.rc, -EPERM);
        ck_assert_ptr_nonnull(strstr(tls_stream_error(&x.c), "certificate verify failed: "));
        close2(&x);

        /* not verifying accepts both */
        connect2(&x, cc, sc2, "example.test", "wrong.test", false);
        ck_assert_int_eq(x.rc, 0);
        ck_assert_int_eq(x.rs, 0);
        close2(&x);

        tls_client_context_free(cc);
        tls_server_context_free(sc1);
        tls_server_context_free(sc2);
        server_free(s1);
        server_free(s2);
}
END_TEST

START_TEST(test_mtls) {
        const char *certs[] = { "s1" };
        Server *srv = server_new("a", certs, 1);
        TlsServerContext *sc;
        /* other: issued by a CA the server does not name, so it is not even sent;
         * bad: issued by the right CA but expired, so it is sent and fails verification */
        TlsClientContext *none = client_ctx("ca.pem", NULL), *good = client_ctx("ca.pem", "client"),
                         *other = client_ctx("ca.pem", "client2"), *bad = client_ctx("ca.pem", "expired");
        Conn2 x;

        srv->tls_client_ca = strdup(path("ca.pem"));
        srv->tls_verify_client = TLS_VERIFY_CLIENT_ON;
        sc = server_ctx(&srv, 1, NULL);

        connect2(&x, good, sc, "example.test", "example.test", true);
        ck_assert_int_eq(x.rc, 0);
        ck_assert_int_eq(x.rs, 0);
        ck_assert_ptr_nonnull(tls_stream_client_subject(&x.s));
        ck_assert_msg(strstr(tls_stream_client_subject(&x.s), "CN=client one") &&
                              strstr(tls_stream_client_subject(&x.s), "O=Test Org"),
                      "%s", tls_stream_client_subject(&x.s));
        echo(&x.c, &x.s, "ping");
        close2(&x);

        connect2(&x, none, sc, "example.test", "example.test", true);
        ck_assert_int_eq(x.rs, -EPERM);
        ck_assert_ptr_nonnull(strstr(tls_stream_error(&x.s), "client certificate required"));
        ck_assert(x.rc < 0 || pump(&x.c) < 0);
        close2(&x);

        connect2(&x, other, sc, "example.test", "example.test", true);
        ck_assert_int_eq(x.rs, -EPERM);
        ck_assert_ptr_nonnull(strstr(tls_stream_error(&x.s), "client certificate required"));
        close2(&x);

        connect2(&x, bad, sc, "example.test", "example.test", true);
        ck_assert_int_eq(x.rs, -EPERM);
        ck_assert_msg(strstr(tls_stream_error(&x.s), "client certificate verify failed: ") &&
                              strstr(tls_stream_error(&x.s), "expired"),
                      "%s", tls_stream_error(&x.s));
        close2(&x);
        tls_server_context_free(sc);

        /* optional: no certificate is fine, a bad one is not */
        srv->tls_verify_client = TLS_VERIFY_CLIENT_OPTIONAL;
        sc = server_ctx(&srv, 1, NULL);
        connect2(&x, none, sc, "example.test", "example.test", true);
        ck_assert_int_eq(x.rc, 0);
        ck_assert_int_eq(x.rs, 0);
        ck_assert_ptr_null(tls_stream_client_subject(&x.s));
        close2(&x);
        connect2(&x, good, sc, "example.test", "example.test", true);
        ck_assert_int_eq(x.rs, 0);
        ck_assert_ptr_nonnull(strstr(tls_stream_client_subject(&x.s), "CN=client one"));
        close2(&x);
        connect2(&x, other, sc, "example.test", "example.test", true);
        ck_assert_int_eq(x.rs, 0);
        ck_assert_ptr_null(tls_stream_client_subject(&x.s));
        close2(&x);
        connect2(&x, bad, sc, "example.test", "example.test", true);
        ck_assert_int_eq(x.rs, -EPERM);
        close2(&x);
        tls_server_context_free(sc);

        tls_client_context_free(other);
        tls_client_context_free(none);
        tls_client_context_free(good);
        tls_client_context_free(bad);
        server_free(srv);
}
END_TEST

static char *diags_text(const ConfigDiags *d) {
        char *s = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&s, &n);
        ck_assert_ptr_nonnull(f);
        config_diags_print(d, f);
        fclose(f);
        return s;
}

START_TEST(test_priority_validation) {
        const char *certs[] = { "s1" };
        Server *srv = server_new("a", certs, 1);
        ConfigDiags d = {};
        TlsServerContext *sc = NULL;
        char *text, *err = NULL;

        srv->tls_priority = strdup("NORMAL:-VERS-ALL:+VERS-TLS1.3:+NOPE-CIPHER");
        srv->tls_priority_file = "test.conf";
        srv->tls_priority_line = 12;
        ck_assert_int_eq(tls_check_server(srv, &d), -EINVAL);
        text = diags_text(&d);
        ck_assert_msg(strstr(text, "test.conf:12: invalid TLS priority at \"+NOPE-CIPHER\": "), "%s", text);
        free(text);
        config_diags_clear(&d);

        ck_assert_int_eq(tls_server_context_new(&srv, 1, NULL, &sc, &err), -EINVAL);
        ck_assert_ptr_null(sc);
        ck_assert_msg(strstr(err, "test.conf:12: invalid TLS priority at \"+NOPE-CIPHER\""), "%s", err);
        free(err);

        free(srv->tls_priority);
        srv->tls_priority = strdup("SECURE256:-VERS-ALL:+VERS-TLS1.3");
        ck_assert_int_eq(tls_check_server(srv, &d), 0);
        ck_assert_uint_eq(d.n, 0);
        server_free(srv);
}
END_TEST

START_TEST(test_check_pairs) {
        const char *good[] = { "s1", "s2" }, *soon[] = { "soon" }, *expired[] = { "expired" };
        Server *srv = server_new("a", good, 2);
        ConfigDiags d = {};
        TlsServerContext *sc = NULL;
        char *text, *err = NULL;

        ck_assert_int_eq(tls_check_server(srv, &d), 0);
        ck_assert_uint_eq(d.n, 0);

        /* key of another certificate */
        free(srv->tls_certificates[1].key);
        srv->tls_certificates[1].key = strdup(path("s1.key"));
        srv->tls_certificates[1].line = 14;
        ck_assert_int_eq(tls_check_server(srv, &d), -EINVAL);
        text = diags_text(&d);
        ck_assert_msg(strstr(text, "test.conf:14: key \"") && strstr(text, "does not match certificate"), "%s", text);
        free(text);
        config_diags_clear(&d);
        ck_assert_int_lt(tls_server_context_new(&srv, 1, NULL, &sc, &err), 0);
        ck_assert_msg(strstr(err, "test.conf:14: "), "%s", err);
        free(err);

        /* unreadable key */
        free(srv->tls_certificates[1].key);
        srv->tls_certificates[1].key = strdup(path("missing.key"));
        ck_assert_int_eq(tls_check_server(srv, &d), -EINVAL);
        text = diags_text(&d);
        ck_assert_msg(strstr(text, "missing.key\": cannot read"), "%s", text);
        free(text);
        config_diags_clear(&d);
        server_free(srv);

        srv = server_new("b", soon, 1);
        ck_assert_int_eq(tls_check_server(srv, &d), 0);
        ck_assert_uint_eq(d.n, 1);
        text = diags_text(&d);
        ck_assert_msg(strstr(text, "test.conf:10: warning: certificate \"") && strstr(text, "expires in "), "%s",
                      text);
        free(text);
        config_diags_clear(&d);
        server_free(srv);

        srv = server_new("c", expired, 1);
        ck_assert_int_eq(tls_check_server(srv, &d), 0);
        text = diags_text(&d);
        ck_assert_msg(strstr(text, "warning: certificate \"") && strstr(text, "has expired"), "%s", text);
        free(text);
        config_diags_clear(&d);
        server_free(srv);
}
END_TEST

START_TEST(test_config_tls) {
        char conf[600], *text;
        Config *c = NULL;
        ConfigDiags d = {};
        FILE *f;
        TlsClientSet *set = NULL;
        char *err = NULL;

        snprintf(conf, sizeof(conf), "%s", path("proxyd.conf"));
        f = fopen(conf, "we");
        ck_assert_ptr_nonnull(f);
        fprintf(f,
                "servers = ( {\n"
                "  name = \"a\"; listen = [ \"127.0.0.1:18443\" ];\n"
                "  set_header = { X-Forwarded-For = \"$remote_addr\"; };\n"
                "  tls = { certificate = \"%s\"; key = \"%s\";\n"
                "          client_ca = \"%s\"; verify_client = \"optional\";\n"
                "          priority = \"NORMAL:-VERS-TLS1.0\"; };\n"
                "  locations = ( { prefix = \"/\"; proxy_pass = \"https://127.0.0.1:9443\";\n"
                "                  ssl_trusted_certificate = \"%s\";\n"
                "                  ssl_certificate = \"%s\"; ssl_certificate_key = \"%s\"; } );\n"
                "} );\n",
                path("s1.pem"), path("s1.key"), path("ca.pem"), path("ca.pem"), path("client.pem"),
                path("client.key"));
        fclose(f);
        ck_assert_int_eq(config_load(conf, &c, &d), 0);
        ck_assert_int_eq(tls_check_config(c, &d), 0);
        text = diags_text(&d);
        ck_assert_msg(d.n_errors == 0, "%s", text);
        free(text);
        config_diags_clear(&d);
        ck_assert_int_eq(c->servers[0]->tls_verify_client, TLS_VERIFY_CLIENT_OPTIONAL);
        ck_assert_str_eq(c->servers[0]->tls_client_ca, path("ca.pem"));
        ck_assert_int_eq(c->servers[0]->tls_priority_line, 6);
        ck_assert_str_eq(c->servers[0]->locations[0]->s.ssl_certificate, path("client.pem"));
        ck_assert_str_eq(c->servers[0]->locations[0]->s.ssl_certificate_key, path("client.key"));
        ck_assert_int_eq(tls_client_set_new(c, &set, &err), 0);
        ck_assert_ptr_nonnull(tls_client_set_get(set, &c->servers[0]->locations[0]->s));
        ck_assert_ptr_null(tls_client_set_get(set, &c->servers[0]->s));
        tls_client_set_free(set);
        config_unref(c);
        c = NULL;

        /* verify_client without client_ca; ssl_certificate without its key; a plain server on a TLS socket */
        f = fopen(conf, "we");
        ck_assert_ptr_nonnull(f);
        fprintf(f,
                "servers = ( {\n"
                "  name = \"a\"; listen = [ \"127.0.0.1:18443\" ];\n"
                "  tls = { certificate = \"%s\"; key = \"%s\"; verify_client = \"on\"; };\n"
                "  locations = ( { prefix = \"/\"; proxy_pass = \"https://127.0.0.1:9443\";\n"
                "                  ssl_certificate = \"%s\"; } );\n"
                "}, {\n"
                "  name = \"b\"; listen = [ \"127.0.0.1:18443\" ];\n"
                "  locations = ( { prefix = \"/\"; return = 200; } );\n"
                "} );\n",
                path("s1.pem"), path("s1.key"), path("client.pem"));
        fclose(f);
        ck_assert_int_eq(config_load(conf, &c, &d), -EINVAL);
        text = diags_text(&d);
        ck_assert_msg(strstr(text, ":3: verify_client needs \"client_ca\""), "%s", text);
        ck_assert_msg(strstr(text, "server \"b\" has no tls on listen \"127.0.0.1:18443\""), "%s", text);
        free(text);
        config_diags_clear(&d);
}
END_TEST

/* 8 MiB through a small socket buffer: every -EAGAIN retry must continue the byte stream. */
START_TEST(test_writev_eagain) {
        const char *certs[] = { "s1" };
        Server *srv = server_new("a", certs, 1);
        TlsServerContext *sc = server_ctx(&srv, 1, NULL);
        TlsClientContext *cc = client_ctx("ca.pem", NULL);
        const size_t total = 8u << 20;
        unsigned char *src = malloc(total), *dst = malloc(total), *moved = malloc(65536);
        unsigned char h1[32], h2[32];
        size_t sent = 0, got = 0;
        unsigned eagain = 0, partial = 0, seed = 12345;
        int sz = 4096;
        Conn2 x;

        ck_assert(src && dst && moved);
        for (size_t i = 0; i < total; i++) {
                seed = seed * 1103515245u + 12345u;
                src[i] = (unsigned char) (seed >> 16);
        }
        connect2(&x, cc, sc, "example.test", "example.test", true);
        ck_assert_int_eq(x.rc, 0);
        ck_assert_int_eq(x.rs, 0);
        (void) setsockopt(x.s.fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
        (void) setsockopt(x.c.fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));

        while (got < total) {
                /* the server writes as long as it can, with iovecs of mixed sizes */
                for (int round = 0; round < 64 && sent < total; round++) {
                        struct iovec iov[4];
                        size_t left = total - sent, off = sent, lens[4] = { 7, 300, 20000, 70000 };
                        int n = 0;
                        ssize_t k;

                        lens[0] = 1 + (sent % 13);
                        for (; n < 4 && left > 0; n++) {
                                size_t l = MIN(lens[n], left);
                                iov[n] = (struct iovec) { .iov_base = src + off, .iov_len = l };
                                off += l;
                                left -= l;
                        }
                        /* every other retry, from a copy at another address: the data, not the
                         * pointer, is what must be the same */
                        if (eagain % 2 == 1 && iov[0].iov_len <= 65536) {
                                memcpy(moved, iov[0].iov_base, iov[0].iov_len);
                                iov[0].iov_base = moved;
                        }
                        k = stream_writev(&x.s, iov, n);
                        if (k == -EAGAIN) {
                                eagain++;
                                ck_assert(stream_events(&x.s, EPOLLOUT) & EPOLLOUT);
                                break;
                        }
                        ck_assert_int_gt(k, 0);
                        if ((size_t) k < off - sent)
                                partial++;
                        sent += (size_t) k;
                }
                /* the client reads what is there */
                for (;;) {
                        ssize_t k = stream_read(&x.c, dst + got, MIN((size_t) 5000, total - got));
                        if (k == -EAGAIN || got >= total)
                                break;
                        ck_assert_int_gt(k, 0);
                        got += (size_t) k;
                        if (got >= total)
                                break;
                }
        }
        ck_assert_uint_eq(sent, total);
        ck_assert_uint_eq(got, total);
        ck_assert_uint_gt(eagain, 0);
        ck_assert_int_eq(gnutls_hash_fast(GNUTLS_DIG_SHA256, src, total, h1), 0);
        ck_assert_int_eq(gnutls_hash_fast(GNUTLS_DIG_SHA256, dst, total, h2), 0);
        ck_assert(memcmp(h1, h2, sizeof(h1)) == 0);

        close2(&x);
        free(src);
        free(dst);
        free(moved);
        tls_client_context_free(cc);
        tls_server_context_free(sc);
        server_free(srv);
}
END_TEST

static Suite *tls_suite(void) {
        Suite *s = suite_create("tls");
        TCase *tc = tcase_create("core");

        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_handshake_default);
        tcase_add_test(tc, test_protocol_surface);
        tcase_add_test(tc, test_renegotiation_refused);
        tcase_add_test(tc, test_sni);
        tcase_add_test(tc, test_sni_servers);
        tcase_add_test(tc, test_resumption_tls13);
        tcase_add_test(tc, test_resumption_tls12);
        tcase_add_test(tc, test_verify_failures);
        tcase_add_test(tc, test_mtls);
        tcase_add_test(tc, test_priority_validation);
        tcase_add_test(tc, test_check_pairs);
        tcase_add_test(tc, test_config_tls);
        tcase_add_test(tc, test_writev_eagain);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr;
        int failed;

        make_fixtures();
        sr = srunner_create(tls_suite());
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        remove_fixtures();
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
