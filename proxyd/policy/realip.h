/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The client's address behind trusted proxies (nginx real_ip): the addresses a header lists,
 * walked from the right. Pure.
 *
 * Without `recursive`, the rightmost address is the client (the one the trusted peer saw).
 * With it, addresses that are themselves trusted are skipped: the first untrusted one from
 * the right is the client, or the leftmost when all are trusted. An entry that is not an
 * address ("unknown", an obfuscated Forwarded identifier, garbage) ends the walk; the last
 * address taken before it stands, or nothing when it was the first one.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config.h"

typedef enum RealIpSyntax {
        REALIP_LIST,      /* X-Forwarded-For, X-Real-IP: addresses separated by commas */
        REALIP_FORWARDED, /* RFC 7239: the for= parameter of each element */
} RealIpSyntax;

/* The header's field values, joined by ", " in the order received, in value[0..len).
 * Returns 1 and the address (port 0 unless the entry had one) when one was found, else 0. */
int realip_walk(const char *value, size_t len, RealIpSyntax syntax, bool recursive, const AccessRule *trusted,
                size_t n_trusted, struct sockaddr_storage *ret);

/* One address as such headers write it: "192.0.2.1", "192.0.2.1:80", "2001:db8::1",
 * "[2001:db8::1]", "[2001:db8::1]:80", optionally in double quotes. */
int realip_parse_addr(const char *s, size_t n, struct sockaddr_storage *ret);
