/* SPDX-License-Identifier: MIT */
/* Per-client limits: the shared, sharded, bounded key table and the token bucket. See limit.h. */
#include <sched.h>
#include <stdatomic.h>

#include "limit.h"
#include "util.h"

struct LimitEntry {
        LimitEntry *hnext;        /* hash chain */
        LimitEntry *newer, *older; /* LRU list of the shard */
        uint64_t hash;
        uint64_t last;   /* time of the last accepted request */
        uint64_t excess; /* thousandths of a request, at `last` */
        unsigned count;  /* requests in progress */
        unsigned shard;
        size_t key_len;  /* as given (compared up to LIMIT_KEY_MAX) */
        char key[];
};

typedef struct LimitShard {
        atomic_bool busy; /* the shard's lock (shard_lock) */
        LimitEntry **buckets;
        size_t n_buckets; /* power of two */
        LimitEntry *newest, *oldest;
        size_t n, cap;
} LimitShard;

_Static_assert((LIMIT_SHARDS_MAX & (LIMIT_SHARDS_MAX - 1)) == 0, "shards are chosen by a mask");

struct LimitTable {
        atomic_uint refs;
        atomic_uint_fast64_t rejected; /* requests turned away, for the metrics */
        size_t n_shards;
        LimitShard shards[];
};

/* Eight bytes at a time (a key is mostly a client address: one or two rounds), then mixed.
 * Inlined: for an address it is a handful of instructions. */
static inline __attribute__((always_inline)) uint64_t key_hash(const void *key, size_t n) {
        const uint8_t *d = key;
        uint64_t h = UINT64_C(0xcbf29ce484222325), w;

        if (n >= 8 && n <= 16) {
                /* an IPv4 address as text: two overlapping words (the length is mixed in by
                 * the caller) */
                h = (h ^ load_u64((const char *) d)) * UINT64_C(0x100000001b3);
                h ^= h >> 29;
                h = (h ^ load_u64((const char *) d + n - 8)) * UINT64_C(0x100000001b3);
                n = 0;
        }
        for (; n >= 8; d += 8, n -= 8) {
                memcpy(&w, d, 8);
                h = (h ^ w) * UINT64_C(0x100000001b3);
                h ^= h >> 29;
        }
        if (n > 0) {
                w = 0;
                memcpy(&w, d, n);
                h = (h ^ w) * UINT64_C(0x100000001b3);
        }
        h ^= h >> 31;
        h *= UINT64_C(0x7fb5d329728ea185);
        h ^= h >> 27;
        return h;
}

int limit_table_new(size_t max_keys, LimitTable **ret) {
        /* Small tables have one shard, so that their bound is exact; large ones spread their
         * keys over LIMIT_SHARDS_MAX locks. */
        size_t n_shards = max_keys >= 16 * LIMIT_SHARDS_MAX ? LIMIT_SHARDS_MAX : 1;
        LimitTable *t;

        if (max_keys == 0)
                return -EINVAL;
        t = calloc(1, sizeof(LimitTable) + n_shards * sizeof(LimitShard));
        if (!t)
                return -ENOMEM;
        atomic_init(&t->refs, 1);
        t->n_shards = n_shards;
        for (size_t i = 0; i < n_shards; i++) {
                LimitShard *s = &t->shards[i];
                s->cap = (max_keys + n_shards - 1) / n_shards;
                s->n_buckets = 16;
                while (s->n_buckets < s->cap && s->n_buckets < (1u << 20))
                        s->n_buckets <<= 1;
                s->buckets = calloc(s->n_buckets, sizeof(LimitEntry *));
                atomic_init(&s->busy, false);
                if (!s->buckets) {
                        t->n_shards = i + 1;
                        limit_table_unref(t);
                        return -ENOMEM;
                }
        }
        *ret = t;
        return 0;
}

LimitTable *limit_table_ref(LimitTable *t) {
        if (t)
                atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
        return t;
}

