/* SPDX-License-Identifier: MIT */
/* batonctl: asks a running batond over its control socket and prints the
 * answer. Blocking is fine here: this is a one-shot client, bounded by
 * --timeout when it is given one. */
#include "proto.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum {
	EXIT_OK = 0,
	EXIT_FAILED = 1, /* the operation failed, e.g. upgrade rolled back */
	EXIT_USAGE = 2,
	EXIT_NO_BATOND = 3, /* nothing listening on the control socket */
	EXIT_DENIED = 4,    /* the control socket refused us */
	EXIT_UNKNOWN_APP = 5,
	EXIT_NOT_SERVING = 6, /* status: an app has no serving generation */
	EXIT_TIMEOUT = 7,     /* no whole answer within --timeout */
};

#define EXIT_STATUS_HELP                                                                           \
	"Exit status: 0 done; 1 failed (e.g. rolled back); 2 usage; 3 no batond;\n"                \
	"4 permission denied; 5 unknown app; 6 an app has no serving generation\n"                 \
	"(status); 7 no answer within --timeout.\n"

#define MAX_TIMEOUT_SECONDS 31536000.0 /* a year: beyond it, a typo */

static const char *socket_path = "/run/baton/batond.sock";
static const char *command = ""; /* for messages */
static const char *timeout_text; /* --timeout as given; NULL: wait as long as it takes */
static long long timeout_ms;
static long long deadline_ms; /* CLOCK_MONOTONIC */
static bool wait_drain;	      /* upgrade --wait-drain */
/* On a terminal, an upgrade or reload shows its progress (progress_poll). */
static bool progress;
#define PROGRESS_POLL_MS 100

static void progress_poll(bool announce);

struct command {
	const char *name;
	uint8_t type;
	const char *args; /* for the synopsis */
	unsigned min_args, max_args;
	const char *help; /* what it does, and its options */
	bool json, check; /* takes --json, --check */
	bool goes_on;	  /* batond carries on without batonctl (upgrade, reload, stop) */
	bool binary;	  /* takes --binary PATH */
};

