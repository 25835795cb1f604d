/* SPDX-License-Identifier: MIT */
/*
 * Incremental chunked-body decoder (RFC 9112 7.1), see http1.h.
 */

#include "http1-chars.h"

/* ------------------------------------------------------------------------- */
/* Chunked transfer coding (RFC 9112 7.1) */

enum {
        CH_SIZE_START,    /* first hex digit of chunk-size */
        CH_SIZE,          /* more hex digits, ';', BWS or CR */
        CH_BWS_SEMI,      /* BWS seen: more BWS or ';' */
        CH_EXT_START,     /* after ';': BWS or the first tchar of chunk-ext-name */
        CH_EXT_NAME,
        CH_EXT_NAME_BWS,  /* BWS after the name: more BWS, '=' or ';' */
        CH_EXT_VAL_START, /* after '=': BWS, token or quoted-string */
        CH_EXT_VAL_TOKEN,
        CH_EXT_VAL_QUOTED,
        CH_EXT_VAL_ESCAPE,
        CH_EXT_VAL_END,   /* after the closing quote: BWS, ';' or CR */
        CH_SIZE_LF,
        CH_DATA,
        CH_DATA_CR,
        CH_DATA_LF,
        CH_TRAILER_START, /* start of a trailer line or of the final CRLF */
        CH_TRAILER_NAME,
        CH_TRAILER_VALUE,
        CH_TRAILER_LF,
        CH_FINAL_LF,
        CH_DONE,
        CH_FAILED,
};

#define CHUNK_SIZE_MAX_DIGITS 15

void chunked_decoder_init(ChunkedDecoder *d, uint64_t max_overhead) {
        *d = (ChunkedDecoder) {
                .state = CH_SIZE_START,
                .max_overhead = max_overhead,
        };
}

