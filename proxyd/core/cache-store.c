/* SPDX-License-Identifier: MIT */
/* The cache's index, memory tier and disk store (cache-store.h). */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "cache-file.h"
#include "cache-store.h"
#include "log.h"
#include "util.h"

#define N_BUCKETS 4096u
#define N_USES 8192u
#define DISK_MAGIC "PXDCACH1"

/* The file's fixed part; strings, head and body follow, then the checksum. */
typedef struct DiskHeader {
        char magic[8];
        uint32_t key_len, variant_len, vary_len, head_len;
        uint64_t body_len;
        int32_t status;
        uint32_t flags;
        int64_t lifetime, initial_age, response_time, swr, sie;
        uint32_t s_maxage;
        uint32_t pad;
} DiskHeader;

typedef struct Fill {
        struct Fill *next;
        CacheObject *obj; /* published (a reference), or NULL */
        int *watchers;    /* eventfds of the workers with requests waiting for it */
        size_t n_watchers, cap_watchers;
        char id[];
} Fill;

typedef struct Store {
        pthread_mutex_t lock;
        bool configured, ready;
        char *dir; /* NULL: no disk */
        uint64_t memory_max, disk_max;
        CacheObject *buckets[N_BUCKETS];
        CacheObject *lru_head, *lru_tail, *mem_head, *mem_tail;
        uint64_t memory_used, disk_used, objects;
        unsigned tmp_counter;
        Fill *fills; /* fetches in progress (request collapsing) */
        struct {
                uint64_t key_hash;
                unsigned n;
        } uses[N_USES]; /* cache_min_uses */
        atomic_uint_fast64_t hits, misses, stores, evictions, purged;
} Store;

static Store store = { .lock = PTHREAD_MUTEX_INITIALIZER };

static uint64_t fnv(uint64_t h, const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                h = (h ^ (unsigned char) s[i]) * UINT64_C(0x100000001b3);
        return h;
}

static void object_hashes(CacheObject *o) {
        size_t kl = strlen(o->key);
        o->key_hash = fnv(UINT64_C(0xcbf29ce484222325), o->key, kl);
        uint64_t a = o->key_hash * UINT64_C(0x100000001b3); /* the same over key and its NUL */
        uint64_t b = fnv(UINT64_C(0x84222325cbf29ce4), o->key, kl + 1);
        o->name_hash[0] = fnv(a, o->variant, strlen(o->variant));
        o->name_hash[1] = fnv(b, o->variant, strlen(o->variant));
}

/* "DIR/" then 16 hex digits of each of the words, without printf (once per stored object) */
static void dir_hex_path(char *buf, size_t size, const char *prefix, const uint64_t *w, size_t n_words) {
        static const char hex[] = "0123456789abcdef";
        size_t dl = strlen(store.dir), pl = strlen(prefix);

        if (dl + 1 + pl + 16 * n_words + 1 > size) {
                if (size > 0)
                        buf[0] = 0;
                return;
        }
        memcpy(buf, store.dir, dl);
        buf[dl++] = '/';
        memcpy(buf + dl, prefix, pl);
        dl += pl;
        for (size_t k = 0; k < n_words; k++)
                for (int i = 15; i >= 0; i--)
                        buf[dl++] = hex[(w[k] >> (4 * i)) & 0xf];
        buf[dl] = 0;
}

static void object_path(const CacheObject *o, char *buf, size_t size) {
        dir_hex_path(buf, size, "", o->name_hash, 2);
}

/* The stored head's lines as fields, once per object. */
static int object_parse_head(CacheObject *o) {
        const char *end = o->head + o->head_len;
        size_t cap = 0;
        for (const char *p = o->head; p < end && (p = memchr(p, '\n', (size_t) (end - p))); p++)
                cap++;
        o->fields = malloc((cap ? cap : 1) * sizeof(HttpHeader));
        if (!o->fields)
                return -ENOMEM;
        o->n_fields = 0;
        for (const char *p = o->head, *e; p < end && (e = memchr(p, '\n', (size_t) (end - p))); p = e + 1) {
                const char *le = e > p && e[-1] == '\r' ? e - 1 : e;
                const char *colon = memchr(p, ':', (size_t) (le - p));
                if (!colon)
                        continue;
                const char *v = colon + 1;
                while (v < le && *v == ' ')
                        v++;
                o->fields[o->n_fields++] = (HttpHeader){ p, (size_t) (colon - p), v, (size_t) (le - v) };
        }
        return 0;
}

static void ensure_ready(void);

static void object_free(CacheObject *o) {
        if (o->spill_fd >= 0) {
                close(o->spill_fd); /* a fill that never completed */
                (void) unlink(o->spill_path);
        }
        free(o->spill_path);
        free(o->fields);
        free(o->key);
        free(o->variant);
        free(o->vary);
        free(o->head);
        free(o->body);
        free(o);
}

/* A new object with its strings and room for a head of head_len bytes (and n_fields fields,
 * unless SIZE_MAX: parsed later). */
