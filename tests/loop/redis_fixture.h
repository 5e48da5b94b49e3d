/*
 * redis_fixture.h: a real redis-server for the Redis store's loop test, started by the test
 * on a loopback port it picked (bind port 0, read it back, close it, start redis on it;
 * retried with a new port if redis cannot bind it), with a password, no persistence and a
 * private directory; plus a plain blocking hiredis connection for raw checks. With fx->tls
 * naming a directory that holds redis.crt, redis.key and ca.crt, the server also listens
 * for TLS on fx->tls_port (picked the same way; clients need no certificate), while the
 * plain port stays for the raw checks; and loop_for, which runs a loop for a while. Kills
 * only the process it started. Test-only.
 */
#ifndef TF_REDIS_FIXTURE_H
#define TF_REDIS_FIXTURE_H

#include "tf_test.h"

#include <hiredis/hiredis.h>
#include <uv.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#define REDIS_PASS "s3cret pass"
#define REDIS_URL_PASS "s3cret%20pass"

struct redis_fixture {
    pid_t pid;
    int port;
    char dir[256];
    char tls[256]; /* "" for no TLS port */
    int tls_port;
};

static inline int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* A blocking connection, or NULL. */
static inline redisContext *raw_connect(int port)
{
    struct timeval tv = {.tv_sec = 2};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        redisFree(c);
        return NULL;
    }
    redisReply *r = redisCommand(c, "AUTH %s", REDIS_PASS);
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    r = ok ? redisCommand(c, "SELECT 3") : NULL; /* the database the store's URL names */
    ok = r && r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    if (!ok) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static inline void on_sleep(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
}

/* Let the loop run for ms (the store's own timers included). */
static inline void loop_for(uv_loop_t *loop, uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, on_sleep, ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
}

static inline void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Start redis on fx->port (pick one when 0); true once it answers PING (bounded 10 s). */
static inline bool redis_start(struct redis_fixture *fx, bool pick)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        if (pick)
            fx->port = free_port();
        if (pick && fx->tls[0])
            fx->tls_port = free_port();
        char port[16], tls_port[16], cert[300], key[300], ca[300];
        snprintf(port, sizeof(port), "%d", fx->port);
        snprintf(tls_port, sizeof(tls_port), "%d", fx->tls_port);
        snprintf(cert, sizeof(cert), "%s/redis.crt", fx->tls);
        snprintf(key, sizeof(key), "%s/redis.key", fx->tls);
        snprintf(ca, sizeof(ca), "%s/ca.crt", fx->tls);
        const char *argv[32] = {"redis-server", "--port", port, "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir", fx->dir,
                                "--requirepass", REDIS_PASS, "--loglevel", "warning"};
        int argc = 15;
        if (fx->tls[0]) {
            const char *more[] = {"--tls-port", tls_port, "--tls-cert-file", cert,
                                  "--tls-key-file", key, "--tls-ca-cert-file", ca,
                                  "--tls-auth-clients", "no"};
            for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++)
                argv[argc++] = more[i];
        }
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            execvp("redis-server", (char *const *)argv);
            _exit(127);
        }
        fx->pid = pid;
        /* Wait for PING to answer, or for the server to exit (port taken). */
        for (int i = 0; i < 200; i++) {
            redisContext *c = raw_connect(fx->port);
            if (c) {
                redisFree(c);
                return true;
            }
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid) {
                fx->pid = 0;
                break;
            }
            sleep_ms(50);
        }
        if (fx->pid) {
            kill(fx->pid, SIGKILL);
            waitpid(fx->pid, NULL, 0);
            fx->pid = 0;
        }
        if (!pick)
            sleep_ms(200); /* same port wanted: give the kernel a moment */
    }
    fprintf(stderr, "redis_start: redis-server did not come up\n");
    return false;
}

static inline void redis_stop(struct redis_fixture *fx)
{
    if (fx->pid > 0) {
        kill(fx->pid, SIGCONT);
        kill(fx->pid, SIGKILL);
        waitpid(fx->pid, NULL, 0);
    }
    fx->pid = 0;
}

/* The raw value of a Redis key (NULL when missing); *len its length. Caller frees. */
static inline char *raw_get(int port, const char *key, size_t *len)
{
    redisContext *c = raw_connect(port);
    char *out = NULL;
    if (!c)
        return NULL;
    redisReply *r = redisCommand(c, "GET %s", key);
    if (r && r->type == REDIS_REPLY_STRING) {
        out = malloc(r->len + 1);
        memcpy(out, r->str, r->len);
        out[r->len] = '\0';
        *len = r->len;
    }
    freeReplyObject(r);
    redisFree(c);
    return out;
}

static inline long long raw_int(int port, const char *fmt, const char *key)
{
    redisContext *c = raw_connect(port);
    long long v = -9999;
    if (!c)
        return v;
    redisReply *r = redisCommand(c, fmt, key);
    if (r && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

static inline void raw_set(int port, const char *key, const char *val, size_t len)
{
    redisContext *c = raw_connect(port);
    if (!c)
        return;
    freeReplyObject(redisCommand(c, "SET %s %b", key, val, len));
    redisFree(c);
}

#endif
