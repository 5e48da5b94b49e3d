/*
 * conn.c: a connection's life on its worker: accept, TLS handshake driven through tlsbio.h
 * (the SSL is made when the first record is complete: pending connections stay small),
 * held handshakes (their input bounded while they wait), timeouts (handshake, connect,
 * idle), and the one idempotent close that frees the connection after its last libuv close
 * callback and writes the access log line.
 * Data forwarding lives in pump.c, backend connection in backend.c.
 */
#include "conn_int.h"
#include "tlsfront/base/log.h"
#include "tlsfront/tls/alpn01.h"
#include "tlsfront/tls/tls.h"

#include <stddef.h>

_Static_assert(offsetof(struct tf_conn, alpn_sel) == 0,
               "tf_tls_alpn_select_cb reads the connection's first member");

#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tf_conn_addr_text(const struct sockaddr_storage *ss, char *peer, size_t peer_cap, char *ip,
                       size_t ip_cap)
{
    char text[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, text, sizeof text);
        port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, text, sizeof text);
        port = ntohs(a->sin6_port);
    }
    snprintf(peer, peer_cap, ss->ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", text, port);
    snprintf(ip, ip_cap, "%s", text);
}

/* The client's address; the PROXY header, if any, replaces it later. The local address is
 * read only when a PROXY header to the backend needs it (tf_conn_proxy_out): one syscall
 * less per connection. */
static void socket_addrs(struct tf_conn *c)
{
    int len = sizeof c->src_addr;
    if (uv_tcp_getpeername(&c->tcp, &c->src_addr.sa, &len) != 0)
        c->src_addr.sa.sa_family = AF_UNSPEC;
    c->dst_addr.sa.sa_family = AF_UNSPEC;
    tf_conn_set_ip(c);
}

void tf_conn_set_ip(struct tf_conn *c)
{
    const union tf_conn_addr *a = &c->src_addr;
    if (a->sa.sa_family == AF_INET)
        uv_ip4_name(&a->in, c->ip, sizeof c->ip);
    else if (a->sa.sa_family == AF_INET6)
        uv_ip6_name(&a->in6, c->ip, sizeof c->ip);
    else
        snprintf(c->ip, sizeof c->ip, "?");
}

void tf_conn_set_sni(struct tf_conn *c, const char *name)
{
    if (c->sni[0])
        free((char *)c->sni);
    c->sni = name[0] ? tf_strdup(name) : "";
}

/* Made from c->ip when a log line needs it, rather than kept in every connection. */
const char *tf_conn_peer(const struct tf_conn *c, char buf[TF_CONN_PEER_MAX])
{
    const union tf_conn_addr *a = &c->src_addr;
    bool v6 = a->sa.sa_family == AF_INET6;
    int port = a->sa.sa_family == AF_INET ? ntohs(a->in.sin_port)
               : v6                       ? ntohs(a->in6.sin6_port)
                                          : 0;
    snprintf(buf, TF_CONN_PEER_MAX, v6 ? "[%s]:%d" : "%s:%d", c->ip, port);
    return buf;
}

/* Whether the listener that accepted this connection expects a PROXY header first. */
static bool listener_wants_proxy(struct tf_worker *w, uv_stream_t *listener)
{
    ptrdiff_t i = (uv_tcp_t *)listener - w->listeners;
    return i >= 0 && i < w->n_listeners && w->listener_proxy[i];
}

static bool over_limit(struct tf_worker *w)
{
    struct tf_stats *st = w->stats;
    int open = atomic_load_explicit(&st->conns_open, memory_order_relaxed);
    if (open < w->cfg->max_connections)
        return false;
    TF_STAT_ADD(st, conns_refused, 1);
    /* Log at most once a second for the whole process, not once per connection. */
    long long now = (long long)tf_mono_ms();
    long long last = atomic_load(&st->refuse_logged_ms);
    if (now - last >= 1000 && atomic_compare_exchange_strong(&st->refuse_logged_ms, &last, now))
        TF_WARN("conn", "max_connections (%d) reached: refusing new connections "
                        "(%llu refused so far)",
                w->cfg->max_connections, (unsigned long long)atomic_load(&st->conns_refused));
    return true;
}

static void on_refused_closed(uv_handle_t *h)
{
    free(h);
}

