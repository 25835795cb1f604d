/* SPDX-License-Identifier: MIT */
#pragma once

/* Reading the main file and its drop-ins into one merged libconfig tree (private to config.c).
 * Every copied setting remembers where it came from (file, line) in its hook. */

#include <libconfig.h>

#include "config.h"
#include "util.h"

typedef struct ConfigFiles {
        char **files; /* interned file names; origins point into this array */
        size_t n_files;
} ConfigFiles;

int config_diag_add(ConfigDiags *d, const char *file, int line, bool warning, const char *fmt, ...)
        _printf_(5, 6);

/* Origin of a merged setting: file name (owned by files) and line, or NULL/0. */
const char *config_setting_origin(const config_setting_t *s, const ConfigFiles *files, int *ret_line);

/* Parse path and every <path>.d/ *.conf (lexical order) and merge them into merged (initialised by
 * the caller). Syntax and merge problems are added to diags. Returns 0, -EINVAL or -ENOMEM. */
int config_merge_files(const char *path, config_t *merged, ConfigFiles *files, ConfigDiags *diags);
