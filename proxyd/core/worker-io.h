/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The sockets of a worker's connections (clients and upstreams) share one epoll instance,
 * which is itself one entry of the epoll instance the worker waits in (worker.h): one
 * epoll_wait() hands a whole batch of socket events to their handlers, and a connection
 * costs no sd-event source of its own (about 300 bytes each, and a dispatch per event).
 * Registrations are edge-triggered and made once per socket.
 *
 * A handler may free other connections (a client's exchange releases its upstream
 * connection): worker_io_forget() drops their events from the batch being dispatched, so no
 * handler ever runs for a freed connection.
 */

#include <stdbool.h>
#include <stdint.h>

typedef struct Worker Worker;

typedef struct WorkerIo {
        void (*handler)(void *userdata, uint32_t revents);
        void *userdata;
        bool pending; /* in the batch being dispatched, not handled yet */
} WorkerIo;

int worker_io_add(Worker *w, int fd, uint32_t events, WorkerIo *io);
/* For a socket about to be closed: closing its only descriptor takes it out of the epoll
 * instance (no epoll_ctl() needed); this drops its events from the batch being dispatched. */
void worker_io_forget(Worker *w, WorkerIo *io);
/* An event for io was received but not dispatched yet (O(1)). */
bool worker_io_pending(const Worker *w, const WorkerIo *io);
