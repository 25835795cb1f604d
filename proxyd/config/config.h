/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Typed, validated, immutable configuration. Built by config_load() from the main
 * libconfig file plus its drop-ins (every *.conf in <file>.d/, lexical order), merged as
 * CONFIG.md says, with every location's effective settings resolved
 * (defaults -> server -> location; set_header/hide_header merged by name).
 * A Config is shared read-only by all worker threads and freed with the last reference.
 * Pure: never logs; problems are returned as diagnostics with file:line.
 */

#include <netinet/in.h>
#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "http1.h"
#include "vars.h"

typedef struct HeaderSetting {
        char *name;         /* as written (case kept) */
        VarTemplate *value; /* NULL: remove the header (set to "") */
} HeaderSetting;

typedef struct AccessRule {
        bool allow;
        int family;       /* AF_INET, AF_INET6, or AF_UNSPEC for "all" */
        uint8_t addr[16]; /* network address, host bits cleared */
        unsigned prefix;  /* prefix length in bits */
} AccessRule;

/* Effective location-level settings: every field is set (no "unset" left). */
typedef struct LocationSettings {
        HeaderSetting *set_header; /* merged by case-insensitive name; order: outermost first */
        size_t n_set_header;
        char **hide_header; /* lower case */
        size_t n_hide_header;
        /* Response header fields: add_header is appended to the response (the upstream's
         * fields of that name stay), replace_header takes the place of the upstream's fields
         * of that name. Both merged by name like set_header; NULL value: removed. Sent on
         * 200, 201, 204, 206, 301, 302, 303, 304, 307, 308 only, or on every status with
         * add_header_always. */
        HeaderSetting *add_header;
        size_t n_add_header;
        HeaderSetting *replace_header;
        size_t n_replace_header;
        bool add_header_always;
        /* The fields of both whose values have no variables, "Name: value" CRLF each (add_header's
         * first), rendered once when the configuration is linked (fields_rendered). */
        char *fields_text;
        size_t fields_text_len;
        bool fields_rendered;
        bool fields_have_variables; /* the others, expanded per request (when rendered) */

        uint64_t connect_timeout; /* usec */
        uint64_t read_timeout;
        uint64_t send_timeout;
        uint64_t client_header_timeout;
        uint64_t client_body_timeout;
        uint64_t keepalive_timeout;
        uint64_t client_max_body_size; /* bytes; 0 = unlimited */
        uint64_t client_body_min_rate; /* bytes/s a request body must average once
                                        * client_body_timeout has passed; 0 = no minimum */
        uint64_t tunnel_timeout;       /* idle time after which an Upgrade tunnel is closed */

        /* Request head limits: server level (defaults or server); copied into Server.limits. */
        uint64_t client_max_request_line;
        uint64_t client_max_header_line;
        uint64_t client_max_header_size;
        uint64_t client_max_headers;
        uint64_t client_max_chunk_overhead;

        /* HTTP/2 (server level: the listener's default server decides for a connection) */
        bool http2;           /* ALPN h2 on TLS listeners */
        bool http2_cleartext; /* h2c with prior knowledge on plain listeners */
        unsigned http2_max_concurrent_streams;
        unsigned http2_initial_window;
        unsigned http2_max_frame_size;
        uint64_t http2_max_header_list_size;
        uint64_t http2_idle_timeout;
        uint64_t http2_ping_timeout;

        bool buffering;
        bool websocket;
        char **upgrade_protocols; /* Upgrade tokens that may be tunnelled (lower case); default "websocket" */
        size_t n_upgrade_protocols;
        bool underscores_in_headers; /* pass request header fields whose names contain '_' */
        bool ssl_server_name;
        bool ssl_verify;
        char *ssl_trusted_certificate; /* NULL: system store */
        VarTemplate *ssl_name;
        char *ssl_certificate;     /* client certificate (PEM chain) towards https upstreams; NULL: none */
        char *ssl_certificate_key; /* its key; set exactly when ssl_certificate is */

        AccessRule *access; /* NULL/0: allow all */
        size_t n_access;

        /* client limits and addresses (config-client.c) */
        char **limit; /* names of `limits` entries */
        size_t n_limit;
        const struct LimitZone **limit_zones; /* the same, resolved (n_limit of them) */
        char **real_ip_from; /* trusted proxies, as written */
        size_t n_real_ip_from;
        AccessRule *real_ip_rules; /* the same, parsed (n_real_ip_from of them) */
        char *real_ip_header;      /* "X-Forwarded-For", "Forwarded", "X-Real-IP", ... */
        bool real_ip_recursive;
        /* the response cache (proxy/cache.c) */
        bool cache;
        VarTemplate *cache_key;
        char **cache_valid; /* "CODE... DURATION" / "any DURATION" */
        size_t n_cache_valid;
        uint64_t cache_max_object_size;
        VarTemplate *cache_bypass;   /* not empty and not "0": not answered from the cache */
        VarTemplate *cache_no_store; /* not empty and not "0": the response is not stored */
        unsigned cache_heuristic;    /* percent of Date - Last-Modified; 0: no heuristic freshness */
        unsigned cache_min_uses;     /* misses of a key before its response is stored */
        unsigned cache_use_stale;    /* CACHE_STALE_* */
        bool cache_status_header;
        bool cache_purge;            /* PURGE requests purge (access rules apply) */
        /* forward authentication (config-auth.c, proxy/exchange-auth.c); owned by the Config,
         * NULL: none */
        const struct AuthRequest *auth_request;
} LocationSettings;

