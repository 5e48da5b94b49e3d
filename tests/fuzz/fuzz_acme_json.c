/*
 * fuzz_acme_json.c: libFuzzer target for the JSON documents an ACME server sends
 * (acme_json.c): directory, order, authorization, account and problem documents, and the
 * nonce check. The first byte picks the parser (and, for problems, the HTTP status); the
 * rest is the body, in a buffer of exactly its length with no NUL after it, as the HTTP
 * client hands it over.
 * Checked: no crash, leak or out-of-bounds read (ASan, LSan); a failure always comes with a
 * one-line reason; a parsed document holds what the header promises (required URLs set,
 * http(s) URLs, counts that match the arrays); clearing after success or failure is safe;
 * problem helpers (copy, summary, is, is_paused) work on every parsed problem.
 */
#include "tlsfront/acme/acme.h"
#include "tlsfront/base/common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_url(const char *u, bool required)
{
    if (!u) {
        if (required)
            abort();
        return;
    }
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
        abort();
}

static void check_err(int rc, const char *err)
{
    if (rc != 0 && (rc != TF_EINVAL || err[0] == '\0' || strchr(err, '\n')))
        abort();
}

static void problem_helpers(const struct tf_acme_problem *p)
{
    struct tf_acme_problem copy;
    char buf[512];
    char *url = NULL;
    tf_acme_problem_copy(&copy, p);
    tf_acme_problem_summary(&copy, buf, sizeof(buf));
    if (strlen(buf) >= sizeof(buf) || strchr(buf, '\n'))
        abort();
    (void)tf_acme_problem_is(&copy, "badNonce");
    if (tf_acme_problem_is_paused(&copy, &url) && url)
        check_url(url, true);
    free(url);
    tf_acme_problem_clear(&copy);
}

static void directory(const char *b, size_t n)
{
    struct tf_acme_directory d;
    char err[256] = "";
    memset(&d, 0, sizeof(d));
    int rc = tf_acme_parse_directory(b, n, &d, err, sizeof(err));
    check_err(rc, err);
    if (rc == 0) {
        check_url(d.new_nonce, true);
        check_url(d.new_account, true);
        check_url(d.new_order, true);
        check_url(d.renewal_info, false);
        for (int i = 0; i < d.n_profiles; i++)
            if (!d.profiles[i])
                abort();
    }
    tf_acme_directory_clear(&d);
}

static void order(const char *b, size_t n)
{
    struct tf_acme_order_doc o;
    char err[256] = "";
    memset(&o, 0, sizeof(o));
    int rc = tf_acme_parse_order(b, n, &o, err, sizeof(err));
    check_err(rc, err);
    if (rc == 0) {
        check_url(o.finalize, true);
        check_url(o.certificate, false);
        for (int i = 0; i < o.n_authz; i++)
            check_url(o.authorizations[i], true);
        (void)tf_acme_status_name(o.status);
        if (o.error)
            problem_helpers(o.error);
    }
    tf_acme_order_doc_clear(&o);
}

static void authz(const char *b, size_t n)
{
    struct tf_acme_authz_doc z;
    char err[256] = "";
    memset(&z, 0, sizeof(z));
    int rc = tf_acme_parse_authz(b, n, &z, err, sizeof(err));
    check_err(rc, err);
    if (rc == 0) {
        for (int i = 0; i < z.n_challenges; i++) {
            const struct tf_acme_challenge_doc *c = &z.challenges[i];
            if (!c->type)
                abort();
            check_url(c->url, true);
            if (c->error)
                problem_helpers(c->error);
        }
        const struct tf_acme_challenge_doc *t = tf_acme_authz_find(&z, "tls-alpn-01");
        if (t && strcmp(t->type, "tls-alpn-01") != 0)
            abort();
    }
    tf_acme_authz_doc_clear(&z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t n = size - 1;
    char *b = malloc(n ? n : 1); /* exactly n bytes: no NUL to lean on */
    memcpy(b, data + 1, n);
    char err[256] = "";
    enum tf_acme_status st;
    switch (data[0] % 6) {
    case 0:
        directory(b, n);
        break;
    case 1:
        order(b, n);
        break;
    case 2:
        authz(b, n);
        break;
    case 3:
        check_err(tf_acme_parse_account_status(b, n, &st, err, sizeof(err)), err);
        break;
    case 4: {
        struct tf_acme_problem p;
        tf_acme_problem_parse(b, n, 400 + data[0] / 6, &p);
        problem_helpers(&p);
        tf_acme_problem_clear(&p);
        break;
    }
    default: {
        char *nonce = tf_strndup(b, n);
        (void)tf_acme_nonce_valid(nonce);
        free(nonce);
        break;
    }
    }
    free(b);
    return 0;
}
