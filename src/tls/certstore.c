/*
 * certstore.c: the certificate snapshot. A store is an open-addressing hash table (linear probing,
 * at most 70% full) from lower-cased name to a slot of one EC and one RSA certificate, plus the
 * list of distinct certificates it holds one reference on, and the stub sets
 * (tlsfront/tls/certstub.h) whose stubs its slots hold. Key strings live in one arena per store,
 * addressed by offset, so copying a store for tf_certstore_with is two memcpy calls and no
 * per-name allocation. A slot value is a tf_cert pointer, or a stub pointer with its low bit set
 * (stubs are 8-byte aligned). A store is built in full by one thread and never changes afterwards:
 * lookups take no lock. Name matching (tf_cert_covers) lives here too. This file never parses PEM
 * or touches files (certload.c does), and never logs.
 */
#include "tlsfront/tls/certstore.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NAME_MAX_LEN 253
#define NO_KEY UINT32_MAX

/* One table entry. key == NO_KEY marks a free entry; a used entry holds at least one cert. */
struct tf_cs_entry {
    uint32_t key;  /* offset of the NUL-terminated name in the store's arena */
    uint32_t hash; /* low 32 bits of hash_name(name) */
    struct tf_cert_slot slot;
};

struct tf_certstore {
    struct tf_ref ref;
    struct tf_cs_entry *tab; /* owned; cap entries */
    size_t cap;              /* any size: see home() */
    size_t n_names;          /* used entries */
    char *arena;             /* owned; key strings */
    size_t arena_len, arena_cap;
    struct tf_cert **certs; /* owned array; one reference on each distinct cert */
    size_t n_certs;
    struct tf_stubset **sets; /* owned array; one reference on each */
    size_t n_sets;
};

/* The expiry and source of a slot value (a certificate or a stub). */
static int64_t val_not_after(uintptr_t v)
{
    return (v & 1) ? ((const struct tf_stub *)(v - 1))->not_after
                   : ((const struct tf_cert *)v)->not_after;
}

static int val_source(uintptr_t v)
{
    return (v & 1) ? ((const struct tf_stub *)(v - 1))->source
                   : (int)((const struct tf_cert *)v)->source;
}

/* Take a reference on set for st, once. */
static void add_set(struct tf_certstore *st, struct tf_stubset *set)
{
    for (size_t i = 0; i < st->n_sets; i++)
        if (st->sets[i] == set)
            return;
    st->sets = tf_realloc(st->sets, (st->n_sets + 1) * sizeof *st->sets);
    tf_stubset_ref(set);
    st->sets[st->n_sets++] = set;
}

static void add_sets(struct tf_certstore *st, const struct tf_certstore *from)
{
    for (size_t i = 0; from && i < from->n_sets; i++)
        add_set(st, from->sets[i]);
}

/* FNV-1a with a final avalanche (murmur3 fmix64), so the low bits used for the index mix
 * every input byte. */
static uint32_t hash_name(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return (uint32_t)h;
}

/* Power-of-two capacity at most 70% full for n entries (the pointer set of store_finish). */
static size_t cap_for(size_t n)
{
    size_t cap = 16;
    while (cap * 7 < n * 10 + 10)
        cap *= 2;
    return cap;
}

/* The table's capacity for n names: exactly 70% full (any size, not a power of two: a
 * million names take 1.43 million entries, not 2.1), at least 16. */
static size_t table_cap_for(size_t n)
{
    return TF_MAX((n * 10 + 10) / 7 + 1, (size_t)16);
}

/* Where h's probe starts in a table of cap entries: the high bits of h * cap (Lemire's
 * multiply-shift range reduction; the hash is avalanched, so every bit is mixed). */
static size_t home(uint32_t h, size_t cap)
{
    return (size_t)(((uint64_t)h * cap) >> 32);
}

static size_t next(size_t i, size_t cap)
{
    return i + 1 == cap ? 0 : i + 1;
}

static struct tf_cs_entry *table_alloc(size_t cap)
{
    struct tf_cs_entry *tab = tf_malloc(cap * sizeof *tab);
    for (size_t i = 0; i < cap; i++)
        tab[i] = (struct tf_cs_entry){.key = NO_KEY};
    return tab;
}

/* A store under construction with room for n names without growing. */
static struct tf_certstore *store_alloc(size_t n, size_t arena_cap)
{
    struct tf_certstore *st = tf_calloc(1, sizeof *st);
    tf_ref_init(&st->ref, 1);
    st->cap = table_cap_for(n);
    st->tab = table_alloc(st->cap);
    st->arena_cap = arena_cap ? arena_cap : 256;
    st->arena = tf_malloc(st->arena_cap);
    return st;
}

