/*
 * acme_fake.h: a tiny misbehaving ACME server for tests/loop/test_acme.c: plain HTTP on
 * 127.0.0.1 (kernel-chosen port) in the test's own loop, one request per connection, canned
 * answers by path, and one mode that breaks one answer (truncated JSON, wrong types, missing
 * members, a huge body, garbage headers, rate limits, a paused account, 5xx, badNonce).
 * renewalInfo (ARI) connections are counted: how many are open at once (now and the most
 * ever), and every certID asked about. With ari_hold set, ARI answers are held back (a slow
 * CA: a client that sends every request at once shows it) until fake_ari_release, and from
 * then on sent every 2 ms, those held together.
 */
#ifndef TF_TEST_ACME_FAKE_H
#define TF_TEST_ACME_FAKE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

enum fake_mode {
    FAKE_TRUNCATED_DIR,
    FAKE_WRONG_TYPES,
    FAKE_MISSING_FINALIZE,
    FAKE_HUGE,
    FAKE_GARBAGE,
    FAKE_NO_ALPN,
    FAKE_INVALID_AUTHZ,
    FAKE_RATELIMITED,
    FAKE_PAUSED,
    FAKE_5XX,
    FAKE_BADNONCE,
    FAKE_ARI,
};

struct fake_conn;

struct fake_srv {
    uv_tcp_t tcp;
    uv_timer_t hold; /* answers held ARI requests once released */
    int port;
    enum fake_mode mode;
    int requests, nonce;
    int orders;                  /* newOrder requests */
    struct fake_conn *conns;
    bool ari_hold;
    bool chal_hold;              /* challenge POSTs wait for fake_chal_release */
    int ari_open, ari_max_open; /* renewalInfo connections open now, and the most at once */
    int ari_answered;           /* renewalInfo answers sent */
    char **ari_ids;             /* every certID asked about (owned), in arrival order */
    int n_ari_ids, cap_ari_ids;
};

struct fake_conn {
    uv_tcp_t tcp;
    struct fake_srv *s;
    struct fake_conn *next;
    char buf[65536];
    size_t len;
    bool responded;
    bool ari;  /* a renewalInfo request: counted in ari_open until closed */
    bool held; /* an ARI answer waiting for the hold timer */
    bool chal_held; /* a challenge POST waiting for fake_chal_release */
    uv_write_t wr;
    char *out;
};

static void fake_conn_closed(uv_handle_t *h)
{
    struct fake_conn *c = h->data;
    for (struct fake_conn **pp = &c->s->conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    if (c->ari)
        c->s->ari_open--;
    free(c->out);
    free(c);
}

static void fake_conn_close(struct fake_conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, fake_conn_closed);
}

static void fake_written(uv_write_t *w, int status)
{
    (void)status;
    fake_conn_close(w->data);
}

static void fake_send(struct fake_conn *c, char *raw, size_t len)
{
    c->out = raw;
    c->wr.data = c;
    uv_buf_t b = uv_buf_init(raw, (unsigned)len);
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, fake_written))
        fake_conn_close(c);
}

static void fake_reply(struct fake_conn *c, int status, const char *extra, const char *body,
                       bool head)
{
    size_t blen = strlen(body);
    char *raw = tf_asprintf("HTTP/1.1 %d X\r\nContent-Type: application/json\r\nReplay-Nonce: "
                            "nonce%d\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n%s",
                            status, ++c->s->nonce, blen, extra ? extra : "", head ? "" : body);
    fake_send(c, raw, strlen(raw));
}

#define FAKE_CHAL "{\"type\":\"tls-alpn-01\",\"url\":\"%s/chal/1\",\"token\":" \
                  "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",\"status\":\"%s\"%s}"

/* The directory, or the mode's broken one (sent directly; returns false then). */
static bool fake_dir(struct fake_conn *c, const char *base, char *body, size_t len)
{
    struct fake_srv *s = c->s;
    if (s->mode == FAKE_HUGE) {
        size_t n = 2 * 1024 * 1024;
        char *raw = tf_malloc(n + 200);
        int h = snprintf(raw, 200, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);
        memset(raw + h, 'a', n);
        fake_send(c, raw, (size_t)h + n);
        return false;
    }
    if (s->mode == FAKE_GARBAGE) {
        const char g[] = "HTTP/1.1 200 OK\r\nContent-Length: zz\r\nX\001: \002\r\n\r\n{}";
        fake_send(c, tf_strdup(g), sizeof(g) - 1);
        return false;
    }
    bool ari = s->mode == FAKE_ARI;
    snprintf(body, len,
             s->mode == FAKE_TRUNCATED_DIR
                 ? "{\"newNonce\":\"%s/nonce\",\"newAccount\":\"%s/acct\",\"newOr"
                 : "{\"newNonce\":\"%s/nonce\",\"newAccount\":\"%s/acct\",\"newOrder\":"
                   "\"%s/order\"%s%s%s}",
             base, base, base, ari ? ",\"renewalInfo\":\"" : "", ari ? base : "",
             ari ? "/ri\"" : "");
    return true;
}