static CacheObject *object_alloc(const char *key, const char *variant, const char *vary, size_t head_len,
                                 size_t n_fields) {
        CacheObject *o = calloc(1, sizeof(CacheObject));
        if (!o)
                return NULL;
        o->refs = 1;
        o->spill_fd = -EBADF;
        o->key = strdup(key);
        o->variant = strdup(variant ?: "");
        o->vary = strdup(vary ?: "");
        o->head = malloc(head_len + 1);
        if (n_fields != SIZE_MAX)
                o->fields = malloc((n_fields ? n_fields : 1) * sizeof(HttpHeader));
        if (!o->key || !o->variant || !o->vary || !o->head || (n_fields != SIZE_MAX && !o->fields)) {
                object_free(o);
                return NULL;
        }
        return o;
}

CacheObject *cache_object_new(const char *key, const char *variant, const char *vary, const char *head,
                              size_t head_len) {
        CacheObject *o = object_alloc(key, variant, vary, head_len, SIZE_MAX);
        if (!o)
                return NULL;
        memcpy(o->head, head, head_len);
        o->head[head_len] = 0;
        o->head_len = head_len;
        if (object_parse_head(o) < 0) {
                object_free(o);
                return NULL;
        }
        object_hashes(o);
        return o;
}

CacheObject *cache_object_new_fields(const char *key, const char *variant, const char *vary, const HttpHeader *h,
                                     size_t n, bool (*keep)(const HttpHeader *h, void *userdata), void *userdata) {
        size_t len = 0, count = 0;
        uint64_t kept = 0; /* keep's answers for the first 64 fields, asked once */
        for (size_t i = 0; i < n; i++)
                if (keep(&h[i], userdata)) {
                        len += h[i].name_len + h[i].value_len + 4;
                        count++;
                        if (i < 64)
                                kept |= UINT64_C(1) << i;
                }
        CacheObject *o = object_alloc(key, variant, vary, len, count);
        if (!o)
                return NULL;
        /* "Name: value\r\n" each, and the fields pointing into it, in one pass */
        char *p = o->head;
        for (size_t i = 0; i < n; i++) {
                if (i < 64 ? !(kept & (UINT64_C(1) << i)) : !keep(&h[i], userdata))
                        continue;
                HttpHeader *f = &o->fields[o->n_fields++];
                memcpy(p, h[i].name, h[i].name_len);
                f->name = p;
                f->name_len = h[i].name_len;
                p += h[i].name_len;
                *p++ = ':';
                *p++ = ' ';
                memcpy(p, h[i].value, h[i].value_len);
                f->value = p;
                f->value_len = h[i].value_len;
                p += h[i].value_len;
                *p++ = '\r';
                *p++ = '\n';
        }
        *p = 0;
        o->head_len = len;
        object_hashes(o);
        return o;
}

int cache_object_reserve(CacheObject *o, uint64_t len) {
        if (len > SIZE_MAX - 1 || o->body)
                return -EFBIG;
        o->body = malloc(len ? (size_t) len : 1);
        if (!o->body)
                return -ENOMEM;
        o->body_cap = (size_t) len;
        o->fixed = true;
        return 0;
}

static void spill_sum(CacheObject *o, const char *p, size_t n);

int cache_object_append(CacheObject *o, const char *p, size_t n) {
        if (o->spill_fd >= 0) {
                if (o->body_len + n > o->spill_len)
                        return -EFBIG;
                int r = cache_write_all(o->spill_fd, &(struct iovec){ (void *) p, n }, 1);
                if (r < 0)
                        return r;
                if (o->spill_len != UINT64_MAX)
                        spill_sum(o, p, n); /* else summed from the file at the end */
                o->body_len += n;
                return 0;
        }
        if (o->fixed && o->body_len + n > o->body_cap)
                return -EFBIG; /* followed by other threads: the body must not move */
        if (o->body_len + n > o->body_cap) {
                size_t cap = MAX(o->body_cap * 2, (size_t) o->body_len + n);
                cap = MAX(cap, (size_t) 4096);
                char *b = realloc(o->body, cap);
                if (!b)
                        return -ENOMEM;
                o->body = b;
                o->body_cap = cap;
        }
        if (n > 0)
                memcpy(o->body + o->body_len, p, n);
        o->body_len += n;
        return 0;
}

/* ---- lists (under the lock) ---- */

static void lru_unlink(CacheObject *o) {
        if (o->lprev)
                o->lprev->lnext = o->lnext;
        else if (store.lru_head == o)
                store.lru_head = o->lnext;
        if (o->lnext)
                o->lnext->lprev = o->lprev;
        else if (store.lru_tail == o)
                store.lru_tail = o->lprev;
        o->lprev = o->lnext = NULL;
}

static void lru_push(CacheObject *o) {
        o->lnext = store.lru_head;
        if (store.lru_head)
                store.lru_head->lprev = o;
        store.lru_head = o;
        if (!store.lru_tail)
                store.lru_tail = o;
}

