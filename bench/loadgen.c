/*
 * loadgen.c: bench/run.sh's TLS load generator (OpenSSL, epoll, non-blocking, many
 * connections). Every client offers TLS 1.3 only, the single suite TLS_AES_128_GCM_SHA256,
 * X25519 and http/1.1, and does not verify the server (client CPU is the bottleneck on two
 * cores). The server's CPU is read precisely around each measurement from the kernel's
 * per-process CPU clocks (clock_getcpuclockid, nanoseconds) of the PIDs given with --pids.
 *
 *   loadgen hs    ADDR SNI --n N --conc C [--resume] [--warmup W] [--time S] --pids P,P
 *       N connections, each: handshake, one small request, response, close. Without --resume
 *       no session is ever offered and the run fails if any handshake was resumed. With it
 *       each slot keeps the newest ticket its connections received and offers it once, as
 *       browsers do (RFC 8446, C.4): a server that sends no ticket after a resumption leaves
 *       the next connection nothing to offer. The run fails unless at least 99 % of the
 *       connections after each slot's first (which has no ticket yet) were resumed.
 *   loadgen bulk  ADDR SNI --dir down|up --bytes B --pids P,P
 *   loadgen lat   ADDR SNI --conc C --rate R --count K --pids P,P
 *       kept-alive connections, requests started at a fixed rate (open loop), latency from
 *       the moment each request is written to the moment its response is complete.
 *   loadgen idle  ADDR SNI --n N --conc C --pids P,P [--settle S]
 *       N connections that each complete a handshake and one request, then stay idle; RSS
 *       growth of the PIDs per connection. (The open-file limit is 20,000.)
 * --sni-range K: SNI is a printf pattern with one %ld, filled per connection with a random
 * number in 1..K, a different sample every run (figure 6: SNI picks among many names). --sni-seq: the numbers 1..K in
 * order instead (wrapping), so K connections ask for every name once (figure 6's warm-up
 * that loads every name into tlsfront's certificate cache).
 * --sys-pids P,P: other processes (the backend) counted in the whole-benchmark CPU figure.
 * Every mode prints one JSON object on stdout and exits non-zero on failure. All loops are
 * bounded in count and time (--time, default 60 s).
 */
#define _GNU_SOURCE
#include "lg.h"

#include <getopt.h>
#include <time.h>
#include <unistd.h>

static const char REQ_CLOSE[] = "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
static const char REQ_KEEP[] = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

struct opts {
    const char *mode, *addr, *sni, *pids, *sys_pids, *dir;
    long n, conc, warmup, rate, count, sni_range;
    int sni_seq;
    uint64_t bytes;
    double time_limit, settle;
    int resume;
};

/* ---- hs: many short connections ---- */

struct hs_run {
    struct lg_client *cl;
    struct lg_conn *slots;
    long conc, target, started, done, errors, resumed, offered;
    int resume;
    double deadline;
};

static int hs_start(struct hs_run *r, struct lg_conn *c)
{
    /* The slot's ticket is used once: this offer takes it (SSL_set_session holds its own
     * reference), and only a ticket from this connection will be offered next. */
    SSL_SESSION *s = c->sess;
    c->sess = NULL;
    int rc = lg_conn_open(r->cl, c, s);
    SSL_SESSION_free(s);
    if (rc < 0) {
        lg_conn_close(r->cl, c);
        r->errors++;
        return -1;
    }
    if (s)
        r->offered++;
    c->req = REQ_CLOSE;
    r->started++;
    return 0;
}

/* A slot finished (ok or not): account for it and start the next connection. */
static void hs_finish(struct hs_run *r, struct lg_conn *c, int ok)
{
    if (ok) {
        r->done++;
        if (SSL_session_reused(c->ssl))
            r->resumed++;
        /* flag a clean finish (nothing is sent), or SSL_free() marks the ticket just
         * received (the connection's current session) not resumable */
        if (r->resume)
            SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    } else {
        r->errors++;
    }
    lg_conn_close(r->cl, c);
    while (r->started < r->target && lg_now() < r->deadline && r->errors < 100)
        if (hs_start(r, c) == 0)
            break;
}

