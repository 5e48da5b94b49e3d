/*
 * acme_pebble.h: test helpers for tests/loop/test_acme.c: a throw-away CA and HTTPS
 * certificate for 127.0.0.1 (certs/mkcerts.sh), Debian's pebble started by fork+exec on
 * kernel-chosen loopback ports and killed by its PID, and a loop runner with a bound.
 * Only for tests: it blocks (system(), waitpid) outside the loop.
 */
#ifndef TF_TEST_ACME_PEBBLE_H
#define TF_TEST_ACME_PEBBLE_H

#include "tlsfront/base/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include <uv.h>

#define PEBBLE_BIN "/usr/bin/pebble"

struct pebble {
    char dir[256];               /* temp dir with config, certs and the log */
    int port, mgmt_port, dns_port;
    pid_t pid;
    char ca_file[300], log_file[300];
};

/* A free loopback TCP port: bind port 0, read it, close. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int run_cmd(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc;
}

/* A CA and a leaf for 127.0.0.1/localhost under p->dir (certs/mkcerts.sh, as everywhere). */
static int pebble_make_certs(struct pebble *p)
{
    char cmd[2048];
    const char *src = getenv("TF_SRC");
    snprintf(cmd, sizeof(cmd),
             "bash '%s/certs/mkcerts.sh' leaf '%s' leaf localhost,127.0.0.1 --days 2 >/dev/null",
             src ? src : ".", p->dir);
    snprintf(p->ca_file, sizeof(p->ca_file), "%s/ca.crt", p->dir);
    return run_cmd(cmd);
}

/* Write pebble.json; with eab, External Account Binding is required and "kid-1" has the
 * HMAC key TEST_EAB_HMAC. */
#define TEST_EAB_HMAC "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"

static int pebble_write_config(struct pebble *p, bool eab)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/pebble.json", p->dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f,
            "{\"pebble\":{\"listenAddress\":\"127.0.0.1:%d\",\"managementListenAddress\":"
            "\"127.0.0.1:%d\",\"certificate\":\"%s/leaf.crt\",\"privateKey\":\"%s/leaf.key\","
            "\"httpPort\":5002,\"tlsPort\":5001,\"ocspResponderURL\":\"\","
            "\"externalAccountBindingRequired\":%s%s}}\n",
            p->port, p->mgmt_port, p->dir, p->dir, eab ? "true" : "false",
            eab ? ",\"externalAccountMACKeys\":{\"kid-1\":\"" TEST_EAB_HMAC "\"}" : "");
    fclose(f);
    return 0;
}

static int pebble_init(struct pebble *p)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->dir, sizeof(p->dir), "/tmp/tf-acme-pebble-XXXXXX");
    if (!mkdtemp(p->dir))
        return -1;
    p->port = free_port();
    p->mgmt_port = free_port();
    p->dns_port = free_port();
    snprintf(p->log_file, sizeof(p->log_file), "%s/pebble.log", p->dir);
    if (pebble_write_config(p, false))
        return -1;
    return pebble_make_certs(p);
}

static bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Start pebble with badNonce rate nonce_reject (percent); wait (bounded) for both ports. */
static int pebble_start(struct pebble *p, int nonce_reject)
{
    char cfg[400], dns[64], rej[16];
    snprintf(cfg, sizeof(cfg), "%s/pebble.json", p->dir);
    snprintf(dns, sizeof(dns), "127.0.0.1:%d", p->dns_port);
    snprintf(rej, sizeof(rej), "%d", nonce_reject);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(p->log_file, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        setenv("PEBBLE_VA_ALWAYS_VALID", "1", 1);
        setenv("PEBBLE_VA_NOSLEEP", "1", 1);
        setenv("PEBBLE_WFE_NONCEREJECT", rej, 1);
        setenv("PEBBLE_AUTHZREUSE", "0", 1);
        execl(PEBBLE_BIN, "pebble", "-config", cfg, "-dnsserver", dns, (char *)NULL);
        _exit(127);
    }
    p->pid = pid;
    for (int i = 0; i < 1000; i++) { /* up to ~10 s */
        if (port_open(p->port) && port_open(p->mgmt_port))
            return 0;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            p->pid = 0;
            fprintf(stderr, "pebble exited early; see %s\n", p->log_file);
            return -1;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "pebble did not open its ports; see %s\n", p->log_file);
    return -1;
}

static void pebble_stop(struct pebble *p)
{
    if (p->pid <= 0)
        return;
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
}

static void pebble_dump_log(const struct pebble *p)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "tail -n 40 %s >&2", p->log_file);
    run_cmd(cmd);
}

static void rm_rf(const char *dir)
{
    char cmd[400];
    if (strncmp(dir, "/tmp/tf-acme-", 13) != 0)
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    run_cmd(cmd);
}

/* Run loop until *count >= want or ms passed. A repeating guard timer keeps UV_RUN_ONCE from
 * blocking past the bound. Returns true when the count was reached. */
static void on_guard(uv_timer_t *t) { (void)t; }

static bool run_until(uv_loop_t *loop, const int *count, int want, uint64_t ms)
{
    uv_timer_t guard;
    uv_timer_init(loop, &guard);
    uv_timer_start(&guard, on_guard, 50, 50);
    uv_update_time(loop);
    uint64_t end = uv_now(loop) + ms;
    while (*count < want && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *count >= want;
}

/* A whole small file as a new string, or NULL. */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = tf_calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Does the PEM chain (leaf first) verify up to root_pem? */
static bool chain_verifies(const char *chain_pem, const char *root_pem)
{
    BIO *b = BIO_new_mem_buf(chain_pem, -1), *rb = BIO_new_mem_buf(root_pem, -1);
    X509 *leaf = PEM_read_bio_X509(b, NULL, NULL, NULL), *x;
    X509 *root = PEM_read_bio_X509(rb, NULL, NULL, NULL);
    STACK_OF(X509) *inter = sk_X509_new_null();
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)))
        sk_X509_push(inter, x);
    ERR_clear_error();
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *vc = X509_STORE_CTX_new();
    bool ok = leaf && root && X509_STORE_add_cert(store, root) == 1 &&
              X509_STORE_CTX_init(vc, store, leaf, inter) == 1 && X509_verify_cert(vc) == 1;
    if (!ok)
        fprintf(stderr, "  chain does not verify: %s\n",
                X509_verify_cert_error_string(X509_STORE_CTX_get_error(vc)));
    X509_STORE_CTX_free(vc);
    X509_STORE_free(store);
    sk_X509_pop_free(inter, X509_free);
    X509_free(leaf);
    X509_free(root);
    BIO_free(b);
    BIO_free(rb);
    return ok;
}

#endif
