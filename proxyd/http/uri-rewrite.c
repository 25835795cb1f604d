/* SPDX-License-Identifier: MIT */

#include "uri-rewrite.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static int unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* The segment being built runs from just after the last '/' in out[0..*n) to *n.
 * Drop it if it is "." or "..", and for ".." also drop the segment before it.
 * out[0] is always '/'. Returns -EINVAL for ".." above the root. */
static int finish_segment(char *out, size_t *n) {
        size_t start = *n;

        while (start > 0 && out[start - 1] != '/')
                start--;

        if (*n - start == 1 && out[start] == '.') {
                *n = start;
                return 0;
        }
        if (*n - start == 2 && out[start] == '.' && out[start + 1] == '.') {
                /* out[start - 1] is the '/' before "..": step over the segment before it. */
                if (start < 2)
                        return -EINVAL;
                start--;
                while (start > 0 && out[start - 1] != '/')
                        start--;
                *n = start;
                return 0;
        }
        return 0;
}

int uri_normalize(const char *target, size_t target_len, char **ret_path, size_t *ret_path_len,
                  const char **ret_args, size_t *ret_args_len) {
        _cleanup_free_ char *out = NULL;
        const char *args = NULL;
        size_t end, path_end, args_len = 0, n = 0;
        int r;

        if (!target || !ret_path)
                return -EINVAL;
        if (target_len == 0 || target[0] != '/')
                return -EINVAL;

        /* A fragment never belongs to the request: the target ends at '#'. */
        end = target_len;
        for (size_t i = 0; i < target_len; i++)
                if (target[i] == '#') {
                        end = i;
                        break;
                }

        path_end = end;
        for (size_t i = 0; i < end; i++)
                if (target[i] == '?') {
                        path_end = i;
                        args = target + i + 1;
                        args_len = end - i - 1;
                        break;
                }

        out = malloc(path_end + 1);
        if (!out)
                return -ENOMEM;

        out[n++] = '/';
        for (size_t i = 1; i < path_end; i++) {
                char c = target[i];

                if (c == '%') {
                        int hi, lo;

                        if (path_end - i < 3)
                                return -EINVAL;
                        hi = unhex(target[i + 1]);
                        lo = unhex(target[i + 2]);
                        if (hi < 0 || lo < 0)
                                return -EINVAL;
                        c = (char)(hi << 4 | lo);
                        i += 2;
                }
                if (c == '\0')
                        return -EINVAL;

                if (c == '/') {
                        if (out[n - 1] == '/')
                                continue; /* merge repeated slashes */
                        r = finish_segment(out, &n);
                        if (r < 0)
                                return r;
                        if (out[n - 1] == '/')
                                continue; /* "." or ".." removed, slash already there */
                }

                out[n++] = c;
        }

        r = finish_segment(out, &n);
        if (r < 0)
                return r;
        out[n] = '\0';

        *ret_path = TAKE_PTR(out);
        if (ret_path_len)
                *ret_path_len = n;
        if (ret_args)
                *ret_args = args;
        if (ret_args_len)
                *ret_args_len = args_len;
        return 0;
}

/* "." or ".." with any of the dots written as "%2e"/"%2E": 1 for ".", 2 for "..", else 0. */
static int dot_segment(const char *s, size_t n) {
        int dots = 0;

        for (size_t i = 0; i < n; dots++) {
                if (s[i] == '.')
                        i++;
                else if (n - i >= 3 && s[i] == '%' && s[i + 1] == '2' &&
                         (s[i + 2] == 'e' || s[i + 2] == 'E'))
                        i += 3;
                else
                        return 0;
                if (dots >= 2)
                        return 0;
        }
        return dots;
}

