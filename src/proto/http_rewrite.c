/*
 * http_rewrite.c: the request rewriter of mode=http routes. It owns one llhttp
 * request parser per client connection, the current request head (until it is emitted) and
 * the bytes held after an Upgrade/CONNECT request. It must never do I/O or log, and it must
 * never let a byte of an invalid request head reach the sink: heads are buffered (capped)
 * and re-emitted only once llhttp and our own stricter scan accept them. Bodies stream
 * through verbatim, chunk framing and trailers included, so their bytes are never buffered.
 *
 * llhttp is run without lenient flags. Debian's build is llhttp's loose mode, which still
 * accepts a few things RFC 9112 forbids and that are classic smuggling vectors (obs-fold,
 * whitespace before the colon, an empty field name, a CR not followed by LF, HTTP/2.0 on
 * an HTTP/1 connection, data after "Connection: close"), so scan_bytes() and finish_head()
 * refuse those themselves, whatever mode llhttp was built in.
 */
#include "tlsfront/proto/http_rewrite.h"
#include "tlsfront/base/common.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum rw_phase { PH_HEAD, PH_BODY, PH_UPGRADE_WAIT, PH_TUNNEL, PH_CLOSED, PH_ERROR };
enum rw_pause { PAUSE_NONE, PAUSE_HEADERS, PAUSE_LAST_CHUNK, PAUSE_MESSAGE };
/* Where scan_bytes() is within a head or a trailer section. */
enum rw_scan {
    SC_REQLINE,
    SC_REQLINE_CR,
    SC_LINE_START,
    SC_NAME,
    SC_VALUE,
    SC_CR,
    SC_END_CR,
    SC_DONE
};

struct rw_field {
    size_t name_off, name_len, value_off, value_len; /* into arena */
};

/* Owned by the connection that created it with tf_http_rw_new(). */
struct tf_http_rw {
    llhttp_t ll;
    char *client_addr, *host, *proto;
    bool trust_xff, add_forwarded, allow_connect, keep_backend;
    size_t max_header;
    enum rw_phase phase;
    enum rw_pause pause;      /* why llhttp_execute() last returned HPE_PAUSED */
    struct tf_buf_sink arena; /* method, target and fields of the current head */
    size_t method_off, method_len, url_off, url_len;
    struct rw_field *fields;
    size_t nfields, fields_cap;
    bool in_field;     /* between a field's name and the end of its value */
    bool too_many;     /* more than TF_HTTP_RW_MAX_FIELDS lines */
    size_t head_bytes; /* raw bytes of the current head so far */
    enum rw_scan scan;
    size_t reqline_len;
    bool upgrade, keep_alive, in_trailers;
    bool mid_request;  /* a head went out, its body is not complete yet */
    bool head_in_call; /* ... and it went out during the current feed call */
    unsigned long requests;
    struct tf_buf_sink held; /* after an Upgrade/CONNECT request */
    int err, status;
    const char *reason; /* static string */
};

void tf_buf_sink_append(struct tf_buf_sink *s, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (s->cap - s->len < n) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap - s->len < n)
            cap *= 2;
        s->data = tf_realloc(s->data, cap);
        s->cap = cap;
    }
    memcpy(s->data + s->len, p, n);
    s->len += n;
}

static void sink_puts(struct tf_buf_sink *s, const char *str)
{
    tf_buf_sink_append(s, str, strlen(str));
}

void tf_buf_sink_free(struct tf_buf_sink *s)
{
    free(s->data);
    memset(s, 0, sizeof(*s));
}

/* ---- strict byte scan of heads and trailers ----------------------------------------- */

/* Checks n more bytes of a request head (or, from SC_LINE_START, a trailer section):
 * every line ends in CRLF, no obs-fold (RFC 9112 section 5.2), no whitespace in or before
 * the colon and no empty name (section 5.1), no control bytes in values. Empty lines before
 * the request line are skipped (section 2.2). Returns false on the first offending byte. */
