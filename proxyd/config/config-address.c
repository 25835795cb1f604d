/* SPDX-License-Identifier: MIT */
/* Addresses in proxyd.conf: host:port, [v6]:port, unix:/path, listen entries; resolving names. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stddef.h>
#include <sys/un.h>

#include "config-schema.h"
#include "util.h"

#define CONFIG_ADDRS_PER_NAME 64 /* addresses taken from one resolved name */

bool all_digits(const char *s) {
        if (!*s)
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

int parse_port(const char *s, uint16_t *ret) {
        uint64_t v;

        if (parse_uint64(s, strlen(s), &v) < 0 || v == 0 || v > 65535)
                return -EINVAL;
        *ret = (uint16_t) v;
        return 0;
}

/* Split "host", "host:port", "[v6]", "[v6]:port". */
int split_host_port(const char *s, char **ret_host, uint16_t *ret_port, bool *ret_has_port) {
        const char *colon;
        char *host;

        *ret_has_port = false;
        if (s[0] == '[') {
                const char *e = strchr(s, ']');
                if (!e || e == s + 1)
                        return -EINVAL;
                host = strndup(s + 1, (size_t) (e - s - 1));
                colon = e[1] == ':' ? e + 1 : NULL;
                if (!colon && e[1] != 0) {
                        free(host);
                        return -EINVAL;
                }
        } else {
                colon = strchr(s, ':');
                if (colon && strchr(colon + 1, ':'))
                        return -EINVAL;
                host = colon ? strndup(s, (size_t) (colon - s)) : strdup(s);
        }
        if (!host)
                return -ENOMEM;
        if (!*host) {
                free(host);
                return -EINVAL;
        }
        if (colon) {
                if (parse_port(colon + 1, ret_port) < 0) {
                        free(host);
                        return -EINVAL;
                }
                *ret_has_port = true;
        }
        *ret_host = host;
        return 0;
}

int make_unix(const char *path, struct sockaddr_storage *ss, socklen_t *len) {
        struct sockaddr_un *un = (struct sockaddr_un *) ss;
        size_t n = strlen(path);

        if (path[0] != '/' || n >= sizeof(un->sun_path))
                return -EINVAL;
        memset(ss, 0, sizeof(*ss));
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, path, n);
        *len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n + 1);
        return 0;
}

/* Resolve host:port into up to CONFIG_ADDRS_PER_NAME distinct addresses. */
int resolve(const char *host, uint16_t port, struct sockaddr_storage **ret, size_t *ret_n,
                   const char **ret_err) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP }, *res = NULL;
        struct sockaddr_storage *a = NULL;
        char portstr[8];
        size_t n = 0;
        int r;

        snprintf(portstr, sizeof(portstr), "%u", port);
        r = getaddrinfo(host, portstr, &hints, &res);
        if (r != 0) {
                *ret_err = r == EAI_MEMORY ? "out of memory" : gai_strerror(r);
                return r == EAI_MEMORY ? -ENOMEM : -EINVAL;
        }
        for (struct addrinfo *ai = res; ai && n < CONFIG_ADDRS_PER_NAME; ai = ai->ai_next) {
                struct sockaddr_storage *na;
                bool dup = false;

                if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
                    ai->ai_addrlen > sizeof(struct sockaddr_storage))
                        continue;
                for (size_t i = 0; i < n; i++)
                        if (memcmp(&a[i], ai->ai_addr, ai->ai_addrlen) == 0)
                                dup = true;
                if (dup)
                        continue;
                na = reallocarray(a, n + 1, sizeof(*a));
                if (!na) {
                        free(a);
                        freeaddrinfo(res);
                        return -ENOMEM;
                }
                a = na;
                memset(&a[n], 0, sizeof(a[n]));
                memcpy(&a[n], ai->ai_addr, ai->ai_addrlen);
                n++;
        }
        freeaddrinfo(res);
        if (n == 0) {
                *ret_err = "no usable address";
                return -EINVAL;
        }
        *ret = a;
        *ret_n = n;
        return 0;
}

socklen_t ss_len(const struct sockaddr_storage *ss) {
        return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

int parse_listen_text(const char *t, Listen *ret) {
        Listen li = {};

        if (strncmp(t, "unix:", 5) == 0) {
                li.kind = LISTEN_UNIX;
                if (make_unix(t + 5, &li.addr, &li.addrlen) < 0)
                        return -EINVAL;
        } else if (!strchr(t, ':') && !all_digits(t)) {
                li.kind = LISTEN_NAME;
                if (!*t || strlen(t) > 255 || strpbrk(t, " \t/[]"))
                        return -EINVAL;
        } else {
                struct sockaddr_in *in = (struct sockaddr_in *) &li.addr;
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &li.addr;
                _cleanup_free_ char *host = NULL;
                uint16_t port;
                bool has_port;

                li.kind = LISTEN_INET;
                if (all_digits(t)) {
                        if (parse_port(t, &port) < 0)
                                return -EINVAL;
                        in->sin_family = AF_INET;
                        in->sin_port = htons(port);
                        li.addrlen = sizeof(*in);
                } else {
                        int r = split_host_port(t, &host, &port, &has_port);
                        if (r < 0)
                                return r;
                        if (!has_port)
                                return -EINVAL;
                        if (streq(host, "*") || inet_pton(AF_INET, host, &in->sin_addr) == 1) {
                                in->sin_family = AF_INET;
                                in->sin_port = htons(port);
                                li.addrlen = sizeof(*in);
                        } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
                                in6->sin6_family = AF_INET6;
                                in6->sin6_port = htons(port);
                                li.addrlen = sizeof(*in6);
                        } else
                                return -EINVAL;
                }
        }
        *ret = li;
        return 0;
}
