/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <assert.h>
#include <netdb.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/un.h>
#include <syslog.h>

#include "config-schema.h"
#include "util.h"

/* ---- checks and parsers the tables refer to ---- */

int config_parse_access_log(Loader *l, const config_setting_t *s, SchemaWalk *w) {
        /* true: the journal; false: off; "/path": a file, written in blocks */
        Config *c = w->target;
        int type = config_setting_type(s);
        const char *file = type == CONFIG_TYPE_STRING ? config_setting_get_string(s) : NULL;

        free(c->access_log_file);
        c->access_log_file = NULL;
        if (type == CONFIG_TYPE_BOOL)
                c->access_log = config_setting_get_bool(s);
        else if (file && file[0] == '/') {
                c->access_log = true;
                c->access_log_file = strdup(file);
                c->access_log_src = config_setting_origin(s, &l->files, &c->access_log_line);
                if (!c->access_log_file)
                        return -ENOMEM;
        } else
                return ERR(l, s, "\"access_log\" must be true, false or an absolute file name");
        return 0;
}

int config_check_resolver(Loader *l, const config_setting_t *s, const void *value, size_t n) {
        char *const *a = value;
        int r = 0;

        for (size_t k = 0; r >= 0 && k < n; k++) {
                /* ADDR, ADDR:PORT or [ADDR6]:PORT */
                _cleanup_free_ char *h = NULL;
                uint8_t buf[16];
                uint16_t port;
                bool has_port;
                if (inet_pton(AF_INET6, a[k], buf) == 1)
                        continue;
                r = split_host_port(a[k], &h, &port, &has_port);
                if (r == -ENOMEM)
                        break;
                if (r < 0 || (inet_pton(AF_INET, h, buf) != 1 && inet_pton(AF_INET6, h, buf) != 1))
                        r = ERR(l, s, "invalid resolver address \"%s\"", a[k]);
        }
        return r;
}

int config_check_tokens(Loader *l, const config_setting_t *s, const void *value, size_t n) {
        char *const *a = value;
        int r = 0;

        for (size_t k = 0; k < n && r >= 0; k++) {
                const config_setting_t *e = setting_value_at(s, k);
                if (!http1_token_valid(a[k], strlen(a[k])))
                        r = ERR(l, e, "\"%s\": \"%s\" is not a protocol name (an HTTP token, e.g. \"websocket\")",
                                config_setting_name(s), a[k]);
                else if (streq(a[k], "h2c"))
                        /* a tunnelled h2c connection carries requests no location sees */
                        r = ERR(l, e,
                                "\"%s\": \"h2c\" cannot be tunnelled: the backend would take requests "
                                "past every location and access rule",
                                config_setting_name(s));
        }
        return r;
}

int config_check_health_path(Loader *l, const config_setting_t *s, const void *value, size_t n) {
        const char *v = value;

        (void) n;
        if (v[0] != '/')
                return ERR(l, s, "\"path\" must start with \"/\"");
        if (strpbrk(v, " \t\r\n"))
                return ERR(l, s, "\"path\" must not contain white space");
        return 0;
}

/* ---- proxy_pass ---- */

ProxyPass *proxy_pass_free(ProxyPass *p) {
        if (!p)
                return NULL;
        free(p->text);
        free(p->proxy_host);
        free(p->uri);
        free(p);
        return NULL;
}

static int implicit_upstream(Loader *l, const config_setting_t *s, const char *name, const char *address,
                             Upstream **ret) {
        UpstreamServer tmpl = l->server_dflt;
        const char *err = NULL;
        Upstream *u;
        int r;

        u = find_upstream(l->c, name, true);
        if (u) {
                *ret = u;
                return 0;
        }
        r = upstream_new(l, name, true, &u);
        if (r < 0)
                return r;
        set_origin(l, s, &u->file, &u->line);
        tmpl.file = u->file;
        tmpl.line = u->line;
        r = upstream_add_address(u, address, &tmpl, &err);
        if (r < 0) {
                upstream_free(u);
                if (r == -ENOMEM)
                        return r;
                return ERR(l, s, "host not found in proxy_pass \"%s\": %s", config_setting_get_string(s),
                           err ?: "invalid");
        }
        r = config_add_upstream(l->c, u);
        if (r < 0) {
                upstream_free(u);
                return r;
        }
        *ret = u;
        return 0;
}

