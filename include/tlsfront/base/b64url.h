/*
 * b64url.h: base64url (RFC 4648 §5) without padding, as JOSE and ACME use it. Pure functions;
 * every heap result belongs to the caller (free()).
 */
#ifndef TF_B64URL_H
#define TF_B64URL_H

#include <stddef.h>

char *tf_b64url_encode(const void *data, size_t len);
/* Decode (padding optional, rejects characters outside the base64url alphabet).
 * Returns 0 and a malloc'd *out, or TF_EINVAL. */
int tf_b64url_decode(const char *s, size_t slen, unsigned char **out, size_t *outlen);

#endif
