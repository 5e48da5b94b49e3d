/*
 * conn_proxy.c: the PROXY protocol at both ends of a connection. In: on a listener
 * marked ",proxy" the first bytes must be a v1 or v2 header from the load balancer; it is
 * read (bounded in size; the handshake timer bounds the time) before any TLS byte, and its
 * source address replaces the socket's for everything after: logs, per-address gates,
 * X-Forwarded-For and the outbound header. Out: for routes with proxy=v1|v2 the header is
 * queued as the very first bytes for the backend, ahead of anything the client sends.
 * Parsing and encoding are proxy_proto.c's; this file only moves bytes and addresses and
 * must never touch TLS state beyond feeding the TLS input.
 */
#include "conn_int.h"
#include "tlsfront/base/log.h"
#include "tlsfront/proto/proxy_proto.h"

#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

/* Whole header bytes kept while reading it: a v2 header above this is refused. */
#define PIN_CAP TF_PROXY_V2_DEFAULT_CAP

static void proxy_in_fail(struct tf_conn *c, int rc)
{
    enum tf_conn_end why = rc == TF_ETOOBIG ? TF_CONN_END_PROXY_HEADER_TOO_BIG
                                            : TF_CONN_END_PROXY_HEADER_INVALID;
    char peer[TF_CONN_PEER_MAX];
    TF_INFO("conn", "conn=%llx %s: %s", (unsigned long long)c->id, tf_conn_peer(c, peer),
            rc == TF_ETOOBIG ? "PROXY header over the size cap" : "not a valid PROXY header");
    tf_conn_close(c, why);
}

/* An address from the header (IPv4 or IPv6 when it has one) into the connection's. */
static void copy_addr(union tf_conn_addr *to, const struct sockaddr_storage *from)
{
    memset(to, 0, sizeof *to);
    if (from->ss_family == AF_INET)
        memcpy(&to->in, from, sizeof to->in);
    else if (from->ss_family == AF_INET6)
        memcpy(&to->in6, from, sizeof to->in6);
    else
        to->sa.sa_family = AF_UNSPEC;
}

/* The header is complete: adopt its addresses (command PROXY over TCP only; LOCAL and
 * UNKNOWN keep the socket's, as the spec asks). */
static void adopt(struct tf_conn *c, const struct tf_proxy_result *res)
{
    if (!res->has_addr || res->command != TF_PROXY_CMD_PROXY)
        return;
    char peer[TF_CONN_PEER_MAX];
    free(c->lb_peer);
    c->lb_peer = tf_strdup(tf_conn_peer(c, peer));
    copy_addr(&c->src_addr, &res->src);
    copy_addr(&c->dst_addr, &res->dst);
    tf_conn_set_ip(c);
    TF_DEBUG("conn", "conn=%llx PROXY v%d from %s: client %s", (unsigned long long)c->id,
             res->version, c->lb_peer, tf_conn_peer(c, peer));
}

int tf_conn_proxy_in(struct tf_conn *c, const char *data, size_t len)
{
    if (!c->pin)
        c->pin = tf_malloc(PIN_CAP);
    size_t take = TF_MIN(len, PIN_CAP - c->pin_len);
    memcpy(c->pin + c->pin_len, data, take);
    c->pin_len += take;
    struct tf_proxy_result res;
    int n = tf_proxy_parse_cap(c->pin, c->pin_len, PIN_CAP, &res);
    if (n == 0 && c->pin_len == PIN_CAP)
        n = TF_ETOOBIG;
    if (n < 0) {
        proxy_in_fail(c, n);
        return -1;
    }
    if (n == 0)
        return 0;
    adopt(c, &res);
    c->state = TF_CONN_HANDSHAKE;
    /* What followed the header is the start of the TLS stream. */
    size_t rest = c->pin_len - (size_t)n;
    if (rest > 0) {
        tf_tlsbio_input(&c->bio, (const char *)c->pin + n, rest);
        tf_tlsbio_settle(&c->bio); /* copied: pin is freed below */
    }
    free(c->pin);
    c->pin = NULL;
    c->pin_len = 0;
    /* The rest of this read is borrowed; the read callback settles it. */
    tf_tlsbio_input(&c->bio, data + take, len - take);
    return 1;
}

void tf_conn_proxy_out(struct tf_conn *c)
{
    if (c->dst_addr.sa.sa_family == AF_UNSPEC) { /* not from a PROXY header: the socket's */
        int len = sizeof c->dst_addr;
        if (uv_tcp_getsockname(&c->tcp, &c->dst_addr.sa, &len) != 0)
            c->dst_addr.sa.sa_family = AF_UNSPEC;
    }
    const struct sockaddr *src = &c->src_addr.sa;
    const struct sockaddr *dst = &c->dst_addr.sa;
    unsigned char hdr[TF_PROXY_V2_ENCODE_MAX];
    size_t n;
    if (c->route.backend->proxy == TF_PROXY_V1) {
        n = tf_proxy_v1_encode((char *)hdr, sizeof hdr, src, dst);
    } else {
        const SSL_CIPHER *cipher = SSL_get_current_cipher(c->ssl);
        struct tf_proxy_tlv_info info = {
            .authority = c->sni[0] ? c->sni : NULL,
            .ssl = true,
            .ssl_version = SSL_get_version(c->ssl),
            .ssl_cipher = cipher ? SSL_CIPHER_get_name(cipher) : NULL,
        };
        n = tf_proxy_v2_encode(hdr, sizeof hdr, src, dst, &info);
    }
    if (n == 0) {
        /* Cannot happen with the buffer sized by proxy_proto.h; refuse rather than send a
         * connection the backend would attribute to us. */
        TF_ERROR("conn", "conn=%llx PROXY header did not fit", (unsigned long long)c->id);
        tf_conn_close(c, TF_CONN_END_PROXY_ENCODE_FAILED);
        return;
    }
    tf_pump_to_backend(c, (const char *)hdr, n);
}
