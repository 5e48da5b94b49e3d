/*
 * tlsbio.c: the low-copy BIO described in tlsbio.h. Owns only the kept-input buffer of each
 * connection; never does I/O itself (the flush callback does), never blocks.
 */
#include "tlsfront/tls/tlsbio.h"
#include "tlsfront/tls/tls.h"
#include "tlsfront/base/common.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* The BIO method table: created once (uv_once) and immutable afterwards; OpenSSL needs a
 * long-lived BIO_METHOD, so this is the one process-wide object of this module. */
static BIO_METHOD *g_method;
static int g_type; /* g_method's BIO type, set once with it */
static uv_once_t g_once = UV_ONCE_INIT;

static int tlsbio_write(BIO *b, const char *data, int len)
{
    struct tf_tlsbio *st = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    struct tf_tlsbio_out *o = st->out;
    size_t n = (size_t)len;
    /* Callers flush after every SSL call; should one not have, its records go out first
     * and never to another connection. */
    if (o->len > 0 && o->owner != st)
        tf_tlsbio_flush(o->owner);
    o->owner = st;
    if (o->len + n > o->cap) {
        tf_tlsbio_flush(st);
        if (n > o->cap) { /* larger than the whole buffer: straight through */
            st->flush(st->arg, data, n);
            return len;
        }
    }
    memcpy(o->buf + o->len, data, n);
    o->len += n;
    return len;
}

static int tlsbio_read(BIO *b, char *buf, int len)
{
    struct tf_tlsbio *st = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    size_t want = (size_t)len, got = 0;
    if (st->keep_len > 0) {
        size_t n = TF_MIN(want, st->keep_len);
        memcpy(buf, st->keep + st->keep_off, n);
        st->keep_off += n;
        st->keep_len -= n;
        got += n;
        if (st->keep_len == 0) {
            free(st->keep);
            st->keep = NULL;
            st->keep_off = 0;
        }
    }
    if (got < want && st->in_len > 0) {
        size_t n = TF_MIN(want - got, st->in_len);
        memcpy(buf + got, st->in, n);
        st->in += n;
        st->in_len -= n;
        got += n;
    }
    if (got > 0)
        return (int)got;
    if (st->eof)
        return 0;
    BIO_set_retry_read(b);
    return -1;
}

static long tlsbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    struct tf_tlsbio *st = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* the caller flushes after each SSL call (tf_tlsbio_flush) */
    case BIO_CTRL_PENDING:
        return (long)tf_tlsbio_pending(st);
    case BIO_CTRL_WPENDING:
        return (long)st->out->len;
    case BIO_CTRL_EOF:
        return st->eof && tf_tlsbio_pending(st) == 0;
    default:
        return 0;
    }
}

static int tlsbio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void make_method(void)
{
    int type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK;
    BIO_METHOD *m = BIO_meth_new(type, "tlsfront");
    if (!m || !BIO_meth_set_write(m, tlsbio_write) || !BIO_meth_set_read(m, tlsbio_read) ||
        !BIO_meth_set_ctrl(m, tlsbio_ctrl) || !BIO_meth_set_create(m, tlsbio_create)) {
        BIO_meth_free(m);
        return;
    }
    g_type = type;
    g_method = m;
}

static BIO_METHOD *method(void)
{
    uv_once(&g_once, make_method);
    return g_method;
}

BIO *tf_tlsbio_new(struct tf_tlsbio *st, OSSL_LIB_CTX *lib)
{
    BIO_METHOD *m = method();
    BIO *b = m ? BIO_new_ex(lib, m) : NULL;
    if (b)
        BIO_set_data(b, st);
    return b;
}

void *tf_tlsbio_arg(const SSL *ssl)
{
    BIO *b = SSL_get_rbio(ssl);
    if (!b || !method() || BIO_method_type(b) != g_type) /* method(): g_type is set */
        return NULL;
    const struct tf_tlsbio *st = BIO_get_data(b);
    return st ? st->arg : NULL;
}

void tf_tlsbio_input(struct tf_tlsbio *st, const char *data, size_t len)
{
    st->in = data;
    st->in_len = len;
}

void tf_tlsbio_settle(struct tf_tlsbio *st)
{
    if (st->in_len > 0) {
        /* Append the rest of the borrowed input to what is kept, which moves to the front
         * first (realloc grows in place when it can). What is kept stays small because the
         * callers bound it: a partial first record, a held handshake's slack
         * (TF_HOLD_SLACK), or the last read of a connection that stopped reading. */
        if (st->keep_off > 0) {
            memmove(st->keep, st->keep + st->keep_off, st->keep_len);
            st->keep_off = 0;
        }
        st->keep = tf_realloc(st->keep, st->keep_len + st->in_len);
        memcpy(st->keep + st->keep_len, st->in, st->in_len);
        st->keep_len += st->in_len;
    }
    st->in = NULL;
    st->in_len = 0;
}

/* Copy up to n of the first pending input bytes (kept, then borrowed) into dst. */
static size_t peek(const struct tf_tlsbio *st, unsigned char *dst, size_t n)
{
    size_t a = TF_MIN(n, st->keep_len);
    if (a)
        memcpy(dst, st->keep + st->keep_off, a);
    size_t b = TF_MIN(n - a, st->in_len);
    if (b)
        memcpy(dst + a, st->in, b);
    return a + b;
}

bool tf_tlsbio_first_record(const struct tf_tlsbio *st)
{
    unsigned char h[5];
    if (peek(st, h, sizeof h) < sizeof h)
        return false;
    /* RFC 8446 section 5.1: handshake records carry at most 2^14 bytes. Anything else is
     * not ours to judge: OpenSSL answers it with the right alert. */
    size_t len = ((size_t)h[3] << 8) | h[4];
    if (h[0] != TF_TLSBIO_HANDSHAKE || len > TF_TLSBIO_MAX_RECORD)
        return true;
    return tf_tlsbio_pending(st) >= sizeof h + len;
}

size_t tf_tlsbio_pending(const struct tf_tlsbio *st)
{
    return st->keep_len + st->in_len;
}

void tf_tlsbio_flush(struct tf_tlsbio *st)
{
    struct tf_tlsbio_out *o = st->out;
    if (o->len == 0)
        return;
    /* The records belong to whoever wrote them, which is st unless a caller skipped a flush:
     * they go to their own connection, never to st's. */
    struct tf_tlsbio *owner = o->owner ? o->owner : st;
    size_t n = o->len;
    o->len = 0; /* the callback may write more through the BIO (it must not, but be safe) */
    owner->flush(owner->arg, o->buf, n);
}

void tf_tlsbio_clear(struct tf_tlsbio *st)
{
    if (st->out && st->out->owner == st) {
        st->out->len = 0; /* unflushed records of a connection being freed */
        st->out->owner = NULL;
    }
    free(st->keep);
    st->keep = NULL;
    st->keep_off = st->keep_len = 0;
    st->in = NULL;
    st->in_len = 0;
}
