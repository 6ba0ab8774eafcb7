/*
 * testutil: helpers shared by the unit tests (header-only, static functions).
 * testutil_testdata() locates ../shared/testdata through DS_TESTDATA; tests that
 * need it call skip() with the reason when it is absent.
 */
#ifndef DS_TESTS_TESTUTIL_H
#define DS_TESTS_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* The shared test-data folder, or NULL (with a note on stderr) when absent. */
static inline const char *testutil_testdata(void)
{
    const char *d = getenv("DS_TESTDATA");
    struct stat st;
    if (!d || stat(d, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "skip: shared test data not found (DS_TESTDATA=%s)\n", d ? d : "unset");
        return NULL;
    }
    return d;
}

/* Reads a whole file into a malloc'ed buffer (NUL-terminated); NULL on failure. */
static inline char *testutil_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long n = ftell(f);
    rewind(f);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        if (len)
            *len = (size_t)n;
    }
    return buf;
}

#endif
