/*
 * lg.c: loadgen's client connections and meters (see lg.h). A connection is driven by
 * lg_conn_step() whenever epoll reports its socket: it completes the handshake, writes the
 * pending request and reads one HTTP/1.1 response (Content-Length, or until EOF), returning 1
 * when the response is complete, 0 while waiting and -1 on any failure.
 */
#define _GNU_SOURCE
#include "lg.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static char SCRATCH[65536];
static const char ZEROS[65536];

double lg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void lg_sleep(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int lg_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return -1;
}

void *lg_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fputs("loadgen: out of memory\n", stderr);
        abort();
    }
    return p;
}

/* ---- meters ---- */

int lg_pids_parse(struct lg_pids *p, const char *list)
{
    memset(p, 0, sizeof *p);
    const char *s = list;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0 || p->n == LG_MAX_PIDS)
            return -1;
        p->pid[p->n] = (pid_t)v;
        if (clock_getcpuclockid(p->pid[p->n], &p->clk[p->n]))
            return -1;
        p->n++;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return 0;
}

/* Sum of the PIDs' CPU time (user + system, all threads) in seconds, ns resolution. */
double lg_pids_cpu(const struct lg_pids *p)
{
    double t = 0;
    for (int i = 0; i < p->n; i++) {
        struct timespec ts;
        if (clock_gettime(p->clk[i], &ts) == 0)
            t += (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    }
    return t;
}

long lg_pids_rss_kib(const struct lg_pids *p)
{
    long total = 0;
    for (int i = 0; i < p->n; i++) {
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%d/status", (int)p->pid[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            return -1;
        long v = -1;
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "VmRSS:", 6))
                v = atol(line + 6);
        fclose(f);
        if (v < 0)
            return -1;
        total += v;
    }
    return total;
}

/* irq + softirq CPU seconds of all cores from /proc/stat (10 ms ticks). */
static double irq_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[7] = {0};
    if (!f)
        return 0;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6]);
    fclose(f);
    if (n != 7)
        return 0;
    return (double)(v[5] + v[6]) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void lg_meter_start(struct lg_meter *m, const struct lg_pids *p, const struct lg_pids *sys)
{
    m->irq_cpu = irq_time();
    m->sys_cpu = lg_pids_cpu(sys);
    m->self_cpu = self_cpu();
    m->server_cpu = lg_pids_cpu(p);
    m->wall = lg_now();
}

void lg_meter_stop(struct lg_meter *m, const struct lg_pids *p, const struct lg_pids *sys)
{
    m->wall = lg_now() - m->wall;
    m->server_cpu = lg_pids_cpu(p) - m->server_cpu;
    m->self_cpu = self_cpu() - m->self_cpu;
    m->sys_cpu = lg_pids_cpu(sys) - m->sys_cpu;
    m->irq_cpu = irq_time() - m->irq_cpu;
    m->sys_cpu += m->server_cpu + m->self_cpu + m->irq_cpu;
}

/* ---- client context ---- */

