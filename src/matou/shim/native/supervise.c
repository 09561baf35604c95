/*
 * matou-supervise: what stays resident for a running container.
 *
 * The Python shim (src/matou/shim/shim.py) creates and starts the container, then
 * execve()s this program in the same process, handing over its file descriptors: the
 * control socket, the container's stdout/stderr pipes or PTY master, its stdin, and the
 * attach clients already connected. From then on this program, not an interpreter, is
 * the container's parent (and child subreaper): about 1 MiB instead of 13.
 *
 *   matou-supervise DIR INIT TTY STDIN_ONCE LOG MAX_SIZE MAX_FILE LISTEN STDIN OUTS [CLIENT...]
 *     OUTS    FD:STREAM[,FD:STREAM]   (1 stdout, 2 stderr; a PTY master is FD:1 with TTY=1)
 *     CLIENT  FD:STREAMS:STDIN         an attach client (STREAMS: bit 1 stdout, bit 2 stderr),
 *                                      or a waiter (STREAMS -1)
 *     LOG     the json-file log path, "-" for none; MAX_SIZE 0: no rotation
 *
 * It speaks the shim's control protocol (one JSON line per connection; see shim.py):
 * attach, resize, wait, status, start, close-stdin. It writes Docker's json-file log
 * (lines split at 16 KiB, rotation into LOG.1 … LOG.N-1), reaps, and on the container's
 * exit drains its output, writes DIR/exit.json atomically, answers the waiters and exits.
 * Execs are not served here: each has a helper of its own (matou.shim.shim.run_exec).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 256
#define MAX_LINE (16 * 1024)
#define BUF 65536

enum { M_NONE, M_ATTACH, M_WAIT };

struct client {
    int fd;
    int mode;
    int streams; /* bit 1: stdout, bit 2: stderr */
    int stdin_on;
    int eof; /* the client half-closed: not polled, still sent the output */
    size_t len;
    char buf[4096];
};

struct output {
    int fd;
    int stream; /* 1 or 2 */
};

static struct client clients[MAX_CLIENTS];
static int nclients;
static struct output outs[2];
static int nouts;
static int tty, stdin_once, stdin_fd = -1, listen_fd, init_pid;
static int exited, exit_code;
static const char *dir;

/* -- the json-file log ----------------------------------------------------------------- */

static const char *log_path;
static int log_fd = -1;
static long long log_size, max_size, max_file;
static char pending[3][MAX_LINE];
static size_t pending_len[3];

static void now_rfc3339(char *out, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + k, n - k, ".%09ldZ", ts.tv_nsec);
}

/* The length of a valid UTF-8 sequence at s (at most n bytes), or 0. */
static int utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    int len;
    unsigned min;
    if (c < 0xC2 || c > 0xF4)
        return 0;
    if (c < 0xE0) { len = 2; min = 0x80; }
    else if (c < 0xF0) { len = 3; min = 0x800; }
    else { len = 4; min = 0x10000; }
    if ((size_t)len > n)
        return 0;
    unsigned cp = c & (0x7F >> len);
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* Append the JSON string body for data to out (room: 6 bytes per input byte). */
static size_t json_escape(char *out, const unsigned char *data, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = data[i];
        if (c == '"' || c == '\\') { out[o++] = '\\'; out[o++] = c; i++; }
        else if (c == '\n') { out[o++] = '\\'; out[o++] = 'n'; i++; }
        else if (c == '\r') { out[o++] = '\\'; out[o++] = 'r'; i++; }
        else if (c == '\t') { out[o++] = '\\'; out[o++] = 't'; i++; }
        else if (c < 0x20) { o += sprintf(out + o, "\\u%04x", c); i++; }
        else if (c < 0x80) { out[o++] = c; i++; }
        else {
            int len = utf8_len(data + i, n - i);
            if (len) { memcpy(out + o, data + i, len); o += len; i += len; }
            else { memcpy(out + o, "\\ufffd", 6); o += 6; i++; } /* as decode("replace") */
        }
    }
    return o;
}

static void log_rotate(void)
{
    char src[4096], dst[4096];
    close(log_fd);
    if (max_file <= 1) {
        if (truncate(log_path, 0) < 0) { /* nothing better to do */ }
    } else {
        for (long long i = max_file - 1; i >= 1; i--) {
            if (i == 1)
                snprintf(src, sizeof src, "%s", log_path);
            else
                snprintf(src, sizeof src, "%s.%lld", log_path, i - 1);
            snprintf(dst, sizeof dst, "%s.%lld", log_path, i);
            rename(src, dst);
        }
    }
    log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    log_size = 0;
}

