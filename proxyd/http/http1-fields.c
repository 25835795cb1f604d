/* SPDX-License-Identifier: MIT */
/*
 * HTTP/1 field helpers that are not part of parsing a head: tokens, Upgrade lists, header
 * lookup, hop-by-hop names, Connection options, method ids and status texts.
 */

#include "http1-chars.h"

bool http1_token_valid(const char *s, size_t n) {
        if (!s || n == 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_tchar((unsigned char) s[i]))
                        return false;
        return true;
}

bool http1_name_has_underscore(const char *name, size_t len) {
        return memchr(name, '_', len) != NULL;
}

bool http1_next_pair(const char *s, size_t n, char sep, const char *name, size_t name_len, size_t *pos,
                     const char **ret_value, size_t *ret_len) {
        const char *e = s + n;

        for (const char *p = s + *pos; p < e;) {
                const char *end = memchr(p, sep, (size_t) (e - p)) ?: e;
                const char *eq = memchr(p, '=', (size_t) (end - p));
                const char *name_end = eq ?: end;

                while (sep == ';' && p < name_end && (*p == ' ' || *p == '\t'))
                        p++;
                *pos = (size_t) (end - s) + (end < e);
                if ((size_t) (name_end - p) == name_len && memcmp(p, name, name_len) == 0) {
                        *ret_value = eq ? eq + 1 : end;
                        *ret_len = (size_t) (end - *ret_value);
                        return true;
                }
                p = end + 1;
        }
        *pos = n;
        return false;
}

/* One Upgrade element: name [ "/" version ], both tokens. */
static bool upgrade_split(const char *e, size_t n, size_t *ret_name_len) {
        const char *slash = memchr(e, '/', n);
        size_t nl = slash ? (size_t) (slash - e) : n;

        if (!http1_token_valid(e, nl))
                return false;
        if (slash && !http1_token_valid(slash + 1, n - nl - 1))
                return false;
        *ret_name_len = nl;
        return true;
}

static bool name_eq_lower(const char *a, size_t n, const char *lower) {
        size_t i;
        for (i = 0; i < n && lower[i]; i++)
                if (((unsigned char) a[i] | (a[i] >= 'A' && a[i] <= 'Z' ? 0x20 : 0)) != (unsigned char) lower[i])
                        return false;
        return i == n && lower[i] == 0;
}

size_t http1_upgrade_filter(const char *value, size_t len, char *const *allowed, size_t n_allowed, char *out) {
        const char *cur = value, *end = value + len, *e;
        size_t n, kept = 0, o = 0;

        while (list_next(&cur, end, &e, &n)) {
                size_t nl;
                if (n == 0 || !upgrade_split(e, n, &nl))
                        continue;
                bool ok = false;
                for (size_t i = 0; i < n_allowed && !ok; i++)
                        ok = name_eq_lower(e, nl, allowed[i]);
                if (!ok)
                        continue;
                if (kept > 0)
                        out[o++] = ',';
                memcpy(out + o, e, n);
                o += n;
                kept++;
        }
        out[o] = 0;
        return kept;
}

bool http1_upgrade_matches(const char *value, size_t len, const char *offered, size_t offered_len) {
        const char *cur = value, *end = value + len, *e;
        size_t n, seen = 0;

        while (list_next(&cur, end, &e, &n)) {
                size_t nl;
                if (n == 0)
                        continue;
                if (!upgrade_split(e, n, &nl))
                        return false;
                bool found = false;
                const char *oc = offered, *oend = offered + offered_len, *oe;
                size_t on;
                while (!found && list_next(&oc, oend, &oe, &on)) {
                        size_t onl;
                        if (on == 0 || !upgrade_split(oe, on, &onl) || onl != nl ||
                            strncasecmp(oe, e, nl) != 0)
                                continue;
                        /* "websocket" answered to "websocket/13" is fine; a different version is not */
                        found = n == nl || (on == n && strncasecmp(oe, e, n) == 0) || on == onl;
                }
                if (!found)
                        return false;
                seen++;
        }
        return seen > 0;
}

/* ------------------------------------------------------------------------- */
/* Header helpers */

int http1_find_header(const HttpHeader *headers, size_t n, const char *name) {
        if (!headers || !name)
                return -1;
        for (size_t i = 0; i < n; i++)
                if (memcaseeq(headers[i].name, headers[i].name_len, name))
                        return (int) i;
        return -1;
}

/*
 * Hop-by-hop fields (RFC 9110 7.6.1, plus the legacy Keep-Alive and Proxy-Connection).
 * Proxy-Authorization is deliberately NOT in this list: like nginx, proxyd forwards it
 * to the upstream, which may be the party that asked for the credentials.
 * Proxy-Authenticate is a response field addressed to the client of a proxy and is not
 * forwarded.
 */
