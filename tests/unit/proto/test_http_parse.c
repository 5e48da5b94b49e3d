/*
 * test_http_parse.c: the HTTP response parser fed in every split (whole, byte by byte),
 * fixed-length, chunked (extensions, trailers), close-delimited, HEAD, 1xx/204/304, caps and
 * garbage; URL splitting; Retry-After in all its forms. Pure logic, no I/O.
 */
#include "tlsfront/base/common.h"
#include "tlsfront/proto/http_parse.h"
#include "tf_test.h"

#include <stdlib.h>
#include <string.h>

#define MIB (1024 * 1024)

/* Feeds s in pieces of `step` bytes (0 = all at once); returns the first error or 0. */
static int feed(struct tf_http_parser *p, const char *s, size_t len, size_t step)
{
    if (step == 0)
        step = len;
    for (size_t off = 0; off < len; off += step) {
        int r = tf_http_parser_feed(p, s + off, TF_MIN(step, len - off));
        if (r < 0)
            return r;
    }
    return 0;
}

/* Parses a complete response in several splits and checks status, body and keep-alive. */
static void check_response(const char *raw, bool head, int status, const char *body,
                           bool keep_alive)
{
    static const size_t steps[] = {0, 1, 2, 3, 7};
    for (size_t i = 0; i < TF_ARRAY_LEN(steps); i++) {
        struct tf_http_parser *p = tf_http_parser_new(MIB, head);
        CHECK_EQ_INT(feed(p, raw, strlen(raw), steps[i]), 0);
        CHECK(tf_http_parser_done(p));
        bool ka = !keep_alive;
        const struct tf_http_response *r = tf_http_parser_response(p, &ka);
        CHECK(r != NULL);
        if (r) {
            CHECK_EQ_INT(r->status, status);
            CHECK_EQ_INT(r->body_len, strlen(body));
            CHECK_EQ_STR(r->body, body);
        }
        CHECK_EQ_INT(ka, keep_alive);
        tf_http_parser_free(p);
    }
}

static void test_fixed_length_byte_by_byte(void)
{
    const char *raw = "HTTP/1.1 201 Created\r\n"
                      "Content-Type: application/json\r\n"
                      "Replay-Nonce: abc\r\n"
                      "Location: https://x/acct/1\r\n"
                      "Content-Length: 11\r\n"
                      "\r\n"
                      "{\"a\":\"b c\"}";
    check_response(raw, false, 201, "{\"a\":\"b c\"}", true);

    struct tf_http_parser *p = tf_http_parser_new(MIB, false);
    CHECK_EQ_INT(feed(p, raw, strlen(raw) - 1, 1), 0);
    CHECK(!tf_http_parser_done(p));
    CHECK(tf_http_parser_response(p, NULL) == NULL);
    CHECK_EQ_INT(feed(p, raw + strlen(raw) - 1, 1, 1), 0);
    const struct tf_http_response *r = tf_http_parser_response(p, NULL);
    CHECK(r != NULL);
    if (r) {
        CHECK_EQ_INT(r->n_headers, 4);
        CHECK_EQ_STR(tf_http_response_header(r, "replay-nonce"), "abc");
        CHECK_EQ_STR(tf_http_response_header(r, "LOCATION"), "https://x/acct/1");
        CHECK_EQ_STR(r->headers[0].name, "Content-Type");
        CHECK(tf_http_response_header(r, "Retry-After") == NULL);
    }
    tf_http_parser_free(p);
}

static void test_chunked(void)
{
    const char *raw = "HTTP/1.1 200 OK\r\n"
                      "Transfer-Encoding: chunked\r\n"
                      "\r\n"
                      "5;name=value\r\nhello\r\n"
                      "1\r\n \r\n"
                      "a;x;y=\"q\"\r\n0123456789\r\n"
                      "0\r\n"
                      "Trailer-One: t1\r\n"
                      "Trailer-Two: t2\r\n"
                      "\r\n";
    check_response(raw, false, 200, "hello 0123456789", true);
    struct tf_http_parser *p = tf_http_parser_new(MIB, false);
    CHECK_EQ_INT(feed(p, raw, strlen(raw), 1), 0);
    const struct tf_http_response *r = tf_http_parser_response(p, NULL);
    CHECK(r && r->n_headers == 1); /* trailers are not response headers */
    tf_http_parser_free(p);
}