static void log_emit(int stream, const unsigned char *line, size_t n)
{
    static char out[MAX_LINE * 6 + 256];
    char ts[64];
    if (log_fd < 0)
        return;
    now_rfc3339(ts, sizeof ts);
    size_t o = 0;
    o += sprintf(out, "{\"log\": \"");
    o += json_escape(out + o, line, n);
    o += sprintf(out + o, "\", \"stream\": \"%s\", \"time\": \"%s\"}\n",
                 stream == 1 ? "stdout" : "stderr", ts);
    if (max_size && log_size + (long long)o > max_size && log_size > 0)
        log_rotate();
    for (size_t w = 0; w < o;) {
        ssize_t k = write(log_fd, out + w, o - w);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return; /* a full disk loses log lines, never the container */
        }
        w += k;
    }
    log_size += o;
}

static void log_write(int stream, const unsigned char *data, size_t n)
{
    while (n > 0) {
        size_t room = MAX_LINE - pending_len[stream];
        const unsigned char *nl = memchr(data, '\n', n < room ? n : room);
        if (nl) {
            size_t k = nl - data + 1;
            memcpy(pending[stream] + pending_len[stream], data, k);
            log_emit(stream, (unsigned char *)pending[stream], pending_len[stream] + k);
            pending_len[stream] = 0;
            data += k;
            n -= k;
        } else if (n >= room) {
            memcpy(pending[stream] + pending_len[stream], data, room);
            log_emit(stream, (unsigned char *)pending[stream], MAX_LINE);
            pending_len[stream] = 0;
            data += room;
            n -= room;
        } else {
            memcpy(pending[stream] + pending_len[stream], data, n);
            pending_len[stream] += n;
            n = 0;
        }
    }
}

static void log_flush(void)
{
    for (int s = 1; s <= 2; s++)
        if (pending_len[s]) {
            log_emit(s, (unsigned char *)pending[s], pending_len[s]);
            pending_len[s] = 0;
        }
}

/* -- clients ----------------------------------------------------------------------------- */

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        c += k;
        n -= k;
    }
    return 0;
}

static void drop(int i)
{
    close(clients[i].fd);
    clients[i] = clients[--nclients];
}

static void reply(int i, const char *fmt, ...)
{
    char out[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, sizeof out, fmt, ap);
    va_end(ap);
    send_all(clients[i].fd, out, n);
}

static int json_bool(const char *s, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\"", key);
    const char *p = strstr(s, k);
    if (!p)
        return 0;
    p += strlen(k);
    while (*p == ' ' || *p == ':')
        p++;
    return strncmp(p, "true", 4) == 0;
}

static long json_int(const char *s, const char *key, long dflt)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\"", key);
    const char *p = strstr(s, k);
    if (!p)
        return dflt;
    p += strlen(k);
    while (*p == ' ' || *p == ':')
        p++;
    return strtol(p, NULL, 10);
}

static int is_cmd(const char *s, const char *cmd)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\"", cmd);
    const char *p = strstr(s, "\"cmd\"");
    if (!p)
        return 0;
    p += 5;
    while (*p == ' ' || *p == ':')
        p++;
    return strncmp(p, k, strlen(k)) == 0;
}

static void feed_stdin(const char *p, size_t n)
{
    while (stdin_fd >= 0 && n > 0) {
        ssize_t k = write(stdin_fd, p, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd w = {stdin_fd, POLLOUT, 0};
                poll(&w, 1, 1000);
                continue;
            }
            return; /* the process closed its stdin: the bytes are lost, as with a pipe */
        }
        p += k;
        n -= k;
    }
}

static void close_stdin(void)
{
    if (stdin_fd >= 0 && !tty) {
        close(stdin_fd);
        stdin_fd = -1;
    }
}

static void answer_wait(int i)
{
    reply(i, "{\"exit\": %d}\n", exit_code);
    drop(i);
}