#define CONFIG_LIMITS_PER_LOCATION 8 /* names in one `limit` list */

/* What a limit allows one key (policy/limit.c applies it). */
typedef struct LimitParams {
        uint64_t rate;  /* millionths of a request per second; 0: no rate limit */
        unsigned burst; /* requests above the rate that are accepted (delayed or not) */
        unsigned delay; /* of those, how many pass without delay */
        bool nodelay;   /* none is delayed */
        unsigned conn;  /* requests in progress per key; 0: no limit */
} LimitParams;

/* One entry of `limits`: a per-client limit, its key table shared by the locations that
 * name it and by every worker. */
typedef struct LimitZone {
        char *name;
        VarTemplate *key;
        LimitParams params;
        unsigned max_keys;
        /* The key table, set up outside this module; released through rt_free. */
        struct LimitTable *rt;
        void (*rt_free)(struct LimitTable *rt);
        const char *file;
        int line;
} LimitZone;

/* cache_use_stale conditions */
enum {
        CACHE_STALE_ERROR = 1u << 0,
        CACHE_STALE_TIMEOUT = 1u << 1,
        CACHE_STALE_HTTP_500 = 1u << 2,
        CACHE_STALE_HTTP_502 = 1u << 3,
        CACHE_STALE_HTTP_503 = 1u << 4,
        CACHE_STALE_HTTP_504 = 1u << 5,
        CACHE_STALE_UPDATING = 1u << 6,
};

typedef enum UpstreamBalance {
        BALANCE_ROUND_ROBIN,
        BALANCE_LEAST_CONN,
        BALANCE_IP_HASH,
        BALANCE_RANDOM,
        BALANCE_HASH, /* consistent hashing of hash_key (nginx `hash KEY consistent`) */
} UpstreamBalance;

typedef enum ProxyProtocolVersion {
        PROXY_PROTOCOL_OFF,
        PROXY_PROTOCOL_V1,
        PROXY_PROTOCOL_V2,
} ProxyProtocolVersion;

typedef struct UpstreamServer {
        char *address; /* as written: "10.0.0.1:80", "name:80", "unix:/run/x.sock" */
        struct sockaddr_storage addr;
        socklen_t addrlen;
        unsigned weight;
        unsigned max_fails;
        uint64_t fail_timeout;
        bool backup;
        bool down;
        unsigned max_conns;        /* 0: unlimited */
        uint64_t resolve_interval; /* usec; 0: resolved once at load */
        char *host;                /* host part of address, for re-resolution; NULL for unix: */
        unsigned port;
        unsigned entry;            /* index of the `servers` entry this address comes from */
        const char *file;
        int line;
} UpstreamServer;

/* next_upstream conditions */
enum {
        NEXT_UPSTREAM_ERROR = 1u << 0,
        NEXT_UPSTREAM_TIMEOUT = 1u << 1,
        NEXT_UPSTREAM_INVALID_HEADER = 1u << 2,
        NEXT_UPSTREAM_HTTP_502 = 1u << 3,
        NEXT_UPSTREAM_HTTP_503 = 1u << 4,
        NEXT_UPSTREAM_HTTP_504 = 1u << 5,
        NEXT_UPSTREAM_NON_IDEMPOTENT = 1u << 6,
};

