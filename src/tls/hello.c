/*
 * hello.c: the ClientHello extension parsers of hello.h. Everything here is read from an
 * untrusted peer: every length is checked against the bytes that remain before it is used,
 * and nothing is read outside the buffer given. Pure functions; no I/O, no logging.
 */
#include "tlsfront/tls/hello.h"

#include <string.h>

#define HOST_NAME_TYPE 0 /* RFC 6066 §3: NameType host_name */

int tf_hello_sni(const unsigned char *p, size_t len, const unsigned char **name,
                 size_t *name_len)
{
    if (len < 2)
        return -1;
    size_t list = ((size_t)p[0] << 8) | p[1];
    if (list != len - 2)
        return -1;
    p += 2;
    len -= 2;
    while (len >= 3) {
        unsigned type = p[0];
        size_t n = ((size_t)p[1] << 8) | p[2];
        if (n > len - 3)
            return -1;
        if (type == HOST_NAME_TYPE) {
            *name = p + 3;
            *name_len = n;
            return 1;
        }
        p += 3 + n;
        len -= 3 + n;
    }
    return len == 0 ? 0 : -1;
}

bool tf_hello_alpn_offers(const unsigned char *p, size_t len, const char *proto)
{
    if (len < 2)
        return false;
    size_t list = ((size_t)p[0] << 8) | p[1];
    if (list != len - 2)
        return false;
    size_t want = strlen(proto);
    for (size_t i = 2; i < len;) {
        size_t l = p[i];
        if (i + 1 + l > len)
            return false;
        if (l == want && memcmp(p + i + 1, proto, l) == 0)
            return true;
        i += 1 + l;
    }
    return false;
}

int tf_hello_alpn_pick(const unsigned char *in, size_t inlen, char *const *want, int n,
                       const unsigned char **out, unsigned char *outlen)
{
    for (int i = 0; i < n; i++) {
        size_t wl = strlen(want[i]);
        for (size_t p = 0; p < inlen;) {
            size_t l = in[p];
            if (p + 1 + l > inlen)
                return -1;
            if (l == wl && memcmp(in + p + 1, want[i], wl) == 0) {
                *out = in + p + 1;
                *outlen = (unsigned char)l;
                return 1;
            }
            p += 1 + l;
        }
    }
    return 0;
}