static struct tf_cs_entry *find(const struct tf_certstore *st, const char *name, uint32_t h)
{
    for (size_t i = home(h, st->cap);; i = next(i, st->cap)) {
        const struct tf_cs_entry *e = &st->tab[i];
        if (e->key == NO_KEY)
            return NULL;
        if (e->hash == h && strcmp(st->arena + e->key, name) == 0)
            return (struct tf_cs_entry *)e;
    }
}

/* Place e (whose key is not in the table) into tab by probing. */
static struct tf_cs_entry *place(struct tf_cs_entry *tab, size_t cap, const struct tf_cs_entry *e)
{
    size_t i = home(e->hash, cap);
    while (tab[i].key != NO_KEY)
        i = next(i, cap);
    tab[i] = *e;
    return &tab[i];
}

static void grow(struct tf_certstore *st)
{
    size_t cap = st->cap * 2;
    struct tf_cs_entry *tab = table_alloc(cap);
    for (size_t i = 0; i < st->cap; i++)
        if (st->tab[i].key != NO_KEY)
            place(tab, cap, &st->tab[i]);
    free(st->tab);
    st->tab = tab;
    st->cap = cap;
}

/* The entry for name, created empty if missing. The returned pointer is valid until the
 * next insertion. */
static struct tf_cs_entry *upsert(struct tf_certstore *st, const char *name, uint32_t h)
{
    struct tf_cs_entry *e = find(st, name, h);
    if (e)
        return e;
    if ((st->n_names + 1) * 10 > st->cap * 7)
        grow(st);
    size_t len = strlen(name) + 1;
    if (st->arena_len + len > st->arena_cap) {
        while (st->arena_len + len > st->arena_cap)
            st->arena_cap *= 2;
        st->arena = tf_realloc(st->arena, st->arena_cap);
    }
    assert(st->arena_len + len < NO_KEY);
    memcpy(st->arena + st->arena_len, name, len);
    struct tf_cs_entry ne = {.key = (uint32_t)st->arena_len, .hash = h};
    st->arena_len += len;
    st->n_names++;
    return place(st->tab, st->cap, &ne);
}

/* A copy of base's table and arena (not its cert list) with room for extra more names. */
static struct tf_certstore *store_clone(const struct tf_certstore *base, size_t extra)
{
    if (!base)
        return store_alloc(extra, 0);
    struct tf_certstore *st = store_alloc(base->n_names + extra, base->arena_len + 256);
    add_sets(st, base);
    if (st->cap == base->cap) {
        memcpy(st->tab, base->tab, base->cap * sizeof *st->tab);
    } else {
        for (size_t i = 0; i < base->cap; i++)
            if (base->tab[i].key != NO_KEY)
                place(st->tab, st->cap, &base->tab[i]);
    }
    memcpy(st->arena, base->arena, base->arena_len);
    st->arena_len = base->arena_len;
    st->n_names = base->n_names;
    return st;
}

/* Pointer set insert for store_finish: returns true when p was new. */
static bool set_add(const struct tf_cert **set, size_t mask, const struct tf_cert *p)
{
    size_t i = (size_t)(((uintptr_t)p >> 4) * 0x9e3779b97f4a7c15ULL) & mask;
    for (;; i = (i + 1) & mask) {
        if (set[i] == p)
            return false;
        if (!set[i]) {
            set[i] = p;
            return true;
        }
    }
}

/* Collect the distinct certs of the finished table and take one reference on each. */
static struct tf_certstore *store_finish(struct tf_certstore *st)
{
    size_t set_cap = cap_for(st->n_names * TF_CERT_KINDS);
    const struct tf_cert **set = tf_calloc(set_cap, sizeof *set);
    st->certs = tf_malloc((st->n_names * TF_CERT_KINDS + 1) * sizeof *st->certs);
    for (size_t i = 0; i < st->cap; i++) {
        const struct tf_cs_entry *e = &st->tab[i];
        if (e->key == NO_KEY)
            continue;
        for (int k = 0; k < TF_CERT_KINDS; k++) {
            struct tf_cert *c = tf_slot_cert(&e->slot, k);
            if (c && set_add(set, set_cap - 1, c)) {
                tf_cert_ref(c);
                st->certs[st->n_certs++] = c;
            }
        }
    }
    free(set);
    st->certs = tf_realloc(st->certs, (st->n_certs + 1) * sizeof *st->certs);
    return st;
}

