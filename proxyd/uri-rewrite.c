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
