/*
 * test_certs_cmd.c: `tlsfront certs`: usage errors exit 2; a storage that does not exist yet
 * lists nothing; a name whose certificate is missing is listed as an error and the command
 * still exits 0. The listing itself (tf_acme_store_list_sync) is tested against a real CA in
 * tests/loop/acme.
 */
#include "certs_cmd_int.h"
#include "tf_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_usage(void)
{
    char *bogus[] = {"certs", "--bogus"};
    CHECK_EQ_INT(tf_cmd_certs(2, bogus), 2);
    char *empty[] = {"certs", "--storage", ""};
    CHECK_EQ_INT(tf_cmd_certs(3, empty), 2);
}

static void test_storage(void)
{
    const char *tmp = getenv("TMPDIR");
    char dir[512], sub[600], file[700];
    snprintf(dir, sizeof dir, "%s/tf-certs.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    char *missing_argv[] = {"certs", "--storage", sub};
    snprintf(sub, sizeof sub, "%s/missing", dir);
    CHECK_EQ_INT(tf_cmd_certs(3, missing_argv), 0); /* nothing stored yet: an empty list */
    /* A name directory whose certificate does not parse is listed as an error, not fatal. */
    snprintf(sub, sizeof sub, "%s/certs", dir);
    CHECK_EQ_INT(mkdir(sub, 0700), 0);
    snprintf(sub, sizeof sub, "%s/certs/a.test", dir);
    CHECK_EQ_INT(mkdir(sub, 0700), 0);
    snprintf(file, sizeof file, "%s/cert.pem", sub);
    FILE *f = fopen(file, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("not a certificate\n", f);
        fclose(f);
    }
    char *argv[] = {"certs", "--storage", dir};
    CHECK_EQ_INT(tf_cmd_certs(3, argv), 0);
    unlink(file);
    rmdir(sub);
    snprintf(sub, sizeof sub, "%s/certs", dir);
    rmdir(sub);
    rmdir(dir);
}

int main(void)
{
    TF_TEST_RUN(test_usage);
    TF_TEST_RUN(test_storage);
    return TF_TEST_DONE();
}
