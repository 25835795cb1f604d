/* SPDX-License-Identifier: MIT */
#pragma once

/* A client connection and the request exchange running on it:
 * head -> route -> upstream -> relay (both directions streamed) -> keep-alive or close. */

#include <sys/socket.h>

#include "worker.h"

int conn_new(Worker *w, int fd, size_t listener, unsigned local_port, const struct sockaddr *peer,
             socklen_t peerlen);
/* A connection's deadline came (or may have come): act on it. */
void conn_timeout(Conn *c);
Conn *conn_from_timer(TimerNode *t);

/* The next connection of the same worker (for iterating while connections close). */
Conn *conn_next(Conn *c);
/* Close now (shutdown timeout, worker exit). */
void conn_abort(Conn *c);
/* Graceful stop: idle connections close now, busy ones after their current response. */
void conn_drain(Conn *c);
