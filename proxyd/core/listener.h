/* SPDX-License-Identifier: MIT */
#pragma once

/* Listening sockets: the ones systemd hands over (sd_listen_fds_with_names), matched to the
 * configuration's `listen` entries by name or by address, plus any proxyd binds itself. */

#include <sys/socket.h>

#include "config.h"

typedef struct Listener {
        int fd;
        char *name; /* FileDescriptorName= of a handed-over socket, NULL if bound here */
        struct sockaddr_storage addr;
        socklen_t addrlen;
        char *text; /* printable local address */
        bool handed_over;
} Listener;

typedef struct ListenerSet {
        Listener *items;
        size_t n;
        size_t n_handed_over;
} ListenerSet;

/* The servers that a listener serves under one configuration, default first. */
typedef struct ListenerServers {
        Server **servers;
        size_t n;
} ListenerServers;

/* Take over the sockets systemd passed (unsets LISTEN_* in the environment). */
int listeners_collect(ListenerSet *set);

/*
 * Make sure every `listen` entry of c has a socket (binding ones that were not handed
 * over), and compute which servers each listener serves. Fails (logging why) when an entry
 * names a socket that was not handed over, when binding fails, or when a handed-over socket
 * is used by no server. On success *ret is an array of set->n entries (free with
 * listener_servers_free).
 */
int listeners_bind(ListenerSet *set, const Config *c, ListenerServers **ret);
void listener_servers_free(ListenerServers *ls, size_t n);

void listeners_close(ListenerSet *set);

/* "1.2.3.4:80", "[::1]:80", "unix:/path". */
void sockaddr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t size);
/* Address only, without port ("1.2.3.4", "::1", "unix:"), and the port (0 for unix). */
void sockaddr_format_host(const struct sockaddr *sa, char *buf, size_t size);
unsigned sockaddr_port(const struct sockaddr *sa);
