/*
 * test_storage_rediss.c: the Redis store over TLS (rediss://) against a real redis-server
 * started here with a TLS port (certificates made by certs/mkcerts.sh in the test's temp
 * directory): values, listing, locks, publish/subscribe and counters through the store's
 * TLS relay, by IP address and by host name; then every way TLS can refuse Redis (a CA
 * that did not sign its certificate, a certificate for another name, a plain-text Redis
 * behind rediss://, nothing listening) looks like Redis being down: operations fail with
 * an error instead of hanging, the store reports itself down, the reason is logged once
 * with the verification error, and reconnecting goes on; a TLS Redis restarted is used
 * again without a new store. A CA file that does not load is refused when the store is
 * made. Every test runs its own loop and requires uv_loop_close() to succeed; the relay's
 * private directory is gone after close.
 */
#include "loop/redis_fixture.h"
#include "unit/store/storage_test_util.h"

#include "tlsfront/base/log.h"
#include "tlsfront/config/config.h"
#include "tlsfront/store/storage_cluster.h"
#include "tlsfront/store/storage_redis.h"

#include <dirent.h>
#include <sys/stat.h>

static struct redis_fixture g_fx;
static char g_tmp[300]; /* TMPDIR while the tests run: where relays make their directory */

/* A store for rediss://HOST:PORT with ca (NULL: the system store). */
static struct tf_storage *tstore_t(uv_loop_t *loop, const char *host, int port, const char *ca,
                                   const char *prefix, uint32_t timeout_ms, char *err,
                                   size_t errlen)
{
    char *url = tf_asprintf("rediss://:%s@%s:%d/3", REDIS_URL_PASS, host, port);
    struct tf_redis_url u;
    CHECK_EQ_INT(tf_config_parse_redis_url(url, &u, err, errlen), 0);
    free(url);
    struct tf_storage_redis_opts o = {
        .url = &u, .prefix = prefix, .ca_file = ca, .timeout_ms = timeout_ms};
    struct tf_storage *s = tf_storage_redis_new(loop, &o, err, errlen);
    tf_config_redis_url_clear(&u);
    return s;
}

static struct tf_storage *tstore(uv_loop_t *loop, const char *host, int port, const char *ca,
                                 const char *prefix, char *err, size_t errlen)
{
    return tstore_t(loop, host, port, ca, prefix, 0, err, errlen);
}

static char *cert_path(const char *sub, const char *file)
{
    return tf_asprintf("%s/%s/%s", g_root, sub, file);
}

/* Entries left in TMPDIR by relays (their private directories). */
static int relay_dirs(void)
{
    DIR *d = opendir(g_tmp);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strncmp(e->d_name, "tlsfront-redis-", 15) == 0;
    if (d)
        closedir(d);
    return n;
}

static void on_msg(const char *msg, size_t len, void *arg)
{
    struct res *r = arg;
    r->calls++;
    if (msg) {
        free(r->data);
        r->data = tf_strndup(msg, len);
    }
}

static void on_count(int err, int64_t value, void *arg)
{
    struct res *r = arg;
    r->calls++;
    r->err = err;
    r->n = (int)value;
}