static void refuse(uv_stream_t *listener)
{
    uv_tcp_t *t = tf_malloc(sizeof *t);
    if (uv_tcp_init(listener->loop, t) != 0) {
        free(t);
        return;
    }
    (void)uv_accept(listener, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, on_refused_closed);
}

/* The SSL for c, made from the worker's current context. */
static int setup_tls(struct tf_conn *c)
{
    c->ssl = SSL_new(c->w->ssl_ctx);
    BIO *b = c->ssl ? tf_tlsbio_new(&c->bio, c->w->lib) : NULL;
    if (!b) {
        SSL_free(c->ssl);
        c->ssl = NULL;
        return TF_ETLS;
    }
    SSL_set_bio(c->ssl, b, b); /* one BIO both ways; the SSL owns it */
    SSL_set_accept_state(c->ssl);
    return 0;
}

/* A ",proxy" listener: the PROXY header comes first, and only from --proxy-from sources.
 * Returns false after closing c. */
static bool expect_proxy_header(struct tf_conn *c)
{
    const struct tf_config *cfg = c->cfg;
    if (cfg->n_proxy_from &&
        !tf_cidr_match(cfg->proxy_from, cfg->n_proxy_from, &c->src_addr.sa)) {
        char peer[TF_CONN_PEER_MAX];
        TF_INFO("conn", "conn=%llx %s: not in --proxy-from, closed", (unsigned long long)c->id,
                tf_conn_peer(c, peer));
        tf_conn_close(c, TF_CONN_END_PROXY_SOURCE_DENIED);
        return false;
    }
    c->state = TF_CONN_PROXY_IN;
    return true;
}