static const struct command commands[] = {
    {"status", MSG_CTL_STATUS, "[--json]", 0, 0,
     "Apps, generations, workers and listeners; exits 6 (the status printed all\n"
     "the same) when an app has no serving generation.\n"
     "  --json    the same as one JSON object (docs/status-json.md)\n",
     true, true, false, false},
    {"upgrade", MSG_CTL_UPGRADE, "[--wait-drain] [APP]", 0, 1,
     "Start a new generation of APP and wait until it is ready; the old one\n"
     "drains in the background. Without APP, after a deploy: read the\n"
     "configuration again, apply it, and start a new generation of every app.\n"
     "  --wait-drain  also wait until every older generation is gone\n",
     false, false, true, false},
    {"promote", MSG_CTL_PROMOTE, "APP", 1, 1,
     "APP's canary generation (canary = N in batond.conf) serves from now on,\n"
     "with every worker; the generation it ran beside drains.\n",
     false, false, true, false},
    {"rollback", MSG_CTL_ROLLBACK, "APP", 1, 1,
     "APP's canary generation drains; the generation it ran beside takes every\n"
     "new connection again. Without a canary: start a new generation from the\n"
     "program and configuration of the one replaced last, and wait until it is\n"
     "ready.\n",
     false, false, true, false},
    {"reload", MSG_CTL_RELOAD, "", 0, 0,
     "Read the configuration again and apply what changed: apps whose processes\n"
     "start differently upgrade, the rest applies in place; errors change\n"
     "nothing.\n",
     false, false, true, false},
    {"scale", MSG_CTL_SCALE, "APP N", 2, 2,
     "Run N workers (1 to 1024) of APP's serving generation, and of its\n"
     "upgrades, without a new generation, until a reload.\n",
     false, false, true, false},
    {"reexec", MSG_CTL_REEXEC, "[--binary PATH]", 0, 0,
     "Replace batond's program in place: same pid, every socket, worker and\n"
     "connection kept. The new program first checks the state it is handed;\n"
     "if it cannot run, the running batond goes on and says why.\n"
     "  --binary PATH   the program to run (default: the one batond started as)\n",
     false, false, true, true},
    {"metrics", MSG_CTL_METRICS, "", 0, 0,
     "batond's metrics in the Prometheus text format, as GET /metrics.\n", false, false, false,
     false},
    {"stop", MSG_CTL_STOP, "", 0, 0,
     "Drain every app and stop batond; returns once it has stopped.\n", false, false, true, false},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: batonctl [-s SOCKET] [-t SECONDS] COMMAND [ARGS]\n"
		   "  status [--json]   apps, generations, workers, listeners (exit 6: an app\n"
		   "                    has no serving generation)\n"
		   "  upgrade [--wait-drain] APP  start a new generation of APP, wait until it\n"
		   "                    is ready (--wait-drain: and the old ones drained)\n"
		   "  upgrade           after a deploy: read the configuration again, apply it,\n"
		   "                    and start a new generation of every app\n"
		   "  promote APP       APP's canary serves, with every worker\n"
		   "  rollback APP      APP's canary drains; without one, back to the program\n"
		   "                    and configuration of the generation replaced last\n"
		   "  reload            read the configuration again and apply what changed:\n"
		   "                    apps whose processes start differently upgrade, the\n"
		   "                    rest applies in place; errors change nothing\n"
		   "  scale APP N       run N workers of APP's serving generation (and of its\n"
		   "                    upgrades), without a new generation, until a reload\n"
		   "  reexec [--binary PATH]  run a new batond program in place, keeping its\n"
		   "                    pid, sockets, workers and connections\n"
		   "  metrics           batond's metrics, Prometheus text format\n"
		   "  stop              drain every app and stop batond\n"
		   "Options:\n"
		   "  -s, --socket SOCKET    defaults to $BATON_SOCKET or /run/baton/batond.sock\n"
		   "  -t, --timeout SECONDS  give up waiting for batond's answer after SECONDS\n"
		   "                         (batond goes on with what it was asked); default:\n"
		   "                         wait as long as it takes\n"
		   "  -h, --help             this help; batonctl COMMAND --help for one command\n"
		   "      --version\n" EXIT_STATUS_HELP);
}

static void command_usage(FILE *f, const struct command *c)
{
	fprintf(f,
		"usage: batonctl [-s SOCKET] [-t SECONDS] %s%s%s\n%s"
		"  -t, --timeout SECONDS  give up waiting for batond's answer after SECONDS\n"
		"  -h, --help             this help\n" EXIT_STATUS_HELP,
		c->name, c->args[0] ? " " : "", c->args, c->help);
}