static void test_close_delimited(void)
{
    const char *raw = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end";
    for (size_t step = 0; step < 4; step++) {
        struct tf_http_parser *p = tf_http_parser_new(MIB, false);
        CHECK_EQ_INT(feed(p, raw, strlen(raw), step), 0);
        CHECK(!tf_http_parser_done(p));
        CHECK_EQ_INT(tf_http_parser_eof(p), 0);
        CHECK(tf_http_parser_done(p));
        bool ka = true;
        const struct tf_http_response *r = tf_http_parser_response(p, &ka);
        CHECK(r && strcmp(r->body, "until the end") == 0);
        CHECK(!ka);
        tf_http_parser_free(p);
    }
}

static void test_connection_close_and_http10(void)
{
    check_response("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", false,
                   200, "ok", false);
    check_response("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false, 200, "ok", false);
    check_response("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
                   false, 200, "ok", true);
}

static void test_head_and_no_body_statuses(void)
{
    check_response("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", true, 200, "", true);
    check_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, 200, "", true);
    check_response("HTTP/1.1 204 No Content\r\nX: y\r\n\r\n", false, 204, "", true);
    check_response("HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", false, 304, "",
                   true);
    /* An interim response is skipped, its headers do not leak into the final one. */
    const char *raw = "HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
                      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
    check_response(raw, false, 200, "abc", true);
    struct tf_http_parser *p = tf_http_parser_new(MIB, false);
    CHECK_EQ_INT(feed(p, raw, strlen(raw), 1), 0);
    CHECK(tf_http_response_header(tf_http_parser_response(p, NULL), "X-Interim") == NULL);
    tf_http_parser_free(p);
}

static void test_body_cap(void)
{
    const char *fixed = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n0123456789a";
    const char *chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "6\r\n012345\r\n5\r\n6789a\r\n0\r\n\r\n";
    const char *eof_body = "HTTP/1.1 200 OK\r\n\r\n0123456789a";
    const char *all[] = {fixed, chunked, eof_body};
    for (size_t i = 0; i < TF_ARRAY_LEN(all); i++) {
        for (size_t step = 0; step < 3; step++) {
            struct tf_http_parser *p = tf_http_parser_new(10, false);
            CHECK_EQ_INT(feed(p, all[i], strlen(all[i]), step), TF_ETOOBIG);
            CHECK(!tf_http_parser_done(p));
            CHECK_EQ_INT(tf_http_parser_feed(p, "x", 1), TF_ETOOBIG); /* sticky */
            tf_http_parser_free(p);
        }
    }
    /* Exactly at the cap is fine. */
    struct tf_http_parser *p = tf_http_parser_new(11, false);
    CHECK_EQ_INT(feed(p, fixed, strlen(fixed), 1), 0);
    CHECK(tf_http_parser_done(p));
    tf_http_parser_free(p);
}

