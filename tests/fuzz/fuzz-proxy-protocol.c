/* SPDX-License-Identifier: MIT */
/*
 * proxy_header_parse, on any input:
 *  - returns -EINVAL (with a reason), 0, or a length within the input and the version's bound;
 *  - is incremental: every prefix of a complete header is "need more" (0);
 *  - a parsed header with addresses is written again (same version) and parses back to the
 *    same addresses.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proxy-protocol.h"

static void same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
        FUZZ_CHECK(a->ss_family == b->ss_family, "family %d != %d", a->ss_family, b->ss_family);
        size_t n = a->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        FUZZ_CHECK(memcmp(a, b, n) == 0, "addresses differ");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint8_t *buf = malloc(size ? size : 1); /* exact size: over-reads are caught */
        const char *err = NULL;
        ProxyHeader h, h2;

        if (!buf)
                return 0;
        memcpy(buf, data, size);
        ssize_t n = proxy_header_parse(buf, size, &h, &err);
        FUZZ_CHECK(n >= -EINVAL, "returned %zd", n);
        if (n < 0)
                FUZZ_CHECK(n == -EINVAL && err && *err, "error without a reason");
        if (n > 0) {
                FUZZ_CHECK((size_t) n <= size, "length %zd beyond the input", n);
                FUZZ_CHECK(h.version == 1 || h.version == 2, "version %d", h.version);
                FUZZ_CHECK((size_t) n <= (h.version == 1 ? PROXY_V1_MAX : PROXY_V2_MAX), "header too long");
                for (size_t k = 0; k < (size_t) n; k++)
                        FUZZ_CHECK(proxy_header_parse(buf, k, &h2, &err) == 0, "prefix %zu of %zd is not 0", k, n);
                if (h.has_addr) {
                        uint8_t out[PROXY_V1_MAX + 64];
                        ssize_t w = proxy_header_write(h.version, (struct sockaddr *) &h.src,
                                                       (struct sockaddr *) &h.dst, out, sizeof(out));
                        FUZZ_CHECK(w > 0, "cannot write the header again: %zd", w);
                        FUZZ_CHECK(proxy_header_parse(out, (size_t) w, &h2, &err) == w, "written header does not parse");
                        FUZZ_CHECK(h2.has_addr, "written header lost its addresses");
                        same_addr(&h.src, &h2.src);
                        same_addr(&h.dst, &h2.dst);
                }
        }
        free(buf);
        return 0;
}
