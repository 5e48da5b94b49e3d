/*
 * test_admin_api.c: the admin API's pure checks: routes (paths, methods, 404/405 and the
 * Allow list), names from paths and bodies (case, trailing dot, wildcards, hostile bytes,
 * lengths), JSON bodies (types, unknown members, truncation, revoke reasons), the bearer
 * token comparison and the token file (blanks, newline, short, long, bad characters).
 */
#include "admin_api_int.h"
#include "tlsfront/acme/acme.h"
#include "tlsfront/base/common.h"
#include "tf_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_routes(void)
{
    struct tf_admin_route r;
    CHECK_EQ_INT(tf_admin_route("GET", "/healthz", &r), 0);
    CHECK(r.kind == TF_ADMIN_R_HEALTHZ && r.read);
    CHECK_EQ_INT(tf_admin_route("HEAD", "/metrics", &r), 0);
    CHECK_EQ_INT(tf_admin_route("POST", "/metrics", &r), 405);
    CHECK_EQ_STR(r.allow, "GET, HEAD");
    CHECK_EQ_INT(tf_admin_route("GET", "/certs", &r), 0);
    CHECK(r.kind == TF_ADMIN_R_CERTS);
    CHECK_EQ_INT(tf_admin_route("GET", "/certs/a.example.com", &r), 0);
    CHECK(r.kind == TF_ADMIN_R_ACTION && r.op == TF_ADMIN_OP_CERT && r.read);
    CHECK(r.name_len == 13 && strncmp(r.name, "a.example.com", 13) == 0);
    CHECK_EQ_INT(tf_admin_route("DELETE", "/certs/a.example.com", &r), 0);
    CHECK(r.op == TF_ADMIN_OP_FORGET && !r.read);
    CHECK_EQ_INT(tf_admin_route("PUT", "/certs/a.example.com", &r), 405);
    CHECK_EQ_STR(r.allow, "GET, HEAD, DELETE");
    CHECK_EQ_INT(tf_admin_route("POST", "/certs/a.example.com/renew", &r), 0);
    CHECK(r.op == TF_ADMIN_OP_RENEW && !r.read && r.name_len == 13);
    CHECK_EQ_INT(tf_admin_route("POST", "/certs/a.example.com/unpause", &r), 0);
    CHECK(r.op == TF_ADMIN_OP_UNPAUSE);
    CHECK_EQ_INT(tf_admin_route("POST", "/certs/a.example.com/revoke", &r), 0);
    CHECK(r.op == TF_ADMIN_OP_REVOKE);
    CHECK_EQ_INT(tf_admin_route("GET", "/certs/a.example.com/revoke", &r), 405);
    CHECK_EQ_STR(r.allow, "POST");
    CHECK_EQ_INT(tf_admin_route("POST", "/ask-cache/purge", &r), 0);
    CHECK(r.op == TF_ADMIN_OP_ASK_PURGE);
    CHECK_EQ_INT(tf_admin_route("DELETE", "/ask-cache/purge", &r), 405);
    const char *none[] = {"/", "", "/certs//renew", "/certs/a.example.com/", "/certs/a/b/renew",
                          "/certs/a.example.com/renew/", "/certs/a.example.com/RENEW",
                          "/ask-cache", "/ask-cache/purge/x", "/healthz/", "/certsx"};
    for (size_t i = 0; i < TF_ARRAY_LEN(none); i++) {
        int st = tf_admin_route("POST", none[i], &r);
        if (st != 404)
            fprintf(stderr, "route %s: %d\n", none[i], st);
        CHECK_EQ_INT(st, 404);
    }
}

static void test_names(void)
{
    char out[TF_NAME_MAX + 1];
    CHECK_EQ_INT(tf_admin_name("A.Example.COM.", 14, out), 0);
    CHECK_EQ_STR(out, "a.example.com");
    CHECK_EQ_INT(tf_admin_name("*.example.com", 13, out), 0);
    CHECK_EQ_STR(out, "*.example.com");
    const char *bad[] = {"", ".", "example", "a..b.com", "-a.example.com", "a_b.example.com",
                         "a.example.com..", "*.*.example.com", "a.*.example.com", "%2e%2e",
                         "a b.example.com", "127.0.0.1", "a.example.com/x", "*"};
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        int rc = tf_admin_name(bad[i], strlen(bad[i]), out);
        if (rc == 0)
            fprintf(stderr, "name \"%s\" accepted\n", bad[i]);
        CHECK_EQ_INT(rc, TF_EINVAL);
        CHECK_EQ_STR(out, "");
    }
    CHECK_EQ_INT(tf_admin_name("a\0b.example.com", 15, out), TF_EINVAL);
    char big[400];
    memset(big, 'a', sizeof big);
    for (size_t i = 50; i < sizeof big; i += 51)
        big[i] = '.';
    big[sizeof big - 1] = 'm';
    CHECK_EQ_INT(tf_admin_name(big, 254, out), TF_EINVAL);
    CHECK_EQ_INT(tf_admin_name(big, sizeof big, out), TF_EINVAL);
    CHECK_EQ_INT(tf_admin_name("\xff.example.com", 13, out), TF_EINVAL);
}