int config_parse_proxy_pass(Loader *l, const config_setting_t *s, ProxyPass **ret) {
        const char *text = NULL, *rest, *uri;
        ProxyPass *p;
        int r;

        r = get_string(l, s, &text);
        if (r < 0)
                return r;
        p = calloc(1, sizeof(ProxyPass));
        if (!p)
                return -ENOMEM;
        p->text = strdup(text);
        if (!p->text)
                goto oom;

        if (strncmp(text, "http://", 7) == 0)
                rest = text + 7;
        else if (strncmp(text, "https://", 8) == 0)
                rest = text + 8, p->https = true;
        else {
                proxy_pass_free(p);
                return ERR(l, s, "invalid proxy_pass \"%s\": must start with http:// or https://", text);
        }

        if (strncmp(rest, "unix:", 5) == 0) {
                const char *end = strchr(rest + 5, ':');
                _cleanup_free_ char *addr = NULL;

                if (!end || rest[5] != '/') {
                        proxy_pass_free(p);
                        return ERR(l, s, "invalid proxy_pass \"%s\": expected http://unix:/PATH:[URI]", text);
                }
                uri = end + 1;
                addr = strndup(rest, (size_t) (end - rest));
                p->proxy_host = strdup("localhost");
                if (!addr || !p->proxy_host)
                        goto oom;
                r = implicit_upstream(l, s, addr, addr, &p->upstream);
        } else {
                const char *slash = strchr(rest, '/');
                _cleanup_free_ char *host = NULL, *name = NULL;
                uint16_t port = p->https ? 443 : 80;
                bool has_port;

                /* a query or fragment right after the host is not a URI nginx accepts either */
                uri = slash ? slash : rest + strlen(rest);
                p->proxy_host = strndup(rest, (size_t) (uri - rest));
                if (!p->proxy_host)
                        goto oom;
                r = strpbrk(p->proxy_host, "?#@ ") ? -EINVAL
                                                    : split_host_port(p->proxy_host, &host, &port, &has_port);
                if (r == -ENOMEM)
                        goto oom;
                if (r < 0) {
                        proxy_pass_free(p);
                        return ERR(l, s, "invalid host in proxy_pass \"%s\"", text);
                }
                if (!has_port)
                        p->upstream = find_upstream(l->c, host, false);
                if (p->upstream)
                        r = 0;
                else {
                        bool v6 = strchr(host, ':');
                        if (asprintf(&name, v6 ? "[%s]:%u" : "%s:%u", host, port) < 0)
                                goto oom;
                        r = implicit_upstream(l, s, name, name, &p->upstream);
                }
        }
        if (r < 0) {
                proxy_pass_free(p);
                return r;
        }
        if (*uri) {
                p->uri = strdup(uri);
                if (!p->uri)
                        goto oom;
        }
        *ret = p;
        return 0;
oom:
        proxy_pass_free(p);
        return -ENOMEM;
}

/* ---- locations ---- */

void config_location_free(Location *loc) {
        if (!loc)
                return;
        free(loc->pattern);
        pcre2_code_free(loc->re);
        free(loc->return_body);
        free(loc->return_location);
        var_template_free(loc->return_body_t);
        var_template_free(loc->return_location_t);
        if (!loc->proxy_borrowed)
                proxy_pass_free(loc->proxy);
        rules_free(loc->rules, loc->n_rules);
        settings_done(&loc->s);
        free(loc);
}

/* loc's proxy_pass (of the location or of one of its rules) */
int config_location_proxy_pass(Loader *l, const config_setting_t *pp, Location *loc) {
        int r = config_parse_proxy_pass(l, pp, &loc->proxy);

        if (r >= 0 && loc->proxy->uri && (loc->match == MATCH_REGEX || loc->match == MATCH_IREGEX))
                r = ERR(l, pp, "proxy_pass with a URI is not allowed in a regex location");
        return r;
}

/* for the matcher rows: which one came first */
typedef struct LocationCtx {
        Location *loc;
        const config_setting_t *match;
} LocationCtx;

int config_parse_matcher(Loader *l, const config_setting_t *s, SchemaWalk *w) {
        LocationCtx *x = w->ctx;
        const char *v = NULL;

        if (x->match)
                return ERR(l, s, "a location takes exactly one of exact, prefix, regex, iregex");
        x->match = s;
        /* the matcher rows come first in SCHEMA_LOCATION, in LocationMatch order */
        x->loc->match = (LocationMatch) schema_find(&SCHEMA_LOCATION, config_setting_name(s));
        return get_string(l, s, &v);
}

