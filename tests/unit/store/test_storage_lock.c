/*
 * test_storage_lock.c: leased locks of the filesystem store within one process, against
 * leases left by others (live, expired, dead pid, garbage), between processes (fork), under
 * a race of several processes for one stale lease, and close with operations in flight.
 * Every test runs its own loop and requires uv_loop_close() to succeed.
 */
#include "storage_test_util.h"

static long long lease_expires(const char *dir, const char *name, long long *pid)
{
    char *rel = tf_asprintf(".locks/%s.lock", name);
    char *t = read_file(dir, rel);
    free(rel);
    long long e = -1;
    char *p = t ? strstr(t, "\"expires\":") : NULL;
    if (p)
        e = atoll(p + 10);
    p = t ? strstr(t, "\"pid\":") : NULL;
    *pid = p ? atoll(p + 6) : -1;
    free(t);
    return e;
}

struct unlock_later {
    uv_timer_t timer;
    struct tf_storage *s;
    struct res r;
};

static void on_unlock_timer(uv_timer_t *t)
{
    struct unlock_later *u = t->data;
    CHECK_EQ_INT(tf_storage_unlock(u->s, LOCK_NAME, on_done, &u->r), 0);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_lock_in_process(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir;
    struct tf_storage *s = store_new(&loop, "lock1", &dir);
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), 0);
    long long pid, exp = lease_expires(dir, LOCK_NAME, &pid);
    CHECK_EQ_INT(pid, getpid());
    CHECK(exp >= tf_wall_now() + 29 && exp <= tf_wall_now() + 30);
    CHECK_EQ_INT(file_mode(dir, ".locks/" LOCK_NAME ".lock"), 0600);
    /* Same process, second acquire: waits wait_ms, then busy. */
    uint64_t t0 = tf_mono_ms();
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 300), TF_EBUSY);
    uint64_t took = tf_mono_ms() - t0;
    CHECK(took >= 300 && took < 3000);
    CHECK_EQ_INT(lock_wait(s, "other/name", 30, 0), 0); /* other names are independent */
    CHECK_EQ_INT(renew_wait(s, LOCK_NAME, 100), 0);
    exp = lease_expires(dir, LOCK_NAME, &pid);
    CHECK(exp >= tf_wall_now() + 99);
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), 0);
    CHECK_EQ_INT(file_mode(dir, ".locks/" LOCK_NAME ".lock"), -1);
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), TF_ENOTFOUND);
    CHECK_EQ_INT(renew_wait(s, LOCK_NAME, 10), TF_ENOTFOUND);
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), 0);
    /* A waiter gets the lease as soon as the holder lets go (unlock from a timer). */
    struct unlock_later u = {.s = s};
    uv_timer_init(&loop, &u.timer);
    u.timer.data = &u;
    uv_timer_start(&u.timer, on_unlock_timer, 200, 0);
    struct res r = {0};
    t0 = tf_mono_ms();
    CHECK_EQ_INT(done_wait(s, tf_storage_lock(s, LOCK_NAME, 30, 5000, on_done, &r), &r), 0);
    CHECK_EQ_INT(u.r.calls, 1);
    CHECK_EQ_INT(u.r.err, 0);
    took = tf_mono_ms() - t0;
    CHECK(took >= 150 && took < 3000);
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), 0);
    CHECK_EQ_INT(unlock_wait(s, "other/name"), 0);
    CHECK_EQ_INT(temp_files(dir), 0);
    store_close(s, &loop);
    free(dir);
}

static void write_lease(const char *dir, const char *name, long long pid, const char *host,
                        long long expires, const char *token)
{
    char *rel = tf_asprintf(".locks/%s.lock", name);
    char *text = tf_asprintf("{\"pid\":%lld,\"host\":\"%s\",\"expires\":%lld,\"token\":\"%s\"}",
                             pid, host, expires, token);
    write_file(dir, rel, text);
    free(text);
    free(rel);
}

static pid_t dead_pid(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    waitpid(pid, NULL, 0);
    return pid;
}

