/* SPDX-License-Identifier: MIT */
/*
 * The settings about clients: `limits` (per-client request rates and requests in progress)
 * and the client address (trusted proxies: real_ip_*, the PROXY protocol), plus the checks
 * that need the whole configuration (names of limits, listen entries that agree on the
 * PROXY protocol, balance = "hash" with its key). Pure.
 */
#include <arpa/inet.h>
#include <stddef.h>

#include "config-schema.h"
#include "http1-chars.h"
#include "util.h"

#define LIMIT_RATE_MAX UINT64_C(1000000) /* requests per second */

LimitZone *limit_zone_free(LimitZone *z) {
        if (!z)
                return NULL;
        if (z->rt && z->rt_free)
                z->rt_free(z->rt);
        free(z->name);
        var_template_free(z->key);
        free(z);
        return NULL;
}

/* "10r/s", "600r/m", "0.5r/s" (up to six decimals) into millionths of a request per second. */
int config_rate_parse(const char *s, uint64_t *ret) {
        uint64_t whole = 0, micro = 0, scale = 100000;
        const char *p = s;
        size_t n = 0;

        while (p[n] >= '0' && p[n] <= '9')
                n++;
        if (n == 0 || n > 7 || parse_uint64(p, n, &whole) < 0)
                return -EINVAL;
        p += n;
        if (*p == '.') {
                p++;
                if (!(*p >= '0' && *p <= '9'))
                        return -EINVAL;
                for (; *p >= '0' && *p <= '9'; p++) {
                        if (scale == 0)
                                return -EINVAL;
                        micro += (uint64_t) (*p - '0') * scale;
                        scale /= 10;
                }
        }
        micro += whole * 1000000;
        if (streq(p, "r/m"))
                micro /= 60;
        else if (!streq(p, "r/s"))
                return -EINVAL;
        if (micro == 0 || micro > LIMIT_RATE_MAX * 1000000)
                return -EINVAL;
        *ret = micro;
        return 0;
}

int config_parse_rate(Loader *l, const config_setting_t *s, SchemaWalk *w) {
        LimitZone *z = w->target;
        const char *v = NULL;
        int r = get_string(l, s, &v);

        if (r < 0)
                return r;
        if (config_rate_parse(v, &z->params.rate) < 0)
                return ERR(l, s, "invalid rate \"%s\" (expected e.g. \"10r/s\" or \"600r/m\", at most %llur/s)", v,
                           (unsigned long long) LIMIT_RATE_MAX);
        return 0;
}

/* One member of `limits`. */
static int parse_zone(Loader *l, const config_setting_t *g) {
        SchemaWalk w = { .table = &SCHEMA_LIMIT, .scope = SC_LIMIT, .where = "in a limit" };
        Config *c = l->c;
        LimitZone *z, **a;
        int r;

        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
                return ERR(l, g, "limit \"%s\" must be a group { key = ...; rate = ...; ... }", config_setting_name(g));
        z = calloc(1, sizeof(LimitZone));
        if (!z)
                return -ENOMEM;
        a = reallocarray(c->limits, c->n_limits + 1, sizeof(LimitZone *));
        if (!a) {
                free(z);
                return -ENOMEM;
        }
        c->limits = a;
        a[c->n_limits++] = z;
        r = schema_defaults(&SCHEMA_LIMIT, SC_LIMIT, z, NULL);
        if (r < 0)
                return r;
        z->name = strdup(config_setting_name(g));
        if (!z->name)
                return -ENOMEM;
        z->file = config_setting_origin(g, &l->files, &z->line);
        w.target = z;
        TRY(schema_walk(l, g, &w));
        if (!w.bad && z->params.rate == 0 && z->params.conn == 0)
                return ERR(l, g, "limit \"%s\" limits nothing: give it a \"rate\", a \"conn\" or both", z->name);
        if (!w.bad && z->params.rate == 0 && (z->params.burst > 0 || z->params.delay > 0 || z->params.nodelay))
                return ERR(l, g, "limit \"%s\": \"burst\", \"delay\" and \"nodelay\" need a \"rate\"", z->name);
        return 0;
}

