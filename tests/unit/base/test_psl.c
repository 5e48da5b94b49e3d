/*
 * test_psl.c: registered domains through libpsl: a plain .com name, a multi-label ICANN
 * suffix (.co.uk), a private-section suffix (github.io), an unknown TLD (the implicit "*"
 * rule), public suffixes themselves (refused), a too-small buffer, and concurrent callers
 * (the list loads once; results agree across threads).
 */
#include "tlsfront/base/common.h"
#include "tlsfront/base/psl.h"
#include "tf_test.h"

#include <pthread.h>
#include <stdbool.h>

static void expect_rd(const char *name, const char *want)
{
    char out[256] = "junk";
    int rc = tf_psl_registered_domain(name, out, sizeof(out));
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(out, want);
}

static void expect_suffix(const char *name)
{
    char out[256] = "junk";
    CHECK_EQ_INT(tf_psl_registered_domain(name, out, sizeof(out)), TF_EINVAL);
    CHECK_EQ_STR(out, "");
}

static void test_icann(void)
{
    expect_rd("example.com", "example.com");
    expect_rd("www.example.com", "example.com");
    expect_rd("a.b.c.example.com", "example.com");
    expect_rd("a.b.example.co.uk", "example.co.uk");
    expect_rd("new.blog.example.co.uk", "example.co.uk");
    expect_rd("shop.example.com.au", "example.com.au");
    /* Punycode labels (IDN) are looked up as they are. */
    expect_rd("www.xn--bcher-kva.de", "xn--bcher-kva.de");
}

static void test_private_section(void)
{
    /* github.io is in the list's private section: every user site is its own domain. */
    expect_rd("octocat.github.io", "octocat.github.io");
    expect_rd("a.b.octocat.github.io", "octocat.github.io");
    expect_suffix("github.io");
}

static void test_unknown_tld(void)
{
    /* Not in the list: the implicit "*" rule makes the last label the suffix. */
    expect_rd("foo.bar.nosuchtld", "bar.nosuchtld");
    expect_rd("bar.nosuchtld", "bar.nosuchtld");
    expect_suffix("nosuchtld");
}

static void test_public_suffix_itself(void)
{
    expect_suffix("com");
    expect_suffix("co.uk");
    expect_suffix("com.au");
    expect_suffix("");
    /* Wildcard rule "*.kawasaki.jp" with exception "!city.kawasaki.jp". */
    expect_suffix("foo.kawasaki.jp");
    expect_rd("city.kawasaki.jp", "city.kawasaki.jp");
    expect_rd("x.foo.kawasaki.jp", "x.foo.kawasaki.jp");
}

static void test_small_buffer(void)
{
    char out[8] = "junk";
    CHECK_EQ_INT(tf_psl_registered_domain("www.example.com", out, sizeof(out)), TF_ETOOBIG);
    CHECK_EQ_STR(out, "");
    char exact[12];
    CHECK_EQ_INT(tf_psl_registered_domain("www.example.com", exact, sizeof(exact)), 0);
    CHECK_EQ_STR(exact, "example.com");
    CHECK(tf_psl_source()[0] != '\0');
}

static void *thread_main(void *arg)
{
    bool *ok = arg;
    *ok = true;
    for (int i = 0; i < 2000; i++) {
        char out[64];
        if (tf_psl_registered_domain("a.b.example.co.uk", out, sizeof(out)) != 0 ||
            strcmp(out, "example.co.uk") != 0)
            *ok = false;
    }
    return NULL;
}

static void test_threads(void)
{
    pthread_t t[4];
    bool ok[4] = {false, false, false, false};
    int started = 0;
    for (int i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, thread_main, &ok[i]) == 0)
            started++;
    CHECK_EQ_INT(started, 4);
    for (int i = 0; i < started; i++) {
        pthread_join(t[i], NULL);
        CHECK(ok[i]);
    }
}

int main(void)
{
    TF_TEST_RUN(test_threads); /* first, so the concurrent callers race the one-time load */
    TF_TEST_RUN(test_icann);
    TF_TEST_RUN(test_private_section);
    TF_TEST_RUN(test_unknown_tld);
    TF_TEST_RUN(test_public_suffix_itself);
    TF_TEST_RUN(test_small_buffer);
    return TF_TEST_DONE();
}
