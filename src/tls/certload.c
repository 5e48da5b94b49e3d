/*
 * certload.c: turns PEM text and certificate directories into tf_cert objects: parses the
 * chain and key, checks they belong together, and derives the kind, names, validity, issuer
 * and serial once so the data path never touches ASN.1 (directories: certdir.c). It never
 * logs key material, and leaves the OpenSSL error queue empty on every path.
 */
#include "certload_int.h"
#include "tlsfront/base/log.h"
#include "tlsfront/tls/tls.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_NAME 253

/* What parse_pem found: certificates in file order, and at most one key. */
struct pem_parts {
    STACK_OF(X509) *certs;
    EVP_PKEY *key;
    struct parse_cache *pc; /* borrowed; NULL = decode everything on its own */
};

/* Which PEM blocks parse_pem keeps: WANT_LEAF stops after the first certificate. */
enum { WANT_CERTS = 1, WANT_KEY = 2, WANT_LEAF = 4 };

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The reason of the newest queued OpenSSL error, for an error message; never NULL. */
static const char *ssl_reason(void)
{
    const char *r = ERR_reason_error_string(ERR_peek_last_error());
    return r ? r : "unknown error";
}

/* Decode one PEM private key block. Encrypted keys are refused: tlsfront has no passphrase. */
static EVP_PKEY *decode_key(struct parse_cache *pc, const char *type, const char *header,
                            const unsigned char *der, long len, char *err, size_t errlen)
{
    if (strcmp(type, PEM_STRING_PKCS8) == 0 || strstr(header, "ENCRYPTED")) {
        set_err(err, errlen, "encrypted private key not supported");
        return NULL;
    }
    const unsigned char *p = der;
    if (pc && pc->key_ctx) {
        size_t left = (size_t)len;
        pc->key_out = NULL;
        if (OSSL_DECODER_from_data(pc->key_ctx, &p, &left) && pc->key_out) {
            EVP_PKEY *key = pc->key_out;
            pc->key_out = NULL;
            return key;
        }
        EVP_PKEY_free(pc->key_out); /* then retry the slow way, which also names the error */
        pc->key_out = NULL;
        ERR_clear_error();
        p = der;
    }
    EVP_PKEY *key = d2i_AutoPrivateKey(NULL, &p, len);
    if (!key)
        set_err(err, errlen, "bad private key (%s)", ssl_reason());
    return key;
}

/* Decode a certificate; intermediates (first == false) go through pc's cache. Returns a
 * new reference or NULL. */
static X509 *decode_cert(struct parse_cache *pc, bool first, const unsigned char *der, long len)
{
    const unsigned char *p = der;
    if (!pc || first)
        return d2i_X509(NULL, &p, len);
    for (int i = 0; i < ICA_CACHE; i++) {
        if (pc->ica[i] && pc->ica_len[i] == len && memcmp(pc->ica_der[i], der, (size_t)len) == 0)
            return X509_up_ref(pc->ica[i]) ? pc->ica[i] : NULL;
    }
    X509 *x = d2i_X509(NULL, &p, len);
    if (!x || !X509_up_ref(x))
        return x;
    int slot = pc->ica_next;
    pc->ica_next = (slot + 1) % ICA_CACHE;
    X509_free(pc->ica[slot]);
    free(pc->ica_der[slot]);
    pc->ica[slot] = x;
    pc->ica_der[slot] = tf_malloc((size_t)len);
    memcpy(pc->ica_der[slot], der, (size_t)len);
    pc->ica_len[slot] = len;
    return x;
}

void tf_certload_cache_init(struct parse_cache *pc)
{
    memset(pc, 0, sizeof *pc);
    /* Without the shared key decoder every key is decoded the slow way: still correct. */
    pc->key_ctx = OSSL_DECODER_CTX_new_for_pkey(&pc->key_out, "DER", NULL, NULL, EVP_PKEY_KEYPAIR,
                                                NULL, NULL);
    ERR_clear_error();
}

void tf_certload_cache_free(struct parse_cache *pc)
{
    OSSL_DECODER_CTX_free(pc->key_ctx);
    EVP_PKEY_free(pc->key_out);
    for (int i = 0; i < ICA_CACHE; i++) {
        X509_free(pc->ica[i]);
        free(pc->ica_der[i]);
    }
}

