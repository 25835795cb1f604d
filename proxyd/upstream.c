/* SPDX-License-Identifier: MIT */
#include "upstream.h"
#include "worker.h"

const UpstreamServer *upstream_pick(Worker *w, const Upstream *up, unsigned attempt) {
        size_t n_primary = 0, n_backup = 0;

        for (size_t i = 0; i < up->n_servers; i++) {
                if (up->servers[i].down)
                        continue;
                if (up->servers[i].backup)
                        n_backup++;
                else
                        n_primary++;
        }
        if (attempt >= n_primary + n_backup)
                return NULL;

        bool backup = attempt >= n_primary;
        size_t n = backup ? n_backup : n_primary;
        size_t k = backup ? attempt - n_primary : attempt;
        if (attempt == 0)
                w->rr++;
        size_t want = (w->rr + k) % n;

        for (size_t i = 0; i < up->n_servers; i++) {
                const UpstreamServer *s = &up->servers[i];
                if (s->down || s->backup != backup)
                        continue;
                if (want-- == 0)
                        return s;
        }
        return NULL;
}