static void mem_unlink(CacheObject *o) {
        if (!o->in_mem)
                return;
        if (o->mprev)
                o->mprev->mnext = o->mnext;
        else
                store.mem_head = o->mnext;
        if (o->mnext)
                o->mnext->mprev = o->mprev;
        else
                store.mem_tail = o->mprev;
        o->mprev = o->mnext = NULL;
        o->in_mem = false;
        store.memory_used -= o->body_len + o->head_len;
}

static void mem_push(CacheObject *o) {
        o->mnext = store.mem_head;
        if (store.mem_head)
                store.mem_head->mprev = o;
        store.mem_head = o;
        if (!store.mem_tail)
                store.mem_tail = o;
        o->in_mem = true;
        store.memory_used += o->body_len + o->head_len;
}

static void touch(CacheObject *o) {
        lru_unlink(o);
        lru_push(o);
        if (o->in_mem) {
                mem_unlink(o);
                mem_push(o);
        }
}

static void unref_locked(CacheObject *o) {
        if (o && --o->refs == 0)
                object_free(o);
}

/* Out of the index (and off the disk when unlink_file). */
static void remove_locked(CacheObject *o, bool unlink_file) {
        if (!o->indexed)
                return;
        CacheObject **p = &store.buckets[o->key_hash % N_BUCKETS];
        while (*p && *p != o)
                p = &(*p)->hnext;
        if (*p)
                *p = o->hnext;
        o->hnext = NULL;
        lru_unlink(o);
        mem_unlink(o);
        o->indexed = false;
        store.objects--;
        if (o->on_disk) {
                store.disk_used -= o->file_size;
                if (unlink_file) {
                        char path[PATH_MAX];
                        object_path(o, path, sizeof(path));
                        (void) unlink(path);
                }
        }
        unref_locked(o);
}

static void evict_locked(void) {
        /* memory: bodies that are also on disk are dropped from memory; others go */
        for (CacheObject *o = store.mem_tail; o && store.memory_used > store.memory_max;) {
                CacheObject *prev = o->mprev;
                if (o->refs == 1) {
                        atomic_fetch_add(&store.evictions, 1);
                        if (o->on_disk) {
                                mem_unlink(o);
                                free(o->body);
                                o->body = NULL;
                                o->body_cap = 0;
                        } else
                                remove_locked(o, false);
                }
                o = prev;
        }
        if (!store.dir)
                return;
        for (CacheObject *o = store.lru_tail; o && store.disk_used > store.disk_max;) {
                CacheObject *prev = o->lprev;
                if (o->on_disk) {
                        atomic_fetch_add(&store.evictions, 1);
                        remove_locked(o, true);
                }
                o = prev;
        }
}

static void index_locked(CacheObject *o) {
        /* replaces what is stored for the same key and variant */
        for (CacheObject *e = store.buckets[o->key_hash % N_BUCKETS]; e; e = e->hnext)
                if (streq(e->key, o->key) && streq(e->variant, o->variant)) {
                        /* the same file name: replaced by the rename when o is on disk,
                         * else removed so that a restart does not bring the old one back */
                        remove_locked(e, !o->on_disk);
                        break;
                }
        CacheObject **b = &store.buckets[o->key_hash % N_BUCKETS];
        o->hnext = *b;
        *b = o;
        o->indexed = true;
        store.objects++;
        lru_push(o);
        if (o->body)
                mem_push(o);
        if (o->on_disk)
                store.disk_used += o->file_size;
}

/* ---- disk ---- */

static void header_of(const CacheObject *o, DiskHeader *h) {
        *h = (DiskHeader){
                .key_len = (uint32_t) strlen(o->key),
                .variant_len = (uint32_t) strlen(o->variant),
                .vary_len = (uint32_t) strlen(o->vary),
                .head_len = (uint32_t) o->head_len,
                .body_len = o->body_len,
                .status = o->status,
                .flags = o->times.flags,
                .lifetime = o->times.lifetime,
                .initial_age = o->times.initial_age,
                .response_time = o->times.response_time,
                .swr = o->times.swr,
                .sie = o->times.sie,
                .s_maxage = o->times.s_maxage,
        };
        memcpy(h->magic, DISK_MAGIC, 8);
}

/* Write o under a temporary name, then rename it into place. */
static int disk_write(CacheObject *o, unsigned counter) {
        char tmp[PATH_MAX], path[PATH_MAX];
        DiskHeader h;
        int r;

        header_of(o, &h);
        uint64_t sum = cache_checksum(0, &h, sizeof(h));
        sum = cache_checksum(sum, o->key, h.key_len);
        sum = cache_checksum(sum, o->variant, h.variant_len);
        sum = cache_checksum(sum, o->vary, h.vary_len);
        sum = cache_checksum(sum, o->head, h.head_len);
        sum = cache_checksum(sum, o->body, (size_t) o->body_len);
        dir_hex_path(tmp, sizeof(tmp), "tmp.", (const uint64_t[]){ ((uint64_t) getpid() << 32) | counter }, 1);
        object_path(o, path, sizeof(path));
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        struct iovec iov[] = {
                { &h, sizeof(h) },           { o->key, h.key_len },   { o->variant, h.variant_len },
                { o->vary, h.vary_len },     { o->head, h.head_len }, { o->body, (size_t) o->body_len },
                { &sum, sizeof(sum) },
        };
        r = cache_write_all(fd, iov, (int) ELEMENTSOF(iov));
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }
        o->sum = sum;
        o->file_size = sizeof(h) + h.key_len + h.variant_len + h.vary_len + h.head_len + o->body_len + sizeof(sum);
        o->on_disk = true;
        atomic_store(&o->file_ok, true);
        return 0;
}

