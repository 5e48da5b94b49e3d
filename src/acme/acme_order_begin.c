/*
 * acme_order_begin.c: the first steps of an order, before any authorization: refuse a name
 * the CA paused (marker in storage), take the cross-process lock "order-<name>" so tlsfront
 * processes sharing a storage make one order, look in storage for a fresh certificate (the
 * other process may just have stored it), wait for the directory and account, and POST
 * newOrder (RFC 8555 §7.4) with the profile and ARI "replaces" (RFC 9773 §5) when asked.
 */
#include "acme_int.h"
#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"
#include "tlsfront/acme/renew.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- newOrder ---- */

static void step_ready(struct tf_acme_order *o);

static void order_from_doc(struct tf_acme_order *o, struct tf_acme_order_doc *d)
{
    o->authz = d->authorizations;
    o->n_authz = d->n_authz;
    d->authorizations = NULL;
    d->n_authz = 0;
    o->finalize_url = d->finalize;
    d->finalize = NULL;
}

static void on_new_order(int err, const struct tf_http_response *resp,
                         const struct tf_acme_problem *prob, void *arg)
{
    struct tf_acme_order *o = arg;
    o->call = NULL;
    if (tf_acme_order_cancelled(o))
        return;
    if (err && prob && tf_acme_problem_is(prob, "accountDoesNotExist") && !o->account_retried) {
        /* The CA no longer knows our account URL: find or register the account again. */
        o->account_retried = true;
        tf_acme_forget_account(o->a);
        step_ready(o);
        return;
    }
    if (err) {
        tf_acme_order_call_failed(o, "newOrder", err, prob);
        return;
    }
    const char *loc = tf_http_response_header(resp, "Location");
    struct tf_acme_order_doc d;
    char why[256];
    if (tf_acme_parse_order(resp->body, resp->body_len, &d, why, sizeof(why))) {
        tf_acme_order_fail(o, TF_EPROTO, NULL, "newOrder: %s", why);
    } else if (!loc || strncmp(loc, "http", 4) != 0) {
        tf_acme_order_fail(o, TF_EPROTO, NULL, "newOrder: no order URL (Location header)");
    } else if (d.status == TF_ACME_ST_PENDING || d.status == TF_ACME_ST_READY) {
        o->a->stats.orders_started++;
        o->order_url = tf_strdup(loc);
        order_from_doc(o, &d);
        tf_acme_order_authorize(o);
    } else {
        tf_acme_order_fail(o, TF_EPROTO, d.error, "newOrder: new order is %s",
                           tf_acme_status_name(d.status));
    }
    tf_acme_order_doc_clear(&d);
}

/* The profile to ask for: the order's, else the config's, if the CA lists it. */
static const char *pick_profile(struct tf_acme_order *o)
{
    const char *want = o->profile ? o->profile : o->a->profile;
    if (!want)
        return NULL;
    for (int i = 0; i < o->a->dir.n_profiles; i++)
        if (strcmp(o->a->dir.profiles[i], want) == 0)
            return want;
    TF_INFO(ACME_MOD, "name=%s the CA does not offer profile \"%s\"; using its default",
            o->name, want);
    return NULL;
}

static void step_new_order(struct tf_acme_order *o)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *ids = cJSON_AddArrayToObject(j, "identifiers");
    cJSON *id = cJSON_CreateObject();
    cJSON_AddStringToObject(id, "type", "dns");
    cJSON_AddStringToObject(id, "value", o->name);
    cJSON_AddItemToArray(ids, id);
    const char *profile = pick_profile(o);
    if (profile)
        cJSON_AddStringToObject(j, "profile", profile);
    if (o->replaces && o->a->dir.renewal_info)
        cJSON_AddStringToObject(j, "replaces", o->replaces);
    char *payload = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!payload)
        abort(); /* cJSON only fails on allocation */
    int rc = tf_acme_order_post(o, o->a->dir.new_order, payload, NULL, on_new_order);
    free(payload);
    if (rc)
        tf_acme_order_fail(o, rc, NULL, "newOrder: cannot start the request");
}

/* ---- directory and account ---- */

static void on_ready(int err, const char *reason, const struct tf_acme_problem *prob, void *arg)
{
    struct tf_acme_order *o = arg;
    o->ensure_busy = false;
    if (tf_acme_order_cancelled(o))
        return;
    if (err && prob && tf_acme_problem_is_paused(prob, NULL))
        tf_acme_order_call_failed(o, "account", err, prob);
    else if (err)
        tf_acme_order_fail(o, err, prob, "%s", reason ? reason : tf_strerror(err));
    else
        step_new_order(o);
}

static void step_ready(struct tf_acme_order *o)
{
    o->waiter = (struct tf_acme_waiter){.cb = on_ready, .arg = o, .want_account = true};
    o->ensure_busy = true;
    tf_acme_ensure(o->a, &o->waiter);
}

/* ---- a fresh certificate already in storage ---- */