static bool scan_bytes(struct tf_http_rw *rw, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        switch (rw->scan) {
        case SC_REQLINE:
            if (c == '\n')
                return false;
            rw->scan = c == '\r' ? SC_REQLINE_CR : SC_REQLINE;
            rw->reqline_len += c != '\r';
            break;
        case SC_REQLINE_CR:
            if (c != '\n')
                return false;
            rw->scan = rw->reqline_len ? SC_LINE_START : SC_REQLINE;
            break;
        case SC_LINE_START:
            if (c == ' ' || c == '\t' || c == ':' || c == '\n')
                return false;
            rw->scan = c == '\r' ? SC_END_CR : SC_NAME;
            break;
        case SC_NAME:
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
                return false;
            rw->scan = c == ':' ? SC_VALUE : SC_NAME;
            break;
        case SC_VALUE:
            if (c == '\n' || (c < 0x20 && c != '\t' && c != '\r') || c == 0x7f)
                return false;
            rw->scan = c == '\r' ? SC_CR : SC_VALUE;
            break;
        case SC_CR:
        case SC_END_CR:
            if (c != '\n')
                return false;
            rw->scan = rw->scan == SC_CR ? SC_LINE_START : SC_DONE;
            break;
        case SC_DONE:
            return false;
        }
    }
    return true;
}

/* ---- llhttp callbacks --------------------------------------------------------------- */

static struct tf_http_rw *rw_of(llhttp_t *ll)
{
    return ll->data;
}

static void span_add(struct tf_http_rw *rw, size_t *off, size_t *len, const char *at, size_t n)
{
    if (*len == 0)
        *off = rw->arena.len;
    tf_buf_sink_append(&rw->arena, at, n);
    *len += n;
}

static int on_method(llhttp_t *ll, const char *at, size_t n)
{
    struct tf_http_rw *rw = rw_of(ll);
    span_add(rw, &rw->method_off, &rw->method_len, at, n);
    return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t n)
{
    struct tf_http_rw *rw = rw_of(ll);
    span_add(rw, &rw->url_off, &rw->url_len, at, n);
    return 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t n)
{
    struct tf_http_rw *rw = rw_of(ll);
    if (rw->phase != PH_HEAD)
        return 0; /* trailers pass through raw */
    if (!rw->in_field) {
        if (rw->nfields == TF_HTTP_RW_MAX_FIELDS) {
            rw->too_many = true;
            return HPE_USER;
        }
        if (rw->nfields == rw->fields_cap) {
            rw->fields_cap = rw->fields_cap ? rw->fields_cap * 2 : 16;
            rw->fields = tf_realloc(rw->fields, rw->fields_cap * sizeof(*rw->fields));
        }
        memset(&rw->fields[rw->nfields++], 0, sizeof(*rw->fields));
        rw->in_field = true;
    }
    struct rw_field *f = &rw->fields[rw->nfields - 1];
    span_add(rw, &f->name_off, &f->name_len, at, n);
    return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t n)
{
    struct tf_http_rw *rw = rw_of(ll);
    if (rw->phase != PH_HEAD || rw->nfields == 0)
        return 0;
    struct rw_field *f = &rw->fields[rw->nfields - 1];
    span_add(rw, &f->value_off, &f->value_len, at, n);
    return 0;
}

static int on_header_value_complete(llhttp_t *ll)
{
    rw_of(ll)->in_field = false;
    return 0;
}

static int on_headers_complete(llhttp_t *ll)
{
    struct tf_http_rw *rw = rw_of(ll);
    if (rw->phase != PH_HEAD)
        return 0;
    rw->pause = PAUSE_HEADERS;
    return HPE_PAUSED;
}

/* The last chunk ("0\r\n"): the trailer section starts here and gets the strict scan. */
static int on_chunk_header(llhttp_t *ll)
{
    if (ll->content_length != 0)
        return 0;
    rw_of(ll)->pause = PAUSE_LAST_CHUNK;
    return HPE_PAUSED;
}

