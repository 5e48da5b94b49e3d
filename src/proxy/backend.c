/*
 * backend.c: connecting a connection to its backend. IP literals connect at once; names go
 * through uv_getaddrinfo on libuv's thread pool (never blocking the loop) and each address
 * is tried in order. Success hands over to the pump; failure closes the client connection
 * promptly with one log line (mode=http: after a 502 page). In mode=http a connection may
 * come from, and go back to, the worker's keep-alive pool (backend_pool_int.h). Owns the
 * connection's backend socket (a tf_bconn) until it is closed or pooled, and the dial (the
 * resolution and connect request, freed once connected).
 */
#include "backend_pool_int.h"
#include "conn_int.h"
#include "tlsfront/base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void try_next(struct tf_conn *c);

/* Index of the connection's route in the per-route counters: 0 default, i+1 route i. */
static int route_slot(const struct tf_conn *c)
{
    const struct tf_config *cfg = c->cfg;
    for (int i = 0; i < cfg->n_routes; i++)
        if (c->route.backend == &cfg->routes[i].backend)
            return TF_MIN(i + 1, TF_STATS_ROUTES);
    return 0;
}

static void fail(struct tf_conn *c, int err)
{
    TF_WSTAT_ADD(&c->w->ws, backend_errors, 1);
    TF_WSTAT_ADD(&c->w->ws, backend_errors_route[route_slot(c)], 1);
    TF_INFO("backend", "conn=%llx name=%s backend %s:%u: %s", (unsigned long long)c->id,
            c->sni[0] ? c->sni : "-", c->route.backend->host, c->route.backend->port,
            tf_strerror(err));
    if (c->http) {
        tf_httpmode_fail(c, 502, TF_CONN_END_BACKEND_CONNECT_FAILED);
        return;
    }
    SSL_shutdown(c->ssl);
    tf_pump_flush_tls(c);
    tf_conn_close(c, TF_CONN_END_BACKEND_CONNECT_FAILED);
}

void tf_backend_on_closed(uv_handle_t *h)
{
    struct tf_conn *c = h->data;
    tf_bconn_on_closed(h);
    tf_conn_release(c);
}

static void on_retry_closed(uv_handle_t *h)
{
    struct tf_conn *c = h->data;
    tf_bconn_on_closed(h);
    if (c->closing) {
        tf_conn_release(c);
        return;
    }
    c->pending_closes--; /* the client socket still holds the connection */
    if (c->finishing)
        return; /* gave up already (connect timeout answered with a 502) */
    try_next(c);
}

void tf_backend_dial_free(struct tf_conn *c)
{
    struct tf_dial *d = c->dial;
    if (!d)
        return;
    if (d->addrs)
        uv_freeaddrinfo(d->addrs);
    free(d);
    c->dial = NULL;
}

static void on_connect(uv_connect_t *req, int status)
{
    struct tf_conn *c = req->data;
    if (c->closing || c->finishing)
        return;
    if (status != 0) {
        if (c->dial->next_addr) {
            /* Close this socket; its close callback tries the next address. */
            c->backend.open = false;
            c->bconn = NULL;
            c->pending_closes++;
            uv_close((uv_handle_t *)c->backend.sock, on_retry_closed);
            return;
        }
        fail(c, status);
        return;
    }
    tf_backend_dial_free(c); /* req is not touched after this callback */
    uv_tcp_nodelay(c->backend.sock, 1);
    tf_conn_connected(c);
    tf_pump_start_backend(c);
}

static void connect_addr(struct tf_conn *c, const struct sockaddr *sa)
{
    int r = 0;
    c->bconn = tf_bconn_new(&c->w->loop, &r);
    if (!c->bconn) {
        fail(c, r);
        return;
    }
    c->backend.sock = &c->bconn->tcp;
    c->backend.open = true;
    c->backend.sock->data = c;
    c->dial->req.data = c;
    c->backend.reading = false; /* a new socket (after a failed address, too) */
    r = uv_tcp_connect(&c->dial->req, c->backend.sock, sa, on_connect);
    if (r != 0) {
        fail(c, r);
        return;
    }
    tf_pump_read_connecting(c);
}

