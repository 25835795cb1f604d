/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <sys/epoll.h>

#include "tunnel.h"
#include "util.h"

#define TUNNEL_CHUNK 65536u

static void dir_init(TunnelDir *d, Stream *src, bool *src_rd, Stream *dst, bool *dst_wr, Buf *leftover) {
        *d = (TunnelDir){ .src = src, .dst = dst, .src_rd = src_rd, .dst_wr = dst_wr, .pipe = { -EBADF, -EBADF } };
        d->buf = *leftover;
        *leftover = (Buf){};
}

int tunnel_init(Tunnel *t, Stream *client, bool *client_rd, bool *client_wr, Buf *from_client, Stream *up,
                bool *up_rd, bool *up_wr, Buf *from_up) {
        *t = (Tunnel){};
        dir_init(&t->dir[0], client, client_rd, up, up_wr, from_client);
        dir_init(&t->dir[1], up, up_rd, client, client_wr, from_up);
        if (stream_is_plain(client) && stream_is_plain(up)) {
                for (int i = 0; i < 2; i++)
                        if (pipe2(t->dir[i].pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
                                /* fall back to copying through the buffer */
                                t->dir[i].pipe[0] = t->dir[i].pipe[1] = -EBADF;
                        }
        }
        return 0;
}

int tunnel_init_ops(Tunnel *t, const TunnelEndOps *client_ops, void *client_ctx, bool *client_rd, bool *client_wr,
                    Stream *up, bool *up_rd, bool *up_wr, Buf *from_up) {
        Buf none = {};

        *t = (Tunnel){};
        dir_init(&t->dir[0], NULL, client_rd, up, up_wr, &none);
        dir_init(&t->dir[1], up, up_rd, NULL, client_wr, from_up);
        t->dir[0].src_ops = t->dir[1].dst_ops = client_ops;
        t->dir[0].src_ctx = t->dir[1].dst_ctx = client_ctx;
        return 0;
}

void tunnel_done(Tunnel *t) {
        for (int i = 0; i < 2; i++) {
                buf_free(&t->dir[i].buf);
                for (int j = 0; j < 2; j++)
                        if (t->dir[i].pipe[j] >= 0)
                                close(t->dir[i].pipe[j]);
                t->dir[i].pipe[0] = t->dir[i].pipe[1] = -EBADF;
        }
}

static bool dir_finished(const TunnelDir *d) {
        return d->shut;
}

static ssize_t dir_read(TunnelDir *d, char *p, size_t n) {
        return d->src ? stream_read(d->src, p, n) : d->src_ops->read(d->src_ctx, p, n);
}

static ssize_t dir_write(TunnelDir *d, const char *p, size_t n) {
        return d->dst ? stream_write(d->dst, p, n) : d->dst_ops->write(d->dst_ctx, p, n);
}

static int dir_pump(TunnelDir *d, uint64_t *bytes) {
        int progress = 0;
        ssize_t n;

        while (buf_len(&d->buf) > 0 && *d->dst_wr) {
                n = dir_write(d, buf_head(&d->buf), buf_len(&d->buf));
                if (n == -EAGAIN) {
                        *d->dst_wr = false;
                        break;
                }
                if (n < 0)
                        return (int) n;
                buf_consume(&d->buf, (size_t) n);
                *bytes += (uint64_t) n;
                progress = 1;
        }
        if (buf_len(&d->buf) > 0)
                return progress;

        while (d->in_pipe > 0 && *d->dst_wr) {
                n = splice(d->pipe[0], NULL, d->dst->fd, NULL, d->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n < 0 && errno == EAGAIN) {
                        *d->dst_wr = false;
                        break;
                }
                if (n < 0)
                        return -errno;
                d->in_pipe -= (size_t) n;
                *bytes += (uint64_t) n;
                progress = 1;
        }
        if (d->in_pipe > 0)
                return progress;

        if (d->src_eof) {
                if (!d->shut) {
                        if (d->dst)
                                (void) stream_shutdown_write(d->dst);
                        else
                                d->dst_ops->shutdown_write(d->dst_ctx);
                        d->shut = true;
                        progress = 1;
                }
                return progress;
        }
        if (!*d->src_rd && (!d->src || stream_pending(d->src) == 0))
                return progress;

        if (d->pipe[0] >= 0) {
                n = splice(d->src->fd, NULL, d->pipe[1], NULL, TUNNEL_CHUNK, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n < 0 && errno == EAGAIN) {
                        /* the pipe is empty here, so it is the socket that has nothing */
                        *d->src_rd = false;
                        return progress;
                }
                if (n < 0)
                        return -errno;
                if (n == 0)
                        d->src_eof = true;
                d->in_pipe += (size_t) n;
                return 1;
        }

        if (buf_space(&d->buf) < TUNNEL_CHUNK && buf_reserve(&d->buf, TUNNEL_CHUNK) < 0)
                return -ENOMEM;
        n = dir_read(d, buf_tail(&d->buf), buf_space(&d->buf));
        if (n == -EAGAIN) {
                *d->src_rd = false;
                return progress;
        }
        if (n < 0)
                return (int) n;
        if (n == 0)
                d->src_eof = true;
        d->buf.end += (size_t) n;
        return 1;
}

int tunnel_pump(Tunnel *t) {
        int progress = 0;
        for (int i = 0; i < 2; i++) {
                int r = dir_pump(&t->dir[i], &t->bytes[i]);
                if (r < 0)
                        return r;
                progress |= r;
        }
        if (dir_finished(&t->dir[0]) && dir_finished(&t->dir[1]))
                return 2;
        return progress;
}
