/*
 * listener.h: listening sockets. For each --listen address the server makes one socket per
 * worker, all bound to the same address with SO_REUSEPORT so the kernel spreads accepts
 * over the workers. Port 0 binds the first socket to a kernel-chosen port and the others to
 * that same port (tests rely on it; the chosen port is logged).
 */
#ifndef TF_LISTENER_H
#define TF_LISTENER_H

#include "tlsfront/config/config.h"

/* Whether l's address is free: binds a socket without SO_REUSEPORT and closes it. Returns 0
 * (free, or port 0), -EADDRINUSE when some process listens there (a running tlsfront would
 * otherwise share the port through SO_REUSEPORT), or another negative errno; err is filled
 * on failure. Two instances started in the same instant may both pass: the check is for
 * operators' slips, not a lock. */
int tf_listener_probe(const struct tf_listen *l, char *err, size_t errlen);

/* Create n sockets for l, bound and non-blocking (not yet listening). fds[n] receives them.
 * Returns 0, or a negative errno-style code with err filled; no socket is left open then. */
int tf_listener_bind(const struct tf_listen *l, int n, int *fds, char *err, size_t errlen);

/* The advice to append to a bind failure: for EACCES on a port below 1024, how to get
 * CAP_NET_BIND_SERVICE (text starting with a space); otherwise "". err is a negative errno
 * (libuv codes are the same on Linux); addr is the address that failed. */
const char *tf_listener_bind_hint(int err, const struct sockaddr *addr);

/* "ADDR:PORT" of a bound socket, for the log. */
void tf_listener_name(int fd, char *out, size_t cap);

#endif
