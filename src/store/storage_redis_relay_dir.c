/*
 * storage_redis_relay_dir.c: the private directory of the rediss:// relay
 * (storage_redis_tls.c): made with mkdtemp (mode 0700) under $TMPDIR, or /tmp when that is
 * unset or too long for a unix socket path; it holds the relay's socket "s" and "pid", the
 * owner's process id. The relay removes it at close, but a process killed with SIGKILL
 * cannot, so making one first removes the stale ones left in the same place: directories
 * named tlsfront-redis-XXXXXX, owned by this user (checked on the directory itself, never
 * through a link), whose pid file names a process that no longer exists (kill(pid, 0) says
 * ESRCH), holding nothing but "s" and "pid". A directory without a readable pid file (being
 * made right now, or left by an older version), another user's, or a live process's is
 * never touched. Runs once, when the store is made at start-up, before the loop runs: these
 * are the relay's only blocking file calls. Logs nothing.
 */
#include "storage_redis_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RELAY_DIR_PREFIX "tlsfront-redis-"
#define RELAY_DIR_RANDOM 6 /* the XXXXXX of mkdtemp */

/* Whether the pid file in the directory dfd names a process that is gone. */
static bool owner_gone(int dfd)
{
    char buf[24], *end;
    int fd = openat(dfd, "pid", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    long pid = strtol(buf, &end, 10);
    if (pid <= 0 || pid > INT_MAX || (*end != '\0' && *end != '\n'))
        return false;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* Remove base/name when it is a stale relay directory of this user (see the file comment). */
static void sweep_one(int basefd, const char *name)
{
    struct stat st, dst;
    if (fstatat(basefd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode) ||
        st.st_uid != geteuid())
        return;
    int dfd = openat(basefd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return;
    /* The one opened must be the one checked (not swapped in between). */
    if (fstat(dfd, &dst) == 0 && dst.st_ino == st.st_ino && dst.st_dev == st.st_dev &&
        dst.st_uid == geteuid() && owner_gone(dfd)) {
        unlinkat(dfd, "s", 0);
        unlinkat(dfd, "pid", 0);
        unlinkat(basefd, name, AT_REMOVEDIR); /* fails, harmlessly, if it holds anything else */
    }
    close(dfd);
}

static void sweep(const char *base)
{
    DIR *d = opendir(base);
    if (!d)
        return;
    size_t plen = strlen(RELAY_DIR_PREFIX);
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, RELAY_DIR_PREFIX, plen) == 0 &&
            strlen(e->d_name) == plen + RELAY_DIR_RANDOM)
            sweep_one(dirfd(d), e->d_name);
    }
    closedir(d);
}

/* Write this process's id to dir/pid (a new file, 0600). */
static int write_pid(const char *dir)
{
    char path[PATH_MAX], text[24];
    snprintf(path, sizeof(path), "%s/pid", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int n = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
    bool ok = write(fd, text, (size_t)n) == n;
    if (close(fd) != 0 || !ok) {
        unlink(path);
        return -1;
    }
    return 0;
}

int tf_rs_relay_dir_make(char *dir, size_t len, size_t max_path)
{
    const char *bases[] = {getenv("TMPDIR"), "/tmp"};
    for (size_t i = 0; i < TF_ARRAY_LEN(bases); i++) {
        if (!bases[i] || !bases[i][0] ||
            strlen(bases[i]) + sizeof("/" RELAY_DIR_PREFIX "XXXXXX/s") > max_path ||
            strlen(bases[i]) + sizeof("/" RELAY_DIR_PREFIX "XXXXXX") > len)
            continue;
        sweep(bases[i]);
        snprintf(dir, len, "%s/" RELAY_DIR_PREFIX "XXXXXX", bases[i]);
        if (!mkdtemp(dir))
            return -1;
        if (write_pid(dir) != 0) {
            rmdir(dir);
            return -1;
        }
        return 0;
    }
    return -1;
}
