/* SPDX-License-Identifier: MIT */
/* batond.conf: gives the sections and assignments that config-text.c parsed
 * their meaning, from one table of options per section, and checks every
 * value, reporting each problem as FILE:LINE: message. Opens no socket and
 * starts nothing; it only parses addresses (listener.c binds them) and looks
 * up the control group and listener owners, so that --check finds what the
 * start would. */
#include "config.h"
#include "config-text.h"
#include "parse.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#define DEFAULT_CONTROL_SOCKET "/run/baton/batond.sock"
#define NAME_MAX_LEN	       64
#define TAG_MAX_LEN	       64	   /* PROTO_TAG_MAX: a tag travels in each conn record */
#define MAX_SECONDS	       31536000ULL /* a year: beyond it, a timeout is a typo */
#define USEC_PER_SEC	       1000000ULL
/* main.c puts the workers' notify socket beside the control socket, at
 * SOCKET.notify/notify (notify.h), and one for each other user apps run as at
 * SOCKET.notify/notify-UID: each must fit in a unix socket address. */
#define NOTIFY_SUFFIX ".notify/notify"
#define MAX_OPTIONS   40

struct load_error {
	int line;
	size_t seq;
	char *text;
};

struct loader {
	const char *path;
	struct config *c;
	struct load_error *errors;
	size_t n_errors;
	bool oom;
	int control_socket_line;
};

/* One section being loaded: where each of its options was set. */
struct section_state {
	struct loader *ld;
	char *what; /* `app "web"`, for messages */
	int line;   /* of the section */
	const struct conf_assignment *first[MAX_OPTIONS], *last[MAX_OPTIONS];
	size_t n_values[MAX_OPTIONS];
};

struct option;

/* Converts @n values of option @o and stores them in @obj, the section's
 * struct, reporting each bad one. A scalar gets one value at a time (the
 * default first); a list gets each assignment's values, to append. */
typedef void store_fn(struct section_state *st, const struct option *o,
		      const struct conf_value *values, size_t n, void *obj);

struct option {
	const char *name;
	bool list;
	const char *def; /* the default, as it would be written; NULL: none */
	store_fn *store;
	size_t offset;		     /* of the field in the section's struct */
	unsigned long long min, max; /* numbers; durations in microseconds */
	const char *const *choices;  /* NULL-terminated */
};

/* ---- Errors -------------------------------------------------------------- */

/* Values are quoted in messages as written: a control character in one would
 * break the message's one line. */
static char *escape_controls(char *text)
{
	size_t n = 0, len = strlen(text);
	char *out, *q;

	for (const char *p = text; *p; p++)
		n += (unsigned char)*p < 0x20 || *p == 0x7f;
	if (n == 0)
		return text;
	out = malloc(len + n * 3 + 1);
	if (!out) {
		free(text);
		return NULL;
	}
	q = out;
	for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
		if (*p == '\n')
			q += sprintf(q, "\\n");
		else if (*p == '\t')
			q += sprintf(q, "\\t");
		else if (*p < 0x20 || *p == 0x7f)
			q += sprintf(q, "\\x%02x", *p);
		else
			*q++ = (char)*p;
	}
	*q = '\0';
	free(text);
	return out;
}