static void test_tls_ops(const char *host, const char *prefix)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[300] = "";
    char *ca = cert_path("tls", "ca.crt");
    struct tf_storage *s = tstore(&loop, host, g_fx.tls_port, ca, prefix, err, sizeof(err));
    struct tf_storage *b = tstore(&loop, host, g_fx.tls_port, ca, prefix, err, sizeof(err));
    CHECK(s && b);
    CHECK_EQ_INT(relay_dirs(), 2);
    int e;
    CHECK_EQ_INT(put_str(s, "certs/a.example/cert.pem", "over tls", false), 0);
    char *v = get_wait(s, "certs/a.example/cert.pem", &e);
    CHECK_EQ_INT(e, 0);
    CHECK_EQ_STR(v, "over tls");
    free(v);
    size_t len = 0;
    char *key = tf_asprintf("%s:v:certs/a.example/cert.pem", prefix);
    v = raw_get(g_fx.port, key, &len); /* really in Redis */
    free(key);
    CHECK_EQ_STR(v, "over tls");
    free(v);
    /* A value larger than the relay's queue cap crosses in both directions. */
    char *big = tf_malloc(TF_STORAGE_MAX_VALUE + 1);
    memset(big, 'b', TF_STORAGE_MAX_VALUE);
    big[TF_STORAGE_MAX_VALUE] = '\0';
    CHECK_EQ_INT(put_str(s, "big", big, false), 0);
    v = get_wait(b, "big", &e);
    CHECK(v && strcmp(v, big) == 0);
    free(v);
    free(big);
    struct res r = {0};
    CHECK_EQ_INT(done_wait(s, tf_storage_list(s, "certs", on_list, &r), &r), 0);
    CHECK(r.n == 1 && strcmp(r.keys[0], "certs/a.example/cert.pem") == 0);
    res_clear(&r);
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), 0);
    CHECK_EQ_INT(lock_wait(b, LOCK_NAME, 30, 0), TF_EBUSY);
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), 0);
    /* Announcements reach the other store's subscriber (its own relayed connection). */
    const struct tf_storage_cluster_ops *cl = tf_storage_cluster(s);
    struct res msg = {0};
    CHECK_EQ_INT(tf_storage_cluster(b)->subscribe(b, on_msg, &msg), 0);
    for (int i = 0; i < 200 && !msg.data; i++) { /* until the subscriber is in */
        CHECK_EQ_INT(done_wait(s, cl->publish(s, "hello", 5, on_done, &r), &r), 0);
        r.calls = 0;
        loop_for(&loop, 50);
    }
    CHECK_EQ_STR(msg.data, "hello");
    res_clear(&msg);
    CHECK_EQ_INT(cl->count(s, "budget/x", 3, 60000, on_count, &r), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(r.calls == 1 && r.err == 0 && r.n == 3);
    CHECK(cl->up(s) && tf_storage_cluster(b)->up(b));
    tf_storage_close(b, NULL, NULL);
    store_close(s, &loop);
    CHECK_EQ_INT(relay_dirs(), 0);
    free(ca);
}

static void test_tls_by_ip(void)
{
    test_tls_ops("127.0.0.1", "s1");
}

static void test_tls_by_name(void)
{
    test_tls_ops("localhost", "s5");
}

/* stderr into a file for the length of a test; returns the saved fd. */
static int capture_start(const char *path)
{
    fflush(stderr);
    int saved = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
    return saved;
}

static char *capture_end(int saved, const char *path)
{
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    const char *slash = strrchr(path, '/');
    char *dir = tf_strndup(path, (size_t)(slash - path));
    char *text = read_file(dir, slash + 1);
    free(dir);
    return text;
}

static int count_of(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* A refused Redis: every operation fails (none hangs), the store is down, the reason is
 * logged once at warning level, and the store keeps reconnecting (debug lines with the
 * same reason). timeout_ms 0: the default limit. */
static void refused_t(const char *host, int port, const char *ca, uint32_t timeout_ms,
                      const char *reason)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *log = tf_asprintf("%s/stderr.log", g_root);
    int saved = capture_start(log);
    tf_log_setup(TF_LOG_DEBUG, false);
    char err[300] = "";
    struct tf_storage *s = tstore_t(&loop, host, port, ca, "s2", timeout_ms, err, sizeof(err));
    CHECK(s != NULL);
    int e = 0;
    for (int i = 0; i < 6; i++) { /* spans several reconnects (backoff 100, 200, 400 ms) */
        CHECK(get_wait(s, "k", &e) == NULL);
        CHECK(e == UV_ECONNRESET || e == UV_ECONNREFUSED || e == UV_ETIMEDOUT);
        CHECK(!tf_storage_cluster(s)->up(s));
        loop_for(&loop, 150);
    }
    store_close(s, &loop);
    tf_log_setup(TF_LOG_INFO, false);
    char *text = capture_end(saved, log);
    int warned = count_of(text, "warn storage: redis"), again = count_of(text, "still unavailable");
    if (warned != 1 || again < 2 || count_of(text, reason) < 3)
        fprintf(stderr, "log (want \"%s\"):\n%s\n", reason, text ? text : "(none)");
    CHECK_EQ_INT(warned, 1);                /* one warning for the outage, with the reason */
    CHECK(again >= 2);                      /* reconnects keep trying */
    CHECK(count_of(text, reason) >= 3);     /* and keep failing the same way */
    free(text);
    free(log);
    CHECK_EQ_INT(relay_dirs(), 0);
}

static void refused(const char *host, int port, const char *ca, const char *reason)
{
    refused_t(host, port, ca, 0, reason);
}

static void test_wrong_ca(void)
{
    char *other = cert_path("other", "ca.crt");
    refused("127.0.0.1", g_fx.tls_port, other, "TLS: certificate verification failed: ");
    free(other);
}

