/* SPDX-License-Identifier: MIT */
#pragma once

/* File helpers of the cache's disk store (cache-store.c): the checksum of its files, whole
 * writes and reads, copies from file to file. Errors are -errno (-EIO: the file ended). */

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* A fast 64-bit checksum over words, continued from h (not cryptographic: it catches torn and
 * truncated files). Pieces sum as one pass when all but the last are whole words. */
uint64_t cache_checksum(uint64_t h, const void *p, size_t n);
/* All of iov[0..n) (which it changes) written to fd. */
int cache_write_all(int fd, struct iovec *iov, int n);
int cache_read_exact(int fd, void *p, size_t n);
/* n bytes read from fd, terminated, or NULL. */
char *cache_read_string(int fd, size_t n);
/* n bytes of in from in_off on, to where out stands (its end). */
int cache_copy_range(int in, uint64_t in_off, int out, uint64_t n);
