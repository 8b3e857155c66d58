/* Log output of batond. Lines are written with one write(2) each so that
 * concurrent writers (workers share our stderr) never interleave mid-line. */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

void log_msg(int priority, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_msgv(priority, NULL, fmt, ap);
	va_end(ap);
}

void log_msgv(int priority, const char *prefix, const char *fmt, va_list ap)
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
	if (prefix) {
		int p = snprintf(line + n, sizeof(line) - (size_t)n - 1, "%s", prefix);
		if (p > 0)
			n += (size_t)p < sizeof(line) - (size_t)n - 1 ? p : 0;
	}
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}