typedef struct HealthCheck {
        char *path;
        uint64_t interval; /* usec */
        uint64_t timeout;
        unsigned *statuses; /* expected status codes; empty: 200..399 */
        size_t n_statuses;
        unsigned fails;  /* consecutive failures that mark a server unhealthy */
        unsigned passes; /* consecutive successes that mark it healthy again */
} HealthCheck;

struct UpstreamRuntime;

typedef struct Upstream {
        char *name;    /* group name, or the host[:port] of an implicit single-host group */
        bool implicit; /* made from a proxy_pass host, not from `upstreams` */
        UpstreamServer *servers;
        size_t n_servers;
        UpstreamBalance balance;
        unsigned keepalive;          /* idle connections kept per worker (0: none) */
        uint64_t keepalive_timeout;  /* idle pooled connection lifetime */
        unsigned keepalive_requests; /* max requests per upstream connection */
        unsigned next_upstream;          /* NEXT_UPSTREAM_* */
        unsigned next_upstream_tries;    /* 0: unlimited */
        uint64_t next_upstream_timeout;  /* usec; 0: unlimited */
        uint64_t slow_start;             /* usec; 0: off */
        HealthCheck *health_check;       /* NULL: no active checks */
        VarTemplate *hash_key;           /* balance = "hash": the key */
        int proxy_protocol;              /* ProxyProtocolVersion sent on new connections */
        /* Runtime state (peers, health, balancer), set up outside this module; released
         * through rt_free when the Config is freed. */
        struct UpstreamRuntime *rt;
        void (*rt_free)(struct UpstreamRuntime *rt);
        const char *file;
        int line;
} Upstream;

typedef struct ProxyPass {
        char *text;       /* as written */
        bool https;
        char *proxy_host; /* value of $proxy_host: "host[:port]" as written; "localhost" for unix */
        char *uri;        /* URI part, NULL if none (then the original request-target is sent) */
        Upstream *upstream;
} ProxyPass;

/* A location's auth_request: the auth service asked before a request is proxied (nginx
 * auth_request, Traefik forwardAuth). Owned by the Config (Config.auth_requests); the
 * LocationSettings that inherit it point at it. */
typedef struct AuthRequest {
        ProxyPass *pass;     /* the auth service: host, unix socket or upstream group, and path */
        char *method;        /* of the auth request */
        char **headers;      /* request header fields passed to the auth service (names) */
        size_t n_headers;
        char **copy_headers; /* fields of a 2xx answer that replace the client's in the upstream request */
        size_t n_copy_headers;
        uint64_t timeout;    /* the whole auth request, usec */
        uint64_t cache;      /* how long a decision is kept, usec; 0: no cache */
        VarTemplate *cache_key;
        uint64_t cache_size; /* bytes of decisions kept */
        /* The decision table (policy/auth-cache.c), set up outside this module; released
         * through rt_free. */
        struct AuthCache *rt;
        void (*rt_free)(struct AuthCache *rt);
        const char *file;
        int line;
} AuthRequest;

typedef enum LocationMatch {
        MATCH_EXACT,
        MATCH_PREFIX,
        MATCH_REGEX,
        MATCH_IREGEX,
} LocationMatch;

/* Conditions of a location's rules (see proxyd.conf(5), RULES). Parsed and checked by
 * config-rules.c, evaluated by match.c. */
typedef enum PatternOp {
        PATTERN_EXACT,
        PATTERN_PREFIX,
        PATTERN_REGEX,   /* PCRE2; caseless with "~*" */
        PATTERN_PRESENT, /* "*": any value, the field is there */
        /* A regex that is plain text ("~*bot", "~^curl/", "~a\\.b"), matched without PCRE2 with
         * the same answers: anywhere in the value, or at its start ("^") */
        PATTERN_REGEX_TEXT,
        PATTERN_REGEX_START,
} PatternOp;

typedef struct Pattern {
        PatternOp op;
        char *text; /* EXACT, PREFIX, REGEX_TEXT, REGEX_START (unescaped; lower case when caseless) */
        size_t len;
        bool caseless;  /* REGEX_TEXT, REGEX_START: "~*" */
        pcre2_code *re; /* REGEX */
} Pattern;

