/* SPDX-License-Identifier: MIT */
/* The decision cache of forward authentication: see auth-cache.h. A hash table with chains
 * and one LRU list, under one mutex; each entry is one allocation (entry, key, value). */
#include <pthread.h>

#include "auth-cache.h"
#include "config.h"
#include "util.h"

typedef struct AuthEntry AuthEntry;
struct AuthEntry {
        AuthEntry *next_hash;
        AuthEntry *lru_prev, *lru_next; /* most recently used first */
        uint64_t hash;
        uint64_t expires;
        int status;
        size_t key_len, data_len;
        char bytes[]; /* key, then value */
};

struct AuthCache {
        pthread_mutex_t lock;
        AuthEntry **buckets;
        size_t n_buckets; /* a power of two */
        size_t count;
        uint64_t bytes, max_bytes;
        AuthEntry *lru_head, *lru_tail;
};

static uint64_t key_hash(const void *key, size_t len) {
        const unsigned char *p = key;
        uint64_t h = UINT64_C(0xcbf29ce484222325); /* FNV-1a */

        for (size_t i = 0; i < len; i++) {
                h ^= p[i];
                h *= UINT64_C(0x100000001b3);
        }
        return h ^ (h >> 29);
}

static size_t entry_cost(size_t key_len, size_t data_len) {
        return sizeof(AuthEntry) + key_len + data_len;
}

int auth_cache_new(uint64_t max_bytes, AuthCache **ret) {
        AuthCache *c = calloc(1, sizeof(AuthCache));

        if (!c)
                return -ENOMEM;
        /* about one bucket per 256 bytes of budget, between 64 and 65536 */
        size_t want = (size_t) MIN(MAX(max_bytes / 256, (uint64_t) 64), (uint64_t) 65536), n = 64;
        while (n < want)
                n <<= 1;
        c->buckets = calloc(n, sizeof(AuthEntry *));
        if (!c->buckets) {
                free(c);
                return -ENOMEM;
        }
        c->n_buckets = n;
        c->max_bytes = max_bytes;
        pthread_mutex_init(&c->lock, NULL);
        *ret = c;
        return 0;
}

AuthCache *auth_cache_free(AuthCache *c) {
        if (!c)
                return NULL;
        for (AuthEntry *e = c->lru_head, *next; e; e = next) {
                next = e->lru_next;
                free(e);
        }
        free(c->buckets);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

static void lru_unlink(AuthCache *c, AuthEntry *e) {
        if (e->lru_prev)
                e->lru_prev->lru_next = e->lru_next;
        else
                c->lru_head = e->lru_next;
        if (e->lru_next)
                e->lru_next->lru_prev = e->lru_prev;
        else
                c->lru_tail = e->lru_prev;
        e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(AuthCache *c, AuthEntry *e) {
        e->lru_prev = NULL;
        e->lru_next = c->lru_head;
        if (c->lru_head)
                c->lru_head->lru_prev = e;
        c->lru_head = e;
        if (!c->lru_tail)
                c->lru_tail = e;
}

/* The chain slot that points at the entry for key (or at the NULL ending the chain). */
static AuthEntry **find_slot(AuthCache *c, uint64_t h, const void *key, size_t key_len) {
        AuthEntry **slot = &c->buckets[h & (c->n_buckets - 1)];

        for (; *slot; slot = &(*slot)->next_hash)
                if ((*slot)->hash == h && (*slot)->key_len == key_len && memcmp((*slot)->bytes, key, key_len) == 0)
                        break;
        return slot;
}

static void entry_drop(AuthCache *c, AuthEntry **slot) {
        AuthEntry *e = *slot;

        *slot = e->next_hash;
        lru_unlink(c, e);
        c->count--;
        c->bytes -= entry_cost(e->key_len, e->data_len);
        free(e);
}

static void drop_entry(AuthCache *c, AuthEntry *e) {
        entry_drop(c, find_slot(c, e->hash, e->bytes, e->key_len));
}

int auth_cache_put(AuthCache *c, const void *key, size_t key_len, int status, const void *data, size_t data_len,
                   uint64_t expires, uint64_t now) {
        size_t cost = entry_cost(key_len, data_len);

        if (key_len > AUTH_CACHE_KEY_MAX || cost > c->max_bytes || expires <= now)
                return 0;
        AuthEntry *e = malloc(cost);
        if (!e)
                return -ENOMEM;
        *e = (AuthEntry){ .hash = key_hash(key, key_len), .expires = expires, .status = status,
                          .key_len = key_len, .data_len = data_len };
        memcpy(e->bytes, key, key_len);
        if (data_len > 0)
                memcpy(e->bytes + key_len, data, data_len);

        pthread_mutex_lock(&c->lock);
        AuthEntry **slot = find_slot(c, e->hash, key, key_len);
        if (*slot)
                entry_drop(c, slot);
        /* make room: expired entries at the cold end first, then the least recently used */
        while (c->lru_tail && c->bytes + cost > c->max_bytes)
                drop_entry(c, c->lru_tail);
        slot = &c->buckets[e->hash & (c->n_buckets - 1)];
        e->next_hash = *slot;
        *slot = e;
        lru_push_front(c, e);
        c->count++;
        c->bytes += cost;
        pthread_mutex_unlock(&c->lock);
        return 0;
}

int auth_cache_get(AuthCache *c, const void *key, size_t key_len, uint64_t now, int *ret_status, void **ret_data,
                   size_t *ret_len) {
        uint64_t h = key_hash(key, key_len);
        int r = 0;

        *ret_data = NULL;
        *ret_len = 0;
        if (key_len > AUTH_CACHE_KEY_MAX)
                return 0;
        pthread_mutex_lock(&c->lock);
        AuthEntry **slot = find_slot(c, h, key, key_len);
        AuthEntry *e = *slot;
        if (e && now >= e->expires) {
                entry_drop(c, slot);
                e = NULL;
        }
        if (e) {
                void *copy = e->data_len > 0 ? malloc(e->data_len) : NULL;
                if (e->data_len > 0 && !copy)
                        r = -ENOMEM;
                else {
                        if (copy)
                                memcpy(copy, e->bytes + e->key_len, e->data_len);
                        *ret_data = copy;
                        *ret_len = e->data_len;
                        *ret_status = e->status;
                        lru_unlink(c, e);
                        lru_push_front(c, e);
                        r = 1;
                }
        }
        pthread_mutex_unlock(&c->lock);
        return r;
}

size_t auth_cache_count(AuthCache *c) {
        pthread_mutex_lock(&c->lock);
        size_t n = c->count;
        pthread_mutex_unlock(&c->lock);
        return n;
}

uint64_t auth_cache_bytes(AuthCache *c) {
        pthread_mutex_lock(&c->lock);
        uint64_t n = c->bytes;
        pthread_mutex_unlock(&c->lock);
        return n;
}

static void auth_cache_free_cb(AuthCache *c) {
        auth_cache_free(c);
}

int auth_caches_setup(Config *c) {
        for (size_t i = 0; i < c->n_auth_requests; i++) {
                AuthRequest *a = c->auth_requests[i];
                if (a->cache == 0 || a->rt)
                        continue;
                int r = auth_cache_new(a->cache_size, &a->rt);
                if (r < 0)
                        return r;
                a->rt_free = auth_cache_free_cb;
        }
        return 0;
}