struct tf_certstore *tf_certstore_new(void)
{
    return store_finish(store_alloc(0, 0));
}

/* Whether cand should take a (name, kind) place held by cur when building from a list. */
static bool better(uintptr_t cand, uintptr_t cur)
{
    if (!cur)
        return true;
    if (val_source(cand) != val_source(cur))
        return val_source(cand) == TF_SRC_STATIC;
    return val_not_after(cand) > val_not_after(cur);
}

struct tf_certstore *tf_certstore_from_certs(struct tf_cert *const *certs, size_t n)
{
    size_t names = 0;
    for (size_t i = 0; i < n; i++)
        names += (size_t)certs[i]->n_names;
    struct tf_certstore *st = store_alloc(names, names * 24 + 256);
    for (size_t i = 0; i < n; i++) {
        struct tf_cert *c = certs[i];
        for (int j = 0; j < c->n_names; j++) {
            struct tf_cs_entry *e = upsert(st, c->names[j], hash_name(c->names[j]));
            if (better((uintptr_t)c, e->slot.v[c->kind]))
                e->slot.v[c->kind] = (uintptr_t)c;
        }
    }
    return store_finish(st);
}

struct tf_certstore *tf_certstore_from_stubs(struct tf_stubset *set)
{
    size_t names = 0;
    for (size_t i = 0; i < set->n; i++)
        names += set->stubs[i].n_names;
    struct tf_certstore *st = store_alloc(names, set->text_len + 256);
    add_set(st, set);
    for (size_t i = 0; i < set->n; i++) {
        struct tf_stub *s = &set->stubs[i];
        uintptr_t v = (uintptr_t)s | 1;
        const char *name = set->text + s->text;
        for (int j = 0; j < s->n_names; j++, name += strlen(name) + 1) {
            struct tf_cs_entry *e = upsert(st, name, hash_name(name));
            if (better(v, e->slot.v[s->kind]))
                e->slot.v[s->kind] = v;
        }
    }
    return store_finish(st);
}

struct tf_stubset *tf_certstore_stubset(const struct tf_certstore *st, const struct tf_stub *stub)
{
    for (size_t i = 0; st && i < st->n_sets; i++)
        if (tf_stubset_holds(st->sets[i], stub))
            return st->sets[i];
    return NULL;
}

/* Put v (a certificate, or a stub with the low bit set) of kind under one lower-cased name
 * of st, unless an operator's certificate holds its place. */
static void with_val(struct tf_certstore *st, uintptr_t v, int kind, const char *name)
{
    struct tf_cs_entry *e = upsert(st, name, hash_name(name));
    uintptr_t cur = e->slot.v[kind];
    if (!cur || val_source(cur) == val_source(v) || val_source(v) == TF_SRC_STATIC)
        e->slot.v[kind] = v;
}

static void with_one(struct tf_certstore *st, struct tf_cert *cert, const char *name)
{
    with_val(st, (uintptr_t)cert, cert->kind, name);
}

/* Put cert into st under only (see tf_certstore_with), or under all its names. */
static void with_cert(struct tf_certstore *st, struct tf_cert *cert, const char *only)
{
    if (only) {
        char buf[NAME_MAX_LEN + 1];
        size_t len = strlen(only);
        for (size_t i = 0; i <= len && len <= NAME_MAX_LEN; i++)
            buf[i] = (only[i] >= 'A' && only[i] <= 'Z') ? (char)(only[i] - 'A' + 'a') : only[i];
        if (len > 0 && len <= NAME_MAX_LEN && tf_cert_covers(cert, buf))
            with_one(st, cert, buf);
    } else {
        for (int j = 0; j < cert->n_names; j++)
            with_one(st, cert, cert->names[j]);
    }
}

struct tf_certstore *tf_certstore_with(const struct tf_certstore *base, struct tf_cert *cert,
                                       const char *only)
{
    return tf_certstore_with_each(base, &cert, &only, cert ? 1 : 0);
}

struct tf_certstore *tf_certstore_with_each(const struct tf_certstore *base,
                                            struct tf_cert *const *certs,
                                            const char *const *only, size_t n)
{
    size_t extra = 0;
    for (size_t i = 0; i < n; i++)
        extra += only && only[i] ? 1 : (size_t)certs[i]->n_names;
    struct tf_certstore *st = store_clone(base, extra);
    for (size_t i = 0; i < n; i++)
        with_cert(st, certs[i], only ? only[i] : NULL);
    return store_finish(st);
}