int config_parse_limits(Loader *l, const config_setting_t *s, SchemaWalk *w) {
        (void) w;
        if (config_setting_type(s) != CONFIG_TYPE_GROUP)
                return ERR(l, s, "\"limits\" must be a group { NAME = { ... }; ... }");
        if (config_setting_length(s) > CONFIG_LIST_MAX)
                return ERR(l, s, "too many limits");
        for (int i = 0; i < config_setting_length(s); i++)
                TRY(parse_zone(l, config_setting_get_elem(s, (unsigned) i)));
        return 0;
}

static const LimitZone *find_zone(const Config *c, const char *name) {
        for (size_t i = 0; i < c->n_limits; i++)
                if (streq(c->limits[i]->name, name))
                        return c->limits[i];
        return NULL;
}

static const config_setting_t *elem_or(const config_setting_t *s, size_t k) {
        return config_setting_type(s) == CONFIG_TYPE_STRING ? s : config_setting_get_elem(s, (unsigned) k);
}

int config_check_limit_names(Loader *l, const config_setting_t *s, const void *value, size_t n) {
        char *const *a = value;
        int r = 0;

        if (n > CONFIG_LIMITS_PER_LOCATION)
                return ERR(l, s, "\"limit\" names %zu limits; at most %d apply to one request", n,
                           CONFIG_LIMITS_PER_LOCATION);
        for (size_t k = 0; k < n && r != -ENOMEM; k++) {
                if (!find_zone(l->c, a[k]))
                        r = ERR(l, elem_or(s, k), "unknown limit \"%s\" (not in the top-level \"limits\")", a[k]);
                for (size_t j = 0; j < k && r != -ENOMEM; j++)
                        if (streq(a[j], a[k]))
                                r = ERR(l, elem_or(s, k), "limit \"%s\" named twice", a[k]);
        }
        return r;
}

/* "ADDRESS", "ADDRESS/BITS" or "unix:" */
int parse_cidr(const char *s, AccessRule *ret) {
        _cleanup_free_ char *rule = NULL;

        if (streq(s, "unix:")) {
                *ret = (AccessRule){ .allow = true, .family = AF_UNIX };
                return 0;
        }
        if (!*s || strchr(s, ' ') || streq(s, "all") || asprintf(&rule, "allow %s", s) < 0)
                return -EINVAL;
        return parse_access_rule(rule, ret);
}

int config_check_cidrs(Loader *l, const config_setting_t *s, const void *value, size_t n) {
        char *const *a = value;
        int r = 0;

        for (size_t k = 0; k < n && r != -ENOMEM; k++) {
                AccessRule x;
                if (parse_cidr(a[k], &x) < 0)
                        r = ERR(l, elem_or(s, k), "invalid address \"%s\" in \"%s\" (expected ADDRESS[/BITS] or \"unix:\")",
                                a[k], config_setting_name(s) ?: "list");
        }
        return r;
}

int config_check_header_name(Loader *l, const config_setting_t *s, const void *value, size_t n) {
        const char *v = value;
        (void) n;
        if (!*v)
                return ERR(l, s, "\"%s\" must name a header", config_setting_name(s));
        for (const char *p = v; *p; p++)
                if (!is_tchar((unsigned char) *p))
                        return ERR(l, s, "\"%s\": \"%s\" is not a header name", config_setting_name(s), v);
        return 0;
}

static int cidrs_parse(char *const *a, size_t n, AccessRule **ret) {
        *ret = NULL;
        if (n == 0)
                return 0;
        *ret = calloc(n, sizeof(AccessRule));
        if (!*ret)
                return -ENOMEM;
        for (size_t k = 0; k < n; k++)
                (void) parse_cidr(a[k], &(*ret)[k]); /* checked when parsed */
        return 0;
}

/* The names and addresses of one scope's settings, resolved; its constant response fields
 * rendered. */