static void __attribute__((noreturn, format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("batonctl: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (command[0])
		fprintf(stderr, "\nTry 'batonctl %s --help'.\n", command);
	else
		fputs("\nTry 'batonctl --help'.\n", stderr);
	exit(EXIT_USAGE);
}

/* An option getopt_long refused (@c '?' or ':'): glibc sets optopt to the
 * option's character for a known option and to 0 for an unknown long one,
 * whose text is argv[optind - 1]. */
static void __attribute__((noreturn)) bad_option(char **argv, int c)
{
	const char *where = command[0] ? " for " : "";
	const char *arg = argv[optind - 1];
	bool is_long = strncmp(arg, "--", 2) == 0;
	int name_len = (int)strcspn(arg, "=");
	if (c == ':')
		usage_error("option %s%s%s needs a value", arg, where, command);
	if (is_long && optopt)
		usage_error("option %.*s%s%s takes no value", name_len, arg, where, command);
	if (is_long)
		usage_error("unknown option %.*s%s%s", name_len, arg, where, command);
	usage_error("unknown option -%c%s%s", optopt, where, command);
}

static long long monotonic_ms(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void set_timeout(const char *text)
{
	char *end;
	errno = 0;
	double s = strtod(text, &end);
	/* !(s >= 0.001) also refuses NaN. */
	if (errno || end == text || *end || !(s >= 0.001) || s > MAX_TIMEOUT_SECONDS)
		usage_error("--timeout: \"%s\" is not a number of seconds from 0.001 to %.0f", text,
			    MAX_TIMEOUT_SECONDS);
	timeout_text = text;
	timeout_ms = (long long)(s * 1000 + 0.5);
}

/* The command @argv[0] with its options; exits on a usage error or --help. */
static char binary_path[PATH_MAX]; /* reexec --binary, absolute */

static const struct command *parse_command(int argc, char **argv, bool *json, bool *check)
{
	const struct command *c = NULL;
	for (size_t i = 0; i < N_COMMANDS && !c; i++)
		if (strcmp(commands[i].name, argv[0]) == 0)
			c = &commands[i];
	if (!c)
		usage_error("unknown command \"%s\"", argv[0]);
	command = c->name;
	struct option opts[6] = {
	    {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	};
	size_t n = 2;
	if (c->json)
		opts[n++] = (struct option){"json", no_argument, NULL, 'j'};
	if (c->check)
		opts[n++] = (struct option){"check", no_argument, NULL, 'k'};
	if (c->type == MSG_CTL_UPGRADE)
		opts[n++] = (struct option){"wait-drain", no_argument, NULL, 'w'};
	if (c->binary)
		opts[n++] = (struct option){"binary", required_argument, NULL, 'b'};
	/* Reinitialised (optind 0) for this argv; options may follow arguments. */
	optind = 0;
	for (int o; (o = getopt_long(argc, argv, ":t:h", opts, NULL)) != -1;) {
		switch (o) {
		case 't':
			set_timeout(optarg);
			break;
		case 'h':
			command_usage(stdout, c);
			exit(EXIT_OK);
		case 'j':
			*json = true;
			break;
		case 'k':
			*check = true;
			break;
		case 'w':
			wait_drain = true;
			break;
		case 'b':
			/* batond runs elsewhere: it gets the path resolved here. */
			if (!realpath(optarg, binary_path)) {
				fprintf(stderr, "batonctl: %s: %s\n", optarg, strerror(errno));
				exit(EXIT_USAGE);
			}
			break;
		default:
			bad_option(argv, o);
		}
	}
	unsigned n_args = (unsigned)(argc - optind);
	if (n_args < c->min_args || n_args > c->max_args) {
		if (c->max_args == 0)
			usage_error("%s takes no arguments (\"%s\")", c->name, argv[optind]);
		usage_error("%s takes %s%u argument%s (%s), not %u", c->name,
			    c->min_args < c->max_args ? "at most " : "", c->max_args,
			    c->max_args == 1 ? "" : "s", c->args, n_args);
	}
	return c;
}

static void __attribute__((noreturn)) timed_out(const struct command *c)
{
	fprintf(stderr, "batonctl: no answer from batond within %s s%s\n", timeout_text,
		c->goes_on ? "; batond goes on with the request" : "");
	exit(EXIT_TIMEOUT);
}

/* Milliseconds left before --timeout, or -1 without one; exits once none are. */
static int ms_left(const struct command *c)
{
	if (!timeout_text)
		return -1;
	long long left = deadline_ms - monotonic_ms();
	if (left <= 0)
		timed_out(c);
	return left > 1000000000 ? 1000000000 : (int)left;
}

static int connect_batond(const struct command *cmd)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(socket_path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "batonctl: socket path too long: %s\n", socket_path);
		exit(EXIT_USAGE);
	}
	strcpy(sa.sun_path, socket_path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "batonctl: socket: %s\n", strerror(errno));
		exit(EXIT_FAILED);
	}
	/* connect() to a batond whose backlog is full, and send(), wait up to
	 * SO_SNDTIMEO on an AF_UNIX socket. */
	int left = ms_left(cmd);
	if (left > 0) {
		struct timeval tv = {.tv_sec = left / 1000, .tv_usec = left % 1000 * 1000};
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		if (e == EACCES || e == EPERM) {
			fprintf(stderr, "batonctl: permission denied on %s\n", socket_path);
			exit(EXIT_DENIED);
		}
		if (e == ENOENT || e == ECONNREFUSED) {
			fprintf(stderr, "batonctl: no batond running at %s (%s)\n", socket_path,
				strerror(e));
			exit(EXIT_NO_BATOND);
		}
		if (e == EAGAIN || e == EINPROGRESS)
			timed_out(cmd);
		fprintf(stderr, "batonctl: connect %s: %s\n", socket_path, strerror(e));
		exit(EXIT_FAILED);
	}
	return fd;
}

/* Waits for the next message into @m; returns 0 if batond closed the
 * connection instead. An ERROR ends batonctl with its text. */
static int receive(const struct command *cmd, int fd, struct proto_msg *m)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int left = ms_left(cmd);
		bool poll_progress = progress;
		if (poll_progress && (left < 0 || left > PROGRESS_POLL_MS))
			left = PROGRESS_POLL_MS;
		int n = poll(&p, 1, left);
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "batonctl: poll: %s\n", strerror(errno));
			exit(EXIT_FAILED);
		}
		if (n == 0 && poll_progress)
			progress_poll(true);
		if (n <= 0)
			continue; /* the deadline is checked above */
		int r = proto_recv(fd, ROLE_CONTROL_CLIENT, m);
		/* ECONNRESET comes before what batond sent ahead of closing (a
		 * refusal, say): read on to get it. */
		if (r == -EAGAIN || r == -ECONNRESET)
			continue;
		if (r == 0)
			return 0;
		if (r < 0) {
			fprintf(stderr, "batonctl: bad answer from batond: %s\n", strerror(-r));
			exit(EXIT_FAILED);
		}
		if (m->hdr.type != MSG_ERROR)
			return 1;
		int32_t code;
		const char *text;
		proto_parse_status(m, &code, &text);
		fprintf(stderr, "batonctl: %s\n", text);
		exit(code == EACCES ? EXIT_DENIED : EXIT_FAILED);
	}
}

