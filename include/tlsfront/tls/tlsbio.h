/*
 * tlsbio.h: a BIO between OpenSSL and libuv buffers that copies as little as possible.
 * Reads: OpenSSL reads straight from the buffer libuv just filled (the worker's rx buffer);
 * only bytes OpenSSL did not consume (a paused or held connection) are kept, in a small
 * per-connection heap buffer that is freed once drained. Writes: TLS records are appended
 * to the worker's output buffer and handed to a flush callback once it fills or when the
 * caller flushes after an SSL call, so several records go out in one write. An idle
 * connection therefore owns no BIO buffer at all (memory BIOs keep their high-water mark).
 * The BIO state lives apart from the SSL: a connection keeps the first bytes here before
 * its SSL exists (tf_tlsbio_first_record says when a whole record has arrived).
 */
#ifndef TF_TLSBIO_H
#define TF_TLSBIO_H

#include <openssl/bio.h>
#include <stdbool.h>
#include <stddef.h>

/* The worker's output buffer, shared by its connections (one thread; always flushed before
 * control returns to the loop). */
struct tf_tlsbio_out {
    char *buf;
    size_t len, cap;
    struct tf_tlsbio *owner;    /* whose records buf holds (len > 0) */
};

/* Per connection. */
struct tf_tlsbio {
    const char *in;             /* borrowed input (set by tf_tlsbio_input) */
    size_t in_len;
    char *keep;                 /* unconsumed input kept across callbacks (heap) */
    size_t keep_off, keep_len;
    bool eof;                   /* peer sent FIN: reads return EOF once input is drained */
    struct tf_tlsbio_out *out;  /* the worker's */
    /* Called with output to send, in order; must take it all (send or queue a copy). */
    void (*flush)(void *arg, const char *data, size_t len);
    void *arg;
};

/* TLS record layer (RFC 8446 section 5.1): content type of a handshake record, and the
 * largest plaintext record a ClientHello may come in. */
#define TF_TLSBIO_HANDSHAKE 22
#define TF_TLSBIO_MAX_RECORD 16384

/* A BIO reading from and writing through st (borrowed; must outlive the BIO), made in the
 * library context lib (the worker's, tls.h, so that its ex_data lock is the worker's; NULL:
 * the default). Use the same BIO for both directions: SSL_set_bio(ssl, bio, bio) takes its
 * one reference. */
BIO *tf_tlsbio_new(struct tf_tlsbio *st, OSSL_LIB_CTX *lib);

/* Offer data (borrowed until tf_tlsbio_settle) as the next input after anything kept. */
void tf_tlsbio_input(struct tf_tlsbio *st, const char *data, size_t len);
/* After the SSL calls that consumed input: keep what is left (copied), drop the borrow. */
void tf_tlsbio_settle(struct tf_tlsbio *st);
/* Input bytes not yet consumed by OpenSSL (kept or borrowed). */
size_t tf_tlsbio_pending(const struct tf_tlsbio *st);
/* Whether the pending input holds a whole first record, or a start that is no handshake
 * record at all (OpenSSL then refuses it): the moment to create the SSL and feed it. */
bool tf_tlsbio_first_record(const struct tf_tlsbio *st);
/* Hand everything in the output buffer to the flush callback. */
void tf_tlsbio_flush(struct tf_tlsbio *st);
/* Free the kept input. */
void tf_tlsbio_clear(struct tf_tlsbio *st);

#endif
