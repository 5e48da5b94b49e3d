/*
 * test_proxy_proto.c: PROXY protocol v1/v2 encoder and parser: the spec's example
 * headers byte for byte, round trips over IPv4/IPv6, TLVs, byte-at-a-time and truncated
 * input, oversized headers, garbage and each class of malformed header.
 */
#include "tlsfront/base/common.h"
#include "tlsfront/proto/proxy_proto.h"
#include "tf_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/un.h>

static struct sockaddr_storage ip(const char *addr, unsigned port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(addr, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, addr, &s6->sin6_addr) != 1)
            abort();
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, addr, &s4->sin_addr) != 1)
            abort();
    }
    return ss;
}

#define SA(x) ((const struct sockaddr *)&(x))

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return memcmp(a, b, sizeof(struct sockaddr_in)) == 0;
    return memcmp(a, b, sizeof(struct sockaddr_in6)) == 0;
}

/* Every proper prefix needs more bytes, the whole header parses to its length, and extra
 * payload after it is not consumed. */
static void check_incremental(const unsigned char *h, size_t n)
{
    struct tf_proxy_result r;
    unsigned char buf[TF_PROXY_V2_ENCODE_MAX + 64];
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        if (tf_proxy_parse(h, i, &r) != 0)
            bad++;
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(tf_proxy_parse(h, n, &r), (int)n);
    memcpy(buf, h, n);
    memcpy(buf + n, "GET / HTTP/1.1\r\n", 16);
    CHECK_EQ_INT(tf_proxy_parse(buf, n + 16, &r), (int)n);
}

static void test_v1_spec_examples(void)
{
    struct sockaddr_storage s = ip("192.168.0.1", 56324), d = ip("192.168.0.11", 443);
    const char *ex4 = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    const char *ex6 = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    const char *unk = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    char out[256];
    struct tf_proxy_result r;

    size_t n = tf_proxy_v1_encode(out, sizeof(out), SA(s), SA(d));
    CHECK_EQ_INT(n, strlen(ex4));
    CHECK(n == strlen(ex4) && memcmp(out, ex4, n) == 0);
    CHECK_EQ_INT(tf_proxy_parse((const unsigned char *)ex4, strlen(ex4), &r), (int)strlen(ex4));
    CHECK_EQ_INT(r.version, 1);
    CHECK_EQ_INT(r.command, TF_PROXY_CMD_PROXY);
    CHECK_EQ_INT(r.family, AF_INET);
    CHECK(r.has_addr && same_addr(&r.src, &s) && same_addr(&r.dst, &d));
    check_incremental((const unsigned char *)ex4, strlen(ex4));

    struct sockaddr_storage f6 = ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    n = tf_proxy_v1_encode(out, sizeof(out), SA(f6), SA(f6));
    CHECK_EQ_INT(n, 104); /* the spec's worst case for TCP6 */
    CHECK(n == strlen(ex6) && memcmp(out, ex6, n) == 0);
    CHECK_EQ_INT(tf_proxy_parse((const unsigned char *)ex6, n, &r), 104);
    CHECK(r.family == AF_INET6 && same_addr(&r.src, &f6) && same_addr(&r.dst, &f6));
    check_incremental((const unsigned char *)ex6, strlen(ex6));

    CHECK_EQ_INT(strlen(unk), TF_PROXY_V1_MAX_LEN); /* the spec's 107-byte maximum */
    CHECK_EQ_INT(tf_proxy_parse((const unsigned char *)unk, strlen(unk), &r), 107);
    CHECK(r.family == AF_UNSPEC && !r.has_addr && r.version == 1);
    check_incremental((const unsigned char *)unk, strlen(unk));
    CHECK_EQ_INT(tf_proxy_parse((const unsigned char *)"PROXY UNKNOWN\r\n", 15, &r), 15);
    CHECK(!r.has_addr);
}