static void test_header_too_big(void)
{
    size_t n = 70 * 1024;
    char *raw = tf_malloc(n + 100);
    int len = sprintf(raw, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(raw + len, 'a', n);
    strcpy(raw + len + n, "\r\nContent-Length: 0\r\n\r\n");
    struct tf_http_parser *p = tf_http_parser_new(MIB, false);
    CHECK_EQ_INT(feed(p, raw, strlen(raw), 1000), TF_EPROTO);
    tf_http_parser_free(p);

    /* Many small headers add up the same way. */
    size_t pos = (size_t)sprintf(raw, "HTTP/1.1 200 OK\r\n");
    while (pos < n)
        pos += (size_t)sprintf(raw + pos, "X-H: v\r\n");
    strcpy(raw + pos, "\r\n");
    p = tf_http_parser_new(MIB, false);
    CHECK_EQ_INT(feed(p, raw, strlen(raw), 0), TF_EPROTO);
    tf_http_parser_free(p);

    /* Just under the cap is fine, however finely it is split. */
    pos = (size_t)sprintf(raw, "HTTP/1.1 200 OK\r\n");
    while (pos < 60 * 1024) /* 200 fields of 300 bytes: under the field count cap too */
        pos += (size_t)sprintf(raw + pos, "X-Header-Name: %0282d\r\n", 7);
    strcpy(raw + pos, "Content-Length: 0\r\n\r\n");
    p = tf_http_parser_new(MIB, false);
    CHECK_EQ_INT(feed(p, raw, strlen(raw), 1), 0);
    CHECK(tf_http_parser_done(p));
    tf_http_parser_free(p);
    free(raw);
}

static void test_garbage_and_truncation(void)
{
    const char *bad[] = {
        "HTTX/1.1 200 OK\r\n\r\n",
        "<html>hello</html>\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    };
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        struct tf_http_parser *p = tf_http_parser_new(MIB, false);
        int r = feed(p, bad[i], strlen(bad[i]), 1);
        CHECK_EQ_INT(r, TF_EPROTO);
        if (r != TF_EPROTO)
            fprintf(stderr, "  accepted: %s\n", bad[i]);
        CHECK(!tf_http_parser_done(p));
        tf_http_parser_free(p);
    }
    const char *cut[] = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        "HTTP/1.1 200 OK\r\nContent-Le",
        "",
    };
    for (size_t i = 0; i < TF_ARRAY_LEN(cut); i++) {
        struct tf_http_parser *p = tf_http_parser_new(MIB, false);
        CHECK_EQ_INT(feed(p, cut[i], strlen(cut[i]), 1), 0);
        CHECK_EQ_INT(tf_http_parser_eof(p), TF_EPROTO);
        CHECK(!tf_http_parser_done(p));
        CHECK(tf_http_parser_response(p, NULL) == NULL);
        tf_http_parser_free(p);
    }
}

static void test_same_name_headers_and_extra_bytes(void)
{
    const char *raw = "HTTP/1.1 200 OK\r\n"
                      "Link: <a>;rel=\"up\"\r\n"
                      "link: <b>;rel=\"index\"\r\n"
                      "Empty:\r\n"
                      "Content-Length: 0\r\n\r\n";
    struct tf_http_parser *p = tf_http_parser_new(MIB, false);
    CHECK_EQ_INT(feed(p, raw, strlen(raw), 1), 0);
    bool ka = false;
    const struct tf_http_response *r = tf_http_parser_response(p, &ka);
    CHECK(r && r->n_headers == 4);
    if (r && r->n_headers == 4) {
        CHECK_EQ_STR(r->headers[0].value, "<a>;rel=\"up\"");
        CHECK_EQ_STR(r->headers[1].name, "link");
        CHECK_EQ_STR(r->headers[1].value, "<b>;rel=\"index\"");
        CHECK_EQ_STR(r->headers[2].value, "");
        CHECK_EQ_STR(tf_http_response_header(r, "LINK"), "<a>;rel=\"up\"");
    }
    CHECK(ka);
    tf_http_parser_free(p);

    /* Bytes after a complete response (in the same read or later) forbid reuse. */
    const char *two = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200";
    p = tf_http_parser_new(MIB, false);
    CHECK_EQ_INT(feed(p, two, strlen(two), 0), 0);
    r = tf_http_parser_response(p, &ka);
    CHECK(r && strcmp(r->body, "a") == 0);
    CHECK(!ka);
    tf_http_parser_free(p);
    p = tf_http_parser_new(MIB, false);
    CHECK_EQ_INT(feed(p, two, 39, 0), 0);
    tf_http_parser_response(p, &ka);
    CHECK(ka);
    CHECK_EQ_INT(feed(p, two + 39, strlen(two) - 39, 0), 0);
    tf_http_parser_response(p, &ka);
    CHECK(!ka);
    tf_http_parser_free(p);
}

