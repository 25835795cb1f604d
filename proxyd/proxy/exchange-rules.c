/* SPDX-License-Identifier: MIT */
/* The location rules and response fields of an exchange (traffic policy: rules, add_header,
 * replace_header, return with variables): see exchange.h. Client limits and addresses are
 * exchange-policy.c. */
#include "exchange.h"
#include "log.h"
#include "match.h"

typedef struct ExchangeRules {
        Buf lines;          /* add_header / replace_header fields with variables, expanded */
        Buf body, location; /* a `return`'s, expanded (they live as long as the exchange) */
} ExchangeRules;

static ExchangeRules *rules_get(Exchange *ex) {
        if (!ex->rules)
                ex->rules = calloc(1, sizeof(ExchangeRules));
        return ex->rules;
}

const RequestInfo *exchange_vars(ExchangeVars *v) {
        Exchange *ex = v->ex;
        const Route *rt = v->rt;
        const Session *c = ex->s;
        const char *server_name;
        size_t hl;

        if (v->built)
                return &v->ri;
        server_name = ex->server->n_server_names > 0 ? ex->server->server_names[0] : ex->server->name;
        hl = MIN(rt->host_len, sizeof(v->host_lower) - 1);
        for (size_t i = 0; i < hl; i++)
                v->host_lower[i] = ascii_tolower(rt->host[i]);
        v->host_lower[hl] = 0;
        v->ri = (RequestInfo) {
                .req = &ex->req,
                .remote_addr = ex->remote_addr,
                .remote_port = ex->remote_port,
                .scheme = c->tls ? "https" : "http",
                .ssl_client_s_dn = c->ops->client_subject(ex),
                .host = hl > 0 ? v->host_lower : server_name,
                .host_len = hl > 0 ? hl : strlen(server_name),
                .uri = rt->norm,
                .uri_len = rt->norm_len,
                .args = rt->args,
                .args_len = rt->args_len,
                .server_name = server_name,
                .server_port = c->local_port,
                .proxy_host = ex->loc && ex->loc->proxy ? ex->loc->proxy->proxy_host : "",
                .request_id = exchange_request_id(ex),
                .realip_remote_addr = c->remote_addr,
        };
        v->built = true;
        return &v->ri;
}

/* "Name: value" CRLF for each field of a whose value has variables. */
static int expand_fields(Buf *out, const HeaderSetting *a, size_t n, const RequestInfo *ri, Buf *tmp) {
        int r = 0;

        for (size_t i = 0; i < n && r >= 0; i++) {
                if (!a[i].value || var_template_is_literal(a[i].value))
                        continue;
                buf_reset(tmp);
                r = var_expand(tmp, a[i].value, ri);
                if (r < 0 || buf_len(tmp) == 0)
                        continue; /* empty: no field, as with set_header */
                r = buf_append_str(out, a[i].name);
                if (r >= 0)
                        r = buf_append(out, ": ", 2);
                if (r >= 0)
                        r = http1_append_field_value(out, buf_head(tmp), buf_len(tmp));
                if (r >= 0)
                        r = buf_append(out, "\r\n", 2);
        }
        return r;
}

static bool has_variables(const HeaderSetting *a, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (a[i].value && !var_template_is_literal(a[i].value))
                        return true;
        return false;
}

static int prepare_fields(Exchange *ex, ExchangeVars *v) {
        const LocationSettings *s = ex_settings(ex);
        const RequestInfo *ri;
        Buf tmp = {};
        int r;

        if (!s || (s->fields_rendered ? !s->fields_have_variables
                                      : !has_variables(s->add_header, s->n_add_header) &&
                                                !has_variables(s->replace_header, s->n_replace_header)))
                return 0;
        if (!rules_get(ex))
                return -ENOMEM;
        buf_reset(&ex->rules->lines);
        ri = exchange_vars(v);
        r = expand_fields(&ex->rules->lines, s->add_header, s->n_add_header, ri, &tmp);
        if (r >= 0)
                r = expand_fields(&ex->rules->lines, s->replace_header, s->n_replace_header, ri, &tmp);
        buf_free(&tmp);
        return r;
}

