/* batond's log lines on stderr: "<N>" priority prefixes when stderr is the
 * journal (JOURNAL_STREAM matches), else a timestamp. Owns nothing else. */
#pragma once

#include <syslog.h>

void log_init(const char *ident);
void log_msg(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
