/*
 * mailbox.h: how loops talk. A mailbox belongs to one loop; any thread may post a message
 * (mutex-protected queue + uv_async_send), and the owner loop's callback receives each
 * message exactly once, in order, and owns it from then on. Messages posted after the
 * mailbox was closed are handed back to the poster (tf_mailbox_post returns false).
 * Lifetime: init, then close on the owner loop (posts are refused from then on, safely, from
 * any thread), then destroy once every thread that could post has stopped (joined, or its
 * loop has ended): only destroy frees the mutex posters take.
 */
#ifndef TF_MAILBOX_H
#define TF_MAILBOX_H

#include <stdbool.h>
#include <uv.h>

struct tf_msg {
    struct tf_msg *next;
    int type;
    void *ptr;      /* payload; the message type says who frees it */
    void *ptr2;
    int err;
    char *text;     /* heap, freed with the message */
    char *text2;    /* heap, freed with the message */
};

struct tf_mailbox;
typedef void (*tf_mailbox_cb)(struct tf_mailbox *mb, struct tf_msg *msg, void *owner);

struct tf_mailbox {
    uv_async_t async;         /* embedded; data points at the mailbox */
    uv_mutex_t mu;
    struct tf_msg *head, *tail; /* guarded by mu */
    bool closed;              /* guarded by mu */
    bool handle_closed;       /* owner thread: the async handle's close callback ran */
    tf_mailbox_cb cb;
    void *owner;
};

int tf_mailbox_init(struct tf_mailbox *mb, uv_loop_t *loop, tf_mailbox_cb cb, void *owner);
/* Any thread. On false the message was not queued and still belongs to the caller. */
bool tf_mailbox_post(struct tf_mailbox *mb, struct tf_msg *msg);
/* Owner thread. Stops accepting messages and closes the async handle; done(mb) runs after
 * the close callback; queued but undelivered messages are passed to drop(msg) first. */
void tf_mailbox_close(struct tf_mailbox *mb, void (*drop)(struct tf_msg *msg),
                      void (*done)(struct tf_mailbox *mb));

/* After close's done ran, and once no thread can call tf_mailbox_post on mb any more:
 * release the mutex. */
void tf_mailbox_destroy(struct tf_mailbox *mb);

struct tf_msg *tf_msg_new(int type, void *ptr);
void tf_msg_free(struct tf_msg *msg);

#endif
