/*
 * mkmany.c: the bench's fast generator of many leaf certificates, the same files as
 * `certs/mkcerts.sh many` (DIR/<i>.many.test.pem: the leaf, then its PKCS#8 key; SAN and CN
 * <i>.many.test; basicConstraints CA:FALSE, serverAuth, SKI, AKI; 30 days) signed by the CA
 * in DIR/ca.crt + DIR/ca.key (made by `certs/mkcerts.sh ca DIR`), fast enough for 10^6
 * files: one certificate whose serial, names and signature are replaced per leaf, and
 * all leaves made by one process share one ECDSA P-256 key (speed over realism: an index or
 * start-up figure reads every certificate, never the key). The range is split across
 * processes, and DIR/.complete is written when every process succeeded.
 *
 *     gcc -O2 -o mkmany bench/mkmany.c -lcrypto && ./mkmany DIR N [PROCS]
 */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
    fprintf(stderr, "mkmany: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static void *read_pem(const char *dir, const char *file, int key)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "r");
    if (!f)
        die(path);
    void *v = key ? (void *)PEM_read_PrivateKey(f, NULL, NULL, NULL)
                  : (void *)PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!v)
        die(path);
    return v;
}

static void add_ext(X509 *x, X509 *ca, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, ca, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!e || !X509_add_ext(x, e, -1))
        die("extension");
    X509_EXTENSION_free(e);
}

/* The fields every leaf shares; the SAN is added per leaf, last. */
static X509 *template(X509 *ca, EVP_PKEY *key)
{
    X509 *x = X509_new();
    if (!x || !X509_set_version(x, 2) || !X509_set_issuer_name(x, X509_get_subject_name(ca)) ||
        !X509_set_pubkey(x, key) || !X509_gmtime_adj(X509_getm_notBefore(x), -300) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 30L * 86400))
        die("template");
    add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(x, ca, NID_ext_key_usage, "serverAuth");
    add_ext(x, ca, NID_subject_key_identifier, "hash");
    add_ext(x, ca, NID_authority_key_identifier, "keyid");
    return x;
}

/* Leaf i: the template with its serial, subject and SAN replaced in place (no copy, no
 * config parsing: what costs is the signature and the file). */
static void one(const char *dir, long i, X509 *x, EVP_PKEY *ca_key, const char *key_pem,
                size_t key_len)
{
    char name[64], path[4096];
    int nlen = snprintf(name, sizeof name, "%ld.many.test", i);
    unsigned char serial[16];
    if (RAND_bytes(serial, sizeof serial) != 1)
        die("serial");
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    X509_NAME *subj = X509_NAME_new();
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
    if (!bn || !subj || !gens || !gn || !ia5 ||
        !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ||
        !X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, (unsigned char *)name, nlen, -1,
                                    0) ||
        !X509_set_subject_name(x, subj) ||
        !ASN1_STRING_set(ia5, name, nlen))
        die("leaf fields");
    GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
    if (!sk_GENERAL_NAME_push(gens, gn) ||
        X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_REPLACE) != 1)
        die("SAN");
    if (!X509_sign(x, ca_key, EVP_sha256()))
        die("sign");
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || !PEM_write_bio_X509(b, x) || BIO_write(b, key_pem, (int)key_len) != (int)key_len)
        die("PEM");
    char *data;
    long n = BIO_get_mem_data(b, &data);
    snprintf(path, sizeof path, "%s/%s.pem", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, data, (size_t)n) != n || close(fd) != 0)
        die(path);
    BIO_free(b);
    BN_free(bn);
    GENERAL_NAMES_free(gens);
    X509_NAME_free(subj);
}

/* One process: leaves lo..hi-1 with a key of its own. */
static void run(const char *dir, long lo, long hi)
{
    X509 *ca = read_pem(dir, "ca.crt", 0);
    EVP_PKEY *ca_key = read_pem(dir, "ca.key", 1);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (!key)
        die("key");
    BIO *kb = BIO_new(BIO_s_mem());
    if (!kb || !PEM_write_bio_PKCS8PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL))
        die("key PEM");
    char *key_pem;
    long key_len = BIO_get_mem_data(kb, &key_pem);
    X509 *tpl = template(ca, key);
    for (long i = lo; i < hi; i++)
        one(dir, i, tpl, ca_key, key_pem, (size_t)key_len);
    X509_free(tpl);
    BIO_free(kb);
    EVP_PKEY_free(key);
    EVP_PKEY_free(ca_key);
    X509_free(ca);
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: mkmany DIR N [PROCS]\n");
        return 2;
    }
    const char *dir = argv[1];
    long n = atol(argv[2]);
    long procs = argc > 3 ? atol(argv[3]) : sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1 || procs < 1)
        return 2;
    long step = (n + procs - 1) / procs;
    int failed = 0;
    for (long lo = 1; lo <= n; lo += step) {
        long hi = lo + step > n + 1 ? n + 1 : lo + step;
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid == 0) {
            run(dir, lo, hi);
            _exit(0);
        }
    }
    int status;
    while (wait(&status) > 0)
        failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    if (failed)
        return 1;
    char path[4096];
    snprintf(path, sizeof path, "%s/.complete", dir);
    FILE *f = fopen(path, "w");
    if (!f || fclose(f) != 0)
        die(path);
    printf("made %ld certificates <i>.many.test (i = 1..%ld) in %s\n", n, n, dir);
    return 0;
}
