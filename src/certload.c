/*
 * certload.c: turns PEM text and certificate directories into tf_cert objects: parses the
 * chain and key, checks they belong together, and derives the kind, names, validity, issuer
 * and serial once so the data path never touches ASN.1. Loading a directory recognises the
 * pair, single-file and certbot layouts and hands the result to tf_certstore_from_certs.
 * This file does blocking file I/O and must never run on a worker loop; it never logs key
 * material, and leaves the OpenSSL error queue empty on every path.
 */
#include "certstore.h"
#include "log.h"
#include "tls.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_NAME 253
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
};

/* What parse_pem found: certificates in file order, and at most one key. */
struct pem_parts {
    STACK_OF(X509) *certs;
    EVP_PKEY *key;
    struct parse_cache *pc; /* borrowed; NULL = decode everything on its own */
};

/* Result of parse_cert beyond success and failure: a CA certificate without any DNS name
 * (a trust anchor such as mkcerts.sh's ca.crt) which a directory load skips quietly. */
enum { PARSE_OK = 0, PARSE_FAIL = -1, PARSE_CA = 1 };

/* Which PEM blocks parse_pem keeps. */
enum { WANT_CERTS = 1, WANT_KEY = 2 };

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

static void parse_cache_init(struct parse_cache *pc)
{
    memset(pc, 0, sizeof *pc);
    /* Without the shared key decoder every key is decoded the slow way: still correct. */
    pc->key_ctx = OSSL_DECODER_CTX_new_for_pkey(&pc->key_out, "DER", NULL, NULL, EVP_PKEY_KEYPAIR,
                                                NULL, NULL);
    ERR_clear_error();
}

static void parse_cache_free(struct parse_cache *pc)
{
    OSSL_DECODER_CTX_free(pc->key_ctx);
    EVP_PKEY_free(pc->key_out);
    for (int i = 0; i < ICA_CACHE; i++) {
        X509_free(pc->ica[i]);
        free(pc->ica_der[i]);
    }
}

/* Add one PEM block to parts when it is of a wanted sort (WANT_CERTS, WANT_KEY). Other
 * blocks ("EC PARAMETERS", requests) are skipped. Returns 0 or -1 with err filled. */
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
        return 0;
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
        if (rc < 0)
            break;
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

/* Append a copy of an ASN.1 string to c->names if it is a valid, new name. */
static void add_name(struct tf_cert *c, const ASN1_STRING *s, int *cap)
{
    int len = ASN1_STRING_length(s);
    const unsigned char *data = ASN1_STRING_get0_data(s);
    if (len <= 0 || len > MAX_NAME + 1 || memchr(data, '\0', (size_t)len))
        return;
    char buf[MAX_NAME + 2];
    memcpy(buf, data, (size_t)len);
    buf[len] = '\0';
    if (!normalise_name(buf))
        return;
    for (int i = 0; i < c->n_names; i++)
        if (strcmp(c->names[i], buf) == 0)
            return;
    if (c->n_names == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        c->names = tf_realloc(c->names, sizeof(char *) * (size_t)*cap);
    }
    c->names[c->n_names++] = tf_strdup(buf);
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
    if (asn1_to_unix(X509_get0_notBefore(c->leaf), &c->not_before) < 0 ||
        asn1_to_unix(X509_get0_notAfter(c->leaf), &c->not_after) < 0) {
        set_err(err, errlen, "bad validity dates");
        return PARSE_FAIL;
    }
    if (describe(c) < 0) {
        set_err(err, errlen, "cannot read issuer or serial (%s)", ssl_reason());
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

/* Parse text into a new cert (*out, refcount 1) or fill err. */
static int parse_cert(const char *chain_pem, size_t chain_len, const char *key_pem, size_t key_len,
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
    c = tf_calloc(1, sizeof *c);
    tf_ref_init(&c->ref, 1);
    atomic_init(&c->last_used, 0);
    c->source = TF_SRC_STATIC;
    c->path = tf_strdup(path ? path : "-");
    c->leaf = sk_X509_shift(parts.certs);
    c->chain = parts.certs;
    c->key = parts.key;
    parts.certs = NULL;
    parts.key = NULL;
    rc = derive(c, err, errlen);
    if (rc == PARSE_OK)
        c->ctx = tf_tls_cert_ctx_new(c);
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
    parse_cert(chain_pem, chain_len, key_pem, key_len, path, NULL, &c, err, errlen);
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
    tf_tls_cert_ctx_free(c->ctx);
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

/* ---- Directory loading ------------------------------------------------------------------ */

/* PEM files beyond this size are refused: a chain is a few kilobytes. */
#define MAX_FILE (1024 * 1024)
/* Parser threads for a large directory: parsing is CPU-bound and independent per file. */
#define MAX_PARSERS 8
#define FILES_PER_PARSER 256

struct dir_entry {
    char *name;
    unsigned char type; /* d_type */
    bool key_used;      /* a .key claimed by a X.crt or X.pem */
};

/* One certificate to parse: chain file and key file (NULL when the chain file holds it),
 * relative to the directory; cert is the result (one reference) or NULL. */
struct job {
    char *crt;
    char *key;
    struct tf_cert *cert;
};

/* State of one tf_certstore_load_dir call. The lists are built by the calling thread; the
 * parsers then only take job indexes from next and write their own job's cert. */
struct loader {
    const char *dir;
    int dfd; /* borrowed from the DIR stream */
    struct dir_entry *ents;
    size_t n_ents;
    struct job *jobs;
    size_t n_jobs, cap_jobs;
    atomic_size_t next;
    atomic_int n_failed;
};

/* One parser thread's reusable state: file buffers and the key decoder. */
struct parser {
    struct loader *ld;
    char *buf[2];
    size_t cap[2];
    struct parse_cache pc;
    pthread_t tid;
    bool started;
};

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct dir_entry *)a)->name, ((const struct dir_entry *)b)->name);
}

