/* SPDX-License-Identifier: MIT */
/*
 * `proxyd ctl`: the command-line client of the admin endpoint. It speaks HTTP/1.1 over the
 * admin unix socket (/run/proxyd/admin.sock, proxyd-admin.socket) and prints what proxyd
 * answers. See proxyd-ctl(8).
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl.h"

#define CTL_DEFAULT_SOCKET "/run/proxyd/admin.sock"
#define CTL_RESPONSE_MAX (64u << 20)

static void ctl_help(void) {
        printf("Usage: proxyd ctl [--socket=PATH] COMMAND [ARGS]\n"
               "\n"
               "Control a running proxyd through its admin socket (default: $PROXYD_ADMIN_SOCKET or %s).\n"
               "\n"
               "  list                          upstream groups and their servers, with state\n"
               "  status                        the status page's data (JSON)\n"
               "  metrics                       the Prometheus metrics\n"
               "  drain   GROUP SERVER          no new requests; the running ones finish\n"
               "  disable GROUP SERVER          no new requests and no health checks\n"
               "  enable  GROUP SERVER          back in rotation (undoes drain and disable)\n"
               "  weight  GROUP SERVER N        use weight N (1-1000) instead of the configured one\n"
               "  check   GROUP SERVER          run a health check now and print its result\n"
               "  reload                        reload the configuration; on failure print file:line: why\n"
               "  purge-cache KEY               purge a cache key (http://host/path); KEY ending in * purges\n"
               "                                every key starting with it; prints how many objects went\n"
               "\n"
               "SERVER is an address as listed (127.0.0.1:8081, unix:/run/app.sock) or a server entry as\n"
               "written in the configuration (all its addresses).\n",
               CTL_DEFAULT_SOCKET);
}

static int append_encoded(char *out, size_t size, size_t *len, const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if (*len + 4 >= size)
                        return -ENAMETOOLONG;
                if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                    strchr("-._~:[]", *p))
                        out[(*len)++] = (char)*p;
                else {
                        out[(*len)++] = '%';
                        out[(*len)++] = hex[*p >> 4];
                        out[(*len)++] = hex[*p & 15];
                }
        }
        out[*len] = 0;
        return 0;
}

/* One request over the socket; *ret_body is malloc'ed (NUL-terminated). Returns the status. */
static int ctl_request(const char *socket_path, const char *method, const char *target, char **ret_body) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char head[4096];
        size_t len = 0, cap = 65536;
        char *buf;
        int fd, n;

        if (strlen(socket_path) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "proxyd ctl: socket path too long: %s\n", socket_path);
                return -ENAMETOOLONG;
        }
        strcpy(sa.sun_path, socket_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int e = errno;
                fprintf(stderr, "proxyd ctl: cannot connect to %s: %s\n", socket_path, strerror(e));
                if (fd >= 0)
                        close(fd);
                return -e;
        }
        n = snprintf(head, sizeof(head),
                     "%s %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: proxyd-ctl\r\n"
                     "Connection: close\r\n\r\n",
                     method, target);
        if (n < 0 || (size_t)n >= sizeof(head) || write(fd, head, (size_t)n) != n) {
                fprintf(stderr, "proxyd ctl: cannot send the request\n");
                close(fd);
                return -EIO;
        }
        buf = malloc(cap);
        while (buf) {
                if (len + 1 >= cap) {
                        char *b = cap < CTL_RESPONSE_MAX ? realloc(buf, cap * 2) : NULL;
                        if (!b) {
                                free(buf);
                                buf = NULL;
                                break;
                        }
                        buf = b;
                        cap *= 2;
                }
                ssize_t k = read(fd, buf + len, cap - len - 1);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                len += (size_t)k;
        }
        close(fd);
        if (!buf)
                return -ENOMEM;
        buf[len] = 0;
        int status = 0;
        char *body = strstr(buf, "\r\n\r\n");
        if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || !body) {
                fprintf(stderr, "proxyd ctl: not an HTTP response from %s\n", socket_path);
                free(buf);
                return -EPROTO;
        }
        body += 4;
        memmove(buf, body, strlen(body) + 1);
        *ret_body = buf;
        return status;
}