void tf_conn_accept(struct tf_worker *w, uv_stream_t *listener)
{
    if (w->draining || over_limit(w)) {
        refuse(listener);
        return;
    }
    struct tf_conn *c = tf_calloc(1, sizeof *c);
    c->w = w;
    c->id = ((uint64_t)w->id << 48) | ++w->next_conn_id;
    c->cfg = w->cfg;
    tf_config_ref(c->cfg);
    c->last_ms = uv_now(&w->loop);
    c->sni = "";
    c->start_ns = uv_hrtime();
    c->bio.out = &w->tx;
    c->bio.flush = tf_pump_tls_out;
    c->bio.arg = c;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    TF_STAT_ADD(w->stats, conns_open, 1);
    TF_WSTAT_ADD(&w->ws, conns_total, 1);

    uv_tcp_init(&w->loop, &c->tcp);
    c->client.open = true;
    c->client.sock = &c->tcp;
    c->tcp.data = c;
    c->pending_closes = 1; /* the client socket's close */

    int r = uv_accept(listener, (uv_stream_t *)&c->tcp);
    if (r != 0) {
        TF_DEBUG("conn", "conn=%llx accept: %s", (unsigned long long)c->id, uv_strerror(r));
        tf_conn_close(c, TF_CONN_END_ACCEPT_FAILED);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    socket_addrs(c);
    if (listener_wants_proxy(w, listener) && !expect_proxy_header(c))
        return;
    tf_deadline_set(c, c->cfg->handshake_timeout_ms);
    r = uv_read_start((uv_stream_t *)&c->tcp, on_pump_alloc, on_client_read);
    if (r != 0) {
        tf_conn_close(c, TF_CONN_END_READ_FAILED);
        return;
    }
    c->client.reading = true;
}

void tf_conn_touch(struct tf_conn *c)
{
    c->last_ms = uv_now(&c->w->loop);
}

static void record_handshake(struct tf_conn *c)
{
    struct tf_wstats *st = &c->w->ws;
    const unsigned char *proto = NULL;
    unsigned int plen = 0;
    SSL_get0_alpn_selected(c->ssl, &proto, &plen);
    c->alpn = NULL;
    for (int i = 0; proto && i < c->route.n_alpn; i++)
        if (strlen(c->route.alpn[i]) == plen && memcmp(c->route.alpn[i], proto, plen) == 0)
            c->alpn = c->route.alpn[i];
    c->tls_version = SSL_get_version(c->ssl);
    c->resumed = SSL_session_reused(c->ssl);
    tf_histogram_observe_own(&st->hs_seconds, (double)(uv_hrtime() - c->start_ns) / 1e9);
    TF_WSTAT_ADD(st, hs_ok, 1);
    if (c->resumed)
        TF_WSTAT_ADD(st, hs_resumed, 1);
    if (SSL_version(c->ssl) == TLS1_3_VERSION)
        TF_WSTAT_ADD(st, hs_tls13, 1);
    else
        TF_WSTAT_ADD(st, hs_tls12, 1);
}

static void handshake_done(struct tf_conn *c)
{
    if (c->alpn_sel.acme) {
        /* RFC 8737 §3: the validator only needs the handshake; send nothing and close. */
        TF_WSTAT_ADD(&c->w->ws, acme_challenges_served, 1);
        c->tls_version = SSL_get_version(c->ssl);
        c->alpn = TF_ALPN01_PROTO;
        c->end = TF_CONN_END_ACME_CHALLENGE; /* the validator may already be gone: that is fine */
        SSL_shutdown(c->ssl);
        tf_pump_flush_tls(c);
        tf_conn_close(c, TF_CONN_END_ACME_CHALLENGE);
        return;
    }
    record_handshake(c);
    if (!c->route.backend) {
        TF_INFO("conn", "conn=%llx name=%s: no route and no default backend",
                (unsigned long long)c->id, c->sni[0] ? c->sni : "-");
        SSL_shutdown(c->ssl);
        tf_pump_flush_tls(c);
        tf_conn_close(c, TF_CONN_END_NO_ROUTE);
        return;
    }
    tf_conn_connecting(c);
    if (c->route.backend->proxy != TF_PROXY_NONE)
        tf_conn_proxy_out(c); /* first in the held queue: before any client byte */
    if (c->closing)
        return;
    if (c->route.backend->mode == TF_MODE_HTTP)
        c->http = tf_httpmode_new(c);
    tf_backend_connect(c);
}

/* A held handshake cannot use anything the client sends before the answer (a legitimate
 * client sends nothing more before our ServerHello). Its connection stays read, so that a
 * client that leaves frees its hold at once, but OpenSSL is not asked again and what arrives
 * is kept only up to TF_HOLD_SLACK: past it the connection closes. Returns true if it did. */
static bool held_overflow(struct tf_conn *c)
{
    size_t n = tf_tlsbio_pending(&c->bio);
    if (n <= TF_HOLD_SLACK)
        return false;
    TF_INFO("conn", "conn=%llx name=%s: %zu bytes after the ClientHello while held, closed",
            (unsigned long long)c->id, c->sni, n);
    tf_conn_close(c, TF_CONN_END_HOLD_OVERFLOW);
    return true;
}

/* Advance the handshake with the TLS input. */
static void drive_handshake(struct tf_conn *c)
{
    tf_tls_clear_errors();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        tf_pump_flush_tls(c);
        handshake_done(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    tf_pump_flush_tls(c); /* handshake messages, or the alert on failure */
    if (e == SSL_ERROR_WANT_CLIENT_HELLO_CB && held_overflow(c))
        return;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_CLIENT_HELLO_CB)
        return; /* more bytes needed, or held for a certificate */
    if (tf_log_enabled(TF_LOG_DEBUG))
        tf_log_ssl(TF_LOG_DEBUG, "conn", "handshake");
    tf_tls_clear_errors();
    TF_WSTAT_ADD(&c->w->ws, hs_failed, 1);
    tf_conn_close(c, c->end ? c->end : TF_CONN_END_HANDSHAKE_FAILED);
}

/* The first TLS bytes: make the SSL once a whole record is here. Until then the bytes wait
 * in c->bio, and a connection that sends nothing or dribbles owns no OpenSSL state (about
 * 8.5 KiB, and 16 KiB more of read buffer once OpenSSL reads a partial record). Returns 1
 * when the SSL exists, 0 when more bytes are needed, -1 after closing c. */
static int tls_begin(struct tf_conn *c)
{
    if (!tf_tlsbio_first_record(&c->bio))
        return 0;
    if (setup_tls(c) != 0) {
        tf_log_ssl(TF_LOG_ERROR, "conn", "SSL_new");
        tf_conn_close(c, TF_CONN_END_TLS_SETUP_FAILED);
        return -1;
    }
    return 1;
}

void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tf_conn *c = s->data;
    if (c->closing || nread == 0)
        return;
    if (c->finishing) {
        /* Lingering close: drain what the client still sends so that closing with unread
         * bytes does not reset the connection before it has read our answer. Its EOF ends
         * the connection once our answer is out (on_shutdown), not before: closing now
         * would drop writes still queued for it. */
        if (nread < 0) {
            c->client.eof = true;
            if (c->client.shut_done)
                tf_conn_close(c, c->end);
        }
        return;
    }
    if (nread < 0 && c->state == TF_CONN_PROXY_IN) {
        char peer[TF_CONN_PEER_MAX];
        TF_INFO("conn", "conn=%llx %s: closed before its PROXY header was complete",
                (unsigned long long)c->id, tf_conn_peer(c, peer));
        tf_conn_close(c, TF_CONN_END_PROXY_HEADER_INCOMPLETE);
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF && c->state != TF_CONN_HANDSHAKE) {
            tf_pump_client_eof(c);
            return;
        }
        tf_conn_close(c, nread == UV_EOF ? TF_CONN_END_CLIENT_EOF_IN_HANDSHAKE
                                         : TF_CONN_END_CLIENT_READ_ERROR);
        return;
    }
    tf_conn_touch(c);
    if (c->state == TF_CONN_PROXY_IN) {
        if (tf_conn_proxy_in(c, buf->base, (size_t)nread) <= 0)
            return; /* more bytes needed, or closed */
    } else {
        tf_tlsbio_input(&c->bio, buf->base, (size_t)nread); /* borrowed until settle */
    }
    if (c->state == TF_CONN_HANDSHAKE &&
        ((!c->ssl && tls_begin(c) <= 0) || (c->hold == TF_HOLD_WAITING && held_overflow(c)))) {
        tf_tlsbio_settle(&c->bio); /* a partial first record, or a held one's slack */
        return;
    }
    if (c->state == TF_CONN_HANDSHAKE && c->hold != TF_HOLD_WAITING)
        drive_handshake(c);
    if (!c->closing && c->state != TF_CONN_HANDSHAKE)
        tf_pump_client_data(c);
    /* What OpenSSL did not take (paused, held) is copied: the read buffer is reused next. */
    tf_tlsbio_settle(&c->bio);
}

