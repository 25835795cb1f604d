/* SPDX-License-Identifier: MIT */
/* The settings tables and the walk that parses a group through them. */
#include <stddef.h>
#include <syslog.h>

#include "config-schema.h"
#include "util.h"

/* ---- the tables ---- */

#define CF(f) offsetof(Config, f)
#define LS(f) offsetof(LocationSettings, f)
#define SV(f) offsetof(Server, f)
#define LO(f) offsetof(Location, f)
#define UP(f) offsetof(Upstream, f)
#define US(f) offsetof(UpstreamServer, f)
#define HC(f) offsetof(HealthCheck, f)
#define LZ(f) offsetof(LimitZone, f)
#define NAMES(a) .names = a, .n_names = ELEMENTSOF(a)

static const char *const log_levels[] = { "err", "warning", "notice", "info", "debug" };
static const int log_level_values[] = { LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG };

static const Setting top_rows[] = {
        { .name = "workers", .type = T_UINT, .scopes = SC_TOP, .dflt = "0", .min = 0, .max = CONFIG_WORKERS_MAX,
          .offset = CF(workers), .description = "event-loop threads; 0: one per CPU" },
        { .name = "max_connections", .type = T_UINT, .scopes = SC_TOP, .dflt = "10000", .min = 1, .max = 1000000,
          .offset = CF(max_connections), .description = "client connections per worker; more get a 503" },
        { .name = "log_level", .type = T_ENUM, .scopes = SC_TOP, .dflt = "\"info\"", NAMES(log_levels),
          .values = log_level_values, .offset = CF(log_level), .description = "journal threshold" },
        { .name = "access_log", .type = T_BOOL, .scopes = SC_TOP, .dflt = "true", .doc_type = "boolean or string",
          .parse = config_parse_access_log, .description = "true: the journal; false: off; \"/path\": a file" },
        { .name = "metrics", .type = T_BOOL, .scopes = SC_TOP, .dflt = "true", .offset = CF(metrics),
          .description = "count requests for the admin endpoint's /metrics and status page" },
        { .name = "shutdown_timeout", .type = T_DURATION, .scopes = SC_TOP, .dflt = "\"30s\"",
          .offset = CF(shutdown_timeout), .description = "drain time after SIGTERM" },
        { .name = "resolver", .type = T_STRINGS, .scopes = SC_TOP, .offset = CF(resolver), .offset_n = CF(n_resolver),
          .check = config_check_resolver, .description = "DNS servers for re-resolving upstream names" },
        { .name = "cache_path", .type = T_STRING, .scopes = SC_TOP, .doc_section = "CACHE",
          .doc_default = "$CACHE_DIRECTORY, else /var/cache/proxyd", .offset = CF(cache_path),
          .check = config_check_cache_path, .description = "directory of the on-disk cache store" },
        { .name = "cache_memory_size", .type = T_SIZE, .scopes = SC_TOP, .dflt = "\"64m\"", .doc_section = "CACHE",
          .offset = CF(cache_memory_size), .description = "cached bodies kept in memory (LRU)" },
        { .name = "cache_disk_size", .type = T_SIZE, .scopes = SC_TOP, .dflt = "\"1g\"", .doc_section = "CACHE",
          .offset = CF(cache_disk_size), .description = "cached objects on disk (LRU); 0: memory only" },
        { .name = "defaults", .type = T_GROUP, .scopes = SC_TOP, .parse = schema_keep,
          .offset = SETTING_NO_FIELD, .description = "location-level settings inherited everywhere" },
        { .name = "limits", .type = T_GROUP, .scopes = SC_TOP, .parse = config_parse_limits,
          .offset = SETTING_NO_FIELD, .doc_section = "CLIENT LIMITS", .description = "named per-client limits" },
        { .name = "upstreams", .type = T_GROUP, .scopes = SC_TOP, .parse = schema_keep,
          .offset = SETTING_NO_FIELD, .description = "named upstream groups" },
        { .name = "servers", .type = T_LIST, .scopes = SC_TOP, .flags = SF_REQUIRED, .parse = schema_keep,
          .offset = SETTING_NO_FIELD, .description = "the servers" },
};

static const Setting server_rows[] = {
        { .name = "name", .type = T_STRING, .scopes = SC_SERVER, .flags = SF_REQUIRED, .offset = SETTING_NO_FIELD,
          .description = "unique name, for drop-in merging and the journal" },
        { .name = "proxy_protocol", .type = T_BOOL, .scopes = SC_SERVER, .dflt = "false", .offset = SV(proxy_protocol),
          .doc_section = "CLIENT ADDRESSES", .description = "connections start with a PROXY protocol header" },
        { .name = "proxy_protocol_from", .type = T_STRINGS, .scopes = SC_SERVER, .offset = SV(proxy_protocol_from),
          .offset_n = SV(n_proxy_protocol_from), .check = config_check_cidrs, .doc_section = "CLIENT ADDRESSES",
          .description = "addresses that may send it" },
        { .name = "listen", .type = T_STRINGS, .scopes = SC_SERVER, .flags = SF_REQUIRED, .parse = schema_keep,
          .offset = SETTING_NO_FIELD, .description = "socket names or addresses" },
        { .name = "server_name", .type = T_STRINGS, .scopes = SC_SERVER, .flags = SF_LOWER,
          .offset = SV(server_names), .offset_n = SV(n_server_names), .description = "host names; none: catch-all" },
        { .name = "tls", .type = T_GROUP, .scopes = SC_SERVER, .parse = schema_keep, .offset = SETTING_NO_FIELD,
          .description = "TLS termination" },
        { .name = "locations", .type = T_LIST, .scopes = SC_SERVER, .flags = SF_REQUIRED, .parse = schema_keep,
          .offset = SETTING_NO_FIELD, .description = "the locations" },
        { .name = "admin", .type = T_BOOL, .scopes = SC_SERVER, .dflt = "false", .offset = SV(admin),
          .description = "serves proxyd's admin endpoint (metrics, status, control) instead of locations" },
};

static const char *const verify_modes[] = { "off", "optional", "on" };

