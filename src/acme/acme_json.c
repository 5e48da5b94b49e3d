/*
 * acme_json.c: parsing of the JSON documents an ACME server sends (RFC 8555 §7.1: directory,
 * order, authorization, challenge; RFC 7807 problem documents) with cJSON. Everything the CA
 * sends is untrusted: wrong types, missing members, truncated or oversized bodies become a
 * one-line error, never a crash or an assert. Pure functions; no I/O, no logging.
 */
#include "tlsfront/acme/acme.h"
#include "tlsfront/base/common.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DOC (1024 * 1024)
#define MAX_ITEMS 100

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The reason may quote what the CA sent (an unknown status): control bytes in it become
 * '?', so the reason stays one line in the log. */
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    for (size_t i = 0; err && i < errlen && err[i]; i++)
        if ((unsigned char)err[i] < 0x20 || err[i] == 0x7f)
            err[i] = '?';
    return TF_EINVAL;
}

/* Parse body as a JSON object; NULL with err filled otherwise. */
static cJSON *parse_object(const char *body, size_t len, const char *what, char *err,
                           size_t errlen)
{
    if (!body || len == 0) {
        fail(err, errlen, "%s: empty body", what);
        return NULL;
    }
    if (len > MAX_DOC) {
        fail(err, errlen, "%s: body of %zu bytes is too large", what, len);
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(body, len);
    if (!j) {
        fail(err, errlen, "%s: not valid JSON", what);
        return NULL;
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        fail(err, errlen, "%s: not a JSON object", what);
        return NULL;
    }
    return j;
}

/* The string member key of obj, or NULL when absent or not a string. */
static const char *get_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

static bool is_url(const char *s)
{
    if (!s)
        return false;
    size_t n = strlen(s);
    if (n > 2048)
        return false;
    if (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

/* Copy the URL member key into *out. Required members fail when absent; optional ones
 * fail only when present but malformed. */
static int get_url(const cJSON *obj, const char *key, bool required, char **out,
                   const char *what, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v && !required)
        return 0;
    const char *s = get_str(obj, key);
    if (!s)
        return fail(err, errlen, "%s: \"%s\" missing or not a string", what, key);
    if (!is_url(s))
        return fail(err, errlen, "%s: \"%s\" is not an http(s) URL", what, key);
    *out = tf_strdup(s);
    return 0;
}

static const char *const status_names[] = {
    [TF_ACME_ST_UNKNOWN] = "unknown",       [TF_ACME_ST_PENDING] = "pending",
    [TF_ACME_ST_READY] = "ready",           [TF_ACME_ST_PROCESSING] = "processing",
    [TF_ACME_ST_VALID] = "valid",           [TF_ACME_ST_INVALID] = "invalid",
    [TF_ACME_ST_EXPIRED] = "expired",       [TF_ACME_ST_DEACTIVATED] = "deactivated",
    [TF_ACME_ST_REVOKED] = "revoked",
};

const char *tf_acme_status_name(enum tf_acme_status st)
{
    if ((size_t)st >= TF_ARRAY_LEN(status_names))
        return "unknown";
    return status_names[st];
}

static int get_status(const cJSON *obj, enum tf_acme_status *st, const char *what, char *err,
                      size_t errlen)
{
    const char *s = get_str(obj, "status");
    if (!s)
        return fail(err, errlen, "%s: \"status\" missing or not a string", what);
    for (size_t i = 1; i < TF_ARRAY_LEN(status_names); i++) {
        if (strcmp(s, status_names[i]) == 0) {
            *st = (enum tf_acme_status)i;
            return 0;
        }
    }
    return fail(err, errlen, "%s: unknown status \"%.40s\"", what, s);
}

/* ---- problems ---- */

static char *dup_or_empty(const char *s) { return tf_strdup(s ? s : ""); }

/* Printable prefix of a non-JSON body, for the reason line. */
static void body_excerpt(const char *body, size_t len, char *buf, size_t buflen)
{
    size_t j = 0;
    for (size_t i = 0; body && i < len && j + 1 < buflen && i < 80; i++)
        buf[j++] = isprint((unsigned char)body[i]) ? body[i] : '.';
    buf[j] = '\0';
}

static void parse_subproblems(const cJSON *arr, struct tf_acme_problem *out)
{
    int n = cJSON_GetArraySize(arr);
    if (n <= 0)
        return;
    n = TF_MIN(n, MAX_ITEMS);
    out->sub = tf_calloc((size_t)n, sizeof(*out->sub));
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (out->n_sub >= n)
            break;
        if (!cJSON_IsObject(it))
            continue;
        struct tf_acme_subproblem *s = &out->sub[out->n_sub++];
        s->type = dup_or_empty(get_str(it, "type"));
        s->detail = dup_or_empty(get_str(it, "detail"));
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "identifier");
        if (cJSON_IsObject(id) && get_str(id, "type") && get_str(id, "value")) {
            s->ident_type = tf_strdup(get_str(id, "type"));
            s->ident_value = tf_strdup(get_str(id, "value"));
        }
    }
}

