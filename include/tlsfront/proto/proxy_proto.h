/*
 * proxy_proto.h: the PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2).
 * Pure encoder and incremental parser: no I/O, no logging, no clock, no allocation. The
 * connection code prepends an encoded header before the first byte sent to a backend
 * ("proxy=v1|v2" routes) and, on listeners marked ",proxy", parses the header a load balancer
 * sends before anything else.
 */
#ifndef TF_PROXY_PROTO_H
#define TF_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* A version 1 header is at most 107 bytes including CRLF (spec section 2.1). */
#define TF_PROXY_V1_MAX_LEN 107
/* Default cap on a whole version 2 header (16-byte fixed part + address block + TLVs). */
#define TF_PROXY_V2_DEFAULT_CAP 4096
/* Room tf_proxy_v2_encode() needs at most with every TLV (authority <= 255, strings <= 255). */
#define TF_PROXY_V2_ENCODE_MAX (16 + 36 + 3 + 255 + 3 + 5 + 2 * (3 + 255))

/* The 12-byte version 2 signature. */
#define TF_PROXY_V2_SIG "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"
#define TF_PROXY_V2_SIG_LEN 12

/* TLV types and SSL sub-TLV types (spec section 2.2). */
#define TF_PP2_TYPE_ALPN 0x01
#define TF_PP2_TYPE_AUTHORITY 0x02
#define TF_PP2_TYPE_CRC32C 0x03
#define TF_PP2_TYPE_NOOP 0x04
#define TF_PP2_TYPE_SSL 0x20
#define TF_PP2_SUBTYPE_SSL_VERSION 0x21
#define TF_PP2_SUBTYPE_SSL_CN 0x22
#define TF_PP2_SUBTYPE_SSL_CIPHER 0x23
#define TF_PP2_CLIENT_SSL 0x01

enum tf_proxy_cmd {
    TF_PROXY_CMD_LOCAL = 0, /* health check by the proxy itself: use the real addresses */
    TF_PROXY_CMD_PROXY = 1, /* relayed connection: use the addresses in the header */
};

/* What the encoder puts into version 2 TLVs. Every pointer may be NULL (TLV left out);
 * strings longer than 255 bytes are left out too. */
struct tf_proxy_tlv_info {
    const char *authority;   /* the SNI: PP2_TYPE_AUTHORITY */
    bool ssl;                /* emit PP2_TYPE_SSL (client = PP2_CLIENT_SSL, verify = 0) */
    const char *ssl_version; /* "TLSv1.3": PP2_SUBTYPE_SSL_VERSION inside PP2_TYPE_SSL */
    const char *ssl_cipher;  /* "TLS_AES_128_GCM_SHA256": PP2_SUBTYPE_SSL_CIPHER */
};

/* A parsed header. Addresses are filled only when has_addr is true: command PROXY with
 * TCP over IPv4/IPv6 (v1 TCP4/TCP6, v2 family 0x11/0x21). LOCAL, v1 UNKNOWN, v2 UNSPEC and
 * v2 UNIX headers are accepted without addresses: the caller keeps the socket's own. */
struct tf_proxy_result {
    int version;               /* 1 or 2 */
    enum tf_proxy_cmd command; /* v1 is always PROXY */
    int family;                /* AF_INET, AF_INET6, AF_UNIX or AF_UNSPEC (as sent) */
    bool has_addr;
    struct sockaddr_storage src, dst;
    bool has_authority;
    char authority[256]; /* PP2_TYPE_AUTHORITY, NUL-terminated */
    bool has_ssl;
    unsigned char ssl_client; /* PP2_CLIENT_* flags */
    unsigned int ssl_verify;
    char ssl_version[64]; /* empty when absent */
    char ssl_cipher[128];
};

/* "PROXY TCP4 a b p q\r\n", "PROXY TCP6 ...", or "PROXY UNKNOWN\r\n" when the families are
 * not IP or differ (IPv4-mapped IPv6 addresses are written as IPv4 when both ends are IPv4).
 * Writes no NUL. Returns the header length, or 0 if cap is too small. */
size_t tf_proxy_v1_encode(char *out, size_t cap, const struct sockaddr *src,
                          const struct sockaddr *dst);

/* Version 2, command PROXY, TCP over IPv4/IPv6 (UNSPEC for other families) plus the TLVs of
 * info (may be NULL). Returns the header length, or 0 if cap is too small. */
size_t tf_proxy_v2_encode(unsigned char *out, size_t cap, const struct sockaddr *src,
                          const struct sockaddr *dst, const struct tf_proxy_tlv_info *info);

/* Incremental parse of the bytes received so far (call again with more). Returns the header
 * length (> 0; the bytes after it belong to the proxied protocol) with *out filled, 0 if
 * more bytes are needed, TF_EPROTO if the bytes are not a valid header (including garbage
 * that is not a PROXY header at all) or TF_ETOOBIG if a v2 header announces more than
 * v2_cap bytes (0 = TF_PROXY_V2_DEFAULT_CAP). v1 headers are bounded by the spec at 107. */
int tf_proxy_parse_cap(const unsigned char *buf, size_t len, size_t v2_cap,
                       struct tf_proxy_result *out);
int tf_proxy_parse(const unsigned char *buf, size_t len, struct tf_proxy_result *out);

#endif
