/*
 * config_opts.c: the option handlers of the config module, one per option whose value is
 * more than a number, duration or string (listeners, backend, routes, ALPN, enums, the
 * admin and redirect addresses, allow patterns), and the function that frees everything a
 * config owns. Each handler writes into a struct tf_config still being built by config.c;
 * on failure it leaves the field as it was. Pure: no I/O, no logging.
 */
#include "config_int.h"
#include "tlsfront/base/log.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Pick val among the '|'-separated names in choices; *idx is its position. */
static int choose(const char *val, const char *choices, int *idx, char *err, size_t errlen)
{
    size_t vlen = strlen(val);
    int i = 0;
    for (const char *p = choices;; i++) {
        const char *e = strchr(p, '|');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == vlen && strncmp(p, val, n) == 0) {
            *idx = i;
            return 0;
        }
        if (!e)
            break;
        p = e + 1;
    }
    snprintf(err, errlen, "expected %s, got \"%.120s\"", choices, val);
    return TF_EINVAL;
}

int tf_config_parse_bool(const char *val, bool *out, char *err, size_t errlen)
{
    int i = 0, rc = choose(val, "1|true|yes|on|0|false|no|off", &i, err, errlen);
    if (rc == 0)
        *out = (i < 4);
    return rc;
}

int tf_config_set_tls_min(struct tf_config *cfg, size_t off, const char *val, char *err,
                          size_t errlen)
{
    (void)off;
    int i = 0, rc = choose(val, "1.2|1.3", &i, err, errlen);
    if (rc == 0)
        cfg->tls12 = (i == 0);
    return rc;
}

int tf_config_set_log_format(struct tf_config *cfg, size_t off, const char *val, char *err,
                             size_t errlen)
{
    (void)off;
    int i = 0, rc = choose(val, "text|json", &i, err, errlen);
    if (rc == 0)
        cfg->log_json = (i == 1);
    return rc;
}

int tf_config_set_access_log(struct tf_config *cfg, size_t off, const char *val, char *err,
                             size_t errlen)
{
    (void)off;
    int i = 0, rc = choose(val, "on|off", &i, err, errlen);
    if (rc == 0)
        cfg->access_log = (i == 0);
    return rc;
}

int tf_config_set_log_level(struct tf_config *cfg, size_t off, const char *val, char *err,
                            size_t errlen)
{
    (void)off;
    static const int levels[] = {TF_LOG_DEBUG, TF_LOG_INFO, TF_LOG_WARN, TF_LOG_ERROR};
    int i = 0, rc = choose(val, "debug|info|warn|error", &i, err, errlen);
    if (rc == 0)
        cfg->log_level = levels[i];
    return rc;
}

/* off is that of acme_account_key or acme_cert_key. */
int tf_config_set_key_type(struct tf_config *cfg, size_t off, const char *val, char *err,
                           size_t errlen)
{
    static const enum tf_key_type types[] = {TF_KEY_EC256, TF_KEY_RSA2048, TF_KEY_RSA3072,
                                             TF_KEY_RSA4096};
    int i = 0, rc = choose(val, "ec256|rsa2048|rsa3072|rsa4096", &i, err, errlen);
    if (rc == 0)
        *(enum tf_key_type *)((char *)cfg + off) = types[i];
    return rc;
}

const char *tf_chal_type_name(enum tf_chal_type t)
{
    static const char *const names[TF_CHAL_COUNT] = {"tls-alpn-01", "http-01"};
    return (unsigned)t < TF_CHAL_COUNT ? names[t] : "?";
}

/* "tls-alpn-01,http-01": each known type at most once, in order of preference. */
int tf_config_set_acme_challenges(struct tf_config *cfg, size_t off, const char *val,
                                  char *err, size_t errlen)
{
    (void)off;
    enum tf_chal_type list[TF_CHAL_COUNT];
    int n = 0;
    const char *p = val;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char item[32];
        int i = 0;
        if (len == 0 || len >= sizeof(item)) {
            snprintf(err, errlen, "expected a list of tls-alpn-01|http-01, got \"%.120s\"", val);
            return TF_EINVAL;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (choose(item, "tls-alpn-01|http-01", &i, err, errlen) != 0)
            return TF_EINVAL;
        for (int k = 0; k < n; k++)
            if (list[k] == (enum tf_chal_type)i) {
                snprintf(err, errlen, "%s is listed twice", item);
                return TF_EINVAL;
            }
        list[n++] = (enum tf_chal_type)i;
        if (!e)
            break;
        p = e + 1;
    }
    memcpy(cfg->acme_challenges, list, sizeof(list));
    cfg->n_acme_challenges = n;
    return 0;
}

