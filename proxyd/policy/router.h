/* SPDX-License-Identifier: MIT */
#pragma once

/* Server and location selection, nginx semantics. Pure; no logging. */

#include <stddef.h>

#include "config.h"

/*
 * Choose the server among the servers of one Listen for a Host value (may be NULL/0 when
 * the request had none; port and trailing dot are ignored, comparison is case-insensitive).
 * Order: exact name, longest "*.suffix" wildcard, then the first server of the list (default).
 */
Server *router_select_server(Server *const *servers, size_t n, const char *host, size_t host_len);

/*
 * Choose the location for a normalized path (see uri_normalize): exact match wins;
 * else the longest prefix is remembered; if it has stop_regex it is used; else regex/iregex
 * locations are tried in order and the first match wins; else the longest prefix.
 * Returns NULL for no match (404). *ret_match_len: length of the matched prefix
 * (prefix/exact), 0 for regex.
 * Fails closed, returning NULL: when a regex match cannot be decided (match limit, invalid
 * UTF-8 for a (*UTF) pattern, no memory), and for a path that backends may read as another
 * one (a ".;" or "..;" segment, an overlong UTF-8 sequence such as C0 AE).
 */
Location *router_select_location(const Server *s, const char *path, size_t path_len,
                                 size_t *ret_match_len);

/*
 * nginx's automatic redirect: when no location is named exactly like the path and a proxying
 * prefix or exact location is named like the path plus "/", the client gets a 301 to that
 * location (pattern, then "?" and the query if any). Returns it, or NULL (always for the
 * paths router_select_location() refuses). Check before router_select_location().
 */
Location *router_auto_redirect(const Server *s, const char *path, size_t path_len);
