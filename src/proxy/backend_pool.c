/*
 * backend_pool.c: the worker's idle keep-alive backend connections (backend_pool.h). It owns
 * the idle connections, one list per backend address (most recently parked first), and one
 * timer that closes those idle past their deadline. An idle connection is read only to
 * notice that the backend closed it (or, a protocol error, sent something unasked): either
 * closes it at once, so a later client is not handed a dead connection in the common case.
 * The race that remains (the backend closes just as the connection is taken) is the caller's
 * to handle (http_mode.c retries idempotent requests once). Never writes to a backend.
 */
#include "backend_pool_int.h"
#include "conn_int.h"
#include "tlsfront/base/common.h"
#include "tlsfront/base/stats.h"

#include <stdlib.h>
#include <string.h>

struct tf_pool_key {
    struct tf_pool_key *next;
    char *host;
    uint16_t port;
    struct tf_pool *pool;
    struct tf_bconn *idle; /* most recent first */
    int n_idle;
};

/* Owned by the worker (tf_pool_new .. tf_pool_free). */
struct tf_pool {
    uv_loop_t *loop;
    struct tf_wstats *stats;
    struct tf_pool_key *keys;
    uv_timer_t timer;      /* the earliest idle deadline */
    bool closed;
    int n_idle;
    char sink[16];         /* idle reads: anything that arrives is an error anyway */
};

struct tf_bconn *tf_bconn_new(uv_loop_t *loop, int *err)
{
    struct tf_bconn *bc = tf_calloc(1, sizeof *bc);
    *err = uv_tcp_init(loop, &bc->tcp);
    if (*err != 0) {
        free(bc);
        return NULL;
    }
    return bc;
}

void tf_bconn_on_closed(uv_handle_t *h)
{
    free(h); /* the tcp handle is the tf_bconn's first member */
}

static void on_timer_closed(uv_handle_t *h)
{
    (void)h; /* the pool is freed after the loop ended (tf_pool_free) */
}

struct tf_pool *tf_pool_new(uv_loop_t *loop, struct tf_wstats *stats)
{
    struct tf_pool *p = tf_calloc(1, sizeof *p);
    p->loop = loop;
    p->stats = stats;
    uv_timer_init(loop, &p->timer); /* cannot fail for a timer */
    p->timer.data = p;
    uv_unref((uv_handle_t *)&p->timer);
    return p;
}

static struct tf_pool_key *find_key(struct tf_pool *p, const char *host, uint16_t port,
                                    bool create)
{
    for (struct tf_pool_key *k = p->keys; k; k = k->next)
        if (k->port == port && strcmp(k->host, host) == 0)
            return k;
    if (!create)
        return NULL;
    struct tf_pool_key *k = tf_calloc(1, sizeof *k);
    k->host = tf_strdup(host);
    k->port = port;
    k->pool = p;
    k->next = p->keys;
    p->keys = k;
    return k;
}

static void unlink_idle(struct tf_pool *p, struct tf_bconn *bc)
{
    struct tf_pool_key *k = bc->key;
    if (bc->prev)
        bc->prev->next = bc->next;
    else
        k->idle = bc->next;
    if (bc->next)
        bc->next->prev = bc->prev;
    bc->prev = bc->next = NULL;
    bc->key = NULL;
    k->n_idle--;
    p->n_idle--;
}

/* Remove an idle connection from its list and close it. */
static void drop(struct tf_pool *p, struct tf_bconn *bc)
{
    unlink_idle(p, bc);
    uv_close((uv_handle_t *)&bc->tcp, tf_bconn_on_closed);
}

static void on_idle_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)size;
    struct tf_bconn *bc = h->data;
    struct tf_pool *p = bc->key->pool;
    buf->base = p->sink;
    buf->len = sizeof p->sink;
}

