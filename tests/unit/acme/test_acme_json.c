/*
 * test_acme_json.c: the ACME document parsers against good documents (pebble's and Let's
 * Encrypt's shapes) and hostile ones: wrong types, missing members, truncation, non-JSON.
 */
#include "tlsfront/acme/acme.h"
#include "tlsfront/base/common.h"
#include "tf_test.h"

#include <stdlib.h>
#include <string.h>

#define P(s) s, strlen(s)

static void test_problem(void)
{
    struct tf_acme_problem p;
    tf_acme_problem_parse(P("{\"type\":\"urn:ietf:params:acme:error:rejectedIdentifier\","
                            "\"detail\":\"Some identifiers were rejected\",\"status\":400,"
                            "\"subproblems\":[{\"type\":\"urn:ietf:params:acme:error:caa\","
                            "\"detail\":\"CAA forbids\",\"identifier\":{\"type\":\"dns\","
                            "\"value\":\"a.example.com\"}},{\"type\":5},\"junk\","
                            "{\"detail\":\"no type\"}]}"),
                          403, &p);
    CHECK(tf_acme_problem_is(&p, "rejectedIdentifier"));
    CHECK(!tf_acme_problem_is(&p, "badNonce"));
    CHECK_EQ_STR(p.detail, "Some identifiers were rejected");
    CHECK_EQ_INT(p.status, 400);
    CHECK_EQ_INT(p.n_sub, 3); /* the string entry is skipped */
    CHECK_EQ_STR(p.sub[0].ident_value, "a.example.com");
    CHECK_EQ_STR(p.sub[0].ident_type, "dns");
    CHECK_EQ_STR(p.sub[1].type, "");
    CHECK(p.sub[1].ident_value == NULL);
    char buf[512];
    tf_acme_problem_summary(&p, buf, sizeof(buf));
    CHECK(strstr(buf, "rejectedIdentifier :: Some identifiers") != NULL);
    CHECK(strstr(buf, "a.example.com: urn:ietf:params:acme:error:caa :: CAA forbids") != NULL);
    struct tf_acme_problem c;
    tf_acme_problem_copy(&c, &p);
    CHECK_EQ_STR(c.sub[0].detail, "CAA forbids");
    tf_acme_problem_clear(&c);
    tf_acme_problem_clear(&p);

    /* Not JSON, truncated, wrong types: still a problem with a reason. */
    tf_acme_problem_parse(P("<html>Bad Gateway\n</html>"), 502, &p);
    CHECK_EQ_STR(p.type, "");
    CHECK_EQ_STR(p.detail, "HTTP 502: <html>Bad Gateway.</html>");
    CHECK_EQ_INT(p.status, 502);
    tf_acme_problem_clear(&p);
    tf_acme_problem_parse(P("{\"type\":\"urn:ietf:params:acme:error:badN"), 400, &p);
    CHECK_EQ_STR(p.type, "");
    CHECK(strncmp(p.detail, "HTTP 400: {", 11) == 0);
    tf_acme_problem_clear(&p);
    tf_acme_problem_parse(P("{\"type\":\"x\",\"detail\":7,\"status\":\"x\",\"subproblems\":3}"),
                          400, &p);
    CHECK_EQ_STR(p.detail, "");
    CHECK_EQ_INT(p.status, 400);
    CHECK_EQ_INT(p.n_sub, 0);
    tf_acme_problem_clear(&p);
    tf_acme_problem_parse(NULL, 0, 500, &p);
    CHECK_EQ_STR(p.detail, "HTTP 500");
    tf_acme_problem_clear(&p);
}