static int on_message_complete(llhttp_t *ll)
{
    struct tf_http_rw *rw = rw_of(ll);
    rw->keep_alive = llhttp_should_keep_alive(ll);
    rw->pause = PAUSE_MESSAGE;
    return HPE_PAUSED;
}

static const llhttp_settings_t rw_settings = {
    .on_method = on_method,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_chunk_header = on_chunk_header,
    .on_message_complete = on_message_complete,
};

static void start_head(struct tf_http_rw *rw);

/* ---- object ------------------------------------------------------------------------- */

struct tf_http_rw *tf_http_rw_new(const struct tf_http_rw_opts *opts)
{
    struct tf_http_rw *rw = tf_calloc(1, sizeof(*rw));
    rw->client_addr = tf_strdup(opts->client_addr ? opts->client_addr : "unknown");
    rw->host = opts->host && opts->host[0] ? tf_strdup(opts->host) : NULL;
    rw->proto = tf_strdup(opts->proto ? opts->proto : "https");
    rw->trust_xff = opts->trust_xff;
    rw->add_forwarded = opts->add_forwarded;
    rw->allow_connect = opts->allow_connect;
    rw->keep_backend = opts->keep_backend;
    rw->max_header =
        opts->max_header_bytes ? opts->max_header_bytes : TF_HTTP_RW_DEFAULT_MAX_HEADER;
    llhttp_init(&rw->ll, HTTP_REQUEST, &rw_settings);
    rw->ll.data = rw;
    start_head(rw);
    return rw;
}

void tf_http_rw_free(struct tf_http_rw *rw)
{
    if (!rw)
        return;
    free(rw->client_addr);
    free(rw->host);
    free(rw->proto);
    tf_buf_sink_free(&rw->arena);
    tf_buf_sink_free(&rw->held);
    free(rw->fields);
    free(rw);
}

int tf_http_rw_status(const struct tf_http_rw *rw)
{
    return rw->phase == PH_ERROR ? rw->status : 0;
}

const char *tf_http_rw_reason(const struct tf_http_rw *rw)
{
    return rw->reason ? rw->reason : "";
}

unsigned long tf_http_rw_requests(const struct tf_http_rw *rw)
{
    return rw->requests;
}

bool tf_http_rw_mid_request(const struct tf_http_rw *rw)
{
    return rw->mid_request;
}

bool tf_http_rw_closed(const struct tf_http_rw *rw)
{
    return rw->phase == PH_CLOSED;
}

static int fail(struct tf_http_rw *rw, int err, int status, const char *reason)
{
    rw->phase = PH_ERROR;
    rw->err = err;
    rw->status = status;
    rw->reason = reason;
    return err;
}

static int fail_llhttp(struct tf_http_rw *rw, llhttp_errno_t e)
{
    if (e == HPE_USER && rw->too_many)
        return fail(rw, TF_ETOOBIG, 431, "too many header fields");
    const char *why = llhttp_get_error_reason(&rw->ll);
    return fail(rw, TF_EPROTO, 400, why && why[0] ? why : llhttp_errno_name(e));
}

/* Forget the previous head; the next bytes start a request. */
static void start_head(struct tf_http_rw *rw)
{
    rw->phase = PH_HEAD;
    rw->arena.len = 0;
    rw->method_len = rw->url_len = 0;
    rw->nfields = 0;
    rw->in_field = rw->too_many = rw->upgrade = rw->in_trailers = false;
    rw->head_bytes = 0;
    rw->scan = SC_REQLINE;
    rw->reqline_len = 0;
}

/* ---- head validation and emission --------------------------------------------------- */

static bool name_is(const struct tf_http_rw *rw, const struct rw_field *f, const char *name)
{
    return f->name_len == strlen(name) &&
           strncasecmp(rw->arena.data + f->name_off, name, f->name_len) == 0;
}