/* One command line from client i; returns 1 if the client was dropped. */
static int command(int i, char *line, const char *rest, size_t rest_len)
{
    struct client *c = &clients[i];
    if (is_cmd(line, "attach")) {
        c->mode = M_ATTACH;
        c->stdin_on = json_bool(line, "stdin");
        c->streams = (json_bool(line, "stdout") ? 2 : 0) | (json_bool(line, "stderr") ? 4 : 0);
        if (tty && c->streams)
            c->streams = 2;
        reply(i, "{}\n");
        if (rest_len && c->stdin_on)
            feed_stdin(rest, rest_len);
        if (exited && nouts == 0) {
            drop(i);
            return 1;
        }
        return 0;
    }
    if (is_cmd(line, "wait")) {
        c->mode = M_WAIT;
        if (exited && nouts == 0) {
            answer_wait(i);
            return 1;
        }
        return 0;
    }
    if (is_cmd(line, "resize")) {
        if (tty && outs[0].fd >= 0) {
            struct winsize ws = {0};
            ws.ws_row = json_int(line, "h", 24);
            ws.ws_col = json_int(line, "w", 80);
            ioctl(outs[0].fd, TIOCSWINSZ, &ws);
        }
        reply(i, "{}\n");
    } else if (is_cmd(line, "status")) {
        if (exited)
            reply(i, "{\"pid\": %d, \"exit\": %d}\n", init_pid, exit_code);
        else
            reply(i, "{\"pid\": %d, \"exit\": null}\n", init_pid);
    } else if (is_cmd(line, "start")) {
        reply(i, "{\"pid\": %d}\n", init_pid); /* started before the hand-over */
    } else if (is_cmd(line, "close-stdin")) {
        close_stdin();
        reply(i, "{}\n");
    } else if (strstr(line, "\"cmd\"") && strstr(line, "exec")) {
        reply(i, "{\"error\": \"execs are served by their own helper\"}\n");
    }
    drop(i);
    return 1;
}

/* Input from client i; returns 1 if it was dropped. */
static int from_client(int i)
{
    struct client *c = &clients[i];
    char data[BUF];
    ssize_t n = recv(c->fd, data, sizeof data, MSG_DONTWAIT); /* never block the loop */
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (c->mode == M_ATTACH) {
        if (n <= 0) {
            if (c->stdin_on && stdin_once)
                close_stdin();
            /* a half-close (stdin done): the output still goes to this client; it is
             * dropped when the container ends */
            c->eof = 1;
            return 0;
        }
        if (c->stdin_on)
            feed_stdin(data, n);
        return 0;
    }
    if (n <= 0) {
        drop(i);
        return 1;
    }
    if (c->mode != M_NONE)
        return 0; /* a waiter says nothing more */
    size_t room = sizeof c->buf - 1 - c->len;
    size_t take = (size_t)n < room ? (size_t)n : room;
    memcpy(c->buf + c->len, data, take);
    c->len += take;
    c->buf[c->len] = 0;
    char *nl = strchr(c->buf, '\n');
    if (!nl) {
        if (c->len >= sizeof c->buf - 1) {
            drop(i);
            return 1;
        }
        return 0;
    }
    *nl = 0;
    const char *rest = nl + 1;
    size_t rest_len = c->buf + c->len - rest;
    /* bytes past the buffer (a client typing early) follow the command */
    char line[sizeof c->buf];
    memcpy(line, c->buf, nl - c->buf + 1);
    char tail[sizeof c->buf + BUF];
    memcpy(tail, rest, rest_len);
    if ((size_t)n > take) {
        memcpy(tail + rest_len, data + take, n - take);
        rest_len += n - take;
    }
    return command(i, line, tail, rest_len);
}

/* -- output ------------------------------------------------------------------------------- */

static void remove_output(int k)
{
    close(outs[k].fd);
    outs[k] = outs[--nouts];
}

/* Read output k; returns 0 at its end (EOF, or EIO from a PTY whose last slave closed). */
static int from_output(int k)
{
    unsigned char data[BUF];
    ssize_t n = read(outs[k].fd, data, sizeof data);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 1;
    if (n <= 0) {
        remove_output(k);
        return 0;
    }
    int stream = outs[k].stream;
    log_write(stream, data, n);
    unsigned char head[8] = {stream, 0, 0, 0, n >> 24, n >> 16, n >> 8, n};
    for (int i = nclients - 1; i >= 0; i--) {
        struct client *c = &clients[i];
        if (c->mode != M_ATTACH || !(c->streams & (1 << stream)))
            continue;
        if ((!tty && send_all(c->fd, head, 8) < 0) || send_all(c->fd, data, n) < 0)
            drop(i); /* gone: the client closed its side for good */
    }
    return 1;
}

/* -- the end ------------------------------------------------------------------------------ */

static void reap(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == init_pid && !exited) {
            exited = 1;
            exit_code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
        }
    }
}