LimitTable *limit_table_unref(LimitTable *t) {
        if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
                return NULL;
        for (size_t i = 0; i < t->n_shards; i++) {
                LimitShard *s = &t->shards[i];
                for (LimitEntry *e = s->newest, *next; e; e = next) {
                        next = e->older;
                        free(e);
                }
                free(s->buckets);
        }
        free(t);
        return NULL;
}

/* A shard is held for a few dozen instructions (a lookup and the bucket's arithmetic), so
 * its lock spins instead of sleeping in the kernel; a waiter that spun long (the holder was
 * preempted) lets other threads run. Uncontended: one atomic exchange and one store. */
static __attribute__((noinline)) void shard_lock_wait(LimitShard *s) {
        unsigned spins = 0;

        do
                while (atomic_load_explicit(&s->busy, memory_order_relaxed)) {
                        if (++spins % 128 == 0)
                                sched_yield();
#if defined(__x86_64__) || defined(__i386__)
                        else
                                __builtin_ia32_pause();
#endif
                }
        while (atomic_exchange_explicit(&s->busy, true, memory_order_acquire));
}

/* Taken at once but for another thread on the same shard: the waiting is out of line. */
static inline void shard_lock(LimitShard *s) {
        if (_unlikely_(atomic_exchange_explicit(&s->busy, true, memory_order_acquire)))
                shard_lock_wait(s);
}

static void shard_unlock(LimitShard *s) {
        atomic_store_explicit(&s->busy, false, memory_order_release);
}

static void lru_unlink(LimitShard *s, LimitEntry *e) {
        if (e->newer)
                e->newer->older = e->older;
        else
                s->newest = e->older;
        if (e->older)
                e->older->newer = e->newer;
        else
                s->oldest = e->newer;
        e->newer = e->older = NULL;
}

static void lru_push(LimitShard *s, LimitEntry *e) {
        e->older = s->newest;
        e->newer = NULL;
        if (s->newest)
                s->newest->newer = e;
        s->newest = e;
        if (!s->oldest)
                s->oldest = e;
}

static void entry_drop(LimitShard *s, LimitEntry *e) {
        LimitEntry **pp = &s->buckets[e->hash & (s->n_buckets - 1)];
        while (*pp && *pp != e)
                pp = &(*pp)->hnext;
        if (*pp)
                *pp = e->hnext;
        lru_unlink(s, e);
        s->n--;
        free(e);
}

/* The excess a request at `now` would leave: the stored excess plus this request, less what
 * drained at `rate` since e->last, and never below zero (nginx's arithmetic). */
static uint64_t excess_next(const LimitEntry *e, uint64_t rate, uint64_t now) {
        uint64_t elapsed = now > e->last ? now - e->last : 0, product, drained;
        uint64_t full = e->excess + 1000;

        /* 128-bit arithmetic only when rate * elapsed does not fit in 64 bits */
        if (!__builtin_mul_overflow(rate, elapsed, &product))
                drained = product / (USEC_PER_SEC * 1000);
        else {
                unsigned __int128 d = (unsigned __int128) rate * elapsed / (USEC_PER_SEC * 1000);
                drained = d > UINT64_MAX ? UINT64_MAX : (uint64_t) d;
        }
        return drained >= full ? 0 : full - drained;
}

/* Nothing to remember: no request in progress, unused for a while, and the bucket drained so
 * far that the next request would start from zero, as for a new key. */
static bool entry_idle(const LimitEntry *e, const LimitParams *p, uint64_t now) {
        return e->count == 0 && now >= e->last + LIMIT_IDLE_USEC && (p->rate == 0 || excess_next(e, p->rate, now) == 0);
}

/* A client address as text (7 to 15 bytes for IPv4) in two overlapping words. */
static bool key_eq(const char *a, const char *b, size_t n) {
        if (n >= 8 && n <= 16)
                return load_u64(a) == load_u64(b) && load_u64(a + n - 8) == load_u64(b + n - 8);
        return memcmp(a, b, n) == 0;
}

