/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stream.h"
#include "util.h"

ssize_t stream_read(Stream *s, void *buf, size_t n) {
        if (s->ops)
                return s->ops->read(s, buf, n);
        for (;;) {
                ssize_t k = recv(s->fd, buf, n, 0);
                if (k >= 0)
                        return k;
                if (errno == EINTR)
                        continue;
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
}

ssize_t stream_writev(Stream *s, const struct iovec *iov, int n_iov) {
        if (s->ops)
                return s->ops->writev(s, iov, n_iov);
        struct msghdr mh = { .msg_iov = (struct iovec *) iov, .msg_iovlen = (size_t) n_iov };
        int flags = MSG_NOSIGNAL | (s->last_data ? MSG_MORE : 0);
        for (;;) {
                /* send() skips copying and checking a msghdr and an iovec array */
                ssize_t k = n_iov == 1 ? send(s->fd, iov[0].iov_base, iov[0].iov_len, flags) : sendmsg(s->fd, &mh, flags);
                if (k >= 0)
                        return k;
                if (errno == EINTR)
                        continue;
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
}

ssize_t stream_write(Stream *s, const void *buf, size_t n) {
        struct iovec iov = { .iov_base = (void *) buf, .iov_len = n };
        return stream_writev(s, &iov, 1);
}

int stream_shutdown_write(Stream *s) {
        if (s->ops)
                return s->ops->shutdown_write(s);
        return shutdown(s->fd, SHUT_WR) < 0 ? -errno : 0;
}

uint32_t stream_events(Stream *s, uint32_t wanted) {
        if (s->ops && s->ops->events)
                return s->ops->events(s, wanted);
        return wanted;
}

size_t stream_pending(Stream *s) {
        if (s->ops && s->ops->pending)
                return s->ops->pending(s);
        return 0;
}

void stream_close(Stream *s) {
        if (s->ops && s->ops->close)
                s->ops->close(s);
        if (s->fd >= 0)
                close(s->fd);
        *s = STREAM_NULL;
}
