/* SPDX-License-Identifier: MIT */
/*
 * HTTP/2 response heads and trailers (see h2.c): proxyd's HTTP/1 serializer builds the head
 * (so hide_header, add_header and the hop-by-hop rules are the same for every client), and
 * its lines become the fields of a HEADERS frame.
 */
#include "h2-internal.h"

/* ---------------------------------------------------------------------------------------- */
/* Response heads: serialized as HTTP/1 would be (the same filtering: hide_header, hop-by-hop
 * fields, the Connection field's names), then split into lower-case h2 fields. */

#define NV_STACK 32 /* fields of a head converted without an allocation */

static bool h2_connection_specific(const char *name, size_t len) {
        switch (len) {
        case 2:
                return memcmp(name, "te", 2) == 0;
        case 7:
                return memcmp(name, "upgrade", 7) == 0;
        case 10:
                return memcmp(name, "connection", 10) == 0 || memcmp(name, "keep-alive", 10) == 0;
        case 16:
                return memcmp(name, "proxy-connection", 16) == 0;
        case 17:
                return memcmp(name, "transfer-encoding", 17) == 0;
        default:
                return false;
        }
}

/* The "name: value\r\n" lines in p[0..end) (modified in place: names in lower case) as
 * fields nva[n..max), connection-specific ones (and, for trailers, those that may not be
 * trailers) left out. Returns the new n. */
static size_t h2_fields_of_lines(char *p, char *end, nghttp2_nv *nva, size_t n, size_t max, bool trailers) {
        while (p < end && n < max) {
                char *eol = memchr(p, '\n', (size_t) (end - p));
                if (!eol)
                        break;
                char *colon = memchr(p, ':', (size_t) (eol - p));
                if (colon) {
                        char *v = colon + 1, *ve = eol;
                        while (v < ve && (*v == ' ' || *v == '\t'))
                                v++;
                        while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                                ve--;
                        for (char *c = p; c < colon; c++)
                                *c = ascii_tolower(*c);
                        size_t nl = (size_t) (colon - p);
                        bool framing = trailers && ((nl == 14 && memcmp(p, "content-length", 14) == 0) ||
                                                    (nl == 4 && memcmp(p, "host", 4) == 0) ||
                                                    (nl == 7 && memcmp(p, "trailer", 7) == 0));
                        if (!h2_connection_specific(p, nl) && !framing)
                                nva[n++] = (nghttp2_nv){ (uint8_t *) p, (uint8_t *) v, nl, (size_t) (ve - v),
                                                         NGHTTP2_NV_FLAG_NONE };
                }
                p = eol + 1;
        }
        return n;
}

static size_t h2_count_lines(const char *p, size_t len) {
        size_t n = 0;
        for (size_t i = 0; i < len; i++)
                n += p[i] == '\n';
        return n;
}

/* Submit the head in head[0..len) (an HTTP/1 response head, modified in place) for st, with
 * a body when body is true. */
int h2_submit_head(H2Stream *st, char *head, size_t len, int status, bool body, bool interim) {
        H2Conn *h = st->h;
        size_t max = 1 + h2_count_lines(head, len);
        char status_text[3];
        nghttp2_nv stack[NV_STACK];

        nghttp2_nv *nva = max <= NV_STACK ? stack : calloc(max, sizeof(nghttp2_nv));
        if (!nva)
                return -ENOMEM;
        status %= 1000;
        status_text[0] = (char) ('0' + status / 100);
        status_text[1] = (char) ('0' + status / 10 % 10);
        status_text[2] = (char) ('0' + status % 10);
        size_t n = 0;
        nva[n++] = (nghttp2_nv){ (uint8_t *) ":status", (uint8_t *) status_text, 7, 3, NGHTTP2_NV_FLAG_NONE };

        char *p = memchr(head, '\n', len), *end = head + len;
        p = p ? p + 1 : end; /* past the status line */
        n = h2_fields_of_lines(p, end, nva, n, max, false);
        nghttp2_data_provider dp = { .source.ptr = st, .read_callback = h2_on_data_read };
        /* an interim head is a HEADERS frame of its own, before the final one */
        int r = interim ? nghttp2_submit_headers(h->ng, NGHTTP2_FLAG_NONE, st->id, NULL, nva, n, NULL)
                        : nghttp2_submit_response(h->ng, st->id, nva, n, body ? &dp : NULL);
        if (nva != stack)
                free(nva);
        if (r < 0)
                return -EIO;
        if (interim)
                return 0;
        st->resp_submitted = true;
        st->resp_body = body;
        return 0;
}

/* The response's trailer lines (kept in st->trailers) as a HEADERS frame that ends the
 * stream. 0, or -errno (then the stream ends without them). */
int h2_submit_trailers(H2Stream *st) {
        size_t max = h2_count_lines(buf_head(&st->trailers), buf_len(&st->trailers));
        nghttp2_nv *nva = calloc(max, sizeof(nghttp2_nv));
        if (!nva)
                return -ENOMEM;
        char *p = (char *) buf_head(&st->trailers);
        size_t n = h2_fields_of_lines(p, p + buf_len(&st->trailers), nva, 0, max, true);
        int r = n > 0 ? nghttp2_submit_trailer(st->h->ng, st->id, nva, n) : -1;
        free(nva);
        return r == 0 ? 0 : -EIO;
}
