/* SPDX-License-Identifier: MIT */
#pragma once

#include <assert.h>

/*
 * The settings schema (private to the config modules): every setting of proxyd.conf is one
 * row of a table, one table per kind of group. A row says the setting's name, type, the
 * scopes where it is valid, its default (libconfig text, the same text proxyd.conf(5) shows,
 * parsed by the same code as a value from a file), how it is inherited and a one-line
 * description. The loader walks every group through its table: unknown keys and keys in the
 * wrong scope, type checks with file:line, defaults and inheritance all come from the rows;
 * tests/test-config.c checks man/proxyd.conf.5 against them.
 */

#include <libconfig.h>

#include "config-merge.h"
#include "config.h"

/* Scopes: the kinds of group a setting may appear in. */
enum {
        SC_TOP = 1u << 0,
        SC_DEFAULTS = 1u << 1,
        SC_SERVER = 1u << 2,
        SC_LOCATION = 1u << 3,
        SC_UPSTREAM = 1u << 4,
        SC_UPSTREAM_SERVER = 1u << 5,
        SC_HEALTH_CHECK = 1u << 6,
        SC_TLS = 1u << 7,
        SC_TLS_CERT = 1u << 8, /* an entry of tls.certificates */
        SC_LIMIT = 1u << 9,    /* an entry of limits */
        SC_RULE = 1u << 10,    /* an entry of a location's rules */
        SC_AUTH = 1u << 11,    /* an auth_request group */
};

typedef enum SettingType {
        T_BOOL,
        T_UINT,         /* unsigned, min..max */
        T_DURATION,     /* uint64_t usec; an integer is seconds */
        T_SIZE,         /* uint64_t bytes */
        T_STRING,       /* char * (strdup); SETTING_NO_FIELD: checked, the caller reads it */
        T_ENUM,         /* one of names[]; stores values[i] (or i) as int */
        T_PATH,         /* char *, absolute or %d/, readable */
        T_TEMPLATE,     /* VarTemplate * */
        T_HEADERS,      /* header map: set_header */
        T_HEADER_NAMES, /* hide_header */
        T_STRINGS,      /* char ** + size_t: one string or a list */
        T_ACCESS,       /* access rules */
        T_FLAGS,        /* list of names[] as bits; "off" alone: none */
        T_STATUSES,     /* list of status codes */
        T_GROUP,        /* a group of its own table; parsed by the caller or by parse() */
        T_LIST,         /* a list of groups; parsed by the caller or by parse() */
} SettingType;

typedef enum SettingInherit {
        INHERIT_NONE,    /* not inherited */
        INHERIT_REPLACE, /* defaults -> server -> location, the innermost wins */
        INHERIT_MERGE,   /* merged by (case-insensitive) name along that path */
} SettingInherit;

enum {
        SF_LOWER = 1u << 0,    /* T_STRINGS: lower-cased */
        SF_REQUIRED = 1u << 1, /* the group is an error without it (checked by the caller) */
        SF_POSITIVE = 1u << 2, /* T_DURATION: 0 is an error */
};

#define SETTING_NO_FIELD ((size_t) -1)

typedef struct Loader Loader;
typedef struct SchemaWalk SchemaWalk;
typedef struct Setting Setting;

struct Setting {
        const char *name;
        SettingType type;
        unsigned scopes; /* SC_* */
        SettingInherit inherit;
        const char *dflt;        /* libconfig value text; NULL: no default value (zero/NULL/empty) */
        const char *doc_default; /* the man page's words when there is no value text */
        const char *doc_type;    /* the man page's type when not the one the type implies; "": none */
        const char *doc_section; /* the man page's section when not the table's */
        const char *description; /* one line */
        unsigned min, max;       /* T_UINT */
        const char *const *names; /* T_ENUM, T_FLAGS */
        size_t n_names;
        const int *values; /* T_ENUM: stored instead of the index */
        unsigned flags;    /* SF_* */
        size_t offset;     /* field in the walk's target; SETTING_NO_FIELD: none */
        size_t offset_n;   /* T_STRINGS, T_STATUSES: the count */
        /* Extra checks after the typed parse (value points at the parsed value, before it is
         * stored), or a parser for the whole setting (T_GROUP/T_LIST/odd types). */
        int (*check)(Loader *l, const config_setting_t *s, const void *value, size_t n);
        int (*parse)(Loader *l, const config_setting_t *s, SchemaWalk *w);
};

typedef struct SettingTable {
        const char *title;   /* proxyd.conf(5) section (.SH) that documents the rows */
        const char *nested;  /* for nested groups: the row of the parent whose .RS block holds them */
        const Setting *rows;
        size_t n_rows;
} SettingTable;

extern const SettingTable SCHEMA_TOP, SCHEMA_SERVER, SCHEMA_TLS, SCHEMA_LOCATION, SCHEMA_INHERIT,
        SCHEMA_UPSTREAM, SCHEMA_UPSTREAM_SERVER, SCHEMA_HEALTH_CHECK, SCHEMA_LIMIT, SCHEMA_RULE,
        SCHEMA_AUTH;
