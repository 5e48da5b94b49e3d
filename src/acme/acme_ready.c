/*
 * acme_ready.c: "directory and account ready" for the ACME client: the cached directory
 * (RFC 8555 §7.1.1), the account (acme_account.c, answered through a callback), and the
 * waiters, each woken exactly once, from a loop callback or right away when everything is
 * ready. Control loop only.
 */
#include "acme_int.h"
#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- directory and account readiness ---- */

/* Wake waiters: all of them (err != 0 or account ready), or only those that do not need the
 * account. Detach first: a callback may add a new waiter. */
static void wake(struct tf_acme *a, bool all, int err, const char *reason,
                 const struct tf_acme_problem *prob)
{
    struct tf_acme_waiter *run = NULL, **pp = &a->waiters;
    while (*pp) {
        struct tf_acme_waiter *w = *pp;
        if (all || !w->want_account) {
            *pp = w->next;
            w->next = run;
            run = w;
        } else {
            pp = &w->next;
        }
    }
    while (run) {
        struct tf_acme_waiter *w = run;
        run = w->next;
        w->cb(err, reason, prob, w->arg);
    }
}

static void ensure_step(struct tf_acme *a);
static void on_account_done(struct tf_acme *a, int err, const char *reason,
                            const struct tf_acme_problem *prob);

static void on_directory(int err, const struct tf_http_response *resp,
                         const struct tf_acme_problem *prob, void *arg)
{
    struct tf_acme *a = arg;
    char reason[512];
    a->dir_call = NULL;
    if (a->closing || err == UV_ECANCELED) {
        wake(a, true, UV_ECANCELED, "cancelled", NULL);
        return;
    }
    if (err) {
        if (prob)
            tf_acme_problem_summary(prob, reason, sizeof(reason));
        else
            snprintf(reason, sizeof(reason), "%s", tf_strerror(err));
        char line[600];
        snprintf(line, sizeof(line), "directory %s: %s", a->dir_url, reason);
        wake(a, true, err, line, prob);
        return;
    }
    tf_acme_directory_clear(&a->dir);
    if (tf_acme_parse_directory(resp->body, resp->body_len, &a->dir, reason, sizeof(reason))) {
        tf_acme_directory_clear(&a->dir);
        wake(a, true, TF_EPROTO, reason, NULL);
        return;
    }
    a->have_dir = true;
    ensure_step(a);
}

static bool wants_account(const struct tf_acme *a)
{
    for (const struct tf_acme_waiter *w = a->waiters; w; w = w->next)
        if (w->want_account)
            return true;
    return false;
}

static void ensure_step(struct tf_acme *a)
{
    if (a->closing) {
        if (!a->dir_call && !a->acct_op)
            wake(a, true, UV_ECANCELED, "cancelled", NULL);
        return;
    }
    if (!a->have_dir) {
        if (a->dir_call)
            return;
        struct tf_acme_call_spec spec = {
            .method = "GET",
            .url = a->dir_url,
            .deadline_ms = tf_mono_ms() + (uint64_t)a->timeout_s * 1000,
        };
        int rc = tf_acme_call_start(a, &spec, on_directory, a, &a->dir_call);
        if (rc)
            wake(a, true, rc, "directory: cannot start the request", NULL);
        return;
    }
    wake(a, false, 0, NULL, NULL);
    if (!wants_account(a))
        return;
    if (a->kid && a->acct_key)
        wake(a, true, 0, NULL, NULL);
    else if (!a->acct_op)
        tf_acme_account_start(a, on_account_done);
}

void tf_acme_ensure(struct tf_acme *a, struct tf_acme_waiter *w)
{
    w->next = a->waiters;
    a->waiters = w;
    ensure_step(a);
}

/* The account code ended (acme_account.c calls this through tf_acme_account_start). */
static void on_account_done(struct tf_acme *a, int err, const char *reason,
                            const struct tf_acme_problem *prob)
{
    if (err)
        wake(a, true, err, reason, prob);
    else
        ensure_step(a);
}

void tf_acme_forget_account(struct tf_acme *a)
{
    free(a->kid);
    a->kid = NULL;
}
