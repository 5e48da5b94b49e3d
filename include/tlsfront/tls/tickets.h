/*
 * tickets.h: TLS session ticket keys. A key ring is an immutable, refcounted snapshot
 * (newest key first, plus the previous ones still accepted for decryption). The control loop
 * rotates it on a timer and hands the new ring to every worker; the OpenSSL ticket callback
 * reads the worker's ring with no lock.
 */
#ifndef TF_TICKETS_H
#define TF_TICKETS_H

#include "tlsfront/base/common.h"

#include <openssl/ssl.h>

#define TF_TICKET_KEYS 3

struct tf_ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
};

struct tf_ticket_ring {
    struct tf_ref ref;
    int n;
    struct tf_ticket_key keys[TF_TICKET_KEYS]; /* keys[0] encrypts; all decrypt */
    EVP_CIPHER *aes;             /* AES-256-CBC fetched once: no implicit fetch per ticket */
};

/* A new ring: a fresh random key first, then up to TF_TICKET_KEYS-1 keys of prev (may be
 * NULL). Returns NULL if the random generator fails. */
struct tf_ticket_ring *tf_tickets_rotate(const struct tf_ticket_ring *prev);
void tf_tickets_ref(struct tf_ticket_ring *r);
void tf_tickets_unref(struct tf_ticket_ring *r);

/* The OpenSSL callback body: ring is the caller's current ring (may be NULL: no tickets).
 * Same contract as SSL_CTX_set_tlsext_ticket_key_evp_cb's callback. */
int tf_tickets_cb(const struct tf_ticket_ring *ring, unsigned char key_name[16],
                  unsigned char *iv, EVP_CIPHER_CTX *ctx, EVP_MAC_CTX *hctx, int enc);

#endif
