/* SPDX-License-Identifier: MIT */
/* Cache-Control directives and HTTP dates (cache-control.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cache-control.h"
#include "util.h"

void cache_control_init(CacheControl *cc) {
        *cc = (CacheControl){ .max_age = CC_UNSET, .s_maxage = CC_UNSET, .max_stale = CC_UNSET,
                              .min_fresh = CC_UNSET, .stale_while_revalidate = CC_UNSET,
                              .stale_if_error = CC_UNSET };
}

static bool is_ows(char c) {
        return c == ' ' || c == '\t';
}

/* delta-seconds: 1*DIGIT, clamped to CC_DELTA_MAX; -1 when not digits */
static int64_t parse_delta(const char *s, size_t n) {
        int64_t v = 0;

        if (n == 0)
                return -1;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -1;
                if (v < CC_DELTA_MAX)
                        v = v * 10 + (s[i] - '0');
        }
        return MIN(v, CC_DELTA_MAX);
}

typedef struct DeltaDirective {
        const char *name;
        size_t offset;
} DeltaDirective;

static const DeltaDirective deltas[] = {
        { "max-age", offsetof(CacheControl, max_age) },
        { "s-maxage", offsetof(CacheControl, s_maxage) },
        { "max-stale", offsetof(CacheControl, max_stale) },
        { "min-fresh", offsetof(CacheControl, min_fresh) },
        { "stale-while-revalidate", offsetof(CacheControl, stale_while_revalidate) },
        { "stale-if-error", offsetof(CacheControl, stale_if_error) },
};

static const struct {
        const char *name;
        unsigned flag;
} flags[] = {
        { "no-store", CC_NO_STORE },           { "no-cache", CC_NO_CACHE },
        { "private", CC_PRIVATE },             { "public", CC_PUBLIC },
        { "must-revalidate", CC_MUST_REVALIDATE }, { "proxy-revalidate", CC_PROXY_REVALIDATE },
        { "only-if-cached", CC_ONLY_IF_CACHED }, { "no-transform", CC_NO_TRANSFORM },
        { "must-understand", CC_MUST_UNDERSTAND }, { "immutable", CC_IMMUTABLE },
};

static void directive(CacheControl *cc, const char *name, size_t nl, const char *val, size_t vl, bool has_val) {
        for (size_t i = 0; i < ELEMENTSOF(flags); i++)
                if (memcaseeq(name, nl, flags[i].name)) {
                        cc->flags |= flags[i].flag;
                        return;
                }
        for (size_t i = 0; i < ELEMENTSOF(deltas); i++) {
                if (!memcaseeq(name, nl, deltas[i].name))
                        continue;
                int64_t *f = (int64_t *) ((char *) cc + deltas[i].offset);
                int64_t v = has_val ? parse_delta(val, vl) : -1;
                if (!has_val && deltas[i].offset == offsetof(CacheControl, max_stale))
                        v = CC_DELTA_MAX; /* max-stale alone: any staleness */
                if (v < 0 || *f != CC_UNSET) {
                        /* invalid or repeated: the smallest reading, and say so */
                        cc->flags |= CC_INVALID;
                        v = v < 0 ? 0 : MIN(v, *f);
                }
                *f = v;
                return;
        }
        /* an extension: ignored */
}

void cache_control_parse(CacheControl *cc, const char *v, size_t n) {
        size_t i = 0;

        while (i < n) {
                while (i < n && (is_ows(v[i]) || v[i] == ','))
                        i++;
                size_t ns = i;
                while (i < n && v[i] != '=' && v[i] != ',' && !is_ows(v[i]))
                        i++;
                size_t nl = i - ns;
                while (i < n && is_ows(v[i]))
                        i++;
                const char *val = NULL;
                size_t vl = 0;
                bool has_val = false, bad = false;
                if (i < n && v[i] == '=') {
                        i++;
                        while (i < n && is_ows(v[i]))
                                i++;
                        has_val = true;
                        if (i < n && v[i] == '"') {
                                /* quoted-string: the value is what is inside (escapes kept;
                                 * no directive of ours has a value that needs them) */
                                i++;
                                val = v + i;
                                while (i < n && v[i] != '"') {
                                        if (v[i] == '\\' && i + 1 < n)
                                                i++;
                                        i++;
                                }
                                vl = (size_t) (v + i - val);
                                if (i < n)
                                        i++; /* the closing quote */
                                else
                                        bad = true;
                        } else {
                                val = v + i;
                                while (i < n && v[i] != ',' && !is_ows(v[i]))
                                        i++;
                                vl = (size_t) (v + i - val);
                        }
                        while (i < n && is_ows(v[i]))
                                i++;
                }
                if (i < n && v[i] != ',') {
                        /* junk after the element: skip it */
                        bad = true;
                        while (i < n && v[i] != ',')
                                i++;
                }
                if (nl > 0 && !bad)
                        directive(cc, v + ns, nl, val, vl, has_val);
                else if (nl > 0)
                        cc->flags |= CC_INVALID;
        }
}

void cache_control_from_headers(CacheControl *cc, const HttpHeader *h, size_t n) {
        cache_control_init(cc);
        for (size_t i = 0; i < n; i++)
                if (memcaseeq(h[i].name, h[i].name_len, "Cache-Control"))
                        cache_control_parse(cc, h[i].value, h[i].value_len);
}

