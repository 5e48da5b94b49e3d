/*
 * conn.h: what the rest of tlsfront may do with a proxied connection: accept one on a
 * worker, close it, hold its handshake for a certificate and resume it, and format a peer
 * address. The connection's insides (pump, backend, PROXY protocol, mode=http) stay in
 * src/proxy/conn_int.h.
 */
#ifndef TF_CONN_H
#define TF_CONN_H

#include "tlsfront/proxy/conn_end.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

struct tf_conn;
struct tf_worker;

/* Accept one connection from listener; on any failure the connection is closed and logged. */
void tf_conn_accept(struct tf_worker *w, uv_stream_t *listener);
/* Begin teardown (idempotent). reason: the access log's end= unless one was set before. */
void tf_conn_close(struct tf_conn *c, enum tf_conn_end reason);

/* Hold the handshake: park c on the worker's held list and ask the control loop for a
 * certificate for c->sni. Called from the ClientHello callback, which then returns "retry". */
void tf_conn_hold(struct tf_conn *c);
/* The control loop answered for a held connection: resume the handshake (ok), or fail it with
 * alert (an SSL_AD_* code) and reason, the access log's end=. */
void tf_conn_unhold(struct tf_conn *c, bool ok, int alert, enum tf_conn_end reason);

/* "ip:port"/"[ip]:port" and the bare ip of an AF_INET/AF_INET6 address. */
void tf_conn_addr_text(const struct sockaddr_storage *ss, char *peer, size_t peer_cap, char *ip,
                       size_t ip_cap);

#endif
