/* SPDX-License-Identifier: MIT */
#pragma once

/* Independent checks of parsed HTTP/1.x heads, shared by the request and response targets.
 * Everything here re-derives from the raw bytes what the parser claims. */

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "http1.h"

static inline bool fz_is_tchar(unsigned char c) {
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
                return true;
        return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static inline bool fz_is_ws(unsigned char c) {
        return c == ' ' || c == '\t';
}

/* field-vchar / SP / HTAB / obs-text */
static inline bool fz_is_field_char(unsigned char c) {
        return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Calls fn(token, len, userdata) for every non-empty element of a comma-separated list,
 * OWS trimmed. */
static inline void fz_list_tokens(const char *v, size_t n, void (*fn)(const char *, size_t, void *), void *u) {
        size_t i = 0;
        while (i <= n) {
                size_t s = i;
                while (i < n && v[i] != ',')
                        i++;
                size_t e = i;
                while (s < e && fz_is_ws((unsigned char) v[s]))
                        s++;
                while (e > s && fz_is_ws((unsigned char) v[e - 1]))
                        e--;
                if (e > s)
                        fn(v + s, e - s, u);
                i++;
        }
}

static inline void fz_conn_token(const char *t, size_t n, void *u) {
        unsigned *flags = u;
        if (fuzz_eq_ci(t, n, "close"))
                *flags |= HTTP_CONN_CLOSE;
        else if (fuzz_eq_ci(t, n, "keep-alive"))
                *flags |= HTTP_CONN_KEEP_ALIVE;
        else if (fuzz_eq_ci(t, n, "upgrade"))
                *flags |= HTTP_CONN_UPGRADE;
}

static inline unsigned fz_connection_flags(const HttpHeader *h, size_t n) {
        unsigned flags = 0;
        for (size_t i = 0; i < n; i++)
                if (fuzz_eq_ci(h[i].name, h[i].name_len, "connection"))
                        fz_list_tokens(h[i].value, h[i].value_len, fz_conn_token, &flags);
        return flags;
}

static inline size_t fz_count(const HttpHeader *h, size_t n, const char *name) {
        size_t c = 0;
        for (size_t i = 0; i < n; i++)
                if (fuzz_eq_ci(h[i].name, h[i].name_len, name))
                        c++;
        return c;
}

typedef struct FzCodings {
        size_t n;
        size_t n_chunked;
        bool last_chunked;
} FzCodings;

static inline void fz_coding_token(const char *t, size_t n, void *u) {
        FzCodings *c = u;
        c->n++;
        c->last_chunked = fuzz_eq_ci(t, n, "chunked");
        if (c->last_chunked)
                c->n_chunked++;
}

/* Transfer codings over every Transfer-Encoding field, in order. */
static inline FzCodings fz_codings(const HttpHeader *h, size_t n) {
        FzCodings c = {};
        for (size_t i = 0; i < n; i++)
                if (fuzz_eq_ci(h[i].name, h[i].name_len, "transfer-encoding"))
                        fz_list_tokens(h[i].value, h[i].value_len, fz_coding_token, &c);
        return c;
}

/* 1*DIGIT without overflow past INT64_MAX. */
static inline bool fz_parse_digits(const char *s, size_t n, uint64_t *ret) {
        uint64_t v = 0;
        if (n == 0)
                return false;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                if (v > (UINT64_C(0x7fffffffffffffff) - (uint64_t) (s[i] - '0')) / 10)
                        return false;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        *ret = v;
        return true;
}

typedef struct FzLength {
        bool ok;
        uint64_t value;
        size_t n;
} FzLength;

static inline void fz_length_token(const char *t, size_t n, void *u) {
        FzLength *l = u;
        uint64_t v = 0;
        if (!fz_parse_digits(t, n, &v) || (l->n > 0 && v != l->value))
                l->ok = false;
        if (l->n == 0)
                l->value = v;
        l->n++;
}

/*
 * Field lines start at buf[pos]: checks that the parsed headers are exactly the field lines
 * found there, each within the field-size limit, followed by the empty line that ends the
 * head at buf[head_len]. Every pointer lies inside buf[0..head_len).
 */
static inline void fz_check_fields(const char *buf, size_t head_len, size_t pos, const HttpHeader *h, size_t n,
                                   const HttpLimits *lim) {
        for (size_t i = 0; i < n; i++) {
                size_t name_off = (size_t) (h[i].name - buf), value_off = (size_t) (h[i].value - buf);

                FUZZ_CHECK(h[i].name >= buf && name_off + h[i].name_len <= head_len, "header %zu name outside", i);
                FUZZ_CHECK(h[i].value >= buf && value_off + h[i].value_len <= head_len, "header %zu value outside",
                           i);
                FUZZ_CHECK(name_off == pos, "header %zu starts at %zu, expected %zu", i, name_off, pos);
                FUZZ_CHECK(h[i].name_len > 0, "header %zu empty name", i);
                for (size_t k = 0; k < h[i].name_len; k++)
                        FUZZ_CHECK(fz_is_tchar((unsigned char) h[i].name[k]), "header %zu name byte 0x%02x", i,
                                   (unsigned char) h[i].name[k]);
                size_t p = name_off + h[i].name_len;
                FUZZ_CHECK(buf[p] == ':', "header %zu: no colon after name", i);
                p++;
                while (p < value_off) {
                        FUZZ_CHECK(fz_is_ws((unsigned char) buf[p]), "header %zu: junk before value", i);
                        p++;
                }
                FUZZ_CHECK(p == value_off, "header %zu: value starts before the colon", i);
                for (size_t k = 0; k < h[i].value_len; k++)
                        FUZZ_CHECK(fz_is_field_char((unsigned char) h[i].value[k]), "header %zu value byte 0x%02x",
                                   i, (unsigned char) h[i].value[k]);
                if (h[i].value_len > 0) {
                        FUZZ_CHECK(!fz_is_ws((unsigned char) h[i].value[0]), "header %zu value leading OWS", i);
                        FUZZ_CHECK(!fz_is_ws((unsigned char) h[i].value[h[i].value_len - 1]),
                                   "header %zu value trailing OWS", i);
                }
                p = value_off + h[i].value_len;
                while (p < head_len && fz_is_ws((unsigned char) buf[p]))
                        p++;
                FUZZ_CHECK(p + 1 < head_len && buf[p] == '\r' && buf[p + 1] == '\n', "header %zu: no CRLF", i);
                FUZZ_CHECK(p - name_off <= lim->max_field_size, "header %zu: field line %zu > limit %zu", i,
                           p - name_off, lim->max_field_size);
                pos = p + 2;
        }
        FUZZ_CHECK(pos + 2 == head_len && buf[pos] == '\r' && buf[pos + 1] == '\n',
                   "head does not end with an empty line right after the fields (pos %zu, head %zu)", pos,
                   head_len);
}

/* Decode a chunked body from in[0..len) in one go. Returns bytes consumed when the body
 * is complete, -1 when it is incomplete or invalid. */
static inline ssize_t fz_skip_chunked(const char *in, size_t len, uint64_t max_overhead) {
        ChunkedDecoder d;
        size_t pos = 0;

        chunked_decoder_init(&d, max_overhead);
        while (!d.done) {
                size_t off, dl;
                ssize_t r = chunked_decode(&d, in + pos, len - pos, &off, &dl);
                if (r < 0)
                        return -1;
                FUZZ_CHECK((size_t) r <= len - pos, "chunked_decode consumed %zd of %zu", r, len - pos);
                if (dl > 0)
                        FUZZ_CHECK(off + dl == (size_t) r, "data run not at the end of the consumed bytes");
                if (r == 0)
                        break;
                pos += (size_t) r;
        }
        return d.done ? (ssize_t) pos : -1;
}
