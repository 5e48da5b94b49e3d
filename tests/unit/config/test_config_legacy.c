/*
 * test_config_legacy.c: the legacy-backend options that test_config.c (near its size cap) does
 * not cover: --proxy-from and --trusted-xff (CIDR lists through flags, env and JSON, with
 * the usual precedence), --forwarded, --hsts (header-value validation), and the CIDR parser
 * and matcher they use (prefix edges, IPv4-mapped IPv6, bad input). Writes only its own
 * temp file.
 */
#include "tlsfront/base/cidr.h"
#include "tlsfront/config/config.h"
#include "tf_test.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct sockaddr_storage sa(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        CHECK(inet_pton(AF_INET6, ip, &a->sin6_addr) == 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        CHECK(inet_pton(AF_INET, ip, &a->sin_addr) == 1);
    }
    return ss;
}

static bool in(const char *cidr, const char *ip)
{
    struct tf_cidr c;
    CHECK_EQ_INT(tf_cidr_parse(cidr, &c), 0);
    struct sockaddr_storage ss = sa(ip);
    return tf_cidr_match(&c, 1, (struct sockaddr *)&ss);
}

static void test_cidr_parse(void)
{
    struct tf_cidr c;
    CHECK_EQ_INT(tf_cidr_parse("10.0.0.0/8", &c), 0);
    CHECK_EQ_INT(c.family, AF_INET);
    CHECK_EQ_INT(c.prefix, 8);
    CHECK_EQ_INT(tf_cidr_parse("192.0.2.7", &c), 0);
    CHECK_EQ_INT(c.prefix, 32);
    CHECK_EQ_INT(tf_cidr_parse("2001:db8::/32", &c), 0);
    CHECK_EQ_INT(c.family, AF_INET6);
    CHECK_EQ_INT(tf_cidr_parse("::/0", &c), 0);
    CHECK_EQ_INT(tf_cidr_parse("0.0.0.0/0", &c), 0);
    const char *bad[] = {"", "/8", "10.0.0.1/8", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/-1",
                         "10.0.0.0/8x", "10.0.0.0/0008", "example.com", "10.0.0.0 /8", "[::1]",
                         "1.2.3.4.5", "2001:db8::1/64"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT(tf_cidr_parse(bad[i], &c), TF_EINVAL);
}

static void test_cidr_match(void)
{
    CHECK(in("10.0.0.0/8", "10.255.1.2"));
    CHECK(!in("10.0.0.0/8", "11.0.0.0"));
    CHECK(in("192.0.2.128/25", "192.0.2.200"));
    CHECK(!in("192.0.2.128/25", "192.0.2.127"));
    CHECK(in("127.0.0.1", "127.0.0.1"));
    CHECK(!in("127.0.0.1", "127.0.0.2"));
    CHECK(in("0.0.0.0/0", "203.0.113.9"));
    CHECK(!in("0.0.0.0/0", "2001:db8::1"));
    CHECK(in("2001:db8::/32", "2001:db8:ffff::1"));
    CHECK(!in("2001:db8::/33", "2001:db8:8000::1"));
    CHECK(in("::1", "::1"));
    /* A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d. */
    CHECK(in("127.0.0.0/8", "::ffff:127.0.0.2"));
    CHECK(in("::ffff:0:0/96", "::ffff:127.0.0.2"));
    CHECK(!in("10.0.0.0/8", "::ffff:127.0.0.2"));
    struct tf_cidr list[2];
    CHECK_EQ_INT(tf_cidr_parse("10.0.0.0/8", &list[0]), 0);
    CHECK_EQ_INT(tf_cidr_parse("::1", &list[1]), 0);
    struct sockaddr_storage ss = sa("::1");
    CHECK(tf_cidr_match(list, 2, (struct sockaddr *)&ss));
    CHECK(!tf_cidr_match(list, 0, (struct sockaddr *)&ss));
}

static struct tf_config *load(char **env, int argc, char **argv, char *err, size_t errlen)
{
    struct tf_config_result res;
    memset(&res, 0, sizeof res);
    int rc = tf_config_load(argc, argv, env, &res);
    snprintf(err, errlen, "%s", res.err);
    return rc == 0 ? res.cfg : NULL;
}

static void test_options(void)
{
    char err[512];
    char *none[] = {"TLSFRONT_BACKEND=127.0.0.1:1", NULL};
    char *a0[] = {"tlsfront", NULL};
    struct tf_config *c = load(none, 1, a0, err, sizeof err);
    CHECK(c != NULL);
    if (c) {
        CHECK_EQ_INT(c->n_proxy_from, 0);
        CHECK_EQ_INT(c->n_trusted_xff, 0);
        CHECK(!c->forwarded);
        CHECK(c->hsts == NULL);
        tf_config_unref(c);
    }
    char *a1[] = {"tlsfront", "--proxy-from", "10.0.0.0/8", "--proxy-from", "::1",
                  "--trusted-xff", "192.0.2.0/24", "--forwarded", "on", "--hsts",
                  "max-age=31536000; includeSubDomains", NULL};
    char *env1[] = {"TLSFRONT_TRUSTED_XFF=127.0.0.1 ::1", "TLSFRONT_BACKEND=127.0.0.1:1", NULL};
    c = load(env1, 11, a1, err, sizeof err);
    CHECK(c != NULL);
    if (c) {
        CHECK_EQ_INT(c->n_proxy_from, 2);
        CHECK_EQ_INT(c->proxy_from[1].family, AF_INET6);
        CHECK_EQ_INT(c->n_trusted_xff, 1); /* the flag replaces the env list */
        CHECK_EQ_INT(c->trusted_xff[0].prefix, 24);
        CHECK(c->forwarded);
        CHECK_EQ_STR(c->hsts, "max-age=31536000; includeSubDomains");
        tf_config_unref(c);
    }
    c = load(env1, 1, a0, err, sizeof err);
    CHECK(c != NULL);
    if (c) {
        CHECK_EQ_INT(c->n_trusted_xff, 2);
        tf_config_unref(c);
    }
}

static void test_json_and_errors(void)
{
    char err[512], path[512];
    const char *json = "{\"proxy_from\": [\"10.1.0.0/16\"], \"trusted_xff\": [\"::/0\", "
                       "\"0.0.0.0/0\"], \"forwarded\": \"yes\", \"hsts\": \"max-age=60\"}";
    CHECK(tf_test_tmpfile(json, path, sizeof path) == 0);
    char *none[] = {"TLSFRONT_BACKEND=127.0.0.1:1", NULL};
    char *a[] = {"tlsfront", "-c", path, NULL};
    struct tf_config *c = load(none, 3, a, err, sizeof err);
    CHECK(c != NULL);
    if (c) {
        CHECK_EQ_INT(c->n_proxy_from, 1);
        CHECK_EQ_INT(c->n_trusted_xff, 2);
        CHECK(c->forwarded);
        CHECK_EQ_STR(c->hsts, "max-age=60");
        tf_config_unref(c);
    } else {
        fprintf(stderr, "json: %s\n", err);
    }
    unlink(path);
    char *b1[] = {"tlsfront", "--proxy-from", "10.0.0.1/8", NULL};
    CHECK(load(none, 3, b1, err, sizeof err) == NULL);
    CHECK(strstr(err, "--proxy-from") != NULL);
    char *b2[] = {"tlsfront", "--trusted-xff", "lb.example", NULL};
    CHECK(load(none, 3, b2, err, sizeof err) == NULL);
    CHECK(strstr(err, "--trusted-xff") != NULL);
    char *b3[] = {"tlsfront", "--hsts", "max-age=1\r\nSet-Cookie: x=1", NULL};
    CHECK(load(none, 3, b3, err, sizeof err) == NULL);
    CHECK(strstr(err, "--hsts") != NULL);
    char *b4[] = {"tlsfront", "--forwarded", "maybe", NULL};
    CHECK(load(none, 3, b4, err, sizeof err) == NULL);
    CHECK(strstr(err, "--forwarded") != NULL);
}

int main(void)
{
    TF_TEST_RUN(test_cidr_parse);
    TF_TEST_RUN(test_cidr_match);
    TF_TEST_RUN(test_options);
    TF_TEST_RUN(test_json_and_errors);
    return TF_TEST_DONE();
}
