/*
 * acme_order_lease.c: the lease of an order's lock "order-<name>" in storage. The lock is
 * taken for a short lease (--storage-lease) and renewed every third of it while the order
 * runs, so a node killed mid-order blocks the name for at most one lease, not for a whole
 * order's time. A renewal answered "lost" (the lease ran out, e.g. the store was unreachable
 * for longer than the lease, and may have been taken by another node) abandons the order:
 * what is in flight is cancelled and the order fails at its next step, before it stores
 * anything. A renewal that fails otherwise (the store briefly unreachable) is tried again at
 * the next tick; if the lease runs out meanwhile, that next try is answered "lost".
 * Everything here runs on the control loop; at most one renewal is in flight per order.
 */
#include "acme_int.h"
#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"

static void release_lock(struct tf_acme_order *o);

void tf_acme_lease_init(struct tf_acme_order *o)
{
    uv_timer_init(o->a->loop, &o->lease_timer);
    o->lease_timer.data = o;
}

static void on_renewed(int err, void *arg)
{
    struct tf_acme_order *o = arg;
    o->renew_busy = false;
    if (o->releasing) {
        release_lock(o);
        return;
    }
    if (err == TF_EDENIED || err == TF_ENOTFOUND) {
        TF_WARN(ACME_MOD, "name=%s order lock lease lost (not renewed within %us): abandoning "
                          "the order", o->name, o->a->lease_s);
        o->locked = false;
        o->lease_lost = true;
        uv_timer_stop(&o->lease_timer);
        tf_acme_order_cancel(o);
    } else if (err) {
        TF_DEBUG(ACME_MOD, "name=%s renewing the order lock: %s (tried again)", o->name,
                 tf_strerror(err));
    }
}

static void on_lease_timer(uv_timer_t *t)
{
    struct tf_acme_order *o = t->data;
    if (o->renew_busy || !o->locked || o->finished)
        return;
    o->renew_busy = true;
    int rc = tf_storage_renew(o->a->st, o->lock_name, o->a->lease_s, on_renewed, o);
    if (rc == UV_ENOSYS) {
        /* A store without renew: nothing to renew; its lease simply runs. */
        o->renew_busy = false;
        uv_timer_stop(&o->lease_timer);
    } else if (rc) {
        on_renewed(rc, o);
    }
}

void tf_acme_lease_start(struct tf_acme_order *o)
{
    o->locked = true;
    uint64_t every = (uint64_t)o->a->lease_s * 1000 / 3;
    uv_timer_start(&o->lease_timer, on_lease_timer, every, every);
}

static void on_closed(uv_handle_t *h)
{
    struct tf_acme_order *o = h->data;
    if (--o->closes == 0)
        tf_acme_order_free(o);
}

static void close_timers(struct tf_acme_order *o)
{
    o->closes = 2;
    uv_close((uv_handle_t *)&o->timer, on_closed);
    uv_close((uv_handle_t *)&o->lease_timer, on_closed);
}

static void on_unlocked(int err, void *arg)
{
    struct tf_acme_order *o = arg;
    o->storage_busy = false;
    if (err == TF_EDENIED)
        TF_WARN(ACME_MOD, "name=%s order lock lease was lost while ordering", o->name);
    else if (err)
        TF_WARN(ACME_MOD, "name=%s releasing the order lock: %s", o->name, tf_strerror(err));
    close_timers(o);
}

static void release_lock(struct tf_acme_order *o)
{
    if (!o->locked) {
        close_timers(o);
        return;
    }
    o->locked = false;
    o->storage_busy = true;
    int rc = tf_storage_unlock(o->a->st, o->lock_name, on_unlocked, o);
    if (rc)
        on_unlocked(rc, o);
}

void tf_acme_lease_end(struct tf_acme_order *o)
{
    o->releasing = true;
    uv_timer_stop(&o->lease_timer);
    if (o->renew_busy)
        return; /* on_renewed continues */
    release_lock(o);
}
