/*
 * test_route.c: host name normalisation and validation (name.c), one-label wildcard
 * matching, and backend selection by SNI (route.c): exact beats wildcard beats default.
 */
#include "tlsfront/config/config.h"
#include "tlsfront/base/name.h"
#include "tlsfront/config/route.h"
#include "tf_test.h"

#include <string.h>

static int norm(const char *in, char *out)
{
    return tf_name_normalize(in, strlen(in), out);
}

static void test_normalize(void)
{
    char out[TF_NAME_MAX + 1];
    CHECK_EQ_INT(norm("Example.COM", out), 0);
    CHECK_EQ_STR(out, "example.com");
    CHECK_EQ_INT(norm("a.example.com.", out), 0);
    CHECK_EQ_STR(out, "a.example.com");
    CHECK_EQ_INT(norm("x-1.b2.example", out), 0);
    const char *bad[] = {
        "", ".", "example..com", ".example.com", "example.com..", "localhost", "a_b.example.com",
        "-a.example.com", "a-.example.com", "1.2.3.4", "10.0.0.1.", "::1", "[::1]",
        "a b.example.com", "exa\nmple.com", "*.example.com", "a.example.123",
    };
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        int r = norm(bad[i], out);
        if (r != TF_EINVAL)
            fprintf(stderr, "accepted bad name \"%s\"\n", bad[i]);
        CHECK_EQ_INT(r, TF_EINVAL);
        CHECK_EQ_STR(out, "");
    }
    /* Length limits: a 63-byte label is fine, 64 is not; 253 bytes in all. */
    char label[80], name[300];
    memset(label, 'a', 63);
    label[63] = '\0';
    snprintf(name, sizeof name, "%s.example.com", label);
    CHECK_EQ_INT(norm(name, out), 0);
    memset(label, 'a', 64);
    label[64] = '\0';
    snprintf(name, sizeof name, "%s.example.com", label);
    CHECK_EQ_INT(norm(name, out), TF_EINVAL);
    char longname[300] = "";
    while (strlen(longname) < 251) /* 260 + "com": over 253 */
        strcat(longname, "abcdefghi.");
    strcat(longname, "com");
    CHECK_EQ_INT(norm(longname, out), TF_EINVAL);
    /* Embedded NUL: the length given counts, the NUL is not a valid character. */
    CHECK_EQ_INT(tf_name_normalize("a.example.com\0x", 15, out), TF_EINVAL);
}

static void test_match(void)
{
    CHECK(tf_name_match("*.example.com", "a.example.com"));
    CHECK(!tf_name_match("*.example.com", "a.b.example.com"));
    CHECK(!tf_name_match("*.example.com", "example.com"));
    CHECK(!tf_name_match("*.example.com", "aexample.com"));
    CHECK(tf_name_match("a.example.com", "a.example.com"));
    CHECK(!tf_name_match("a.example.com", "b.example.com"));
    CHECK(tf_name_pattern_valid("*.example.com"));
    CHECK(tf_name_pattern_valid("a.example.com"));
    CHECK(!tf_name_pattern_valid("*.*.example.com"));
    CHECK(!tf_name_pattern_valid("a.*.example.com"));
    CHECK(!tf_name_pattern_valid("*example.com"));
    CHECK(!tf_name_pattern_valid("A.example.com"));
    CHECK(!tf_name_pattern_valid("*."));
}

static void test_select(void)
{
    struct tf_backend def = {.host = "127.0.0.1", .port = 8080};
    struct tf_route routes[3];
    memset(routes, 0, sizeof routes);
    routes[0].pattern = "*.example.com";
    routes[0].backend.host = "wild";
    routes[1].pattern = "api.example.com";
    routes[1].backend.host = "api";
    routes[1].alpn[0] = "h2";
    routes[1].n_alpn = 1;
    routes[2].pattern = "*.other.test";
    routes[2].backend.host = "other";
    struct tf_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.backend = &def;
    cfg.routes = routes;
    cfg.n_routes = 3;
    cfg.alpn[0] = "http/1.1";
    cfg.n_alpn = 1;

    struct tf_route_choice ch;
    tf_route_select(&cfg, "api.example.com", &ch); /* exact beats an earlier wildcard */
    CHECK_EQ_STR(ch.backend->host, "api");
    CHECK_EQ_STR(ch.pattern, "api.example.com");
    CHECK_EQ_INT(ch.n_alpn, 1);
    CHECK_EQ_STR(ch.alpn[0], "h2");
    tf_route_select(&cfg, "www.example.com", &ch);
    CHECK_EQ_STR(ch.backend->host, "wild");
    tf_route_select(&cfg, "a.b.example.com", &ch); /* two labels: no wildcard, default */
    CHECK(ch.backend == &def);
    CHECK_EQ_STR(ch.pattern, "default");
    CHECK_EQ_STR(ch.alpn[0], "http/1.1");
    tf_route_select(&cfg, NULL, &ch); /* no SNI: default */
    CHECK(ch.backend == &def);
    tf_route_select(&cfg, "x.other.test", &ch);
    CHECK_EQ_STR(ch.backend->host, "other");
    cfg.backend = NULL; /* no default backend: no route */
    tf_route_select(&cfg, "nobody.test", &ch);
    CHECK(ch.backend == NULL);
}

int main(void)
{
    TF_TEST_RUN(test_normalize);
    TF_TEST_RUN(test_match);
    TF_TEST_RUN(test_select);
    return TF_TEST_DONE();
}
