/* SPDX-License-Identifier: MIT */
/*
 * http1_parse_response. The input is the raw bytes an upstream sends on one connection.
 *
 * Each input is parsed as the answer to GET, HEAD and CONNECT. Invariants:
 *  - the result is -EBADMSG (status 502), 0 (incomplete) or a head length <= input;
 *  - a valid head is re-derived from the bytes: status line, every field line, the final
 *    empty line, pointers inside the head, limits respected;
 *  - framing: no body exactly for HEAD, 1xx, 204, 304 and 2xx to CONNECT; otherwise chunked
 *    only as the sole coding, Content-Length fields (lists allowed) all equal to
 *    content_length, neither: read until close (and then never keep-alive);
 *  - Connection flags equal the tokens of the Connection fields; keep-alive only when allowed;
 *  - byte-by-byte arrival: shorter prefixes are incomplete, longer ones identical; errors stay;
 *  - when the head is accepted for two methods, it has the same length, status and fields;
 *  - interim (1xx) responses and chunked bodies are followed by the next response.
 */

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "http-check.h"

#define ARRAY_MAX 128

typedef struct Result {
        ssize_t r;
        int status;
        int minor;
        size_t reason_off, reason_len;
        size_t n_headers;
        size_t name_off[ARRAY_MAX], name_len[ARRAY_MAX], value_off[ARRAY_MAX], value_len[ARRAY_MAX];
        HttpBodyKind body;
        uint64_t content_length;
        unsigned connection;
        bool keep_alive;
} Result;

static const HttpLimits limits = HTTP_LIMITS_DEFAULT;

static void check_valid(const char *buf, size_t head_len, HttpMethod method, const HttpResponse *resp,
                        const HttpHeader *hdrs) {
        FUZZ_CHECK(resp->headers == hdrs, "headers array not the caller's");
        FUZZ_CHECK(resp->n_headers <= limits.max_headers, "%zu headers", resp->n_headers);
        FUZZ_CHECK(head_len <= limits.max_head_size, "head %zu > max_head_size", head_len);

        /* HTTP/1.d SP 3DIGIT [SP reason] CRLF */
        FUZZ_CHECK(head_len >= 16 && memcmp(buf, "HTTP/1.", 7) == 0 && buf[7] >= '0' && buf[7] <= '9' &&
                           buf[8] == ' ',
                   "status line does not start with HTTP/1.d SP");
        FUZZ_CHECK(resp->version_minor == (buf[7] == '0' ? 0 : 1), "version_minor %d for '%c'",
                   resp->version_minor, buf[7]);
        int status = 0;
        for (size_t i = 9; i < 12; i++) {
                FUZZ_CHECK(buf[i] >= '0' && buf[i] <= '9', "status digit 0x%02x", (unsigned char) buf[i]);
                status = status * 10 + (buf[i] - '0');
        }
        FUZZ_CHECK(resp->status == status && status >= 100, "status %d, line says %d", resp->status, status);
        size_t p = 12;
        if (buf[p] == ' ') {
                p++;
                if (resp->reason_len > 0)
                        FUZZ_CHECK(resp->reason == buf + p, "reason does not follow the status");
                for (size_t i = 0; i < resp->reason_len; i++)
                        FUZZ_CHECK(fz_is_field_char((unsigned char) resp->reason[i]), "reason byte 0x%02x",
                                   (unsigned char) resp->reason[i]);
                p += resp->reason_len;
                while (p < head_len && fz_is_ws((unsigned char) buf[p]))
                        p++;
        } else
                FUZZ_CHECK(resp->reason_len == 0, "reason without SP");
        FUZZ_CHECK(p + 1 < head_len && buf[p] == '\r' && buf[p + 1] == '\n', "status line not ended by CRLF");
        FUZZ_CHECK(p <= limits.max_request_line, "status line %zu > limit", p);

        fz_check_fields(buf, head_len, p + 2, hdrs, resp->n_headers, &limits);

        const HttpHeader *h = hdrs;
        size_t n = resp->n_headers;
        bool bodiless = method == HTTP_METHOD_HEAD || status / 100 == 1 || status == 204 || status == 304 ||
                (method == HTTP_METHOD_CONNECT && status / 100 == 2);
        size_t n_te = fz_count(h, n, "transfer-encoding"), n_cl = fz_count(h, n, "content-length");
        FzCodings codings = fz_codings(h, n);

        if (bodiless)
                FUZZ_CHECK(resp->body == HTTP_BODY_NONE, "status %d to method %d has body kind %d", status, method,
                           resp->body);
        else if (n_te > 0) {
                FUZZ_CHECK(resp->body == HTTP_BODY_CHUNKED, "TE present, body kind %d", resp->body);
                FUZZ_CHECK(n_cl == 0, "chunked with Content-Length accepted");
                FUZZ_CHECK(codings.n == 1 && codings.n_chunked == 1 && codings.last_chunked,
                           "chunked with codings n=%zu chunked=%zu", codings.n, codings.n_chunked);
        } else if (n_cl > 0) {
                FzLength l = { .ok = true };
                FUZZ_CHECK(resp->body == HTTP_BODY_LENGTH, "CL present, body kind %d", resp->body);
                for (size_t i = 0; i < n; i++)
                        if (fuzz_eq_ci(h[i].name, h[i].name_len, "content-length"))
                                fz_list_tokens(h[i].value, h[i].value_len, fz_length_token, &l);
                FUZZ_CHECK(l.ok && l.n > 0, "Content-Length fields not one consistent number");
                FUZZ_CHECK(l.value == resp->content_length, "content_length %llu, fields say %llu",
                           (unsigned long long) resp->content_length, (unsigned long long) l.value);
        } else
                FUZZ_CHECK(resp->body == HTTP_BODY_UNTIL_CLOSE, "no framing, body kind %d", resp->body);

        unsigned flags = fz_connection_flags(h, n);
        FUZZ_CHECK(resp->connection == flags, "connection flags %u, fields say %u", resp->connection, flags);
        if (resp->keep_alive) {
                FUZZ_CHECK(!(flags & HTTP_CONN_CLOSE), "keep-alive despite Connection: close");
                FUZZ_CHECK(resp->body != HTTP_BODY_UNTIL_CLOSE, "keep-alive with a body read until close");
                FUZZ_CHECK(resp->version_minor == 1 || (flags & HTTP_CONN_KEEP_ALIVE), "HTTP/1.0 keep-alive without token");
                FUZZ_CHECK(status != 101, "keep-alive after 101");
        } else
                FUZZ_CHECK((flags & HTTP_CONN_CLOSE) || resp->body == HTTP_BODY_UNTIL_CLOSE ||
                                   (resp->version_minor == 0 && !(flags & HTTP_CONN_KEEP_ALIVE)) || status == 101 ||
                                   (method == HTTP_METHOD_CONNECT && status / 100 == 2),
                           "not keep-alive without a reason");
}

