/* SPDX-License-Identifier: MIT */
/*
 * http1_parse_request. The input is the raw bytes a client sends on one connection.
 *
 * Invariants, checked with the default limits and with small limits:
 *  - the result is -EBADMSG (with a request status), 0 (incomplete) or a head length <= input;
 *  - a valid head is re-derived from the bytes: request line, every field line in order,
 *    the final empty line, every pointer inside the head, every limit respected, framing
 *    (Content-Length value, chunked only as the sole coding, no CL with TE), Host, Upgrade,
 *    Connection flags and keep-alive consistent with the fields;
 *  - byte-by-byte arrival: every prefix shorter than the head is incomplete, every longer
 *    one gives the identical result; an error, once reported, stays with the same status;
 *  - larger limits never reject what smaller limits accept;
 *  - pipelined requests after a body of known length are parsed the same way.
 * Each parse sees a buffer that ends exactly at its length, so sanitizers catch over-reads.
 */

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "http-check.h"

#define ARRAY_MAX 128

typedef struct Result {
        ssize_t r;
        int status;
        size_t method_off, method_len, target_off, target_len;
        HttpMethod method_id;
        int minor;
        size_t n_headers;
        size_t name_off[ARRAY_MAX], name_len[ARRAY_MAX], value_off[ARRAY_MAX], value_len[ARRAY_MAX];
        HttpBodyKind body;
        uint64_t content_length;
        unsigned connection;
        bool keep_alive, expect_continue;
        int host_index, upgrade_index;
} Result;

typedef struct Mode {
        const char *name;
        HttpLimits limits;
        size_t array;
} Mode;

static const Mode modes[] = {
        { "default", HTTP_LIMITS_DEFAULT, ARRAY_MAX },
        { "small",
          { .max_request_line = 48, .max_field_size = 40, .max_head_size = 200, .max_headers = 8,
            .max_chunk_overhead = 64 },
          6 },
};

static const struct {
        const char *name;
        HttpMethod id;
} methods[] = {
        { "GET", HTTP_METHOD_GET },         { "HEAD", HTTP_METHOD_HEAD },       { "POST", HTTP_METHOD_POST },
        { "PUT", HTTP_METHOD_PUT },         { "DELETE", HTTP_METHOD_DELETE },   { "OPTIONS", HTTP_METHOD_OPTIONS },
        { "CONNECT", HTTP_METHOD_CONNECT }, { "TRACE", HTTP_METHOD_TRACE },     { "PATCH", HTTP_METHOD_PATCH },
};

