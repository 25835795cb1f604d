/* SPDX-License-Identifier: MIT */
/* Typed getters for libconfig values: each checks the type and range and names the setting
 * and its file:line when it is wrong. */
#include <stdarg.h>

#include "config-schema.h"
#include "util.h"

/* ---- diagnostics ---- */

int diag_at(Loader *l, const config_setting_t *s, bool warning, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        const char *file;
        va_list ap;
        int line, r;

        file = config_setting_origin(s, &l->files, &line);
        va_start(ap, fmt);
        r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        r = config_diag_add(l->diags, file, line, warning, "%s", msg);
        return r < 0 ? r : (warning ? 0 : -EINVAL);
}

/* ---- typed getters ---- */

int get_string(Loader *l, const config_setting_t *s, const char **ret) {
        if (config_setting_type(s) != CONFIG_TYPE_STRING)
                return ERR(l, s, "\"%s\" must be a string", config_setting_name(s) ?: "element");
        *ret = config_setting_get_string(s);
        return 0;
}

int get_bool(Loader *l, const config_setting_t *s, bool *ret) {
        if (config_setting_type(s) != CONFIG_TYPE_BOOL)
                return ERR(l, s, "\"%s\" must be true or false", config_setting_name(s));
        *ret = config_setting_get_bool(s);
        return 0;
}

int get_uint(Loader *l, const config_setting_t *s, unsigned min, unsigned max, unsigned *ret) {
        long long v;

        if (config_setting_type(s) == CONFIG_TYPE_INT)
                v = config_setting_get_int(s);
        else if (config_setting_type(s) == CONFIG_TYPE_INT64)
                v = config_setting_get_int64(s);
        else
                return ERR(l, s, "\"%s\" must be an integer", config_setting_name(s) ?: "element");
        if (v < (long long) min || v > (long long) max)
                return ERR(l, s, "\"%s\" must be between %u and %u", config_setting_name(s) ?: "element", min,
                           max);
        *ret = (unsigned) v;
        return 0;
}

int get_duration(Loader *l, const config_setting_t *s, uint64_t *ret) {
        int t = config_setting_type(s);

        if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
                long long v = config_setting_get_int64(s);
                if (t == CONFIG_TYPE_INT)
                        v = config_setting_get_int(s);
                if (v < 0 || (unsigned long long) v > UINT64_MAX / USEC_PER_SEC - 1)
                        return ERR(l, s, "\"%s\": duration out of range", config_setting_name(s));
                *ret = (uint64_t) v * USEC_PER_SEC;
                return 0;
        }
        if (t != CONFIG_TYPE_STRING)
                return ERR(l, s, "\"%s\" must be a duration string like \"5s\"", config_setting_name(s));
        if (parse_duration(config_setting_get_string(s), ret) < 0)
                return ERR(l, s, "invalid duration \"%s\" for \"%s\"", config_setting_get_string(s),
                           config_setting_name(s));
        return 0;
}

int get_size(Loader *l, const config_setting_t *s, uint64_t *ret) {
        int t = config_setting_type(s);

        if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
                long long v = t == CONFIG_TYPE_INT ? config_setting_get_int(s) : config_setting_get_int64(s);
                if (v < 0)
                        return ERR(l, s, "\"%s\" must not be negative", config_setting_name(s));
                *ret = (uint64_t) v;
                return 0;
        }
        if (t != CONFIG_TYPE_STRING)
                return ERR(l, s, "\"%s\" must be a size string like \"1m\"", config_setting_name(s));
        if (parse_size(config_setting_get_string(s), ret) < 0)
                return ERR(l, s, "invalid size \"%s\" for \"%s\"", config_setting_get_string(s),
                           config_setting_name(s));
        return 0;
}

