/*
 * tf_test.h: the minimal test harness shared by tests/unit and tests/loop. CHECK records a
 * failure and goes on; TF_TEST_MAIN's return value is non-zero if any check failed, and the
 * last line printed is "N passed, N failed" (the plain closing line CI reads).
 */
#ifndef TF_TEST_H
#define TF_TEST_H

#include <stdio.h>
#include <string.h>

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

#endif