static LimitEntry *entry_find(LimitShard *s, uint64_t h, const void *key, size_t n) {
        size_t cmp = MIN(n, (size_t) LIMIT_KEY_MAX);
        for (LimitEntry *e = s->buckets[h & (s->n_buckets - 1)]; e; e = e->hnext)
                if (e->hash == h && e->key_len == n && key_eq(e->key, key, cmp))
                        return e;
        return NULL;
}

/* Room for one more entry: a full shard gives up its oldest entry without a request in
 * progress (its bucket state is forgotten, as nginx does when its zone is full). */
static bool shard_make_room(LimitShard *s) {
        if (s->n < s->cap)
                return true;
        for (LimitEntry *e = s->oldest; e; e = e->newer)
                if (e->count == 0) {
                        entry_drop(s, e);
                        return true;
                }
        return false;
}

uint64_t limit_key_hash(const void *key, size_t key_len) {
        uint64_t h = key_hash(key, MIN(key_len, (size_t) LIMIT_KEY_MAX)) ^ key_len;
        if (key_len > LIMIT_KEY_MAX)
                h ^= key_hash((const char *) key + LIMIT_KEY_MAX, key_len - LIMIT_KEY_MAX) * 31;
        return h;
}

int limit_check(LimitTable *t, const LimitParams *p, const void *key, size_t key_len, uint64_t now,
                LimitVerdict *ret, LimitHold *hold) {
        return limit_check_hashed(t, p, key, key_len, limit_key_hash(key, key_len), now, ret, hold);
}

/* Expire: the two coldest entries go when they are idle, so keys that stopped coming do not
 * stay until the table is full (keep, the entry of the request being counted, stays). Out of
 * line: with the key's entry the coldest, there is nothing to look at. */
static __attribute__((noinline)) void shard_expire(LimitShard *s, const LimitParams *p, uint64_t now,
                                                   const LimitEntry *keep) {
        for (int k = 0; k < 2 && s->oldest && s->oldest != keep && entry_idle(s->oldest, p, now); k++)
                entry_drop(s, s->oldest);
}

/* A new key's entry (its first request: counted, adds nothing to the bucket), or NULL with
 * v->result LIMIT_REJECT_FULL or *ret_r -ENOMEM. */
static __attribute__((noinline)) LimitEntry *entry_new(LimitShard *s, unsigned si, const LimitParams *p,
                                                       const void *key, size_t key_len, uint64_t h, uint64_t now,
                                                       LimitVerdict *v, int *ret_r) {
        size_t stored = MIN(key_len, (size_t) LIMIT_KEY_MAX);
        LimitEntry *e;

        if (!shard_make_room(s)) {
                v->result = LIMIT_REJECT_FULL;
                return NULL;
        }
        e = calloc(1, sizeof(LimitEntry) + stored);
        if (!e) {
                *ret_r = -ENOMEM;
                return NULL;
        }
        e->hash = h;
        e->key_len = key_len;
        e->shard = si;
        memcpy(e->key, key, stored);
        e->last = now;
        e->hnext = s->buckets[h & (s->n_buckets - 1)];
        s->buckets[h & (s->n_buckets - 1)] = e;
        s->n++;
        lru_push(s, e);
        e->excess = 0;
        if (p->conn > 0)
                e->count++;
        return e;
}

/* Over rate + burst: when a request would fit, (stored excess + 1000 - burst) drained. */
static __attribute__((noinline)) uint64_t retry_after(const LimitEntry *e, const LimitParams *p, uint64_t burst,
                                                      uint64_t now) {
        uint64_t need = e->excess + 1000 - burst;
        uint64_t at = e->last + (uint64_t) ((unsigned __int128) need * USEC_PER_SEC * 1000 / p->rate);
        return at > now ? at - now : 1;
}

