/*
 * certstub.c: stub sets (tlsfront/tls/certstub.h): building one (flat arrays, no
 * allocation per certificate), reading a stub's names and paths back, and loading a stub's
 * files. The set never changes after tf_stubset_seal but for the stubs' atomic fields, which
 * belong to the cache and the control loop, and the stubs appended to a live set in its
 * reserved room. Blocking file I/O in tf_stub_load only (thread
 * pool); never logs.
 */
#include "certload_int.h"
#include "tlsfront/tls/certstub.h"
#include "tlsfront/base/name.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tf_stubset *tf_stubset_new(const char *dir, size_t n, size_t text_cap)
{
    struct tf_stubset *set = tf_calloc(1, sizeof *set);
    tf_ref_init(&set->ref, 1);
    set->dir = tf_strdup(dir);
    set->stubs = tf_malloc((n ? n : 1) * sizeof *set->stubs);
    set->cap = n ? n : 1;
    set->text_cap = text_cap ? text_cap : 256;
    set->text = tf_malloc(set->text_cap);
    return set;
}

static void text_put(struct tf_stubset *set, const char *s, size_t len)
{
    if (set->text_len + len > set->text_cap) {
        while (set->text_len + len > set->text_cap)
            set->text_cap *= 2;
        set->text = tf_realloc(set->text, set->text_cap);
    }
    memcpy(set->text + set->text_len, s, len);
    set->text_len += len;
}

/* Whether rel is first + suffix. */
static bool is_name_file(const char *rel, const char *first, const char *suffix)
{
    size_t n = strlen(first);
    return strncmp(rel, first, n) == 0 && strcmp(rel + n, suffix) == 0;
}

struct tf_stub *tf_stubset_add(struct tf_stubset *set, const char *names, int n_names,
                               const char *rel, int key_form)
{
    if (set->n == set->cap) {
        set->cap *= 2;
        set->stubs = tf_realloc(set->stubs, set->cap * sizeof *set->stubs);
    }
    size_t len = 0;
    for (int i = 0; i < n_names; i++)
        len += strlen(names + len) + 1;
    int path = is_name_file(rel, names, ".pem")   ? TF_STUB_PATH_PEM
               : is_name_file(rel, names, ".crt") ? TF_STUB_PATH_CRT
                                                  : TF_STUB_PATH_TEXT;
    struct tf_stub *s = &set->stubs[set->n++];
    *s = (struct tf_stub){.text = (uint32_t)set->text_len,
                          .n_names = (uint16_t)n_names,
                          .form = TF_STUB_FORM(key_form, path),
                          .source = TF_SRC_STATIC};
    atomic_init(&s->loaded, NULL);
    atomic_init(&s->used, 0);
    atomic_init(&s->failed, 0);
    text_put(set, names, len);
    if (path == TF_STUB_PATH_TEXT)
        text_put(set, rel, strlen(rel) + 1);
    return s;
}

struct tf_stubset *tf_stubset_new_managed(const char *dir, size_t n)
{
    struct tf_stubset *set = tf_stubset_new(dir, n, n * 24);
    set->last_used = tf_calloc(set->cap, sizeof *set->last_used);
    return set;
}

size_t tf_stubset_add_managed(struct tf_stubset *set, const char *name, int kind,
                              int64_t not_after)
{
    size_t len = strlen(name);
    char rel[TF_NAME_MAX + 8];
    snprintf(rel, sizeof rel, "%.*s.pem", (int)(len < TF_NAME_MAX ? len : TF_NAME_MAX), name);
    size_t cap = set->cap;
    struct tf_stub *s = tf_stubset_add(set, name, 1, rel, TF_STUB_KEY_IN);
    s->source = TF_SRC_ACME;
    s->kind = (uint8_t)kind;
    s->not_after = not_after;
    if (set->cap != cap) {
        set->last_used = tf_realloc(set->last_used, set->cap * sizeof *set->last_used);
        memset(set->last_used + cap, 0, (set->cap - cap) * sizeof *set->last_used);
    }
    return set->n - 1;
}

struct tf_stubset *tf_stubset_new_live(const char *dir, size_t n, size_t text_cap)
{
    struct tf_stubset *set = tf_stubset_new(dir, n, text_cap);
    set->last_used = tf_calloc(set->cap, sizeof *set->last_used);
    return set;
}

long tf_stubset_append_managed(struct tf_stubset *set, const char *name, int kind,
                               int64_t not_after)
{
    /* A managed stub's text is its name alone (its path is the name + ".pem"). */
    if (set->n == set->cap || set->text_len + strlen(name) + 1 > set->text_cap)
        return -1;
    return (long)tf_stubset_add_managed(set, name, kind, not_after);
}

void tf_stubset_seal(struct tf_stubset *set)
{
    set->cap = set->n ? set->n : 1;
    set->stubs = tf_realloc(set->stubs, set->cap * sizeof *set->stubs);
    if (set->last_used)
        set->last_used = tf_realloc(set->last_used, set->cap * sizeof *set->last_used);
    set->text_cap = set->text_len ? set->text_len : 1;
    set->text = tf_realloc(set->text, set->text_cap);
}

void tf_stubset_ref(struct tf_stubset *set)
{
    if (set)
        tf_ref_inc(&set->ref);
}

