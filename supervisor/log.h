/* batond's log lines on stderr: "<N>" priority prefixes when stderr is the
 * journal (JOURNAL_STREAM matches), else a timestamp. Owns nothing else. */
#pragma once

#include <stdarg.h>
#include <syslog.h>

void log_init(const char *ident);
void log_msg(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same, with @prefix (may be NULL) before the message: a module's context
 * ("web: generation 3 worker 1 (pid 42) "). */
void log_msgv(int priority, const char *prefix, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define log_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
