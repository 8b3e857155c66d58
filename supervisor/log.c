/* SPDX-License-Identifier: MIT */
/* Log output of batond. Lines are written with one write(2) each so that
 * concurrent writers (workers share our stderr) never interleave mid-line. */
#include "log.h"

/* CODE_FILE= and CODE_LINE= would name this file, never the caller. */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static bool log_to_journal;
static const char *log_ident = "batond";
static int log_max_priority = LOG_INFO;

void log_init(const char *ident)
{
	log_ident = ident;
	const char *js = getenv("JOURNAL_STREAM");
	struct stat st;
	unsigned long long dev, ino;
	if (js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0)
		log_to_journal =
		    (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
	if (getenv("BATON_DEBUG"))
		log_max_priority = LOG_DEBUG;
}

bool log_is_journal(void)
{
	return log_to_journal;
}

void log_msg(int priority, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_msgv(priority, NULL, fmt, ap);
	va_end(ap);
}

/* The context in a prefix generation.c writes: "APP: generation G ",
 * "APP: generation G worker W: " or "APP: generation G worker W (pid P) ".
 * Returns false for any other prefix. */
static bool context_of_prefix(const char *prefix, char *app, struct log_context *ret)
{
	unsigned generation, worker;
	int pid, n = 0, m = 0;
	if (!prefix ||
	    sscanf(prefix, "%64[A-Za-z0-9_.-]: generation %u%n", app, &generation, &n) != 2 ||
	    n == 0)
		return false;
	*ret = (struct log_context){.app = app, .generation = generation, .worker = -1};
	if (sscanf(prefix + n, " worker %u%n", &worker, &m) == 1 && m > 0) {
		ret->worker = (int)worker;
		if (sscanf(prefix + n + m, " (pid %d)", &pid) == 1)
			ret->worker_pid = pid;
	}
	return true;
}

void log_msgv(int priority, const char *prefix, const char *fmt, va_list ap)
{
	char app[65];
	struct log_context ctx;
	log_contextv(priority, context_of_prefix(prefix, app, &ctx) ? &ctx : NULL, prefix, fmt, ap);
}

/* @line (@len bytes, no newline) to the journal with the fields of @ctx.
 * Returns 0 or a negative errno (no journal to talk to). */
static int journal_send(int priority, const struct log_context *ctx, const char *line, size_t len)
{
	char fields[6][96]; /* PRIORITY, SYSLOG_IDENTIFIER and the four of a context */
	struct iovec iov[8];
	size_t n = 0;
	static const char message[] = "MESSAGE=";
	char msg[sizeof(message) - 1 + 2048];
	memcpy(msg, message, sizeof(message) - 1);
	memcpy(msg + sizeof(message) - 1, line, len);
	iov[n++] = (struct iovec){msg, sizeof(message) - 1 + len};
	snprintf(fields[0], sizeof(fields[0]), "PRIORITY=%d", priority & 7);
	snprintf(fields[1], sizeof(fields[1]), "SYSLOG_IDENTIFIER=%s", log_ident);
	size_t n_fields = 2;
	if (ctx->app)
		snprintf(fields[n_fields++], sizeof(fields[0]), "APP=%s", ctx->app);
	if (ctx->generation)
		snprintf(fields[n_fields++], sizeof(fields[0]), "GENERATION=%u", ctx->generation);
	if (ctx->worker >= 0) {
		snprintf(fields[n_fields++], sizeof(fields[0]), "WORKER=%d", ctx->worker);
		if (ctx->worker_pid > 0)
			snprintf(fields[n_fields++], sizeof(fields[0]), "WORKER_PID=%d",
				 (int)ctx->worker_pid);
	}
	for (size_t i = 0; i < n_fields; i++)
		iov[n++] = (struct iovec){fields[i], strlen(fields[i])};
	return sd_journal_sendv(iov, (int)n);
}

void log_contextv(int priority, const struct log_context *ctx, const char *prefix, const char *fmt,
		  va_list ap)
{
	if (priority > log_max_priority)
		return;
	char line[2048];
	int n;
	if (log_to_journal) {
		n = snprintf(line, sizeof(line), "<%d>", priority);
	} else {
		static const char *const names[] = {"emerg",   "alert",	 "crit", "error",
						    "warning", "notice", "info", "debug"};
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		char stamp[32];
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		n = snprintf(line, sizeof(line), "%s.%03ld %s[%d] %s: ", stamp,
			     ts.tv_nsec / 1000000, log_ident, (int)getpid(), names[priority & 7]);
	}
	int start = n; /* the message, after the "<N>" or the timestamp */
	if (prefix) {
		int p = snprintf(line + n, sizeof(line) - (size_t)n - 1, "%s", prefix);
		if (p > 0)
			n += (size_t)p < sizeof(line) - (size_t)n - 1 ? p : 0;
	}
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	/* A line about an app goes to the journal itself, with its fields; the
	 * stream, which carries only the priority, if the journal cannot be
	 * reached. */
	if (log_to_journal && ctx &&
	    journal_send(priority, ctx, line + start, len - (size_t)start) >= 0)
		return;
	line[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}
