/*
 * certmgr_admin.c: what an operator may ask of the certificate manager through the admin
 * API: renew a name now, forget a name (storage first, then memory, so a handshake in
 * between still finds the old certificate and never re-reads a half-deleted one), clear a
 * name's backoff and paused marker, drop --ask answers, describe one name, and revoke a
 * certificate (then forget it: the next handshake orders a new one on demand). Also the
 * bounded memory of each name's last failure. Control loop only; storage and the CA are
 * reached asynchronously, and every callback runs exactly once, never inside the call.
 * With a shared (Redis) store, forget (and so revoke), unpause and the ask-cache purge are
 * announced to the other nodes, which apply the in-memory half only (certmgr_cluster.c):
 * the storage half was done once, by the node that was asked.
 */
#include "certmgr_int.h"
#include "tlsfront/base/log.h"
#include "tlsfront/base/lru.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define CM_ERRORS_MAX 1024

struct cm_error {
    int64_t at; /* unix seconds */
    char *reason;
};

static void cm_error_free(void *p)
{
    struct cm_error *e = p;
    free(e->reason);
    free(e);
}

void cm_note_error(struct tf_certmgr *cm, const char *name, const char *reason)
{
    if (!reason) {
        if (cm->errors)
            tf_lru_del(cm->errors, name);
        return;
    }
    if (!cm->errors)
        cm->errors = tf_lru_new(CM_ERRORS_MAX, cm_error_free);
    struct cm_error *e = tf_calloc(1, sizeof *e);
    e->at = tf_wall_now();
    e->reason = tf_strdup(reason);
    tf_lru_put(cm->errors, name, e, TF_LRU_NEVER);
}

/* A finished JSON object as text for an action callback; frees j. */
static char *json_text(cJSON *j)
{
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text)
        abort(); /* cJSON only fails on allocation */
    return text;
}

static void answer(tf_certmgr_action_cb cb, void *arg, int err, cJSON *j)
{
    char *text = json_text(j);
    cb(err, text, arg);
    free(text);
}

static void answer_error(tf_certmgr_action_cb cb, void *arg, int err, const char *name,
                         const char *reason)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "error", reason);
    cJSON_AddStringToObject(j, "name", name);
    answer(cb, arg, err, j);
}

/* --- renew ----------------------------------------------------------------------------- */

/* name's managed entry when nothing is ordering for it, else NULL with *rc: TF_ECLOSED,
 * TF_ENOTFOUND or TF_EBUSY. */
static struct cm_managed *managed_idle(struct tf_certmgr *cm, const char *name, int *rc)
{
    struct cm_managed *m = cm->closing || !cm->loaded ? NULL : cm_find_managed(cm, name);
    *rc = cm->closing || !cm->loaded ? TF_ECLOSED : !m ? TF_ENOTFOUND : 0;
    if (m && (m->renewing || cm_find_demand(cm, name))) {
        *rc = TF_EBUSY;
        m = NULL;
    }
    return m;
}

int tf_certmgr_renew_now(struct tf_certmgr *cm, const char *name)
{
    int rc;
    struct cm_managed *m = managed_idle(cm, name, &rc);
    if (!m)
        return rc;
    TF_INFO("certmgr", "name=%s renewing now (operator; expires %lld)", name,
            (long long)m->not_after);
    cm_renew_begin(cm, m);
    return 0;
}

/* --- forget ---------------------------------------------------------------------------- */

/* An action in flight: forget, unpause or revoke. */
struct cm_action {
    struct tf_certmgr *cm;
    char *name;
    tf_certmgr_action_cb cb;
    void *arg;
    bool in_memory, revoked, backoff_cleared;
    char *serial;
    int reason; /* revoke: the CRLReason code */
};

static struct cm_action *action_new(struct tf_certmgr *cm, const char *name,
                                    tf_certmgr_action_cb cb, void *arg)
{
    struct cm_action *x = tf_calloc(1, sizeof *x);
    x->cm = cm;
    x->name = tf_strdup(name);
    x->cb = cb;
    x->arg = arg;
    return x;
}

static void action_free(struct cm_action *x)
{
    free(x->name);
    free(x->serial);
    free(x);
}

