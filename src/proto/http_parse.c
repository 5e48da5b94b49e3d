/*
 * http_parse.c: the pure half of the HTTP client: the llhttp-based response parser (status,
 * headers, fixed-length, chunked and close-delimited bodies, fed in any split), request
 * serialisation, URL splitting, header lookup and Retry-After (RFC 9110 §10.2.3, HTTP-date per §5.6.7). It owns
 * only the memory of its own objects and must never do I/O, log or read the clock itself
 * (callers pass "now").
 */
#include "tlsfront/base/common.h"
#include "tlsfront/proto/http_parse.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* A response's status line, header fields and trailers together may not exceed this. */
#define TF_HTTP_MAX_HEADER_BYTES (64 * 1024)
#define TF_HTTP_MAX_HEADERS 256

struct tf_buf {
    char *p;
    size_t len, cap;
};

/* Owned by whoever created it with tf_http_parser_new(); the client keeps one per attempt. */
struct tf_http_parser {
    llhttp_t ll;
    struct tf_http_response resp; /* headers, body: owned here */
    int headers_cap;
    struct tf_buf name, value;    /* the header being accumulated */
    struct tf_buf body;
    size_t header_bytes;          /* status line + fields + trailers + chunk extensions */
    size_t max_body;
    bool head;                    /* response to HEAD: no body whatever the headers say */
    bool in_trailers;             /* after the header block: fields are trailers, dropped */
    bool done;
    bool extra;                   /* bytes after the response: the connection is unusable */
    bool keep_alive;
    int err;                      /* sticky: TF_EPROTO or TF_ETOOBIG */
};