/* In evaluation order: the cheap kinds first. */
typedef enum ConditionKind {
        COND_SCHEME,
        COND_SERVER_PORT,
        COND_METHOD,
        COND_CLIENT,
        COND_HEADER,
        COND_ARG,
        COND_COOKIE,
        _COND_MAX,
} ConditionKind;

typedef struct Condition {
        ConditionKind kind;
        bool negate;   /* the condition holds when the positive test fails */
        char *name;    /* HEADER, ARG, COOKIE: the field, argument or cookie name */
        size_t name_len;
        Pattern pattern;  /* HEADER, ARG, COOKIE: the value must match (any occurrence) */
        char **tokens;    /* METHOD: any of these; SCHEME: "http" / "https" */
        size_t n_tokens;
        unsigned *ports;  /* SERVER_PORT: any of these */
        size_t n_ports;
        AccessRule *nets; /* CLIENT: in any of these networks */
        size_t n_nets;
        const char *file;
        int line;
} Condition;

struct Location;

typedef struct Rule {
        Condition *conds; /* all of them must hold, tested in ConditionKind order */
        size_t n_conds;
        /* the request methods (1u << HttpMethod) its method condition rules out, decided
         * without the condition's tokens: never HTTP_METHOD_OTHER's bit */
        unsigned skip_methods;
        struct Location *loc; /* what applies then: the location with the rule's settings on top */
        const char *file;
        int line;
} Rule;

typedef struct Location {
        LocationMatch match;
        char *pattern;
        size_t pattern_len;
        pcre2_code *re; /* regex/iregex */
        bool stop_regex;

        int return_status; /* 0: not a return location */
        char *return_body; /* may be NULL */
        char *return_location; /* Location header for 3xx returns, may be NULL */
        VarTemplate *return_body_t; /* the same two, compiled (variables) */
        VarTemplate *return_location_t;
        ProxyPass *proxy;  /* NULL for return locations */
        bool proxy_borrowed; /* a rule's location using its parent's proxy_pass */
        Rule *rules;         /* tried in order after this location is selected; the first match applies */
        size_t n_rules;

        LocationSettings s;
        const char *file;
        int line;
        atomic_uint metrics_id; /* set on first use (metrics.c) */
} Location;

/* One certificate chain + key for TLS termination (chosen by SNI when several). */
typedef struct TlsCertificate {
        char *certificate; /* PEM chain path, %d already expanded */
        char *key;         /* PEM key path, %d already expanded */
        const char *file;
        int line;
} TlsCertificate;

typedef enum TlsVerifyClient {
        TLS_VERIFY_CLIENT_OFF,
        TLS_VERIFY_CLIENT_OPTIONAL, /* ask for a certificate; one that is sent must verify */
        TLS_VERIFY_CLIENT_ON,       /* a verified client certificate is required */
} TlsVerifyClient;

typedef struct Server {
        char *name;
        char **server_names; /* exact names, "*.suffix" wildcards; empty: catch-all */
        size_t n_server_names;
        Location **locations;
        size_t n_locations;
        LocationSettings s; /* server-level effective settings (used before a location is chosen) */
        HttpLimits limits;
        const char *file;
        int line;
        TlsCertificate *tls_certificates; /* empty: plain HTTP */
        size_t n_tls_certificates;
        char *tls_priority; /* GnuTLS priority string; NULL: built-in default */
        const char *tls_priority_file; /* where tls_priority was set */
        int tls_priority_line;
        char *tls_client_ca; /* CA file for client certificates; set when verify_client != off */
        TlsVerifyClient tls_verify_client;
        const char *tls_file; /* the tls group */
        int tls_line;
        bool proxy_protocol; /* a PROXY protocol header (v1 or v2) starts every connection */
        char **proxy_protocol_from; /* who may send it, as written */
        size_t n_proxy_protocol_from;
        AccessRule *proxy_protocol_rules; /* the same, parsed */
        /* The admin endpoint (metrics, status page, runtime control): no locations. */
        bool admin;
        atomic_uint metrics_id; /* set on first use (metrics.c) */
} Server;