static struct dir_entry *find_entry(struct loader *ld, const char *name)
{
    struct dir_entry key = {.name = (char *)name};
    return bsearch(&key, ld->ents, ld->n_ents, sizeof key, cmp_entry);
}

/* Read every visible entry of the open directory, then sort by name so pairs are found by
 * binary search and the load order (which breaks ties) does not depend on readdir. */
static int list_dir(struct loader *ld, DIR *d)
{
    size_t cap = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (ld->n_ents == cap) {
            cap = cap ? cap * 2 : 64;
            ld->ents = tf_realloc(ld->ents, cap * sizeof *ld->ents);
        }
        ld->ents[ld->n_ents++] = (struct dir_entry){tf_strdup(de->d_name), de->d_type, false};
    }
    if (errno != 0)
        return -errno;
    if (ld->n_ents > 1)
        qsort(ld->ents, ld->n_ents, sizeof *ld->ents, cmp_entry);
    return 0;
}

static void fail(struct loader *ld, const char *rel, const char *problem)
{
    TF_WARN("certstore", "file %s/%s: %s", ld->dir, rel, problem);
    atomic_fetch_add(&ld->n_failed, 1);
}

/* Queue a parse job; takes ownership of crt and key. */
static void add_job(struct loader *ld, char *crt, char *key)
{
    if (ld->n_jobs == ld->cap_jobs) {
        ld->cap_jobs = ld->cap_jobs ? ld->cap_jobs * 2 : 64;
        ld->jobs = tf_realloc(ld->jobs, ld->cap_jobs * sizeof *ld->jobs);
    }
    ld->jobs[ld->n_jobs++] = (struct job){crt, key, NULL};
}

static bool is_dir(struct loader *ld, const struct dir_entry *e)
{
    if (e->type == DT_DIR)
        return true;
    if (e->type != DT_LNK && e->type != DT_UNKNOWN)
        return false;
    struct stat st;
    return fstatat(ld->dfd, e->name, &st, 0) == 0 && S_ISDIR(st.st_mode);
}

/* certbot's live/NAME/: fullchain.pem + privkey.pem; README, cert.pem and chain.pem are
 * ignored. A subdirectory holding neither file is not ours and is ignored too. */