static void problem_from_json(const cJSON *j, int http_status, struct tf_acme_problem *out)
{
    out->type = dup_or_empty(get_str(j, "type"));
    out->detail = dup_or_empty(get_str(j, "detail"));
    const char *inst = get_str(j, "instance");
    out->instance = inst ? tf_strdup(inst) : NULL;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "status");
    out->status = cJSON_IsNumber(st) && st->valuedouble >= 100 && st->valuedouble < 600
                      ? st->valueint
                      : http_status;
    const cJSON *subs = cJSON_GetObjectItemCaseSensitive(j, "subproblems");
    if (cJSON_IsArray(subs))
        parse_subproblems(subs, out);
}

void tf_acme_problem_parse(const char *body, size_t len, int http_status,
                           struct tf_acme_problem *out)
{
    memset(out, 0, sizeof(*out));
    cJSON *j = NULL;
    if (body && len > 0 && len <= MAX_DOC)
        j = cJSON_ParseWithLength(body, len);
    if (cJSON_IsObject(j) && get_str(j, "type")) {
        problem_from_json(j, http_status, out);
    } else {
        char ex[96];
        body_excerpt(body, len, ex, sizeof(ex));
        out->type = tf_strdup("");
        out->detail = ex[0] ? tf_asprintf("HTTP %d: %s", http_status, ex)
                            : tf_asprintf("HTTP %d", http_status);
        out->status = http_status;
    }
    cJSON_Delete(j);
}

void tf_acme_problem_clear(struct tf_acme_problem *p)
{
    if (!p)
        return;
    free(p->type);
    free(p->detail);
    free(p->instance);
    for (int i = 0; i < p->n_sub; i++) {
        free(p->sub[i].type);
        free(p->sub[i].detail);
        free(p->sub[i].ident_type);
        free(p->sub[i].ident_value);
    }
    free(p->sub);
    memset(p, 0, sizeof(*p));
}

static char *dup_opt(const char *s) { return s ? tf_strdup(s) : NULL; }

void tf_acme_problem_copy(struct tf_acme_problem *dst, const struct tf_acme_problem *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->type = dup_or_empty(src->type);
    dst->detail = dup_or_empty(src->detail);
    dst->instance = dup_opt(src->instance);
    dst->status = src->status;
    if (src->n_sub > 0) {
        dst->sub = tf_calloc((size_t)src->n_sub, sizeof(*dst->sub));
        for (int i = 0; i < src->n_sub; i++) {
            dst->sub[i].type = dup_or_empty(src->sub[i].type);
            dst->sub[i].detail = dup_or_empty(src->sub[i].detail);
            dst->sub[i].ident_type = dup_opt(src->sub[i].ident_type);
            dst->sub[i].ident_value = dup_opt(src->sub[i].ident_value);
        }
        dst->n_sub = src->n_sub;
    }
}