static void check_valid(const char *buf, size_t head_len, const Mode *m, const HttpRequest *req,
                        const HttpHeader *hdrs) {
        const HttpLimits *lim = &m->limits;
        size_t mo = (size_t) (req->method - buf), to = (size_t) (req->target - buf);

        FUZZ_CHECK(req->headers == hdrs, "headers array not the caller's");
        FUZZ_CHECK(req->n_headers <= m->array && req->n_headers <= lim->max_headers, "%zu headers over limit",
                   req->n_headers);
        FUZZ_CHECK(head_len <= lim->max_head_size, "head %zu > max_head_size %zu", head_len, lim->max_head_size);

        /* Optional empty lines, then method SP target SP HTTP/1.d CRLF */
        FUZZ_CHECK(req->method >= buf && mo + req->method_len <= head_len, "method outside the head");
        FUZZ_CHECK(mo % 2 == 0, "method at odd offset %zu", mo);
        for (size_t i = 0; i < mo; i += 2)
                FUZZ_CHECK(buf[i] == '\r' && buf[i + 1] == '\n', "junk before the request line");
        FUZZ_CHECK(req->method_len > 0, "empty method");
        for (size_t i = 0; i < req->method_len; i++)
                FUZZ_CHECK(fz_is_tchar((unsigned char) req->method[i]), "method byte 0x%02x",
                           (unsigned char) req->method[i]);
        HttpMethod want = HTTP_METHOD_OTHER;
        for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
                if (req->method_len == strlen(methods[i].name) &&
                    memcmp(req->method, methods[i].name, req->method_len) == 0)
                        want = methods[i].id;
        FUZZ_CHECK(req->method_id == want, "method_id %d, want %d", req->method_id, want);

        FUZZ_CHECK(to == mo + req->method_len + 1 && buf[to - 1] == ' ', "target does not follow method + SP");
        FUZZ_CHECK(req->target_len > 0 && to + req->target_len <= head_len, "target outside the head");
        for (size_t i = 0; i < req->target_len; i++)
                FUZZ_CHECK((unsigned char) req->target[i] > 0x20 && (unsigned char) req->target[i] < 0x7f,
                           "target byte 0x%02x", (unsigned char) req->target[i]);
        size_t v = to + req->target_len;
        FUZZ_CHECK(v + 11 <= head_len && memcmp(buf + v, " HTTP/1.", 8) == 0 && buf[v + 8] >= '0' &&
                           buf[v + 8] <= '9' && buf[v + 9] == '\r' && buf[v + 10] == '\n',
                   "request line does not end with HTTP/1.d CRLF");
        FUZZ_CHECK(v + 9 - mo <= lim->max_request_line, "request line %zu > limit %zu", v + 9 - mo,
                   lim->max_request_line);
        FUZZ_CHECK(req->version_minor == (buf[v + 8] == '0' ? 0 : 1), "version_minor %d for '%c'",
                   req->version_minor, buf[v + 8]);

        fz_check_fields(buf, head_len, v + 11, hdrs, req->n_headers, lim);

        /* Framing */
        const HttpHeader *h = hdrs;
        size_t n = req->n_headers;
        size_t n_cl = fz_count(h, n, "content-length"), n_te = fz_count(h, n, "transfer-encoding");
        FzCodings codings = fz_codings(h, n);
        switch (req->body) {
        case HTTP_BODY_NONE:
                FUZZ_CHECK(n_cl == 0 && n_te == 0, "no body but CL/TE present");
                break;
        case HTTP_BODY_LENGTH: {
                FUZZ_CHECK(n_cl == 1 && n_te == 0, "length body with %zu CL, %zu TE", n_cl, n_te);
                int i = http1_find_header(h, n, "content-length");
                uint64_t cl;
                FUZZ_CHECK(i >= 0 && fz_parse_digits(h[i].value, h[i].value_len, &cl), "Content-Length not digits");
                FUZZ_CHECK(cl == req->content_length, "content_length %llu, field says %llu",
                           (unsigned long long) req->content_length, (unsigned long long) cl);
                break;
        }
        case HTTP_BODY_CHUNKED:
                FUZZ_CHECK(n_cl == 0 && n_te > 0, "chunked with %zu CL, %zu TE", n_cl, n_te);
                FUZZ_CHECK(req->version_minor == 1, "chunked in HTTP/1.0");
                FUZZ_CHECK(codings.n == 1 && codings.n_chunked == 1 && codings.last_chunked,
                           "chunked with codings n=%zu chunked=%zu", codings.n, codings.n_chunked);
                break;
        default:
                FUZZ_CHECK(false, "request body kind %d", req->body);
        }

        /* Host */
        size_t n_host = fz_count(h, n, "host");
        if (req->version_minor == 1)
                FUZZ_CHECK(n_host == 1, "HTTP/1.1 with %zu Host fields", n_host);
        FUZZ_CHECK(n_host <= 1, "%zu Host fields accepted", n_host);
        if (n_host == 0)
                FUZZ_CHECK(req->host_index == -1, "host_index %d without Host", req->host_index);
        else
                FUZZ_CHECK(req->host_index >= 0 && (size_t) req->host_index < n &&
                                   fuzz_eq_ci(h[req->host_index].name, h[req->host_index].name_len, "host"),
                           "host_index %d wrong", req->host_index);
        if (fz_count(h, n, "upgrade") == 0)
                FUZZ_CHECK(req->upgrade_index == -1, "upgrade_index %d without Upgrade", req->upgrade_index);
        else
                FUZZ_CHECK(req->upgrade_index >= 0 && (size_t) req->upgrade_index < n &&
                                   fuzz_eq_ci(h[req->upgrade_index].name, h[req->upgrade_index].name_len, "upgrade"),
                           "upgrade_index %d wrong", req->upgrade_index);

        /* Connection and persistence */
        unsigned flags = fz_connection_flags(h, n);
        FUZZ_CHECK(req->connection == flags, "connection flags %u, fields say %u", req->connection, flags);
        bool ka = !(flags & HTTP_CONN_CLOSE) && (req->version_minor == 1 || (flags & HTTP_CONN_KEEP_ALIVE));
        FUZZ_CHECK(req->keep_alive == ka, "keep_alive %d, expected %d", req->keep_alive, ka);
        if (req->expect_continue) {
                FUZZ_CHECK(req->version_minor == 1, "expect_continue in HTTP/1.0");
                int i = http1_find_header(h, n, "expect");
                FUZZ_CHECK(i >= 0 && fuzz_eq_ci(h[i].value, h[i].value_len, "100-continue"),
                           "expect_continue without Expect: 100-continue");
        }
}

static void parse(const char *buf, size_t len, const Mode *m, Result *res) {
        HttpHeader hdrs[ARRAY_MAX];
        HttpRequest req;
        HttpError err = {};
        ssize_t r = http1_parse_request(buf, len, &m->limits, &req, hdrs, m->array, &err);

        res->r = r;
        res->status = 0;
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG, "returned %zd", r);
                FUZZ_CHECK(err.status == 400 || err.status == 414 || err.status == 417 || err.status == 431 ||
                                   err.status == 501 || err.status == 505,
                           "error status %d", err.status);
                FUZZ_CHECK(err.reason != NULL, "error without reason");
                FUZZ_CHECK(err.offset < len, "error offset %zu outside %zu bytes", err.offset, len);
                res->status = err.status;
                return;
        }
        FUZZ_CHECK((size_t) r <= len, "head %zd longer than input %zu", r, len);
        if (r == 0)
                return;

        check_valid(buf, (size_t) r, m, &req, hdrs);

        res->method_off = (size_t) (req.method - buf);
        res->method_len = req.method_len;
        res->target_off = (size_t) (req.target - buf);
        res->target_len = req.target_len;
        res->method_id = req.method_id;
        res->minor = req.version_minor;
        res->n_headers = req.n_headers;
        for (size_t i = 0; i < req.n_headers; i++) {
                res->name_off[i] = (size_t) (hdrs[i].name - buf);
                res->name_len[i] = hdrs[i].name_len;
                res->value_off[i] = (size_t) (hdrs[i].value - buf);
                res->value_len[i] = hdrs[i].value_len;
        }
        res->body = req.body;
        res->content_length = req.body == HTTP_BODY_LENGTH ? req.content_length : 0;
        res->connection = req.connection;
        res->keep_alive = req.keep_alive;
        res->expect_continue = req.expect_continue;
        res->host_index = req.host_index;
        res->upgrade_index = req.upgrade_index;
}