static void queue_certbot(struct loader *ld, const char *sub)
{
    char *chain = tf_asprintf("%s/fullchain.pem", sub);
    char *key = tf_asprintf("%s/privkey.pem", sub);
    bool has_chain = faccessat(ld->dfd, chain, F_OK, 0) == 0;
    bool has_key = faccessat(ld->dfd, key, F_OK, 0) == 0;
    if (has_chain && has_key) {
        add_job(ld, chain, key);
        return;
    }
    if (has_chain)
        fail(ld, chain, "no private key (privkey.pem missing)");
    else if (has_key)
        fail(ld, key, "no certificate (fullchain.pem missing)");
    else
        TF_DEBUG("certstore", "dir %s/%s: no fullchain.pem, ignored", ld->dir, sub);
    free(chain);
    free(key);
}

static bool has_suffix(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n > k && memcmp(s + n - k, suffix, k) == 0;
}

/* Classify one entry: X.crt (+ X.key), X.pem (+ X.key if present), certbot dir, or other
 * (ignored). */
static void queue_entry(struct loader *ld, struct dir_entry *e)
{
    size_t n = strlen(e->name);
    bool crt = has_suffix(e->name, n, ".crt");
    if (crt || has_suffix(e->name, n, ".pem")) {
        char *key_name = tf_asprintf("%.*s.key", (int)(n - 4), e->name);
        struct dir_entry *k = find_entry(ld, key_name);
        if (k)
            k->key_used = true;
        if (crt && !k) {
            fail(ld, e->name, "no private key (missing key file)");
            free(key_name);
            return;
        }
        if (!k) {
            free(key_name);
            key_name = NULL;
        }
        add_job(ld, tf_strdup(e->name), key_name);
    } else if (!has_suffix(e->name, n, ".key") && is_dir(ld, e)) {
        queue_certbot(ld, e->name);
    }
}

/* Read rel (relative to the directory, symlinks followed) into p->buf[slot], NUL-terminated.
 * Returns 0, or a negative errno / TF_ETOOBIG / TF_EINVAL / TF_EIO. */
static int read_file(struct parser *p, const char *rel, int slot, size_t *len)
{
    int fd = openat(p->ld->dfd, rel, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = TF_EINVAL;
        goto done;
    }
    if (st.st_size > MAX_FILE) {
        rc = TF_ETOOBIG;
        goto done;
    }
    if ((size_t)st.st_size + 1 > p->cap[slot]) {
        p->cap[slot] = (size_t)st.st_size + 4096;
        p->buf[slot] = tf_realloc(p->buf[slot], p->cap[slot]);
    }
    size_t off = 0;
    while (off < (size_t)st.st_size) {
        ssize_t n = read(fd, p->buf[slot] + off, (size_t)st.st_size - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : TF_EIO;
            goto done;
        }
        off += (size_t)n;
    }
    p->buf[slot][off] = '\0';
    *len = off;
done:
    close(fd);
    return rc;
}

static const char *read_problem(int rc, char *tmp, size_t n)
{
    switch (rc) {
    case TF_EINVAL:
        return "not a regular file";
    case TF_ETOOBIG:
        return "file too large";
    case TF_EIO:
        return "file shrank while reading";
    default:
        snprintf(tmp, n, "cannot read: %s", strerror(-rc));
        return tmp;
    }
}

/* Read and parse one job's files; on success job->cert holds the result. */
static void run_job(struct parser *p, struct job *job)
{
    struct loader *ld = p->ld;
    char err[256];
    size_t clen = 0, klen = 0;
    int rc = read_file(p, job->crt, 0, &clen);
    if (rc < 0) {
        fail(ld, job->crt, read_problem(rc, err, sizeof err));
        return;
    }
    if (job->key && (rc = read_file(p, job->key, 1, &klen)) < 0) {
        fail(ld, job->key, read_problem(rc, err, sizeof err));
        return;
    }
    char *path = tf_asprintf("%s/%s", ld->dir, job->crt);
    rc = parse_cert(p->buf[0], clen, job->key ? p->buf[1] : NULL, klen, path, &p->pc, &job->cert,
                    err, sizeof err);
    free(path);
    if (rc == PARSE_CA)
        TF_INFO("certstore", "file %s/%s: skipped: %s", ld->dir, job->crt, err);
    else if (rc != PARSE_OK)
        fail(ld, job->crt, err);
}