/* newOrder: a good order, or the mode's failure. Returns the HTTP status. */
static int fake_order(struct fake_srv *s, const char *base, char *extra, size_t elen,
                      char *body, size_t len)
{
    s->orders++;
    snprintf(extra, elen, "Location: %s/order/1\r\n", base);
    snprintf(body, len,
             s->mode == FAKE_MISSING_FINALIZE
                 ? "{\"status\":\"pending\",\"authorizations\":[\"%s/authz/1\"]}"
                 : "{\"status\":\"pending\",\"authorizations\":[\"%s/authz/1\"],"
                   "\"finalize\":\"%s/finalize/1\"}",
             base, base);
    if (s->mode == FAKE_RATELIMITED || s->mode == FAKE_PAUSED) {
        snprintf(extra, elen, "Retry-After: 3600\r\n");
        snprintf(body, len, "{\"type\":\"urn:ietf:params:acme:error:rateLimited\","
                 "\"detail\":\"%s\"}",
                 s->mode == FAKE_PAUSED
                     ? "Your account is temporarily prevented from requesting "
                       "certificates for fake.test and possibly others. Please visit: "
                       "https://portal.example/sfe/v1/unpause?jwt=abc"
                     : "too many certificates already issued");
        return 429;
    }
    if (s->mode == FAKE_5XX) {
        snprintf(body, len, "<html>oops</html>");
        return 500;
    }
    if (s->mode == FAKE_BADNONCE) {
        snprintf(body, len, "{\"type\":\"urn:ietf:params:acme:error:badNonce\","
                 "\"detail\":\"JWS has an invalid anti-replay nonce\"}");
        return 400;
    }
    return 201;
}

static void fake_authz(struct fake_srv *s, const char *base, char *body, size_t len)
{
    char chal[512];
    bool inv = s->mode == FAKE_INVALID_AUTHZ;
    snprintf(chal, sizeof(chal), FAKE_CHAL, base, inv ? "invalid" : "pending",
             inv ? ",\"error\":{\"type\":\"urn:ietf:params:acme:error:connection\","
                   "\"detail\":\"127.0.0.1: Connection refused\"}"
                 : "");
    snprintf(body, len,
             "{\"status\":\"%s\",\"identifier\":{\"type\":\"dns\",\"value\":\"fake.test\"},"
             "\"challenges\":[%s]}",
             inv ? "invalid" : "pending",
             s->mode == FAKE_NO_ALPN ? "{\"type\":\"http-01\",\"url\":\"http://x/c\","
                                       "\"token\":\"AAAAAAAAAAAAAAAAAAAAAAAAAA\","
                                       "\"status\":\"pending\"}"
                                     : chal);
}

static void fake_ari_body(char *extra, size_t elen, char *body, size_t len)
{
    snprintf(extra, elen, "Retry-After: 3600\r\n");
    snprintf(body, len, "{\"suggestedWindow\":{\"start\":\"2030-01-02T00:00:00Z\","
             "\"end\":\"2030-01-03T00:00:00Z\"},\"explanationURL\":\"https://ca/ari\"}");
}

static void fake_ari_reply(struct fake_conn *c)
{
    char body[512], extra[64];
    fake_ari_body(extra, sizeof(extra), body, sizeof(body));
    c->s->ari_answered++;
    fake_reply(c, 200, extra, body, false);
}

static void on_fake_hold(uv_timer_t *t)
{
    struct fake_srv *s = t->data;
    for (struct fake_conn *c = s->conns; c; c = c->next)
        if (c->held && !uv_is_closing((uv_handle_t *)&c->tcp)) {
            c->held = false;
            fake_ari_reply(c);
        }
}

/* Count a renewalInfo request for id; true when it is held for the hold timer. */
static bool fake_ari_seen(struct fake_conn *c, const char *id)
{
    struct fake_srv *s = c->s;
    c->ari = true;
    if (++s->ari_open > s->ari_max_open)
        s->ari_max_open = s->ari_open;
    if (s->n_ari_ids == s->cap_ari_ids) {
        s->cap_ari_ids = s->cap_ari_ids ? 2 * s->cap_ari_ids : 64;
        s->ari_ids = tf_realloc(s->ari_ids, (size_t)s->cap_ari_ids * sizeof(*s->ari_ids));
    }
    s->ari_ids[s->n_ari_ids++] = tf_strdup(id);
    if (!s->ari_hold) {
        s->ari_answered++; /* answered by the caller at once */
        return false;
    }
    c->held = true;
    return true;
}

/* Answer the held ARI requests, then keep answering every 2 ms. */
static inline void fake_ari_release(struct fake_srv *s)
{
    uv_timer_start(&s->hold, on_fake_hold, 0, 2);
}

static int fake_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* How many distinct certIDs were asked about (sorts s->ari_ids). */
static inline int fake_ari_distinct(struct fake_srv *s)
{
    if (s->n_ari_ids > 1)
        qsort(s->ari_ids, (size_t)s->n_ari_ids, sizeof(*s->ari_ids), fake_cmp_str);
    int n = 0;
    for (int i = 0; i < s->n_ari_ids; i++)
        n += i == 0 || strcmp(s->ari_ids[i], s->ari_ids[i - 1]) != 0;
    return n;
}