static int hs_loop(struct hs_run *r)
{
    for (long i = 0; i < r->conc && r->started < r->target; i++)
        hs_start(r, &r->slots[i]);
    struct epoll_event evs[512];
    while (r->done + r->errors < r->started || r->started < r->target) {
        if (lg_now() > r->deadline || r->errors >= 100)
            return -1;
        if (r->done + r->errors >= r->started)
            return -1; /* nothing in flight and nothing can start */
        int n = epoll_wait(r->cl->ep, evs, 512, 100);
        for (int i = 0; i < n; i++) {
            struct lg_conn *c = evs[i].data.ptr;
            int st = lg_conn_step(r->cl, c);
            if (st != 0)
                hs_finish(r, c, st > 0);
        }
    }
    return 0;
}

static int hs_batch(struct lg_client *cl, const struct opts *o, long n, struct hs_run *r)
{
    memset(r, 0, sizeof *r);
    r->cl = cl;
    r->conc = o->conc < n ? o->conc : n;
    r->target = n;
    r->resume = o->resume;
    r->deadline = lg_now() + o->time_limit;
    r->slots = lg_calloc((size_t)r->conc, sizeof *r->slots);
    int rc = hs_loop(r);
    for (long i = 0; i < r->conc; i++) {
        lg_conn_close(cl, &r->slots[i]);
        if (r->slots[i].sess)
            SSL_SESSION_free(r->slots[i].sess);
    }
    free(r->slots);
    return rc;
}

static int mode_hs(struct lg_client *cl, const struct opts *o, struct lg_pids *p,
                   struct lg_pids *sp)
{
    struct hs_run w, r;
    if (o->resume)
        lg_client_keep_tickets(cl);
    if (o->warmup > 0 && hs_batch(cl, o, o->warmup, &w) < 0)
        return lg_fail("warm-up failed (%ld ok, %ld errors)", w.done, w.errors);
    struct lg_meter m;
    lg_meter_start(&m, p, sp);
    int rc = hs_batch(cl, o, o->n, &r);
    lg_meter_stop(&m, p, sp);
    if (rc < 0 || r.errors)
        return lg_fail("hs: %ld ok, %ld errors of %ld", r.done, r.errors, o->n);
    /* resumption verification: full rows must have none, resumed rows nearly all (the first
     * connection of each slot is a full handshake that obtains the ticket) */
    if (!o->resume && r.resumed)
        return lg_fail("hs: %ld of %ld full handshakes were resumed", r.resumed, r.done);
    long could = r.done > r.conc ? r.done - r.conc : 0; /* each slot's first has no ticket */
    double pct = could ? 100.0 * (double)r.resumed / (double)could : 100.0;
    if (o->resume && r.resumed * 100 < could * 99)
        return lg_fail("hs: only %ld of %ld connections that could resume did (%.1f %%, "
                       "%ld offered a ticket): the server sends no fresh ticket on resumption?",
                       r.resumed, could, pct, r.offered);
    double k = (double)r.done / 1000.0;
    printf("{\"mode\":\"hs\",\"resume\":%d,\"n\":%ld,\"conc\":%ld,\"resumed\":%ld,"
           "\"offered\":%ld,\"resumed_pct\":%.2f,\"wall_s\":%.6f,\"rate\":%.1f,"
           "\"server_cpu_s\":%.6f,"
           "\"cpu_s_per_1000\":%.6f,\"client_cpu_s\":%.6f,\"sys_cpu_s\":%.6f}\n",
           o->resume, r.done, r.conc, r.resumed, r.offered, pct, m.wall, r.done / m.wall,
           m.server_cpu, m.server_cpu / k, m.self_cpu, m.sys_cpu);
    return 0;
}

/* ---- bulk: one connection, B bytes down or up ---- */

