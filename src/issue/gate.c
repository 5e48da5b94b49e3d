/*
 * gate.c: the on-demand issuance gate of gate.h. Owns the allow patterns, the ask URL, the
 * answer cache (lru.c, evicting), one "flight" per name with an ask request running or queued
 * (single flight: later checks join its waiter list), and the ready list of answered checks,
 * delivered by a zero-delay timer so no callback ever runs inside tf_gate_check(). Borrows the
 * HTTP client. Never blocks and never trusts the endpoint beyond its status line and
 * Cache-Control: bodies are ignored, max-age is capped, errors deny.
 */
#include "tlsfront/issue/gate.h"
#include "tlsfront/base/common.h"
#include "tlsfront/net/http_client.h"
#include "tlsfront/base/log.h"
#include "tlsfront/base/lru.h"
#include "tlsfront/base/name.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GATE_DEFAULT_TIMEOUT_MS 5000
#define GATE_DEFAULT_INFLIGHT 8
#define GATE_QUEUE_FACTOR 16
#define GATE_DEFAULT_CACHE 10000
#define GATE_ERROR_CACHE_MS 5000
#define GATE_MAX_AGE_CAP_S 86400
#define GATE_ASK_MAX_BODY (64 * 1024)

/* An intrusive doubly linked list: flights and waiters embed a node. */
struct node {
    struct node *prev, *next;
};
struct list {
    struct node *head, *tail;
    int n;
};
#define CONTAINER(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

static void list_push(struct list *l, struct node *x)
{
    x->next = NULL;
    x->prev = l->tail;
    if (l->tail)
        l->tail->next = x;
    else
        l->head = x;
    l->tail = x;
    l->n++;
}

static void list_remove(struct list *l, struct node *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        l->head = x->next;
    if (x->next)
        x->next->prev = x->prev;
    else
        l->tail = x->prev;
    x->prev = x->next = NULL;
    l->n--;
}

enum waiter_state { W_WAITING, W_READY };

/* One accepted check; owned by its flight's waiter list, then by the gate's ready list. */
struct tf_gate_req {
    struct node node;
    struct tf_gate *gate;
    struct flight *flight; /* while W_WAITING */
    enum waiter_state state;
    bool cancelled;
    int verdict;
    enum tf_outcome why;
    tf_gate_cb cb;
    void *arg;
};

/* One ask for one name: in the gate's running list (http set) or its FIFO queue. Owned by the
 * gate; also indexed by name in gate->flights. */
struct flight {
    struct node node;
    struct tf_gate *gate;
    char *name;
    struct tf_httpc_req *http;
    struct list waiters;
};

struct cache_entry {
    int verdict;
    enum tf_outcome why;
};

struct tf_gate {
    uv_loop_t *loop;
    struct tf_httpc *http; /* borrowed */
    char **allow;
    int n_allow;
    char *ask_url;
    char ask_sep; /* '?' or '&' before "domain=" */
    uint32_t timeout_ms;
    int64_t cache_ms, error_ms;
    int max_inflight, max_queued;
    struct tf_lru *cache;   /* name -> struct cache_entry */
    struct tf_lru *flights; /* name -> struct flight (not owned by the map) */
    struct list running, queued, ready;
    uv_timer_t deliver;     /* zero-delay: runs the ready callbacks */
    bool closing, closed, ask_failing;
    void (*done)(void *arg);
    void *done_arg;
    struct tf_gate_stats st;
};

static void on_deliver(uv_timer_t *t);
static void maybe_finish_close(struct tf_gate *g);

/* ---- answering ---- */

/* Move req to the ready list with its verdict; the deliver timer runs its callback. */
static void req_ready(struct tf_gate *g, struct tf_gate_req *req, int verdict, enum tf_outcome why)
{
    req->state = W_READY;
    req->flight = NULL;
    req->verdict = verdict;
    req->why = why;
    list_push(&g->ready, &req->node);
    if (!uv_is_active((uv_handle_t *)&g->deliver))
        uv_timer_start(&g->deliver, on_deliver, 0, 0); /* cannot fail on an open timer */
}

static void on_deliver(uv_timer_t *t)
{
    struct tf_gate *g = t->data;
    /* Take the current list: checks made by these callbacks wait for the next round. */
    struct list batch = g->ready;
    g->ready = (struct list){0};
    while (batch.head) {
        struct tf_gate_req *req = CONTAINER(batch.head, struct tf_gate_req, node);
        list_remove(&batch, &req->node);
        if (!req->cancelled)
            req->cb(req->verdict, req->why, req->arg);
        free(req);
    }
    maybe_finish_close(g);
}