static void finish(void)
{
    char ts[64], path[4096], tmp[4096], body[256];
    log_flush();
    now_rfc3339(ts, sizeof ts);
    snprintf(path, sizeof path, "%s/exit.json", dir);
    snprintf(tmp, sizeof tmp, "%s/exit.json.tmp", dir);
    int n = snprintf(body, sizeof body,
                     "{\"ExitCode\": %d, \"FinishedAt\": \"%s\", \"Error\": \"\"}", exit_code, ts);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (write(fd, body, n) == n && fsync(fd) == 0)
            rename(tmp, path);
        close(fd);
    }
    for (int i = nclients - 1; i >= 0; i--) {
        if (clients[i].mode == M_WAIT)
            answer_wait(i);
        else
            drop(i);
    }
    if (log_fd >= 0)
        close(log_fd);
    _exit(0);
}

int main(int argc, char **argv)
{
    if (argc < 11) {
        fprintf(stderr, "usage: matou-supervise DIR INIT TTY STDIN_ONCE LOG MAX_SIZE "
                        "MAX_FILE LISTEN STDIN OUTS [CLIENT...]\n");
        return 2;
    }
    dir = argv[1];
    init_pid = atoi(argv[2]);
    tty = atoi(argv[3]);
    stdin_once = atoi(argv[4]);
    log_path = argv[5];
    max_size = atoll(argv[6]);
    max_file = atoll(argv[7]);
    listen_fd = atoi(argv[8]);
    stdin_fd = atoi(argv[9]);
    for (char *p = argv[10]; *p && nouts < 2;) {
        outs[nouts].fd = atoi(p);
        char *colon = strchr(p, ':');
        outs[nouts].stream = colon ? atoi(colon + 1) : 1;
        nouts++;
        char *comma = strchr(p, ',');
        if (!comma)
            break;
        p = comma + 1;
    }
    for (int a = 11; a < argc && nclients < MAX_CLIENTS; a++) {
        struct client *c = &clients[nclients++];
        memset(c, 0, sizeof *c);
        c->mode = M_ATTACH;
        sscanf(argv[a], "%d:%d:%d", &c->fd, &c->streams, &c->stdin_on);
        if (c->streams < 0)
            c->mode = M_WAIT; /* a waiter (STREAMS -1) */
        else
            c->streams <<= 1; /* 1 stdout, 2 stderr → bits 1 and 2 */
    }
    if (strcmp(log_path, "-") != 0) {
        log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        struct stat st;
        if (log_fd >= 0 && fstat(log_fd, &st) == 0)
            log_size = st.st_size;
    }
    for (int k = 0; k < nouts; k++)
        fcntl(outs[k].fd, F_SETFD, FD_CLOEXEC);
    fcntl(listen_fd, F_SETFD, FD_CLOEXEC);
    if (stdin_fd >= 0)
        fcntl(stdin_fd, F_SETFD, FD_CLOEXEC);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    reap(); /* what ended before the hand-over */

    struct pollfd fds[2 + 2 + MAX_CLIENTS];
    for (;;) {
        if (exited && nouts == 0)
            finish();
        int n = 0;
        fds[n++] = (struct pollfd){sfd, POLLIN, 0};
        fds[n++] = (struct pollfd){listen_fd, POLLIN, 0};
        int first_out = n;
        for (int k = 0; k < nouts; k++)
            fds[n++] = (struct pollfd){outs[k].fd, POLLIN, 0};
        int first_client = n;
        for (int i = 0; i < nclients; i++)  /* a half-closed client: fd -1, never ready */
            fds[n++] = (struct pollfd){clients[i].eof ? -1 : clients[i].fd, POLLIN, 0};
        /* a PTY's master never reports EOF while someone might reopen the slave: once
         * the container has exited, it is read until it stays quiet for 50 ms */
        int timeout = (exited && tty) ? 50 : -1;
        int ready = poll(fds, n, timeout);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            _exit(1);
        }
        if (ready == 0 && exited && tty) {
            while (nouts)
                remove_output(0);
            continue;
        }
        if (fds[0].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0) {
            }
            reap();
        }
        /* outputs before clients: their indices shift when one goes */
        for (int k = nouts - 1; k >= 0; k--)
            if (fds[first_out + k].revents)
                from_output(k);
        int had = nclients;
        for (int i = had - 1; i >= 0; i--)  /* the same client as when polled, still */
            if (fds[first_client + i].revents && i < nclients &&
                fds[first_client + i].fd == clients[i].fd)
                from_client(i);
        if (fds[1].revents & POLLIN) {
            int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0) {
                if (nclients < MAX_CLIENTS) {
                    memset(&clients[nclients], 0, sizeof clients[nclients]);
                    clients[nclients++].fd = fd;
                } else {
                    close(fd);
                }
            }
        }
    }
}