/* Hop-by-hop fields that describe only the client's connection (RFC 9110 section 7.6.1):
 * a client's "Keep-Alive: max=1" must not make the backend close a pooled connection.
 * Connection itself is filtered by emit_connection(); Upgrade and TE pass, because upgrades
 * are negotiated end to end through the tunnel. */
static bool is_hop(const struct tf_http_rw *rw, const struct rw_field *f);

/* Headers we set; a client's copies are spoofed (or, if trusted, merged). */
static bool is_ours(const char *p, size_t n)
{
    static const char *const ours[] = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
                                       "forwarded"};
    for (size_t i = 0; i < TF_ARRAY_LEN(ours); i++)
        if (n == strlen(ours[i]) && strncasecmp(p, ours[i], n) == 0)
            return true;
    return false;
}

/* uri-host [ ":" port ] characters (RFC 3986 reg-name, IP-literal); empty is allowed. */
static bool host_ok(const char *p, size_t n)
{
    static const char extra[] = "-._~!$&'()*+,;=:[]%";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c && strchr(extra, c))))
            return false;
    }
    return true;
}

static size_t trim_ows(const char *p, size_t n)
{
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    return n;
}

static bool is_hop(const struct tf_http_rw *rw, const struct rw_field *f)
{
    return name_is(rw, f, "keep-alive") || name_is(rw, f, "proxy-connection");
}

/* Connection without the tokens that name our headers: a client listing X-Forwarded-For
 * there would make a proxying backend drop the header we set (hop-by-hop abuse). With
 * keep_backend, also without "close": the client's connection ends after this request
 * (rw->keep_alive, from the client's own head), the backend's may serve the next client. */
static void emit_connection(struct tf_http_rw *rw, const struct rw_field *f,
                            struct tf_buf_sink *out)
{
    const char *v = rw->arena.data + f->value_off, *end = v + f->value_len;
    size_t start = out->len;

    tf_buf_sink_append(out, rw->arena.data + f->name_off, f->name_len);
    sink_puts(out, ": ");
    size_t first = out->len;
    while (v < end) {
        const char *comma = memchr(v, ',', (size_t)(end - v));
        const char *te = comma ? comma : end;
        while (v < te && (*v == ' ' || *v == '\t'))
            v++;
        size_t n = trim_ows(v, (size_t)(te - v));
        bool close = n == 5 && strncasecmp(v, "close", 5) == 0;
        if (n && !is_ours(v, n) && !(close && rw->keep_backend)) {
            if (out->len > first)
                sink_puts(out, ", ");
            tf_buf_sink_append(out, v, n);
        }
        v = comma ? comma + 1 : end;
    }
    if (out->len == first)
        out->len = start; /* nothing left: drop the field */
    else
        sink_puts(out, "\r\n");
}

static void join_value(struct tf_buf_sink *acc, const char *v, size_t n)
{
    if (acc->len)
        sink_puts(acc, ", ");
    tf_buf_sink_append(acc, v, n);
}

/* RFC 7239 section 4: a value is a token or a quoted-string; IPv6 nodes are bracketed and
 * therefore quoted (section 6). */
static void forwarded_value(struct tf_buf_sink *out, const char *v, bool bracket)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    bool token = !bracket && v[0];
    for (const char *p = v; *p && token; p++)
        token = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                strchr(tchar, *p);
    if (token) {
        sink_puts(out, v);
        return;
    }
    sink_puts(out, bracket ? "\"[" : "\"");
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\')
            sink_puts(out, "\\");
        tf_buf_sink_append(out, p, 1);
    }
    sink_puts(out, bracket ? "]\"" : "\"");
}

