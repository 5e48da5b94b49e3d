/*
 * config_acme.c: the ACME CA list of the config module. --acme-directory is repeatable, each
 * "URL[,ca=FILE][,eab-kid=KID,eab-hmac=KEY]" one CA, tried in the order given; the plain
 * --acme-ca, --acme-eab-kid and --acme-eab-hmac belong to the first directory (as when there
 * was only one). Also what a reload compares. Pure: no I/O (the ca= files are read by the
 * HTTP client at start-up and by --check), no logging.
 */
#include "config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define B64URL_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

static void ca_clear(struct tf_acme_ca_cfg *c)
{
    free(c->directory);
    free(c->ca);
    free(c->eab_kid);
    free(c->eab_hmac);
    memset(c, 0, sizeof *c);
}

void tf_config_clear_acme_cas(struct tf_config *cfg)
{
    for (int i = 0; i < cfg->n_acme_cas; i++)
        ca_clear(&cfg->acme_cas[i]);
    free(cfg->acme_cas);
    cfg->acme_cas = NULL;
    cfg->n_acme_cas = 0;
}

/* One ",key=value" option of a directory into c; the key names which field. */
static int ca_option(struct tf_acme_ca_cfg *c, const char *opt, size_t n, char *err,
                     size_t errlen)
{
    static const char *const keys[] = {"ca", "eab-kid", "eab-hmac"};
    char **fields[] = {&c->ca, &c->eab_kid, &c->eab_hmac};
    const char *eq = memchr(opt, '=', n);
    size_t klen = eq ? (size_t)(eq - opt) : n, vlen = eq ? n - klen - 1 : 0;
    for (size_t i = 0; i < TF_ARRAY_LEN(keys); i++) {
        if (strlen(keys[i]) != klen || strncmp(keys[i], opt, klen) != 0)
            continue;
        if (!eq || vlen == 0) {
            snprintf(err, errlen, "\"%s=\" needs a value", keys[i]);
            return TF_EINVAL;
        }
        if (*fields[i]) {
            snprintf(err, errlen, "\"%s=\" given twice", keys[i]);
            return TF_EINVAL;
        }
        *fields[i] = tf_strndup(eq + 1, vlen);
        if (i == 2 && strspn(*fields[i], B64URL_CHARS) != vlen) {
            snprintf(err, errlen, "eab-hmac: expected base64url (A-Z a-z 0-9 - _, no padding)");
            return TF_EINVAL;
        }
        return 0;
    }
    snprintf(err, errlen, "unknown option \"%.*s\" (expected ca=, eab-kid= or eab-hmac=)",
             (int)TF_MIN(klen, 60), opt);
    return TF_EINVAL;
}

/* "URL[,ca=FILE][,eab-kid=KID,eab-hmac=KEY]" into c (cleared by the caller on failure). */
static int parse_ca(const char *val, struct tf_acme_ca_cfg *c, char *err, size_t errlen)
{
    const char *comma = strchr(val, ',');
    size_t ulen = comma ? (size_t)(comma - val) : strlen(val);
    if (strncmp(val, "https://", 8) != 0 && strncmp(val, "http://", 7) != 0) {
        snprintf(err, errlen, "expected an http:// or https:// URL, got \"%.*s\"",
                 (int)TF_MIN(ulen, 120), val);
        return TF_EINVAL;
    }
    c->directory = tf_strndup(val, ulen);
    for (const char *p = comma; p; p = comma) {
        p++;
        comma = strchr(p, ',');
        int rc = ca_option(c, p, comma ? (size_t)(comma - p) : strlen(p), err, errlen);
        if (rc < 0)
            return rc;
    }
    if (!c->eab_kid != !c->eab_hmac) {
        snprintf(err, errlen, "%s needs %s as well (the two go together)",
                 c->eab_kid ? "eab-kid=" : "eab-hmac=", c->eab_kid ? "eab-hmac=" : "eab-kid=");
        return TF_EINVAL;
    }
    return 0;
}

int tf_config_set_acme_directory(struct tf_config *cfg, size_t off, const char *val, char *err,
                                 size_t errlen)
{
    (void)off;
    struct tf_acme_ca_cfg c = {0};
    if (!val) {
        tf_config_clear_acme_cas(cfg);
        return 0;
    }
    int rc = parse_ca(val, &c, err, errlen);
    for (int i = 0; rc == 0 && i < cfg->n_acme_cas; i++) {
        if (strcmp(cfg->acme_cas[i].directory, c.directory) == 0) {
            snprintf(err, errlen, "\"%.200s\" listed twice", c.directory);
            rc = TF_EINVAL;
        }
    }
    if (rc < 0) {
        ca_clear(&c);
        return rc;
    }
    cfg->acme_cas = tf_realloc(cfg->acme_cas, (size_t)(cfg->n_acme_cas + 1) * sizeof c);
    cfg->acme_cas[cfg->n_acme_cas++] = c;
    return 0;
}

/* Give the first CA the plain --acme-ca and --acme-eab-* unless it names its own: both for
 * one CA is ambiguous, so an error naming the plain option (by who). */
static int merge_first(struct tf_config *cfg, const char *const who[3], char *err,
                       size_t errlen)
{
    struct tf_acme_ca_cfg *c = &cfg->acme_cas[0];
    if (cfg->acme_ca && c->ca) {
        snprintf(err, errlen, "%s: the first --acme-directory has its own ca=; give one of "
                 "the two", who[0]);
        return TF_EINVAL;
    }
    if (cfg->acme_eab_kid && c->eab_kid) {
        snprintf(err, errlen, "%s: the first --acme-directory has its own eab-kid=; give one "
                 "of the two", who[1]);
        return TF_EINVAL;
    }
    if (cfg->acme_ca)
        c->ca = tf_strdup(cfg->acme_ca);
    if (cfg->acme_eab_kid) {
        c->eab_kid = tf_strdup(cfg->acme_eab_kid);
        c->eab_hmac = tf_strdup(cfg->acme_eab_hmac);
    }
    return 0;
}

int tf_config_finish_acme(struct tf_config *cfg, const char *const who[3], char *err,
                          size_t errlen)
{
    if (cfg->n_acme_cas == 0) {
        snprintf(err, errlen, "--acme-directory: none given");
        return TF_EINVAL;
    }
    if (merge_first(cfg, who, err, errlen) < 0)
        return TF_EINVAL;
    free(cfg->acme_directory);
    cfg->acme_directory = tf_strdup(cfg->acme_cas[0].directory);
    return 0;
}

static bool str_differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

bool tf_config_acme_cas_differ(const struct tf_config *a, const struct tf_config *b)
{
    if (a->n_acme_cas != b->n_acme_cas)
        return true;
    for (int i = 0; i < a->n_acme_cas; i++) {
        const struct tf_acme_ca_cfg *x = &a->acme_cas[i], *y = &b->acme_cas[i];
        if (str_differs(x->directory, y->directory) || str_differs(x->ca, y->ca) ||
            str_differs(x->eab_kid, y->eab_kid) || str_differs(x->eab_hmac, y->eab_hmac))
            return true;
    }
    return false;
}