int lg_client_init(struct lg_client *cl, const char *addr, const char *sni)
{
    memset(cl, 0, sizeof *cl);
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host)
        return lg_fail("bad address '%s'", addr);
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    cl->addr.sin_family = AF_INET;
    cl->addr.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &cl->addr.sin_addr) != 1)
        return lg_fail("bad address '%s'", addr);
    cl->sni = sni;
    cl->ctx = SSL_CTX_new(TLS_client_method());
    static const unsigned char alpn[] = "\x08http/1.1";
    if (!cl->ctx || !SSL_CTX_set_min_proto_version(cl->ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(cl->ctx, "TLS_AES_128_GCM_SHA256") ||
        !SSL_CTX_set1_groups_list(cl->ctx, "X25519") ||
        SSL_CTX_set_alpn_protos(cl->ctx, alpn, sizeof alpn - 1))
        return lg_fail("client SSL_CTX set-up failed");
    SSL_CTX_set_verify(cl->ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(cl->ctx, SSL_SESS_CACHE_OFF);
    cl->ep = epoll_create1(0);
    return cl->ep < 0 ? lg_fail("epoll_create1 failed") : 0;
}

/* OpenSSL calls this for every ticket (TLS 1.3 NewSessionTicket, or a TLS 1.2 session) with
 * a reference we keep: the slot holds the newest one. */
static int on_new_ticket(SSL *ssl, SSL_SESSION *sess)
{
    struct lg_conn *c = SSL_get_app_data(ssl);
    if (!c)
        return 0;
    SSL_SESSION_free(c->sess);
    c->sess = sess;
    return 1;
}

void lg_client_keep_tickets(struct lg_client *cl)
{
    /* The callback runs only with client caching on; nothing is stored in the context. */
    SSL_CTX_set_session_cache_mode(cl->ctx,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(cl->ctx, on_new_ticket);
}

void lg_client_free(struct lg_client *cl)
{
    if (cl->ep > 0)
        close(cl->ep);
    SSL_CTX_free(cl->ctx);
}

/* ---- one connection ---- */

static void set_ev(struct lg_client *cl, struct lg_conn *c, uint32_t ev)
{
    if (c->ev == ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(cl->ep, c->ev ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &e);
    c->ev = ev;
}

int lg_conn_open(struct lg_client *cl, struct lg_conn *c, SSL_SESSION *sess)
{
    SSL_SESSION *keep = c->sess;
    memset(c, 0, sizeof *c);
    c->sess = keep;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0)
        return lg_fail("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->open = 1;
    if (connect(c->fd, (struct sockaddr *)&cl->addr, sizeof cl->addr) < 0 &&
        errno != EINPROGRESS)
        return lg_fail("connect: %s", strerror(errno));
    c->ssl = SSL_new(cl->ctx);
    char name[256];
    if (cl->sni_range > 0 && cl->sni_seq > 0)
        snprintf(name, sizeof name, cl->sni, 1 + (cl->sni_seq++ - 1) % cl->sni_range);
    else if (cl->sni_range > 0)
        snprintf(name, sizeof name, cl->sni, 1 + random() % cl->sni_range);
    else
        snprintf(name, sizeof name, "%s", cl->sni);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd) || !SSL_set_tlsext_host_name(c->ssl, name) ||
        !SSL_set_app_data(c->ssl, c))
        return lg_fail("SSL_new failed");
    if (sess && !SSL_set_session(c->ssl, sess))
        return lg_fail("SSL_set_session failed");
    SSL_set_connect_state(c->ssl);
    c->state = LG_HS;
    c->busy = 1;
    set_ev(cl, c, EPOLLOUT);
    return 0;
}

void lg_conn_close(struct lg_client *cl, struct lg_conn *c)
{
    if (!c->open)
        return;
    if (c->ev)
        epoll_ctl(cl->ep, EPOLL_CTL_DEL, c->fd, NULL);
    SSL_free(c->ssl);
    close(c->fd);
    c->ssl = NULL;
    c->open = 0;
    c->ev = 0;
}

/* Parse the buffered header; 1 when complete (body_need set), 0 when more is needed. */
static int parse_header(struct lg_conn *c)
{
    char *end = memmem(c->hbuf, c->hlen, "\r\n\r\n", 4);
    if (!end)
        return c->hlen == sizeof c->hbuf ? -1 : 0;
    size_t hl = (size_t)(end - c->hbuf) + 4;
    if (strncmp(c->hbuf, "HTTP/1.", 7) || strncmp(c->hbuf + 8, " 200", 4))
        return -1;
    *end = '\0';
    c->body_need = -1;
    for (char *l = strstr(c->hbuf, "\r\n"); l; l = strstr(l + 2, "\r\n"))
        if (!strncasecmp(l + 2, "content-length:", 15))
            c->body_need = atoll(l + 17);
    c->body_got = c->hlen - hl;
    c->hdr_done = 1;
    return 1;
}

static int ssl_want(struct lg_client *cl, struct lg_conn *c, int r)
{
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        set_ev(cl, c, EPOLLIN);
        return 0;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        set_ev(cl, c, EPOLLOUT);
        return 0;
    }
    ERR_clear_error();
    return -1;
}

static int response_done(struct lg_conn *c)
{
    return c->hdr_done && c->body_need >= 0 && c->body_got >= (uint64_t)c->body_need;
}

/* Read what is there; 1 when the response is complete, 0 waiting, -1 failure. */
static int read_response(struct lg_client *cl, struct lg_conn *c)
{
    for (;;) {
        int r;
        if (!c->hdr_done) {
            r = SSL_read(c->ssl, c->hbuf + c->hlen, (int)(sizeof c->hbuf - c->hlen));
            if (r > 0) {
                c->hlen += (size_t)r;
                int h = parse_header(c);
                if (h < 0)
                    return -1;
            }
        } else {
            r = SSL_read(c->ssl, SCRATCH, sizeof SCRATCH);
            if (r > 0)
                c->body_got += (uint64_t)r;
        }
        if (response_done(c))
            return 1;
        if (r > 0)
            continue;
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && r == 0)) {
            ERR_clear_error();
            return c->hdr_done && c->body_need < 0 ? 1 : -1;
        }
        return ssl_want(cl, c, r);
    }
}

