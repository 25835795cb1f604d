/* SPDX-License-Identifier: MIT */
/*
 * Checks of a configuration's TLS files for `proxyd -t` and reloads: that each certificate
 * chain and key can be read and belong together, and that CA files load, reported as
 * file:line diagnostics. GnuTLS codes stay in this file.
 */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config-merge.h"
#include "tls.h"
#include "util.h"

static int load_chain(const char *path, gnutls_x509_crt_t **ret, unsigned *ret_n, const char **ret_err) {
        gnutls_datum_t data = {};
        int r = gnutls_load_file(path, &data);

        if (r < 0) {
                *ret_err = "cannot read the file";
                return r;
        }
        r = gnutls_x509_crt_list_import2(ret, ret_n, &data, GNUTLS_X509_FMT_PEM, 0);
        gnutls_free(data.data);
        if (r < 0) {
                *ret_err = gnutls_strerror(r);
                return r;
        }
        if (*ret_n == 0) {
                *ret_err = "no certificate found";
                return GNUTLS_E_NO_CERTIFICATE_FOUND;
        }
        return 0;
}

static void free_chain(gnutls_x509_crt_t *c, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                gnutls_x509_crt_deinit(c[i]);
        gnutls_free(c);
}

static int check_pair(const char *cert, const char *key, const char *file, int line, const char *what,
                      ConfigDiags *d) {
        gnutls_x509_crt_t *chain = NULL;
        unsigned n = 0;
        gnutls_datum_t data = {};
        gnutls_x509_privkey_t pk = NULL;
        unsigned char id1[64], id2[64];
        size_t n1 = sizeof(id1), n2 = sizeof(id2);
        const char *err = NULL;
        int r;

        r = load_chain(cert, &chain, &n, &err);
        if (r < 0)
                return config_diag_add(d, file, line, false, "%s \"%s\": %s", what, cert, err);

        {
                time_t exp = gnutls_x509_crt_get_expiration_time(chain[0]);
                time_t now = time(NULL);
                if (exp != (time_t) -1) {
                        long days = (long) ((exp - now) / 86400);
                        if (exp <= now)
                                r = config_diag_add(d, file, line, true, "%s \"%s\" has expired (%ld days ago)", what,
                                                    cert, (long) ((now - exp) / 86400));
                        else if (exp - now < (time_t) TLS_EXPIRY_WARN_DAYS * 86400)
                                r = config_diag_add(d, file, line, true, "%s \"%s\" expires in %ld days", what, cert,
                                                    days);
                        if (r < 0)
                                goto finish;
                }
        }

        r = gnutls_load_file(key, &data);
        if (r < 0) {
                r = config_diag_add(d, file, line, false, "key \"%s\": cannot read the file", key);
                goto finish;
        }
        r = gnutls_x509_privkey_init(&pk);
        if (r >= 0)
                r = gnutls_x509_privkey_import2(pk, &data, GNUTLS_X509_FMT_PEM, NULL, 0);
        gnutls_memset(data.data, 0, data.size);
        gnutls_free(data.data);
        if (r < 0) {
                r = config_diag_add(d, file, line, false, "key \"%s\": %s", key, gnutls_strerror(r));
                goto finish;
        }
        if (gnutls_x509_crt_get_key_id(chain[0], GNUTLS_KEYID_USE_SHA256, id1, &n1) < 0 ||
            gnutls_x509_privkey_get_key_id(pk, GNUTLS_KEYID_USE_SHA256, id2, &n2) < 0 || n1 != n2 ||
            memcmp(id1, id2, n1) != 0)
                r = config_diag_add(d, file, line, false, "key \"%s\" does not match %s \"%s\"", key, what, cert);
        else
                r = 0;
finish:
        if (pk)
                gnutls_x509_privkey_deinit(pk);
        free_chain(chain, n);
        return r;
}

static int check_ca_file(const char *path, const char *file, int line, const char *what, ConfigDiags *d) {
        gnutls_x509_crt_t *chain = NULL;
        unsigned n = 0;
        const char *err = NULL;

        if (load_chain(path, &chain, &n, &err) < 0)
                return config_diag_add(d, file, line, false, "%s \"%s\": %s", what, path, err);
        free_chain(chain, n);
        return 0;
}

int tls_check_server(const Server *s, ConfigDiags *d) {
        size_t errors = d->n_errors;
        int r;

        for (size_t i = 0; i < s->n_tls_certificates; i++) {
                const TlsCertificate *tc = &s->tls_certificates[i];
                r = check_pair(tc->certificate, tc->key, tc->file, tc->line, "certificate", d);
                if (r == -ENOMEM)
                        return r;
        }
        if (s->n_tls_certificates > 0 && s->tls_priority) {
                gnutls_priority_t p = NULL;
                const char *err_pos = NULL;
                r = gnutls_priority_init2(&p, s->tls_priority, &err_pos, 0);
                if (r < 0)
                        r = config_diag_add(d, s->tls_priority_file ?: s->tls_file, s->tls_priority_line ?: s->tls_line,
                                            false, "invalid TLS priority at \"%s\": %s", err_pos ?: s->tls_priority,
                                            gnutls_strerror(r));
                else {
                        gnutls_priority_deinit(p);
                        r = 0;
                }
                if (r == -ENOMEM)
                        return r;
        }
        if (s->n_tls_certificates > 0 && s->tls_client_ca && s->tls_verify_client != TLS_VERIFY_CLIENT_OFF) {
                r = check_ca_file(s->tls_client_ca, s->tls_file, s->tls_line, "client_ca", d);
                if (r == -ENOMEM)
                        return r;
        }
        for (size_t i = 0; i < s->n_locations; i++) {
                const Location *loc = s->locations[i];
                if (!loc->proxy || !loc->proxy->https)
                        continue;
                if (loc->s.ssl_certificate && loc->s.ssl_certificate_key) {
                        r = check_pair(loc->s.ssl_certificate, loc->s.ssl_certificate_key, loc->file, loc->line,
                                       "ssl_certificate", d);
                        if (r == -ENOMEM)
                                return r;
                }
                if (loc->s.ssl_trusted_certificate) {
                        r = check_ca_file(loc->s.ssl_trusted_certificate, loc->file, loc->line,
                                          "ssl_trusted_certificate", d);
                        if (r == -ENOMEM)
                                return r;
                }
        }
        return d->n_errors > errors ? -EINVAL : 0;
}

int tls_check_config(const Config *c, ConfigDiags *d) {
        int ret = 0;

        for (size_t i = 0; i < c->n_servers; i++) {
                int r = tls_check_server(c->servers[i], d);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        ret = r;
        }
        return ret;
}
