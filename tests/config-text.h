/* SPDX-License-Identifier: MIT */
#pragma once

/* For the unit suites: load a configuration given as text, written to DIR/t.conf. */

#include <check.h>
#include <stdio.h>

#include "config.h"

static inline int config_load_text(const char *dir, const char *text, Config **c, ConfigDiags *d) {
        char path[256];
        FILE *f;

        snprintf(path, sizeof(path), "%s/t.conf", dir);
        f = fopen(path, "we");
        ck_assert_ptr_nonnull(f);
        fputs(text, f);
        fclose(f);
        return config_load(path, c, d);
}
