/*
 * config_storage.c: the storage options of the config module: --storage as a directory or
 * a redis:// URL (parsed here, once, for config checks and for storage_redis.c), the
 * --storage-prefix name rule, and the checks that tie --storage-key and --storage-ca to the
 * kind of storage chosen. Pure: no I/O (the key and CA files are read by the store at
 * start-up), no logging; messages never quote a password.
 */
#include "config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX_MAX 64

bool tf_config_storage_is_redis(const char *spec)
{
    return spec && (strncmp(spec, "redis://", 8) == 0 || strncmp(spec, "rediss://", 9) == 0);
}

void tf_config_redis_url_clear(struct tf_redis_url *u)
{
    free(u->user);
    free(u->pass);
    free(u->host);
    memset(u, 0, sizeof(*u));
}

static int hexdig(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* s[0..n) with %XX decoded into a heap string; NULL on a bad escape or a NUL byte. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = tf_malloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            *o++ = s[i];
            continue;
        }
        int hi = i + 2 < n ? hexdig(s[i + 1]) : -1;
        int lo = i + 2 < n ? hexdig(s[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            free(out);
            return NULL;
        }
        *o++ = (char)(hi << 4 | lo);
        i += 2;
    }
    *o = '\0';
    return out;
}

/* "[[USER]:PASSWORD@]": fills user (NULL when empty) and pass. */
static int parse_userinfo(const char *s, size_t n, struct tf_redis_url *u, char *err,
                          size_t errlen)
{
    const char *colon = memchr(s, ':', n);
    if (!colon) {
        snprintf(err, errlen, "expected [USER]:PASSWORD before '@' in the redis URL");
        return TF_EINVAL;
    }
    size_t ul = (size_t)(colon - s);
    u->user = ul ? pct_decode(s, ul) : NULL;
    u->pass = pct_decode(colon + 1, n - ul - 1);
    if ((ul && !u->user) || !u->pass) {
        snprintf(err, errlen, "bad %%-escape in the redis URL's user or password");
        return TF_EINVAL;
    }
    return 0;
}

/* "HOST:PORT" or "[V6]:PORT". */
static int parse_hostport(const char *s, size_t n, struct tf_redis_url *u, char *err,
                          size_t errlen)
{
    const char *hend, *colon;
    const char *h = s;
    if (n > 0 && s[0] == '[') {
        hend = memchr(s, ']', n);
        colon = hend ? hend + 1 : NULL;
        h = s + 1;
    } else {
        colon = memrchr(s, ':', n);
        hend = colon;
    }
    if (!hend || hend == h || !colon || colon >= s + n || *colon != ':') {
        snprintf(err, errlen, "expected HOST:PORT in the redis URL, got \"%.*s\"",
                 (int)TF_MIN(n, 120), s);
        return TF_EINVAL;
    }
    char *port = tf_strndup(colon + 1, (size_t)(s + n - colon - 1));
    long long p = 0;
    int rc = tf_config_parse_int(port, 1, 65535, &p, err, errlen);
    free(port);
    if (rc) {
        snprintf(err, errlen, "the redis URL's port must be 1..65535");
        return TF_EINVAL;
    }
    u->host = tf_strndup(h, (size_t)(hend - h));
    u->port = (int)p;
    for (const char *c = u->host; *c; c++) {
        if (*c == '/' || *c == '@' || *c == '[' || *c == ']' || (*c == ':' && h == s)) {
            snprintf(err, errlen, "bad host in the redis URL");
            return TF_EINVAL;
        }
    }
    return 0;
}

int tf_config_parse_redis_url(const char *spec, struct tf_redis_url *out, char *err,
                              size_t errlen)
{
    struct tf_redis_url u = {0};
    if (!tf_config_storage_is_redis(spec)) {
        snprintf(err, errlen, "expected redis://[[USER]:PASSWORD@]HOST:PORT[/DB]");
        return TF_EINVAL;
    }
    u.tls = spec[5] == 's';
    const char *a = spec + (u.tls ? 9 : 8);
    const char *slash = strchr(a, '/');
    const char *aend = slash ? slash : a + strlen(a);
    const char *at = NULL;
    for (const char *c = a; c < aend; c++)
        at = *c == '@' ? c : at;
    int rc = 0;
    if (at)
        rc = parse_userinfo(a, (size_t)(at - a), &u, err, errlen);
    if (!rc)
        rc = parse_hostport(at ? at + 1 : a, (size_t)(aend - (at ? at + 1 : a)), &u, err,
                            errlen);
    if (!rc && slash && slash[1]) {
        long long db = 0;
        rc = tf_config_parse_int(slash + 1, 0, 1000000, &db, err, errlen);
        if (rc)
            snprintf(err, errlen, "the redis URL's /DB must be a database number");
        u.db = (int)db;
    }
    if (rc) {
        tf_config_redis_url_clear(&u);
        return rc;
    }
    *out = u;
    return 0;
}

int tf_config_set_storage(struct tf_config *cfg, size_t off, const char *val, char *err,
                          size_t errlen)
{
    (void)off;
    if (!val[0]) {
        snprintf(err, errlen, "must not be empty");
        return TF_EINVAL;
    }
    if (tf_config_storage_is_redis(val)) {
        struct tf_redis_url u;
        if (tf_config_parse_redis_url(val, &u, err, errlen) != 0)
            return TF_EINVAL;
        tf_config_redis_url_clear(&u);
    }
    free(cfg->storage);
    cfg->storage = tf_strdup(val);
    return 0;
}

int tf_config_set_storage_prefix(struct tf_config *cfg, size_t off, const char *val, char *err,
                                 size_t errlen)
{
    (void)off;
    size_t n = strlen(val);
    bool ok = n > 0 && n <= PREFIX_MAX;
    for (size_t i = 0; ok && i < n; i++) {
        char c = val[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    }
    if (!ok) {
        snprintf(err, errlen, "expected 1 to %d of [A-Za-z0-9._-], got \"%.120s\"", PREFIX_MAX,
                 val);
        return TF_EINVAL;
    }
    free(cfg->storage_prefix);
    cfg->storage_prefix = tf_strdup(val);
    return 0;
}

int tf_config_check_storage(const struct tf_config *cfg, char *err, size_t errlen)
{
    bool redis = tf_config_storage_is_redis(cfg->storage);
    if (cfg->storage_ca && !(redis && strncmp(cfg->storage, "rediss://", 9) == 0)) {
        snprintf(err, errlen, "config: --storage-ca: only for rediss:// storage");
        return TF_EINVAL;
    }
    if (redis && !cfg->storage_key) {
        snprintf(err, errlen, "config: --storage-key: required with redis storage (a key FILE, or "
                              "\"none\" to keep private keys unencrypted in Redis)");
        return TF_EINVAL;
    }
    if (!redis && cfg->storage_key) {
        snprintf(err, errlen, "config: --storage-key: only for redis:// storage");
        return TF_EINVAL;
    }
    if (!redis && cfg->storage_cache) {
        snprintf(err, errlen, "config: --storage-cache: only for redis:// storage");
        return TF_EINVAL;
    }
    if (!redis && cfg->storage_prefix) {
        snprintf(err, errlen, "config: --storage-prefix: only for redis:// storage");
        return TF_EINVAL;
    }
    return 0;
}
