/*
 * b64url.c: base64url (RFC 4648 §5), the encoding every ACME and JOSE field uses. Encoding
 * never emits padding (RFC 7515 §2); decoding accepts correct trailing padding but rejects any
 * character outside the URL-safe alphabet, including '+', '/' and a '=' that is not trailing.
 * Pure functions: no state, no I/O, results owned by the caller (free()).
 */
#include "tlsfront/base/common.h"
#include "tlsfront/base/b64url.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Encode len bytes of data; the result is NUL-terminated and never padded. */
char *tf_b64url_encode(const void *data, size_t len)
{
    const unsigned char *in = data;
    size_t full = len / 3, rest = len % 3;
    char *out = tf_malloc(full * 4 + (rest ? rest + 1 : 0) + 1);
    char *p = out;
    for (size_t i = 0; i < full; i++, in += 3) {
        uint32_t v = ((uint32_t)in[0] << 16) | ((uint32_t)in[1] << 8) | in[2];
        *p++ = b64url_alphabet[(v >> 18) & 63];
        *p++ = b64url_alphabet[(v >> 12) & 63];
        *p++ = b64url_alphabet[(v >> 6) & 63];
        *p++ = b64url_alphabet[v & 63];
    }
    if (rest) {
        uint32_t v = (uint32_t)in[0] << 16;
        if (rest == 2)
            v |= (uint32_t)in[1] << 8;
        *p++ = b64url_alphabet[(v >> 18) & 63];
        *p++ = b64url_alphabet[(v >> 12) & 63];
        if (rest == 2)
            *p++ = b64url_alphabet[(v >> 6) & 63];
    }
    *p = '\0';
    return out;
}

/* The 6-bit value of a base64url character, or -1 for anything else. */
static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/*
 * Padding is optional, but when present it must make the length a multiple of four, so at most
 * two '=' may end the input. A single leftover character (length % 4 == 1) cannot encode a
 * byte and is rejected. Unused low bits of the last character are ignored (RFC 4648 §3.5
 * allows either choice; ACME servers are not known to emit non-canonical forms).
 */
int tf_b64url_decode(const char *s, size_t slen, unsigned char **out, size_t *outlen)
{
    size_t n = slen, pad = 0;
    while (n > 0 && s[n - 1] == '=' && pad < 2) {
        n--;
        pad++;
    }
    if ((pad && slen % 4 != 0) || n % 4 == 1)
        return TF_EINVAL;
    unsigned char *buf = tf_malloc(n / 4 * 3 + 2);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0) {
            free(buf);
            return TF_EINVAL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *out = buf;
    *outlen = o;
    return 0;
}