struct tf_certstore *tf_certstore_with_stubs(const struct tf_certstore *base,
                                             struct tf_stubset *const *sets,
                                             struct tf_stub *const *stubs, size_t n)
{
    size_t extra = 0;
    for (size_t i = 0; i < n; i++)
        extra += stubs[i]->n_names;
    struct tf_certstore *st = store_clone(base, extra);
    for (size_t i = 0; i < n; i++) {
        const struct tf_stub *s = stubs[i];
        add_set(st, sets[i]);
        for (int j = 0; j < s->n_names; j++) {
            const char *name = tf_stub_name(sets[i], s, j);
            with_val(st, (uintptr_t)s | 1, s->kind, name);
            /* The storage keeps one certificate per managed name: a managed stub of the
             * other kind could only load this one, which is not of its kind. */
            int other = s->kind == TF_CERT_EC ? TF_CERT_RSA : TF_CERT_EC;
            struct tf_cs_entry *e = find(st, name, hash_name(name));
            const struct tf_stub *o = tf_slot_stub(&e->slot, other);
            if (s->source == TF_SRC_ACME && o && o->source == TF_SRC_ACME)
                e->slot.v[other] = 0;
        }
    }
    return store_finish(st);
}

struct tf_certstore *tf_certstore_without(const struct tf_certstore *base, const char *name)
{
    struct tf_certstore *st = store_alloc(base ? base->n_names : 0, base ? base->arena_len : 0);
    add_sets(st, base);
    for (size_t i = 0; base && i < base->cap; i++) {
        const struct tf_cs_entry *e = &base->tab[i];
        if (e->key != NO_KEY && strcasecmp(base->arena + e->key, name) != 0)
            upsert(st, base->arena + e->key, e->hash)->slot = e->slot;
    }
    return store_finish(st);
}

/* The wildcard entry that would answer name ("*." + name minus its first label), if any. */
static const struct tf_cs_entry *find_wildcard(const struct tf_certstore *st, const char *name)
{
    const char *dot = strchr(name, '.');
    if (!st || name[0] == '*' || !dot || dot == name)
        return NULL;
    char buf[NAME_MAX_LEN + 2];
    size_t len = strlen(dot);
    if (len + 1 >= sizeof buf)
        return NULL;
    buf[0] = '*';
    memcpy(buf + 1, dot, len + 1);
    return find(st, buf, hash_name(buf));
}

/* Merge one ACME entry into st (a clone of static_store). See tf_certstore_merge. */
static void merge_entry(struct tf_certstore *st, const struct tf_certstore *static_store,
                        const char *name, const struct tf_cs_entry *a)
{
    struct tf_cs_entry *e = find(st, name, a->hash);
    if (e) {
        for (int k = 0; k < TF_CERT_KINDS; k++)
            if (!e->slot.v[k])
                e->slot.v[k] = a->slot.v[k];
        return;
    }
    struct tf_cert_slot slot = a->slot;
    const struct tf_cs_entry *w = find_wildcard(static_store, name);
    bool any_acme = false;
    for (int k = 0; k < TF_CERT_KINDS; k++) {
        if (w && w->slot.v[k])
            slot.v[k] = w->slot.v[k];
        else if (slot.v[k])
            any_acme = true;
    }
    if (any_acme)
        upsert(st, name, a->hash)->slot = slot;
}

struct tf_certstore *tf_certstore_merge(const struct tf_certstore *static_store,
                                        const struct tf_certstore *acme_store)
{
    size_t extra = acme_store ? acme_store->n_names : 0;
    struct tf_certstore *st = store_clone(static_store, extra);
    add_sets(st, acme_store);
    for (size_t i = 0; acme_store && i < acme_store->cap; i++) {
        const struct tf_cs_entry *a = &acme_store->tab[i];
        if (a->key != NO_KEY)
            merge_entry(st, static_store, acme_store->arena + a->key, a);
    }
    return store_finish(st);
}

bool tf_cert_covers(const struct tf_cert *c, const char *name)
{
    if (!c || !name || !*name)
        return false;
    const char *parent = strchr(name, '.');
    for (int i = 0; i < c->n_names; i++) {
        const char *n = c->names[i];
        if (strcasecmp(n, name) == 0)
            return true;
        if (n[0] == '*' && n[1] == '.' && parent && parent != name && name[0] != '*' &&
            strcasecmp(n + 1, parent) == 0)
            return true;
    }
    return false;
}

