/*
 * conn_end.h: why a connection ended, the access log's end= value, and the access log's
 * fields. One table each: TF_CONN_END_LIST (the data path's own reasons, then every
 * refusal of a held handshake from base/outcome.h under the same name) and
 * TF_ACCESS_FIELD_LIST (the fields in the order they are written). docs/operations.md's
 * reference is printed from these tables (`tlsfront --list-end-reasons`), and
 * tests/e2e/test_docs_reference.py checks that it still matches.
 */
#ifndef TF_CONN_END_H
#define TF_CONN_END_H

#include "tlsfront/base/outcome.h"

/* X(ENUM_SUFFIX, "name", "meaning"), the data path's own reasons. */
#define TF_CONN_END_OWN_LIST(X)                                                                    \
    X(DONE, "done", "both directions finished normally")                                           \
    X(ACCEPT_FAILED, "accept_failed", "accepting the socket failed")                               \
    X(READ_FAILED, "read_failed", "reading from the client could not start")                       \
    X(WRITE_FAILED, "write_failed", "a write could not be queued")                                 \
    X(PROXY_SOURCE_DENIED, "proxy_source_denied",                                                  \
      "a ,proxy listener's peer is not in --proxy-from")                                           \
    X(PROXY_HEADER_INCOMPLETE, "proxy_header_incomplete",                                          \
      "the client left before its PROXY header was complete")                                      \
    X(PROXY_HEADER_TIMEOUT, "proxy_header_timeout",                                                \
      "no complete PROXY header within the handshake timeout")                                     \
    X(PROXY_HEADER_TOO_BIG, "proxy_header_too_big", "the PROXY header is over the size cap")       \
    X(PROXY_HEADER_INVALID, "proxy_header_invalid", "not a valid PROXY header")                    \
    X(TLS_SETUP_FAILED, "tls_setup_failed", "the TLS state could not be created")                  \
    X(CLIENT_EOF_IN_HANDSHAKE, "client_eof_in_handshake",                                          \
      "the client closed during the handshake")                                                    \
    X(CLIENT_READ_ERROR, "client_read_error", "a read error from the client in the handshake")     \
    X(HANDSHAKE_TIMEOUT, "handshake_timeout", "no finished handshake within the timeout")          \
    X(HANDSHAKE_FAILED, "handshake_failed", "the TLS handshake failed (alert or bad input)")       \
    X(NO_SNI, "no_sni", "no SNI, and no --default-cert")                                           \
    X(BAD_SNI_EXTENSION, "bad_sni_extension", "the SNI extension is malformed")                    \
    X(INVALID_SNI, "invalid_sni", "the SNI is not a valid host name")                              \
    X(UNKNOWN_NAME, "unknown_name",                                                                \
      "no certificate for the SNI (nor --default-cert), and no on-demand issuance for it")         \
    X(HOLD_LIMIT, "hold_limit", "too many held handshakes (--max-held, --max-held-per-ip)")        \
    X(HOLD_TIMEOUT, "hold_timeout", "no certificate for the held handshake within --hold-timeout") \
    X(HOLD_OVERFLOW, "hold_overflow",                                                              \
      "a held client sent more than a record plus 512 bytes after its ClientHello")                \
    X(CERTIFICATE_ERROR, "certificate_error", "the certificate could not be installed")            \
    X(CERTIFICATE_MISSING_AFTER_ISSUE, "certificate_missing_after_issue",                          \
      "the hold was answered ready but the store has no certificate for the name")                 \
    X(ACME_CHALLENGE, "acme_challenge", "a TLS-ALPN-01 validation handshake, answered")            \
    X(NO_ROUTE, "no_route", "no route for the name and no default backend")                        \
    X(BACKEND_CONNECT_FAILED, "backend_connect_failed",                                            \
      "the backend could not be resolved or connected (mode=http: 502)")                           \
    X(BACKEND_CONNECT_TIMEOUT, "backend_connect_timeout",                                          \
      "the backend connect timed out (mode=http: 502)")                                            \
    X(PROXY_ENCODE_FAILED, "proxy_encode_failed",                                                  \
      "the PROXY header for the backend could not be encoded")                                     \
    X(IDLE_TIMEOUT, "idle_timeout", "no byte either way within the idle timeout")                  \
    X(TLS_ERROR, "tls_error", "a TLS error from the client after the handshake")                   \
    X(TLS_WRITE_ERROR, "tls_write_error", "encrypting data for the client failed")                 \
    X(CLIENT_WRITE_ERROR, "client_write_error", "writing to the client failed")                    \
    X(BACKEND_WRITE_ERROR, "backend_write_error", "writing to the backend failed")                 \
    X(BACKEND_READ_ERROR, "backend_read_error", "reading from the backend failed")                 \
    X(BACKEND_READ_FAILED, "backend_read_failed", "reading from the backend could not start")      \
    X(BACKEND_BAD_RESPONSE, "backend_bad_response",                                                \
      "mode=http: the backend's response is malformed (502 when no byte of it went out)")          \
    X(BACKEND_CLOSED, "backend_closed",                                                            \
      "mode=http: the backend closed with requests unanswered (502)")                              \
    X(HTTP_400, "http_400", "mode=http: a bad request, answered 400")                              \
    X(HTTP_405, "http_405", "mode=http: CONNECT on a route without connect=on, answered 405")      \
    X(HTTP_431, "http_431", "mode=http: request headers too large, answered 431")                  \
    X(GRACE_EXPIRED, "grace_expired", "still open when the drain's --grace ran out")               \
    X(SHUTDOWN, "shutdown", "closed by a stop without drain")

