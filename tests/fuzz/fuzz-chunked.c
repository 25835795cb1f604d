/* SPDX-License-Identifier: MIT */
/*
 * chunked_decode. The input is a chunked message body (plus whatever follows it).
 *
 * The body is decoded with a large and a small framing-overhead cap, each fed
 *  - whole, split into two pieces at every point, one byte at a time, and in pieces
 *    of pseudo-random sizes (derived from the input),
 * the way a connection feeds it: the unconsumed rest stays and the next piece is appended.
 * Every feeding must give the same outcome: same decoded data, same number of bytes
 * consumed, same completion, and on failure the same failing byte (overhead + data counted
 * at the failure). Also: data runs lie at the end of the consumed bytes, consumed bytes =
 * framing + data, nothing after the end of the body is consumed, a failed decoder stays
 * failed, a finished one consumes nothing more.
 */

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "http1.h"

typedef struct Outcome {
        bool failed, done;
        size_t consumed;
        uint64_t overhead, data; /* decoder counters at the end (or at the failure) */
        size_t out_len;
        char *out;
} Outcome;

/* Feed data in pieces ending at cuts[0..ncuts) (increasing, last == size). */
static void feed(const uint8_t *data, size_t size, const size_t *cuts, size_t ncuts, uint64_t max_overhead,
                 char *scratch, Outcome *o) {
        ChunkedDecoder d;
        size_t pos = 0;

        chunked_decoder_init(&d, max_overhead);
        o->failed = o->done = false;
        o->out_len = 0;
        for (size_t i = 0; i < ncuts && !d.done; i++) {
                size_t avail = cuts[i];
                for (;;) {
                        size_t n = avail - pos;
                        char *in = scratch + size - n; /* ends at the end of the allocation */
                        size_t off = (size_t) -1, dl = (size_t) -1;

                        if (n > 0)
                                memmove(in, data + pos, n);
                        ssize_t r = chunked_decode(&d, in, n, &off, &dl);
                        if (r < 0) {
                                FUZZ_CHECK(r == -EBADMSG, "returned %zd", r);
                                FUZZ_CHECK(!d.done, "failed but done");
                                FUZZ_CHECK(chunked_decode(&d, in, n, &off, &dl) == -EBADMSG,
                                           "failed decoder recovered");
                                o->failed = true;
                                o->consumed = pos;
                                o->overhead = d.overhead;
                                o->data = d.data;
                                return;
                        }
                        FUZZ_CHECK((size_t) r <= n, "consumed %zd of %zu", r, n);
                        FUZZ_CHECK(off != (size_t) -1 && dl != (size_t) -1, "data run not reported");
                        if (dl > 0) {
                                FUZZ_CHECK(off + dl == (size_t) r, "data run [%zu,+%zu) not at the end of %zd", off,
                                           dl, r);
                                memcpy(o->out + o->out_len, in + off, dl);
                                o->out_len += dl;
                        }
                        pos += (size_t) r;
                        FUZZ_CHECK(d.overhead + d.data == pos, "overhead %llu + data %llu != consumed %zu",
                                   (unsigned long long) d.overhead, (unsigned long long) d.data, pos);
                        FUZZ_CHECK(d.data == o->out_len, "data counter %llu, data runs %zu",
                                   (unsigned long long) d.data, o->out_len);
                        if (r == 0 || d.done)
                                break;
                }
                if (!d.done)
                        FUZZ_CHECK(pos == avail, "stopped at %zu of %zu without finishing", pos, avail);
        }
        if (d.done) {
                size_t off, dl;
                FUZZ_CHECK(pos >= 5 && data[pos - 2] == '\r' && data[pos - 1] == '\n', "done without final CRLF");
                FUZZ_CHECK(chunked_decode(&d, (const char *) data + pos, size - pos, &off, &dl) == 0 && dl == 0,
                           "finished decoder consumed more");
        }
        o->done = d.done;
        o->consumed = pos;
        o->overhead = d.overhead;
        o->data = d.data;
}

static void compare(const Outcome *a, const Outcome *b, const char *how, size_t k) {
        FUZZ_CHECK(a->failed == b->failed, "%s %zu: failed %d vs whole %d", how, k, b->failed, a->failed);
        FUZZ_CHECK(a->overhead == b->overhead && a->data == b->data,
                   "%s %zu: stopped at overhead %llu data %llu, whole at %llu %llu", how, k,
                   (unsigned long long) b->overhead, (unsigned long long) b->data,
                   (unsigned long long) a->overhead, (unsigned long long) a->data);
        if (a->failed)
                return;
        FUZZ_CHECK(a->done == b->done && a->consumed == b->consumed, "%s %zu: done %d consumed %zu vs %d %zu", how,
                   k, b->done, b->consumed, a->done, a->consumed);
        FUZZ_CHECK(a->out_len == b->out_len && memcmp(a->out, b->out, a->out_len) == 0, "%s %zu: different data",
                   how, k);
}

static void run(const uint8_t *data, size_t size, uint64_t max_overhead, char *scratch, size_t *cuts,
                Outcome *whole, Outcome *other) {
        size_t one = size;

        feed(data, size, &one, 1, max_overhead, scratch, whole);
        if (!whole->failed && !whole->done)
                FUZZ_CHECK(whole->consumed == size, "incomplete body not fully consumed");

        /* two pieces */
        size_t stride = size <= 512 ? 1 : size / 256;
        for (size_t k = 0; k <= size; k += stride) {
                size_t two[2] = { k, size };
                feed(data, size, two, 2, max_overhead, scratch, other);
                compare(whole, other, "split", k);
        }

        /* byte by byte */
        for (size_t k = 0; k < size; k++)
                cuts[k] = k + 1;
        if (size > 0) {
                feed(data, size, cuts, size, max_overhead, scratch, other);
                compare(whole, other, "bytewise", 0);
        }

        /* pseudo-random pieces */
        uint32_t h = 2166136261u;
        for (size_t i = 0; i < size; i++)
                h = (h ^ data[i]) * 16777619u;
        size_t n = 0, at = 0;
        while (at < size) {
                h = h * 1103515245u + 12345u;
                at += 1 + (h >> 16) % 17;
                cuts[n++] = at < size ? at : size;
        }
        if (n > 0) {
                feed(data, size, cuts, n, max_overhead, scratch, other);
                compare(whole, other, "pieces", n);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *scratch = malloc(size ? size : 1);
        size_t *cuts = malloc((size ? size : 1) * sizeof(size_t));
        Outcome whole = { .out = malloc(size ? size : 1) }, other = { .out = malloc(size ? size : 1) };

        if (scratch && cuts && whole.out && other.out) {
                run(data, size, 16384, scratch, cuts, &whole, &other);
                run(data, size, 24, scratch, cuts, &whole, &other);
        }
        free(scratch);
        free(cuts);
        free(whole.out);
        free(other.out);
        return 0;
}
