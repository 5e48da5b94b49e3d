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
#include <stddef.h>
#include <uv.h>

/* The link every message starts with. A module's message struct embeds it as its first
 * member (proxy/worker.h: struct tf_smsg, struct tf_wmsg) and type says which payload
 * follows; the mailbox itself never looks past the link. A message is one allocation: its
 * receiver drops the references its payload carries, then tf_msg_free()s it. */
struct tf_msg {
    struct tf_msg *next;
    int type;
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

/* Allocate a zeroed message of size bytes (a struct that starts with struct tf_msg). */
struct tf_msg *tf_msg_new(size_t size, int type);
/* Free the message's memory (NULL is fine); references in its payload are the caller's. */
void tf_msg_free(struct tf_msg *msg);

#endif