/* An array/list of strings, or one string. */
int get_string_list(Loader *l, const config_setting_t *s, char ***ret, size_t *ret_n, bool lower) {
        char **a = NULL;
        size_t n = 0;
        int len;

        if (config_setting_type(s) == CONFIG_TYPE_STRING)
                len = 1;
        else if (config_setting_type(s) == CONFIG_TYPE_ARRAY || config_setting_type(s) == CONFIG_TYPE_LIST)
                len = config_setting_length(s);
        else
                return ERR(l, s, "\"%s\" must be a list of strings [ \"...\", ... ]", config_setting_name(s));
        if (len > CONFIG_LIST_MAX)
                return ERR(l, s, "\"%s\" has too many entries (at most %d)", config_setting_name(s),
                           CONFIG_LIST_MAX);
        if (len > 0) {
                a = calloc((size_t) len, sizeof(char *));
                if (!a)
                        return -ENOMEM;
        }
        for (int i = 0; i < len; i++) {
                const config_setting_t *e = config_setting_type(s) == CONFIG_TYPE_STRING
                                                    ? s
                                                    : config_setting_get_elem(s, (unsigned) i);
                const char *v = NULL;
                if (config_setting_type(e) != CONFIG_TYPE_STRING) {
                        for (size_t k = 0; k < n; k++)
                                free(a[k]);
                        free(a);
                        return ERR(l, e, "\"%s\" must be a list of strings", config_setting_name(s));
                }
                v = config_setting_get_string(e);
                a[n] = lower ? strndup_lower(v, strlen(v)) : strdup(v);
                if (!a[n]) {
                        for (size_t k = 0; k < n; k++)
                                free(a[k]);
                        free(a);
                        return -ENOMEM;
                }
                n++;
        }
        *ret = a;
        *ret_n = n;
        return 0;
}

void strv_free(char **a, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(a[i]);
        free(a);
}

/* "%d/..." means $CREDENTIALS_DIRECTORY/...; the file must be readable. */
int get_path(Loader *l, const config_setting_t *s, char **ret) {
        const char *v = NULL;
        char *p;
        int r;

        r = get_string(l, s, &v);
        if (r < 0)
                return r;
        if (strncmp(v, "%d/", 3) == 0) {
                const char *cd = getenv("CREDENTIALS_DIRECTORY");
                if (!cd || !*cd)
                        return ERR(l, s, "\"%s\" uses %%d but $CREDENTIALS_DIRECTORY is not set",
                                   config_setting_name(s));
                if (asprintf(&p, "%s/%s", cd, v + 3) < 0)
                        return -ENOMEM;
        } else {
                if (v[0] != '/')
                        return ERR(l, s, "\"%s\" must be an absolute path", config_setting_name(s));
                p = strdup(v);
                if (!p)
                        return -ENOMEM;
        }
        if (access(p, R_OK) < 0) {
                r = ERR(l, s, "cannot read \"%s\": %m", p);
                free(p);
                return r;
        }
        *ret = p;
        return 0;
}

/* The first variable reference in s that does not compile on its own, for diagnostics. */
static int template_error(Loader *l, const config_setting_t *s, const char *v, const char *msg) {
        if (streq(msg, "unknown variable"))
                for (const char *p = strchr(v, '$'); p; p = strchr(p + 1, '$')) {
                        char name[256];
                        VarTemplate *t = NULL;
                        size_t n = 1;

                        if (p[1] == '{') {
                                const char *e = strchr(p, '}');
                                n = e ? (size_t) (e - p) + 1 : strlen(p);
                        } else
                                while (p[n] && (p[n] == '_' || (p[n] >= '0' && p[n] <= '9') ||
                                                (ascii_tolower(p[n]) >= 'a' && ascii_tolower(p[n]) <= 'z')))
                                        n++;
                        n = MIN(n, sizeof(name) - 1);
                        memcpy(name, p, n);
                        name[n] = 0;
                        if (var_template_compile(name, &t, NULL) < 0)
                                return ERR(l, s, "unknown variable \"%s\"", name);
                        var_template_free(t);
                }
        return ERR(l, s, "invalid value \"%s\": %s", v, msg);
}

int get_template(Loader *l, const config_setting_t *s, VarTemplate **ret) {
        const char *v = NULL, *msg = NULL;
        int r;

        r = get_string(l, s, &v);
        if (r < 0)
                return r;
        r = var_template_compile(v, ret, &msg);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return template_error(l, s, v, msg ?: "invalid");
        return 0;
}


int get_enum(Loader *l, const config_setting_t *s, const char *const *names, size_t n, unsigned *ret) {
        const char *v = NULL;
        int r = get_string(l, s, &v);

        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (streq(v, names[i])) {
                        *ret = (unsigned) i;
                        return 0;
                }
        return ERR(l, s, "invalid value \"%s\" for \"%s\"", v, config_setting_name(s));
}