static bool same(const Result *a, const Result *b) {
        if (a->r != b->r || a->status != b->status)
                return false;
        if (a->r <= 0)
                return true;
        if (a->method_off != b->method_off || a->method_len != b->method_len || a->target_off != b->target_off ||
            a->target_len != b->target_len || a->method_id != b->method_id || a->minor != b->minor ||
            a->n_headers != b->n_headers || a->body != b->body || a->content_length != b->content_length ||
            a->connection != b->connection || a->keep_alive != b->keep_alive ||
            a->expect_continue != b->expect_continue || a->host_index != b->host_index ||
            a->upgrade_index != b->upgrade_index)
                return false;
        for (size_t i = 0; i < a->n_headers; i++)
                if (a->name_off[i] != b->name_off[i] || a->name_len[i] != b->name_len[i] ||
                    a->value_off[i] != b->value_off[i] || a->value_len[i] != b->value_len[i])
                        return false;
        return true;
}

/* Parse data[0..len) placed at the end of scratch (scratch has room for size bytes). */
static void parse_at_end(char *scratch, size_t size, const uint8_t *data, size_t len, const Mode *m,
                         Result *res) {
        char *p = scratch + size - len;
        if (len > 0)
                memmove(p, data, len);
        parse(p, len, m, res);
}

static void check_prefixes(const uint8_t *data, size_t size, const Mode *m, const Result *whole, char *scratch) {
        static Result res;
        size_t stride = size <= 512 ? 1 : size / 256;
        bool failed = false;

        for (size_t k = 0; k < size; k++) {
                bool near = whole->r > 0 && k + 2 >= (size_t) whole->r && k <= (size_t) whole->r + 2;
                if (stride > 1 && k % stride != 0 && !near && k > 64)
                        continue;
                parse_at_end(scratch, size, data, k, m, &res);
                if (whole->r > 0) {
                        if (k < (size_t) whole->r)
                                FUZZ_CHECK(res.r == 0, "%s: prefix %zu of a %zd-byte head returned %zd (status %d)",
                                           m->name, k, whole->r, res.r, res.status);
                        else
                                FUZZ_CHECK(same(&res, whole), "%s: prefix %zu differs from the whole input",
                                           m->name, k);
                } else if (whole->r == 0)
                        FUZZ_CHECK(res.r == 0, "%s: prefix %zu returned %zd (status %d), whole input incomplete",
                                   m->name, k, res.r, res.status);
                else if (res.r < 0) {
                        FUZZ_CHECK(res.status == whole->status, "%s: prefix %zu status %d, whole input %d",
                                   m->name, k, res.status, whole->status);
                        failed = true;
                } else {
                        FUZZ_CHECK(res.r == 0, "%s: prefix %zu accepted (%zd), whole input rejected", m->name, k,
                                   res.r);
                        FUZZ_CHECK(!failed, "%s: prefix %zu: error went away", m->name, k);
                }
        }
}

/* The requests that follow on the same connection, as the daemon would see them. */
static void check_pipeline(const uint8_t *data, size_t size, size_t off, const Result *first, char *scratch) {
        static Result res;
        const Mode *m = &modes[0];
        Result cur = *first;

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
                }
                if (!cur.keep_alive || off >= size)
                        return;
                parse_at_end(scratch, size, data + off, size - off, m, &res);
                cur = res;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static Result whole[2];
        char *scratch = malloc(size ? size : 1);

        if (!scratch)
                return 0;
        for (size_t i = 0; i < 2; i++) {
                parse_at_end(scratch, size, data, size, &modes[i], &whole[i]);
                check_prefixes(data, size, &modes[i], &whole[i], scratch);
        }

        /* The small limits are tighter in every respect. */
        if (whole[1].r > 0)
                FUZZ_CHECK(same(&whole[0], &whole[1]), "small limits accept, default limits differ (%zd vs %zd)",
                           whole[1].r, whole[0].r);
        if (whole[0].r < 0)
                FUZZ_CHECK(whole[1].r < 0, "default limits reject (%d), small limits return %zd", whole[0].status,
                           whole[1].r);

        check_pipeline(data, size, 0, &whole[0], scratch);
        free(scratch);
        return 0;
}
