/*
 * admin_api.c: the admin API's request checks, apart from the connection code (admin.c) so
 * that they are pure and tested alone (tests/unit/ctl/test_admin_api.c): routes, names,
 * JSON bodies (cJSON; anything but the documented object is refused), the bearer token's
 * constant-time comparison and the token file. Trusts nothing it is given.
 */
#include "admin_api_int.h"

#include "tlsfront/acme/acme.h"
#include "tlsfront/base/common.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TOKEN_MIN 16
#define TOKEN_MAX 1024

static int route_read(struct tf_admin_route *r, const char *method, enum tf_admin_route_kind k)
{
    r->kind = k;
    r->read = true;
    r->allow = "GET, HEAD";
    return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 ? 0 : 405;
}

static int route_action(struct tf_admin_route *r, const char *method, enum tf_admin_op op)
{
    r->kind = TF_ADMIN_R_ACTION;
    r->op = op;
    r->allow = "POST";
    return strcmp(method, "POST") == 0 ? 0 : 405;
}

/* "/certs/NAME" and "/certs/NAME/VERB". */
static int route_cert(struct tf_admin_route *r, const char *method, const char *rest)
{
    const char *slash = strchr(rest, '/');
    r->name = rest;
    r->name_len = slash ? (size_t)(slash - rest) : strlen(rest);
    if (r->name_len == 0)
        return 404;
    if (!slash) {
        r->kind = TF_ADMIN_R_ACTION;
        r->allow = "GET, HEAD, DELETE";
        if (strcmp(method, "DELETE") == 0) {
            r->op = TF_ADMIN_OP_FORGET;
            return 0;
        }
        r->op = TF_ADMIN_OP_CERT;
        r->read = true;
        return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 ? 0 : 405;
    }
    static const struct {
        const char *verb;
        enum tf_admin_op op;
    } verbs[] = {{"renew", TF_ADMIN_OP_RENEW},
                 {"unpause", TF_ADMIN_OP_UNPAUSE},
                 {"revoke", TF_ADMIN_OP_REVOKE}};
    for (size_t i = 0; i < TF_ARRAY_LEN(verbs); i++)
        if (strcmp(slash + 1, verbs[i].verb) == 0)
            return route_action(r, method, verbs[i].op);
    return 404;
}

int tf_admin_route(const char *method, const char *path, struct tf_admin_route *r)
{
    memset(r, 0, sizeof *r);
    if (strcmp(path, "/healthz") == 0)
        return route_read(r, method, TF_ADMIN_R_HEALTHZ);
    if (strcmp(path, "/readyz") == 0)
        return route_read(r, method, TF_ADMIN_R_READYZ);
    if (strcmp(path, "/metrics") == 0)
        return route_read(r, method, TF_ADMIN_R_METRICS);
    if (strcmp(path, "/certs") == 0 || strcmp(path, "/certs/") == 0)
        return route_read(r, method, TF_ADMIN_R_CERTS);
    if (strncmp(path, "/certs/", 7) == 0)
        return route_cert(r, method, path + 7);
    if (strcmp(path, "/ask-cache/purge") == 0)
        return route_action(r, method, TF_ADMIN_OP_ASK_PURGE);
    return 404;
}

int tf_admin_name(const char *in, size_t len, char *out)
{
    out[0] = '\0';
    bool wild = len > 2 && in[0] == '*' && in[1] == '.';
    char host[TF_NAME_MAX + 1];
    if (tf_name_normalize(in + (wild ? 2 : 0), len - (wild ? 2 : 0), host) != 0)
        return TF_EINVAL;
    int n = snprintf(out, TF_NAME_MAX + 1, "%s%s", wild ? "*." : "", host);
    if (n > TF_NAME_MAX || !tf_name_pattern_valid(out)) {
        out[0] = '\0';
        return TF_EINVAL;
    }
    return 0;
}

static int bad(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return 400;
}

/* The body's one optional string member (key), into *val (borrowed from j). Any other
 * member, or a body that is not a JSON object, is refused. */