static void receive_or_die(const struct command *cmd, int fd, struct proto_msg *m)
{
	if (receive(cmd, fd, m) == 0) {
		fprintf(stderr, "batonctl: batond closed the connection without an answer\n");
		exit(EXIT_FAILED);
	}
}

/* Adds the CTL_REPLY frame @m to *@text (NUL-terminated, *@len bytes);
 * @first: the reply's first frame, which sets *@code. Returns 1 when more
 * frames follow, 0 after the last, -EBADMSG for anything but a frame of this
 * reply, -EFBIG beyond PROTO_REPLY_MAX_BYTES, -ENOMEM. */
static int frame_append(const struct proto_msg *m, bool first, char **text, size_t *len,
			int32_t *code)
{
	int32_t frame_code;
	const char *frame_text;
	if (m->hdr.type != MSG_CTL_REPLY || proto_parse_status(m, &frame_code, &frame_text) < 0 ||
	    (!first && frame_code != *code))
		return -EBADMSG;
	*code = frame_code;
	size_t n = m->hdr.payload_bytes - 4;
	if (n > PROTO_REPLY_MAX_BYTES - *len)
		return -EFBIG;
	char *grown = realloc(*text, *len + n + 1);
	if (!grown)
		return -ENOMEM;
	memcpy(grown + *len, frame_text, n);
	*len += n;
	grown[*len] = 0;
	*text = grown;
	return m->hdr.flags & CTL_MORE ? 1 : 0;
}

/* The answer, reassembled from its CTL_REPLY frames: batonctl exits rather
 * than hand on less than all of it. */
