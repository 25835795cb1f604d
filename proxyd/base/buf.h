/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdarg.h>
#include "util.h"

/* A growable byte buffer with a read offset: data lives in [start, end). */
typedef struct Buf {
        char *data;
        size_t start;
        size_t end;
        size_t cap;
} Buf;

static inline size_t buf_len(const Buf *b) {
        return b->end - b->start;
}
static inline char *buf_head(const Buf *b) {
        return b->data + b->start;
}
static inline size_t buf_space(const Buf *b) {
        return b->cap - b->end;
}
static inline char *buf_tail(const Buf *b) {
        return b->data + b->end;
}
static inline void buf_consume(Buf *b, size_t n) {
        b->start += n;
        if (b->start >= b->end)
                b->start = b->end = 0;
}
static inline void buf_reset(Buf *b) {
        b->start = b->end = 0;
}

/* Ensure room for at least n more bytes at the tail (compacting first). -ENOMEM on failure. */
int buf_reserve(Buf *b, size_t n);
/* Move pending data to the front. */
void buf_compact(Buf *b);
int buf_append_slow(Buf *b, const void *p, size_t n);
static inline int buf_append(Buf *b, const void *p, size_t n) {
        if (_likely_(buf_space(b) >= n && n > 0)) {
                memcpy(buf_tail(b), p, n);
                b->end += n;
                return 0;
        }
        return buf_append_slow(b, p, n);
}
static inline int buf_append_str(Buf *b, const char *s) {
        return buf_append(b, s, strlen(s));
}
int buf_printf(Buf *b, const char *fmt, ...) _printf_(2, 3);
/* Decimal and lower-case hex without printf (on the per-request path). */
int buf_append_uint(Buf *b, uint64_t v);
int buf_append_hex(Buf *b, uint64_t v);
/* Release memory (the buffer becomes empty and unallocated). */
void buf_free(Buf *b);