/* The body's checksum as it is written piece by piece: pieces are summed in whole words (a
 * rest of under 8 bytes waits in carry), so the result is that of one pass over all of it. */
static void spill_sum(CacheObject *o, const char *p, size_t n) {
        if (n == 0)
                return; /* p may be NULL then */
        if (o->n_carry > 0) {
                size_t take = MIN((size_t) (8 - o->n_carry), n);
                memcpy(o->carry + o->n_carry, p, take);
                o->n_carry += (unsigned) take;
                p += take;
                n -= take;
                if (o->n_carry < 8)
                        return;
                o->spill_sum = cache_checksum(o->spill_sum, o->carry, 8);
                o->n_carry = 0;
        }
        size_t whole = n & ~(size_t) 7;
        o->spill_sum = cache_checksum(o->spill_sum, p, whole);
        memcpy(o->carry, p + whole, n - whole);
        o->n_carry = (unsigned) (n - whole);
}

uint64_t cache_store_spill_size(void) {
        pthread_mutex_lock(&store.lock);
        uint64_t r = store.dir ? store.memory_max : UINT64_MAX;
        pthread_mutex_unlock(&store.lock);
        return r;
}

int cache_object_spill(CacheObject *o, uint64_t len) {
        char tmp[PATH_MAX];
        DiskHeader h;

        pthread_mutex_lock(&store.lock);
        ensure_ready(); /* the scan removes temporary files: before this one is made */
        unsigned counter = store.tmp_counter++;
        bool disk = store.dir && (len == UINT64_MAX ? o->body_len : len) + o->head_len <= store.disk_max;
        if (disk)
                dir_hex_path(tmp, sizeof(tmp), "tmp.", (const uint64_t[]){ ((uint64_t) getpid() << 32) | counter }, 1);
        pthread_mutex_unlock(&store.lock);
        if (!disk || o->fixed || o->spill_fd >= 0 || len < o->body_len)
                return -EFBIG;
        o->spill_path = strdup(tmp);
        if (!o->spill_path)
                return -ENOMEM;
        int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        o->spill_fd = fd;
        o->spill_len = len;
        header_of(o, &h);
        h.body_len = len == UINT64_MAX ? 0 : len; /* unknown: written again at the end */
        uint64_t sum = cache_checksum(0, &h, sizeof(h));
        sum = cache_checksum(sum, o->key, h.key_len);
        sum = cache_checksum(sum, o->variant, h.variant_len);
        sum = cache_checksum(sum, o->vary, h.vary_len);
        o->spill_sum = cache_checksum(sum, o->head, h.head_len);
        struct iovec iov[] = {
                { &h, sizeof(h) },       { o->key, h.key_len },   { o->variant, h.variant_len },
                { o->vary, h.vary_len }, { o->head, h.head_len }, { o->body, (size_t) o->body_len },
        };
        int r = cache_write_all(fd, iov, (int) ELEMENTSOF(iov));
        if (r < 0)
                return r; /* the file goes with the object */
        spill_sum(o, o->body, (size_t) o->body_len);
        free(o->body);
        o->body = NULL;
        o->body_cap = 0;
        return 0;
}

static uint64_t object_body_off(const CacheObject *o) {
        return sizeof(DiskHeader) + strlen(o->key) + strlen(o->variant) + strlen(o->vary) + o->head_len;
}

static int file_sum(int fd, const CacheObject *o, uint64_t body_off, uint64_t *ret);

/* A spilled fill is complete: its checksum, then renamed into place. */
static int spill_finish(CacheObject *o) {
        char path[PATH_MAX];

        uint64_t sum = 0;
        int r = 0;
        if (o->spill_len == UINT64_MAX) {
                /* the length is known only now: the fixed part again, then the checksum over
                 * the file as it is (read back from the page cache) */
                DiskHeader h;
                header_of(o, &h);
                if (pwrite(o->spill_fd, &h, sizeof(h), 0) != (ssize_t) sizeof(h))
                        r = -EIO;
                if (r == 0)
                        r = file_sum(o->spill_fd, o, object_body_off(o), &sum);
        } else if (o->body_len != o->spill_len)
                r = -EIO;
        else
                sum = cache_checksum(o->spill_sum, o->carry, o->n_carry);
        if (r == 0)
                r = cache_write_all(o->spill_fd, &(struct iovec){ &sum, sizeof(sum) }, 1);
        if (close(o->spill_fd) < 0 && r == 0)
                r = -errno;
        o->spill_fd = -EBADF;
        object_path(o, path, sizeof(path));
        if (r == 0 && rename(o->spill_path, path) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlink(o->spill_path);
                return r;
        }
        o->sum = sum;
        o->file_size = object_body_off(o) + o->body_len + sizeof(sum);
        o->on_disk = true;
        atomic_store(&o->file_ok, true);
        return 0;
}

