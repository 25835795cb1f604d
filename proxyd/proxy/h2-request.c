/* SPDX-License-Identifier: MIT */
/*
 * An HTTP/2 stream's request: its decoded header block checked and turned into the
 * HttpRequest an exchange runs (":method", ":path" as the target, ":authority" as Host,
 * cookies joined). See h2.c.
 */
#include "h2-internal.h"

/* ---------------------------------------------------------------------------------------- */
/* A stream's request: the header block as an HttpRequest, then the exchange */

typedef struct Field {
        const char *name, *value;
        size_t name_len, value_len;
} Field;

static bool field_is(const Field *f, const char *name) {
        return f->name_len == strlen(name) && memcmp(f->name, name, f->name_len) == 0;
}

/* The next field of the block at *off, false at the end. */
static bool field_next(const Buf *b, size_t *off, Field *f) {
        uint32_t lens[2];
        if (*off + sizeof(lens) > buf_len(b))
                return false;
        memcpy(lens, buf_head(b) + *off, sizeof(lens));
        f->name = buf_head(b) + *off + sizeof(lens);
        f->name_len = lens[0];
        f->value = f->name + lens[0];
        f->value_len = lens[1];
        *off += sizeof(lens) + lens[0] + lens[1];
        return true;
}

/* A request-target as an HTTP/1 request line can carry it: visible ASCII only. */
static bool path_valid(const char *p, size_t n) {
        if (n == 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) p[i] <= 0x20 || (unsigned char) p[i] >= 0x7f)
                        return false;
        return true;
}

static int h2_reject(Exchange *ex, const Field *method, const Field *path, int status, const char *why) {
        if (method)
                ex->method_id = http1_method_id(method->value, method->value_len);
        if (!ex->method)
                ex->method = method ? strndup(method->value, method->value_len) : strdup("-");
        if (!ex->target)
                ex->target = path ? strndup(path->value, path->value_len) : strdup("-");
        if (!ex->method || !ex->target)
                return -ENOMEM;
        exchange_reject(ex, status, why, 0);
        return 0;
}

/* The body: none when END_STREAM came without DATA; else Content-Length (nghttp2 checks it
 * against the DATA received); else all of it when END_STREAM came already (in the same read
 * as the HEADERS); else of unknown length (chunked upstream, which also carries trailers).
 * -EINVAL: an invalid Content-Length. */
static int h2_request_body(const H2Stream *st, HttpRequest *req, const Field *cl) {
        bool trailers = buf_len(&st->req_trailers) > 0;

        if (st->ws || (st->end_in && st->body_received == 0 && !trailers))
                req->body = HTTP_BODY_NONE; /* (a WebSocket's DATA is the tunnel's) */
        else if (cl) {
                uint64_t v = 0;
                for (size_t i = 0; i < cl->value_len; i++) {
                        if (cl->value[i] < '0' || cl->value[i] > '9' || v > UINT64_MAX / 10 - 10)
                                return -EINVAL;
                        v = v * 10 + (uint64_t) (cl->value[i] - '0');
                }
                req->body = HTTP_BODY_LENGTH;
                req->content_length = v;
        } else if (st->end_in && !trailers) {
                req->body = HTTP_BODY_LENGTH;
                req->content_length = st->body_received;
        } else
                req->body = HTTP_BODY_CHUNKED;
        return 0;
}