static void test_paused(void)
{
    struct tf_acme_problem p;
    char *url = NULL;
    tf_acme_problem_parse(
        P("{\"type\":\"urn:ietf:params:acme:error:rateLimited\",\"detail\":\"Your account is "
          "temporarily prevented from requesting certificates for a.example.com and possibly "
          "others. Please visit: https://portal.letsencrypt.org/sfe/v1/unpause?jwt=abc.def.\"}"),
        429, &p);
    CHECK(tf_acme_problem_is_paused(&p, &url));
    CHECK_EQ_STR(url, "https://portal.letsencrypt.org/sfe/v1/unpause?jwt=abc.def");
    free(url);
    tf_acme_problem_clear(&p);
    tf_acme_problem_parse(P("{\"type\":\"urn:ietf:params:acme:error:unauthorized\",\"detail\":"
                            "\"account is paused\",\"instance\":\"https://ca/unpause/1\"}"),
                          403, &p);
    CHECK(tf_acme_problem_is_paused(&p, &url));
    CHECK_EQ_STR(url, "https://ca/unpause/1");
    free(url);
    tf_acme_problem_clear(&p);
    tf_acme_problem_parse(P("{\"type\":\"urn:ietf:params:acme:error:rateLimited\",\"detail\":"
                            "\"too many certificates (5) already issued\"}"),
                          429, &p);
    CHECK(!tf_acme_problem_is_paused(&p, &url));
    CHECK(url == NULL);
    tf_acme_problem_clear(&p);
    tf_acme_problem_parse(P("{\"type\":\"urn:ietf:params:acme:error:malformed\",\"detail\":"
                            "\"paused\"}"),
                          400, &p);
    CHECK(!tf_acme_problem_is_paused(&p, NULL));
    tf_acme_problem_clear(&p);
}

static const char dir_ok[] =
    "{\"keyChange\":\"https://127.0.0.1:14000/rollover-account-key\",\"meta\":{"
    "\"externalAccountRequired\":false,\"termsOfService\":\"data:text/plain,Do%20what\","
    "\"profiles\":{\"classic\":\"The profile you know\",\"shortlived\":\"6 days\"}},"
    "\"newAccount\":\"https://127.0.0.1:14000/sign-me-up\",\"newNonce\":"
    "\"https://127.0.0.1:14000/nonce-plz\",\"newOrder\":\"https://127.0.0.1:14000/order-plz\","
    "\"renewalInfo\":\"https://127.0.0.1:14000/draft-ietf-acme-ari-03/renewalInfo\","
    "\"revokeCert\":\"https://127.0.0.1:14000/revoke-cert\"}";

static void test_directory(void)
{
    struct tf_acme_directory d;
    char err[256];
    CHECK_EQ_INT(tf_acme_parse_directory(P(dir_ok), &d, err, sizeof(err)), 0);
    CHECK_EQ_STR(d.new_nonce, "https://127.0.0.1:14000/nonce-plz");
    CHECK_EQ_STR(d.new_order, "https://127.0.0.1:14000/order-plz");
    CHECK_EQ_STR(d.renewal_info, "https://127.0.0.1:14000/draft-ietf-acme-ari-03/renewalInfo");
    CHECK_EQ_INT(d.n_profiles, 2);
    if (d.n_profiles == 2) {
        CHECK_EQ_STR(d.profiles[0], "classic");
        CHECK_EQ_STR(d.profiles[1], "shortlived");
    }
    CHECK(!d.eab_required);
    tf_acme_directory_clear(&d);

    const char *bad[] = {
        "{\"newNonce\":\"https://x/n\",\"newAccount\":\"https://x/a\"}",
        "{\"newNonce\":5,\"newAccount\":\"https://x/a\",\"newOrder\":\"https://x/o\"}",
        "{\"newNonce\":\"ftp://x/n\",\"newAccount\":\"https://x/a\",\"newOrder\":\"https://x/o\"}",
        "{\"newNonce\":\"https://x/n\",\"newAccount\":\"https://x/a\",\"newOrder\":\"https://x/o\","
        "\"renewalInfo\":[]}",
        "{\"newNonce\":\"https://x/n\",\"newAccount\":\"https://x/a\",\"newOrder\":\"https://x/o\","
        "\"meta\":\"no\"}",
        "[1,2]", "{\"newNonce\":\"https://x/n\",", "", "null",
    };
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        CHECK_EQ_INT(tf_acme_parse_directory(P(bad[i]), &d, err, sizeof(err)), TF_EINVAL);
        CHECK(strncmp(err, "directory: ", 11) == 0);
        tf_acme_directory_clear(&d);
    }
    CHECK_EQ_INT(tf_acme_parse_directory(P(bad[0]), &d, err, sizeof(err)), TF_EINVAL);
    CHECK_EQ_STR(err, "directory: \"newOrder\" missing or not a string");
    tf_acme_directory_clear(&d);
    CHECK_EQ_INT(tf_acme_parse_directory(P(bad[2]), &d, err, sizeof(err)), TF_EINVAL);
    CHECK_EQ_STR(err, "directory: \"newNonce\" is not an http(s) URL");
    tf_acme_directory_clear(&d);
    /* Profiles of the wrong type are ignored, not fatal. */
    CHECK_EQ_INT(tf_acme_parse_directory(P("{\"newNonce\":\"https://x/n\",\"newAccount\":"
                                           "\"https://x/a\",\"newOrder\":\"https://x/o\","
                                           "\"meta\":{\"profiles\":[\"a\"]}}"),
                                         &d, err, sizeof(err)),
                 0);
    CHECK_EQ_INT(d.n_profiles, 0);
    CHECK(d.renewal_info == NULL);
    tf_acme_directory_clear(&d);
}

