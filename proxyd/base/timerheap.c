/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>

#include "timerheap.h"

static void place(TimerHeap *h, size_t i, TimerNode *n) {
        h->nodes[i] = n;
        n->idx = i;
}

static void sift_up(TimerHeap *h, size_t i) {
        TimerNode *n = h->nodes[i];
        while (i > 0) {
                size_t parent = (i - 1) / 2;
                if (h->nodes[parent]->when <= n->when)
                        break;
                place(h, i, h->nodes[parent]);
                i = parent;
        }
        place(h, i, n);
}

static void sift_down(TimerHeap *h, size_t i) {
        TimerNode *n = h->nodes[i];
        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, m = i;
                uint64_t mw = n->when;
                if (l < h->n && h->nodes[l]->when < mw) {
                        m = l;
                        mw = h->nodes[l]->when;
                }
                if (r < h->n && h->nodes[r]->when < mw)
                        m = r;
                if (m == i)
                        break;
                place(h, i, h->nodes[m]);
                i = m;
        }
        place(h, i, n);
}

int timer_heap_set(TimerHeap *h, TimerNode *node, uint64_t when) {
        if (node->idx != TIMER_NOT_QUEUED) {
                uint64_t old = node->when;
                node->when = when;
                if (when < old)
                        sift_up(h, node->idx);
                else if (when > old)
                        sift_down(h, node->idx);
                return 0;
        }
        if (h->n == h->cap) {
                size_t cap = h->cap ? h->cap * 2 : 64;
                TimerNode **a = realloc(h->nodes, cap * sizeof(TimerNode *));
                if (!a)
                        return -ENOMEM;
                h->nodes = a;
                h->cap = cap;
        }
        node->when = when;
        place(h, h->n++, node);
        sift_up(h, h->n - 1);
        return 0;
}

void timer_heap_remove(TimerHeap *h, TimerNode *node) {
        size_t i = node->idx;
        if (i == TIMER_NOT_QUEUED)
                return;
        node->idx = TIMER_NOT_QUEUED;
        h->n--;
        if (i == h->n)
                return;
        place(h, i, h->nodes[h->n]);
        if (i > 0 && h->nodes[i]->when < h->nodes[(i - 1) / 2]->when)
                sift_up(h, i);
        else
                sift_down(h, i);
}

void timer_heap_done(TimerHeap *h) {
        for (size_t i = 0; i < h->n; i++)
                h->nodes[i]->idx = TIMER_NOT_QUEUED;
        free(h->nodes);
        *h = (TimerHeap){};
}
