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
 * Speed: at the start of every line the scanner computes the first offset at
 * which any limit (line, head) or the end of the input could matter. Below it a
 * byte needs no bounds or limit check, so runs of ordinary bytes (field names,
 * field values, the request-target, the reason phrase) are skipped sixteen bytes
 * at a time with SSE2, else eight at a time in a 64-bit word, and the last few
 * through a 256-entry class table. Only the byte that ends a run goes through the
 * full check, which therefore decides exactly as a byte-by-byte scan would, with
 * the same status, reason and offset. Framing fields are recognised by length and
 * first byte before any compare, with no strlen() or strncasecmp() per field.
 *
 * There is no state between calls (the API has none), so a head that arrives in
 * pieces is scanned again from its start on each call; at one to two instructions
 * per ordinary byte that costs less than the read that brought the new piece.
 *
 * Nothing here allocates, logs or reads outside buf[0..len).
 */

#include "http1-chars.h"

/* Content-Length value: 1*DIGIT, at most INT64_MAX. */
static bool parse_content_length(const char *s, size_t n, uint64_t *ret) {
        uint64_t v = 0;

        if (n == 0)
                return false;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];
                if (!is_digit(c))
                        return false;
                /* 18 digits cannot overflow; from the 19th on, check. */
                if (i >= 18 && v > ((uint64_t) INT64_MAX - (uint64_t) (c - '0')) / 10)
                        return false;
                v = v * 10 + (uint64_t) (c - '0');
        }
        *ret = v;
        return true;
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
                        else if (!has_class(c, C_HEX) && c != '.')
                                return false;
                }
                if (i >= n || !colon || i < 3)
                        return false;
                i++; /* ']' */
        } else {
                for (; i < n; i++) {
                        i = skip_class(s, i, n, C_HOST);
                        if (i == n)
                                break;
                        unsigned char c = (unsigned char) s[i];
                        if (c == ':')
                                break;
                        if (c != '%' || i + 2 >= n || !has_class((unsigned char) s[i + 1], C_HEX) ||
                            !has_class((unsigned char) s[i + 2], C_HEX))
                                return false;
                        i += 2;
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

        /* Bytes before this offset are in the input, below max_head_size and within the
         * current line's limit: they may be examined without scan_avail(). */
        size_t fast_end;
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

/* scan_avail() for the rare byte at or beyond fast_end; below it the answer is 1. */
#define AVAIL(s, p)                                              \
        do {                                                     \
                if ((p) >= (s)->fast_end) {                      \
                        int _r_ = scan_avail((s), (p));          \
                        if (_r_ <= 0)                            \
                                return _r_;                      \
                }                                                \
        } while (0)

/* At buf[p] == '\r': require the LF. Returns 1 (CRLF), 0 (incomplete) or error. */
static inline int scan_crlf(HeadScan *s, size_t p) {
        AVAIL(s, p + 1);
        if (s->buf[p + 1] != '\n')
                return (int) fail(s->err, s->error_status, "bare CR", p);
        return 1;
}

/* Sets the limit for the lines that follow; scan_line_start() then starts each one. */
static inline void scan_line_limit(HeadScan *s, size_t max, int status, const char *reason) {
        s->line_max = max;
        s->line_status = status;
        s->line_reason = reason;
}

static inline void scan_line_start(HeadScan *s, size_t p) {
        size_t end = MIN(s->len, s->limits->max_head_size);

        s->line_start = p;
        /* p <= len always; the line limit ends at p + max unless that is beyond the input. */
        if (p <= end && s->line_max < end - p)
                end = p + s->line_max;
        s->fast_end = end;
}

static inline void scan_line_begin(HeadScan *s, size_t p, size_t max, int status, const char *reason) {
        scan_line_limit(s, max, status, reason);
        scan_line_start(s, p);
}

/* AVAIL() against a fast_end kept in a local, which stores through headers cannot alias. */
#define AVAIL_BELOW(s, p, fe)                                    \
        do {                                                     \
                if ((p) >= (fe)) {                               \
                        int _r_ = scan_avail((s), (p));          \
                        if (_r_ <= 0)                            \
                                return _r_;                      \
                }                                                \
        } while (0)

/*
 * Field lines from p up to and including the empty line. Returns the head length,
 * 0 if incomplete, or -EBADMSG. Fills headers[0..*ret_n).
 */
static ssize_t scan_fields(HeadScan *s, size_t p, HttpHeader *headers, size_t max_headers,
                           size_t *ret_n) {
        const char *buf = s->buf;
        const int too_large = s->error_status == 400 ? 431 : s->error_status;
        size_t n = 0;
        int r;

        *ret_n = 0;
        scan_line_limit(s, s->limits->max_field_size, too_large, "header field too large");
        for (;; n++) {
                scan_line_start(s, p);
                const size_t fe = s->fast_end;
                unsigned char c;

                /* field-name, then what ends it */
                size_t ns = p;
                p = skip_name(buf, p, fe);
                if (p > ns && n >= max_headers)
                        return fail(s->err, too_large, "too many header fields", ns);
                AVAIL_BELOW(s, p, fe);
                c = (unsigned char) buf[p];
                if (_unlikely_(c != ':' || p == ns)) {
                        if (p == ns) {
                                /* Not a field line: the end of the head, or junk. */
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
                                                    n == 0 ? "whitespace before first header field"
                                                           : "obsolete line folding",
                                                    p);
                                if (n >= max_headers)
                                        return fail(s->err, too_large, "too many header fields", p);
                                if (c == ':')
                                        return fail(s->err, s->error_status, "empty header name", p);
                        }
                        if (is_ws(c))
                                return fail(s->err, s->error_status, "whitespace before colon", p);
                        if (c == '\r' || c == '\n')
                                return fail(s->err, s->error_status, "header line without colon", p);
                        return fail(s->err, s->error_status, "invalid character in header name", p);
                }
                size_t nl = p - ns;
                p++;

                /* OWS field-value OWS */
                for (;;) {
                        AVAIL_BELOW(s, p, fe);
                        if (!is_ws((unsigned char) buf[p]))
                                break;
                        p++;
                }
                size_t vs = p;
                for (;;) {
                        p = skip_value(buf, p, fe);
                        AVAIL_BELOW(s, p, fe);
                        c = (unsigned char) buf[p];
                        if (c != '\t')
                                break;
                        p++;
                }
                if (_unlikely_(c != '\r')) {
                        if (c == '\n')
                                return fail(s->err, s->error_status, "bare LF", p);
                        return fail(s->err, s->error_status, "invalid character in header value", p);
                }
                size_t ve = p;
                while (ve > vs && is_ws((unsigned char) buf[ve - 1]))
                        ve--;
                AVAIL_BELOW(s, p + 1, fe);
                if (buf[p + 1] != '\n')
                        return fail(s->err, s->error_status, "bare CR", p);
                p += 2;

                headers[n] = (HttpHeader) {
                        .name = buf + ns,
                        .name_len = nl,
                        .value = buf + vs,
                        .value_len = ve - vs,
                };
        }
}

/* "HTTP/" DIGIT "." DIGIT, byte by byte: incomplete, at a limit, or malformed. */
static int scan_version_slow(HeadScan *s, size_t *p, int *ret_major, int *ret_minor) {
        static const char lit[] = "HTTP/";
        const char *buf = s->buf;
        size_t q = *p;

        for (size_t i = 0; i < 5; i++, q++) {
                AVAIL(s, q);
                if (buf[q] != lit[i])
                        return (int) fail(s->err, s->error_status, "invalid HTTP version", q);
        }
        AVAIL(s, q);
        if (!is_digit((unsigned char) buf[q]))
                return (int) fail(s->err, s->error_status, "invalid HTTP version", q);
        *ret_major = buf[q] - '0';
        q++;
        AVAIL(s, q);
        if (buf[q] != '.')
                return (int) fail(s->err, s->error_status, "invalid HTTP version", q);
        q++;
        AVAIL(s, q);
        if (!is_digit((unsigned char) buf[q]))
                return (int) fail(s->err, s->error_status, "invalid HTTP version", q);
        *ret_minor = buf[q] - '0';
        *p = q + 1;
        return 1;
}

/* "HTTP/" DIGIT "." DIGIT; returns 1 with major/minor digits, 0, or error. */
static inline int scan_version(HeadScan *s, size_t *p, int *ret_major, int *ret_minor) {
        const char *buf = s->buf;
        size_t q = *p;

        if (q + 8 <= s->fast_end && memcmp(buf + q, "HTTP/", 5) == 0 &&
            is_digit((unsigned char) buf[q + 5]) && buf[q + 6] == '.' &&
            is_digit((unsigned char) buf[q + 7])) {
                *ret_major = buf[q + 5] - '0';
                *ret_minor = buf[q + 7] - '0';
                *p = q + 8;
                return 1;
        }
        return scan_version_slow(s, p, ret_major, ret_minor);
}

/* HTTP_CONN_* flag of one Connection option, 0 for any other. */
static unsigned connection_option(const char *tok, size_t tlen) {
        switch (tlen) {
        case 5:
                return EQ_LOWER(tok, tlen, "close") ? HTTP_CONN_CLOSE : 0;
        case 7:
                return EQ_LOWER(tok, tlen, "upgrade") ? HTTP_CONN_UPGRADE : 0;
        case 10:
                return EQ_LOWER(tok, tlen, "keep-alive") ? HTTP_CONN_KEEP_ALIVE : 0;
        default:
                return 0;
        }
}

static unsigned connection_flags(const HttpHeader *h) {
        const char *cur = h->value, *end = h->value + h->value_len, *tok;
        size_t tlen;
        unsigned flags;

        /* The usual single option: the whole (already trimmed) value, which has no comma. */
        flags = connection_option(h->value, h->value_len);
        if (flags)
                return flags;

        while (list_next(&cur, end, &tok, &tlen))
                flags |= connection_option(tok, tlen);
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
                if (i == elen && EQ_LOWER(el, elen, "chunked")) {
                        tc->n_chunked++;
                        tc->chunked_last = true;
                } else {
                        tc->n_unknown++;
                        tc->chunked_last = false;
                }
        }
}

