/* SPDX-License-Identifier: MIT */
/*
 * Replays fuzz inputs through a target's LLVMFuzzerTestOneInput without libFuzzer:
 *   replay-TARGET PATH...
 * Each PATH is a file or a directory (every regular file in it, in name order).
 * Every input is copied into a buffer of exactly its size, so a sanitizer build catches
 * reads past the end. Exits non-zero if a path cannot be read or no input was found;
 * an invariant failure inside the target aborts.
 */

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static int run_file(const char *path, size_t *count) {
        FILE *f = fopen(path, "rb");
        uint8_t *data = NULL;
        size_t size = 0, cap = 0;

        if (!f) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        for (;;) {
                if (size == cap) {
                        cap = cap ? cap * 2 : 4096;
                        uint8_t *n = realloc(data, cap);
                        if (!n) {
                                fprintf(stderr, "%s: out of memory\n", path);
                                free(data);
                                fclose(f);
                                return -1;
                        }
                        data = n;
                }
                size_t r = fread(data + size, 1, cap - size, f);
                size += r;
                if (r == 0)
                        break;
        }
        if (ferror(f)) {
                fprintf(stderr, "%s: read error\n", path);
                free(data);
                fclose(f);
                return -1;
        }
        fclose(f);

        /* Exact-size copy: the byte after the input is outside the allocation. */
        uint8_t *exact = malloc(size ? size : 1);
        if (!exact) {
                free(data);
                return -1;
        }
        if (size)
                memcpy(exact, data, size);
        free(data);

        fprintf(stderr, "replay %s (%zu bytes)\n", path, size);
        LLVMFuzzerTestOneInput(exact, size);
        free(exact);
        (*count)++;
        return 0;
}

static int run_path(const char *path, size_t *count) {
        struct stat st;

        if (stat(path, &st) < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        if (!S_ISDIR(st.st_mode))
                return run_file(path, count);

        struct dirent **names = NULL;
        int n = scandir(path, &names, NULL, alphasort), ret = 0;
        if (n < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        for (int i = 0; i < n; i++) {
                char *p = NULL;
                if (names[i]->d_name[0] != '.' && asprintf(&p, "%s/%s", path, names[i]->d_name) >= 0) {
                        struct stat fst;
                        if (stat(p, &fst) == 0 && S_ISREG(fst.st_mode) && run_file(p, count) < 0)
                                ret = -1;
                }
                free(p);
                free(names[i]);
        }
        free(names);
        return ret;
}

int main(int argc, char **argv) {
        size_t count = 0;
        int ret = EXIT_SUCCESS;

        if (argc < 2) {
                fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
                return EXIT_FAILURE;
        }
        if (LLVMFuzzerInitialize)
                LLVMFuzzerInitialize(&argc, &argv);
        for (int i = 1; i < argc; i++)
                if (run_path(argv[i], &count) < 0)
                        ret = EXIT_FAILURE;
        if (count == 0) {
                fprintf(stderr, "no inputs found\n");
                ret = EXIT_FAILURE;
        }
        printf("%zu inputs replayed\n", count);
        return ret;
}
