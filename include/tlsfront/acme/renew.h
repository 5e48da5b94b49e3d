/*
 * renew.h: when to renew a certificate, as pure functions (no I/O, no clock, no randomness
 * of their own: the caller passes "now" and a random number so tests are exact). Two
 * policies: ARI (RFC 9773), a window the CA suggests and a random time inside it; and the
 * fallback of renewing when one third of the lifetime remains, a little early by jitter.
 */
#ifndef TF_RENEW_H
#define TF_RENEW_H

#include <openssl/x509.h>
#include <stdint.h>

/* Renewal time with a third of the lifetime left, moved earlier by a jitter of up to 1/20
 * of the lifetime (spreads renewals of certificates issued together). rnd is any random
 * 32-bit number. Never earlier than not_before. */
int64_t tf_renew_time(int64_t not_before, int64_t not_after, uint32_t rnd);

/* RFC 3339 date-time ("2025-01-02T04:05:06Z", fractional seconds, "+hh:mm" offsets) to unix
 * seconds. Returns 0, or TF_EINVAL. */
int tf_renew_parse_rfc3339(const char *s, int64_t *out);

/* A renewalInfo response (RFC 9773 §4.2): {"suggestedWindow":{"start":..,"end":..},
 * "explanationURL":..}. Returns 0 with *start < *end, and *explanation (NULL or a new
 * string); or TF_EINVAL with err filled. */
int tf_renew_parse_ari(const char *body, size_t len, int64_t *start, int64_t *end,
                       char **explanation, char *err, size_t errlen);

/* A uniformly random time in [start, end) (RFC 9773 §4.2); start when end <= start. */
int64_t tf_renew_pick(int64_t start, int64_t end, uint64_t rnd);

/* The ARI certID (RFC 9773 §4.1): base64url(AKI keyIdentifier) "." base64url(serial DER
 * content octets). A new string, or NULL when the certificate has no AKI keyIdentifier. */
char *tf_renew_cert_id(X509 *cert);

#endif