void tf_stubset_unref(struct tf_stubset *set)
{
    if (!set || !tf_ref_dec(&set->ref))
        return;
    /* The cache holds a set reference for every stub it loaded: none is loaded now. */
    free(set->stubs);
    free(set->last_used);
    free(set->text);
    free(set->dir);
    free(set);
}

const char *tf_stub_name(const struct tf_stubset *set, const struct tf_stub *s, int i)
{
    const char *p = set->text + s->text;
    while (i-- > 0)
        p += strlen(p) + 1;
    return p;
}

int tf_stub_paths(const struct tf_stubset *set, const struct tf_stub *s, char *crt, char *key,
                  size_t n)
{
    const char *first = set->text + s->text;
    int path = TF_STUB_PATH(s->form);
    if (s->source == TF_SRC_ACME) { /* the storage key of its chain; the key beside it */
        int l1 = snprintf(crt, n, "%s/%s/cert.pem", set->dir, first);
        int l2 = snprintf(key, n, "%s/%s/key.pem", set->dir, first);
        return l1 < 0 || (size_t)l1 >= n || l2 < 0 || (size_t)l2 >= n ? -1 : 0;
    }
    int len = path == TF_STUB_PATH_TEXT
                  ? snprintf(crt, n, "%s/%s", set->dir, tf_stub_name(set, s, s->n_names))
                  : snprintf(crt, n, "%s/%s%s", set->dir, first,
                             path == TF_STUB_PATH_PEM ? ".pem" : ".crt");
    if (len < 0 || (size_t)len >= n)
        return -1;
    return tf_certload_key_path(crt, TF_STUB_KEY(s->form), key, n);
}

int tf_certload_key_path(const char *crt, int key_form, char *key, size_t n)
{
    int len = 0;
    const char *slash = strrchr(crt, '/');
    key[0] = '\0';
    if (key_form == TF_STUB_KEY_BESIDE) /* X.crt or X.pem: X.key */
        len = snprintf(key, n, "%.*s.key", (int)strlen(crt) - 4, crt);
    else if (key_form == TF_STUB_KEY_CERTBOT)
        len = snprintf(key, n, "%.*s%sprivkey.pem", slash ? (int)(slash - crt) : 0, crt,
                       slash ? "/" : "");
    return len < 0 || (size_t)len >= n ? -1 : 0;
}

/* Why a loaded certificate may not replace its stub, or NULL when it may. */
static const char *stub_mismatch(const struct tf_stubset *set, const struct tf_stub *s,
                                 const struct tf_cert *c)
{
    if (c->kind != (enum tf_cert_kind)s->kind)
        return "key type changed since start-up (reload with SIGHUP)";
    for (int i = 0; i < s->n_names; i++)
        if (!tf_cert_covers(c, tf_stub_name(set, s, i)))
            return "names changed since start-up (reload with SIGHUP)";
    return NULL;
}

struct tf_cert *tf_stub_decode(const struct tf_stubset *set, const struct tf_stub *s,
                               const char *chain_pem, size_t chain_len, const char *key_pem,
                               size_t key_len, char *err, size_t errlen)
{
    char crt[4096], key[4096];
    struct tf_cert *c = NULL;
    if (tf_stub_paths(set, s, crt, key, sizeof crt) < 0)
        snprintf(crt, sizeof crt, "%s", set->dir);
    struct parse_cache pc;
    memset(&pc, 0, sizeof pc); /* no shared key decoder: one key is decoded */
    pc.no_ctx = true;
    int rc = tf_certload_parse(chain_pem, chain_len, key_pem, key_len, crt, &pc, &c, err, errlen);
    tf_certload_cache_free(&pc);
    const char *why = c ? stub_mismatch(set, s, c) : NULL;
    if (why) {
        snprintf(err, errlen, "%s", why);
        tf_cert_unref(c);
        c = NULL;
    }
    if (c)
        c->source = (enum tf_cert_source)s->source;
    else if (rc == PARSE_CA)
        snprintf(err, errlen, "certificate has no DNS names");
    return c;
}

struct tf_cert *tf_stub_load(const struct tf_stubset *set, const struct tf_stub *s, char *err,
                             size_t errlen)
{
    char crt[4096], key[4096], tmp[200];
    char *buf[2] = {NULL, NULL};
    size_t cap[2] = {0, 0}, len[2] = {0, 0};
    struct tf_cert *c = NULL;
    if (s->source != TF_SRC_STATIC) {
        snprintf(err, errlen, "a stored certificate is read through the storage");
        return NULL;
    }
    if (tf_stub_paths(set, s, crt, key, sizeof crt) < 0) {
        snprintf(err, errlen, "path too long");
        return NULL;
    }
    int rc = tf_certload_read(AT_FDCWD, crt, &buf[0], &cap[0], &len[0], NULL);
    if (rc == 0 && key[0])
        rc = tf_certload_read(AT_FDCWD, key, &buf[1], &cap[1], &len[1], NULL);
    if (rc < 0)
        snprintf(err, errlen, "%s", tf_certload_read_problem(rc, tmp, sizeof tmp));
    else
        c = tf_stub_decode(set, s, buf[0], len[0], key[0] ? buf[1] : NULL, len[1], err, errlen);
    free(buf[0]);
    free(buf[1]);
    return c;
}
