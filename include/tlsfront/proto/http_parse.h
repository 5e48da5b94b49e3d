/*
 * http_parse.h: HTTP/1.1 as data, for the outbound client (tlsfront/net/http_client.h) and
 * its tests: the response parser (llhttp), request serialisation, URL splitting, header
 * lookup and Retry-After. No I/O and no state beyond the objects it returns.
 */
#ifndef TF_HTTP_PARSE_H
#define TF_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tf_http_header {
    char *name;   /* as received; compare case-insensitively */
    char *value;
};

/* A complete response. Owned by the client; valid only during the callback. */
struct tf_http_response {
    int status;
    struct tf_http_header *headers;
    int n_headers;
    char *body;        /* NUL-terminated for convenience (not counted in body_len) */
    size_t body_len;
};

/* First header with this name (case-insensitive), or NULL. */
const char *tf_http_response_header(const struct tf_http_response *r, const char *name);

struct tf_http_request {
    const char *method;               /* "GET", "POST", "HEAD" */
    const char *url;                  /* http:// or https://, absolute */
    const char *content_type;         /* NULL = no body header */
    const void *body;                 /* copied by tf_httpc_request() */
    size_t body_len;
    const struct tf_http_header *headers; /* extra request headers, copied */
    int n_headers;
    uint32_t timeout_ms;              /* whole request incl. DNS/connect; 0 = 30000 */
    size_t max_body;                  /* 0 = 1 MiB; larger bodies fail with TF_ETOOBIG */
};

/*
 * The response parser on its own (llhttp), for the client and its tests. Feed
 * any split of the bytes; tf_http_parser_done() is true once a whole response was parsed.
 */
struct tf_http_parser;
struct tf_http_parser *tf_http_parser_new(size_t max_body, bool head_request);
/* Returns 0, or TF_EPROTO / TF_ETOOBIG. */
int tf_http_parser_feed(struct tf_http_parser *p, const char *data, size_t len);
/* Signal EOF (for close-delimited bodies). Returns 0 or TF_EPROTO if the response is cut. */
int tf_http_parser_eof(struct tf_http_parser *p);
bool tf_http_parser_done(const struct tf_http_parser *p);
/* The parsed response (borrowed from p), valid once done. keep_alive tells if the connection
 * may be reused. */
const struct tf_http_response *tf_http_parser_response(const struct tf_http_parser *p,
                                                       bool *keep_alive);
void tf_http_parser_free(struct tf_http_parser *p);

/*
 * An absolute http(s) URL split for the client (and its tests). tf_http_url_parse() accepts
 * "http://" and "https://" (scheme case-insensitive), a host name, an IPv4 literal or a
 * bracketed IPv6 literal, an optional port, and a path with query; it drops the fragment and
 * rejects user info, empty hosts, bad ports and control or space characters with TF_EINVAL.
 * On success the strings belong to *out; release them with tf_http_url_clear().
 */
struct tf_http_url {
    bool tls;          /* https */
    bool host_is_ip;   /* an IPv4 or IPv6 literal: no SNI, IP address check */
    char *host;        /* lower-cased; an IPv6 literal without its brackets */
    uint16_t port;     /* explicit, or 80 / 443 */
    char *path;        /* path and query, at least "/" */
};
int tf_http_url_parse(const char *url, struct tf_http_url *out);
void tf_http_url_clear(struct tf_http_url *u);

/* Serialise rq for u: request line, Host (with the port unless default), User-Agent,
 * Content-Type, Content-Length (for a body or POST/PUT/PATCH), rq's extra headers, the body.
 * Returns 0 with *out (caller frees) and *out_len, or TF_EINVAL for a method that is not a
 * token, CR/LF in a header, an extra Host/Content-Length/Transfer-Encoding header, or a body
 * over 1 GiB. */
int tf_http_request_serialize(const struct tf_http_request *rq, const struct tf_http_url *u,
                              char **out, size_t *out_len);

/* Parse a Retry-After value (delta-seconds or an HTTP-date) relative to now (unix seconds).
 * Returns the delay in seconds (>= 0), or -1 when absent/unparseable. */
int64_t tf_http_retry_after(const char *value, int64_t now);

/* The Retry-After of a response (r may be NULL) against the real clock, not tf_wall_now():
 * an HTTP-date is the server's clock, not a test's offset. Seconds, or -1. */
int64_t tf_http_response_retry_after(const struct tf_http_response *r);

#endif
