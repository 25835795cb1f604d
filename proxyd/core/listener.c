/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include "listener.h"
#include "log.h"

void sockaddr_format_host(const struct sockaddr *sa, char *buf, size_t size) {
        switch (sa->sa_family) {
        case AF_INET:
                inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, buf, (socklen_t) size);
                return;
        case AF_INET6:
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, buf, (socklen_t) size);
                return;
        case AF_UNIX:
                snprintf(buf, size, "unix:");
                return;
        default:
                snprintf(buf, size, "?");
        }
}

unsigned sockaddr_port(const struct sockaddr *sa) {
        if (sa->sa_family == AF_INET)
                return ntohs(((const struct sockaddr_in *) sa)->sin_port);
        if (sa->sa_family == AF_INET6)
                return ntohs(((const struct sockaddr_in6 *) sa)->sin6_port);
        return 0;
}

void sockaddr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t size) {
        char host[INET6_ADDRSTRLEN];

        switch (sa->sa_family) {
        case AF_INET:
                sockaddr_format_host(sa, host, sizeof(host));
                snprintf(buf, size, "%s:%u", host, sockaddr_port(sa));
                return;
        case AF_INET6:
                sockaddr_format_host(sa, host, sizeof(host));
                snprintf(buf, size, "[%s]:%u", host, sockaddr_port(sa));
                return;
        case AF_UNIX: {
                const struct sockaddr_un *un = (const struct sockaddr_un *) sa;
                size_t n = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
                n = strnlen(un->sun_path, MIN(n, sizeof(un->sun_path)));
                snprintf(buf, size, "unix:%.*s", (int) n, un->sun_path);
                return;
        }
        default:
                snprintf(buf, size, "?");
        }
}

static bool sockaddr_equal(const struct sockaddr *a, const struct sockaddr *b) {
        if (a->sa_family != b->sa_family)
                return false;
        switch (a->sa_family) {
        case AF_INET: {
                const struct sockaddr_in *x = (const void *) a, *y = (const void *) b;
                return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
        }
        case AF_INET6: {
                const struct sockaddr_in6 *x = (const void *) a, *y = (const void *) b;
                return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
        }
        case AF_UNIX: {
                const struct sockaddr_un *x = (const void *) a, *y = (const void *) b;
                return strncmp(x->sun_path, y->sun_path, sizeof(x->sun_path)) == 0;
        }
        }
        return false;
}

/* Accepted sockets inherit TCP_NODELAY from the listening socket: responses are written in
 * as few syscalls as possible, and a short last write must not wait for the peer's ACK. */
static void listener_set_nodelay(int fd, const struct sockaddr *sa) {
        int one = 1;
        if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* HTTP clients speak first, so a connection is accepted only once its first bytes arrived
 * (TCP_DEFER_ACCEPT, as nginx's `listen ... deferred`): a worker wakes up once per new
 * connection, with the request already there, instead of once for the handshake and again
 * for the data; connections that never send anything cost no accept at all. One that stays
 * silent is accepted after about a second and then meets client_header_timeout as usual. A
 * value set by the socket unit (DeferAcceptSec=) is kept. */
static void listener_set_defer_accept(int fd, const struct sockaddr *sa) {
        int v = 0;
        socklen_t len = sizeof(v);
        if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
                return;
        if (getsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &v, &len) == 0 && v == 0) {
                v = 1;
                (void) setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &v, sizeof(v));
        }
}

static int listener_add(ListenerSet *set, int fd, const char *name, bool handed_over) {
        Listener *l, *n = realloc(set->items, (set->n + 1) * sizeof(Listener));
        char text[256];

        if (!n)
                return -ENOMEM;
        set->items = n;
        l = &set->items[set->n];
        *l = (Listener){ .fd = fd, .handed_over = handed_over };
        l->addrlen = sizeof(l->addr);
        if (getsockname(fd, (struct sockaddr *) &l->addr, &l->addrlen) < 0)
                return -errno;
        listener_set_nodelay(fd, (struct sockaddr *) &l->addr);
        listener_set_defer_accept(fd, (struct sockaddr *) &l->addr);
        sockaddr_format((struct sockaddr *) &l->addr, l->addrlen, text, sizeof(text));
        l->text = strdup(text);
        l->name = name ? strdup(name) : NULL;
        if (!l->text || (name && !l->name))
                return -ENOMEM;
        set->n++;
        return 0;
}

int listeners_collect(ListenerSet *set) {
        char **names = NULL;
        int n, r = 0;

        n = sd_listen_fds_with_names(1, &names);
        if (n < 0)
                return log_error_errno(n, "Failed to receive sockets from the service manager");
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                int flags = fcntl(fd, F_GETFL);

                if (r >= 0 && sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0)
                        r = log_error_errno(EINVAL, "Handed-over fd %d (%s) is not a listening stream socket", fd,
                                            names ? names[i] : "?");
                if (r >= 0 && (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0))
                        r = log_error_errno(errno, "Failed to make fd %d non-blocking", fd);
                if (r >= 0) {
                        r = listener_add(set, fd, names ? names[i] : NULL, true);
                        if (r < 0)
                                log_error_errno(r, "Failed to set up handed-over socket %d", fd);
                }
                if (names)
                        free(names[i]);
        }
        free(names);
        set->n_handed_over = set->n;
        return r;
}

