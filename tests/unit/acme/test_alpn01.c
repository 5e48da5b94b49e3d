/*
 * test_alpn01.c: the TLS-ALPN-01 challenge certificate (RFC 8737 §3). Checked twice: with
 * OpenSSL's own parsers (signature, SAN, critical acmeIdentifier extension, key type) and
 * with an independent parser, Debian's python3-cryptography, run on the PEM in a temp file.
 */
#include "tlsfront/acme/alpn01_cert.h"
#include "tlsfront/tls/alpn01.h"
#include "tlsfront/base/common.h"
#include "tf_test.h"

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define ACME_OID "1.3.6.1.5.5.7.1.31"

static const char *const test_ka =
    "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

static void sha256_str(const char *s, unsigned char md[32])
{
    unsigned int len = 0;
    CHECK(EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL) == 1 && len == 32);
}

/* Exactly one SAN extension holding exactly one dNSName equal to name. */
static void check_san(X509 *cert, const char *name)
{
    int idx = X509_get_ext_by_NID(cert, NID_subject_alt_name, -1);
    CHECK(idx >= 0);
    CHECK_EQ_INT(X509_get_ext_by_NID(cert, NID_subject_alt_name, idx), -1);
    int crit = -2;
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
    CHECK(gens != NULL);
    CHECK_EQ_INT(crit, 0);
    CHECK_EQ_INT(gens ? sk_GENERAL_NAME_num(gens) : -1, 1);
    if (gens && sk_GENERAL_NAME_num(gens) == 1) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, 0);
        CHECK_EQ_INT(g->type, GEN_DNS);
        if (g->type == GEN_DNS) {
            CHECK_EQ_INT(ASN1_STRING_length(g->d.dNSName), (int)strlen(name));
            CHECK_EQ_STR((const char *)ASN1_STRING_get0_data(g->d.dNSName), name);
        }
    }
    GENERAL_NAMES_free(gens);
}

/* The critical acmeIdentifier extension: extnValue = 04 20 SHA-256(key authorization). */
static void check_acme_ext(X509 *cert, const char *ka)
{
    unsigned char md[32];
    sha256_str(ka, md);
    ASN1_OBJECT *oid = OBJ_txt2obj(ACME_OID, 1);
    int idx = X509_get_ext_by_OBJ(cert, oid, -1);
    CHECK(idx >= 0);
    CHECK_EQ_INT(X509_get_ext_by_OBJ(cert, oid, idx), -1);
    X509_EXTENSION *ext = idx >= 0 ? X509_get_ext(cert, idx) : NULL;
    CHECK(ext != NULL);
    if (ext) {
        CHECK_EQ_INT(X509_EXTENSION_get_critical(ext), 1);
        ASN1_OCTET_STRING *data = X509_EXTENSION_get_data(ext);
        const unsigned char *raw = ASN1_STRING_get0_data(data);
        int rawlen = ASN1_STRING_length(data);
        CHECK_EQ_INT(rawlen, 34);
        CHECK(rawlen >= 2 && raw[0] == 0x04 && raw[1] == 0x20);
        const unsigned char *p = raw;
        ASN1_OCTET_STRING *inner = d2i_ASN1_OCTET_STRING(NULL, &p, rawlen);
        CHECK(inner != NULL);
        CHECK(p == raw + rawlen);
        CHECK_EQ_INT(inner ? ASN1_STRING_length(inner) : -1, 32);
        CHECK(inner && ASN1_STRING_length(inner) == 32 &&
              memcmp(ASN1_STRING_get0_data(inner), md, 32) == 0);
        ASN1_OCTET_STRING_free(inner);
    }
    ASN1_OBJECT_free(oid);
}

/* Self-signed by a fresh P-256 key, v3, short validity around now, CN = name (if it fits). */
static void check_basics(X509 *cert, EVP_PKEY *key, const char *name)
{
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    CHECK(pub && EVP_PKEY_eq(pub, key) == 1);
    CHECK_EQ_INT(X509_verify(cert, pub), 1);
    CHECK_EQ_INT(X509_check_issued(cert, cert), X509_V_OK);
    CHECK_EQ_INT(X509_get_signature_nid(cert), NID_ecdsa_with_SHA256);
    CHECK_EQ_INT(X509_get_version(cert), X509_VERSION_3);
    char group[64] = "";
    CHECK(EVP_PKEY_is_a(key, "EC"));
    CHECK(EVP_PKEY_get_group_name(key, group, sizeof group, NULL) == 1);
    CHECK_EQ_INT(OBJ_txt2nid(group), NID_X9_62_prime256v1);
    char cn[300] = "";
    int cnlen =
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
    if (strlen(name) <= 64)
        CHECK_EQ_STR(cn, name);
    else
        CHECK_EQ_INT(cnlen, -1);
    time_t now = time(NULL);
    CHECK(X509_cmp_time(X509_get0_notBefore(cert), &now) < 0);
    CHECK(X509_cmp_time(X509_get0_notAfter(cert), &now) > 0);
    int days = -1, secs = -1;
    CHECK(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(cert), X509_get0_notAfter(cert)));
    CHECK(days >= 1 && days <= 8);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    CHECK(bn && !BN_is_zero(bn) && !BN_is_negative(bn) && BN_num_bytes(bn) <= 20);
    BN_free(bn);
}