extern const SettingTable *const SCHEMA_TABLES[];
extern const size_t SCHEMA_N_TABLES;

#define SCHEMA_ROWS_MAX 64

#define CONFIG_WORKERS_MAX 1024
#define CONFIG_LIST_MAX 4096 /* entries in any list: servers, locations, headers, rules */
#define CONFIG_KEEPALIVE_MAX 65536
#define CONFIG_WEIGHT_MAX 1000

/* The type as proxyd.conf(5) names it, plain text ("integer 0-1024"), into buf. */
const char *schema_doc_type(const Setting *row, char *buf, size_t size);
/* parse() of rows the caller reads from w->seen itself. */
int schema_keep(Loader *l, const config_setting_t *s, SchemaWalk *w);
/* parse() of rows whose offset is into w->ctx rather than w->target. */
int schema_parse_ctx(Loader *l, const config_setting_t *s, SchemaWalk *w);

/* Location-level settings as written in one scope (defaults, server or location). */
typedef struct PartialSettings {
        uint64_t set; /* bit per row of SCHEMA_INHERIT */
        LocationSettings v;
} PartialSettings;

/* One walk of a group through a table. */
struct SchemaWalk {
        const SettingTable *table; /* the group's own rows, or NULL */
        unsigned scope;            /* SC_*: rows without it are not valid here */
        const char *where;         /* "in a server", for diagnostics */
        void *target;              /* the struct the rows' offsets point into */
        PartialSettings *partial;  /* the group also takes SCHEMA_INHERIT rows, into this */
        void *ctx;                 /* for parse() callbacks */
        const config_setting_t *seen[SCHEMA_ROWS_MAX]; /* per row of table: the member */
        bool bad;                  /* a member had an error */
};

struct Loader {
        Config *c;
        ConfigDiags *diags;
        ConfigFiles files;
        /* defaults from the tables, made once per load */
        Upstream upstream_dflt;
        UpstreamServer server_dflt;
        HealthCheck health_dflt;
};

int diag_at(Loader *l, const config_setting_t *s, bool warning, const char *fmt, ...) _printf_(4, 5);
#define ERR(l, s, ...) diag_at(l, s, false, __VA_ARGS__)
#define WARN(l, s, ...) diag_at(l, s, true, __VA_ARGS__)

/* Propagate only out-of-memory; other errors are already diagnosed and loading continues. */
#define TRY(expr)                        \
        do {                             \
                int _r_ = (expr);        \
                if (_r_ == -ENOMEM)      \
                        return _r_;      \
        } while (0)

/* typed getters: 0, or a diagnostic (-EINVAL) / -ENOMEM */
int get_string(Loader *l, const config_setting_t *s, const char **ret);
int get_bool(Loader *l, const config_setting_t *s, bool *ret);
int get_uint(Loader *l, const config_setting_t *s, unsigned min, unsigned max, unsigned *ret);
int get_duration(Loader *l, const config_setting_t *s, uint64_t *ret);
int get_size(Loader *l, const config_setting_t *s, uint64_t *ret);
int get_string_list(Loader *l, const config_setting_t *s, char ***ret, size_t *ret_n, bool lower);
int get_path(Loader *l, const config_setting_t *s, char **ret);
int get_template(Loader *l, const config_setting_t *s, VarTemplate **ret);
int get_enum(Loader *l, const config_setting_t *s, const char *const *names, size_t n, unsigned *ret);
void strv_free(char **a, size_t n);

/* Walk every member of group g: each one is parsed by its row, or diagnosed as unknown or
 * out of place. Returns 0 or -ENOMEM; w->bad says whether a member had an error. */
int schema_walk(Loader *l, const config_setting_t *g, SchemaWalk *w);
/* One member; returns 1 when it was parsed, 0 when no row of the walk takes it (nothing
 * diagnosed), <0 on error. */
int schema_member(Loader *l, const config_setting_t *s, SchemaWalk *w);
/* "unknown setting", "only allowed inside a location", ...: for a key no row of scope takes. */
int schema_unknown(Loader *l, const config_setting_t *s, unsigned scope, const char *where);
/* The built-in defaults of table's rows valid in scope, parsed into target (and partial). */
int schema_defaults(const SettingTable *t, unsigned scope, void *target, PartialSettings *partial);
/* Index of name in t, or -1. */
int schema_find(const SettingTable *t, const char *name);

/* config-settings.c: the location-level settings */
int settings_parse_special(Loader *l, const config_setting_t *s, const Setting *row, PartialSettings *p);
int settings_resolve(LocationSettings *dst, const LocationSettings *parent, const PartialSettings *p);
int settings_builtin(LocationSettings *s);
void settings_done(LocationSettings *s);
void partial_done(PartialSettings *p);

/* After the servers are parsed: check the admin server (config-admin.c), or make the
 * built-in one (Config.admin_builtin). */
