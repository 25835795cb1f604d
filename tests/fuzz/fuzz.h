/* SPDX-License-Identifier: MIT */
#pragma once

/* Shared by the fuzz targets: an invariant check that fails loudly in every build mode
 * (libFuzzer records the abort as a crash; the replay driver's test fails). */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond, ...)                                                                   \
        do {                                                                                    \
                if (!(cond)) {                                                                  \
                        fprintf(stderr, "%s:%d: invariant failed: %s: ", __FILE__, __LINE__, #cond); \
                        fprintf(stderr, __VA_ARGS__);                                           \
                        fputc('\n', stderr);                                                    \
                        abort();                                                                \
                }                                                                               \
        } while (0)

static inline char fuzz_lower(char c) {
        return c >= 'A' && c <= 'Z' ? (char) (c - 'A' + 'a') : c;
}

/* Case-insensitive comparison of a counted string with a NUL-terminated one. */
static inline int fuzz_eq_ci(const char *s, size_t n, const char *lit) {
        size_t i = 0;
        for (; i < n; i++)
                if (lit[i] == '\0' || fuzz_lower(s[i]) != fuzz_lower(lit[i]))
                        return 0;
        return lit[i] == '\0';
}
