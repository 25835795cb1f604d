/* SPDX-License-Identifier: MIT */
/*
 * Upstream groups in the configuration: the groups and their servers (an address may stand
 * for several, resolved at load), health checks, and the implicit groups of proxy_pass
 * addresses. Part of the loader (config.c); see config-schema.h.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/un.h>

#include "config-schema.h"
#include "util.h"

/* ---- upstreams ---- */

static void health_check_free(HealthCheck *h) {
        if (!h)
                return;
        free(h->path);
        free(h->statuses);
        free(h);
}

Upstream *upstream_free(Upstream *u) {
        if (!u)
                return NULL;
        if (u->rt && u->rt_free)
                u->rt_free(u->rt);
        for (size_t i = 0; i < u->n_servers; i++) {
                free(u->servers[i].address);
                free(u->servers[i].host);
        }
        free(u->servers);
        health_check_free(u->health_check);
        var_template_free(u->hash_key);
        free(u->name);
        free(u);
        return NULL;
}

int upstream_new(Loader *l, const char *name, bool implicit, Upstream **ret) {
        Upstream *u = calloc(1, sizeof(Upstream));

        if (!u)
                return -ENOMEM;
        *u = l->upstream_dflt;
        u->name = strdup(name);
        if (!u->name) {
                free(u);
                return -ENOMEM;
        }
        u->implicit = implicit;
        *ret = u;
        return 0;
}

int config_add_upstream(Config *c, Upstream *u) {
        Upstream **a = reallocarray(c->upstreams, c->n_upstreams + 1, sizeof(Upstream *));

        if (!a)
                return -ENOMEM;
        c->upstreams = a;
        a[c->n_upstreams++] = u;
        return 0;
}

/* Append one UpstreamServer per address of `address` (as written). *ret_err set on -EINVAL.
 * A name with a resolve interval that does not resolve yet gives one server without an
 * address (addrlen 0) and returns 1: it is resolved again at run time. */
int upstream_add_address(Upstream *u, const char *address, const UpstreamServer *tmpl,
                                const char **ret_err) {
        struct sockaddr_storage *addrs = NULL;
        _cleanup_free_ char *host = NULL;
        uint16_t port = 0;
        unsigned entry = u->n_servers > 0 ? u->servers[u->n_servers - 1].entry + 1 : 0;
        bool unresolved = false;
        size_t n = 0;
        UpstreamServer *a;
        int r;

        if (strncmp(address, "unix:", 5) == 0) {
                addrs = calloc(1, sizeof(*addrs));
                if (!addrs)
                        return -ENOMEM;
                socklen_t len;
                if (make_unix(address + 5, addrs, &len) < 0) {
                        free(addrs);
                        *ret_err = "invalid unix socket path";
                        return -EINVAL;
                }
                n = 1;
        } else {
                bool has_port;

                port = 80;
                r = split_host_port(address, &host, &port, &has_port);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        *ret_err = "invalid address (expected HOST:PORT, [IPV6]:PORT or unix:/PATH)";
                        return -EINVAL;
                }
                r = resolve(host, port, &addrs, &n, ret_err);
                if (r == -EINVAL && tmpl->resolve_interval > 0) {
                        addrs = calloc(1, sizeof(*addrs));
                        if (!addrs)
                                return -ENOMEM;
                        n = 1;
                        unresolved = true;
                } else if (r < 0)
                        return r;
        }
        if (u->n_servers + n > CONFIG_LIST_MAX) {
                free(addrs);
                *ret_err = "too many servers";
                return -EINVAL;
        }
        a = reallocarray(u->servers, u->n_servers + n, sizeof(UpstreamServer));
        if (!a) {
                free(addrs);
                return -ENOMEM;
        }
        u->servers = a;
        for (size_t i = 0; i < n; i++) {
                UpstreamServer *s = &u->servers[u->n_servers];
                *s = *tmpl;
                s->addr = addrs[i];
                s->addrlen = unresolved ? 0
                             : addrs[i].ss_family == AF_UNIX ? (socklen_t) sizeof(struct sockaddr_un)
                                                             : ss_len(&addrs[i]);
                s->entry = entry;
                s->port = port;
                s->host = NULL;
                s->address = strdup(address);
                if (host)
                        s->host = strdup(host);
                if (!s->address || (host && !s->host)) {
                        free(s->address);
                        free(s->host);
                        free(addrs);
                        return -ENOMEM;
                }
                u->n_servers++;
        }
        free(addrs);
        return unresolved ? 1 : 0;
}