static const Setting tls_rows[] = {
        /* into the TlsCertificate (w->ctx); the others into the Server */
        { .name = "certificate", .type = T_PATH, .scopes = SC_TLS | SC_TLS_CERT, .parse = schema_parse_ctx,
          .offset = offsetof(TlsCertificate, certificate), .description = "certificate chain, PEM" },
        { .name = "key", .type = T_PATH, .scopes = SC_TLS | SC_TLS_CERT, .parse = schema_parse_ctx,
          .offset = offsetof(TlsCertificate, key), .description = "its private key, PEM" },
        { .name = "certificates", .type = T_LIST, .scopes = SC_TLS, .parse = schema_keep,
          .offset = SETTING_NO_FIELD, .description = "more certificate/key pairs, chosen by SNI" },
        { .name = "priority", .type = T_STRING, .scopes = SC_TLS, .parse = config_parse_tls_priority,
          .description = "GnuTLS priority string" },
        { .name = "verify_client", .type = T_ENUM, .scopes = SC_TLS, .dflt = "\"off\"", NAMES(verify_modes),
          .offset = SV(tls_verify_client), .description = "client certificates: off, optional, on" },
        { .name = "client_ca", .type = T_PATH, .scopes = SC_TLS, .offset = SV(tls_client_ca),
          .description = "CA for client certificates" },
};

static const Setting location_rows[] = {
        { .name = "exact", .type = T_STRING, .scopes = SC_LOCATION, .doc_type = "", .parse = config_parse_matcher,
          .description = "matches this URI only" },
        { .name = "prefix", .type = T_STRING, .scopes = SC_LOCATION, .doc_type = "", .parse = config_parse_matcher,
          .description = "matches URIs beginning with it" },
        { .name = "regex", .type = T_STRING, .scopes = SC_LOCATION, .doc_type = "", .parse = config_parse_matcher,
          .description = "PCRE2 regular expression" },
        { .name = "iregex", .type = T_STRING, .scopes = SC_LOCATION, .doc_type = "", .parse = config_parse_matcher,
          .description = "PCRE2 regular expression, caseless" },
        { .name = "stop_regex", .type = T_BOOL, .scopes = SC_LOCATION, .dflt = "false", .offset = LO(stop_regex),
          .description = "a longest-prefix match is final (nginx ^~)" },
        /* return_status is an int; T_UINT stores 100..599 through unsigned (same object) */
        { .name = "return", .type = T_UINT, .scopes = SC_LOCATION, .doc_type = "", .min = 100, .max = 599,
          .offset = LO(return_status), .description = "answer with this status" },
        { .name = "body", .type = T_STRING, .scopes = SC_LOCATION, .doc_type = "", .offset = LO(return_body),
          .description = "the body of a return" },
        { .name = "location", .type = T_STRING, .scopes = SC_LOCATION, .doc_type = "",
          .offset = LO(return_location), .description = "the Location header of a return" },
        { .name = "proxy_pass", .type = T_STRING, .scopes = SC_LOCATION, .doc_type = "", .parse = schema_keep,
          .offset = SETTING_NO_FIELD, .description = "the upstream URL" },
        { .name = "rules", .type = T_LIST, .scopes = SC_LOCATION, .parse = schema_keep, .offset = SETTING_NO_FIELD,
          .description = "conditions refining the location; the first match applies" },
};

/* The rows of one entry of a location's `rules`: its conditions, then the outcomes a
 * location has (a rule takes every location-level setting too). */
static const Setting rule_rows[] = {
        { .name = "scheme", .type = T_STRINGS, .scopes = SC_RULE, .parse = schema_keep, .offset = SETTING_NO_FIELD,
          .description = "http or https" },
        { .name = "server_port", .type = T_LIST, .scopes = SC_RULE, .doc_type = "integer or array",
          .parse = schema_keep, .offset = SETTING_NO_FIELD, .description = "the port the request came in on" },
        { .name = "method", .type = T_STRINGS, .scopes = SC_RULE, .parse = schema_keep, .offset = SETTING_NO_FIELD,
          .description = "request methods" },
        { .name = "client", .type = T_STRINGS, .scopes = SC_RULE, .parse = schema_keep, .offset = SETTING_NO_FIELD,
          .description = "client addresses and networks" },
        { .name = "header", .type = T_GROUP, .scopes = SC_RULE, .doc_type = "group", .parse = schema_keep,
          .offset = SETTING_NO_FIELD, .description = "request header values" },
        { .name = "arg", .type = T_GROUP, .scopes = SC_RULE, .doc_type = "group", .parse = schema_keep,
          .offset = SETTING_NO_FIELD, .description = "query arguments" },
        { .name = "cookie", .type = T_GROUP, .scopes = SC_RULE, .doc_type = "group", .parse = schema_keep,
          .offset = SETTING_NO_FIELD, .description = "cookies" },
        { .name = "return", .type = T_UINT, .scopes = SC_RULE, .doc_type = "", .min = 100, .max = 599,
          .offset = LO(return_status), .description = "answer with this status" },
        { .name = "body", .type = T_STRING, .scopes = SC_RULE, .doc_type = "", .offset = LO(return_body),
          .description = "the body of a return" },
        { .name = "location", .type = T_STRING, .scopes = SC_RULE, .doc_type = "", .offset = LO(return_location),
          .description = "the Location header of a return" },
        { .name = "proxy_pass", .type = T_STRING, .scopes = SC_RULE, .doc_type = "", .parse = schema_keep,
          .offset = SETTING_NO_FIELD, .description = "proxy here instead" },
};

#define LOC (SC_DEFAULTS | SC_SERVER | SC_LOCATION)
#define SRV (SC_DEFAULTS | SC_SERVER)

static const char *const stale_names[] = { "error",    "timeout",  "http_500", "http_502",
                                           "http_503", "http_504", "updating" };

