/*
 * acme.c: the ACME client object (see acme.h): configuration copied at creation, the table
 * of orders in flight (one per name; a second obtain joins), ARI lookups, and the start of
 * teardown. The client never frees itself while anything it started can still call back:
 * everything alive holds a reference (acme_call.c), and the last release after tf_acme_close
 * closes the final handle. Readiness (directory and account) is acme_ready.c.
 */
#include "acme_int.h"
#include "tlsfront/base/common.h"
#include "tlsfront/acme/jws.h"
#include "tlsfront/base/log.h"
#include "tlsfront/base/name.h"
#include "tlsfront/acme/renew.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tf_acme_ari_op {
    struct tf_acme *a;
    struct tf_acme_ari_op *prev, *next;
    char *cert_id;
    tf_acme_ari_cb cb;
    void *arg;
    struct tf_acme_waiter waiter;
    struct tf_acme_call *call;
};

/* ---- creation ---- */

/* "https://acme-v02.api.letsencrypt.org/directory" -> "acme-v02.api.letsencrypt.org-directory" */
static char *make_ca_id(const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t n = strlen(p), j = 0;
    char *id = tf_malloc(n + 1);
    for (size_t i = 0; i < n && j < 200; i++) {
        char c = (char)tolower((unsigned char)p[i]);
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.';
        if (!ok)
            c = '-';
        if (c == '-' && (j == 0 || id[j - 1] == '-'))
            continue;
        id[j++] = c;
    }
    while (j > 0 && (id[j - 1] == '-' || id[j - 1] == '.'))
        j--;
    id[j] = '\0';
    char *key = tf_asprintf("acme/%s/account.key", id);
    bool valid = j > 0 && tf_storage_key_valid(key);
    free(key);
    if (!valid) {
        free(id);
        return NULL;
    }
    return id;
}

