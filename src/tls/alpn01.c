/*
 * alpn01.c: the pending TLS-ALPN-01 challenges as immutable snapshots (RFC 8737 §3). Built
 * on the control loop, read by workers in the ClientHello callback without a lock. Owns a
 * reference on every certificate and key it holds; never logs key authorizations.
 */
#include "tlsfront/tls/alpn01.h"

#include <stdlib.h>
#include <string.h>

static struct tf_challenges *alloc_snapshot(int n)
{
    struct tf_challenges *c = tf_calloc(1, sizeof *c);
    tf_ref_init(&c->ref, 1);
    c->n = 0;
    c->items = n ? tf_calloc((size_t)n, sizeof *c->items) : NULL;
    return c;
}

static void push(struct tf_challenges *c, const char *name, X509 *cert, EVP_PKEY *key)
{
    struct tf_challenge *it = &c->items[c->n++];
    it->name = tf_strdup(name);
    X509_up_ref(cert);
    EVP_PKEY_up_ref(key);
    it->cert = cert;
    it->key = key;
}

struct tf_challenges *tf_challenges_with(const struct tf_challenges *base, const char *name,
                                         X509 *cert, EVP_PKEY *key)
{
    int n = base ? base->n : 0;
    struct tf_challenges *c = alloc_snapshot(n + 1);
    bool added = false;
    for (int i = 0; i < n; i++) {
        const struct tf_challenge *it = &base->items[i];
        int cmp = strcmp(it->name, name);
        if (!added && cmp >= 0) {
            push(c, name, cert, key);
            added = true;
        }
        if (cmp != 0)
            push(c, it->name, it->cert, it->key);
    }
    if (!added)
        push(c, name, cert, key);
    return c;
}

struct tf_challenges *tf_challenges_without(const struct tf_challenges *base, const char *name)
{
    int n = base ? base->n : 0;
    struct tf_challenges *c = alloc_snapshot(n);
    for (int i = 0; i < n; i++)
        if (strcmp(base->items[i].name, name) != 0)
            push(c, base->items[i].name, base->items[i].cert, base->items[i].key);
    return c;
}

const struct tf_challenge *tf_challenges_find(const struct tf_challenges *c, const char *name)
{
    int lo = 0, hi = c ? c->n - 1 : -1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int cmp = strcmp(c->items[mid].name, name);
        if (cmp == 0)
            return &c->items[mid];
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

void tf_challenges_ref(struct tf_challenges *c)
{
    if (c)
        tf_ref_inc(&c->ref);
}

void tf_challenges_unref(struct tf_challenges *c)
{
    if (!c || !tf_ref_dec(&c->ref))
        return;
    for (int i = 0; i < c->n; i++) {
        free(c->items[i].name);
        X509_free(c->items[i].cert);
        EVP_PKEY_free(c->items[i].key);
    }
    free(c->items);
    free(c);
}
