/*
 * certmgr_plan.c: the renewal plan of many managed names. A binary min-heap of the managed
 * names by the unix second each next needs attention (its renewal time or its next ARI poll),
 * so that the renew timer sleeps until the first one and wakes for the names due, never
 * scanning every name; and the ARI queue, which keeps at most TF_CERTMGR_ARI_MAX_INFLIGHT
 * renewal-information requests in flight to the CA however many names are due at once.
 * Pure bookkeeping on the control loop: no I/O of its own (cm_poll_ari starts requests).
 */
#include "certmgr_int.h"

#include <stdlib.h>

int64_t cm_plan_due(const struct cm_managed *m)
{
    if (m->renewing)
        return INT64_MAX;
    int64_t due = m->renew_at;
    if (m->ari_next && !m->ari_queued && m->ari_next < due)
        due = m->ari_next;
    return due;
}

static void plan_set(struct tf_certmgr *cm, size_t i, struct cm_managed *m)
{
    cm->plan[i] = m;
    m->plan_i = i;
}

static void plan_up(struct tf_certmgr *cm, size_t i)
{
    struct cm_managed *m = cm->plan[i];
    int64_t due = cm_plan_due(m);
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (cm_plan_due(cm->plan[parent]) <= due)
            break;
        plan_set(cm, i, cm->plan[parent]);
        i = parent;
    }
    plan_set(cm, i, m);
}

static void plan_down(struct tf_certmgr *cm, size_t i)
{
    struct cm_managed *m = cm->plan[i];
    int64_t due = cm_plan_due(m);
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= cm->plan_n)
            break;
        if (c + 1 < cm->plan_n && cm_plan_due(cm->plan[c + 1]) < cm_plan_due(cm->plan[c]))
            c++;
        if (due <= cm_plan_due(cm->plan[c]))
            break;
        plan_set(cm, i, cm->plan[c]);
        i = c;
    }
    plan_set(cm, i, m);
}

void cm_plan_fix(struct tf_certmgr *cm, struct cm_managed *m)
{
    if (m->plan_i == CM_PLAN_NONE) {
        if (cm->plan_n == cm->plan_cap) {
            cm->plan_cap = cm->plan_cap ? 2 * cm->plan_cap : 64;
            cm->plan = tf_realloc(cm->plan, cm->plan_cap * sizeof *cm->plan);
        }
        plan_set(cm, cm->plan_n++, m);
    }
    plan_up(cm, m->plan_i);
    plan_down(cm, m->plan_i);
    if (cm->plan[0] == m)
        cm_renew_wake(cm, cm_plan_due(m));
}

struct cm_managed *cm_plan_top(const struct tf_certmgr *cm)
{
    return cm->plan_n ? cm->plan[0] : NULL;
}

void cm_ari_enqueue(struct tf_certmgr *cm, struct cm_managed *m)
{
    m->ari_next = 0;
    if (!m->ari_queued) {
        m->ari_queued = true;
        m->ari_qnext = NULL;
        cm->ari_queued++;
        if (cm->ari_tail)
            cm->ari_tail->ari_qnext = m;
        else
            cm->ari_head = m;
        cm->ari_tail = m;
    }
    cm_plan_fix(cm, m);
    cm_ari_pump(cm);
}

void cm_ari_pump(struct tf_certmgr *cm)
{
    while (!cm->closing && cm->ari_head && cm->ari_inflight < TF_CERTMGR_ARI_MAX_INFLIGHT) {
        struct cm_managed *m = cm->ari_head;
        cm->ari_head = m->ari_qnext;
        if (!cm->ari_head)
            cm->ari_tail = NULL;
        m->ari_queued = false;
        m->ari_qnext = NULL;
        cm->ari_queued--;
        if (cm_poll_ari(cm, m) == 0)
            cm->ari_inflight++;
        cm_plan_fix(cm, m);
    }
}

void cm_plan_remove(struct tf_certmgr *cm, struct cm_managed *m)
{
    if (m->ari_queued) { /* unlink from the ARI queue: O(queue), an operator's action */
        struct cm_managed *prev = NULL;
        for (struct cm_managed *q = cm->ari_head; q && q != m; q = q->ari_qnext)
            prev = q;
        *(prev ? &prev->ari_qnext : &cm->ari_head) = m->ari_qnext;
        if (cm->ari_tail == m)
            cm->ari_tail = prev;
        m->ari_queued = false;
        m->ari_qnext = NULL;
        cm->ari_queued--;
    }
    size_t i = m->plan_i;
    if (i == CM_PLAN_NONE)
        return;
    m->plan_i = CM_PLAN_NONE;
    struct cm_managed *last = cm->plan[--cm->plan_n];
    if (last == m)
        return;
    plan_set(cm, i, last);
    plan_up(cm, last->plan_i);
    plan_down(cm, last->plan_i);
}

void cm_plan_free(struct tf_certmgr *cm)
{
    free(cm->plan);
    cm->plan = NULL;
    cm->plan_n = cm->plan_cap = 0;
    cm->ari_head = cm->ari_tail = NULL;
    cm->ari_queued = 0;
}
