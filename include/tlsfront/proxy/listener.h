/*
 * listener.h: listening sockets. For each --listen address the server makes one socket per
 * worker, all bound to the same address with SO_REUSEPORT so the kernel spreads accepts
 * over the workers. Port 0 binds the first socket to a kernel-chosen port and the others to
 * that same port (tests rely on it; the chosen port is logged).
 */
#ifndef TF_LISTENER_H
#define TF_LISTENER_H

#include "tlsfront/config/config.h"

/* Create n sockets for l, bound and non-blocking (not yet listening). fds[n] receives them.
 * Returns 0, or a negative errno-style code with err filled; no socket is left open then. */
int tf_listener_bind(const struct tf_listen *l, int n, int *fds, char *err, size_t errlen);

/* "ADDR:PORT" of a bound socket, for the log. */
void tf_listener_name(int fd, char *out, size_t cap);

#endif