static void test_v1_encode_families(void)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    struct sockaddr_storage s6 = ip("2001:db8::1", 40000), d6 = ip("2001:db8::2", 443);
    struct sockaddr_storage m4 = ip("::ffff:10.0.0.1", 1234), d4 = ip("10.0.0.2", 443);
    char out[256];
    size_t n = tf_proxy_v1_encode(out, sizeof(out), (const struct sockaddr *)&un, SA(d4));
    CHECK(n == 15 && memcmp(out, "PROXY UNKNOWN\r\n", 15) == 0);
    n = tf_proxy_v1_encode(out, sizeof(out), SA(s6), SA(d6));
    const char *e6 = "PROXY TCP6 2001:db8::1 2001:db8::2 40000 443\r\n";
    CHECK(n == strlen(e6) && memcmp(out, e6, n) == 0);
    /* A dual-stack socket reports IPv4 clients as IPv4-mapped: written as TCP4. */
    n = tf_proxy_v1_encode(out, sizeof(out), SA(m4), SA(d4));
    const char *e4 = "PROXY TCP4 10.0.0.1 10.0.0.2 1234 443\r\n";
    CHECK(n == strlen(e4) && memcmp(out, e4, n) == 0);
    /* Mixed families become TCP6 with the IPv4 side mapped. */
    n = tf_proxy_v1_encode(out, sizeof(out), SA(d4), SA(d6));
    const char *em = "PROXY TCP6 ::ffff:10.0.0.2 2001:db8::2 443 443\r\n";
    CHECK(n == strlen(em) && memcmp(out, em, n) == 0);
    /* Too small a buffer: 0, never a partial header. */
    int bad = 0;
    for (size_t cap = 0; cap < strlen(e6); cap++)
        if (tf_proxy_v1_encode(out, cap, SA(s6), SA(d6)) != 0)
            bad++;
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(tf_proxy_v1_encode(out, strlen(e6), SA(s6), SA(d6)), strlen(e6));
}

static void test_v2_bytes_ipv4(void)
{
    static const unsigned char want[] = {
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, /* sig */
        0x21, 0x11, 0x00, 0x0C,                                                 /* PROXY TCP4 */
        192,  168,  0,    1,    192,  168,  0,    11,   0xDC, 0x04, 0x01, 0xBB};
    struct sockaddr_storage s = ip("192.168.0.1", 56324), d = ip("192.168.0.11", 443);
    unsigned char out[TF_PROXY_V2_ENCODE_MAX];
    struct tf_proxy_result r;

    size_t n = tf_proxy_v2_encode(out, sizeof(out), SA(s), SA(d), NULL);
    CHECK_EQ_INT(n, sizeof(want));
    CHECK(n == sizeof(want) && memcmp(out, want, n) == 0);
    CHECK_EQ_INT(tf_proxy_parse(want, sizeof(want), &r), (int)sizeof(want));
    CHECK(r.version == 2 && r.command == TF_PROXY_CMD_PROXY && r.family == AF_INET);
    CHECK(r.has_addr && same_addr(&r.src, &s) && same_addr(&r.dst, &d));
    CHECK(!r.has_authority && !r.has_ssl);
    check_incremental(want, sizeof(want));
    int bad = 0;
    for (size_t cap = 0; cap < sizeof(want); cap++)
        if (tf_proxy_v2_encode(out, cap, SA(s), SA(d), NULL) != 0)
            bad++;
    CHECK_EQ_INT(bad, 0);
}

