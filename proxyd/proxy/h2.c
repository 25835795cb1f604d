/* SPDX-License-Identifier: MIT */
/*
 * The HTTP/2 client session (see h2.h). libnghttp2 does the framing, HPACK, the stream states
 * and flow control, and checks most of RFC 9113 section 8 (pseudo-header fields, connection-
 * specific fields, field name and value characters, Content-Length against DATA). proxyd
 * drives it with its own buffers:
 *
 *  - input is read into the worker's scratch buffer and fed to nghttp2_session_mem_recv();
 *  - every frame of one round is serialized with nghttp2_session_mem_send() into `out` and
 *    written with one write (one TLS record batch);
 *  - a stream's request body is kept in its own buffer and given to the exchange through
 *    body_peek; WINDOW_UPDATE is sent only for bytes the exchange consumed
 *    (nghttp2_session_consume after body_consume), so flow control is the backpressure;
 *  - a stream's response body is kept in its own buffer (bounded: send_blocked) and taken by
 *    nghttp2's data source as the peer's windows allow.
 *
 * Each stream's request is built from its decoded header block into an HttpRequest
 * (":method", ":path" as the target, ":authority" as Host, cookies joined) and run as an
 * exchange, so routing, access rules, limits, retries, timeouts and the access entry are
 * those of HTTP/1 requests. Trailers pass both ways where HTTP/1.1 can carry them: a chunked response's to a
 * client that sent te: trailers (a HEADERS frame after the DATA), a request's after a body
 * sent upstream chunked (a body with Content-Length has nowhere to put them).
 *
 * proxyd counts what nghttp2 does not bound by itself: decoded header bytes per block (an
 * HPACK bomb is stored only up to http2_max_header_list_size), CONTINUATION frames per block,
 * streams reset by the client (Rapid Reset, CVE-2023-44487), SETTINGS, PING, PRIORITY and empty
 * frames, the memory nghttp2 allocates for the connection. Each is answered with GOAWAY
 * (ENHANCE_YOUR_CALM) and a journal line; requests of the round that tripped a limit are never
 * begun, so none of them reaches an upstream. Deadlines that a trickle cannot push back: a
 * header block must be complete client_header_timeout after its HEADERS frame; a stream whose
 * response bytes wait in its buffer (zero window) for send_timeout is reset.
 */
#include "h2-internal.h"

/* ---------------------------------------------------------------------------------------- */
/* Memory nghttp2 allocates, counted per connection */

typedef struct MemHead {
        size_t size;
        size_t pad; /* keeps the payload 16-byte aligned */
} MemHead;

static void *mem_malloc(size_t size, void *ud) {
        H2Conn *h = ud;
        MemHead *m = malloc(sizeof(MemHead) + size);
        if (!m)
                return NULL;
        m->size = size;
        h->mem += size;
        return m + 1;
}

static void mem_free(void *p, void *ud) {
        H2Conn *h = ud;
        if (!p)
                return;
        MemHead *m = (MemHead *) p - 1;
        h->mem -= m->size;
        free(m);
}

static void *mem_calloc(size_t n, size_t size, void *ud) {
        if (size && n > SIZE_MAX / size)
                return NULL;
        void *p = mem_malloc(n * size, ud);
        if (p)
                memset(p, 0, n * size);
        return p;
}