static const Setting inherit_rows[] = {
        { .name = "set_header", .type = T_HEADERS, .scopes = LOC, .inherit = INHERIT_MERGE,
          .offset = LS(set_header), .offset_n = LS(n_set_header),
          .description = "request headers sent upstream; \"\" removes one" },
        { .name = "hide_header", .type = T_HEADER_NAMES, .scopes = LOC, .inherit = INHERIT_MERGE,
          .description = "response headers not passed to the client" },
        { .name = "add_header", .type = T_HEADERS, .scopes = LOC, .inherit = INHERIT_MERGE,
          .offset = LS(add_header), .offset_n = LS(n_add_header), .check = config_check_response_header,
          .description = "response headers added; \"\" removes an inherited one" },
        { .name = "replace_header", .type = T_HEADERS, .scopes = LOC, .inherit = INHERIT_MERGE,
          .offset = LS(replace_header), .offset_n = LS(n_replace_header), .check = config_check_response_header,
          .description = "response headers sent instead of the upstream's" },
        { .name = "add_header_always", .type = T_BOOL, .scopes = LOC, .inherit = INHERIT_REPLACE, .dflt = "false",
          .offset = LS(add_header_always), .description = "add_header and replace_header on every status" },
        { .name = "connect_timeout", .type = T_DURATION, .scopes = LOC, .inherit = INHERIT_REPLACE, .dflt = "\"5s\"",
          .offset = LS(connect_timeout), .description = "connecting to an upstream server" },
        { .name = "read_timeout", .type = T_DURATION, .scopes = LOC, .inherit = INHERIT_REPLACE, .dflt = "\"60s\"",
          .offset = LS(read_timeout), .description = "waiting for the upstream response" },
        { .name = "send_timeout", .type = T_DURATION, .scopes = LOC, .inherit = INHERIT_REPLACE, .dflt = "\"60s\"",
          .offset = LS(send_timeout), .description = "silence while writing" },
        { .name = "client_header_timeout", .type = T_DURATION, .scopes = LOC, .inherit = INHERIT_REPLACE,
          .dflt = "\"10s\"", .offset = LS(client_header_timeout), .description = "the whole request head" },
        { .name = "client_body_timeout", .type = T_DURATION, .scopes = LOC, .inherit = INHERIT_REPLACE,
          .dflt = "\"60s\"", .offset = LS(client_body_timeout), .description = "silence while reading the body" },
        { .name = "keepalive_timeout", .type = T_DURATION, .scopes = LOC, .inherit = INHERIT_REPLACE,
          .dflt = "\"75s\"", .offset = LS(keepalive_timeout), .description = "idle client connections" },
        { .name = "client_max_body_size", .type = T_SIZE, .scopes = LOC, .inherit = INHERIT_REPLACE,
          .dflt = "\"1m\"", .offset = LS(client_max_body_size), .description = "larger bodies: 413; 0: no limit" },
        { .name = "client_body_min_rate", .type = T_SIZE, .scopes = LOC, .inherit = INHERIT_REPLACE,
          .dflt = "\"1k\"", .doc_type = "size per second", .offset = LS(client_body_min_rate),
          .description = "average request body rate after client_body_timeout; 0: off" },
        { .name = "tunnel_timeout", .type = T_DURATION, .scopes = LOC, .inherit = INHERIT_REPLACE, .dflt = "\"1h\"",
          .offset = LS(tunnel_timeout), .description = "idle Upgrade tunnels" },
        { .name = "client_max_request_line", .type = T_SIZE, .scopes = SRV, .inherit = INHERIT_REPLACE,
          .dflt = "\"8k\"", .doc_section = "LIMITS", .offset = LS(client_max_request_line),
          .description = "request line: 414" },
        { .name = "client_max_header_line", .type = T_SIZE, .scopes = SRV, .inherit = INHERIT_REPLACE,
          .dflt = "\"8k\"", .doc_section = "LIMITS", .offset = LS(client_max_header_line),
          .description = "one header field: 431" },
        { .name = "client_max_header_size", .type = T_SIZE, .scopes = SRV, .inherit = INHERIT_REPLACE,
          .dflt = "\"32k\"", .doc_section = "LIMITS", .offset = LS(client_max_header_size),
          .description = "the whole request head: 431" },
        { .name = "client_max_headers", .type = T_SIZE, .scopes = SRV, .inherit = INHERIT_REPLACE, .dflt = "100",
          .doc_type = "integer", .doc_section = "LIMITS", .offset = LS(client_max_headers),
          .description = "number of header fields: 431" },
        { .name = "client_max_chunk_overhead", .type = T_SIZE, .scopes = SRV, .inherit = INHERIT_REPLACE,
          .dflt = "\"16k\"", .doc_section = "LIMITS", .offset = LS(client_max_chunk_overhead),
          .description = "chunked framing per body" },
        { .name = "http2", .type = T_BOOL, .scopes = SRV, .inherit = INHERIT_REPLACE, .dflt = "true",
          .doc_section = "HTTP/2", .offset = LS(http2), .description = "offer h2 with ALPN on TLS listeners" },
        { .name = "http2_cleartext", .type = T_BOOL, .scopes = SRV, .inherit = INHERIT_REPLACE, .dflt = "false",
          .doc_section = "HTTP/2", .offset = LS(http2_cleartext),
          .description = "h2c with prior knowledge on plain listeners" },
        { .name = "http2_max_concurrent_streams", .type = T_UINT, .scopes = SRV, .inherit = INHERIT_REPLACE,
          .dflt = "128", .min = 1, .max = 65536, .doc_section = "HTTP/2", .offset = LS(http2_max_concurrent_streams),
          .description = "streams open at once per connection" },
        { .name = "http2_initial_window", .type = T_UINT, .scopes = SRV, .inherit = INHERIT_REPLACE,
          .dflt = "65535", .min = 1024, .max = 16777216, .doc_section = "HTTP/2", .offset = LS(http2_initial_window),
          .description = "request body bytes a stream may send ahead" },
        { .name = "http2_max_frame_size", .type = T_UINT, .scopes = SRV, .inherit = INHERIT_REPLACE,
          .dflt = "16384", .min = 16384, .max = 16777215, .doc_section = "HTTP/2",
          .offset = LS(http2_max_frame_size), .description = "largest frame payload accepted" },
        { .name = "http2_max_header_list_size", .type = T_SIZE, .scopes = SRV, .inherit = INHERIT_REPLACE,
          .dflt = "\"32k\"", .doc_section = "HTTP/2", .offset = LS(http2_max_header_list_size),
          .description = "decoded header bytes of a request: 431" },
        { .name = "http2_idle_timeout", .type = T_DURATION, .scopes = SRV, .inherit = INHERIT_REPLACE,
          .dflt = "\"3m\"", .doc_section = "HTTP/2", .flags = SF_POSITIVE, .offset = LS(http2_idle_timeout),
          .description = "a connection without streams" },
        { .name = "http2_ping_timeout", .type = T_DURATION, .scopes = SRV, .inherit = INHERIT_REPLACE,
          .dflt = "\"30s\"", .doc_section = "HTTP/2", .flags = SF_POSITIVE, .offset = LS(http2_ping_timeout),
          .description = "silence before a PING, and for its answer" },
        { .name = "buffering", .type = T_BOOL, .scopes = LOC, .inherit = INHERIT_REPLACE, .dflt = "true",
          .offset = LS(buffering), .description = "accepted; responses are always streamed" },
        { .name = "websocket", .type = T_BOOL, .scopes = LOC, .inherit = INHERIT_REPLACE, .dflt = "true",
          .offset = LS(websocket), .description = "tunnel Upgrade requests" },
        { .name = "upgrade_protocols", .type = T_STRINGS, .scopes = LOC, .inherit = INHERIT_REPLACE,
          .dflt = "[ \"websocket\" ]", .flags = SF_LOWER, .offset = LS(upgrade_protocols),
          .offset_n = LS(n_upgrade_protocols), .check = config_check_tokens,
          .description = "Upgrade protocols that may be tunnelled" },
        { .name = "underscores_in_headers", .type = T_BOOL, .scopes = LOC, .inherit = INHERIT_REPLACE,
          .dflt = "false", .offset = LS(underscores_in_headers),
          .description = "pass request header names with '_'" },
        { .name = "access", .type = T_ACCESS, .scopes = LOC, .inherit = INHERIT_REPLACE,
          .description = "allow/deny rules, the first match wins" },
        { .name = "ssl_server_name", .type = T_BOOL, .scopes = LOC, .inherit = INHERIT_REPLACE, .dflt = "true",
          .offset = LS(ssl_server_name), .description = "SNI to https upstreams" },
        { .name = "ssl_verify", .type = T_BOOL, .scopes = LOC, .inherit = INHERIT_REPLACE, .dflt = "true",
          .offset = LS(ssl_verify), .description = "verify upstream certificates" },
        { .name = "ssl_trusted_certificate", .type = T_PATH, .scopes = LOC, .inherit = INHERIT_REPLACE,
          .doc_default = "the system trust store", .offset = LS(ssl_trusted_certificate),
          .description = "CA certificates for ssl_verify" },
        { .name = "ssl_name", .type = T_TEMPLATE, .scopes = LOC, .inherit = INHERIT_REPLACE,
          .dflt = "\"$proxy_host\"", .offset = LS(ssl_name), .description = "name sent with SNI and verified" },
        { .name = "ssl_certificate", .type = T_PATH, .scopes = LOC, .inherit = INHERIT_REPLACE,
          .offset = LS(ssl_certificate), .description = "client certificate towards https upstreams" },
        { .name = "ssl_certificate_key", .type = T_PATH, .scopes = LOC, .inherit = INHERIT_REPLACE,
          .offset = LS(ssl_certificate_key), .description = "its key" },
        { .name = "limit", .type = T_STRINGS, .scopes = LOC, .inherit = INHERIT_REPLACE, .offset = LS(limit),
          .offset_n = LS(n_limit), .check = config_check_limit_names, .doc_section = "CLIENT LIMITS",
          .description = "names of limits applied to proxied requests" },
        { .name = "real_ip_from", .type = T_STRINGS, .scopes = LOC, .inherit = INHERIT_REPLACE, .offset = LS(real_ip_from),
          .offset_n = LS(n_real_ip_from), .check = config_check_cidrs, .doc_section = "CLIENT ADDRESSES",
          .description = "trusted proxies: their header says who the client is" },
        { .name = "real_ip_header", .type = T_STRING, .scopes = LOC, .inherit = INHERIT_REPLACE,
          .dflt = "\"X-Forwarded-For\"", .offset = LS(real_ip_header), .check = config_check_header_name,
          .doc_section = "CLIENT ADDRESSES", .description = "the header trusted proxies set" },
        { .name = "real_ip_recursive", .type = T_BOOL, .scopes = LOC, .inherit = INHERIT_REPLACE, .dflt = "false",
          .offset = LS(real_ip_recursive), .doc_section = "CLIENT ADDRESSES",
          .description = "skip every trusted address from the right" },
        { .name = "cache", .type = T_BOOL, .scopes = LOC, .inherit = INHERIT_REPLACE, .doc_section = "CACHE", .dflt = "false",
          .offset = LS(cache), .description = "answer from and store into the response cache" },
        { .name = "cache_key", .type = T_TEMPLATE, .scopes = LOC, .inherit = INHERIT_REPLACE, .doc_section = "CACHE",
          .dflt = "\"$scheme://$host$request_uri\"", .offset = LS(cache_key), .description = "the cache key" },
        { .name = "cache_valid", .type = T_STRINGS, .scopes = LOC, .inherit = INHERIT_REPLACE, .doc_section = "CACHE",
          .offset = LS(cache_valid), .offset_n = LS(n_cache_valid), .check = config_check_cache_valid,
          .description = "\"CODE... DURATION\": freshness when the origin gives none" },
        { .name = "cache_max_object_size", .type = T_SIZE, .scopes = LOC, .inherit = INHERIT_REPLACE, .doc_section = "CACHE",
          .dflt = "\"8m\"", .offset = LS(cache_max_object_size), .description = "larger responses are not stored" },
        { .name = "cache_bypass", .type = T_TEMPLATE, .scopes = LOC, .inherit = INHERIT_REPLACE, .doc_section = "CACHE",
          .offset = LS(cache_bypass), .description = "not empty and not \"0\": go to the origin" },
        { .name = "cache_no_store", .type = T_TEMPLATE, .scopes = LOC, .inherit = INHERIT_REPLACE, .doc_section = "CACHE",
          .offset = LS(cache_no_store), .description = "not empty and not \"0\": do not store" },
        { .name = "cache_heuristic", .type = T_UINT, .scopes = LOC, .inherit = INHERIT_REPLACE, .doc_section = "CACHE", .dflt = "10",
          .min = 0, .max = 100, .offset = LS(cache_heuristic),
          .description = "percent of the Last-Modified age used as freshness; 0: off" },
        { .name = "cache_min_uses", .type = T_UINT, .scopes = LOC, .inherit = INHERIT_REPLACE, .doc_section = "CACHE",
          .dflt = "1", .min = 1, .max = 1000000, .offset = LS(cache_min_uses),
          .description = "requests for a key before its response is stored" },
        { .name = "cache_use_stale", .type = T_FLAGS, .scopes = LOC, .inherit = INHERIT_REPLACE, .doc_section = "CACHE", .dflt = "[]",
          NAMES(stale_names), .offset = LS(cache_use_stale), .description = "when a stale response may be served" },
        { .name = "cache_status_header", .type = T_BOOL, .scopes = LOC, .inherit = INHERIT_REPLACE, .doc_section = "CACHE",
          .dflt = "true", .offset = LS(cache_status_header), .description = "send Cache-Status (RFC 9211)" },
        { .name = "cache_purge", .type = T_BOOL, .scopes = LOC, .inherit = INHERIT_REPLACE, .doc_section = "CACHE", .dflt = "false",
          .offset = LS(cache_purge), .description = "PURGE requests remove cached objects" },
        { .name = "auth_request", .type = T_GROUP, .scopes = LOC, .inherit = INHERIT_REPLACE,
          .doc_type = "group or false", .doc_section = "FORWARD AUTHENTICATION", .offset = LS(auth_request),
          .parse = config_parse_auth_request, .description = "ask an auth service before proxying" },
};