static int link_settings(Loader *l, LocationSettings *s) {
        int r = settings_render_fields(s);

        if (r < 0)
                return r;
        if (s->n_limit > 0) {
                s->limit_zones = calloc(s->n_limit, sizeof(LimitZone *));
                if (!s->limit_zones)
                        return -ENOMEM;
                for (size_t k = 0; k < s->n_limit; k++)
                        s->limit_zones[k] = find_zone(l->c, s->limit[k]);
        }
        return cidrs_parse(s->real_ip_from, s->n_real_ip_from, &s->real_ip_rules);
}

static int link_location(Loader *l, Location *loc) {
        int r = link_settings(l, &loc->s);

        for (size_t k = 0; r >= 0 && k < loc->s.n_limit; k++)
                if (!loc->s.limit_zones[k])
                        r = config_diag_add(l->diags, loc->file, loc->line, false, "unknown limit \"%s\"",
                                            loc->s.limit[k]);
        return r;
}

static int link_server(Loader *l, Server *srv) {
        int r = link_settings(l, &srv->s);

        for (size_t i = 0; r >= 0 && i < srv->n_locations; i++) {
                Location *loc = srv->locations[i];
                r = link_location(l, loc);
                if (r >= 0 && loc->proxy && loc->proxy->https && loc->proxy->upstream->proxy_protocol)
                        r = config_diag_add(l->diags, loc->file, loc->line, false,
                                            "proxy_pass to https://%s: upstream \"%s\" sends the PROXY protocol, which "
                                            "proxyd sends on plain connections only",
                                            loc->proxy->proxy_host, loc->proxy->upstream->name);
                /* a rule's location has settings of its own: they apply when the rule does */
                for (size_t k = 0; r >= 0 && k < loc->n_rules; k++)
                        r = link_location(l, loc->rules[k].loc);
        }
        if (r < 0)
                return r;
        r = cidrs_parse(srv->proxy_protocol_from, srv->n_proxy_protocol_from, &srv->proxy_protocol_rules);
        if (r >= 0 && srv->proxy_protocol && srv->n_proxy_protocol_from == 0)
                r = config_diag_add(l->diags, srv->file, srv->line, false,
                                    "server \"%s\" has proxy_protocol = true but no proxy_protocol_from: "
                                    "say which addresses may send the PROXY protocol",
                                    srv->name ?: "?");
        return r == -ENOMEM ? r : 0;
}

int config_client_link(Loader *l) {
        Config *c = l->c;
        int r = 0;

        for (size_t i = 0; i < c->n_servers && r >= 0; i++)
                r = link_server(l, c->servers[i]);
        for (size_t i = 0; i < c->n_listens && r >= 0; i++) {
                const Listen *li = &c->listens[i];
                for (size_t k = 1; k < li->n_servers && r >= 0; k++)
                        if (li->servers[k]->proxy_protocol != li->servers[0]->proxy_protocol) {
                                r = config_diag_add(l->diags, li->servers[k]->file, li->servers[k]->line, false,
                                                    "server \"%s\" and server \"%s\" share listen \"%s\" but not "
                                                    "proxy_protocol: a socket either expects the PROXY protocol or not",
                                                    li->servers[k]->name ?: "?", li->servers[0]->name ?: "?", li->text);
                                break;
                        }
        }
        for (size_t i = 0; i < c->n_upstreams && r >= 0; i++) {
                Upstream *u = c->upstreams[i];
                if (u->balance == BALANCE_HASH && !u->hash_key)
                        r = config_diag_add(l->diags, u->file, u->line, false,
                                            "upstream \"%s\": balance = \"hash\" needs a hash_key, e.g. \"$request_uri\"",
                                            u->name);
                else if (u->balance != BALANCE_HASH && u->hash_key)
                        r = config_diag_add(l->diags, u->file, u->line, true,
                                            "upstream \"%s\": hash_key is used only with balance = \"hash\"", u->name);
                /* A PROXY protocol header speaks for one client: such connections are never
                 * reused for another. */
                if (u->proxy_protocol)
                        u->keepalive = 0;
        }
        return r == -ENOMEM ? r : 0;
}