/* The fields whose meaning the parser derives. Names are tchar-validated, so the
 * first byte | 0x20 is a lowercase letter only for that letter in either case.
 * Inlined into both semantic loops: a call per field costs as much as the test. */
typedef enum FieldId {
        FIELD_OTHER,
        FIELD_HOST,
        FIELD_EXPECT,
        FIELD_UPGRADE,
        FIELD_CONNECTION,
        FIELD_CONTENT_LENGTH,
        FIELD_TRANSFER_ENCODING,
} FieldId;

static _always_inline_ FieldId field_id(const char *name, size_t len) {
        unsigned char c0 = (unsigned char) name[0] | 0x20;

        switch (len) {
        case 4:
                if (c0 == 'h' && EQ_LOWER(name, len, "host"))
                        return FIELD_HOST;
                break;
        case 6:
                if (c0 == 'e' && EQ_LOWER(name, len, "expect"))
                        return FIELD_EXPECT;
                break;
        case 7:
                if (c0 == 'u' && EQ_LOWER(name, len, "upgrade"))
                        return FIELD_UPGRADE;
                break;
        case 10:
                if (c0 == 'c' && EQ_LOWER(name, len, "connection"))
                        return FIELD_CONNECTION;
                break;
        case 14:
                if (c0 == 'c' && EQ_LOWER(name, len, "content-length"))
                        return FIELD_CONTENT_LENGTH;
                break;
        case 17:
                if (c0 == 't' && EQ_LOWER(name, len, "transfer-encoding"))
                        return FIELD_TRANSFER_ENCODING;
                break;
        default:
                break;
        }
        return FIELD_OTHER;
}