bool tf_acme_problem_is(const struct tf_acme_problem *p, const char *short_type)
{
    size_t n = strlen(TF_ACME_ERR_PREFIX);
    return p && p->type && strncmp(p->type, TF_ACME_ERR_PREFIX, n) == 0 &&
           strcmp(p->type + n, short_type) == 0;
}

void tf_acme_problem_summary(const struct tf_acme_problem *p, char *buf, size_t len)
{
    size_t off = 0;
    int w = snprintf(buf, len, "%s :: %s", p->type && p->type[0] ? p->type : "(no type)",
                     p->detail ? p->detail : "");
    off = w < 0 ? 0 : TF_MIN((size_t)w, len - 1);
    for (int i = 0; i < p->n_sub && off + 1 < len; i++) {
        const struct tf_acme_subproblem *s = &p->sub[i];
        w = snprintf(buf + off, len - off, "%s%s: %s :: %s", i ? "; " : " [",
                     s->ident_value ? s->ident_value : "?", s->type, s->detail);
        off = w < 0 ? off : TF_MIN(off + (size_t)w, len - 1);
    }
    if (p->n_sub > 0 && off + 2 < len) {
        buf[off++] = ']';
        buf[off] = '\0';
    }
    /* Keep the reason on one line whatever the CA put in its detail. */
    for (size_t i = 0; i < off; i++)
        if (buf[i] == '\n' || buf[i] == '\r')
            buf[i] = ' ';
}

/* The first http(s) URL in text, as a new string, or NULL. */
static char *find_url(const char *text)
{
    const char *p = strstr(text, "https://");
    if (!p)
        p = strstr(text, "http://");
    if (!p)
        return NULL;
    size_t n = 0;
    while (p[n] && !isspace((unsigned char)p[n]) && p[n] != '"' && p[n] != '>')
        n++;
    while (n > 0 && (p[n - 1] == '.' || p[n - 1] == ',' || p[n - 1] == ')'))
        n--;
    return tf_strndup(p, n);
}

bool tf_acme_problem_is_paused(const struct tf_acme_problem *p, char **url)
{
    if (url)
        *url = NULL;
    if (!p || !p->detail ||
        !(tf_acme_problem_is(p, "rateLimited") || tf_acme_problem_is(p, "unauthorized")))
        return false;
    if (!strcasestr(p->detail, "paused") && !strcasestr(p->detail, "unpause") &&
        !strcasestr(p->detail, "temporarily prevented from requesting"))
        return false;
    if (url) {
        *url = find_url(p->detail);
        if (!*url && p->instance && is_url(p->instance))
            *url = tf_strdup(p->instance);
    }
    return true;
}

/* ---- directory ---- */

static void parse_profiles(const cJSON *meta, struct tf_acme_directory *out)
{
    const cJSON *prof = cJSON_GetObjectItemCaseSensitive(meta, "profiles");
    if (!cJSON_IsObject(prof))
        return;
    int n = TF_MIN(cJSON_GetArraySize(prof), MAX_ITEMS);
    if (n <= 0)
        return;
    out->profiles = tf_calloc((size_t)n, sizeof(char *));
    const cJSON *it;
    cJSON_ArrayForEach(it, prof) {
        if (out->n_profiles >= n)
            break;
        if (it->string && it->string[0])
            out->profiles[out->n_profiles++] = tf_strdup(it->string);
    }
}