static void count_ask(struct tf_gate_stats *st, enum tf_outcome why)
{
    switch (why) {
    case TF_OUTCOME_ASK_ALLOW: st->ask_allow++; break;
    case TF_OUTCOME_ASK_DENY: st->ask_deny++; break;
    case TF_OUTCOME_ASK_TIMEOUT: st->ask_timeout++; break;
    default: st->ask_error++; break;
    }
}

/* Answer every waiter of fl, then forget and free fl (which must be in no list). */
static void flight_finish(struct flight *fl, int verdict, enum tf_outcome why)
{
    struct tf_gate *g = fl->gate;
    while (fl->waiters.head) {
        struct tf_gate_req *req = CONTAINER(fl->waiters.head, struct tf_gate_req, node);
        list_remove(&fl->waiters, &req->node);
        count_ask(&g->st, why);
        req_ready(g, req, verdict, why);
    }
    tf_lru_del(g->flights, fl->name);
    free(fl->name);
    free(fl);
}

/* ---- the ask request ---- */

/* The cache lifetime of an answer: ask_cache_s unless Cache-Control says otherwise.
 * no-store and no-cache win over max-age wherever they appear. */
static int64_t answer_ttl(const struct tf_gate *g, const struct tf_http_response *resp)
{
    int64_t ttl = g->cache_ms;
    if (ttl == 0)
        return 0;
    for (int i = 0; i < resp->n_headers; i++) {
        if (strcasecmp(resp->headers[i].name, "Cache-Control") != 0)
            continue;
        char *dup = tf_strdup(resp->headers[i].value), *save = NULL;
        for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            tok += strspn(tok, " \t");
            size_t len = strcspn(tok, " \t");
            if ((len == 8 && strncasecmp(tok, "no-store", 8) == 0) ||
                (len == 8 && strncasecmp(tok, "no-cache", 8) == 0)) {
                free(dup);
                return 0;
            }
            if (len > 8 && strncasecmp(tok, "max-age=", 8) == 0 &&
                strspn(tok + 8, "0123456789") == len - 8) {
                long long s = len - 8 > 9 ? GATE_MAX_AGE_CAP_S : atoll(tok + 8);
                ttl = (int64_t)TF_MIN(s, GATE_MAX_AGE_CAP_S) * 1000;
            }
        }
        free(dup);
    }
    return ttl;
}

static void cache_store(struct tf_gate *g, const char *name, int verdict, enum tf_outcome why,
                        int64_t ttl)
{
    if (ttl <= 0 || g->closing)
        return;
    struct cache_entry *ce = tf_calloc(1, sizeof(*ce));
    ce->verdict = verdict;
    ce->why = why;
    tf_lru_put(g->cache, name, ce, (int64_t)uv_now(g->loop) + ttl);
}

/* Log endpoint trouble once when it starts and once when it ends, not per request. status is
 * the HTTP status when there was a response. */
static void note_health(struct tf_gate *g, const char *name, int err, int status)
{
    char what[64];
    if (status)
        snprintf(what, sizeof(what), "status %d", status);
    else
        snprintf(what, sizeof(what), "%s", tf_strerror(err));
    if (err && !g->ask_failing) {
        g->ask_failing = true;
        TF_WARN("gate", "name=%s ask endpoint failing: %s (denying until it answers)", name,
                what);
    } else if (err) {
        TF_DEBUG("gate", "name=%s ask failed: %s", name, what);
    } else if (g->ask_failing) {
        g->ask_failing = false;
        TF_INFO("gate", "name=%s ask endpoint answering again (status %d)", name, status);
    }
}

static void flight_start(struct flight *fl);

/* Start queued flights while there are free slots. */
static void pump_queue(struct tf_gate *g)
{
    while (!g->closing && g->queued.head && g->running.n < g->max_inflight) {
        struct flight *fl = CONTAINER(g->queued.head, struct flight, node);
        list_remove(&g->queued, &fl->node);
        flight_start(fl);
    }
}