/* The fixed part, the strings and the head of one file (no body). NULL when it is not a
 * complete object of this format. */
static CacheObject *disk_read_index(int fd, uint64_t size) {
        DiskHeader h;

        if (cache_read_exact(fd, &h, sizeof(h)) < 0 || memcmp(h.magic, DISK_MAGIC, 8) != 0)
                return NULL;
        uint64_t want = sizeof(h) + (uint64_t) h.key_len + h.variant_len + h.vary_len + h.head_len + h.body_len + 8;
        if (want != size || h.key_len == 0 || h.head_len > (1u << 20))
                return NULL;
        CacheObject *o = calloc(1, sizeof(CacheObject));
        if (!o)
                return NULL;
        o->refs = 1;
        o->spill_fd = -EBADF;
        o->key = cache_read_string(fd, h.key_len);
        o->variant = o->key ? cache_read_string(fd, h.variant_len) : NULL;
        o->vary = o->variant ? cache_read_string(fd, h.vary_len) : NULL;
        o->head = o->vary ? cache_read_string(fd, h.head_len) : NULL;
        o->head_len = h.head_len; /* before it is parsed */
        if (!o->head || object_parse_head(o) < 0 || lseek(fd, (off_t) (size - 8), SEEK_SET) < 0 || cache_read_exact(fd, &o->sum, 8) < 0) {
                object_free(o);
                return NULL;
        }
        o->body_len = h.body_len;
        o->status = h.status;
        o->times = (CacheEntryTimes){ .lifetime = h.lifetime, .initial_age = h.initial_age,
                                      .response_time = (time_t) h.response_time, .flags = h.flags,
                                      .s_maxage = h.s_maxage != 0, .swr = h.swr, .sie = h.sie };
        o->file_size = size;
        o->on_disk = true;
        object_hashes(o);
        return o;
}

/* The body of an indexed object, read back and checked against the whole file's checksum. */
static char *disk_read_body(const CacheObject *o) {
        char path[PATH_MAX];
        DiskHeader h;
        object_path(o, path, sizeof(path));
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;

        if (fd < 0 || fstat(fd, &st) < 0 || (uint64_t) st.st_size != o->file_size)
                return NULL;
        char *rest = malloc(o->file_size - sizeof(h));
        if (!rest)
                return NULL;
        if (cache_read_exact(fd, &h, sizeof(h)) < 0 || cache_read_exact(fd, rest, o->file_size - sizeof(h)) < 0) {
                free(rest);
                return NULL;
        }
        size_t body_off = (size_t) h.key_len + h.variant_len + h.vary_len + h.head_len;
        /* piece by piece, as disk_write summed them */
        const uint32_t parts[] = { h.key_len, h.variant_len, h.vary_len, h.head_len };
        uint64_t sum = cache_checksum(0, &h, sizeof(h)), stored;
        size_t at = 0;
        for (size_t i = 0; i < ELEMENTSOF(parts); i++) {
                sum = cache_checksum(sum, rest + at, parts[i]);
                at += parts[i];
        }
        sum = cache_checksum(sum, rest + body_off, (size_t) o->body_len);
        memcpy(&stored, rest + body_off + o->body_len, 8);
        if (sum != stored || sum != o->sum || h.body_len != o->body_len) {
                free(rest);
                return NULL;
        }
        char *body = malloc(o->body_len ? o->body_len : 1);
        if (body)
                memcpy(body, rest + body_off, (size_t) o->body_len);
        free(rest);
        return body;
}

/* The checksum of everything in the file of o (before its trailer), read in pieces (the body
 * in whole words, so the pieces sum as one pass). */
static int file_sum(int fd, const CacheObject *o, uint64_t body_off, uint64_t *ret) {
        DiskHeader h;
        if (pread(fd, &h, sizeof(h), 0) != (ssize_t) sizeof(h) || h.body_len != o->body_len)
                return -EIO;
        size_t head_part = (size_t) (body_off - sizeof(h));
        size_t bufsize = MAX((size_t) 256 * 1024, head_part);
        _cleanup_free_ char *buf = malloc(bufsize);
        if (!buf)
                return -ENOMEM;
        if (pread(fd, buf, head_part, sizeof(h)) != (ssize_t) head_part)
                return -EIO;
        const uint32_t parts[] = { h.key_len, h.variant_len, h.vary_len, h.head_len };
        uint64_t sum = cache_checksum(0, &h, sizeof(h));
        size_t at = 0;
        for (size_t i = 0; i < ELEMENTSOF(parts); i++) {
                sum = cache_checksum(sum, buf + at, parts[i]);
                at += parts[i];
        }
        for (uint64_t done = 0; done < o->body_len;) {
                size_t want = (size_t) MIN((uint64_t) 256 * 1024, o->body_len - done);
                if (pread(fd, buf, want, (off_t) (body_off + done)) != (ssize_t) want)
                        return -EIO;
                sum = cache_checksum(sum, buf, want);
                done += want;
        }
        *ret = sum;
        return 0;
}

