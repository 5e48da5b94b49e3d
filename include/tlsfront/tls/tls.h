/*
 * tls.h: what every server TLS context shares: the per-certificate contexts that the
 * certificate loader builds, the ALPN callback (server preference among a route's protocols,
 * or only acme-tls/1 for a TLS-ALPN-01 validation) and the error-queue helper. The listener's
 * context and the handshake callbacks belong to the data path (tlsfront/proxy/handshake.h).
 */
#ifndef TF_TLS_H
#define TF_TLS_H

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdbool.h>

struct tf_cert;

/* The arg of the tlsbio BIO (tlsbio.h) that ssl reads from, i.e. the connection that owns
 * it; NULL when ssl reads through another BIO. Callbacks find their connection this way
 * rather than through SSL ex-data, which costs every SSL a stack (about 0.1 KiB per idle
 * connection). Defined in tlsbio.c. */
void *tf_tlsbio_arg(const SSL *ssl);

/* What ALPN selection reads from a server connection. The tlsbio arg of the SSL
 * (tf_tlsbio_arg) must point at an object whose first member is this struct (the data path's
 * connection). */
struct tf_tls_alpn {
    bool acme;            /* a TLS-ALPN-01 validation (RFC 8737): only acme-tls/1 */
    char *const *protos;  /* the route's protocols in server preference, borrowed */
    int n_protos;
};

/* The ALPN callback of every server context: the first of protos the client also offers;
 * no overlap: no ALPN (the handshake goes on, as with a client that sent none). */
int tf_tls_alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg);

/* Every worker thread has an OpenSSL library context of its own (OSSL_LIB_CTX: method
 * stores, name map, random generators, provider instances), and builds its TLS contexts in it.
 * OpenSSL 3.0 takes a read-write lock of the library context on each of the ~650 algorithm
 * fetches of a full handshake; with one context for all workers, those locks are cache lines
 * that every core writes (docs/benchmarks.md, the multi-core floor). The certificate store's
 * X509 and EVP_PKEY objects are decoded once and shared; a worker's per-certificate context
 * holds copies decoded in its library context. Workers' contexts load OpenSSL's default
 * provider, not the providers openssl.cnf names. */

/* The per-certificate contexts of one certificate, one slot per worker (an opaque array owned
 * by its struct tf_cert). */
struct tf_tls_cert_ctxs;

/* Per-certificate contexts are built, on first use, by each worker. Process-wide, at most
 * 2 * TF_TLS_CERT_CTX_MAX exist (~13 KiB each): W workers give each of up to 2000 / W
 * certificates a context of its own, the others are installed per handshake. A certificate
 * directory of more than TF_TLS_CERT_CTX_MAX certificates gives none
 * (tf_tls_cert_ctx_forbid), so that a reload can build a new store while the old one is still
 * in use. */
#define TF_TLS_CERT_CTX_MAX 1000

/* Worker `worker`'s context holding only copies of c's certificate, chain and key decoded in
 * lib (the worker's library context), with the ALPN callback, built on that worker's first
 * call and kept in c. The ClientHello callback switches to it with SSL_set_SSL_CTX(), which copies the
 * prepared certificate instead of SSL_use_cert_and_key()'s per-handshake key match and security
 * checks (~15,000 instructions), and keeps the handshake's algorithm fetches, its key and its
 * certificate references in the worker's library context. Everything else is per-SSL state taken from the listener's context at
 * SSL_new (versions, ciphers, groups, options), and session tickets stay with the listener's
 * context. Returns NULL (the caller installs the certificate with SSL_use_cert_and_key) when c
 * may have none, the budget is spent or OpenSSL fails; that answer is kept too. Call only on
 * worker `worker`'s thread (0 <= worker < n_workers, the same n_workers for every call on c);
 * borrowed: valid while c is. No lock: each worker writes its own slot. */
SSL_CTX *tf_tls_cert_ctx_get(struct tf_cert *c, int worker, int n_workers, OSSL_LIB_CTX *lib);
/* Free the contexts (any thread, once no worker can call tf_tls_cert_ctx_get on the owner). */
void tf_tls_cert_ctxs_free(struct tf_tls_cert_ctxs *x);
/* c never gets per-certificate contexts: tf_tls_cert_ctx_get answers NULL. For the loader,
 * before c is shared. */
void tf_tls_cert_ctx_forbid(struct tf_cert *c);

/* Clear this thread's OpenSSL error queue before an SSL call (STYLE: branch on
 * SSL_get_error with a clean queue). Peeking first: the queue is almost always empty, and
 * ERR_clear_error() costs a measurable share of a handshake's instructions. */
static inline void tf_tls_clear_errors(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

#endif