static int parse_location(Loader *l, Server *srv, const config_setting_t *g, Location **ret) {
        const config_setting_t *match, *pp, *ret_s, *body, *locs, *stop;
        PartialSettings p = {};
        LocationCtx x = {};
        SchemaWalk w = { .table = &SCHEMA_LOCATION, .scope = SC_LOCATION, .where = "in a location",
                         .partial = &p, .ctx = &x };
        Location *loc;
        bool bad;
        int r;

        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
                return ERR(l, g, "a location must be a group { ... }");
        loc = calloc(1, sizeof(Location));
        if (!loc)
                return -ENOMEM;
        set_origin(l, g, &loc->file, &loc->line);
        x.loc = w.target = loc;
        r = schema_walk(l, g, &w);
        if (r < 0)
                goto fail;
        bad = w.bad;
        match = x.match;
        pp = seen(&w, "proxy_pass");
        ret_s = seen(&w, "return");
        body = seen(&w, "body");
        locs = seen(&w, "location");
        stop = seen(&w, "stop_regex");

        if (!match) {
                r = ERR(l, g, "a location needs one of exact, prefix, regex or iregex");
                goto fail;
        }
        if (config_setting_type(match) != CONFIG_TYPE_STRING) {
                r = -EINVAL;
                goto fail;
        }
        loc->pattern = strdup(config_setting_get_string(match));
        if (!loc->pattern) {
                r = -ENOMEM;
                goto fail;
        }
        loc->pattern_len = strlen(loc->pattern);
        if (loc->pattern_len == 0) {
                r = ERR(l, match, "empty location pattern");
                goto fail;
        }
        if (loc->match == MATCH_REGEX || loc->match == MATCH_IREGEX) {
                int errcode;
                PCRE2_SIZE off;

                loc->re = pcre2_compile((PCRE2_SPTR) loc->pattern, loc->pattern_len,
                                        loc->match == MATCH_IREGEX ? PCRE2_CASELESS : 0, &errcode, &off, NULL);
                if (!loc->re) {
                        PCRE2_UCHAR msg[256];
                        pcre2_get_error_message(errcode, msg, sizeof(msg));
                        r = ERR(l, match, "invalid regex \"%s\": %s at offset %zu", loc->pattern, (char *) msg,
                                (size_t) off);
                        goto fail;
                }
                (void) pcre2_jit_compile(loc->re, PCRE2_JIT_COMPLETE);
        }
        if (stop && loc->match != MATCH_PREFIX) {
                r = ERR(l, stop, "\"stop_regex\" is only valid with \"prefix\"");
                goto fail;
        }
        if (pp && ret_s) {
                r = ERR(l, g, "a location takes either proxy_pass or return, not both");
                goto fail;
        }
        if (!pp && !ret_s) {
                r = ERR(l, g, "a location needs proxy_pass or return");
                goto fail;
        }
        if (!ret_s && (body || locs)) {
                r = ERR(l, body ?: locs, "\"%s\" is only valid with \"return\"", config_setting_name(body ?: locs));
                goto fail;
        }
        if (bad) {
                r = -EINVAL;
                goto fail;
        }
        if (pp) {
                r = config_location_proxy_pass(l, pp, loc);
                if (r < 0)
                        goto fail;
        }
        r = settings_resolve(&loc->s, &srv->s, &p);
        if (r >= 0)
                r = config_location_finish(l, srv, loc, g);
        if (r < 0)
                goto fail;
        partial_done(&p);
        *ret = loc;
        return 0;
fail:
        partial_done(&p);
        config_location_free(loc);
        return r < 0 ? r : -EINVAL;
}

/* ---- servers and listens ---- */

static Server *server_free(Server *s) {
        if (!s)
                return NULL;
        free(s->name);
        strv_free(s->server_names, s->n_server_names);
        for (size_t i = 0; i < s->n_locations; i++)
                config_location_free(s->locations[i]);
        free(s->locations);
        settings_done(&s->s);
        for (size_t i = 0; i < s->n_tls_certificates; i++) {
                free(s->tls_certificates[i].certificate);
                free(s->tls_certificates[i].key);
        }
        free(s->tls_certificates);
        free(s->tls_priority);
        free(s->tls_client_ca);
        strv_free(s->proxy_protocol_from, s->n_proxy_protocol_from);
        free(s->proxy_protocol_rules);
        free(s);
        return NULL;
}

static bool listen_same(const Listen *a, const Listen *b) {
        if (a->kind != b->kind)
                return false;
        if (a->kind == LISTEN_NAME)
                return streq(a->text, b->text);
        return a->addrlen == b->addrlen && memcmp(&a->addr, &b->addr, a->addrlen) == 0;
}