static int listener_bind_new(ListenerSet *set, const Listen *ls) {
        const struct sockaddr *sa = (const struct sockaddr *) &ls->addr;
        _cleanup_close_ int fd = -EBADF;
        int one = 1, r;

        fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (sa->sa_family != AF_UNIX)
                (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (sa->sa_family == AF_INET6)
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (sa->sa_family == AF_UNIX) {
                /* Replace a stale socket file left by an earlier run, never any other file. */
                const struct sockaddr_un *un = (const struct sockaddr_un *) sa;
                struct stat st;
                if (un->sun_path[0] && lstat(un->sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
                        (void) unlink(un->sun_path);
        }
        if (bind(fd, sa, ls->addrlen) < 0)
                return -errno;
        if (listen(fd, 4096) < 0)
                return -errno;
        r = listener_add(set, fd, NULL, false);
        if (r < 0)
                return r;
        TAKE_FD(fd);
        return 0;
}

static bool listen_matches(const Listen *ls, const Listener *l) {
        if (ls->kind == LISTEN_NAME)
                return l->name && streq(l->name, ls->text);
        return sockaddr_equal((const struct sockaddr *) &ls->addr, (const struct sockaddr *) &l->addr);
}

static int servers_append(ListenerServers *s, Server *srv) {
        for (size_t i = 0; i < s->n; i++)
                if (s->servers[i] == srv)
                        return 0;
        Server **n = realloc(s->servers, (s->n + 1) * sizeof(Server *));
        if (!n)
                return -ENOMEM;
        s->servers = n;
        s->servers[s->n++] = srv;
        return 0;
}

void listener_servers_free(ListenerServers *ls, size_t n) {
        if (!ls)
                return;
        for (size_t i = 0; i < n; i++)
                free(ls[i].servers);
        free(ls);
}

int listeners_bind(ListenerSet *set, const Config *c, ListenerServers **ret) {
        ListenerServers *map = NULL;
        int r;

        for (size_t i = 0; i < c->n_listens; i++) {
                const Listen *ls = &c->listens[i];
                bool found = false;

                for (size_t j = 0; j < set->n && !found; j++)
                        found = listen_matches(ls, &set->items[j]);
                if (found)
                        continue;
                if (ls->kind == LISTEN_NAME)
                        return log_error_errno(ENOENT, "%s:%d: listen \"%s\": no socket with that name was handed over "
                                               "(FileDescriptorName= in the socket unit)", ls->file, ls->line, ls->text);
                r = listener_bind_new(set, ls);
                if (r < 0)
                        return log_error_errno(r, "%s:%d: Failed to listen on %s", ls->file, ls->line, ls->text);
                log_info("Listening on %s", set->items[set->n - 1].text);
        }

        map = calloc(set->n ? set->n : 1, sizeof(ListenerServers));
        if (!map)
                return -ENOMEM;
        for (size_t j = 0; j < set->n; j++) {
                for (size_t i = 0; i < c->n_listens; i++) {
                        if (!listen_matches(&c->listens[i], &set->items[j]))
                                continue;
                        for (size_t k = 0; k < c->listens[i].n_servers; k++) {
                                r = servers_append(&map[j], c->listens[i].servers[k]);
                                if (r < 0) {
                                        listener_servers_free(map, set->n);
                                        return r;
                                }
                        }
                }
                /* proxyd-admin.socket without an admin server in the configuration */
                if (map[j].n == 0 && c->admin_builtin && streq_ptr(set->items[j].name, "admin")) {
                        r = servers_append(&map[j], c->admin_builtin);
                        if (r < 0) {
                                listener_servers_free(map, set->n);
                                return r;
                        }
                        if (set->items[j].addr.ss_family != AF_UNIX)
                                log_warning("The admin socket %s is not a unix socket and no server has admin = true: "
                                            "anyone who reaches it may control proxyd (give it access rules)",
                                            set->items[j].text);
                }
                if (map[j].n == 0 && set->items[j].handed_over) {
                        log_error("Handed-over socket %s (%s) is not used by any server's listen entry",
                                  set->items[j].name ?: "(unnamed)", set->items[j].text);
                        listener_servers_free(map, set->n);
                        return -EADDRNOTAVAIL;
                }
        }
        *ret = map;
        return 0;
}

void listeners_close(ListenerSet *set) {
        for (size_t i = 0; i < set->n; i++) {
                if (set->items[i].fd >= 0)
                        close(set->items[i].fd);
                free(set->items[i].name);
                free(set->items[i].text);
        }
        free(set->items);
        *set = (ListenerSet){};
}