static const char *const balance_names[] = {
        [BALANCE_ROUND_ROBIN] = "round_robin",
        [BALANCE_LEAST_CONN] = "least_conn",
        [BALANCE_IP_HASH] = "ip_hash",
        [BALANCE_RANDOM] = "random",
        [BALANCE_HASH] = "hash",
};
static const char *const proxy_protocol_names[] = { "off", "v1", "v2" };
/* bit i of NEXT_UPSTREAM_* is names[i]; "off" alone: none */
static const char *const next_names[] = { "error",    "timeout",  "invalid_header", "http_502",
                                          "http_503", "http_504", "non_idempotent" };

static const Setting upstream_rows[] = {
        { .name = "servers", .type = T_LIST, .scopes = SC_UPSTREAM, .flags = SF_REQUIRED,
          .parse = config_parse_upstream_servers, .description = "the servers of the group" },
        { .name = "balance", .type = T_ENUM, .scopes = SC_UPSTREAM, .dflt = "\"round_robin\"", NAMES(balance_names),
          .offset = UP(balance), .description = "round_robin, least_conn, ip_hash, random, hash" },
        { .name = "hash_key", .type = T_TEMPLATE, .scopes = SC_UPSTREAM, .offset = UP(hash_key),
          .description = "the key of balance = \"hash\"" },
        { .name = "proxy_protocol", .type = T_ENUM, .scopes = SC_UPSTREAM, .dflt = "\"off\"",
          NAMES(proxy_protocol_names), .offset = UP(proxy_protocol),
          .description = "send a PROXY protocol header: off, v1, v2" },
        { .name = "keepalive", .type = T_UINT, .scopes = SC_UPSTREAM, .dflt = "32", .min = 0,
          .max = CONFIG_KEEPALIVE_MAX, .offset = UP(keepalive), .description = "idle connections per worker" },
        { .name = "keepalive_timeout", .type = T_DURATION, .scopes = SC_UPSTREAM, .dflt = "\"60s\"",
          .offset = UP(keepalive_timeout), .description = "idle pooled connection lifetime" },
        { .name = "keepalive_requests", .type = T_UINT, .scopes = SC_UPSTREAM, .dflt = "1000", .min = 1,
          .max = 1000000, .offset = UP(keepalive_requests), .description = "requests per upstream connection" },
        { .name = "next_upstream", .type = T_FLAGS, .scopes = SC_UPSTREAM, .dflt = "[ \"error\", \"timeout\" ]",
          NAMES(next_names), .offset = UP(next_upstream), .description = "when to try the next server" },
        { .name = "next_upstream_tries", .type = T_UINT, .scopes = SC_UPSTREAM, .dflt = "0", .min = 0, .max = 1000,
          .offset = UP(next_upstream_tries), .description = "attempts per request; 0: no limit" },
        { .name = "next_upstream_timeout", .type = T_DURATION, .scopes = SC_UPSTREAM, .dflt = "0",
          .offset = UP(next_upstream_timeout), .description = "time for retries; 0: no limit" },
        { .name = "slow_start", .type = T_DURATION, .scopes = SC_UPSTREAM, .dflt = "0", .offset = UP(slow_start),
          .description = "weight ramp-up of a recovered server" },
        { .name = "health_check", .type = T_GROUP, .scopes = SC_UPSTREAM, .parse = config_parse_health_check,
          .description = "active checks" },
};