/* "https://host:port/path" -> "host:port": how logs and metrics name the CA. */
static char *make_label(const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t n = strcspn(p, "/?#");
    const char *at = memchr(p, '@', n);
    if (at) {
        n -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    return tf_strndup(p, TF_MIN(n, 100));
}

static int copy_config(struct tf_acme *a, const struct tf_config *cfg,
                       const struct tf_acme_ca_cfg *ca, char *err, size_t errlen)
{
    const char *url = ca->directory;
    if (!url || (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)) {
        snprintf(err, errlen, "acme directory \"%s\": not an http(s) URL", url ? url : "");
        return TF_EINVAL;
    }
    a->dir_url = tf_strdup(url);
    a->label = make_label(url);
    a->ca_id = make_ca_id(url);
    if (!a->ca_id) {
        snprintf(err, errlen, "acme directory \"%s\": cannot derive a storage id", url);
        return TF_EINVAL;
    }
    a->email = cfg->acme_email && cfg->acme_email[0] ? tf_strdup(cfg->acme_email) : NULL;
    a->profile = cfg->acme_profile && cfg->acme_profile[0] ? tf_strdup(cfg->acme_profile) : NULL;
    a->acct_key_type = cfg->acme_account_key;
    a->cert_key_type = cfg->acme_cert_key;
    a->timeout_s = cfg->acme_timeout_s ? cfg->acme_timeout_s : 300;
    a->lease_s = cfg->storage_lease_s ? cfg->storage_lease_s : 30;
    a->n_chal_types = cfg->n_acme_challenges;
    memcpy(a->chal_types, cfg->acme_challenges, sizeof(a->chal_types));
    if (a->n_chal_types == 0) /* a config not made by tf_config_load (tests) */
        a->chal_types[a->n_chal_types++] = TF_CHAL_TLS_ALPN_01;
    if ((ca->eab_kid != NULL) != (ca->eab_hmac != NULL)) {
        snprintf(err, errlen, "acme EAB: --acme-eab-kid and --acme-eab-hmac go together");
        return TF_EINVAL;
    }
    if (ca->eab_kid) {
        const char *h = ca->eab_hmac;
        if (tf_b64url_decode(h, strlen(h), &a->eab_hmac, &a->eab_hmac_len) ||
            a->eab_hmac_len == 0) {
            snprintf(err, errlen, "acme EAB: --acme-eab-hmac is not base64url");
            return TF_EINVAL;
        }
        a->eab_kid = tf_strdup(ca->eab_kid);
    }
    return 0;
}

struct tf_acme *tf_acme_new_ca(uv_loop_t *loop, const struct tf_config *cfg, int idx,
                               struct tf_storage *st, struct tf_httpc *http,
                               const struct tf_acme_responder *resp, char *err, size_t errlen)
{
    /* A config built by hand (tests) may set only the first CA's plain fields. */
    struct tf_acme_ca_cfg plain = {cfg->acme_directory, cfg->acme_ca, cfg->acme_eab_kid,
                                   cfg->acme_eab_hmac};
    const struct tf_acme_ca_cfg *ca = idx < cfg->n_acme_cas ? &cfg->acme_cas[idx] : &plain;
    struct tf_acme *a = tf_calloc(1, sizeof(*a));
    a->loop = loop;
    a->st = st;
    a->http = http;
    if (resp)
        a->resp = *resp;
    if ((idx > 0 && idx >= cfg->n_acme_cas) || copy_config(a, cfg, ca, err, errlen)) {
        if (idx > 0 && idx >= cfg->n_acme_cas)
            snprintf(err, errlen, "acme: no CA number %d", idx + 1);
        free(a->dir_url);
        free(a->label);
        free(a->ca_id);
        free(a->email);
        free(a->profile);
        free(a->eab_hmac);
        free(a);
        return NULL;
    }
    uv_timer_init(loop, &a->close_timer);
    a->close_timer.data = a;
    a->refs = 1;
    return a;
}

struct tf_acme *tf_acme_new(uv_loop_t *loop, const struct tf_config *cfg, struct tf_storage *st,
                            struct tf_httpc *http, const struct tf_acme_responder *resp,
                            char *err, size_t errlen)
{
    return tf_acme_new_ca(loop, cfg, 0, st, http, resp, err, errlen);
}

/* ---- obtain ---- */

/* A lower-case host name or one-label wildcard that storage can hold. */
static bool name_ok(const char *name)
{
    for (const char *p = name; *p; p++)
        if (isupper((unsigned char)*p))
            return false;
    if (!tf_name_pattern_valid(name))
        return false;
    char *key = tf_acme_store_key(name, "cert.pem");
    free(key);
    return key != NULL;
}

int tf_acme_obtain(struct tf_acme *a, const char *name, const struct tf_acme_order_opts *opts,
                   tf_acme_done_cb cb, void *arg)
{
    if (a->closing)
        return TF_ECLOSED;
    if (!name || !name_ok(name) || !cb)
        return TF_EINVAL;
    struct tf_acme_order *o = a->orders;
    while (o && (o->finished || strcmp(o->name, name) != 0))
        o = o->next;
    if (o) {
        a->stats.joined++;
    } else {
        o = tf_acme_order_start(a, name, opts);
    }
    struct tf_acme_obtainer *ob = tf_calloc(1, sizeof(*ob));
    ob->cb = cb;
    ob->arg = arg;
    ob->next = o->obtainers;
    o->obtainers = ob;
    return 0;
}

/* ---- ARI (RFC 9773) ---- */

static void ari_end(struct tf_acme_ari_op *op, int err, const struct tf_acme_ari *ari)
{
    struct tf_acme *a = op->a;
    op->cb(err, ari, op->arg);
    if (op->prev)
        op->prev->next = op->next;
    else
        a->aris = op->next;
    if (op->next)
        op->next->prev = op->prev;
    free(op->cert_id);
    free(op);
    tf_acme_release(a);
}

static void on_ari(int err, const struct tf_http_response *resp,
                   const struct tf_acme_problem *prob, void *arg)
{
    struct tf_acme_ari_op *op = arg;
    op->call = NULL;
    if (err) {
        TF_INFO(ACME_MOD, "renewalInfo %s: %s%s%s", op->cert_id, tf_strerror(err),
                prob ? ": " : "", prob ? prob->detail : "");
        ari_end(op, err, NULL);
        return;
    }
    struct tf_acme_ari ari = {.retry_after = 21600};
    char *expl = NULL, why[160];
    int rc = tf_renew_parse_ari(resp->body, resp->body_len, &ari.start, &ari.end, &expl, why,
                                sizeof(why));
    int64_t s = tf_http_response_retry_after(resp);
    if (s >= 0)
        ari.retry_after = TF_MIN(TF_MAX(s, 60), 86400 * 7);
    if (rc)
        TF_INFO(ACME_MOD, "renewalInfo %s: %s", op->cert_id, why);
    ari.explanation_url = expl;
    ari_end(op, rc ? TF_EPROTO : 0, rc ? NULL : &ari);
    free(expl);
}

static void on_ari_ready(int err, const char *reason, const struct tf_acme_problem *prob,
                         void *arg)
{
    struct tf_acme_ari_op *op = arg;
    struct tf_acme *a = op->a;
    (void)reason;
    (void)prob;
    if (!err && a->closing)
        err = UV_ECANCELED;
    if (!err && !a->dir.renewal_info)
        err = TF_ENOTFOUND;
    if (err) {
        ari_end(op, err, NULL);
        return;
    }
    char *url = tf_asprintf("%s/%s", a->dir.renewal_info, op->cert_id);
    struct tf_acme_call_spec spec = {
        .method = "GET", .url = url, .deadline_ms = tf_mono_ms() + 60000, .max_body = 65536};
    int rc = tf_acme_call_start(a, &spec, on_ari, op, &op->call);
    free(url);
    if (rc)
        ari_end(op, rc, NULL);
}

int tf_acme_renewal_info(struct tf_acme *a, const struct tf_cert *cert, tf_acme_ari_cb cb,
                         void *arg)
{
    char *id = cert && cert->leaf ? tf_renew_cert_id(cert->leaf) : NULL;
    int rc = tf_acme_renewal_info_id(a, id, cb, arg);
    free(id);
    return rc;
}

int tf_acme_renewal_info_id(struct tf_acme *a, const char *cert_id, tf_acme_ari_cb cb,
                            void *arg)
{
    if (a->closing)
        return TF_ECLOSED;
    if (a->have_dir && !a->dir.renewal_info)
        return TF_ENOTFOUND;
    if (!cert_id)
        return TF_EINVAL;
    char *id = tf_strdup(cert_id);
    struct tf_acme_ari_op *op = tf_calloc(1, sizeof(*op));
    op->a = a;
    op->cert_id = id;
    op->cb = cb;
    op->arg = arg;
    op->waiter = (struct tf_acme_waiter){.cb = on_ari_ready, .arg = op};
    op->next = a->aris;
    if (a->aris)
        a->aris->prev = op;
    a->aris = op;
    tf_acme_hold(a);
    if (a->have_dir) {
        /* Go through a call even when ready so cb never runs inside this function. */
        on_ari_ready(0, NULL, NULL, op);
    } else {
        tf_acme_ensure(a, &op->waiter);
    }
    return 0;
}

/* ---- accessors and teardown ---- */

void tf_acme_get_stats(const struct tf_acme *a, struct tf_acme_stats *out) { *out = a->stats; }
const char *tf_acme_ca_id(const struct tf_acme *a) { return a->ca_id; }
const char *tf_acme_ca_label(const struct tf_acme *a) { return a->label; }
const char *tf_acme_account_url(const struct tf_acme *a) { return a->kid; }

void tf_acme_close(struct tf_acme *a, void (*done)(void *arg), void *arg)
{
    if (!a || a->closing)
        return;
    a->closing = true;
    a->close_done = done;
    a->close_arg = arg;
    for (struct tf_acme_order *o = a->orders; o; o = o->next)
        tf_acme_order_cancel(o);
    for (struct tf_acme_ari_op *op = a->aris; op; op = op->next)
        tf_acme_call_cancel(op->call);
    tf_acme_revoke_cancel_all(a);
    tf_acme_call_cancel(a->dir_call);
    tf_acme_account_cancel(a);
    tf_acme_release(a);
}