static int add_listen(Loader *l, Server *srv, const config_setting_t *e, const char *text) {
        Config *c = l->c;
        Listen li;
        int r;

        r = parse_listen_text(text, &li);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return ERR(l, e, "invalid listen \"%s\" (expected a socket name, ADDR:PORT, [IPV6]:PORT, PORT or unix:/PATH)",
                           text);
        li.text = (char *) text;
        for (size_t i = 0; i < c->n_listens; i++) {
                Listen *x = &c->listens[i];
                Server **a;

                if (!listen_same(x, &li))
                        continue;
                for (size_t k = 0; k < x->n_servers; k++)
                        if (x->servers[k] == srv)
                                return 0;
                a = reallocarray(x->servers, x->n_servers + 1, sizeof(Server *));
                if (!a)
                        return -ENOMEM;
                x->servers = a;
                a[x->n_servers++] = srv;
                return 0;
        }
        {
                Listen *a = reallocarray(c->listens, c->n_listens + 1, sizeof(Listen));
                if (!a)
                        return -ENOMEM;
                c->listens = a;
                li.text = strdup(text);
                li.servers = calloc(1, sizeof(Server *));
                if (!li.text || !li.servers) {
                        free(li.text);
                        free(li.servers);
                        return -ENOMEM;
                }
                li.servers[0] = srv;
                li.n_servers = 1;
                set_origin(l, e, &li.file, &li.line);
                a[c->n_listens++] = li;
        }
        return 0;
}

int config_parse_tls_priority(Loader *l, const config_setting_t *s, SchemaWalk *w) {
        Server *srv = w->target;
        const char *v = NULL;
        int r;

        r = get_string(l, s, &v);
        if (r < 0)
                return r;
        free(srv->tls_priority);
        srv->tls_priority = strdup(v);
        if (!srv->tls_priority)
                return -ENOMEM;
        set_origin(l, s, &srv->tls_priority_file, &srv->tls_priority_line);
        return 0;
}

/* The tls group itself (allow_more) or an entry of its certificates list. */
static int parse_tls_cert(Loader *l, const config_setting_t *g, TlsCertificate *ret, bool allow_more,
                          Server *srv) {
        TlsCertificate t = {};
        SchemaWalk w = { .table = &SCHEMA_TLS, .scope = allow_more ? SC_TLS : SC_TLS_CERT, .where = "in tls",
                         .target = srv, .ctx = &t };
        int r;

        set_origin(l, g, &t.file, &t.line);
        r = schema_walk(l, g, &w);
        if (r < 0) {
                free(t.certificate);
                free(t.key);
                return r;
        }
        *ret = t;
        return w.bad ? -EINVAL : 0;
}

static int tls_push(Server *srv, TlsCertificate *t) {
        TlsCertificate *a = reallocarray(srv->tls_certificates, srv->n_tls_certificates + 1, sizeof(*a));

        if (!a)
                return -ENOMEM;
        srv->tls_certificates = a;
        a[srv->n_tls_certificates++] = *t;
        *t = (TlsCertificate) {};
        return 0;
}

static int parse_tls(Loader *l, Server *srv, const config_setting_t *g) {
        const config_setting_t *more;
        TlsCertificate t = {};
        int r, ret = 0;

        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
                return ERR(l, g, "\"tls\" must be a group");
        set_origin(l, g, &srv->tls_file, &srv->tls_line);
        r = parse_tls_cert(l, g, &t, true, srv);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                ret = -EINVAL;
        if (t.certificate || t.key) {
                if (!t.certificate || !t.key)
                        ret = ERR(l, g, "tls needs both \"certificate\" and \"key\"");
                else if (tls_push(srv, &t) < 0)
                        ret = -ENOMEM;
        }
        free(t.certificate);
        free(t.key);
        if (ret == -ENOMEM)
                return ret;
        more = config_setting_get_member(g, "certificates");
        if (more) {
                if (config_setting_type(more) != CONFIG_TYPE_LIST)
                        return ERR(l, more, "\"certificates\" must be a list ( { certificate = ...; key = ...; }, ... )");
                for (int i = 0; i < config_setting_length(more); i++) {
                        const config_setting_t *e = config_setting_get_elem(more, (unsigned) i);
                        t = (TlsCertificate) {};
                        if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
                                TRY(ret = ERR(l, e, "a certificate must be a group"));
                                continue;
                        }
                        r = parse_tls_cert(l, e, &t, false, srv);
                        if (r >= 0 && (!t.certificate || !t.key))
                                r = ERR(l, e, "tls needs both \"certificate\" and \"key\"");
                        if (r >= 0)
                                r = tls_push(srv, &t);
                        free(t.certificate);
                        free(t.key);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0)
                                ret = r;
                }
        }
        if (srv->n_tls_certificates == 0 && ret >= 0)
                return ERR(l, g, "tls without a certificate");
        if (srv->tls_verify_client != TLS_VERIFY_CLIENT_OFF && !srv->tls_client_ca &&
            !config_setting_get_member(g, "client_ca"))
                return ERR(l, g, "verify_client needs \"client_ca\" (the CA file client certificates are checked against)");
        if (srv->tls_verify_client == TLS_VERIFY_CLIENT_OFF && srv->tls_client_ca)
                TRY(WARN(l, config_setting_get_member(g, "client_ca"),
                         "client_ca is set but verify_client is \"off\": client certificates are not requested"));
        return ret;
}