static void parse(const char *buf, size_t len, HttpMethod method, Result *res) {
        HttpHeader hdrs[ARRAY_MAX];
        HttpResponse resp;
        HttpError err = {};
        ssize_t r = http1_parse_response(buf, len, &limits, method, &resp, hdrs, ARRAY_MAX, &err);

        res->r = r;
        res->status = 0;
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG, "returned %zd", r);
                FUZZ_CHECK(err.status == 502, "error status %d", err.status);
                FUZZ_CHECK(err.reason != NULL, "error without reason");
                return;
        }
        FUZZ_CHECK((size_t) r <= len, "head %zd longer than input %zu", r, len);
        if (r == 0)
                return;
        check_valid(buf, (size_t) r, method, &resp, hdrs);
        res->status = resp.status;
        res->minor = resp.version_minor;
        res->reason_off = (size_t) (resp.reason - buf);
        res->reason_len = resp.reason_len;
        res->n_headers = resp.n_headers;
        for (size_t i = 0; i < resp.n_headers; i++) {
                res->name_off[i] = (size_t) (hdrs[i].name - buf);
                res->name_len[i] = hdrs[i].name_len;
                res->value_off[i] = (size_t) (hdrs[i].value - buf);
                res->value_len[i] = hdrs[i].value_len;
        }
        res->body = resp.body;
        res->content_length = resp.body == HTTP_BODY_LENGTH ? resp.content_length : 0;
        res->connection = resp.connection;
        res->keep_alive = resp.keep_alive;
}

