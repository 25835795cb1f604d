/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Private to the HTTP/1 parser files (http1.c, http1-fields.c, http1-chunked.c): the byte
 * classes of RFC 9110/9112, the word-at-a-time and SSE2 scanners that skip runs of ordinary
 * bytes, and the small list and error helpers. Everything is static inline: the scanners must
 * inline into the parser's loops.
 */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "http1.h"
#include "util.h"

/* For the parts of a hot loop split out only to be read: inlined whatever the heuristics say. */
#define _always_inline_ inline __attribute__((always_inline))

/* ------------------------------------------------------------------------- */
/* Character classes */

enum {
        C_TCHAR = 1 << 0,  /* RFC 9110 5.6.2 tchar */
        C_VALUE = 1 << 1,  /* field-vchar / SP / obs-text: a field value byte other than HTAB */
        C_TARGET = 1 << 2, /* visible ASCII: allowed raw in a request-target */
        C_HOST = 1 << 3,   /* unreserved / sub-delims (RFC 3986 reg-name without pct-encoded) */
        C_DIGIT = 1 << 4,
        C_HEX = 1 << 5,
};

#define CC_ALPHA(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define CC_DIGIT(c) ((c) >= '0' && (c) <= '9')
#define CC_TCHAR(c)                                                                                     \
        (CC_ALPHA(c) || CC_DIGIT(c) || (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' ||          \
         (c) == '&' || (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' ||           \
         (c) == '^' || (c) == '_' || (c) == '`' || (c) == '|' || (c) == '~')
#define CC_UNRESERVED(c) (CC_ALPHA(c) || CC_DIGIT(c) || (c) == '-' || (c) == '.' || (c) == '_' || (c) == '~')
#define CC_SUB_DELIM(c)                                                                                 \
        ((c) == '!' || (c) == '$' || (c) == '&' || (c) == '\'' || (c) == '(' || (c) == ')' ||           \
         (c) == '*' || (c) == '+' || (c) == ',' || (c) == ';' || (c) == '=')
#define CC_HEX(c) (CC_DIGIT(c) || ((c) >= 'a' && (c) <= 'f') || ((c) >= 'A' && (c) <= 'F'))
#define CC(c)                                                                                           \
        ((CC_TCHAR(c) ? C_TCHAR : 0) | ((c) >= 0x20 && (c) != 0x7f ? C_VALUE : 0) |                     \
         ((c) >= 0x21 && (c) <= 0x7e ? C_TARGET : 0) | (CC_UNRESERVED(c) || CC_SUB_DELIM(c) ? C_HOST : 0) | \
         (CC_DIGIT(c) ? C_DIGIT : 0) | (CC_HEX(c) ? C_HEX : 0))
#define CC4(c) CC(c), CC((c) + 1), CC((c) + 2), CC((c) + 3)
#define CC16(c) CC4(c), CC4((c) + 4), CC4((c) + 8), CC4((c) + 12)
#define CC64(c) CC16(c), CC16((c) + 16), CC16((c) + 32), CC16((c) + 48)

static const uint8_t char_class[256] = { CC64(0), CC64(64), CC64(128), CC64(192) };

static inline bool has_class(unsigned char c, unsigned cls) {
        return char_class[c] & cls;
}

static inline bool is_digit(unsigned char c) {
        return has_class(c, C_DIGIT);
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

static inline bool is_tchar(unsigned char c) {
        return has_class(c, C_TCHAR);
}

static inline bool is_ws(unsigned char c) {
        return c == ' ' || c == '\t';
}

/* field-vchar / SP / HTAB (RFC 9110 5.5): VCHAR, obs-text, SP, HTAB. */
static inline bool is_field_char(unsigned char c) {
        return has_class(c, C_VALUE) || c == '\t';
}

/* ------------------------------------------------------------------------- */
/* Run skipping: each returns the offset of the first byte in [p, end) outside the
 * run, or end. They never read at or beyond end. */

#define REP8(b) (UINT64_C(0x0101010101010101) * (b))

static inline uint64_t load8(const char *s) {
        uint64_t x;
        memcpy(&x, s, sizeof(x));
        return x;
}

static inline uint32_t load4(const char *s) {
        uint32_t x;
        memcpy(&x, s, sizeof(x));
        return x;
}

static inline size_t skip_class(const char *buf, size_t p, size_t end, unsigned cls) {
        while (p + 4 <= end) {
                if (!has_class((unsigned char) buf[p], cls))
                        return p;
                if (!has_class((unsigned char) buf[p + 1], cls))
                        return p + 1;
                if (!has_class((unsigned char) buf[p + 2], cls))
                        return p + 2;
                if (!has_class((unsigned char) buf[p + 3], cls))
                        return p + 3;
                p += 4;
        }
        while (p < end && has_class((unsigned char) buf[p], cls))
                p++;
        return p;
}

/*
 * Word-at-a-time scanning. Each test below sets the top bit of every byte lane that
 * ends the run. A borrow only ever travels from a flagged lane to higher lanes, so the
 * lowest flagged lane is exact: on a little-endian machine it is the first such byte
 * in memory. Elsewhere the table finds that byte.
 */
#define HI8 REP8(0x80)

/* Lanes of x holding a byte < 0x20 (bytes >= 0x80 never flag) or 0x7f. */
static inline uint64_t word_not_value(uint64_t x) {
        uint64_t y = x ^ REP8(0x7f);
        return (((x - REP8(0x20)) & ~x) | ((y - REP8(0x01)) & ~y)) & HI8;
}

/* Lanes of x holding a byte outside 0x21..0x7e. */
static inline uint64_t word_not_target(uint64_t x) {
        uint64_t y = x ^ REP8(0x7f);
        return (((x - REP8(0x21)) & ~x) | ((y - REP8(0x01)) & ~y) | x) & HI8;
}

/*
 * Lanes of x holding a byte other than a letter, digit or '-' (what nearly every field
 * name is made of). Per lane and without carries between lanes: for y < 0x80,
 * y + (0x80 - m) has its top bit set iff y >= m.
 */
static inline uint64_t word_not_name(uint64_t x) {
        uint64_t y = x & REP8(0x7f), l = y | REP8(0x20);
        uint64_t alpha = (l + REP8(0x80 - 'a')) & ~(l + REP8(0x7f - 'z'));
        uint64_t digit = (y + REP8(0x80 - '0')) & ~(y + REP8(0x7f - '9'));
        uint64_t dash = ~((y ^ REP8('-')) + REP8(0x7f));
        return ~((alpha | digit | dash) & ~x) & HI8;
}

/* The first byte of buf[p..end) outside cls, given the non-zero lane mask m of the
 * word at p (see above). */
static inline size_t word_stop(const char *buf, size_t p, size_t end, uint64_t m, unsigned cls) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        (void) buf, (void) end, (void) cls;
        return p + ((size_t) __builtin_ctzll(m) >> 3);
#else
        (void) m;
        return skip_class(buf, p, end, cls);
#endif
}

#if defined(__SSE2__)
/*
 * Sixteen bytes at a time where SSE2 is there (every x86-64). Each returns a bit mask of
 * the lanes that end the run. Signed compares put bytes >= 0x80 below every bound, so
 * they fail every range test; for values they are obs-text and allowed.
 */
static inline __m128i load16(const char *s) {
        return _mm_loadu_si128((const __m128i *) (const void *) s);
}

static inline unsigned vec_not_value(__m128i x) {
        __m128i ge20 = _mm_cmpeq_epi8(_mm_max_epu8(x, _mm_set1_epi8(0x20)), x);
        __m128i del = _mm_cmpeq_epi8(x, _mm_set1_epi8(0x7f));
        return (unsigned) _mm_movemask_epi8(_mm_andnot_si128(del, ge20)) ^ 0xffffu;
}

static inline unsigned vec_not_target(__m128i x) {
        __m128i ok = _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8(0x20)),
                                   _mm_cmplt_epi8(x, _mm_set1_epi8(0x7f)));
        return (unsigned) _mm_movemask_epi8(ok) ^ 0xffffu;
}