int limit_check_hashed(LimitTable *t, const LimitParams *p, const void *key, size_t key_len, uint64_t h,
                       uint64_t now, LimitVerdict *ret, LimitHold *hold) {
        unsigned si = (unsigned) ((h >> 40) & (t->n_shards - 1)); /* 1 or LIMIT_SHARDS_MAX shards */
        LimitShard *s = &t->shards[si];
        LimitVerdict v = { .result = LIMIT_PASS };
        LimitEntry *e;
        int r = 0;

        if (hold)
                hold->table = NULL;
        shard_lock(s);
        e = entry_find(s, h, key, key_len);
        if (s->oldest != e)
                shard_expire(s, p, now, e);
        if (!e) {
                e = entry_new(s, si, p, key, key_len, h, now, &v, &r);
                if (!e)
                        goto done;
                goto held;
        }
        if (s->newest != e) {
                lru_unlink(s, e);
                lru_push(s, e);
        }

        if (p->conn > 0 && e->count >= p->conn) {
                v.result = LIMIT_REJECT_CONN;
                goto done;
        }
        if (p->rate > 0) {
                uint64_t excess = excess_next(e, p->rate, now);
                uint64_t burst = (uint64_t) p->burst * 1000;
                if (excess > burst) {
                        v.result = LIMIT_REJECT_RATE;
                        v.retry_after_usec = retry_after(e, p, burst, now);
                        goto done;
                }
                e->excess = excess;
                e->last = now;
                uint64_t free_part = p->nodelay ? burst : (uint64_t) p->delay * 1000;
                if (excess > free_part) {
                        v.result = LIMIT_DELAY;
                        v.delay_usec = (uint64_t) ((unsigned __int128) (excess - free_part) * USEC_PER_SEC * 1000 /
                                                   p->rate);
                }
        } else
                e->last = now;
        if (p->conn > 0)
                e->count++;
held:
        if (p->conn > 0 && hold) {
                hold->table = limit_table_ref(t);
                hold->entry = e;
        }
done:
        shard_unlock(s);
        if (r >= 0)
                *ret = v;
        return r;
}

void limit_release(LimitHold *hold) {
        LimitTable *t;
        LimitShard *s;

        if (!hold || !hold->table)
                return;
        t = hold->table;
        s = &t->shards[hold->entry->shard];
        shard_lock(s);
        if (hold->entry->count > 0)
                hold->entry->count--;
        shard_unlock(s);
        hold->table = limit_table_unref(t);
        hold->entry = NULL;
}

size_t limit_table_size(LimitTable *t) {
        size_t n = 0;
        for (size_t i = 0; i < t->n_shards; i++) {
                shard_lock(&t->shards[i]);
                n += t->shards[i].n;
                shard_unlock(&t->shards[i]);
        }
        return n;
}

void limit_count_rejected(LimitTable *t) {
        atomic_fetch_add_explicit(&t->rejected, 1, memory_order_relaxed);
}

uint64_t limit_rejected(LimitTable *t) {
        return t ? atomic_load_explicit(&t->rejected, memory_order_relaxed) : 0;
}

static void table_free_cb(LimitTable *t) {
        limit_table_unref(t);
}

int limit_tables_setup(Config *c, const Config *old) {
        for (size_t i = 0; i < c->n_limits; i++) {
                LimitZone *z = c->limits[i];
                for (size_t k = 0; old && k < old->n_limits && !z->rt; k++) {
                        const LimitZone *o = old->limits[k];
                        if (o->rt && streq(o->name, z->name) && o->max_keys == z->max_keys &&
                            streq(o->key->source, z->key->source))
                                z->rt = limit_table_ref(o->rt);
                }
                if (!z->rt) {
                        int r = limit_table_new(z->max_keys, &z->rt);
                        if (r < 0)
                                return r;
                }
                z->rt_free = table_free_cb;
        }
        return 0;
}
