/* SPDX-License-Identifier: MIT */
#pragma once

/* Choosing a server of an upstream group for one attempt of a request. */

#include "config.h"

typedef struct Worker Worker;

/* The server for attempt number `attempt` (0 first) of a request, or NULL when the group
 * has no usable server left. Round-robin over the servers that are not down; backup servers
 * only once every primary server was tried. */
const UpstreamServer *upstream_pick(Worker *w, const Upstream *up, unsigned attempt);
