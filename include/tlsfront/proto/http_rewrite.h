/*
 * http_rewrite.h: the request rewriter of HTTP-aware routes (mode=http). A pure,
 * streaming transformer of the client-to-backend byte stream of one HTTP/1.x connection: it
 * parses requests with llhttp (no lenient flags) plus stricter checks of its own, re-emits each
 * request head with X-Forwarded-For/-Proto/-Host (and optionally Forwarded) set, and passes
 * bodies (Content-Length or chunked, framing and trailers included) through byte for byte.
 * No I/O, no logging, no clock: the caller writes what lands in the sink and decides what to
 * log. Also small helpers for the other direction: canned error pages and a status-line
 * reader.
 */
#ifndef TF_HTTP_REWRITE_H
#define TF_HTTP_REWRITE_H

#include <stdbool.h>
#include <stddef.h>

#define TF_HTTP_RW_DEFAULT_MAX_HEADER (32 * 1024)
/* Header lines per request head (beyond: 431). */
#define TF_HTTP_RW_MAX_FIELDS 256
/* Bytes held after an Upgrade/CONNECT request until the caller decides (beyond: 400). */
#define TF_HTTP_RW_HOLD_MAX (64 * 1024)

/* tf_http_rw_feed(): the last request was an Upgrade (e.g. WebSocket) or CONNECT request; it
 * has been forwarded completely and any bytes after it are held. */
#define TF_HTTP_RW_UPGRADE 1

/* A growable output buffer. Owned by the caller, who may take data (set it NULL and len/cap
 * to 0) or reset len to 0 between calls; the rewriter only appends (tf_realloc). */
struct tf_buf_sink {
    char *data;
    size_t len, cap;
};
void tf_buf_sink_append(struct tf_buf_sink *s, const void *p, size_t n);
void tf_buf_sink_free(struct tf_buf_sink *s); /* frees data and zeroes the sink */

struct tf_http_rw_opts {
    const char *client_addr; /* the client's IP as text ("192.0.2.1", "2001:db8::1");
                              * NULL writes "unknown" (RFC 7239 section 6.1) */
    const char *host;        /* the SNI: X-Forwarded-Host when a request has no Host */
    const char *proto;       /* NULL means "https" */
    bool trust_xff;          /* append to an incoming X-Forwarded-For/Forwarded, else replace */
    bool add_forwarded;      /* also write RFC 7239 Forwarded */
    bool allow_connect;      /* forward CONNECT (else refused with 405: a 2xx would turn
                              * the connection into a tunnel nobody checks) */
    bool keep_backend;       /* the backend connection may outlive the client's (a keep-alive
                              * pool): a "close" option in the client's Connection field is
                              * the client's alone (RFC 9110 section 7.6.1) and is not
                              * forwarded; the caller ends the client's connection after the
                              * response (tf_http_rw_closed()) */
    size_t max_header_bytes; /* request line + header fields; 0 = the default (32 KiB) */
};

/* Copies opts (strings included); never returns NULL (allocation aborts). */
struct tf_http_rw *tf_http_rw_new(const struct tf_http_rw_opts *opts);
void tf_http_rw_free(struct tf_http_rw *rw);

/* Consumes all of data (len may be 0) and appends what must go to the backend to out.
 * Returns 0 to go on, TF_HTTP_RW_UPGRADE (see above; the caller stops reading the client
 * until the backend's response decides, then calls tf_http_rw_set_tunnel() or
 * tf_http_rw_upgrade_refused()), or a negative code after which the connection must close:
 * TF_EPROTO (malformed or smuggling attempt, status 400; CONNECT without allow_connect,
 * status 405) or TF_ETOOBIG (header block over the cap, status 431); the error is sticky. A request head is emitted only once complete
 * and valid; on error, output of the bad request appended during this call is withdrawn
 * from out (out->len goes back), so a bad request that arrives in one read never reaches
 * the backend. Body bytes of a valid head already emitted by earlier calls cannot be
 * withdrawn: the caller closes the backend connection, which sees a truncated body.
 * After a request with "Connection: close" (or HTTP/1.0 without keep-alive) any further
 * bytes are dropped (RFC 9112 section 9.6). */
int tf_http_rw_feed(struct tf_http_rw *rw, const char *data, size_t len, struct tf_buf_sink *out);

/* After an error: the status to answer (400, 405 or 431) and a short reason for the log. */
int tf_http_rw_status(const struct tf_http_rw *rw);
const char *tf_http_rw_reason(const struct tf_http_rw *rw);
/* Request heads emitted so far on this connection (responses the caller should expect). */
unsigned long tf_http_rw_requests(const struct tf_http_rw *rw);
/* Whether a request has been partly forwarded to the backend (its head went out in an
 * earlier call, its body is not complete). After an error this means the backend may already
 * be answering it: the caller must not send the error page in its place, just close. */
bool tf_http_rw_mid_request(const struct tf_http_rw *rw);
/* Whether the client's last request ended its side of the connection ("Connection: close",
 * or HTTP/1.0 without keep-alive), completely read: nothing more will be forwarded. */
bool tf_http_rw_closed(const struct tf_http_rw *rw);

/* The backend accepted the upgrade (101, or 2xx to CONNECT): the held bytes are appended
 * to out and from now on feed passes everything through verbatim. */
void tf_http_rw_set_tunnel(struct tf_http_rw *rw, struct tf_buf_sink *out);
/* The backend answered the upgrade request with an ordinary response: parsing resumes with
 * the held bytes; returns what tf_http_rw_feed() returns for them. */
int tf_http_rw_upgrade_refused(struct tf_http_rw *rw, struct tf_buf_sink *out);

/* A complete "Connection: close" response for 400, 405, 408, 431, 502, 503 or 504 (other codes
 * are written as 500), small plain-text body. Returns its length, or 0 if cap is too small. */
size_t tf_http_error_response(int status, char *out, size_t cap);

/* The status code of a response from the start of its status line ("HTTP/1.1 101 ...").
 * Returns 100..999, 0 if more bytes are needed, TF_EPROTO if it is not an HTTP/1.x status
 * line. */
int tf_http_resp_status(const char *data, size_t len);

#endif
