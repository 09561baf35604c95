/*
 * matou-exec: the last steps of an exec into a running container, in C.
 *
 * matou.runtime.exec prepares everything in Python (the spec, the seccomp BPF, the
 * capability masks, the namespaces to join) and spawns this program with the parent's
 * namespaces for children already set to the container's pid (and time) namespace. It
 * then only does what the Python child would do after its fork, without the cost of
 * running an interpreter in a freshly forked process:
 *
 *   join the cgroup → setns ipc, uts, net, cgroup, mnt → find the executable →
 *   rlimits → cwd → seccomp (before the capabilities go, unless no_new_privs) →
 *   bounding set → groups, gid, uid → capabilities, ambient → no_new_privs →
 *   seccomp (with no_new_privs) → umask → default signals → execve
 *
 * It is spawned from a sealed memfd copy (see exec.py), so that a container process
 * reaching /proc/PID/exe of it cannot write to the host's binary (CVE-2019-5736).
 *
 *   matou-exec BLOB_FD
 *
 * The blob is a list of NUL-terminated strings read in order (exec.py, _native_blob):
 *   "1" CHANNEL PRESERVE NCG CG... NNS (FD TYPE)... CWD ARG0 PATH NARGS ARG... NENV ENV...
 *   NRL (RES SOFT HARD)... HASCAPS BND EFF PRM INH AMB UID GID NGROUPS GID... UMASK NNP
 *   SECCOMP_FLAGS SECCOMP_HEX
 * Numbers are decimal; a limit of -1 is infinity; UMASK -1 is 022; an empty SECCOMP_HEX
 * is no filter. A failure is reported on CHANNEL as the Python child reports it
 * ({"type": "error", "message": "..."}); success is CHANNEL closing at the execve.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static int channel = -1;

static void json_string(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = 0;
}

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    char msg[2048], escaped[4096 + 64], line[4096 + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_string(escaped, sizeof escaped - 64, msg);
    int n = snprintf(line, sizeof line, "{\"type\": \"error\", \"message\": \"%s\"}", escaped);
    if (channel >= 0 && write(channel, line, (size_t)n) < 0) {
        /* nothing more to tell: the parent sees the channel close */
    }
    _exit(1);
}

/* matou.errors.SystemError_'s text: what `operand`: ENAME (strerror) */
static void fail_errno(const char *what, const char *operand) __attribute__((noreturn));
static void fail_errno(const char *what, const char *operand)
{
    int e = errno;
    const char *name = strerrorname_np(e);
    if (name == NULL)
        fail("%s `%s`: %d (%s)", what, operand, e, strerror(e));
    fail("%s `%s`: %s (%s)", what, operand, name, strerror(e));
}

/* -- the blob --------------------------------------------------------------------------- */

static char *blob, *blob_end;

static const char *next(void)
{
    if (blob >= blob_end)
        fail("matou-exec: the blob ends early");
    char *s = blob;
    char *end = memchr(s, 0, (size_t)(blob_end - s));
    if (end == NULL)
        fail("matou-exec: the blob ends early");
    blob = end + 1;
    return s;
}

static long long num(void)
{
    const char *s = next();
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s)
        fail("matou-exec: not a number in the blob: %s", s);
    return v;
}

static unsigned long long unum(void)
{
    const char *s = next();
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || end == s)
        fail("matou-exec: not a number in the blob: %s", s);
    return v;
}

static void read_blob(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        fail_errno("fstat", "blob");
    blob = malloc((size_t)st.st_size + 1);
    if (blob == NULL)
        fail("matou-exec: out of memory");
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = pread(fd, blob + got, (size_t)st.st_size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail_errno("read", "blob");
        got += (size_t)n;
    }
    blob_end = blob + got;
    close(fd);
}

/* -- steps ------------------------------------------------------------------------------ */

