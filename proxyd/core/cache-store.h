/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The response cache's storage, one per process, shared by every worker thread under one
 * lock: an index of objects (key, variant, stored head, times), a memory tier holding the
 * bodies used last (LRU, cache_memory_size) and an on-disk store under cache_path
 * (cache_disk_size, LRU) that survives restarts: each object is one file, written under a
 * temporary name and renamed into place only once complete, with a checksum over all of it;
 * at start the directory is scanned and the index rebuilt; a body read back from disk is
 * checked (length and checksum) before anything of it is served, so a crash, a full disk or a
 * torn write costs a cached copy and never serves a corrupt one.
 *
 * Objects are reference counted: a purge or an eviction takes an object out of the index at
 * once, and a response being served from it keeps it until the last byte is sent.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "cache-policy.h"

typedef struct CacheObject CacheObject;

struct CacheObject {
        unsigned refs; /* under the store's lock */
        CacheObject *hnext;        /* hash chain (by key) */
        CacheObject *lprev, *lnext; /* every indexed object, last used first */
        CacheObject *mprev, *mnext; /* objects whose body is in memory, last used first */
        uint64_t key_hash, name_hash[2];
        char *key;     /* the expanded cache key */
        char *variant; /* the request's values of the Vary fields ("" without Vary) */
        char *vary;    /* the response's Vary names, lower case, sorted */
        char *head;    /* stored fields, "Name: value\r\n" each (no framing, no hop-by-hop) */
        size_t head_len;
        HttpHeader *fields; /* head parsed once, pointing into it (read by every hit) */
        size_t n_fields;
        char *body; /* NULL: on disk only */
        size_t body_cap;
        uint64_t body_len;
        int status;
        CacheEntryTimes times;
        uint64_t sum;  /* the file's checksum */
        uint64_t file_size;
        bool indexed, on_disk, in_mem;
        /* An object being filled that collapsed requests follow (cache_store_fill_publish):
         * its body was reserved whole (body never moves), `filled` bytes of it can be read by
         * any thread, and fill_failed says the rest will never come. */
        bool fixed;
        _Atomic uint64_t filled;
        atomic_bool fill_failed, watched;
        struct Fill *fill_entry; /* under the lock: the fetch it is published in */
        /* A fill larger than the memory tier takes goes to its file as it arrives
         * (cache_object_spill): the body is never all in memory. */
        int spill_fd;
        char *spill_path;
        uint64_t spill_sum, spill_len;
        unsigned char carry[8];
        unsigned n_carry;
        /* the file holds what this process wrote or checked whole (cache_object_open) */
        atomic_bool file_ok;
};

typedef struct CacheStats {
        uint64_t hits, misses, stores, evictions, purged;
        uint64_t objects, memory_bytes, disk_bytes;
} CacheStats;

/* Limits and the directory (taken the first time only: the index belongs to one
 * directory). Called with every configuration; the index is built on first use. dir NULL:
 * memory only. */
void cache_store_configure(const char *dir, uint64_t memory_max, uint64_t disk_max);

/* The Vary names stored for key (of its newest variant) into names: 1, or 0 when nothing is
 * stored for key. */
int cache_store_vary(const char *key, Buf *names);
/* The object stored for key and variant, with a reference and its body in memory, or NULL. */
CacheObject *cache_store_lookup(const char *key, const char *variant);
/* The same for a request (its fields f[0..n)): the variant its Vary values select (into
 * variant, terminated; empty when nothing is stored for key), with one look at the index;
 * an object larger than the memory tier comes without its body (serve it from its file:
 * cache_object_open). *ret_vary: what is stored for key varies. */
CacheObject *cache_store_lookup_request(const char *key, const HttpHeader *f, size_t n, Buf *variant,
                                        bool *ret_vary);

/* A new object to fill (body appended as it arrives), then inserted or dropped. */
CacheObject *cache_object_new(const char *key, const char *variant, const char *vary, const char *head,
                              size_t head_len);
/* The same with the head made of the fields of h[0..n) that keep says to keep, parsed as it
 * is written. */
CacheObject *cache_object_new_fields(const char *key, const char *variant, const char *vary, const HttpHeader *h,
                                     size_t n, bool (*keep)(const HttpHeader *h, void *userdata), void *userdata);
int cache_object_append(CacheObject *o, const char *p, size_t n);
/* Bodies longer than this are not kept in memory: a fill goes to disk as it arrives
 * (cache_object_spill), and a hit is served from the file (cache_object_open). UINT64_MAX
 * without a disk store. */
uint64_t cache_store_spill_size(void);
/* From now on o's body (len bytes in all, the response's Content-Length, or UINT64_MAX when
 * it is not known before the body ends) is written to its file as it is appended, not kept in
 * memory. With an unknown length the file's fixed part and checksum are written when o is
 * inserted (the body read back once to sum it). */
int cache_object_spill(CacheObject *o, uint64_t len);
/* o (new, no body yet) takes the body of from, which is on disk only: copied file to file
 * (copy_file_range) into o's temporary file, which cache_store_insert completes and renames
 * into place; from's file stays as it is until then. */
int cache_object_copy_body(CacheObject *o, CacheObject *from);
/* The object's file, open for reading, its length and checksum checked (and, the first time,
 * everything in it), and where the body starts in it. -errno (a damaged file is removed). */
int cache_object_open(CacheObject *o, uint64_t *ret_body_off);
/* Index o (replacing what is stored for its key and variant), write it to disk, evict what
 * the limits ask. Takes the caller's reference. */
void cache_store_insert(CacheObject *o);
void cache_object_unref(CacheObject *o);
CacheObject *cache_object_ref(CacheObject *o);

/* Take objects out: every variant of key; every key starting with prefix. Returns how many. */
size_t cache_store_purge(const char *key);
size_t cache_store_purge_prefix(const char *prefix);

/* Request collapsing: claim the fetch of id (key and variant): 1 when the caller is the
 * one to fetch it (and calls cache_store_fill_done when it is over), 0 when another request
 * is fetching it now. */
int cache_store_fill_claim(const char *id);
bool cache_store_fill_pending(const char *id);
void cache_store_fill_done(const char *id);

/* Following a fetch as it fills (collapsed requests served while the response streams in).
 * The fetch's object, its body reserved whole (cache_object_reserve), is published in the
 * fetch id; requests waiting for it watch the fetch with an eventfd of their worker, which
 * is written whenever something changes: the object published, bytes appended
 * (cache_object_filled), the fill failed, the fetch over. */
int cache_object_reserve(CacheObject *o, uint64_t len);
void cache_store_fill_publish(const char *id, CacheObject *o);
void cache_object_filled(CacheObject *o);
void cache_object_fill_failed(CacheObject *o);
/* Watch fetch id with fd: 0 when no such fetch is in progress (any more), 1 when it is and has
 * no object yet, 2 with its object in *ret (a reference). */
int cache_store_fill_watch(const char *id, int fd, CacheObject **ret);
/* fd is closed: no fetch writes to it any more. */
void cache_store_unwatch(int fd);

/* One more request for key that found nothing stored; returns how many there were (counted
 * in a bounded table: a key that meets another in its slot starts again from 1). */
unsigned cache_store_use(const char *key);

void cache_store_count(bool hit);
void cache_store_stats(CacheStats *ret);