static int parse_server(Loader *l, const config_setting_t *g, const LocationSettings *defaults) {
        const config_setting_t *name, *listen, *locs, *tls;
        PartialSettings p = {};
        SchemaWalk w = { .table = &SCHEMA_SERVER, .scope = SC_SERVER, .where = "in a server", .partial = &p };
        Config *c = l->c;
        Server *srv, **a;
        int r;

        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
                return ERR(l, g, "a server must be a group { ... }");
        srv = calloc(1, sizeof(Server));
        if (!srv)
                return -ENOMEM;
        a = reallocarray(c->servers, c->n_servers + 1, sizeof(Server *));
        if (!a) {
                free(srv);
                return -ENOMEM;
        }
        c->servers = a;
        a[c->n_servers++] = srv;
        set_origin(l, g, &srv->file, &srv->line);
        srv->limits = HTTP_LIMITS_DEFAULT;

        w.target = srv;
        r = schema_walk(l, g, &w);
        if (r < 0)
                goto finish;
        name = seen(&w, "name");
        listen = seen(&w, "listen");
        locs = seen(&w, "locations");
        tls = seen(&w, "tls");

        if (!name) {
                r = ERR(l, g, "a server needs a \"name\"");
                TRY(r);
        } else if (config_setting_type(name) == CONFIG_TYPE_STRING) {
                const char *v = config_setting_get_string(name);
                for (size_t i = 0; i + 1 < c->n_servers; i++)
                        if (streq_ptr(c->servers[i]->name, v)) {
                                r = ERR(l, name, "duplicate server name \"%s\" (first defined at %s:%d)", v,
                                        c->servers[i]->file ?: "?", c->servers[i]->line);
                                TRY(r);
                        }
                srv->name = strdup(v);
                if (!srv->name) {
                        r = -ENOMEM;
                        goto finish;
                }
        }

        for (size_t i = 0; i < srv->n_server_names; i++)
                if (!*srv->server_names[i] || strpbrk(srv->server_names[i], " /\t"))
                        TRY(ERR(l, config_setting_get_member(g, "server_name"), "invalid server_name \"%s\"",
                                srv->server_names[i]));

        if (!listen)
                TRY(ERR(l, g, "server \"%s\" has no \"listen\"", srv->name ?: "?"));
        else if (config_setting_type(listen) == CONFIG_TYPE_STRING)
                TRY(add_listen(l, srv, listen, config_setting_get_string(listen)));
        else if (config_setting_type(listen) != CONFIG_TYPE_ARRAY && config_setting_type(listen) != CONFIG_TYPE_LIST)
                TRY(ERR(l, listen, "\"listen\" must be a list of strings"));
        else if (config_setting_length(listen) == 0)
                TRY(ERR(l, listen, "server \"%s\" has no \"listen\"", srv->name ?: "?"));
        else
                for (int i = 0; i < config_setting_length(listen); i++) {
                        const config_setting_t *e = config_setting_get_elem(listen, (unsigned) i);
                        if (config_setting_type(e) != CONFIG_TYPE_STRING)
                                TRY(ERR(l, e, "\"listen\" must be a list of strings"));
                        else
                                TRY(add_listen(l, srv, e, config_setting_get_string(e)));
                }

        if (tls)
                TRY(parse_tls(l, srv, tls));

        r = settings_resolve(&srv->s, defaults, &p);
        if (r < 0)
                goto finish;
        srv->limits.max_request_line = (size_t) srv->s.client_max_request_line;
        srv->limits.max_field_size = (size_t) srv->s.client_max_header_line;
        srv->limits.max_head_size = (size_t) srv->s.client_max_header_size;
        srv->limits.max_headers = (size_t) MIN(srv->s.client_max_headers, (uint64_t) 10000);
        srv->limits.max_chunk_overhead = (size_t) srv->s.client_max_chunk_overhead;
        if (srv->limits.max_headers == 0 || srv->limits.max_request_line < 16 || srv->limits.max_field_size < 16 ||
            srv->limits.max_head_size < srv->limits.max_request_line)
                TRY(ERR(l, g, "server \"%s\": head limits too small (client_max_request_line and "
                        "client_max_header_line at least 16, client_max_header_size at least the request line, "
                        "client_max_headers at least 1)", srv->name ?: "?"));

        if (srv->admin) {
                /* proxyd answers there itself (admin.c): metrics, status page, control */
                if (locs)
                        TRY(ERR(l, locs, "server \"%s\" has admin = true: it takes no \"locations\"",
                                srv->name ?: "?"));
        } else if (!locs)
                TRY(ERR(l, g, "server \"%s\" has no \"locations\"", srv->name ?: "?"));
        else if (config_setting_type(locs) != CONFIG_TYPE_LIST)
                TRY(ERR(l, locs, "\"locations\" must be a list ( { ... }, ... )"));
        else if (config_setting_length(locs) > CONFIG_LIST_MAX)
                TRY(ERR(l, locs, "too many locations"));
        else {
                srv->locations = calloc((size_t) config_setting_length(locs) + 1, sizeof(Location *));
                if (!srv->locations) {
                        r = -ENOMEM;
                        goto finish;
                }
                for (int i = 0; i < config_setting_length(locs); i++) {
                        Location *loc = NULL;
                        r = parse_location(l, srv, config_setting_get_elem(locs, (unsigned) i), &loc);
                        if (r == -ENOMEM)
                                goto finish;
                        if (r >= 0)
                                srv->locations[srv->n_locations++] = loc;
                }
        }
        r = 0;
finish:
        partial_done(&p);
        return r;
}