int lg_conn_step(struct lg_client *cl, struct lg_conn *c)
{
    int r;
    switch (c->state) {
    case LG_HS:
        r = SSL_do_handshake(c->ssl);
        if (r != 1)
            return ssl_want(cl, c, r);
        c->state = LG_WRITE;
        c->t_req = lg_now();
        /* fall through */
    case LG_WRITE:
        r = SSL_write(c->ssl, c->req, (int)strlen(c->req));
        if (r <= 0)
            return ssl_want(cl, c, r);
        c->state = LG_READ;
        c->hlen = 0;
        c->hdr_done = 0;
        c->body_got = 0;
        /* fall through */
    case LG_READ:
        r = read_response(cl, c);
        if (r > 0)
            c->state = LG_IDLE;
        return r;
    default: /* idle: only tickets may arrive; data or EOF is a failure */
        r = SSL_read(c->ssl, SCRATCH, sizeof SCRATCH);
        if (r > 0)
            return -1;
        r = ssl_want(cl, c, r);
        return r < 0 ? -1 : 0;
    }
}

int lg_conn_request(struct lg_client *cl, struct lg_conn *c, const char *req)
{
    c->req = req;
    c->busy = 1;
    c->state = LG_WRITE;
    c->t_req = lg_now();
    return lg_conn_step(cl, c);
}

void lg_conn_idle(struct lg_client *cl, struct lg_conn *c)
{
    c->busy = 0;
    c->state = LG_IDLE;
    set_ev(cl, c, EPOLLIN);
}

/* ---- blocking helpers (bulk) ---- */

static int wait_fd(struct lg_conn *c, int r, double deadline)
{
    int e = SSL_get_error(c->ssl, r);
    struct pollfd pf = {.fd = c->fd};
    if (e == SSL_ERROR_WANT_READ)
        pf.events = POLLIN;
    else if (e == SSL_ERROR_WANT_WRITE)
        pf.events = POLLOUT;
    else
        return -1;
    double left = deadline - lg_now();
    if (left <= 0)
        return -1;
    return poll(&pf, 1, (int)(left * 1000) + 1) < 0 ? -1 : 0;
}

int lg_conn_block_handshake(struct lg_client *cl, struct lg_conn *c, double deadline)
{
    if (c->ev) {
        epoll_ctl(cl->ep, EPOLL_CTL_DEL, c->fd, NULL);
        c->ev = 0;
    }
    int r;
    while ((r = SSL_do_handshake(c->ssl)) != 1)
        if (wait_fd(c, r, deadline) < 0)
            return -1;
    return 0;
}

int lg_conn_write_all(struct lg_conn *c, const char *buf, size_t len, double deadline)
{
    while (len) {
        int r = SSL_write(c->ssl, buf, (int)len);
        if (r > 0) {
            buf += r;
            len -= (size_t)r;
        } else if (wait_fd(c, r, deadline) < 0) {
            return -1;
        }
    }
    return 0;
}

int lg_conn_write_zeros(struct lg_conn *c, uint64_t bytes, double deadline)
{
    while (bytes) {
        size_t k = bytes < sizeof ZEROS ? (size_t)bytes : sizeof ZEROS;
        if (lg_conn_write_all(c, ZEROS, k, deadline) < 0)
            return -1;
        bytes -= k;
    }
    return 0;
}

int lg_conn_read_response(struct lg_conn *c, uint64_t *body, double deadline)
{
    c->hlen = 0;
    c->hdr_done = 0;
    c->body_got = 0;
    for (;;) {
        int r;
        if (!c->hdr_done) {
            r = SSL_read(c->ssl, c->hbuf + c->hlen, (int)(sizeof c->hbuf - c->hlen));
            if (r > 0) {
                c->hlen += (size_t)r;
                if (parse_header(c) < 0)
                    return -1;
            }
        } else {
            r = SSL_read(c->ssl, SCRATCH, sizeof SCRATCH);
            if (r > 0)
                c->body_got += (uint64_t)r;
        }
        *body = c->body_got;
        if (response_done(c))
            return 0;
        if (r <= 0 && wait_fd(c, r, deadline) < 0)
            return -1;
    }
}
