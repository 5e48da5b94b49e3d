/*
 * fuzz_http_rewrite.c: libFuzzer target for the mode=http request rewriter. The
 * first byte picks the options, a read-split size and a prefix (none, a valid request head
 * start, a chunked POST head) so the search reaches bodies and trailers quickly. Checked,
 * besides ASan/UBSan/LSan: the result does not depend on how the stream is split into
 * reads; a successful run emits the same bytes either way; after an error the one-call
 * output (which withdraws the bad request) is a prefix of the split output; results are
 * only 0, TF_HTTP_RW_UPGRADE, TF_EPROTO (400) or TF_ETOOBIG (431).
 */
#include "tlsfront/base/common.h"
#include "tlsfront/proto/http_rewrite.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const prefixes[] = {
    "",
    "GET / HTTP/1.1\r\nHost: a\r\n",
    "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n",
};

static int run(struct tf_http_rw_opts *o, const char *in, size_t n, size_t split,
               struct tf_buf_sink *out, int *status)
{
    struct tf_http_rw *rw = tf_http_rw_new(o);
    int rc = 0;
    size_t pos = 0;
    do {
        size_t k = split ? TF_MIN(split, n - pos) : n - pos;
        rc = tf_http_rw_feed(rw, in + pos, k, out);
        pos += k;
    } while (rc == 0 && pos < n);
    if (rc == TF_HTTP_RW_UPGRADE && pos == n)
        tf_http_rw_set_tunnel(rw, out);
    *status = tf_http_rw_status(rw);
    tf_http_rw_free(rw);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned sel = data[0], sp = data[1];
    const char *pre = prefixes[sel % TF_ARRAY_LEN(prefixes)];
    struct tf_http_rw_opts o = {.client_addr = sel & 4 ? "2001:db8::1" : "192.0.2.1",
                                .host = "sni.example",
                                .trust_xff = sel & 8,
                                .add_forwarded = sel & 16,
                                .allow_connect = sel & 64,
                                .max_header_bytes = sel & 32 ? 256 : 0};
    size_t pl = strlen(pre), n = pl + size - 2;
    char *in = malloc(n + 1);
    memcpy(in, pre, pl);
    memcpy(in + pl, data + 2, size - 2);

    struct tf_buf_sink a = {0}, b = {0};
    int sa, sb;
    int ra = run(&o, in, n, 0, &a, &sa);
    int rb = run(&o, in, n, 1 + sp % 17, &b, &sb);
    if (ra != rb || sa != sb)
        abort();
    if (ra != 0 && ra != TF_HTTP_RW_UPGRADE && ra != TF_EPROTO && ra != TF_ETOOBIG)
        abort();
    if ((ra == TF_EPROTO && sa != 400 && (sa != 405 || o.allow_connect)) ||
        (ra == TF_ETOOBIG && sa != 431))
        abort();
    if (ra >= 0 && (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0)))
        abort();
    if (ra < 0 && (a.len > b.len || (a.len && memcmp(a.data, b.data, a.len) != 0)))
        abort();
    tf_http_resp_status(in, n);
    tf_buf_sink_free(&a);
    tf_buf_sink_free(&b);
    free(in);
    return 0;
}
