/* SPDX-License-Identifier: MIT */
/*
 * uri_normalize and uri_rewrite. Input: byte 0 picks a proxy_pass URI, byte 1 the length of
 * the matched location prefix, the rest is the request-target.
 *
 * uri_normalize, for any target:
 *  - agrees with a straightforward reference (decode, split on '/', resolve "." and "..");
 *  - a result starts with '/', has no NUL, no "//", no "/./" or "/../" segment, does not
 *    end in "/." or "/..", and is a fixed point when it has nothing left to decode;
 *  - args are exactly what follows the first '?' up to a '#'.
 * uri_rewrite, for targets the request parser accepts (what the daemon passes on):
 *  - output = replacement + escaped remainder [+ '?' args], only bytes 0x21..0x7e;
 *  - the escaped remainder decodes back to the remainder;
 *  - with a prefix and a replacement that both end in '/', normalizing the output gives
 *    the normalized replacement followed by the remainder: nothing escapes the replacement.
 */

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "http1.h"
#include "uri-rewrite.h"

static const char *const replacements[] = {
        "/", "/app/", "/app", "/v1/api/", "/%41b/", "/a?x=1&", "/x.y/", "/a/b",
};

static int unhex(unsigned char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Percent-decode s[0..n) into out; -1 on a bad escape or a decoded NUL. */
static ssize_t decode(const char *s, size_t n, char *out) {
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (c == '%') {
                        if (n - i < 3 || unhex((unsigned char) s[i + 1]) < 0 || unhex((unsigned char) s[i + 2]) < 0)
                                return -1;
                        c = (char) (unhex((unsigned char) s[i + 1]) << 4 | unhex((unsigned char) s[i + 2]));
                        i += 2;
                }
                if (c == '\0')
                        return -1;
                out[o++] = c;
        }
        return (ssize_t) o;
}

/* Reference normalization of a path (no query) into out (room for n + 1 bytes). */
static ssize_t ref_normalize(const char *path, size_t n, char *out) {
        char *dec = malloc(n + 1);
        size_t *seg_off = malloc((n + 1) * sizeof(size_t)), *seg_len = malloc((n + 1) * sizeof(size_t));
        size_t depth = 0, o = 0;
        ssize_t dl, ret = -1;
        bool trailing = false;

        if (!dec || !seg_off || !seg_len || n == 0 || path[0] != '/')
                goto out;
        dl = decode(path, n, dec);
        if (dl < 0)
                goto out;
        for (size_t i = 1; i <= (size_t) dl;) {
                size_t s = i;
                while (i < (size_t) dl && dec[i] != '/')
                        i++;
                size_t len = i - s;
                bool dot = len == 1 && dec[s] == '.', dotdot = len == 2 && dec[s] == '.' && dec[s + 1] == '.';
                trailing = len == 0 || dot || dotdot;
                if (dotdot) {
                        if (depth == 0)
                                goto out;
                        depth--;
                } else if (len > 0 && !dot) {
                        seg_off[depth] = s;
                        seg_len[depth] = len;
                        depth++;
                }
                i++;
        }
        out[o++] = '/';
        for (size_t d = 0; d < depth; d++) {
                memcpy(out + o, dec + seg_off[d], seg_len[d]);
                o += seg_len[d];
                if (d + 1 < depth || trailing)
                        out[o++] = '/';
        }
        out[o] = '\0';
        ret = (ssize_t) o;
out:
        free(dec);
        free(seg_off);
        free(seg_len);
        return ret;
}

static bool contains(const char *s, size_t n, const char *needle) {
        return memmem(s, n, needle, strlen(needle)) != NULL;
}

static void check_normalize(const char *target, size_t tlen, int r, const char *path, size_t path_len,
                            const char *args, size_t args_len) {
        size_t end = tlen;
        const char *hash = memchr(target, '#', tlen);
        if (hash)
                end = (size_t) (hash - target);
        size_t q = end;
        const char *qm = memchr(target, '?', end);
        if (qm)
                q = (size_t) (qm - target);

        char *ref = malloc(q + 1);
        FUZZ_CHECK(ref, "oom");
        ssize_t rl = ref_normalize(target, q, ref);
        FUZZ_CHECK(r == 0 || r == -EINVAL, "returned %d", r);
        FUZZ_CHECK((r == 0) == (rl >= 0), "uri_normalize %d, reference %zd", r, rl);
        if (r < 0) {
                free(ref);
                return;
        }
        FUZZ_CHECK(path_len == (size_t) rl && memcmp(path, ref, path_len) == 0, "'%s' differs from reference '%s'",
                   path, ref);
        free(ref);

        FUZZ_CHECK(path_len > 0 && path[0] == '/', "does not start with '/'");
        FUZZ_CHECK(strlen(path) == path_len && path[path_len] == '\0', "NUL inside or not terminated");
        FUZZ_CHECK(!contains(path, path_len, "//"), "contains //: %s", path);
        FUZZ_CHECK(!contains(path, path_len, "/./"), "contains /./: %s", path);
        FUZZ_CHECK(!contains(path, path_len, "/../"), "contains /../: %s", path);
        FUZZ_CHECK(!(path_len >= 2 && memcmp(path + path_len - 2, "/.", 2) == 0), "ends with /.: %s", path);
        FUZZ_CHECK(!(path_len >= 3 && memcmp(path + path_len - 3, "/..", 3) == 0), "ends with /..: %s", path);
        FUZZ_CHECK(path_len <= q, "normalized path longer than the raw path");

        if (qm)
                FUZZ_CHECK(args == qm + 1 && args_len == end - q - 1, "args wrong");
        else
                FUZZ_CHECK(args == NULL, "args without '?'");

        /* Nothing left to decode or split: a fixed point. */
        if (!memchr(path, '%', path_len) && !memchr(path, '?', path_len) && !memchr(path, '#', path_len)) {
                char *p2 = NULL;
                size_t l2 = 0, al = 0;
                const char *a2 = NULL;
                FUZZ_CHECK(uri_normalize(path, path_len, &p2, &l2, &a2, &al) == 0, "normalized path rejected");
                FUZZ_CHECK(l2 == path_len && memcmp(p2, path, l2) == 0 && a2 == NULL, "not idempotent: %s -> %s",
                           path, p2);
                free(p2);
        }
}

