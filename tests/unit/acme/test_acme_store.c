/*
 * test_acme_store.c: a certificate save (tf_acme_store_save) that the filesystem refuses part
 * way, in a mkdtemp directory. The write failures are real: RLIMIT_FSIZE (which binds root
 * too) makes a write past 4 KiB fail with EFBIG, as a full disk fails one with ENOSPC, so a
 * value over 4 KiB is refused while smaller ones are stored. A save whose key cannot be
 * written keeps the old certificate; one whose chain or metadata cannot be written (after the
 * key was) leaves nothing for the name: no new key beside the old chain, no key alone, and
 * no temp file. The e2e test tests/e2e/test_full_disk.py fills a real tmpfs.
 */
#include "tlsfront/acme/acme.h"
#include "tlsfront/store/storage_fs.h"

#include "unit/store/storage_test_util.h"

#define BIG 8192 /* over the 4 KiB write limit */

/* Save name's three texts and run the loop; the callback's code (checked to run once). */
static int save_wait(struct tf_storage *s, const char *name, const char *chain, const char *key,
                     const char *meta)
{
    struct res r = {0};
    int err = tf_acme_store_save(s, name, chain, key, meta, on_done, &r);
    if (err)
        return err;
    uv_run(s->loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(r.calls, 1);
    return r.err;
}

/* The same, with writes past 4 KiB refused while it runs. */
static int save_limited(struct tf_storage *s, const char *name, const char *chain, const char *key,
                        const char *meta)
{
    struct rlimit saved;
    fsize_limit(4096, &saved);
    int err = save_wait(s, name, chain, key, meta);
    fsize_restore(&saved);
    return err;
}

/* The file rel under dir, or "(none)". Caller frees. */
static char *file_or_none(const char *dir, const char *rel)
{
    char *v = read_file(dir, rel);
    return v ? v : tf_strdup("(none)");
}

/* Check that name's stored files are key, chain and meta ("(none)" for a missing one). */
static void check_stored(const char *dir, const char *name, const char *key, const char *chain,
                         const char *meta)
{
    static const char *files[3] = {"key.pem", "cert.pem", "meta.json"};
    const char *want[3] = {key, chain, meta};
    for (int i = 0; i < 3; i++) {
        char *rel = tf_asprintf("certs/%s/%s", name, files[i]);
        char *got = file_or_none(dir, rel);
        CHECK_EQ_STR(got, want[i]);
        free(got);
        free(rel);
    }
}

static void test_failed_saves(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir;
    struct tf_storage *s = store_new(&loop, "save", &dir);
    CHECK(s != NULL);
    char *big = tf_malloc(BIG + 1);
    memset(big, 'b', BIG);
    big[BIG] = '\0';
    const char *none = "(none)";

    /* A first certificate, stored whole. */
    CHECK_EQ_INT(save_wait(s, "a.test", "chain-1", "key-1", "meta-1"), 0);
    check_stored(dir, "a.test", "key-1", "chain-1", "meta-1");
    CHECK_EQ_INT(file_mode(dir, "certs/a.test/key.pem"), 0600);

    /* A renewal whose key cannot be written: nothing changed, the old certificate stays. */
    CHECK_EQ_INT(save_limited(s, "a.test", "chain-2", big, "meta-2"), UV_EFBIG);
    check_stored(dir, "a.test", "key-1", "chain-1", "meta-1");

    /* A renewal whose chain cannot be written after its key was: the new key would sit
     * beside the old chain (a pair that never loads); the name's files are removed. */
    CHECK_EQ_INT(save_limited(s, "a.test", big, "key-3", "meta-3"), UV_EFBIG);
    check_stored(dir, "a.test", none, none, none);

    /* A new name whose chain cannot be written: no key left alone. */
    CHECK_EQ_INT(save_limited(s, "b.test", big, "key-b", "meta-b"), UV_EFBIG);
    check_stored(dir, "b.test", none, none, none);

    /* A new name whose metadata cannot be written: no key and chain left without it. */
    CHECK_EQ_INT(save_limited(s, "c.test", "chain-c", "key-c", big), UV_EFBIG);
    check_stored(dir, "c.test", none, none, none);

    /* With room again, each is stored whole. */
    CHECK_EQ_INT(save_wait(s, "a.test", "chain-4", "key-4", "meta-4"), 0);
    check_stored(dir, "a.test", "key-4", "chain-4", "meta-4");
    CHECK_EQ_INT(save_wait(s, "b.test", "chain-b", "key-b", "meta-b"), 0);
    check_stored(dir, "b.test", "key-b", "chain-b", "meta-b");
    CHECK_EQ_INT(temp_files(dir), 0);
    free(big);
    store_close(s, &loop);
    free(dir);
}

int main(void)
{
    if (!root_setup("acme_store"))
        return 1;
    TF_TEST_RUN(test_failed_saves);
    root_remove();
    return TF_TEST_DONE();
}