static const Setting upstream_server_rows[] = {
        { .name = "address", .type = T_STRING, .scopes = SC_UPSTREAM_SERVER, .flags = SF_REQUIRED,
          .offset = SETTING_NO_FIELD, .description = "HOST:PORT, [IPV6]:PORT or unix:/PATH" },
        { .name = "weight", .type = T_UINT, .scopes = SC_UPSTREAM_SERVER, .dflt = "1", .min = 1,
          .max = CONFIG_WEIGHT_MAX, .offset = US(weight), .description = "share of the requests" },
        { .name = "max_fails", .type = T_UINT, .scopes = SC_UPSTREAM_SERVER, .dflt = "1", .min = 0, .max = 1000000,
          .offset = US(max_fails), .description = "failures within fail_timeout that take it out" },
        { .name = "fail_timeout", .type = T_DURATION, .scopes = SC_UPSTREAM_SERVER, .dflt = "\"10s\"",
          .offset = US(fail_timeout), .description = "failure window and time out" },
        { .name = "backup", .type = T_BOOL, .scopes = SC_UPSTREAM_SERVER, .dflt = "false", .offset = US(backup),
          .description = "used only when no primary server is" },
        { .name = "down", .type = T_BOOL, .scopes = SC_UPSTREAM_SERVER, .dflt = "false", .offset = US(down),
          .description = "out of rotation" },
        { .name = "max_conns", .type = T_UINT, .scopes = SC_UPSTREAM_SERVER, .dflt = "0", .min = 0, .max = 1000000,
          .offset = US(max_conns), .description = "requests at once; 0: no limit" },
        { .name = "resolve", .type = T_DURATION, .scopes = SC_UPSTREAM_SERVER, .offset = US(resolve_interval),
          .description = "re-resolve the name at this interval" },
};

