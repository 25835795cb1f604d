/* SPDX-License-Identifier: MIT */
#pragma once

/* Header-value templates with nginx-style variables ("$host", "${host}", "$http_x_foo";
 * "$$" is a literal "$").
 * Compiled once at configuration load; expanded per request by the caller's getter. Pure. */

#include <stdbool.h>
#include <stddef.h>

typedef enum VarId {
        VAR_LITERAL,
        VAR_HOST,
        VAR_REMOTE_ADDR,
        VAR_REMOTE_PORT,
        VAR_SCHEME,
        VAR_REQUEST_URI,
        VAR_URI,
        VAR_ARGS,
        VAR_SERVER_NAME,
        VAR_SERVER_PORT,
        VAR_PROXY_HOST,
        VAR_PROXY_ADD_X_FORWARDED_FOR,
        VAR_REQUEST_ID,
        VAR_HTTP, /* $http_NAME: name holds NAME in lower case with '_' (match '-' or '_') */
        VAR_REQUEST_METHOD,
        VAR_SSL_CLIENT_S_DN, /* verified TLS client certificate subject (RFC 4514) */
        VAR_REALIP_REMOTE_ADDR, /* the connection's peer, before real_ip_from replaced it */
        VAR_FORWARDED,          /* this hop's RFC 7239 element: for=...;proto=...;host=... */
        VAR_PROXY_ADD_FORWARDED, /* the client's Forwarded fields, then this hop's element */
        VAR_ARG,    /* $arg_NAME: the first query argument NAME, as sent (name holds NAME) */
        VAR_COOKIE, /* $cookie_NAME: the first cookie NAME */
        _VAR_MAX,
} VarId;

typedef struct VarSegment {
        VarId id;
        char *text; /* literal text, or for VAR_HTTP the header name (lower case, '_' form) */
        size_t len;
} VarSegment;

typedef struct VarTemplate {
        VarSegment *segs;
        size_t n_segs;
        char *source; /* the template as written */
        bool literal; /* no variables: segs is at most one VAR_LITERAL */
} VarTemplate;

/* Returns 0, or -EINVAL with *ret_error (static string) e.g. "unknown variable". */
int var_template_compile(const char *s, VarTemplate **ret, const char **ret_error);
VarTemplate *var_template_free(VarTemplate *t);
/* True if the template is a single literal (no variables). */
static inline bool var_template_is_literal(const VarTemplate *t) {
        return t && t->literal;
}
/* True if the template is the variable id and nothing else ("$remote_addr"). */
static inline bool var_template_is_var(const VarTemplate *t, VarId id) {
        return t && t->n_segs == 1 && t->segs[0].id == id;
}
/* Name of a variable id ("host"), for dumps and diagnostics. */
const char *var_name(VarId id);
/* Compare a header name with a VAR_HTTP segment name: case-insensitive, '-' == '_'. */
bool var_http_name_matches(const VarSegment *seg, const char *name, size_t len);