int uri_raw_is_unambiguous(const char *target, size_t target_len, const char *norm_path, size_t norm_len) {
        _cleanup_free_ char *view = NULL;
        size_t path_end = 0, n = 0, o = 0;
        bool trailing = false;

        if (!target || !norm_path || target_len == 0 || target[0] != '/')
                return -EINVAL;
        while (path_end < target_len && target[path_end] != '?' && target[path_end] != '#')
                path_end++;
        /* The usual case, without a copy: the path was already normal (no '%', no dot segment, no
         * repeated '/', or uri_normalize() would have changed it), so both readings are it. */
        if (path_end == norm_len && memcmp(target, norm_path, norm_len) == 0)
                return 1;

        /* The path as RFC 3986 reads it: only a raw '/' separates, an empty segment is a
         * segment, "." and ".." (also written %2e) are resolved; nothing is decoded yet. */
        view = malloc(path_end + 1);
        if (!view)
                return -ENOMEM;
        for (size_t i = 1; i <= path_end;) {
                size_t s = i, len;
                int dots;

                while (i < path_end && target[i] != '/')
                        i++;
                len = i - s;
                dots = dot_segment(target + s, len);
                trailing = dots > 0;
                if (dots == 2) {
                        if (n == 0)
                                return 0;
                        while (n > 0 && view[n - 1] != '/')
                                n--;
                        n--; /* the '/' before the dropped segment */
                } else if (dots == 0) {
                        view[n++] = '/';
                        memcpy(view + n, target + s, len);
                        n += len;
                }
                i++;
        }
        if (n == 0 || trailing)
                view[n++] = '/';

        /* Then decoded and with repeated '/' merged, it must be the path proxyd routed. */
        for (size_t i = 0; i < n; i++) {
                char c = view[i];

                if (c == '%') {
                        int hi = i + 2 < n ? unhex(view[i + 1]) : -1,
                            lo = i + 2 < n ? unhex(view[i + 2]) : -1;

                        if (hi < 0 || lo < 0)
                                return 0;
                        c = (char)(hi << 4 | lo);
                        i += 2;
                }
                if (c == '/' && o > 0 && norm_path[o - 1] == '/')
                        continue;
                if (o >= norm_len || norm_path[o] != c)
                        return 0;
                o++;
        }
        return o == norm_len;
}

/* Bytes that are written as %XX in the part of the path that follows the replacement:
 * controls, space, '"', '#', '%', '<', '>', '?', '\\', '^', '`', '{', '|', '}', DEL
 * and everything that is not ASCII. */
static bool needs_escape(unsigned char c) {
        if (c <= 0x20 || c >= 0x7f)
                return true;
        return strchr("\"#%<>?\\^`{|}", c) != NULL;
}

int uri_rewrite(const char *norm_path, size_t norm_len, size_t match_len, const char *replacement,
                const char *args, size_t args_len, char **ret) {
        static const char hex[] = "0123456789ABCDEF";
        size_t rlen, len, n = 0;
        char *s;

        if (!norm_path || !replacement || !ret)
                return -EINVAL;
        if (match_len > norm_len)
                return -EINVAL;
        if (!args)
                args_len = 0;

        rlen = strlen(replacement);
        len = rlen;
        for (size_t i = match_len; i < norm_len; i++)
                len += needs_escape((unsigned char)norm_path[i]) ? 3 : 1;
        if (args_len > 0)
                len += 1 + args_len;

        s = malloc(len + 1);
        if (!s)
                return -ENOMEM;

        memcpy(s, replacement, rlen);
        n = rlen;
        for (size_t i = match_len; i < norm_len; i++) {
                unsigned char c = (unsigned char)norm_path[i];

                if (needs_escape(c)) {
                        s[n++] = '%';
                        s[n++] = hex[c >> 4];
                        s[n++] = hex[c & 0xf];
                } else
                        s[n++] = (char)c;
        }
        if (args_len > 0) {
                s[n++] = '?';
                memcpy(s + n, args, args_len);
                n += args_len;
        }
        s[n] = '\0';

        *ret = s;
        return 0;
}
