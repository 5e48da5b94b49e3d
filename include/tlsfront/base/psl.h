/*
 * psl.h: the registered domain ("eTLD+1") of a host name, from the Public Suffix List via
 * Debian's libpsl (ICANN and private sections, as Let's Encrypt counts its per-domain limit).
 * The list is loaded once per process and read-only afterwards, so every call is thread-safe.
 * Link with -lpsl (pkg-config libpsl).
 */
#ifndef TF_PSL_H
#define TF_PSL_H

#include <stddef.h>

/* Write the registered domain of name (normalised: lower case, no trailing dot) into out
 * (capacity cap), e.g. "a.b.example.co.uk" -> "example.co.uk". A name under an unknown TLD
 * gets the implicit "*" rule ("a.b.test" -> "b.test"). Returns 0, TF_EINVAL when name is
 * itself a public suffix (or empty), TF_ETOOBIG when out is too small, TF_ENOTFOUND when no
 * list could be loaded. */
int tf_psl_registered_domain(const char *name, char *out, size_t cap);

/* A short description of the list in use ("libpsl 0.21.2, /usr/share/...dafsa") for logs. */
const char *tf_psl_source(void);

#endif