/* One deadline serves them all in turn: PROXY header, handshake (or hold), backend connect,
 * then idle; or the linger of a finishing connection. */
void tf_conn_on_timeout(struct tf_conn *c)
{
    if (c->closing)
        return;
    if (c->finishing) {
        tf_conn_close(c, c->end);
        return;
    }
    if (c->state == TF_CONN_PROXY_IN) {
        char peer[TF_CONN_PEER_MAX];
        TF_INFO("conn", "conn=%llx %s: no complete PROXY header in time",
                (unsigned long long)c->id, tf_conn_peer(c, peer));
        tf_conn_close(c, TF_CONN_END_PROXY_HEADER_TIMEOUT);
        return;
    }
    if (c->state == TF_CONN_HANDSHAKE && c->hold == TF_HOLD_WAITING) {
        tf_conn_unhold(c, false, SSL_AD_INTERNAL_ERROR, TF_CONN_END_HOLD_TIMEOUT);
        return;
    }
    if (c->state == TF_CONN_HANDSHAKE) {
        TF_WSTAT_ADD(&c->w->ws, hs_timeout, 1);
        tf_conn_close(c, TF_CONN_END_HANDSHAKE_TIMEOUT);
        return;
    }
    if (c->state == TF_CONN_CONNECTING) {
        TF_WSTAT_ADD(&c->w->ws, backend_errors, 1);
        TF_INFO("conn", "conn=%llx name=%s backend %s:%u: connect timed out",
                (unsigned long long)c->id, c->sni[0] ? c->sni : "-", c->route.backend->host,
                c->route.backend->port);
        if (c->http)
            tf_httpmode_fail(c, 502, TF_CONN_END_BACKEND_CONNECT_TIMEOUT);
        else
            tf_conn_close(c, TF_CONN_END_BACKEND_CONNECT_TIMEOUT);
        return;
    }
    uint64_t now = uv_now(&c->w->loop);
    uint64_t idle = c->cfg->idle_timeout_ms;
    if (now - c->last_ms >= idle) {
        tf_conn_close(c, TF_CONN_END_IDLE_TIMEOUT);
        return;
    }
    tf_deadline_within(c, idle - (now - c->last_ms)); /* read from since: not yet */
}