static char *receive_reply(const struct command *cmd, int fd, struct proto_msg *m,
			   int32_t *ret_code, size_t *ret_len)
{
	char *text = NULL;
	size_t len = 0;
	int32_t code = 0;
	for (bool first = true;; first = false) {
		if (receive(cmd, fd, m) == 0) {
			if (first)
				fprintf(
				    stderr,
				    "batonctl: batond closed the connection without an answer\n");
			else
				fprintf(stderr,
					"batonctl: batond closed the connection in the middle of "
					"its answer (%zu bytes received)\n",
					len);
			exit(EXIT_FAILED);
		}
		int r = frame_append(m, first, &text, &len, &code);
		if (r == -EBADMSG) {
			fprintf(stderr, "batonctl: unexpected answer from batond\n");
			exit(EXIT_FAILED);
		}
		if (r == -EFBIG) {
			fprintf(stderr, "batonctl: batond's answer is larger than %d bytes\n",
				PROTO_REPLY_MAX_BYTES);
			exit(EXIT_FAILED);
		}
		if (r < 0) {
			fprintf(stderr, "batonctl: out of memory\n");
			exit(EXIT_FAILED);
		}
		if (r == 0)
			break;
	}
	*ret_code = code;
	*ret_len = len;
	return text;
}

static void send_or_die(const struct command *cmd, int fd, uint8_t type, uint16_t flags,
			const char *payload)
{
	int r = proto_send(fd, type, flags, 1, payload, payload ? strlen(payload) : 0, NULL, 0);
	if (r == -EPIPE || r == -ECONNRESET) {
		/* batond hung up on us: it may have said why (permission denied). */
		static struct proto_msg m;
		receive_or_die(cmd, fd, &m);
	}
	if (r == -EAGAIN)
		timed_out(cmd);
	if (r < 0) {
		fprintf(stderr, "batonctl: send: %s\n", strerror(-r));
		exit(EXIT_FAILED);
	}
}

/* The payload and flags of @c's request, with its arguments @args. */
static const char *request_payload(const struct command *c, char **args, bool json, bool check,
				   uint16_t *flags)
{
	static char scale[PROTO_NAME_MAX + 16];
	*flags = 0;
	switch (c->type) {
	case MSG_CTL_STATUS:
		/* Always checked: a status that says "fine" while an app serves
		 * nothing misleads every script that looks at the exit status.
		 * --check, which asked for it before, is still accepted. */
		*flags = (json ? CTL_JSON : 0) | CTL_CHECK;
		return NULL;
	case MSG_CTL_UPGRADE:
		*flags = wait_drain ? CTL_WAIT_DRAIN : 0;
		return args[0] ? args[0] : "";
	case MSG_CTL_REEXEC:
		return binary_path;
	case MSG_CTL_PROMOTE:
	case MSG_CTL_ROLLBACK:
		return args[0];
	case MSG_CTL_SCALE:
		snprintf(scale, sizeof(scale), "%.*s %.10s", PROTO_NAME_MAX, args[0], args[1]);
		return scale;
	default:
		return NULL;
	}
}

/* ---- Progress on a terminal ----
 * batond answers an upgrade once, when it is over. Meanwhile batonctl asks
 * for the status on a second connection every PROGRESS_POLL_MS and prints
 * what changed: a generation starting, its workers getting ready, the one it
 * replaces draining, and gone. The text status is read (batonctl links no
 * JSON library); its lines "app NAME: ...", "  generation N: ROLE, ..." and
 * "    worker I: pid P, STATE" are status.c's. */

#define PROGRESS_GENS_MAX 256

struct gen_seen {
	char app[PROTO_NAME_MAX + 1];
	unsigned id;
	char role[16];
	unsigned workers, ready;
	bool present; /* in the last status */
};
static struct gen_seen seen[PROGRESS_GENS_MAX];
static size_t n_seen;

static struct gen_seen *gen_seen_find(const char *app, unsigned id)
{
	for (size_t i = 0; i < n_seen; i++)
		if (seen[i].id == id && strcmp(seen[i].app, app) == 0)
			return &seen[i];
	return NULL;
}