static void on_ask_done(int err, const struct tf_http_response *resp, void *arg)
{
    struct flight *fl = arg;
    struct tf_gate *g = fl->gate;
    fl->http = NULL;
    list_remove(&g->running, &fl->node);
    int verdict = TF_GATE_DENY;
    enum tf_outcome why = TF_OUTCOME_ASK_ERROR;
    int64_t ttl = g->error_ms;
    if (err == 0 && resp->status >= 500) {
        /* The endpoint's own failure says nothing about the name: deny, remember briefly. */
        err = TF_EPROTO;
    } else if (err == 0) {
        bool ok = resp->status >= 200 && resp->status <= 299;
        verdict = ok ? TF_GATE_ALLOW : TF_GATE_DENY;
        why = ok ? TF_OUTCOME_ASK_ALLOW : TF_OUTCOME_ASK_DENY;
        ttl = answer_ttl(g, resp);
        TF_DEBUG("gate", "name=%s ask answered %d", fl->name, resp->status);
    } else if (err == TF_ETIMEDOUT) {
        why = TF_OUTCOME_ASK_TIMEOUT;
    } else if (err == UV_ECANCELED) {
        ttl = 0; /* closing: nothing learnt about the name */
    }
    if (err != UV_ECANCELED)
        note_health(g, fl->name, err, resp ? resp->status : 0);
    cache_store(g, fl->name, verdict, why, ttl);
    flight_finish(fl, verdict, why);
    pump_queue(g);
    maybe_finish_close(g);
}

/* Send the ask request for fl and put it in the running list. */
static void flight_start(struct flight *fl)
{
    struct tf_gate *g = fl->gate;
    char *url = tf_asprintf("%s%cdomain=%s", g->ask_url, g->ask_sep, fl->name);
    struct tf_http_request rq = {
        .method = "GET",
        .url = url,
        .timeout_ms = g->timeout_ms,
        .max_body = GATE_ASK_MAX_BODY,
    };
    g->st.ask_requests++;
    int r = tf_httpc_request(g->http, &rq, on_ask_done, fl, &fl->http);
    free(url);
    if (r < 0) {
        note_health(g, fl->name, r, 0);
        cache_store(g, fl->name, TF_GATE_DENY, TF_OUTCOME_ASK_ERROR, g->error_ms);
        flight_finish(fl, TF_GATE_DENY, TF_OUTCOME_ASK_ERROR);
        return;
    }
    list_push(&g->running, &fl->node);
}

/* ---- public API ---- */

/* Join the flight for name, or create one (running or queued); false when the queue is
 * full. */
static bool join_flight(struct tf_gate *g, const char *name, struct tf_gate_req *req)
{
    struct flight *fl = tf_lru_peek(g->flights, name);
    if (fl) {
        g->st.joined++;
    } else {
        if (g->running.n >= g->max_inflight && g->queued.n >= g->max_queued)
            return false;
        fl = tf_calloc(1, sizeof(*fl));
        fl->gate = g;
        fl->name = tf_strdup(name);
        tf_lru_put(g->flights, name, fl, TF_LRU_NEVER);
    }
    req->state = W_WAITING;
    req->flight = fl;
    list_push(&fl->waiters, &req->node);
    if (fl->waiters.n == 1 && !fl->http) {
        if (g->running.n < g->max_inflight)
            flight_start(fl);
        else
            list_push(&g->queued, &fl->node);
    }
    return true;
}