#define TF_CONN_END_LIST(X) TF_CONN_END_OWN_LIST(X) TF_OUTCOME_FAIL_LIST(X)

enum tf_conn_end {
    TF_CONN_END_NONE = 0, /* not ended yet; written "-" */
#define TF_CONN_END_ENUM_(n, s, d) TF_CONN_END_##n,
    TF_CONN_END_LIST(TF_CONN_END_ENUM_)
#undef TF_CONN_END_ENUM_
    TF_CONN_END_COUNT
};

/* X(ENUM_SUFFIX, "key", "meaning"): the access log's fields, in order. */
#define TF_ACCESS_FIELD_LIST(X)                                                                    \
    X(CONN, "conn", "connection id (hex), as in the event log's conn=")                            \
    X(CLIENT, "client", "client address ip:port (the PROXY header's source when present)")         \
    X(PROXY_PEER, "proxy_peer", "the load balancer's address on a ,proxy listener, else -")        \
    X(SNI, "sni", "the SNI, normalised, or -")                                                     \
    X(ALPN, "alpn", "the negotiated ALPN protocol, or -")                                          \
    X(TLS, "tls", "the TLS version, or - when no handshake finished")                              \
    X(RESUMED, "resumed", "1 if the session was resumed, else 0")                                  \
    X(ROUTE, "route", "the route pattern that matched, or -")                                      \
    X(BACKEND, "backend", "the backend host:port, or -")                                           \
    X(BYTES_IN, "bytes_in", "plaintext bytes from the client")                                     \
    X(BYTES_OUT, "bytes_out", "plaintext bytes to the client")                                     \
    X(DURATION_MS, "duration_ms", "from accept to close, in milliseconds")                         \
    X(REQUESTS, "requests", "mode=http: requests forwarded (- on other routes)")                   \
    X(END, "end", "why it ended: one of the end reasons")

enum tf_access_field {
#define TF_ACCESS_ENUM_(n, s, d) TF_ACCESS_##n,
    TF_ACCESS_FIELD_LIST(TF_ACCESS_ENUM_)
#undef TF_ACCESS_ENUM_
    TF_ACCESS_FIELD_COUNT
};

/* The field's key ("bytes_in"), a static string. */
const char *tf_access_field_name(enum tf_access_field f);
/* The reason's access log name ("hold_overflow"), a static string; "-" for NONE. */
const char *tf_conn_end_name(enum tf_conn_end e);
/* The end= value of a held handshake failed with outcome o: the refusal's own name, and
 * issue_failed for an outcome that is no refusal. */
enum tf_conn_end tf_conn_end_from_outcome(enum tf_outcome o);

#endif
