/*
 * http_client.h: one asynchronous HTTP/1.1 client for everything in tlsfront that speaks
 * HTTP (ACME, the --ask gate). libuv TCP, OpenSSL for https (certificate and hostname
 * verification against the system store plus an optional extra CA file), responses parsed
 * with llhttp (fixed-length, chunked and close-delimited bodies, split across any read
 * boundary), keep-alive connection reuse per origin, a per-request timeout, a body size cap,
 * DNS through uv_getaddrinfo. Lives on one loop and must only be used from that loop's thread.
 * Never blocks the loop.
 */
#ifndef TF_HTTP_CLIENT_H
#define TF_HTTP_CLIENT_H

#include "tlsfront/proto/http_parse.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/*
 * Completion: err is 0 with resp set for any HTTP status (the caller judges the status), or a
 * negative code (UV_E* for DNS/connect/IO, TF_ETIMEDOUT, TF_ETOOBIG, TF_EPROTO for a response
 * llhttp rejects, TF_ETLS for a handshake or verification failure, UV_ECANCELED) with resp NULL.
 * Called exactly once per accepted request, always from a loop callback (never from inside
 * tf_httpc_request()).
 */
typedef void (*tf_httpc_cb)(int err, const struct tf_http_response *resp, void *arg);

struct tf_httpc;
struct tf_httpc_req;

/* Create a client on loop. extra_ca_file may be NULL. Returns NULL with err filled. */
struct tf_httpc *tf_httpc_new(uv_loop_t *loop, const char *extra_ca_file, char *err,
                                          size_t errlen);

/* Start a request. Returns 0 and (optionally) a handle for tf_httpc_cancel(), or a negative
 * code for bad arguments (malformed URL, CR/LF in a header, bad method: TF_EINVAL; the client
 * is closing: TF_ECLOSED); on failure cb is never called. A request that fails on a reused
 * keep-alive connection before any response byte arrived is retried once on a fresh one. */
int tf_httpc_request(struct tf_httpc *c, const struct tf_http_request *req, tf_httpc_cb cb,
                    void *arg, struct tf_httpc_req **handle);

/* Cancel a request in flight: its callback runs once with UV_ECANCELED (from a loop callback).
 * The handle is invalid after the callback. */
void tf_httpc_cancel(struct tf_httpc_req *h);

/* Cancel every request (their callbacks run with UV_ECANCELED), close pooled connections and
 * free the client once all its handles are closed; done (may be NULL) is called then. */
void tf_httpc_close(struct tf_httpc *c, void (*done)(void *arg), void *arg);

#endif
