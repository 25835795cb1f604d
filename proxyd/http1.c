/* SPDX-License-Identifier: MIT */
/*
 * Strict HTTP/1.x head parser and chunked-body decoder (RFC 9112, RFC 9110).
 *
 * The head parsers scan the buffer from its start on every call. Each byte is
 * validated as soon as it is seen, so a malformed head is rejected without
 * waiting for its end, and every limit is checked before a byte beyond it is
 * examined: a request line that outgrows max_request_line fails with 414 even
 * if its CRLF never arrives. Semantic checks (framing, Host, Expect) run once
 * the empty line that ends the head has been seen.
 *
 * Nothing here allocates, logs or reads outside buf[0..len).
 */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "http1.h"
#include "util.h"

/* ------------------------------------------------------------------------- */
/* Character classes */

static inline bool is_digit(unsigned char c) {
        return c >= '0' && c <= '9';
}

static inline bool is_alpha(unsigned char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline int hex_value(unsigned char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* RFC 9110 5.6.2 tchar */
static inline bool is_tchar(unsigned char c) {
        if (is_alpha(c) || is_digit(c))
                return true;
        switch (c) {
        case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
        case '+': case '-': case '.': case '^': case '_': case '`': case '|':
        case '~':
                return true;
        default:
                return false;
        }
}

static inline bool is_ws(unsigned char c) {
        return c == ' ' || c == '\t';
}

/* field-vchar / SP / HTAB (RFC 9110 5.5): VCHAR, obs-text, SP, HTAB. */
static inline bool is_field_char(unsigned char c) {
        return (c >= 0x21 && c != 0x7f) || c == ' ' || c == '\t';
}

/* Bytes allowed raw in a request-target: visible ASCII only. */
static inline bool is_target_char(unsigned char c) {
        return c >= 0x21 && c <= 0x7e;
}

/* ------------------------------------------------------------------------- */
/* Small helpers */

static ssize_t fail(HttpError *err, int status, const char *reason, size_t offset) {
        err->status = status;
        err->reason = reason;
        err->offset = offset;
        return -EBADMSG;
}

static void trim_ows(const char **s, size_t *n) {
        while (*n > 0 && is_ws((unsigned char) (*s)[0])) {
                (*s)++;
                (*n)--;
        }
        while (*n > 0 && is_ws((unsigned char) (*s)[*n - 1]))
                (*n)--;
}

/* Iterate the elements of a comma-separated list (RFC 9110 5.6.1). Returns false at
 * the end. Elements are OWS-trimmed and may be empty. */
static bool list_next(const char **cursor, const char *end, const char **ret, size_t *ret_len) {
        const char *p = *cursor, *e;

        if (!p || p > end)
                return false;
        e = memchr(p, ',', (size_t) (end - p));
        if (!e)
                e = end;
        *ret = p;
        *ret_len = (size_t) (e - p);
        trim_ows(ret, ret_len);
        *cursor = e < end ? e + 1 : end + 1;
        return true;
}

/* Content-Length value: 1*DIGIT, at most INT64_MAX. */
static bool parse_content_length(const char *s, size_t n, uint64_t *ret) {
        uint64_t v = 0;

        if (n == 0)
                return false;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];
                if (!is_digit(c))
                        return false;
                if (v > ((uint64_t) INT64_MAX - (uint64_t) (c - '0')) / 10)
                        return false;
                v = v * 10 + (uint64_t) (c - '0');
        }
        *ret = v;
        return true;
}

