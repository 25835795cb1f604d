/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The decision cache of forward authentication (auth_request): what the auth service
 * answered for a key (the expanded cache_key), kept until an expiry the caller gives. One
 * table per auth_request setting, shared by every worker thread under one mutex (a lookup
 * is a hash and a compare; the lock is held for nothing else), bounded in bytes: a full
 * table drops its least recently used entries, an expired entry goes when it is met. The
 * value is the caller's: a status and an opaque blob (the fields and body it replays). Pure:
 * the clock is passed in, nothing logs.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_CACHE_KEY_MAX 4096 /* longer keys are not cached */

typedef struct AuthCache AuthCache;

/* A table holding at most max_bytes (entries, keys and values counted). */
int auth_cache_new(uint64_t max_bytes, AuthCache **ret);
AuthCache *auth_cache_free(AuthCache *c);

/* Store (or replace) the decision for key, valid while now < expires. An entry larger than
 * the whole table, or a key over AUTH_CACHE_KEY_MAX, is not stored (0 all the same).
 * 0 or -ENOMEM. */
int auth_cache_put(AuthCache *c, const void *key, size_t key_len, int status, const void *data, size_t data_len,
                   uint64_t expires, uint64_t now);

/* The decision for key at now: 1 with *ret_status and a copy of the value (*ret_data,
 * malloc'd, to be freed; NULL when the value is empty), 0 when there is none (or it
 * expired: then it is dropped), -ENOMEM. */
int auth_cache_get(AuthCache *c, const void *key, size_t key_len, uint64_t now, int *ret_status, void **ret_data,
                   size_t *ret_len);

/* Entries and bytes held now (tests, status). */
size_t auth_cache_count(AuthCache *c);
uint64_t auth_cache_bytes(AuthCache *c);

struct Config;
/* A decision table for every auth_request of c with `cache` (AuthRequest.rt, freed with the
 * Config). A reload starts with empty tables: decisions are kept for seconds. */
int auth_caches_setup(struct Config *c);