static void test_order(void)
{
    struct tf_acme_order_doc o;
    char err[256];
    CHECK_EQ_INT(tf_acme_parse_order(P("{\"status\":\"pending\",\"expires\":\"2030-01-01T00:00:00Z\","
                                       "\"identifiers\":[{\"type\":\"dns\",\"value\":\"a.b\"}],"
                                       "\"finalize\":\"https://x/finalize/1\",\"authorizations\":"
                                       "[\"https://x/authz/1\",\"https://x/authz/2\"]}"),
                                     &o, err, sizeof(err)),
                 0);
    CHECK_EQ_INT(o.status, TF_ACME_ST_PENDING);
    CHECK_EQ_INT(o.n_authz, 2);
    CHECK_EQ_STR(o.authorizations[1], "https://x/authz/2");
    CHECK(o.certificate == NULL && o.error == NULL);
    tf_acme_order_doc_clear(&o);

    CHECK_EQ_INT(tf_acme_parse_order(P("{\"status\":\"invalid\",\"finalize\":\"https://x/f\","
                                       "\"authorizations\":[\"https://x/z\"],\"error\":{\"type\":"
                                       "\"urn:ietf:params:acme:error:unauthorized\",\"detail\":"
                                       "\"no\"}}"),
                                     &o, err, sizeof(err)),
                 0);
    CHECK_EQ_INT(o.status, TF_ACME_ST_INVALID);
    CHECK(o.error && tf_acme_problem_is(o.error, "unauthorized"));
    tf_acme_order_doc_clear(&o);

    struct {
        const char *doc, *msg;
    } bad[] = {
        {"{\"status\":7,\"finalize\":\"https://x/f\",\"authorizations\":[\"https://x/z\"]}",
         "order: \"status\" missing or not a string"},
        {"{\"status\":\"weird\",\"finalize\":\"https://x/f\",\"authorizations\":[\"https://x/z\"]}",
         "order: unknown status \"weird\""},
        /* A status quoting control bytes still gives a one-line reason (fuzz_acme_json). */
        {"{\"status\":\"pe\\nx\\u0001\",\"finalize\":\"https://x/f\",\"authorizations\":[]}",
         "order: unknown status \"pe?x?\""},
        {"{\"status\":\"ready\",\"authorizations\":[\"https://x/z\"]}",
         "order: \"finalize\" missing or not a string"},
        {"{\"status\":\"ready\",\"finalize\":\"https://x/f\",\"authorizations\":\"https://x/z\"}",
         "order: \"authorizations\" missing or not an array"},
        {"{\"status\":\"ready\",\"finalize\":\"https://x/f\",\"authorizations\":[1]}",
         "order: \"authorizations\" holds a non-URL entry"},
        {"{\"status\":\"ready\",\"finalize\":\"https://x/f\",\"authorizations\":[]}",
         "order: \"authorizations\" has 0 entries"},
        {"{\"status\":\"valid\",\"finalize\":\"https://x/f\",\"authorizations\":[\"https://x/z\"]}",
         "order: valid but no \"certificate\" URL"},
        {"{\"status\":\"valid\",\"finalize\":\"https://x/f\",\"authorizations\":[\"https://x/z\"],"
         "\"certificate\":{}}",
         "order: \"certificate\" missing or not a string"},
        {"{\"status\":\"valid\",\"fin", "order: not valid JSON"},
        {"\"x\"", "order: not a JSON object"},
    };
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        CHECK_EQ_INT(tf_acme_parse_order(P(bad[i].doc), &o, err, sizeof(err)), TF_EINVAL);
        CHECK_EQ_STR(err, bad[i].msg);
        tf_acme_order_doc_clear(&o);
    }
}