#define FAKE_NO_PATH "{\"type\":\"urn:ietf:params:acme:error:malformed\",\"detail\":\"no such path\"}"

/* Answer the challenge POSTs held by chal_hold (as unknown paths: the challenge is never
 * accepted) and stop holding. */
static inline void fake_chal_release(struct fake_srv *s)
{
    s->chal_hold = false;
    for (struct fake_conn *c = s->conns; c; c = c->next)
        if (c->chal_held && !uv_is_closing((uv_handle_t *)&c->tcp)) {
            c->chal_held = false;
            fake_reply(c, 404, "", FAKE_NO_PATH, false);
        }
}

/* Answer one request by path in the server's mode. */
static void fake_route(struct fake_conn *c, const char *method, const char *path)
{
    struct fake_srv *s = c->s;
    char base[64], body[2048] = "", extra[256] = "";
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", s->port);
    int status = 200;
    if (strcmp(path, "/dir") == 0) {
        if (!fake_dir(c, base, body, sizeof(body)))
            return;
    } else if (strcmp(path, "/nonce") == 0) {
        body[0] = '\0';
    } else if (strcmp(path, "/acct") == 0) {
        status = 201;
        snprintf(extra, sizeof(extra), "Location: %s/acct/1\r\n", base);
        snprintf(body, sizeof(body), s->mode == FAKE_WRONG_TYPES ? "{\"status\":5}"
                                                                 : "{\"status\":\"valid\"}");
    } else if (strcmp(path, "/order") == 0) {
        status = fake_order(s, base, extra, sizeof(extra), body, sizeof(body));
    } else if (strcmp(path, "/authz/1") == 0) {
        fake_authz(s, base, body, sizeof(body));
    } else if (strncmp(path, "/ri/", 4) == 0 && strchr(path + 4, '.')) {
        if (fake_ari_seen(c, path + 4))
            return; /* held: the hold timer answers it */
        fake_ari_body(extra, sizeof(extra), body, sizeof(body));
    } else if (s->chal_hold && strncmp(path, "/chal/", 6) == 0) {
        c->chal_held = true;
        return; /* fake_chal_release answers it */
    } else {
        status = 404;
        snprintf(body, sizeof(body), FAKE_NO_PATH);
    }
    fake_reply(c, status, extra, body, strcmp(method, "HEAD") == 0);
}

/* Once a whole request (headers and Content-Length body) is in, answer it. */
static void fake_maybe_answer(struct fake_conn *c)
{
    c->buf[c->len] = '\0';
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end || c->responded)
        return;
    const char *cl = strcasestr(c->buf, "\r\nContent-Length:");
    size_t body = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
    if (c->len < (size_t)(end + 4 - c->buf) + body)
        return;
    char method[16] = "", path[256] = "";
    if (sscanf(c->buf, "%15s %255s", method, path) != 2) {
        fake_conn_close(c);
        return;
    }
    c->responded = true;
    c->s->requests++;
    char *q = strstr(path, "://");
    const char *p = q ? strchr(q + 3, '/') : path;
    fake_route(c, method, p ? p : "/");
}

static void fake_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    struct fake_conn *c = h->data;
    (void)sz;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - 1 - c->len));
}

static void fake_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct fake_conn *c = st->data;
    (void)b;
    if (n < 0 || (n == 0 && c->len >= sizeof(c->buf) - 1)) {
        fake_conn_close(c);
        return;
    }
    c->len += (size_t)n;
    fake_maybe_answer(c);
}

static void fake_accept(uv_stream_t *server, int status)
{
    struct fake_srv *s = server->data;
    if (status < 0)
        return;
    struct fake_conn *c = tf_calloc(1, sizeof(*c));
    c->s = s;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    c->next = s->conns;
    s->conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) || uv_read_start((uv_stream_t *)&c->tcp,
                                                                   fake_alloc, fake_read))
        fake_conn_close(c);
}

static int fake_start(uv_loop_t *loop, struct fake_srv *s)
{
    memset(s, 0, sizeof(*s));
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(loop, &s->tcp);
    s->tcp.data = s;
    uv_timer_init(loop, &s->hold);
    s->hold.data = s;
    if (uv_tcp_bind(&s->tcp, (struct sockaddr *)&sa, 0) ||
        uv_listen((uv_stream_t *)&s->tcp, 64, fake_accept))
        return -1;
    int len = sizeof(sa);
    uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&sa, &len);
    s->port = ntohs(sa.sin_port);
    return 0;
}

static void fake_stop(struct fake_srv *s)
{
    for (struct fake_conn *c = s->conns; c; c = c->next)
        fake_conn_close(c);
    uv_close((uv_handle_t *)&s->tcp, NULL);
    uv_close((uv_handle_t *)&s->hold, NULL);
    for (int i = 0; i < s->n_ari_ids; i++)
        free(s->ari_ids[i]);
    free(s->ari_ids);
    s->ari_ids = NULL;
    s->n_ari_ids = s->cap_ari_ids = 0;
}

#endif