int tf_config_set_issue_rate(struct tf_config *cfg, size_t off, const char *val, char *err,
                             size_t errlen)
{
    (void)off;
    return tf_config_parse_double(val, 0.001, 1e6, &cfg->issue_rate, err, errlen);
}

static void replace_str(char **field, const char *val)
{
    free(*field);
    *field = *val ? tf_strdup(val) : NULL;
}

/* The EAB MAC key is base64url without padding (RFC 8555 section 7.3.4). */
int tf_config_set_eab_hmac(struct tf_config *cfg, size_t off, const char *val, char *err,
                           size_t errlen)
{
    (void)off;
    size_t n = strspn(val, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
    if (val[n] != '\0') {
        snprintf(err, errlen, "expected base64url (A-Z a-z 0-9 - _, no padding)");
        return TF_EINVAL;
    }
    replace_str(&cfg->acme_eab_hmac, val);
    return 0;
}

/* An "ADDR:PORT" option that is off when empty: keeps the text and the parsed address. */
static int set_addr_opt(char **spec, struct sockaddr_storage *addr, const char *val, char *err,
                        size_t errlen)
{
    struct sockaddr_storage ss;
    bool any = false;
    int rc = 0;

    memset(&ss, 0, sizeof(ss));
    if (*val)
        rc = tf_config_parse_addr(val, strlen(val), &ss, &any, err, errlen);
    if (rc < 0)
        return rc;
    replace_str(spec, val);
    *addr = ss;
    return 0;
}

int tf_config_set_admin(struct tf_config *cfg, size_t off, const char *val, char *err,
                        size_t errlen)
{
    (void)off;
    return set_addr_opt(&cfg->admin, &cfg->admin_addr, val, err, errlen);
}

int tf_config_set_redirect(struct tf_config *cfg, size_t off, const char *val, char *err,
                           size_t errlen)
{
    (void)off;
    return set_addr_opt(&cfg->redirect_http, &cfg->redirect_http_addr, val, err, errlen);
}

int tf_config_set_alpn(struct tf_config *cfg, size_t off, const char *val, char *err, size_t errlen)
{
    (void)off;
    return tf_config_parse_alpn(val, ',', cfg->alpn, &cfg->n_alpn, err, errlen);
}

/* "" removes the default backend (so a flag can undo the file's). */
int tf_config_set_backend(struct tf_config *cfg, size_t off, const char *val, char *err,
                          size_t errlen)
{
    (void)off;
    struct tf_backend b;
    int rc = 0;

    if (*val)
        rc = tf_config_parse_backend(val, &b, err, errlen);
    if (rc < 0)
        return rc;
    tf_config_backend_clear(cfg->backend);
    free(cfg->backend);
    cfg->backend = NULL;
    if (*val) {
        cfg->backend = tf_malloc(sizeof(b));
        *cfg->backend = b;
    }
    return 0;
}

static void clear_listen(struct tf_config *cfg)
{
    for (int i = 0; i < cfg->n_listen; i++)
        tf_config_listen_clear(&cfg->listen[i]);
    free(cfg->listen);
    cfg->listen = NULL;
    cfg->n_listen = 0;
}

static void clear_routes(struct tf_config *cfg)
{
    for (int i = 0; i < cfg->n_routes; i++)
        tf_config_route_clear(&cfg->routes[i]);
    free(cfg->routes);
    cfg->routes = NULL;
    cfg->n_routes = 0;
}

static void clear_allow(struct tf_config *cfg)
{
    for (int i = 0; i < cfg->n_allow; i++)
        free(cfg->allow[i]);
    free(cfg->allow);
    cfg->allow = NULL;
    cfg->n_allow = 0;
}

/* Repeatable options from here on: val NULL empties the list, anything else appends. */
int tf_config_set_listen(struct tf_config *cfg, size_t off, const char *val, char *err,
                         size_t errlen)
{
    (void)off;
    struct tf_listen l;
    int rc;

    if (!val) {
        clear_listen(cfg);
        return 0;
    }
    rc = tf_config_parse_listen(val, &l, err, errlen);
    if (rc < 0)
        return rc;
    cfg->listen = tf_realloc(cfg->listen, (size_t)(cfg->n_listen + 1) * sizeof(l));
    cfg->listen[cfg->n_listen++] = l;
    return 0;
}

int tf_config_set_route(struct tf_config *cfg, size_t off, const char *val, char *err,
                        size_t errlen)
{
    (void)off;
    struct tf_route r;
    int rc;

    if (!val) {
        clear_routes(cfg);
        return 0;
    }
    rc = tf_config_parse_route(val, &r, err, errlen);
    if (rc < 0)
        return rc;
    for (int i = 0; i < cfg->n_routes; i++) {
        if (strcmp(cfg->routes[i].pattern, r.pattern) == 0) {
            snprintf(err, errlen, "duplicate pattern \"%s\"", r.pattern);
            tf_config_route_clear(&r);
            return TF_EINVAL;
        }
    }
    cfg->routes = tf_realloc(cfg->routes, (size_t)(cfg->n_routes + 1) * sizeof(r));
    cfg->routes[cfg->n_routes++] = r;
    return 0;
}

int tf_config_set_allow(struct tf_config *cfg, size_t off, const char *val, char *err,
                        size_t errlen)
{
    (void)off;
    char *pat = NULL;
    int rc;

    if (!val) {
        clear_allow(cfg);
        return 0;
    }
    rc = tf_config_parse_pattern(val, &pat, err, errlen);
    if (rc < 0)
        return rc;
    cfg->allow = tf_realloc(cfg->allow, (size_t)(cfg->n_allow + 1) * sizeof(char *));
    cfg->allow[cfg->n_allow++] = pat;
    return 0;
}

static void clear_webhooks(struct tf_config *cfg)
{
    for (int i = 0; i < cfg->n_webhooks; i++)
        free(cfg->webhooks[i]);
    free(cfg->webhooks);
    cfg->webhooks = NULL;
    cfg->n_webhooks = 0;
}

/* One --webhook URL: http:// or https:// with a host (the client parses the rest when it
 * sends). */
int tf_config_set_webhook(struct tf_config *cfg, size_t off, const char *val, char *err,
                          size_t errlen)
{
    (void)off;
    if (!val) {
        clear_webhooks(cfg);
        return 0;
    }
    size_t skip = strncmp(val, "https://", 8) == 0 ? 8 : strncmp(val, "http://", 7) == 0 ? 7 : 0;
    if (!skip || !val[skip] || val[skip] == '/' || strpbrk(val, " \t\r\n")) {
        snprintf(err, errlen, "expected an http:// or https:// URL, got \"%.120s\"", val);
        return TF_EINVAL;
    }
    cfg->webhooks = tf_realloc(cfg->webhooks, (size_t)(cfg->n_webhooks + 1) * sizeof(char *));
    cfg->webhooks[cfg->n_webhooks++] = tf_strdup(val);
    return 0;
}

static void clear_profiles(struct tf_config *cfg)
{
    for (int i = 0; i < cfg->n_profiles; i++) {
        free(cfg->profiles[i].pattern);
        free(cfg->profiles[i].profile);
    }
    free(cfg->profiles);
    cfg->profiles = NULL;
    cfg->n_profiles = 0;
}

/* "PATTERN=PROFILE": the ACME profile (draft-ietf-acme-profiles) for matching names. */
int tf_config_set_profile_for(struct tf_config *cfg, size_t off, const char *val, char *err,
                              size_t errlen)
{
    (void)off;
    if (!val) {
        clear_profiles(cfg);
        return 0;
    }
    const char *eq = strchr(val, '=');
    if (!eq || eq == val || eq[1] == '\0' || strspn(eq + 1, "abcdefghijklmnopqrstuvwxyz"
                                                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                             "0123456789._-") != strlen(eq + 1)) {
        snprintf(err, errlen, "expected PATTERN=PROFILE, got \"%s\"", val);
        return TF_EINVAL;
    }
    char *pat_text = tf_strndup(val, (size_t)(eq - val));
    char *pat = NULL;
    int rc = tf_config_parse_pattern(pat_text, &pat, err, errlen);
    free(pat_text);
    if (rc < 0)
        return rc;
    cfg->profiles = tf_realloc(cfg->profiles, (size_t)(cfg->n_profiles + 1) * sizeof *cfg->profiles);
    cfg->profiles[cfg->n_profiles].pattern = pat;
    cfg->profiles[cfg->n_profiles].profile = tf_strdup(eq + 1);
    cfg->n_profiles++;
    return 0;
}

int tf_config_set_forwarded(struct tf_config *cfg, size_t off, const char *val, char *err,
                            size_t errlen)
{
    (void)off;
    return tf_config_parse_bool(val, &cfg->forwarded, err, errlen);
}

int tf_config_set_admin_token_reads(struct tf_config *cfg, size_t off, const char *val, char *err,
                                    size_t errlen)
{
    (void)off;
    return tf_config_parse_bool(val, &cfg->admin_token_reads, err, errlen);
}

/* A header field value (RFC 9110 section 5.5): visible ASCII, spaces and tabs, no CR/LF. */
int tf_config_set_hsts(struct tf_config *cfg, size_t off, const char *val, char *err,
                       size_t errlen)
{
    (void)off;
    for (const char *p = val; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if ((ch < 0x20 && ch != '\t') || ch >= 0x7f) {
            snprintf(err, errlen, "header value may hold visible ASCII and blanks only");
            return TF_EINVAL;
        }
    }
    replace_str(&cfg->hsts, val);
    return 0;
}

/* The count that goes with a CIDR list field. */
static int *cidr_count(struct tf_config *cfg, size_t off)
{
    if (off == offsetof(struct tf_config, proxy_from))
        return &cfg->n_proxy_from;
    return &cfg->n_trusted_xff;
}

int tf_config_set_cidr(struct tf_config *cfg, size_t off, const char *val, char *err,
                       size_t errlen)
{
    struct tf_cidr **list = (struct tf_cidr **)((char *)cfg + off);
    int *n = cidr_count(cfg, off);
    struct tf_cidr c;

    if (!val) {
        free(*list);
        *list = NULL;
        *n = 0;
        return 0;
    }
    if (tf_cidr_parse(val, &c) != 0) {
        snprintf(err, errlen, "expected ADDR or ADDR/PREFIX (host bits zero), got \"%.120s\"",
                 val);
        return TF_EINVAL;
    }
    *list = tf_realloc(*list, (size_t)(*n + 1) * sizeof(c));
    (*list)[(*n)++] = c;
    return 0;
}

void tf_config_free_all(struct tf_config *cfg)
{
    if (!cfg)
        return;
    char **strs[] = {&cfg->certs_dir,      &cfg->default_cert, &cfg->admin,   &cfg->storage,
                     &cfg->acme_directory, &cfg->acme_email,   &cfg->acme_ca, &cfg->acme_eab_kid,
                     &cfg->acme_eab_hmac,  &cfg->acme_profile, &cfg->ask,     &cfg->redirect_http,
                     &cfg->hsts,           &cfg->storage_prefix, &cfg->storage_key,
                     &cfg->storage_ca,     &cfg->storage_cache, &cfg->admin_token_file,
                     &cfg->webhook_secret_file, &cfg->webhook_ca};
    clear_listen(cfg);
    clear_routes(cfg);
    clear_allow(cfg);
    clear_profiles(cfg);
    tf_config_clear_acme_cas(cfg);
    clear_webhooks(cfg);
    free(cfg->proxy_from);
    free(cfg->trusted_xff);
    tf_config_backend_clear(cfg->backend);
    free(cfg->backend);
    for (int i = 0; i < cfg->n_alpn; i++)
        free(cfg->alpn[i]);
    for (size_t i = 0; i < TF_ARRAY_LEN(strs); i++)
        free(*strs[i]);
    free(cfg);
}
