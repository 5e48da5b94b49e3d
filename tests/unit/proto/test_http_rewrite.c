/*
 * test_http_rewrite.c: the mode=http request rewriter: header insertion for single,
 * keep-alive and pipelined requests, byte-exact bodies under every kind of read split,
 * X-Forwarded-* spoofing, Forwarded with IPv6, Upgrade/CONNECT, and a table of smuggling and
 * malformed inputs that must each get 400/431 with zero bytes of the bad request emitted.
 */
#include "tlsfront/base/common.h"
#include "tlsfront/proto/http_rewrite.h"
#include "tf_test.h"

#include <stdlib.h>

#define CLIENT "192.0.2.7"
#define OURS(host)                                                                                 \
    "X-Forwarded-For: " CLIENT "\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: " host "\r\n"

static struct tf_http_rw *mk(const char *client, bool trust, bool fwd, size_t max)
{
    struct tf_http_rw_opts o = {.client_addr = client,
                                .host = "sni.example",
                                .proto = NULL,
                                .trust_xff = trust,
                                .add_forwarded = fwd,
                                .max_header_bytes = max};
    return tf_http_rw_new(&o);
}

/* A rewriter of a route with connect=on. */
static struct tf_http_rw *mk_connect(void)
{
    struct tf_http_rw_opts o = {.client_addr = CLIENT, .host = "sni.example", .allow_connect = true};
    return tf_http_rw_new(&o);
}

/* Feeds s in pieces: split 0 = all at once, 1 = one byte at a time, otherwise pseudo-random
 * pieces of 1..split bytes from seed. Stops at the first non-zero result and returns it. */
static int feed_split(struct tf_http_rw *rw, const char *s, size_t n, size_t split, unsigned seed,
                      struct tf_buf_sink *out)
{
    size_t pos = 0;
    int rc = 0;
    if (n == 0)
        return tf_http_rw_feed(rw, s, 0, out);
    while (pos < n) {
        size_t k = n - pos;
        if (split == 1) {
            k = 1;
        } else if (split > 1) {
            seed = seed * 1103515245u + 12345u;
            k = TF_MIN(k, 1 + (seed >> 8) % split);
        }
        rc = tf_http_rw_feed(rw, s + pos, k, out);
        pos += k;
        if (rc != 0)
            break;
    }
    return rc;
}

static bool out_is(const struct tf_buf_sink *out, const char *want, size_t wlen)
{
    bool ok = out->len == wlen && memcmp(out->data, want, wlen) == 0;
    if (!ok)
        fprintf(stderr, "got (%zu):\n%.*s\nwant (%zu):\n%s\n", out->len, (int)out->len,
                out->data ? out->data : "", wlen, want);
    return ok;
}

static size_t count(const struct tf_buf_sink *out, const char *needle)
{
    size_t n = 0, nl = strlen(needle);
    for (size_t i = 0; i + nl <= out->len; i++)
        if (memcmp(out->data + i, needle, nl) == 0)
            n++;
    return n;
}

/* Runs in over every split mode and checks the output is exactly want. */
static void check_all_splits(const char *in, size_t inlen, const char *want, size_t wantlen,
                             bool trust)
{
    static const size_t splits[] = {0, 1, 2, 7, 64, 1000};
    for (size_t i = 0; i < TF_ARRAY_LEN(splits); i++) {
        for (unsigned seed = 1; seed <= (splits[i] > 1 ? 5u : 1u); seed++) {
            struct tf_http_rw *rw = mk(CLIENT, trust, false, 0);
            struct tf_buf_sink out = {0};
            CHECK_EQ_INT(feed_split(rw, in, inlen, splits[i], seed, &out), 0);
            CHECK(out_is(&out, want, wantlen));
            tf_buf_sink_free(&out);
            tf_http_rw_free(rw);
        }
    }
}

static void test_single(void)
{
    const char *in = "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent:  t  \r\n\r\n";
    const char *want =
        "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n" OURS("example.com") "\r\n";
    check_all_splits(in, strlen(in), want, strlen(want), false);
    struct tf_http_rw *rw = mk(CLIENT, false, false, 0);
    struct tf_buf_sink out = {0};
    CHECK_EQ_INT(tf_http_rw_feed(rw, in, strlen(in), &out), 0);
    CHECK_EQ_INT(tf_http_rw_requests(rw), 1);
    CHECK(!tf_http_rw_mid_request(rw));
    tf_buf_sink_free(&out);
    tf_http_rw_free(rw);
}

