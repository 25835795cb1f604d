/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Pure, allocation-free, zero-copy HTTP/1.x parser (RFC 9112), strict.
 *
 * The head parsers are re-entrant over a growing buffer: call them again with the
 * same buffer (grown) until they return > 0 (head complete: number of bytes the
 * head occupies, including the final empty line), 0 (incomplete: need more
 * bytes), or < 0 (-EBADMSG: malformed; *err says why and which status to send).
 * All strings in the results point into the caller's buffer.
 *
 * The parser never logs and never allocates. Every limit is in HttpLimits.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct HttpHeader {
        const char *name;
        size_t name_len;
        const char *value; /* OWS stripped on both sides */
        size_t value_len;
} HttpHeader;

typedef struct HttpLimits {
        size_t max_request_line; /* request line or status line; exceeded: 414 (request) */
        size_t max_field_size;   /* one header line; exceeded: 431 */
        size_t max_head_size;    /* whole head incl. request line; exceeded: 431 */
        size_t max_headers;      /* number of header fields; exceeded: 431 */
        size_t max_chunk_overhead; /* chunk-size lines + extensions + trailers per body; exceeded: error */
} HttpLimits;

#define HTTP_LIMITS_DEFAULT                                      \
        ((HttpLimits){                                           \
                .max_request_line = 8192,                        \
                .max_field_size = 8192,                          \
                .max_head_size = 32768,                          \
                .max_headers = 100,                              \
                .max_chunk_overhead = 16384,                     \
        })

typedef enum HttpMethod {
        HTTP_METHOD_OTHER,
        HTTP_METHOD_GET,
        HTTP_METHOD_HEAD,
        HTTP_METHOD_POST,
        HTTP_METHOD_PUT,
        HTTP_METHOD_DELETE,
        HTTP_METHOD_OPTIONS,
        HTTP_METHOD_CONNECT,
        HTTP_METHOD_TRACE,
        HTTP_METHOD_PATCH,
} HttpMethod;

typedef enum HttpBodyKind {
        HTTP_BODY_NONE,        /* no body at all */
        HTTP_BODY_LENGTH,      /* content_length bytes (may be 0) */
        HTTP_BODY_CHUNKED,     /* chunked transfer coding (the only coding accepted) */
        HTTP_BODY_UNTIL_CLOSE, /* responses only: read until the connection closes */
} HttpBodyKind;

/* Why a message was rejected. status: the HTTP status a client should get
 * (400, 414, 431, 501, 505 for requests; 502 is implied for responses). */
typedef struct HttpError {
        int status;
        const char *reason; /* static string, e.g. "duplicate Content-Length" */
        size_t offset;      /* byte offset in the buffer where the problem was found */
} HttpError;

/* Flags derived from the Connection header (all tokens, case-insensitive). */
enum {
        HTTP_CONN_CLOSE = 1 << 0,
        HTTP_CONN_KEEP_ALIVE = 1 << 1,
        HTTP_CONN_UPGRADE = 1 << 2,
};

typedef struct HttpRequest {
        const char *method;
        size_t method_len;
        HttpMethod method_id;
        const char *target; /* request-target exactly as received */
        size_t target_len;
        int version_minor; /* HTTP/1.<minor>: 0 or 1 */

        HttpHeader *headers; /* caller's array, filled with n_headers entries in order */
        size_t n_headers;

        /* Derived and validated framing (RFC 9112 section 6). */
        HttpBodyKind body;      /* NONE, LENGTH or CHUNKED for requests */
        uint64_t content_length; /* valid when body == HTTP_BODY_LENGTH */
        unsigned connection;    /* HTTP_CONN_* flags */
        bool keep_alive;        /* persistence after this message per version + Connection */
        bool expect_continue;   /* Expect: 100-continue (other expectations: 417 via err) */
        int host_index;         /* index into headers of the single Host field, -1 if none */
        int upgrade_index;      /* index of Upgrade field, -1 if none */
} HttpRequest;

typedef struct HttpResponse {
        int version_minor;
        int status; /* 100..999 */
        const char *reason;
        size_t reason_len;

        HttpHeader *headers;
        size_t n_headers;

        HttpBodyKind body;
        uint64_t content_length;
        unsigned connection;
        bool keep_alive; /* the upstream connection may be reused after this response */
} HttpResponse;

/*
 * Request head. Rejects (with err->status):
 *  400: syntax (method token, request-target chars, header name/value chars, obs-fold,
 *       bare CR/LF, whitespace before ':' or before the first header, missing or duplicate
 *       Host in HTTP/1.1, invalid/duplicate/conflicting Content-Length, Content-Length with
 *       Transfer-Encoding, Transfer-Encoding in HTTP/1.0, duplicated chunked, chunked not last)
 *  414: request line longer than max_request_line
 *  431: a field longer than max_field_size, more than max_headers, head over max_head_size
 *  501: transfer codings other than chunked
 *  505: HTTP major version other than 1 (well-formed "HTTP/d.d")
 * Limits are enforced on incomplete input too (a 70 KB request line fails as soon as it
 * exceeds the limit, not when it ends).
 */