/* One framing byte. Returns 0 or -EBADMSG. */
static int chunked_step(ChunkedDecoder *d, unsigned char c) {
        int h;

        switch (d->state) {
        case CH_SIZE_START:
        case CH_SIZE:
                h = hex_value(c);
                if (h >= 0) {
                        if (d->line_len >= CHUNK_SIZE_MAX_DIGITS)
                                return -EBADMSG;
                        d->remaining = (d->remaining << 4) | (uint64_t) h;
                        d->state = CH_SIZE;
                        return 0;
                }
                if (d->state == CH_SIZE_START)
                        return -EBADMSG;
                if (c == '\r')
                        d->state = CH_SIZE_LF;
                else if (c == ';')
                        d->state = CH_EXT_START;
                else if (is_ws(c))
                        d->state = CH_BWS_SEMI;
                else
                        return -EBADMSG;
                return 0;

        case CH_BWS_SEMI:
                if (c == ';')
                        d->state = CH_EXT_START;
                else if (!is_ws(c))
                        return -EBADMSG;
                return 0;

        case CH_EXT_START:
                if (is_tchar(c))
                        d->state = CH_EXT_NAME;
                else if (!is_ws(c))
                        return -EBADMSG;
                return 0;

        case CH_EXT_NAME:
                if (is_tchar(c))
                        return 0;
                if (c == '=')
                        d->state = CH_EXT_VAL_START;
                else if (c == ';')
                        d->state = CH_EXT_START;
                else if (c == '\r')
                        d->state = CH_SIZE_LF;
                else if (is_ws(c))
                        d->state = CH_EXT_NAME_BWS;
                else
                        return -EBADMSG;
                return 0;

        case CH_EXT_NAME_BWS:
                if (c == '=')
                        d->state = CH_EXT_VAL_START;
                else if (c == ';')
                        d->state = CH_EXT_START;
                else if (!is_ws(c))
                        return -EBADMSG;
                return 0;

        case CH_EXT_VAL_START:
                if (c == '"')
                        d->state = CH_EXT_VAL_QUOTED;
                else if (is_tchar(c))
                        d->state = CH_EXT_VAL_TOKEN;
                else if (!is_ws(c))
                        return -EBADMSG;
                return 0;

        case CH_EXT_VAL_TOKEN:
                if (is_tchar(c))
                        return 0;
                if (c == ';')
                        d->state = CH_EXT_START;
                else if (c == '\r')
                        d->state = CH_SIZE_LF;
                else if (is_ws(c))
                        d->state = CH_BWS_SEMI;
                else
                        return -EBADMSG;
                return 0;

        case CH_EXT_VAL_QUOTED:
                /* qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text */
                if (c == '"')
                        d->state = CH_EXT_VAL_END;
                else if (c == '\\')
                        d->state = CH_EXT_VAL_ESCAPE;
                else if (!is_field_char(c))
                        return -EBADMSG;
                return 0;

        case CH_EXT_VAL_ESCAPE:
                if (!is_field_char(c))
                        return -EBADMSG;
                d->state = CH_EXT_VAL_QUOTED;
                return 0;

        case CH_EXT_VAL_END:
                if (c == ';')
                        d->state = CH_EXT_START;
                else if (c == '\r')
                        d->state = CH_SIZE_LF;
                else if (is_ws(c))
                        d->state = CH_BWS_SEMI;
                else
                        return -EBADMSG;
                return 0;

        case CH_SIZE_LF:
                if (c != '\n')
                        return -EBADMSG;
                d->line_len = 0;
                d->state = d->remaining > 0 ? CH_DATA : CH_TRAILER_START;
                return 0;

        case CH_DATA_CR:
                if (c != '\r')
                        return -EBADMSG;
                d->state = CH_DATA_LF;
                return 0;

        case CH_DATA_LF:
                if (c != '\n')
                        return -EBADMSG;
                d->line_len = 0;
                d->state = CH_SIZE_START;
                return 0;

        case CH_TRAILER_START:
                if (c == '\r')
                        d->state = CH_FINAL_LF;
                else if (is_tchar(c))
                        d->state = CH_TRAILER_NAME;
                else
                        return -EBADMSG; /* obs-fold, empty name, bare LF, junk */
                return 0;

        case CH_TRAILER_NAME:
                if (c == ':')
                        d->state = CH_TRAILER_VALUE;
                else if (!is_tchar(c))
                        return -EBADMSG;
                return 0;

        case CH_TRAILER_VALUE:
                if (c == '\r')
                        d->state = CH_TRAILER_LF;
                else if (!is_field_char(c))
                        return -EBADMSG;
                return 0;

        case CH_TRAILER_LF:
                if (c != '\n')
                        return -EBADMSG;
                d->line_len = 0;
                d->state = CH_TRAILER_START;
                return 0;

        case CH_FINAL_LF:
                if (c != '\n')
                        return -EBADMSG;
                d->state = CH_DONE;
                d->done = true;
                return 0;

        default:
                return -EBADMSG;
        }
}

ssize_t chunked_decode(ChunkedDecoder *d, const char *in, size_t len,
                       size_t *ret_data_off, size_t *ret_data_len) {
        size_t i = 0;

        if (ret_data_off)
                *ret_data_off = 0;
        if (ret_data_len)
                *ret_data_len = 0;
        if (!d || (!in && len > 0))
                return -EINVAL;
        if (d->state == CH_FAILED)
                return -EBADMSG;

        while (i < len && !d->done) {
                if (d->state == CH_DATA) {
                        uint64_t n = MIN((uint64_t) (len - i), d->remaining);

                        if (ret_data_off)
                                *ret_data_off = i;
                        if (ret_data_len)
                                *ret_data_len = (size_t) n;
                        d->remaining -= n;
                        d->data += n;
                        if (d->remaining == 0)
                                d->state = CH_DATA_CR;
                        return (ssize_t) (i + n);
                }

                /* Every byte that is not chunk data counts as overhead. Past the cap, framing
                 * may not outweigh the data it carries (so long streams of small chunks pass,
                 * while a body of nothing but chunk lines and extensions is cut off). */
                if (++d->overhead > d->max_overhead && d->overhead > d->data) {
                        d->state = CH_FAILED;
                        return -EBADMSG;
                }
                if (chunked_step(d, (unsigned char) in[i]) < 0) {
                        d->state = CH_FAILED;
                        return -EBADMSG;
                }
                d->line_len++;
                if (d->state == CH_DATA || d->state == CH_SIZE_START || d->state == CH_TRAILER_START)
                        d->line_len = 0;
                i++;
        }
        return (ssize_t) i;
}