const struct tf_cert_slot *tf_certstore_lookup(const struct tf_certstore *st, const char *name)
{
    if (!st || !name)
        return NULL;
    char buf[NAME_MAX_LEN + 2];
    size_t len = strlen(name);
    if (len == 0 || len > NAME_MAX_LEN)
        return NULL;
    for (size_t i = 0; i <= len; i++) {
        char ch = name[i];
        buf[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
    }
    const struct tf_cs_entry *e = find(st, buf, hash_name(buf));
    if (!e)
        e = find_wildcard(st, buf);
    return e ? &e->slot : NULL;
}

/* Call fn(set, stub, arg) for each managed stub (a set with last-use times) that st's table
 * holds: those sets grow while running and keep the stubs of forgotten names, so only the
 * table says which are st's (O(names): the listing). A managed stub has one name: it is
 * met once. */
static void each_managed_stub(const struct tf_certstore *st,
                              void (*fn)(const struct tf_stubset *set, const struct tf_stub *s,
                                         void *arg),
                              void *arg)
{
    bool any = false;
    for (size_t i = 0; i < st->n_sets; i++)
        any |= st->sets[i]->last_used != NULL;
    for (size_t i = 0; any && i < st->cap; i++) {
        const struct tf_cs_entry *e = &st->tab[i];
        for (int k = 0; e->key != NO_KEY && k < TF_CERT_KINDS; k++) {
            const struct tf_stub *s = tf_slot_stub(&e->slot, k);
            const struct tf_stubset *set = s ? tf_certstore_stubset(st, s) : NULL;
            if (set && set->last_used)
                fn(set, s, arg);
        }
    }
}

size_t tf_certstore_count(const struct tf_certstore *st)
{
    size_t n = st ? st->n_certs : 0;
    for (size_t i = 0; st && i < st->n_sets; i++)
        n += st->sets[i]->n - st->sets[i]->n_dropped;
    return n;
}

size_t tf_certstore_names(const struct tf_certstore *st)
{
    return st ? st->n_names : 0;
}

/* Show stub s to fn as a certificate with nothing decoded. */
static void stub_view(const struct tf_stubset *set, const struct tf_stub *s,
                      void (*fn)(const struct tf_cert *c, void *arg), void *arg)
{
    char path[4096], key[4096];
    const char **names = tf_malloc(s->n_names * sizeof *names);
    struct tf_cert c = {.kind = (enum tf_cert_kind)s->kind,
                        .source = (enum tf_cert_source)s->source,
                        .path = tf_stub_paths(set, s, path, key, sizeof path) == 0 ? path : NULL,
                        .names = (char **)names,
                        .n_names = s->n_names,
                        .not_after = s->not_after};
    for (int i = 0; i < c.n_names; i++)
        names[i] = tf_stub_name(set, s, i);
    fn(&c, arg);
    free(names);
}

size_t tf_certstore_index_bytes(const struct tf_certstore *st)
{
    if (!st)
        return 0;
    size_t n = sizeof *st + st->cap * sizeof *st->tab + st->arena_cap +
               (st->n_certs + 1) * sizeof *st->certs + st->n_sets * sizeof *st->sets;
    for (size_t i = 0; i < st->n_sets; i++)
        n += sizeof *st->sets[i] + st->sets[i]->cap * sizeof(struct tf_stub) +
             st->sets[i]->text_cap + strlen(st->sets[i]->dir) + 1;
    return n;
}

struct view_arg {
    void (*fn)(const struct tf_cert *c, void *arg);
    void *arg;
};

static void view_one(const struct tf_stubset *set, const struct tf_stub *s, void *arg)
{
    struct view_arg *v = arg;
    stub_view(set, s, v->fn, v->arg);
}

void tf_certstore_foreach(const struct tf_certstore *st,
                          void (*fn)(const struct tf_cert *c, void *arg), void *arg)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n_certs; i++)
        fn(st->certs[i], arg);
    for (size_t i = 0; i < st->n_sets; i++) {
        const struct tf_stubset *set = st->sets[i];
        for (size_t j = 0; !set->last_used && j < set->n; j++)
            stub_view(set, &set->stubs[j], fn, arg);
    }
    struct view_arg v = {fn, arg};
    each_managed_stub(st, view_one, &v);
}

void tf_certstore_ref(struct tf_certstore *st)
{
    if (st)
        tf_ref_inc(&st->ref);
}

void tf_certstore_unref(struct tf_certstore *st)
{
    if (!st || !tf_ref_dec(&st->ref))
        return;
    for (size_t i = 0; i < st->n_certs; i++)
        tf_cert_unref(st->certs[i]);
    free(st->certs);
    for (size_t i = 0; i < st->n_sets; i++)
        tf_stubset_unref(st->sets[i]);
    free(st->sets);
    free(st->tab);
    free(st->arena);
    free(st);
}