/* ------------------------------------------------------------------------- */
/* Requests */

/* The request-line as scan_request_line() finds it: offsets into the buffer. */
typedef struct RequestLine {
        size_t method_off, method_len;
        HttpMethod method_id;
        size_t target_off, target_len;
        int minor;
} RequestLine;

/*
 * RFC 9112 3: request-line = method SP request-target SP HTTP-version CRLF, after any
 * empty lines (2.2). Returns the offset after its CRLF, 0 if incomplete, or -EBADMSG.
 * The parts of http1_parse_request() are forced inline: they are one hot path, split
 * only to be read.
 */
static _always_inline_ ssize_t scan_request_line(HeadScan *s, RequestLine *rl) {
        const char *buf = s->buf;
        HttpError *err = s->err;
        size_t p = 0;
        ssize_t r;
        int major, minor;

        /* RFC 9112 2.2: ignore empty lines before the request-line. */
        for (;;) {
                scan_line_begin(s, p, s->limits->max_request_line, 414, "request line too long");
                AVAIL(s, p);
                if (buf[p] == '\n')
                        return fail(err, 400, "bare LF", p);
                if (buf[p] != '\r')
                        break;
                r = scan_crlf(s, p);
                if (r <= 0)
                        return r;
                p += 2;
        }

        /* method SP */
        size_t ms = p;
        p = skip_name(buf, p, s->fast_end);
        AVAIL(s, p);
        if (p == ms || buf[p] != ' ')
                return fail(err, 400, "invalid method", p);
        rl->method_off = ms;
        rl->method_len = p - ms;
        rl->method_id = http1_method_id(buf + ms, rl->method_len);
        p++;

        /* request-target SP */
        size_t ts = p;
        p = skip_target(buf, p, s->fast_end);
        AVAIL(s, p);
        if (buf[p] != ' ') {
                if (buf[p] == '\r' || buf[p] == '\n')
                        return fail(err, 400, "missing HTTP version", p);
                return fail(err, 400, "invalid character in request target", p);
        }
        if (p == ts)
                return fail(err, 400, "empty request target", p);
        rl->target_off = ts;
        rl->target_len = p - ts;
        if (!target_is_valid(buf + ts, rl->target_len, rl->method_id))
                return fail(err, 400, "invalid request target", ts);
        p++;

        /* HTTP-version CRLF */
        size_t vs = p;
        r = scan_version(s, &p, &major, &minor);
        if (r <= 0)
                return r;
        AVAIL(s, p);
        if (buf[p] != '\r')
                return fail(err, 400, "invalid HTTP version", p);
        r = scan_crlf(s, p);
        if (r <= 0)
                return r;
        if (major != 1)
                return fail(err, 505, "HTTP version not supported", vs);
        rl->minor = minor;
        return (ssize_t) (p + 2);
}