static void __attribute__((format(printf, 1, 2))) progress_say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* What changed for @now since @was (NULL: a generation not seen before). */
static void progress_generation(const struct gen_seen *now, struct gen_seen *was)
{
	const char *app = now->app;
	if (!was) {
		if (strcmp(now->role, "starting") == 0)
			progress_say("%s: generation %u starting %u worker%s...", app, now->id,
				     now->workers, now->workers == 1 ? "" : "s");
		return;
	}
	if (strcmp(now->role, was->role) != 0) {
		if (strcmp(now->role, "serving") == 0)
			progress_say("%s: generation %u ready", app, now->id);
		else if (strcmp(now->role, "overlapping") == 0)
			progress_say("%s: generation %u serves on for its overlap", app, now->id);
		else if (strcmp(now->role, "draining") == 0)
			progress_say("%s: draining generation %u...", app, now->id);
		else if (strcmp(now->role, "finishing") == 0)
			progress_say("%s: generation %u finished early (max-draining)", app,
				     now->id);
	} else if (strcmp(now->role, "starting") == 0 && now->ready != was->ready &&
		   now->ready < now->workers) {
		progress_say("%s: generation %u: %u of %u workers ready", app, now->id, now->ready,
			     now->workers);
	}
}

/* Reads one status text; with @announce, says what changed since the last:
 * newest generation first, so that "ready" comes before what it replaces. */
static void progress_read(const char *text, bool announce)
{
	static struct gen_seen now[PROGRESS_GENS_MAX];
	size_t n_now = 0;
	char app[PROTO_NAME_MAX + 1] = "";
	for (const char *line = text; *line;) {
		unsigned id, index;
		int pid;
		char word[16];
		if (sscanf(line, "app %64[A-Za-z0-9_.-]:", app) == 1) {
			/* its generations follow */
		} else if (app[0] && n_now < PROGRESS_GENS_MAX &&
			   sscanf(line, "  generation %u: %15[a-z],", &id, word) == 2) {
			struct gen_seen *g = &now[n_now++];
			*g = (struct gen_seen){.id = id, .present = true};
			snprintf(g->app, sizeof(g->app), "%s", app);
			snprintf(g->role, sizeof(g->role), "%s", word);
		} else if (n_now > 0 && sscanf(line, "    worker %u: pid %d, %15[a-z]", &index,
					       &pid, word) == 3) {
			now[n_now - 1].workers++;
			now[n_now - 1].ready += strcmp(word, "ready") == 0;
		}
		line += strcspn(line, "\n");
		line += *line == '\n';
	}
	for (size_t i = 0; i < n_seen; i++)
		seen[i].present = false;
	for (size_t i = n_now; i-- > 0;) {
		struct gen_seen *was = gen_seen_find(now[i].app, now[i].id);
		if (announce)
			progress_generation(&now[i], was);
		if (was)
			*was = now[i];
		else if (n_seen < PROGRESS_GENS_MAX)
			seen[n_seen++] = now[i];
	}
	/* Generations gone since the last status. */
	for (size_t i = 0; i < n_seen;) {
		if (seen[i].present) {
			i++;
			continue;
		}
		if (announce)
			progress_say("%s: generation %u %s", seen[i].app, seen[i].id,
				     strcmp(seen[i].role, "starting") == 0 ? "stopped" : "drained");
		seen[i] = seen[--n_seen];
	}
}

/* The text status on a connection of its own, or NULL: progress is shown as
 * far as it can be, and never fails the command (a batond that is busy, or
 * slow to answer for a second, only leaves a gap in it). */
static char *status_text(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", socket_path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct proto_msg *m = malloc(sizeof(*m));
	struct timeval tv = {.tv_sec = 1}; /* connect() to a full backlog */
	char *text = NULL;
	size_t len = 0;
	int32_t code = 0;
	if (fd < 0 || !m || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    proto_send(fd, MSG_HELLO, 0, 1, "batonctl", 8, NULL, 0) < 0 ||
	    proto_send(fd, MSG_CTL_STATUS, CTL_FRAMES, 1, NULL, 0, NULL, 0) < 0)
		goto fail;
	long long give_up_ms = monotonic_ms() + 1000;
	for (bool first = true;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		long long left = give_up_ms - monotonic_ms();
		if (left <= 0 || (poll(&p, 1, (int)left) < 0 && errno != EINTR))
			goto fail;
		int r = proto_recv(fd, ROLE_CONTROL_CLIENT, m);
		if (r == -EINTR || r == -EAGAIN)
			continue;
		if (r <= 0)
			goto fail; /* closed, or bad */
		if (m->hdr.type == MSG_HELLO)
			continue;
		r = frame_append(m, first, &text, &len, &code);
		first = false;
		if (r < 0 || (r == 0 && code != 0))
			goto fail;
		if (r == 0)
			break;
	}
	close(fd);
	free(m);
	return text;
fail:
	if (fd >= 0)
		close(fd);
	free(m);
	free(text);
	return NULL;
}

