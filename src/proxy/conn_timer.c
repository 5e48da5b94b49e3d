/*
 * conn_timer.c: the timeouts of a worker's connections (PROXY header, handshake, hold,
 * backend connect, idle, linger) on one libuv timer per worker instead of one per
 * connection: a uv_timer_t is 152 bytes, which every idle connection would carry. A
 * connection has at most one deadline. Connections are kept in one list per timeout length:
 * a deadline set now is now + length, the latest of its list, so setting one is an append
 * and each list is in deadline order. A deadline that is no configured length (what is left
 * of the idle timeout after reads) is approached in power-of-two steps (tf_deadline_within),
 * so such lengths make a few dozen lists at most and nothing ever walks a list. The worker's
 * timer is due at the earliest head. Owned by the worker
 * (tf_deadlines_new .. tf_deadlines_free); never frees a connection: an expiry calls
 * tf_conn_on_timeout(), which may close it.
 */
#include "conn_int.h"

#include <stdlib.h>

struct tf_tq { /* the connections waiting on one timeout length */
    uint64_t len_ms;
    struct tf_conn *head, *tail;
};

struct tf_deadlines {
    uv_timer_t timer;
    uint64_t due;     /* when the timer fires (uv_now() time); UINT64_MAX: not armed */
    struct tf_tq *q;  /* n_q lists, owned; a connection names its list by index */
    int n_q;
};

static void on_deadline(uv_timer_t *t);

struct tf_deadlines *tf_deadlines_new(uv_loop_t *loop)
{
    struct tf_deadlines *d = tf_calloc(1, sizeof *d);
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    d->due = UINT64_MAX;
    return d;
}

void tf_deadlines_close(struct tf_deadlines *d)
{
    if (d && !uv_is_closing((uv_handle_t *)&d->timer))
        uv_close((uv_handle_t *)&d->timer, NULL); /* freed with d, after the loop ended */
}

void tf_deadlines_free(struct tf_deadlines *d)
{
    if (!d)
        return;
    free(d->q);
    free(d);
}

static int queue_for(struct tf_deadlines *d, uint64_t len_ms)
{
    for (int i = 0; i < d->n_q; i++)
        if (d->q[i].len_ms == len_ms)
            return i;
    /* A new length (a reload changed a timeout): lists are few and never removed. */
    d->q = tf_realloc(d->q, (size_t)(d->n_q + 1) * sizeof *d->q);
    d->q[d->n_q] = (struct tf_tq){.len_ms = len_ms};
    return d->n_q++;
}

static void arm(struct tf_deadlines *d, uint64_t at)
{
    if (at >= d->due)
        return;
    uint64_t now = uv_now(d->timer.loop);
    d->due = at;
    uv_timer_start(&d->timer, on_deadline, at > now ? at - now : 0, 0);
}

void tf_deadline_clear(struct tf_conn *c)
{
    if (c->tq == 0)
        return;
    struct tf_tq *q = &c->w->deadlines->q[c->tq - 1];
    if (c->tq_prev)
        c->tq_prev->tq_next = c->tq_next;
    else
        q->head = c->tq_next;
    if (c->tq_next)
        c->tq_next->tq_prev = c->tq_prev;
    else
        q->tail = c->tq_prev;
    c->tq_prev = c->tq_next = NULL;
    c->tq = 0;
}

/* Append c to the list of its length: its deadline (now + length) is the list's latest. */
void tf_deadline_set(struct tf_conn *c, uint64_t len_ms)
{
    struct tf_deadlines *d = c->w->deadlines;
    tf_deadline_clear(c);
    /* At least 1 ms ahead: an expiry that sets a new deadline is not run again at once. */
    uint64_t len = len_ms ? len_ms : 1;
    int i = queue_for(d, len);
    struct tf_tq *q = &d->q[i];
    c->tq = i + 1;
    c->deadline = uv_now(&c->w->loop) + len;
    c->tq_prev = q->tail;
    c->tq_next = NULL;
    if (q->tail)
        q->tail->tq_next = c;
    else
        q->head = c;
    q->tail = c;
    arm(d, c->deadline);
}

void tf_deadline_within(struct tf_conn *c, uint64_t left_ms)
{
    uint64_t step = 1;
    while (step <= left_ms / 2)
        step *= 2;
    tf_deadline_set(c, step);
}

/* Expire every head that is due, then arm for the earliest head left. An expiry may close
 * connections (unlinking them) or set new deadlines, so each head is read afresh. */
static void on_deadline(uv_timer_t *t)
{
    struct tf_deadlines *d = t->data;
    uint64_t now = uv_now(t->loop);
    d->due = UINT64_MAX;
    for (int i = 0; i < d->n_q; i++) {
        struct tf_conn *c;
        while ((c = d->q[i].head) && c->deadline <= now) {
            tf_deadline_clear(c);
            tf_conn_on_timeout(c);
        }
    }
    uint64_t next = UINT64_MAX;
    for (int i = 0; i < d->n_q; i++)
        if (d->q[i].head && d->q[i].head->deadline < next)
            next = d->q[i].head->deadline;
    d->due = UINT64_MAX;
    if (next != UINT64_MAX)
        arm(d, next);
}