int tf_acme_parse_directory(const char *body, size_t len, struct tf_acme_directory *out,
                            char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    cJSON *j = parse_object(body, len, "directory", err, errlen);
    if (!j)
        return TF_EINVAL;
    const char *w = "directory";
    int rc = get_url(j, "newNonce", true, &out->new_nonce, w, err, errlen);
    if (!rc)
        rc = get_url(j, "newAccount", true, &out->new_account, w, err, errlen);
    if (!rc)
        rc = get_url(j, "newOrder", true, &out->new_order, w, err, errlen);
    if (!rc)
        rc = get_url(j, "revokeCert", false, &out->revoke_cert, w, err, errlen);
    if (!rc)
        rc = get_url(j, "keyChange", false, &out->key_change, w, err, errlen);
    if (!rc)
        rc = get_url(j, "renewalInfo", false, &out->renewal_info, w, err, errlen);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(j, "meta");
    if (!rc && meta && !cJSON_IsObject(meta))
        rc = fail(err, errlen, "directory: \"meta\" is not an object");
    if (!rc && meta) {
        const char *tos = get_str(meta, "termsOfService");
        out->terms_of_service = tos ? tf_strdup(tos) : NULL;
        out->eab_required =
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(meta, "externalAccountRequired"));
        parse_profiles(meta, out);
    }
    cJSON_Delete(j);
    return rc;
}

static void free_strv(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void tf_acme_directory_clear(struct tf_acme_directory *d)
{
    if (!d)
        return;
    free(d->new_nonce);
    free(d->new_account);
    free(d->new_order);
    free(d->revoke_cert);
    free(d->key_change);
    free(d->renewal_info);
    free(d->terms_of_service);
    free_strv(d->profiles, d->n_profiles);
    memset(d, 0, sizeof(*d));
}

/* ---- order ---- */

static struct tf_acme_problem *opt_problem(const cJSON *obj)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(obj, "error");
    if (!cJSON_IsObject(e))
        return NULL;
    struct tf_acme_problem *p = tf_calloc(1, sizeof(*p));
    problem_from_json(e, 0, p);
    return p;
}

static int parse_url_array(const cJSON *obj, const char *key, char ***out, int *n,
                           const char *what, char *err, size_t errlen)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsArray(arr))
        return fail(err, errlen, "%s: \"%s\" missing or not an array", what, key);
    int cnt = cJSON_GetArraySize(arr);
    if (cnt < 1 || cnt > MAX_ITEMS)
        return fail(err, errlen, "%s: \"%s\" has %d entries", what, key, cnt);
    *out = tf_calloc((size_t)cnt, sizeof(char *));
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsString(it) || !is_url(it->valuestring))
            return fail(err, errlen, "%s: \"%s\" holds a non-URL entry", what, key);
        (*out)[(*n)++] = tf_strdup(it->valuestring);
    }
    return 0;
}

int tf_acme_parse_order(const char *body, size_t len, struct tf_acme_order_doc *out, char *err,
                        size_t errlen)
{
    memset(out, 0, sizeof(*out));
    cJSON *j = parse_object(body, len, "order", err, errlen);
    if (!j)
        return TF_EINVAL;
    int rc = get_status(j, &out->status, "order", err, errlen);
    if (!rc)
        rc = parse_url_array(j, "authorizations", &out->authorizations, &out->n_authz, "order",
                             err, errlen);
    if (!rc)
        rc = get_url(j, "finalize", true, &out->finalize, "order", err, errlen);
    if (!rc)
        rc = get_url(j, "certificate", false, &out->certificate, "order", err, errlen);
    if (!rc && out->status == TF_ACME_ST_VALID && !out->certificate)
        rc = fail(err, errlen, "order: valid but no \"certificate\" URL");
    if (!rc)
        out->error = opt_problem(j);
    cJSON_Delete(j);
    return rc;
}

void tf_acme_order_doc_clear(struct tf_acme_order_doc *o)
{
    if (!o)
        return;
    free_strv(o->authorizations, o->n_authz);
    free(o->finalize);
    free(o->certificate);
    tf_acme_problem_clear(o->error);
    free(o->error);
    memset(o, 0, sizeof(*o));
}

/* ---- authorization and challenges ---- */

static bool token_valid(const char *t)
{
    size_t n = strlen(t);
    if (n < 16 || n > 256)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)t[i]) && t[i] != '-' && t[i] != '_')
            return false;
    return true;
}

bool tf_acme_nonce_valid(const char *nonce)
{
    if (!nonce)
        return false;
    size_t n = strlen(nonce);
    if (n < 1 || n > 256)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)nonce[i]) && nonce[i] != '-' && nonce[i] != '_')
            return false;
    return true;
}