static void test_url(void)
{
    struct tf_http_url u;
    CHECK_EQ_INT(tf_http_url_parse("https://ACME.Example.org/dir?x=1#frag", &u), 0);
    CHECK(u.tls && !u.host_is_ip && u.port == 443);
    CHECK_EQ_STR(u.host, "acme.example.org");
    CHECK_EQ_STR(u.path, "/dir?x=1");
    tf_http_url_clear(&u);
    CHECK_EQ_INT(tf_http_url_parse("HTTP://127.0.0.1:8080", &u), 0);
    CHECK(!u.tls && u.host_is_ip && u.port == 8080);
    CHECK_EQ_STR(u.host, "127.0.0.1");
    CHECK_EQ_STR(u.path, "/");
    tf_http_url_clear(&u);
    CHECK_EQ_INT(tf_http_url_parse("https://[::1]:14000/x", &u), 0);
    CHECK(u.host_is_ip && u.port == 14000);
    CHECK_EQ_STR(u.host, "::1");
    tf_http_url_clear(&u);
    CHECK_EQ_INT(tf_http_url_parse("http://[fe80::1]?q", &u), 0);
    CHECK_EQ_STR(u.path, "/?q");
    CHECK(u.port == 80);
    tf_http_url_clear(&u);
    const char *bad[] = {"ftp://x/", "https//x", "https://", "https://:80/", "https://x:0/",
                         "https://x:65536/", "https://x:8a/", "https://u@x/", "https://[::1/",
                         "https://[zz]/", "https://[::1]x/", "https://x/a b", "https://x/\r\n",
                         "https://ex%41mple/", "x", "https://x:/"};
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        int r = tf_http_url_parse(bad[i], &u);
        CHECK_EQ_INT(r, TF_EINVAL);
        if (r != TF_EINVAL)
            fprintf(stderr, "  accepted: %s\n", bad[i]);
        CHECK(u.host == NULL && u.path == NULL);
    }
    CHECK_EQ_INT(tf_http_url_parse(NULL, &u), TF_EINVAL);
}

static void test_retry_after(void)
{
    int64_t now = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
    CHECK_EQ_INT(tf_http_retry_after("120", now), 120);
    CHECK_EQ_INT(tf_http_retry_after(" 0 ", now), 0);
    CHECK_EQ_INT(tf_http_retry_after("99999999999999999999999", now), INT32_MAX);
    CHECK_EQ_INT(tf_http_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), 0);
    CHECK_EQ_INT(tf_http_retry_after("Sun, 06 Nov 1994 08:51:37 GMT", now), 120);
    CHECK_EQ_INT(tf_http_retry_after("Mon, 07 Nov 1994 08:49:37 GMT", now), 86400);
    CHECK_EQ_INT(tf_http_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now), 0); /* past */
    CHECK_EQ_INT(tf_http_retry_after("Sunday, 06-Nov-94 08:50:37 GMT", now), 60);
    CHECK_EQ_INT(tf_http_retry_after("Sun Nov  6 08:49:47 1994", now), 10);
    CHECK_EQ_INT(tf_http_retry_after("Thu, 01 Jan 2037 00:00:00 GMT", 2114380800 - 5), 5);
    CHECK_EQ_INT(tf_http_retry_after("Wed, 29 Feb 2000 00:00:10 GMT", 951782400), 10);
    const char *bad[] = {NULL, "", "  ", "-5", "1.5", "soon", "12abc",
                         "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Foo 1994 08:49:37 GMT",
                         "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
                         "Sun, 06 Nov 1994 08:49:37 GMT junk", "Xyz, 06 Nov 1994 08:49:37 GMT",
                         "Thu, 29 Feb 2001 00:00:00 GMT", "Sun, 06 Nov 1994"};
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        int64_t r = tf_http_retry_after(bad[i], now);
        CHECK_EQ_INT(r, -1);
        if (r != -1)
            fprintf(stderr, "  accepted: %s\n", bad[i] ? bad[i] : "(null)");
    }
}

/* Serialises rq for url and compares with the exact expected bytes. */
static void check_wire(const char *url, const struct tf_http_request *rq, const char *want)
{
    struct tf_http_url u;
    char *wire = NULL;
    size_t len = 0;
    CHECK_EQ_INT(tf_http_url_parse(url, &u), 0);
    CHECK_EQ_INT(tf_http_request_serialize(rq, &u, &wire, &len), 0);
    CHECK_EQ_STR(wire, want);
    CHECK_EQ_INT(len, strlen(want));
    free(wire);
    tf_http_url_clear(&u);
}