/* Leases written by others: live ones are respected, stale ones taken over. */
static void test_lock_stale(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir;
    struct tf_storage *s = store_new(&loop, "lock2", &dir);
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    int64_t now = tf_wall_now();
    /* Create .locks/order/ by taking and releasing once. */
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), 0);
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), 0);
    /* Live lease of another host: busy, and the file is left exactly as it was. */
    write_lease(dir, LOCK_NAME, 1, "other-host.invalid", now + 60, "aaaa");
    char *before = read_file(dir, ".locks/" LOCK_NAME ".lock");
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), TF_EBUSY);
    char *after = read_file(dir, ".locks/" LOCK_NAME ".lock");
    CHECK_EQ_STR(after, before);
    free(before);
    free(after);
    /* Expired lease (of a live process, even): taken over. */
    write_lease(dir, LOCK_NAME, 1, "other-host.invalid", now - 1, "aaaa");
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), 0);
    long long pid;
    CHECK(lease_expires(dir, LOCK_NAME, &pid) >= now + 29);
    CHECK_EQ_INT(pid, getpid());
    /* Someone took it over after our lease ran out: renew and unlock refuse, leave it. */
    write_lease(dir, LOCK_NAME, 1, "other-host.invalid", now + 60, "bbbb");
    CHECK_EQ_INT(renew_wait(s, LOCK_NAME, 30), TF_EDENIED);
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), TF_ENOTFOUND); /* renew dropped it */
    CHECK(lease_expires(dir, LOCK_NAME, &pid) == now + 60);
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), TF_EBUSY);
    write_lease(dir, LOCK_NAME, 1, "other-host.invalid", now - 1, "bbbb");
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), 0);
    write_lease(dir, LOCK_NAME, 1, "other-host.invalid", now + 60, "cccc");
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), TF_EDENIED);
    CHECK(lease_expires(dir, LOCK_NAME, &pid) == now + 60); /* not removed */
    /* Unexpired lease of a dead process on this host: taken over. */
    write_lease(dir, LOCK_NAME, dead_pid(), host, now + 600, "dddd");
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), 0);
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), 0);
    /* Garbage (only a crash could leave it): taken over. */
    write_file(dir, ".locks/" LOCK_NAME ".lock", "{\"pid\":");
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), 0);
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), 0);
    CHECK_EQ_INT(temp_files(dir), 0);
    store_close(s, &loop);
    free(dir);
}

/* Child: take the lease with its own loop and store, report 'L', then either exit holding
 * it (a crash) or wait for one byte from the parent and release it. Never returns. */
static void child_hold(const char *dir, int in_fd, int out_fd, bool release)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[512];
    struct tf_storage *s = tf_storage_fs_new(&loop, dir, err, sizeof(err));
    if (!s || lock_wait(s, LOCK_NAME, 60, 0) != 0)
        _exit(2);
    if (write(out_fd, "L", 1) != 1)
        _exit(3);
    if (!release)
        _exit(0); /* dies holding the lease */
    char c;
    if (read(in_fd, &c, 1) != 1 || unlock_wait(s, LOCK_NAME) != 0)
        _exit(4);
    tf_storage_close(s, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    _exit(uv_loop_close(&loop) == 0 ? 0 : 5);
}

/* One byte from fd within 10 s, or 0. */
static char read_byte(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char c = 0;
    if (poll(&p, 1, 10000) == 1 && read(fd, &c, 1) != 1)
        c = 0;
    return c;
}

static pid_t spawn_holder(const char *dir, bool release, int *to_child, int *from_child)
{
    int down[2], up[2];
    CHECK_EQ_INT(pipe(down), 0);
    CHECK_EQ_INT(pipe(up), 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(down[1]);
        close(up[0]);
        child_hold(dir, down[0], up[1], release);
    }
    close(down[0]);
    close(up[1]);
    *to_child = down[1];
    *from_child = up[0];
    return pid;
}

static int child_status(pid_t pid)
{
    int st = 0;
    CHECK_EQ_INT(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_lock_between_processes(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir;
    struct tf_storage *s = store_new(&loop, "lock3", &dir);
    int to, from;
    pid_t pid = spawn_holder(dir, true, &to, &from);
    CHECK_EQ_INT(read_byte(from), 'L');
    long long holder;
    lease_expires(dir, LOCK_NAME, &holder);
    CHECK_EQ_INT(holder, pid);
    uint64_t t0 = tf_mono_ms();
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 300), TF_EBUSY);
    CHECK(tf_mono_ms() - t0 >= 300);
    /* Wait up to 5 s while the child is told to let go: we get it once it has. */
    struct res r = {0};
    CHECK_EQ_INT(tf_storage_lock(s, LOCK_NAME, 30, 5000, on_done, &r), 0);
    CHECK_EQ_INT(write(to, "R", 1), 1);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(r.calls, 1);
    CHECK_EQ_INT(r.err, 0);
    CHECK_EQ_INT(child_status(pid), 0);
    lease_expires(dir, LOCK_NAME, &holder);
    CHECK_EQ_INT(holder, getpid());
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), 0);
    close(to);
    close(from);
    /* A holder that dies without unlocking: its unexpired lease is taken over. */
    pid = spawn_holder(dir, false, &to, &from);
    CHECK_EQ_INT(read_byte(from), 'L');
    CHECK_EQ_INT(child_status(pid), 0);
    lease_expires(dir, LOCK_NAME, &holder);
    CHECK_EQ_INT(holder, pid);
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), 0);
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), 0);
    close(to);
    close(from);
    store_close(s, &loop);
    free(dir);
}

