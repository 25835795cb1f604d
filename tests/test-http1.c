/* SPDX-License-Identifier: MIT */
/*
 * HTTP/1.x parser tests. Every head case is parsed whole and by every prefix in
 * increasing order (the way bytes arrive on a socket, one at a time), with the input
 * placed right before a PROT_NONE guard page so that any read past the end crashes.
 * Chunked cases are fed whole, split at every point into two pieces, and one byte at
 * a time.
 */

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "http1.h"
#include "util.h"

/* ------------------------------------------------------------------------- */
/* Guard page */

#define GUARD_USABLE (160 * 1024)

static char *guard_base;
static size_t guard_map_size, guard_usable;

static void guard_setup(void) {
        long pg = sysconf(_SC_PAGESIZE);
        ck_assert_int_gt(pg, 0);
        guard_usable = ((GUARD_USABLE + (size_t) pg - 1) / (size_t) pg) * (size_t) pg;
        guard_map_size = guard_usable + (size_t) pg;
        guard_base = mmap(NULL, guard_map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ck_assert_ptr_ne(guard_base, MAP_FAILED);
        ck_assert_int_eq(mprotect(guard_base + guard_usable, (size_t) pg, PROT_NONE), 0);
}

static void guard_teardown(void) {
        if (guard_base)
                munmap(guard_base, guard_map_size);
        guard_base = NULL;
}

/* Copy data so that its last byte is the last readable byte before the guard page. */
static const char *guard_place(const char *data, size_t len) {
        ck_assert_uint_le(len, guard_usable);
        char *p = guard_base + guard_usable - len;
        if (len > 0)
                memcpy(p, data, len);
        return p;
}

/* ------------------------------------------------------------------------- */
/* Request cases */

#define D(s) .data = (s), .len = sizeof(s) - 1

typedef struct ReqCase {
        const char *name;
        const char *data;
        size_t len;
        int status; /* 0: valid; otherwise the expected err.status */
        const HttpLimits *limits;
        size_t array; /* size of the headers array passed in; 0: 64 */

        /* valid cases */
        size_t head_len; /* 0: the whole input */
        const char *method;
        HttpMethod method_id;
        const char *target;
        int minor;
        HttpBodyKind body;
        uint64_t content_length;
        bool keep_alive;
        bool expect_continue;
        unsigned connection;
        size_t n_headers;
        int host_index;
        int upgrade_index;
} ReqCase;

static const HttpLimits small_limits = {
        .max_request_line = 32,
        .max_field_size = 24,
        .max_head_size = 128,
        .max_headers = 3,
        .max_chunk_overhead = 64,
};

static const ReqCase req_cases[] = {
        /* ---- rows of http-cases.md, client side ---- */
        { "Q01 CL+TE", D("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX"), .status = 400 },
        { "Q03 dup CL differing", D("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 0\r\n\r\nZ"), .status = 400 },
        { "Q04 dup CL same", D("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nZ"), .status = 400 },
        { "Q06 CL plus", D("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc"), .status = 400 },
        { "Q08 CL hex", D("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\nZ"), .status = 400 },
        { "Q09 CL negative", D("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -48\r\n\r\n"), .status = 400 },
        { "Q10 CL empty", D("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n"), .status = 400 },
        { "Q12 CL junk", D("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1Z\r\n\r\nZ"), .status = 400 },
        { "Q14 TE chunked twice", D("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\n\r\n"), .status = 400 },
        { "Q15 TE chunked, chunked", D("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"), .status = 400 },
        { "Q16 TE chunked not last", D("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"), .status = 400 },
        { "Q17 TE gzip", D("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"), .status = 501 },
        { "Q18 TE gzip, chunked", D("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"), .status = 501 },
        { "Q19 TE identity + CL", D("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\nContent-Length: 1\r\n\r\nZ"), .status = 400 },
        { "Q21 TE space before colon", D("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"), .status = 400 },
        { "Q23 TE backspace", D("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x08" "chunked\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\n\r\n"), .status = 400 },
        { "Q25 CL name trailing space", D("GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 34\r\n\r\nGET / HTTP/1.1\r\nHost: whatever\r\n\r\n"), .status = 400 },
        { "Q26 whitespace first header", D("GET / HTTP/1.1\r\n\tContent-Length: 1\r\nHost: a\r\n\r\nX"), .status = 400 },
        { "Q27 obs-fold", D("GET / HTTP/1.1\r\nHost: a\r\nX-Foo: a\r\n b\r\n\r\n"), .status = 400 },
        { "Q29 bare LF", D("GET / HTTP/1.1\nHost: a\n\n"), .status = 400 },
        { "Q30 bare CR in value", D("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"), .status = 400 },
        { "Q32 NUL in value", D("GET / HTTP/1.1\r\nHost: a\r\nX: a\x00" "b\r\n\r\n"), .status = 400 },
        { "Q33 CTL in name", D("GET / HTTP/1.1\r\nHost: a\r\nfoo\x02: bar\r\n\r\n"), .status = 400 },
        { "Q34 empty name", D("GET / HTTP/1.1\r\nHost: a\r\n: ignored\r\n\r\n"), .status = 400 },
        { "Q35 no colon", D("GET / HTTP/1.1\r\nHost: a\r\nContent-Length 10\r\n\r\n0123456789"), .status = 400 },
        { "Q37 space in target", D("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
        { "Q38 CTL in target", D("GET /\x02 HTTP/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
        { "Q39 HTTP/11.1", D("GET / HTTP/11.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\n\r\n"), .status = 400 },
        { "Q40 HTP/1.1", D("GET / HTP/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
        { "Q41 junk method", D("G=\":<>(e),[T];?\" /get HTTP/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
        { "Q42 HTTP/0.9", D("GET /\r\n"), .status = 400 },
        { "Q43 no Host", D("GET / HTTP/1.1\r\n\r\n"), .status = 400 },
        { "Q44 two Host", D("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), .status = 400 },
        /* Q46..Q52: the head is fine; the chunked body is rejected (see chunk_cases). */
        { "Q46 head", D("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nz\r\nabc\r\n0\r\n\r\n"),
          .head_len = 56, .method = "POST", .method_id = HTTP_METHOD_POST, .target = "/", .minor = 1,
          .body = HTTP_BODY_CHUNKED, .keep_alive = true, .n_headers = 2, .host_index = 0, .upgrade_index = -1 },
        { "Q48 head", D("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\nZ\r\n0\r\n\r\n"),
          .head_len = 56, .method = "POST", .method_id = HTTP_METHOD_POST, .target = "/", .minor = 1,
          .body = HTTP_BODY_CHUNKED, .keep_alive = true, .n_headers = 2, .host_index = 0, .upgrade_index = -1 },
        { "Q49 head", D("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n   1\r\nZ\r\n0\r\n\r\n"),
          .head_len = 56, .method = "POST", .method_id = HTTP_METHOD_POST, .target = "/", .minor = 1,
          .body = HTTP_BODY_CHUNKED, .keep_alive = true, .n_headers = 2, .host_index = 0, .upgrade_index = -1 },
        { "Q51 head", D("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\n\r\n"),
          .head_len = 56, .method = "POST", .method_id = HTTP_METHOD_POST, .target = "/", .minor = 1,
          .body = HTTP_BODY_CHUNKED, .keep_alive = true, .n_headers = 2, .host_index = 0, .upgrade_index = -1 },
        { "Q52 head", D("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nAAAAAXX\r\n0\r\n\r\n"),
          .head_len = 56, .method = "POST", .method_id = HTTP_METHOD_POST, .target = "/", .minor = 1,
          .body = HTTP_BODY_CHUNKED, .keep_alive = true, .n_headers = 2, .host_index = 0, .upgrade_index = -1 },
        { "Q56 pipelined", D("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"),
          .head_len = 28, .method = "GET", .method_id = HTTP_METHOD_GET, .target = "/1", .minor = 1,
          .body = HTTP_BODY_NONE, .keep_alive = true, .n_headers = 1, .host_index = 0, .upgrade_index = -1 },
        { "Q57 Connection: close", D("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n"),
          .head_len = 46, .method = "GET", .method_id = HTTP_METHOD_GET, .target = "/", .minor = 1,
          .body = HTTP_BODY_NONE, .keep_alive = false, .connection = HTTP_CONN_CLOSE, .n_headers = 2,
          .host_index = 0, .upgrade_index = -1 },
        { "Q58 GET with body", D("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n1234567890"),
          .head_len = 47, .method = "GET", .method_id = HTTP_METHOD_GET, .target = "/", .minor = 1,
          .body = HTTP_BODY_LENGTH, .content_length = 10, .keep_alive = true, .n_headers = 2, .host_index = 0,
          .upgrade_index = -1 },
        { "Q60 Expect 100-continue", D("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello"),
          .head_len = 69, .method = "POST", .method_id = HTTP_METHOD_POST, .target = "/", .minor = 1,
          .body = HTTP_BODY_LENGTH, .content_length = 5, .keep_alive = true, .expect_continue = true,
          .n_headers = 3, .host_index = 0, .upgrade_index = -1 },
        { "Q62 TE CHUNKED", D("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n1\r\nZ\r\n0\r\n\r\n"),
          .head_len = 56, .method = "POST", .method_id = HTTP_METHOD_POST, .target = "/", .minor = 1,
          .body = HTTP_BODY_CHUNKED, .keep_alive = true, .n_headers = 2, .host_index = 0, .upgrade_index = -1 },

        /* ---- more positives ---- */
        { "HTTP/1.0 keep-alive", D("GET /x HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
          .method = "GET", .method_id = HTTP_METHOD_GET, .target = "/x", .minor = 0, .keep_alive = true,
          .connection = HTTP_CONN_KEEP_ALIVE, .n_headers = 1, .host_index = -1, .upgrade_index = -1 },
        { "HTTP/1.0 default close", D("GET /x HTTP/1.0\r\nHost: h\r\n\r\n"),
          .method = "GET", .method_id = HTTP_METHOD_GET, .target = "/x", .minor = 0, .keep_alive = false,
          .n_headers = 1, .host_index = 0, .upgrade_index = -1 },
        { "HTTP/1.0 Expect ignored", D("POST / HTTP/1.0\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n"),
          .method = "POST", .method_id = HTTP_METHOD_POST, .target = "/", .minor = 0, .body = HTTP_BODY_LENGTH,
          .content_length = 1, .n_headers = 2, .host_index = -1, .upgrade_index = -1 },
        { "HTTP/1.2 is 1.1", D("GET / HTTP/1.2\r\nHost: a\r\n\r\n"),
          .method = "GET", .method_id = HTTP_METHOD_GET, .target = "/", .minor = 1, .keep_alive = true,
          .n_headers = 1, .host_index = 0, .upgrade_index = -1 },
        { "absolute-form", D("GET http://example.com:8080/p?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"),
          .method = "GET", .method_id = HTTP_METHOD_GET, .target = "http://example.com:8080/p?q=1", .minor = 1,
          .keep_alive = true, .n_headers = 1, .host_index = 0, .upgrade_index = -1 },
        { "absolute-form https no path", D("GET HTTPS://[::1] HTTP/1.1\r\nHost: [::1]\r\n\r\n"),
          .method = "GET", .method_id = HTTP_METHOD_GET, .target = "HTTPS://[::1]", .minor = 1,
          .keep_alive = true, .n_headers = 1, .host_index = 0, .upgrade_index = -1 },
        { "OPTIONS *", D("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
          .method = "OPTIONS", .method_id = HTTP_METHOD_OPTIONS, .target = "*", .minor = 1, .keep_alive = true,
          .n_headers = 1, .host_index = 0, .upgrade_index = -1 },
        { "CONNECT authority", D("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
          .method = "CONNECT", .method_id = HTTP_METHOD_CONNECT, .target = "example.com:443", .minor = 1,
          .keep_alive = true, .n_headers = 1, .host_index = 0, .upgrade_index = -1 },
        { "Upgrade websocket", D("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"),
          .method = "GET", .method_id = HTTP_METHOD_GET, .target = "/ws", .minor = 1, .keep_alive = true,
          .connection = HTTP_CONN_UPGRADE | HTTP_CONN_KEEP_ALIVE, .n_headers = 4, .host_index = 0,
          .upgrade_index = 1 },
        { "Connection tokens over fields", D("GET / HTTP/1.1\r\nConnection: foo\r\nHost: a\r\nconnection: bar , CLOSE\r\n\r\n"),
          .method = "GET", .method_id = HTTP_METHOD_GET, .target = "/", .minor = 1, .keep_alive = false,
          .connection = HTTP_CONN_CLOSE, .n_headers = 3, .host_index = 1, .upgrade_index = -1 },
        { "leading empty line", D("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
          .method = "GET", .method_id = HTTP_METHOD_GET, .target = "/", .minor = 1, .keep_alive = true,
          .n_headers = 1, .host_index = 0, .upgrade_index = -1 },
        { "lowercase method is other", D("get / HTTP/1.1\r\nHost: a\r\n\r\n"),
          .method = "get", .method_id = HTTP_METHOD_OTHER, .target = "/", .minor = 1, .keep_alive = true,
          .n_headers = 1, .host_index = 0, .upgrade_index = -1 },
        { "OWS and obs-text in values", D("GET / HTTP/1.1\r\nHost:a:80\r\nX-A: \t v\xe9 x \t\r\nX-B:\r\n\r\n"),
          .method = "GET", .method_id = HTTP_METHOD_GET, .target = "/", .minor = 1, .keep_alive = true,
          .n_headers = 3, .host_index = 0, .upgrade_index = -1 },
        { "TE chunked with OWS", D("PUT /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  chunked \r\n\r\n"),
          .method = "PUT", .method_id = HTTP_METHOD_PUT, .target = "/u", .minor = 1, .body = HTTP_BODY_CHUNKED,
          .keep_alive = true, .n_headers = 2, .host_index = 0, .upgrade_index = -1 },
        { "CL max int64", D("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n"),
          .method = "POST", .method_id = HTTP_METHOD_POST, .target = "/", .minor = 1, .body = HTTP_BODY_LENGTH,
          .content_length = INT64_MAX, .keep_alive = true, .n_headers = 2, .host_index = 0, .upgrade_index = -1 },
        { "CL zero", D("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
          .method = "POST", .method_id = HTTP_METHOD_POST, .target = "/", .minor = 1, .body = HTTP_BODY_LENGTH,
          .content_length = 0, .keep_alive = true, .n_headers = 2, .host_index = 0, .upgrade_index = -1 },
        { "Host IPv4 and port", D("GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"),
          .method = "GET", .method_id = HTTP_METHOD_GET, .target = "/", .minor = 1, .keep_alive = true,
          .n_headers = 1, .host_index = 0, .upgrade_index = -1 },
        { "limits: at every limit", D("GET /123456789012345678 HTTP/1.1\r\nHost: a\r\nX: 123456789012345678901\r\n\r\n"),
          .limits = &small_limits, .method = "GET", .method_id = HTTP_METHOD_GET, .target = "/123456789012345678",
          .minor = 1, .keep_alive = true, .n_headers = 2, .host_index = 0, .upgrade_index = -1 },
        { "limits: max headers exactly", D("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n"),
          .limits = &small_limits, .method = "GET", .method_id = HTTP_METHOD_GET, .target = "/", .minor = 1,
          .keep_alive = true, .n_headers = 3, .host_index = 0, .upgrade_index = -1 },

        /* ---- more negatives ---- */
        { "HTTP/2.0", D("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), .status = 505 },
        { "HTTP/0.9 version", D("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), .status = 505 },
        { "lowercase http", D("GET / http/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
        { "trailing space after version", D("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), .status = 400 },
        { "double space", D("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
        { "tab separator", D("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
        { "non-ASCII target", D("GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
        { "bare CR in request line", D("GET / HTTP/1.1\rHost: a\r\n\r\n"), .status = 400 },
        { "bare LF after head", D("GET / HTTP/1.1\r\nHost: a\r\n\n"), .status = 400 },
        { "DEL in value", D("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n"), .status = 400 },
        { "asterisk with GET", D("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
        { "authority-form with GET", D("GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
        { "CONNECT origin-form", D("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
        { "CONNECT without port", D("CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
        { "ftp scheme", D("GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
        { "absolute-form userinfo", D("GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
        { "absolute-form empty host", D("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"), .status = 400 },
        { "Host with space", D("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), .status = 400 },
        { "Host empty", D("GET / HTTP/1.1\r\nHost: \r\n\r\n"), .status = 400 },
        { "Host bad port", D("GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n"), .status = 400 },
        { "Host with slash", D("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), .status = 400 },
        { "Host unclosed bracket", D("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"), .status = 400 },
        { "CL overflow", D("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n"), .status = 400 },
        { "CL comma list", D("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nZ"), .status = 400 },
        { "CL inner space", D("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\nZ"), .status = 400 },
        { "TE in HTTP/1.0", D("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), .status = 400 },
        { "TE empty", D("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n"), .status = 400 },
        { "TE only commas", D("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , ,\r\n\r\n"), .status = 400 },
        { "TE identity", D("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n"), .status = 501 },
        { "TE chunked with parameter", D("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n"), .status = 501 },
        { "TE gzip field then chunked field", D("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"), .status = 501 },
        { "TE chunked field then gzip field", D("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"), .status = 400 },
        { "TE bad token", D("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n"), .status = 400 },
        { "Expect other", D("POST / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\nContent-Length: 1\r\n\r\nZ"), .status = 417 },
        { "limits: request line +1 (414)", D("GET /1234567890123456789 HTTP/1.1\r\nHost: a\r\n\r\n"),
          .status = 414, .limits = &small_limits },
        { "limits: field +1 (431)", D("GET / HTTP/1.1\r\nHost: a\r\nX: 1234567890123456789012\r\n\r\n"),
          .status = 431, .limits = &small_limits },
        { "limits: too many headers (431)", D("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
          .status = 431, .limits = &small_limits },
        { "limits: header array too small (431)", D("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n"),
          .status = 431, .array = 2 },
        { "limits: head size (431)", D("GET / HTTP/1.1\r\nHost: a\r\nA: 12345678901234567\r\nB: 12345678901234567\r\nC: 12345678901234567\r\n\r\n"),
          .status = 431, .limits = &(const HttpLimits){ .max_request_line = 100, .max_field_size = 100,
                                                       .max_head_size = 64, .max_headers = 10 } },
};

static size_t req_head_len(const ReqCase *c) {
        return c->head_len ? c->head_len : c->len;
}

static void check_req(const ReqCase *c, const char *buf, ssize_t r, const HttpRequest *req, const HttpError *err) {
        ck_assert_msg(r == (ssize_t) req_head_len(c), "%s: returned %zd (%s at %zu), want %zu", c->name, r,
                      err->reason ?: "-", err->offset, req_head_len(c));
        ck_assert_msg(memeq(req->method, req->method_len, c->method), "%s: method", c->name);
        ck_assert_int_eq(req->method_id, c->method_id);
        ck_assert_msg(memeq(req->target, req->target_len, c->target), "%s: target '%.*s'", c->name,
                      (int) req->target_len, req->target);
        ck_assert(req->method >= buf && req->method + req->method_len <= buf + r);
        ck_assert(req->target > req->method && req->target + req->target_len <= buf + r);
        ck_assert_int_eq(req->version_minor, c->minor);
        ck_assert_msg(req->body == c->body, "%s: body %d", c->name, req->body);
        if (c->body == HTTP_BODY_LENGTH)
                ck_assert_uint_eq(req->content_length, c->content_length);
        ck_assert_msg(req->keep_alive == c->keep_alive, "%s: keep_alive", c->name);
        ck_assert_msg(req->expect_continue == c->expect_continue, "%s: expect", c->name);
        ck_assert_msg(req->connection == c->connection, "%s: connection %u", c->name, req->connection);
        ck_assert_msg(req->n_headers == c->n_headers, "%s: n_headers %zu", c->name, req->n_headers);
        ck_assert_int_eq(req->host_index, c->host_index);
        ck_assert_int_eq(req->upgrade_index, c->upgrade_index);
        /* Every pointer stays inside the head. */
        for (size_t i = 0; i < req->n_headers; i++) {
                const HttpHeader *h = &req->headers[i];
                ck_assert(h->name >= buf && h->name + h->name_len <= buf + r);
                ck_assert(h->value >= buf && h->value + h->value_len <= buf + r);
        }
}

static ssize_t parse_req(const ReqCase *c, const char *buf, size_t len, HttpRequest *req, HttpHeader *hdrs,
                         HttpError *err) {
        const HttpLimits def = HTTP_LIMITS_DEFAULT;
        *err = (HttpError) {};
        return http1_parse_request(buf, len, c->limits ?: &def, req, hdrs, c->array ?: 64, err);
}

START_TEST(test_request_whole) {
        const ReqCase *c = &req_cases[_i];
        HttpHeader hdrs[64];
        HttpRequest req;
        HttpError err;
        const char *buf = guard_place(c->data, c->len);
        ssize_t r = parse_req(c, buf, c->len, &req, hdrs, &err);

        if (c->status) {
                ck_assert_msg(r == -EBADMSG, "%s: returned %zd, want error %d", c->name, r, c->status);
                ck_assert_msg(err.status == c->status, "%s: status %d (%s), want %d", c->name, err.status,
                              err.reason, c->status);
                ck_assert_ptr_nonnull(err.reason);
                ck_assert_uint_lt(err.offset, c->len);
        } else
                check_req(c, buf, r, &req, &err);
}
END_TEST

/* Prefixes in increasing length: byte-by-byte arrival. Valid heads give 0 until the
 * head is complete; errors, once detected, stay the same error. */
START_TEST(test_request_prefixes) {
        const ReqCase *c = &req_cases[_i];
        HttpHeader hdrs[64];
        HttpRequest req;
        HttpError err;
        bool failed = false;

        for (size_t k = 0; k <= c->len; k++) {
                const char *buf = guard_place(c->data, k);
                ssize_t r = parse_req(c, buf, k, &req, hdrs, &err);

                if (c->status) {
                        if (failed)
                                ck_assert_msg(r == -EBADMSG, "%s: prefix %zu: error went away", c->name, k);
                        if (r < 0) {
                                ck_assert_int_eq(r, -EBADMSG);
                                ck_assert_msg(err.status == c->status, "%s: prefix %zu: status %d (%s), want %d",
                                              c->name, k, err.status, err.reason, c->status);
                                ck_assert_uint_lt(err.offset, k);
                                failed = true;
                        } else
                                ck_assert_msg(r == 0, "%s: prefix %zu accepted", c->name, k);
                } else if (k < req_head_len(c))
                        ck_assert_msg(r == 0, "%s: prefix %zu returned %zd (%s)", c->name, k, r,
                                      err.reason ?: "-");
                else
                        check_req(c, buf, r, &req, &err);
        }
        if (c->status)
                ck_assert(failed);
}
END_TEST

START_TEST(test_request_pipelined) {
        static const char in[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        const HttpLimits lim = HTTP_LIMITS_DEFAULT;
        const char *buf = guard_place(in, sizeof(in) - 1);
        size_t len = sizeof(in) - 1, off = 0;
        HttpHeader hdrs[8];
        HttpRequest req;
        HttpError err;
        ssize_t r;

        r = http1_parse_request(buf + off, len - off, &lim, &req, hdrs, 8, &err);
        ck_assert_int_eq(r, 28);
        ck_assert(memeq(req.target, req.target_len, "/1"));
        off += (size_t) r;

        r = http1_parse_request(buf + off, len - off, &lim, &req, hdrs, 8, &err);
        ck_assert_int_gt(r, 0);
        ck_assert(memeq(req.target, req.target_len, "/2"));
        ck_assert_int_eq(req.body, HTTP_BODY_LENGTH);
        ck_assert_uint_eq(req.content_length, 3);
        off += (size_t) r;
        ck_assert(memcmp(buf + off, "abc", 3) == 0);
        off += 3;

        r = http1_parse_request(buf + off, len - off, &lim, &req, hdrs, 8, &err);
        ck_assert_int_eq((size_t) r, len - off);
        ck_assert(memeq(req.target, req.target_len, "/3"));
        ck_assert(!req.keep_alive);
}
END_TEST

START_TEST(test_request_headers_content) {
        static const char in[] = "GET / HTTP/1.1\r\nHost: a\r\nX-A: \t v\xe9 x \t\r\nX-B:\r\nX-C:  tab\tinside\r\n\r\n";
        const HttpLimits lim = HTTP_LIMITS_DEFAULT;
        HttpHeader hdrs[8];
        HttpRequest req;
        HttpError err;
        const char *buf = guard_place(in, sizeof(in) - 1);

        ck_assert_int_eq(http1_parse_request(buf, sizeof(in) - 1, &lim, &req, hdrs, 8, &err), (ssize_t) sizeof(in) - 1);
        ck_assert_uint_eq(req.n_headers, 4);
        ck_assert(memeq(hdrs[0].name, hdrs[0].name_len, "Host"));
        ck_assert(memeq(hdrs[0].value, hdrs[0].value_len, "a"));
        ck_assert(memeq(hdrs[1].name, hdrs[1].name_len, "X-A"));
        ck_assert(memeq(hdrs[1].value, hdrs[1].value_len, "v\xe9 x"));
        ck_assert(memeq(hdrs[2].name, hdrs[2].name_len, "X-B"));
        ck_assert_uint_eq(hdrs[2].value_len, 0);
        ck_assert(memeq(hdrs[3].value, hdrs[3].value_len, "tab\tinside"));
        ck_assert_ptr_eq(req.headers, hdrs);
        ck_assert_int_eq(http1_find_header(hdrs, req.n_headers, "x-c"), 3);
        ck_assert_int_eq(http1_find_header(hdrs, req.n_headers, "HOST"), 0);
        ck_assert_int_eq(http1_find_header(hdrs, req.n_headers, "X"), -1);
}
END_TEST

/* Builds "<prefix><fill x n><suffix>" in the guard area. */
static const char *build_big(const char *prefix, char fill, size_t n, const char *suffix, size_t *ret_len) {
        size_t pl = strlen(prefix), sl = strlen(suffix), len = pl + n + sl;
        char *tmp = malloc(len);
        ck_assert_ptr_nonnull(tmp);
        memcpy(tmp, prefix, pl);
        memset(tmp + pl, fill, n);
        memcpy(tmp + pl + n, suffix, sl);
        const char *p = guard_place(tmp, len);
        free(tmp);
        *ret_len = len;
        return p;
}

/* Q63: 70 KB request-target: 414, and already before the line ends. */
START_TEST(test_request_q63_long_target) {
        const HttpLimits lim = HTTP_LIMITS_DEFAULT;
        HttpHeader hdrs[8];
        HttpRequest req;
        HttpError err;
        size_t len;
        const char *buf = build_big("GET /", 'a', 70000, " HTTP/1.1\r\nHost: a\r\n\r\n", &len);

        ck_assert_int_eq(http1_parse_request(buf, len, &lim, &req, hdrs, 8, &err), -EBADMSG);
        ck_assert_int_eq(err.status, 414);
        ck_assert_uint_eq(err.offset, lim.max_request_line);

        /* Incomplete: no CRLF anywhere, still 414 as soon as the limit is crossed. */
        for (size_t k = 1; k <= 70005; k += (k < lim.max_request_line - 3 ? 997 : 1)) {
                const char *p = build_big("GET /", 'a', k, "", &len);
                ssize_t r = http1_parse_request(p, len, &lim, &req, hdrs, 8, &err);
                if (len <= lim.max_request_line)
                        ck_assert_msg(r == 0, "len %zu: %zd", len, r);
                else {
                        ck_assert_msg(r == -EBADMSG && err.status == 414, "len %zu: %zd %d", len, r, err.status);
                        if (len > lim.max_request_line + 64)
                                k += 4999;
                }
        }

        /* Exactly at the limit is fine. */
        buf = build_big("GET /", 'a', lim.max_request_line - 14, " HTTP/1.1\r\nHost: a\r\n\r\n", &len);
        ck_assert_int_eq(http1_parse_request(buf, len, &lim, &req, hdrs, 8, &err), (ssize_t) len);
        ck_assert_uint_eq(req.target_len, lim.max_request_line - 13);
        buf = build_big("GET /", 'a', lim.max_request_line - 13, " HTTP/1.1\r\nHost: a\r\n\r\n", &len);
        ck_assert_int_eq(http1_parse_request(buf, len, &lim, &req, hdrs, 8, &err), -EBADMSG);
        ck_assert_int_eq(err.status, 414);
}
END_TEST

/* Q64: 70 KB header field: 431, before the line ends; long fields within the limit pass. */
START_TEST(test_request_q64_long_header) {
        const HttpLimits lim = HTTP_LIMITS_DEFAULT;
        HttpHeader hdrs[8];
        HttpRequest req;
        HttpError err;
        size_t len;
        const char *buf = build_big("GET / HTTP/1.1\r\nHost: a\r\nX-Big: ", 'a', 70000, "\r\n\r\n", &len);

        ck_assert_int_eq(http1_parse_request(buf, len, &lim, &req, hdrs, 8, &err), -EBADMSG);
        ck_assert_int_eq(err.status, 431);

        for (size_t k = 0; k < 70000; k += 1009) {
                const char *p = build_big("GET / HTTP/1.1\r\nHost: a\r\nX-Big: ", 'a', k, "", &len);
                ssize_t r = http1_parse_request(p, len, &lim, &req, hdrs, 8, &err);
                if (k + 7 <= lim.max_field_size)
                        ck_assert_int_eq(r, 0);
                else {
                        ck_assert_int_eq(r, -EBADMSG);
                        ck_assert_int_eq(err.status, 431);
                }
        }

        /* 8192-byte field line ("X-Big: " + value) is within the limit. */
        buf = build_big("GET / HTTP/1.1\r\nHost: a\r\nX-Big: ", 'b', lim.max_field_size - 7, "\r\n\r\n", &len);
        ck_assert_int_eq(http1_parse_request(buf, len, &lim, &req, hdrs, 8, &err), (ssize_t) len);
        ck_assert_uint_eq(hdrs[1].value_len, lim.max_field_size - 7);
        buf = build_big("GET / HTTP/1.1\r\nHost: a\r\nX-Big: ", 'b', lim.max_field_size - 6, "\r\n\r\n", &len);
        ck_assert_int_eq(http1_parse_request(buf, len, &lim, &req, hdrs, 8, &err), -EBADMSG);
        ck_assert_int_eq(err.status, 431);

        /* Many fields that together exceed max_head_size: 431 for the head. */
        char tmp[40000];
        size_t n = 0;
        n += (size_t) snprintf(tmp + n, sizeof(tmp) - n, "GET / HTTP/1.1\r\nHost: a\r\n");
        for (int i = 0; i < 5; i++) {
                n += (size_t) snprintf(tmp + n, sizeof(tmp) - n, "X-%d: ", i);
                memset(tmp + n, 'c', 7000);
                n += 7000;
                memcpy(tmp + n, "\r\n", 2);
                n += 2;
        }
        memcpy(tmp + n, "\r\n", 2);
        n += 2;
        HttpHeader many[16];
        buf = guard_place(tmp, n);
        ck_assert_int_eq(http1_parse_request(buf, n, &lim, &req, many, 16, &err), -EBADMSG);
        ck_assert_int_eq(err.status, 431);
        ck_assert_uint_eq(err.offset, lim.max_head_size);
        /* ... and already when the head is incomplete. */
        ck_assert_int_eq(http1_parse_request(buf, lim.max_head_size + 1, &lim, &req, many, 16, &err), -EBADMSG);
        ck_assert_int_eq(err.status, 431);
        ck_assert_int_eq(http1_parse_request(buf, lim.max_head_size, &lim, &req, many, 16, &err), 0);
}
END_TEST

START_TEST(test_request_too_many_headers_default) {
        const HttpLimits lim = HTTP_LIMITS_DEFAULT;
        char tmp[4096];
        size_t n = (size_t) snprintf(tmp, sizeof(tmp), "GET / HTTP/1.1\r\nHost: a\r\n");
        for (int i = 1; i < 100; i++)
                n += (size_t) snprintf(tmp + n, sizeof(tmp) - n, "X%d: v\r\n", i);
        memcpy(tmp + n, "\r\n", 2);
        HttpHeader hdrs[128];
        HttpRequest req;
        HttpError err;

        /* 100 fields: allowed */
        const char *buf = guard_place(tmp, n + 2);
        ck_assert_int_eq(http1_parse_request(buf, n + 2, &lim, &req, hdrs, 128, &err), (ssize_t) n + 2);
        ck_assert_uint_eq(req.n_headers, 100);

        /* 101 fields: 431, detected before the head is complete */
        n += (size_t) snprintf(tmp + n, sizeof(tmp) - n, "X101: v\r\n");
        memcpy(tmp + n, "\r\n", 2);
        buf = guard_place(tmp, n + 2);
        ck_assert_int_eq(http1_parse_request(buf, n + 2, &lim, &req, hdrs, 128, &err), -EBADMSG);
        ck_assert_int_eq(err.status, 431);
        buf = guard_place(tmp, n - 5);
        ck_assert_int_eq(http1_parse_request(buf, n - 5, &lim, &req, hdrs, 128, &err), -EBADMSG);
        ck_assert_int_eq(err.status, 431);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* Every byte value at every position of long runs (the scanner skips runs several
 * bytes at a time: each lane of a block and the bytes after the last block must be
 * judged exactly as alone), and limits at every offset. */

typedef ssize_t (*ParseFn)(const char *buf, size_t len, HttpHeader *hdrs, HttpError *err);

static ssize_t parse_req_default(const char *buf, size_t len, HttpHeader *hdrs, HttpError *err) {
        const HttpLimits lim = HTTP_LIMITS_DEFAULT;
        HttpRequest req;

        *err = (HttpError) {};
        return http1_parse_request(buf, len, &lim, &req, hdrs, 16, err);
}

static ssize_t parse_resp_default(const char *buf, size_t len, HttpHeader *hdrs, HttpError *err) {
        const HttpLimits lim = HTTP_LIMITS_DEFAULT;
        HttpResponse resp;

        *err = (HttpError) {};
        return http1_parse_response(buf, len, &lim, HTTP_METHOD_GET, &resp, hdrs, 16, err);
}

typedef enum RunKind {
        RUN_TARGET,     /* 0x21..0x7e */
        RUN_NAME_FIRST, /* tchar */
        RUN_NAME,       /* tchar; ':' ends the name early, which is still valid */
        RUN_VALUE,      /* HTAB, SP, VCHAR, obs-text */
} RunKind;

static bool run_byte_ok(RunKind kind, unsigned char c) {
        bool tchar = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     (c != 0 && strchr("!#$%&'*+-.^_`|~", c));

        switch (kind) {
        case RUN_TARGET:
                return c >= 0x21 && c <= 0x7e;
        case RUN_NAME_FIRST:
                return tchar;
        case RUN_NAME:
                return tchar || c == ':';
        case RUN_VALUE:
                return c == '\t' || (c >= 0x20 && c != 0x7f);
        }
        return false;
}

/* Replace in[pos] by every byte value and check acceptance, status and error offset,
 * for the whole input and for the prefixes that end at and one past pos. */
static void check_every_byte(const char *in, size_t len, size_t from, size_t to, RunKind first_kind,
                             RunKind kind, ParseFn parse, int status) {
        char tmp[512];
        HttpHeader hdrs[16];
        HttpError err;

        ck_assert_uint_le(len, sizeof(tmp));
        ck_assert_int_eq(parse(guard_place(in, len), len, hdrs, &err), (ssize_t) len);
        for (size_t pos = from; pos < to; pos++)
                for (unsigned v = 0; v < 256; v++) {
                        unsigned char c = (unsigned char) v;
                        bool ok = run_byte_ok(pos == from ? first_kind : kind, c);

                        memcpy(tmp, in, len);
                        tmp[pos] = (char) c;
                        ssize_t r = parse(guard_place(tmp, len), len, hdrs, &err);
                        if (ok) {
                                ck_assert_msg(r == (ssize_t) len, "byte 0x%02x at %zu rejected (%s)", v, pos,
                                              err.reason ?: "-");
                                continue;
                        }
                        ck_assert_msg(r == -EBADMSG, "byte 0x%02x at %zu: %zd", v, pos, r);
                        ck_assert_int_eq(err.status, status);
                        /* A space ends the request-target; what follows is no version. */
                        if (kind == RUN_TARGET && c == ' ')
                                continue;
                        ck_assert_msg(err.offset == pos, "byte 0x%02x at %zu: offset %zu (%s)", v, pos, err.offset,
                                      err.reason);

                        /* Incomplete input: the same error as soon as it can be told. */
                        r = parse(guard_place(tmp, pos + 2), pos + 2, hdrs, &err);
                        ck_assert_msg(r == -EBADMSG && err.status == status && err.offset == pos,
                                      "byte 0x%02x at %zu, %zu bytes: %zd", v, pos, pos + 2, r);
                        r = parse(guard_place(tmp, pos + 1), pos + 1, hdrs, &err);
                        ck_assert_msg(r == 0 || (r == -EBADMSG && err.status == status && err.offset == pos),
                                      "byte 0x%02x at %zu, %zu bytes: %zd", v, pos, pos + 1, r);
                }
}

START_TEST(test_request_every_byte) {
        static const char in[] =
                "GET /0123456789abcdefghijklmnopqrstuvwxyzABCDEF HTTP/1.1\r\n"
                "Host: a\r\n"
                "X-0123456789abcdefghijklmnopqrstuvwxyz-ABC: 0123456789 abcdefghijklmnopqrstuvwxyz ABCDEF\r\n"
                "\r\n";
        const size_t len = sizeof(in) - 1;
        const char *t = strstr(in, "/0123"), *n = strstr(in, "X-0"), *v = strstr(in, ": 0") + 2;
        size_t t_end = (size_t) (strstr(t, " ") - in), n_end = (size_t) (strstr(n, ":") - in),
               v_end = (size_t) (strstr(v, "\r") - in);

        check_every_byte(in, len, (size_t) (t - in) + 1, t_end, RUN_TARGET, RUN_TARGET, parse_req_default, 400);
        check_every_byte(in, len, (size_t) (n - in), n_end, RUN_NAME_FIRST, RUN_NAME, parse_req_default, 400);
        check_every_byte(in, len, (size_t) (v - in), v_end, RUN_VALUE, RUN_VALUE, parse_req_default, 400);
}
END_TEST

START_TEST(test_response_every_byte) {
        static const char in[] =
                "HTTP/1.1 200 0123456789 abcdefghijklmnopqrstuvwxyz ABCDEF\r\n"
                "X-0123456789abcdefghijklmnopqrstuvwxyz-ABC: 0123456789 abcdefghijklmnopqrstuvwxyz ABCDEF\r\n"
                "Content-Length: 0\r\n"
                "\r\n";
        const size_t len = sizeof(in) - 1;
        const char *rp = in + 13, *n = strstr(in, "X-0"), *v = strstr(in, ": 0") + 2;
        size_t r_end = (size_t) (strstr(rp, "\r") - in), n_end = (size_t) (strstr(n, ":") - in),
               v_end = (size_t) (strstr(v, "\r") - in);

        check_every_byte(in, len, (size_t) (rp - in), r_end, RUN_VALUE, RUN_VALUE, parse_resp_default, 502);
        check_every_byte(in, len, (size_t) (n - in), n_end, RUN_NAME_FIRST, RUN_NAME, parse_resp_default, 502);
        check_every_byte(in, len, (size_t) (v - in), v_end, RUN_VALUE, RUN_VALUE, parse_resp_default, 502);
}
END_TEST

/* max_field_size and max_head_size at every offset, for every prefix. */
START_TEST(test_request_limits_every_offset) {
        static const char prefix[] = "GET / HTTP/1.1\r\nHost: a\r\n";
        static const char *const names[] = { "X", "X-Abcdefghijklmno" };
        static const char fill[] = "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv";
        const size_t ls = sizeof(prefix) - 1;
        char tmp[256];
        HttpHeader hdrs[8];
        HttpRequest req;
        HttpError err;

        for (size_t ni = 0; ni < ELEMENTSOF(names); ni++)
                for (size_t vl = 0; vl < sizeof(fill); vl++) {
                        size_t nl = strlen(names[ni]), line = nl + 2 + vl;
                        size_t total = (size_t) snprintf(tmp, sizeof(tmp), "%s%s: %.*s\r\n\r\n", prefix,
                                                         names[ni], (int) vl, fill);

                        /* Field limit: the Host line (7 bytes) always fits. */
                        for (size_t max = 8; max <= line + 2; max++) {
                                HttpLimits lim = HTTP_LIMITS_DEFAULT;
                                lim.max_field_size = max;
                                for (size_t k = ls; k <= total; k++) {
                                        ssize_t r = http1_parse_request(guard_place(tmp, k), k, &lim, &req,
                                                                        hdrs, 8, &err);
                                        if (line > max && k > ls + max)
                                                ck_assert_msg(r == -EBADMSG && err.status == 431 &&
                                                                      err.offset == ls + max,
                                                              "field %zu/%zu, %zu bytes: %zd %d %zu", line, max,
                                                              k, r, err.status, err.offset);
                                        else if (k < total || line > max)
                                                ck_assert_msg(r == 0, "field %zu/%zu, %zu bytes: %zd", line, max,
                                                              k, r);
                                        else
                                                ck_assert_int_eq(r, (ssize_t) total);
                                }
                        }

                        /* Head limit, which also covers the request line and the CRLFs. */
                        if (ni > 0)
                                continue;
                        for (size_t max = 1; max <= total + 2; max++) {
                                HttpLimits lim = HTTP_LIMITS_DEFAULT;
                                lim.max_head_size = max;
                                for (size_t k = 0; k <= total; k++) {
                                        ssize_t r = http1_parse_request(guard_place(tmp, k), k, &lim, &req,
                                                                        hdrs, 8, &err);
                                        if (total > max && k > max)
                                                ck_assert_msg(r == -EBADMSG && err.status == 431 &&
                                                                      err.offset == max,
                                                              "head %zu/%zu, %zu bytes: %zd %d %zu", total, max,
                                                              k, r, err.status, err.offset);
                                        else if (k < total || total > max)
                                                ck_assert_msg(r == 0, "head %zu/%zu, %zu bytes: %zd", total, max,
                                                              k, r);
                                        else
                                                ck_assert_int_eq(r, (ssize_t) total);
                                }
                        }
                }
}
END_TEST

/* ------------------------------------------------------------------------- */
/* Response cases */

typedef struct RespCase {
        const char *name;
        const char *data;
        size_t len;
        HttpMethod method;
        bool bad;

        size_t head_len;
        int status;
        int minor;
        const char *reason;
        HttpBodyKind body;
        uint64_t content_length;
        bool keep_alive;
        size_t n_headers;
} RespCase;

static const RespCase resp_cases[] = {
        { "R01 CL foo", D("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: foo\r\n\r\n"), .bad = true },
        { "R02 CL 0,0 collapses", D("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n"),
          .status = 200, .minor = 1, .reason = "OK", .body = HTTP_BODY_LENGTH, .content_length = 0,
          .keep_alive = false, .n_headers = 3 },
        { "R04 TE foo", D("HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: foo\r\n\r\n"), .bad = true },
        { "R05 TE chunked twice", D("HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), .bad = true },
        { "R07 HTTP/1.0 chunked", D("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), .head_len = 47,
          .status = 200, .minor = 0, .reason = "OK", .body = HTTP_BODY_CHUNKED, .keep_alive = false, .n_headers = 1 },
        { "R08 status 2OO", D("HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok"), .bad = true },
        { "R10 obs-fold", D("HTTP/1.1 200 OK\r\nConnection: close\r\nX-Foo: a\r\n b\r\nContent-Length: 2\r\n\r\nok"), .bad = true },
        { "R11 space before colon", D("HTTP/1.1 200 OK\r\nConnection: close\r\nX-Foo : a\r\nContent-Length: 2\r\n\r\nok"), .bad = true },
        { "R12 NUL in value", D("HTTP/1.1 200 OK\r\nConnection: close\r\nX-Foo: a\x00" "b\r\nContent-Length: 2\r\n\r\nok"), .bad = true },
        { "R14 CL overflow", D("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nok"), .bad = true },
        { "R18 short body head", D("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-ten!!"), .head_len = 40,
          .status = 200, .minor = 1, .reason = "OK", .body = HTTP_BODY_LENGTH, .content_length = 100,
          .keep_alive = true, .n_headers = 1 },

        { "200 chunked uppercase", D("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"),
          .status = 200, .minor = 1, .reason = "OK", .body = HTTP_BODY_CHUNKED, .keep_alive = true, .n_headers = 1 },
        { "no reason", D("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"),
          .status = 200, .minor = 1, .reason = "", .body = HTTP_BODY_LENGTH, .keep_alive = true, .n_headers = 1 },
        { "empty reason", D("HTTP/1.1 404 \r\nContent-Length: 3\r\n\r\n"),
          .status = 404, .minor = 1, .reason = "", .body = HTTP_BODY_LENGTH, .content_length = 3,
          .keep_alive = true, .n_headers = 1 },
        { "until close", D("HTTP/1.1 200 Fine  Thanks\r\nServer: x\r\n\r\n"),
          .status = 200, .minor = 1, .reason = "Fine  Thanks", .body = HTTP_BODY_UNTIL_CLOSE, .keep_alive = false,
          .n_headers = 1 },
        { "204 no body", D("HTTP/1.1 204 No Content\r\n\r\n"),
          .status = 204, .minor = 1, .reason = "No Content", .body = HTTP_BODY_NONE, .keep_alive = true },
        { "304 with CL", D("HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"),
          .status = 304, .minor = 1, .reason = "Not Modified", .body = HTTP_BODY_NONE, .keep_alive = true,
          .n_headers = 1 },
        { "100 continue", D("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"), .head_len = 25,
          .status = 100, .minor = 1, .reason = "Continue", .body = HTTP_BODY_NONE, .keep_alive = true },
        { "101 switching", D("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
          .status = 101, .minor = 1, .reason = "Switching Protocols", .body = HTTP_BODY_NONE, .keep_alive = false,
          .n_headers = 2 },
        { "HEAD response with CL", D("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"), .method = HTTP_METHOD_HEAD,
          .status = 200, .minor = 1, .reason = "OK", .body = HTTP_BODY_NONE, .keep_alive = true, .n_headers = 1 },
        { "CONNECT 200", D("HTTP/1.1 200 Connection Established\r\n\r\n"), .method = HTTP_METHOD_CONNECT,
          .status = 200, .minor = 1, .reason = "Connection Established", .body = HTTP_BODY_NONE, .keep_alive = false },
        { "CONNECT 407 has body", D("HTTP/1.1 407 Auth\r\nContent-Length: 2\r\n\r\n"), .method = HTTP_METHOD_CONNECT,
          .status = 407, .minor = 1, .reason = "Auth", .body = HTTP_BODY_LENGTH, .content_length = 2,
          .keep_alive = true, .n_headers = 1 },
        { "HTTP/1.0 keep-alive", D("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n"),
          .status = 200, .minor = 0, .reason = "OK", .body = HTTP_BODY_LENGTH, .content_length = 2,
          .keep_alive = true, .n_headers = 2 },
        { "HTTP/1.0 default close", D("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n"),
          .status = 200, .minor = 0, .reason = "OK", .body = HTTP_BODY_LENGTH, .content_length = 2,
          .keep_alive = false, .n_headers = 1 },
        { "CL list identical", D("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n"),
          .status = 200, .minor = 1, .reason = "OK", .body = HTTP_BODY_LENGTH, .content_length = 7,
          .keep_alive = true, .n_headers = 1 },
        { "obs-text reason", D("HTTP/1.1 599 \xc3\xa9t\xc3\xa9\r\n\r\n"),
          .status = 599, .minor = 1, .reason = "\xc3\xa9t\xc3\xa9", .body = HTTP_BODY_UNTIL_CLOSE, .keep_alive = false },

        { "CL differing", D("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), .bad = true },
        { "CL list differing", D("HTTP/1.1 200 OK\r\nContent-Length: 1,2\r\n\r\n"), .bad = true },
        { "CL empty", D("HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n"), .bad = true },
        { "TE + CL", D("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"), .bad = true },
        { "TE gzip, chunked", D("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), .bad = true },
        { "TE chunked, gzip", D("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), .bad = true },
        { "TE empty", D("HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n"), .bad = true },
        { "HTTP/2.0", D("HTTP/2.0 200 OK\r\n\r\n"), .bad = true },
        { "HTTP/1.1 099", D("HTTP/1.1 099 Low\r\n\r\n"), .bad = true },
        { "4-digit status", D("HTTP/1.1 2000 OK\r\n\r\n"), .bad = true },
        { "no space before status", D("HTTP/1.1200 OK\r\n\r\n"), .bad = true },
        { "not HTTP", D("SSH-2.0-OpenSSH_9.2\r\n"), .bad = true },
        { "bare LF status line", D("HTTP/1.1 200 OK\nContent-Length: 0\n\n"), .bad = true },
        { "CTL in reason", D("HTTP/1.1 200 O\x01K\r\n\r\n"), .bad = true },
        { "bare CR in header", D("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n"), .bad = true },
};

static size_t resp_head_len(const RespCase *c) {
        return c->head_len ? c->head_len : c->len;
}

static void check_resp(const RespCase *c, ssize_t r, const HttpResponse *resp, const HttpError *err) {
        ck_assert_msg(r == (ssize_t) resp_head_len(c), "%s: returned %zd (%s), want %zu", c->name, r,
                      err->reason ?: "-", resp_head_len(c));
        ck_assert_int_eq(resp->status, c->status);
        ck_assert_int_eq(resp->version_minor, c->minor);
        ck_assert_msg(memeq(resp->reason, resp->reason_len, c->reason), "%s: reason", c->name);
        ck_assert_msg(resp->body == c->body, "%s: body %d", c->name, resp->body);
        if (c->body == HTTP_BODY_LENGTH)
                ck_assert_uint_eq(resp->content_length, c->content_length);
        ck_assert_msg(resp->keep_alive == c->keep_alive, "%s: keep_alive", c->name);
        ck_assert_uint_eq(resp->n_headers, c->n_headers);
}

START_TEST(test_response_whole) {
        const RespCase *c = &resp_cases[_i];
        const HttpLimits lim = HTTP_LIMITS_DEFAULT;
        HttpHeader hdrs[16];
        HttpResponse resp;
        HttpError err = {};
        const char *buf = guard_place(c->data, c->len);
        ssize_t r = http1_parse_response(buf, c->len, &lim, c->method, &resp, hdrs, 16, &err);

        if (c->bad) {
                ck_assert_msg(r == -EBADMSG, "%s: returned %zd", c->name, r);
                ck_assert_int_eq(err.status, 502);
                ck_assert_ptr_nonnull(err.reason);
        } else
                check_resp(c, r, &resp, &err);
}
END_TEST

START_TEST(test_response_prefixes) {
        const RespCase *c = &resp_cases[_i];
        const HttpLimits lim = HTTP_LIMITS_DEFAULT;
        HttpHeader hdrs[16];
        HttpResponse resp;
        HttpError err;
        bool failed = false;

        for (size_t k = 0; k <= c->len; k++) {
                const char *buf = guard_place(c->data, k);
                err = (HttpError) {};
                ssize_t r = http1_parse_response(buf, k, &lim, c->method, &resp, hdrs, 16, &err);

                if (c->bad) {
                        if (failed)
                                ck_assert_msg(r == -EBADMSG, "%s: prefix %zu: error went away", c->name, k);
                        if (r < 0) {
                                ck_assert_int_eq(r, -EBADMSG);
                                ck_assert_int_eq(err.status, 502);
                                failed = true;
                        } else
                                ck_assert_msg(r == 0, "%s: prefix %zu accepted", c->name, k);
                } else if (k < resp_head_len(c))
                        ck_assert_msg(r == 0, "%s: prefix %zu returned %zd", c->name, k, r);
                else
                        check_resp(c, r, &resp, &err);
        }
        if (c->bad)
                ck_assert(failed);
}
END_TEST

START_TEST(test_response_limits) {
        const HttpLimits lim = { .max_request_line = 20, .max_field_size = 16, .max_head_size = 64, .max_headers = 2 };
        HttpHeader hdrs[8];
        HttpResponse resp;
        HttpError err;
        const char *b;

        b = guard_place("HTTP/1.1 200 A very long reason", 31);
        ck_assert_int_eq(http1_parse_response(b, 31, &lim, HTTP_METHOD_GET, &resp, hdrs, 8, &err), -EBADMSG);
        ck_assert_int_eq(err.status, 502);
        b = guard_place("HTTP/1.1 200 OK\r\nX: 1234567890123456", 36);
        ck_assert_int_eq(http1_parse_response(b, 36, &lim, HTTP_METHOD_GET, &resp, hdrs, 8, &err), -EBADMSG);
        b = guard_place("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC", 31);
        ck_assert_int_eq(http1_parse_response(b, 31, &lim, HTTP_METHOD_GET, &resp, hdrs, 8, &err), -EBADMSG);
        b = guard_place("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n", 31);
        ck_assert_int_eq(http1_parse_response(b, 31, &lim, HTTP_METHOD_GET, &resp, hdrs, 8, &err), 31);
        ck_assert_int_eq(http1_parse_response(b, 31, &lim, HTTP_METHOD_GET, &resp, hdrs, 1, &err), -EBADMSG);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* Helpers */

START_TEST(test_helpers) {
        ck_assert(http1_is_hop_by_hop("Connection", 10));
        ck_assert(http1_is_hop_by_hop("keep-alive", 10));
        ck_assert(http1_is_hop_by_hop("PROXY-CONNECTION", 16));
        ck_assert(http1_is_hop_by_hop("te", 2));
        ck_assert(http1_is_hop_by_hop("Trailer", 7));
        ck_assert(http1_is_hop_by_hop("Transfer-Encoding", 17));
        ck_assert(http1_is_hop_by_hop("Upgrade", 7));
        ck_assert(http1_is_hop_by_hop("Proxy-Authenticate", 18));
        ck_assert(!http1_is_hop_by_hop("Proxy-Authorization", 19));
        ck_assert(!http1_is_hop_by_hop("Host", 4));
        ck_assert(!http1_is_hop_by_hop("Trailers", 8));
        ck_assert(!http1_is_hop_by_hop("T", 1));
        ck_assert(!http1_is_hop_by_hop("Content-Length", 14));

        const HttpHeader h[] = {
                { "Connection", 10, "keep-alive,  X-Foo ", 18 },
                { "X-Foo", 5, "1", 1 },
                { "connection", 10, "Upgrade", 7 },
                { "X-Connection", 12, "X-Bar", 5 },
        };
        ck_assert(http1_connection_lists(h, 4, "x-foo", 5));
        ck_assert(http1_connection_lists(h, 4, "KEEP-ALIVE", 10));
        ck_assert(http1_connection_lists(h, 4, "upgrade", 7));
        ck_assert(!http1_connection_lists(h, 4, "x-bar", 5));
        ck_assert(!http1_connection_lists(h, 4, "x-fo", 4));
        ck_assert(!http1_connection_lists(h, 4, "keep", 4));
        ck_assert(!http1_connection_lists(h, 1, "upgrade", 7));
        ck_assert_int_eq(http1_find_header(h, 4, "X-FOO"), 1);
        ck_assert_int_eq(http1_find_header(h, 4, "connection"), 0);
        ck_assert_int_eq(http1_find_header(h, 4, "x-connectio"), -1);

        ck_assert_int_eq(http1_method_id("GET", 3), HTTP_METHOD_GET);
        ck_assert_int_eq(http1_method_id("HEAD", 4), HTTP_METHOD_HEAD);
        ck_assert_int_eq(http1_method_id("POST", 4), HTTP_METHOD_POST);
        ck_assert_int_eq(http1_method_id("PUT", 3), HTTP_METHOD_PUT);
        ck_assert_int_eq(http1_method_id("DELETE", 6), HTTP_METHOD_DELETE);
        ck_assert_int_eq(http1_method_id("OPTIONS", 7), HTTP_METHOD_OPTIONS);
        ck_assert_int_eq(http1_method_id("CONNECT", 7), HTTP_METHOD_CONNECT);
        ck_assert_int_eq(http1_method_id("TRACE", 5), HTTP_METHOD_TRACE);
        ck_assert_int_eq(http1_method_id("PATCH", 5), HTTP_METHOD_PATCH);
        ck_assert_int_eq(http1_method_id("GETX", 3), HTTP_METHOD_GET);
        ck_assert_int_eq(http1_method_id("GETX", 4), HTTP_METHOD_OTHER);
        ck_assert_int_eq(http1_method_id("get", 3), HTTP_METHOD_OTHER);
        ck_assert_int_eq(http1_method_id("PROPFIND", 8), HTTP_METHOD_OTHER);

        static const int codes[] = { 100, 101, 200, 201, 202, 203, 204, 205, 206, 301, 302, 303, 304, 305, 307,
                                     308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413,
                                     414, 415, 416, 417, 421, 422, 426, 428, 429, 431, 451, 500, 501, 502, 503,
                                     504, 505 };
        for (size_t i = 0; i < ELEMENTSOF(codes); i++)
                ck_assert_msg(http1_status_text(codes[i])[0] != '\0', "no text for %d", codes[i]);
        ck_assert_str_eq(http1_status_text(404), "Not Found");
        ck_assert_str_eq(http1_status_text(502), "Bad Gateway");
        ck_assert_str_eq(http1_status_text(431), "Request Header Fields Too Large");
        ck_assert_str_eq(http1_status_text(299), "");
        ck_assert_str_eq(http1_status_text(-1), "");
}
END_TEST

/* ------------------------------------------------------------------------- */
/* Chunked */

typedef struct ChunkCase {
        const char *name;
        const char *data;
        size_t len;
        bool bad;
        const char *body;     /* expected decoded data (valid cases) */
        size_t body_len;
        size_t consumed;      /* 0: the whole input */
        uint64_t max_overhead; /* 0: default */
        const char *trailers; /* the trailer lines the decoder reports (NULL: none) */
} ChunkCase;

static const ChunkCase chunk_cases[] = {
        { "Q46 size z", D("z\r\nabc\r\n0\r\n\r\n"), .bad = true },
        { "Q48 0x prefix", D("0x1\r\nZ\r\n0\r\n\r\n"), .bad = true },
        { "Q49 leading spaces", D("   1\r\nZ\r\n0\r\n\r\n"), .bad = true },
        { "Q51 bare LF", D("0\n\r\n"), .bad = true },
        { "Q52 data not CRLF-terminated", D("5\r\nAAAAAXX\r\n0\r\n\r\n"), .bad = true },
        { "Q62 body", D("1\r\nZ\r\n0\r\n\r\n"), .body = "Z" },
        { "R07 body", D("0\r\n\r\n"), .body = "" },
        { "several chunks", D("5\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\n\r\n"), .body = "hello 0123456789" },
        { "hex case", D("a\r\n0123456789\r\nB\r\nabcdefghijk\r\n0\r\n\r\n"), .body = "0123456789abcdefghijk" },
        { "leading zeros", D("0003\r\nabc\r\n000\r\n\r\n"), .body = "abc" },
        { "extensions", D("3;a\r\nabc\r\n2;a=b;c=\"d;\\\"e\"\r\nde\r\n1 ; x = y \t;z\r\nf\r\n0;last\r\n\r\n"), .body = "abcdef" },
        { "trailers", D("2\r\nhi\r\n0\r\nX-Sum: 1234\r\nX-Empty:\r\n\r\n"), .body = "hi",
          .trailers = "X-Sum: 1234\r\nX-Empty:\r\n" },
        { "trailers, then more", D("0\r\nA: b\r\n\r\nGET"), .body = "", .consumed = 11, .trailers = "A: b\r\n" },
        { "stops at end", D("2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\n"), .body = "hi", .consumed = 12 },
        { "binary data", D("4\r\n\r\n\x00\n\r\n0\r\n\r\n"), .body = "\r\n\0\n", .body_len = 4 },
        { "overhead within limit", D("1\r\nA\r\n1\r\nB\r\n0\r\n\r\n"), .body = "AB", .max_overhead = 15 },
        { "overhead over limit", D("1\r\nA\r\n1\r\nB\r\n0\r\n\r\n"), .bad = true, .max_overhead = 14 },
        { "16 hex digits", D("0000000000000001\r\nA\r\n0\r\n\r\n"), .bad = true },
        { "size overflow", D("10000000000000000\r\nA\r\n0\r\n\r\n"), .bad = true },
        { "empty size", D("\r\nA\r\n0\r\n\r\n"), .bad = true },
        { "plus sign", D("+1\r\nA\r\n0\r\n\r\n"), .bad = true },
        { "minus sign", D("-1\r\nA\r\n0\r\n\r\n"), .bad = true },
        { "trailing space no ext", D("1 \r\nA\r\n0\r\n\r\n"), .bad = true },
        { "empty ext name", D("1;\r\nA\r\n0\r\n\r\n"), .bad = true },
        { "ext missing value", D("1;a=\r\nA\r\n0\r\n\r\n"), .bad = true },
        { "ext bad char", D("1;a@b\r\nA\r\n0\r\n\r\n"), .bad = true },
        { "ext unterminated quote CR", D("1;a=\"x\r\nA\r\n0\r\n\r\n"), .bad = true },
        { "bare CR in size line", D("1\rA\r\n0\r\n\r\n"), .bad = true },
        { "data LF only", D("1\r\nA\n0\r\n\r\n"), .bad = true },
        { "data no CRLF", D("1\r\nA0\r\n\r\n"), .bad = true },
        { "trailer obs-fold", D("0\r\nX: a\r\n b\r\n\r\n"), .bad = true },
        { "trailer space before colon", D("0\r\nX : a\r\n\r\n"), .bad = true },
        { "trailer no colon", D("0\r\nX\r\n\r\n"), .bad = true },
        { "trailer NUL", D("0\r\nX: a\x00\r\n\r\n"), .bad = true },
        { "final bare LF", D("0\r\n\n"), .bad = true },
        { "trailer bare LF", D("0\r\nX: a\n\r\n"), .bad = true },
};

/* Feed c->data as pieces ending at cuts[0..n) (last cut == len), the way a connection
 * would: the unconsumed rest stays and the next piece is appended. Returns true if the
 * decoder failed; otherwise fills out/out_len/consumed/done. */
static char chunk_trailers[256];
static size_t chunk_trailers_len;

static bool chunk_feed(const ChunkCase *c, const size_t *cuts, size_t ncuts, char *out, size_t *out_len,
                       size_t *ret_consumed, bool *ret_done) {
        ChunkedDecoder d;
        size_t pos = 0;

        chunk_trailers_len = 0;
        chunked_decoder_init(&d, c->max_overhead ?: 16384);
        *out_len = 0;
        for (size_t i = 0; i < ncuts; i++) {
                size_t avail = cuts[i];
                for (;;) {
                        const char *in = guard_place(c->data + pos, avail - pos);
                        size_t off = 99, dl = 99;
                        ssize_t r = chunked_decode(&d, in, avail - pos, &off, &dl);
                        if (r < 0) {
                                ck_assert_int_eq(r, -EBADMSG);
                                ck_assert(!d.done);
                                /* A failed decoder stays failed. */
                                ck_assert_int_eq(chunked_decode(&d, in, avail - pos, &off, &dl), -EBADMSG);
                                return true;
                        }
                        ck_assert_uint_le((size_t) r, avail - pos);
                        ck_assert(d.trailer_len == 0 || d.trailer_off + d.trailer_len <= (size_t) r);
                        ck_assert(d.trailer_len == 0 || dl == 0);
                        memcpy(chunk_trailers + chunk_trailers_len, in + d.trailer_off, d.trailer_len);
                        chunk_trailers_len += d.trailer_len;
                        if (dl > 0) {
                                ck_assert_uint_eq(off + dl, (size_t) r);
                                memcpy(out + *out_len, in + off, dl);
                                *out_len += dl;
                        } else
                                ck_assert_uint_eq(dl, 0);
                        pos += (size_t) r;
                        if (r == 0 || d.done)
                                break;
                }
                if (d.done)
                        break;
                ck_assert_uint_eq(pos, avail); /* everything offered was consumed */
        }
        *ret_consumed = pos;
        *ret_done = d.done;
        return false;
}

static void chunk_check(const ChunkCase *c, const size_t *cuts, size_t ncuts, const char *how) {
        char out[256];
        size_t out_len = 0, consumed = 0;
        bool done = false;
        bool failed = chunk_feed(c, cuts, ncuts, out, &out_len, &consumed, &done);

        if (c->bad) {
                ck_assert_msg(failed, "%s (%s): accepted", c->name, how);
                return;
        }
        ck_assert_msg(!failed, "%s (%s): rejected", c->name, how);
        ck_assert_msg(done, "%s (%s): not done", c->name, how);
        ck_assert_uint_eq(consumed, c->consumed ?: c->len);
        size_t want = c->body_len ?: strlen(c->body);
        ck_assert_msg(out_len == want && memcmp(out, c->body, want) == 0, "%s (%s): body '%.*s'", c->name, how,
                      (int) out_len, out);
        const char *t = c->trailers ?: "";
        ck_assert_msg(chunk_trailers_len == strlen(t) && memcmp(chunk_trailers, t, chunk_trailers_len) == 0,
                      "%s (%s): trailers '%.*s'", c->name, how, (int) chunk_trailers_len, chunk_trailers);
}

START_TEST(test_chunked_whole) {
        const ChunkCase *c = &chunk_cases[_i];
        size_t cut = c->len;
        chunk_check(c, &cut, 1, "whole");
}
END_TEST

START_TEST(test_chunked_splits) {
        const ChunkCase *c = &chunk_cases[_i];
        for (size_t k = 0; k <= c->len; k++) {
                size_t cuts[2] = { k, c->len };
                chunk_check(c, cuts, 2, "split");
        }
}
END_TEST

START_TEST(test_chunked_bytewise) {
        const ChunkCase *c = &chunk_cases[_i];
        size_t cuts[256];
        ck_assert_uint_le(c->len, ELEMENTSOF(cuts));
        for (size_t k = 0; k < c->len; k++)
                cuts[k] = k + 1;
        chunk_check(c, cuts, c->len, "bytewise");
}
END_TEST

START_TEST(test_chunked_large_size) {
        ChunkedDecoder d;
        size_t off, dl;
        static const char in[] = "fffffffffffffff\r\nabc";

        chunked_decoder_init(&d, 16384);
        /* 15 hex digits accepted; data flows. */
        ck_assert_int_eq(chunked_decode(&d, in, 10, &off, &dl), 10);
        ck_assert_uint_eq(dl, 0);
        ck_assert_int_eq(chunked_decode(&d, in + 10, sizeof(in) - 11, &off, &dl), 10);
        ck_assert_uint_eq(off, 7);
        ck_assert_uint_eq(dl, 3);
        ck_assert_uint_eq(d.remaining, UINT64_C(0xfffffffffffffff) - 3);
        ck_assert(!d.done);
        ck_assert_int_eq(chunked_decode(&d, in, 0, &off, &dl), 0);

        /* One data run per call: framing, then data, then the next call. */
        static const char two[] = "2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n";
        chunked_decoder_init(&d, 16384);
        ck_assert_int_eq(chunked_decode(&d, two, sizeof(two) - 1, &off, &dl), 5);
        ck_assert_uint_eq(off, 3);
        ck_assert_uint_eq(dl, 2);
        ck_assert_int_eq(chunked_decode(&d, two + 5, sizeof(two) - 6, &off, &dl), 8);
        ck_assert_uint_eq(off, 5);
        ck_assert_uint_eq(dl, 3);
        ck_assert_int_eq(chunked_decode(&d, two + 13, sizeof(two) - 14, &off, &dl), 7);
        ck_assert_uint_eq(dl, 0);
        ck_assert(d.done);
        ck_assert_uint_eq(d.overhead, sizeof(two) - 1 - 5);
        ck_assert_int_eq(chunked_decode(&d, "x", 1, &off, &dl), 0);

        /* Overhead cap applies to extensions that never end. */
        chunked_decoder_init(&d, 100);
        char ext[200];
        memset(ext, 'a', sizeof(ext));
        memcpy(ext, "1;", 2);
        ck_assert_int_eq(chunked_decode(&d, ext, sizeof(ext), &off, &dl), -EBADMSG);
}
END_TEST

START_TEST(test_upgrade_tokens) {
        char *const ws[] = { (char *) "websocket" };
        char *const two[] = { (char *) "websocket", (char *) "x-custom" };
        char out[128];

        ck_assert_uint_eq(http1_upgrade_filter("websocket", 9, ws, 1, out), 1);
        ck_assert_str_eq(out, "websocket");
        ck_assert_uint_eq(http1_upgrade_filter("WebSocket/13", 12, ws, 1, out), 1);
        ck_assert_str_eq(out, "WebSocket/13");
        ck_assert_uint_eq(http1_upgrade_filter("h2c", 3, ws, 1, out), 0);
        ck_assert_str_eq(out, "");
        ck_assert_uint_eq(http1_upgrade_filter("h2c, websocket", 14, ws, 1, out), 1);
        ck_assert_str_eq(out, "websocket");
        ck_assert_uint_eq(http1_upgrade_filter("websocketx, web socket, /1, websocket/", 38, ws, 1, out), 0);
        ck_assert_uint_eq(http1_upgrade_filter(" x-custom ,websocket", 20, two, 2, out), 2);
        ck_assert_str_eq(out, "x-custom,websocket");
        ck_assert_uint_eq(http1_upgrade_filter("", 0, ws, 1, out), 0);

        ck_assert(http1_upgrade_matches("websocket", 9, "websocket", 9));
        ck_assert(http1_upgrade_matches("WEBSOCKET", 9, "websocket/13", 12));
        ck_assert(http1_upgrade_matches("websocket/13", 12, "websocket/13", 12));
        ck_assert(!http1_upgrade_matches("websocket/14", 12, "websocket/13", 12));
        ck_assert(http1_upgrade_matches("websocket/13", 12, "websocket", 9));
        ck_assert(!http1_upgrade_matches("h2c", 3, "websocket", 9));
        ck_assert(!http1_upgrade_matches("websocket, h2c", 14, "websocket", 9));
        ck_assert(!http1_upgrade_matches("", 0, "websocket", 9));
        ck_assert(http1_upgrade_matches("x-custom", 8, "x-custom,websocket", 18));

        ck_assert(http1_token_valid("h2c", 3));
        ck_assert(!http1_token_valid("h2 c", 4));
        ck_assert(!http1_token_valid("", 0));
        ck_assert(http1_name_has_underscore("X_Remote_User", 13));
        ck_assert(!http1_name_has_underscore("X-Remote-User", 13));
}
END_TEST

static Suite *http1_suite(void) {
        Suite *s = suite_create("http1");
        TCase *tc;

        tc = tcase_create("request");
        tcase_add_checked_fixture(tc, guard_setup, guard_teardown);
        tcase_add_loop_test(tc, test_request_whole, 0, ELEMENTSOF(req_cases));
        tcase_add_loop_test(tc, test_request_prefixes, 0, ELEMENTSOF(req_cases));
        tcase_add_test(tc, test_request_pipelined);
        tcase_add_test(tc, test_request_headers_content);
        tcase_add_test(tc, test_request_q63_long_target);
        tcase_add_test(tc, test_request_q64_long_header);
        tcase_add_test(tc, test_request_too_many_headers_default);
        tcase_add_test(tc, test_request_every_byte);
        tcase_add_test(tc, test_request_limits_every_offset);
        suite_add_tcase(s, tc);

        tc = tcase_create("response");
        tcase_add_checked_fixture(tc, guard_setup, guard_teardown);
        tcase_add_loop_test(tc, test_response_whole, 0, ELEMENTSOF(resp_cases));
        tcase_add_loop_test(tc, test_response_prefixes, 0, ELEMENTSOF(resp_cases));
        tcase_add_test(tc, test_response_limits);
        tcase_add_test(tc, test_response_every_byte);
        suite_add_tcase(s, tc);

        tc = tcase_create("helpers");
        tcase_add_test(tc, test_helpers);
        tcase_add_test(tc, test_upgrade_tokens);
        suite_add_tcase(s, tc);

        tc = tcase_create("chunked");
        tcase_add_checked_fixture(tc, guard_setup, guard_teardown);
        tcase_add_loop_test(tc, test_chunked_whole, 0, ELEMENTSOF(chunk_cases));
        tcase_add_loop_test(tc, test_chunked_splits, 0, ELEMENTSOF(chunk_cases));
        tcase_add_loop_test(tc, test_chunked_bytewise, 0, ELEMENTSOF(chunk_cases));
        tcase_add_test(tc, test_chunked_large_size);
        suite_add_tcase(s, tc);

        return s;
}

int main(void) {
        SRunner *sr = srunner_create(http1_suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