static int body_member(const cJSON *j, const char *key, const char **val, char *err,
                       size_t errlen)
{
    *val = NULL;
    if (!cJSON_IsObject(j))
        return bad(err, errlen, "the body must be a JSON object");
    for (const cJSON *m = j->child; m; m = m->next) {
        if (!key || !m->string || strcmp(m->string, key) != 0) {
            snprintf(err, errlen, "unexpected member \"%.60s\"", m->string ? m->string : "");
            return 400;
        }
        if (!cJSON_IsString(m)) {
            snprintf(err, errlen, "\"%s\" must be a string", key);
            return 400;
        }
        *val = m->valuestring;
    }
    return 0;
}

int tf_admin_parse_action(const struct tf_admin_route *r, const char *body, size_t len,
                          struct tf_admin_action *act, char *err, size_t errlen)
{
    memset(act, 0, sizeof *act);
    act->op = r->op;
    if (r->op != TF_ADMIN_OP_ASK_PURGE && tf_admin_name(r->name, r->name_len, act->name) != 0)
        return bad(err, errlen, "not a valid name");
    const char *key = r->op == TF_ADMIN_OP_REVOKE      ? "reason"
                      : r->op == TF_ADMIN_OP_ASK_PURGE ? "name"
                                                       : NULL;
    const char *val = NULL;
    if (len > 0) {
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithLengthOpts(body, len, &end, false);
        /* cJSON stops after the first value: only blanks may follow it. */
        while (j && end && end < body + len && strchr(" \t\r\n", *end) && *end)
            end++;
        if (j && end != body + len) {
            cJSON_Delete(j);
            j = NULL;
        }
        if (!j)
            return bad(err, errlen, "the body is not valid JSON");
        int rc = body_member(j, key, &val, err, errlen);
        if (rc == 0 && r->op == TF_ADMIN_OP_REVOKE && val) {
            act->reason = tf_acme_revoke_reason(val);
            if (act->reason < 0)
                rc = bad(err, errlen, "unknown reason");
        }
        if (rc == 0 && r->op == TF_ADMIN_OP_ASK_PURGE && val &&
            tf_admin_name(val, strlen(val), act->name) != 0)
            rc = bad(err, errlen, "not a valid name");
        cJSON_Delete(j);
        if (rc)
            return rc;
    }
    return 0;
}

bool tf_admin_token_ok(const char *token, const char *header, size_t header_len)
{
    if (!token || !header || header_len < 7 || strncasecmp(header, "Bearer ", 7) != 0)
        return false;
    const char *t = header + 7;
    size_t n = header_len - 7;
    while (n > 0 && *t == ' ') {
        t++;
        n--;
    }
    unsigned char want[SHA256_DIGEST_LENGTH], got[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, strlen(token), want);
    SHA256((const unsigned char *)t, n, got);
    return n > 0 && CRYPTO_memcmp(want, got, sizeof want) == 0;
}

static bool token68(char ch)
{
    return isalnum((unsigned char)ch) || strchr("-._~+/=", ch) != NULL;
}

int tf_admin_token_read(const char *path, char **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot read", path);
        return TF_EINVAL;
    }
    char buf[TOKEN_MAX + 4];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    size_t len = strcspn(buf, "\r\n");
    buf[len] = '\0';
    char *s = buf;
    while (*s == ' ' || *s == '\t')
        s++;
    len = strlen(s);
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        s[--len] = '\0';
    const char *why = NULL;
    if (len < TOKEN_MIN)
        why = "the token is shorter than 16 characters";
    else if (len > TOKEN_MAX)
        why = "the token is longer than 1024 characters";
    for (size_t i = 0; !why && i < len; i++)
        if (!token68(s[i]))
            why = "the token may hold letters, digits and -._~+/= only";
    if (why) {
        OPENSSL_cleanse(buf, sizeof buf);
        snprintf(err, errlen, "%s: %s", path, why);
        return TF_EINVAL;
    }
    *out = tf_strdup(s);
    OPENSSL_cleanse(buf, sizeof buf);
    return 0;
}

char *tf_admin_json_error(const char *msg)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "error", msg);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text)
        abort(); /* cJSON only fails on allocation */
    char *line = tf_asprintf("%s\n", text);
    cJSON_free(text);
    return line;
}