static void on_idle_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct tf_bconn *bc = s->data;
    if (nread == 0 || !bc->key)
        return;
    /* EOF, a reset or bytes nobody asked for: this connection cannot carry a request. */
    drop(bc->key->pool, bc);
}

void tf_bconn_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    if (((struct tf_bconn *)h)->key)
        on_idle_alloc(h, size, buf);
    else
        on_pump_alloc(h, size, buf);
}

void tf_bconn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    if (((struct tf_bconn *)s)->key)
        on_idle_read(s, nread, buf);
    else
        tf_pump_backend_read(s, nread, buf);
}

/* Close what is past its deadline, then wait for the next deadline. */
static void on_sweep(uv_timer_t *t)
{
    struct tf_pool *p = t->data;
    uint64_t now = uv_now(p->loop), next = 0;
    for (struct tf_pool_key *k = p->keys; k; k = k->next) {
        struct tf_bconn *bc = k->idle;
        while (bc) {
            struct tf_bconn *n = bc->next;
            if (bc->expires <= now)
                drop(p, bc);
            else if (next == 0 || bc->expires < next)
                next = bc->expires;
            bc = n;
        }
    }
    if (next)
        uv_timer_start(&p->timer, on_sweep, next - now, 0);
}

struct tf_bconn *tf_pool_take(struct tf_pool *p, const char *host, uint16_t port)
{
    struct tf_pool_key *k = p->closed ? NULL : find_key(p, host, port, false);
    struct tf_bconn *bc = k ? k->idle : NULL;
    if (!bc) {
        TF_WSTAT_ADD(p->stats, pool_misses, 1);
        return NULL;
    }
    unlink_idle(p, bc); /* key NULL: its reads go to the pump from now on */
    bc->tcp.data = NULL;
    TF_WSTAT_ADD(p->stats, pool_hits, 1);
    return bc;
}

/* The oldest idle connection of k (the list is most recent first). */
static struct tf_bconn *oldest(struct tf_pool_key *k)
{
    struct tf_bconn *bc = k->idle;
    while (bc && bc->next)
        bc = bc->next;
    return bc;
}

void tf_pool_put(struct tf_pool *p, const char *host, uint16_t port, struct tf_bconn *bc,
                 bool reading, int cap, uint32_t idle_ms)
{
    if (p->closed || cap <= 0) {
        uv_close((uv_handle_t *)&bc->tcp, tf_bconn_on_closed);
        return;
    }
    struct tf_pool_key *k = find_key(p, host, port, true);
    while (k->n_idle >= cap)
        drop(p, oldest(k));
    bc->tcp.data = bc;
    bc->key = k;
    bc->prev = NULL;
    bc->next = k->idle;
    if (k->idle)
        k->idle->prev = bc;
    k->idle = bc;
    k->n_idle++;
    p->n_idle++;
    bc->expires = uv_now(p->loop) + idle_ms;
    if (!reading && uv_read_start((uv_stream_t *)&bc->tcp, tf_bconn_alloc, tf_bconn_read) != 0) {
        drop(p, bc);
        return;
    }
    uint64_t due = uv_timer_get_due_in(&p->timer);
    if (!uv_is_active((uv_handle_t *)&p->timer) || due > idle_ms)
        uv_timer_start(&p->timer, on_sweep, idle_ms, 0);
}

int tf_pool_idle(const struct tf_pool *p)
{
    return p->n_idle;
}

void tf_pool_close(struct tf_pool *p)
{
    if (!p || p->closed)
        return;
    p->closed = true;
    for (struct tf_pool_key *k = p->keys; k; k = k->next)
        while (k->idle)
            drop(p, k->idle);
    uv_close((uv_handle_t *)&p->timer, on_timer_closed);
}

void tf_pool_free(struct tf_pool *p)
{
    if (!p)
        return;
    struct tf_pool_key *k = p->keys;
    while (k) {
        struct tf_pool_key *n = k->next;
        free(k->host);
        free(k);
        k = n;
    }
    free(p);
}