/* The header fields we add at the end of the head. host may be NULL. */
static void emit_ours(struct tf_http_rw *rw, const struct tf_buf_sink *xff,
                      const struct tf_buf_sink *fwd, const char *host, struct tf_buf_sink *out)
{
    sink_puts(out, "X-Forwarded-For: ");
    if (xff->len) {
        tf_buf_sink_append(out, xff->data, xff->len);
        sink_puts(out, ", ");
    }
    sink_puts(out, rw->client_addr);
    sink_puts(out, "\r\nX-Forwarded-Proto: ");
    sink_puts(out, rw->proto);
    sink_puts(out, "\r\n");
    if (host) {
        sink_puts(out, "X-Forwarded-Host: ");
        sink_puts(out, host);
        sink_puts(out, "\r\n");
    }
    if (!rw->add_forwarded)
        return;
    sink_puts(out, "Forwarded: ");
    if (fwd->len) {
        tf_buf_sink_append(out, fwd->data, fwd->len);
        sink_puts(out, ", ");
    }
    sink_puts(out, "for=");
    forwarded_value(out, rw->client_addr, strchr(rw->client_addr, ':') != NULL);
    sink_puts(out, ";proto=");
    forwarded_value(out, rw->proto, false);
    if (host) {
        sink_puts(out, ";host=");
        forwarded_value(out, host, false);
    }
    sink_puts(out, "\r\n");
}

/* Re-emits the head: request line, the client's fields minus the spoofable ones, ours.
 * host_val is the Host value (NUL-terminated copy) or NULL. */
static void emit_head(struct tf_http_rw *rw, const char *host_val, struct tf_buf_sink *out)
{
    struct tf_buf_sink xff = {0}, fwd = {0};
    char ver[16];
    const char *a = rw->arena.data;

    tf_buf_sink_append(out, a + rw->method_off, rw->method_len);
    sink_puts(out, " ");
    tf_buf_sink_append(out, a + rw->url_off, rw->url_len);
    snprintf(ver, sizeof(ver), " HTTP/1.%d\r\n", llhttp_get_http_minor(&rw->ll));
    sink_puts(out, ver);
    for (size_t i = 0; i < rw->nfields; i++) {
        const struct rw_field *f = &rw->fields[i];
        size_t vlen = trim_ows(a + f->value_off, f->value_len);
        if (name_is(rw, f, "x-forwarded-for") || name_is(rw, f, "forwarded")) {
            if (rw->trust_xff && vlen)
                join_value(name_is(rw, f, "forwarded") ? &fwd : &xff, a + f->value_off, vlen);
        } else if (name_is(rw, f, "connection")) {
            emit_connection(rw, f, out);
        } else if (is_hop(rw, f)) {
            continue;
        } else if (!is_ours(a + f->name_off, f->name_len)) {
            tf_buf_sink_append(out, a + f->name_off, f->name_len);
            sink_puts(out, ": ");
            tf_buf_sink_append(out, a + f->value_off, vlen);
            sink_puts(out, "\r\n");
        }
    }
    emit_ours(rw, &xff, &fwd, host_val && host_val[0] ? host_val : rw->host, out);
    sink_puts(out, "\r\n");
    tf_buf_sink_free(&xff);
    tf_buf_sink_free(&fwd);
}

/* The head is complete and llhttp accepted it: apply our own rules (RFC 9112 section 3.2:
 * exactly one valid Host in HTTP/1.1, at most one in 1.0; only HTTP/1.0 and 1.1), then emit. */
static int finish_head(struct tf_http_rw *rw, struct tf_buf_sink *out)
{
    const struct rw_field *host = NULL;
    char *host_val = NULL;
    int minor = llhttp_get_http_minor(&rw->ll);

    if (rw->scan != SC_DONE)
        return fail(rw, TF_EPROTO, 400, "malformed request head");
    if (llhttp_get_http_major(&rw->ll) != 1 || minor > 1)
        return fail(rw, TF_EPROTO, 400, "unsupported HTTP version");
    for (size_t i = 0; i < rw->nfields; i++) {
        if (!name_is(rw, &rw->fields[i], "host"))
            continue;
        if (host)
            return fail(rw, TF_EPROTO, 400, "more than one Host");
        host = &rw->fields[i];
    }
    if (!host && minor == 1)
        return fail(rw, TF_EPROTO, 400, "missing Host");
    if (llhttp_get_method(&rw->ll) == HTTP_CONNECT && !rw->allow_connect)
        return fail(rw, TF_EPROTO, 405, "CONNECT not enabled on this route");
    if (host) {
        size_t n = trim_ows(rw->arena.data + host->value_off, host->value_len);
        if (!host_ok(rw->arena.data + host->value_off, n))
            return fail(rw, TF_EPROTO, 400, "invalid Host");
        host_val = tf_strndup(rw->arena.data + host->value_off, n);
    }
    rw->upgrade = llhttp_get_upgrade(&rw->ll) != 0;
    emit_head(rw, host_val, out);
    free(host_val);
    rw->requests++;
    rw->mid_request = rw->head_in_call = true;
    return 0;
}

