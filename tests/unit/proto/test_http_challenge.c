/*
 * test_http_challenge.c: the HTTP-01 request path: a real token is found; paths outside the
 * prefix are ordinary requests; hostile targets under the prefix (empty, too long, dot-dot,
 * a further slash, a query, percent-encoding, NUL, spaces, non-ASCII) are refused and never
 * copied; a token of exactly the maximum length is accepted and NUL-terminated.
 */
#include "tlsfront/proto/http_challenge.h"
#include "tf_test.h"

#include <string.h>

#define P TF_HTTP_CHALLENGE_PREFIX

static enum tf_http_challenge classify(const char *target, size_t len, char *out)
{
    memset(out, 'X', TF_HTTP_TOKEN_MAX + 1);
    return tf_http_challenge_token(target, len, out);
}

static void test_token(void)
{
    char out[TF_HTTP_TOKEN_MAX + 1];
    const char *t = P "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
    CHECK_EQ_INT(classify(t, strlen(t), out), TF_HTTP_CHALLENGE_TOKEN);
    CHECK_EQ_STR(out, "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0");
    const char *u = P "a-b_c";
    CHECK_EQ_INT(classify(u, strlen(u), out), TF_HTTP_CHALLENGE_TOKEN);
    CHECK_EQ_STR(out, "a-b_c");
    /* Only len bytes count: what follows in memory is not read. */
    const char *v = P "abcdef";
    CHECK_EQ_INT(classify(v, strlen(v) - 3, out), TF_HTTP_CHALLENGE_TOKEN);
    CHECK_EQ_STR(out, "abc");
}

static void test_not_challenge(void)
{
    char out[TF_HTTP_TOKEN_MAX + 1];
    const char *paths[] = {"/",
                           "/index.html",
                           "/.well-known/acme-challenge",
                           "/.well-known/acme-challengeX/tok",
                           "/.well-known/ACME-CHALLENGE/tok",
                           "//.well-known/acme-challenge/tok",
                           "/x/.well-known/acme-challenge/tok",
                           ""};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        CHECK_EQ_INT(classify(paths[i], strlen(paths[i]), out), TF_HTTP_CHALLENGE_NONE);
        CHECK(out[0] == 'X');
    }
}

static void test_hostile(void)
{
    char out[TF_HTTP_TOKEN_MAX + 1];
    const char *bad[] = {P,
                         P "..",
                         P "../../etc/passwd",
                         P "tok/..",
                         P "tok/",
                         P "tok?x=1",
                         P "tok#frag",
                         P "tok%2e%2e",
                         P "tok.dot",
                         P "tok en",
                         P "tok\r\nX-Injected: 1",
                         P "t\xc3\xa9",
                         P "tok="};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_EQ_INT(classify(bad[i], strlen(bad[i]), out), TF_HTTP_CHALLENGE_BAD);
        CHECK(out[0] == 'X');
    }
    /* An embedded NUL inside len. */
    char nul[] = P "ab\0cd";
    CHECK_EQ_INT(classify(nul, sizeof(nul) - 1, out), TF_HTTP_CHALLENGE_BAD);
}

static void test_length(void)
{
    char out[TF_HTTP_TOKEN_MAX + 1];
    char t[sizeof(P) + TF_HTTP_TOKEN_MAX + 8];
    size_t plen = strlen(P);
    memcpy(t, P, plen);
    memset(t + plen, 'A', TF_HTTP_TOKEN_MAX + 1);
    CHECK_EQ_INT(classify(t, plen + TF_HTTP_TOKEN_MAX, out), TF_HTTP_CHALLENGE_TOKEN);
    CHECK_EQ_INT((int)strlen(out), TF_HTTP_TOKEN_MAX);
    CHECK_EQ_INT(classify(t, plen + TF_HTTP_TOKEN_MAX + 1, out), TF_HTTP_CHALLENGE_BAD);
    CHECK(out[0] == 'X');
    /* A very long target (8 KiB, the redirect listener's limit). */
    static char big[8192];
    memcpy(big, P, plen);
    memset(big + plen, 'B', sizeof(big) - plen);
    CHECK_EQ_INT(classify(big, sizeof(big), out), TF_HTTP_CHALLENGE_BAD);
}

int main(void)
{
    TF_TEST_RUN(test_token);
    TF_TEST_RUN(test_not_challenge);
    TF_TEST_RUN(test_hostile);
    TF_TEST_RUN(test_length);
    return TF_TEST_DONE();
}