static void vreport(struct loader *ld, int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void vreport(struct loader *ld, int line, const char *fmt, va_list ap)
{
	struct load_error *errors;
	char *text;

	if (vasprintf(&text, fmt, ap) < 0 || !(text = escape_controls(text))) {
		ld->oom = true;
		return;
	}
	errors = reallocarray(ld->errors, ld->n_errors + 1, sizeof(*errors));
	if (!errors) {
		ld->oom = true;
		free(text);
		return;
	}
	ld->errors = errors;
	errors[ld->n_errors] = (struct load_error){line, ld->n_errors, text};
	ld->n_errors++;
}

static void report(struct loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(struct loader *ld, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(ld, line, fmt, ap);
	va_end(ap);
}

/* config_text_report_fn: a syntax error joins the others. */
static void report_syntax_error(void *userdata, int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void report_syntax_error(void *userdata, int line, const char *fmt, va_list ap)
{
	vreport(userdata, line, fmt, ap);
}

static int error_order(const void *a, const void *b)
{
	const struct load_error *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void flush_errors(struct loader *ld, FILE *out)
{
	if (!out)
		return;
	qsort(ld->errors, ld->n_errors, sizeof(*ld->errors), error_order);
	for (size_t i = 0; i < ld->n_errors; i++)
		fprintf(out, "%s:%d: %s\n", ld->path, ld->errors[i].line, ld->errors[i].text);
	if (ld->oom)
		fprintf(out, "%s: out of memory\n", ld->path);
}

static char *dup_or_oom(struct loader *ld, const char *s)
{
	char *copy;

	if (!s)
		return NULL;
	copy = strdup(s);
	if (!copy)
		ld->oom = true;
	return copy;
}

/* The line of option @i's (last) value, else of the section. */
static int value_line(const struct section_state *st, size_t i)
{
	const struct conf_assignment *a = st->last[i];

	if (!a)
		return st->line;
	return a->n_values ? a->values[0].line : a->line;
}

/* ---- Converting values --------------------------------------------------- */

static void *field(void *obj, const struct option *o)
{
	return (char *)obj + o->offset;
}

static bool convert_number(struct section_state *st, const struct option *o,
			   const struct conf_value *v, unsigned long long *ret)
{
	int r = parse_unsigned(v->text, o->min, o->max, ret);

	if (r == -ERANGE)
		report(st->ld, v->line, "%s: %s: %s is out of range %llu..%llu", st->what, o->name,
		       v->text, o->min, o->max);
	else if (r < 0)
		report(st->ld, v->line, "%s: %s: \"%s\" is not a number", st->what, o->name,
		       v->text);
	return r == 0;
}

static void store_unsigned(struct section_state *st, const struct option *o,
			   const struct conf_value *v, size_t n, void *obj)
{
	unsigned long long number;

	if (convert_number(st, o, v, &number))
		*(unsigned *)field(obj, o) = (unsigned)number;
}

static void store_int(struct section_state *st, const struct option *o, const struct conf_value *v,
		      size_t n, void *obj)
{
	unsigned long long number;

	if (convert_number(st, o, v, &number))
		*(int *)field(obj, o) = (int)number;
}

static void store_seconds(struct section_state *st, const struct option *o,
			  const struct conf_value *v, size_t n, void *obj)
{
	int r = parse_seconds_usec(v->text, o->min, o->max, field(obj, o));

	if (r == -ERANGE)
		report(st->ld, v->line, "%s: %s: %s is out of range %s..%llu seconds", st->what,
		       o->name, v->text, o->min ? "0.000001" : "0", o->max / USEC_PER_SEC);
	else if (r < 0)
		report(st->ld, v->line, "%s: %s: \"%s\" is not a number of seconds", st->what,
		       o->name, v->text);
}

static void store_choice(struct section_state *st, const struct option *o,
			 const struct conf_value *v, size_t n, void *obj)
{
	int i = parse_choice(v->text, o->choices);
	char list[160] = "";

	if (i >= 0) {
		*(int *)field(obj, o) = i;
		return;
	}
	for (i = 0; o->choices[i]; i++) {
		strncat(list, i ? ", " : "", sizeof(list) - strlen(list) - 1);
		strncat(list, o->choices[i], sizeof(list) - strlen(list) - 1);
	}
	report(st->ld, v->line, "%s: %s: \"%s\" is not one of %s", st->what, o->name, v->text,
	       list);
}

static void store_bool(struct section_state *st, const struct option *o, const struct conf_value *v,
		       size_t n, void *obj)
{
	if (parse_bool(v->text, field(obj, o)) < 0)
		report(st->ld, v->line, "%s: %s: \"%s\" is not one of true, false", st->what,
		       o->name, v->text);
}

static void store_mode(struct section_state *st, const struct option *o, const struct conf_value *v,
		       size_t n, void *obj)
{
	if (parse_file_mode(v->text, field(obj, o)) < 0)
		report(st->ld, v->line, "%s: %s: \"%s\" is not an octal file mode", st->what,
		       o->name, v->text);
}

static void store_signal(struct section_state *st, const struct option *o,
			 const struct conf_value *v, size_t n, void *obj)
{
	if (parse_signal(v->text, field(obj, o)) < 0)
		report(st->ld, v->line, "%s: %s: \"%s\" is not one of %s", st->what, o->name,
		       v->text, parse_signal_names);
}

static void store_string(struct section_state *st, const struct option *o,
			 const struct conf_value *v, size_t n, void *obj)
{
	char **s = field(obj, o);

	free(*s);
	*s = dup_or_oom(st->ld, v->text);
}

static void store_control_socket(struct section_state *st, const struct option *o,
				 const struct conf_value *v, size_t n, void *obj)
{
	size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;

	/* In main.c's words, which start-up used to say after binding. */
	if (v->text[0] != '/')
		report(st->ld, v->line, "control: socket: \"%s\" is not an absolute path", v->text);
	else if (strlen(v->text) + strlen(NOTIFY_SUFFIX) > max)
		report(st->ld, v->line,
		       "control: socket: notify socket %s" NOTIFY_SUFFIX ": path too long (%zu "
		       "bytes, at most %zu): the control socket's path must be at most %zu bytes",
		       v->text, strlen(v->text) + strlen(NOTIFY_SUFFIX), max,
		       max - strlen(NOTIFY_SUFFIX));
	store_string(st, o, v, n, obj);
}

/* The control socket's group (and read-group), by name as control.c looks it
 * up: it must exist now, not only when control.c makes the socket, so that
 * --check and a reload catch a missing one. */
static void store_control_group(struct section_state *st, const struct option *o,
				const struct conf_value *v, size_t n, void *obj)
{
	struct config *c = obj;
	gid_t *gid = strcmp(o->name, "group") == 0 ? &c->control_gid : &c->control_read_gid;
	int r = -EINVAL;

	if (*v->text && !strchr(v->text, ':'))
		r = lookup_group(v->text, gid);
	if (r == -EINVAL)
		report(st->ld, v->line, "control: %s: \"%s\" is not a group name", o->name,
		       v->text);
	else if (r == -ENOENT)
		report(st->ld, v->line, "control: %s: no such group \"%s\"", o->name, v->text);
	else if (r < 0)
		report(st->ld, v->line, "control: %s: \"%s\": %s", o->name, v->text, strerror(-r));
	store_string(st, o, v, n, obj);
}

static void store_address(struct section_state *st, const struct option *o,
			  const struct conf_value *v, size_t n, void *obj)
{
	struct listener_cfg *l = obj;
	char err[128];

	if (listen_addr_parse(v->text, &l->addr, err, sizeof(err)) < 0) {
		l->addr = (struct listen_addr){0};
		report(st->ld, v->line, "%s: address \"%s\": %s", st->what, v->text, err);
	}
	store_string(st, o, v, n, obj);
}

/* "user", "user:group", "user:" or ":group", as chown(1) takes them. */
static bool valid_owner(const char *s)
{
	const char *colon = strchr(s, ':');

	return *s && strcmp(s, ":") != 0 && (!colon || !strchr(colon + 1, ':'));
}

static void store_owner(struct section_state *st, const struct option *o,
			const struct conf_value *v, size_t n, void *obj)
{
	if (!valid_owner(v->text))
		report(st->ld, v->line, "%s: owner: \"%s\" is not USER, USER:GROUP or :GROUP",
		       st->what, v->text);
	store_string(st, o, v, n, obj);
}

static void store_tag(struct section_state *st, const struct option *o, const struct conf_value *v,
		      size_t n, void *obj)
{
	if (!*v->text || strlen(v->text) > TAG_MAX_LEN)
		report(st->ld, v->line, "%s: tag: must be 1 to %d bytes", st->what, TAG_MAX_LEN);
	store_string(st, o, v, n, obj);
}

static void free_list(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

/* Appends the @n values to the NULL-terminated *@list (made if NULL); returns
 * the index of the first one appended, or -1 out of memory. */
static ssize_t append_list(struct section_state *st, char ***list, const struct conf_value *values,
			   size_t n)
{
	char **v = *list;
	size_t len = 0, added = 0;

	while (v && v[len])
		len++;
	v = reallocarray(v, len + n + 1, sizeof(*v));
	if (!v) {
		st->ld->oom = true;
		return -1;
	}
	*list = v;
	while (added < n && (v[len + added] = dup_or_oom(st->ld, values[added].text)))
		added++;
	v[len + added] = NULL;
	return added == n ? (ssize_t)len : -1;
}

static void store_exec(struct section_state *st, const struct option *o,
		       const struct conf_value *values, size_t n, void *obj)
{
	struct app_cfg *app = obj;
	ssize_t first = append_list(st, &app->argv, values, n);

	if (first == 0 && n > 0)
		app->exec_line = values[0].line;
	if (first == 0 && n > 0 && app->argv[0] && app->argv[0][0] != '/')
		report(st->ld, values[0].line, "%s: exec: \"%s\" is not an absolute path", st->what,
		       values[0].text);
}

static void store_health_exec(struct section_state *st, const struct option *o,
			      const struct conf_value *values, size_t n, void *obj)
{
	struct app_cfg *app = obj;
	ssize_t first = append_list(st, &app->health_argv, values, n);

	if (first == 0 && n > 0 && app->health_argv[0] && app->health_argv[0][0] != '/')
		report(st->ld, values[0].line, "%s: health-exec: \"%s\" is not an absolute path",
		       st->what, values[0].text);
}

static void store_environment(struct section_state *st, const struct option *o,
			      const struct conf_value *values, size_t n, void *obj)
{
	struct app_cfg *app = obj;

	if (append_list(st, &app->environment, values, n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		const char *entry = values[i].text;

		if (entry[0] == '=' || !strchr(entry, '='))
			report(st->ld, values[i].line, "%s: environment: \"%s\" is not NAME=VALUE",
			       st->what, entry);
		else if (env_is_batonds(entry))
			report(st->ld, values[i].line, "%s: environment: \"%.*s\" is set by batond",
			       st->what, (int)strcspn(entry, "="), entry);
	}
}

/* Names of listeners, kept as indexes into config.listeners: every listener
 * section is loaded before any app. */
static void store_app_listeners(struct section_state *st, const struct option *o,
				const struct conf_value *values, size_t n, void *obj)
{
	const struct config *c = st->ld->c;
	struct app_cfg *app = obj;
	size_t *idx = reallocarray(app->listener_idx, app->n_listeners + n + 1, sizeof(*idx));

	if (!idx) {
		st->ld->oom = true;
		return;
	}
	app->listener_idx = idx;
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;
		bool listed = false;

		while (k < c->n_listeners && strcmp(c->listeners[k].name, values[i].text) != 0)
			k++;
		for (size_t j = 0; j < app->n_listeners; j++)
			listed = listed || idx[j] == k;
		if (k == c->n_listeners)
			report(st->ld, values[i].line, "%s: unknown listener \"%s\"", st->what,
			       values[i].text);
		else if (listed)
			report(st->ld, values[i].line, "%s: listener \"%s\" is listed twice",
			       st->what, values[i].text);
		else
			idx[app->n_listeners++] = k;
	}
}

/* The user workers run as: its uid, and its login group unless `group` says
 * otherwise; its supplementary groups unless `supplementary-groups` does. */
static void store_user(struct section_state *st, const struct option *o, const struct conf_value *v,
		       size_t n, void *obj)
{
	struct app_cfg *app = obj;
	gid_t login_gid;
	int r = parse_user(v->text, &app->uid, &login_gid);

	if (r == -ENOENT)
		report(st->ld, v->line, "%s: user: no such user \"%s\"", st->what, v->text);
	else if (r < 0)
		report(st->ld, v->line, "%s: user: \"%s\": %s", st->what, v->text, strerror(-r));
	if (r == 0 && !app->group)
		app->gid = login_gid;
	app->set_ids = true;
	store_string(st, o, v, n, obj);
}

static void store_app_group(struct section_state *st, const struct option *o,
			    const struct conf_value *v, size_t n, void *obj)
{
	struct app_cfg *app = obj;
	int r = parse_group(v->text, &app->gid);

	if (r == -ENOENT)
		report(st->ld, v->line, "%s: group: no such group \"%s\"", st->what, v->text);
	else if (r < 0)
		report(st->ld, v->line, "%s: group: \"%s\": %s", st->what, v->text, strerror(-r));
	app->set_ids = true;
	store_string(st, o, v, n, obj);
}

/* capabilities(7), indexed by number (linux/capability.h, up to 40). */
static const char *const cap_names[] = {
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
};

static void store_ambient_capabilities(struct section_state *st, const struct option *o,
				       const struct conf_value *values, size_t n, void *obj)
{
	struct app_cfg *app = obj;
	for (size_t i = 0; i < n; i++) {
		size_t c = 0;
		while (c < sizeof(cap_names) / sizeof(cap_names[0]) &&
		       strcasecmp(cap_names[c], values[i].text) != 0)
			c++;
		if (c == sizeof(cap_names) / sizeof(cap_names[0]))
			report(st->ld, values[i].line,
			       "%s: ambient-capabilities: unknown capability \"%s\" (names as in "
			       "capabilities(7), e.g. CAP_NET_BIND_SERVICE)",
			       st->what, values[i].text);
		else
			app->ambient_caps |= 1ULL << c;
	}
}

static void store_supplementary_groups(struct section_state *st, const struct option *o,
				       const struct conf_value *values, size_t n, void *obj)
{
	struct app_cfg *app = obj;
	/* Present, even empty: the worker gets exactly these (none for { }). */
	if (!app->supplementary_groups &&
	    !(app->supplementary_groups = calloc(1, sizeof(char *)))) {
		st->ld->oom = true;
		return;
	}
	if (append_list(st, &app->supplementary_groups, values, n) < 0)
		return;
	gid_t *groups = reallocarray(app->groups, app->n_groups + n + 1, sizeof(*groups));
	if (!groups) {
		st->ld->oom = true;
		return;
	}
	app->groups = groups;
	for (size_t i = 0; i < n; i++) {
		int r = parse_group(values[i].text, &groups[app->n_groups]);
		if (r == 0)
			app->n_groups++;
		else if (r == -ENOENT)
			report(st->ld, values[i].line,
			       "%s: supplementary-groups: no such group \"%s\"", st->what,
			       values[i].text);
		else
			report(st->ld, values[i].line, "%s: supplementary-groups: \"%s\": %s",
			       st->what, values[i].text, strerror(-r));
	}
}

static void store_working_directory(struct section_state *st, const struct option *o,
				    const struct conf_value *v, size_t n, void *obj)
{
	struct stat sb;

	if (v->text[0] != '/')
		report(st->ld, v->line, "%s: working-directory: \"%s\" is not an absolute path",
		       st->what, v->text);
	else if (stat(v->text, &sb) < 0)
		report(st->ld, v->line, "%s: working-directory: %s: %s", st->what, v->text,
		       strerror(errno));
	else if (!S_ISDIR(sb.st_mode))
		report(st->ld, v->line, "%s: working-directory: %s: not a directory", st->what,
		       v->text);
	store_string(st, o, v, n, obj);
}

static void store_umask(struct section_state *st, const struct option *o,
			const struct conf_value *v, size_t n, void *obj)
{
	struct app_cfg *app = obj;
	mode_t mask;

	if (parse_file_mode(v->text, &mask) < 0 || mask > 0777) {
		report(st->ld, v->line, "%s: umask: \"%s\" is not an octal mask from 0 to 0777",
		       st->what, v->text);
		return;
	}
	app->umask = mask;
	app->set_umask = true;
}

/* A limit: "infinity", or a number @parse takes; @what names what it takes. */
static void store_limit_as(struct section_state *st, const struct option *o,
			   const struct conf_value *v, void *obj,
			   int (*parse)(const char *, unsigned long long, unsigned long long,
					unsigned long long *),
			   const char *what)
{
	struct app_limit *l = field(obj, o);
	unsigned long long number;

	if (strcmp(v->text, "infinity") == 0) {
		*l = (struct app_limit){.set = true, .value = RLIM_INFINITY};
		return;
	}
	if (parse(v->text, 0, (unsigned long long)RLIM_INFINITY - 1, &number) < 0) {
		report(st->ld, v->line, "%s: %s: \"%s\" is not %s or infinity", st->what, o->name,
		       v->text, what);
		return;
	}
	*l = (struct app_limit){.set = true, .value = (rlim_t)number};
}

/* A resource limit: a number, or "infinity". Soft and hard alike. */
static void store_limit(struct section_state *st, const struct option *o,
			const struct conf_value *v, size_t n, void *obj)
{
	store_limit_as(st, o, v, obj, parse_unsigned, "a number");
}

/* A size in bytes (K, M, G, T suffixes) or "infinity". */
static void store_bytes(struct section_state *st, const struct option *o,
			const struct conf_value *v, size_t n, void *obj)
{
	store_limit_as(st, o, v, obj, parse_bytes, "a size (bytes, or a number with K, M, G or T)");
}

/* ---- The options --------------------------------------------------------- */

#define CHOICES(...)	 ((const char *const[]){__VA_ARGS__, NULL})
#define SECONDS(zero_ok) .min = (zero_ok) ? 0 : 1, .max = MAX_SECONDS * USEC_PER_SEC

/* store_choice writes an int. */
_Static_assert(sizeof(enum ready_mode) == sizeof(int) && sizeof(enum serve_mode) == sizeof(int) &&
		   sizeof(enum dispatch_policy) == sizeof(int) &&
		   sizeof(enum kill_mode) == sizeof(int) &&
		   sizeof(enum notify_access) == sizeof(int),
	       "enums stored as int");

/* The metrics address: tcp only, Prometheus scrapes over HTTP. */
static void store_metrics_address(struct section_state *st, const struct option *o,
				  const struct conf_value *v, size_t n, void *obj)
{
	struct config *c = obj;
	char err[128];

	if (listen_addr_parse(v->text, &c->metrics_addr, err, sizeof(err)) < 0) {
		c->metrics_addr = (struct listen_addr){0};
		report(st->ld, v->line, "metrics: address \"%s\": %s", v->text, err);
	} else if (c->metrics_addr.family == AF_UNIX || c->metrics_addr.socktype != SOCK_STREAM) {
		c->metrics_addr = (struct listen_addr){0};
		report(st->ld, v->line, "metrics: address \"%s\": metrics are served over tcp only",
		       v->text);
	}
	store_string(st, o, v, n, obj);
}

enum { CONTROL_SOCKET, CONTROL_MODE, CONTROL_GROUP, CONTROL_READ_GROUP, N_CONTROL_OPTIONS };
static const struct option control_options[N_CONTROL_OPTIONS] = {
    [CONTROL_SOCKET] = {.name = "socket",
			.def = DEFAULT_CONTROL_SOCKET,
			.store = store_control_socket,
			.offset = offsetof(struct config, control_socket)},
    [CONTROL_MODE] = {.name = "mode",
		      .def = "0600",
		      .store = store_mode,
		      .offset = offsetof(struct config, control_mode)},
    [CONTROL_GROUP] = {.name = "group",
		       .store = store_control_group,
		       .offset = offsetof(struct config, control_group)},
    [CONTROL_READ_GROUP] = {.name = "read-group",
			    .store = store_control_group,
			    .offset = offsetof(struct config, control_read_group)},
};

enum { L_ADDRESS, L_BACKLOG, L_REUSEPORT, L_MODE, L_OWNER, L_TAG, N_LISTENER_OPTIONS };
static const struct option listener_options[N_LISTENER_OPTIONS] = {
    [L_ADDRESS] = {.name = "address",
		   .store = store_address,
		   .offset = offsetof(struct listener_cfg, address)},
    [L_BACKLOG] = {.name = "backlog",
		   .def = "4096",
		   .store = store_int,
		   .offset = offsetof(struct listener_cfg, backlog),
		   .min = 1,
		   .max = INT_MAX},
    [L_REUSEPORT] = {.name = "reuseport",
		     .def = "false",
		     .store = store_bool,
		     .offset = offsetof(struct listener_cfg, reuseport)},
    [L_MODE] = {.name = "mode", .store = store_mode, .offset = offsetof(struct listener_cfg, mode)},
    [L_OWNER] = {.name = "owner",
		 .store = store_owner,
		 .offset = offsetof(struct listener_cfg, owner)},
    [L_TAG] = {.name = "tag", .store = store_tag, .offset = offsetof(struct listener_cfg, tag)},
};

enum {
	A_EXEC,
	A_LISTENERS,
	A_WORKERS,
	A_READY,
	A_READY_TIMEOUT,
	A_DRAIN_TIMEOUT,
	A_OVERLAP,
	A_MAX_DRAINING,
	A_CANARY,
	A_CANARY_TIME,
	A_PROBATION,
	A_STOP_SIGNAL,
	A_KILL_MODE,
	A_ENVIRONMENT,
	A_MODE,
	A_POLICY,
	A_HOLD_MAX,
	A_HOLD_TIMEOUT,
	A_USER,
	A_GROUP,
	A_SUPPLEMENTARY_GROUPS,
	A_WORKING_DIRECTORY,
	A_UMASK,
	A_NO_NEW_PRIVILEGES,
	A_LIMIT_NOFILE,
	A_LIMIT_CORE,
	A_LIMIT_NPROC,
	A_MEMORY_MAX,
	A_TASKS_MAX,
	A_CPU_WEIGHT,
	A_NOTIFY_ACCESS,
	A_AMBIENT_CAPABILITIES,
	A_HEALTH_EXEC,
	A_HEALTH_URL,
	A_HEALTH_INTERVAL,
	A_HEALTH_TIMEOUT,
	A_HEALTH_FAILURES,
	N_APP_OPTIONS
};
static const struct option app_options[N_APP_OPTIONS] = {
    [A_EXEC] = {.name = "exec", .list = true, .store = store_exec},
    [A_LISTENERS] = {.name = "listeners", .list = true, .store = store_app_listeners},
    [A_WORKERS] = {.name = "workers",
		   .def = "1",
		   .store = store_unsigned,
		   .offset = offsetof(struct app_cfg, workers),
		   .min = 1,
		   .max = 1024},
    [A_READY] = {.name = "ready",
		 .def = "notify",
		 .store = store_choice,
		 .offset = offsetof(struct app_cfg, ready),
		 .choices = CHOICES("notify", "immediate")},
    [A_READY_TIMEOUT] = {.name = "ready-timeout",
			 .def = "30",
			 .store = store_seconds,
			 .offset = offsetof(struct app_cfg, ready_timeout_usec),
			 SECONDS(false)},
    [A_DRAIN_TIMEOUT] = {.name = "drain-timeout",
			 .def = "60",
			 .store = store_seconds,
			 .offset = offsetof(struct app_cfg, drain_timeout_usec),
			 SECONDS(true)},
    [A_OVERLAP] = {.name = "overlap",
		   .def = "0",
		   .store = store_seconds,
		   .offset = offsetof(struct app_cfg, overlap_usec),
		   SECONDS(true)},
    [A_MAX_DRAINING] = {.name = "max-draining",
			.def = "4",
			.store = store_unsigned,
			.offset = offsetof(struct app_cfg, max_draining),
			.min = 1,
			.max = 1024},
    [A_CANARY] = {.name = "canary",
		  .def = "0",
		  .store = store_unsigned,
		  .offset = offsetof(struct app_cfg, canary),
		  .min = 0,
		  .max = 1023},
    [A_CANARY_TIME] = {.name = "canary-time",
		       .def = "0",
		       .store = store_seconds,
		       .offset = offsetof(struct app_cfg, canary_usec),
		       SECONDS(true)},
    [A_PROBATION] = {.name = "probation",
		     .def = "0",
		     .store = store_seconds,
		     .offset = offsetof(struct app_cfg, probation_usec),
		     SECONDS(true)},
    [A_STOP_SIGNAL] = {.name = "stop-signal",
		       .def = "TERM",
		       .store = store_signal,
		       .offset = offsetof(struct app_cfg, stop_signal)},
    [A_KILL_MODE] = {.name = "kill-mode",
		     .def = "mixed",
		     .store = store_choice,
		     .offset = offsetof(struct app_cfg, kill_mode),
		     .choices = CHOICES("mixed", "group")},
    [A_ENVIRONMENT] = {.name = "environment", .list = true, .store = store_environment},
    [A_MODE] = {.name = "mode",
		.def = "inherit",
		.store = store_choice,
		.offset = offsetof(struct app_cfg, mode),
		.choices = CHOICES("inherit", "dispatch")},
    [A_POLICY] = {.name = "policy",
		  .def = "least-loaded",
		  .store = store_choice,
		  .offset = offsetof(struct app_cfg, policy),
		  .choices = CHOICES("least-loaded", "round-robin", "sticky")},
    [A_HOLD_MAX] = {.name = "hold-max",
		    .def = "1024",
		    .store = store_unsigned,
		    .offset = offsetof(struct app_cfg, hold_max),
		    .min = 0,
		    .max = 1000000},
    [A_HOLD_TIMEOUT] = {.name = "hold-timeout",
			.def = "10",
			.store = store_seconds,
			.offset = offsetof(struct app_cfg, hold_timeout_usec),
			SECONDS(false)},
    [A_USER] = {.name = "user", .store = store_user, .offset = offsetof(struct app_cfg, user)},
    [A_GROUP] = {.name = "group",
		 .store = store_app_group,
		 .offset = offsetof(struct app_cfg, group)},
    [A_SUPPLEMENTARY_GROUPS] = {.name = "supplementary-groups",
				.list = true,
				.store = store_supplementary_groups},
    [A_AMBIENT_CAPABILITIES] = {.name = "ambient-capabilities",
				.list = true,
				.store = store_ambient_capabilities},
    [A_WORKING_DIRECTORY] = {.name = "working-directory",
			     .store = store_working_directory,
			     .offset = offsetof(struct app_cfg, working_directory)},
    [A_UMASK] = {.name = "umask", .store = store_umask},
    [A_NO_NEW_PRIVILEGES] = {.name = "no-new-privileges",
			     .def = "true",
			     .store = store_bool,
			     .offset = offsetof(struct app_cfg, no_new_privileges)},
    [A_LIMIT_NOFILE] = {.name = "limit-nofile",
			.store = store_limit,
			.offset = offsetof(struct app_cfg, limit_nofile)},
    [A_LIMIT_CORE] = {.name = "limit-core",
		      .store = store_limit,
		      .offset = offsetof(struct app_cfg, limit_core)},
    [A_LIMIT_NPROC] = {.name = "limit-nproc",
		       .store = store_limit,
		       .offset = offsetof(struct app_cfg, limit_nproc)},
    [A_MEMORY_MAX] = {.name = "memory-max",
		      .store = store_bytes,
		      .offset = offsetof(struct app_cfg, memory_max)},
    [A_TASKS_MAX] = {.name = "tasks-max",
		     .store = store_limit,
		     .offset = offsetof(struct app_cfg, tasks_max)},
    [A_CPU_WEIGHT] = {.name = "cpu-weight",
		      .store = store_unsigned,
		      .offset = offsetof(struct app_cfg, cpu_weight),
		      .min = 1,
		      .max = 10000},
    [A_NOTIFY_ACCESS] = {.name = "notify-access",
			 .def = "main",
			 .store = store_choice,
			 .offset = offsetof(struct app_cfg, notify_access),
			 .choices = CHOICES("main", "all")},
    [A_HEALTH_EXEC] = {.name = "health-exec", .list = true, .store = store_health_exec},
    [A_HEALTH_URL] = {.name = "health-url",
		      .store = store_string,
		      .offset = offsetof(struct app_cfg, health_url)},
    [A_HEALTH_INTERVAL] = {.name = "health-interval",
			   .def = "1",
			   .store = store_seconds,
			   .offset = offsetof(struct app_cfg, health_interval_usec),
			   SECONDS(false)},
    [A_HEALTH_TIMEOUT] = {.name = "health-timeout",
			  .def = "1",
			  .store = store_seconds,
			  .offset = offsetof(struct app_cfg, health_timeout_usec),
			  SECONDS(false)},
    [A_HEALTH_FAILURES] = {.name = "health-failures",
			   .def = "3",
			   .store = store_unsigned,
			   .offset = offsetof(struct app_cfg, health_failures),
			   .min = 1,
			   .max = 1000},
};

enum { METRICS_ADDRESS, N_METRICS_OPTIONS };
static const struct option metrics_options[N_METRICS_OPTIONS] = {
    [METRICS_ADDRESS] = {.name = "address",
			 .store = store_metrics_address,
			 .offset = offsetof(struct config, metrics_address)},
};

_Static_assert(N_APP_OPTIONS <= MAX_OPTIONS && N_LISTENER_OPTIONS <= MAX_OPTIONS,
	       "section_state holds every option");

/* Stores the defaults of @options, then each assignment of @sec (may be NULL)
 * in file order: an unknown option, an option set twice and each bad value is
 * reported, and every value is checked even when the option is repeated. */
static void apply_options(struct section_state *st, const struct option *options, size_t n_options,
			  const struct conf_section *sec, void *obj)
{
	for (size_t i = 0; i < n_options; i++) {
		const struct option *o = &options[i];
		struct conf_value def = {(char *)o->def, st->line};

		if (o->def || o->list)
			o->store(st, o, &def, o->def ? 1 : 0, obj);
	}
	for (size_t k = 0; sec && k < sec->n_assignments; k++) {
		const struct conf_assignment *a = &sec->assignments[k];
		const struct option *o;
		size_t i = 0;

		while (i < n_options && strcmp(options[i].name, a->name) != 0)
			i++;
		if (i == n_options) {
			report(st->ld, a->line, "%s: unknown option \"%s\"", st->what, a->name);
			continue;
		}
		o = &options[i];
		if (!o->list && a->append) {
			report(st->ld, a->line, "%s: %s: += extends lists only; write %s = VALUE",
			       st->what, o->name, o->name);
			continue;
		}
		if (!o->list && a->is_list) {
			report(st->ld, a->line, "%s: %s: takes one value, not a list", st->what,
			       o->name);
			continue;
		}
		if (st->first[i] && !a->append)
			report(st->ld, a->line, "%s: %s is set twice (first at line %d)", st->what,
			       o->name, st->first[i]->line);
		if (!st->first[i])
			st->first[i] = a;
		st->last[i] = a;
		st->n_values[i] += a->n_values;
		o->store(st, o, a->values, a->n_values, obj);
	}
}

/* @sec is NULL for a control section left out; control and metrics have no
 * title. */
static bool section_state_init(struct section_state *st, struct loader *ld,
			       const struct conf_section *sec)
{
	*st = (struct section_state){.ld = ld, .line = sec ? sec->line : 0};
	if (sec && sec->title && asprintf(&st->what, "%s \"%s\"", sec->kind, sec->title) < 0)
		st->what = NULL;
	else if (!sec || !sec->title)
		st->what = strdup(sec ? sec->kind : "control");
	if (!st->what)
		ld->oom = true;
	return st->what != NULL;
}

/* ---- Sections ------------------------------------------------------------ */

/* Names end up in LISTEN_FDNAMES (':'-separated) and on command lines. */
static void check_name(struct section_state *st, const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > NAME_MAX_LEN ||
	    strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != n)
		report(st->ld, st->line, "%s: name must be 1 to %d characters of A-Z a-z 0-9 _ . -",
		       st->what, NAME_MAX_LEN);
}

static void load_control(struct loader *ld, const struct conf_section *sec, struct config *c)
{
	struct section_state st;

	c->control_gid = (gid_t)-1;
	c->control_read_gid = (gid_t)-1;
	if (!section_state_init(&st, ld, sec))
		return;
	apply_options(&st, control_options, N_CONTROL_OPTIONS, sec, c);
	ld->control_socket_line = value_line(&st, CONTROL_SOCKET);
	free(st.what);
}

/* The notify socket of an app's own user must fit too: else its workers
 * could not say READY=1, and every upgrade would time out. */
static void check_notify_sockets(struct loader *ld, const struct config *c)
{
	size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
	int len;

	if (c->control_socket[0] != '/' || strlen(c->control_socket) + strlen(NOTIFY_SUFFIX) > max)
		return; /* said already */
	for (size_t i = 0; i < c->n_apps; i++) {
		const struct app_cfg *app = &c->apps[i];

		if (!app->set_ids || app->uid == geteuid())
			continue;
		len = snprintf(NULL, 0, "%s" NOTIFY_SUFFIX "-%u", c->control_socket,
			       (unsigned)app->uid);
		if (len > (int)max)
			report(
			    ld, ld->control_socket_line,
			    "control: socket: notify socket %s%s-%u of app \"%s\" (uid %u): path "
			    "too long (%d bytes, at most %zu)",
			    c->control_socket, NOTIFY_SUFFIX, (unsigned)app->uid, app->name,
			    (unsigned)app->uid, len, max);
	}
}

/* After the listeners: the metrics address must not be one of theirs. */
static void load_metrics(struct loader *ld, const struct conf_section *sec, struct config *c)
{
	struct section_state st;

	c->metrics_line = sec->line;
	if (!section_state_init(&st, ld, sec))
		return;
	apply_options(&st, metrics_options, N_METRICS_OPTIONS, sec, c);
	if (!st.last[METRICS_ADDRESS])
		report(ld, sec->line, "metrics: address is required");
	for (size_t i = 0; c->metrics_addr.family && i < c->n_listeners; i++) {
		const struct listener_cfg *l = &c->listeners[i];

		if (l->addr.family == c->metrics_addr.family &&
		    l->addr.socktype == c->metrics_addr.socktype &&
		    l->addr.sa_len == c->metrics_addr.sa_len &&
		    memcmp(&l->addr.sa, &c->metrics_addr.sa, l->addr.sa_len) == 0) {
			report(ld, value_line(&st, METRICS_ADDRESS),
			       "metrics: address \"%s\" is also used by listener \"%s\" (line %d)",
			       c->metrics_address, l->name, l->line);
			break;
		}
	}
	free(st.what);
}

/* A unix socket file's owner is set at bind: its user and group must exist. */
static void check_owner_exists(struct section_state *st, const char *owner)
{
	const char *colon = strchr(owner, ':');
	char *user = strndup(owner, colon ? (size_t)(colon - owner) : strlen(owner));
	uid_t uid;
	gid_t gid;
	int r;

	if (!user) {
		st->ld->oom = true;
		return;
	}
	r = *user ? parse_user(user, &uid, &gid) : 0;
	if (r == -ENOENT)
		report(st->ld, value_line(st, L_OWNER), "%s: owner: no such user \"%s\"", st->what,
		       user);
	else if (r < 0)
		report(st->ld, value_line(st, L_OWNER), "%s: owner: user \"%s\": %s", st->what,
		       user, strerror(-r));
	r = colon && colon[1] ? parse_group(colon + 1, &gid) : 0;
	if (r == -ENOENT)
		report(st->ld, value_line(st, L_OWNER), "%s: owner: no such group \"%s\"", st->what,
		       colon + 1);
	else if (r < 0)
		report(st->ld, value_line(st, L_OWNER), "%s: owner: group \"%s\": %s", st->what,
		       colon + 1, strerror(-r));
	free(user);
}

static void check_listener(struct section_state *st, const struct config *c,
			   const struct listener_cfg *l)
{
	bool unix_path = l->addr.family == AF_UNIX && !l->addr.abstract;

	if (!st->last[L_ADDRESS])
		report(st->ld, l->line, "%s: address is required", st->what);
	if (l->addr.family == 0)
		return; /* not parsed: said above, or where it was */
	if (l->reuseport && l->addr.family == AF_UNIX)
		report(st->ld, value_line(st, L_REUSEPORT),
		       "%s: reuseport applies only to tcp and udp listeners", st->what);
	if (st->last[L_MODE] && !unix_path)
		report(st->ld, value_line(st, L_MODE), "%s: mode applies only to unix socket paths",
		       st->what);
	if (st->last[L_OWNER] && !unix_path)
		report(st->ld, value_line(st, L_OWNER),
		       "%s: owner applies only to unix socket paths", st->what);
	else if (l->owner && valid_owner(l->owner))
		check_owner_exists(st, l->owner);

	for (const struct listener_cfg *other = c->listeners; other < l; other++) {
		if (other->addr.family == l->addr.family &&
		    other->addr.socktype == l->addr.socktype &&
		    other->addr.sa_len == l->addr.sa_len &&
		    memcmp(&other->addr.sa, &l->addr.sa, l->addr.sa_len) == 0) {
			report(st->ld, value_line(st, L_ADDRESS),
			       "%s: address \"%s\" is also used by listener \"%s\" (line %d)",
			       st->what, l->address, other->name, other->line);
			break;
		}
	}
}

static void load_listener(struct loader *ld, const struct conf_section *sec, struct config *c,
			  struct listener_cfg *l)
{
	struct section_state st;

	l->name = dup_or_oom(ld, sec->title);
	l->line = sec->line;
	if (!section_state_init(&st, ld, sec))
		return;
	check_name(&st, sec->title);
	apply_options(&st, listener_options, N_LISTENER_OPTIONS, sec, l);
	check_listener(&st, c, l);
	free(st.what);
}

/* The groups NSS gives @app's user (with its group), as login would set them. */
static void user_groups(struct section_state *st, struct app_cfg *app)
{
	int n = 32;
	for (int tries = 0; tries < 4; tries++) {
		gid_t *groups = reallocarray(NULL, (size_t)n, sizeof(*groups));
		if (!groups) {
			st->ld->oom = true;
			return;
		}
		int want = n;
		if (getgrouplist(app->user, app->gid, groups, &want) >= 0) {
			free(app->groups);
			app->groups = groups;
			app->n_groups = (size_t)want;
			return;
		}
		free(groups);
		n = want > n ? want : n * 2;
	}
}

/* health-url "http://HOST:PORT/PATH" names one of the app's tcp listeners
 * (batond hands the probe to one worker as a connection of that listener,
 * which needs dispatch mode); health-exec and health-url exclude each other. */
static void check_health(struct section_state *st, const struct config *c, struct app_cfg *app)
{
	int exec_line = value_line(st, A_HEALTH_EXEC), url_line = value_line(st, A_HEALTH_URL);

	app->health_line = st->last[A_HEALTH_EXEC] ? exec_line : url_line;
	if (!st->last[A_HEALTH_EXEC]) {
		free_list(app->health_argv); /* the empty list of the default */
		app->health_argv = NULL;
	}
	if (st->last[A_HEALTH_EXEC] && !app->health_argv[0])
		report(st->ld, exec_line, "%s: health-exec: the command is empty", st->what);
	if (st->last[A_HEALTH_EXEC] && st->last[A_HEALTH_URL])
		report(st->ld, url_line,
		       "%s: health-url: health-exec is set too (line %d): use one", st->what,
		       exec_line);
	for (size_t i = A_HEALTH_INTERVAL; i <= A_HEALTH_FAILURES; i++)
		if (st->last[i] && !st->last[A_HEALTH_EXEC] && !st->last[A_HEALTH_URL])
			report(st->ld, value_line(st, i),
			       "%s: %s: set health-exec or health-url too", st->what,
			       app_options[i].name);
	if (!app->health_url)
		return;
	const char *url = app->health_url;
	const char *host = strncmp(url, "http://", 7) == 0 ? url + 7 : NULL;
	size_t host_len = host ? strcspn(host, "/") : 0;
	const char *path = host ? host + host_len : NULL;
	char addr_text[128];
	struct listen_addr addr;
	char err[128] = "expected http://HOST:PORT/PATH";

	if (!host || host_len == 0 || host_len > 100 ||
	    strspn(path, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
			 "-._~:/?#[]@!$&'()*+,;=%") != strlen(path) ||
	    (snprintf(addr_text, sizeof(addr_text), "tcp://%.*s", (int)host_len, host),
	     listen_addr_parse(addr_text, &addr, err, sizeof(err)) < 0)) {
		report(st->ld, url_line, "%s: health-url \"%s\": %s", st->what, url, err);
		return;
	}
	if (app->mode != SERVE_DISPATCH) {
		report(st->ld, url_line,
		       "%s: health-url needs mode = dispatch: in inherit mode every generation "
		       "accepts on the same listener, and a probe cannot choose one (use "
		       "health-exec, which gets BATON_WORKER_PIDS)",
		       st->what);
		return;
	}
	for (size_t i = 0; i < app->n_listeners; i++) {
		const struct listen_addr *l = &c->listeners[app->listener_idx[i]].addr;
		const struct sockaddr_in *a4 = (const void *)&addr.sa, *l4 = (const void *)&l->sa;
		const struct sockaddr_in6 *a6 = (const void *)&addr.sa, *l6 = (const void *)&l->sa;
		bool same = l->family == addr.family && l->socktype == SOCK_STREAM &&
			    (addr.family == AF_INET
				 ? l4->sin_port == a4->sin_port &&
				       (l4->sin_addr.s_addr == htonl(INADDR_ANY) ||
					l4->sin_addr.s_addr == a4->sin_addr.s_addr)
				 : l6->sin6_port == a6->sin6_port &&
				       (IN6_IS_ADDR_UNSPECIFIED(&l6->sin6_addr) ||
					IN6_ARE_ADDR_EQUAL(&l6->sin6_addr, &a6->sin6_addr)));
		if (!same)
			continue;
		app->health_listener = i;
		app->health_path = dup_or_oom(st->ld, *path ? path : "/");
		app->health_host = strndup(host, host_len);
		if (!app->health_host)
			st->ld->oom = true;
		return;
	}
	report(st->ld, url_line,
	       "%s: health-url \"%s\": %.*s is not the address of one of the "
	       "app's tcp listeners",
	       st->what, url, (int)host_len, host);
}

static void load_app(struct loader *ld, const struct conf_section *sec, const struct config *c,
		     struct app_cfg *app)
{
	struct section_state st;

	app->name = dup_or_oom(ld, sec->title);
	app->line = sec->line;
	if (!section_state_init(&st, ld, sec))
		return;
	check_name(&st, sec->title);
	apply_options(&st, app_options, N_APP_OPTIONS, sec, app);
	if (app->user && !app->supplementary_groups)
		user_groups(&st, app);

	if (app->argv && !app->argv[0])
		report(ld, app->line, "%s: exec is required", st.what);
	if (st.n_values[A_LISTENERS] == 0)
		report(ld, app->line, "%s: listeners: at least one listener is required", st.what);
	if (app->canary && app->canary >= app->workers)
		report(ld, value_line(&st, A_CANARY),
		       "%s: canary: %u workers is not fewer than workers (%u): a canary is a part "
		       "of a generation",
		       st.what, app->canary, app->workers);
	if (app->ambient_caps && !app->user)
		report(ld, value_line(&st, A_AMBIENT_CAPABILITIES),
		       "%s: ambient-capabilities: set user too (workers of batond's own user "
		       "keep batond's capabilities)",
		       st.what);
	if (app->canary_usec && !app->canary)
		report(ld, value_line(&st, A_CANARY_TIME), "%s: canary-time: set canary too",
		       st.what);
	check_health(&st, c, app);
	for (size_t i = 0; app->mode == SERVE_DISPATCH && i < app->n_listeners; i++) {
		const struct listener_cfg *l = &c->listeners[app->listener_idx[i]];

		if (l->addr.socktype == SOCK_DGRAM)
			report(ld, value_line(&st, A_MODE),
			       "%s: listener \"%s\" is udp, and udp is not dispatched "
			       "(use mode = inherit)",
			       st.what, l->name);
	}
	free(st.what);
}

/* batond accepts on a dispatch app's listeners itself (non-blocking); a worker
 * of another app accepting on the same socket would race it for connections. */
static void check_dispatch_listeners_unshared(struct loader *ld, const struct config *c)
{
	for (size_t a = 0; a < c->n_apps; a++) {
		const struct app_cfg *app = &c->apps[a];

		for (size_t i = 0; app->mode == SERVE_DISPATCH && i < app->n_listeners; i++)
			for (size_t b = 0; b < c->n_apps; b++)
				for (size_t k = 0; b != a && k < c->apps[b].n_listeners; k++)
					if (c->apps[b].listener_idx[k] == app->listener_idx[i])
						report(ld, c->apps[b].line,
						       "app \"%s\": listener \"%s\" belongs to "
						       "dispatch app \"%s\" and cannot be shared",
						       c->apps[b].name,
						       c->listeners[app->listener_idx[i]].name,
						       app->name);
	}
}

static bool is_kind(const struct conf_section *s, const char *kind)
{
	return strcmp(s->kind, kind) == 0;
}

/* Which sections count: a known kind, titled as it must be, not a duplicate. */
static bool section_counts(struct loader *ld, const struct conf_file *f, size_t i)
{
	const struct conf_section *s = &f->sections[i];
	bool untitled = is_kind(s, "control") || is_kind(s, "metrics");

	if (!untitled && !is_kind(s, "listener") && !is_kind(s, "app")) {
		report(ld, s->line, "unknown section \"%s\"", s->kind);
		return false;
	}
	if (untitled && s->title) {
		report(ld, s->line, "%s \"%s\": the %s section has no name", s->kind, s->title,
		       s->kind);
		return false;
	}
	if (!untitled && !s->title) {
		report(ld, s->line, "%s: a name is required: %s NAME { ... }", s->kind, s->kind);
		return false;
	}
	for (size_t j = 0; j < i; j++) {
		const struct conf_section *first = &f->sections[j];

		if (!is_kind(first, s->kind) || (s->title && !first->title) ||
		    (s->title && strcmp(first->title, s->title) != 0))
			continue;
		if (untitled)
			report(ld, s->line, "duplicate %s section (first defined at line %d)",
			       s->kind, first->line);
		else
			report(ld, s->line, "duplicate %s \"%s\" (first defined at line %d)",
			       s->kind, s->title, first->line);
		return false;
	}
	return true;
}

static struct config *build_config(struct loader *ld, const struct conf_file *f)
{
	struct config *c = calloc(1, sizeof(*c));
	const struct conf_section *control = NULL, *metrics = NULL;
	size_t n_listeners = 0, n_apps = 0;
	bool *counts = calloc(f->n_sections + 1, sizeof(bool));

	if (!c || !counts) {
		ld->oom = true;
		free(counts);
		return c;
	}
	ld->c = c;
	for (size_t i = 0; i < f->top.n_assignments; i++)
		report(ld, f->top.assignments[i].line, "unknown option \"%s\"",
		       f->top.assignments[i].name);
	for (size_t i = 0; i < f->n_sections; i++) {
		const struct conf_section *s = &f->sections[i];

		counts[i] = section_counts(ld, f, i);
		if (counts[i] && is_kind(s, "control"))
			control = s;
		if (counts[i] && is_kind(s, "metrics"))
			metrics = s;
		n_listeners += counts[i] && is_kind(s, "listener");
		n_apps += counts[i] && is_kind(s, "app");
	}

	c->path = dup_or_oom(ld, ld->path);
	load_control(ld, control, c);
	c->listeners = calloc(n_listeners + 1, sizeof(*c->listeners));
	c->apps = calloc(n_apps + 1, sizeof(*c->apps));
	if (!c->listeners || !c->apps) {
		ld->oom = true;
		free(counts);
		return c;
	}
	/* Counted before loading, so that config_free() frees a half-loaded entry;
	 * every listener before any app, which names them. */
	for (size_t i = 0; i < f->n_sections; i++)
		if (counts[i] && is_kind(&f->sections[i], "listener"))
			load_listener(ld, &f->sections[i], c, &c->listeners[c->n_listeners++]);
	if (metrics)
		load_metrics(ld, metrics, c);
	for (size_t i = 0; i < f->n_sections; i++)
		if (counts[i] && is_kind(&f->sections[i], "app"))
			load_app(ld, &f->sections[i], c, &c->apps[c->n_apps++]);
	check_dispatch_listeners_unshared(ld, c);
	check_notify_sockets(ld, c);
	free(counts);
	return c;
}

/* @text[@len] is a NUL. */
static int load_text(const char *path, const char *text, size_t len, FILE *errors,
		     struct config **ret)
{
	struct loader ld = {.path = path};
	struct conf_file file = {0};
	struct config *c = NULL;
	int r;

	r = config_text_parse(text, len, &file, report_syntax_error, &ld);
	if (r == -ENOMEM)
		ld.oom = true;
	else if (r == 0)
		c = build_config(&ld, &file);

	if (ld.n_errors > 0 || ld.oom) {
		flush_errors(&ld, errors);
		config_free(c);
		r = ld.n_errors > 0 ? -EINVAL : -ENOMEM;
	} else {
		*ret = c;
		r = 0;
	}
	config_text_free(&file);
	for (size_t i = 0; i < ld.n_errors; i++)
		free(ld.errors[i].text);
	free(ld.errors);
	return r;
}

/* A loaded configuration keeps its text (re-exec carries it); a failed load
 * frees it. */
static void keep_text(int r, struct config *cfg, char *text, size_t len)
{
	if (r < 0) {
		free(text);
		return;
	}
	cfg->text = text;
	cfg->text_len = len;
}

int config_parse(const char *path, const char *text, size_t len, FILE *errors, struct config **ret)
{
	char *copy = malloc(len + 1);
	int r;

	if (!copy) {
		if (errors)
			fprintf(errors, "%s: out of memory\n", path);
		return -ENOMEM;
	}
	memcpy(copy, text, len);
	copy[len] = '\0';
	r = load_text(path, copy, len, errors, ret);
	keep_text(r, *ret, copy, len);
	return r;
}

int config_load(const char *path, FILE *errors, struct config **ret)
{
	size_t len;
	char *text;
	int r;

	r = config_text_read(path, &text, &len);
	if (r < 0) {
		if (errors)
			fprintf(errors, "%s: %s\n", path,
				r == -EFBIG ? "is larger than 4 MiB" : strerror(-r));
		return r;
	}
	r = load_text(path, text, len, errors, ret);
	keep_text(r, *ret, text, len);
	return r;
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	free(cfg->text);
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		struct listener_cfg *l = &cfg->listeners[i];

		free(l->name);
		free(l->address);
		free(l->owner);
		free(l->tag);
	}
	for (size_t i = 0; i < cfg->n_apps; i++) {
		struct app_cfg *app = &cfg->apps[i];

		free(app->name);
		free_list(app->argv);
		free(app->listener_idx);
		free_list(app->environment);
		free(app->user);
		free(app->group);
		free_list(app->supplementary_groups);
		free(app->groups);
		free(app->working_directory);
		free_list(app->health_argv);
		free(app->health_url);
		free(app->health_path);
		free(app->health_host);
	}
	free(cfg->listeners);
	free(cfg->apps);
	free(cfg->control_socket);
	free(cfg->control_group);
	free(cfg->control_read_group);
	free(cfg->metrics_address);
	free(cfg->path);
	free(cfg);
}

const struct app_cfg *config_find_app(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_apps; i++)
		if (strcmp(cfg->apps[i].name, name) == 0)
			return &cfg->apps[i];
	return NULL;
}

/* May @cfg's user execute a file of @st? As the kernel decides for a process
 * of that uid, gid and groups (root: any execute bit). */
static bool executable_by(const struct app_cfg *cfg, const struct stat *st)
{
	if (!cfg->set_ids)
		return false; /* asked of the kernel instead: faccessat */
	if (cfg->uid == 0)
		return st->st_mode & (S_IXUSR | S_IXGRP | S_IXOTH);
	if (st->st_uid == cfg->uid)
		return st->st_mode & S_IXUSR;
	bool group = st->st_gid == cfg->gid;
	for (size_t i = 0; i < cfg->n_groups && !group; i++)
		group = st->st_gid == cfg->groups[i];
	return st->st_mode & (group ? S_IXGRP : S_IXOTH);
}

/* Every directory on @path may be searched by @cfg's user; else the reason,
 * naming the first that may not, in @why. */
static bool reachable_by(const struct app_cfg *cfg, const char *path, char *why, size_t len)
{
	char dir[PATH_MAX];
	for (const char *slash = strchr(path + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		struct stat st;
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
		if (stat(dir, &st) == 0 && !executable_by(cfg, &st)) {
			snprintf(
			    why, len,
			    "directory %s is not searchable by user %s (mode %04o, owner %u:%u)",
			    dir, cfg->user ? cfg->user : "of the app",
			    (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
			    (unsigned)st.st_gid);
			return false;
		}
	}
	return true;
}

int config_check_programs(const struct config *cfg, FILE *errors)
{
	int n = 0;
	for (size_t i = 0; i < cfg->n_apps; i++) {
		const struct app_cfg *app = &cfg->apps[i];
		const char *path = app->argv[0];
		struct stat st;
		char why[PATH_MAX + 300] = "";
		if (stat(path, &st) < 0)
			snprintf(why, sizeof(why), "%s", strerror(errno));
		else if (app->set_ids && !reachable_by(app, path, why, sizeof(why)))
			;
		else if (!S_ISREG(st.st_mode))
			snprintf(why, sizeof(why), "not a regular file");
		else if (app->set_ids ? !executable_by(app, &st)
				      : faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) < 0)
			snprintf(why, sizeof(why),
				 "not executable by %s%s (mode %04o, owner %u:%u)",
				 app->set_ids ? "user " : "batond's user",
				 app->set_ids ? (app->user ? app->user : "of the app") : "",
				 (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
				 (unsigned)st.st_gid);
		if (!why[0])
			continue;
		fprintf(errors, "%s:%d: app \"%s\": exec %s: %s\n", cfg->path,
			app->exec_line ? app->exec_line : app->line, app->name, path, why);
		n++;
	}
	return n;
}