/* ---- feeding ------------------------------------------------------------------------ */

/* Runs llhttp over a slice; *consumed gets how far it got. Returns HPE_OK, HPE_PAUSED or
 * an error code. */
static llhttp_errno_t run(struct tf_http_rw *rw, const char *data, size_t n, size_t *consumed)
{
    rw->pause = PAUSE_NONE;
    llhttp_errno_t e = llhttp_execute(&rw->ll, data, n);
    *consumed = e == HPE_PAUSED ? (size_t)(llhttp_get_error_pos(&rw->ll) - data) : n;
    return e;
}

/* Head phase: at most the cap's worth of bytes go to llhttp. Returns < 0 on error, 0 when
 * all input is consumed, 1 when the caller should loop. */
static int step_head(struct tf_http_rw *rw, const char *data, size_t len, struct tf_buf_sink *out,
                     size_t *used)
{
    size_t n = TF_MIN(len, rw->max_header - rw->head_bytes), c;

    if (len > 0 && n == 0)
        return fail(rw, TF_ETOOBIG, 431, "request header block too large");
    llhttp_errno_t e = run(rw, data, n, &c);
    if (e != HPE_OK && !(e == HPE_PAUSED && rw->pause == PAUSE_HEADERS))
        return fail_llhttp(rw, e);
    if (!scan_bytes(rw, data, c))
        return fail(rw, TF_EPROTO, 400, "malformed request head");
    rw->head_bytes += c;
    *used = c;
    if (e == HPE_OK)
        return n == len ? 0 : 1;
    int rc = finish_head(rw, out);
    if (rc < 0)
        return rc;
    llhttp_resume(&rw->ll);
    rw->phase = PH_BODY;
    return 1;
}

static int message_done(struct tf_http_rw *rw)
{
    if (rw->in_trailers && rw->scan != SC_DONE)
        return fail(rw, TF_EPROTO, 400, "malformed trailer section");
    rw->mid_request = rw->head_in_call = false;
    if (rw->upgrade) {
        rw->phase = PH_UPGRADE_WAIT; /* llhttp stays paused: the rest is another protocol */
        return 1;
    }
    if (!rw->keep_alive) {
        rw->phase = PH_CLOSED;
        return 1;
    }
    llhttp_resume(&rw->ll);
    start_head(rw);
    return 1;
}

/* Body phase: bytes llhttp accepts go out verbatim (trailers after the strict scan).
 * *mark moves to the end of each complete request. */
static int step_body(struct tf_http_rw *rw, const char *data, size_t len, struct tf_buf_sink *out,
                     size_t *used, size_t *mark)
{
    size_t c;
    llhttp_errno_t e = run(rw, data, len, &c);

    if (e != HPE_OK && e != HPE_PAUSED)
        return fail_llhttp(rw, e);
    if (rw->in_trailers && !scan_bytes(rw, data, c))
        return fail(rw, TF_EPROTO, 400, "malformed trailer section");
    tf_buf_sink_append(out, data, c);
    *used = c;
    if (e == HPE_OK)
        return 0;
    if (rw->pause == PAUSE_LAST_CHUNK) {
        rw->in_trailers = true;
        rw->scan = SC_LINE_START;
        llhttp_resume(&rw->ll);
        return 1;
    }
    if (rw->pause != PAUSE_MESSAGE)
        return fail(rw, TF_EPROTO, 400, "unexpected parser pause");
    *mark = out->len;
    return message_done(rw);
}