/* One status from batond, read as above. */
static void progress_poll(bool announce)
{
	char *text = status_text();
	if (text)
		progress_read(text, announce);
	free(text);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {0},
	};
	const char *env = getenv("BATON_SOCKET");
	if (env && *env)
		socket_path = env;
	opterr = 0;
	/* "+": the options before the command; the command's own come after it. */
	for (int o; (o = getopt_long(argc, argv, "+:s:t:h", opts, NULL)) != -1;) {
		switch (o) {
		case 's':
			socket_path = optarg;
			break;
		case 't':
			set_timeout(optarg);
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			printf("batonctl %s\n", BATON_VERSION);
			return EXIT_OK;
		default:
			bad_option(argv, o);
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	bool json = false, check = false;
	int first = optind;
	const struct command *cmd = parse_command(argc - first, argv + first, &json, &check);
	char **args = argv + first + optind;
	uint16_t flags;
	const char *payload = request_payload(cmd, args, json, check, &flags);
	deadline_ms = monotonic_ms() + timeout_ms;
	/* On a terminal only: a script gets the one final line. */
	if ((cmd->type == MSG_CTL_UPGRADE || cmd->type == MSG_CTL_RELOAD) &&
	    isatty(STDOUT_FILENO)) {
		progress = true;
		progress_poll(false); /* what there is before */
	}
	int fd = connect_batond(cmd);
	struct proto_msg *m = malloc(sizeof(*m));
	if (!m) {
		fprintf(stderr, "batonctl: out of memory\n");
		return EXIT_FAILED;
	}
	char hello[64];
	snprintf(hello, sizeof(hello), "batonctl %s pid %d", BATON_VERSION, (int)getpid());
	/* The request follows HELLO at once: batond reads its messages in order, so
	 * waiting for its HELLO first would only cost a round trip. */
	send_or_die(cmd, fd, MSG_HELLO, 0, hello);
	send_or_die(cmd, fd, cmd->type, flags | CTL_FRAMES, payload);
	receive_or_die(cmd, fd, m);
	if (m->hdr.type != MSG_HELLO) {
		fprintf(stderr, "batonctl: batond did not answer HELLO\n");
		return EXIT_FAILED;
	}
	int32_t code;
	size_t len;
	char *text = receive_reply(cmd, fd, m, &code, &len);
	close(fd);
	free(m);
	if (progress)
		progress_poll(true); /* what happened since the last look */
	/* An app serves nothing: the status all the same, on stdout. */
	bool not_serving = cmd->type == MSG_CTL_STATUS && code == ESRCH;
	FILE *out = code && !not_serving ? stderr : stdout;
	fwrite(text, 1, len, out);
	if (len == 0 || text[len - 1] != '\n')
		fputc('\n', out);
	free(text);
	/* A full disk or a closed pipe must not pass for success. */
	if (fflush(out) != 0 || ferror(out)) {
		fprintf(stderr, "batonctl: cannot write the answer: %s\n", strerror(errno));
		return EXIT_FAILED;
	}
	if (code == 0)
		return EXIT_OK;
	if (not_serving)
		return EXIT_NOT_SERVING;
	if (code == ENOENT)
		return EXIT_UNKNOWN_APP;
	if (code == EACCES)
		return EXIT_DENIED;
	return EXIT_FAILED;
}