static inline bool is_unreserved(unsigned char c) {
        return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static inline bool is_sub_delim(unsigned char c) {
        switch (c) {
        case '!': case '$': case '&': case '\'': case '(': case ')': case '*':
        case '+': case ',': case ';': case '=':
                return true;
        default:
                return false;
        }
}

/*
 * uri-host [ ":" port ] (RFC 9110 7.2, RFC 3986 3.2.2): reg-name (which covers IPv4)
 * or an IP-literal in brackets. An empty host is rejected (as nginx does), userinfo
 * is not part of the grammar. port is at most 5 digits and <= 65535; it may be empty
 * unless require_port is set (authority-form of CONNECT).
 */
static bool host_is_valid(const char *s, size_t n, bool require_port) {
        size_t i = 0;

        if (n == 0)
                return false;

        if (s[0] == '[') {
                bool colon = false;

                for (i = 1; i < n && s[i] != ']'; i++) {
                        unsigned char c = (unsigned char) s[i];
                        if (c == ':')
                                colon = true;
                        else if (hex_value(c) < 0 && c != '.')
                                return false;
                }
                if (i >= n || !colon || i < 3)
                        return false;
                i++; /* ']' */
        } else {
                for (; i < n && s[i] != ':'; i++) {
                        unsigned char c = (unsigned char) s[i];
                        if (c == '%') {
                                if (i + 2 >= n || hex_value((unsigned char) s[i + 1]) < 0 ||
                                    hex_value((unsigned char) s[i + 2]) < 0)
                                        return false;
                                i += 2;
                        } else if (!is_unreserved(c) && !is_sub_delim(c))
                                return false;
                }
                if (i == 0)
                        return false;
        }

        if (i == n)
                return !require_port;
        if (s[i] != ':')
                return false;
        i++;
        if (n - i > 5 || (require_port && i == n))
                return false;
        unsigned port = 0;
        for (; i < n; i++) {
                if (!is_digit((unsigned char) s[i]))
                        return false;
                port = port * 10 + (unsigned) (s[i] - '0');
        }
        return port <= 65535;
}

static bool target_is_valid(const char *t, size_t n, HttpMethod method) {
        if (method == HTTP_METHOD_CONNECT)
                /* authority-form only */
                return host_is_valid(t, n, true);

        if (t[0] == '/')
                return true; /* origin-form */

        if (n == 1 && t[0] == '*')
                return method == HTTP_METHOD_OPTIONS; /* asterisk-form */

        /* absolute-form: only the schemes a proxy for http can serve */
        size_t skip;
        if (n > 7 && strncasecmp(t, "http://", 7) == 0)
                skip = 7;
        else if (n > 8 && strncasecmp(t, "https://", 8) == 0)
                skip = 8;
        else
                return false;

        const char *a = t + skip;
        size_t alen = 0;
        while (skip + alen < n && a[alen] != '/' && a[alen] != '?')
                alen++;
        return host_is_valid(a, alen, false);
}

/* ------------------------------------------------------------------------- */
/* Head scanner */

typedef struct HeadScan {
        const char *buf;
        size_t len;
        const HttpLimits *limits;
        HttpError *err;
        int error_status; /* status for syntax errors: 400 (request) or 502 (response) */

        size_t line_start;
        size_t line_max;
        int line_status;
        const char *line_reason;
} HeadScan;

/*
 * Before looking at buf[p]: returns 1 if it may be examined, 0 if the input ends
 * here (incomplete), or -EBADMSG if examining it would exceed a limit. Line limits
 * count the bytes of a line without its CRLF; the head limit counts everything.
 */
static int scan_avail(HeadScan *s, size_t p) {
        if (p >= s->len)
                return 0;
        unsigned char c = (unsigned char) s->buf[p];
        if (c != '\r' && c != '\n' && p - s->line_start >= s->line_max)
                return (int) fail(s->err, s->line_status, s->line_reason, p);
        if (p >= s->limits->max_head_size)
                return (int) fail(s->err, s->error_status == 400 ? 431 : s->error_status,
                                  "header section too large", p);
        return 1;
}

#define AVAIL(s, p)                              \
        do {                                     \
                int _r_ = scan_avail((s), (p));  \
                if (_r_ <= 0)                    \
                        return _r_;              \
        } while (0)

/* At buf[p] == '\r': require the LF. Returns 1 (CRLF), 0 (incomplete) or error. */
static int scan_crlf(HeadScan *s, size_t p) {
        AVAIL(s, p + 1);
        if (s->buf[p + 1] != '\n')
                return (int) fail(s->err, s->error_status, "bare CR", p);
        return 1;
}

static void scan_line_begin(HeadScan *s, size_t p, size_t max, int status, const char *reason) {
        s->line_start = p;
        s->line_max = max;
        s->line_status = status;
        s->line_reason = reason;
}

/*
 * Field lines from p up to and including the empty line. Returns the head length,
 * 0 if incomplete, or -EBADMSG. Fills headers[0..*ret_n).
 */
static ssize_t scan_fields(HeadScan *s, size_t p, HttpHeader *headers, size_t max_headers,
                           size_t *ret_n) {
        const char *buf = s->buf;
        size_t n = 0;
        int r;

        *ret_n = 0;
        for (;;) {
                scan_line_begin(s, p, s->limits->max_field_size,
                                s->error_status == 400 ? 431 : s->error_status,
                                "header field too large");
                AVAIL(s, p);
                unsigned char c = (unsigned char) buf[p];

                if (c == '\r') {
                        r = scan_crlf(s, p);
                        if (r <= 0)
                                return r;
                        *ret_n = n;
                        return (ssize_t) (p + 2);
                }
                if (c == '\n')
                        return fail(s->err, s->error_status, "bare LF", p);
                if (is_ws(c))
                        return fail(s->err, s->error_status,
                                    n == 0 ? "whitespace before first header field" : "obsolete line folding",
                                    p);
                if (n >= max_headers)
                        return fail(s->err, s->error_status == 400 ? 431 : s->error_status,
                                    "too many header fields", p);

                /* field-name */
                size_t ns = p;
                while (is_tchar(c)) {
                        p++;
                        AVAIL(s, p);
                        c = (unsigned char) buf[p];
                }
                if (c != ':') {
                        if (is_ws(c))
                                return fail(s->err, s->error_status, "whitespace before colon", p);
                        if (c == '\r' || c == '\n')
                                return fail(s->err, s->error_status, "header line without colon", p);
                        return fail(s->err, s->error_status, "invalid character in header name", p);
                }
                if (p == ns)
                        return fail(s->err, s->error_status, "empty header name", p);
                size_t nl = p - ns;
                p++;

                /* OWS field-value OWS */
                for (;;) {
                        AVAIL(s, p);
                        if (!is_ws((unsigned char) buf[p]))
                                break;
                        p++;
                }
                size_t vs = p, ve = p;
                for (;;) {
                        AVAIL(s, p);
                        c = (unsigned char) buf[p];
                        if (c == '\r')
                                break;
                        if (c == '\n')
                                return fail(s->err, s->error_status, "bare LF", p);
                        if (!is_field_char(c))
                                return fail(s->err, s->error_status, "invalid character in header value", p);
                        p++;
                        if (!is_ws(c))
                                ve = p;
                }
                r = scan_crlf(s, p);
                if (r <= 0)
                        return r;
                p += 2;

                if (headers) {
                        headers[n] = (HttpHeader) {
                                .name = buf + ns,
                                .name_len = nl,
                                .value = buf + vs,
                                .value_len = ve - vs,
                        };
                }
                n++;
        }
}

/* Match a literal byte by byte against possibly incomplete input. */
static int scan_literal(HeadScan *s, size_t *p, const char *lit, const char *reason) {
        for (; *lit; lit++) {
                AVAIL(s, *p);
                if (s->buf[*p] != *lit)
                        return (int) fail(s->err, s->error_status, reason, *p);
                (*p)++;
        }
        return 1;
}

/* "HTTP/" DIGIT "." DIGIT; returns 1 with major/minor digits, 0, or error. */
static int scan_version(HeadScan *s, size_t *p, int *ret_major, int *ret_minor) {
        int r;

        r = scan_literal(s, p, "HTTP/", "invalid HTTP version");
        if (r <= 0)
                return r;
        AVAIL(s, *p);
        if (!is_digit((unsigned char) s->buf[*p]))
                return (int) fail(s->err, s->error_status, "invalid HTTP version", *p);
        *ret_major = s->buf[*p] - '0';
        (*p)++;
        AVAIL(s, *p);
        if (s->buf[*p] != '.')
                return (int) fail(s->err, s->error_status, "invalid HTTP version", *p);
        (*p)++;
        AVAIL(s, *p);
        if (!is_digit((unsigned char) s->buf[*p]))
                return (int) fail(s->err, s->error_status, "invalid HTTP version", *p);
        *ret_minor = s->buf[*p] - '0';
        (*p)++;
        return 1;
}

static unsigned connection_flags(const HttpHeader *h) {
        const char *cur = h->value, *end = h->value + h->value_len, *tok;
        size_t tlen;
        unsigned flags = 0;

        while (list_next(&cur, end, &tok, &tlen)) {
                if (memcaseeq(tok, tlen, "close"))
                        flags |= HTTP_CONN_CLOSE;
                else if (memcaseeq(tok, tlen, "keep-alive"))
                        flags |= HTTP_CONN_KEEP_ALIVE;
                else if (memcaseeq(tok, tlen, "upgrade"))
                        flags |= HTTP_CONN_UPGRADE;
        }
        return flags;
}

typedef struct TransferCodings {
        unsigned n_fields;
        unsigned n_codings;  /* non-empty list elements over all fields */
        unsigned n_chunked;
        unsigned n_unknown;
        bool chunked_last;   /* the last coding seen is chunked */
        bool bad_syntax;
} TransferCodings;

/* transfer-coding = token *( OWS ";" OWS transfer-parameter ); chunked takes none. */
static void transfer_codings_add(TransferCodings *tc, const HttpHeader *h) {
        const char *cur = h->value, *end = h->value + h->value_len, *el;
        size_t elen;

        tc->n_fields++;
        while (list_next(&cur, end, &el, &elen)) {
                if (elen == 0)
                        continue;
                size_t i = 0;
                while (i < elen && is_tchar((unsigned char) el[i]))
                        i++;
                if (i == 0 || (i < elen && !is_ws((unsigned char) el[i]) && el[i] != ';')) {
                        tc->bad_syntax = true;
                        continue;
                }
                tc->n_codings++;
                if (i == elen && memcaseeq(el, elen, "chunked")) {
                        tc->n_chunked++;
                        tc->chunked_last = true;
                } else {
                        tc->n_unknown++;
                        tc->chunked_last = false;
                }
        }
}

/* ------------------------------------------------------------------------- */
/* Requests */

ssize_t http1_parse_request(const char *buf, size_t len, const HttpLimits *limits,
                            HttpRequest *req, HttpHeader *headers, size_t max_headers,
                            HttpError *err) {
        HttpError dummy;
        HeadScan s = {
                .buf = buf,
                .len = len,
                .limits = limits,
                .err = err ?: &dummy,
                .error_status = 400,
        };
        size_t p = 0;
        ssize_t r;
        int major, minor;

        if ((!buf && len > 0) || !limits || !req)
                return -EINVAL;
        err = s.err;
        *err = (HttpError) {};

        /* RFC 9112 2.2: ignore empty lines before the request-line. */
        for (;;) {
                scan_line_begin(&s, p, limits->max_request_line, 414, "request line too long");
                AVAIL(&s, p);
                if (buf[p] == '\n')
                        return fail(err, 400, "bare LF", p);
                if (buf[p] != '\r')
                        break;
                r = scan_crlf(&s, p);
                if (r <= 0)
                        return r;
                p += 2;
        }

        /* method SP */
        size_t ms = p;
        scan_line_begin(&s, ms, limits->max_request_line, 414, "request line too long");
        for (;;) {
                AVAIL(&s, p);
                if (!is_tchar((unsigned char) buf[p]))
                        break;
                p++;
        }
        if (p == ms || buf[p] != ' ')
                return fail(err, 400, "invalid method", p);
        size_t mlen = p - ms;
        HttpMethod mid = http1_method_id(buf + ms, mlen);
        p++;

        /* request-target SP */
        size_t ts = p;
        for (;;) {
                AVAIL(&s, p);
                if (!is_target_char((unsigned char) buf[p]))
                        break;
                p++;
        }
        if (buf[p] != ' ') {
                if (buf[p] == '\r' || buf[p] == '\n')
                        return fail(err, 400, "missing HTTP version", p);
                return fail(err, 400, "invalid character in request target", p);
        }
        if (p == ts)
                return fail(err, 400, "empty request target", p);
        size_t tlen = p - ts;
        if (!target_is_valid(buf + ts, tlen, mid))
                return fail(err, 400, "invalid request target", ts);
        p++;

        /* HTTP-version CRLF */
        size_t vs = p;
        r = scan_version(&s, &p, &major, &minor);
        if (r <= 0)
                return r;
        AVAIL(&s, p);
        if (buf[p] != '\r')
                return fail(err, 400, "invalid HTTP version", p);
        r = scan_crlf(&s, p);
        if (r <= 0)
                return r;
        if (major != 1)
                return fail(err, 505, "HTTP version not supported", vs);
        p += 2;

        size_t cap = MIN(limits->max_headers, headers ? max_headers : 0);
        size_t n = 0;
        ssize_t head_len = scan_fields(&s, p, headers, cap, &n);
        if (head_len <= 0)
                return head_len;

        *req = (HttpRequest) {
                .method = buf + ms,
                .method_len = mlen,
                .method_id = mid,
                .target = buf + ts,
                .target_len = tlen,
                .version_minor = minor == 0 ? 0 : 1,
                .headers = headers,
                .n_headers = n,
                .body = HTTP_BODY_NONE,
                .host_index = -1,
                .upgrade_index = -1,
        };

        TransferCodings tc = {};
        unsigned n_cl = 0;
        bool bad_expect = false;
        size_t te_off = 0, expect_off = 0;

        for (size_t i = 0; i < n; i++) {
                const HttpHeader *h = &headers[i];
                size_t off = (size_t) (h->name - buf);

                switch (h->name_len) {
                case 4:
                        if (memcaseeq(h->name, h->name_len, "host")) {
                                if (req->host_index >= 0)
                                        return fail(err, 400, "duplicate Host", off);
                                if (!host_is_valid(h->value, h->value_len, false))
                                        return fail(err, 400, "invalid Host", off);
                                req->host_index = (int) i;
                        }
                        break;
                case 6:
                        if (memcaseeq(h->name, h->name_len, "expect")) {
                                if (memcaseeq(h->value, h->value_len, "100-continue"))
                                        req->expect_continue = req->version_minor >= 1;
                                else if (!bad_expect) {
                                        bad_expect = true;
                                        expect_off = off;
                                }
                        }
                        break;
                case 7:
                        if (memcaseeq(h->name, h->name_len, "upgrade") && req->upgrade_index < 0)
                                req->upgrade_index = (int) i;
                        break;
                case 10:
                        if (memcaseeq(h->name, h->name_len, "connection"))
                                req->connection |= connection_flags(h);
                        break;
                case 14:
                        if (memcaseeq(h->name, h->name_len, "content-length")) {
                                if (++n_cl > 1)
                                        return fail(err, 400, "duplicate Content-Length", off);
                                if (!parse_content_length(h->value, h->value_len, &req->content_length))
                                        return fail(err, 400, "invalid Content-Length", off);
                        }
                        break;
                case 17:
                        if (memcaseeq(h->name, h->name_len, "transfer-encoding")) {
                                if (tc.n_fields == 0)
                                        te_off = off;
                                transfer_codings_add(&tc, h);
                        }
                        break;
                default:
                        break;
                }
        }

        if (req->version_minor >= 1 && req->host_index < 0)
                return fail(err, 400, "missing Host", 0);

        if (tc.n_fields > 0) {
                if (req->version_minor == 0)
                        return fail(err, 400, "Transfer-Encoding in HTTP/1.0 request", te_off);
                if (n_cl > 0)
                        return fail(err, 400, "Content-Length with Transfer-Encoding", te_off);
                if (tc.bad_syntax || tc.n_codings == 0)
                        return fail(err, 400, "invalid Transfer-Encoding", te_off);
                if (tc.n_chunked > 1)
                        return fail(err, 400, "duplicate chunked", te_off);
                if (tc.n_chunked == 1 && !tc.chunked_last)
                        return fail(err, 400, "chunked is not the final coding", te_off);
                if (tc.n_unknown > 0)
                        return fail(err, 501, "unsupported transfer coding", te_off);
                req->body = HTTP_BODY_CHUNKED;
        } else if (n_cl > 0)
                req->body = HTTP_BODY_LENGTH;

        if (bad_expect)
                return fail(err, 417, "unsupported expectation", expect_off);

        if (req->version_minor >= 1)
                req->keep_alive = !(req->connection & HTTP_CONN_CLOSE);
        else
                req->keep_alive = (req->connection & HTTP_CONN_KEEP_ALIVE) &&
                                  !(req->connection & HTTP_CONN_CLOSE);

        return head_len;
}

/* ------------------------------------------------------------------------- */
/* Responses */

/* Content-Length in a response: every field and list element must carry the same
 * valid value (RFC 9110 8.6 lets a recipient collapse identical duplicates). */
static bool response_content_length(const HttpHeader *h, bool *seen, uint64_t *value) {
        const char *cur = h->value, *end = h->value + h->value_len, *el;
        size_t elen;

        while (list_next(&cur, end, &el, &elen)) {
                uint64_t v;

                if (!parse_content_length(el, elen, &v))
                        return false;
                if (*seen && v != *value)
                        return false;
                *seen = true;
                *value = v;
        }
        return true;
}

ssize_t http1_parse_response(const char *buf, size_t len, const HttpLimits *limits,
                             HttpMethod request_method, HttpResponse *resp,
                             HttpHeader *headers, size_t max_headers, HttpError *err) {
        HttpError dummy;
        HeadScan s = {
                .buf = buf,
                .len = len,
                .limits = limits,
                .err = err ?: &dummy,
                .error_status = 502,
        };
        size_t p = 0;
        ssize_t r;
        int major, minor;

        if ((!buf && len > 0) || !limits || !resp)
                return -EINVAL;
        err = s.err;
        *err = (HttpError) {};

        /* HTTP-version SP status-code [ SP reason-phrase ] CRLF */
        scan_line_begin(&s, 0, limits->max_request_line, 502, "status line too long");
        r = scan_version(&s, &p, &major, &minor);
        if (r <= 0)
                return r;
        AVAIL(&s, p);
        if (buf[p] != ' ')
                return fail(err, 502, "invalid status line", p);
        p++;
        int status = 0;
        for (int i = 0; i < 3; i++) {
                AVAIL(&s, p);
                if (!is_digit((unsigned char) buf[p]))
                        return fail(err, 502, "invalid status code", p);
                status = status * 10 + (buf[p] - '0');
                p++;
        }
        if (status < 100)
                return fail(err, 502, "invalid status code", p - 3);
        AVAIL(&s, p);
        size_t rs = p, re = p;
        if (buf[p] == ' ') {
                p++;
                rs = re = p;
                for (;;) {
                        AVAIL(&s, p);
                        unsigned char c = (unsigned char) buf[p];
                        if (c == '\r')
                                break;
                        if (!is_field_char(c))
                                return fail(err, 502, "invalid character in reason phrase", p);
                        p++;
                }
                re = p;
        } else if (buf[p] != '\r')
                return fail(err, 502, "invalid status line", p);
        r = scan_crlf(&s, p);
        if (r <= 0)
                return r;
        if (major != 1)
                return fail(err, 502, "HTTP version not supported", 0);
        p += 2;

        size_t cap = MIN(limits->max_headers, headers ? max_headers : 0);
        size_t n = 0;
        ssize_t head_len = scan_fields(&s, p, headers, cap, &n);
        if (head_len <= 0)
                return head_len;

        *resp = (HttpResponse) {
                .version_minor = minor == 0 ? 0 : 1,
                .status = status,
                .reason = buf + rs,
                .reason_len = re - rs,
                .headers = headers,
                .n_headers = n,
        };

        TransferCodings tc = {};
        bool have_cl = false;
        uint64_t cl = 0;

        for (size_t i = 0; i < n; i++) {
                const HttpHeader *h = &headers[i];
                size_t off = (size_t) (h->name - buf);

                if (memcaseeq(h->name, h->name_len, "content-length")) {
                        if (!response_content_length(h, &have_cl, &cl))
                                return fail(err, 502, "invalid Content-Length", off);
                } else if (memcaseeq(h->name, h->name_len, "transfer-encoding"))
                        transfer_codings_add(&tc, h);
                else if (memcaseeq(h->name, h->name_len, "connection"))
                        resp->connection |= connection_flags(h);
        }

        if (tc.n_fields > 0) {
                if (have_cl)
                        return fail(err, 502, "Content-Length with Transfer-Encoding", 0);
                if (tc.bad_syntax || tc.n_codings != 1 || tc.n_chunked != 1)
                        return fail(err, 502, "unsupported Transfer-Encoding", 0);
        }

        if (resp->version_minor >= 1)
                resp->keep_alive = !(resp->connection & HTTP_CONN_CLOSE);
        else
                resp->keep_alive = (resp->connection & HTTP_CONN_KEEP_ALIVE) &&
                                   !(resp->connection & HTTP_CONN_CLOSE);

        /* RFC 9112 6.3 */
        if (request_method == HTTP_METHOD_HEAD || (status >= 100 && status < 200) || status == 204 ||
            status == 304)
                resp->body = HTTP_BODY_NONE;
        else if (request_method == HTTP_METHOD_CONNECT && status >= 200 && status < 300) {
                resp->body = HTTP_BODY_NONE;
                resp->keep_alive = false; /* the connection becomes a tunnel */
        } else if (tc.n_fields > 0) {
                resp->body = HTTP_BODY_CHUNKED;
                if (resp->version_minor == 0)
                        resp->keep_alive = false;
        } else if (have_cl) {
                resp->body = HTTP_BODY_LENGTH;
                resp->content_length = cl;
        } else {
                resp->body = HTTP_BODY_UNTIL_CLOSE;
                resp->keep_alive = false;
        }
        if (status == 101)
                resp->keep_alive = false;

        return head_len;
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
        static const struct {
                const char *name;
                HttpMethod id;
        } table[] = {
                { "GET", HTTP_METHOD_GET },         { "HEAD", HTTP_METHOD_HEAD },
                { "POST", HTTP_METHOD_POST },       { "PUT", HTTP_METHOD_PUT },
                { "DELETE", HTTP_METHOD_DELETE },   { "OPTIONS", HTTP_METHOD_OPTIONS },
                { "CONNECT", HTTP_METHOD_CONNECT }, { "TRACE", HTTP_METHOD_TRACE },
                { "PATCH", HTTP_METHOD_PATCH },
        };

        if (!m)
                return HTTP_METHOD_OTHER;
        /* Methods are case-sensitive (RFC 9110 9.1). */
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (memeq(m, len, table[i].name))
                        return table[i].id;
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

/* ------------------------------------------------------------------------- */
/* Chunked transfer coding (RFC 9112 7.1) */

enum {
        CH_SIZE_START,    /* first hex digit of chunk-size */
        CH_SIZE,          /* more hex digits, ';', BWS or CR */
        CH_BWS_SEMI,      /* BWS seen: more BWS or ';' */
        CH_EXT_START,     /* after ';': BWS or the first tchar of chunk-ext-name */
        CH_EXT_NAME,
        CH_EXT_NAME_BWS,  /* BWS after the name: more BWS, '=' or ';' */
        CH_EXT_VAL_START, /* after '=': BWS, token or quoted-string */
        CH_EXT_VAL_TOKEN,
        CH_EXT_VAL_QUOTED,
        CH_EXT_VAL_ESCAPE,
        CH_EXT_VAL_END,   /* after the closing quote: BWS, ';' or CR */
        CH_SIZE_LF,
        CH_DATA,
        CH_DATA_CR,
        CH_DATA_LF,
        CH_TRAILER_START, /* start of a trailer line or of the final CRLF */
        CH_TRAILER_NAME,
        CH_TRAILER_VALUE,
        CH_TRAILER_LF,
        CH_FINAL_LF,
        CH_DONE,
        CH_FAILED,
};

#define CHUNK_SIZE_MAX_DIGITS 15

void chunked_decoder_init(ChunkedDecoder *d, uint64_t max_overhead) {
        *d = (ChunkedDecoder) {
                .state = CH_SIZE_START,
                .max_overhead = max_overhead,
        };
}

/* One framing byte. Returns 0 or -EBADMSG. */
static int chunked_step(ChunkedDecoder *d, unsigned char c) {
        int h;

        switch (d->state) {
        case CH_SIZE_START:
        case CH_SIZE:
                h = hex_value(c);
                if (h >= 0) {
                        if (d->line_len >= CHUNK_SIZE_MAX_DIGITS)
                                return -EBADMSG;
                        d->remaining = (d->remaining << 4) | (uint64_t) h;
                        d->state = CH_SIZE;
                        return 0;
                }
                if (d->state == CH_SIZE_START)
                        return -EBADMSG;
                if (c == '\r')
                        d->state = CH_SIZE_LF;
                else if (c == ';')
                        d->state = CH_EXT_START;
                else if (is_ws(c))
                        d->state = CH_BWS_SEMI;
                else
                        return -EBADMSG;
                return 0;

        case CH_BWS_SEMI:
                if (c == ';')
                        d->state = CH_EXT_START;
                else if (!is_ws(c))
                        return -EBADMSG;
                return 0;

        case CH_EXT_START:
                if (is_tchar(c))
                        d->state = CH_EXT_NAME;
                else if (!is_ws(c))
                        return -EBADMSG;
                return 0;

        case CH_EXT_NAME:
                if (is_tchar(c))
                        return 0;
                if (c == '=')
                        d->state = CH_EXT_VAL_START;
                else if (c == ';')
                        d->state = CH_EXT_START;
                else if (c == '\r')
                        d->state = CH_SIZE_LF;
                else if (is_ws(c))
                        d->state = CH_EXT_NAME_BWS;
                else
                        return -EBADMSG;
                return 0;

        case CH_EXT_NAME_BWS:
                if (c == '=')
                        d->state = CH_EXT_VAL_START;
                else if (c == ';')
                        d->state = CH_EXT_START;
                else if (!is_ws(c))
                        return -EBADMSG;
                return 0;

        case CH_EXT_VAL_START:
                if (c == '"')
                        d->state = CH_EXT_VAL_QUOTED;
                else if (is_tchar(c))
                        d->state = CH_EXT_VAL_TOKEN;
                else if (!is_ws(c))
                        return -EBADMSG;
                return 0;

        case CH_EXT_VAL_TOKEN:
                if (is_tchar(c))
                        return 0;
                if (c == ';')
                        d->state = CH_EXT_START;
                else if (c == '\r')
                        d->state = CH_SIZE_LF;
                else if (is_ws(c))
                        d->state = CH_BWS_SEMI;
                else
                        return -EBADMSG;
                return 0;

        case CH_EXT_VAL_QUOTED:
                /* qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text */
                if (c == '"')
                        d->state = CH_EXT_VAL_END;
                else if (c == '\\')
                        d->state = CH_EXT_VAL_ESCAPE;
                else if (!is_field_char(c))
                        return -EBADMSG;
                return 0;

        case CH_EXT_VAL_ESCAPE:
                if (!is_field_char(c))
                        return -EBADMSG;
                d->state = CH_EXT_VAL_QUOTED;
                return 0;

        case CH_EXT_VAL_END:
                if (c == ';')
                        d->state = CH_EXT_START;
                else if (c == '\r')
                        d->state = CH_SIZE_LF;
                else if (is_ws(c))
                        d->state = CH_BWS_SEMI;
                else
                        return -EBADMSG;
                return 0;

        case CH_SIZE_LF:
                if (c != '\n')
                        return -EBADMSG;
                d->line_len = 0;
                d->state = d->remaining > 0 ? CH_DATA : CH_TRAILER_START;
                return 0;

        case CH_DATA_CR:
                if (c != '\r')
                        return -EBADMSG;
                d->state = CH_DATA_LF;
                return 0;

        case CH_DATA_LF:
                if (c != '\n')
                        return -EBADMSG;
                d->line_len = 0;
                d->state = CH_SIZE_START;
                return 0;

        case CH_TRAILER_START:
                if (c == '\r')
                        d->state = CH_FINAL_LF;
                else if (is_tchar(c))
                        d->state = CH_TRAILER_NAME;
                else
                        return -EBADMSG; /* obs-fold, empty name, bare LF, junk */
                return 0;

        case CH_TRAILER_NAME:
                if (c == ':')
                        d->state = CH_TRAILER_VALUE;
                else if (!is_tchar(c))
                        return -EBADMSG;
                return 0;

        case CH_TRAILER_VALUE:
                if (c == '\r')
                        d->state = CH_TRAILER_LF;
                else if (!is_field_char(c))
                        return -EBADMSG;
                return 0;

        case CH_TRAILER_LF:
                if (c != '\n')
                        return -EBADMSG;
                d->line_len = 0;
                d->state = CH_TRAILER_START;
                return 0;

        case CH_FINAL_LF:
                if (c != '\n')
                        return -EBADMSG;
                d->state = CH_DONE;
                d->done = true;
                return 0;

        default:
                return -EBADMSG;
        }
}

ssize_t chunked_decode(ChunkedDecoder *d, const char *in, size_t len,
                       size_t *ret_data_off, size_t *ret_data_len) {
        size_t i = 0;

        if (ret_data_off)
                *ret_data_off = 0;
        if (ret_data_len)
                *ret_data_len = 0;
        if (!d || (!in && len > 0))
                return -EINVAL;
        if (d->state == CH_FAILED)
                return -EBADMSG;

        while (i < len && !d->done) {
                if (d->state == CH_DATA) {
                        uint64_t n = MIN((uint64_t) (len - i), d->remaining);

                        if (ret_data_off)
                                *ret_data_off = i;
                        if (ret_data_len)
                                *ret_data_len = (size_t) n;
                        d->remaining -= n;
                        d->data += n;
                        if (d->remaining == 0)
                                d->state = CH_DATA_CR;
                        return (ssize_t) (i + n);
                }

                /* Every byte that is not chunk data counts as overhead. Past the cap, framing
                 * may not outweigh the data it carries (so long streams of small chunks pass,
                 * while a body of nothing but chunk lines and extensions is cut off). */
                if (++d->overhead > d->max_overhead && d->overhead > d->data) {
                        d->state = CH_FAILED;
                        return -EBADMSG;
                }
                if (chunked_step(d, (unsigned char) in[i]) < 0) {
                        d->state = CH_FAILED;
                        return -EBADMSG;
                }
                d->line_len++;
                if (d->state == CH_DATA || d->state == CH_SIZE_START || d->state == CH_TRAILER_START)
                        d->line_len = 0;
                i++;
        }
        return (ssize_t) i;
}