static int hold(struct tf_http_rw *rw, const char *data, size_t len)
{
    if (rw->held.len + len > TF_HTTP_RW_HOLD_MAX)
        return fail(rw, TF_EPROTO, 400, "too many bytes before the upgrade was answered");
    tf_buf_sink_append(&rw->held, data, len);
    return TF_HTTP_RW_UPGRADE;
}

int tf_http_rw_feed(struct tf_http_rw *rw, const char *data, size_t len, struct tf_buf_sink *out)
{
    static const char empty[1];
    size_t mark = out->len;

    if (!data)
        data = empty;
    rw->head_in_call = false;
    for (;;) {
        size_t used = 0;
        int rc;
        switch (rw->phase) {
        case PH_HEAD:
            rc = step_head(rw, data, len, out, &used);
            break;
        case PH_BODY:
            rc = step_body(rw, data, len, out, &used, &mark);
            break;
        case PH_UPGRADE_WAIT:
            return hold(rw, data, len);
        case PH_TUNNEL:
            tf_buf_sink_append(out, data, len);
            return 0;
        case PH_CLOSED:
            return 0;
        default:
            return rw->err;
        }
        if (rc < 0) {
            out->len = mark; /* withdraw what this call emitted of the bad request */
            if (rw->head_in_call)
                rw->mid_request = false;
            return rc;
        }
        data += used;
        len -= used;
        if (rc == 0)
            return 0;
    }
}

void tf_http_rw_set_tunnel(struct tf_http_rw *rw, struct tf_buf_sink *out)
{
    if (rw->phase != PH_UPGRADE_WAIT)
        return;
    tf_buf_sink_append(out, rw->held.data, rw->held.len);
    tf_buf_sink_free(&rw->held);
    rw->phase = PH_TUNNEL;
}

int tf_http_rw_upgrade_refused(struct tf_http_rw *rw, struct tf_buf_sink *out)
{
    if (rw->phase != PH_UPGRADE_WAIT)
        return rw->phase == PH_ERROR ? rw->err : 0;
    struct tf_buf_sink held = rw->held;
    memset(&rw->held, 0, sizeof(rw->held));
    llhttp_reset(&rw->ll);
    start_head(rw);
    int rc = tf_http_rw_feed(rw, held.data, held.len, out);
    tf_buf_sink_free(&held);
    return rc;
}

/* ---- response-side helpers ---------------------------------------------------------- */

static const char *status_text(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 431:
        return "Request Header Fields Too Large";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Internal Server Error";
    }
}

size_t tf_http_error_response(int status, char *out, size_t cap)
{
    char body[96];
    const char *text = status_text(status);

    if (strcmp(text, "Internal Server Error") == 0)
        status = 500;
    int bl = snprintf(body, sizeof(body), "%d %s\n", status, text);
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %d\r\nCache-Control: no-store\r\nConnection: close\r\n"
                     "\r\n%s",
                     status, text, bl, body);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

/* Whether c may be byte i of "HTTP/1.x NNN" followed by SP or CR. */
static bool status_byte_ok(size_t i, char c)
{
    if (i < 7)
        return c == "HTTP/1."[i];
    if (i == 7)
        return c == '0' || c == '1';
    if (i == 8)
        return c == ' ';
    if (i == 9)
        return c >= '1' && c <= '9';
    if (i < 12)
        return c >= '0' && c <= '9';
    return c == ' ' || c == '\r';
}

int tf_http_resp_status(const char *data, size_t len)
{
    for (size_t i = 0; i < TF_MIN(len, (size_t)13); i++)
        if (!status_byte_ok(i, data[i]))
            return TF_EPROTO;
    if (len < 13)
        return 0;
    return (data[9] - '0') * 100 + (data[10] - '0') * 10 + (data[11] - '0');
}