/* ---- HTTP-date ---- */

static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
static const char *const wdays[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };

static int month_of(const char *s) {
        for (int i = 0; i < 12; i++)
                if (strncmp(s, months[i], 3) == 0)
                        return i;
        return -1;
}

static bool digits(const char *s, size_t n, int *ret) {
        int v = 0;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (s[i] - '0');
        }
        *ret = v;
        return true;
}

/* "HH:MM:SS" */
static bool clock_of(const char *s, int *h, int *m, int *sec) {
        return s[2] == ':' && s[5] == ':' && digits(s, 2, h) && digits(s + 3, 2, m) && digits(s + 6, 2, sec) &&
               *h < 24 && *m < 60 && *sec <= 60;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
        /* proleptic Gregorian, m 1..12 */
        y -= m <= 2;
        int64_t era = (y >= 0 ? y : y - 399) / 400;
        unsigned yoe = (unsigned) (y - era * 400);
        unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + (int64_t) doe - 719468;
}

int http_date_parse(const char *s, size_t n, time_t *ret) {
        char b[64];
        int day, mon, year, h, m, sec;

        if (n >= sizeof(b) || n < 24)
                return -EINVAL;
        memcpy(b, s, n);
        b[n] = 0;
        const char *comma = memchr(b, ',', n);
        if (n == 29 && comma == b + 3) {
                /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
                if (b[4] != ' ' || b[7] != ' ' || b[11] != ' ' || b[16] != ' ' || strcmp(b + 25, " GMT") != 0 ||
                    !digits(b + 5, 2, &day) || (mon = month_of(b + 8)) < 0 || !digits(b + 12, 4, &year) ||
                    !clock_of(b + 17, &h, &m, &sec))
                        return -EINVAL;
        } else if (comma && comma > b + 5 && (size_t) (comma - b) <= 9) {
                /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
                const char *p = comma + 1;
                if (strlen(p) != 23 || p[0] != ' ' || p[3] != '-' || p[7] != '-' || p[10] != ' ' ||
                    strcmp(p + 19, " GMT") != 0 || !digits(p + 1, 2, &day) || (mon = month_of(p + 4)) < 0 ||
                    !digits(p + 8, 2, &year) || !clock_of(p + 11, &h, &m, &sec))
                        return -EINVAL;
                /* RFC 9110 5.6.7: a two-digit year more than 50 years ahead is in the past */
                year += year < 70 ? 2000 : 1900;
        } else if (n == 24 && !comma) {
                /* asctime: "Sun Nov  6 08:49:37 1994" */
                if (b[3] != ' ' || b[7] != ' ' || b[10] != ' ' || b[19] != ' ' || (mon = month_of(b + 4)) < 0 ||
                    !digits(b + 8 + (b[8] == ' '), b[8] == ' ' ? 1 : 2, &day) || !clock_of(b + 11, &h, &m, &sec) ||
                    !digits(b + 20, 4, &year))
                        return -EINVAL;
        } else
                return -EINVAL;
        if (day < 1 || day > 31 || year < 1900)
                return -EINVAL;
        int64_t days = days_from_civil(year, (unsigned) mon + 1, (unsigned) day);
        *ret = (time_t) (days * 86400 + h * 3600 + m * 60 + MIN(sec, 59));
        return 0;
}

const char *http_date_format(time_t t, char *buf, size_t size) {
        struct tm tm;
        gmtime_r(&t, &tm);
        snprintf(buf, size, "%s, %02d %s %04d %02d:%02d:%02d GMT", wdays[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
                 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        return buf;
}

bool http_list_has(const char *v, size_t n, const char *token) {
        size_t i = 0;
        while (i < n) {
                while (i < n && (is_ows(v[i]) || v[i] == ','))
                        i++;
                size_t s = i;
                while (i < n && v[i] != ',')
                        i++;
                size_t e = i;
                while (e > s && is_ows(v[e - 1]))
                        e--;
                if (e > s && memcaseeq(v + s, e - s, token))
                        return true;
        }
        return false;
}

/* ---- cache_valid ---- */

int cache_valid_parse(const char *s, int *codes, size_t max_codes, size_t *ret_n, bool *ret_any,
                      uint64_t *ret_usec) {
        char buf[256];
        size_t n = 0;
        bool any = false;
        char *last = NULL, *save = NULL;

        if (strlen(s) >= sizeof(buf))
                return -EINVAL;
        strcpy(buf, s);
        char *words[34];
        size_t k = 0;
        for (char *w = strtok_r(buf, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
                if (k == ELEMENTSOF(words))
                        return -EINVAL;
                words[k++] = w;
        }
        if (k < 2)
                return -EINVAL;
        last = words[k - 1];
        for (size_t i = 0; i + 1 < k; i++) {
                uint64_t v;
                if (streq(words[i], "any")) {
                        any = true;
                        continue;
                }
                if (parse_uint64(words[i], strlen(words[i]), &v) < 0 || v < 200 || v > 599 || n == max_codes)
                        return -EINVAL;
                codes[n++] = (int) v;
        }
        if (parse_duration(last, ret_usec) < 0)
                return -EINVAL;
        *ret_n = n;
        *ret_any = any;
        return 0;
}