/* "127.1" reaches 127.0.0.1 (getaddrinfo reads it as an address) but is checked as a host
 * name, which the certificate (localhost, 127.0.0.1) does not hold. */
static void test_wrong_name(void)
{
    char *ca = cert_path("tls", "ca.crt");
    refused("127.1", g_fx.tls_port, ca, "certificate verification failed: hostname mismatch");
    free(ca);
}

/* rediss:// to Redis's plain port: Redis waits for a command line that never comes, so the
 * session never opens; the time limit ends each attempt. */
static void test_plain_port(void)
{
    char *ca = cert_path("tls", "ca.crt");
    refused_t("127.0.0.1", g_fx.port, ca, 300, "within the time limit");
    free(ca);
}

/* Nothing listens: the relay's connect fails, the store is down with that reason. */
static void test_nothing_listens(void)
{
    char *ca = cert_path("tls", "ca.crt");
    refused("127.0.0.1", free_port(), ca, "connect: connection refused");
    free(ca);
}

/* Redis killed and restarted behind the relay: operations fail meanwhile, and the store is
 * back on its own (a fresh relayed connection, a new TLS session). */
static void test_tls_down_and_back(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[300] = "";
    char *ca = cert_path("tls", "ca.crt");
    struct tf_storage *s = tstore(&loop, "localhost", g_fx.tls_port, ca, "s6", err, sizeof(err));
    CHECK_EQ_INT(put_str(s, "k", "before", false), 0);
    redis_stop(&g_fx);
    int e = 0;
    CHECK(get_wait(s, "k", &e) == NULL);
    CHECK(e == UV_ECONNRESET || e == UV_ECONNREFUSED);
    CHECK(!tf_storage_cluster(s)->up(s));
    CHECK(redis_start(&g_fx, false));
    int tries = 0;
    for (e = -1; e != 0 && tries < 200; tries++) { /* bounded at 20 s */
        e = put_str(s, "k", "after", false);
        if (e)
            loop_for(&loop, 100);
    }
    CHECK_EQ_INT(e, 0);
    char *v = get_wait(s, "k", &e);
    CHECK_EQ_STR(v, "after");
    free(v);
    store_close(s, &loop);
    free(ca);
}

static void test_bad_ca_file(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[300] = "";
    char *missing = cert_path("tls", "missing.crt");
    CHECK(tstore(&loop, "127.0.0.1", g_fx.tls_port, missing, "s3", err, sizeof(err)) == NULL);
    CHECK(strncmp(err, "--storage-ca: ", 14) == 0);
    CHECK(strchr(err, '\n') == NULL);
    free(missing);
    char *key = cert_path("tls", "redis.key"); /* a file, but no certificate in it */
    CHECK(tstore(&loop, "127.0.0.1", g_fx.tls_port, key, "s3", err, sizeof(err)) == NULL);
    CHECK(strncmp(err, "--storage-ca: ", 14) == 0);
    free(key);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    CHECK_EQ_INT(relay_dirs(), 0);
}