int exchange_rules_route(Exchange *ex, ExchangeVars *v) {
        const Route *rt = v->rt;
        const Session *c = ex->s;
        size_t i;
        int k;

        if (ex->loc && ex->loc->n_rules > 0) {
                const MatchRequest mr = {
                        .method = ex->req.method,
                        .method_len = ex->req.method_len,
                        .method_id = ex->method_id,
                        .https = c->tls,
                        .server_port = c->local_port,
                        .client = &ex->remote_sa.sa,
                        .headers = ex->req.headers,
                        .n_headers = ex->req.n_headers,
                        .args = rt->args,
                        .args_len = rt->args_len,
                };

                k = match_rules(ex->loc->rules, ex->loc->n_rules, &mr, &i);
                if (k < 0) {
                        log_warning("%s: the rules of %s:%d could not be evaluated for %s (regex limit)", ex_text(ex),
                                    ex->loc->file ?: "?", ex->loc->line, ex->target);
                        ex->reason = "rule could not be evaluated";
                        k = exchange_local_response(ex, 500, NULL, NULL, 0, NULL, false);
                        return k < 0 ? k : 1;
                }
                if (k > 0) {
                        log_debug("%s: %s: rule at %s:%d applies", ex_text(ex), ex->target,
                                  ex->loc->rules[i].file ?: "?", ex->loc->rules[i].line);
                        ex->loc = ex->loc->rules[i].loc;
                }
        }
        return prepare_fields(ex, v);
}

/* t expanded into out (NUL-terminated), or NULL without a template (use the text). */
static const char *expand_text(Buf *out, const VarTemplate *t, const RequestInfo *ri, bool field, size_t *ret_len) {
        Buf tmp = {};
        int r;

        if (!t)
                return NULL;
        r = var_expand(field ? &tmp : out, t, ri);
        if (r >= 0 && field)
                r = http1_append_field_value(out, buf_head(&tmp), buf_len(&tmp));
        buf_free(&tmp);
        *ret_len = buf_len(out);
        if (r >= 0)
                r = buf_append(out, "", 1);
        return r >= 0 ? buf_head(out) : NULL;
}

int exchange_rules_return(Exchange *ex, ExchangeVars *v, bool keep_alive) {
        const Location *loc = ex->loc;
        const char *body = loc->return_body ?: "", *where = loc->return_location;
        size_t body_len = strlen(body), where_len = 0;

        if (loc->return_body_t || loc->return_location_t) {
                ExchangeRules *p = rules_get(ex);
                const RequestInfo *ri;
                const char *x;

                if (!p)
                        return -ENOMEM;
                ri = exchange_vars(v);
                if ((x = expand_text(&p->body, loc->return_body_t, ri, false, &body_len)))
                        body = x;
                if ((x = expand_text(&p->location, loc->return_location_t, ri, true, &where_len)))
                        where = x;
        }
        return exchange_local_response(ex, loc->return_status, "text/plain", body, body_len, where, keep_alive);
}

static bool status_gets_fields(int status) {
        switch (status) {
        case 200: case 201: case 204: case 206: case 301: case 302: case 303: case 304: case 307: case 308:
                return true;
        default:
                return false;
        }
}

const ResponseFields *exchange_rules_fields(const Exchange *ex, int status, ResponseFields *buf) {
        const LocationSettings *s = ex_settings(ex);

        if (!s || s->n_add_header + s->n_replace_header == 0 || status < 200)
                return NULL;
        if (!s->add_header_always && !status_gets_fields(status))
                return NULL;
        *buf = (ResponseFields) {
                .s = s,
                .lines = ex->rules ? buf_head(&ex->rules->lines) : NULL,
                .lines_len = ex->rules ? buf_len(&ex->rules->lines) : 0,
        };
        return buf;
}

void exchange_rules_free(Exchange *ex) {
        if (!ex->rules)
                return;
        buf_free(&ex->rules->lines);
        buf_free(&ex->rules->body);
        buf_free(&ex->rules->location);
        free(ex->rules);
        ex->rules = NULL;
}