/* ---- warnings ---- */

static bool has_header(const LocationSettings *s, const char *name) {
        for (size_t i = 0; i < s->n_set_header; i++)
                if (strcasecmp(s->set_header[i].name, name) == 0 && s->set_header[i].value)
                        return true;
        return false;
}

static int warn_location(Loader *l, const Location *loc, const config_setting_t *g) {
        const config_setting_t *pp = config_setting_get_member(g, "proxy_pass");
        const ProxyPass *p = loc->proxy;

        if (!p)
                return 0;
        if (loc->match == MATCH_PREFIX && p->uri) {
                bool a = loc->pattern[loc->pattern_len - 1] == '/';
                bool b = p->uri[strlen(p->uri) - 1] == '/';
                if (a != b)
                        TRY(WARN(l, pp,
                                 "prefix \"%s\" %s trailing slash but the proxy_pass URI \"%s\" %s: "
                                 "\"%s%s\" becomes \"%s%s\"",
                                 loc->pattern, a ? "ends with a" : "has no", p->uri, b ? "does" : "does not",
                                 loc->pattern, a ? "x" : "/x", p->uri, a ? "x" : "/x"));
        }
        if (p->https && !loc->s.ssl_certificate != !loc->s.ssl_certificate_key)
                TRY(ERR(l, pp, "https upstream \"%s\" needs both \"ssl_certificate\" and \"ssl_certificate_key\" "
                        "(or neither)", p->text));
        if (p->https && !loc->s.ssl_server_name)
                TRY(WARN(l, pp, "https upstream \"%s\" with ssl_server_name = false: no SNI is sent", p->text));
        if (p->https && !loc->s.ssl_verify)
                TRY(WARN(l, pp, "https upstream \"%s\" with ssl_verify = false: its certificate is not verified",
                         p->text));
        if (!loc->s.websocket && has_header(&loc->s, "Upgrade"))
                TRY(WARN(l, g, "set_header sets \"Upgrade\" but websocket = false: Upgrade requests are not tunnelled"));
        return 0;
}

static int warn_server(Loader *l, const Server *srv, const config_setting_t *g) {
        const config_setting_t *locs = config_setting_get_member(g, "locations");
        bool forwards = true;

        for (size_t i = 0; i < srv->n_locations; i++) {
                const Location *loc = srv->locations[i];
                const config_setting_t *lg = NULL;

                /* locations were kept in file order, skipping invalid ones; find this one's group */
                for (int k = 0; locs && k < config_setting_length(locs); k++) {
                        const config_setting_t *e = config_setting_get_elem(locs, (unsigned) k);
                        int line;
                        const char *f = config_setting_origin(e, &l->files, &line);
                        if (f == loc->file && line == loc->line)
                                lg = e;
                }
                if (lg)
                        TRY(warn_location(l, loc, lg));
                if (loc->proxy && !has_header(&loc->s, "X-Forwarded-For") && !has_header(&loc->s, "X-Real-IP") &&
                    !has_header(&loc->s, "Forwarded"))
                        forwards = false;
        }
        if (!forwards)
                TRY(WARN(l, g,
                         "server \"%s\" proxies without forwarding the client address "
                         "(no X-Forwarded-For, X-Real-IP or Forwarded in set_header)",
                         srv->name ?: "?"));
        return 0;
}

