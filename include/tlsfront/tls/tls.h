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

/* A certificate directory of up to this many certificates gives each a context of its own
 * (~13 KiB each; a larger directory gives none). The process-wide cap is twice as many, so
 * that a reload can build a full new store while the old one is still in use. */
#define TF_TLS_CERT_CTX_MAX 1000

/* A context holding only c's certificate, chain and key, with the ALPN callback: the
 * ClientHello callback switches to it with SSL_set_SSL_CTX(), which copies the prepared
 * certificate instead of SSL_use_cert_and_key()'s per-handshake key match and security
 * checks (~15,000 instructions). Everything else is per-SSL state taken from the listener's
 * context at SSL_new (versions, ciphers, groups, options), and session tickets stay with
 * the listener's context. NULL once 2 * TF_TLS_CERT_CTX_MAX exist (the caller falls back
 * to SSL_use_cert_and_key) or on error. Thread-safe; free with tf_tls_cert_ctx_free. */
SSL_CTX *tf_tls_cert_ctx_new(const struct tf_cert *c);
void tf_tls_cert_ctx_free(SSL_CTX *ctx);

/* Clear this thread's OpenSSL error queue before an SSL call (STYLE: branch on
 * SSL_get_error with a clean queue). Peeking first: the queue is almost always empty, and
 * ERR_clear_error() costs a measurable share of a handshake's instructions. */
static inline void tf_tls_clear_errors(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

#endif