static void *mem_realloc(void *p, size_t size, void *ud) {
        H2Conn *h = ud;
        if (!p)
                return mem_malloc(size, ud);
        MemHead *m = (MemHead *) p - 1;
        size_t old = m->size;
        MemHead *n = realloc(m, sizeof(MemHead) + size);
        if (!n)
                return NULL;
        n->size = size;
        h->mem = h->mem - old + size;
        return n + 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Limits */

/* A limit was hit: GOAWAY with code, a journal line, and the connection ends once that is
 * written. Nothing more of the input is processed and no request not yet begun is begun. */
static void h2_abort(H2Conn *h, uint32_t code, const char *why) {
        if (h->fatal)
                return;
        log_warning("%s: HTTP/2 connection closed: %s (GOAWAY %s)", h2_text(h), why, nghttp2_http2_strerror(code));
        h->fatal = true;
        (void) nghttp2_session_terminate_session(h->ng, code);
}

static void h2_count_interval(H2Conn *h) {
        uint64_t now = h2_now(h);
        if (now - h->interval_start >= H2_FLOOD_INTERVAL) {
                h->interval_start = now;
                h->resets = h->control = 0;
        }
}

static void h2_count_control(H2Conn *h, const char *what) {
        h2_count_interval(h);
        if (++h->control > H2_MAX_CONTROL) {
                char why[96];
                snprintf(why, sizeof(why), "flood of %s frames", what);
                h2_abort(h, NGHTTP2_ENHANCE_YOUR_CALM, why);
        }
}

/* ---------------------------------------------------------------------------------------- */
/* Streams */

static H2Stream *stream_of(H2Conn *h, int32_t id) {
        return nghttp2_session_get_stream_user_data(h->ng, id);
}

static H2Stream *h2_stream_new(H2Conn *h, int32_t id) {
        H2Stream *st = calloc(1, sizeof(H2Stream));
        if (!st)
                return NULL;
        st->h = h;
        st->id = id;
        st->next = h->streams;
        if (h->streams)
                h->streams->prev = st;
        h->streams = st;
        h->n_streams++;
        h->any_stream = true;
        return st;
}

/* The stream is over (closed, or the connection ends): its exchange ends with it. */
static void h2_stream_free(H2Stream *st) {
        H2Conn *h = st->h;
        Exchange *ex = st->ex;

        if (ex) {
                bool complete = st->closed && st->close_error == NGHTTP2_NO_ERROR && ex->resp_done &&
                                !ex->resp_truncated;
                if (complete)
                        exchange_end(ex);
                else {
                        /* as an HTTP/1 connection that closes under its exchange: logged, and
                         * nothing of it reused */
                        if (ex->status == 0)
                                ex->status = 499; /* closed before a status could be sent */
                        if (!ex->reason)
                                ex->reason = st->closed ? "stream reset" : "connection closed";
                        if (ex->method)
                                exchange_log(ex);
                        exchange_free(ex);
                }
        }
        /* body bytes never consumed still count against the connection window */
        if (buf_len(&st->body) > 0 && h->ng && !h->fatal)
                (void) nghttp2_session_consume_connection(h->ng, buf_len(&st->body));
        if (h->ng && !st->closed)
                (void) nghttp2_session_set_stream_user_data(h->ng, st->id, NULL);
        st->gen = worker_gen_unref(st->gen);
        buf_free(&st->fields);
        buf_free(&st->body);
        h2_resp_drop(st);
        buf_free(&st->trailers);
        buf_free(&st->req_trailers);
        if (st->prev)
                st->prev->next = st->next;
        else
                h->streams = st->next;
        if (st->next)
                st->next->prev = st->prev;
        h->n_streams--;
        if (h->n_streams == 0)
                h->idle_since = h2_now(h);
        free(st);
}

void h2_stream_reset(H2Stream *st, uint32_t code) {
        if (st->reset_sent || st->closed)
                return;
        st->reset_sent = true;
        (void) nghttp2_submit_rst_stream(st->h->ng, NGHTTP2_FLAG_NONE, st->id, code);
}

/* ---------------------------------------------------------------------------------------- */
/* Response bytes held for the streams: at most H2_STREAM_OUT_MAX per stream and
 * H2_CONN_OUT_MAX for the connection, whatever the number of streams (what a client that
 * reads nothing can make proxyd hold). A stream's buffer is given back once it is empty. */

ssize_t h2_resp_append(H2Stream *st, const char *p, size_t n, bool force) {
        H2Conn *h = st->h;
        size_t len = buf_len(&st->resp);

        if (!force) {
                if (len >= H2_STREAM_OUT_MAX || h->resp_bytes >= H2_CONN_OUT_MAX)
                        return 0;
                n = MIN(n, MIN(H2_STREAM_OUT_MAX - len, H2_CONN_OUT_MAX - h->resp_bytes));
        }
        if (n == 0)
                return 0;
        if (buf_append(&st->resp, p, n) < 0)
                return -ENOMEM;
        if (len == 0)
                st->stalled_since = h2_now(h);
        h->resp_bytes += n;
        return (ssize_t) n;
}

void h2_resp_consume(H2Stream *st, size_t n) {
        H2Conn *h = st->h;

        /* the exchange may give more now; with the connection's budget reopened, any may */
        st->dirty = true;
        if (h->resp_bytes >= H2_CONN_OUT_MAX && h->resp_bytes - n < H2_CONN_OUT_MAX)
                h->all_dirty = true;
        buf_consume(&st->resp, n);
        h->resp_bytes -= n;
        if (buf_len(&st->resp) == 0) {
                st->stalled_since = 0;
                buf_free(&st->resp);
        }
}

void h2_resp_drop(H2Stream *st) {
        st->h->resp_bytes -= buf_len(&st->resp);
        buf_free(&st->resp);
}

/* ---------------------------------------------------------------------------------------- */
/* nghttp2 callbacks: input */

static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *ud) {
        H2Conn *h = ud;
        (void) ng;

        if (h->fatal)
                return 0;
        bool end = hd->flags & NGHTTP2_FLAG_END_HEADERS;
        switch (hd->type) {
        case NGHTTP2_HEADERS:
                h->in_block = !end;
                h->block_start = h2_now(h);
                h->block_frames = 0;
                if (hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM))
                        h2_count_control(h, "empty HEADERS");
                break;
        case NGHTTP2_CONTINUATION:
                if (++h->block_frames > H2_MAX_CONTINUATIONS)
                        h2_abort(h, NGHTTP2_ENHANCE_YOUR_CALM, "too many CONTINUATION frames in a header block");
                else if (hd->length == 0 && !end)
                        h2_count_control(h, "empty CONTINUATION");
                if (end)
                        h->in_block = false;
                break;
        case NGHTTP2_DATA:
                if (hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM))
                        h2_count_control(h, "empty DATA");
                break;
        case NGHTTP2_SETTINGS:
                if (!(hd->flags & NGHTTP2_FLAG_ACK))
                        h2_count_control(h, "SETTINGS");
                break;
        case NGHTTP2_PING:
                if (!(hd->flags & NGHTTP2_FLAG_ACK))
                        h2_count_control(h, "PING");
                break;
        case NGHTTP2_PRIORITY:
                h2_count_control(h, "PRIORITY");
                break;
        case NGHTTP2_RST_STREAM: {
                H2Stream *st = stream_of(h, hd->stream_id);
                h2_count_interval(h);
                if (!st)
                        h2_count_control(h, "RST_STREAM on idle or closed streams");
                else if (++h->resets > H2_MAX_RESETS)
                        h2_abort(h, NGHTTP2_ENHANCE_YOUR_CALM, "too many streams reset by the client (rapid reset)");
                break;
        }
        default:
                break;
        }
        return 0;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *ud) {
        H2Conn *h = ud;

        if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
                return 0;
        if (h->fatal || h->goaway)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        H2Stream *st = h2_stream_new(h, frame->hd.stream_id);
        if (!st)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        return nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, st) == 0 ? 0 :
                                                                                      NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *ud) {
        H2Conn *h = ud;
        H2Stream *st = stream_of(h, frame->hd.stream_id);
        (void) ng;
        (void) flags;

        if (!st || frame->hd.type != NGHTTP2_HEADERS)
                return 0;
        /* counted for every field, stored only within the limit: a block that decodes to more
         * than http2_max_header_list_size costs no more memory than that */
        st->field_bytes += namelen + valuelen + 32;
        if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
                /* trailers: kept for a chunked request body (within the same limit) */
                if (st->fields_too_big || st->field_bytes > h->set->http2_max_header_list_size ||
                    (namelen == 14 && memcmp(name, "content-length", 14) == 0) ||
                    (namelen == 4 && memcmp(name, "host", 4) == 0) || (namelen == 7 && memcmp(name, "trailer", 7) == 0))
                        return 0;
                if (buf_append(&st->req_trailers, name, namelen) < 0 || buf_append(&st->req_trailers, ": ", 2) < 0 ||
                    buf_append(&st->req_trailers, value, valuelen) < 0 || buf_append(&st->req_trailers, "\r\n", 2) < 0)
                        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
                return 0;
        }
        if (st->fields_too_big || st->field_bytes > h->set->http2_max_header_list_size) {
                st->fields_too_big = true;
                return 0;
        }
        uint32_t lens[2] = { (uint32_t) namelen, (uint32_t) valuelen };
        if (buf_append(&st->fields, lens, sizeof(lens)) < 0 || buf_append(&st->fields, name, namelen) < 0 ||
            buf_append(&st->fields, value, valuelen) < 0)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        st->n_fields++;
        return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *ud) {
        H2Conn *h = ud;
        H2Stream *st = frame->hd.stream_id ? stream_of(h, frame->hd.stream_id) : NULL;
        (void) ng;

        if (!st)
                return 0;
        st->dirty = true;
        if (st->ex)
                st->ex->bytes_received += frame->hd.length + 9;
        switch (frame->hd.type) {
        case NGHTTP2_HEADERS:
                if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
                        st->end_in = true;
                if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
                        st->headers_done = true;
                break;
        case NGHTTP2_DATA:
                if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
                        st->end_in = true;
                break;
        default:
                break;
        }
        return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                         void *ud) {
        H2Conn *h = ud;
        H2Stream *st = stream_of(h, id);
        (void) flags;

        if (!st || (st->ex && (st->ex->src == &source_local || (st->ex->req_done && !st->ws)))) {
                /* nobody will read it: give the window back at once */
                (void) nghttp2_session_consume(ng, id, len);
                return 0;
        }
        if (buf_append(&st->body, data, len) < 0)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        st->dirty = true;
        st->body_received += len;
        if (st->ex)
                st->ex->req_body_read += len;
        st->last_data = h2_now(h);
        return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *ud) {
        H2Conn *h = ud;
        H2Stream *st = stream_of(h, id);

        if (!st)
                return 0;
        st->closed = st->dirty = true;
        st->close_error = error_code;
        (void) nghttp2_session_set_stream_user_data(ng, id, NULL);
        return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* nghttp2 callbacks: output */

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *ud) {
        H2Conn *h = ud;
        H2Stream *st = frame->hd.stream_id ? stream_of(h, frame->hd.stream_id) : NULL;

        if (!st || !st->ex)
                return 0;
        st->ex->bytes_sent += frame->hd.length + 9;
        if (frame->hd.type == NGHTTP2_HEADERS && st->resp_submitted)
                st->ex->client_head_sent = true;
        /* The response is complete but the request is not: the client may stop sending
         * (RFC 9113 section 8.1). */
        if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !st->end_in && !st->ws_open)
                (void) nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
        return 0;
}