static int parse_upstream_server(Loader *l, Upstream *u, const config_setting_t *g) {
        UpstreamServer tmpl = l->server_dflt;
        SchemaWalk w = { .table = &SCHEMA_UPSTREAM_SERVER, .scope = SC_UPSTREAM_SERVER,
                         .where = "in an upstream server", .target = &tmpl };
        const config_setting_t *addr;
        int r;

        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
                return ERR(l, g, "upstream server must be a group { address = \"...\"; ... }");
        set_origin(l, g, &tmpl.file, &tmpl.line);
        TRY(schema_walk(l, g, &w));
        addr = seen(&w, "address");
        if (!addr)
                return ERR(l, g, "upstream server without \"address\"");
        if (w.bad || config_setting_type(addr) != CONFIG_TYPE_STRING)
                return -EINVAL;
        {
                const char *err = NULL;
                const char *a = config_setting_get_string(addr);
                r = upstream_add_address(u, a, &tmpl, &err);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return ERR(l, addr, "upstream server \"%s\": %s", a, err ?: "invalid");
                if (r > 0)
                        return WARN(l, addr, "upstream server \"%s\": %s; resolved again at run time", a,
                                    err ?: "not resolved");
        }
        return 0;
}

int config_parse_upstream_servers(Loader *l, const config_setting_t *s, SchemaWalk *w) {
        if (config_setting_type(s) != CONFIG_TYPE_LIST)
                return ERR(l, s, "\"servers\" must be a list ( { address = \"...\"; }, ... )");
        for (int k = 0; k < config_setting_length(s); k++)
                TRY(parse_upstream_server(l, w->target, config_setting_get_elem(s, (unsigned) k)));
        return 0;
}


int config_parse_health_check(Loader *l, const config_setting_t *g, SchemaWalk *uw) {
        SchemaWalk w = { .table = &SCHEMA_HEALTH_CHECK, .scope = SC_HEALTH_CHECK, .where = "in a health_check" };
        Upstream *up = uw->target;
        HealthCheck *h;
        int r;

        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
                return ERR(l, g, "\"health_check\" must be a group");
        h = calloc(1, sizeof(HealthCheck));
        if (!h)
                return -ENOMEM;
        *h = l->health_dflt;
        h->path = strdup(l->health_dflt.path);
        h->statuses = NULL;
        h->n_statuses = 0;
        if (!h->path) {
                free(h);
                return -ENOMEM;
        }
        w.target = h;
        r = schema_walk(l, g, &w);
        if (r < 0) {
                health_check_free(h);
                return r;
        }
        health_check_free(up->health_check);
        up->health_check = h;
        return w.bad ? -EINVAL : 0;
}

int parse_upstream(Loader *l, const config_setting_t *g) {
        SchemaWalk w = { .table = &SCHEMA_UPSTREAM, .scope = SC_UPSTREAM, .where = "in an upstream" };
        const config_setting_t *servers;
        Upstream *u = NULL;
        int r;

        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
                return ERR(l, g, "upstream \"%s\" must be a group", config_setting_name(g));
        r = upstream_new(l, config_setting_name(g), false, &u);
        if (r < 0)
                return r;
        set_origin(l, g, &u->file, &u->line);
        r = config_add_upstream(l->c, u);
        if (r < 0) {
                upstream_free(u);
                return r;
        }
        w.target = u;
        TRY(schema_walk(l, g, &w));
        servers = seen(&w, "servers");
        if (!servers || config_setting_length(servers) == 0)
                return ERR(l, g, "upstream \"%s\" has no servers", u->name);
        return 0;
}

Upstream *find_upstream(Config *c, const char *name, bool implicit) {
        for (size_t i = 0; i < c->n_upstreams; i++)
                if (c->upstreams[i]->implicit == implicit && streq(c->upstreams[i]->name, name))
                        return c->upstreams[i];
        return NULL;
}