static const Setting health_check_rows[] = {
        { .name = "path", .type = T_STRING, .scopes = SC_HEALTH_CHECK, .dflt = "\"/\"", .offset = HC(path),
          .check = config_check_health_path, .description = "the probe's request target" },
        { .name = "interval", .type = T_DURATION, .scopes = SC_HEALTH_CHECK, .dflt = "\"5s\"", .flags = SF_POSITIVE,
          .offset = HC(interval), .description = "time between probes" },
        { .name = "timeout", .type = T_DURATION, .scopes = SC_HEALTH_CHECK, .dflt = "\"2s\"", .flags = SF_POSITIVE,
          .offset = HC(timeout), .description = "time for one probe" },
        { .name = "status", .type = T_STATUSES, .scopes = SC_HEALTH_CHECK, .doc_default = "any 2xx or 3xx",
          .offset = HC(statuses), .offset_n = HC(n_statuses), .description = "statuses that pass" },
        { .name = "fails", .type = T_UINT, .scopes = SC_HEALTH_CHECK, .dflt = "1", .min = 1, .max = 1000,
          .offset = HC(fails), .description = "consecutive failures that take a server out" },
        { .name = "passes", .type = T_UINT, .scopes = SC_HEALTH_CHECK, .dflt = "1", .min = 1, .max = 1000,
          .offset = HC(passes), .description = "consecutive passes that bring it back" },
};

static const Setting limit_rows[] = {
        { .name = "key", .type = T_TEMPLATE, .scopes = SC_LIMIT, .dflt = "\"$remote_addr\"", .offset = LZ(key),
          .description = "what is counted apart: the client address by default" },
        { .name = "rate", .type = T_STRING, .scopes = SC_LIMIT, .doc_type = "string", .parse = config_parse_rate,
          .description = "requests per second or minute per key: \"10r/s\", \"600r/m\"" },
        { .name = "burst", .type = T_UINT, .scopes = SC_LIMIT, .dflt = "0", .min = 0, .max = 100000,
          .offset = LZ(params.burst), .description = "requests above the rate that are accepted" },
        { .name = "delay", .type = T_UINT, .scopes = SC_LIMIT, .dflt = "0", .min = 0, .max = 100000,
          .offset = LZ(params.delay), .description = "of those, how many are not delayed" },
        { .name = "nodelay", .type = T_BOOL, .scopes = SC_LIMIT, .dflt = "false", .offset = LZ(params.nodelay),
          .description = "no request of the burst is delayed" },
        { .name = "conn", .type = T_UINT, .scopes = SC_LIMIT, .dflt = "0", .min = 0, .max = 1000000,
          .offset = LZ(params.conn), .description = "requests in progress per key; 0: no limit" },
        { .name = "max_keys", .type = T_UINT, .scopes = SC_LIMIT, .dflt = "100000", .min = 1, .max = 10000000,
          .offset = LZ(max_keys), .description = "keys remembered at most" },
};

#define AR(f) offsetof(AuthRequest, f)

static const Setting auth_rows[] = {
        { .name = "pass", .type = T_STRING, .scopes = SC_AUTH, .flags = SF_REQUIRED, .parse = schema_keep,
          .offset = SETTING_NO_FIELD, .description = "the auth service's URL (a host or an upstream group, and a path)" },
        { .name = "method", .type = T_STRING, .scopes = SC_AUTH, .dflt = "\"GET\"", .offset = AR(method),
          .check = config_check_auth_method, .description = "method of the auth request" },
        { .name = "headers", .type = T_STRINGS, .scopes = SC_AUTH, .dflt = "[ \"Authorization\", \"Cookie\" ]",
          .offset = AR(headers), .offset_n = AR(n_headers), .check = config_check_auth_fields,
          .description = "request header fields passed to the auth service" },
        { .name = "copy_headers", .type = T_STRINGS, .scopes = SC_AUTH, .offset = AR(copy_headers),
          .offset_n = AR(n_copy_headers), .check = config_check_auth_fields,
          .description = "fields of a 2xx answer sent upstream instead of the client's" },
        { .name = "timeout", .type = T_DURATION, .scopes = SC_AUTH, .dflt = "\"5s\"", .flags = SF_POSITIVE,
          .offset = AR(timeout), .description = "the whole auth request; then 500" },
        { .name = "cache", .type = T_DURATION, .scopes = SC_AUTH, .dflt = "0", .offset = AR(cache),
          .description = "how long a 2xx, 401 or 403 decision is kept per cache_key; 0: not at all" },
        { .name = "cache_key", .type = T_TEMPLATE, .scopes = SC_AUTH, .offset = AR(cache_key),
          .description = "what decisions are kept apart by (required with cache)" },
        { .name = "cache_size", .type = T_SIZE, .scopes = SC_AUTH, .dflt = "\"4m\"", .offset = AR(cache_size),
          .description = "memory for the decisions kept (least recently used go first)" },
};

#define TABLE(n, t, r, ...) const SettingTable n = { .title = t, .rows = r, .n_rows = ELEMENTSOF(r), __VA_ARGS__ }
TABLE(SCHEMA_TOP, "TOP LEVEL", top_rows);
TABLE(SCHEMA_SERVER, "SERVERS", server_rows);
TABLE(SCHEMA_TLS, "TLS", tls_rows);
TABLE(SCHEMA_LOCATION, "LOCATIONS", location_rows);
TABLE(SCHEMA_RULE, "RULES", rule_rows);
TABLE(SCHEMA_INHERIT, "LOCATION SETTINGS", inherit_rows);
TABLE(SCHEMA_UPSTREAM, "UPSTREAMS", upstream_rows);
TABLE(SCHEMA_UPSTREAM_SERVER, "UPSTREAMS", upstream_server_rows, .nested = "servers");
TABLE(SCHEMA_HEALTH_CHECK, "UPSTREAMS", health_check_rows, .nested = "health_check");
TABLE(SCHEMA_LIMIT, "CLIENT LIMITS", limit_rows, .nested = "limits");
TABLE(SCHEMA_AUTH, "FORWARD AUTHENTICATION", auth_rows, .nested = "auth_request");

const SettingTable *const SCHEMA_TABLES[] = {
        &SCHEMA_TOP,      &SCHEMA_SERVER,   &SCHEMA_TLS,             &SCHEMA_LOCATION,
        &SCHEMA_INHERIT,  &SCHEMA_UPSTREAM, &SCHEMA_UPSTREAM_SERVER, &SCHEMA_HEALTH_CHECK,
        &SCHEMA_LIMIT,
        &SCHEMA_RULE,     &SCHEMA_AUTH,
};
const size_t SCHEMA_N_TABLES = ELEMENTSOF(SCHEMA_TABLES);

