/* SPDX-License-Identifier: MIT */
#pragma once

/* The HTTP/1 client session (conn.c): client connections, each running one exchange at a
 * time (head -> route -> response source -> relay -> keep-alive or close). */

#include <sys/socket.h>

#include "worker.h"

/* The worker's sessions (WorkerHost.sessions): HTTP/1 client connections. */
extern const WorkerSessionOps conn_sessions;