int h2_stream_begin(H2Stream *st) {
        H2Conn *h = st->h;
        Field f, method = {}, path = {}, authority = {}, scheme = {}, host = {}, cl = {}, expect = {}, protocol = {};
        bool has_method = false, has_path = false, has_authority = false, has_scheme = false, has_host = false,
             has_cl = false, has_expect = false, has_protocol = false;
        size_t off = 0, n_regular = 0, cookie_len = 0, n_cookies = 0;
        int r;

        /* after a reload, new requests run under the new configuration, as on HTTP/1 */
        st->gen = worker_gen_ref(h->s.worker->gen);
        st->ex = exchange_new(&h->s, st->gen, st);
        if (!st->ex)
                return -ENOMEM;
        Exchange *ex = st->ex;
        ex->protocol = "HTTP/2.0";
        ex->bytes_received = st->field_bytes;
        st->last_data = h2_now(h);

        while (field_next(&st->fields, &off, &f)) {
                if (f.name_len > 0 && f.name[0] == ':') {
                        Field *slot = field_is(&f, ":method")      ? (has_method = true, &method)
                                      : field_is(&f, ":path")      ? (has_path = true, &path)
                                      : field_is(&f, ":authority") ? (has_authority = true, &authority)
                                      : field_is(&f, ":scheme")    ? (has_scheme = true, &scheme)
                                      : field_is(&f, ":protocol")  ? (has_protocol = true, &protocol)
                                                                   : NULL;
                        if (slot)
                                *slot = f;
                        continue;
                }
                if (field_is(&f, "cookie")) {
                        cookie_len += f.value_len + 2;
                        n_cookies++;
                        continue;
                }
                if (field_is(&f, "sec-websocket-key"))
                        continue; /* proxyd makes its own (h2-ws.c) */
                if (field_is(&f, "te") && memmem(f.value, f.value_len, "trailers", 8))
                        st->te_trailers = true;
                if (field_is(&f, "host"))
                        host = f, has_host = true;
                else if (field_is(&f, "content-length"))
                        cl = f, has_cl = true;
                else if (field_is(&f, "expect"))
                        expect = f, has_expect = true;
                n_regular++;
        }

        const Field *m = has_method ? &method : NULL, *pa = has_path ? &path : NULL;
        if (st->fields_too_big) {
                log_info("%s: HTTP/2 header block of stream %d decodes to more than http2_max_header_list_size",
                         h2_text(h), st->id);
                return h2_reject(ex, m, pa, 431, "header list too large");
        }
        if (n_regular + (n_cookies > 0) + 1 > h->def->limits.max_headers)
                return h2_reject(ex, m, pa, 431, "too many header fields");
        bool connect = has_method && method.value_len == 7 && memcmp(method.value, "CONNECT", 7) == 0;
        if (connect && has_protocol) {
                /* extended CONNECT (RFC 8441): nghttp2 checked :scheme, :path, :authority */
                if (protocol.value_len != 9 || strncasecmp(protocol.value, "websocket", 9) != 0)
                        return h2_reject(ex, m, pa, 501, "unsupported :protocol");
                if (!st->end_in)
                        has_cl = false; /* the tunnel's bytes are no request body */
        } else if (!has_method || connect) {
                ex->reason = "CONNECT is not supported";
                return h2_reject(ex, m, pa, 405, "CONNECT is not supported");
        }
        if (!has_path || !path_valid(path.value, path.value_len))
                return h2_reject(ex, m, pa, 400, "invalid :path");
        if (has_scheme && !((scheme.value_len == 4 && memcmp(scheme.value, "http", 4) == 0) ||
                            (scheme.value_len == 5 && memcmp(scheme.value, "https", 5) == 0)))
                return h2_reject(ex, m, pa, 400, "invalid :scheme");
        if (has_authority && has_host &&
            (authority.value_len != host.value_len || strncasecmp(authority.value, host.value, host.value_len) != 0))
                return h2_reject(ex, m, pa, 400, ":authority and Host disagree");
        if (has_expect) {
                if (expect.value_len != 12 || strncasecmp(expect.value, "100-continue", 12) != 0)
                        return h2_reject(ex, m, pa, 417, "unsupported expectation");
        }

        HttpHeader *headers = worker_header_scratch(h->s.worker, n_regular + 4);
        _cleanup_free_ char *cookies = n_cookies > 0 ? malloc(cookie_len) : NULL;
        if (!headers || (n_cookies > 0 && !cookies))
                return -ENOMEM;
        HttpRequest *req = &ex->req;
        *req = (HttpRequest){
                .method = method.value,
                .method_len = method.value_len,
                .method_id = http1_method_id(method.value, method.value_len),
                .target = path.value,
                .target_len = path.value_len,
                .version_minor = 1,
                .headers = headers,
                .keep_alive = true,
                .expect_continue = has_expect,
                .host_index = -1,
                .upgrade_index = -1,
        };
        size_t n = 0, clen = 0;
        if (has_authority || has_host) {
                const Field *a = has_authority ? &authority : &host;
                req->host_index = (int) n;
                headers[n++] = (HttpHeader){ "Host", 4, a->value, a->value_len };
        }
        off = 0;
        while (field_next(&st->fields, &off, &f)) {
                if (f.name_len > 0 && f.name[0] == ':')
                        continue;
                if (field_is(&f, "cookie")) {
                        if (clen > 0) {
                                memcpy(cookies + clen, "; ", 2);
                                clen += 2;
                        }
                        memcpy(cookies + clen, f.value, f.value_len);
                        clen += f.value_len;
                        continue;
                }
                if (field_is(&f, "host") || field_is(&f, "sec-websocket-key"))
                        continue;
                headers[n++] = (HttpHeader){ f.name, f.name_len, f.value, f.value_len };
        }
        if (n_cookies > 0)
                headers[n++] = (HttpHeader){ "cookie", 6, cookies, clen };
        if (connect && (r = h2_ws_request(st, req, headers, &n)) < 0)
                return r;
        req->n_headers = n;

        if (h2_request_body(st, req, has_cl ? &cl : NULL) < 0)
                return h2_reject(ex, m, pa, 400, "invalid Content-Length");
        ex->req_body_read = buf_len(&st->body);

        r = exchange_begin(ex);
        req->headers = NULL;
        return r;
}

