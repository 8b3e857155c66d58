/* SPDX-License-Identifier: MIT */
/* batond's log lines: on stderr with "<N>" priority prefixes when stderr is
 * the journal's stream (JOURNAL_STREAM matches), straight to the journal with
 * fields when a line has a context (APP=, GENERATION=, WORKER=, WORKER_PID=),
 * else on stderr with a timestamp. Owns nothing else. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <sys/types.h>
#include <syslog.h>

/* Who a line is about: journal fields, searchable with journalctl APP=web. */
struct log_context {
	const char *app;     /* NULL: none */
	unsigned generation; /* 0: none */
	int worker;	     /* -1: none */
	pid_t worker_pid;    /* 0: none */
};

void log_init(const char *ident);
/* True when batond's stderr is the journal's stream (JOURNAL_STREAM matches). */
bool log_is_journal(void);
void log_msg(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same, with @prefix (may be NULL) before the message: a module's context
 * ("web: generation 3 worker 1 (pid 42) "). A prefix of that form, as
 * generation.c writes it ("APP: generation G [worker W[ (pid P)]]"), also
 * gives the journal fields of a log_context. */
void log_msgv(int priority, const char *prefix, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* As log_msgv, with the journal fields of @ctx (may be NULL) given. */
void log_contextv(int priority, const struct log_context *ctx, const char *prefix, const char *fmt,
		  va_list ap) __attribute__((format(printf, 4, 0)));

#define log_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