/* ---- top level ---- */

static int parse_top(Loader *l, config_setting_t *root) {
        const config_setting_t *upstreams, *defaults, *servers;
        LocationSettings base = {}, dflt = {};
        PartialSettings p = {};
        SchemaWalk w = { .table = &SCHEMA_TOP, .scope = SC_TOP, .where = "at the top level", .target = l->c };
        SchemaWalk dw = { .scope = SC_DEFAULTS, .where = "in defaults", .partial = &p };
        Config *c = l->c;
        int r;

        r = schema_defaults(&SCHEMA_TOP, SC_TOP, c, NULL);
        if (r < 0)
                return r;
        TRY(schema_walk(l, root, &w));
        upstreams = seen(&w, "upstreams");
        defaults = seen(&w, "defaults");
        servers = seen(&w, "servers");

        if (upstreams) {
                if (config_setting_type(upstreams) != CONFIG_TYPE_GROUP)
                        TRY(ERR(l, upstreams, "\"upstreams\" must be a group { NAME = { ... }; ... }"));
                else
                        for (int i = 0; i < config_setting_length(upstreams); i++)
                                TRY(parse_upstream(l, config_setting_get_elem(upstreams, (unsigned) i)));
        }

        r = settings_builtin(&base);
        if (r < 0)
                goto finish;
        if (defaults) {
                if (config_setting_type(defaults) != CONFIG_TYPE_GROUP)
                        r = ERR(l, defaults, "\"defaults\" must be a group { ... }");
                else {
                        r = schema_walk(l, defaults, &dw);
                        if (r < 0)
                                goto finish;
                }
        }
        r = settings_resolve(&dflt, &base, &p);
        if (r < 0)
                goto finish;

        if (!servers || (config_setting_type(servers) == CONFIG_TYPE_LIST && config_setting_length(servers) == 0))
                r = config_diag_add(l->diags, l->files.n_files > 0 ? l->files.files[0] : NULL, 0, false,
                                    "no servers configured");
        else if (config_setting_type(servers) != CONFIG_TYPE_LIST)
                r = ERR(l, servers, "\"servers\" must be a list ( { ... }, ... )");
        else if (config_setting_length(servers) > CONFIG_LIST_MAX)
                r = ERR(l, servers, "too many servers");
        else
                for (int i = 0; i < config_setting_length(servers); i++) {
                        r = parse_server(l, config_setting_get_elem(servers, (unsigned) i), &dflt);
                        if (r == -ENOMEM)
                                goto finish;
                }
        if (r == -ENOMEM)
                goto finish;

        r = config_admin_setup(l, &dflt);
        if (r == -ENOMEM)
                goto finish;

        for (size_t i = 0; i < c->n_listens; i++) {
                const Listen *li = &c->listens[i];
                for (size_t k = 1; k < li->n_servers; k++)
                        if ((li->servers[k]->n_tls_certificates > 0) != (li->servers[0]->n_tls_certificates > 0)) {
                                r = config_diag_add(l->diags, li->servers[k]->file, li->servers[k]->line, false,
                                                    "server \"%s\" %s tls on listen \"%s\" but server \"%s\" "
                                                    "(the default there) %s: a socket is either TLS or plain",
                                                    li->servers[k]->name ?: "?",
                                                    li->servers[k]->n_tls_certificates > 0 ? "has" : "has no",
                                                    li->text, li->servers[0]->name ?: "?",
                                                    li->servers[0]->n_tls_certificates > 0 ? "has" : "does not");
                                if (r == -ENOMEM)
                                        goto finish;
                                break;
                        }
        }

        /* h2c: no TLS, so nothing tells a client's HTTP/2 from an attacker's on a path to it */
        for (size_t i = 0; i < c->n_listens; i++) {
                const Listen *li = &c->listens[i];
                const Server *d = li->n_servers > 0 ? li->servers[0] : NULL;
                if (!d || !d->s.http2_cleartext || d->n_tls_certificates > 0 || li->kind != LISTEN_INET)
                        continue;
                bool loopback = li->addr.ss_family == AF_INET ?
                                        (ntohl(((const struct sockaddr_in *) &li->addr)->sin_addr.s_addr) >> 24) == 127 :
                                        IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *) &li->addr)->sin6_addr);
                if (loopback)
                        continue;
                r = config_diag_add(l->diags, d->file, d->line, true,
                                    "server \"%s\" enables http2_cleartext on \"%s\", which is not a loopback address: "
                                    "cleartext HTTP/2 belongs behind a TLS terminator on a private address",
                                    d->name ?: "?", li->text);
                if (r == -ENOMEM)
                        goto finish;
        }

        if (l->diags->n_errors == 0 && servers)
                for (size_t i = 0; i < c->n_servers; i++) {
                        if (c->servers[i]->admin)
                                continue;
                        r = warn_server(l, c->servers[i], config_setting_get_elem(servers, (unsigned) i));
                        if (r < 0)
                                goto finish;
                }
        r = 0;