static inline unsigned vec_not_name(__m128i x) {
        __m128i l = _mm_or_si128(x, _mm_set1_epi8(0x20));
        __m128i alpha = _mm_and_si128(_mm_cmpgt_epi8(l, _mm_set1_epi8('a' - 1)),
                                      _mm_cmplt_epi8(l, _mm_set1_epi8('z' + 1)));
        __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8('0' - 1)),
                                      _mm_cmplt_epi8(x, _mm_set1_epi8('9' + 1)));
        __m128i dash = _mm_cmpeq_epi8(x, _mm_set1_epi8('-'));
        return (unsigned) _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(alpha, digit), dash)) ^ 0xffffu;
}
#endif

/* Bytes of class C_VALUE (>= 0x20 and not DEL). */
static inline size_t skip_value(const char *buf, size_t p, size_t end) {
#if defined(__SSE2__)
        for (; p + 16 <= end; p += 16) {
                unsigned m = vec_not_value(load16(buf + p));
                if (m)
                        return p + (size_t) __builtin_ctz(m);
        }
#endif
        for (; p + 8 <= end; p += 8) {
                uint64_t m = word_not_value(load8(buf + p));
                if (m)
                        return word_stop(buf, p, end, m, C_VALUE);
        }
        return skip_class(buf, p, end, C_VALUE);
}