static void test_authz(void)
{
    struct tf_acme_authz_doc z;
    char err[256];
    const char *ok = "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a.b\"},"
                     "\"challenges\":[{\"type\":\"http-01\",\"url\":\"https://x/c/1\",\"token\":"
                     "\"AAAAAAAAAAAAAAAAAAAAAAAA\",\"status\":\"pending\"},{\"type\":"
                     "\"tls-alpn-01\",\"url\":\"https://x/c/2\",\"token\":"
                     "\"Zm9vYmFyYmF6cXV4cXV1eA_-\",\"status\":\"pending\"}]}";
    CHECK_EQ_INT(tf_acme_parse_authz(P(ok), &z, err, sizeof(err)), 0);
    CHECK_EQ_STR(z.ident_value, "a.b");
    CHECK_EQ_INT(z.n_challenges, 2);
    const struct tf_acme_challenge_doc *c = tf_acme_authz_find(&z, "tls-alpn-01");
    CHECK(c != NULL);
    if (c) {
        CHECK_EQ_STR(c->url, "https://x/c/2");
        CHECK_EQ_STR(c->token, "Zm9vYmFyYmF6cXV4cXV1eA_-");
    }
    CHECK(tf_acme_authz_find(&z, "dns-01") == NULL);
    tf_acme_authz_doc_clear(&z);

    struct {
        const char *doc, *msg;
    } bad[] = {
        {"{\"status\":\"pending\",\"challenges\":[]}",
         "authorization: \"identifier\" missing or malformed"},
        {"{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"}}",
         "authorization: \"challenges\" missing or not an array"},
        {"{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},\"challenges\":"
         "[{\"type\":\"tls-alpn-01\",\"url\":\"https://x/c\",\"status\":\"pending\",\"token\":"
         "\"../../etc/passwd/../../../x\"}]}",
         "challenge: \"token\" is not a base64url string"},
        {"{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},\"challenges\":"
         "[{\"type\":\"tls-alpn-01\",\"status\":\"pending\"}]}",
         "challenge: \"url\" missing or not a string"},
        {"{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},\"challenges\":"
         "[17]}",
         "authorization: challenge is not an object"},
        {"{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},\"challenges\":"
         "[{\"type\":\"tls-alpn-01\",\"url\":\"https://x/c\",\"status\":\"pending\",\"token\":1}]}",
         "challenge: \"token\" is not a base64url string"},
    };
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        CHECK_EQ_INT(tf_acme_parse_authz(P(bad[i].doc), &z, err, sizeof(err)), TF_EINVAL);
        CHECK_EQ_STR(err, bad[i].msg);
        tf_acme_authz_doc_clear(&z);
    }
}

static void test_misc(void)
{
    enum tf_acme_status st;
    char err[128];
    CHECK_EQ_INT(tf_acme_parse_account_status(P("{\"status\":\"valid\",\"orders\":\"x\"}"), &st,
                                              err, sizeof(err)),
                 0);
    CHECK_EQ_INT(st, TF_ACME_ST_VALID);
    CHECK_EQ_INT(tf_acme_parse_account_status(P("{\"status\":null}"), &st, err, sizeof(err)),
                 TF_EINVAL);
    CHECK(tf_acme_nonce_valid("abc-_09XYZ"));
    CHECK(!tf_acme_nonce_valid(""));
    CHECK(!tf_acme_nonce_valid("abc def"));
    CHECK(!tf_acme_nonce_valid("abc=="));
    CHECK_EQ_STR(tf_acme_status_name(TF_ACME_ST_PROCESSING), "processing");

    /* A body over the 1 MiB cap is refused before parsing. */
    size_t n = 2 * 1024 * 1024;
    char *big = tf_malloc(n);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    struct tf_acme_order_doc o;
    CHECK_EQ_INT(tf_acme_parse_order(big, n, &o, err, sizeof(err)), TF_EINVAL);
    CHECK(strstr(err, "too large") != NULL);
    tf_acme_order_doc_clear(&o);
    free(big);
}

int main(void)
{
    TF_TEST_RUN(test_problem);
    TF_TEST_RUN(test_paused);
    TF_TEST_RUN(test_directory);
    TF_TEST_RUN(test_order);
    TF_TEST_RUN(test_authz);
    TF_TEST_RUN(test_misc);
    return TF_TEST_DONE();
}
