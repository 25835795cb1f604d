/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>

#include "config-merge.h"
#include "util.h"

#define CONFIG_DROPINS_MAX 1024
#define CONFIG_FILES_MAX 4096

int config_diag_add(ConfigDiags *d, const char *file, int line, bool warning, const char *fmt, ...) {
        ConfigDiag *items;
        char *msg = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;

        items = reallocarray(d->items, d->n + 1, sizeof(ConfigDiag));
        if (!items) {
                free(msg);
                return -ENOMEM;
        }
        d->items = items;
        items[d->n] = (ConfigDiag) { .line = line, .warning = warning, .message = msg };
        if (file) {
                items[d->n].file = strdup(file);
                if (!items[d->n].file) {
                        free(msg);
                        return -ENOMEM;
                }
        }
        d->n++;
        if (!warning)
                d->n_errors++;
        return 0;
}

static int files_intern(ConfigFiles *f, const char *name, size_t *ret_idx) {
        char **a;

        for (size_t i = 0; i < f->n_files; i++)
                if (streq(f->files[i], name)) {
                        *ret_idx = i;
                        return 0;
                }
        if (f->n_files >= CONFIG_FILES_MAX)
                return -E2BIG;
        a = reallocarray(f->files, f->n_files + 1, sizeof(char *));
        if (!a)
                return -ENOMEM;
        f->files = a;
        a[f->n_files] = strdup(name);
        if (!a[f->n_files])
                return -ENOMEM;
        *ret_idx = f->n_files++;
        return 0;
}

const char *config_setting_origin(const config_setting_t *s, const ConfigFiles *files, int *ret_line) {
        uintptr_t h = s ? (uintptr_t) config_setting_get_hook(s) : 0;
        size_t idx = (size_t) (h >> 32);

        *ret_line = (int) (h & 0xffffffffu);
        if (idx == 0 || idx > files->n_files)
                return NULL;
        return files->files[idx - 1];
}

typedef struct MergeCtx {
        ConfigFiles *files;
        ConfigDiags *diags;
        const char *fallback_file;
} MergeCtx;

static int set_origin(MergeCtx *m, config_setting_t *dst, const config_setting_t *src) {
        const char *file = config_setting_source_file(src);
        unsigned line = config_setting_source_line(src);
        size_t idx;
        int r;

        if (!file)
                file = m->fallback_file;
        r = files_intern(m->files, file, &idx);
        if (r < 0)
                return r;
        config_setting_set_hook(dst, (void *) (((uintptr_t) (idx + 1) << 32) | (uintptr_t) line));
        return 0;
}

static int copy_setting(MergeCtx *m, config_setting_t *parent, const config_setting_t *src) {
        int type = config_setting_type(src);
        config_setting_t *dst;
        int r;

        dst = config_setting_add(parent, config_setting_is_group(parent) ? config_setting_name(src) : NULL,
                                 type);
        if (!dst)
                return -ENOMEM;
        r = set_origin(m, dst, src);
        if (r < 0)
                return r;
        config_setting_set_format(dst, src->format);

        switch (type) {
        case CONFIG_TYPE_INT:
                config_setting_set_int(dst, config_setting_get_int(src));
                break;
        case CONFIG_TYPE_INT64:
                config_setting_set_int64(dst, config_setting_get_int64(src));
                break;
        case CONFIG_TYPE_FLOAT:
                config_setting_set_float(dst, config_setting_get_float(src));
                break;
        case CONFIG_TYPE_BOOL:
                config_setting_set_bool(dst, config_setting_get_bool(src));
                break;
        case CONFIG_TYPE_STRING:
                if (!config_setting_set_string(dst, config_setting_get_string(src)))
                        return -ENOMEM;
                break;
        case CONFIG_TYPE_GROUP:
        case CONFIG_TYPE_ARRAY:
        case CONFIG_TYPE_LIST:
                for (int i = 0; i < config_setting_length(src); i++) {
                        r = copy_setting(m, dst, config_setting_get_elem(src, (unsigned) i));
                        if (r < 0)
                                return r;
                }
                break;
        default:
                break;
        }
        return 0;
}

static const char *diag_file(MergeCtx *m, const config_setting_t *s) {
        const char *f = config_setting_source_file(s);
        return f ? f : m->fallback_file;
}

/* Replace the keys of dst (a group) with those of src (a group). */
static int merge_keys(MergeCtx *m, config_setting_t *dst, const config_setting_t *src) {
        for (int i = 0; i < config_setting_length(src); i++) {
                const config_setting_t *k = config_setting_get_elem(src, (unsigned) i);
                int r;

                (void) config_setting_remove(dst, config_setting_name(k));
                r = copy_setting(m, dst, k);
                if (r < 0)
                        return r;
        }
        return 0;
}

static const char *server_name_of(const config_setting_t *s) {
        const char *n = NULL;

        if (!config_setting_is_group(s))
                return NULL;
        if (!config_setting_lookup_string(s, "name", &n))
                return NULL;
        return n;
}