/* Child of the contention test: report 'R' (ready), wait for the start signal (EOF on go),
 * try once, report 'W' (won) or 'B' (busy) and exit. Never returns. */
static void child_contend(const char *dir, int go, int out_fd)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[512], c;
    struct tf_storage *s = tf_storage_fs_new(&loop, dir, err, sizeof(err));
    if (!s || write(out_fd, "R", 1) != 1 || read(go, &c, 1) != 0)
        _exit(2);
    int r = lock_wait(s, LOCK_NAME, 60, 0);
    if (write(out_fd, r == 0 ? "W" : r == TF_EBUSY ? "B" : "E", 1) != 1)
        _exit(3);
    _exit(0); /* a dead winner's lease is stale for the next round */
}

/* Several processes race for one stale lease at the same instant: exactly one wins. The
 * guard is what makes "it is stale, so replace it" a single step. */
static void test_lock_contention(void)
{
    enum { KIDS = 6, ROUNDS = 8 };
    char *dir = path_in(g_root, "race");
    CHECK_EQ_INT(mkdir(dir, 0700), 0);
    char *ldir = path_in(dir, ".locks/order");
    char *lpar = path_in(dir, ".locks");
    CHECK_EQ_INT(mkdir(lpar, 0700), 0);
    CHECK_EQ_INT(mkdir(ldir, 0700), 0);
    free(lpar);
    free(ldir);
    for (int round = 0; round < ROUNDS; round++) {
        write_lease(dir, LOCK_NAME, 1, "other-host.invalid", tf_wall_now() - 5, "old");
        int go[2], up[2];
        pid_t pids[KIDS];
        CHECK_EQ_INT(pipe(go), 0);
        CHECK_EQ_INT(pipe(up), 0);
        fflush(NULL);
        for (int i = 0; i < KIDS; i++) {
            if ((pids[i] = fork()) == 0) {
                close(go[1]);
                close(up[0]);
                child_contend(dir, go[0], up[1]);
            }
        }
        close(go[0]);
        close(up[1]);
        int ready = 0;
        for (int i = 0; i < KIDS; i++)
            ready += read_byte(up[0]) == 'R';
        CHECK_EQ_INT(ready, KIDS);
        close(go[1]); /* every child's read returns 0 at once */
        int won = 0, busy = 0;
        for (int i = 0; i < KIDS; i++) {
            char c = read_byte(up[0]);
            won += c == 'W';
            busy += c == 'B';
        }
        CHECK_EQ_INT(won, 1);
        CHECK_EQ_INT(busy, KIDS - 1);
        for (int i = 0; i < KIDS; i++)
            CHECK_EQ_INT(child_status(pids[i]), 0);
        close(up[0]);
    }
    free(dir);
}

/* Close with everything in flight: each callback runs once, the waiting lock ends early
 * with TF_ECLOSED, the held lease is released, and close's callback comes last. */
static void test_close_in_flight(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir;
    struct tf_storage *s = store_new(&loop, "close", &dir);
    struct res r[12];
    close_busy_start(s, r);
    uv_run(&loop, UV_RUN_ONCE); /* let the lock's first attempt fail and start its timer */
    uint64_t t0 = tf_mono_ms();
    close_busy_finish(s, r);
    CHECK(tf_mono_ms() - t0 < 5000);
    CHECK_EQ_INT(file_mode(dir, ".locks/held.lock"), -1); /* released by close */
    CHECK_EQ_INT(file_mode(dir, ".locks/" LOCK_NAME ".lock"), -1);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    /* Close with nothing in flight still calls back later, not from inside close. */
    uv_loop_init(&loop);
    free(dir);
    close_idle(store_new(&loop, "close", &dir));
    free(dir);
}

int main(void)
{
    if (!root_setup("storage_lock"))
        return 1;
    TF_TEST_RUN(test_lock_in_process);
    TF_TEST_RUN(test_lock_stale);
    TF_TEST_RUN(test_lock_between_processes);
    TF_TEST_RUN(test_lock_contention);
    TF_TEST_RUN(test_close_in_flight);
    root_remove();
    return TF_TEST_DONE();
}