static int parse(const char *path, const char *body, struct tf_admin_action *act)
{
    struct tf_admin_route r;
    const char *method = strcmp(path, "/certs/x.example.com") == 0 ? "DELETE" : "POST";
    if (tf_admin_route(method, path, &r) != 0)
        return -1;
    char err[160] = "";
    int st = tf_admin_parse_action(&r, body, body ? strlen(body) : 0, act, err, sizeof err);
    CHECK(st == 0 || err[0]);
    return st;
}

static void test_bodies(void)
{
    struct tf_admin_action act;
    CHECK_EQ_INT(parse("/certs/X.Example.com/revoke", NULL, &act), 0);
    CHECK(act.op == TF_ADMIN_OP_REVOKE && act.reason == 0);
    CHECK_EQ_STR(act.name, "x.example.com");
    CHECK_EQ_INT(parse("/certs/x.example.com/revoke", "{\"reason\":\"keyCompromise\"}", &act), 0);
    CHECK_EQ_INT(act.reason, 1);
    CHECK_EQ_INT(parse("/certs/x.example.com/revoke", " {} ", &act), 0);
    CHECK_EQ_INT(parse("/certs/x.example.com/revoke", "{\"reason\":\"certificateHold\"}", &act),
                 400);
    CHECK_EQ_INT(parse("/certs/x.example.com/revoke", "{\"reason\":4}", &act), 400);
    CHECK_EQ_INT(parse("/certs/x.example.com/revoke", "{\"reason\":null}", &act), 400);
    CHECK_EQ_INT(parse("/certs/x.example.com/revoke", "{\"why\":\"superseded\"}", &act), 400);
    CHECK_EQ_INT(parse("/certs/x.example.com/revoke", "\"superseded\"", &act), 400);
    CHECK_EQ_INT(parse("/certs/x.example.com/revoke", "{\"reason\":\"superseded\"", &act), 400);
    CHECK_EQ_INT(parse("/certs/x.example.com/renew", "{}", &act), 0);
    CHECK_EQ_INT(parse("/certs/x.example.com/renew", "{\"force\":true}", &act), 400);
    CHECK_EQ_INT(parse("/certs/x.example.com/renew", "garbage", &act), 400);
    CHECK_EQ_INT(parse("/certs/x.example.com/renew", "{} {}", &act), 400);
    CHECK_EQ_INT(parse("/certs/x.example.com/renew", "{}x", &act), 400);
    CHECK_EQ_INT(parse("/certs/x.example.com/renew", "{}\r\n", &act), 0);
    CHECK_EQ_INT(parse("/certs/bad_name/renew", NULL, &act), 400);
    CHECK_EQ_INT(parse("/certs/x.example.com", NULL, &act), 0);
    CHECK(act.op == TF_ADMIN_OP_FORGET);
    CHECK_EQ_INT(parse("/ask-cache/purge", NULL, &act), 0);
    CHECK_EQ_STR(act.name, "");
    CHECK_EQ_INT(parse("/ask-cache/purge", "{\"name\":\"Y.example.com\"}", &act), 0);
    CHECK_EQ_STR(act.name, "y.example.com");
    CHECK_EQ_INT(parse("/ask-cache/purge", "{\"name\":\"y..com\"}", &act), 400);
    CHECK_EQ_INT(parse("/ask-cache/purge", "{\"name\":[\"y.example.com\"]}", &act), 400);
    CHECK_EQ_INT(parse("/ask-cache/purge", "[]", &act), 400);
    CHECK_EQ_INT(parse("/ask-cache/purge", "{\"name\":\"a.example.com\",\"x\":1}", &act), 400);
    /* Deep nesting and a NUL inside the declared length are refused, not crashed on. */
    char deep[3000];
    memset(deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = '\0';
    CHECK_EQ_INT(parse("/ask-cache/purge", deep, &act), 400);
    struct tf_admin_route r;
    tf_admin_route("POST", "/ask-cache/purge", &r);
    char err[160];
    CHECK_EQ_INT(tf_admin_parse_action(&r, "{}\0{\"x\":1}", 10, &act, err, sizeof err), 400);
}

static void test_reasons(void)
{
    CHECK_EQ_INT(tf_acme_revoke_reason("unspecified"), 0);
    CHECK_EQ_INT(tf_acme_revoke_reason("keyCompromise"), 1);
    CHECK_EQ_INT(tf_acme_revoke_reason("superseded"), 4);
    CHECK_EQ_INT(tf_acme_revoke_reason("cessationOfOperation"), 5);
    CHECK_EQ_INT(tf_acme_revoke_reason("keycompromise"), TF_EINVAL);
    CHECK_EQ_INT(tf_acme_revoke_reason("cACompromise"), TF_EINVAL);
    CHECK_EQ_INT(tf_acme_revoke_reason(NULL), TF_EINVAL);
}

static void test_token(void)
{
    const char *t = "0123456789abcdef-token";
    const char *ok = "Bearer 0123456789abcdef-token";
    CHECK(tf_admin_token_ok(t, ok, strlen(ok)));
    CHECK(tf_admin_token_ok(t, "bearer 0123456789abcdef-token", strlen(ok)));
    CHECK(!tf_admin_token_ok(t, ok, strlen(ok) - 1));
    CHECK(!tf_admin_token_ok(t, "Bearer 0123456789abcdef-tokeN", strlen(ok)));
    CHECK(!tf_admin_token_ok(t, "Bearer 0123456789abcdef-token2", strlen(ok) + 1));
    CHECK(!tf_admin_token_ok(t, "Basic 0123456789abcdef-token", strlen(ok) - 1));
    CHECK(!tf_admin_token_ok(t, "Bearer ", 7));
    CHECK(!tf_admin_token_ok(t, "Bearer", 6));
    CHECK(!tf_admin_token_ok(t, NULL, 0));
    CHECK(!tf_admin_token_ok(NULL, ok, strlen(ok)));
    CHECK(!tf_admin_token_ok(t, "0123456789abcdef-token", 22));
}

static void token_file(const char *text, int want, const char *want_token)
{
    char path[512], err[600] = "";
    char *tok = NULL;
    CHECK_EQ_INT(tf_test_tmpfile(text, path, sizeof path), 0);
    int rc = tf_admin_token_read(path, &tok, err, sizeof err);
    CHECK_EQ_INT(rc, want);
    if (want == 0)
        CHECK_EQ_STR(tok, want_token);
    else
        CHECK(tok == NULL && strstr(err, path) != NULL);
    free(tok);
    unlink(path);
}

static void test_token_file(void)
{
    token_file("0123456789abcdef\n", 0, "0123456789abcdef");
    token_file("  0123456789abcdef+/=~._-  \r\nsecond line ignored\n", 0,
               "0123456789abcdef+/=~._-");
    token_file("short\n", TF_EINVAL, NULL);
    token_file("\n0123456789abcdef\n", TF_EINVAL, NULL);
    token_file("0123456789 abcdef\n", TF_EINVAL, NULL);
    token_file("0123456789abcdef\"\n", TF_EINVAL, NULL);
    char big[1100];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    token_file(big, TF_EINVAL, NULL);
    big[1024] = '\0';
    token_file(big, 0, big);
    char *tok = NULL, err[200];
    CHECK_EQ_INT(tf_admin_token_read("/nonexistent/token", &tok, err, sizeof err), TF_EINVAL);
    CHECK(tok == NULL);
}

static void test_json_error(void)
{
    char *e = tf_admin_json_error("bad \"name\"\n");
    CHECK_EQ_STR(e, "{\"error\":\"bad \\\"name\\\"\\n\"}\n");
    free(e);
}

int main(void)
{
    TF_TEST_RUN(test_routes);
    TF_TEST_RUN(test_names);
    TF_TEST_RUN(test_bodies);
    TF_TEST_RUN(test_reasons);
    TF_TEST_RUN(test_token);
    TF_TEST_RUN(test_token_file);
    TF_TEST_RUN(test_json_error);
    return TF_TEST_DONE();
}