/* DATA for st: nghttp2 asks how much may go (up to length, as the windows allow) and the
 * bytes stay in the stream's buffer (NGHTTP2_DATA_FLAG_NO_COPY) until on_send_data puts the
 * frame into the connection's output: one copy of a body byte in proxyd, not two. */
ssize_t h2_on_data_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length, uint32_t *data_flags,
                        nghttp2_data_source *source, void *ud) {
        H2Stream *st = source->ptr;
        size_t n = MIN(length, buf_len(&st->resp));
        bool eof = st->resp_eof && n == buf_len(&st->resp);
        (void) ng;
        (void) id;
        (void) buf;
        (void) ud;

        if (n == 0 && !eof) {
                st->deferred = true;
                return NGHTTP2_ERR_DEFERRED;
        }
        if (n > 0)
                *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
        if (eof) {
                *data_flags |= NGHTTP2_DATA_FLAG_EOF;
                if (buf_len(&st->trailers) > 0 && h2_submit_trailers(st) == 0)
                        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM; /* the trailers end it */
        }
        return (ssize_t) n;
}

/* The DATA frame of length bytes nghttp2 chose in h2_on_data_read: its header and the
 * stream's bytes appended to the output (nghttp2 retries later when that is full). No
 * padding is ever asked for. */
static int on_send_data(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd, size_t length,
                        nghttp2_data_source *source, void *ud) {
        H2Conn *h = ud;
        H2Stream *st = source->ptr;
        (void) ng;

        if (buf_len(&h->out) >= H2_OUT_MAX)
                return NGHTTP2_ERR_WOULDBLOCK;
        if (length > buf_len(&st->resp) || frame->data.padlen > 0)
                return NGHTTP2_ERR_CALLBACK_FAILURE; /* (never: what was offered is still there) */
        if (buf_reserve(&h->out, 9 + length) < 0)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        (void) buf_append(&h->out, framehd, 9);
        (void) buf_append(&h->out, buf_head(&st->resp), length);
        h2_resp_consume(st, length);
        return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The session ops */

static int h2_body_peek(Exchange *ex, const char **ret, size_t *ret_len) {
        H2Stream *st = ex->stream;
        uint64_t max = ex_settings(ex)->client_max_body_size;

        if (max > 0 && st->body_received > max) {
                log_info("%s: HTTP/2 request body exceeds client_max_body_size", ex_text(ex));
                return -EFBIG;
        }
        if (buf_len(&st->body) > 0) {
                *ret = buf_head(&st->body);
                *ret_len = buf_len(&st->body);
                return 1;
        }
        if (st->end_in)
                return 0;
        if (st->closed || st->reset_sent)
                return -ECONNRESET;
        if (ex->body_wait_start == 0)
                ex->body_wait_start = h2_now(st->h);
        return -EAGAIN;
}

static void h2_body_consume(Exchange *ex, size_t n) {
        H2Stream *st = ex->stream;

        buf_consume(&st->body, n);
        if (!st->closed)
                (void) nghttp2_session_consume(st->h->ng, st->id, n);
        else
                (void) nghttp2_session_consume_connection(st->h->ng, n);
}

static int h2_send_interim(Exchange *ex, int status, const HttpResponse *r) {
        H2Stream *st = ex->stream;
        nghttp2_nv nv = { (uint8_t *) ":status", (uint8_t *) "100", 7, 3, NGHTTP2_NV_FLAG_NONE };

        if (r) {
                /* an upstream's 1xx, fields filtered as the HTTP/1 serializer does */
                _cleanup_(buf_free) Buf head = {};
                if (st->resp_submitted)
                        return 0;
                int k = http1_write_response_head(&head, r, ex_settings(ex), HTTP_BODY_NONE, true, 1, NULL);
                if (k < 0)
                        return k;
                return h2_submit_head(st, buf_head(&head), buf_len(&head), r->status, false, true);
        }
        if (status != 100 || st->body_received > 0 || st->resp_submitted)
                return 0;
        return nghttp2_submit_headers(st->h->ng, NGHTTP2_FLAG_NONE, st->id, NULL, &nv, 1, NULL) < 0 ? -EIO : 0;
}

static int h2_send_head(Exchange *ex, const HttpResponse *r) {
        H2Stream *st = ex->stream;
        _cleanup_(buf_free) Buf head = {};

        if (st->resp_submitted)
                return -EPROTO;
        if (st->ws && r->status == 101)
                return h2_ws_answer(st, r);
        if (r->status == 101)
                return -EPROTO; /* never asked for over HTTP/2 */
        if (st->ws && r->status >= 200 && r->status < 300) {
                /* the upstream did not switch: a 2xx would tell the client its tunnel is open */
                log_warning("%s: upstream %s answered a WebSocket handshake with %d", ex_text(ex), ex->peer_text,
                            r->status);
                char none[] = "";
                ex->status = 502;
                return h2_submit_head(st, none, 0, 502, false, false);
        }
        HttpBodyKind framing = r->body == HTTP_BODY_LENGTH ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
        ResponseFields rf;
        int k = http1_write_response_head(&head, r, ex_settings(ex), framing, true, 1,
                                          exchange_rules_fields(ex, r->status, &rf));
        if (k < 0)
                return k;
        bool body = r->body != HTTP_BODY_NONE && !(r->body == HTTP_BODY_LENGTH && r->content_length == 0) &&
                    ex->method_id != HTTP_METHOD_HEAD && r->status != 204 && r->status != 304;
        return h2_submit_head(st, buf_head(&head), buf_len(&head), r->status, body, false);
}

static int h2_send_local(Exchange *ex, const LocalResponse *l) {
        H2Stream *st = ex->stream;
        _cleanup_(buf_free) Buf head = {};

        if (st->resp_submitted) {
                h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
                return 0;
        }
        ResponseFields rf;
        int k = http1_write_local_response(&head, l, true, false, exchange_rules_fields(ex, l->status, &rf));
        if (k < 0)
                return k;
        /* the body follows the head's empty line */
        char *sep = memmem(buf_head(&head), buf_len(&head), "\r\n\r\n", 4);
        size_t head_len = sep ? (size_t) (sep - buf_head(&head)) + 4 : buf_len(&head);
        size_t body_len = buf_len(&head) - head_len;
        bool body = body_len > 0 && ex->method_id != HTTP_METHOD_HEAD && l->status != 204 && l->status != 304;
        h2_resp_drop(st);
        if (body && h2_resp_append(st, buf_head(&head) + head_len, body_len, true) < 0)
                return -ENOMEM;
        st->resp_eof = true;
        return h2_submit_head(st, buf_head(&head), head_len, l->status, body, false);
}

void h2_resume(H2Stream *st) {
        if (st->deferred && !st->closed) {
                st->deferred = false;
                (void) nghttp2_session_resume_data(st->h->ng, st->id);
        }
}

static ssize_t h2_send_data(Exchange *ex, const char *p, size_t n, bool last) {
        H2Stream *st = ex->stream;

        if (st->closed || st->reset_sent)
                return -ECONNRESET;
        if (!st->resp_body)
                return (ssize_t) n; /* nothing of it may reach the client */
        ssize_t k = h2_resp_append(st, p, n, false);
        if (k <= 0)
                return k;
        if (last && (size_t) k == n)
                st->resp_eof = true;
        h2_resume(st);
        return k;
}

/* Kept only for a client that said it takes them (te: trailers, as gRPC does). */
static int h2_send_trailers(Exchange *ex, const char *lines, size_t len) {
        H2Stream *st = ex->stream;

        if (!st->te_trailers || !st->resp_body || st->closed || st->reset_sent)
                return 0;
        buf_reset(&st->trailers);
        return buf_append(&st->trailers, lines, len) < 0 ? -ENOMEM : 0;
}

static const char *h2_body_trailers(Exchange *ex, size_t *ret_len) {
        H2Stream *st = ex->stream;

        *ret_len = buf_len(&st->req_trailers);
        return *ret_len > 0 ? buf_head(&st->req_trailers) : NULL;
}

static int h2_send_end(Exchange *ex) {
        H2Stream *st = ex->stream;

        st->resp_eof = true;
        h2_resume(st);
        return 0;
}

static bool h2_send_blocked(const Exchange *ex) {
        const H2Stream *st = ex->stream;
        /* (a head not yet given is read: the client sees every response begin) */
        return buf_len(&st->resp) > 0 || (st->resp_submitted && st->h->resp_bytes >= H2_CONN_OUT_MAX);
}

static const char *h2_client_subject(const Exchange *ex) {
        return tls_stream_client_subject(h2_of(ex)->host.client);
}

static int h2_local_address(const Exchange *ex, struct sockaddr_storage *ret, socklen_t *ret_len) {
        *ret_len = sizeof(*ret);
        return getsockname(h2_of(ex)->host.client->fd, (struct sockaddr *) ret, ret_len) < 0 ? -errno : 0;
}

static void h2_session_run(Session *s) {
        H2Conn *h = (H2Conn *) s;

        h->all_dirty = true;
        h2_conn_run(h);
}

/* After an event on one exchange's upstream: that stream is run after the worker's batch of
 * events (the deadline slot set to now), with every other stream that had one, and what they
 * give the client leaves in one write. */
static void h2_session_run_exchange(Exchange *ex) {
        H2Stream *st = ex->stream;
        H2Conn *h = st->h;

        st->dirty = true;
        if (!h->resume) {
                h->resume = true;
                (void) worker_timer_set(h->s.worker, h->host.timer, h2_now(h));
        }
}

static const SessionOps h2_session_ops = {
        .run = h2_session_run,
        .run_exchange = h2_session_run_exchange,
        .body_peek = h2_body_peek,
        .body_consume = h2_body_consume,
        .body_trailers = h2_body_trailers,
        .send_interim = h2_send_interim,
        .send_head = h2_send_head,
        .send_local = h2_send_local,
        .send_data = h2_send_data,
        .send_trailers = h2_send_trailers,
        .send_end = h2_send_end,
        .send_pipe = NULL,
        .send_blocked = h2_send_blocked,
        .client_subject = h2_client_subject,
        .local_address = h2_local_address,
};

/* ---------------------------------------------------------------------------------------- */
/* The connection */

static void h2_close(H2Conn *h) {
        h->host.close(h->host.owner);
}

/* Serialize what nghttp2 has queued and write it, one write per round. 1 on progress, 0
 * blocked or nothing to do, -1 when the connection failed (closed). */
static int h2_flush(H2Conn *h) {
        int progress = 0;

        while (buf_len(&h->out) < H2_OUT_MAX) {
                const uint8_t *p;
                ssize_t n = nghttp2_session_mem_send(h->ng, &p);
                if (n < 0) {
                        log_info("%s: HTTP/2 session failed: %s", h2_text(h), nghttp2_strerror((int) n));
                        h2_close(h);
                        return -1;
                }
                if (n == 0)
                        break;
                if (buf_append(&h->out, p, (size_t) n) < 0) {
                        h2_close(h);
                        return -1;
                }
        }
        while (buf_len(&h->out) > 0 && *h->host.wr_ready) {
                ssize_t k = stream_write(h->host.client, buf_head(&h->out), buf_len(&h->out));
                if (k == -EAGAIN) {
                        *h->host.wr_ready = false;
                        break;
                }
                if (k <= 0) {
                        log_info("%s: HTTP/2 client write failed: %s", h2_text(h), strerror(k < 0 ? (int) -k : EPIPE));
                        h2_close(h);
                        return -1;
                }
                if ((size_t) k < buf_len(&h->out))
                        *h->host.wr_ready = false;
                buf_consume(&h->out, (size_t) k);
                h->last_write = h2_now(h);
                progress = 1;
        }
        if (buf_len(&h->out) == 0)
                buf_free(&h->out);
        return progress;
}

/* Feed input to nghttp2. 1 on progress, 0 when there is none now, -1 when closed. */
static int h2_read(H2Conn *h) {
        ssize_t n;
        const char *p;

        if (h->fatal || buf_len(&h->out) >= H2_OUT_MAX)
                return 0; /* the client reads its answers first */
        if (buf_len(&h->in) > 0) {
                p = buf_head(&h->in);
                n = (ssize_t) buf_len(&h->in);
        } else {
                if (!*h->host.rd_ready)
                        return 0;
                char *scratch = worker_read_scratch(h->s.worker);
                if (!scratch) {
                        h2_close(h);
                        return -1;
                }
                n = stream_read(h->host.client, scratch, WORKER_READ_SCRATCH);
                note_short_read(h->host.client, n, WORKER_READ_SCRATCH, *h->host.rdhup, h->host.rd_ready);
                if (n == -EAGAIN) {
                        *h->host.rd_ready = false;
                        return 0;
                }
                if (n <= 0) {
                        if (h->n_streams > 0)
                                log_info("%s: HTTP/2 client closed the connection with %u streams open", h2_text(h),
                                         h->n_streams);
                        h2_close(h);
                        return -1;
                }
                p = scratch;
        }
        h->last_read = h2_now(h);
        h->ping_sent = 0;
        ssize_t k = nghttp2_session_mem_recv(h->ng, (const uint8_t *) p, (size_t) n);
        buf_free(&h->in);
        if (k < 0) {
                if (k == NGHTTP2_ERR_FLOODED)
                        h2_abort(h, NGHTTP2_ENHANCE_YOUR_CALM, "the client does not read the frames it asks for");
                else if (!h->fatal) {
                        log_info("%s: HTTP/2 protocol error: %s", h2_text(h), nghttp2_strerror((int) k));
                        h->fatal = true; /* nghttp2 queued its GOAWAY */
                }
        }
        if (h->mem > H2_MEM_MAX)
                h2_abort(h, NGHTTP2_ENHANCE_YOUR_CALM, "connection memory limit exceeded");
        return 1;
}

/* One round for every stream: begin complete requests, run exchanges, end closed streams.
 * Returns 1 on progress. */
static int h2_streams_step(H2Conn *h) {
        int progress = 0;

        bool all = h->all_dirty;

        h->all_dirty = false;
        for (H2Stream *st = h->streams, *next; st; st = next) {
                next = st->next;
                if (!st->dirty && !all && !st->closed && !(!st->ex && st->headers_done))
                        continue; /* nothing happened for it */
                st->dirty = false;
                if (!st->ex && st->headers_done && !st->closed) {
                        if (h->fatal || h->goaway) {
                                /* of a round that tripped a limit, or after GOAWAY: never begun */
                                h2_stream_reset(st, NGHTTP2_REFUSED_STREAM);
                                continue;
                        }
                        int r = h2_stream_begin(st);
                        if (r < 0) {
                                log_error_errno(r, "%s: cannot start the HTTP/2 request", h2_text(h));
                                if (!st->ex || !st->ex->src)
                                        h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
                        }
                        progress = 1;
                }
                Exchange *ex = st->ex;
                if (ex && st->ws_open && (ex->tunnel_pending || ex->tunneling)) {
                        if (h2_ws_step(st) > 0)
                                progress = st->dirty = true; /* until the tunnel is blocked */
                } else if (ex && !st->closed) {
                        unsigned i = 0;
                        while (exchange_step(ex) > 0) {
                                progress = 1;
                                if (++i >= H2_RUN_BUDGET) {
                                        st->dirty = true; /* more next round */
                                        break;
                                }
                        }
                        if (ex->resp_truncated)
                                h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
                        else if (ex->resp_done && st->resp_submitted && !exchange_has_output(ex) && !st->resp_eof) {
                                st->resp_eof = true;
                                h2_resume(st);
                        }
                }
                if (st->closed) {
                        h2_stream_free(st);
                        progress = 1;
                }
        }
        return progress;
}

static uint64_t h2_deadline(H2Conn *h, H2Stream **ret_stream, TimeoutKind *ret_kind) {
        const LocationSettings *s = h->set;
        uint64_t d = USEC_INFINITY;
        H2Stream *which = NULL;
        TimeoutKind kind = TIMEOUT_NONE;

#define CONSIDER(value, k, st)               \
        do {                                 \
                uint64_t _v = (value);       \
                if (_v < d) {                \
                        d = _v;              \
                        kind = (k);          \
                        which = (st);        \
                }                            \
        } while (0)

        if (h->fatal) {
                /* only the GOAWAY is left to write */
                CONSIDER(h->last_write + s->send_timeout, TIMEOUT_SEND, NULL);
                *ret_stream = NULL;
                *ret_kind = kind;
                return d;
        }
        if (!h->any_stream)
                CONSIDER(h->accepted + s->client_header_timeout, TIMEOUT_HEADER, NULL);
        if (h->in_block)
                CONSIDER(h->block_start + s->client_header_timeout, TIMEOUT_HEADER, NULL);
        if (h->n_streams == 0)
                CONSIDER(h->idle_since + s->http2_idle_timeout, TIMEOUT_KEEPALIVE, NULL);
        else
                CONSIDER((h->ping_sent ?: h->last_read) + s->http2_ping_timeout, TIMEOUT_KEEPALIVE, NULL);
        if (buf_len(&h->out) > 0 && !*h->host.wr_ready)
                CONSIDER(h->last_write + s->send_timeout, TIMEOUT_SEND, NULL);
        for (H2Stream *st = h->streams; st; st = st->next) {
                Exchange *ex = st->ex;
                if (!ex)
                        continue;
                const LocationSettings *ls = ex_settings(ex) ?: s;
                if (st->stalled_since > 0)
                        CONSIDER(st->stalled_since + ls->send_timeout, TIMEOUT_SEND, st);
                if (ex->tunneling) {
                        CONSIDER(ex->tunnel_last + ls->tunnel_timeout, TIMEOUT_TUNNEL, st);
                        continue;
                }
                if (exchange_wants_body(ex) && buf_len(&st->body) == 0 && !st->end_in)
                        CONSIDER(st->last_data + ls->client_body_timeout, TIMEOUT_BODY, st);
                TimeoutKind sk;
                uint64_t sd = exchange_deadline(ex, &sk);
                CONSIDER(sd, sk, st);
        }
#undef CONSIDER
        *ret_stream = which;
        *ret_kind = kind;
        return d;
}

static void h2_update_timer(H2Conn *h) {
        H2Stream *st;
        TimeoutKind kind;
        uint64_t d = h2_deadline(h, &st, &kind);

        if (d == USEC_INFINITY) {
                worker_timer_remove(h->s.worker, h->host.timer);
                return;
        }
        if (d < h->host.timer->when || h->host.timer->idx == TIMER_NOT_QUEUED)
                (void) worker_timer_set(h->s.worker, h->host.timer, d);
}

void h2_conn_run(H2Conn *h) {
        for (unsigned i = 0;; i++) {
                int p = h2_read(h);
                if (p < 0)
                        return;
                p |= h2_streams_step(h);
                int f = h2_flush(h);
                if (f < 0)
                        return;
                p |= f;
                if ((h->fatal || (h->goaway && h->n_streams == 0)) && buf_len(&h->out) == 0 &&
                    !nghttp2_session_want_write(h->ng)) {
                        h2_close(h);
                        return;
                }
                if (!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng) &&
                    buf_len(&h->out) == 0) {
                        h2_close(h);
                        return;
                }
                if (!p)
                        break;
                if (i >= H2_RUN_BUDGET) {
                        h->resume = true;
                        (void) worker_timer_set(h->s.worker, h->host.timer, h2_now(h));
                        return;
                }
        }
        h2_update_timer(h);
}

