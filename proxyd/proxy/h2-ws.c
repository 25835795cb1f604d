/* SPDX-License-Identifier: MIT */
/*
 * WebSocket over HTTP/2 (RFC 8441). proxyd sends SETTINGS_ENABLE_CONNECT_PROTOCOL; a stream
 * with :method CONNECT and :protocol websocket becomes, towards the upstream, the HTTP/1.1
 * handshake of RFC 6455: GET :path with Host :authority, Connection: upgrade,
 * Upgrade: websocket, and a Sec-WebSocket-Key proxyd makes (the HTTP/2 client sends none);
 * Sec-WebSocket-Version, -Protocol and -Extensions pass as they are. The exchange decides the
 * Upgrade as for an HTTP/1 client (websocket, upgrade_protocols), and the upstream's 101 must
 * carry the Sec-WebSocket-Accept that belongs to the key (exchange-upstream.c checks it):
 * the stream is then answered 200, with the upstream's Sec-WebSocket-Protocol and
 * -Extensions, and the exchange's tunnel (tunnel.c) runs between the upstream socket and
 * the stream: DATA received is written upstream (WINDOW_UPDATE once the tunnel took it),
 * what the upstream sends becomes DATA as the client's windows allow; END_STREAM is the
 * half-close in both directions, a reset or a broken upstream ends the other side, and
 * tunnel_timeout bounds an idle tunnel. Any other answer is passed on with its status (a
 * 2xx that is not a 101 would claim a tunnel that does not exist: 502).
 */
#include <gnutls/crypto.h>
#include <sys/random.h>

#include "h2-internal.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static void base64(const uint8_t *p, size_t n, char *out) {
        static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t o = 0;

        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t) p[i] << 16 | (i + 1 < n ? (uint32_t) p[i + 1] << 8 : 0) |
                             (i + 2 < n ? p[i + 2] : 0);
                out[o++] = tab[v >> 18 & 63];
                out[o++] = tab[v >> 12 & 63];
                out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
                out[o++] = i + 2 < n ? tab[v & 63] : '=';
        }
        out[o] = '\0';
}

int h2_ws_request(H2Stream *st, HttpRequest *req, HttpHeader *headers, size_t *n) {
        Exchange *ex = st->ex;
        uint8_t raw[16], digest[20];
        char text[sizeof(st->ws_key) + sizeof(WS_GUID)];

        if (getrandom(raw, sizeof(raw), GRND_NONBLOCK) != (ssize_t) sizeof(raw))
                return -EIO;
        base64(raw, sizeof(raw), st->ws_key);
        snprintf(text, sizeof(text), "%s%s", st->ws_key, WS_GUID);
        if (gnutls_hash_fast(GNUTLS_DIG_SHA1, text, strlen(text), digest) < 0)
                return -EIO;
        base64(digest, sizeof(digest), ex->ws_accept);

        req->method = "GET";
        req->method_len = 3;
        req->method_id = HTTP_METHOD_GET;
        req->connection |= HTTP_CONN_UPGRADE;
        req->upgrade_index = (int) *n;
        headers[(*n)++] = (HttpHeader){ "upgrade", 7, "websocket", 9 };
        headers[(*n)++] = (HttpHeader){ "sec-websocket-key", 17, st->ws_key, strlen(st->ws_key) };
        st->ws = true;
        return 0;
}

static void ws_field(const HttpResponse *r, const char *name, const char *h2name, nghttp2_nv *nva, size_t *n) {
        int i = http1_find_header(r->headers, r->n_headers, name);
        if (i >= 0)
                nva[(*n)++] = (nghttp2_nv){ (uint8_t *) h2name, (uint8_t *) r->headers[i].value, strlen(h2name),
                                            r->headers[i].value_len, NGHTTP2_NV_FLAG_NONE };
}

int h2_ws_answer(H2Stream *st, const HttpResponse *r) {
        nghttp2_nv nva[3];
        size_t n = 0;

        nva[n++] = (nghttp2_nv){ (uint8_t *) ":status", (uint8_t *) "200", 7, 3, NGHTTP2_NV_FLAG_NONE };
        ws_field(r, "Sec-WebSocket-Protocol", "sec-websocket-protocol", nva, &n);
        ws_field(r, "Sec-WebSocket-Extensions", "sec-websocket-extensions", nva, &n);
        nghttp2_data_provider dp = { .source.ptr = st, .read_callback = h2_on_data_read };
        if (nghttp2_submit_response(st->h->ng, st->id, nva, n, &dp) < 0)
                return -EIO;
        st->resp_submitted = st->resp_body = true;
        st->ws_open = true;
        st->ex->status = 200;
        return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The stream as the tunnel's client side */

static ssize_t ws_read(void *ctx, char *p, size_t n) {
        H2Stream *st = ctx;
        size_t k = MIN(n, buf_len(&st->body));

        if (k == 0) {
                if (st->end_in)
                        return 0;
                return st->closed || st->reset_sent ? -ECONNRESET : -EAGAIN;
        }
        memcpy(p, buf_head(&st->body), k);
        buf_consume(&st->body, k);
        (void) nghttp2_session_consume(st->h->ng, st->id, k);
        return (ssize_t) k;
}

static ssize_t ws_write(void *ctx, const char *p, size_t n) {
        H2Stream *st = ctx;

        if (st->closed || st->reset_sent)
                return -EPIPE;
        ssize_t k = h2_resp_append(st, p, n, false);
        if (k == 0)
                return -EAGAIN;
        if (k > 0)
                h2_resume(st);
        return k;
}

static void ws_shutdown_write(void *ctx) {
        H2Stream *st = ctx;

        st->resp_eof = true; /* END_STREAM once `resp` is sent */
        h2_resume(st);
}

static const TunnelEndOps ws_end_ops = {
        .read = ws_read,
        .write = ws_write,
        .shutdown_write = ws_shutdown_write,
};

int h2_ws_step(H2Stream *st) {
        Exchange *ex = st->ex;

        if (st->closed || st->reset_sent || ex->resp_done)
                return 0;
        if (!ex->tunneling) {
                if (!ex->up)
                        return 0;
                ex->tunnel_pending = false;
                ex->tunneling = true;
                ex->tunnel_last = h2_now(st->h);
                (void) tunnel_init_ops(&ex->tunnel, &ws_end_ops, st, &st->tun_rd, &st->tun_wr, &ex->up->stream,
                                       &ex->up->rd_ready, &ex->up->wr_ready, &ex->up_in);
        }
        /* the stream side costs no syscall: it is always asked */
        st->tun_rd = st->tun_wr = true;
        int r = tunnel_pump(&ex->tunnel);
        if (r < 0) {
                log_info("%s: HTTP/2 stream %d: tunnel to %s broken: %s", h2_text(st->h), st->id, ex->peer_text,
                         strerror(-r));
                ex->reason = "tunnel broken";
                /* (a reset by the client closed the stream already: nothing is sent then) */
                h2_stream_reset(st, NGHTTP2_CONNECT_ERROR);
                return 1;
        }
        if (r == 2)
                ex->resp_done = true; /* both ways ended: the stream closes with the last END_STREAM */
        if (r > 0)
                ex->tunnel_last = h2_now(st->h);
        return r > 0;
}
