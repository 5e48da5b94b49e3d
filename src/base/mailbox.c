/*
 * mailbox.c: cross-thread message queues between the control loop and the workers. The
 * mutex is held only to link or unlink messages, never while a message is handled. Closing
 * and destroying are two steps: a closed mailbox still has its mutex, so a poster on another
 * thread that races with the close is told "closed" instead of locking a destroyed mutex;
 * the mutex goes only in tf_mailbox_destroy, once no thread can post any more.
 */
#include "tlsfront/base/mailbox.h"
#include "tlsfront/base/common.h"

#include <assert.h>
#include <stdlib.h>

static void on_async(uv_async_t *h)
{
    struct tf_mailbox *mb = h->data;
    uv_mutex_lock(&mb->mu);
    struct tf_msg *m = mb->head;
    mb->head = mb->tail = NULL;
    uv_mutex_unlock(&mb->mu);
    while (m) {
        struct tf_msg *next = m->next;
        m->next = NULL;
        mb->cb(mb, m, mb->owner);
        m = next;
    }
}

int tf_mailbox_init(struct tf_mailbox *mb, uv_loop_t *loop, tf_mailbox_cb cb, void *owner)
{
    mb->head = mb->tail = NULL;
    mb->closed = false;
    mb->handle_closed = false;
    mb->cb = cb;
    mb->owner = owner;
    int r = uv_mutex_init(&mb->mu);
    if (r != 0)
        return r;
    r = uv_async_init(loop, &mb->async, on_async);
    if (r != 0) {
        uv_mutex_destroy(&mb->mu);
        return r;
    }
    mb->async.data = mb;
    return 0;
}

bool tf_mailbox_post(struct tf_mailbox *mb, struct tf_msg *msg)
{
    msg->next = NULL;
    uv_mutex_lock(&mb->mu);
    if (mb->closed) {
        uv_mutex_unlock(&mb->mu);
        return false;
    }
    if (mb->tail)
        mb->tail->next = msg;
    else
        mb->head = msg;
    mb->tail = msg;
    /* Sent under the lock so that close cannot run between queueing and waking. */
    uv_async_send(&mb->async);
    uv_mutex_unlock(&mb->mu);
    return true;
}

struct close_ctx {
    void (*done)(struct tf_mailbox *mb);
    struct tf_mailbox *mb;
};

static void on_closed(uv_handle_t *h)
{
    struct close_ctx *cc = h->data;
    struct tf_mailbox *mb = cc->mb;
    void (*done)(struct tf_mailbox *) = cc->done;
    free(cc);
    mb->handle_closed = true;
    if (done)
        done(mb);
}

void tf_mailbox_close(struct tf_mailbox *mb, void (*drop)(struct tf_msg *msg),
                      void (*done)(struct tf_mailbox *mb))
{
    uv_mutex_lock(&mb->mu);
    mb->closed = true;
    struct tf_msg *m = mb->head;
    mb->head = mb->tail = NULL;
    uv_mutex_unlock(&mb->mu);
    while (m) {
        struct tf_msg *next = m->next;
        if (drop)
            drop(m);
        else
            tf_msg_free(m);
        m = next;
    }
    struct close_ctx *cc = tf_malloc(sizeof *cc);
    cc->done = done;
    cc->mb = mb;
    mb->async.data = cc;
    uv_close((uv_handle_t *)&mb->async, on_closed);
}

void tf_mailbox_destroy(struct tf_mailbox *mb)
{
    assert(mb->handle_closed && "tf_mailbox_destroy before the close callback");
    uv_mutex_destroy(&mb->mu);
}

struct tf_msg *tf_msg_new(size_t size, int type)
{
    assert(size >= sizeof(struct tf_msg));
    struct tf_msg *m = tf_calloc(1, size);
    m->type = type;
    return m;
}

void tf_msg_free(struct tf_msg *msg)
{
    free(msg);
}
