/*
 * hello.h: pure parsing of the ClientHello extension bodies tlsfront reads itself: the
 * server_name list (RFC 6066 §3) and the ALPN protocol list (RFC 7301 §3.1). No allocation,
 * no OpenSSL, no logging: the handshake callbacks in tls.c hand over the bytes, and the
 * fuzz target tests/fuzz/fuzz_client_hello.c drives the same functions.
 */
#ifndef TF_HELLO_H
#define TF_HELLO_H

#include <stdbool.h>
#include <stddef.h>

/* The host_name in a server_name extension body p[0..len). Returns 1 with *name (borrowed,
 * inside p, not NUL-terminated) and *name_len set, 0 when the list holds no host_name, -1
 * when the body is malformed. */
int tf_hello_sni(const unsigned char *p, size_t len, const unsigned char **name,
                 size_t *name_len);

/* True when an ALPN extension body p[0..len) (2-byte list length, then length-prefixed
 * names) offers proto. A malformed list offers nothing. */
bool tf_hello_alpn_offers(const unsigned char *p, size_t len, const char *proto);

/* Server preference over the client's protocol list in[0..inlen) (length-prefixed names,
 * as OpenSSL's ALPN select callback gets it): the first of want[0..n) the client offers.
 * Returns 1 with *out (inside in) and *outlen set, 0 when nothing overlaps, -1 when the list
 * turns out malformed while it is scanned. */
int tf_hello_alpn_pick(const unsigned char *in, size_t inlen, char *const *want, int n,
                       const unsigned char **out, unsigned char *outlen);

#endif
