/*
 * listener.c: binding listening sockets with SO_REUSEPORT (libuv 1.44 cannot set it, so the
 * sockets are made here and handed to uv_tcp_open by the workers). ":PORT" binds [::] with
 * IPV6_V6ONLY off: one socket serves IPv4 and IPv6. Runs at start-up only.
 *
 * SO_REUSEPORT would let a second tlsfront on the same address silently split the traffic
 * with the first, so before binding, tf_listener_probe binds a plain socket (SO_REUSEADDR
 * only) to the address: the kernel refuses it while any socket listens there, tlsfront or
 * not, and a socket in TIME_WAIT does not count. Only --takeover skips the probe.
 */
#include "tlsfront/proxy/listener.h"
#include "tlsfront/base/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int bind_one(const struct sockaddr_storage *ss, bool any, int *out)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1, zero = 0;
    socklen_t len = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        (ss->ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, any ? &zero : &one, sizeof one) != 0) ||
        bind(fd, (const struct sockaddr *)ss, len) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    *out = fd;
    return 0;
}

int tf_listener_probe(const struct tf_listen *l, char *err, size_t errlen)
{
    const struct sockaddr_storage *ss = &l->addr;
    unsigned port = ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
                                                    : ((const struct sockaddr_in *)ss)->sin_port);
    if (port == 0)
        return 0; /* a kernel-chosen port is never in use */
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "--listen %s: %s", l->spec, strerror(errno));
        return -errno;
    }
    int one = 1, zero = 0, r = 0;
    socklen_t len = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (ss->ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, l->any ? &zero : &one, sizeof one) != 0) ||
        bind(fd, (const struct sockaddr *)ss, len) != 0)
        r = -errno;
    close(fd);
    if (r == -EADDRINUSE)
        snprintf(err, errlen,
                 "--listen %s: another process already listens on this address (a running "
                 "tlsfront? add --takeover to share it while upgrading, then stop the old one)",
                 l->spec);
    else if (r != 0)
        snprintf(err, errlen, "--listen %s: %s%s", l->spec, strerror(-r),
                 tf_listener_bind_hint(r, (const struct sockaddr *)ss));
    return r;
}

const char *tf_listener_bind_hint(int err, const struct sockaddr *addr)
{
    unsigned port = 0;
    if (addr->sa_family == AF_INET)
        port = ntohs(((const struct sockaddr_in *)addr)->sin_port);
    else if (addr->sa_family == AF_INET6)
        port = ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
    if (err != -EACCES || port == 0 || port >= 1024)
        return "";
    return " (ports below 1024 need root or CAP_NET_BIND_SERVICE: "
           "AmbientCapabilities=CAP_NET_BIND_SERVICE under systemd, "
           "setcap cap_net_bind_service=+ep on the binary, or a port of 1024 or more)";
}

int tf_listener_bind(const struct tf_listen *l, int n, int *fds, char *err, size_t errlen)
{
    struct sockaddr_storage ss = l->addr;
    for (int i = 0; i < n; i++)
        fds[i] = -1;
    for (int i = 0; i < n; i++) {
        int r = bind_one(&ss, l->any, &fds[i]);
        if (r != 0) {
            snprintf(err, errlen, "--listen %s: %s%s", l->spec, strerror(-r),
                     tf_listener_bind_hint(r, (const struct sockaddr *)&ss));
            for (int j = 0; j < i; j++)
                close(fds[j]);
            return r;
        }
        if (i == 0) {
            /* Port 0: every further socket joins the port the kernel chose for the first. */
            socklen_t len = sizeof ss;
            getsockname(fds[0], (struct sockaddr *)&ss, &len);
        }
    }
    return 0;
}

void tf_listener_name(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        snprintf(out, cap, "?");
        return;
    }
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        snprintf(out, cap, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        snprintf(out, cap, "%s:%u", ip, ntohs(a->sin_port));
    }
}