_Static_assert(ELEMENTSOF(inherit_rows) <= 64, "PartialSettings.set has a bit per row");

/* ---- lookup and diagnostics ---- */

int schema_find(const SettingTable *t, const char *name) {
        for (size_t i = 0; i < t->n_rows; i++)
                if (streq(t->rows[i].name, name))
                        return (int) i;
        return -1;
}

/* Whether some row named name has scopes (all of its scopes) equal to exactly / including any of has
 * and none of hasnt. */
static bool schema_any(const char *name, unsigned has, unsigned hasnt, bool exactly) {
        for (size_t k = 0; k < SCHEMA_N_TABLES; k++) {
                int i = schema_find(SCHEMA_TABLES[k], name);
                unsigned sc;

                if (i < 0)
                        continue;
                sc = SCHEMA_TABLES[k]->rows[i].scopes;
                if (exactly ? sc == has : ((sc & has) && !(sc & hasnt)))
                        return true;
        }
        return false;
}

static bool startswith(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

int schema_unknown(Loader *l, const config_setting_t *s, unsigned scope, const char *where) {
        const char *name = config_setting_name(s);

        if (scope == SC_LOCATION) {
                /* head limits apply before a location is chosen; every client_max_* but the body
                 * size counts as one here */
                if (schema_any(name, SC_DEFAULTS, SC_LOCATION, false) ||
                    (startswith(name, "client_max_") && !streq(name, "client_max_body_size")))
                        return ERR(l, s, "\"%s\" is a server-level setting (server or defaults), not valid in a location",
                                   name);
                return ERR(l, s, "unknown setting \"%s\"", name);
        }
        if (schema_any(name, SC_LOCATION, 0, true))
                return ERR(l, s, "\"%s\" is only allowed inside a location, not %s", name, where);
        return ERR(l, s, "unknown setting \"%s\"", name);
}


/* ---- typed values ---- */

static int run_check(Loader *l, const config_setting_t *s, const Setting *row, const void *v, size_t n) {
        return row->check ? row->check(l, s, v, n) : 0;
}

static int parse_flags(Loader *l, const config_setting_t *s, const Setting *row, unsigned *ret) {
        char **a = NULL;
        size_t na = 0;
        unsigned flags = 0;
        int r;

        r = get_string_list(l, s, &a, &na, false);
        for (size_t k = 0; r >= 0 && k < na; k++) {
                size_t j = 0;
                while (j < row->n_names && !streq(a[k], row->names[j]))
                        j++;
                if (streq(a[k], "off")) {
                        if (na > 1)
                                r = ERR(l, s, "\"off\" cannot be combined with other values in \"%s\"", row->name);
                } else if (j == row->n_names)
                        r = ERR(l, s, "invalid value \"%s\" in \"%s\"", a[k], row->name);
                else
                        flags |= 1u << j;
        }
        if (r >= 0)
                *ret = flags;
        strv_free(a, na);
        return r;
}

static int parse_statuses(Loader *l, const config_setting_t *s, const Setting *row, unsigned **a, size_t *n) {
        size_t len;
        int r = 0;

        if (config_setting_type(s) != CONFIG_TYPE_ARRAY && config_setting_type(s) != CONFIG_TYPE_LIST)
                return ERR(l, s, "\"%s\" must be a list of status codes", row->name);
        if (config_setting_length(s) == 0)
                return 0;
        len = (size_t) config_setting_length(s);
        free(*a);
        *n = 0;
        *a = calloc(len, sizeof(unsigned));
        if (!*a)
                return -ENOMEM;
        for (size_t k = 0; k < len && r >= 0; k++)
                r = get_uint(l, config_setting_get_elem(s, (unsigned) k), 100, 599, &(*a)[k]);
        if (r >= 0)
                *n = len;
        return r;
}

static int parse_pointer(Loader *l, const config_setting_t *s, const Setting *row, void *field) {
        void *v = NULL;
        const char *str = NULL;
        int r;

        if (row->type == T_PATH)
                r = get_path(l, s, (char **) &v);
        else if (row->type == T_TEMPLATE)
                r = get_template(l, s, (VarTemplate **) &v);
        else {
                r = get_string(l, s, &str);
                if (r >= 0)
                        r = run_check(l, s, row, str, 1);
                if (r >= 0 && field && !(v = strdup(str)))
                        r = -ENOMEM;
        }
        if (r < 0 || !field) {
                if (row->type == T_TEMPLATE)
                        var_template_free(v);
                else
                        free(v);
                return r;
        }
        if (row->type == T_TEMPLATE)
                var_template_free(*(VarTemplate **) field);
        else
                free(*(char **) field);
        *(void **) field = v;
        return 0;
}

/* Parse s by row's type into the field at row->offset of target. */
static int parse_typed(Loader *l, const config_setting_t *s, const Setting *row, void *target, PartialSettings *p) {
        char *field = row->offset == SETTING_NO_FIELD ? NULL : (char *) target + row->offset;
        unsigned u = 0;
        uint64_t d = 0;
        bool b = false;
        int r;

        switch (row->type) {
        case T_BOOL:
                r = get_bool(l, s, &b);
                if (r >= 0)
                        *(bool *) field = b;
                return r;
        case T_UINT:
                r = get_uint(l, s, row->min, row->max, &u);
                if (r >= 0)
                        *(unsigned *) field = u;
                return r;
        case T_DURATION:
        case T_SIZE:
                r = row->type == T_SIZE ? get_size(l, s, &d) : get_duration(l, s, &d);
                if (r >= 0)
                        *(uint64_t *) field = d;
                if (r >= 0 && (row->flags & SF_POSITIVE) && d == 0)
                        r = ERR(l, s, "\"%s\" must be positive", row->name);
                return r;
        case T_ENUM:
                r = get_enum(l, s, row->names, row->n_names, &u);
                if (r >= 0)
                        *(int *) field = row->values ? row->values[u] : (int) u;
                return r;
        case T_FLAGS:
                return parse_flags(l, s, row, (unsigned *) field);
        case T_STRING:
        case T_PATH:
        case T_TEMPLATE:
                return parse_pointer(l, s, row, field);
        case T_STRINGS: {
                char **a = NULL;
                size_t n = 0;

                r = get_string_list(l, s, &a, &n, row->flags & SF_LOWER);
                if (r >= 0)
                        r = run_check(l, s, row, a, n);
                if (r < 0) {
                        strv_free(a, n);
                        return r;
                }
                strv_free(*(char ***) field, *(size_t *) ((char *) target + row->offset_n));
                *(char ***) field = a;
                *(size_t *) ((char *) target + row->offset_n) = n;
                return 0;
        }
        case T_STATUSES:
                return parse_statuses(l, s, row, (unsigned **) field, (size_t *) ((char *) target + row->offset_n));
        case T_HEADERS:
        case T_HEADER_NAMES:
        case T_ACCESS:
                return settings_parse_special(l, s, row, p);
        case T_GROUP:
        case T_LIST:
                break;
        }
        return 0;
}

/* ---- walking a group ---- */

int schema_keep(Loader *l, const config_setting_t *s, SchemaWalk *w) {
        (void) l, (void) s, (void) w;
        return 0;
}

int schema_parse_ctx(Loader *l, const config_setting_t *s, SchemaWalk *w) {
        int i = schema_find(w->table, config_setting_name(s));

        return parse_typed(l, s, &w->table->rows[i], w->ctx, w->partial);
}

int schema_member(Loader *l, const config_setting_t *s, SchemaWalk *w) {
        const char *name = config_setting_name(s);
        int i, r;

        i = w->table ? schema_find(w->table, name) : -1;
        if (i >= 0 && (w->table->rows[i].scopes & w->scope)) {
                const Setting *row = &w->table->rows[i];

                w->seen[i] = s;
                r = row->parse ? row->parse(l, s, w) : parse_typed(l, s, row, w->target, w->partial);
                return r < 0 ? r : 1;
        }
        i = w->partial ? schema_find(&SCHEMA_INHERIT, name) : -1;
        if (i >= 0 && (SCHEMA_INHERIT.rows[i].scopes & w->scope)) {
                const Setting *row = &SCHEMA_INHERIT.rows[i];

                r = row->parse ? row->parse(l, s, w) : parse_typed(l, s, row, &w->partial->v, w->partial);
                if (r >= 0)
                        w->partial->set |= UINT64_C(1) << i;
                /* a bad single value is diagnosed and left unset; it does not make the group
                 * invalid by itself (a bad list or group does) */
                if (r == -EINVAL && (row->type == T_BOOL || row->type == T_DURATION || row->type == T_SIZE ||
                                     row->type == T_PATH || row->type == T_TEMPLATE))
                        return 1;
                return r < 0 ? r : 1;
        }
        return 0;
}

int schema_walk(Loader *l, const config_setting_t *g, SchemaWalk *w) {
        for (int i = 0; i < config_setting_length(g); i++) {
                const config_setting_t *s = config_setting_get_elem(g, (unsigned) i);
                int r = schema_member(l, s, w);

                if (r == 0)
                        r = schema_unknown(l, s, w->scope, w->where);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        w->bad = true;
        }
        return 0;
}

/* ---- defaults ---- */

int schema_defaults(const SettingTable *t, unsigned scope, void *target, PartialSettings *partial) {
        _cleanup_free_ char *text = NULL;
        ConfigDiags diags = {};
        Loader l = { .diags = &diags };
        SchemaWalk w = { .scope = scope, .where = "in the built-in defaults", .target = target };
        size_t n = 0;
        FILE *f;
        config_t cf;
        int r;

        if (t == &SCHEMA_INHERIT)
                w.partial = partial;
        else
                w.table = t;
        f = open_memstream(&text, &n);
        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < t->n_rows; i++)
                if (t->rows[i].dflt && (t->rows[i].scopes & scope))
                        fprintf(f, "%s = %s;\n", t->rows[i].name, t->rows[i].dflt);
        if (fclose(f) != 0)
                return -ENOMEM;
        config_init(&cf);
        if (!config_read_string(&cf, text)) {
                config_destroy(&cf);
                return -EINVAL; /* a row's default is not libconfig */
        }
        r = schema_walk(&l, config_root_setting(&cf), &w);
        config_destroy(&cf);
        if (r >= 0 && (w.bad || diags.n_errors > 0))
                r = -EINVAL; /* a row's default does not parse */
        config_diags_clear(&diags);
        return r;
}

