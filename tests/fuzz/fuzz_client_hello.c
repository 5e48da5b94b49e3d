/*
 * fuzz_client_hello.c: libFuzzer target for what the ClientHello callback reads from a peer:
 * the server_name and ALPN extension bodies (hello.c) and SNI normalisation and matching
 * (name.c). The first byte picks the shape: a raw server_name body, an SNI body built
 * around the input as a host_name (so normalisation sees many names), a raw ALPN body, or
 * a "pattern NUL name" pair for tf_name_match.
 * Checked: nothing is read out of bounds (ASan); an extracted name lies inside the input;
 * a normalised name is lower case LDH, at most TF_NAME_MAX bytes, normalises to itself and
 * matches itself; ALPN offers and picks agree, and a pick points inside the input at one of
 * the wanted protocols.
 */
#include "tlsfront/base/common.h"
#include "tlsfront/tls/hello.h"
#include "tlsfront/base/name.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_name(const unsigned char *raw, size_t len)
{
    char out[TF_NAME_MAX + 1], again[TF_NAME_MAX + 1];
    if (tf_name_normalize((const char *)raw, len, out) != 0) {
        if (out[0] != '\0')
            abort();
        return;
    }
    size_t n = strlen(out);
    if (n == 0 || n > TF_NAME_MAX)
        abort();
    for (size_t i = 0; i < n; i++)
        if (!((out[i] >= 'a' && out[i] <= 'z') || (out[i] >= '0' && out[i] <= '9') ||
              out[i] == '-' || out[i] == '.'))
            abort();
    if (tf_name_normalize(out, n, again) != 0 || strcmp(out, again) != 0)
        abort();
    if (!tf_name_match(out, out) || !tf_name_pattern_valid(out))
        abort();
}

static void sni(const unsigned char *p, size_t len)
{
    const unsigned char *name = NULL;
    size_t nl = 0;
    int rc = tf_hello_sni(p, len, &name, &nl);
    if (rc < -1 || rc > 1)
        abort();
    if (rc == 1) {
        if (name < p || name + nl > p + len)
            abort();
        check_name(name, nl);
    }
}

/* The input as the host_name of a well-formed server_name body. */
static void sni_wrapped(const unsigned char *d, size_t n)
{
    if (n > 0xfff0)
        return;
    unsigned char *b = malloc(n + 5);
    size_t list = n + 3;
    b[0] = (unsigned char)(list >> 8);
    b[1] = (unsigned char)list;
    b[2] = 0;
    b[3] = (unsigned char)(n >> 8);
    b[4] = (unsigned char)n;
    memcpy(b + 5, d, n);
    const unsigned char *name = NULL;
    size_t nl = 0;
    if (tf_hello_sni(b, n + 5, &name, &nl) != 1 || nl != n || name != b + 5)
        abort();
    check_name(name, nl);
    free(b);
}

static void alpn(const unsigned char *p, size_t len)
{
    static char *const want[] = {"h2", "http/1.1", "acme-tls/1"};
    for (size_t i = 0; i < TF_ARRAY_LEN(want); i++) {
        bool offered = tf_hello_alpn_offers(p, len, want[i]);
        const unsigned char *out = NULL;
        unsigned char ol = 0;
        /* The select callback gets the list without its 2-byte length. */
        int rc = len >= 2 ? tf_hello_alpn_pick(p + 2, len - 2, &want[i], 1, &out, &ol) : 0;
        if (rc == 1 && (out < p + 2 || out + ol > p + len || ol != strlen(want[i]) ||
                        memcmp(out, want[i], ol) != 0))
            abort();
        if (offered && rc != 1)
            abort();
    }
    const unsigned char *out = NULL;
    unsigned char ol = 0;
    if (tf_hello_alpn_pick(p, len, want, (int)TF_ARRAY_LEN(want), &out, &ol) == 1 &&
        (out < p || out + ol > p + len))
        abort();
}

static void match(const unsigned char *d, size_t n)
{
    const unsigned char *nul = memchr(d, 0, n);
    if (!nul)
        return;
    char *pattern = tf_strndup((const char *)d, (size_t)(nul - d));
    char name[TF_NAME_MAX + 1];
    size_t rest = n - (size_t)(nul - d) - 1;
    if (tf_name_pattern_valid(pattern) &&
        tf_name_normalize((const char *)nul + 1, rest, name) == 0) {
        bool m = tf_name_match(pattern, name);
        /* An exact pattern matches exactly its own name. */
        if (pattern[0] != '*' && m != (strcmp(pattern, name) == 0))
            abort();
    }
    free(pattern);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    /* Copies, so ASan sees reads past the exact end of what the peer sent. */
    size_t n = size - 1;
    unsigned char *d = malloc(n ? n : 1);
    memcpy(d, data + 1, n);
    switch (data[0] % 4) {
    case 0:
        sni(d, n);
        break;
    case 1:
        sni_wrapped(d, n);
        break;
    case 2:
        alpn(d, n);
        break;
    default:
        match(d, n);
        break;
    }
    free(d);
    return 0;
}