static int by_number(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* close every fd >= 3 but the kept ones and the preserved range (CVE-2024-21626) */
static void close_inherited(int *keep, int nkeep, int preserve)
{
    unsigned int lo = 3 + (unsigned int)preserve;
    qsort(keep, (size_t)nkeep, sizeof *keep, by_number);
    for (int i = 0; i < nkeep; i++) {
        if (keep[i] < 0 || (unsigned int)keep[i] < lo)
            continue;
        if ((unsigned int)keep[i] > lo &&
            syscall(SYS_close_range, lo, (unsigned int)keep[i] - 1, 0) < 0)
            fail_errno("close_range", "inherited");
        lo = (unsigned int)keep[i] + 1;
    }
    if (syscall(SYS_close_range, lo, ~0U, 0) < 0)
        fail_errno("close_range", "inherited");
}

static int last_cap(void)
{
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    char buf[16] = {0};
    if (fd < 0 || read(fd, buf, sizeof buf - 1) <= 0) {
        if (fd >= 0)
            close(fd);
        return 40; /* CAP_CHECKPOINT_RESTORE */
    }
    close(fd);
    return atoi(buf);
}

static int executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
}

/* args[0] resolved in the container's root as matou.runtime.process.find_executable does */
static const char *find_executable(const char *arg0, const char *path, const char *cwd)
{
    static char buf[8192];
    if (strchr(arg0, '/')) {
        if (arg0[0] == '/')
            snprintf(buf, sizeof buf, "%s", arg0);
        else
            snprintf(buf, sizeof buf, "%s%s%s", cwd,
                     cwd[0] && cwd[strlen(cwd) - 1] == '/' ? "" : "/", arg0);
        if (executable(buf))
            return buf;
        fail("exec: \"%s\": stat %s: no such file or directory", arg0, arg0);
    }
    const char *dir = path;
    for (;;) {
        const char *colon = strchr(dir, ':');
        size_t len = colon ? (size_t)(colon - dir) : strlen(dir);
        if (len == 0)
            snprintf(buf, sizeof buf, "./%s", arg0);
        else
            snprintf(buf, sizeof buf, "%.*s%s%s", (int)len, dir,
                     dir[len - 1] == '/' ? "" : "/", arg0);
        if (executable(buf))
            return buf;
        if (colon == NULL)
            break;
        dir = colon + 1;
    }
    fail("exec: \"%s\": executable file not found in $PATH", arg0);
}

