/*
 * name.h: DNS names as tlsfront sees them in SNI, routes and gates. Normalisation (lower
 * case, one trailing dot stripped) and validation (LDH labels of 1..63, total <= 253, at
 * least two labels, no IP literals, no empty labels), and one-label wildcard matching.
 * Pure functions, no allocation.
 */
#ifndef TF_NAME_H
#define TF_NAME_H

#include <stdbool.h>
#include <stddef.h>

#define TF_NAME_MAX 253

/* Normalise in[0..len) into out (capacity >= TF_NAME_MAX + 1). Returns 0, or TF_EINVAL when
 * the name is not a valid host name (see above); out is then an empty string. */
int tf_name_normalize(const char *in, size_t len, char *out);

/* True when pattern ("a.example.com" or "*.example.com", already lower-case) matches the
 * normalised name; a wildcard covers exactly one label. */
bool tf_name_match(const char *pattern, const char *name);

/* The local half of the on-demand decision, for a worker's early refusal as well as the
 * gate: false when allow patterns are given and none matches name, or when there are neither
 * patterns nor an ask URL. true means allowed when ask is false, and "ask the endpoint" when
 * it is true. Pure: safe from any thread. */
bool tf_name_may_issue(char *const *allow, int n_allow, bool ask, const char *name);

/* The most specific of n patterns matching name: an exact one, else the first "*.parent"
 * wildcard. The patterns are the char * field at byte offset off in each of n items of
 * size stride from base (an array of routes, of profiles, ...). Returns its index or -1. */
int tf_name_pick(const void *base, int n, size_t stride, size_t off, const char *name);

/* True when pattern is a valid route/allow pattern: a valid name, or "*." + a valid name
 * (already lower-case); false for NULL. Also the check of every name that goes into a CSR or
 * a TLS-ALPN-01 certificate: tlsfront has one name validator. */
bool tf_name_pattern_valid(const char *pattern);

#endif