/* Keep-Alive and Proxy-Connection describe the client's hop only: not forwarded. */
static void test_hop_by_hop(void)
{
    const char *in = "GET / HTTP/1.1\r\nHost: a.example\r\nKeep-Alive: timeout=5, max=1\r\n"
                     "Proxy-Connection: keep-alive\r\nTE: trailers\r\n\r\n";
    const char *want = "GET / HTTP/1.1\r\nHost: a.example\r\nTE: trailers\r\n" OURS(
        "a.example") "\r\n";
    check_all_splits(in, strlen(in), want, strlen(want), false);
}

static void test_keepalive(void)
{
    struct tf_http_rw *rw = mk(CLIENT, false, false, 0);
    struct tf_buf_sink out = {0};
    const char *r1 = "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
    const char *r2 = "POST /up HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\nhello";
    const char *w1 = "GET / HTTP/1.1\r\nHost: a.example\r\n" OURS("a.example") "\r\n";
    const char *w2 = "POST /up HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n" OURS(
        "a.example") "\r\nhello";
    CHECK_EQ_INT(tf_http_rw_feed(rw, r1, strlen(r1), &out), 0);
    CHECK(out_is(&out, w1, strlen(w1)));
    out.len = 0;
    CHECK_EQ_INT(tf_http_rw_feed(rw, r2, strlen(r2) - 3, &out), 0);
    CHECK(tf_http_rw_mid_request(rw));
    CHECK_EQ_INT(tf_http_rw_feed(rw, r2 + strlen(r2) - 3, 3, &out), 0);
    CHECK(out_is(&out, w2, strlen(w2)));
    CHECK(!tf_http_rw_mid_request(rw));
    CHECK_EQ_INT(tf_http_rw_requests(rw), 2);
    tf_buf_sink_free(&out);
    tf_http_rw_free(rw);
}

static void test_pipelined(void)
{
    struct tf_buf_sink in = {0}, want = {0};
    char line[256];
    for (int i = 0; i < 10; i++) {
        bool post = i % 3 == 1;
        snprintf(line, sizeof(line), "%s /r%d HTTP/1.1\r\nHost: p.example\r\n%s\r\n%s",
                 post ? "POST" : "GET", i, post ? "Content-Length: 3\r\n" : "", post ? "abc" : "");
        tf_buf_sink_append(&in, line, strlen(line));
        snprintf(line, sizeof(line),
                 "%s /r%d HTTP/1.1\r\nHost: p.example\r\n%s" OURS("p.example") "\r\n%s",
                 post ? "POST" : "GET", i, post ? "Content-Length: 3\r\n" : "", post ? "abc" : "");
        tf_buf_sink_append(&want, line, strlen(line));
    }
    check_all_splits(in.data, in.len, want.data, want.len, false);
    struct tf_http_rw *rw = mk(CLIENT, false, false, 0);
    struct tf_buf_sink out = {0};
    CHECK_EQ_INT(tf_http_rw_feed(rw, in.data, in.len, &out), 0);
    CHECK_EQ_INT(count(&out, "X-Forwarded-For: "), 10);
    CHECK_EQ_INT(tf_http_rw_requests(rw), 10);
    tf_buf_sink_free(&out);
    tf_http_rw_free(rw);
    tf_buf_sink_free(&in);
    tf_buf_sink_free(&want);
}

static void test_chunked_exact(void)
{
    const char *head = "POST /c HTTP/1.1\r\nHost: c.example\r\nTransfer-Encoding: chunked\r\n";
    const char *body = "5\r\nhello\r\n1a;ext=\"v\"\r\nabcdefghijklmnopqrstuvwxyz\r\n"
                       "0\r\nX-Trailer: t1\r\nX-Other: t2\r\n\r\n";
    const char *next = "GET /n HTTP/1.1\r\nHost: c.example\r\n\r\n";
    char in[1024], want[2048];
    snprintf(in, sizeof(in), "%s\r\n%s%s", head, body, next);
    snprintf(want, sizeof(want),
             "%s" OURS("c.example") "\r\n%sGET /n HTTP/1.1\r\nHost: "
                                    "c.example\r\n" OURS("c.example") "\r\n",
             head, body);
    check_all_splits(in, strlen(in), want, strlen(want), false);
    /* Without trailers, and with a body containing CRLFs and NULs. */
    char in2[512], want2[1024];
    static const char bin[] = "6\r\n\r\n\0\r\n\0\r\n0\r\n\r\n";
    size_t hl = (size_t)snprintf(in2, sizeof(in2), "%s\r\n", head);
    memcpy(in2 + hl, bin, sizeof(bin) - 1);
    size_t wl = (size_t)snprintf(want2, sizeof(want2), "%s" OURS("c.example") "\r\n", head);
    memcpy(want2 + wl, bin, sizeof(bin) - 1);
    check_all_splits(in2, hl + sizeof(bin) - 1, want2, wl + sizeof(bin) - 1, false);
}