static int mode_bulk(struct lg_client *cl, const struct opts *o, struct lg_pids *p,
                   struct lg_pids *sp)
{
    struct lg_conn c;
    memset(&c, 0, sizeof c);
    if (lg_conn_open(cl, &c, NULL) < 0 || lg_conn_block_handshake(cl, &c, lg_now() + 10) < 0)
        return lg_fail("bulk: handshake failed");
    char hdr[256];
    int up = !strcmp(o->dir, "up");
    if (up)
        snprintf(hdr, sizeof hdr, "POST /upload HTTP/1.1\r\nHost: bench\r\n"
                 "Content-Length: %llu\r\n\r\n", (unsigned long long)o->bytes);
    else
        snprintf(hdr, sizeof hdr, "GET /bytes/%llu HTTP/1.1\r\nHost: bench\r\n\r\n",
                 (unsigned long long)o->bytes);
    struct lg_meter m;
    lg_meter_start(&m, p, sp);
    double deadline = lg_now() + o->time_limit;
    int rc = lg_conn_write_all(&c, hdr, strlen(hdr), deadline);
    if (rc == 0 && up)
        rc = lg_conn_write_zeros(&c, o->bytes, deadline);
    uint64_t body = 0;
    if (rc == 0)
        rc = lg_conn_read_response(&c, &body, deadline);
    lg_meter_stop(&m, p, sp);
    lg_conn_close(cl, &c);
    if (rc < 0 || (!up && body != o->bytes))
        return lg_fail("bulk %s: failed (body %llu of %llu)", o->dir, (unsigned long long)body,
                       (unsigned long long)o->bytes);
    double gb = (double)o->bytes / 1e9;
    printf("{\"mode\":\"bulk\",\"dir\":\"%s\",\"bytes\":%llu,\"wall_s\":%.6f,\"mb_s\":%.1f,"
           "\"server_cpu_s\":%.6f,\"cpu_s_per_gb\":%.6f,\"sys_cpu_s\":%.6f,"
           "\"sys_cpu_s_per_gb\":%.6f,\"client_cpu_s\":%.6f}\n",
           o->dir, (unsigned long long)o->bytes, m.wall, (double)o->bytes / 1e6 / m.wall,
           m.server_cpu, m.server_cpu / gb, m.sys_cpu, m.sys_cpu / gb, m.self_cpu);
    return 0;
}

/* ---- connection sets shared by lat and idle ---- */