/* Add one PEM block to parts when it is of a wanted sort (WANT_CERTS, WANT_KEY). Other
 * blocks ("EC PARAMETERS", requests) are skipped. Returns 0, 1 when WANT_LEAF has its leaf
 * (stop reading), or -1 with err filled. */
static int take_block(struct pem_parts *parts, const char *type, const char *header,
                      const unsigned char *der, long len, unsigned want, char *err, size_t errlen)
{
    size_t tl = strlen(type);
    bool is_cert = strcmp(type, PEM_STRING_X509) == 0 || strcmp(type, PEM_STRING_X509_OLD) == 0;
    if (is_cert && (want & WANT_CERTS)) {
        X509 *x = decode_cert(parts->pc, sk_X509_num(parts->certs) == 0, der, len);
        if (!x) {
            set_err(err, errlen, "bad certificate (%s)", ssl_reason());
            return -1;
        }
        if (!sk_X509_push(parts->certs, x)) {
            X509_free(x);
            set_err(err, errlen, "out of memory");
            return -1;
        }
        return (want & WANT_LEAF) ? 1 : 0;
    }
    if (!(want & WANT_KEY) || tl < 11 || strcmp(type + tl - 11, "PRIVATE KEY") != 0)
        return 0;
    if (parts->key) {
        set_err(err, errlen, "more than one private key");
        return -1;
    }
    parts->key = decode_key(parts->pc, type, header, der, len, err, errlen);
    return parts->key ? 0 : -1;
}

/* Read every PEM block of text into parts (which the caller frees on any result). A clean
 * end of input is the "no start line" error after the last block; anything else means a
 * damaged or truncated file. Returns 0 or -1 with err filled. */
static int parse_pem(const char *text, size_t len, unsigned want, struct pem_parts *parts,
                     char *err, size_t errlen)
{
    if (len > INT32_MAX) {
        set_err(err, errlen, "file too large");
        return -1;
    }
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    if (!bio) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    for (;;) {
        char *type = NULL, *header = NULL;
        unsigned char *der = NULL;
        long dlen = 0;
        if (!PEM_read_bio(bio, &type, &header, &der, &dlen)) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
                set_err(err, errlen, "malformed PEM (%s)", ssl_reason());
                rc = -1;
            }
            break;
        }
        rc = take_block(parts, type, header, der, dlen, want, err, errlen);
        OPENSSL_free(type);
        OPENSSL_free(header);
        OPENSSL_free(der);
        if (rc != 0) {
            rc = rc < 0 ? -1 : 0;
            break;
        }
    }
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

/* Lower-case and check one DNS name in place: LDH labels (underscore tolerated), an
 * optional leading "*." wildcard label, a trailing dot dropped. */
static bool normalise_name(char *s)
{
    size_t n = strlen(s);
    if (n > 0 && s[n - 1] == '.')
        s[--n] = '\0';
    if (n == 0 || n > MAX_NAME)
        return false;
    char *p = s;
    if (p[0] == '*' && p[1] == '.')
        p += 2;
    size_t label = 0;
    for (; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!isalnum(ch) && ch != '-' && ch != '_')
            return false;
        *p = (char)tolower(ch);
        if (++label > 63)
            return false;
    }
    return label > 0;
}

/* Append a copy of name bytes to c->names if they are a valid, new name; true if kept. */
static bool add_name_bytes(struct tf_cert *c, const unsigned char *data, int len, int *cap)
{
    if (len <= 0 || len > MAX_NAME + 1 || memchr(data, '\0', (size_t)len))
        return false;
    char buf[MAX_NAME + 2];
    memcpy(buf, data, (size_t)len);
    buf[len] = '\0';
    if (!normalise_name(buf))
        return false;
    for (int i = 0; i < c->n_names; i++)
        if (strcmp(c->names[i], buf) == 0)
            return true;
    if (c->n_names == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        c->names = tf_realloc(c->names, sizeof(char *) * (size_t)*cap);
    }
    c->names[c->n_names++] = tf_strdup(buf);
    return true;
}

static void add_name(struct tf_cert *c, const ASN1_STRING *s, int *cap)
{
    (void)add_name_bytes(c, ASN1_STRING_get0_data(s), ASN1_STRING_length(s), cap);
}