/* A large Content-Length body streams: each feed's output is about its input. */
static void test_streaming_body(void)
{
    struct tf_http_rw *rw = mk(CLIENT, false, false, 0);
    struct tf_buf_sink out = {0};
    const char *h = "PUT /big HTTP/1.1\r\nHost: b.example\r\nContent-Length: 1048576\r\n\r\n";
    char piece[65536];
    size_t total = 0, maxout = 0;
    CHECK_EQ_INT(tf_http_rw_feed(rw, h, strlen(h), &out), 0);
    out.len = 0;
    for (int i = 0; i < 16; i++) {
        memset(piece, 'a' + i, sizeof(piece));
        CHECK_EQ_INT(tf_http_rw_feed(rw, piece, sizeof(piece), &out), 0);
        CHECK(out.len == sizeof(piece) && out.data[0] == 'a' + i);
        total += out.len;
        maxout = TF_MAX(maxout, out.len);
        out.len = 0;
    }
    CHECK_EQ_INT(total, 1048576);
    CHECK_EQ_INT(maxout, sizeof(piece));
    CHECK(!tf_http_rw_mid_request(rw));
    tf_buf_sink_free(&out);
    tf_http_rw_free(rw);
}

static void test_xff_spoofing(void)
{
    const char *in = "GET / HTTP/1.1\r\nHost: x.example\r\nX-Forwarded-For: 6.6.6.6\r\n"
                     "x-forwarded-proto: http\r\nX-Forwarded-Host: evil.example\r\n"
                     "X-FORWARDED-FOR: 7.7.7.7\r\nForwarded: for=6.6.6.6\r\n"
                     "Connection: keep-alive, X-Forwarded-For\r\n\r\n";
    const char *untrusted =
        "GET / HTTP/1.1\r\nHost: x.example\r\nConnection: keep-alive\r\n" OURS("x.example") "\r\n";
    const char *trusted = "GET / HTTP/1.1\r\nHost: x.example\r\nConnection: keep-alive\r\n"
                          "X-Forwarded-For: 6.6.6.6, 7.7.7.7, " CLIENT "\r\n"
                          "X-Forwarded-Proto: https\r\nX-Forwarded-Host: x.example\r\n\r\n";
    check_all_splits(in, strlen(in), untrusted, strlen(untrusted), false);
    check_all_splits(in, strlen(in), trusted, strlen(trusted), true);
    /* A Connection header naming only our fields disappears. */
    const char *in2 =
        "GET / HTTP/1.1\r\nConnection: forwarded ,x-forwarded-host\r\nHost: y\r\n\r\n";
    const char *w2 = "GET / HTTP/1.1\r\nHost: y\r\n" OURS("y") "\r\n";
    check_all_splits(in2, strlen(in2), w2, strlen(w2), false);
}

static void test_forwarded(void)
{
    struct tf_http_rw *rw = mk("2001:db8::7", false, true, 0);
    struct tf_buf_sink out = {0};
    const char *in = "GET / HTTP/1.1\r\nHost: f.example:8443\r\nForwarded: for=evil\r\n\r\n";
    const char *want =
        "GET / HTTP/1.1\r\nHost: f.example:8443\r\n"
        "X-Forwarded-For: 2001:db8::7\r\nX-Forwarded-Proto: https\r\n"
        "X-Forwarded-Host: f.example:8443\r\n"
        "Forwarded: for=\"[2001:db8::7]\";proto=https;host=\"f.example:8443\"\r\n\r\n";
    CHECK_EQ_INT(tf_http_rw_feed(rw, in, strlen(in), &out), 0);
    CHECK(out_is(&out, want, strlen(want)));
    tf_buf_sink_free(&out);
    tf_http_rw_free(rw);

    /* Trusted: the incoming Forwarded element is kept before ours; IPv4 is a token. */
    rw = mk(CLIENT, true, true, 0);
    const char *in2 = "GET / HTTP/1.1\r\nHost: g.example\r\nForwarded: for=198.51.100.1\r\n\r\n";
    CHECK_EQ_INT(tf_http_rw_feed(rw, in2, strlen(in2), &out), 0);
    CHECK_EQ_INT(
        count(&out, "Forwarded: for=198.51.100.1, for=" CLIENT ";proto=https;host=g.example\r\n"),
        1);
    tf_buf_sink_free(&out);
    tf_http_rw_free(rw);
}