static void test_serialize(void)
{
    struct tf_http_request get = {.method = "GET"};
    check_wire("https://Example.org/dir?x=1#f", &get,
               "GET /dir?x=1 HTTP/1.1\r\nHost: example.org\r\n"
               "User-Agent: tlsfront/" TLSFRONT_VERSION "\r\n\r\n");
    struct tf_http_header extra[] = {{"Accept", "application/json"}, {"X-Empty", ""}};
    struct tf_http_request post = {.method = "POST", .content_type = "application/jose+json",
                                   .body = "{\"a\":1}", .body_len = 7, .headers = extra,
                                   .n_headers = 2};
    check_wire("http://[::1]:8080/new-acct", &post,
               "POST /new-acct HTTP/1.1\r\nHost: [::1]:8080\r\n"
               "User-Agent: tlsfront/" TLSFRONT_VERSION "\r\n"
               "Content-Type: application/jose+json\r\nContent-Length: 7\r\n"
               "Accept: application/json\r\nX-Empty: \r\n\r\n{\"a\":1}");
    struct tf_http_request empty_post = {.method = "POST"};
    check_wire("https://h:443/", &empty_post,
               "POST / HTTP/1.1\r\nHost: h\r\nUser-Agent: tlsfront/" TLSFRONT_VERSION
               "\r\nContent-Length: 0\r\n\r\n");

    struct tf_http_url u;
    CHECK_EQ_INT(tf_http_url_parse("http://h/", &u), 0);
    struct tf_http_header bad_headers[][1] = {
        {{"X-A", "1\r\nX-Injected: 1"}}, {{"Bad Name", "1"}}, {{"host", "other"}},
        {{"Content-Length", "5"}}, {{"Transfer-Encoding", "chunked"}}, {{"", "x"}}};
    for (size_t i = 0; i < TF_ARRAY_LEN(bad_headers); i++) {
        struct tf_http_request rq = {.method = "GET", .headers = bad_headers[i], .n_headers = 1};
        char *wire = (char *)"unchanged";
        size_t len;
        CHECK_EQ_INT(tf_http_request_serialize(&rq, &u, &wire, &len), TF_EINVAL);
        CHECK(wire == NULL);
    }
    const char *bad_methods[] = {"", "GE T", "GET\r\n", "G/ET"};
    for (size_t i = 0; i < TF_ARRAY_LEN(bad_methods); i++) {
        struct tf_http_request rq = {.method = bad_methods[i]};
        char *wire;
        size_t len;
        CHECK_EQ_INT(tf_http_request_serialize(&rq, &u, &wire, &len), TF_EINVAL);
    }
    struct tf_http_request ct = {.method = "POST", .content_type = "a\nb"};
    char *wire;
    size_t len;
    CHECK_EQ_INT(tf_http_request_serialize(&ct, &u, &wire, &len), TF_EINVAL);
    struct tf_http_request nobody = {.method = "POST", .body_len = 3};
    CHECK_EQ_INT(tf_http_request_serialize(&nobody, &u, &wire, &len), TF_EINVAL);
    tf_http_url_clear(&u);
}

int main(void)
{
    TF_TEST_RUN(test_fixed_length_byte_by_byte);
    TF_TEST_RUN(test_chunked);
    TF_TEST_RUN(test_close_delimited);
    TF_TEST_RUN(test_connection_close_and_http10);
    TF_TEST_RUN(test_head_and_no_body_statuses);
    TF_TEST_RUN(test_body_cap);
    TF_TEST_RUN(test_header_too_big);
    TF_TEST_RUN(test_garbage_and_truncation);
    TF_TEST_RUN(test_same_name_headers_and_extra_bytes);
    TF_TEST_RUN(test_url);
    TF_TEST_RUN(test_serialize);
    TF_TEST_RUN(test_retry_after);
    return TF_TEST_DONE();
}