/* The "error" string of a JSON answer, unescaped enough for a terminal. */
static void print_error(const char *body) {
        const char *e = strstr(body, "\"error\":\"");
        if (!e) {
                fprintf(stderr, "proxyd ctl: %s", body);
                return;
        }
        fputs("proxyd ctl: ", stderr);
        for (e += 9; *e && *e != '"'; e++) {
                if (*e == '\\' && e[1])
                        e++;
                fputc(*e, stderr);
        }
        fputc('\n', stderr);
}

int ctl_main(int argc, char *argv[]) {
        static const struct option options[] = {
                {"socket", required_argument, NULL, 's'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        const char *socket_path = getenv("PROXYD_ADMIN_SOCKET") ?: CTL_DEFAULT_SOCKET;
        char target[2048];
        size_t tl = 0;
        int c;

        optind = 1;
        while ((c = getopt_long(argc, argv, "s:h", options, NULL)) >= 0) {
                switch (c) {
                case 's':
                        socket_path = optarg;
                        break;
                case 'h':
                        ctl_help();
                        return EXIT_SUCCESS;
                default:
                        return EXIT_FAILURE;
                }
        }
        if (optind >= argc) {
                ctl_help();
                return EXIT_FAILURE;
        }
        const char *cmd = argv[optind], *method = "POST";
        int nargs = argc - optind - 1;
        char **args = argv + optind + 1;
        int want = -1;

        if (strcmp(cmd, "list") == 0) {
                method = "GET";
                snprintf(target, sizeof(target), "/api/upstreams?format=text");
                want = 0;
        } else if (strcmp(cmd, "status") == 0 || strcmp(cmd, "metrics") == 0) {
                method = "GET";
                snprintf(target, sizeof(target), "%s", cmd[0] == 's' ? "/api/status" : "/metrics");
                want = 0;
        } else if (strcmp(cmd, "reload") == 0) {
                snprintf(target, sizeof(target), "/api/reload");
                want = 0;
        } else if (strcmp(cmd, "purge-cache") == 0) {
                want = 1;
                tl = (size_t)snprintf(target, sizeof(target), "/api/cache/purge?key=");
                if (nargs == want && append_encoded(target, sizeof(target), &tl, args[0]) < 0) {
                        fprintf(stderr, "proxyd ctl: arguments too long\n");
                        return EXIT_FAILURE;
                }
        } else if (strcmp(cmd, "drain") == 0 || strcmp(cmd, "disable") == 0 || strcmp(cmd, "enable") == 0 ||
                   strcmp(cmd, "check") == 0 || strcmp(cmd, "weight") == 0) {
                want = cmd[0] == 'w' ? 3 : 2;
                if (nargs == want) {
                        tl = (size_t)snprintf(target, sizeof(target), "/api/upstreams/%s?upstream=", cmd);
                        int r = append_encoded(target, sizeof(target), &tl, args[0]);
                        if (r >= 0 && tl + 8 < sizeof(target)) {
                                strcpy(target + tl, "&server=");
                                tl += 8;
                                r = append_encoded(target, sizeof(target), &tl, args[1]);
                        }
                        if (r >= 0 && want == 3 && tl + 8 < sizeof(target)) {
                                strcpy(target + tl, "&weight=");
                                tl += 8;
                                r = append_encoded(target, sizeof(target), &tl, args[2]);
                        }
                        if (r < 0) {
                                fprintf(stderr, "proxyd ctl: arguments too long\n");
                                return EXIT_FAILURE;
                        }
                }
        } else {
                fprintf(stderr, "proxyd ctl: unknown command \"%s\" (see proxyd ctl --help)\n", cmd);
                return EXIT_FAILURE;
        }
        if (nargs != want) {
                fprintf(stderr, "proxyd ctl %s: expected %d argument(s), got %d (see proxyd ctl --help)\n",
                        cmd, want, nargs);
                return EXIT_FAILURE;
        }

        char *body = NULL;
        int status = ctl_request(socket_path, method, target, &body);
        if (status < 0)
                return EXIT_FAILURE;
        bool ok = status >= 200 && status < 300;
        if (!ok)
                print_error(body);
        else if (strcmp(cmd, "check") == 0 && strstr(body, "\"ok\":false")) {
                fputs(body, stdout);
                ok = false;
        } else
                fputs(body, stdout);
        free(body);
        return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
