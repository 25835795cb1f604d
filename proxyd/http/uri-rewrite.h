/* SPDX-License-Identifier: MIT */
#pragma once

/* Request-target handling, nginx semantics. Pure; no logging. */

#include <stddef.h>

/*
 * Split an origin-form request-target into path and query and normalize the path the way
 * nginx does for location matching: percent-decode, merge repeated '/', resolve "." and
 * ".." segments. Returns 0 and a malloc'd NUL-terminated normalized path in *ret_path
 * (*ret_path_len excludes the NUL; may contain decoded bytes such as '?' or '%'),
 * and the query (without '?', pointing into target) in *ret_args and *ret_args_len (NULL if no '?').
 * Returns -EINVAL for targets that cannot be normalized safely: not starting with '/',
 * ".." above the root, invalid %-escape, %00. -ENOMEM on allocation failure.
 */
int uri_normalize(const char *target, size_t target_len,
                  char **ret_path, size_t *ret_path_len,
                  const char **ret_args, size_t *ret_args_len);

/*
 * Build the upstream request-target for `proxy_pass` with a URI part (nginx rule):
 * replacement + escape(norm_path[match_len..]) + ("?" args if args). Escaping follows
 * nginx's ngx_escape_uri(NGX_ESCAPE_URI) for the remainder. Returns malloc'd string.
 */
int uri_rewrite(const char *norm_path, size_t norm_len, size_t match_len,
                const char *replacement, const char *args, size_t args_len,
                char **ret);

/*
 * For a target that is forwarded as received (proxy_pass without a URI part): 1 if a
 * backend that reads the path by RFC 3986 (only a raw '/' separates segments, an empty
 * segment is a segment, "." and ".." are resolved before decoding) ends up at norm_path,
 * the path uri_normalize() made of it and proxyd routed; 0 if it can end up elsewhere,
 * possibly below a location that proxyd would have denied: "/admin//.." and
 * "/admin/x%2F../.." are "/" to proxyd and nginx but "/admin/" to such a backend.
 * nginx forwards these; proxyd's caller should answer 400 instead.
 * -EINVAL for a target not in origin-form, -ENOMEM.
 */
int uri_raw_is_unambiguous(const char *target, size_t target_len, const char *norm_path, size_t norm_len);
