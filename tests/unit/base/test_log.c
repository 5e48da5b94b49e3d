/*
 * test_log.c: the rate-limited log classes with an injected clock: the first line passes,
 * lines inside the interval are counted, the next window's line carries the count and the
 * time since the previous line, the default interval, concurrent callers (exactly one wins a
 * window, every other call is counted), and what tf_log_limited() really writes to stderr
 * (captured in a temp file), including nothing at all for a disabled level.
 */
#include "tlsfront/base/log.h"
#include "tf_test.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void test_windows(void)
{
    struct tf_log_limit l = {.interval_ms = 10000};
    uint64_t rep = 99;
    int64_t span = 99;

    CHECK(tf_log_limit_pass(&l, 1000, &rep, &span));
    CHECK_EQ_INT(rep, 0);
    CHECK_EQ_INT(span, 0);
    for (int i = 0; i < 5; i++)
        CHECK(!tf_log_limit_pass(&l, 1001 + i * 1000, &rep, &span));
    CHECK(!tf_log_limit_pass(&l, 10999, &rep, &span));
    CHECK_EQ_INT(tf_log_limit_suppressed(&l), 6);
    CHECK(tf_log_limit_pass(&l, 11000, &rep, &span));
    CHECK_EQ_INT(rep, 6);
    CHECK_EQ_INT(span, 10000);
    CHECK(!tf_log_limit_pass(&l, 11001, &rep, &span));
    /* A quiet spell: the next line comes whenever the next message does. */
    CHECK(tf_log_limit_pass(&l, 25000, &rep, &span));
    CHECK_EQ_INT(rep, 1);
    CHECK_EQ_INT(span, 14000);
    CHECK(tf_log_limit_pass(&l, 40000, &rep, &span));
    CHECK_EQ_INT(rep, 0);
    CHECK_EQ_INT(span, 15000);
    CHECK_EQ_INT(tf_log_limit_suppressed(&l), 7);
}

static void test_clock_at_zero_and_default(void)
{
    struct tf_log_limit l = {0}; /* interval 0: the default */
    uint64_t rep;
    int64_t span;
    CHECK(tf_log_limit_pass(&l, 0, &rep, &span));
    CHECK(!tf_log_limit_pass(&l, 1, &rep, &span));
    CHECK(!tf_log_limit_pass(&l, TF_LOG_LIMIT_DEFAULT_MS - 1, &rep, &span));
    CHECK(tf_log_limit_pass(&l, TF_LOG_LIMIT_DEFAULT_MS, &rep, &span));
    CHECK_EQ_INT(rep, 2);
    CHECK_EQ_INT(span, TF_LOG_LIMIT_DEFAULT_MS);
}

#define THREADS 8
#define CALLS 20000

struct race {
    struct tf_log_limit *l;
    int passed;
};

static void *race_main(void *arg)
{
    struct race *r = arg;
    uint64_t rep;
    int64_t span;
    for (int i = 0; i < CALLS; i++)
        r->passed += tf_log_limit_pass(r->l, 5000, &rep, &span);
    return NULL;
}

static void test_threads(void)
{
    struct tf_log_limit l = {.interval_ms = 1000};
    struct race r[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        r[i] = (struct race){&l, 0};
        CHECK_EQ_INT(pthread_create(&t[i], NULL, race_main, &r[i]), 0);
    }
    int passed = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        passed += r[i].passed;
    }
    CHECK_EQ_INT(passed, 1);
    CHECK_EQ_INT(tf_log_limit_suppressed(&l), THREADS * CALLS - 1);
    uint64_t rep;
    int64_t span;
    CHECK(tf_log_limit_pass(&l, 6000, &rep, &span));
    CHECK_EQ_INT(rep, THREADS * CALLS - 1);
}

/* Runs tf_log_limited() calls with stderr going to a temp file; returns what was written. */
static void capture(char *out, size_t cap, void (*fn)(struct tf_log_limit *),
                    struct tf_log_limit *l)
{
    char path[256];
    out[0] = '\0';
    if (tf_test_tmpfile("", path, sizeof path) != 0) {
        CHECK(!"temp file");
        return;
    }
    FILE *f = fopen(path, "r+");
    int saved = dup(STDERR_FILENO);
    CHECK(f && saved >= 0 && dup2(fileno(f), STDERR_FILENO) >= 0);
    fn(l);
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(f); /* the descriptor shares its offset with the redirected stderr */
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    fclose(f);
    unlink(path);
}

static void flood(struct tf_log_limit *l)
{
    for (int i = 0; i < 100; i++)
        tf_log_limited(l, 1000 + i, TF_LOG_INFO, "test", "name=n%d.example not allowed", i);
    tf_log_limited(l, 11000, TF_LOG_INFO, "test", "name=last.example not allowed");
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_written_lines(void)
{
    char text[8192];
    struct tf_log_limit l = {.interval_ms = 10000};
    tf_log_setup(TF_LOG_INFO, false);
    capture(text, sizeof text, flood, &l);
    CHECK_EQ_INT(count_lines(text), 2);
    CHECK(strstr(text, "info test: name=n0.example not allowed\n") != NULL);
    CHECK(strstr(text, "info test: name=last.example not allowed (repeated 99 times in the "
                       "last 10 s)\n") != NULL);
    CHECK_EQ_INT(tf_log_limit_suppressed(&l), 99);

    /* A disabled level writes nothing and counts nothing. */
    struct tf_log_limit quiet = {.interval_ms = 10000};
    tf_log_setup(TF_LOG_WARN, false);
    capture(text, sizeof text, flood, &quiet);
    tf_log_setup(TF_LOG_INFO, false);
    CHECK_EQ_INT(count_lines(text), 0);
    CHECK_EQ_INT(tf_log_limit_suppressed(&quiet), 0);
}

int main(void)
{
    TF_TEST_RUN(test_windows);
    TF_TEST_RUN(test_clock_at_zero_and_default);
    TF_TEST_RUN(test_threads);
    TF_TEST_RUN(test_written_lines);
    return TF_TEST_DONE();
}
