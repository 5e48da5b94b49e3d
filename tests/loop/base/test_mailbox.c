/*
 * test_mailbox.c: the mailbox between threads, on real libuv loops. Covered: FIFO delivery
 * of every message posted from another thread; a post after close (and after the close
 * callback ran) is refused and the message stays the poster's, instead of locking a torn-down
 * mutex (what crashed shutdown when a worker's mailbox closed before the control loop's last
 * answers); a poster thread that keeps posting across the close: every message is delivered,
 * dropped by close, or refused, exactly once; uv_loop_close() == 0 at the end.
 */
#include "tlsfront/base/mailbox.h"
#include "tf_test.h"

#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <uv.h>

struct box {
    struct tf_mailbox mb;
    int delivered;
    int last_type;
    bool in_order;
    int dropped;
    bool done_ran;
};

static void on_msg(struct tf_mailbox *mb, struct tf_msg *m, void *owner)
{
    struct box *b = owner;
    (void)mb;
    if (m->type != b->last_type + 1)
        b->in_order = false;
    b->last_type = m->type;
    b->delivered++;
    tf_msg_free(m);
}

static _Thread_local struct box *drop_box; /* close's drop callback gets no context */

static void on_drop(struct tf_msg *m)
{
    drop_box->dropped++;
    tf_msg_free(m);
}

static void on_done(struct tf_mailbox *mb)
{
    struct box *b = (struct box *)((char *)mb - offsetof(struct box, mb));
    b->done_ran = true;
}

struct poster {
    struct tf_mailbox *mb;
    int n;        /* messages to post (0: until refused) */
    int posted;   /* accepted by the mailbox */
    int refused;  /* handed back */
    atomic_bool started;
};

static void post_thread(void *arg)
{
    struct poster *p = arg;
    for (int i = 1; p->n == 0 || i <= p->n; i++) {
        struct tf_msg *m = tf_msg_new(sizeof(struct tf_msg), i);
        if (!tf_mailbox_post(p->mb, m)) {
            tf_msg_free(m);
            p->refused++;
            break;
        }
        p->posted++;
        atomic_store(&p->started, true);
    }
}

/* Posted from another thread: all delivered, in order. */
static void test_delivery(void)
{
    uv_loop_t loop;
    struct box b = {.in_order = true};
    CHECK_EQ_INT(uv_loop_init(&loop), 0);
    CHECK_EQ_INT(tf_mailbox_init(&b.mb, &loop, on_msg, &b), 0);
    struct poster p = {.mb = &b.mb, .n = 1000};
    uv_thread_t t;
    CHECK_EQ_INT(uv_thread_create(&t, post_thread, &p), 0);
    uv_thread_join(&t);
    while (b.delivered < 1000)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK_EQ_INT(b.delivered, 1000);
    CHECK(b.in_order);
    drop_box = &b;
    tf_mailbox_close(&b.mb, on_drop, on_done);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(b.done_ran);
    tf_mailbox_destroy(&b.mb);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

/* Closed and its close callback ran: a post from another thread is refused, safely. */
static void test_post_after_close(void)
{
    uv_loop_t loop;
    struct box b = {.in_order = true};
    CHECK_EQ_INT(uv_loop_init(&loop), 0);
    CHECK_EQ_INT(tf_mailbox_init(&b.mb, &loop, on_msg, &b), 0);
    drop_box = &b;
    tf_mailbox_close(&b.mb, on_drop, on_done);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(b.done_ran);
    struct poster p = {.mb = &b.mb, .n = 3};
    uv_thread_t t;
    CHECK_EQ_INT(uv_thread_create(&t, post_thread, &p), 0);
    uv_thread_join(&t);
    CHECK_EQ_INT(p.posted, 0);
    CHECK_EQ_INT(p.refused, 1);
    CHECK_EQ_INT(b.delivered, 0);
    tf_mailbox_destroy(&b.mb);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

/* A poster that keeps going while the owner closes: nothing lost, nothing twice. */
static void test_close_while_posting(void)
{
    for (int round = 0; round < 20; round++) {
        uv_loop_t loop;
        struct box b = {.in_order = true};
        CHECK_EQ_INT(uv_loop_init(&loop), 0);
        CHECK_EQ_INT(tf_mailbox_init(&b.mb, &loop, on_msg, &b), 0);
        struct poster p = {.mb = &b.mb, .n = 0};
        uv_thread_t t;
        CHECK_EQ_INT(uv_thread_create(&t, post_thread, &p), 0);
        while (!atomic_load(&p.started))
            sched_yield();
        uv_run(&loop, UV_RUN_NOWAIT);
        drop_box = &b;
        tf_mailbox_close(&b.mb, on_drop, on_done);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_thread_join(&t);
        CHECK(b.done_ran);
        CHECK_EQ_INT(p.refused, 1);
        CHECK_EQ_INT(b.delivered + b.dropped, p.posted);
        CHECK(b.in_order);
        tf_mailbox_destroy(&b.mb);
        CHECK_EQ_INT(uv_loop_close(&loop), 0);
    }
}

int main(void)
{
    TF_TEST_RUN(test_delivery);
    TF_TEST_RUN(test_post_after_close);
    TF_TEST_RUN(test_close_while_posting);
    return TF_TEST_DONE();
}
