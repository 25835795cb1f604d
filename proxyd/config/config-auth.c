/* SPDX-License-Identifier: MIT */
/* The auth_request group of a location (forward authentication): its rows are SCHEMA_AUTH;
 * the group is owned by the Config and shared by the settings that inherit it. */
#include "config-schema.h"
#include "util.h"

/* Framing and hop-by-hop fields: never passed to the auth service nor copied from it (the
 * request heads proxyd writes frame themselves). */
static const char *const reserved_fields[] = {
        "Host",    "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Upgrade",
        "TE",      "Trailer",        "Proxy-Connection",  "Expect",     "Content-Type",
};

int config_check_auth_method(Loader *l, const config_setting_t *s, const void *value, size_t n) {
        const char *v = value;

        (void) n;
        if (!http1_token_valid(v, strlen(v)))
                return ERR(l, s, "\"method\": \"%s\" is not a method (an HTTP token, e.g. \"GET\")", v);
        if (streq(v, "CONNECT"))
                return ERR(l, s, "\"method\": CONNECT cannot be the method of an auth request");
        return 0;
}

int config_check_auth_fields(Loader *l, const config_setting_t *s, const void *value, size_t n) {
        char *const *a = value;
        int r = 0;

        for (size_t k = 0; k < n && r >= 0; k++) {
                const config_setting_t *e = setting_value_at(s, k);
                if (!http1_token_valid(a[k], strlen(a[k]))) {
                        r = ERR(l, e, "\"%s\": \"%s\" is not a header name", config_setting_name(s), a[k]);
                        continue;
                }
                for (size_t i = 0; i < ELEMENTSOF(reserved_fields); i++)
                        if (strcasecmp(a[k], reserved_fields[i]) == 0) {
                                r = ERR(l, e, "\"%s\": \"%s\" frames the message and cannot be passed",
                                        config_setting_name(s), a[k]);
                                break;
                        }
        }
        return r;
}

static AuthRequest *auth_request_free(AuthRequest *a) {
        if (!a)
                return NULL;
        if (a->rt && a->rt_free)
                a->rt_free(a->rt);
        proxy_pass_free(a->pass);
        free(a->method);
        strv_free(a->headers, a->n_headers);
        strv_free(a->copy_headers, a->n_copy_headers);
        var_template_free(a->cache_key);
        free(a);
        return NULL;
}

void config_auth_free(Config *c) {
        for (size_t i = 0; i < c->n_auth_requests; i++)
                auth_request_free(c->auth_requests[i]);
        free(c->auth_requests);
        c->auth_requests = NULL;
        c->n_auth_requests = 0;
}

static int auth_add(Config *c, AuthRequest *a) {
        AuthRequest **n = reallocarray(c->auth_requests, c->n_auth_requests + 1, sizeof(AuthRequest *));

        if (!n)
                return -ENOMEM;
        c->auth_requests = n;
        n[c->n_auth_requests++] = a;
        return 0;
}

/* The group's own checks once its rows are parsed. */
static int auth_check(Loader *l, const config_setting_t *g, SchemaWalk *aw, AuthRequest *a) {
        const config_setting_t *pass = seen(aw, "pass"), *key = seen(aw, "cache_key");
        int r = 0;

        if (!pass)
                return ERR(l, g, "\"auth_request\" needs \"pass\", the auth service's URL");
        r = config_parse_proxy_pass(l, pass, &a->pass);
        if (r < 0)
                return r;
        if (a->pass->upstream->proxy_protocol != PROXY_PROTOCOL_OFF)
                return ERR(l, pass, "\"pass\": upstream \"%s\" sends the PROXY protocol, which auth requests do not",
                           a->pass->upstream->name);
        if (a->cache > 0 && !key)
                return ERR(l, g, "\"auth_request\" with \"cache\" needs \"cache_key\": decisions must be kept "
                                 "apart by the credentials, e.g. \"$http_authorization$cookie_session\"");
        if (a->cache > 0 && a->cache_key && !strchr(a->cache_key->source, '$'))
                return ERR(l, key, "\"cache_key\" \"%s\" has no variable: every client would share one decision",
                           a->cache_key->source);
        if (a->cache == 0 && key)
                TRY(WARN(l, key, "\"cache_key\" has no effect without \"cache\""));
        return 0;
}

int config_parse_auth_request(Loader *l, const config_setting_t *s, SchemaWalk *w) {
        AuthRequest *a;
        int r;

        if (config_setting_type(s) == CONFIG_TYPE_BOOL) {
                if (config_setting_get_bool(s))
                        return ERR(l, s, "\"auth_request\" must be a group { pass = \"http://...\"; ... } or false");
                w->partial->v.auth_request = NULL; /* switched off here (nginx auth_request off) */
                return 0;
        }
        if (config_setting_type(s) != CONFIG_TYPE_GROUP)
                return ERR(l, s, "\"auth_request\" must be a group { pass = \"http://...\"; ... } or false");
        a = calloc(1, sizeof(AuthRequest));
        if (!a)
                return -ENOMEM;
        r = auth_add(l->c, a);
        if (r < 0) {
                auth_request_free(a);
                return r;
        }
        set_origin(l, s, &a->file, &a->line);
        r = schema_defaults(&SCHEMA_AUTH, SC_AUTH, a, NULL);
        if (r < 0)
                return r == -ENOMEM ? r : ERR(l, s, "the built-in defaults of auth_request do not parse");
        SchemaWalk aw = { .table = &SCHEMA_AUTH, .scope = SC_AUTH, .where = "in auth_request", .target = a };
        r = schema_walk(l, s, &aw);
        if (r < 0)
                return r;
        r = auth_check(l, s, &aw, a);
        if (r < 0)
                return r;
        if (aw.bad)
                return -EINVAL;
        w->partial->v.auth_request = a;
        return 0;
}