static void buf_append(struct tf_buf *b, const char *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = tf_realloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_reset(struct tf_buf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

static struct tf_http_parser *parser_of(llhttp_t *ll)
{
    return ll->data;
}

/* Every byte of the header block goes through here so a server cannot make us buffer (or
 * spin on) an endless header section. */
static int count_header_bytes(struct tf_http_parser *p, size_t n)
{
    p->header_bytes += n;
    if (p->header_bytes > TF_HTTP_MAX_HEADER_BYTES) {
        p->err = TF_EPROTO;
        return -1;
    }
    return 0;
}

static int on_counted(llhttp_t *ll, const char *at, size_t n)
{
    (void)at;
    return count_header_bytes(parser_of(ll), n);
}

static int on_header_field(llhttp_t *ll, const char *at, size_t n)
{
    struct tf_http_parser *p = parser_of(ll);
    if (count_header_bytes(p, n) < 0)
        return -1;
    if (!p->in_trailers)
        buf_append(&p->name, at, n);
    return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t n)
{
    struct tf_http_parser *p = parser_of(ll);
    if (count_header_bytes(p, n) < 0)
        return -1;
    if (!p->in_trailers)
        buf_append(&p->value, at, n);
    return 0;
}

/* A name/value pair is complete: llhttp may have delivered either in several pieces. */
static int on_header_value_complete(llhttp_t *ll)
{
    struct tf_http_parser *p = parser_of(ll);
    if (count_header_bytes(p, 4) < 0) /* ": " and CRLF, once per field whatever the split */
        return -1;
    if (p->in_trailers)
        return 0;
    struct tf_http_response *r = &p->resp;
    if (r->n_headers == TF_HTTP_MAX_HEADERS) {
        p->err = TF_EPROTO;
        return -1;
    }
    if (r->n_headers == p->headers_cap) {
        p->headers_cap = p->headers_cap ? p->headers_cap * 2 : 16;
        r->headers = tf_realloc(r->headers, (size_t)p->headers_cap * sizeof *r->headers);
    }
    r->headers[r->n_headers].name = tf_strndup(p->name.p ? p->name.p : "", p->name.len);
    r->headers[r->n_headers].value = tf_strndup(p->value.p ? p->value.p : "", p->value.len);
    r->n_headers++;
    buf_reset(&p->name);
    buf_reset(&p->value);
    return 0;
}

static void response_clear(struct tf_http_parser *p)
{
    struct tf_http_response *r = &p->resp;
    for (int i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    r->n_headers = 0;
    r->status = 0;
    buf_reset(&p->name);
    buf_reset(&p->value);
    buf_reset(&p->body);
    p->in_trailers = false;
}

static int on_message_begin(llhttp_t *ll)
{
    response_clear(parser_of(ll)); /* a final response after an interim 1xx one */
    return 0;
}

/* Returns 1 ("no body") for HEAD, 1xx, 204 and 304; fails early on a declared length above the cap. */
static int on_headers_complete(llhttp_t *ll)
{
    struct tf_http_parser *p = parser_of(ll);
    p->resp.status = llhttp_get_status_code(ll);
    p->in_trailers = true;
    if (p->resp.status == 101) { /* we never ask to switch protocols */
        p->err = TF_EPROTO;
        return -1;
    }
    /* RFC 9110 §6.4.1: these never have content, whatever Content-Length says (llhttp 8
     * would wait for the declared bytes after a 304). */
    int st = p->resp.status;
    if (p->head || st < 200 || st == 204 || st == 304)
        return 1;
    if ((ll->flags & F_CONTENT_LENGTH) && ll->content_length > p->max_body) {
        p->err = TF_ETOOBIG;
        return -1;
    }
    return 0;
}

static int on_body(llhttp_t *ll, const char *at, size_t n)
{
    struct tf_http_parser *p = parser_of(ll);
    if (n > p->max_body - p->body.len) {
        p->err = TF_ETOOBIG;
        return -1;
    }
    buf_append(&p->body, at, n);
    return 0;
}

/* Interim 1xx responses are skipped; the final one pauses the parser so that bytes after it
 * are noticed instead of being parsed as a second response. */
static int on_message_complete(llhttp_t *ll)
{
    struct tf_http_parser *p = parser_of(ll);
    if (p->resp.status >= 100 && p->resp.status < 200)
        return 0;
    p->done = true;
    p->keep_alive = llhttp_should_keep_alive(ll) != 0;
    p->resp.body = p->body.p; /* final now: appends may have moved the buffer before */
    p->resp.body_len = p->body.len;
    return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_status = on_counted,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_chunk_extension_name = on_counted,
    .on_chunk_extension_value = on_counted,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

struct tf_http_parser *tf_http_parser_new(size_t max_body, bool head_request)
{
    struct tf_http_parser *p = tf_calloc(1, sizeof *p);
    llhttp_init(&p->ll, HTTP_RESPONSE, &parser_settings);
    p->ll.data = p;
    p->max_body = max_body;
    p->head = head_request;
    buf_append(&p->body, "", 0); /* body is always a NUL-terminated string */
    return p;
}

int tf_http_parser_feed(struct tf_http_parser *p, const char *data, size_t len)
{
    if (p->err)
        return p->err;
    if (p->done) {
        p->extra = p->extra || len > 0;
        return 0;
    }
    llhttp_errno_t e = llhttp_execute(&p->ll, data, len);
    if (e == HPE_OK)
        return 0;
    if (e == HPE_PAUSED && p->done) {
        const char *pos = llhttp_get_error_pos(&p->ll);
        p->extra = pos && pos < data + len;
        return 0;
    }
    if (!p->err)
        p->err = TF_EPROTO;
    return p->err;
}

int tf_http_parser_eof(struct tf_http_parser *p)
{
    if (p->err)
        return p->err;
    if (p->done)
        return 0;
    llhttp_errno_t e = llhttp_finish(&p->ll);
    if (p->done && (e == HPE_OK || e == HPE_PAUSED)) {
        p->keep_alive = false; /* the peer has closed */
        return 0;
    }
    if (!p->err)
        p->err = TF_EPROTO;
    return p->err;
}

bool tf_http_parser_done(const struct tf_http_parser *p)
{
    return p->done && !p->err;
}

const struct tf_http_response *tf_http_parser_response(const struct tf_http_parser *p,
                                                       bool *keep_alive)
{
    if (!tf_http_parser_done(p))
        return NULL;
    if (keep_alive)
        *keep_alive = p->keep_alive && !p->extra;
    return &p->resp;
}

void tf_http_parser_free(struct tf_http_parser *p)
{
    if (!p)
        return;
    response_clear(p);
    free(p->resp.headers);
    free(p->name.p);
    free(p->value.p);
    free(p->body.p);
    free(p);
}

const char *tf_http_response_header(const struct tf_http_response *r, const char *name)
{
    for (int i = 0; r && i < r->n_headers; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    }
    return NULL;
}

static bool is_tchar(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", ch);
}

static bool token_ok(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        if (!is_tchar((unsigned char)*s))
            return false;
    }
    return true;
}

/* Validates what goes on the wire: no header injection, no overriding of framing headers. */
static int request_check(const struct tf_http_request *rq)
{
    /* The body limit keeps SSL_write's int length safe; ACME bodies are a few KiB. */
    if (!token_ok(rq->method) || (rq->body_len > 0 && !rq->body) || rq->n_headers < 0 ||
        (rq->n_headers > 0 && !rq->headers) || rq->body_len > (size_t)1 << 30)
        return TF_EINVAL;
    if (rq->content_type && strpbrk(rq->content_type, "\r\n"))
        return TF_EINVAL;
    for (int i = 0; i < rq->n_headers; i++) {
        const struct tf_http_header *h = &rq->headers[i];
        if (!token_ok(h->name) || !h->value || strpbrk(h->value, "\r\n") ||
            strcasecmp(h->name, "Host") == 0 || strcasecmp(h->name, "Content-Length") == 0 ||
            strcasecmp(h->name, "Transfer-Encoding") == 0)
            return TF_EINVAL;
    }
    return 0;
}

int tf_http_request_serialize(const struct tf_http_request *rq, const struct tf_http_url *u,
                              char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (request_check(rq) < 0)
        return TF_EINVAL;
    bool v6 = strchr(u->host, ':') != NULL;
    bool default_port = u->port == (u->tls ? 443 : 80);
    /* RFC 9110 §8.6: no Content-Length on requests whose method expects no content. */
    bool has_body = rq->body_len > 0 || rq->content_type || strcmp(rq->method, "POST") == 0 ||
                    strcmp(rq->method, "PUT") == 0 || strcmp(rq->method, "PATCH") == 0;
    char port[8] = "";
    if (!default_port)
        snprintf(port, sizeof port, ":%u", u->port);
    char *head = tf_asprintf("%s %s HTTP/1.1\r\nHost: %s%s%s%s\r\nUser-Agent: tlsfront/%s\r\n",
                             rq->method, u->path, v6 ? "[" : "", u->host, v6 ? "]" : "", port,
                             TLSFRONT_VERSION);
    struct tf_buf b = {0};
    buf_append(&b, head, strlen(head));
    free(head);
    if (rq->content_type) {
        buf_append(&b, "Content-Type: ", 14);
        buf_append(&b, rq->content_type, strlen(rq->content_type));
        buf_append(&b, "\r\n", 2);
    }
    if (has_body) {
        char cl[48];
        int n = snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", rq->body_len);
        buf_append(&b, cl, (size_t)n);
    }
    for (int i = 0; i < rq->n_headers; i++) {
        const struct tf_http_header *h = &rq->headers[i];
        buf_append(&b, h->name, strlen(h->name));
        buf_append(&b, ": ", 2);
        buf_append(&b, h->value, strlen(h->value));
        buf_append(&b, "\r\n", 2);
    }
    buf_append(&b, "\r\n", 2);
    if (rq->body_len > 0)
        buf_append(&b, rq->body, rq->body_len);
    *out = b.p;
    *out_len = b.len;
    return 0;
}

/* Host names: letters, digits, '-', '.', '_' (no IDN, no percent-encoding). */
static bool host_name_ok(const char *h, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)h[i];
        if (!isalnum(ch) && ch != '-' && ch != '.' && ch != '_')
            return false;
    }
    return true;
}

static int parse_port(const char *s, size_t n, uint16_t *port)
{
    unsigned v = 0;
    if (n == 0 || n > 5)
        return TF_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return TF_EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return TF_EINVAL;
    *port = (uint16_t)v;
    return 0;
}

/* Splits "host", "host:port", "[v6]" or "[v6]:port" into out. */
static int parse_authority(const char *a, size_t n, struct tf_http_url *out)
{
    const char *host = a, *port = NULL;
    size_t host_len = n, port_len = 0;
    char tmp[INET6_ADDRSTRLEN + 1];
    unsigned char addr[16];
    if (memchr(a, '@', n))
        return TF_EINVAL; /* user info has no place in our requests */
    if (n > 0 && a[0] == '[') {
        const char *close = memchr(a, ']', n);
        if (!close)
            return TF_EINVAL;
        host = a + 1;
        host_len = (size_t)(close - host);
        if (close + 1 < a + n) {
            if (close[1] != ':')
                return TF_EINVAL;
            port = close + 2;
            port_len = (size_t)(a + n - port);
        }
        if (host_len == 0 || host_len >= sizeof tmp)
            return TF_EINVAL;
        memcpy(tmp, host, host_len);
        tmp[host_len] = '\0';
        if (inet_pton(AF_INET6, tmp, addr) != 1)
            return TF_EINVAL;
        out->host_is_ip = true;
    } else {
        const char *colon = memchr(a, ':', n);
        if (colon) {
            host_len = (size_t)(colon - a);
            port = colon + 1;
            port_len = (size_t)(a + n - port);
        }
        if (!host_name_ok(host, host_len))
            return TF_EINVAL;
        if (host_len < sizeof tmp) {
            memcpy(tmp, host, host_len);
            tmp[host_len] = '\0';
            out->host_is_ip = inet_pton(AF_INET, tmp, addr) == 1;
        }
    }
    if (port && parse_port(port, port_len, &out->port) < 0)
        return TF_EINVAL;
    out->host = tf_strndup(host, host_len);
    for (char *c = out->host; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    return 0;
}

int tf_http_url_parse(const char *url, struct tf_http_url *out)
{
    memset(out, 0, sizeof *out);
    if (!url)
        return TF_EINVAL;
    for (const unsigned char *c = (const unsigned char *)url; *c; c++) {
        if (*c <= 0x20 || *c >= 0x7f)
            return TF_EINVAL;
    }
    const char *rest;
    if (strncasecmp(url, "https://", 8) == 0) {
        out->tls = true;
        out->port = 443;
        rest = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        out->port = 80;
        rest = url + 7;
    } else {
        return TF_EINVAL;
    }
    size_t alen = strcspn(rest, "/?#");
    if (parse_authority(rest, alen, out) < 0) {
        tf_http_url_clear(out);
        return TF_EINVAL;
    }
    const char *path = rest + alen;
    size_t plen = strcspn(path, "#");
    if (plen == 0)
        out->path = tf_strdup("/");
    else if (path[0] == '?')
        out->path = tf_asprintf("/%.*s", (int)plen, path);
    else
        out->path = tf_strndup(path, plen);
    return 0;
}

void tf_http_url_clear(struct tf_http_url *u)
{
    if (!u)
        return;
    free(u->host);
    free(u->path);
    u->host = NULL;
    u->path = NULL;
}

/* Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int month_index(const char *s)
{
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    for (int i = 0; i < 12; i++) {
        if (strncmp(s, months[i], 3) == 0)
            return i + 1;
    }
    return 0;
}

static bool is_weekday(const char *s, size_t n)
{
    static const char *const days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
    static const char *const long_days[] = {"Monday", "Tuesday", "Wednesday", "Thursday",
                                            "Friday", "Saturday", "Sunday"};
    for (int i = 0; i < 7; i++) {
        if ((n == 3 && strncmp(s, days[i], 3) == 0) ||
            (n == strlen(long_days[i]) && strncmp(s, long_days[i], n) == 0))
            return true;
    }
    return false;
}

/* Fields of one HTTP-date; the three formats of RFC 9110 §5.6.7 fill it differently. */
struct http_date {
    int year, mon, day, hour, min, sec;
};

/* Parses the weekday and the rest of the date after it into d. Returns 0 or -1. */
static int parse_http_date(const char *s, int64_t now, struct http_date *d)
{
    char wk[10], mon[4], tail[4];
    int n = 0;
    size_t wlen = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
    if (wlen >= sizeof wk || !is_weekday(s, wlen))
        return -1;
    memcpy(wk, s, wlen);
    wk[wlen] = '\0';
    const char *r = s + wlen;
    if (wlen == 3 && r[0] == ',') { /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        if (sscanf(r, ", %2d %3[A-Za-z] %4d %2d:%2d:%2d %3s%n", &d->day, mon, &d->year, &d->hour,
                   &d->min, &d->sec, tail, &n) != 7 || strcmp(tail, "GMT") != 0)
            return -1;
    } else if (wlen > 3 && r[0] == ',') { /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        if (sscanf(r, ", %2d-%3[A-Za-z]-%2d %2d:%2d:%2d %3s%n", &d->day, mon, &d->year, &d->hour,
                   &d->min, &d->sec, tail, &n) != 7 || strcmp(tail, "GMT") != 0)
            return -1;
        /* §5.6.7: a two-digit year more than 50 years ahead is in the past century. */
        int this_year = (int)(1970 + now / 31556952);
        d->year += this_year / 100 * 100;
        if (d->year > this_year + 50)
            d->year -= 100;
    } else if (wlen == 3 && r[0] == ' ') { /* asctime: Sun Nov  6 08:49:37 1994 */
        if (sscanf(r, " %3[A-Za-z] %2d %2d:%2d:%2d %4d%n", mon, &d->day, &d->hour, &d->min,
                   &d->sec, &d->year, &n) != 6)
            return -1;
    } else {
        return -1;
    }
    if (r[n] != '\0' || strlen(mon) != 3 || (d->mon = month_index(mon)) == 0)
        return -1;
    return 0;
}

static bool date_valid(const struct http_date *d)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (d->year % 4 == 0 && d->year % 100 != 0) || d->year % 400 == 0;
    if (d->year < 1900 || d->day < 1 || d->day > mdays[d->mon - 1])
        return false;
    if (d->mon == 2 && d->day == 29 && !leap)
        return false;
    return d->hour <= 23 && d->hour >= 0 && d->min >= 0 && d->min <= 59 && d->sec >= 0 &&
           d->sec <= 60;
}

int64_t tf_http_retry_after(const char *value, int64_t now)
{
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t len = strlen(value);
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    if (len == 0 || len > 64)
        return -1;
    char s[65];
    memcpy(s, value, len);
    s[len] = '\0';
    if (strspn(s, "0123456789") == len) { /* delta-seconds; absurd values are capped */
        int64_t v = 0;
        for (size_t i = 0; i < len && v < INT32_MAX; i++)
            v = v * 10 + (s[i] - '0');
        return TF_MIN(v, (int64_t)INT32_MAX);
    }
    struct http_date d = {0};
    if (parse_http_date(s, now, &d) < 0 || !date_valid(&d))
        return -1;
    int64_t t = days_from_civil(d.year, (unsigned)d.mon, (unsigned)d.day) * 86400 +
                d.hour * 3600 + d.min * 60 + d.sec;
    return t > now ? t - now : 0;
}

int64_t tf_http_response_retry_after(const struct tf_http_response *r)
{
    const char *ra = r ? tf_http_response_header(r, "Retry-After") : NULL;
    return ra ? tf_http_retry_after(ra, (int64_t)time(NULL)) : -1;
}