static int disk_verify(int fd, const CacheObject *o, uint64_t body_off) {
        uint64_t sum;
        int r = file_sum(fd, o, body_off, &sum);
        return r < 0 ? r : sum == o->sum ? 0 : -EIO;
}

int cache_object_open(CacheObject *o, uint64_t *ret_body_off) {
        char path[PATH_MAX];
        struct stat st;
        uint64_t trailer;

        if (!o->on_disk)
                return -ENOENT;
        uint64_t body_off = object_body_off(o);
        pthread_mutex_lock(&store.lock);
        object_path(o, path, sizeof(path));
        pthread_mutex_unlock(&store.lock);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        /* the same object (a newer one of its key and variant has the same name) */
        int r = fstat(fd, &st) < 0 ? -errno : 0;
        if (r == 0 && ((uint64_t) st.st_size != o->file_size ||
                       pread(fd, &trailer, sizeof(trailer), (off_t) (o->file_size - 8)) != 8 || trailer != o->sum))
                r = -ESTALE;
        if (r == 0 && !atomic_load(&o->file_ok)) {
                r = disk_verify(fd, o, body_off);
                if (r == 0)
                        atomic_store(&o->file_ok, true);
                else if (r == -EIO) {
                        log_warning("cache: stored object for \"%s\" is damaged; removed", o->key);
                        pthread_mutex_lock(&store.lock);
                        if (o->indexed)
                                remove_locked(o, true);
                        pthread_mutex_unlock(&store.lock);
                }
        }
        if (r < 0) {
                close(fd);
                return r;
        }
        *ret_body_off = body_off;
        return fd;
}

int cache_object_copy_body(CacheObject *o, CacheObject *from) {
        uint64_t off;
        if (o->body || o->body_len > 0 || o->spill_fd >= 0)
                return -EINVAL;
        int r = cache_object_spill(o, UINT64_MAX);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = cache_object_open(from, &off);
        if (fd < 0)
                return fd;
        r = cache_copy_range(fd, off, o->spill_fd, from->body_len);
        if (r < 0)
                return r; /* the temporary file goes with o */
        o->body_len = from->body_len;
        return 0;
}

static bool hex_name(const char *n) {
        size_t i = 0;
        for (; n[i]; i++)
                if (!((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'f')))
                        return false;
        return i == 32;
}

/* The index from the directory (under the lock, once). */
static void store_scan(void) {
        size_t n = 0, bad = 0;

        if (mkdir(store.dir, 0700) < 0 && errno != EEXIST) {
                log_warning_errno(errno, "cache: cannot create %s; caching in memory only", store.dir);
                free(store.dir);
                store.dir = NULL;
                return;
        }
        DIR *d = opendir(store.dir);
        if (!d) {
                log_warning_errno(errno, "cache: cannot open %s; caching in memory only", store.dir);
                free(store.dir);
                store.dir = NULL;
                return;
        }
        for (struct dirent *e; (e = readdir(d));) {
                char path[PATH_MAX];
                snprintf(path, sizeof(path), "%s/%s", store.dir, e->d_name);
                if (strncmp(e->d_name, "tmp.", 4) == 0) {
                        (void) unlink(path); /* an object that was never completed */
                        continue;
                }
                if (!hex_name(e->d_name))
                        continue;
                _cleanup_close_ int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC);
                struct stat st;
                CacheObject *o = NULL;
                if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
                        o = disk_read_index(fd, (uint64_t) st.st_size);
                char expect[PATH_MAX];
                if (o)
                        object_path(o, expect, sizeof(expect));
                if (!o || !streq(expect, path)) {
                        if (o)
                                object_free(o);
                        (void) unlink(path);
                        bad++;
                        continue;
                }
                index_locked(o);
                n++;
        }
        closedir(d);
        log_info("cache: %zu objects (%llu bytes) in %s; %zu unusable file(s) removed", n,
                 (unsigned long long) store.disk_used, store.dir, bad);
        evict_locked();
}

static void ensure_ready(void) {
        if (store.ready)
                return;
        store.ready = true;
        if (store.dir)
                store_scan();
}

void cache_store_configure(const char *dir, uint64_t memory_max, uint64_t disk_max) {
        pthread_mutex_lock(&store.lock);
        if (!store.configured) {
                store.configured = true;
                store.dir = dir && *dir ? strdup(dir) : NULL;
        }
        store.memory_max = memory_max;
        store.disk_max = disk_max;
        if (store.ready)
                evict_locked();
        pthread_mutex_unlock(&store.lock);
}

static CacheObject *find_locked(const char *key, const char *variant) {
        uint64_t kh = fnv(UINT64_C(0xcbf29ce484222325), key, strlen(key));
        for (CacheObject *e = store.buckets[kh % N_BUCKETS]; e; e = e->hnext)
                if (e->key_hash == kh && streq(e->key, key) && (!variant || streq(e->variant, variant)))
                        return e;
        return NULL;
}