/* Same head: length, status line and fields (framing may differ with the method). */
static bool same_head(const Result *a, const Result *b) {
        if (a->r != b->r || a->status != b->status || a->minor != b->minor || a->n_headers != b->n_headers ||
            a->connection != b->connection)
                return false;
        if (a->reason_len != b->reason_len || (a->reason_len > 0 && a->reason_off != b->reason_off))
                return false;
        for (size_t i = 0; i < a->n_headers; i++)
                if (a->name_off[i] != b->name_off[i] || a->name_len[i] != b->name_len[i] ||
                    a->value_off[i] != b->value_off[i] || a->value_len[i] != b->value_len[i])
                        return false;
        return true;
}

static bool same(const Result *a, const Result *b) {
        if (a->r != b->r)
                return false;
        if (a->r <= 0)
                return true;
        return same_head(a, b) && a->body == b->body && a->content_length == b->content_length &&
                a->keep_alive == b->keep_alive;
}

static void parse_at_end(char *scratch, size_t size, const uint8_t *data, size_t len, HttpMethod method,
                         Result *res) {
        char *p = scratch + size - len;
        if (len > 0)
                memmove(p, data, len);
        parse(p, len, method, res);
}

static void check_prefixes(const uint8_t *data, size_t size, HttpMethod method, const Result *whole,
                           char *scratch) {
        static Result res;
        size_t stride = size <= 512 ? 1 : size / 256;
        bool failed = false;

        for (size_t k = 0; k < size; k++) {
                bool near = whole->r > 0 && k + 2 >= (size_t) whole->r && k <= (size_t) whole->r + 2;
                if (stride > 1 && k % stride != 0 && !near && k > 64)
                        continue;
                parse_at_end(scratch, size, data, k, method, &res);
                if (whole->r > 0) {
                        if (k < (size_t) whole->r)
                                FUZZ_CHECK(res.r == 0, "method %d: prefix %zu of a %zd-byte head returned %zd",
                                           method, k, whole->r, res.r);
                        else
                                FUZZ_CHECK(same(&res, whole), "method %d: prefix %zu differs", method, k);
                } else if (whole->r == 0)
                        FUZZ_CHECK(res.r == 0, "method %d: prefix %zu returned %zd, whole input incomplete", method,
                                   k, res.r);
                else if (res.r < 0)
                        failed = true;
                else {
                        FUZZ_CHECK(res.r == 0, "method %d: prefix %zu accepted, whole input rejected", method, k);
                        FUZZ_CHECK(!failed, "method %d: prefix %zu: error went away", method, k);
                }
        }
}

/* What follows the first response on the connection: after an interim response the final
 * one, after a complete body of known length the next response. */
static void check_sequence(const uint8_t *data, size_t size, const Result *first, char *scratch) {
        static Result res;
        Result cur = *first;
        size_t off = 0;

        for (int i = 0; i < 16 && cur.r > 0; i++) {
                off += (size_t) cur.r;
                if (cur.body == HTTP_BODY_LENGTH) {
                        if (cur.content_length > size - off)
                                return;
                        off += (size_t) cur.content_length;
                } else if (cur.body == HTTP_BODY_CHUNKED) {
                        ssize_t c = fz_skip_chunked((const char *) data + off, size - off, 16384);
                        if (c < 0)
                                return;
                        off += (size_t) c;
                } else if (cur.body == HTTP_BODY_UNTIL_CLOSE)
                        return;
                if ((!cur.keep_alive && cur.status / 100 != 1) || cur.status == 101 || off >= size)
                        return;
                parse_at_end(scratch, size, data + off, size - off, HTTP_METHOD_GET, &res);
                cur = res;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const HttpMethod methods[] = { HTTP_METHOD_GET, HTTP_METHOD_HEAD, HTTP_METHOD_CONNECT };
        static Result whole[3];
        char *scratch = malloc(size ? size : 1);

        if (!scratch)
                return 0;
        for (size_t i = 0; i < 3; i++) {
                parse_at_end(scratch, size, data, size, methods[i], &whole[i]);
                check_prefixes(data, size, methods[i], &whole[i], scratch);
        }
        for (size_t i = 1; i < 3; i++)
                if (whole[0].r > 0 && whole[i].r > 0)
                        FUZZ_CHECK(same_head(&whole[0], &whole[i]), "GET and method %d give different heads",
                                   methods[i]);
        check_sequence(data, size, &whole[0], scratch);
        free(scratch);
        return 0;
}