bool cm_forget_memory(struct tf_certmgr *cm, const char *name)
{
    struct cm_managed **pp = &cm->managed;
    while (*pp && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next;
    struct cm_managed *m = *pp;
    if (!m)
        return false;
    *pp = m->next;
    cm->n_managed--;
    tf_lru_del(cm->by_name, name);
    cm_plan_remove(cm, m);
    cm_lazy_forget(cm, m);
    tf_cert_unref(m->cert);
    free(m->cert_id);
    free(m->name);
    free(m);
    struct tf_certstore *next = tf_certstore_without(cm->store, name);
    tf_certstore_unref(cm->store);
    cm->store = next;
    cm_note_error(cm, name, NULL);
    if (!cm->closing)
        cm->host.publish_certs(cm->host.arg);
    return true;
}

static void on_forgotten(int err, void *arg)
{
    struct cm_action *x = arg;
    struct tf_certmgr *cm = x->cm;
    bool stored = err == 0;
    if (err == UV_ENOENT)
        err = 0;
    if (err) {
        TF_WARN("certmgr", "name=%s forgetting: storage: %s (still served)", x->name,
                tf_strerror(err));
        answer_error(x->cb, x->arg, err, x->name, tf_strerror(err));
        action_free(x);
        return;
    }
    bool mem = cm_forget_memory(cm, x->name);
    cm_cluster_announce_action(cm, "forget", x->name); /* the others serve it from memory */
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", x->name);
    if (x->revoked) {
        cJSON_AddBoolToObject(j, "revoked", true);
        cJSON_AddStringToObject(j, "serial", x->serial ? x->serial : "");
    }
    cJSON_AddBoolToObject(j, "forgotten_memory", mem);
    cJSON_AddBoolToObject(j, "forgotten_storage", stored);
    TF_INFO("certmgr", "name=%s forgotten (memory: %s, storage: %s)", x->name,
            mem ? "yes" : "no", stored ? "yes" : "no");
    answer(x->cb, x->arg, mem || stored || x->revoked ? 0 : TF_ENOTFOUND, j);
    action_free(x);
}

/* Start the storage half of forgetting x->name; on a start failure x is answered now. */
static void forget_start(struct cm_action *x)
{
    int rc = tf_acme_store_forget(x->cm->storage, x->name, on_forgotten, x);
    if (rc) {
        answer_error(x->cb, x->arg, rc, x->name, tf_strerror(rc));
        action_free(x);
    }
}

int tf_certmgr_forget(struct tf_certmgr *cm, const char *name, tf_certmgr_action_cb cb,
                      void *arg)
{
    if (cm->closing || !cm->loaded)
        return TF_ECLOSED;
    if (cm_find_demand(cm, name))
        return TF_EBUSY;
    char *key = tf_acme_store_key(name, "cert.pem");
    if (!key)
        return TF_EINVAL;
    free(key);
    forget_start(action_new(cm, name, cb, arg));
    return 0;
}

/* --- unpause --------------------------------------------------------------------------- */

static void on_marker_deleted(int err, void *arg)
{
    struct cm_action *x = arg;
    if (err && err != UV_ENOENT) {
        answer_error(x->cb, x->arg, err, x->name, tf_strerror(err));
        action_free(x);
        return;
    }
    cm_cluster_announce_action(x->cm, "unpause", x->name); /* the others' backoff too */
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", x->name);
    cJSON_AddBoolToObject(j, "backoff_cleared", x->backoff_cleared);
    cJSON_AddBoolToObject(j, "paused_marker_removed", err == 0);
    TF_INFO("certmgr", "name=%s unpaused (backoff: %s, paused marker: %s)", x->name,
            x->backoff_cleared ? "cleared" : "none", err == 0 ? "removed" : "none");
    answer(x->cb, x->arg, 0, j);
    action_free(x);
}

bool cm_clear_backoff(struct tf_certmgr *cm, const char *name)
{
    bool cleared = tf_budget_unpause(cm->budget, name, tf_wall_now() * 1000);
    struct cm_managed *m = cm_find_managed(cm, name);
    if (m && m->failures && !m->renewing) {
        m->failures = 0;
        m->renew_at = tf_wall_now(); /* the renewal it was backing off is due again */
        cm_plan_fix(cm, m);
        cleared = true;
    }
    return cleared;
}

int tf_certmgr_unpause(struct tf_certmgr *cm, const char *name, tf_certmgr_action_cb cb,
                       void *arg)
{
    if (cm->closing || !cm->loaded)
        return TF_ECLOSED;
    struct cm_managed *pm = cm_find_managed(cm, name);
    int ca = pm && pm->ca < cm->n_cas ? pm->ca : 0; /* paused at the CA that issued it */
    char *key = tf_acme_paused_key(tf_acme_ca_id(cm->cas[ca].acme), name);
    if (!key)
        return TF_EINVAL;
    struct cm_action *x = action_new(cm, name, cb, arg);
    x->backoff_cleared = cm_clear_backoff(cm, name);
    int rc = tf_storage_del(cm->storage, key, on_marker_deleted, x);
    free(key);
    if (rc) {
        action_free(x);
        return rc;
    }
    return 0;
}

/* --- ask cache ------------------------------------------------------------------------- */

size_t cm_purge_ask_local(struct tf_certmgr *cm, const char *name)
{
    size_t n = cm->gate ? tf_gate_purge(cm->gate, name) : 0;
    TF_INFO("certmgr", "%s%s: %zu cached --ask answers dropped", name ? "name=" : "all names",
            name ? name : "", n);
    return n;
}

size_t tf_certmgr_purge_ask(struct tf_certmgr *cm, const char *name)
{
    cm_cluster_announce_action(cm, "ask-purge", name);
    return cm_purge_ask_local(cm, name);
}

/* --- detail ---------------------------------------------------------------------------- */

static void add_time(cJSON *j, const char *key, int64_t t)
{
    if (t > 0)
        cJSON_AddNumberToObject(j, key, (double)t);
    else
        cJSON_AddNullToObject(j, key);
}

static void add_cert(cJSON *j, const struct tf_certmgr *cm, const struct cm_managed *m)
{
    const struct tf_cert *c = cm_decoded(cm, m); /* issuer, serial: NULL when not loaded */
    const char *dir = cm_ca_directory(cm, m->ca);
    cJSON_AddStringToObject(j, "ca", dir ? dir : "");
    cJSON_AddStringToObject(j, "issuer", c && c->issuer ? c->issuer : "");
    cJSON_AddStringToObject(j, "serial", c && c->serial ? c->serial : "");
    cJSON_AddNumberToObject(j, "not_before", (double)m->not_before);
    cJSON_AddNumberToObject(j, "not_after", (double)m->not_after);
    cJSON_AddNumberToObject(j, "renew_at", (double)m->renew_at);
    if (m->ari_end > m->ari_start) {
        cJSON *w = cJSON_AddObjectToObject(j, "ari_window");
        cJSON_AddNumberToObject(w, "start", (double)m->ari_start);
        cJSON_AddNumberToObject(w, "end", (double)m->ari_end);
    } else {
        cJSON_AddNullToObject(j, "ari_window");
    }
    add_time(j, "last_used", cm_last_used(cm, m));
    cJSON_AddBoolToObject(j, "renewing", m->renewing);
    cJSON_AddNumberToObject(j, "renewal_failures", m->failures);
}

char *tf_certmgr_detail(struct tf_certmgr *cm, const char *name)
{
    const struct cm_managed *m = cm_find_managed(cm, name);
    const struct cm_error *e = cm->errors ? tf_lru_peek(cm->errors, name) : NULL;
    int64_t backoff = tf_budget_backoff_until(cm->budget, name) / 1000;
    bool ordering = cm_find_demand(cm, name) != NULL;
    bool is_static = cm->host.has_static(cm->host.arg, name);
    if (!m && !e && !ordering && !is_static && backoff <= tf_wall_now())
        return NULL;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", name);
    cJSON_AddBoolToObject(j, "managed", m != NULL);
    cJSON_AddBoolToObject(j, "static", is_static);
    if (m)
        add_cert(j, cm, m);
    cJSON_AddBoolToObject(j, "order_in_flight", ordering);
    add_time(j, "backoff_until", backoff > tf_wall_now() ? backoff : 0);
    if (e) {
        cJSON *le = cJSON_AddObjectToObject(j, "last_error");
        cJSON_AddNumberToObject(le, "at", (double)e->at);
        cJSON_AddStringToObject(le, "reason", e->reason);
    } else {
        cJSON_AddNullToObject(j, "last_error");
    }
    return json_text(j);
}

/* --- revoke ---------------------------------------------------------------------------- */

static void on_revoked(int err, const char *reason, void *arg)
{
    struct cm_action *x = arg;
    if (err) {
        TF_WARN("certmgr", "name=%s serial=%s not revoked: %s", x->name, x->serial, reason);
        answer_error(x->cb, x->arg, err, x->name, reason ? reason : tf_strerror(err));
        action_free(x);
        return;
    }
    TF_INFO("certmgr", "name=%s serial=%s revoked; forgetting it so the next handshake "
                       "orders a new certificate", x->name, x->serial);
    x->revoked = true;
    if (x->cm->closing) {
        on_forgotten(TF_ECLOSED, x);
        return;
    }
    forget_start(x);
}

static int revoke_cert(struct cm_action *x, struct tf_cert *c)
{
    free(x->serial);
    x->serial = tf_strdup(c->serial ? c->serial : "");
    return tf_acme_revoke(x->cm->acme, c, x->reason, false, on_revoked, x);
}

static void on_revoke_read(int err, struct tf_cert *c, const char *ca_id, void *arg)
{
    struct cm_action *x = arg;
    (void)ca_id;
    int rc = err ? err : x->cm->closing ? TF_ECLOSED : revoke_cert(x, c);
    tf_cert_unref(c);
    if (rc) {
        answer_error(x->cb, x->arg, rc, x->name, tf_strerror(rc));
        action_free(x);
    }
}

int tf_certmgr_revoke(struct tf_certmgr *cm, const char *name, int reason,
                      tf_certmgr_action_cb cb, void *arg)
{
    int rc;
    struct cm_managed *m = managed_idle(cm, name, &rc);
    if (!m)
        return rc;
    struct cm_action *x = action_new(cm, name, cb, arg);
    x->reason = reason;
    struct tf_cert *c = cm_decoded(cm, m);
    /* A stub not in the cache: its certificate is read from the storage first. */
    rc = c ? revoke_cert(x, c) : tf_acme_store_load_meta(cm->storage, name, on_revoke_read, x);
    if (rc)
        action_free(x);
    return rc;
}