/* What the pass over the fields gathers for the checks after it. */
typedef struct RequestFields {
        TransferCodings tc;
        unsigned n_cl;
        bool bad_expect;
        size_t te_off, expect_off;
} RequestFields;

/* The fields whose meaning the parser derives, one by one: Host, Expect, Upgrade,
 * Connection, Content-Length, Transfer-Encoding. Returns 0 or -EBADMSG. */
static _always_inline_ ssize_t request_fields(const char *buf, HttpRequest *req, RequestFields *f,
                                              HttpError *err) {
        const HttpHeader *headers = req->headers;

        for (size_t i = 0; i < req->n_headers; i++) {
                const HttpHeader *h = &headers[i];
                size_t off = (size_t) (h->name - buf);

                switch (field_id(h->name, h->name_len)) {
                case FIELD_HOST:
                        if (req->host_index >= 0)
                                return fail(err, 400, "duplicate Host", off);
                        if (!host_is_valid(h->value, h->value_len, false))
                                return fail(err, 400, "invalid Host", off);
                        req->host_index = (int) i;
                        break;
                case FIELD_EXPECT:
                        if (EQ_LOWER(h->value, h->value_len, "100-continue"))
                                req->expect_continue = req->version_minor >= 1;
                        else if (!f->bad_expect) {
                                f->bad_expect = true;
                                f->expect_off = off;
                        }
                        break;
                case FIELD_UPGRADE:
                        if (req->upgrade_index < 0)
                                req->upgrade_index = (int) i;
                        break;
                case FIELD_CONNECTION:
                        req->connection |= connection_flags(h);
                        break;
                case FIELD_CONTENT_LENGTH:
                        if (++f->n_cl > 1)
                                return fail(err, 400, "duplicate Content-Length", off);
                        if (!parse_content_length(h->value, h->value_len, &req->content_length))
                                return fail(err, 400, "invalid Content-Length", off);
                        break;
                case FIELD_TRANSFER_ENCODING:
                        if (f->tc.n_fields == 0)
                                f->te_off = off;
                        transfer_codings_add(&f->tc, h);
                        break;
                case FIELD_OTHER:
                        break;
                }
        }
        return 0;
}

/* RFC 9112 6.1-6.3 and 9.3, RFC 9110 10.1.1: Host, the body framing, the expectation and
 * keep-alive, from what request_fields() found. Returns 0 or -EBADMSG. */
