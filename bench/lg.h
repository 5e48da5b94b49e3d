/*
 * lg.h: the pieces loadgen.c's modes share: the client TLS context (TLS 1.3,
 * TLS_AES_128_GCM_SHA256, X25519, no verification), one non-blocking client connection as a
 * small state machine (handshake, write a request, read one HTTP/1.1 response), the tickets
 * a connection receives kept for its slot's next connection (one use each), blocking
 * helpers for bulk transfers, and the meters: server CPU from the kernel's per-process CPU
 * clocks (ns), this process's CPU, whole-system busy time from /proc/stat, and RSS.
 */
#ifndef TF_BENCH_LG_H
#define TF_BENCH_LG_H

#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/types.h>
#include <time.h>

#define LG_MAX_PIDS 16

struct lg_client {
    SSL_CTX *ctx;
    struct sockaddr_in addr;
    const char *sni;
    long sni_range; /* > 0: sni is a pattern with one %ld, 1..sni_range picked at random */
    long sni_seq;   /* > 0: instead, 1..sni_range in order (the next number; wraps) */
    int ep;
};

enum { LG_HS = 1, LG_WRITE, LG_READ, LG_IDLE };

struct lg_conn {
    int fd;             /* -1 or 0 when unused (memset) */
    int open;
    SSL *ssl;
    SSL_SESSION *sess; /* the newest ticket received and not yet offered (owned; hs mode with
                        * lg_client_keep_tickets): kept across open/close, taken by the next
                        * connection's offer */
    int state, busy, keep;
    uint32_t ev;
    const char *req;
    double t_req;
    size_t hlen;        /* header bytes buffered in hbuf */
    int hdr_done;
    long long body_need; /* -1: until EOF */
    uint64_t body_got;
    char hbuf[2048];
};

struct lg_pids {
    int n;
    pid_t pid[LG_MAX_PIDS];
    clockid_t clk[LG_MAX_PIDS];
};

/* sys_cpu: the whole benchmark's CPU: server + this process + the --sys-pids (the backend)
 * from their CPU clocks, plus all cores' irq and softirq time from /proc/stat (10 ms ticks),
 * so that other work on a shared machine does not count. */
struct lg_meter {
    double wall, server_cpu, self_cpu, sys_cpu, irq_cpu;
};

double lg_now(void);
void lg_sleep(double s);
int lg_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *lg_calloc(size_t n, size_t size);

int lg_pids_parse(struct lg_pids *p, const char *list);
double lg_pids_cpu(const struct lg_pids *p);
long lg_pids_rss_kib(const struct lg_pids *p);
void lg_meter_start(struct lg_meter *m, const struct lg_pids *p, const struct lg_pids *sys);
void lg_meter_stop(struct lg_meter *m, const struct lg_pids *p, const struct lg_pids *sys);

int lg_client_init(struct lg_client *cl, const char *addr, const char *sni);
/* From now on every ticket a connection receives replaces its slot's sess (newest kept), as
 * a browser keeps them: the caller offers each one once and frees what is left. */
void lg_client_keep_tickets(struct lg_client *cl);
void lg_client_free(struct lg_client *cl);

int lg_conn_open(struct lg_client *cl, struct lg_conn *c, SSL_SESSION *sess);
int lg_conn_step(struct lg_client *cl, struct lg_conn *c);
/* Start a request; returns like lg_conn_step (1: the response is already complete). */
int lg_conn_request(struct lg_client *cl, struct lg_conn *c, const char *req);
void lg_conn_idle(struct lg_client *cl, struct lg_conn *c);
void lg_conn_close(struct lg_client *cl, struct lg_conn *c);

int lg_conn_block_handshake(struct lg_client *cl, struct lg_conn *c, double deadline);
int lg_conn_write_all(struct lg_conn *c, const char *buf, size_t len, double deadline);
int lg_conn_write_zeros(struct lg_conn *c, uint64_t bytes, double deadline);
int lg_conn_read_response(struct lg_conn *c, uint64_t *body, double deadline);

#endif
