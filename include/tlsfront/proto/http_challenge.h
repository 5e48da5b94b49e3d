/*
 * http_challenge.h: the ACME HTTP-01 request path (RFC 8555 §8.3): recognises
 * "/.well-known/acme-challenge/<token>" in a request target and checks the token, so that
 * the redirect listener answers only well-formed tokens and nothing it reads can reach a
 * lookup key or a log line unchecked. Pure: no I/O.
 */
#ifndef TF_HTTP_CHALLENGE_H
#define TF_HTTP_CHALLENGE_H

#include <stddef.h>

#define TF_HTTP_CHALLENGE_PREFIX "/.well-known/acme-challenge/"
/* The longest token accepted (RFC 8555 asks for at least 128 bits of entropy: Let's Encrypt
 * sends 43 characters). */
#define TF_HTTP_TOKEN_MAX 128

enum tf_http_challenge {
    TF_HTTP_CHALLENGE_NONE = 0, /* not under the prefix: an ordinary request */
    TF_HTTP_CHALLENGE_TOKEN,    /* the prefix and one valid token, copied into out */
    TF_HTTP_CHALLENGE_BAD,      /* under the prefix, but no valid token (answer 404) */
};

/* Classify the request target (origin form, len bytes, not NUL-terminated). A valid token
 * is 1..TF_HTTP_TOKEN_MAX base64url characters ([A-Za-z0-9_-], RFC 8555 §8.1) ending the
 * target: a query, a further '/', percent-encoding or any other byte makes it BAD. out
 * (TF_HTTP_TOKEN_MAX + 1 bytes) gets the NUL-terminated token for TOKEN only. */
enum tf_http_challenge tf_http_challenge_token(const char *target, size_t len, char *out);

#endif