static void load_seccomp(unsigned int flags, const struct sock_filter *bpf, size_t n)
{
    struct sock_fprog prog = {.len = (unsigned short)n, .filter = (struct sock_filter *)bpf};
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog) < 0)
        fail_errno("seccomp", "filter");
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: matou-exec BLOB_FD (spawned by matou.runtime.exec)\n");
        return 2;
    }
    prctl(PR_SET_DUMPABLE, 0); /* while we are in its namespaces (CVE-2019-5736) */
    read_blob(atoi(argv[1]));
    if (strcmp(next(), "1") != 0)
        fail("matou-exec: a blob of another version");
    channel = (int)num();
    int preserve = (int)num();

    /* cgroup first, while the host's paths are still ours */
    int ncg = (int)num();
    const char *cgroups[64];
    if (ncg < 0 || ncg > 64)
        fail("matou-exec: %d cgroup files", ncg);
    for (int i = 0; i < ncg; i++)
        cgroups[i] = next();
    int nns = (int)num();
    int ns_fd[16], ns_type[16];
    if (nns < 0 || nns > 16)
        fail("matou-exec: %d namespaces", nns);
    for (int i = 0; i < nns; i++) {
        ns_fd[i] = (int)num();
        ns_type[i] = (int)num();
    }
    int keep[20], nkeep = 0;
    keep[nkeep++] = channel;
    for (int i = 0; i < nns; i++)
        keep[nkeep++] = ns_fd[i];
    close_inherited(keep, nkeep, preserve);
    for (int i = 0; i < ncg; i++) {
        int fd = open(cgroups[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1)
            fail_errno("join cgroup", cgroups[i]);
        close(fd);
    }
    for (int i = 0; i < nns; i++) {
        if (setns(ns_fd[i], ns_type[i]) < 0) {
            char what[32];
            snprintf(what, sizeof what, "%#x", ns_type[i]);
            fail_errno("setns", what);
        }
        close(ns_fd[i]);
    }

    const char *cwd = next();
    const char *arg0 = next();
    const char *path = next();
    int nargs = (int)num();
    char **args = calloc((size_t)nargs + 1, sizeof *args);
    for (int i = 0; i < nargs; i++)
        args[i] = (char *)next();
    int nenv = (int)num();
    char **env = calloc((size_t)nenv + 1, sizeof *env);
    for (int i = 0; i < nenv; i++)
        env[i] = (char *)next();
    if (args == NULL || env == NULL)
        fail("matou-exec: out of memory");
    const char *exe = find_executable(arg0, path, cwd);

    int nrl = (int)num();
    for (int i = 0; i < nrl; i++) {
        int res = (int)num();
        long long soft = num(), hard = num();
        struct rlimit rl = {.rlim_cur = soft < 0 ? RLIM_INFINITY : (rlim_t)soft,
                            .rlim_max = hard < 0 ? RLIM_INFINITY : (rlim_t)hard};
        if (setrlimit(res, &rl) < 0) {
            char operand[16];
            snprintf(operand, sizeof operand, "%d", res);
            fail_errno("setrlimit", operand);
        }
    }
    int has_caps = (int)num();
    unsigned long long bnd = unum(), eff = unum(), prm = unum(), inh = unum(), amb = unum();
    uid_t uid = (uid_t)unum();
    gid_t gid = (gid_t)unum();
    int ngroups = (int)num();
    gid_t *groups = calloc((size_t)ngroups + 1, sizeof *groups);
    for (int i = 0; i < ngroups; i++)
        groups[i] = (gid_t)unum();
    long long umask_v = num();
    int nnp = (int)num();
    unsigned int sc_flags = (unsigned int)unum();
    const char *hex = next();
    size_t sc_len = strlen(hex) / 2;
    struct sock_filter *bpf = NULL;
    if (sc_len) {
        if (sc_len % sizeof(struct sock_filter))
            fail("matou-exec: a seccomp program of %zu bytes", sc_len);
        unsigned char *bytes = malloc(sc_len);
        for (size_t i = 0; i < sc_len; i++) {
            int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
            if (hi < 0 || lo < 0)
                fail("matou-exec: a seccomp program that is not hex");
            bytes[i] = (unsigned char)(hi << 4 | lo);
        }
        bpf = (struct sock_filter *)bytes;
    }

    /* matou.runtime.process.become, step by step */
    if (syscall(SYS_close_range, 3U + (unsigned int)preserve, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        fail_errno("close_range", "cloexec");
    if (chdir(cwd) < 0)
        fail_errno("chdir", cwd);
    char here[4096];
    if (getcwd(here, sizeof here) == NULL || here[0] != '/') {
        errno = ENOENT;
        fail_errno("chdir", cwd);
    }
    if (bpf && !nnp)
        load_seccomp(sc_flags, bpf, sc_len / sizeof(struct sock_filter));
    int last = last_cap();
    if (has_caps)
        for (int bit = 0; bit <= last; bit++)
            if (!(bnd >> bit & 1) && prctl(PR_CAPBSET_READ, bit) == 1 &&
                prctl(PR_CAPBSET_DROP, bit) < 0)
                fail_errno("prctl", "PR_CAPBSET_DROP");
    if (prctl(PR_SET_KEEPCAPS, 1) < 0)
        fail_errno("prctl", "PR_SET_KEEPCAPS");
    if (setgroups((size_t)ngroups, groups) < 0 && !(errno == EPERM && ngroups == 0))
        fail_errno("setgroups", "additional gids");
    if (setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0) {
        char operand[32];
        snprintf(operand, sizeof operand, "%u:%u", uid, gid);
        fail_errno("set user", operand);
    }
    if (prctl(PR_SET_KEEPCAPS, 0) < 0)
        fail_errno("prctl", "PR_SET_KEEPCAPS");
    if (has_caps) {
        struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct data[2] = {
            {(uint32_t)eff, (uint32_t)prm, (uint32_t)inh},
            {(uint32_t)(eff >> 32), (uint32_t)(prm >> 32), (uint32_t)(inh >> 32)}};
        if (syscall(SYS_capset, &hdr, data) < 0)
            fail_errno("capset", "self");
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        for (int bit = 0; bit <= last; bit++)
            if (amb >> bit & 1) /* refused ones only warned about, as runc does */
                prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, bit, 0, 0);
    }
    if (nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        fail_errno("prctl", "PR_SET_NO_NEW_PRIVS");
    if (bpf && nnp)
        load_seccomp(sc_flags, bpf, sc_len / sizeof(struct sock_filter));
    umask(umask_v < 0 ? 022 : (mode_t)umask_v);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (fcntl(channel, F_SETFD, FD_CLOEXEC) < 0)
        fail_errno("fcntl", "channel");
    execve(exe, args, env);
    fail_errno("exec", exe);
}