static void test_v2_roundtrip_tlvs(void)
{
    struct sockaddr_storage s = ip("2001:db8::17", 51000), d = ip("2001:db8::1", 8443);
    struct tf_proxy_tlv_info info = {.authority = "www.example.com",
                                     .ssl = true,
                                     .ssl_version = "TLSv1.3",
                                     .ssl_cipher = "TLS_AES_256_GCM_SHA384"};
    unsigned char out[TF_PROXY_V2_ENCODE_MAX];
    struct tf_proxy_result r;

    size_t n = tf_proxy_v2_encode(out, sizeof(out), SA(s), SA(d), &info);
    /* 16 + 36 + (3 + 15) + (3 + 5 + (3 + 7) + (3 + 22)) */
    CHECK_EQ_INT(n, 16 + 36 + 18 + 43);
    CHECK_EQ_INT(out[13], 0x21);
    CHECK_EQ_INT((out[14] << 8) | out[15], n - 16);
    CHECK_EQ_INT(out[52], TF_PP2_TYPE_AUTHORITY);
    CHECK_EQ_INT(out[70], TF_PP2_TYPE_SSL);
    CHECK_EQ_INT(out[73], TF_PP2_CLIENT_SSL);
    CHECK_EQ_INT(tf_proxy_parse(out, n, &r), (int)n);
    CHECK(r.family == AF_INET6 && same_addr(&r.src, &s) && same_addr(&r.dst, &d));
    CHECK(r.has_authority);
    CHECK_EQ_STR(r.authority, "www.example.com");
    CHECK(r.has_ssl && r.ssl_client == TF_PP2_CLIENT_SSL && r.ssl_verify == 0);
    CHECK_EQ_STR(r.ssl_version, "TLSv1.3");
    CHECK_EQ_STR(r.ssl_cipher, "TLS_AES_256_GCM_SHA384");
    check_incremental(out, n);
    int bad = 0;
    for (size_t cap = 0; cap < n; cap++)
        if (tf_proxy_v2_encode(out, cap, SA(s), SA(d), &info) != 0)
            bad++;
    CHECK_EQ_INT(bad, 0);

    /* Non-IP families: UNSPEC with the TLVs only. */
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    struct tf_proxy_tlv_info sni = {.authority = "a.example"};
    n = tf_proxy_v2_encode(out, sizeof(out), (const struct sockaddr *)&un, SA(d), &sni);
    CHECK_EQ_INT(n, 16 + 3 + 9);
    CHECK_EQ_INT(out[13], 0x00);
    CHECK_EQ_INT(tf_proxy_parse(out, n, &r), (int)n);
    CHECK(!r.has_addr && r.family == AF_UNSPEC && r.has_authority);
}

/* A hand-built v2 header: fixed part with ver_cmd/fam, then body bytes. */
static size_t v2_hdr(unsigned char *out, unsigned vc, unsigned fam, const void *body, size_t blen)
{
    memcpy(out, TF_PROXY_V2_SIG, 12);
    out[12] = (unsigned char)vc;
    out[13] = (unsigned char)fam;
    out[14] = (unsigned char)(blen >> 8);
    out[15] = (unsigned char)blen;
    memcpy(out + 16, body, blen);
    return 16 + blen;
}

static void test_v2_local_unspec_unknown_tlvs(void)
{
    unsigned char h[512], body[256];
    struct tf_proxy_result r;
    memset(body, 0xAB, sizeof(body));

    /* LOCAL with a garbage block and an unsupported family: accepted, addresses ignored. */
    size_t n = v2_hdr(h, 0x20, 0x22, body, 7);
    CHECK_EQ_INT(tf_proxy_parse(h, n, &r), (int)n);
    CHECK(r.command == TF_PROXY_CMD_LOCAL && !r.has_addr);
    /* PROXY + UNSPEC, no block. */
    n = v2_hdr(h, 0x21, 0x00, body, 0);
    CHECK_EQ_INT(tf_proxy_parse(h, n, &r), 16);
    CHECK(r.command == TF_PROXY_CMD_PROXY && !r.has_addr && r.family == AF_UNSPEC);
    /* UNIX stream: accepted, no IP address. */
    n = v2_hdr(h, 0x21, 0x31, body, 216);
    CHECK_EQ_INT(tf_proxy_parse(h, n, &r), (int)n);
    CHECK(r.family == AF_UNIX && !r.has_addr);
    /* IPv4 + NOOP, unknown 0xE0 and CRC32C TLVs skipped, then AUTHORITY. */
    unsigned char b[] = {1,    2,    3,    4, 5,    6,    7,    8,    0,   80,   1,    187,
                         0x04, 0x00, 0x02, 0, 0,    0xE0, 0x00, 0x01, 'x', 0x03, 0x00, 0x04,
                         1,    2,    3,    4, 0x02, 0x00, 0x03, 'a',  '.', 'b'};
    n = v2_hdr(h, 0x21, 0x11, b, sizeof(b));
    CHECK_EQ_INT(tf_proxy_parse(h, n, &r), (int)n);
    CHECK(r.has_addr && r.has_authority && !r.has_ssl);
    CHECK_EQ_STR(r.authority, "a.b");
    struct sockaddr_storage ws = ip("1.2.3.4", 80), wd = ip("5.6.7.8", 443);
    CHECK(same_addr(&r.src, &ws) && same_addr(&r.dst, &wd));
    /* SSL with a CN sub-TLV (ignored) and verify = 1. */
    unsigned char s[] = {1,    2,    3, 4, 5, 6, 7,    8,    0,    80,  1,    187,  0x20, 0x00,
                         0x0C, 0x07, 0, 0, 0, 1, 0x22, 0x00, 0x01, 'c', 0x21, 0x00, 0x00};
    n = v2_hdr(h, 0x21, 0x11, s, sizeof(s));
    CHECK_EQ_INT(tf_proxy_parse(h, n, &r), (int)n);
    CHECK(r.has_ssl && r.ssl_client == 7 && r.ssl_verify == 1 && r.ssl_version[0] == '\0');
}