/* HTTP/1.0 without Host: X-Forwarded-Host falls back to the SNI; without keep-alive the
 * connection ends after the request and later bytes are dropped. */
static void test_http10_and_close(void)
{
    struct tf_http_rw *rw = mk(CLIENT, false, false, 0);
    struct tf_buf_sink out = {0};
    const char *in = "GET / HTTP/1.0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    const char *want = "GET / HTTP/1.0\r\n" OURS("sni.example") "\r\n";
    CHECK_EQ_INT(tf_http_rw_feed(rw, in, strlen(in), &out), 0);
    CHECK(out_is(&out, want, strlen(want)));
    CHECK_EQ_INT(tf_http_rw_feed(rw, "more", 4, &out), 0);
    CHECK_EQ_INT(out.len, strlen(want));
    tf_buf_sink_free(&out);
    tf_http_rw_free(rw);

    rw = mk(CLIENT, false, false, 0);
    const char *in2 = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\n";
    CHECK_EQ_INT(tf_http_rw_feed(rw, in2, strlen(in2), &out), 0);
    CHECK_EQ_INT(tf_http_rw_requests(rw), 1);
    CHECK_EQ_INT(count(&out, "GET /2"), 0);
    tf_buf_sink_free(&out);
    tf_http_rw_free(rw);
}

/* keep_backend (a pooled backend): the client's "close" option is not forwarded, other
 * Connection options are, and the rewriter still ends the client's side after the request;
 * without it the close goes to the backend as sent. */
static void test_close_kept_from_backend(void)
{
    static const struct {
        bool keep;
        const char *conn, *want; /* the client's Connection field, what the backend gets */
    } cases[] = {
        {true, "close", "GET / HTTP/1.1\r\nHost: a\r\n" OURS("a") "\r\n"},
        {true, "Close, x-thing", "\r\nConnection: x-thing\r\n"},
        {false, "close", "\r\nConnection: close\r\n"},
    };
    for (size_t i = 0; i < TF_ARRAY_LEN(cases); i++) {
        struct tf_http_rw_opts o = {
            .client_addr = CLIENT, .host = "sni.example", .keep_backend = cases[i].keep};
        struct tf_http_rw *rw = tf_http_rw_new(&o);
        struct tf_buf_sink out = {0};
        char in[256];
        snprintf(in, sizeof in, "GET / HTTP/1.1\r\nHost: a\r\nConnection: %s\r\n\r\nGET /2",
                 cases[i].conn);
        CHECK(!tf_http_rw_closed(rw));
        CHECK_EQ_INT(tf_http_rw_feed(rw, in, strlen(in), &out), 0);
        CHECK_EQ_INT(count(&out, cases[i].want), 1);
        CHECK_EQ_INT(count(&out, "GET /2"), 0);
        CHECK(tf_http_rw_closed(rw));
        tf_buf_sink_free(&out);
        tf_http_rw_free(rw);
    }
}

struct bad_case {
    const char *name;
    const char *in;
    size_t len; /* 0: strlen */
    int status;
    bool body_error; /* the head is valid; the error is in the body */
};

#define POSTH "POST / HTTP/1.1\r\nHost: a\r\n"
#define CHUNKH POSTH "Transfer-Encoding: chunked\r\n\r\n"

