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

/*
 * The framing byte c in each state: the state it leads to, or -EBADMSG. One helper per
 * state (or pair of states); chunked_step() is the switch over them. The helpers are
 * forced inline, so the switch compiles to the one jump table it was before.
 */

/* After a chunk-size, an extension value or a closing quote: what may follow. */
static _always_inline_ int ch_after_ext_item(ChunkedDecoder *d, unsigned char c) {
        if (c == '\r')
                d->state = CH_SIZE_LF;
        else if (c == ';')
                d->state = CH_EXT_START;
        else if (is_ws(c))
                d->state = CH_BWS_SEMI;
        else
                return -EBADMSG;
        return 0;
}

/* chunk-size = 1*HEXDIG, at most CHUNK_SIZE_MAX_DIGITS of them. */
static _always_inline_ int ch_size(ChunkedDecoder *d, unsigned char c) {
        int h = hex_value(c);

        if (h >= 0) {
                if (d->line_len >= CHUNK_SIZE_MAX_DIGITS)
                        return -EBADMSG;
                d->remaining = (d->remaining << 4) | (uint64_t) h;
                d->state = CH_SIZE;
                return 0;
        }
        if (d->state == CH_SIZE_START)
                return -EBADMSG;
        return ch_after_ext_item(d, c);
}

static _always_inline_ int ch_bws_semi(ChunkedDecoder *d, unsigned char c) {
        if (c == ';')
                d->state = CH_EXT_START;
        else if (!is_ws(c))
                return -EBADMSG;
        return 0;
}

static _always_inline_ int ch_ext_start(ChunkedDecoder *d, unsigned char c) {
        if (is_tchar(c))
                d->state = CH_EXT_NAME;
        else if (!is_ws(c))
                return -EBADMSG;
        return 0;
}

static _always_inline_ int ch_ext_name(ChunkedDecoder *d, unsigned char c) {
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
}

static _always_inline_ int ch_ext_name_bws(ChunkedDecoder *d, unsigned char c) {
        if (c == '=')
                d->state = CH_EXT_VAL_START;
        else if (c == ';')
                d->state = CH_EXT_START;
        else if (!is_ws(c))
                return -EBADMSG;
        return 0;
}

static _always_inline_ int ch_ext_val_start(ChunkedDecoder *d, unsigned char c) {
        if (c == '"')
                d->state = CH_EXT_VAL_QUOTED;
        else if (is_tchar(c))
                d->state = CH_EXT_VAL_TOKEN;
        else if (!is_ws(c))
                return -EBADMSG;
        return 0;
}

static _always_inline_ int ch_ext_val_token(ChunkedDecoder *d, unsigned char c) {
        if (is_tchar(c))
                return 0;
        return ch_after_ext_item(d, c);
}

/* qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text, and quoted-pair. */
static _always_inline_ int ch_ext_val_quoted(ChunkedDecoder *d, unsigned char c) {
        if (c == '"')
                d->state = CH_EXT_VAL_END;
        else if (c == '\\')
                d->state = CH_EXT_VAL_ESCAPE;
        else if (!is_field_char(c))
                return -EBADMSG;
        return 0;
}

static _always_inline_ int ch_ext_val_escape(ChunkedDecoder *d, unsigned char c) {
        if (!is_field_char(c))
                return -EBADMSG;
        d->state = CH_EXT_VAL_QUOTED;
        return 0;
}

/* The LF of a CRLF that ends a line; the next line starts in state next. */
static _always_inline_ int ch_line_lf(ChunkedDecoder *d, unsigned char c, int next) {
        if (c != '\n')
                return -EBADMSG;
        d->line_len = 0;
        d->state = next;
        return 0;
}

static _always_inline_ int ch_data_cr(ChunkedDecoder *d, unsigned char c) {
        if (c != '\r')
                return -EBADMSG;
        d->state = CH_DATA_LF;
        return 0;
}

static _always_inline_ int ch_trailer_start(ChunkedDecoder *d, unsigned char c) {
        if (c == '\r')
                d->state = CH_FINAL_LF;
        else if (is_tchar(c))
                d->state = CH_TRAILER_NAME;
        else
                return -EBADMSG; /* obs-fold, empty name, bare LF, junk */
        return 0;
}

static _always_inline_ int ch_trailer_name(ChunkedDecoder *d, unsigned char c) {
        if (c == ':')
                d->state = CH_TRAILER_VALUE;
        else if (!is_tchar(c))
                return -EBADMSG;
        return 0;
}

static _always_inline_ int ch_trailer_value(ChunkedDecoder *d, unsigned char c) {
        if (c == '\r')
                d->state = CH_TRAILER_LF;
        else if (!is_field_char(c))
                return -EBADMSG;
        return 0;
}

static _always_inline_ int ch_final_lf(ChunkedDecoder *d, unsigned char c) {
        if (c != '\n')
                return -EBADMSG;
        d->state = CH_DONE;
        d->done = true;
        return 0;
}

/* One framing byte. Returns 0 or -EBADMSG. */
static int chunked_step(ChunkedDecoder *d, unsigned char c) {
        switch (d->state) {
        case CH_SIZE_START:
        case CH_SIZE:
                return ch_size(d, c);
        case CH_BWS_SEMI:
                return ch_bws_semi(d, c);
        case CH_EXT_START:
                return ch_ext_start(d, c);
        case CH_EXT_NAME:
                return ch_ext_name(d, c);
        case CH_EXT_NAME_BWS:
                return ch_ext_name_bws(d, c);
        case CH_EXT_VAL_START:
                return ch_ext_val_start(d, c);
        case CH_EXT_VAL_TOKEN:
                return ch_ext_val_token(d, c);
        case CH_EXT_VAL_QUOTED:
                return ch_ext_val_quoted(d, c);
        case CH_EXT_VAL_ESCAPE:
                return ch_ext_val_escape(d, c);
        case CH_EXT_VAL_END:
                return ch_after_ext_item(d, c);
        case CH_SIZE_LF:
                return ch_line_lf(d, c, d->remaining > 0 ? CH_DATA : CH_TRAILER_START);
        case CH_DATA_CR:
                return ch_data_cr(d, c);
        case CH_DATA_LF:
                return ch_line_lf(d, c, CH_SIZE_START);
        case CH_TRAILER_START:
                return ch_trailer_start(d, c);
        case CH_TRAILER_NAME:
                return ch_trailer_name(d, c);
        case CH_TRAILER_VALUE:
                return ch_trailer_value(d, c);
        case CH_TRAILER_LF:
                return ch_line_lf(d, c, CH_TRAILER_START);
        case CH_FINAL_LF:
                return ch_final_lf(d, c);
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
        d->trailer_off = d->trailer_len = 0;

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
                if (d->state >= CH_TRAILER_START && d->state <= CH_TRAILER_LF &&
                    !(d->state == CH_TRAILER_START && in[i] == '\r')) {
                        if (d->trailer_len == 0)
                                d->trailer_off = i;
                        d->trailer_len++;
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