/* Open n kept-alive connections (handshake + one request each), conc at a time. */
static int open_set(struct lg_client *cl, struct lg_conn *cs, long n, long conc, double deadline)
{
    long next = 0, ready = 0, inflight = 0;
    struct epoll_event evs[512];
    while (ready < n) {
        while (inflight < conc && next < n) {
            struct lg_conn *c = &cs[next++];
            if (lg_conn_open(cl, c, NULL) < 0)
                return lg_fail("open: connection %ld failed", next);
            c->req = REQ_KEEP;
            c->keep = 1;
            inflight++;
        }
        if (lg_now() > deadline)
            return lg_fail("open: %ld of %ld connections ready in time", ready, n);
        int k = epoll_wait(cl->ep, evs, 512, 100);
        for (int i = 0; i < k; i++) {
            struct lg_conn *c = evs[i].data.ptr;
            int st = lg_conn_step(cl, c);
            if (st < 0)
                return lg_fail("open: a connection failed during set-up");
            if (st > 0) {
                ready++;
                inflight--;
                lg_conn_idle(cl, c);
            }
        }
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, long n, double q)
{
    long i = (long)(q * (double)(n - 1) + 0.5);
    return (double)v[i] / 1000.0;
}

/* ---- lat: fixed-rate requests on kept-alive connections ---- */

static int lat_loop(struct lg_client *cl, struct lg_conn *cs, const struct opts *o,
                    uint64_t *lat, long *late)
{
    long sent = 0, got = 0, rr = 0;
    double t0 = lg_now(), deadline = t0 + o->time_limit, step = 1.0 / (double)o->rate;
    struct epoll_event evs[512];
    while (got < o->count) {
        double now = lg_now();
        if (now > deadline) {
            for (long i = 0; i < o->conc; i++)
                if (cs[i].busy)
                    lg_fail("lat: connection %ld stuck: state %d, %zu header bytes, %.3f s ago",
                            i, cs[i].state, cs[i].hlen, now - cs[i].t_req);
            return lg_fail("lat: %ld of %ld responses in time (%ld sent)", got, o->count, sent);
        }
        while (sent < o->count && t0 + (double)sent * step <= now) {
            long tries = 0;
            while (cs[rr].busy && tries++ < o->conc)
                rr = (rr + 1) % o->conc;
            if (cs[rr].busy)
                break; /* every connection busy: send when one frees */
            if (now - (t0 + (double)sent * step) > 0.001)
                (*late)++; /* started over 1 ms behind schedule */
            int st = lg_conn_request(cl, &cs[rr], REQ_KEEP);
            if (st < 0)
                return lg_fail("lat: write failed");
            if (st > 0) { /* the response was already there (preempted after the write) */
                lat[got++] = (uint64_t)((lg_now() - cs[rr].t_req) * 1e9);
                lg_conn_idle(cl, &cs[rr]);
            }
            sent++;
            rr = (rr + 1) % o->conc;
        }
        double wait = t0 + (double)sent * step - lg_now();
        struct timespec ts = {0, 0};
        if (sent < o->count && wait > 0)
            ts.tv_nsec = (long)(wait * 1e9);
        else if (sent >= o->count)
            ts.tv_nsec = 100000000;
        int k = epoll_pwait2(cl->ep, evs, 512, &ts, NULL);
        for (int i = 0; i < k; i++) {
            struct lg_conn *c = evs[i].data.ptr;
            int st = lg_conn_step(cl, c);
            if (st < 0)
                return lg_fail("lat: a connection failed");
            if (st > 0) {
                lat[got++] = (uint64_t)((lg_now() - c->t_req) * 1e9);
                lg_conn_idle(cl, c);
            }
        }
    }
    return 0;
}

static int mode_lat(struct lg_client *cl, const struct opts *o, struct lg_pids *p,
                   struct lg_pids *sp)
{
    struct lg_conn *cs = lg_calloc((size_t)o->conc, sizeof *cs);
    uint64_t *lat = lg_calloc((size_t)o->count, sizeof *lat);
    long late = 0;
    int rc = open_set(cl, cs, o->conc, o->conc, lg_now() + 20);
    struct lg_meter m;
    lg_meter_start(&m, p, sp);
    if (rc == 0)
        rc = lat_loop(cl, cs, o, lat, &late);
    lg_meter_stop(&m, p, sp);
    for (long i = 0; i < o->conc; i++)
        lg_conn_close(cl, &cs[i]);
    free(cs);
    if (rc == 0) {
        qsort(lat, (size_t)o->count, sizeof *lat, cmp_u64);
        printf("{\"mode\":\"lat\",\"count\":%ld,\"rate\":%ld,\"conc\":%ld,\"late\":%ld,"
               "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
               "\"max_us\":%.1f,\"achieved_rate\":%.1f,\"server_cpu_s\":%.6f}\n",
               o->count, o->rate, o->conc, late, pct(lat, o->count, 0.5),
               pct(lat, o->count, 0.9), pct(lat, o->count, 0.99), pct(lat, o->count, 0.999),
               (double)lat[o->count - 1] / 1000.0, (double)o->count / m.wall, m.server_cpu);
    }
    free(lat);
    return rc;
}

/* ---- idle: RSS growth per idle connection ---- */

static int mode_idle(struct lg_client *cl, const struct opts *o, struct lg_pids *p,
                   struct lg_pids *sp)
{
    (void)sp;
    struct hs_run w;
    if (o->warmup > 0 && hs_batch(cl, o, o->warmup, &w) < 0)
        return lg_fail("idle: warm-up failed");
    lg_sleep(o->settle);
    long before = lg_pids_rss_kib(p);
    struct lg_conn *cs = lg_calloc((size_t)o->n, sizeof *cs);
    int rc = open_set(cl, cs, o->n, o->conc, lg_now() + o->time_limit);
    lg_sleep(o->settle);
    long after = lg_pids_rss_kib(p);
    for (long i = 0; i < o->n; i++)
        lg_conn_close(cl, &cs[i]);
    free(cs);
    if (rc < 0 || before < 0 || after < 0)
        return lg_fail("idle: failed");
    printf("{\"mode\":\"idle\",\"n\":%ld,\"rss_before_kib\":%ld,\"rss_after_kib\":%ld,"
           "\"kib_per_conn\":%.3f}\n",
           o->n, before, after, (double)(after - before) / (double)o->n);
    return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"n", 1, 0, 'n'},     {"conc", 1, 0, 'c'},   {"resume", 0, 0, 'r'},
        {"warmup", 1, 0, 'w'}, {"time", 1, 0, 't'},  {"pids", 1, 0, 'p'},
        {"dir", 1, 0, 'd'},   {"bytes", 1, 0, 'b'},  {"rate", 1, 0, 'R'},
        {"count", 1, 0, 'k'}, {"settle", 1, 0, 's'}, {"sys-pids", 1, 0, 'S'},
        {"sni-range", 1, 0, 'N'}, {"sni-seq", 0, 0, 'Q'},
        {0, 0, 0, 0}};
    *o = (struct opts){.n = 1000, .conc = 32, .time_limit = 60, .rate = 2000, .count = 10000,
                       .dir = "down", .bytes = 100000000, .settle = 1.0, .pids = "",
                       .sys_pids = ""};
    if (argc < 4)
        return -1;
    o->mode = argv[1];
    o->addr = argv[2];
    o->sni = argv[3];
    optind = 4;
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'n': o->n = atol(optarg); break;
        case 'c': o->conc = atol(optarg); break;
        case 'r': o->resume = 1; break;
        case 'w': o->warmup = atol(optarg); break;
        case 't': o->time_limit = atof(optarg); break;
        case 'p': o->pids = optarg; break;
        case 'd': o->dir = optarg; break;
        case 'b': o->bytes = strtoull(optarg, NULL, 10); break;
        case 'R': o->rate = atol(optarg); break;
        case 'k': o->count = atol(optarg); break;
        case 's': o->settle = atof(optarg); break;
        case 'S': o->sys_pids = optarg; break;
        case 'N': o->sni_range = atol(optarg); break;
        case 'Q': o->sni_seq = 1; break;
        default: return -1;
        }
    }
    if (o->n < 1 || o->conc < 1 || o->rate < 1 || o->count < 1 || o->time_limit <= 0 ||
        o->time_limit > 900)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse_opts(argc, argv, &o) < 0) {
        fprintf(stderr, "usage: loadgen hs|bulk|lat|idle ADDR SNI [options] (see loadgen.c)\n");
        return 2;
    }
    struct lg_pids p, sp;
    if (lg_pids_parse(&p, o.pids) < 0 || lg_pids_parse(&sp, o.sys_pids) < 0) {
        lg_fail("bad --pids '%s' or --sys-pids '%s'", o.pids, o.sys_pids);
        return 2;
    }
    struct lg_client cl;
    if (lg_client_init(&cl, o.addr, o.sni) < 0)
        return 2;
    cl.sni_range = o.sni_range;
    cl.sni_seq = o.sni_seq;
    /* a different random sample of names every run: an unseeded random() would ask for the
     * same names each time, leaving them warm in the server's CPU caches (or, cold names
     * with a small cache, already loaded) for the next run */
    srandom((unsigned)(getpid() ^ time(NULL)));
    int rc;
    if (!strcmp(o.mode, "hs"))
        rc = mode_hs(&cl, &o, &p, &sp);
    else if (!strcmp(o.mode, "bulk"))
        rc = mode_bulk(&cl, &o, &p, &sp);
    else if (!strcmp(o.mode, "lat"))
        rc = mode_lat(&cl, &o, &p, &sp);
    else if (!strcmp(o.mode, "idle"))
        rc = mode_idle(&cl, &o, &p, &sp);
    else
        rc = lg_fail("unknown mode '%s'", o.mode);
    lg_client_free(&cl);
    return rc < 0 ? 1 : 0;
}