static void test_oversized(void)
{
    unsigned char h[16 + 8192];
    unsigned char body[8192];
    struct tf_proxy_result r;
    memset(body, 0, sizeof(body));
    memcpy(body, "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x50\x01\xbb", 12);
    body[12] = 0x04; /* NOOP TLV filling the rest */
    body[13] = (unsigned char)((5000 - 15) >> 8);
    body[14] = (unsigned char)(5000 - 15);
    size_t n = v2_hdr(h, 0x21, 0x11, body, 5000);
    /* Known to be too big as soon as the fixed 16 bytes are in. */
    CHECK_EQ_INT(tf_proxy_parse(h, 15, &r), 0);
    CHECK_EQ_INT(tf_proxy_parse(h, 16, &r), TF_ETOOBIG);
    CHECK_EQ_INT(tf_proxy_parse(h, n, &r), TF_ETOOBIG);
    /* A larger configured cap accepts it. */
    CHECK_EQ_INT(tf_proxy_parse_cap(h, 4000, 8192, &r), 0);
    CHECK_EQ_INT(tf_proxy_parse_cap(h, n, 8192, &r), (int)n);
    CHECK_EQ_INT(tf_proxy_parse_cap(h, n, n - 1, &r), TF_ETOOBIG);

    /* v1 with no CRLF in the first 107 bytes. */
    char v1[200];
    memset(v1, 'x', sizeof(v1));
    memcpy(v1, "PROXY UNKNOWN ", 14);
    CHECK_EQ_INT(tf_proxy_parse((unsigned char *)v1, 106, &r), 0);
    CHECK_EQ_INT(tf_proxy_parse((unsigned char *)v1, 107, &r), TF_EPROTO);
    CHECK_EQ_INT(tf_proxy_parse((unsigned char *)v1, sizeof(v1), &r), TF_EPROTO);
    /* CRLF ending at byte 108: one byte over the limit. */
    memcpy(v1 + 106, "\r\n", 2);
    CHECK_EQ_INT(tf_proxy_parse((unsigned char *)v1, 108, &r), TF_EPROTO);
    memcpy(v1 + 105, "\r\n", 2);
    CHECK_EQ_INT(tf_proxy_parse((unsigned char *)v1, 108, &r), 107);
}

static void test_garbage(void)
{
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\n",
        "\x16\x03\x01\x02\x00\x01",
        "PROXX",
        "proxy TCP4",
        "P\r\n",
        "\r\n\r\n\x00\r\nQUIX",
        "\r\n\r\n\x01",
        " PROXY",
        "\x00\x00\x00",
    };
    struct tf_proxy_result r;
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        size_t n = strlen(bad[i]);
        if (i == 5)
            n = 12;
        if (i == 6 || i == 8)
            n = i == 6 ? 5 : 3;
        int rc = tf_proxy_parse((const unsigned char *)bad[i], n, &r);
        if (rc != TF_EPROTO)
            fprintf(stderr, "garbage %zu: rc %d\n", i, rc);
        CHECK_EQ_INT(rc, TF_EPROTO);
    }
    /* Prefixes of either signature wait for more. */
    CHECK_EQ_INT(tf_proxy_parse((const unsigned char *)"PROX", 4, &r), 0);
    CHECK_EQ_INT(tf_proxy_parse((const unsigned char *)"\r\n\r\n\0\r\nQU", 9, &r), 0);
    CHECK_EQ_INT(tf_proxy_parse((const unsigned char *)"", 0, &r), 0);
}

