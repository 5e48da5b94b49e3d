/*
 * tf_test.h: the minimal test harness shared by tests/unit and tests/loop. CHECK records a
 * failure and goes on; TF_TEST_MAIN's return value is non-zero if any check failed, and the
 * last line printed is "N passed, N failed" (the plain closing line CI reads).
 */
#ifndef TF_TEST_H
#define TF_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int tf_test_passed, tf_test_failed;

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (cond) {                                                                           \
            tf_test_passed++;                                                                 \
        } else {                                                                              \
            tf_test_failed++;                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);          \
        }                                                                                     \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                    \
    do {                                                                                      \
        long long _a = (long long)(a), _b = (long long)(b);                                   \
        if (_a == _b) {                                                                       \
            tf_test_passed++;                                                                 \
        } else {                                                                              \
            tf_test_failed++;                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__,       \
                    __LINE__, #a, #b, _a, _b);                                                \
        }                                                                                     \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                    \
    do {                                                                                      \
        const char *_a = (a), *_b = (b);                                                      \
        if (_a && _b && strcmp(_a, _b) == 0) {                                                \
            tf_test_passed++;                                                                 \
        } else {                                                                              \
            tf_test_failed++;                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n", __FILE__,   \
                    __LINE__, #a, #b, _a ? _a : "(null)", _b ? _b : "(null)");                \
        }                                                                                     \
    } while (0)

#define TF_TEST_RUN(fn)                                                                       \
    do {                                                                                      \
        int _f = tf_test_failed;                                                              \
        fn();                                                                                 \
        fprintf(stderr, "%s %s\n", tf_test_failed == _f ? "ok  " : "FAIL", #fn);              \
    } while (0)

#define TF_TEST_DONE()                                                                        \
    (printf("%d passed, %d failed\n", tf_test_passed, tf_test_failed), tf_test_failed ? 1 : 0)

/* Write text to a new file $TMPDIR/tf-test.XXXXXX (or /tmp); its path goes to path (cap
 * bytes). Returns 0, or -1 with nothing left behind. The caller unlinks it. */
static inline int tf_test_tmpfile(const char *text, char *path, size_t cap)
{
    const char *dir = getenv("TMPDIR");
    if (snprintf(path, cap, "%s/tf-test.XXXXXX", dir && *dir ? dir : "/tmp") >= (int)cap)
        return -1;
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    int ok = write(fd, text, len) == (ssize_t)len;
    if (close(fd) != 0 || !ok) {
        unlink(path);
        return -1;
    }
    return 0;
}

#endif