static int parse_challenge(const cJSON *c, struct tf_acme_challenge_doc *out, char *err,
                           size_t errlen)
{
    if (!cJSON_IsObject(c))
        return fail(err, errlen, "authorization: challenge is not an object");
    const char *type = get_str(c, "type");
    if (!type)
        return fail(err, errlen, "challenge: \"type\" missing or not a string");
    out->type = tf_strdup(type);
    int rc = get_url(c, "url", true, &out->url, "challenge", err, errlen);
    if (!rc)
        rc = get_status(c, &out->status, "challenge", err, errlen);
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(c, "token");
    if (!rc && tok) {
        if (!cJSON_IsString(tok) || !token_valid(tok->valuestring))
            return fail(err, errlen, "challenge: \"token\" is not a base64url string");
        out->token = tf_strdup(tok->valuestring);
    }
    if (!rc)
        out->error = opt_problem(c);
    return rc;
}

static int parse_identifier(const cJSON *j, struct tf_acme_authz_doc *out, char *err,
                            size_t errlen)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "identifier");
    if (!cJSON_IsObject(id) || !get_str(id, "type") || !get_str(id, "value"))
        return fail(err, errlen, "authorization: \"identifier\" missing or malformed");
    out->ident_type = tf_strdup(get_str(id, "type"));
    out->ident_value = tf_strdup(get_str(id, "value"));
    out->wildcard = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "wildcard"));
    return 0;
}

int tf_acme_parse_authz(const char *body, size_t len, struct tf_acme_authz_doc *out, char *err,
                        size_t errlen)
{
    memset(out, 0, sizeof(*out));
    cJSON *j = parse_object(body, len, "authorization", err, errlen);
    if (!j)
        return TF_EINVAL;
    int rc = get_status(j, &out->status, "authorization", err, errlen);
    if (!rc)
        rc = parse_identifier(j, out, err, errlen);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "challenges");
    if (!rc && !cJSON_IsArray(arr))
        rc = fail(err, errlen, "authorization: \"challenges\" missing or not an array");
    int n = rc ? 0 : TF_MIN(cJSON_GetArraySize(arr), MAX_ITEMS);
    if (n > 0)
        out->challenges = tf_calloc((size_t)n, sizeof(*out->challenges));
    const cJSON *it;
    if (!rc) {
        cJSON_ArrayForEach(it, arr) {
            if (rc || out->n_challenges >= n)
                break;
            rc = parse_challenge(it, &out->challenges[out->n_challenges++], err, errlen);
        }
    }
    cJSON_Delete(j);
    return rc;
}

void tf_acme_authz_doc_clear(struct tf_acme_authz_doc *z)
{
    if (!z)
        return;
    free(z->ident_type);
    free(z->ident_value);
    for (int i = 0; i < z->n_challenges; i++) {
        struct tf_acme_challenge_doc *c = &z->challenges[i];
        free(c->type);
        free(c->url);
        free(c->token);
        tf_acme_problem_clear(c->error);
        free(c->error);
    }
    free(z->challenges);
    memset(z, 0, sizeof(*z));
}

const struct tf_acme_challenge_doc *tf_acme_authz_find(const struct tf_acme_authz_doc *z,
                                                       const char *type)
{
    for (int i = 0; i < z->n_challenges; i++)
        if (z->challenges[i].type && strcmp(z->challenges[i].type, type) == 0)
            return &z->challenges[i];
    return NULL;
}

int tf_acme_parse_account_status(const char *body, size_t len, enum tf_acme_status *st,
                                 char *err, size_t errlen)
{
    *st = TF_ACME_ST_UNKNOWN;
    cJSON *j = parse_object(body, len, "account", err, errlen);
    if (!j)
        return TF_EINVAL;
    int rc = get_status(j, st, "account", err, errlen);
    cJSON_Delete(j);
    return rc;
}