static const struct bad_case bad_cases[] = {
    {"CL+TE", POSTH "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, 400,
     false},
    {"TE+CL", POSTH "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 0, 400,
     false},
    {"CL,CL conflicting", POSTH "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", 0, 400, false},
    {"CL,CL same value", POSTH "Content-Length: 1\r\nContent-Length: 1\r\n\r\na", 0, 400, false},
    {"CL list", POSTH "Content-Length: 1, 2\r\n\r\nab", 0, 400, false},
    {"CL plus sign", POSTH "Content-Length: +1\r\n\r\na", 0, 400, false},
    {"CL negative", POSTH "Content-Length: -1\r\n\r\na", 0, 400, false},
    {"CL hex", POSTH "Content-Length: 0x1\r\n\r\na", 0, 400, false},
    {"TE gzip only", POSTH "Transfer-Encoding: gzip\r\n\r\nabc", 0, 400, false},
    {"TE chunked not last", POSTH "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 0, 400,
     false},
    {"TE chunked twice",
     POSTH "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
           "0\r\n\r\n",
     0, 400, false},
    {"TE xchunked", POSTH "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 0, 400, false},
    {"chunk size not hex", CHUNKH "zz\r\nabc\r\n0\r\n\r\n", 0, 400, true},
    {"chunk size overflow", CHUNKH "FFFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n", 0, 400, true},
    {"chunk size bare LF", CHUNKH "3\nabc\r\n0\r\n\r\n", 0, 400, true},
    {"chunk size space", CHUNKH "3 \r\nabc\r\n0\r\n\r\n", 0, 400, true},
    {"chunk data overrun", CHUNKH "3\r\nabcX\r\n0\r\n\r\n", 0, 400, true},
    {"trailer obs-fold", CHUNKH "0\r\nX-T: a\r\n b\r\n\r\n", 0, 400, true},
    {"trailer bare LF", CHUNKH "0\r\nX-T: a\nX-U: b\r\n\r\n", 0, 400, true},
    {"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 0, 400, false},
    {"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n", 36, 400, false},
    {"CTL in value",
     "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01"
     "c\r\n\r\n",
     0, 400, false},
    {"DEL in value",
     "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7f"
     "c\r\n\r\n",
     0, 400, false},
    {"bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 0, 400, false},
    {"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 0, 400, false},
    {"space in name", "GET / HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n", 0, 400, false},
    {"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 0, 400, false},
    {"NUL in name", "GET / HTTP/1.1\r\nHost: a\r\nX\0A: b\r\n\r\n", 36, 400, false},
    {"bare LF", "GET / HTTP/1.1\nHost: a\n\n", 0, 400, false},
    {"CR CR LF end", "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", 0, 400, false},
    {"invalid method", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400, false},
    {"unknown method", "FOO / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400, false},
    {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 0, 400, false},
    {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 0, 400, false},
    {"space after version", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 0, 400, false},
    {"DEL in target", "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400, false},
    {"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400, false},
    {"two Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0, 400, false},
    {"no Host in 1.1", "GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 0, 400, false},
    {"bad Host", "GET / HTTP/1.1\r\nHost: a/b@c\r\n\r\n", 0, 400, false},
    {"TLS on HTTP port", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 0, 400, false},
};

static void check_bad(const struct bad_case *c, size_t split)
{
    size_t n = c->len ? c->len : strlen(c->in);
    struct tf_http_rw *rw = mk(CLIENT, false, false, 0);
    struct tf_buf_sink out = {0};
    int want = c->status == 431 ? TF_ETOOBIG : TF_EPROTO;
    int rc = feed_split(rw, c->in, n, split, 3, &out);
    if (rc != want || tf_http_rw_status(rw) != c->status)
        fprintf(stderr, "case \"%s\" split %zu: rc %d status %d (%s)\n", c->name, split, rc,
                tf_http_rw_status(rw), tf_http_rw_reason(rw));
    CHECK_EQ_INT(rc, want);
    CHECK_EQ_INT(tf_http_rw_status(rw), c->status);
    if (split == 0 || !c->body_error) {
        /* Nothing of the bad request reached the sink. */
        if (out.len)
            fprintf(stderr, "case \"%s\" split %zu: %zu bytes emitted\n", c->name, split, out.len);
        CHECK_EQ_INT(out.len, 0);
        CHECK(!tf_http_rw_mid_request(rw));
    } else {
        /* The valid head went out in an earlier read: the caller must just close. */
        CHECK(tf_http_rw_mid_request(rw));
        CHECK(out.len > 0 && out.len < n + 200);
        CHECK(count(&out, "X-Forwarded-For") == 1);
    }
    /* Sticky: nothing more passes. */
    size_t before = out.len;
    CHECK_EQ_INT(tf_http_rw_feed(rw, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27, &out), want);
    CHECK_EQ_INT(out.len, before);
    tf_buf_sink_free(&out);
    tf_http_rw_free(rw);
}

static void test_bad_table(void)
{
    CHECK(TF_ARRAY_LEN(bad_cases) >= 15);
    for (size_t i = 0; i < TF_ARRAY_LEN(bad_cases); i++) {
        check_bad(&bad_cases[i], 0);
        check_bad(&bad_cases[i], 1);
        check_bad(&bad_cases[i], 5);
    }
}

/* A valid request, then a bad one in the same read: only the valid one goes out. */
static void test_bad_after_good(void)
{
    const char *good = "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n";
    const char *wgood = "GET /ok HTTP/1.1\r\nHost: a\r\n" OURS("a") "\r\n";
    for (size_t i = 0; i < TF_ARRAY_LEN(bad_cases); i++) {
        const struct bad_case *c = &bad_cases[i];
        size_t n = c->len ? c->len : strlen(c->in), gl = strlen(good);
        char *in = tf_malloc(gl + n);
        memcpy(in, good, gl);
        memcpy(in + gl, c->in, n);
        struct tf_http_rw *rw = mk(CLIENT, false, false, 0);
        struct tf_buf_sink out = {0};
        CHECK(tf_http_rw_feed(rw, in, gl + n, &out) < 0);
        CHECK(out_is(&out, wgood, strlen(wgood)));
        tf_buf_sink_free(&out);
        tf_http_rw_free(rw);
        free(in);
    }
    /* A POST without a length has no body: what follows is parsed as the next request. */
    const char *nolen = "POST / HTTP/1.1\r\nHost: a\r\n\r\nhello=1";
    const char *wnolen = "POST / HTTP/1.1\r\nHost: a\r\n" OURS("a") "\r\n";
    struct tf_http_rw *rw = mk(CLIENT, false, false, 0);
    struct tf_buf_sink out = {0};
    CHECK_EQ_INT(tf_http_rw_feed(rw, nolen, strlen(nolen), &out), TF_EPROTO);
    CHECK(out_is(&out, wnolen, strlen(wnolen)));
    tf_buf_sink_free(&out);
    tf_http_rw_free(rw);
}

static void test_header_caps(void)
{
    size_t big = 40 * 1024;
    char *in = tf_malloc(big + 64);
    int n = snprintf(in, 64, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
    memset(in + n, 'x', big);
    memcpy(in + n + big, "\r\n\r\n", 4);
    for (size_t split = 0; split <= 1; split++) {
        struct tf_http_rw *rw = mk(CLIENT, false, false, 0);
        struct tf_buf_sink out = {0};
        CHECK_EQ_INT(feed_split(rw, in, (size_t)n + big + 4, split * 4096, 1, &out), TF_ETOOBIG);
        CHECK_EQ_INT(tf_http_rw_status(rw), 431);
        CHECK_EQ_INT(out.len, 0);
        tf_buf_sink_free(&out);
        tf_http_rw_free(rw);
    }
    /* The same head under a larger cap passes; exactly at the cap passes too. */
    size_t hl = (size_t)n + big + 4;
    struct tf_http_rw *rw = mk(CLIENT, false, false, hl);
    struct tf_buf_sink out = {0};
    CHECK_EQ_INT(tf_http_rw_feed(rw, in, hl, &out), 0);
    CHECK_EQ_INT(tf_http_rw_requests(rw), 1);
    tf_buf_sink_free(&out);
    tf_http_rw_free(rw);
    rw = mk(CLIENT, false, false, hl - 1);
    CHECK_EQ_INT(tf_http_rw_feed(rw, in, hl, &out), TF_ETOOBIG);
    CHECK_EQ_INT(out.len, 0);
    tf_buf_sink_free(&out);
    tf_http_rw_free(rw);
    free(in);

    /* Too many header lines. */
    struct tf_buf_sink many = {0};
    tf_buf_sink_append(&many, "GET / HTTP/1.1\r\nHost: a\r\n", 25);
    for (int i = 0; i < TF_HTTP_RW_MAX_FIELDS + 5; i++)
        tf_buf_sink_append(&many, "X: y\r\n", 6);
    tf_buf_sink_append(&many, "\r\n", 2);
    rw = mk(CLIENT, false, false, 0);
    CHECK_EQ_INT(tf_http_rw_feed(rw, many.data, many.len, &out), TF_ETOOBIG);
    CHECK_EQ_INT(tf_http_rw_status(rw), 431);
    CHECK_EQ_INT(out.len, 0);
    tf_buf_sink_free(&out);
    tf_buf_sink_free(&many);
    tf_http_rw_free(rw);
}

static void test_upgrade(void)
{
    const char *in = "GET /ws HTTP/1.1\r\nHost: w.example\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n\x81\x05hello";
    const char *want = "GET /ws HTTP/1.1\r\nHost: w.example\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n" OURS("w.example") "\r\n";
    for (size_t split = 0; split <= 1; split++) {
        struct tf_http_rw *rw = mk(CLIENT, false, false, 0);
        struct tf_buf_sink out = {0};
        CHECK_EQ_INT(feed_split(rw, in, strlen(in) - 7, split, 1, &out), TF_HTTP_RW_UPGRADE);
        CHECK(out_is(&out, want, strlen(want)));
        /* Bytes before the backend's answer are held, not forwarded. */
        CHECK_EQ_INT(tf_http_rw_feed(rw, in + strlen(in) - 7, 7, &out), TF_HTTP_RW_UPGRADE);
        CHECK_EQ_INT(out.len, strlen(want));
        out.len = 0;
        tf_http_rw_set_tunnel(rw, &out);
        CHECK(out_is(&out, "\x81\x05hello", 7));
        out.len = 0;
        /* Tunnel: anything goes through verbatim, even what would be a bad request. */
        CHECK_EQ_INT(tf_http_rw_feed(rw, "G@T \0\n\n", 7, &out), 0);
        CHECK(out_is(&out, "G@T \0\n\n", 7));
        tf_buf_sink_free(&out);
        tf_http_rw_free(rw);
    }
}

/* Without connect=on a CONNECT request never reaches the backend: 405, and nothing after it
 * is parsed (a 2xx from a catch-all backend would make the rest an unchecked tunnel). The
 * requests before it still go out. */
static void test_connect_not_enabled(void)
{
    const char *in = "GET /first HTTP/1.1\r\nHost: c.example\r\n\r\n"
                     "CONNECT c.example:443 HTTP/1.1\r\nHost: c.example:443\r\n\r\n"
                     "GET /after HTTP/1.1\r\nHost: c.example\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
    for (size_t split = 0; split < 3; split++) {
        struct tf_http_rw *rw = mk(CLIENT, false, false, 0);
        struct tf_buf_sink out = {0};
        int rc = feed_split(rw, in, strlen(in), split, 7, &out);
        CHECK_EQ_INT(rc, TF_EPROTO);
        CHECK_EQ_INT(tf_http_rw_status(rw), 405);
        CHECK_EQ_INT(count(&out, "GET /first HTTP/1.1\r\n"), 1);
        CHECK_EQ_INT(count(&out, "CONNECT"), 0);
        CHECK_EQ_INT(count(&out, "/after"), 0);
        CHECK_EQ_INT(count(&out, "6.6.6.6"), 0);
        CHECK_EQ_INT(tf_http_rw_requests(rw), 1);
        CHECK(!tf_http_rw_mid_request(rw));
        tf_buf_sink_free(&out);
        tf_http_rw_free(rw);
    }
    char page[512];
    size_t n = tf_http_error_response(405, page, sizeof page);
    const char *line = "HTTP/1.1 405 Method Not Allowed\r\n";
    CHECK(n > 0 && strncmp(page, line, strlen(line)) == 0);
}

static void test_connect_refused(void)
{
    const char *in = "CONNECT c.example:443 HTTP/1.1\r\nHost: c.example:443\r\n\r\n"
                     "GET /after HTTP/1.1\r\nHost: c.example\r\n\r\n";
    struct tf_http_rw *rw = mk_connect();
    struct tf_buf_sink out = {0};
    CHECK_EQ_INT(tf_http_rw_feed(rw, in, strlen(in), &out), TF_HTTP_RW_UPGRADE);
    CHECK_EQ_INT(count(&out, "CONNECT c.example:443 HTTP/1.1\r\n"), 1);
    CHECK_EQ_INT(count(&out, "GET /after"), 0);
    out.len = 0;
    /* The backend said 403: the held bytes are parsed as the next request. */
    CHECK_EQ_INT(tf_http_rw_upgrade_refused(rw, &out), 0);
    CHECK_EQ_INT(count(&out, "GET /after HTTP/1.1\r\n"), 1);
    CHECK_EQ_INT(count(&out, "X-Forwarded-For: "), 1);
    CHECK_EQ_INT(tf_http_rw_requests(rw), 2);
    tf_buf_sink_free(&out);
    tf_http_rw_free(rw);

    /* Held bytes that are not HTTP are refused once parsed. */
    rw = mk_connect();
    const char *tls = "CONNECT c:443 HTTP/1.1\r\nHost: c:443\r\n\r\n\x16\x03\x01";
    CHECK_EQ_INT(tf_http_rw_feed(rw, tls, strlen(tls), &out), TF_HTTP_RW_UPGRADE);
    out.len = 0;
    CHECK_EQ_INT(tf_http_rw_upgrade_refused(rw, &out), TF_EPROTO);
    CHECK_EQ_INT(out.len, 0);
    tf_buf_sink_free(&out);
    tf_http_rw_free(rw);

    /* Too much held before the answer. */
    rw = mk_connect();
    char *junk = tf_calloc(1, TF_HTTP_RW_HOLD_MAX + 1);
    CHECK_EQ_INT(tf_http_rw_feed(rw, tls, strlen(tls), &out), TF_HTTP_RW_UPGRADE);
    CHECK_EQ_INT(tf_http_rw_feed(rw, junk, TF_HTTP_RW_HOLD_MAX + 1, &out), TF_EPROTO);
    free(junk);
    tf_buf_sink_free(&out);
    tf_http_rw_free(rw);
}

static void test_error_response(void)
{
    char buf[512];
    static const int codes[] = {400, 431, 502};
    for (size_t i = 0; i < TF_ARRAY_LEN(codes); i++) {
        size_t n = tf_http_error_response(codes[i], buf, sizeof(buf));
        CHECK(n > 0 && n < sizeof(buf));
        char line[64];
        snprintf(line, sizeof(line), "HTTP/1.1 %d ", codes[i]);
        CHECK(strncmp(buf, line, strlen(line)) == 0);
        CHECK(strstr(buf, "\r\nConnection: close\r\n") != NULL);
        const char *body = strstr(buf, "\r\n\r\n");
        const char *cl = strstr(buf, "Content-Length: ");
        CHECK(body && cl && (size_t)atoi(cl + 16) == n - (size_t)(body + 4 - buf));
        CHECK_EQ_INT(tf_http_resp_status(buf, n), codes[i]);
        CHECK_EQ_INT(tf_http_error_response(codes[i], buf, n), 0); /* no room for the NUL */
    }
    CHECK(strstr((tf_http_error_response(999, buf, sizeof(buf)), buf), "HTTP/1.1 500 ") == buf);
}

static void test_resp_status(void)
{
    CHECK_EQ_INT(tf_http_resp_status("HTTP/1.1 101 Switching Protocols\r\n", 34), 101);
    CHECK_EQ_INT(tf_http_resp_status("HTTP/1.0 200\r\n", 14), 200);
    CHECK_EQ_INT(tf_http_resp_status("HTTP/1.1 404 ", 13), 404);
    CHECK_EQ_INT(tf_http_resp_status("HTTP/1.1 20", 11), 0);
    CHECK_EQ_INT(tf_http_resp_status("HTTP/1", 6), 0);
    CHECK_EQ_INT(tf_http_resp_status("", 0), 0);
    CHECK_EQ_INT(tf_http_resp_status("XTTP", 4), TF_EPROTO);
    CHECK_EQ_INT(tf_http_resp_status("HTTP/1.1 099 x", 14), TF_EPROTO);
    CHECK_EQ_INT(tf_http_resp_status("HTTP/1.1 2x", 11), TF_EPROTO);
    CHECK_EQ_INT(tf_http_resp_status("HTTP/2 200 OK", 13), TF_EPROTO);
    CHECK_EQ_INT(tf_http_resp_status("HTTP/1.1 2000", 13), TF_EPROTO);
}

int main(void)
{
    TF_TEST_RUN(test_single);
    TF_TEST_RUN(test_hop_by_hop);
    TF_TEST_RUN(test_keepalive);
    TF_TEST_RUN(test_pipelined);
    TF_TEST_RUN(test_chunked_exact);
    TF_TEST_RUN(test_streaming_body);
    TF_TEST_RUN(test_xff_spoofing);
    TF_TEST_RUN(test_forwarded);
    TF_TEST_RUN(test_http10_and_close);
    TF_TEST_RUN(test_close_kept_from_backend);
    TF_TEST_RUN(test_bad_table);
    TF_TEST_RUN(test_bad_after_good);
    TF_TEST_RUN(test_header_caps);
    TF_TEST_RUN(test_upgrade);
    TF_TEST_RUN(test_connect_not_enabled);
    TF_TEST_RUN(test_connect_refused);
    TF_TEST_RUN(test_error_response);
    TF_TEST_RUN(test_resp_status);
    return TF_TEST_DONE();
}
