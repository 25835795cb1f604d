/* SPDX-License-Identifier: MIT */
#pragma once

/* A client connection and the request exchange running on it:
 * head -> route -> upstream -> relay (both directions streamed) -> keep-alive or close. */

#include <sys/socket.h>

#include "worker.h"

/* The worker's sessions (WorkerHost.sessions): HTTP/1 client connections. */
extern const WorkerSessionOps conn_sessions;
