/* JSON-lines logging. Each line is formatted into a stack buffer and written
 * with one write(2), so lines from different threads never interleave. */
#include "sift/log.h"
#include "sift/buf.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int level = -1; /* -1: not yet read from the environment */
static atomic_int out_fd = 2;

static const char *const names[] = {"debug", "info", "warn", "error", "off"};

int sift_log_level_parse(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i <= SIFT_LOG_OFF; i++)
        if (strcasecmp(name, names[i]) == 0)
            return i;
    if (strcasecmp(name, "warning") == 0)
        return SIFT_LOG_WARN;
    return -1;
}

void sift_log_set_level(int l)
{
    atomic_store(&level, l);
}

int sift_log_get_level(void)
{
    int l = atomic_load(&level);
    if (l < 0) {
        l = sift_log_level_parse(getenv("SIFT_LOG_LEVEL"));
        if (l < 0)
            l = SIFT_LOG_INFO;
        atomic_store(&level, l);
    }
    return l;
}

void sift_log_set_fd(int fd)
{
    atomic_store(&out_fd, fd);
}

/* Longest message kept, in bytes before escaping; longer ones end in "...". */
#define MSG_MAX 2048

static const char oom_line[] = "{\"level\":\"error\",\"msg\":\"log line lost: out of memory\"}\n";

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

void sift_vlog(int lvl, const char *run_id, const char *fields, const char *fmt, va_list ap)
{
    if (lvl < sift_log_get_level() || lvl >= SIFT_LOG_OFF)
        return;
    char msg[MSG_MAX + 4];
    int mn = vsnprintf(msg, MSG_MAX + 1, fmt, ap);
    size_t len = mn < 0 ? 0 : (size_t)mn;
    if (len > MSG_MAX) {
        len = MSG_MAX;
        while (len > 0 && ((unsigned char)msg[len] & 0xc0) == 0x80)
            len--;                   /* cut at a character boundary */
        memcpy(msg + len, "...", 4); /* with its NUL */
        len += 3;
    }

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);

    sift_buf b;
    sift_buf_init(&b, 0);
    int rc = sift_buf_printf(&b, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\",\"level\":\"%s\"",
                             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                             tm.tm_sec, (int)(tv.tv_usec / 1000), names[lvl]);
    if (run_id) {
        rc |= sift_buf_puts(&b, ",\"run\":\"");
        rc |= sift_buf_json_escape(&b, run_id, strlen(run_id));
        rc |= sift_buf_putc(&b, '"');
    }
    rc |= sift_buf_puts(&b, ",\"msg\":\"");
    rc |= sift_buf_json_escape(&b, msg, len);
    rc |= sift_buf_putc(&b, '"');
    if (fields && *fields) {
        rc |= sift_buf_putc(&b, ',');
        rc |= sift_buf_puts(&b, fields);
    }
    rc |= sift_buf_puts(&b, "}\n");
    if (rc == 0)
        write_all(atomic_load(&out_fd), b.data, b.len);
    else /* out of memory: say so rather than lose the line silently */
        write_all(atomic_load(&out_fd), oom_line, sizeof oom_line - 1);
    sift_buf_free(&b);
}

void sift_log(int lvl, const char *run_id, const char *fields, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sift_vlog(lvl, run_id, fields, fmt, ap);
    va_end(ap);
}