/* ---- documentation ---- */

const char *schema_doc_type(const Setting *row, char *buf, size_t size) {
        static const char *const names[] = {
                [T_BOOL] = "boolean",     [T_DURATION] = "duration", [T_SIZE] = "size",
                [T_STRING] = "string",    [T_ENUM] = "string",       [T_PATH] = "path",
                [T_TEMPLATE] = "string with variables",               [T_HEADERS] = "group",
                [T_HEADER_NAMES] = "array", [T_STRINGS] = "string or array of strings",
                [T_ACCESS] = "string or array", [T_FLAGS] = "array", [T_STATUSES] = "array of integers",
                [T_LIST] = "list",
        };

        if (row->doc_type)
                return *row->doc_type ? row->doc_type : NULL;
        if (row->type == T_UINT) {
                snprintf(buf, size, "integer %u-%u", row->min, row->max);
                return buf;
        }
        return names[row->type];
}

void schema_write_defaults(FILE *f) {
        static const char *const where[] = { "top level", "servers", "tls", "locations", "defaults, servers, locations",
                                             "upstreams", "upstream servers", "health_check", "limits", "rules",
                                             "auth_request" };
        _Static_assert(ELEMENTSOF(where) == ELEMENTSOF(SCHEMA_TABLES), "a heading per table");

        fprintf(f, "\n# Built-in defaults (proxyd.conf(5)): what a setting not given above is.\n");
        for (size_t k = 0; k < SCHEMA_N_TABLES; k++) {
                const SettingTable *t = SCHEMA_TABLES[k];
                bool heading = false;

                for (size_t i = 0; i < t->n_rows; i++) {
                        const Setting *row = &t->rows[i];
                        if ((row->dflt || row->doc_default) && !heading) {
                                fprintf(f, "#\n# %s:\n", where[k]);
                                heading = true;
                        }
                        if (row->dflt)
                                fprintf(f, "#   %s = %s;  # %s\n", row->name, row->dflt, row->description);
                        else if (row->doc_default)
                                fprintf(f, "#   %s: %s  # %s\n", row->name, row->doc_default, row->description);
                }
        }
}