ssize_t http1_parse_request(const char *buf, size_t len, const HttpLimits *limits,
                            HttpRequest *req, HttpHeader *headers, size_t max_headers,
                            HttpError *err);

/*
 * Response head. request_method decides bodiless responses (HEAD; 2xx to CONNECT);
 * 1xx, 204 and 304 have no body. Invalid framing (bad/duplicate-conflicting CL, unknown
 * or repeated transfer codings, CL with TE) returns -EBADMSG. No length: UNTIL_CLOSE.
 */
ssize_t http1_parse_response(const char *buf, size_t len, const HttpLimits *limits,
                             HttpMethod request_method, HttpResponse *resp,
                             HttpHeader *headers, size_t max_headers, HttpError *err);

/* Find a header by case-insensitive name; returns index or -1. */
int http1_find_header(const HttpHeader *headers, size_t n, const char *name);

/* True if the header name is hop-by-hop (RFC 9110 7.6.1: Connection, Keep-Alive,
 * Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-Authenticate... see .c). */
bool http1_is_hop_by_hop(const char *name, size_t len);

/* True if `name` is listed as a token in any Connection header among headers. */
bool http1_connection_lists(const HttpHeader *headers, size_t n, const char *name, size_t len);

/* True if s[0..n) is a non-empty token (RFC 9110 5.6.2). */
bool http1_token_valid(const char *s, size_t n);

/*
 * Upgrade (RFC 9110 7.8): a comma list of protocol-name ["/" protocol-version].
 * http1_upgrade_filter() copies into out (at least len + 1 bytes) the protocols of
 * value[0..len) whose name is in allowed (lower case, compared case-insensitively), joined
 * by ","; it returns how many it kept (0: nothing may be upgraded to). Malformed elements
 * are dropped.
 * http1_upgrade_matches() is true when a 101's Upgrade value names at least one protocol
 * and every one of them is among `offered` (what was sent upstream); a version, when the
 * 101 gives one, must match too.
 */
size_t http1_upgrade_filter(const char *value, size_t len, char *const *allowed, size_t n_allowed, char *out);
bool http1_upgrade_matches(const char *value, size_t len, const char *offered, size_t offered_len);

/* True if a header field name contains '_' (CGI-style backends fold it into '-'). */
bool http1_name_has_underscore(const char *name, size_t len);
/* Remove the fields for which drop(field, userdata) is true, in place; the indices the parser
 * derived (host_index, upgrade_index) follow. */
void http1_request_drop_fields(HttpRequest *req, bool (*drop)(const HttpHeader *h, void *userdata),
                               void *userdata);

/* The next "name=value" pair named `name` (case-sensitive) in a query ("a=1&b=2", sep '&') or
 * a Cookie field ("a=1; b=2", sep ';'), from *pos on: true with the value (a pair without
 * "=" has an empty one) and *pos after the pair, false when there is none left. */
bool http1_next_pair(const char *s, size_t n, char sep, const char *name, size_t name_len, size_t *pos,
                     const char **ret_value, size_t *ret_len);

HttpMethod http1_method_id(const char *m, size_t len);
const char *http1_status_text(int status); /* "Not Found"; "" for unknown */

/*
 * Incremental chunked-body decoder (RFC 9112 7.1). Chunk extensions are validated and
 * dropped; trailer fields are validated and dropped. Strict: hex digits only (no 0x, no
 * leading whitespace), CRLF only, size overflow rejected. Framing beyond max_chunk_overhead
 * bytes is rejected only while it exceeds the body data carried so far.
 */
typedef struct ChunkedDecoder {
        int state;
        uint64_t remaining; /* bytes left in the current chunk's data */
        uint64_t overhead;  /* framing bytes seen so far */
        uint64_t data;      /* data bytes seen so far */
        uint64_t max_overhead;
        size_t line_len;    /* length of the current size/trailer line so far */
        bool done;          /* last-chunk and trailer section consumed */
        /* of the last call: in[trailer_off .. trailer_off + trailer_len) were trailer field
         * lines ("name: value\r\n", checked), for a caller that passes trailers on */
        size_t trailer_off, trailer_len;
} ChunkedDecoder;

void chunked_decoder_init(ChunkedDecoder *d, uint64_t max_overhead);

/*
 * Feed in[0..len). Returns the number of bytes consumed (>= 0) or -EBADMSG.
 * On return, if *ret_data_len > 0, the consumed bytes ended with a run of body data
 * in[*ret_data_off .. *ret_data_off + *ret_data_len) that the caller must pass on.
 * Each call yields at most one data run, so call in a loop until it consumes 0 bytes
 * or d->done. Bytes after the end of the body are never consumed.
 */
ssize_t chunked_decode(ChunkedDecoder *d, const char *in, size_t len,
                       size_t *ret_data_off, size_t *ret_data_len);
