/* SPDX-License-Identifier: MIT */
/*
 * What a location does beyond selecting itself: the templates of its `return` (body and
 * Location with variables, checked for open redirects), the response header checks, and its
 * `rules`: conditions on the request, each with the settings and outcome that apply when
 * they hold. A rule becomes a Location of its own (the parent's settings with the rule's on
 * top), so the request path uses it like any location. Conditions that cannot match are
 * errors. Evaluated by policy/match.c.
 */
#include <arpa/inet.h>

#include "config-schema.h"
#include "util.h"

#define RULES_MAX 256 /* rules per location */

/* ---- patterns ---- */

void pattern_done(Pattern *p) {
        free(p->text);
        pcre2_code_free(p->re);
        *p = (Pattern) {};
}

/* A regex that is plain text: every character stands for itself (a backslash before a
 * character that is not a letter or digit quotes it, as in PCRE2), after an optional "^". Then
 * p becomes REGEX_TEXT or REGEX_START with that text, which match.c finds without running
 * PCRE2. The answers are the same: without UTF, PCRE2's caseless matching folds ASCII letters
 * only, and the text is ASCII. 1: converted, 0: a real regex, -ENOMEM. */
static int regex_as_text(const char *s, bool caseless, Pattern *p) {
        bool start = *s == '^';
        size_t n = 0;
        char *t;

        s += start;
        t = malloc(strlen(s) + 1);
        if (!t)
                return -ENOMEM;
        for (; *s; s++) {
                unsigned char ch = (unsigned char) *s;
                if (ch == '\\') {
                        ch = (unsigned char) *++s;
                        if (!ch || (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z'))
                                break; /* an escape sequence (\d, \x41, \Q...) */
                } else if (strchr("^$.[]|()?*+{}", ch))
                        break;
                if (ch < 0x20 || ch >= 0x7f)
                        break;
                t[n++] = caseless ? ascii_tolower((char) ch) : (char) ch;
        }
        if (*s) {
                free(t);
                return 0;
        }
        t[n] = 0;
        pcre2_code_free(p->re);
        *p = (Pattern) { .op = start ? PATTERN_REGEX_START : PATTERN_REGEX_TEXT, .text = t, .len = n,
                         .caseless = caseless };
        return 1;
}

int pattern_parse(const char *s, Pattern *ret, bool *ret_negate, const char **ret_error) {
        Pattern p = {};
        bool negate = false, caseless = false;
        const char *dummy;

        if (!ret_error)
                ret_error = &dummy;
        if (*s == '!') {
                negate = true;
                s++;
        }
        if (streq(s, "*"))
                p.op = PATTERN_PRESENT;
        else if (*s == '~') {
                int errcode;
                PCRE2_SIZE off;

                s++;
                if (*s == '*') {
                        caseless = true;
                        s++;
                }
                p.op = PATTERN_REGEX;
                p.re = pcre2_compile((PCRE2_SPTR) s, PCRE2_ZERO_TERMINATED, caseless ? PCRE2_CASELESS : 0, &errcode,
                                     &off, NULL);
                if (!p.re) {
                        *ret_error = "the regular expression does not compile";
                        return -EINVAL;
                }
                int r = regex_as_text(s, caseless, &p);
                if (r < 0) {
                        pattern_done(&p);
                        return r;
                }
                if (r == 0)
                        (void) pcre2_jit_compile(p.re, PCRE2_JIT_COMPLETE);
        } else {
                p.op = PATTERN_EXACT;
                if (*s == '^') {
                        p.op = PATTERN_PREFIX;
                        s++;
                } else if (*s == '=')
                        s++;
                p.text = strdup(s);
                if (!p.text)
                        return -ENOMEM;
                p.len = strlen(s);
        }
        *ret = p;
        *ret_negate = negate;
        return 0;
}

/* ---- checks ---- */

int config_check_response_header(Loader *l, const config_setting_t *s, const void *value, size_t n) {
        static const char *const framing[] = { "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive",
                                               "Upgrade",        "TE",                "Trailer",    "Proxy-Connection" };
        const char *name = config_setting_name(s);

        (void) value, (void) n;
        for (size_t i = 0; i < ELEMENTSOF(framing); i++)
                if (strcasecmp(name, framing[i]) == 0)
                        return ERR(l, s, "\"%s\" cannot be set in a response: proxyd writes the framing and "
                                   "connection fields itself", name);
        return 0;
}

/* A Location whose host part, or whose start ("//host" is a host too), comes from what the
 * client sent sends the client wherever a link says: an open redirect. $host is not counted:
 * it is the name the client reached this server by. The template is walked through the
 * states of a URL's start: scheme, "//", host, then the path, where the check ends. */
typedef enum RedirectState { RD_START, RD_SCHEME_VAR, RD_SLASH, RD_HOST, RD_DONE } RedirectState;

static RedirectState redirect_literal(RedirectState st, const char *p, size_t n, bool *host_nonempty) {
        const char *sch;

        switch (st) {
        case RD_START:
                sch = memmem(p, n, "://", 3);
                if (sch || (n >= 2 && p[0] == '/' && p[1] == '/')) {
                        const char *rest = sch ? sch + 3 : p + 2;
                        return redirect_literal(RD_HOST, rest, (size_t) (p + n - rest), host_nonempty);
                }
                return n == 1 && p[0] == '/' ? RD_SLASH : RD_DONE;
        case RD_SCHEME_VAR:
                if (n >= 3 && memcmp(p, "://", 3) == 0)
                        return redirect_literal(RD_HOST, p + 3, n - 3, host_nonempty);
                return RD_DONE;
        case RD_HOST:
                for (size_t i = 0; i < n; i++)
                        if (p[i] == '/' || p[i] == '?' || p[i] == '#')
                                return RD_DONE;
                *host_nonempty = *host_nonempty || n > 0;
                return RD_HOST;
        default:
                return RD_DONE;
        }
}

static int check_redirect(Loader *l, const config_setting_t *s, const VarTemplate *t) {
        RedirectState st = RD_START;
        bool host_nonempty = false;

        for (size_t i = 0; i < t->n_segs && st != RD_DONE; i++) {
                const VarSegment *seg = &t->segs[i];
                bool path_var = seg->id == VAR_URI || seg->id == VAR_REQUEST_URI; /* begin with "/" */
                bool client = seg->id == VAR_HTTP || seg->id == VAR_ARGS || seg->id == VAR_ARG || seg->id == VAR_COOKIE;
                bool named = seg->id == VAR_HTTP || seg->id == VAR_ARG || seg->id == VAR_COOKIE;

                if (seg->id == VAR_LITERAL) {
                        st = redirect_literal(st, seg->text, seg->len, &host_nonempty);
                        continue;
                }
                if (st == RD_HOST && path_var && host_nonempty)
                        st = RD_DONE; /* the path begins */
                else if (client || path_var)
                        return WARN(l, s,
                                    "open redirect: the host part of \"%s\" comes from the request ($%s%.*s); a "
                                    "link can send clients anywhere with it",
                                    t->source, var_name(seg->id), (int) (named ? seg->len : 0), named ? seg->text : "");
                else if (st == RD_START && seg->id == VAR_SCHEME)
                        st = RD_SCHEME_VAR;
                else if (st == RD_HOST)
                        host_nonempty = true;
                else
                        st = RD_DONE;
        }
        return 0;
}

/* body and location of a `return`, as templates when they have variables (a body without
 * "$" stays text of any length). */
static int compile_return(Loader *l, Location *loc, const config_setting_t *g) {
        const config_setting_t *body = config_setting_get_member(g, "body");
        const config_setting_t *where = config_setting_get_member(g, "location");
        int r = 0;

        if (loc->return_body && body && strchr(loc->return_body, '$'))
                r = get_template(l, body, &loc->return_body_t);
        if (r >= 0 && loc->return_location && where && strchr(loc->return_location, '$')) {
                r = get_template(l, where, &loc->return_location_t);
                if (r >= 0)
                        r = check_redirect(l, where, loc->return_location_t);
        }
        return r;
}

/* ---- conditions ---- */

static void condition_done(Condition *c) {
        free(c->name);
        pattern_done(&c->pattern);
        strv_free(c->tokens, c->n_tokens);
        free(c->ports);
        free(c->nets);
}

void rules_free(Rule *rules, size_t n) {
        for (size_t i = 0; i < n; i++) {
                for (size_t k = 0; k < rules[i].n_conds; k++)
                        condition_done(&rules[i].conds[k]);
                free(rules[i].conds);
                config_location_free(rules[i].loc);
        }
        free(rules);
}

static Condition *cond_push(Rule *rule, ConditionKind kind, Loader *l, const config_setting_t *s) {
        Condition *a = reallocarray(rule->conds, rule->n_conds + 1, sizeof(Condition));

        if (!a)
                return NULL;
        rule->conds = a;
        a = &a[rule->n_conds++];
        *a = (Condition) { .kind = kind };
        a->file = config_setting_origin(s, &l->files, &a->line);
        return a;
}

/* "!x" entries: all of the list or none. Strips the "!"s in place. */
static int list_negation(Loader *l, const config_setting_t *s, char **a, size_t n, bool *ret) {
        size_t neg = 0;

        for (size_t i = 0; i < n; i++)
                if (a[i][0] == '!') {
                        neg++;
                        memmove(a[i], a[i] + 1, strlen(a[i]));
                }
        if (neg != 0 && neg != n)
                return ERR(l, s, "\"%s\" mixes \"!\" entries with others: write the values it must be, or the "
                           "values it must not be (all with \"!\")", config_setting_name(s));
        if (n == 0)
                return ERR(l, s, "\"%s\" is empty: it can never match", config_setting_name(s));
        *ret = neg > 0;
        return 0;
}

/* A condition's list of strings, and whether it is negated. */
static int get_condition_list(Loader *l, const config_setting_t *s, char ***a, size_t *n, bool *negate) {
        int r = get_string_list(l, s, a, n, false);

        return r < 0 ? r : list_negation(l, s, *a, *n, negate);
}

static int parse_tokens(Loader *l, const config_setting_t *s, Rule *rule, ConditionKind kind, const Server *srv) {
        char **a = NULL;
        size_t n = 0;
        bool negate = false;
        Condition *c;
        int r;

        r = get_condition_list(l, s, &a, &n, &negate);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (kind == COND_SCHEME) {
                        if (!streq(a[i], "http") && !streq(a[i], "https"))
                                r = ERR(l, s, "scheme \"%s\" can never match: the scheme is \"http\" or \"https\"",
                                        a[i]);
                        continue;
                }
                if (!*a[i] || !http1_token_valid(a[i], strlen(a[i])))
                        r = ERR(l, s, "method \"%s\" is not a method name (a token)", a[i]);
                else
                        for (const char *p = a[i]; *p; p++)
                                if (*p >= 'a' && *p <= 'z') {
                                        r = WARN(l, s, "method \"%s\" has lower-case letters: methods are "
                                                 "case-sensitive, so \"GET\" does not match it", a[i]);
                                        break;
                                }
        }
        if (r >= 0 && kind == COND_SCHEME) {
                /* a server's sockets are all TLS or all plain: its scheme is known */
                const char *mine = srv->n_tls_certificates > 0 ? "https" : "http";
                bool listed = false;
                for (size_t i = 0; i < n; i++)
                        listed = listed || streq(a[i], mine);
                if (listed == negate)
                        r = ERR(l, s, "\"scheme\" can never match: server \"%s\" serves %s only%s", srv->name ?: "?",
                                mine, srv->n_tls_certificates > 0 ? "" : " (it has no tls)");
        }
        if (r < 0) {
                strv_free(a, n);
                return r;
        }
        c = cond_push(rule, kind, l, s);
        if (!c) {
                strv_free(a, n);
                return -ENOMEM;
        }
        c->negate = negate;
        c->tokens = a;
        c->n_tokens = n;
        if (kind == COND_METHOD) {
                /* a method proxyd knows by name is one of the tokens or not, whatever the tokens */
                const unsigned known = ((1u << (HTTP_METHOD_PATCH + 1)) - 1) & ~(1u << HTTP_METHOD_OTHER);
                unsigned listed = 0;
                for (size_t i = 0; i < n; i++) {
                        HttpMethod m = http1_method_id(a[i], strlen(a[i]));
                        if (m != HTTP_METHOD_OTHER)
                                listed |= 1u << m;
                }
                rule->skip_methods = negate ? listed : known & ~listed;
        }
        return 0;
}

/* The ports this server can be reached on, when every listen entry says (no socket names). */
static size_t server_ports(const Config *cf, const Server *srv, unsigned *ports, size_t max, bool *ret_known) {
        size_t n = 0;

        *ret_known = true;
        for (size_t i = 0; i < cf->n_listens; i++) {
                const Listen *ls = &cf->listens[i];
                bool mine = false;

                for (size_t k = 0; k < ls->n_servers; k++)
                        mine = mine || ls->servers[k] == srv;
                if (!mine)
                        continue;
                if (ls->kind == LISTEN_NAME)
                        *ret_known = false;
                else if (ls->kind == LISTEN_INET && n < max)
                        ports[n++] = ntohs(ls->addr.ss_family == AF_INET6
                                                   ? ((const struct sockaddr_in6 *) &ls->addr)->sin6_port
                                                   : ((const struct sockaddr_in *) &ls->addr)->sin_port);
                else if (ls->kind == LISTEN_UNIX && n < max)
                        ports[n++] = 0;
        }
        return n;
}

static int parse_ports(Loader *l, const config_setting_t *s, Rule *rule, const Server *srv) {
        int len = config_setting_type(s) == CONFIG_TYPE_INT ? 1 : config_setting_length(s);
        unsigned known_ports[64];
        size_t n_known, neg = 0;
        bool known, any = false;
        Condition *c;

        if (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_ARRAY &&
            config_setting_type(s) != CONFIG_TYPE_LIST)
                return ERR(l, s, "\"server_port\" must be a port or a list of ports (\"!8080\" for any other)");
        if (len <= 0 || len > CONFIG_LIST_MAX)
                return ERR(l, s, "\"server_port\" needs 1 to %d ports", CONFIG_LIST_MAX);
        c = cond_push(rule, COND_SERVER_PORT, l, s);
        if (!c)
                return -ENOMEM;
        c->ports = calloc((size_t) len, sizeof(unsigned));
        if (!c->ports)
                return -ENOMEM;
        for (int i = 0; i < len; i++) {
                const config_setting_t *e = config_setting_type(s) == CONFIG_TYPE_INT ? s
                                                                                       : config_setting_get_elem(s, (unsigned) i);
                uint64_t v = 0;

                if (config_setting_type(e) == CONFIG_TYPE_INT && config_setting_get_int(e) > 0)
                        v = (uint64_t) config_setting_get_int(e);
                else if (config_setting_type(e) == CONFIG_TYPE_STRING) {
                        const char *t = config_setting_get_string(e);
                        if (*t == '!')
                                t++, neg++;
                        if (parse_uint64(t, strlen(t), &v) < 0)
                                v = 0;
                }
                if (v == 0 || v > 65535)
                        return ERR(l, e, "invalid port in \"server_port\" (1-65535, or \"!PORT\")");
                c->ports[c->n_ports++] = (unsigned) v;
        }
        if (neg != 0 && neg != c->n_ports)
                return ERR(l, s, "\"server_port\" mixes \"!\" entries with others: write the ports it must be, or "
                           "the ports it must not be (all with \"!\")");
        c->negate = neg > 0;
        n_known = server_ports(l->c, srv, known_ports, ELEMENTSOF(known_ports), &known);
        if (c->negate || !known)
                return 0;
        for (size_t i = 0; i < c->n_ports; i++)
                for (size_t k = 0; k < n_known; k++)
                        any = any || c->ports[i] == known_ports[k];
        if (!any)
                return ERR(l, s, "\"server_port\" can never match: server \"%s\" listens on none of these ports",
                           srv->name ?: "?");
        return 0;
}

static int parse_clients(Loader *l, const config_setting_t *s, Rule *rule) {
        bool negate = false;
        char **a = NULL;
        size_t n = 0;
        Condition *c;
        int r = get_condition_list(l, s, &a, &n, &negate);

        if (r < 0) {
                strv_free(a, n);
                return r;
        }
        c = cond_push(rule, COND_CLIENT, l, s);
        if (c)
                c->nets = calloc(n, sizeof(AccessRule));
        if (!c || !c->nets) {
                strv_free(a, n);
                return -ENOMEM;
        }
        c->negate = negate;
        for (size_t i = 0; i < n && r >= 0; i++) {
                _cleanup_free_ char *rule_text = NULL;

                if (asprintf(&rule_text, "allow %s", a[i]) < 0)
                        r = -ENOMEM;
                else if (parse_access_rule(rule_text, &c->nets[c->n_nets]) < 0)
                        r = ERR(l, s, "invalid client \"%s\" (expected ADDRESS, ADDRESS/BITS or all)", a[i]);
                else if (negate && c->nets[c->n_nets].family == AF_UNSPEC)
                        r = ERR(l, s, "client \"!all\" can never match");
                else
                        c->n_nets++;
        }
        strv_free(a, n);
        return r;
}

/* header = { Name = "pattern"; ... }, and the same for arg and cookie. */
static int parse_fields(Loader *l, const config_setting_t *s, Rule *rule, ConditionKind kind) {
        const char *what = kind == COND_HEADER ? "header" : kind == COND_ARG ? "arg" : "cookie";

        if (config_setting_type(s) != CONFIG_TYPE_GROUP || config_setting_length(s) == 0)
                return ERR(l, s, "\"%s\" must be a group { NAME = \"pattern\"; ... }", what);
        if (config_setting_length(s) > CONFIG_LIST_MAX)
                return ERR(l, s, "\"%s\" has too many entries", what);
        for (int i = 0; i < config_setting_length(s); i++) {
                const config_setting_t *e = config_setting_get_elem(s, (unsigned) i);
                const char *v = NULL, *msg = NULL, *name = config_setting_name(e);
                Condition *c;
                int r;

                r = get_string(l, e, &v);
                if (r < 0)
                        return r;
                c = cond_push(rule, kind, l, e);
                if (!c)
                        return -ENOMEM;
                c->name = kind == COND_HEADER ? strndup_lower(name, strlen(name)) : strdup(name);
                if (!c->name)
                        return -ENOMEM;
                c->name_len = strlen(name);
                r = pattern_parse(v, &c->pattern, &c->negate, &msg);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return ERR(l, e, "%s \"%s\": invalid pattern \"%s\": %s", what, name, v, msg);
                /* checks of a value given as text (not of a regex, even one that is plain text) */
                const char *text = c->pattern.op == PATTERN_EXACT || c->pattern.op == PATTERN_PREFIX
                                           ? c->pattern.text
                                           : NULL;
                if (kind == COND_HEADER && text &&
                    (c->pattern.len > 0 &&
                     (text[0] == ' ' || text[0] == '\t' ||
                      (c->pattern.op == PATTERN_EXACT &&
                       (text[c->pattern.len - 1] == ' ' || text[c->pattern.len - 1] == '\t')))))
                        return ERR(l, e, "header \"%s\": \"%s\" can never match: header values have no leading or "
                                   "trailing whitespace", name, v);
                for (size_t k = 0; text && k < c->pattern.len; k++)
                        if ((unsigned char) text[k] < 0x20 || text[k] == 0x7f)
                                return ERR(l, e, "%s \"%s\": \"%s\" can never match: a control character", what,
                                           name, v);
                if (kind != COND_HEADER && text && (strchr(text, '&') || (kind == COND_COOKIE && strchr(text, ';'))))
                        return ERR(l, e, "%s \"%s\": \"%s\" can never match: \"%c\" separates %ss", what, name, v,
                                   kind == COND_ARG ? '&' : ';', what);
        }
        return 0;
}

static int cond_cmp(const void *a, const void *b) {
        const Condition *x = a, *y = b;

        if (x->kind != y->kind)
                return x->kind < y->kind ? -1 : 1;
        return x->line < y->line ? -1 : x->line > y->line;
}

/* ---- rules ---- */

static const char *const cond_rows[] = { "scheme", "server_port", "method", "client", "header", "arg", "cookie" };
_Static_assert(ELEMENTSOF(cond_rows) == _COND_MAX, "a row per condition kind");

static int parse_rule(Loader *l, const Server *srv, const Location *parent, const config_setting_t *g, Rule *rule) {
        const config_setting_t *ret_s, *pp, *body, *where;
        PartialSettings p = {};
        SchemaWalk w = { .table = &SCHEMA_RULE, .scope = SC_RULE | SC_LOCATION, .where = "in a rule",
                         .partial = &p };
        Location *loc;
        int r = 0;

        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
                return ERR(l, g, "a rule must be a group { conditions...; outcome...; }");
        rule->file = config_setting_origin(g, &l->files, &rule->line);
        loc = rule->loc = calloc(1, sizeof(Location));
        if (!loc)
                return -ENOMEM;
        loc->match = parent->match;
        loc->pattern = strdup(parent->pattern);
        if (!loc->pattern)
                return -ENOMEM;
        loc->pattern_len = parent->pattern_len;
        loc->stop_regex = parent->stop_regex;
        loc->file = rule->file;
        loc->line = rule->line;
        w.target = loc;
        for (int i = 0; i < config_setting_length(g); i++) {
                const config_setting_t *s = config_setting_get_elem(g, (unsigned) i);

                r = schema_member(l, s, &w);
                if (r == 0)
                        r = schema_unknown(l, s, SC_LOCATION, "in a rule");
                if (r == -ENOMEM)
                        goto done;
                if (r < 0)
                        w.bad = true;
        }
        for (size_t k = 0; k < ELEMENTSOF(cond_rows); k++) {
                const config_setting_t *s = w.seen[schema_find(&SCHEMA_RULE, cond_rows[k])];
                if (!s)
                        continue;
                switch ((ConditionKind) k) {
                case COND_SCHEME:
                case COND_METHOD:
                        r = parse_tokens(l, s, rule, (ConditionKind) k, srv);
                        break;
                case COND_SERVER_PORT:
                        r = parse_ports(l, s, rule, srv);
                        break;
                case COND_CLIENT:
                        r = parse_clients(l, s, rule);
                        break;
                default:
                        r = parse_fields(l, s, rule, (ConditionKind) k);
                        break;
                }
                if (r == -ENOMEM)
                        goto done;
                if (r < 0)
                        w.bad = true;
        }
        r = 0;
        if (w.bad) {
                r = -EINVAL;
                goto done;
        }
        if (rule->n_conds == 0) {
                r = ERR(l, g, "a rule needs a condition (scheme, server_port, method, client, header, arg or "
                        "cookie); what applies to every request belongs in the location itself");
                goto done;
        }
        qsort(rule->conds, rule->n_conds, sizeof(Condition), cond_cmp);

        ret_s = w.seen[schema_find(&SCHEMA_RULE, "return")];
        pp = w.seen[schema_find(&SCHEMA_RULE, "proxy_pass")];
        body = w.seen[schema_find(&SCHEMA_RULE, "body")];
        where = w.seen[schema_find(&SCHEMA_RULE, "location")];
        if (pp && ret_s) {
                r = ERR(l, g, "a rule takes either proxy_pass or return, not both");
                goto done;
        }
        if (!ret_s && (body || where)) {
                r = ERR(l, body ?: where, "\"%s\" is only valid with \"return\"", config_setting_name(body ?: where));
                goto done;
        }
        if (!ret_s && !pp && p.set == 0)
                TRY(WARN(l, g, "this rule changes nothing: give it return, proxy_pass, access or another setting"));
        if (pp) {
                r = config_location_proxy_pass(l, pp, loc);
                if (r < 0)
                        goto done;
        } else if (!ret_s) {
                /* the parent's outcome */
                loc->return_status = parent->return_status;
                loc->proxy = parent->proxy;
                loc->proxy_borrowed = true;
                if ((parent->return_body && !(loc->return_body = strdup(parent->return_body))) ||
                    (parent->return_location && !(loc->return_location = strdup(parent->return_location)))) {
                        r = -ENOMEM;
                        goto done;
                }
                if (parent->return_body_t)
                        r = var_template_compile(parent->return_body_t->source, &loc->return_body_t, NULL);
                if (r >= 0 && parent->return_location_t)
                        r = var_template_compile(parent->return_location_t->source, &loc->return_location_t, NULL);
                if (r < 0)
                        goto done;
        } else {
                r = compile_return(l, loc, g);
                if (r < 0)
                        goto done;
        }
        r = settings_resolve(&loc->s, &parent->s, &p);
done:
        partial_done(&p);
        return r;
}

int config_location_finish(Loader *l, const Server *srv, Location *loc, const config_setting_t *g) {
        const config_setting_t *rules = config_setting_get_member(g, "rules");
        int r;

        r = compile_return(l, loc, g);
        if (r < 0 || !rules)
                return r;
        if (config_setting_type(rules) != CONFIG_TYPE_LIST)
                return ERR(l, rules, "\"rules\" must be a list ( { ... }, ... )");
        if (config_setting_length(rules) > RULES_MAX)
                return ERR(l, rules, "too many rules (at most %d in a location)", RULES_MAX);
        loc->rules = calloc((size_t) config_setting_length(rules), sizeof(Rule));
        if (!loc->rules && config_setting_length(rules) > 0)
                return -ENOMEM;
        for (int i = 0; i < config_setting_length(rules) && r != -ENOMEM; i++) {
                Rule *rule = &loc->rules[loc->n_rules++];
                int k = parse_rule(l, srv, loc, config_setting_get_elem(rules, (unsigned) i), rule);

                if (k < 0)
                        r = k; /* the other rules are still checked */
        }
        if (r < 0) {
                rules_free(loc->rules, loc->n_rules);
                loc->rules = NULL;
                loc->n_rules = 0;
        }
        return r;
}