static int merge_servers(MergeCtx *m, config_setting_t *dst, const config_setting_t *src) {
        for (int i = 0; i < config_setting_length(src); i++) {
                const config_setting_t *s = config_setting_get_elem(src, (unsigned) i);
                const char *name = server_name_of(s);
                config_setting_t *match = NULL;
                int r;

                if (name)
                        for (int j = 0; j < config_setting_length(dst); j++) {
                                config_setting_t *d = config_setting_get_elem(dst, (unsigned) j);
                                if (streq_ptr(server_name_of(d), name)) {
                                        match = d;
                                        break;
                                }
                        }
                r = match ? merge_keys(m, match, s) : copy_setting(m, dst, s);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int merge_root(MergeCtx *m, config_setting_t *root, const config_setting_t *src) {
        for (int i = 0; i < config_setting_length(src); i++) {
                const config_setting_t *k = config_setting_get_elem(src, (unsigned) i);
                const char *name = config_setting_name(k);
                config_setting_t *d = config_setting_get_member(root, name);
                int want = -1, r;

                if (streq(name, "defaults") || streq(name, "upstreams") || streq(name, "limits"))
                        want = CONFIG_TYPE_GROUP;
                else if (streq(name, "servers"))
                        want = CONFIG_TYPE_LIST;

                if (want >= 0 && config_setting_type(k) != want) {
                        r = config_diag_add(m->diags, diag_file(m, k), (int) config_setting_source_line(k),
                                            false, "\"%s\" must be a %s", name,
                                            want == CONFIG_TYPE_GROUP ? "group { ... }" : "list ( ... )");
                        if (r < 0)
                                return r;
                        continue;
                }
                if (want >= 0 && d && config_setting_type(d) == want) {
                        if (want == CONFIG_TYPE_LIST)
                                r = merge_servers(m, d, k);
                        else
                                /* defaults: per key; upstreams, limits: per name, the later one whole */
                                r = merge_keys(m, d, k);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (d)
                        (void) config_setting_remove(root, name);
                r = copy_setting(m, root, k);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int merge_one(const char *path, config_t *merged, ConfigFiles *files, ConfigDiags *diags) {
        _cleanup_free_ char *dir = strdup(path);
        MergeCtx m = { .files = files, .diags = diags, .fallback_file = path };
        config_t cf;
        size_t idx;
        int r;

        if (!dir)
                return -ENOMEM;
        r = files_intern(files, path, &idx);
        if (r < 0)
                return r;

        config_init(&cf);
        config_set_include_dir(&cf, dirname(dir));
        if (!config_read_file(&cf, path)) {
                const char *f = config_error_file(&cf);
                if (config_error_type(&cf) == CONFIG_ERR_FILE_IO && !f)
                        r = config_diag_add(diags, path, 0, false, "cannot read file: %m");
                else
                        r = config_diag_add(diags, f ? f : path, config_error_line(&cf), false, "%s",
                                            config_error_text(&cf));
                config_destroy(&cf);
                return r < 0 ? r : -EINVAL;
        }
        r = merge_root(&m, config_root_setting(merged), config_root_setting(&cf));
        config_destroy(&cf);
        return r;
}

static int strcmpp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int config_merge_files(const char *path, config_t *merged, ConfigFiles *files, ConfigDiags *diags) {
        _cleanup_free_ char *dropin_dir = NULL;
        char **names = NULL;
        size_t n_names = 0;
        bool failed = false;
        DIR *d;
        int r;

        r = merge_one(path, merged, files, diags);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                failed = true;

        if (asprintf(&dropin_dir, "%s.d", path) < 0)
                return -ENOMEM;
        d = opendir(dropin_dir);
        if (!d) {
                if (errno == ENOENT || errno == ENOTDIR)
                        return failed ? -EINVAL : 0;
                r = config_diag_add(diags, dropin_dir, 0, false, "cannot open directory: %m");
                return r < 0 ? r : -EINVAL;
        }
        for (struct dirent *de; (de = readdir(d));) {
                size_t l = strlen(de->d_name);
                char **a;

                if (de->d_name[0] == '.' || l < 6 || !streq(de->d_name + l - 5, ".conf"))
                        continue;
                if (n_names >= CONFIG_DROPINS_MAX) {
                        r = -E2BIG;
                        goto finish;
                }
                a = reallocarray(names, n_names + 1, sizeof(char *));
                if (!a) {
                        r = -ENOMEM;
                        goto finish;
                }
                names = a;
                if (asprintf(&names[n_names], "%s/%s", dropin_dir, de->d_name) < 0) {
                        r = -ENOMEM;
                        goto finish;
                }
                n_names++;
        }
        if (n_names > 0)
                qsort(names, n_names, sizeof(char *), strcmpp);
        r = 0;
        for (size_t i = 0; i < n_names; i++) {
                struct stat st;

                if (stat(names[i], &st) < 0 || !S_ISREG(st.st_mode))
                        continue;
                r = merge_one(names[i], merged, files, diags);
                if (r == -ENOMEM)
                        goto finish;
                if (r < 0)
                        failed = true;
                r = 0;
        }
finish:
        if (r == -E2BIG)
                r = config_diag_add(diags, dropin_dir, 0, false, "too many drop-in files (at most %d)",
                                    CONFIG_DROPINS_MAX) < 0 ? -ENOMEM : -EINVAL;
        closedir(d);
        for (size_t i = 0; i < n_names; i++)
                free(names[i]);
        free(names);
        if (r < 0)
                return r;
        return failed ? -EINVAL : 0;
}
