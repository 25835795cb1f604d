/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "buf.h"

void buf_compact(Buf *b) {
        if (b->start == 0)
                return;
        if (b->end > b->start)
                memmove(b->data, b->data + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
}

int buf_reserve(Buf *b, size_t n) {
        size_t need, cap;
        char *p;

        if (buf_space(b) >= n)
                return 0;
        buf_compact(b);
        if (buf_space(b) >= n)
                return 0;
        if (n > SIZE_MAX - b->end)
                return -ENOMEM;
        need = b->end + n;
        cap = b->cap ? b->cap : 256;
        while (cap < need) {
                if (cap > SIZE_MAX / 2) {
                        cap = need;
                        break;
                }
                cap *= 2;
        }
        p = realloc(b->data, cap);
        if (!p)
                return -ENOMEM;
        b->data = p;
        b->cap = cap;
        return 0;
}

int buf_append_slow(Buf *b, const void *p, size_t n) {
        int r;

        if (n == 0)
                return 0;
        r = buf_reserve(b, n);
        if (r < 0)
                return r;
        memcpy(buf_tail(b), p, n);
        b->end += n;
        return 0;
}

int buf_printf(Buf *b, const char *fmt, ...) {
        va_list ap;
        int n, r;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        /* +1 for the terminating NUL that vsnprintf writes; it is not counted as data */
        r = buf_reserve(b, (size_t) n + 1);
        if (r < 0)
                return r;
        va_start(ap, fmt);
        vsnprintf(buf_tail(b), (size_t) n + 1, fmt, ap);
        va_end(ap);
        b->end += (size_t) n;
        return 0;
}

void buf_free(Buf *b) {
        free(b->data);
        *b = (Buf) {};
}

int buf_append_uint(Buf *b, uint64_t v) {
        char tmp[20];
        size_t i = sizeof(tmp);
        do {
                tmp[--i] = (char) ('0' + v % 10);
                v /= 10;
        } while (v > 0);
        return buf_append(b, tmp + i, sizeof(tmp) - i);
}

int buf_append_hex(Buf *b, uint64_t v) {
        static const char digits[] = "0123456789abcdef";
        char tmp[16];
        size_t i = sizeof(tmp);
        do {
                tmp[--i] = digits[v & 15];
                v >>= 4;
        } while (v > 0);
        return buf_append(b, tmp + i, sizeof(tmp) - i);
}
