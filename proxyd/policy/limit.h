/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Per-client limits: a request rate (token bucket with nginx limit_req semantics: rate, burst,
 * delay/nodelay) and a count of requests in progress (nginx limit_conn), per key, in a table
 * shared by every worker thread. The table is sharded, with a lock per shard, so that two
 * workers contend only when their keys share a shard; it holds at most max_keys entries:
 * idle entries (no request in progress, bucket drained, unused for LIMIT_IDLE_USEC) are dropped as they are met at the
 * cold end of the shard's LRU list, and a full shard gives up its least recently used entry
 * that has no request in progress. Pure: the clock is passed in, nothing logs.
 *
 * Bucket arithmetic (as nginx): `excess` is in thousandths of a request. A request adds 1000
 * after the time since the last accepted request drained rate * elapsed; more than burst*1000
 * is rejected (and changes nothing); an accepted request above delay*1000 waits until the
 * excess over delay*1000 has drained (never with nodelay).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define LIMIT_KEY_MAX 512 /* key bytes compared; a longer key is told apart by its hash beyond that */
#define LIMIT_SHARDS_MAX 64
#define LIMIT_IDLE_USEC (60 * UINT64_C(1000000)) /* an entry unused this long, with nothing to remember, goes */

typedef enum LimitResult {
        LIMIT_PASS,
        LIMIT_DELAY,       /* accepted after delay_usec */
        LIMIT_REJECT_RATE, /* over rate + burst; retry_after_usec says when one would pass */
        LIMIT_REJECT_CONN, /* `conn` requests of this key are in progress */
        LIMIT_REJECT_FULL, /* the table is full of keys with requests in progress */
} LimitResult;

typedef struct LimitVerdict {
        LimitResult result;
        uint64_t delay_usec;
        uint64_t retry_after_usec;
} LimitVerdict;

typedef struct LimitTable LimitTable;
typedef struct LimitEntry LimitEntry;

/* A request in progress counted against a key (params.conn > 0): give it back with
 * limit_release() when the request ends. */
typedef struct LimitHold {
        LimitTable *table; /* a reference; NULL: nothing held */
        LimitEntry *entry;
} LimitHold;

int limit_table_new(size_t max_keys, LimitTable **ret);
LimitTable *limit_table_ref(LimitTable *t);
LimitTable *limit_table_unref(LimitTable *t); /* thread-safe; frees at 0; returns NULL */

/* Account one request of `key` at `now` (usec, monotonic). On LIMIT_PASS / LIMIT_DELAY with
 * params->conn > 0, *hold is set; otherwise it is cleared. Returns 0 or -ENOMEM (then nothing
 * was counted). */
int limit_check(LimitTable *t, const LimitParams *params, const void *key, size_t key_len, uint64_t now,
                 LimitVerdict *ret, LimitHold *hold);
/* The same with the key's limit_key_hash() worked out by the caller (a connection's address is
 * hashed once for all its requests). */
uint64_t limit_key_hash(const void *key, size_t key_len);
int limit_check_hashed(LimitTable *t, const LimitParams *params, const void *key, size_t key_len, uint64_t hash,
                       uint64_t now, LimitVerdict *ret, LimitHold *hold);
void limit_release(LimitHold *hold);

/* A request the caller turned away after limit_check (counted for the metrics: rejections
 * are rare, so one relaxed add on the table is all they cost; accepted requests count
 * nothing). The count goes with the table across a reload that hands it over. */
void limit_count_rejected(LimitTable *t);
uint64_t limit_rejected(LimitTable *t);

/* Entries in the table now (for tests and status). */
size_t limit_table_size(LimitTable *t);

/* A key table for every entry of c->limits (LimitZone.rt, freed with the Config). An entry of
 * `old` (may be NULL) with the same name, key and max_keys hands its table over, so that a
 * reload neither forgets a client's bucket nor the requests it has in progress. */
int limit_tables_setup(Config *c, const Config *old);