static bool fresh(struct tf_acme_order *o, const struct tf_cert *c)
{
    int64_t now = tf_wall_now();
    if (!tf_cert_covers(c, o->name) || now < c->not_before ||
        now >= tf_renew_time(c->not_before, c->not_after, 0))
        return false;
    if (!o->replaces)
        return true;
    char *id = tf_renew_cert_id(c->leaf);
    bool same = id && strcmp(id, o->replaces) == 0;
    free(id);
    return !same;
}

static void on_stored(int err, struct tf_cert *cert, const char *chain_pem,
                      const char *key_pem, void *arg)
{
    struct tf_acme_order *o = arg;
    o->storage_busy = false;
    if (tf_acme_order_cancelled(o)) {
        tf_cert_unref(cert);
        return;
    }
    if (err == 0 && fresh(o, cert)) {
        o->cert = cert;
        o->chain_pem = tf_strdup(chain_pem);
        o->key_pem = tf_strdup(key_pem);
        tf_acme_order_succeed(o, true);
        return;
    }
    if (err && err != UV_ENOENT)
        TF_WARN(ACME_MOD, "name=%s stored certificate unusable (%s): ordering a new one",
                o->name, tf_strerror(err));
    tf_cert_unref(cert);
    step_ready(o);
}

/* ---- lock and paused marker ---- */

/* Between two tries of an order lock that another process holds. */
#define LOCK_RETRY_MS 200

static void step_lock(struct tf_acme_order *o);

/* A busy lock is tried again from the order's own timer, not waited for inside the store:
 * cancelling the order (shutdown) then ends the wait at once, where a wait in the store
 * would keep the order, and so the shutdown, alive up to --acme-timeout. */
static void on_locked(int err, void *arg)
{
    struct tf_acme_order *o = arg;
    o->storage_busy = false;
    if (err == 0)
        tf_acme_lease_start(o);
    if (tf_acme_order_cancelled(o))
        return;
    if (err == TF_EBUSY) {
        if (!o->lock_waiting)
            TF_INFO(ACME_MOD, "name=%s order lock held elsewhere: waiting", o->name);
        o->lock_waiting = true;
        tf_acme_order_after(o, LOCK_RETRY_MS, step_lock, "the order lock another process holds");
    } else if (err) {
        tf_acme_order_fail(o, err, NULL, "order lock: %s", tf_strerror(err));
    } else {
        o->storage_busy = true;
        int rc = tf_acme_store_load(o->a->st, o->name, on_stored, o);
        if (rc)
            on_stored(rc, NULL, NULL, NULL, o);
    }
}

/* One try (wait 0): see on_locked. */
static void step_lock(struct tf_acme_order *o)
{
    o->storage_busy = true;
    int rc = tf_storage_lock(o->a->st, o->lock_name, o->a->lease_s, 0, on_locked, o);
    if (rc)
        on_locked(rc, o);
}

static void on_paused_get(int err, char *data, size_t len, void *arg)
{
    struct tf_acme_order *o = arg;
    (void)len;
    free(data);
    o->storage_busy = false;
    if (tf_acme_order_cancelled(o))
        return;
    if (err == 0) {
        char *key = tf_acme_paused_key(o->a->ca_id, o->name);
        tf_acme_order_fail(o, TF_EDENIED, NULL,
                           "paused by the CA: unpause, then delete %s from the storage", key);
        free(key);
        return;
    }
    if (err != UV_ENOENT) {
        tf_acme_order_fail(o, err, NULL, "reading the paused marker: %s", tf_strerror(err));
        return;
    }
    step_lock(o);
}

static void step_begin(struct tf_acme_order *o)
{
    char *key = tf_acme_paused_key(o->a->ca_id, o->name);
    o->storage_busy = true;
    int rc = key ? tf_storage_get(o->a->st, key, on_paused_get, o) : TF_EINVAL;
    free(key);
    if (rc)
        on_paused_get(rc == UV_ENOENT ? TF_EINVAL : rc, NULL, 0, o);
}

struct tf_acme_order *tf_acme_order_start(struct tf_acme *a, const char *name,
                                          const struct tf_acme_order_opts *opts)
{
    struct tf_acme_order *o = tf_calloc(1, sizeof(*o));
    o->a = a;
    o->name = tf_strdup(name);
    /* Lock names follow the key rules: "*." may only open a segment. */
    o->lock_name = strncmp(name, "*.", 2) == 0 ? tf_asprintf("order-_wildcard_.%s", name + 2)
                                               : tf_asprintf("order-%s", name);
    if (opts && opts->replaces)
        o->replaces = tf_strdup(opts->replaces);
    if (opts && opts->profile)
        o->profile = tf_strdup(opts->profile);
    o->deadline_ms = tf_mono_ms() + (uint64_t)a->timeout_s * 1000;
    o->poll_ms = 100;
    o->again = step_new_order;
    o->work.data = o;
    uv_timer_init(a->loop, &o->timer);
    o->timer.data = o;
    tf_acme_lease_init(o);
    o->next = a->orders;
    if (a->orders)
        a->orders->prev = o;
    a->orders = o;
    tf_acme_hold(a);
    tf_acme_order_after(o, 0, step_begin, "the start");
    return o;
}