bool http1_is_hop_by_hop(const char *name, size_t len) {
        static const char *const hop[] = {
                "connection",          "keep-alive", "proxy-connection", "te",
                "trailer",             "transfer-encoding", "upgrade",
                "proxy-authenticate",
        };

        if (!name)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(hop); i++)
                if (memcaseeq(name, len, hop[i]))
                        return true;
        return false;
}

bool http1_connection_lists(const HttpHeader *headers, size_t n, const char *name, size_t len) {
        if (!headers || !name || len == 0)
                return false;
        for (size_t i = 0; i < n; i++) {
                const HttpHeader *h = &headers[i];
                const char *cur, *end, *tok;
                size_t tlen;

                if (!memcaseeq(h->name, h->name_len, "connection"))
                        continue;
                cur = h->value;
                end = h->value + h->value_len;
                while (list_next(&cur, end, &tok, &tlen))
                        if (tlen == len && strncasecmp(tok, name, len) == 0)
                                return true;
        }
        return false;
}

HttpMethod http1_method_id(const char *m, size_t len) {
        if (!m)
                return HTTP_METHOD_OTHER;
        /* Methods are case-sensitive (RFC 9110 9.1). */
        switch (len) {
        case 3:
                if (memcmp(m, "GET", 3) == 0)
                        return HTTP_METHOD_GET;
                if (memcmp(m, "PUT", 3) == 0)
                        return HTTP_METHOD_PUT;
                break;
        case 4:
                if (memcmp(m, "HEAD", 4) == 0)
                        return HTTP_METHOD_HEAD;
                if (memcmp(m, "POST", 4) == 0)
                        return HTTP_METHOD_POST;
                break;
        case 5:
                if (memcmp(m, "TRACE", 5) == 0)
                        return HTTP_METHOD_TRACE;
                if (memcmp(m, "PATCH", 5) == 0)
                        return HTTP_METHOD_PATCH;
                break;
        case 6:
                if (memcmp(m, "DELETE", 6) == 0)
                        return HTTP_METHOD_DELETE;
                break;
        case 7:
                if (memcmp(m, "OPTIONS", 7) == 0)
                        return HTTP_METHOD_OPTIONS;
                if (memcmp(m, "CONNECT", 7) == 0)
                        return HTTP_METHOD_CONNECT;
                break;
        default:
                break;
        }
        return HTTP_METHOD_OTHER;
}

const char *http1_status_text(int status) {
        switch (status) {
        case 100: return "Continue";
        case 101: return "Switching Protocols";
        case 102: return "Processing";
        case 103: return "Early Hints";
        case 200: return "OK";
        case 201: return "Created";
        case 202: return "Accepted";
        case 203: return "Non-Authoritative Information";
        case 204: return "No Content";
        case 205: return "Reset Content";
        case 206: return "Partial Content";
        case 207: return "Multi-Status";
        case 300: return "Multiple Choices";
        case 301: return "Moved Permanently";
        case 302: return "Found";
        case 303: return "See Other";
        case 304: return "Not Modified";
        case 305: return "Use Proxy";
        case 307: return "Temporary Redirect";
        case 308: return "Permanent Redirect";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 402: return "Payment Required";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 406: return "Not Acceptable";
        case 407: return "Proxy Authentication Required";
        case 408: return "Request Timeout";
        case 409: return "Conflict";
        case 410: return "Gone";
        case 411: return "Length Required";
        case 412: return "Precondition Failed";
        case 413: return "Content Too Large";
        case 414: return "URI Too Long";
        case 415: return "Unsupported Media Type";
        case 416: return "Range Not Satisfiable";
        case 417: return "Expectation Failed";
        case 421: return "Misdirected Request";
        case 422: return "Unprocessable Content";
        case 425: return "Too Early";
        case 426: return "Upgrade Required";
        case 428: return "Precondition Required";
        case 429: return "Too Many Requests";
        case 431: return "Request Header Fields Too Large";
        case 451: return "Unavailable For Legal Reasons";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        case 505: return "HTTP Version Not Supported";
        case 507: return "Insufficient Storage";
        case 511: return "Network Authentication Required";
        default: return "";
        }
}

void http1_request_drop_fields(HttpRequest *req, bool (*drop)(const HttpHeader *h, void *userdata),
                               void *userdata) {
        size_t j = 0;
        int host = -1, upgrade = -1;

        for (size_t i = 0; i < req->n_headers; i++) {
                const HttpHeader *h = &req->headers[i];
                if (drop(h, userdata))
                        continue;
                if ((int) i == req->host_index)
                        host = (int) j;
                if ((int) i == req->upgrade_index)
                        upgrade = (int) j;
                req->headers[j++] = *h;
        }
        req->n_headers = j;
        req->host_index = host;
        req->upgrade_index = upgrade;
}
