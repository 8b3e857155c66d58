/* SPDX-License-Identifier: MIT */
/* Worker output: see output.h. The read end is non-blocking and read with a
 * budget per wake-up, so that a worker writing without pause cannot starve
 * batond's loop; what is left waits in the pipe (and the writer blocks when it
 * is full, as on a slow terminal). */
#include "output.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OUTPUT_READ_BUDGET (64 * 1024) /* bytes per wake-up */

struct output {
	int read_fd;  /* batond's; non-blocking */
	int write_fd; /* copied to each process of the worker as its fds 1 and 2 */
	sd_event_source *src;
	char prefix[96]; /* "APP[GEN.WORKER]: " */
	struct log_context ctx;
	char app[65];
	size_t len;
	char line[OUTPUT_LINE_MAX];
};

static void output_log(struct output *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void output_log(struct output *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_contextv(LOG_INFO, &o->ctx, o->prefix, fmt, ap);
	va_end(ap);
}

/* Logs every complete line of o->line, then keeps the rest at its start; a
 * full buffer without a newline is logged as one piece. */
static void output_lines(struct output *o)
{
	size_t start = 0;
	for (char *nl; (nl = memchr(o->line + start, '\n', o->len - start));) {
		output_log(o, "%.*s", (int)(nl - (o->line + start)), o->line + start);
		start = (size_t)(nl - o->line) + 1;
	}
	if (start == 0 && o->len == sizeof(o->line)) {
		output_log(o, "%.*s", (int)o->len, o->line);
		start = o->len;
	}
	memmove(o->line, o->line + start, o->len - start);
	o->len -= start;
}

/* Reads at most @budget bytes. Returns 0, or -EAGAIN when the pipe is empty. */
static int output_read(struct output *o, size_t budget)
{
	while (budget > 0) {
		size_t room = sizeof(o->line) - o->len;
		ssize_t n = read(o->read_fd, o->line + o->len, room < budget ? room : budget);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0) {
			/* Only a reader without the write end (output_restore of an
			 * orphan's pipe) sees EOF: its last writer is gone. */
			output_flush(o);
			sd_event_source_set_enabled(o->src, SD_EVENT_OFF);
			return -EAGAIN;
		}
		if (n < 0)
			return -EAGAIN;
		o->len += (size_t)n;
		budget -= (size_t)n;
		output_lines(o);
	}
	return 0;
}

static int on_output(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	output_read(userdata, OUTPUT_READ_BUDGET);
	return 0;
}

void output_drain(struct output *o)
{
	if (o)
		output_read(o, 64 * 1024);
}

void output_flush(struct output *o)
{
	if (o && o->len > 0) {
		output_log(o, "%.*s", (int)o->len, o->line);
		o->len = 0;
	}
}

static void output_close(struct output *o)
{
	sd_event_source_disable_unref(o->src);
	if (o->read_fd >= 0)
		close(o->read_fd);
	if (o->write_fd >= 0)
		close(o->write_fd);
	free(o);
}

void output_free(struct output *o)
{
	if (!o)
		return;
	/* What the worker wrote last, its exit message say, is still in the pipe. */
	output_read(o, SIZE_MAX);
	output_flush(o);
	output_close(o);
}

/* Takes @read_fd and @write_fd on success. */
static int output_make(sd_event *event, int read_fd, int write_fd, const char *app,
		       unsigned generation, unsigned worker, struct output **ret)
{
	struct output *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->read_fd = o->write_fd = -1;
	snprintf(o->app, sizeof(o->app), "%s", app);
	snprintf(o->prefix, sizeof(o->prefix), "%s[%u.%u]: ", app, generation, worker);
	o->ctx =
	    (struct log_context){.app = o->app, .generation = generation, .worker = (int)worker};
	int r = sd_event_add_io(event, &o->src, read_fd, EPOLLIN, on_output, o);
	if (r < 0) {
		output_close(o);
		return r;
	}
	o->read_fd = read_fd;
	o->write_fd = write_fd;
	*ret = o;
	return 0;
}

int output_new(sd_event *event, const char *app, unsigned generation, unsigned worker,
	       struct output **ret)
{
	int pipefd[2];
	/* Only batond's end is non-blocking: the worker's stdout behaves as any. */
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	int r = fcntl(pipefd[0], F_SETFL, O_NONBLOCK) < 0 ? -errno : 0;
	if (r == 0)
		r = output_make(event, pipefd[0], pipefd[1], app, generation, worker, ret);
	if (r < 0) {
		close(pipefd[0]);
		close(pipefd[1]);
	}
	return r;
}

int output_restore(sd_event *event, int read_fd, int write_fd, const char *app, unsigned generation,
		   unsigned worker, struct output **ret)
{
	if (read_fd < 0)
		return -EBADF;
	return output_make(event, read_fd, write_fd, app, generation, worker, ret);
}

int output_write_fd(const struct output *o)
{
	return o ? o->write_fd : -1;
}

int output_read_fd(const struct output *o)
{
	return o ? o->read_fd : -1;
}