static void try_next(struct tf_conn *c)
{
    struct addrinfo *ai = c->dial->next_addr;
    while (ai && ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
        ai = ai->ai_next;
    if (!ai) {
        fail(c, UV_EADDRNOTAVAIL);
        return;
    }
    c->dial->next_addr = ai->ai_next;
    connect_addr(c, ai->ai_addr);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct tf_conn *c = req->data;
    c->dial->gai_active = false;
    c->dial->addrs = res; /* freed with the dial */
    if (!c->closing && !c->finishing) {
        if (status != 0)
            fail(c, status);
        else {
            c->dial->next_addr = res;
            try_next(c);
        }
    }
    tf_conn_release(c);
}

/* mode=http without a PROXY header (which names one client): an idle pooled connection. */
static bool take_pooled(struct tf_conn *c)
{
    const struct tf_backend *b = c->route.backend;
    if (!c->http || b->proxy != TF_PROXY_NONE || c->backend_retried || c->w->draining ||
        c->cfg->backend_keepalive <= 0)
        return false;
    struct tf_bconn *bc = tf_pool_take(c->w->pool, b->host, b->port);
    if (!bc)
        return false;
    c->bconn = bc;
    c->backend.sock = &bc->tcp;
    c->backend.open = true;
    bc->tcp.data = c;
    c->backend.reading = true; /* it never stopped: tf_bconn_read hands its reads to us now */
    c->backend_reused = true;
    tf_conn_connected(c);
    tf_pump_start_backend(c);
    return true;
}

void tf_backend_release(struct tf_conn *c)
{
    const struct tf_backend *b = c->route.backend;
    struct tf_bconn *bc = c->bconn;
    bool reading = c->backend.reading; /* kept on: tf_bconn_read hands reads to the pool */
    c->backend.reading = false;
    c->backend.open = false;
    c->bconn = NULL;
    tf_pool_put(c->w->pool, b->host, b->port, bc, reading,
                c->w->draining ? 0 : c->cfg->backend_keepalive,
                c->cfg->backend_keepalive_timeout_ms);
}

void tf_backend_reconnect(struct tf_conn *c)
{
    struct tf_side *s = &c->backend;
    TF_WSTAT_ADD(&c->w->ws, pool_stale_retries, 1);
    if (s->open) {
        uv_read_stop((uv_stream_t *)s->sock);
        s->open = false;
        c->pending_closes++;
        uv_close((uv_handle_t *)s->sock, tf_backend_on_closed);
    }
    c->bconn = NULL;
    s->reading = s->eof = s->shut = s->shut_done = false;
    c->backend_reused = false;
    c->backend_retried = true;
    tf_conn_connecting(c);
    tf_backend_connect(c);
}

void tf_backend_connect(struct tf_conn *c)
{
    const struct tf_backend *b = c->route.backend;
    if (take_pooled(c))
        return;
    tf_backend_dial_free(c); /* a reconnect after a stale pooled connection */
    c->dial = tf_calloc(1, sizeof *c->dial);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (uv_ip4_addr(b->host, b->port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(b->host, b->port, (struct sockaddr_in6 *)&ss) == 0) {
        connect_addr(c, (struct sockaddr *)&ss);
        return;
    }
    char port[8];
    snprintf(port, sizeof port, "%u", b->port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    c->dial->gai.data = c;
    int r = uv_getaddrinfo(&c->w->loop, &c->dial->gai, on_resolved, b->host, port, &hints);
    if (r != 0) {
        fail(c, r);
        return;
    }
    c->dial->gai_active = true;
    c->pending_closes++; /* released by on_resolved, which always runs */
}
