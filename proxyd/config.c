/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/un.h>
#include <syslog.h>

#include "config-merge.h"
#include "config.h"
#include "util.h"

#define CONFIG_WORKERS_MAX 1024
#define CONFIG_LIST_MAX 4096      /* entries in any list: servers, locations, headers, rules */
#define CONFIG_ADDRS_PER_NAME 64  /* addresses taken from one resolved name */
#define CONFIG_KEEPALIVE_MAX 65536
#define CONFIG_WEIGHT_MAX 1000

typedef struct Loader {
        Config *c;
        ConfigDiags *diags;
        ConfigFiles files;
} Loader;

/* Location-level settings as written in one scope (defaults, server or location). */
typedef struct PartialSettings {
        uint64_t set; /* bit per field, see SETTINGS[] */
        LocationSettings v;
        bool has_access;
} PartialSettings;

/* ---- diagnostics ---- */

static int diag_at(Loader *l, const config_setting_t *s, bool warning, const char *fmt, ...) _printf_(4, 5);
static int diag_at(Loader *l, const config_setting_t *s, bool warning, const char *fmt, ...) {
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
#define ERR(l, s, ...) diag_at(l, s, false, __VA_ARGS__)
#define WARN(l, s, ...) diag_at(l, s, true, __VA_ARGS__)

/* Propagate only out-of-memory; other errors are already diagnosed and loading continues. */
#define TRY(expr)                        \
        do {                             \
                int _r_ = (expr);        \
                if (_r_ == -ENOMEM)      \
                        return _r_;      \
        } while (0)

static void set_origin(Loader *l, const config_setting_t *s, const char **file, int *line) {
        *file = config_setting_origin(s, &l->files, line);
}

/* ---- typed getters ---- */

static int get_string(Loader *l, const config_setting_t *s, const char **ret) {
        if (config_setting_type(s) != CONFIG_TYPE_STRING)
                return ERR(l, s, "\"%s\" must be a string", config_setting_name(s) ?: "element");
        *ret = config_setting_get_string(s);
        return 0;
}

static int get_bool(Loader *l, const config_setting_t *s, bool *ret) {
        if (config_setting_type(s) != CONFIG_TYPE_BOOL)
                return ERR(l, s, "\"%s\" must be true or false", config_setting_name(s));
        *ret = config_setting_get_bool(s);
        return 0;
}

static int get_uint(Loader *l, const config_setting_t *s, unsigned min, unsigned max, unsigned *ret) {
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

static int get_duration(Loader *l, const config_setting_t *s, uint64_t *ret) {
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

static int get_size(Loader *l, const config_setting_t *s, uint64_t *ret) {
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
static int get_string_list(Loader *l, const config_setting_t *s, char ***ret, size_t *ret_n, bool lower) {
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

static void strv_free(char **a, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(a[i]);
        free(a);
}

/* "%d/..." means $CREDENTIALS_DIRECTORY/...; the file must be readable. */
static int get_path(Loader *l, const config_setting_t *s, char **ret) {
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

static int get_template(Loader *l, const config_setting_t *s, VarTemplate **ret) {
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

static VarTemplate *template_dup(const VarTemplate *t) {
        VarTemplate *n = NULL;

        if (!t)
                return NULL;
        if (var_template_compile(t->source, &n, NULL) < 0)
                return NULL;
        return n;
}

/* ---- addresses ---- */

static bool all_digits(const char *s) {
        if (!*s)
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

static int parse_port(const char *s, uint16_t *ret) {
        uint64_t v;

        if (parse_uint64(s, strlen(s), &v) < 0 || v == 0 || v > 65535)
                return -EINVAL;
        *ret = (uint16_t) v;
        return 0;
}

/* Split "host", "host:port", "[v6]", "[v6]:port". */
static int split_host_port(const char *s, char **ret_host, uint16_t *ret_port, bool *ret_has_port) {
        const char *colon;
        char *host;

        *ret_has_port = false;
        if (s[0] == '[') {
                const char *e = strchr(s, ']');
                if (!e || e == s + 1)
                        return -EINVAL;
                host = strndup(s + 1, (size_t) (e - s - 1));
                colon = e[1] == ':' ? e + 1 : NULL;
                if (!colon && e[1] != 0) {
                        free(host);
                        return -EINVAL;
                }
        } else {
                colon = strchr(s, ':');
                if (colon && strchr(colon + 1, ':'))
                        return -EINVAL;
                host = colon ? strndup(s, (size_t) (colon - s)) : strdup(s);
        }
        if (!host)
                return -ENOMEM;
        if (!*host) {
                free(host);
                return -EINVAL;
        }
        if (colon) {
                if (parse_port(colon + 1, ret_port) < 0) {
                        free(host);
                        return -EINVAL;
                }
                *ret_has_port = true;
        }
        *ret_host = host;
        return 0;
}

static int make_unix(const char *path, struct sockaddr_storage *ss, socklen_t *len) {
        struct sockaddr_un *un = (struct sockaddr_un *) ss;
        size_t n = strlen(path);

        if (path[0] != '/' || n >= sizeof(un->sun_path))
                return -EINVAL;
        memset(ss, 0, sizeof(*ss));
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, path, n);
        *len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n + 1);
        return 0;
}

/* Resolve host:port into up to CONFIG_ADDRS_PER_NAME distinct addresses. */
static int resolve(const char *host, uint16_t port, struct sockaddr_storage **ret, size_t *ret_n,
                   const char **ret_err) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP }, *res = NULL;
        struct sockaddr_storage *a = NULL;
        char portstr[8];
        size_t n = 0;
        int r;

        snprintf(portstr, sizeof(portstr), "%u", port);
        r = getaddrinfo(host, portstr, &hints, &res);
        if (r != 0) {
                *ret_err = r == EAI_MEMORY ? "out of memory" : gai_strerror(r);
                return r == EAI_MEMORY ? -ENOMEM : -EINVAL;
        }
        for (struct addrinfo *ai = res; ai && n < CONFIG_ADDRS_PER_NAME; ai = ai->ai_next) {
                struct sockaddr_storage *na;
                bool dup = false;

                if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
                    ai->ai_addrlen > sizeof(struct sockaddr_storage))
                        continue;
                for (size_t i = 0; i < n; i++)
                        if (memcmp(&a[i], ai->ai_addr, ai->ai_addrlen) == 0)
                                dup = true;
                if (dup)
                        continue;
                na = reallocarray(a, n + 1, sizeof(*a));
                if (!na) {
                        free(a);
                        freeaddrinfo(res);
                        return -ENOMEM;
                }
                a = na;
                memset(&a[n], 0, sizeof(a[n]));
                memcpy(&a[n], ai->ai_addr, ai->ai_addrlen);
                n++;
        }
        freeaddrinfo(res);
        if (n == 0) {
                *ret_err = "no usable address";
                return -EINVAL;
        }
        *ret = a;
        *ret_n = n;
        return 0;
}

static socklen_t ss_len(const struct sockaddr_storage *ss) {
        return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* ---- location-level settings ---- */

enum {
        S_SET_HEADER,
        S_HIDE_HEADER,
        S_CONNECT_TIMEOUT,
        S_READ_TIMEOUT,
        S_SEND_TIMEOUT,
        S_CLIENT_HEADER_TIMEOUT,
        S_CLIENT_BODY_TIMEOUT,
        S_KEEPALIVE_TIMEOUT,
        S_CLIENT_MAX_BODY_SIZE,
        S_CLIENT_BODY_MIN_RATE,
        S_TUNNEL_TIMEOUT,
        S_CLIENT_MAX_REQUEST_LINE,
        S_CLIENT_MAX_HEADER_LINE,
        S_CLIENT_MAX_HEADER_SIZE,
        S_CLIENT_MAX_HEADERS,
        S_CLIENT_MAX_CHUNK_OVERHEAD,
        S_BUFFERING,
        S_WEBSOCKET,
        S_UPGRADE_PROTOCOLS,
        S_UNDERSCORES_IN_HEADERS,
        S_SSL_SERVER_NAME,
        S_SSL_VERIFY,
        S_SSL_TRUSTED_CERTIFICATE,
        S_SSL_NAME,
        S_SSL_CERTIFICATE,
        S_SSL_CERTIFICATE_KEY,
        S_ACCESS,
};

typedef enum SettingKind {
        K_HEADERS,
        K_HIDE,
        K_DURATION,
        K_SIZE,
        K_BOOL,
        K_PATH,
        K_TEMPLATE,
        K_ACCESS,
        K_TOKENS,
} SettingKind;

static const struct {
        const char *name;
        SettingKind kind;
        size_t offset;
} SETTINGS[] = {
        [S_SET_HEADER] = { "set_header", K_HEADERS, 0 },
        [S_HIDE_HEADER] = { "hide_header", K_HIDE, 0 },
        [S_CONNECT_TIMEOUT] = { "connect_timeout", K_DURATION, offsetof(LocationSettings, connect_timeout) },
        [S_READ_TIMEOUT] = { "read_timeout", K_DURATION, offsetof(LocationSettings, read_timeout) },
        [S_SEND_TIMEOUT] = { "send_timeout", K_DURATION, offsetof(LocationSettings, send_timeout) },
        [S_CLIENT_HEADER_TIMEOUT] = { "client_header_timeout", K_DURATION,
                                      offsetof(LocationSettings, client_header_timeout) },
        [S_CLIENT_BODY_TIMEOUT] = { "client_body_timeout", K_DURATION,
                                    offsetof(LocationSettings, client_body_timeout) },
        [S_KEEPALIVE_TIMEOUT] = { "keepalive_timeout", K_DURATION, offsetof(LocationSettings, keepalive_timeout) },
        [S_CLIENT_MAX_BODY_SIZE] = { "client_max_body_size", K_SIZE,
                                     offsetof(LocationSettings, client_max_body_size) },
        [S_CLIENT_BODY_MIN_RATE] = { "client_body_min_rate", K_SIZE,
                                     offsetof(LocationSettings, client_body_min_rate) },
        [S_TUNNEL_TIMEOUT] = { "tunnel_timeout", K_DURATION, offsetof(LocationSettings, tunnel_timeout) },
        [S_CLIENT_MAX_REQUEST_LINE] = { "client_max_request_line", K_SIZE,
                                        offsetof(LocationSettings, client_max_request_line) },
        [S_CLIENT_MAX_HEADER_LINE] = { "client_max_header_line", K_SIZE,
                                       offsetof(LocationSettings, client_max_header_line) },
        [S_CLIENT_MAX_HEADER_SIZE] = { "client_max_header_size", K_SIZE,
                                       offsetof(LocationSettings, client_max_header_size) },
        [S_CLIENT_MAX_HEADERS] = { "client_max_headers", K_SIZE, offsetof(LocationSettings, client_max_headers) },
        [S_CLIENT_MAX_CHUNK_OVERHEAD] = { "client_max_chunk_overhead", K_SIZE,
                                          offsetof(LocationSettings, client_max_chunk_overhead) },
        [S_BUFFERING] = { "buffering", K_BOOL, offsetof(LocationSettings, buffering) },
        [S_WEBSOCKET] = { "websocket", K_BOOL, offsetof(LocationSettings, websocket) },
        [S_UPGRADE_PROTOCOLS] = { "upgrade_protocols", K_TOKENS, 0 },
        [S_UNDERSCORES_IN_HEADERS] = { "underscores_in_headers", K_BOOL,
                                       offsetof(LocationSettings, underscores_in_headers) },
        [S_SSL_SERVER_NAME] = { "ssl_server_name", K_BOOL, offsetof(LocationSettings, ssl_server_name) },
        [S_SSL_VERIFY] = { "ssl_verify", K_BOOL, offsetof(LocationSettings, ssl_verify) },
        [S_SSL_TRUSTED_CERTIFICATE] = { "ssl_trusted_certificate", K_PATH,
                                        offsetof(LocationSettings, ssl_trusted_certificate) },
        [S_SSL_NAME] = { "ssl_name", K_TEMPLATE, offsetof(LocationSettings, ssl_name) },
        [S_SSL_CERTIFICATE] = { "ssl_certificate", K_PATH, offsetof(LocationSettings, ssl_certificate) },
        [S_SSL_CERTIFICATE_KEY] = { "ssl_certificate_key", K_PATH,
                                    offsetof(LocationSettings, ssl_certificate_key) },
        [S_ACCESS] = { "access", K_ACCESS, 0 },
};

static void settings_done(LocationSettings *s) {
        for (size_t i = 0; i < s->n_set_header; i++) {
                free(s->set_header[i].name);
                var_template_free(s->set_header[i].value);
        }
        free(s->set_header);
        strv_free(s->hide_header, s->n_hide_header);
        free(s->ssl_trusted_certificate);
        free(s->ssl_certificate);
        free(s->ssl_certificate_key);
        var_template_free(s->ssl_name);
        free(s->access);
        strv_free(s->upgrade_protocols, s->n_upgrade_protocols);
        *s = (LocationSettings) {};
}

static int tokens_copy(LocationSettings *dst, char *const *a, size_t n) {
        dst->upgrade_protocols = n > 0 ? calloc(n, sizeof(char *)) : NULL;
        dst->n_upgrade_protocols = 0;
        if (n > 0 && !dst->upgrade_protocols)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                dst->upgrade_protocols[i] = strdup(a[i]);
                if (!dst->upgrade_protocols[i])
                        return -ENOMEM;
                dst->n_upgrade_protocols++;
        }
        return 0;
}

static int settings_builtin(LocationSettings *s) {
        *s = (LocationSettings) {
                .connect_timeout = 5 * USEC_PER_SEC,
                .read_timeout = 60 * USEC_PER_SEC,
                .send_timeout = 60 * USEC_PER_SEC,
                .client_header_timeout = 10 * USEC_PER_SEC,
                .client_body_timeout = 60 * USEC_PER_SEC,
                .keepalive_timeout = 75 * USEC_PER_SEC,
                .client_max_body_size = UINT64_C(1) << 20,
                .client_body_min_rate = 1024,
                .tunnel_timeout = 3600 * USEC_PER_SEC,
                .client_max_request_line = HTTP_LIMITS_DEFAULT.max_request_line,
                .client_max_header_line = HTTP_LIMITS_DEFAULT.max_field_size,
                .client_max_header_size = HTTP_LIMITS_DEFAULT.max_head_size,
                .client_max_headers = HTTP_LIMITS_DEFAULT.max_headers,
                .client_max_chunk_overhead = HTTP_LIMITS_DEFAULT.max_chunk_overhead,
                .buffering = true,
                .websocket = true,
                .ssl_server_name = true,
                .ssl_verify = true,
        };
        static char *const upgrade_default[] = { (char *) "websocket" };
        if (tokens_copy(s, upgrade_default, ELEMENTSOF(upgrade_default)) < 0)
                return -ENOMEM;
        return var_template_compile("$proxy_host", &s->ssl_name, NULL) < 0 ? -ENOMEM : 0;
}

static int header_set(LocationSettings *s, const char *name, const VarTemplate *value) {
        HeaderSetting *a;
        VarTemplate *v = NULL;

        if (value) {
                v = template_dup(value);
                if (!v)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < s->n_set_header; i++)
                if (strcasecmp(s->set_header[i].name, name) == 0) {
                        var_template_free(s->set_header[i].value);
                        s->set_header[i].value = v;
                        return 0;
                }
        a = reallocarray(s->set_header, s->n_set_header + 1, sizeof(HeaderSetting));
        if (!a) {
                var_template_free(v);
                return -ENOMEM;
        }
        s->set_header = a;
        a[s->n_set_header].name = strdup(name);
        if (!a[s->n_set_header].name) {
                var_template_free(v);
                return -ENOMEM;
        }
        a[s->n_set_header].value = v;
        s->n_set_header++;
        return 0;
}

static int hide_add(LocationSettings *s, const char *name) {
        char **a;

        for (size_t i = 0; i < s->n_hide_header; i++)
                if (strcasecmp(s->hide_header[i], name) == 0)
                        return 0;
        a = reallocarray(s->hide_header, s->n_hide_header + 1, sizeof(char *));
        if (!a)
                return -ENOMEM;
        s->hide_header = a;
        a[s->n_hide_header] = strndup_lower(name, strlen(name));
        if (!a[s->n_hide_header])
                return -ENOMEM;
        s->n_hide_header++;
        return 0;
}

/* dst = parent with p applied on top. */
static int settings_resolve(LocationSettings *dst, const LocationSettings *parent, const PartialSettings *p) {
        const LocationSettings *v = p ? &p->v : NULL;
        uint64_t set = p ? p->set : 0;
        int r;

        *dst = *parent;
        dst->set_header = NULL;
        dst->n_set_header = 0;
        dst->hide_header = NULL;
        dst->n_hide_header = 0;
        dst->ssl_trusted_certificate = NULL;
        dst->ssl_certificate = NULL;
        dst->ssl_certificate_key = NULL;
        dst->ssl_name = NULL;
        dst->access = NULL;
        dst->n_access = 0;
        dst->upgrade_protocols = NULL;
        dst->n_upgrade_protocols = 0;

        if ((set & (UINT64_C(1) << S_UPGRADE_PROTOCOLS)) && v)
                r = tokens_copy(dst, v->upgrade_protocols, v->n_upgrade_protocols);
        else
                r = tokens_copy(dst, parent->upgrade_protocols, parent->n_upgrade_protocols);
        if (r < 0)
                return r;

        for (size_t i = 0; i < parent->n_set_header; i++) {
                r = header_set(dst, parent->set_header[i].name, parent->set_header[i].value);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < parent->n_hide_header; i++) {
                r = hide_add(dst, parent->hide_header[i]);
                if (r < 0)
                        return r;
        }
        if (v)
                for (size_t i = 0; i < v->n_set_header; i++) {
                        r = header_set(dst, v->set_header[i].name, v->set_header[i].value);
                        if (r < 0)
                                return r;
                }
        if (v)
                for (size_t i = 0; i < v->n_hide_header; i++) {
                        r = hide_add(dst, v->hide_header[i]);
                        if (r < 0)
                                return r;
                }

        for (size_t i = 0; i < ELEMENTSOF(SETTINGS); i++) {
                if (!(set & (UINT64_C(1) << i)))
                        continue;
                if (SETTINGS[i].kind == K_DURATION || SETTINGS[i].kind == K_SIZE)
                        *(uint64_t *) ((char *) dst + SETTINGS[i].offset) =
                                *(const uint64_t *) ((const char *) v + SETTINGS[i].offset);
                else if (SETTINGS[i].kind == K_BOOL)
                        *(bool *) ((char *) dst + SETTINGS[i].offset) =
                                *(const bool *) ((const char *) v + SETTINGS[i].offset);
        }

        for (size_t i = 0; i < ELEMENTSOF(SETTINGS); i++) {
                const char *pv;
                char *copy = NULL;

                if (SETTINGS[i].kind != K_PATH)
                        continue;
                pv = *(char *const *) ((const char *) ((set & (UINT64_C(1) << i)) ? v : parent) +
                                       SETTINGS[i].offset);
                if (pv) {
                        copy = strdup(pv);
                        if (!copy)
                                return -ENOMEM;
                }
                *(char **) ((char *) dst + SETTINGS[i].offset) = copy;
        }

        {
                const VarTemplate *sn = (set & (UINT64_C(1) << S_SSL_NAME)) ? v->ssl_name : parent->ssl_name;
                const AccessRule *ar = (p && p->has_access) ? v->access : parent->access;
                size_t nar = (p && p->has_access) ? v->n_access : parent->n_access;

                if (sn) {
                        dst->ssl_name = template_dup(sn);
                        if (!dst->ssl_name)
                                return -ENOMEM;
                }
                if (nar > 0) {
                        dst->access = calloc(nar, sizeof(AccessRule));
                        if (!dst->access)
                                return -ENOMEM;
                        memcpy(dst->access, ar, nar * sizeof(AccessRule));
                        dst->n_access = nar;
                }
        }
        return 0;
}

static int parse_access_rule(const char *s, AccessRule *ret) {
        AccessRule a = {};
        const char *p;
        char buf[INET6_ADDRSTRLEN + 8], *slash;
        unsigned max;

        if (strncmp(s, "allow", 5) == 0)
                a.allow = true, p = s + 5;
        else if (strncmp(s, "deny", 4) == 0)
                a.allow = false, p = s + 4;
        else
                return -EINVAL;
        if (*p != ' ' && *p != '\t')
                return -EINVAL;
        while (*p == ' ' || *p == '\t')
                p++;
        if (streq(p, "all")) {
                a.family = AF_UNSPEC;
                *ret = a;
                return 0;
        }
        if (strlen(p) >= sizeof(buf))
                return -EINVAL;
        strcpy(buf, p);
        slash = strchr(buf, '/');
        if (slash)
                *slash = 0;
        if (inet_pton(AF_INET, buf, a.addr) == 1)
                a.family = AF_INET, max = 32;
        else if (inet_pton(AF_INET6, buf, a.addr) == 1)
                a.family = AF_INET6, max = 128;
        else
                return -EINVAL;
        a.prefix = max;
        if (slash) {
                uint64_t v;
                if (parse_uint64(slash + 1, strlen(slash + 1), &v) < 0 || v > max)
                        return -EINVAL;
                a.prefix = (unsigned) v;
        }
        for (unsigned bit = a.prefix; bit < max; bit++)
                a.addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
        *ret = a;
        return 0;
}

static bool prefix_match(const uint8_t *a, const uint8_t *b, unsigned bits) {
        unsigned full = bits / 8, rest = bits % 8;

        if (memcmp(a, b, full) != 0)
                return false;
        if (rest == 0)
                return true;
        uint8_t mask = (uint8_t) (0xffu << (8 - rest));
        return (a[full] & mask) == (b[full] & mask);
}

bool access_check(const AccessRule *rules, size_t n, const struct sockaddr *addr) {
        uint8_t a[16] = {};
        int family;

        if (!rules || n == 0)
                return true;
        if (!addr)
                return false;
        switch (addr->sa_family) {
        case AF_INET:
                family = AF_INET;
                memcpy(a, &((const struct sockaddr_in *) addr)->sin_addr, 4);
                break;
        case AF_INET6: {
                const struct in6_addr *in6 = &((const struct sockaddr_in6 *) addr)->sin6_addr;
                if (IN6_IS_ADDR_V4MAPPED(in6)) {
                        family = AF_INET;
                        memcpy(a, in6->s6_addr + 12, 4);
                } else {
                        family = AF_INET6;
                        memcpy(a, in6->s6_addr, 16);
                }
                break;
        }
        case AF_UNIX:
                family = AF_INET;
                a[0] = 127, a[3] = 1;
                break;
        default:
                return false;
        }
        for (size_t i = 0; i < n; i++) {
                if (rules[i].family == AF_UNSPEC)
                        return rules[i].allow;
                if (rules[i].family == family && prefix_match(a, rules[i].addr, rules[i].prefix))
                        return rules[i].allow;
        }
        return true;
}

static void partial_done(PartialSettings *p) {
        settings_done(&p->v);
}

/* Returns 1 if s is a location-level setting (parsed into p), 0 if not, <0 on error. */
static int parse_setting(Loader *l, const config_setting_t *s, PartialSettings *p) {
        const char *name = config_setting_name(s);
        size_t i;
        int r = 0;

        for (i = 0; i < ELEMENTSOF(SETTINGS); i++)
                if (streq(name, SETTINGS[i].name))
                        break;
        if (i >= ELEMENTSOF(SETTINGS))
                return 0;

        switch (SETTINGS[i].kind) {
        case K_HEADERS:
                if (config_setting_type(s) != CONFIG_TYPE_GROUP)
                        return ERR(l, s, "\"set_header\" must be a group { Name = \"value\"; ... }");
                if (config_setting_length(s) > CONFIG_LIST_MAX)
                        return ERR(l, s, "\"set_header\" has too many entries");
                for (int k = 0; k < config_setting_length(s); k++) {
                        const config_setting_t *h = config_setting_get_elem(s, (unsigned) k);
                        VarTemplate *t = NULL;
                        const char *v = NULL;

                        if (get_string(l, h, &v) < 0)
                                continue;
                        if (*v) {
                                r = get_template(l, h, &t);
                                if (r == -ENOMEM)
                                        return r;
                                if (r < 0)
                                        continue;
                        }
                        r = header_set(&p->v, config_setting_name(h), t);
                        var_template_free(t);
                        if (r < 0)
                                return r;
                }
                break;
        case K_HIDE: {
                char **a = NULL;
                size_t n = 0;
                r = get_string_list(l, s, &a, &n, true);
                if (r < 0)
                        return r;
                for (size_t k = 0; k < n && r >= 0; k++)
                        r = hide_add(&p->v, a[k]);
                strv_free(a, n);
                if (r < 0)
                        return r;
                break;
        }
        case K_DURATION:
                r = get_duration(l, s, (uint64_t *) ((char *) &p->v + SETTINGS[i].offset));
                break;
        case K_SIZE:
                r = get_size(l, s, (uint64_t *) ((char *) &p->v + SETTINGS[i].offset));
                break;
        case K_BOOL:
                r = get_bool(l, s, (bool *) ((char *) &p->v + SETTINGS[i].offset));
                break;
        case K_PATH: {
                char **dst = (char **) ((char *) &p->v + SETTINGS[i].offset);
                free(*dst);
                *dst = NULL;
                r = get_path(l, s, dst);
                break;
        }
        case K_TEMPLATE:
                p->v.ssl_name = var_template_free(p->v.ssl_name);
                r = get_template(l, s, &p->v.ssl_name);
                break;
        case K_ACCESS: {
                char **a = NULL;
                size_t n = 0;
                r = get_string_list(l, s, &a, &n, false);
                if (r < 0)
                        return r;
                free(p->v.access);
                p->v.access = n > 0 ? calloc(n, sizeof(AccessRule)) : NULL;
                p->v.n_access = 0;
                if (n > 0 && !p->v.access) {
                        strv_free(a, n);
                        return -ENOMEM;
                }
                for (size_t k = 0; k < n; k++) {
                        if (parse_access_rule(a[k], &p->v.access[p->v.n_access]) < 0) {
                                r = ERR(l, config_setting_type(s) == CONFIG_TYPE_STRING
                                                   ? s
                                                   : config_setting_get_elem(s, (unsigned) k),
                                        "invalid access rule \"%s\" (expected \"allow|deny ADDRESS[/BITS]|all\")",
                                        a[k]);
                                if (r == -ENOMEM)
                                        break;
                                continue;
                        }
                        p->v.n_access++;
                }
                strv_free(a, n);
                if (r == -ENOMEM)
                        return r;
                p->has_access = true;
                break;
        }
        case K_TOKENS: {
                char **a = NULL;
                size_t n = 0;
                r = get_string_list(l, s, &a, &n, true);
                if (r < 0)
                        return r;
                for (size_t k = 0; k < n && r >= 0; k++) {
                        const config_setting_t *e = config_setting_type(s) == CONFIG_TYPE_STRING
                                                            ? s
                                                            : config_setting_get_elem(s, (unsigned) k);
                        if (!http1_token_valid(a[k], strlen(a[k])))
                                r = ERR(l, e, "\"%s\": \"%s\" is not a protocol name (an HTTP token, e.g. \"websocket\")",
                                        SETTINGS[i].name, a[k]);
                        else if (streq(a[k], "h2c"))
                                /* a tunnelled h2c connection carries requests no location sees */
                                r = ERR(l, e,
                                        "\"%s\": \"h2c\" cannot be tunnelled: the backend would take requests "
                                        "past every location and access rule",
                                        SETTINGS[i].name);
                }
                if (r < 0) {
                        strv_free(a, n);
                        return r;
                }
                strv_free(p->v.upgrade_protocols, p->v.n_upgrade_protocols);
                p->v.upgrade_protocols = a;
                p->v.n_upgrade_protocols = n;
                break;
        }
        }
        if (r == -ENOMEM)
                return r;
        if (r >= 0)
                p->set |= UINT64_C(1) << i;
        return 1;
}

static bool is_location_only(const char *name) {
        static const char *const keys[] = { "proxy_pass", "return", "body", "location", "exact",
                                            "prefix",     "regex",  "iregex", "stop_regex" };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (streq(name, keys[i]))
                        return true;
        return false;
}

static int unknown_key(Loader *l, const config_setting_t *s, const char *where) {
        const char *name = config_setting_name(s);

        if (is_location_only(name))
                return ERR(l, s, "\"%s\" is only allowed inside a location, not %s", name, where);
        return ERR(l, s, "unknown setting \"%s\"", name);
}

/* ---- upstreams ---- */

static Upstream *upstream_free(Upstream *u) {
        if (!u)
                return NULL;
        if (u->rt && u->rt_free)
                u->rt_free(u->rt);
        for (size_t i = 0; i < u->n_servers; i++) {
                free(u->servers[i].address);
                free(u->servers[i].host);
        }
        free(u->servers);
        if (u->health_check) {
                free(u->health_check->path);
                free(u->health_check->statuses);
                free(u->health_check);
        }
        free(u->name);
        free(u);
        return NULL;
}

static int upstream_new(const char *name, bool implicit, Upstream **ret) {
        Upstream *u = calloc(1, sizeof(Upstream));

        if (!u)
                return -ENOMEM;
        u->name = strdup(name);
        if (!u->name) {
                free(u);
                return -ENOMEM;
        }
        u->implicit = implicit;
        u->balance = BALANCE_ROUND_ROBIN;
        u->keepalive = 32;
        u->keepalive_timeout = 60 * USEC_PER_SEC;
        u->keepalive_requests = 1000;
        u->next_upstream = NEXT_UPSTREAM_ERROR | NEXT_UPSTREAM_TIMEOUT;
        *ret = u;
        return 0;
}

static int config_add_upstream(Config *c, Upstream *u) {
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
static int upstream_add_address(Upstream *u, const char *address, const UpstreamServer *tmpl,
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
        UpstreamServer tmpl = { .weight = 1, .max_fails = 1, .fail_timeout = 10 * USEC_PER_SEC };
        const config_setting_t *addr = NULL;
        bool bad = false;
        int r;

        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
                return ERR(l, g, "upstream server must be a group { address = \"...\"; ... }");
        set_origin(l, g, &tmpl.file, &tmpl.line);
        for (int i = 0; i < config_setting_length(g); i++) {
                const config_setting_t *s = config_setting_get_elem(g, (unsigned) i);
                const char *n = config_setting_name(s);

                if (streq(n, "address")) {
                        addr = s;
                        r = config_setting_type(s) == CONFIG_TYPE_STRING ? 0 : get_string(l, s, &n);
                } else if (streq(n, "weight"))
                        r = get_uint(l, s, 1, CONFIG_WEIGHT_MAX, &tmpl.weight);
                else if (streq(n, "max_fails"))
                        r = get_uint(l, s, 0, 1000000, &tmpl.max_fails);
                else if (streq(n, "fail_timeout"))
                        r = get_duration(l, s, &tmpl.fail_timeout);
                else if (streq(n, "backup"))
                        r = get_bool(l, s, &tmpl.backup);
                else if (streq(n, "down"))
                        r = get_bool(l, s, &tmpl.down);
                else if (streq(n, "resolve"))
                        r = get_duration(l, s, &tmpl.resolve_interval);
                else if (streq(n, "max_conns"))
                        r = get_uint(l, s, 0, 1000000, &tmpl.max_conns);
                else
                        r = unknown_key(l, s, "in an upstream server");
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        bad = true;
        }
        if (!addr)
                return ERR(l, g, "upstream server without \"address\"");
        if (bad || config_setting_type(addr) != CONFIG_TYPE_STRING)
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

static int parse_string_enum(Loader *l, const config_setting_t *s, const char *const *names, size_t n,
                             unsigned *ret) {
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

static int parse_health_check(Loader *l, Upstream *up, const config_setting_t *g) {
        HealthCheck *h;
        bool bad = false;

        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
                return ERR(l, g, "\"health_check\" must be a group");
        h = calloc(1, sizeof(HealthCheck));
        if (!h)
                return -ENOMEM;
        h->interval = 5 * USEC_PER_SEC;
        h->timeout = 2 * USEC_PER_SEC;
        h->fails = 1;
        h->passes = 1;
        for (int i = 0; i < config_setting_length(g); i++) {
                const config_setting_t *s = config_setting_get_elem(g, (unsigned) i);
                const char *n = config_setting_name(s), *v = NULL;
                int r;

                if (streq(n, "path")) {
                        r = get_string(l, s, &v);
                        if (r >= 0 && v[0] != '/')
                                r = ERR(l, s, "\"path\" must start with \"/\"");
                        else if (r >= 0 && strpbrk(v, " \t\r\n"))
                                r = ERR(l, s, "\"path\" must not contain white space");
                        else if (r >= 0) {
                                free(h->path);
                                h->path = strdup(v);
                                r = h->path ? 0 : -ENOMEM;
                        }
                } else if (streq(n, "interval") || streq(n, "timeout")) {
                        uint64_t *d = streq(n, "interval") ? &h->interval : &h->timeout;
                        r = get_duration(l, s, d);
                        if (r >= 0 && *d == 0)
                                r = ERR(l, s, "\"%s\" must be positive", n);
                } else if (streq(n, "fails") || streq(n, "passes"))
                        r = get_uint(l, s, 1, 1000, streq(n, "fails") ? &h->fails : &h->passes);
                else if (streq(n, "status")) {
                        r = 0;
                        if (config_setting_type(s) != CONFIG_TYPE_ARRAY && config_setting_type(s) != CONFIG_TYPE_LIST)
                                r = ERR(l, s, "\"status\" must be a list of status codes");
                        else if (config_setting_length(s) > 0) {
                                size_t k, len = (size_t) config_setting_length(s);
                                free(h->statuses);
                                h->n_statuses = 0;
                                h->statuses = calloc(len, sizeof(unsigned));
                                if (!h->statuses)
                                        r = -ENOMEM;
                                for (k = 0; k < len && r >= 0; k++)
                                        r = get_uint(l, config_setting_get_elem(s, (unsigned) k), 100, 599,
                                                     &h->statuses[k]);
                                if (r >= 0)
                                        h->n_statuses = len;
                        }
                } else
                        r = unknown_key(l, s, "in a health_check");
                if (r == -ENOMEM) {
                        free(h->path);
                        free(h->statuses);
                        free(h);
                        return r;
                }
                if (r < 0)
                        bad = true;
        }
        if (!h->path) {
                h->path = strdup("/");
                if (!h->path) {
                        free(h->statuses);
                        free(h);
                        return -ENOMEM;
                }
        }
        if (up->health_check) {
                free(up->health_check->path);
                free(up->health_check->statuses);
                free(up->health_check);
        }
        up->health_check = h;
        return bad ? -EINVAL : 0;
}

static int parse_upstream(Loader *l, const config_setting_t *g) {
        static const char *const balance_names[] = {
                [BALANCE_ROUND_ROBIN] = "round_robin",
                [BALANCE_LEAST_CONN] = "least_conn",
                [BALANCE_IP_HASH] = "ip_hash",
                [BALANCE_RANDOM] = "random",
        };
        static const char *const next_names[] = { "error",    "timeout",  "invalid_header", "http_502",
                                                  "http_503", "http_504", "non_idempotent", "off" };
        const config_setting_t *servers = NULL;
        Upstream *u = NULL;
        int r;

        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
                return ERR(l, g, "upstream \"%s\" must be a group", config_setting_name(g));
        r = upstream_new(config_setting_name(g), false, &u);
        if (r < 0)
                return r;
        set_origin(l, g, &u->file, &u->line);
        r = config_add_upstream(l->c, u);
        if (r < 0) {
                upstream_free(u);
                return r;
        }

        for (int i = 0; i < config_setting_length(g); i++) {
                const config_setting_t *s = config_setting_get_elem(g, (unsigned) i);
                const char *n = config_setting_name(s);
                unsigned v = 0;

                if (streq(n, "balance")) {
                        r = parse_string_enum(l, s, balance_names, ELEMENTSOF(balance_names), &v);
                        if (r >= 0)
                                u->balance = (UpstreamBalance) v;
                } else if (streq(n, "keepalive"))
                        r = get_uint(l, s, 0, CONFIG_KEEPALIVE_MAX, &u->keepalive);
                else if (streq(n, "keepalive_timeout"))
                        r = get_duration(l, s, &u->keepalive_timeout);
                else if (streq(n, "keepalive_requests"))
                        r = get_uint(l, s, 1, 1000000, &u->keepalive_requests);
                else if (streq(n, "slow_start"))
                        r = get_duration(l, s, &u->slow_start);
                else if (streq(n, "health_check"))
                        r = parse_health_check(l, u, s);
                else if (streq(n, "next_upstream_tries"))
                        r = get_uint(l, s, 0, 1000, &u->next_upstream_tries);
                else if (streq(n, "next_upstream_timeout"))
                        r = get_duration(l, s, &u->next_upstream_timeout);
                else if (streq(n, "next_upstream")) {
                        char **a = NULL;
                        size_t na = 0;
                        unsigned flags = 0;
                        r = get_string_list(l, s, &a, &na, false);
                        for (size_t k = 0; r >= 0 && k < na; k++) {
                                size_t j = 0;
                                while (j < ELEMENTSOF(next_names) && !streq(a[k], next_names[j]))
                                        j++;
                                if (j == ELEMENTSOF(next_names))
                                        r = ERR(l, s, "invalid value \"%s\" in \"next_upstream\"", a[k]);
                                else if (streq(a[k], "off") && na > 1)
                                        r = ERR(l, s, "\"off\" cannot be combined with other values in \"next_upstream\"");
                                else if (!streq(a[k], "off"))
                                        flags |= 1u << j;
                        }
                        if (r >= 0)
                                u->next_upstream = flags;
                        strv_free(a, na);
                } else if (streq(n, "servers")) {
                        servers = s;
                        r = 0;
                        if (config_setting_type(s) != CONFIG_TYPE_LIST)
                                r = ERR(l, s, "\"servers\" must be a list ( { address = \"...\"; }, ... )");
                        else
                                for (int k = 0; k < config_setting_length(s); k++) {
                                        r = parse_upstream_server(l, u, config_setting_get_elem(s, (unsigned) k));
                                        if (r == -ENOMEM)
                                                return r;
                                }
                } else
                        r = unknown_key(l, s, "in an upstream");
                if (r == -ENOMEM)
                        return r;
        }
        if (!servers || config_setting_length(servers) == 0)
                return ERR(l, g, "upstream \"%s\" has no servers", u->name);
        return 0;
}

static Upstream *find_upstream(Config *c, const char *name, bool implicit) {
        for (size_t i = 0; i < c->n_upstreams; i++)
                if (c->upstreams[i]->implicit == implicit && streq(c->upstreams[i]->name, name))
                        return c->upstreams[i];
        return NULL;
}

/* ---- proxy_pass ---- */

static ProxyPass *proxy_pass_free(ProxyPass *p) {
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
        UpstreamServer tmpl = { .weight = 1, .max_fails = 1, .fail_timeout = 10 * USEC_PER_SEC };
        const char *err = NULL;
        Upstream *u;
        int r;

        u = find_upstream(l->c, name, true);
        if (u) {
                *ret = u;
                return 0;
        }
        r = upstream_new(name, true, &u);
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

static int parse_proxy_pass(Loader *l, const config_setting_t *s, ProxyPass **ret) {
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

static Location *location_free(Location *loc) {
        if (!loc)
                return NULL;
        free(loc->pattern);
        pcre2_code_free(loc->re);
        free(loc->return_body);
        free(loc->return_location);
        proxy_pass_free(loc->proxy);
        settings_done(&loc->s);
        free(loc);
        return NULL;
}

static bool startswith(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int parse_location(Loader *l, Server *srv, const config_setting_t *g, Location **ret) {
        static const char *const match_keys[] = {
                [MATCH_EXACT] = "exact", [MATCH_PREFIX] = "prefix", [MATCH_REGEX] = "regex", [MATCH_IREGEX] = "iregex"
        };
        const config_setting_t *match = NULL, *pp = NULL, *ret_s = NULL, *body = NULL, *locs = NULL, *stop = NULL;
        PartialSettings p = {};
        Location *loc;
        bool bad = false;
        int r;

        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
                return ERR(l, g, "a location must be a group { ... }");
        loc = calloc(1, sizeof(Location));
        if (!loc)
                return -ENOMEM;
        set_origin(l, g, &loc->file, &loc->line);

        for (int i = 0; i < config_setting_length(g); i++) {
                const config_setting_t *s = config_setting_get_elem(g, (unsigned) i);
                const char *n = config_setting_name(s);
                bool is_match = false;

                for (size_t k = 0; k < ELEMENTSOF(match_keys); k++)
                        if (streq(n, match_keys[k])) {
                                is_match = true;
                                if (match) {
                                        r = ERR(l, s, "a location takes exactly one of exact, prefix, regex, iregex");
                                        goto next;
                                }
                                match = s;
                                loc->match = (LocationMatch) k;
                        }
                r = 0;
                if (is_match)
                        r = get_string(l, s, &n);
                else if (streq(n, "proxy_pass"))
                        pp = s;
                else if (streq(n, "return")) {
                        unsigned st = 0;
                        ret_s = s;
                        r = get_uint(l, s, 100, 599, &st);
                        if (r >= 0)
                                loc->return_status = (int) st;
                } else if (streq(n, "body")) {
                        const char *v = NULL;
                        body = s;
                        r = get_string(l, s, &v);
                        if (r >= 0 && !(loc->return_body = strdup(v)))
                                r = -ENOMEM;
                } else if (streq(n, "location")) {
                        const char *v = NULL;
                        locs = s;
                        r = get_string(l, s, &v);
                        if (r >= 0 && !(loc->return_location = strdup(v)))
                                r = -ENOMEM;
                } else if (streq(n, "stop_regex")) {
                        stop = s;
                        r = get_bool(l, s, &loc->stop_regex);
                } else if (startswith(n, "client_max_") && !streq(n, "client_max_body_size")) {
                        /* head limits apply before a location is chosen */
                        r = ERR(l, s, "\"%s\" is a server-level setting (server or defaults), not valid in a location", n);
                } else {
                        r = parse_setting(l, s, &p);
                        if (r == 0)
                                r = ERR(l, s, "unknown setting \"%s\"", n);
                }
        next:
                if (r == -ENOMEM)
                        goto fail;
                if (r < 0)
                        bad = true;
        }

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
                r = parse_proxy_pass(l, pp, &loc->proxy);
                if (r < 0)
                        goto fail;
                if (loc->proxy->uri && (loc->match == MATCH_REGEX || loc->match == MATCH_IREGEX)) {
                        r = ERR(l, pp, "proxy_pass with a URI is not allowed in a regex location");
                        goto fail;
                }
        }
        r = settings_resolve(&loc->s, &srv->s, &p);
        if (r < 0)
                goto fail;
        partial_done(&p);
        *ret = loc;
        return 0;
fail:
        partial_done(&p);
        location_free(loc);
        return r < 0 ? r : -EINVAL;
}

/* ---- servers and listens ---- */

static Server *server_free(Server *s) {
        if (!s)
                return NULL;
        free(s->name);
        strv_free(s->server_names, s->n_server_names);
        for (size_t i = 0; i < s->n_locations; i++)
                location_free(s->locations[i]);
        free(s->locations);
        settings_done(&s->s);
        for (size_t i = 0; i < s->n_tls_certificates; i++) {
                free(s->tls_certificates[i].certificate);
                free(s->tls_certificates[i].key);
        }
        free(s->tls_certificates);
        free(s->tls_priority);
        free(s->tls_client_ca);
        free(s);
        return NULL;
}

static int parse_listen_text(const char *t, Listen *ret) {
        Listen li = {};

        if (strncmp(t, "unix:", 5) == 0) {
                li.kind = LISTEN_UNIX;
                if (make_unix(t + 5, &li.addr, &li.addrlen) < 0)
                        return -EINVAL;
        } else if (!strchr(t, ':') && !all_digits(t)) {
                li.kind = LISTEN_NAME;
                if (!*t || strlen(t) > 255 || strpbrk(t, " \t/[]"))
                        return -EINVAL;
        } else {
                struct sockaddr_in *in = (struct sockaddr_in *) &li.addr;
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &li.addr;
                _cleanup_free_ char *host = NULL;
                uint16_t port;
                bool has_port;

                li.kind = LISTEN_INET;
                if (all_digits(t)) {
                        if (parse_port(t, &port) < 0)
                                return -EINVAL;
                        in->sin_family = AF_INET;
                        in->sin_port = htons(port);
                        li.addrlen = sizeof(*in);
                } else {
                        int r = split_host_port(t, &host, &port, &has_port);
                        if (r < 0)
                                return r;
                        if (!has_port)
                                return -EINVAL;
                        if (streq(host, "*") || inet_pton(AF_INET, host, &in->sin_addr) == 1) {
                                in->sin_family = AF_INET;
                                in->sin_port = htons(port);
                                li.addrlen = sizeof(*in);
                        } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
                                in6->sin6_family = AF_INET6;
                                in6->sin6_port = htons(port);
                                li.addrlen = sizeof(*in6);
                        } else
                                return -EINVAL;
                }
        }
        *ret = li;
        return 0;
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

static int parse_tls_cert(Loader *l, const config_setting_t *g, TlsCertificate *ret, bool allow_more,
                          Server *srv) {
        TlsCertificate t = {};
        bool bad = false;
        int r;

        set_origin(l, g, &t.file, &t.line);
        for (int i = 0; i < config_setting_length(g); i++) {
                const config_setting_t *s = config_setting_get_elem(g, (unsigned) i);
                const char *n = config_setting_name(s), *v = NULL;

                if (streq(n, "certificate")) {
                        free(t.certificate);
                        t.certificate = NULL;
                        r = get_path(l, s, &t.certificate);
                } else if (streq(n, "key")) {
                        free(t.key);
                        t.key = NULL;
                        r = get_path(l, s, &t.key);
                } else if (allow_more && streq(n, "priority")) {
                        r = get_string(l, s, &v);
                        if (r >= 0) {
                                free(srv->tls_priority);
                                srv->tls_priority = strdup(v);
                                if (!srv->tls_priority)
                                        r = -ENOMEM;
                                set_origin(l, s, &srv->tls_priority_file, &srv->tls_priority_line);
                        }
                } else if (allow_more && streq(n, "client_ca")) {
                        free(srv->tls_client_ca);
                        srv->tls_client_ca = NULL;
                        r = get_path(l, s, &srv->tls_client_ca);
                } else if (allow_more && streq(n, "verify_client")) {
                        static const char *const modes[] = { "off", "optional", "on" };
                        unsigned m = 0;
                        r = parse_string_enum(l, s, modes, ELEMENTSOF(modes), &m);
                        if (r >= 0)
                                srv->tls_verify_client = (TlsVerifyClient) m;
                } else if (allow_more && streq(n, "certificates"))
                        r = 0; /* handled by the caller */
                else
                        r = unknown_key(l, s, "in tls");
                if (r == -ENOMEM) {
                        free(t.certificate);
                        free(t.key);
                        return r;
                }
                if (r < 0)
                        bad = true;
        }
        *ret = t;
        return bad ? -EINVAL : 0;
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
        const config_setting_t *name = NULL, *listen = NULL, *locs = NULL, *tls = NULL;
        PartialSettings p = {};
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

        for (int i = 0; i < config_setting_length(g); i++) {
                const config_setting_t *s = config_setting_get_elem(g, (unsigned) i);
                const char *n = config_setting_name(s);

                r = 0;
                if (streq(n, "name")) {
                        name = s;
                        r = get_string(l, s, &n);
                } else if (streq(n, "listen"))
                        listen = s;
                else if (streq(n, "server_name"))
                        r = get_string_list(l, s, &srv->server_names, &srv->n_server_names, true);
                else if (streq(n, "locations"))
                        locs = s;
                else if (streq(n, "tls"))
                        tls = s;
                else {
                        r = parse_setting(l, s, &p);
                        if (r == 0)
                                r = unknown_key(l, s, "in a server");
                }
                if (r == -ENOMEM)
                        goto finish;
        }

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

        if (!locs)
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
        static const char *const levels[] = { "err", "warning", "notice", "info", "debug" };
        static const int level_values[] = { LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG };
        const config_setting_t *upstreams = NULL, *defaults = NULL, *servers = NULL;
        LocationSettings base = {}, dflt = {};
        PartialSettings p = {};
        Config *c = l->c;
        int r;

        c->log_level = LOG_INFO;
        c->access_log = true;
        c->shutdown_timeout = 30 * USEC_PER_SEC;
        c->max_connections = 10000;

        for (int i = 0; i < config_setting_length(root); i++) {
                const config_setting_t *s = config_setting_get_elem(root, (unsigned) i);
                const char *n = config_setting_name(s);
                unsigned v = 0;

                if (streq(n, "workers"))
                        r = get_uint(l, s, 0, CONFIG_WORKERS_MAX, &c->workers);
                else if (streq(n, "log_level")) {
                        r = parse_string_enum(l, s, levels, ELEMENTSOF(levels), &v);
                        if (r >= 0)
                                c->log_level = level_values[v];
                } else if (streq(n, "access_log")) {
                        /* true: the journal; false: off; "/path": a file, written in blocks */
                        int type = config_setting_type(s);
                        const char *file = type == CONFIG_TYPE_STRING ? config_setting_get_string(s) : NULL;

                        free(c->access_log_file);
                        c->access_log_file = NULL;
                        r = 0;
                        if (type == CONFIG_TYPE_BOOL)
                                c->access_log = config_setting_get_bool(s);
                        else if (file && file[0] == '/') {
                                c->access_log = true;
                                c->access_log_file = strdup(file);
                                c->access_log_src = config_setting_origin(s, &l->files, &c->access_log_line);
                                if (!c->access_log_file)
                                        r = -ENOMEM;
                        } else
                                r = ERR(l, s, "\"access_log\" must be true, false or an absolute file name");
                }
                else if (streq(n, "shutdown_timeout"))
                        r = get_duration(l, s, &c->shutdown_timeout);
                else if (streq(n, "max_connections"))
                        r = get_uint(l, s, 1, 1000000, &c->max_connections);
                else if (streq(n, "resolver")) {
                        r = get_string_list(l, s, &c->resolver, &c->n_resolver, false);
                        for (size_t k = 0; r >= 0 && k < c->n_resolver; k++) {
                                /* ADDR, ADDR:PORT or [ADDR6]:PORT */
                                _cleanup_free_ char *h = NULL;
                                uint8_t buf[16];
                                uint16_t port;
                                bool has_port;
                                if (inet_pton(AF_INET6, c->resolver[k], buf) == 1)
                                        continue;
                                r = split_host_port(c->resolver[k], &h, &port, &has_port);
                                if (r == -ENOMEM)
                                        break;
                                if (r < 0 || (inet_pton(AF_INET, h, buf) != 1 && inet_pton(AF_INET6, h, buf) != 1))
                                        r = ERR(l, s, "invalid resolver address \"%s\"", c->resolver[k]);
                        }
                } else if (streq(n, "upstreams"))
                        upstreams = s, r = 0;
                else if (streq(n, "defaults"))
                        defaults = s, r = 0;
                else if (streq(n, "servers"))
                        servers = s, r = 0;
                else
                        r = unknown_key(l, s, "at the top level");
                TRY(r);
        }

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
                else
                        for (int i = 0; i < config_setting_length(defaults); i++) {
                                const config_setting_t *s = config_setting_get_elem(defaults, (unsigned) i);
                                r = parse_setting(l, s, &p);
                                if (r == 0)
                                        r = unknown_key(l, s, "in defaults");
                                if (r == -ENOMEM)
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

        if (l->diags->n_errors == 0 && servers)
                for (size_t i = 0; i < c->n_servers; i++) {
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
        for (size_t i = 0; i < c->n_upstreams; i++)
                upstream_free(c->upstreams[i]);
        free(c->upstreams);
        for (size_t i = 0; i < c->n_listens; i++) {
                free(c->listens[i].text);
                free(c->listens[i].servers);
        }
        free(c->listens);
        strv_free(c->resolver, c->n_resolver);
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
                r = parse_top(&l, config_root_setting((config_t *) c->merged));
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