int tf_gate_check(struct tf_gate *g, const char *name, tf_gate_cb cb, void *arg,
                  struct tf_gate_req **handle)
{
    if (g->closing)
        return TF_ECLOSED;
    /* The name goes into the ask URL's query: insist on what normalisation guarantees. */
    if (!name || !cb || !name[0] || strlen(name) > TF_NAME_MAX ||
        name[strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-.")] != '\0')
        return TF_EINVAL;
    struct tf_gate_req *req = tf_calloc(1, sizeof(*req));
    req->gate = g;
    req->cb = cb;
    req->arg = arg;
    if (handle)
        *handle = req;
    /* Patterns and the ask URL must both agree: a name outside the patterns is never asked. */
    if (!tf_name_may_issue(g->allow, g->n_allow, g->ask_url != NULL, name)) {
        g->st.not_allowed++;
        req_ready(g, req, TF_GATE_DENY, TF_OUTCOME_NOT_ALLOWED);
        return 0;
    }
    if (!g->ask_url) {
        g->st.pattern_allow++;
        req_ready(g, req, TF_GATE_ALLOW, TF_OUTCOME_ALLOW_PATTERN);
        return 0;
    }
    const struct cache_entry *ce = tf_lru_get(g->cache, name, (int64_t)uv_now(g->loop));
    if (ce) {
        if (ce->verdict == TF_GATE_ALLOW)
            g->st.cache_allow++;
        else
            g->st.cache_deny++;
        req_ready(g, req, ce->verdict, ce->why);
        return 0;
    }
    if (!join_flight(g, name, req)) {
        g->st.busy++;
        TF_DEBUG("gate", "name=%s ask queue full", name);
        req_ready(g, req, TF_GATE_DENY, TF_OUTCOME_ASK_BUSY);
    }
    return 0;
}

void tf_gate_cancel(struct tf_gate_req *h)
{
    if (!h)
        return;
    if (h->state == W_READY) {
        h->cancelled = true; /* the deliver timer frees it without calling back */
        return;
    }
    struct flight *fl = h->flight;
    struct tf_gate *g = h->gate;
    list_remove(&fl->waiters, &h->node);
    free(h);
    if (fl->waiters.n == 0 && !fl->http) {
        /* Still queued and nobody waits: do not spend a request on it. */
        list_remove(&g->queued, &fl->node);
        flight_finish(fl, TF_GATE_DENY, TF_OUTCOME_ASK_ERROR);
    }
}

void tf_gate_stats(const struct tf_gate *g, struct tf_gate_stats *st)
{
    *st = g->st;
    st->cache_evictions = tf_lru_evictions(g->cache);
    st->cache_size = tf_lru_size(g->cache);
    st->inflight = g->running.n;
    st->queued = g->queued.n;
}

size_t tf_gate_purge(struct tf_gate *g, const char *name)
{
    if (name)
        return tf_lru_del(g->cache, name) ? 1 : 0;
    return tf_lru_prune(g->cache, TF_LRU_NEVER); /* every expiry is <= "never" */
}

bool tf_gate_eager(const char *pattern)
{
    return pattern && pattern[0] && !(pattern[0] == '*' && pattern[1] == '.');
}

/* ---- lifetime ---- */

static void free_strings(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

struct tf_gate *tf_gate_new(uv_loop_t *loop, struct tf_httpc *http, char **allow,
                            int n_allow, const char *ask_url, uint32_t ask_timeout_ms,
                            uint32_t ask_cache_s, int ask_max_inflight, int cache_max_entries)
{
    if (!loop || n_allow < 0 || (n_allow > 0 && !allow) || (ask_url && !http) ||
        ask_max_inflight < 0 || cache_max_entries < 0)
        return NULL;
    struct tf_gate *g = tf_calloc(1, sizeof(*g));
    if (uv_timer_init(loop, &g->deliver) != 0) {
        free(g);
        return NULL;
    }
    g->deliver.data = g;
    g->loop = loop;
    g->http = http;
    g->allow = tf_calloc((size_t)n_allow + 1, sizeof(*g->allow));
    for (int i = 0; i < n_allow; i++)
        g->allow[i] = tf_strdup(allow[i]);
    g->n_allow = n_allow;
    if (ask_url) {
        g->ask_url = tf_strdup(ask_url);
        g->ask_sep = strchr(ask_url, '?') ? '&' : '?';
    }
    g->timeout_ms = ask_timeout_ms ? ask_timeout_ms : GATE_DEFAULT_TIMEOUT_MS;
    g->cache_ms = (int64_t)ask_cache_s * 1000;
    g->error_ms = ask_cache_s ? TF_MIN(GATE_ERROR_CACHE_MS, g->cache_ms) : GATE_ERROR_CACHE_MS;
    g->max_inflight = ask_max_inflight ? ask_max_inflight : GATE_DEFAULT_INFLIGHT;
    g->max_queued = g->max_inflight * GATE_QUEUE_FACTOR;
    g->cache = tf_lru_new(cache_max_entries ? (size_t)cache_max_entries : GATE_DEFAULT_CACHE,
                          free);
    g->flights = tf_lru_new(0, NULL);
    return g;
}

static void on_deliver_closed(uv_handle_t *h)
{
    struct tf_gate *g = h->data;
    void (*done)(void *) = g->done;
    void *done_arg = g->done_arg;
    tf_lru_free(g->cache);
    tf_lru_free(g->flights);
    free_strings(g->allow, g->n_allow);
    free(g->ask_url);
    free(g);
    if (done)
        done(done_arg);
}

/* Free the gate once nothing is running and every answer was delivered. */
static void maybe_finish_close(struct tf_gate *g)
{
    if (!g->closing || g->closed || g->running.n > 0 || g->ready.head)
        return;
    g->closed = true;
    uv_close((uv_handle_t *)&g->deliver, on_deliver_closed);
}

void tf_gate_close(struct tf_gate *g, void (*done)(void *arg), void *arg)
{
    if (!g || g->closing)
        return;
    g->closing = true;
    g->done = done;
    g->done_arg = arg;
    while (g->queued.head) {
        struct flight *fl = CONTAINER(g->queued.head, struct flight, node);
        list_remove(&g->queued, &fl->node);
        flight_finish(fl, TF_GATE_DENY, TF_OUTCOME_ASK_ERROR);
    }
    /* Their callbacks (UV_ECANCELED) arrive later and answer the waiters. */
    for (struct node *n = g->running.head; n; n = n->next)
        tf_httpc_cancel(CONTAINER(n, struct flight, node)->http);
    maybe_finish_close(g);
}
