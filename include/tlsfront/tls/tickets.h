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

/* Ticket IVs (AES-CBC: each must be unpredictable; once used it is public, in the ticket),
 * drawn from the library context's random generator TF_TICKET_IV_BATCH at a time: one
 * RAND_bytes_ex, with the getpid() system call of its fork check, per batch instead of per
 * ticket. One per worker, touched only on its thread; all zero is empty. (tlsfront does not
 * fork, so no two processes hold the same batch.) */
#define TF_TICKET_IV_BATCH 64
struct tf_ticket_ivs {
    unsigned left; /* unused IVs at the start of buf */
    unsigned char buf[TF_TICKET_IV_BATCH * EVP_MAX_IV_LENGTH];
};

/* A new ring: a fresh random key first, then up to TF_TICKET_KEYS-1 keys of prev (may be
 * NULL). Returns NULL if the random generator fails. */
struct tf_ticket_ring *tf_tickets_rotate(const struct tf_ticket_ring *prev);
/* A ring holding copies of keys[0..n) (1 <= n <= TF_TICKET_KEYS; a cluster's shared ring,
 * read from the store). Returns NULL for a bad n or when the cipher cannot be fetched. */
struct tf_ticket_ring *tf_tickets_from_keys(const struct tf_ticket_key *keys, int n);
void tf_tickets_ref(struct tf_ticket_ring *r);
void tf_tickets_unref(struct tf_ticket_ring *r);

/* The OpenSSL callback body: ring is the caller's current ring (may be NULL: no tickets), lib
 * the library context whose random generator makes the IVs (the worker's, tls.h; NULL: the
 * default), ivs the caller's batch of them. Same contract as the callback of
 * SSL_CTX_set_tlsext_ticket_key_evp_cb. A ticket that decrypts returns 2 (renew: OpenSSL
 * issues a fresh ticket in this handshake) when it was sealed with an older key or when
 * renew is set, 1 otherwise (no new ticket). The caller sets renew for
 * TLS 1.3, whose clients use each ticket once (RFC 8446, C.4): a resumption that hands out
 * no ticket leaves the client nothing for its next connection. */
int tf_tickets_cb(const struct tf_ticket_ring *ring, OSSL_LIB_CTX *lib, struct tf_ticket_ivs *ivs,
                  unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *ctx,
                  EVP_MAC_CTX *hctx, int enc, bool renew);

#endif