/* Finishing (tf_pump_finish): give the answer and the client's close a few seconds. */
void tf_conn_linger(struct tf_conn *c)
{
    uint64_t ms = TF_MIN((uint64_t)c->cfg->idle_timeout_ms, (uint64_t)2000);
    tf_deadline_set(c, ms);
}

/* Connecting to the backend: the deadline is the connect timeout. */
void tf_conn_connecting(struct tf_conn *c)
{
    c->state = TF_CONN_CONNECTING;
    tf_deadline_set(c, c->cfg->connect_timeout_ms);
}

/* Called once the backend is connected: from now on the deadline watches idleness. */
void tf_conn_connected(struct tf_conn *c)
{
    c->state = TF_CONN_PUMPING;
    tf_conn_touch(c);
    tf_deadline_set(c, c->cfg->idle_timeout_ms);
}

/* Both directions finished and flushed: the connection is done. */
void tf_conn_maybe_done(struct tf_conn *c)
{
    if (c->closing)
        return;
    bool up_done = c->client.eof && c->backend.shut_done;
    bool down_done = c->backend.eof && c->client.shut_done;
    if (up_done && down_done)
        tf_conn_close(c, TF_CONN_END_DONE);
}

static void held_unlink(struct tf_conn *c)
{
    struct tf_worker *w = c->w;
    if (c->held_prev)
        c->held_prev->held_next = c->held_next;
    else
        w->held = c->held_next;
    if (c->held_next)
        c->held_next->held_prev = c->held_prev;
    c->held_prev = c->held_next = NULL;
    w->n_held--;
    w->held_ended++; /* the worker's heartbeat returns a burst's memory (see worker.c) */
    atomic_fetch_sub(&w->stats->held_now, 1);
}

void tf_conn_hold(struct tf_conn *c)
{
    struct tf_worker *w = c->w;
    c->hold = TF_HOLD_WAITING;
    c->held_next = w->held;
    if (w->held)
        w->held->held_prev = c;
    w->held = c;
    w->n_held++;
    TF_STAT_ADD(w->stats, held_now, 1);
    TF_WSTAT_ADD(&w->ws, held_total, 1);
    tf_deadline_set(c, c->cfg->hold_timeout_ms);
    /* One request per name per worker: the control loop answers every waiter of the name. */
    for (struct tf_conn *o = c->held_next; o; o = o->held_next)
        if (strcmp(o->sni, c->sni) == 0 && o->hold_challenge == c->hold_challenge &&
            o->hold_load == c->hold_load)
            return;
    struct tf_smsg *m = (struct tf_smsg *)tf_msg_new(
        sizeof *m, c->hold_challenge ? TF_SMSG_NEED_CHALLENGE
                   : c->hold_load    ? TF_SMSG_NEED_LOAD
                                     : TF_SMSG_NEED_CERT);
    m->worker = w;
    snprintf(m->name, sizeof m->name, "%s", c->sni);
    if (!tf_mailbox_post(w->ctl, &m->hdr))
        tf_msg_free(&m->hdr); /* shutting down: the hold deadline ends it */
}

void tf_conn_unhold(struct tf_conn *c, bool ok, int alert, enum tf_conn_end reason)
{
    if (c->hold != TF_HOLD_WAITING)
        return;
    held_unlink(c);
    c->hold = ok ? TF_HOLD_READY : TF_HOLD_FAILED;
    c->hold_alert = alert;
    if (!ok)
        c->end = reason;
    tf_deadline_set(c, c->cfg->handshake_timeout_ms);
    drive_handshake(c); /* re-runs the ClientHello callback, which now decides */
}