int config_admin_setup(Loader *l, const LocationSettings *defaults);
int parse_access_rule(const char *s, AccessRule *ret);

/* config.c: parsers the tables refer to */
int config_parse_access_log(Loader *l, const config_setting_t *s, SchemaWalk *w);
int config_check_resolver(Loader *l, const config_setting_t *s, const void *value, size_t n);
int config_check_tokens(Loader *l, const config_setting_t *s, const void *value, size_t n);
int config_check_health_path(Loader *l, const config_setting_t *s, const void *value, size_t n);
/* config-settings.c */
int config_check_cache_valid(Loader *l, const config_setting_t *s, const void *value, size_t n);
int config_check_cache_path(Loader *l, const config_setting_t *s, const void *value, size_t n);
int config_parse_matcher(Loader *l, const config_setting_t *s, SchemaWalk *w);
int config_parse_tls_priority(Loader *l, const config_setting_t *s, SchemaWalk *w);
int config_parse_health_check(Loader *l, const config_setting_t *s, SchemaWalk *w);
int config_parse_upstream_servers(Loader *l, const config_setting_t *s, SchemaWalk *w);
int config_location_proxy_pass(Loader *l, const config_setting_t *pp, Location *loc);
int config_parse_proxy_pass(Loader *l, const config_setting_t *s, ProxyPass **ret);
ProxyPass *proxy_pass_free(ProxyPass *p);

/* config-auth.c: the auth_request group (forward authentication) */
int config_parse_auth_request(Loader *l, const config_setting_t *s, SchemaWalk *w);
void config_auth_free(Config *c);
int config_check_auth_method(Loader *l, const config_setting_t *s, const void *value, size_t n);
int config_check_auth_fields(Loader *l, const config_setting_t *s, const void *value, size_t n);
void config_location_free(Location *loc);

/* config-rules.c: a location's `return` templates, its `rules`, and their checks */
int config_check_response_header(Loader *l, const config_setting_t *s, const void *value, size_t n);
int config_location_finish(Loader *l, const Server *srv, Location *loc, const config_setting_t *g);
void rules_free(Rule *rules, size_t n);

/* config-client.c: limits, client addresses, and their checks over the whole configuration */
int config_parse_limits(Loader *l, const config_setting_t *s, SchemaWalk *w);
int config_parse_rate(Loader *l, const config_setting_t *s, SchemaWalk *w);
int config_rate_parse(const char *s, uint64_t *ret);
int config_check_limit_names(Loader *l, const config_setting_t *s, const void *value, size_t n);
int config_check_cidrs(Loader *l, const config_setting_t *s, const void *value, size_t n);
int config_check_header_name(Loader *l, const config_setting_t *s, const void *value, size_t n);
int parse_cidr(const char *s, AccessRule *ret);
int config_client_link(Loader *l);
LimitZone *limit_zone_free(LimitZone *z);

/* Where s was written (file, line), for the structs that keep it. */
static inline void set_origin(Loader *l, const config_setting_t *s, const char **file, int *line) {
        *file = config_setting_origin(s, &l->files, line);
}

/* The k-th value of a setting that is one string or a list of them (for diagnostics). */
static inline const config_setting_t *setting_value_at(const config_setting_t *s, size_t k) {
        return config_setting_type(s) == CONFIG_TYPE_STRING ? s : config_setting_get_elem(s, (unsigned) k);
}

/* The first member of the walk's group that row name took, or NULL. */
static inline const config_setting_t *seen(const SchemaWalk *w, const char *name) {
        int i = schema_find(w->table, name);

        assert(i >= 0);
        return w->seen[i];
}

/* config-upstream.c */
Upstream *upstream_free(Upstream *u);
int upstream_new(Loader *l, const char *name, bool implicit, Upstream **ret);
int config_add_upstream(Config *c, Upstream *u);
/* Append one UpstreamServer per address of `address` (as written). *ret_err set on -EINVAL. */
int upstream_add_address(Upstream *u, const char *address, const UpstreamServer *tmpl, const char **ret_err);
int parse_upstream(Loader *l, const config_setting_t *g);
Upstream *find_upstream(Config *c, const char *name, bool implicit);

/* config-address.c */
bool all_digits(const char *s);
int parse_port(const char *s, uint16_t *ret);
/* Split "host", "host:port", "[v6]", "[v6]:port". */
int split_host_port(const char *s, char **ret_host, uint16_t *ret_port, bool *ret_has_port);
int make_unix(const char *path, struct sockaddr_storage *ss, socklen_t *len);
/* Resolve host:port into distinct addresses; *ret_err says why not. */
int resolve(const char *host, uint16_t port, struct sockaddr_storage **ret, size_t *ret_n, const char **ret_err);
socklen_t ss_len(const struct sockaddr_storage *ss);
int parse_listen_text(const char *t, Listen *ret);

/* The table's defaults and descriptions as libconfig comments, for --dump. */
void schema_write_defaults(FILE *f);
