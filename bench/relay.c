/* SPDX-License-Identifier: MIT */
/*
 * relay: the least work a proxy in front of an HTTP/1.1 origin can do, for measuring
 * the floor under the small-request scenarios. Not part of proxyd, never installed.
 *
 * Each client connection gets its own upstream connection, opened when the client is
 * accepted and kept for the client's lifetime; bytes are copied both ways as they come,
 * with no parsing, no headers changed, no timeouts and no logging. That is exactly the
 * socket work of a keep-alive proxy (one recv() and one send() per direction per
 * request, plus epoll_wait()) with nothing else, so its CPU per request is what the
 * kernel charges any proxy on this machine. It is not a usable proxy: a client that
 * pipelines or a slow reader can make a send() come up short, and then the connection
 * pair is simply closed.
 *
 * Usage: relay LISTEN_PORT UPSTREAM_PORT [THREADS]   (both on 127.0.0.1)
 * Each thread has its own SO_REUSEPORT listening socket and epoll instance.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct Side {
        int fd;
        struct Side *peer;
} Side;

static int listen_port, upstream_port;

static int tcp_socket(void) {
        int one = 1;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0)
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return fd;
}

static void pair_close(Side *s) {
        Side *p = s->peer;
        close(s->fd);
        close(p->fd);
        free(s < p ? s : p); /* both halves live in one allocation */
}

static void on_accept(int ep, int lfd) {
        for (;;) {
                int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (c < 0)
                        return;
                int u = tcp_socket();
                struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(upstream_port),
                                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
                if (u < 0 || connect(u, (struct sockaddr *) &a, sizeof(a)) < 0) { /* blocking: loopback */
                        close(c);
                        if (u >= 0)
                                close(u);
                        continue;
                }
                (void) fcntl(u, F_SETFL, O_NONBLOCK);
                Side *two = calloc(2, sizeof(Side));
                if (!two) {
                        close(c);
                        close(u);
                        continue;
                }
                two[0] = (Side){ .fd = c, .peer = &two[1] };
                two[1] = (Side){ .fd = u, .peer = &two[0] };
                struct epoll_event e0 = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = &two[0] };
                struct epoll_event e1 = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = &two[1] };
                (void) epoll_ctl(ep, EPOLL_CTL_ADD, c, &e0);
                (void) epoll_ctl(ep, EPOLL_CTL_ADD, u, &e1);
        }
}

static void *thread_main(void *arg) {
        int one = 1, ep = epoll_create1(EPOLL_CLOEXEC), lfd = tcp_socket();
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(listen_port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        static char lmark;
        char buf[65536];

        (void) arg;
        (void) setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        (void) setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        if (ep < 0 || lfd < 0 || bind(lfd, (struct sockaddr *) &a, sizeof(a)) < 0 || listen(lfd, 4096) < 0) {
                perror("relay: listen");
                exit(1);
        }
        (void) fcntl(lfd, F_SETFL, O_NONBLOCK);
        struct epoll_event le = { .events = EPOLLIN, .data.ptr = &lmark };
        (void) epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &le);
        for (;;) {
                struct epoll_event ev[256];
                int n = epoll_wait(ep, ev, 256, -1);
                for (int i = 0; i < n; i++) {
                        if (!ev[i].data.ptr)
                                continue; /* its pair was closed earlier in this batch */
                        if (ev[i].data.ptr == &lmark) {
                                on_accept(ep, lfd);
                                continue;
                        }
                        Side *s = ev[i].data.ptr;
                        ssize_t k = recv(s->fd, buf, sizeof(buf), 0);
                        if (k < 0 && errno == EAGAIN)
                                continue;
                        if (k <= 0 || send(s->peer->fd, buf, (size_t) k, MSG_NOSIGNAL) != k) {
                                /* later events of this batch may name the pair: drop them */
                                for (int j = i + 1; j < n; j++)
                                        if (ev[j].data.ptr == s || ev[j].data.ptr == s->peer)
                                                ev[j].data.ptr = NULL;
                                pair_close(s);
                        }
                }
        }
        return NULL;
}

int main(int argc, char **argv) {
        if (argc < 3) {
                fprintf(stderr, "usage: relay LISTEN_PORT UPSTREAM_PORT [THREADS]\n");
                return 2;
        }
        listen_port = atoi(argv[1]);
        upstream_port = atoi(argv[2]);
        int threads = argc > 3 ? atoi(argv[3]) : 2;
        pthread_t t[64];
        for (int i = 0; i < threads && i < 64; i++)
                pthread_create(&t[i], NULL, thread_main, NULL);
        pthread_join(t[0], NULL);
        return 0;
}