static void access_log(struct tf_conn *c)
{
    /* One line per connection: built without printf, which showed in handshake profiles. */
    char in[24], out[24], dur[24], id[24], backend[300] = "-", reqs[24] = "-";
    char peer[TF_CONN_PEER_MAX];
    tf_u64_hex(id, c->id);
    tf_u64_dec(in, c->bytes_in);
    tf_u64_dec(out, c->bytes_out);
    tf_u64_dec(dur, (uv_hrtime() - c->start_ns) / 1000000);
    if (c->route.backend) {
        size_t hl = strlen(c->route.backend->host);
        if (hl > sizeof backend - 8)
            hl = sizeof backend - 8;
        memcpy(backend, c->route.backend->host, hl);
        backend[hl] = ':';
        tf_u64_dec(backend + hl + 1, c->route.backend->port);
    }
    if (c->http)
        tf_u64_dec(reqs, tf_httpmode_requests(c->http));
    struct tf_kv kv[TF_ACCESS_FIELD_COUNT] = {
        [TF_ACCESS_CONN] = {.val = id},
        [TF_ACCESS_CLIENT] = {.val = tf_conn_peer(c, peer)},
        [TF_ACCESS_PROXY_PEER] = {.val = c->lb_peer ? c->lb_peer : "-"},
        [TF_ACCESS_SNI] = {.val = c->sni[0] ? c->sni : "-"},
        [TF_ACCESS_ALPN] = {.val = c->alpn ? c->alpn : "-"},
        [TF_ACCESS_TLS] = {.val = c->tls_version ? c->tls_version : "-"},
        [TF_ACCESS_RESUMED] = {.val = c->resumed ? "1" : "0", .is_num = true},
        [TF_ACCESS_ROUTE] = {.val = c->route.pattern ? c->route.pattern : "-"},
        [TF_ACCESS_BACKEND] = {.val = backend},
        [TF_ACCESS_BYTES_IN] = {.val = in, .is_num = true},
        [TF_ACCESS_BYTES_OUT] = {.val = out, .is_num = true},
        [TF_ACCESS_DURATION_MS] = {.val = dur, .is_num = true},
        [TF_ACCESS_REQUESTS] = {.val = reqs, .is_num = c->http != NULL},
        [TF_ACCESS_END] = {.val = tf_conn_end_name(c->end)},
    };
    for (int i = 0; i < TF_ACCESS_FIELD_COUNT; i++)
        kv[i].key = tf_access_field_name((enum tf_access_field)i);
    tf_log_access(kv, TF_ACCESS_FIELD_COUNT);
}

static void conn_free(struct tf_conn *c)
{
    struct tf_worker *w = c->w;
    if (c->cfg->access_log)
        access_log(c);
    TF_WSTAT_ADD(&w->ws, bytes_in, c->bytes_in);
    TF_WSTAT_ADD(&w->ws, bytes_out, c->bytes_out);
    tf_pump_free_held(c);
    tf_httpmode_free(c->http);
    free(c->pin);
    free(c->lb_peer);
    if (c->sni[0])
        free((char *)c->sni);
    tf_backend_dial_free(c);
    SSL_free(c->ssl);
    tf_tlsbio_clear(&c->bio); /* input kept for a connection that never read it */
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->n_conns--;
    atomic_fetch_sub(&w->stats->conns_open, 1);
    tf_config_unref(c->cfg);
    free(c);
    tf_worker_conn_gone(w);
}

void tf_conn_release(struct tf_conn *c)
{
    if (--c->pending_closes == 0)
        conn_free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    tf_conn_release(h->data);
}

void tf_conn_close(struct tf_conn *c, enum tf_conn_end reason)
{
    if (c->closing)
        return;
    c->closing = true;
    c->state = TF_CONN_CLOSING;
    if (c->hold == TF_HOLD_WAITING) {
        held_unlink(c);
        c->hold = TF_HOLD_FAILED;
    }
    if (!c->end)
        c->end = reason;
    if (c->dial && c->dial->gai_active) /* its callback still runs, sees closing, releases */
        uv_cancel((uv_req_t *)&c->dial->gai);
    /* Best effort: put any alert or close_notify on the wire before the socket goes
     * (closing is set, so the flush only tries a direct write). */
    if (c->ssl && c->client.open)
        tf_pump_flush_tls(c);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    tf_deadline_clear(c);
    if (c->backend.open) {
        c->pending_closes++;
        uv_close((uv_handle_t *)c->backend.sock, tf_backend_on_closed);
    }
}