int cache_store_vary(const char *key, Buf *names) {
        int r = 0;
        pthread_mutex_lock(&store.lock);
        ensure_ready();
        CacheObject *o = find_locked(key, NULL);
        if (o)
                r = buf_append_str(names, o->vary) < 0 ? -ENOMEM : 1;
        pthread_mutex_unlock(&store.lock);
        return r;
}

/* o found under the lock (or NULL): a reference to it with its body in memory, or without
 * when from_file and it is larger than the memory tier (served from its file); unlocks. */
static CacheObject *take_found(CacheObject *o, bool from_file) {
        if (o) {
                o->refs++;
                touch(o);
        }
        if (!o || o->body || (from_file && store.dir && o->body_len > store.memory_max)) {
                /* in memory, or served from its file (cache_object_open) */
                pthread_mutex_unlock(&store.lock);
                return o;
        }
        pthread_mutex_unlock(&store.lock);
        /* on disk only: read it back without holding the lock */
        char *body = disk_read_body(o);
        pthread_mutex_lock(&store.lock);
        if (!body) {
                if (o->indexed) {
                        log_warning("cache: stored object for \"%s\" is damaged; removed", o->key);
                        remove_locked(o, true);
                }
                unref_locked(o);
                o = NULL;
        } else if (!o->body && o->indexed) {
                atomic_store(&o->file_ok, true); /* checked whole just now */
                o->body = body;
                o->body_cap = (size_t) o->body_len;
                mem_push(o);
                evict_locked();
        } else if (!o->body) {
                unref_locked(o); /* purged meanwhile */
                free(body);
                o = NULL;
        } else
                free(body);
        pthread_mutex_unlock(&store.lock);
        return o;
}

CacheObject *cache_store_lookup(const char *key, const char *variant) {
        pthread_mutex_lock(&store.lock);
        ensure_ready();
        return take_found(find_locked(key, variant), false);
}

CacheObject *cache_store_lookup_request(const char *key, const HttpHeader *f, size_t n, Buf *variant,
                                        bool *ret_vary) {
        pthread_mutex_lock(&store.lock);
        ensure_ready();
        CacheObject *any = find_locked(key, NULL);
        *ret_vary = any && any->vary[0];
        if (!any || cache_vary_values(any->vary, f, n, variant) < 0 || buf_append(variant, "", 1) < 0) {
                pthread_mutex_unlock(&store.lock);
                return NULL;
        }
        return take_found(any->vary[0] ? find_locked(key, buf_head(variant)) : any, true);
}

void cache_store_insert(CacheObject *o) {
        pthread_mutex_lock(&store.lock);
        ensure_ready();
        bool disk = store.dir && o->body_len + o->head_len <= store.disk_max;
        unsigned counter = store.tmp_counter++;
        pthread_mutex_unlock(&store.lock);

        if (o->spill_fd >= 0) {
                /* written as it arrived: only the end is left to do */
                int r = disk ? spill_finish(o) : -EFBIG;
                if (r < 0) {
                        log_warning_errno(r, "cache: cannot write \"%s\" to %s; not stored", o->key, store.dir);
                        cache_object_unref(o);
                        return;
                }
        } else if (disk) {
                int r = disk_write(o, counter);
                if (r < 0)
                        log_warning_errno(r, "cache: cannot write \"%s\" to %s; kept in memory only", o->key,
                                          store.dir);
        }
        pthread_mutex_lock(&store.lock);
        atomic_fetch_add(&store.stores, 1);
        index_locked(o); /* the index's reference is the caller's */
        evict_locked();
        pthread_mutex_unlock(&store.lock);
}

CacheObject *cache_object_ref(CacheObject *o) {
        pthread_mutex_lock(&store.lock);
        o->refs++;
        pthread_mutex_unlock(&store.lock);
        return o;
}

void cache_object_unref(CacheObject *o) {
        if (!o)
                return;
        pthread_mutex_lock(&store.lock);
        unref_locked(o);
        if (store.memory_used > store.memory_max)
                evict_locked(); /* bodies that were in use when the limit was passed */
        pthread_mutex_unlock(&store.lock);
}

static size_t purge_matching(const char *s, bool prefix) {
        size_t n = 0, sl = strlen(s);

        pthread_mutex_lock(&store.lock);
        ensure_ready();
        for (size_t b = 0; b < N_BUCKETS; b++)
                for (CacheObject *o = store.buckets[b], *next; o; o = next) {
                        next = o->hnext;
                        if (prefix ? strncmp(o->key, s, sl) == 0 : streq(o->key, s)) {
                                remove_locked(o, true);
                                n++;
                        }
                }
        atomic_fetch_add(&store.purged, n);
        pthread_mutex_unlock(&store.lock);
        return n;
}

size_t cache_store_purge(const char *key) {
        return purge_matching(key, false);
}

size_t cache_store_purge_prefix(const char *prefix) {
        return purge_matching(prefix, true);
}

static Fill **fill_find(const char *id) {
        Fill **p = &store.fills;
        while (*p && !streq((*p)->id, id))
                p = &(*p)->next;
        return p;
}

