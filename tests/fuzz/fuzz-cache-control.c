/* SPDX-License-Identifier: MIT */
/*
 * cache_control_parse, http_date_parse and the Vary helpers on any bytes:
 *  - every delta-seconds value is unset or in 0..CC_DELTA_MAX;
 *  - directives only add up: the flags of "A" are among those of "A, B" and of "B, A";
 *  - a parsed date formats back to an IMF-fixdate that parses to the same time;
 *  - Vary names are lower case, sorted and unique, and the request string is stable.
 */

#include <errno.h>
#include <string.h>

#include "buf.h"
#include "cache-control.h"
#include "cache-policy.h"
#include "fuzz.h"

static void check_ranges(const CacheControl *cc) {
        const int64_t v[] = { cc->max_age, cc->s_maxage, cc->max_stale, cc->min_fresh, cc->stale_while_revalidate,
                              cc->stale_if_error };
        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
                FUZZ_CHECK(v[i] == CC_UNSET || (v[i] >= 0 && v[i] <= CC_DELTA_MAX), "value %zu: %lld", i,
                           (long long) v[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *s = (const char *) data;
        size_t cut = size > 0 ? data[0] % (size + 1) : 0;
        CacheControl a, b, ab;

        cache_control_init(&a);
        cache_control_parse(&a, s, cut);
        check_ranges(&a);
        cache_control_init(&b);
        cache_control_parse(&b, s + cut, size - cut);
        check_ranges(&b);
        /* the two parts as two fields */
        cache_control_init(&ab);
        cache_control_parse(&ab, s, cut);
        cache_control_parse(&ab, s + cut, size - cut);
        check_ranges(&ab);
        unsigned known = ~(unsigned) CC_INVALID;
        FUZZ_CHECK(((a.flags | b.flags) & known) == (ab.flags & known), "flags %x | %x != %x", a.flags, b.flags,
                   ab.flags);

        time_t t;
        if (http_date_parse(s, size, &t) == 0 && t >= 0 && t < (time_t) 253402300800) {
                char buf[64];
                time_t t2;
                http_date_format(t, buf, sizeof(buf));
                FUZZ_CHECK(http_date_parse(buf, strlen(buf), &t2) == 0 && t2 == t, "date %s does not round-trip",
                           buf);
        }

        HttpHeader h[2] = {
                { "Vary", 4, s, cut },
                { "vary", 4, s + cut, size - cut },
        };
        Buf names = {}, v1 = {}, v2 = {};
        int r = cache_vary_names(h, 2, &names);
        FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENOMEM, "vary names: %d", r);
        if (r == 0 && buf_append(&names, "", 1) == 0) {
                const char *n = buf_head(&names);
                for (const char *p = n; *p; p++)
                        FUZZ_CHECK(!(*p >= 'A' && *p <= 'Z'), "upper case in %s", n);
                const char *prev = NULL;
                size_t prev_len = 0;
                for (const char *p = n; *p;) {
                        const char *c = strchr(p, ',');
                        size_t l = c ? (size_t) (c - p) : strlen(p);
                        FUZZ_CHECK(l > 0, "empty name in %s", n);
                        if (prev) {
                                int cmp = strncmp(prev, p, MIN(prev_len, l));
                                FUZZ_CHECK(cmp < 0 || (cmp == 0 && prev_len < l), "not sorted/unique: %s", n);
                        }
                        prev = p;
                        prev_len = l;
                        p = c ? c + 1 : p + l;
                }
                HttpHeader req[1] = { { "Accept", 6, s, size } };
                FUZZ_CHECK(cache_vary_values(n, req, 1, &v1) == 0 && cache_vary_values(n, req, 1, &v2) == 0,
                           "vary values failed");
                FUZZ_CHECK(buf_len(&v1) == buf_len(&v2) &&
                                   (buf_len(&v1) == 0 || memcmp(buf_head(&v1), buf_head(&v2), buf_len(&v1)) == 0),
                           "unstable");
        }
        buf_free(&names);
        buf_free(&v1);
        buf_free(&v2);
        return 0;
}