finish:
        partial_done(&p);
        settings_done(&base);
        settings_done(&dflt);
        return r;
}

/* ---- lifetime ---- */

static Config *config_free(Config *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->n_servers; i++)
                server_free(c->servers[i]);
        free(c->servers);
        server_free(c->admin_builtin);
        for (size_t i = 0; i < c->n_upstreams; i++)
                upstream_free(c->upstreams[i]);
        free(c->upstreams);
        for (size_t i = 0; i < c->n_limits; i++)
                limit_zone_free(c->limits[i]);
        free(c->limits);
        config_auth_free(c);
        for (size_t i = 0; i < c->n_listens; i++) {
                free(c->listens[i].text);
                free(c->listens[i].servers);
        }
        free(c->listens);
        strv_free(c->resolver, c->n_resolver);
        free(c->cache_path);
        free(c->access_log_file);
        strv_free(c->files, c->n_files);
        if (c->merged) {
                config_destroy(c->merged);
                free(c->merged);
        }
        free(c);
        return NULL;
}

Config *config_ref(Config *c) {
        if (c)
                atomic_fetch_add_explicit(&c->refcount, 1, memory_order_relaxed);
        return c;
}

Config *config_unref(Config *c) {
        if (!c)
                return NULL;
        if (atomic_fetch_sub_explicit(&c->refcount, 1, memory_order_acq_rel) == 1)
                config_free(c);
        return NULL;
}

/* The defaults of the upstream tables, parsed once per load. */
static int loader_defaults(Loader *l) {
        int r;

        r = schema_defaults(&SCHEMA_UPSTREAM, SC_UPSTREAM, &l->upstream_dflt, NULL);
        if (r >= 0)
                r = schema_defaults(&SCHEMA_UPSTREAM_SERVER, SC_UPSTREAM_SERVER, &l->server_dflt, NULL);
        if (r >= 0)
                r = schema_defaults(&SCHEMA_HEALTH_CHECK, SC_HEALTH_CHECK, &l->health_dflt, NULL);
        return r;
}

int config_load(const char *path, Config **ret, ConfigDiags *diags) {
        ConfigDiags local = {};
        Loader l = {};
        Config *c;
        int r;

        if (!path || !ret)
                return -EINVAL;
        if (!diags)
                diags = &local;

        c = calloc(1, sizeof(Config));
        if (!c)
                return -ENOMEM;
        atomic_init(&c->refcount, 1);
        c->merged = calloc(1, sizeof(config_t));
        if (!c->merged) {
                free(c);
                return -ENOMEM;
        }
        config_init(c->merged);

        l.c = c;
        l.diags = diags;
        r = config_merge_files(path, (config_t *) c->merged, &l.files, diags);
        if (r >= 0)
                r = loader_defaults(&l);
        if (r >= 0)
                r = parse_top(&l, config_root_setting((config_t *) c->merged));
        if (r >= 0 && diags->n_errors == 0)
                r = config_client_link(&l);
        free(l.health_dflt.path);
        /* origins point into the file list: the Config owns it from here on */
        c->files = l.files.files;
        c->n_files = l.files.n_files;

        if (r >= 0 && diags->n_errors > 0)
                r = -EINVAL;
        if (diags == &local)
                config_diags_clear(&local);
        if (r < 0) {
                config_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

int config_dump(const Config *c, FILE *f) {
        if (!c || !c->merged || !f)
                return -EINVAL;
        config_write(c->merged, f);
        schema_write_defaults(f);
        if (ferror(f))
                return -EIO;
        return 0;
}

void config_diags_print(const ConfigDiags *d, FILE *f) {
        for (size_t i = 0; d && i < d->n; i++) {
                const ConfigDiag *x = &d->items[i];
                if (x->file && x->line > 0)
                        fprintf(f, "%s:%d: ", x->file, x->line);
                else if (x->file)
                        fprintf(f, "%s: ", x->file);
                fprintf(f, "%s%s\n", x->warning ? "warning: " : "", x->message);
        }
}

void config_diags_clear(ConfigDiags *d) {
        if (!d)
                return;
        for (size_t i = 0; i < d->n; i++) {
                free(d->items[i].file);
                free(d->items[i].message);
        }
        free(d->items);
        *d = (ConfigDiags) {};
}