/* tf_certscan's add callback: a valid, new name goes to the end of the scan output (the
 * same checks as add_name_bytes); true if kept. */
static bool scan_add(void *arg, const unsigned char *data, size_t len)
{
    struct tf_scan_out *o = arg;
    if (len == 0 || len > MAX_NAME + 1 || memchr(data, '\0', len))
        return false;
    char buf[MAX_NAME + 2];
    memcpy(buf, data, len);
    buf[len] = '\0';
    if (!normalise_name(buf))
        return false;
    for (const char *p = o->buf + o->start; p < o->buf + o->len; p += strlen(p) + 1)
        if (strcmp(p, buf) == 0)
            return true;
    size_t n = strlen(buf) + 1;
    if (o->len + n > o->cap) {
        o->cap = o->cap ? o->cap * 2 : 4096;
        o->buf = tf_realloc(o->buf, o->cap);
    }
    memcpy(o->buf + o->len, buf, n);
    o->len += n;
    o->n_names++;
    return true;
}

/* Names from the SAN dNSNames, or from the subject CN when the SAN holds none. */
static void collect_names(struct tf_cert *c)
{
    int cap = 0;
    GENERAL_NAMES *gens = X509_get_ext_d2i(c->leaf, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_DNS)
            add_name(c, g->d.dNSName, &cap);
    }
    GENERAL_NAMES_free(gens);
    if (c->n_names > 0)
        return;
    const X509_NAME *subj = X509_get_subject_name(c->leaf);
    int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx >= 0)
        add_name(c, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)), &cap);
}

/* ASN.1 time to unix seconds. */
static int asn1_to_unix(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    if (!t || !ASN1_TIME_to_tm(t, &tm))
        return -1;
    *out = (int64_t)timegm(&tm);
    return 0;
}

/* Issuer DN as one line ("C = US, O = Example, CN = R3") and serial in hex. */
static int describe(struct tf_cert *c)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio)
        return -1;
    char *data = NULL;
    if (X509_NAME_print_ex(bio, X509_get_issuer_name(c->leaf), 0, XN_FLAG_ONELINE) < 0) {
        BIO_free(bio);
        return -1;
    }
    long n = BIO_get_mem_data(bio, &data);
    c->issuer = tf_strndup(n > 0 ? data : "", n > 0 ? (size_t)n : 0);
    BIO_free(bio);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(c->leaf), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    BN_free(bn);
    if (!hex)
        return -1;
    c->serial = tf_strdup(hex);
    OPENSSL_free(hex);
    return 0;
}

/* Fill what the leaf alone tells: validity and names. Returns PARSE_OK/PARSE_FAIL/PARSE_CA. */
static int derive_leaf(struct tf_cert *c, char *err, size_t errlen)
{
    if (asn1_to_unix(X509_get0_notBefore(c->leaf), &c->not_before) < 0 ||
        asn1_to_unix(X509_get0_notAfter(c->leaf), &c->not_after) < 0) {
        set_err(err, errlen, "bad validity dates");
        return PARSE_FAIL;
    }
    collect_names(c);
    if (c->n_names == 0) {
        bool ca = (X509_get_extension_flags(c->leaf) & EXFLAG_CA) != 0;
        set_err(err, errlen,
                ca ? "CA certificate without DNS names, not a server certificate"
                   : "certificate has no DNS names");
        return ca ? PARSE_CA : PARSE_FAIL;
    }
    return PARSE_OK;
}

/* Make the leaf's public key the private key object itself, for a certificate that gets no
 * context of its own (one of many): each handshake then installs it with
 * SSL_use_cert_and_key, whose key match (EVP_PKEY_eq) compares the certificate's public key
 * with the key. As two decoded objects, each with its own copy of the EC group, that match
 * reads some 50 cache lines that no other part of the handshake touches, all cold for a name
 * among many; as one object it reads the key the signature reads anyway. The separately
 * decoded public key is freed (about 2 KiB). X509_set_pubkey leaves the certificate's cached
 * encoding as it was (what the handshake sends); the new SubjectPublicKeyInfo must encode to
 * the bytes the certificate holds, else the leaf is decoded again from its encoding (a form
 * the key would not reproduce, e.g. a compressed point). Costs about 0.2 ms of CPU per load
 * (an encoder and a decoder in OpenSSL 3.0). Returns 0, or -1 when the leaf could not be
 * decoded again (c->leaf then unchanged and still right). */