static _always_inline_ ssize_t request_semantics(HttpRequest *req, const RequestFields *f,
                                                 HttpError *err) {
        const TransferCodings *tc = &f->tc;

        if (req->version_minor >= 1 && req->host_index < 0)
                return fail(err, 400, "missing Host", 0);

        if (tc->n_fields > 0) {
                if (req->version_minor == 0)
                        return fail(err, 400, "Transfer-Encoding in HTTP/1.0 request", f->te_off);
                if (f->n_cl > 0)
                        return fail(err, 400, "Content-Length with Transfer-Encoding", f->te_off);
                if (tc->bad_syntax || tc->n_codings == 0)
                        return fail(err, 400, "invalid Transfer-Encoding", f->te_off);
                if (tc->n_chunked > 1)
                        return fail(err, 400, "duplicate chunked", f->te_off);
                if (tc->n_chunked == 1 && !tc->chunked_last)
                        return fail(err, 400, "chunked is not the final coding", f->te_off);
                if (tc->n_unknown > 0)
                        return fail(err, 501, "unsupported transfer coding", f->te_off);
                req->body = HTTP_BODY_CHUNKED;
        } else if (f->n_cl > 0)
                req->body = HTTP_BODY_LENGTH;

        if (f->bad_expect)
                return fail(err, 417, "unsupported expectation", f->expect_off);

        if (req->version_minor >= 1)
                req->keep_alive = !(req->connection & HTTP_CONN_CLOSE);
        else
                req->keep_alive = (req->connection & HTTP_CONN_KEEP_ALIVE) &&
                                  !(req->connection & HTTP_CONN_CLOSE);
        return 0;
}

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
        RequestLine rl;
        ssize_t r;

        if ((!buf && len > 0) || !limits || !req)
                return -EINVAL;
        err = s.err;
        *err = (HttpError) {};

        r = scan_request_line(&s, &rl);
        if (r <= 0)
                return r;

        size_t cap = MIN(limits->max_headers, headers ? max_headers : 0);
        size_t n = 0;
        ssize_t head_len = scan_fields(&s, (size_t) r, headers, cap, &n);
        if (head_len <= 0)
                return head_len;

        /* Member by member: cheaper than a compound literal that clears the whole struct. */
        req->method = buf + rl.method_off;
        req->method_len = rl.method_len;
        req->method_id = rl.method_id;
        req->target = buf + rl.target_off;
        req->target_len = rl.target_len;
        req->version_minor = rl.minor == 0 ? 0 : 1;
        req->headers = headers;
        req->n_headers = n;
        req->body = HTTP_BODY_NONE;
        req->content_length = 0;
        req->connection = 0;
        req->keep_alive = false;
        req->expect_continue = false;
        req->host_index = -1;
        req->upgrade_index = -1;

        RequestFields f = {};
        r = request_fields(buf, req, &f, err);
        if (r < 0)
                return r;
        r = request_semantics(req, &f, err);
        if (r < 0)
                return r;
        return head_len;
}

/* ------------------------------------------------------------------------- */
/* Responses */

/* Content-Length in a response: every field and list element must carry the same
 * valid value (RFC 9110 8.6 lets a recipient collapse identical duplicates). */
static bool response_content_length(const HttpHeader *h, bool *seen, uint64_t *value) {
        const char *cur = h->value, *end = h->value + h->value_len, *el;
        size_t elen;
        uint64_t one;

        /* The usual single number: a list of one element. */
        if (parse_content_length(h->value, h->value_len, &one)) {
                if (*seen && one != *value)
                        return false;
                *seen = true;
                *value = one;
                return true;
        }

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
                rs = p;
                for (;;) {
                        p = skip_value(buf, p, s.fast_end);
                        AVAIL(&s, p);
                        unsigned char c = (unsigned char) buf[p];
                        if (c == '\r')
                                break;
                        if (c != '\t')
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

        resp->version_minor = minor == 0 ? 0 : 1;
        resp->status = status;
        resp->reason = buf + rs;
        resp->reason_len = re - rs;
        resp->headers = headers;
        resp->n_headers = n;
        resp->body = HTTP_BODY_NONE;
        resp->content_length = 0;
        resp->connection = 0;
        resp->keep_alive = false;

        TransferCodings tc = {};
        bool have_cl = false;
        uint64_t cl = 0;

        for (size_t i = 0; i < n; i++) {
                const HttpHeader *h = &headers[i];
                size_t off = (size_t) (h->name - buf);

                switch (field_id(h->name, h->name_len)) {
                case FIELD_CONTENT_LENGTH:
                        if (!response_content_length(h, &have_cl, &cl))
                                return fail(err, 502, "invalid Content-Length", off);
                        break;
                case FIELD_TRANSFER_ENCODING:
                        transfer_codings_add(&tc, h);
                        break;
                case FIELD_CONNECTION:
                        resp->connection |= connection_flags(h);
                        break;
                default:
                        break;
                }
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
