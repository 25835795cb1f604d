/* SPDX-License-Identifier: MIT */
#include "util.h"
#include "vars.h"

/* A template longer than this is refused: header values are bounded anyway. */
#define VAR_TEMPLATE_MAX 8192

static const char *const var_names[_VAR_MAX] = {
        [VAR_LITERAL] = "",
        [VAR_HOST] = "host",
        [VAR_REMOTE_ADDR] = "remote_addr",
        [VAR_REMOTE_PORT] = "remote_port",
        [VAR_SCHEME] = "scheme",
        [VAR_REQUEST_URI] = "request_uri",
        [VAR_URI] = "uri",
        [VAR_ARGS] = "args",
        [VAR_SERVER_NAME] = "server_name",
        [VAR_SERVER_PORT] = "server_port",
        [VAR_PROXY_HOST] = "proxy_host",
        [VAR_PROXY_ADD_X_FORWARDED_FOR] = "proxy_add_x_forwarded_for",
        [VAR_REQUEST_ID] = "request_id",
        [VAR_HTTP] = "http_",
        [VAR_REQUEST_METHOD] = "request_method",
        [VAR_SSL_CLIENT_S_DN] = "ssl_client_s_dn",
        [VAR_REALIP_REMOTE_ADDR] = "realip_remote_addr",
        [VAR_FORWARDED] = "forwarded",
        [VAR_PROXY_ADD_FORWARDED] = "proxy_add_forwarded",
        [VAR_ARG] = "arg_",
        [VAR_COOKIE] = "cookie_",
};

const char *var_name(VarId id) {
        if ((unsigned) id >= _VAR_MAX)
                return NULL;
        return var_names[id];
}

static bool is_name_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

VarTemplate *var_template_free(VarTemplate *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_segs; i++)
                free(t->segs[i].text);
        free(t->segs);
        free(t->source);
        free(t);
        return NULL;
}

static void var_template_freep(VarTemplate **t) {
        var_template_free(*t);
}

static int template_push(VarTemplate *t, VarId id, const char *text, size_t len, bool lower) {
        VarSegment *s;

        /* adjacent literals are joined */
        if (id == VAR_LITERAL && t->n_segs > 0 && t->segs[t->n_segs - 1].id == VAR_LITERAL) {
                VarSegment *last = &t->segs[t->n_segs - 1];
                char *p = realloc(last->text, last->len + len + 1);
                if (!p)
                        return -ENOMEM;
                memcpy(p + last->len, text, len);
                last->len += len;
                p[last->len] = 0;
                last->text = p;
                return 0;
        }

        s = reallocarray(t->segs, t->n_segs + 1, sizeof(VarSegment));
        if (!s)
                return -ENOMEM;
        t->segs = s;
        s = &t->segs[t->n_segs];
        *s = (VarSegment) { .id = id };
        if (text) {
                s->text = lower ? strndup_lower(text, len) : strndup(text, len);
                if (!s->text)
                        return -ENOMEM;
                s->len = len;
        }
        t->n_segs++;
        return 0;
}

static int lookup_var(const char *name, size_t n, VarId *ret_id) {
        for (VarId id = VAR_HOST; id < _VAR_MAX; id++) {
                if (id == VAR_HTTP || id == VAR_ARG || id == VAR_COOKIE)
                        continue;
                if (memeq(name, n, var_names[id])) {
                        *ret_id = id;
                        return 0;
                }
        }
        if (n > 5 && memcmp(name, "http_", 5) == 0) {
                *ret_id = VAR_HTTP;
                return 0;
        }
        if (n > 4 && memcmp(name, "arg_", 4) == 0) {
                *ret_id = VAR_ARG;
                return 0;
        }
        if (n > 7 && memcmp(name, "cookie_", 7) == 0) {
                *ret_id = VAR_COOKIE;
                return 0;
        }
        return -ENOENT;
}

int var_template_compile(const char *s, VarTemplate **ret, const char **ret_error) {
        _cleanup_(var_template_freep) VarTemplate *t = NULL;
        const char *dummy;
        size_t len, i = 0, lit = 0;
        int r;

        if (!ret_error)
                ret_error = &dummy;
        if (!s || !ret) {
                *ret_error = "invalid argument";
                return -EINVAL;
        }
        len = strlen(s);
        if (len > VAR_TEMPLATE_MAX) {
                *ret_error = "value too long";
                return -EINVAL;
        }

        t = calloc(1, sizeof(VarTemplate));
        if (!t)
                return -ENOMEM;
        t->source = strdup(s);
        if (!t->source)
                return -ENOMEM;

        while (i < len) {
                const char *name;
                size_t n;
                VarId id;

                if (s[i] != '$') {
                        i++;
                        continue;
                }
                if (i > lit) {
                        r = template_push(t, VAR_LITERAL, s + lit, i - lit, false);
                        if (r < 0)
                                return r;
                }
                i++;
                if (i < len && s[i] == '$') {
                        /* "$$" is one literal "$" */
                        r = template_push(t, VAR_LITERAL, "$", 1, false);
                        if (r < 0)
                                return r;
                        lit = ++i;
                        continue;
                }
                if (i < len && s[i] == '{') {
                        const char *close = strchr(s + i + 1, '}');
                        if (!close) {
                                *ret_error = "missing \"}\" after \"${\"";
                                return -EINVAL;
                        }
                        name = s + i + 1;
                        n = (size_t) (close - name);
                        for (size_t k = 0; k < n; k++)
                                if (!is_name_char(name[k])) {
                                        *ret_error = "invalid variable name";
                                        return -EINVAL;
                                }
                        i = (size_t) (close - s) + 1;
                } else {
                        name = s + i;
                        n = 0;
                        while (i + n < len && is_name_char(s[i + n]))
                                n++;
                        i += n;
                }
                if (n == 0) {
                        *ret_error = "\"$\" not followed by a variable name";
                        return -EINVAL;
                }
                if (lookup_var(name, n, &id) < 0) {
                        *ret_error = "unknown variable";
                        return -EINVAL;
                }
                if (id == VAR_HTTP)
                        r = template_push(t, VAR_HTTP, name + 5, n - 5, true);
                else if (id == VAR_ARG || id == VAR_COOKIE)
                        r = template_push(t, id, name + strlen(var_names[id]), n - strlen(var_names[id]), false);
                else
                        r = template_push(t, id, NULL, 0, false);
                if (r < 0)
                        return r;
                lit = i;
        }
        if (len > lit) {
                r = template_push(t, VAR_LITERAL, s + lit, len - lit, false);
                if (r < 0)
                        return r;
        }

        t->literal = true;
        for (size_t k = 0; k < t->n_segs; k++)
                if (t->segs[k].id != VAR_LITERAL)
                        t->literal = false;
        *ret = TAKE_PTR(t);
        return 0;
}

bool var_http_name_matches(const VarSegment *seg, const char *name, size_t len) {
        if (!seg || seg->id != VAR_HTTP || seg->len != len)
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = ascii_tolower(name[i]);
                if (c == '-')
                        c = '_';
                if (c != seg->text[i])
                        return false;
        }
        return true;
}