/* Parser thread body (also run on the calling thread): take jobs until none are left. */
static void *parse_jobs(void *arg)
{
    struct parser *p = arg;
    parse_cache_init(&p->pc);
    size_t i;
    while ((i = atomic_fetch_add(&p->ld->next, 1)) < p->ld->n_jobs)
        run_job(p, &p->ld->jobs[i]);
    parse_cache_free(&p->pc);
    free(p->buf[0]);
    free(p->buf[1]);
    return NULL;
}

/* Parse every job, on up to MAX_PARSERS threads for large directories. A thread that
 * cannot be started just leaves its share to the others. */
static void run_parsers(struct loader *ld)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t n = ld->n_jobs / FILES_PER_PARSER + 1;
    n = TF_MIN(n, (size_t)MAX_PARSERS);
    n = TF_MIN(n, cpus > 0 ? (size_t)cpus : 1);
    struct parser ps[MAX_PARSERS];
    memset(ps, 0, sizeof ps);
    for (size_t i = 0; i < n; i++) {
        ps[i].ld = ld;
        if (i > 0)
            ps[i].started = pthread_create(&ps[i].tid, NULL, parse_jobs, &ps[i]) == 0;
    }
    parse_jobs(&ps[0]);
    for (size_t i = 1; i < n; i++)
        if (ps[i].started)
            pthread_join(ps[i].tid, NULL);
}

/* Take the parsed certs in job order (so ties break the same way on every run). */
static struct tf_certstore *build(struct loader *ld, int *n_loaded)
{
    struct tf_cert **certs = tf_malloc((ld->n_jobs + 1) * sizeof *certs);
    size_t n = 0;
    for (size_t i = 0; i < ld->n_jobs; i++)
        if (ld->jobs[i].cert)
            certs[n++] = ld->jobs[i].cert;
    struct tf_certstore *st = tf_certstore_from_certs(certs, n);
    free(certs);
    *n_loaded = (int)n;
    return st;
}

static void warn_lone_keys(struct loader *ld)
{
    for (size_t i = 0; i < ld->n_ents; i++) {
        const char *name = ld->ents[i].name;
        if (has_suffix(name, strlen(name), ".key") && !ld->ents[i].key_used)
            TF_WARN("certstore", "file %s/%s: key without a matching .crt or .pem, ignored",
                    ld->dir, name);
    }
}

static void loader_free(struct loader *ld)
{
    for (size_t i = 0; i < ld->n_ents; i++)
        free(ld->ents[i].name);
    free(ld->ents);
    for (size_t i = 0; i < ld->n_jobs; i++) {
        free(ld->jobs[i].crt);
        free(ld->jobs[i].key);
        tf_cert_unref(ld->jobs[i].cert);
    }
    free(ld->jobs);
}

struct tf_certstore *tf_certstore_load_dir(const char *dir, int *n_loaded, int *n_failed, char *err,
                                           size_t errlen)
{
    struct loader ld = {.dir = dir, .dfd = -1};
    atomic_init(&ld.next, 0);
    atomic_init(&ld.n_failed, 0);
    struct tf_certstore *st = NULL;
    int loaded = 0;
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d) {
        set_err(err, errlen, "cannot open directory %s: %s", dir ? dir : "(null)",
                strerror(dir ? errno : EINVAL));
        goto done;
    }
    ld.dfd = dirfd(d);
    int rc = list_dir(&ld, d);
    if (rc < 0) {
        set_err(err, errlen, "cannot read directory %s: %s", dir, strerror(-rc));
        goto done;
    }
    for (size_t i = 0; i < ld.n_ents; i++)
        queue_entry(&ld, &ld.ents[i]);
    warn_lone_keys(&ld);
    run_parsers(&ld);
    st = build(&ld, &loaded);
done:
    if (n_loaded)
        *n_loaded = loaded;
    if (n_failed)
        *n_failed = atomic_load(&ld.n_failed);
    if (d)
        closedir(d);
    loader_free(&ld);
    return st;
}
