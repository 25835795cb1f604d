/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A binary min-heap of deadlines with nodes embedded in their owners: one event-loop timer
 * per worker serves every connection's deadline, so a connection costs a 16-byte node
 * instead of a timer source of its own. Not thread-safe: one heap per worker thread.
 */

#include <stddef.h>
#include <stdint.h>

typedef struct TimerNode TimerNode;
struct TimerNode {
        uint64_t when; /* absolute CLOCK_MONOTONIC usec */
        size_t idx;    /* position in the heap, TIMER_NOT_QUEUED when not queued */
        /* Called when the deadline is due; NULL: the owner is a client session, and the
         * worker's session ops handle it (WorkerSessionOps.timeout). Owners that are no client
         * connection (an exchange running without a client, e.g. a background refresh) set
         * their own. */
        void (*fire)(TimerNode *t);
};

#define TIMER_NOT_QUEUED ((size_t) -1)
#define TIMER_NODE_INIT ((TimerNode){ .when = UINT64_MAX, .idx = TIMER_NOT_QUEUED, .fire = NULL })

typedef struct TimerHeap {
        TimerNode **nodes;
        size_t n, cap;
} TimerHeap;

/* Queue or move a node. -ENOMEM only when a new node cannot be queued. */
int timer_heap_set(TimerHeap *h, TimerNode *node, uint64_t when);
void timer_heap_remove(TimerHeap *h, TimerNode *node);
/* The earliest node, or NULL. */
static inline TimerNode *timer_heap_top(const TimerHeap *h) {
        return h->n > 0 ? h->nodes[0] : NULL;
}
void timer_heap_done(TimerHeap *h);