static void check_rewrite(const char *path, size_t path_len, size_t match_len, const char *repl, const char *args,
                          size_t args_len) {
        char *out = NULL;
        int r = uri_rewrite(path, path_len, match_len, repl, args, args_len, &out);
        FUZZ_CHECK(r == 0 && out, "uri_rewrite failed: %d", r);

        size_t n = strlen(out), rlen = strlen(repl);
        for (size_t i = 0; i < n; i++)
                FUZZ_CHECK((unsigned char) out[i] >= 0x21 && (unsigned char) out[i] <= 0x7e,
                           "output byte 0x%02x at %zu: %s", (unsigned char) out[i], i, out);
        FUZZ_CHECK(n >= rlen && memcmp(out, repl, rlen) == 0, "output does not start with the replacement");
        size_t esc_end = n;
        if (args && args_len > 0) {
                FUZZ_CHECK(n >= rlen + 1 + args_len && out[n - args_len - 1] == '?' &&
                                   memcmp(out + n - args_len, args, args_len) == 0,
                           "args not appended: %s", out);
                esc_end = n - args_len - 1;
        }
        const char *esc = out + rlen;
        size_t esc_len = esc_end - rlen;
        FUZZ_CHECK(!memchr(esc, '?', esc_len) && !memchr(esc, '#', esc_len), "unescaped ? or # in %s", out);
        for (size_t i = 0; i < esc_len; i++)
                if (esc[i] == '%')
                        FUZZ_CHECK(i + 2 < esc_len && unhex((unsigned char) esc[i + 1]) >= 0 &&
                                           unhex((unsigned char) esc[i + 2]) >= 0,
                                   "bad escape in %s", out);
        char *dec = malloc(esc_len + 1);
        FUZZ_CHECK(dec, "oom");
        ssize_t dl = decode(esc, esc_len, dec);
        FUZZ_CHECK(dl >= 0 && (size_t) dl == path_len - match_len && memcmp(dec, path + match_len, (size_t) dl) == 0,
                   "escaped remainder does not decode to the remainder: %s", out);
        free(dec);

        /* Consistent prefix and replacement: the upstream's view stays below the replacement. */
        if (rlen > 0 && repl[rlen - 1] == '/' && !strchr(repl, '?') && match_len > 0 && path[match_len - 1] == '/') {
                char *np = NULL, *nr = NULL;
                size_t npl = 0, nrl = 0, al;
                const char *a;
                FUZZ_CHECK(uri_normalize(repl, rlen, &nr, &nrl, &a, &al) == 0, "replacement not normalizable");
                FUZZ_CHECK(uri_normalize(out, n, &np, &npl, &a, &al) == 0, "rewritten target not normalizable: %s",
                           out);
                FUZZ_CHECK(npl == nrl + path_len - match_len && memcmp(np, nr, nrl) == 0 &&
                                   memcmp(np + nrl, path + match_len, path_len - match_len) == 0,
                           "rewritten target %s normalizes to %s", out, np);
                free(np);
                free(nr);
        }
        free(out);
}

/* True if the request parser accepts target, as a whole, as the request-target of a request line. */
static bool target_acceptable(const char *target, size_t tlen) {
        static const char pre[] = "GET ", post[] = " HTTP/1.1\r\nHost: a\r\n\r\n";
        const HttpLimits lim = HTTP_LIMITS_DEFAULT;
        size_t len = sizeof(pre) - 1 + tlen + sizeof(post) - 1;
        char *req = malloc(len);
        HttpHeader hdrs[4];
        HttpRequest rq;
        HttpError err;

        if (!req)
                return false;
        memcpy(req, pre, sizeof(pre) - 1);
        memcpy(req + sizeof(pre) - 1, target, tlen);
        memcpy(req + sizeof(pre) - 1 + tlen, post, sizeof(post) - 1);
        ssize_t r = http1_parse_request(req, len, &lim, &rq, hdrs, 4, &err);
        bool ok = r == (ssize_t) len && rq.target == req + sizeof(pre) - 1 && rq.target_len == tlen;
        free(req);
        return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 2)
                return 0;

        const char *repl = replacements[data[0] % (sizeof(replacements) / sizeof(replacements[0]))];
        size_t tlen = size - 2;
        char *target = calloc(tlen ? tlen : 1, 1); /* exact size: over-reads are caught */
        if (!target)
                return 0;
        if (tlen)
                memcpy(target, data + 2, tlen);

        char *path = NULL;
        size_t path_len = 0, args_len = 0;
        const char *args = NULL;
        int r = uri_normalize(target, tlen, &path, &path_len, &args, &args_len);
        check_normalize(target, tlen, r, path, path_len, args, args_len);

        if (r == 0 && target_acceptable(target, tlen)) {
                size_t match_len = data[1] % (path_len + 1);
                check_rewrite(path, path_len, match_len, repl, args, args_len);
                check_rewrite(path, path_len, path_len, repl, args, args_len); /* exact location */
        }
        free(path);
        free(target);
        return 0;
}