static void test_v1_malformed(void)
{
    static const char *const bad[] = {
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",       /* bare LF */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",      /* CR without LF */
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",     /* unknown protocol */
        "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",    /* double space */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",       /* missing port */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",   /* extra field */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",    /* trailing space */
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", /* port out of range */
        "PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n",   /* leading zero */
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",    /* sign */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1a 2\r\n",    /* not a number */
        "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",       /* short IPv4 */
        "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",   /* octet out of range */
        "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",         /* IPv6 in TCP4 */
        "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",         /* IPv4 in TCP6 */
        "PROXY TCP6 ::1 ::g 1 2\r\n",             /* bad IPv6 */
        "PROXY TCP4\r\n",                         /* no addresses */
        "PROXY \r\n",                             /* nothing */
        "PROXY UNKNOWNX\r\n",                     /* not UNKNOWN */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",   /* CR CR LF */
    };
    struct tf_proxy_result r;
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        int rc = tf_proxy_parse((const unsigned char *)bad[i], strlen(bad[i]), &r);
        if (rc != TF_EPROTO)
            fprintf(stderr, "v1 malformed %zu: rc %d\n", i, rc);
        CHECK_EQ_INT(rc, TF_EPROTO);
        CHECK(!r.has_addr);
    }
}

static void test_v2_malformed(void)
{
    unsigned char h[512];
    unsigned char a4[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
    unsigned char t[64];
    struct tf_proxy_result r;
    struct {
        unsigned vc, fam;
        const unsigned char *extra;
        size_t extra_len;
        size_t addr_len;
    } cases[] = {
        {0x11, 0x11, NULL, 0, 12}, /* version 1 in v2 header */
        {0x31, 0x11, NULL, 0, 12}, /* version 3 */
        {0x22, 0x11, NULL, 0, 12}, /* command 2 */
        {0x21, 0x41, NULL, 0, 12}, /* family 4 */
        {0x21, 0x13, NULL, 0, 12}, /* protocol 3 */
        {0x21, 0x12, NULL, 0, 12}, /* UDP on a stream listener */
        {0x21, 0x11, NULL, 0, 11}, /* IPv4 block too short */
        {0x21, 0x21, NULL, 0, 12}, /* IPv6 block too short */
        {0x21, 0x11, (const unsigned char *)"\x04\x00\x0a\x01\x02", 5, 12}, /* TLV overrun */
        {0x21, 0x11, (const unsigned char *)"\x04\x00", 2, 12},             /* partial TLV header */
        {0x21, 0x11, (const unsigned char *)"\x02\x00\x03\x61\x00\x62", 6, 12},     /* NUL */
        {0x21, 0x11, (const unsigned char *)"\x02\x00\x00", 3, 12},                 /* empty */
        {0x21, 0x11, (const unsigned char *)"\x20\x00\x04\x01\x00\x00\x00", 7, 12}, /* SSL */
        {0x21, 0x11, (const unsigned char *)"\x20\x00\x08\x01\x00\x00\x00\x00\x21\x00\x05", 11,
         12}, /* SSL sub-TLV overruns the SSL TLV */
    };
    for (size_t i = 0; i < TF_ARRAY_LEN(cases); i++) {
        size_t bl = cases[i].addr_len;
        memset(t, 0, sizeof(t));
        memcpy(t, a4, TF_MIN(bl, sizeof(a4)));
        if (cases[i].extra)
            memcpy(t + bl, cases[i].extra, cases[i].extra_len);
        size_t n = v2_hdr(h, cases[i].vc, cases[i].fam, t, bl + cases[i].extra_len);
        int rc = tf_proxy_parse(h, n, &r);
        if (rc != TF_EPROTO)
            fprintf(stderr, "v2 malformed %zu: rc %d\n", i, rc);
        CHECK_EQ_INT(rc, TF_EPROTO);
        CHECK(!r.has_addr && !r.has_authority);
    }
}

int main(void)
{
    TF_TEST_RUN(test_v1_spec_examples);
    TF_TEST_RUN(test_v1_encode_families);
    TF_TEST_RUN(test_v2_bytes_ipv4);
    TF_TEST_RUN(test_v2_roundtrip_tlvs);
    TF_TEST_RUN(test_v2_local_unspec_unknown_tlvs);
    TF_TEST_RUN(test_oversized);
    TF_TEST_RUN(test_garbage);
    TF_TEST_RUN(test_v1_malformed);
    TF_TEST_RUN(test_v2_malformed);
    return TF_TEST_DONE();
}
