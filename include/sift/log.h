/* Logging: one JSON object per line on stderr.
 *
 *   {"ts":"2026-11-25T09:10:00.123Z","level":"info","run":"r-1f3a","msg":"tool
 * finished","tool":"check_inventory","ms":21}
 *
 * Lines that belong to a run carry its id in "run", so one run can be followed
 * with grep. Logging is thread-safe: each line is written with one write(2). */
#ifndef SIFT_LOG_H
#define SIFT_LOG_H

#include <stdarg.h>

enum sift_log_level {
    SIFT_LOG_DEBUG = 0,
    SIFT_LOG_INFO = 1,
    SIFT_LOG_WARN = 2,
    SIFT_LOG_ERROR = 3,
    SIFT_LOG_OFF = 4,
};

/* Lines below `level` are dropped. The default is INFO, or SIFT_LOG_LEVEL from
 * the environment (debug, info, warn, error, off) read at the first log call. */
void sift_log_set_level(int level);
int sift_log_get_level(void);

/* Parses "debug", "info", "warn", "error" or "off"; -1 when unknown. */
int sift_log_level_parse(const char *name);

/* Sends lines to file descriptor `fd` instead of stderr (tests capture them). */
void sift_log_set_fd(int fd);

/* Writes one line. `run_id` may be NULL for lines that belong to no run.
 * `fields` is NULL or extra members of the JSON object, already encoded, with
 * no leading comma: "\"tool\":\"get_price\",\"ms\":3". The message is built
 * from fmt and escaped. */
void sift_log(int level, const char *run_id, const char *fields, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void sift_vlog(int level, const char *run_id, const char *fields, const char *fmt, va_list ap);

#define sift_debug(run, ...) sift_log(SIFT_LOG_DEBUG, (run), NULL, __VA_ARGS__)
#define sift_info(run, ...) sift_log(SIFT_LOG_INFO, (run), NULL, __VA_ARGS__)
#define sift_warn(run, ...) sift_log(SIFT_LOG_WARN, (run), NULL, __VA_ARGS__)
#define sift_error(run, ...) sift_log(SIFT_LOG_ERROR, (run), NULL, __VA_ARGS__)

#endif