void h2_conn_timeout(H2Conn *h) {
        H2Stream *st;
        TimeoutKind kind;
        uint64_t now = h2_now(h);

        if (h->resume) {
                h->resume = false;
                h2_conn_run(h);
                return;
        }
        h->all_dirty = true; /* a deadline of any of them */
        uint64_t d = h2_deadline(h, &st, &kind);
        if (d == USEC_INFINITY)
                return;
        if (now + TIMER_ACCURACY_USEC < d) {
                (void) worker_timer_set(h->s.worker, h->host.timer, d);
                return;
        }
        if (!st) {
                switch (kind) {
                case TIMEOUT_HEADER:
                        if (h->in_block)
                                h2_abort(h, NGHTTP2_ENHANCE_YOUR_CALM,
                                         "header block not complete within client_header_timeout");
                        else {
                                log_info("%s: client_header_timeout expired before an HTTP/2 request", h2_text(h));
                                h2_close(h);
                                return;
                        }
                        break;
                case TIMEOUT_KEEPALIVE:
                        if (h->n_streams == 0) {
                                /* idle: GOAWAY, then close */
                                h->goaway = true;
                                (void) nghttp2_session_terminate_session(h->ng, NGHTTP2_NO_ERROR);
                        } else if (!h->ping_sent) {
                                h->ping_sent = now;
                                (void) nghttp2_submit_ping(h->ng, NGHTTP2_FLAG_NONE, NULL);
                        } else {
                                log_info("%s: HTTP/2 client did not answer a PING within http2_ping_timeout", h2_text(h));
                                h2_close(h);
                                return;
                        }
                        break;
                case TIMEOUT_SEND:
                        log_info("%s: send_timeout expired writing to the HTTP/2 client", h2_text(h));
                        h2_close(h);
                        return;
                default:
                        break;
                }
        } else {
                Exchange *ex = st->ex;
                switch (kind) {
                case TIMEOUT_BODY:
                        log_info("%s: HTTP/2 request body too slow (client_body_timeout)", h2_text(h));
                        exchange_fail(ex, 408, "client_body_timeout");
                        break;
                case TIMEOUT_SEND:
                        log_info("%s: HTTP/2 stream %d: the client took no response bytes for send_timeout", h2_text(h),
                                 st->id);
                        ex->reason = "send_timeout";
                        exchange_cut(ex, "send_timeout");
                        h2_stream_reset(st, NGHTTP2_CANCEL);
                        st->stalled_since = 0;
                        break;
                case TIMEOUT_TUNNEL:
                        log_info("%s: HTTP/2 stream %d: tunnel idle for too long, closing", h2_text(h), st->id);
                        ex->reason = "tunnel_timeout";
                        h2_stream_reset(st, NGHTTP2_CANCEL);
                        break;
                default:
                        exchange_timeout(ex, kind);
                        break;
                }
        }
        h2_conn_run(h);
}

