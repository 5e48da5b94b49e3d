/*
 * backend.c: the plaintext HTTP/1.1 origin every terminator forwards to in bench/run.sh.
 * One thread, epoll, non-blocking sockets, keep-alive and pipelining. It answers
 *   GET /bytes/N   -> 200 with N zero bytes (bulk download)
 *   POST|PUT ...   -> reads and discards the body (Content-Length), then 200 with the small body
 *   anything else  -> 200 with a 13-byte body
 * and closes after the response when the request says "Connection: close". It exists so that
 * the backend costs the same, and as little as possible, for every terminator; it is pinned
 * to the load generator's core. Usage: backend PORT  (127.0.0.1 only; PORT 0 prints the port)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 65536
#define HDR_MAX 8192

enum { ST_HDR, ST_BODY, ST_SEND };

struct bconn {
    int fd;
    int state;
    size_t in_len;         /* bytes buffered in in[] */
    uint64_t body_left;    /* request body bytes still to discard */
    int close_after;       /* "Connection: close" seen on the current request */
    char hdr[256];         /* pending response header */
    size_t hdr_len, hdr_off;
    uint64_t zeros_left;   /* response body bytes still to send from ZEROS */
    const char *small;     /* pending small body (after hdr) */
    char in[HDR_MAX];
};

static char ZEROS[BUF_SIZE];
static const char SMALL[] = "hello, bench\n";
static int g_ep;

static void bc_close(struct bconn *c)
{
    close(c->fd);
    free(c);
}

static int want(struct bconn *c, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = c};
    return epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* Parse one request header block at c->in; returns its length or 0 when incomplete. */
static size_t parse_request(struct bconn *c)
{
    char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t len = (size_t)(end - c->in) + 4;
    *end = '\0';
    uint64_t clen = 0;
    int is_bytes = 0;
    uint64_t nbytes = 0;
    c->close_after = 0;
    if (!strncmp(c->in, "GET /bytes/", 11)) {
        is_bytes = 1;
        nbytes = strtoull(c->in + 11, NULL, 10);
    }
    for (char *l = strstr(c->in, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
        char *h = l + 2;
        if (!strncasecmp(h, "content-length:", 15))
            clen = strtoull(h + 15, NULL, 10);
        else if (!strncasecmp(h, "connection:", 11) && strcasestr(h, "close"))
            c->close_after = 1;
    }
    c->body_left = clen;
    c->hdr_off = 0;
    if (is_bytes) {
        c->zeros_left = nbytes;
        c->small = NULL;
    } else {
        c->zeros_left = 0;
        c->small = SMALL;
    }
    c->hdr_len = (size_t)snprintf(c->hdr, sizeof c->hdr,
                                  "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n%s\r\n",
                                  (unsigned long long)(is_bytes ? nbytes : sizeof SMALL - 1),
                                  c->close_after ? "Connection: close\r\n" : "");
    return len;
}

/* Send what is pending; returns 1 when the response is done, 0 when blocked, -1 on error. */
static int send_pending(struct bconn *c)
{
    while (c->hdr_off < c->hdr_len || c->zeros_left || c->small) {
        struct iovec iov[2];
        int n = 0;
        if (c->hdr_off < c->hdr_len)
            iov[n++] = (struct iovec){c->hdr + c->hdr_off, c->hdr_len - c->hdr_off};
        if (c->zeros_left)
            iov[n++] = (struct iovec){ZEROS, c->zeros_left < BUF_SIZE ? c->zeros_left : BUF_SIZE};
        else if (c->small)
            iov[n++] = (struct iovec){(void *)c->small, strlen(c->small)};
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (w < 0)
            return errno == EAGAIN ? 0 : -1;
        size_t k = (size_t)w;
        size_t h = c->hdr_len - c->hdr_off;
        if (k >= h) {
            c->hdr_off = c->hdr_len;
            k -= h;
        } else {
            c->hdr_off += k;
            continue;
        }
        if (c->zeros_left)
            c->zeros_left -= k;
        else if (c->small) {
            c->small += k;
            if (!*c->small)
                c->small = NULL;
        }
    }
    return 1;
}

/* Discard request body bytes, buffered ones first; 1 when done, 0 blocked, -1 error. */
static int discard_body(struct bconn *c)
{
    static char sink[1 << 18];
    size_t k = c->in_len < c->body_left ? c->in_len : (size_t)c->body_left;
    memmove(c->in, c->in + k, c->in_len - k);
    c->in_len -= k;
    c->body_left -= k;
    while (c->body_left) {
        size_t want_n = sizeof sink < c->body_left ? sizeof sink : (size_t)c->body_left;
        ssize_t r = read(c->fd, sink, want_n);
        if (r == 0)
            return -1;
        if (r < 0)
            return errno == EAGAIN ? 0 : -1;
        c->body_left -= (uint64_t)r;
    }
    return 1;
}

/* Handle readable/writable; returns -1 when the connection must be closed. */
static int on_event(struct bconn *c)
{
    for (;;) {
        if (c->state == ST_BODY) {
            int r = discard_body(c);
            if (r <= 0)
                return r;
            c->state = ST_SEND;
        }
        if (c->state == ST_SEND) {
            int r = send_pending(c);
            if (r < 0)
                return -1;
            if (r == 0)
                return want(c, EPOLLOUT);
            if (c->close_after)
                return -1;
            c->state = ST_HDR;
            if (want(c, EPOLLIN))
                return -1;
        }
        size_t used = parse_request(c);
        if (used) {
            memmove(c->in, c->in + used, c->in_len - used);
            c->in_len -= used;
            c->state = c->body_left ? ST_BODY : ST_SEND;
            continue;
        }
        if (c->in_len == sizeof c->in)
            return -1;
        ssize_t r = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
        if (r == 0)
            return -1;
        if (r < 0)
            return errno == EAGAIN ? 0 : -1;
        c->in_len += (size_t)r;
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: backend PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096)) {
        perror("backend: listen");
        return 1;
    }
    socklen_t al = sizeof a;
    getsockname(ls, (struct sockaddr *)&a, &al);
    printf("listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);
    g_ep = epoll_create1(0);
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(g_ep, EPOLL_CTL_ADD, ls, &le);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(g_ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            struct bconn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct bconn *nc = calloc(1, sizeof *nc);
                    if (!nc) {
                        close(fd);
                        continue;
                    }
                    nc->fd = fd;
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &e);
                }
                continue;
            }
            if (on_event(c) < 0)
                bc_close(c);
        }
    }
}