static int share_key(struct tf_cert *c)
{
    unsigned char *spki = NULL, *now = NULL, *der = NULL;
    int n_spki = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(c->leaf), &spki);
    int n_der = i2d_X509(c->leaf, &der);
    int rc = 0;
    if (n_spki <= 0 || n_der <= 0 || X509_set_pubkey(c->leaf, c->key) != 1)
        goto done; /* nothing changed, or X509_set_pubkey failed before replacing it */
    int n_now = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(c->leaf), &now);
    if (n_now == n_spki && memcmp(now, spki, (size_t)n_spki) == 0)
        goto done;
    const unsigned char *p = der;
    X509 *again = d2i_X509(NULL, &p, n_der);
    if (!again) {
        rc = -1;
        goto done;
    }
    (void)X509_check_purpose(again, -1, 0); /* warmed as derive warmed the first */
    X509_free(c->leaf);
    c->leaf = again;
done:
    ERR_clear_error();
    OPENSSL_free(spki);
    OPENSSL_free(now);
    OPENSSL_free(der);
    return rc;
}

/* Fill c's derived fields from its leaf and key. Returns PARSE_OK/PARSE_FAIL/PARSE_CA. */
static int derive(struct tf_cert *c, char *err, size_t errlen)
{
    int id = EVP_PKEY_get_base_id(c->key);
    if (id != EVP_PKEY_EC && id != EVP_PKEY_RSA) {
        const char *tn = EVP_PKEY_get0_type_name(c->key);
        set_err(err, errlen, "unsupported key type %s (need EC or RSA)", tn ? tn : "?");
        return PARSE_FAIL;
    }
    c->kind = id == EVP_PKEY_EC ? TF_CERT_EC : TF_CERT_RSA;
    if (X509_check_private_key(c->leaf, c->key) != 1) {
        set_err(err, errlen, "key does not match certificate");
        return PARSE_FAIL;
    }
    /* Warm the lazily computed parts OpenSSL needs in every handshake (extension cache,
     * digest, signature info): computed here once, not in the first handshake of each name,
     * which with many names would be nearly every handshake. */
    (void)X509_check_purpose(c->leaf, -1, 0);
    for (int i = 0; i < sk_X509_num(c->chain); i++)
        (void)X509_check_purpose(sk_X509_value(c->chain, i), -1, 0);
    if (describe(c) < 0) {
        set_err(err, errlen, "cannot read issuer or serial (%s)", ssl_reason());
        return PARSE_FAIL;
    }
    return derive_leaf(c, err, errlen);
}

static struct tf_cert *cert_alloc(const char *path)
{
    struct tf_cert *c = tf_calloc(1, sizeof *c);
    tf_ref_init(&c->ref, 1);
    atomic_init(&c->last_used, 0);
    c->source = TF_SRC_STATIC;
    c->path = tf_strdup(path ? path : "-");
    return c;
}

/* The slow path of tf_certload_scan: OpenSSL decodes the leaf. */
static int scan_openssl(const char *chain_pem, size_t chain_len, struct tf_scan_out *out,
                        char *err, size_t errlen)
{
    struct pem_parts parts = {sk_X509_new_null(), NULL, NULL};
    struct tf_cert *c = NULL;
    int rc = PARSE_FAIL;
    if (!parts.certs) {
        set_err(err, errlen, "out of memory");
        goto done;
    }
    if (parse_pem(chain_pem, chain_len, WANT_CERTS | WANT_LEAF, &parts, err, errlen) < 0)
        goto done;
    if (sk_X509_num(parts.certs) == 0) {
        set_err(err, errlen, "no certificate");
        goto done;
    }
    c = cert_alloc(NULL);
    c->leaf = sk_X509_shift(parts.certs);
    /* The kind from the leaf's public key: the key file must match it at load time. */
    int id = EVP_PKEY_get_base_id(X509_get0_pubkey(c->leaf));
    if (id != EVP_PKEY_EC && id != EVP_PKEY_RSA) {
        set_err(err, errlen, "unsupported key type (need EC or RSA)");
        goto done;
    }
    rc = derive_leaf(c, err, errlen);
    if (rc != PARSE_OK)
        goto done;
    out->kind = id == EVP_PKEY_EC ? TF_CERT_EC : TF_CERT_RSA;
    out->not_after = c->not_after;
    for (int i = 0; i < c->n_names; i++)
        scan_add(out, (const unsigned char *)c->names[i], strlen(c->names[i]));
done:
    ERR_clear_error();
    sk_X509_pop_free(parts.certs, X509_free);
    tf_cert_unref(c);
    return rc;
}

