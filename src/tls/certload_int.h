/*
 * certload_int.h: what certdir.c (directory loading) shares with certload.c (PEM to
 * tf_cert): the per-thread decoding cache and the parser behind tf_cert_from_pem.
 */
#ifndef TF_CERTLOAD_INT_H
#define TF_CERTLOAD_INT_H

#include "tlsfront/tls/certstore.h"

#include <openssl/decoder.h>
#include <stdbool.h>

#define ICA_CACHE 16 /* intermediates remembered per parser */

/* Decoding state reused across the files of one directory load (one per parser thread).
 * OpenSSL 3.0 builds a decoder chain on every d2i_AutoPrivateKey and d2i_X509 call, which
 * costs far more than the decoding itself (about 15 times for an EC key):
 * - key_ctx decodes any number of private keys; it writes its result into key_out, so a
 *   parse_cache must not move while key_ctx exists;
 * - ica remembers recently decoded intermediates by DER, since thousands of certbot
 *   fullchains repeat the same few (each hit shares one X509 by reference). */
struct parse_cache {
    OSSL_DECODER_CTX *key_ctx;
    EVP_PKEY *key_out;
    X509 *ica[ICA_CACHE];
    unsigned char *ica_der[ICA_CACHE];
    long ica_len[ICA_CACHE];
    int ica_next; /* slot to replace next */
    bool no_ctx;  /* build no per-certificate SSL_CTX (a directory of over
                     TF_TLS_CERT_CTX_MAX certificates) */
};

/* Result of parse_cert beyond success and failure: a CA certificate without any DNS name
 * (a trust anchor such as mkcerts.sh's ca.crt) which a directory load skips quietly. */
enum { PARSE_OK = 0, PARSE_FAIL = -1, PARSE_CA = 1 };

void tf_certload_cache_init(struct parse_cache *pc);
void tf_certload_cache_free(struct parse_cache *pc);

/* Parse one certificate (chain, and key unless key_pem is NULL and chain_pem holds it);
 * pc may be NULL. On PARSE_OK *out holds one reference; otherwise err says why (PARSE_CA:
 * a CA certificate without DNS names, which a directory load skips quietly). */
int tf_certload_parse(const char *chain_pem, size_t chain_len, const char *key_pem,
                      size_t key_len, const char *path, struct parse_cache *pc,
                      struct tf_cert **out, char *err, size_t errlen);

/* What tf_certscan_leaf reads from a certificate without OpenSSL's decoder. add is called
 * with each SAN dNSName's bytes (or the subject CN's when no SAN name was valid) and
 * returns whether it kept the name. der is scratch space for the decoded DER, grown as
 * needed and kept between calls; the caller frees it. */
struct tf_certscan {
    bool (*add)(void *arg, const unsigned char *name, size_t len);
    void *arg;
    int n_added;
    enum tf_cert_kind kind;
    int64_t not_before, not_after;
    unsigned char *der;
    size_t der_cap;
};

/* Read the first PEM certificate of pem (len bytes) into out. Returns 0, or -1 for anything
 * but the plain shape of an EC or RSA server certificate: the caller then asks OpenSSL. */
int tf_certscan_leaf(const char *pem, size_t len, struct tf_certscan *out);

/* What indexing certificates gives: the names of every certificate scanned so far, one
 * after the other (each NUL-terminated) in buf, and the last one's kind and expiry. One per
 * parser thread; the caller frees buf and scan.der. */
struct tf_scan_out {
    char *buf;
    size_t len, cap;
    size_t start;  /* where the last certificate's names begin */
    int n_names;   /* how many it has */
    enum tf_cert_kind kind;
    int64_t not_after;
    struct tf_certscan scan;
};

/* Index one certificate file: read its first certificate only, for names, kind and expiry,
 * into out (appended to out->buf from out->start). Same results as tf_certload_parse
 * (PARSE_OK, PARSE_FAIL with err, PARSE_CA); on failure nothing is appended. */
int tf_certload_scan(const char *chain_pem, size_t chain_len, struct tf_scan_out *out,
                     char *err, size_t errlen);

/* Files beyond this size are refused: a chain is a few kilobytes. */
#define TF_CERTLOAD_MAX_FILE (1024 * 1024)

/* Read rel (relative to dfd, symlinks followed) into *buf (grown as needed, capacity *cap),
 * NUL-terminated, with one open, reads until one comes back short (the end of a regular
 * file) and one close (no stat): three system calls for a small file, the cheapest way
 * through a million files. *noatime (may be NULL) says to try O_NOATIME, and
 * is cleared when the file's owner is not ours. Returns 0, or a negative errno, TF_EINVAL
 * (not a regular file) or TF_ETOOBIG. */
int tf_certload_read(int dfd, const char *rel, char **buf, size_t *cap, size_t *len,
                     bool *noatime);
/* A batch reader of small files (certread.c): per thread, NULL when io_uring is not
 * available (then read file by file). tf_certread_run reads the n (<= batch) files rel[i]
 * (relative to dfd) into tf_certread_buf(r, i), NUL-terminated, and sets res[i] to the
 * length or to a tf_certload_read error; TF_ETOOBIG means "read it the plain way" (the file
 * filled the buffer). Returns 0, or a negative errno when the ring failed (nothing read). */
struct tf_certread;
struct tf_certread *tf_certread_new(unsigned batch);
int tf_certread_run(struct tf_certread *r, int dfd, const char *const *rel, size_t n, int *res);
char *tf_certread_buf(struct tf_certread *r, size_t i);
void tf_certread_free(struct tf_certread *r);

/* The key file of certificate file crt (a path) stored as key_form (TF_STUB_KEY_*) into key
 * (n bytes; empty for TF_STUB_KEY_IN). Returns 0, or -1 when it does not fit. */
int tf_certload_key_path(const char *crt, int key_form, char *key, size_t n);
/* A tf_certload_read error as text (in tmp when it needs formatting). */
const char *tf_certload_read_problem(int rc, char *tmp, size_t n);

#endif