/* Closed at once, with the relayed connections still opening: nothing leaks or hangs. */
static void test_close_while_opening(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[300] = "";
    char *ca = cert_path("tls", "ca.crt");
    struct tf_storage *s = tstore(&loop, "localhost", g_fx.tls_port, ca, "s4", err, sizeof(err));
    struct res r = {0};
    CHECK_EQ_INT(tf_storage_get(s, "k", on_get, &r), 0);
    CHECK_EQ_INT(tf_storage_cluster(s)->subscribe(s, on_msg, &r), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    store_close(s, &loop);
    CHECK_EQ_INT(r.calls, 1);
    CHECK_EQ_INT(relay_dirs(), 0);
    res_clear(&r);
    free(ca);
}

/* TMPDIR/name as a relay directory: "s" when sock, "pid" holding pid when pid > 0, and a
 * file "x" when extra. Returns its path (owned by the caller). */
static char *stale_dir(const char *name, long pid, bool extra)
{
    char *dir = tf_asprintf("%s/%s", g_tmp, name), *f;
    CHECK_EQ_INT(mkdir(dir, 0700), 0);
    const char *files[] = {"s", pid > 0 ? "pid" : NULL, extra ? "x" : NULL};
    for (size_t i = 0; i < TF_ARRAY_LEN(files); i++) {
        if (!files[i])
            continue;
        f = tf_asprintf("%s/%s", dir, files[i]);
        FILE *fp = fopen(f, "w");
        CHECK(fp != NULL);
        if (fp) {
            fprintf(fp, "%ld\n", pid);
            fclose(fp);
        }
        free(f);
    }
    return dir;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The id of a process that has just exited (reaped). */
static long gone_pid(void)
{
    pid_t p = fork();
    if (p == 0)
        _exit(0);
    CHECK(p > 0);
    waitpid(p, NULL, 0);
    return (long)p;
}

/* A relay directory left behind by a process killed with SIGKILL (it could not remove it) is
 * removed when the next relay makes its own; a live process's, one without a pid file (being
 * made), one holding another file, another user's (when the test runs as root) and a link to
 * a stale one are left alone. */
static void test_stale_dirs_swept(void)
{
    long gone = gone_pid();
    char *dead = stale_dir("tlsfront-redis-dead01", gone, false);
    char *live = stale_dir("tlsfront-redis-live01", (long)getpid(), false);
    char *nopid = stale_dir("tlsfront-redis-nopid1", 0, false);
    char *extra = stale_dir("tlsfront-redis-extra1", gone, true);
    char *other = stale_dir("tlsfront-redis-other1", gone, false);
    bool root = geteuid() == 0;
    if (root)
        CHECK_EQ_INT(chown(other, 65534, 65534), 0);
    char *target = stale_dir("elsewhere", gone, false);
    char *link = tf_asprintf("%s/tlsfront-redis-link01", g_tmp);
    CHECK_EQ_INT(symlink(target, link), 0);

    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[300] = "";
    char *ca = cert_path("tls", "ca.crt");
    struct tf_storage *s = tstore(&loop, "127.0.0.1", free_port(), ca, "s6", err, sizeof(err));
    CHECK(s != NULL);
    CHECK(!is_dir(dead));
    CHECK(is_dir(live) && is_dir(nopid) && is_dir(extra) && is_dir(target));
    CHECK(!root || is_dir(other));
    /* Left: live, nopid, extra, the link, other (when another user's); and the new one. */
    CHECK_EQ_INT(relay_dirs(), root ? 6 : 5);
    if (s) {
        store_close(s, &loop); /* runs the loop and closes it */
    } else {
        uv_run(&loop, UV_RUN_DEFAULT);
        CHECK_EQ_INT(uv_loop_close(&loop), 0);
    }
    CHECK_EQ_INT(relay_dirs(), root ? 5 : 4);
    CHECK_EQ_INT(unlink(link), 0);
    char *dirs[] = {live, nopid, extra, other, target};
    for (size_t i = 0; i < TF_ARRAY_LEN(dirs); i++) {
        char *cmd = tf_asprintf("rm -rf '%s'", dirs[i]);
        CHECK_EQ_INT(system(cmd), 0);
        free(cmd);
        free(dirs[i]);
    }
    CHECK_EQ_INT(relay_dirs(), 0);
    free(dead);
    free(link);
    free(ca);
}

static bool make_certs(void)
{
    const char *src = getenv("TF_SRC");
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "bash '%1$s/certs/mkcerts.sh' leaf '%2$s/tls' redis localhost,127.0.0.1 >/dev/null"
             " && bash '%1$s/certs/mkcerts.sh' ca '%2$s/other' >/dev/null",
             src ? src : ".", g_root);
    return system(cmd) == 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (!root_setup("rediss"))
        return 1;
    snprintf(g_tmp, sizeof(g_tmp), "%.200s/tmp", g_root);
    mkdir(g_tmp, 0700);
    setenv("TMPDIR", g_tmp, 1);
    snprintf(g_fx.dir, sizeof(g_fx.dir), "%s", g_root);
    snprintf(g_fx.tls, sizeof(g_fx.tls), "%.200s/tls", g_root);
    if (!make_certs() || !redis_start(&g_fx, true)) {
        root_remove();
        return 1;
    }
    TF_TEST_RUN(test_tls_by_ip);
    TF_TEST_RUN(test_tls_by_name);
    TF_TEST_RUN(test_wrong_ca);
    TF_TEST_RUN(test_wrong_name);
    TF_TEST_RUN(test_plain_port);
    TF_TEST_RUN(test_nothing_listens);
    TF_TEST_RUN(test_tls_down_and_back);
    TF_TEST_RUN(test_bad_ca_file);
    TF_TEST_RUN(test_close_while_opening);
    TF_TEST_RUN(test_stale_dirs_swept);
    redis_stop(&g_fx);
    root_remove();
    return TF_TEST_DONE();
}