void h2_conn_drain(H2Conn *h) {
        h->s.draining = true;
        h->all_dirty = true;
        if (!h->goaway) {
                h->goaway = true;
                (void) nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE,
                                             nghttp2_session_get_last_proc_stream_id(h->ng), NGHTTP2_NO_ERROR, NULL, 0);
        }
        h2_conn_run(h);
}

int h2_conn_new(const Session *base, const H2Host *host, Buf *in, H2Conn **ret) {
        nghttp2_session_callbacks *cb = NULL;
        nghttp2_option *opt = NULL;
        int r;

        H2Conn *h = calloc(1, sizeof(H2Conn));
        if (!h)
                return -ENOMEM;
        h->s = *base;
        h->s.ops = &h2_session_ops;
        h->host = *host;
        h->host.gen = worker_gen_ref(host->gen);
        h->in = *in;
        *in = (Buf){};
        h->accepted = h->last_read = h->last_write = h->idle_since = h->interval_start = h2_now(h);

        Generation *g = h->host.gen->gen;
        if (h->s.listener >= g->n_listeners || g->listener_servers[h->s.listener].n == 0) {
                h2_conn_free(h);
                return -EINVAL;
        }
        h->def = g->listener_servers[h->s.listener].servers[0];
        h->set = &h->def->s;

        nghttp2_mem mem = { .mem_user_data = h, .malloc = mem_malloc, .free = mem_free, .calloc = mem_calloc,
                            .realloc = mem_realloc };
        r = nghttp2_session_callbacks_new(&cb);
        if (r == 0)
                r = nghttp2_option_new(&opt);
        if (r != 0) {
                nghttp2_session_callbacks_del(cb);
                h2_conn_free(h);
                return -ENOMEM;
        }
        nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
        nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
        nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
        nghttp2_session_callbacks_set_send_data_callback(cb, on_send_data);
        nghttp2_option_set_no_auto_window_update(opt, 1);
        nghttp2_option_set_max_outbound_ack(opt, 1000);
        nghttp2_option_set_max_settings(opt, 32);
        /* proxyd's own counts come first (with a journal line); these stay as a backstop */
        nghttp2_option_set_stream_reset_rate_limit(opt, 10 * H2_MAX_RESETS, 100);
        nghttp2_option_set_max_continuations(opt, 4 * H2_MAX_CONTINUATIONS);
        nghttp2_option_set_max_send_header_block_length(opt, 256 * 1024);
        r = nghttp2_session_server_new3(&h->ng, cb, h, opt, &mem);
        nghttp2_session_callbacks_del(cb);
        nghttp2_option_del(opt);
        if (r != 0) {
                log_debug("%s: nghttp2 session: %s", h2_text(h), nghttp2_strerror(r));
                h2_conn_free(h);
                return -ENOMEM;
        }

        const LocationSettings *s = h->set;
        nghttp2_settings_entry iv[] = {
                { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, s->http2_max_concurrent_streams },
                { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, s->http2_initial_window },
                { NGHTTP2_SETTINGS_MAX_FRAME_SIZE, s->http2_max_frame_size },
                { NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t) MIN(s->http2_max_header_list_size, (uint64_t) UINT32_MAX) },
                { NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1 }, /* WebSocket, RFC 8441 (h2-ws.c) */
        };
        r = nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, ELEMENTSOF(iv));
        if (r == 0)
                r = nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0, (int32_t) H2_CONN_WINDOW);
        if (r != 0) {
                log_debug("%s: nghttp2 setup: %s", h2_text(h), nghttp2_strerror(r));
                h2_conn_free(h);
                return r == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EINVAL;
        }
        *ret = h;
        return 0;
}

H2Conn *h2_conn_free(H2Conn *h) {
        if (!h)
                return NULL;
        while (h->streams)
                h2_stream_free(h->streams);
        nghttp2_session_del(h->ng);
        h->ng = NULL;
        buf_free(&h->in);
        buf_free(&h->out);
        worker_gen_unref(h->host.gen);
        free(h);
        return NULL;
}