static void test_cert_contents(void)
{
    const char *names[] = {"test.example.com",
                           "a-very-long-label-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example-long.com"};
    for (size_t i = 0; i < TF_ARRAY_LEN(names); i++) {
        X509 *cert = NULL;
        EVP_PKEY *key = NULL;
        CHECK_EQ_INT(tf_alpn01_make_cert(names[i], test_ka, &cert, &key), 0);
        if (!cert || !key)
            continue;
        check_basics(cert, key, names[i]);
        check_san(cert, names[i]);
        check_acme_ext(cert, test_ka);
        X509_free(cert);
        EVP_PKEY_free(key);
    }
}

static void test_fresh_keys(void)
{
    X509 *c1 = NULL, *c2 = NULL;
    EVP_PKEY *k1 = NULL, *k2 = NULL;
    CHECK_EQ_INT(tf_alpn01_make_cert("a.example.com", test_ka, &c1, &k1), 0);
    CHECK_EQ_INT(tf_alpn01_make_cert("a.example.com", test_ka, &c2, &k2), 0);
    CHECK(k1 && k2 && EVP_PKEY_eq(k1, k2) != 1);
    CHECK(c1 && c2 &&
          ASN1_INTEGER_cmp(X509_get0_serialNumber(c1), X509_get0_serialNumber(c2)) != 0);
    /* A different key authorization changes the extension. */
    X509 *c3 = NULL;
    EVP_PKEY *k3 = NULL;
    CHECK_EQ_INT(tf_alpn01_make_cert("a.example.com", "other.thumb", &c3, &k3), 0);
    if (c3)
        check_acme_ext(c3, "other.thumb");
    X509_free(c3);
    EVP_PKEY_free(k3);
    X509_free(c2);
    X509_free(c1);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(k1);
}

static void test_bad_input(void)
{
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    CHECK_EQ_INT(tf_alpn01_make_cert("", test_ka, &cert, &key), TF_EINVAL);
    CHECK_EQ_INT(tf_alpn01_make_cert(NULL, test_ka, &cert, &key), TF_EINVAL);
    CHECK_EQ_INT(tf_alpn01_make_cert("bad name.com", test_ka, &cert, &key), TF_EINVAL);
    CHECK_EQ_INT(tf_alpn01_make_cert("ok.example.com", "", &cert, &key), TF_EINVAL);
    CHECK_EQ_INT(tf_alpn01_make_cert("ok.example.com", NULL, &cert, &key), TF_EINVAL);
    CHECK(cert == NULL && key == NULL);
    ERR_clear_error();
}

/* The python side prints "<critical> <extnValue hex> <SAN dNSNames>" for the PEM at argv[1]. */
static const char py_check[] =
    "import sys\n"
    "from cryptography import x509\n"
    "from cryptography.x509.oid import ObjectIdentifier\n"
    "c = x509.load_pem_x509_certificate(open(sys.argv[1], 'rb').read())\n"
    "e = c.extensions.get_extension_for_oid(ObjectIdentifier('" ACME_OID "'))\n"
    "san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value\n"
    "print(e.critical, e.value.value.hex(), ','.join(san.get_values_for_type(x509.DNSName)),\n"
    "      len(list(san)))\n";

/* Runs the python check on cert and returns its one output line (heap), or NULL. */
static char *python_inspect(X509 *cert)
{
    char path[] = "/tmp/tf_alpn01_XXXXXX";
    char line[512] = "";
    char *res = NULL;
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "w");
    CHECK(f && PEM_write_X509(f, cert) == 1);
    if (f)
        fclose(f);
    char *cmd = tf_asprintf("/usr/bin/python3 -c \"$TF_PY\" '%s' 2>&1", path);
    setenv("TF_PY", py_check, 1);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    if (p) {
        if (fgets(line, sizeof line, p))
            res = tf_strndup(line, strcspn(line, "\n"));
        CHECK_EQ_INT(pclose(p), 0);
    }
    free(cmd);
    unlink(path);
    return res;
}

static void test_independent_parser(void)
{
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    CHECK_EQ_INT(tf_alpn01_make_cert("py.example.net", test_ka, &cert, &key), 0);
    if (!cert)
        return;
    unsigned char md[32];
    sha256_str(test_ka, md);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    char *expect = tf_asprintf("True 0420%s py.example.net 1", hex);
    char *got = python_inspect(cert);
    CHECK_EQ_STR(got, expect);
    free(got);
    free(expect);
    X509_free(cert);
    EVP_PKEY_free(key);
}

int main(void)
{
    TF_TEST_RUN(test_cert_contents);
    TF_TEST_RUN(test_fresh_keys);
    TF_TEST_RUN(test_bad_input);
    TF_TEST_RUN(test_independent_parser);
    return TF_TEST_DONE();
}