typedef enum ListenKind {
        LISTEN_NAME, /* a socket handed over by systemd with FileDescriptorName= */
        LISTEN_INET, /* ADDR:PORT, [V6]:PORT, PORT */
        LISTEN_UNIX, /* unix:/path */
} ListenKind;

/* One distinct `listen` entry across all servers, and the servers on it in file order
 * (the first one is the default server for that socket). */
typedef struct Listen {
        ListenKind kind;
        char *text; /* as written */
        struct sockaddr_storage addr; /* INET/UNIX */
        socklen_t addrlen;
        Server **servers;
        size_t n_servers;
        const char *file;
        int line;
} Listen;

typedef struct Config {
        atomic_uint refcount;
        uint64_t generation; /* set by the manager */

        unsigned workers; /* 0 = one per CPU */
        unsigned max_connections; /* client connections per worker; more get a 503 and are closed */
        int log_level;    /* syslog priority: LOG_ERR .. LOG_DEBUG */
        bool access_log;
        char *access_log_file; /* access log to this file, buffered; NULL: to the journal (or stderr) */
        const char *access_log_src; /* where access_log was set, for open errors */
        int access_log_line;
        uint64_t shutdown_timeout;
        bool metrics; /* count exchanges for /metrics (admin endpoint) */
        char **resolver;  /* DNS servers for re-resolution: "ADDR", "ADDR:PORT", "[ADDR6]:PORT" */
        size_t n_resolver;
        char *cache_path;           /* NULL: $CACHE_DIRECTORY, else /var/cache/proxyd */
        uint64_t cache_memory_size; /* bytes of cached bodies kept in memory */
        uint64_t cache_disk_size;   /* bytes of cached objects on disk; 0: no disk */

        LimitZone **limits;
        size_t n_limits;
        AuthRequest **auth_requests; /* every auth_request group (config-auth.c) */
        size_t n_auth_requests;
        Upstream **upstreams; /* named and implicit */
        size_t n_upstreams;
        Server **servers;
        size_t n_servers;
        /* The admin endpoint's server when none has admin = true: serves the handed-over
         * socket named "admin", if any (listener.c). Not in `servers` or `listens`. */
        Server *admin_builtin;
        Listen *listens;
        size_t n_listens;

        char **files; /* every file read, main first */
        size_t n_files;
        void *merged; /* config_t* of the merged tree, for --dump */
} Config;

typedef struct ConfigDiag {
        char *file; /* may be NULL when no file is involved */
        int line;   /* 0 when unknown */
        bool warning;
        char *message;
} ConfigDiag;

typedef struct ConfigDiags {
        ConfigDiag *items;
        size_t n;
        size_t n_errors;
} ConfigDiags;

/*
 * Load path + drop-ins. Returns 0 and a Config with refcount 1, or -EINVAL when there is at
 * least one error (diags says which), or another -errno. Warnings never fail the load.
 * Host names in proxy_pass and upstream servers are resolved here (blocking getaddrinfo).
 */
int config_load(const char *path, Config **ret, ConfigDiags *diags);

Config *config_ref(Config *c);
Config *config_unref(Config *c); /* thread-safe; frees at 0; returns NULL */

/* Print the merged configuration (libconfig syntax), then the built-in defaults as comments */
int config_dump(const Config *c, FILE *f);

/* "file:line: message" / "file:line: warning: message", one per line. */
void config_diags_print(const ConfigDiags *d, FILE *f);
void config_diags_clear(ConfigDiags *d);

/* True if addr (AF_INET/AF_INET6 sockaddr; AF_UNIX counts as 127.0.0.1) passes the rules. */
bool access_check(const AccessRule *rules, size_t n, const struct sockaddr *addr);
/* True if addr is in one of the networks (rules parsed from "ADDRESS[/BITS]"; AF_UNIX: no). */
bool cidr_match(const AccessRule *nets, size_t n, const struct sockaddr *addr);
/* Index of the first rule whose network holds addr ("all" holds every address), or -1. */
int access_rule_find(const AccessRule *rules, size_t n, const struct sockaddr *addr);

/* config-rules.c: the value syntax of header, arg and cookie conditions ("=x", "^x", "~re",
 * "~*re", "*", each may start with "!"). Returns 0, or -EINVAL with *ret_error. */
int pattern_parse(const char *s, Pattern *ret, bool *ret_negate, const char **ret_error);
void pattern_done(Pattern *p);