static void fill_notify(const Fill *f) {
        uint64_t one = 1;
        for (size_t i = 0; i < f->n_watchers; i++)
                (void) !write(f->watchers[i], &one, sizeof(one));
}

int cache_store_fill_claim(const char *id) {
        int r = 1;
        pthread_mutex_lock(&store.lock);
        if (*fill_find(id))
                r = 0;
        else {
                Fill *f = calloc(1, sizeof(Fill) + strlen(id) + 1);
                if (f) { /* without memory: no collapsing */
                        strcpy(f->id, id);
                        f->next = store.fills;
                        store.fills = f;
                }
        }
        pthread_mutex_unlock(&store.lock);
        return r;
}

bool cache_store_fill_pending(const char *id) {
        pthread_mutex_lock(&store.lock);
        bool r = *fill_find(id) != NULL;
        pthread_mutex_unlock(&store.lock);
        return r;
}

void cache_store_fill_done(const char *id) {
        pthread_mutex_lock(&store.lock);
        Fill **p = fill_find(id);
        if (*p) {
                Fill *f = *p;
                *p = f->next;
                if (f->obj) {
                        f->obj->fill_entry = NULL;
                        atomic_store(&f->obj->watched, false);
                        unref_locked(f->obj);
                }
                fill_notify(f);
                free(f->watchers);
                free(f);
        }
        pthread_mutex_unlock(&store.lock);
}

void cache_store_fill_publish(const char *id, CacheObject *o) {
        pthread_mutex_lock(&store.lock);
        Fill *f = *fill_find(id);
        if (f && !f->obj && o->fixed) {
                f->obj = o;
                o->refs++;
                o->fill_entry = f;
                atomic_store(&o->watched, f->n_watchers > 0);
                fill_notify(f);
        }
        pthread_mutex_unlock(&store.lock);
}

static void object_notify(CacheObject *o) {
        if (!atomic_load_explicit(&o->watched, memory_order_acquire))
                return; /* nobody follows it: no lock taken */
        pthread_mutex_lock(&store.lock);
        if (o->fill_entry)
                fill_notify(o->fill_entry);
        pthread_mutex_unlock(&store.lock);
}

void cache_object_filled(CacheObject *o) {
        atomic_store_explicit(&o->filled, o->body_len, memory_order_release);
        object_notify(o);
}

void cache_object_fill_failed(CacheObject *o) {
        atomic_store_explicit(&o->fill_failed, true, memory_order_release);
        object_notify(o);
}

int cache_store_fill_watch(const char *id, int fd, CacheObject **ret) {
        int r = 0;
        pthread_mutex_lock(&store.lock);
        Fill *f = *fill_find(id);
        if (f) {
                r = 1;
                size_t i = 0;
                while (i < f->n_watchers && f->watchers[i] != fd)
                        i++;
                if (i == f->n_watchers && fd >= 0) {
                        if (f->n_watchers == f->cap_watchers) {
                                size_t cap = f->cap_watchers ? f->cap_watchers * 2 : 4;
                                int *w = realloc(f->watchers, cap * sizeof(int));
                                if (w) {
                                        f->watchers = w;
                                        f->cap_watchers = cap;
                                }
                        }
                        if (f->n_watchers < f->cap_watchers)
                                f->watchers[f->n_watchers++] = fd;
                }
                if (f->obj) {
                        atomic_store(&f->obj->watched, true);
                        f->obj->refs++;
                        *ret = f->obj;
                        r = 2;
                }
        }
        pthread_mutex_unlock(&store.lock);
        return r;
}

void cache_store_unwatch(int fd) {
        pthread_mutex_lock(&store.lock);
        for (Fill *f = store.fills; f; f = f->next)
                for (size_t i = 0; i < f->n_watchers; i++)
                        if (f->watchers[i] == fd)
                                f->watchers[i--] = f->watchers[--f->n_watchers];
        pthread_mutex_unlock(&store.lock);
}

unsigned cache_store_use(const char *key) {
        uint64_t h = fnv(UINT64_C(0xcbf29ce484222325), key, strlen(key));
        pthread_mutex_lock(&store.lock);
        unsigned i = (unsigned) (h % N_USES);
        if (store.uses[i].key_hash != h)
                store.uses[i].key_hash = h, store.uses[i].n = 0;
        unsigned n = ++store.uses[i].n;
        pthread_mutex_unlock(&store.lock);
        return n;
}

void cache_store_count(bool hit) {
        atomic_fetch_add_explicit(hit ? &store.hits : &store.misses, 1, memory_order_relaxed);
}

void cache_store_stats(CacheStats *ret) {
        pthread_mutex_lock(&store.lock);
        *ret = (CacheStats){
                .hits = atomic_load(&store.hits),
                .misses = atomic_load(&store.misses),
                .stores = atomic_load(&store.stores),
                .evictions = atomic_load(&store.evictions),
                .purged = atomic_load(&store.purged),
                .objects = store.objects,
                .memory_bytes = store.memory_used,
                .disk_bytes = store.disk_used,
        };
        pthread_mutex_unlock(&store.lock);
}
