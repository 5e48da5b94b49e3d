/*
 * http_challenge.c: the HTTP-01 request path (include/tlsfront/proto/http_challenge.h).
 * Pure: no I/O, no allocation.
 */
#include "tlsfront/proto/http_challenge.h"

#include <string.h>

static int b64url_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

enum tf_http_challenge tf_http_challenge_token(const char *target, size_t len, char *out)
{
    const size_t plen = sizeof(TF_HTTP_CHALLENGE_PREFIX) - 1;
    if (len < plen || memcmp(target, TF_HTTP_CHALLENGE_PREFIX, plen) != 0)
        return TF_HTTP_CHALLENGE_NONE;
    const char *tok = target + plen;
    size_t n = len - plen;
    if (n == 0 || n > TF_HTTP_TOKEN_MAX)
        return TF_HTTP_CHALLENGE_BAD;
    for (size_t i = 0; i < n; i++)
        if (!b64url_char((unsigned char)tok[i]))
            return TF_HTTP_CHALLENGE_BAD;
    memcpy(out, tok, n);
    out[n] = '\0';
    return TF_HTTP_CHALLENGE_TOKEN;
}
