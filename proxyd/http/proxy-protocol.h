/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The PROXY protocol (HAProxy's, versions 1 and 2): the header a load balancer puts in front
 * of a connection to say whose connection it is. Pure: parsing is incremental over the bytes
 * received so far (nothing is consumed until the header is complete), writing fills a buffer.
 */

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#define PROXY_V1_MAX 107       /* the whole v1 line, CRLF included */
#define PROXY_V2_MAX (16 + 2048) /* accepted v2 header: its fixed part and the addresses plus TLVs */

typedef struct ProxyHeader {
        int version;   /* 1 or 2 */
        bool has_addr; /* false: LOCAL (v2) or UNKNOWN (v1), or an address family other than TCP
                        * over IPv4/IPv6: the connection's own addresses stand */
        struct sockaddr_storage src, dst;
} ProxyHeader;

/*
 * Parse a header at the start of buf[0..len). Returns its length (> 0) when complete, 0 when
 * the bytes so far are a valid beginning of one, -EINVAL when they cannot be; *ret_error then
 * says why (a static string).
 */
ssize_t proxy_header_parse(const void *buf, size_t len, ProxyHeader *ret, const char **ret_error);

/* Write a header of `version` (1 or 2) for a connection from src to dst into out (room for
 * PROXY_V1_MAX / 52 bytes is enough). Addresses other than IPv4/IPv6 give "UNKNOWN" / LOCAL.
 * Returns the length, or -ENOBUFS. */
ssize_t proxy_header_write(int version, const struct sockaddr *src, const struct sockaddr *dst, void *out,
                           size_t size);