/* Bytes of class C_TARGET (0x21..0x7e). */
static inline size_t skip_target(const char *buf, size_t p, size_t end) {
#if defined(__SSE2__)
        for (; p + 16 <= end; p += 16) {
                unsigned m = vec_not_target(load16(buf + p));
                if (m)
                        return p + (size_t) __builtin_ctz(m);
        }
#endif
        for (; p + 8 <= end; p += 8) {
                uint64_t m = word_not_target(load8(buf + p));
                if (m)
                        return word_stop(buf, p, end, m, C_TARGET);
        }
        return skip_class(buf, p, end, C_TARGET);
}

/* tchar bytes: letters, digits and '-' by the vector or word, other tchars by the table. */
static inline size_t skip_name(const char *buf, size_t p, size_t end) {
#if defined(__SSE2__)
        while (p + 16 <= end) {
                unsigned m = vec_not_name(load16(buf + p));
                if (!m) {
                        p += 16;
                        continue;
                }
                p += (size_t) __builtin_ctz(m);
                if (!is_tchar((unsigned char) buf[p]))
                        return p;
                p++;
        }
#endif
        while (p + 8 <= end) {
                uint64_t m = word_not_name(load8(buf + p));
                if (!m) {
                        p += 8;
                        continue;
                }
                p = word_stop(buf, p, end, m, C_TCHAR);
                if (!is_tchar((unsigned char) buf[p]))
                        return p;
                p++;
        }
        return skip_class(buf, p, end, C_TCHAR);
}

/*
 * Case-insensitive compare of validated field bytes (tchar in names; field-vchar, SP or
 * HTAB in values) with a literal of lowercase letters, digits and '-', all of which have
 * bit 0x20 set. On such input (c | 0x20) == l holds only for c == l or, for a letter,
 * its uppercase form: the other byte that maps to '-' or a digit is a control
 * character, which cannot occur. Words are compared eight or four bytes at a time.
 */
static inline bool eq_lower(const char *s, size_t n, const char *lit, size_t lit_len) {
        if (n != lit_len)
                return false;
        if (n >= 8) {
                for (size_t i = 0; i + 8 < n; i += 8)
                        if ((load8(s + i) | REP8(0x20)) != load8(lit + i))
                                return false;
                return (load8(s + n - 8) | REP8(0x20)) == load8(lit + n - 8);
        }
        if (n >= 4)
                return ((load4(s) | 0x20202020u) == load4(lit)) &&
                       ((load4(s + n - 4) | 0x20202020u) == load4(lit + n - 4));
        for (size_t i = 0; i < n; i++)
                if (((unsigned char) s[i] | 0x20) != (unsigned char) lit[i])
                        return false;
        return true;
}

#define EQ_LOWER(s, n, lit) eq_lower((s), (n), "" lit, sizeof(lit) - 1)

/* ------------------------------------------------------------------------- */
/* Small helpers */

static inline ssize_t fail(HttpError *err, int status, const char *reason, size_t offset) {
        err->status = status;
        err->reason = reason;
        err->offset = offset;
        return -EBADMSG;
}

static inline void trim_ows(const char **s, size_t *n) {
        while (*n > 0 && is_ws((unsigned char) (*s)[0])) {
                (*s)++;
                (*n)--;
        }
        while (*n > 0 && is_ws((unsigned char) (*s)[*n - 1]))
                (*n)--;
}

/* Iterate the elements of a comma-separated list (RFC 9110 5.6.1). Returns false at
 * the end. Elements are OWS-trimmed and may be empty. */
static inline bool list_next(const char **cursor, const char *end, const char **ret, size_t *ret_len) {
        const char *p = *cursor, *e;

        if (!p || p > end)
                return false;
        e = p;
        while (e < end && *e != ',')
                e++;
        *ret = p;
        *ret_len = (size_t) (e - p);
        trim_ows(ret, ret_len);
        *cursor = e < end ? e + 1 : end + 1;
        return true;
}