int tf_certload_scan(const char *chain_pem, size_t chain_len, struct tf_scan_out *out,
                     char *err, size_t errlen)
{
    out->start = out->len;
    out->n_names = 0;
    out->scan.add = scan_add;
    out->scan.arg = out;
    if (tf_certscan_leaf(chain_pem, chain_len, &out->scan) == 0 && out->n_names > 0) {
        out->kind = out->scan.kind;
        out->not_after = out->scan.not_after;
        return PARSE_OK;
    }
    out->len = out->start; /* the walker gave up: start again with OpenSSL */
    out->n_names = 0;
    int rc = scan_openssl(chain_pem, chain_len, out, err, errlen);
    if (rc != PARSE_OK) {
        out->len = out->start;
        out->n_names = 0;
    }
    return rc;
}

/* Parse text into a new cert (*out, refcount 1) or fill err. */
int tf_certload_parse(const char *chain_pem, size_t chain_len, const char *key_pem, size_t key_len,
                      const char *path, struct parse_cache *pc, struct tf_cert **out, char *err,
                      size_t errlen)
{
    struct pem_parts parts = {sk_X509_new_null(), NULL, pc};
    struct tf_cert *c = NULL;
    int rc = PARSE_FAIL;
    *out = NULL;
    if (!parts.certs) {
        set_err(err, errlen, "out of memory");
        goto done;
    }
    unsigned want = WANT_CERTS | (key_pem ? 0 : WANT_KEY);
    if (parse_pem(chain_pem, chain_len, want, &parts, err, errlen) < 0)
        goto done;
    if (key_pem && parse_pem(key_pem, key_len, WANT_KEY, &parts, err, errlen) < 0)
        goto done;
    if (sk_X509_num(parts.certs) == 0) {
        set_err(err, errlen, "no certificate");
        goto done;
    }
    if (!parts.key) {
        set_err(err, errlen, "no private key");
        goto done;
    }
    c = cert_alloc(path);
    c->leaf = sk_X509_shift(parts.certs);
    c->chain = parts.certs;
    c->key = parts.key;
    parts.certs = NULL;
    parts.key = NULL;
    rc = derive(c, err, errlen);
    if (rc == PARSE_OK && pc && pc->no_ctx && share_key(c) < 0) {
        set_err(err, errlen, "cannot decode the certificate again (out of memory?)");
        rc = PARSE_FAIL;
    }
    if (pc && pc->no_ctx)
        tf_tls_cert_ctx_forbid(c);
done:
    ERR_clear_error();
    sk_X509_pop_free(parts.certs, X509_free);
    EVP_PKEY_free(parts.key);
    if (rc == PARSE_OK)
        *out = c;
    else
        tf_cert_unref(c);
    return rc;
}

struct tf_cert *tf_cert_from_pem(const char *chain_pem, size_t chain_len, const char *key_pem,
                                 size_t key_len, const char *path, char *err, size_t errlen)
{
    struct tf_cert *c = NULL;
    if (!chain_pem) {
        set_err(err, errlen, "no certificate");
        return NULL;
    }
    tf_certload_parse(chain_pem, chain_len, key_pem, key_len, path, NULL, &c, err, errlen);
    return c;
}

void tf_cert_ref(struct tf_cert *c)
{
    if (c)
        tf_ref_inc(&c->ref);
}

void tf_cert_unref(struct tf_cert *c)
{
    if (!c || !tf_ref_dec(&c->ref))
        return;
    tf_tls_cert_ctxs_free(atomic_load(&c->ctxs));
    X509_free(c->leaf);
    sk_X509_pop_free(c->chain, X509_free);
    EVP_PKEY_free(c->key);
    for (int i = 0; i < c->n_names; i++)
        free(c->names[i]);
    free(c->names);
    free(c->path);
    free(c->issuer);
    free(c->serial);
    free(c);
}
