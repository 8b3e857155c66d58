/* batond.conf: reads it with libconfuse into struct config and checks every
 * value, reporting each problem as FILE:LINE: message. The text libconfuse
 * parses comes from config-text.c. Opens no socket, starts nothing, and only
 * parses addresses (listener.c binds them). */
#include "config.h"
#include "config-text.h"

#include <confuse.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#define DEFAULT_CONTROL_SOCKET "/run/baton/batond.sock"
#define NAME_MAX_LEN	       64
#define MAX_SECONDS	       31536000ULL /* a year: beyond it, a timeout is a typo */
#define USEC_PER_SEC	       1000000ULL

/* The line of each value libconfuse stored, keyed by the option instance. */
struct value_line {
	const cfg_opt_t *opt;
	unsigned index;
	int line;
};

struct load_error {
	int line;
	size_t seq;
	char *text;
};

struct loader {
	const char *path;
	struct section_marks sections; /* from config-text.c */
	struct value_line *lines;
	size_t n_lines;
	const cfg_opt_t *last_list_opt;
	unsigned last_list_count;
	struct load_error *errors;
	size_t n_errors;
	bool oom;
};

/* libconfuse callbacks carry no user pointer: they find their loader here. */
static __thread struct loader *active_loader;

static void *grow(struct loader *ld, void *array, size_t n, size_t size)
{
	void *p = reallocarray(array, n + 1, size);

	if (!p)
		ld->oom = true;
	return p;
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

static void vreport(struct loader *ld, int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void vreport(struct loader *ld, int line, const char *fmt, va_list ap)
{
	struct load_error *errors;
	char *text;

	if (vasprintf(&text, fmt, ap) < 0) {
		ld->oom = true;
		return;
	}
	errors = grow(ld, ld->errors, ld->n_errors, sizeof(*errors));
	if (!errors) {
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

/* config_text_report_fn: the text's problems join the loader's, in order. */
static void report_text_problem(void *userdata, int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void report_text_problem(void *userdata, int line, const char *fmt, va_list ap)
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
	qsort(ld->errors, ld->n_errors, sizeof(*ld->errors), error_order);
	for (size_t i = 0; i < ld->n_errors; i++) {
		if (!out)
			continue;
		if (ld->errors[i].line > 0)
			fprintf(out, "%s:%d: %s\n", ld->path, ld->errors[i].line,
				ld->errors[i].text);
		else
			fprintf(out, "%s: %s\n", ld->path, ld->errors[i].text);
	}
	if (ld->oom && out)
		fprintf(out, "%s: out of memory\n", ld->path);
}

/* ---- libconfuse callbacks ------------------------------------------------ */

static const char *section_context(cfg_t *sec, char *buf, size_t len)
{
	if (sec->title)
		snprintf(buf, len, "%s \"%s\": ", sec->name, sec->title);
	else if (strcmp(sec->name, "root") != 0)
		snprintf(buf, len, "%s: ", sec->name);
	else
		buf[0] = '\0';
	return buf;
}

static void on_confuse_error(cfg_t *cfg, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void on_confuse_error(cfg_t *cfg, const char *fmt, va_list ap)
{
	static const char unknown[] = "no such option '";
	struct loader *ld = active_loader;
	char msg[512], context[160];
	size_t len;

	if (!ld)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	section_context(cfg, context, sizeof(context));
	len = strlen(msg);
	if (strncmp(msg, unknown, sizeof(unknown) - 1) == 0 && msg[len - 1] == '\'')
		report(ld, cfg->line, "%sunknown option \"%.*s\"", context,
		       (int)(len - sizeof(unknown)), msg + sizeof(unknown) - 1);
	else
		report(ld, cfg->line, "%s%s", context, msg);
}

/* Called by libconfuse right after it stores a value (and once more at the
 * closing brace of a list), with cfg->line still on that value's line. */
static int remember_line(cfg_t *cfg, cfg_opt_t *opt)
{
	struct loader *ld = active_loader;
	struct value_line *lines;
	unsigned index = 0;

	if (!ld || opt->nvalues == 0)
		return 0;
	if (opt->flags & CFGF_LIST) {
		if (ld->last_list_opt == opt && ld->last_list_count == opt->nvalues)
			return 0; /* the closing brace */
		ld->last_list_opt = opt;
		ld->last_list_count = opt->nvalues;
		index = opt->nvalues - 1;
	}
	lines = grow(ld, ld->lines, ld->n_lines, sizeof(*lines));
	if (!lines)
		return 0;
	ld->lines = lines;
	lines[ld->n_lines++] = (struct value_line){opt, index, cfg->line};
	return 0;
}

static int section_line(struct loader *ld, cfg_t *sec)
{
	for (size_t i = ld->sections.n_marks; i-- > 0;) {
		const struct section_mark *m = &ld->sections.marks[i];

		if (strcmp(m->kind, sec->name) == 0 &&
		    (!sec->title || (m->title && strcmp(m->title, sec->title) == 0)))
			return m->line;
	}
	return sec->line;
}

/* The line of value @index of option @name, else of the section. */
static int value_line(struct loader *ld, cfg_t *sec, const char *name, unsigned index)
{
	const cfg_opt_t *opt = cfg_getopt(sec, name);

	for (size_t i = ld->n_lines; opt && i-- > 0;)
		if (ld->lines[i].opt == opt && ld->lines[i].index == index)
			return ld->lines[i].line;
	return section_line(ld, sec);
}

/* ---- Values -------------------------------------------------------------- */

static bool parse_decimal(const char *s, unsigned long long *ret)
{
	unsigned long long v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (ULLONG_MAX - 9) / 10)
			return false;
		v = v * 10 + (unsigned)(*s - '0');
	}
	*ret = v;
	return true;
}

static bool get_number(struct loader *ld, cfg_t *sec, const char *what, const char *opt,
		       unsigned long long min, unsigned long long max, unsigned long long *ret)
{
	const char *s = cfg_getstr(sec, opt);
	unsigned long long v;

	if (!parse_decimal(s, &v)) {
		report(ld, value_line(ld, sec, opt, 0), "%s: %s: \"%s\" is not a number", what, opt,
		       s);
		return false;
	}
	if (v < min || v > max) {
		report(ld, value_line(ld, sec, opt, 0), "%s: %s: %s is out of range %llu..%llu",
		       what, opt, s, min, max);
		return false;
	}
	*ret = v;
	return true;
}

/* Seconds, whole or with up to microsecond precision ("30", "0.5"). */
static bool get_seconds(struct loader *ld, cfg_t *sec, const char *what, const char *opt,
			bool zero_ok, uint64_t *ret_usec)
{
	const char *s = cfg_getstr(sec, opt);
	unsigned long long whole = 0, frac = 0;
	char int_part[24], frac_part[7] = "000000";
	size_t n = strspn(s, "0123456789");

	if (n == 0 || n >= sizeof(int_part) ||
	    (s[n] && (s[n] != '.' || !s[n + 1] || s[n + 1 + strspn(s + n + 1, "0123456789")]))) {
		report(ld, value_line(ld, sec, opt, 0), "%s: %s: \"%s\" is not a number of seconds",
		       what, opt, s);
		return false;
	}
	memcpy(int_part, s, n);
	int_part[n] = '\0';
	if (s[n] == '.')
		memcpy(frac_part, s + n + 1, strnlen(s + n + 1, 6));
	parse_decimal(int_part, &whole);
	parse_decimal(frac_part, &frac);
	if (whole > MAX_SECONDS || (whole == MAX_SECONDS && frac > 0) ||
	    (!zero_ok && whole == 0 && frac == 0)) {
		report(ld, value_line(ld, sec, opt, 0),
		       "%s: %s: %s is out of range %s..%llu seconds", what, opt, s,
		       zero_ok ? "0" : "0.000001", MAX_SECONDS);
		return false;
	}
	*ret_usec = whole * USEC_PER_SEC + frac;
	return true;
}

/* One of @names (NULL-terminated); *ret is its index. */
static bool get_choice(struct loader *ld, cfg_t *sec, const char *what, const char *opt,
		       const char *const *names, int *ret)
{
	const char *s = cfg_getstr(sec, opt);
	char list[160] = "";

	for (int i = 0; names[i]; i++) {
		if (strcmp(s, names[i]) == 0) {
			*ret = i;
			return true;
		}
	}
	for (int i = 0; names[i]; i++) {
		strncat(list, i ? ", " : "", sizeof(list) - strlen(list) - 1);
		strncat(list, names[i], sizeof(list) - strlen(list) - 1);
	}
	report(ld, value_line(ld, sec, opt, 0), "%s: %s: \"%s\" is not one of %s", what, opt, s,
	       list);
	return false;
}

static bool get_bool(struct loader *ld, cfg_t *sec, const char *what, const char *opt, bool *ret)
{
	static const char *const names[] = {"false", "true", "no", "yes", "off", "on", NULL};
	const char *s = cfg_getstr(sec, opt);

	for (int i = 0; names[i]; i++) {
		if (strcasecmp(s, names[i]) == 0) {
			*ret = i % 2;
			return true;
		}
	}
	report(ld, value_line(ld, sec, opt, 0), "%s: %s: \"%s\" is not one of true, false", what,
	       opt, s);
	return false;
}

/* Octal, as chmod spells it ("0660" or "660"); unset stays 0. */
static bool get_mode(struct loader *ld, cfg_t *sec, const char *what, const char *opt, mode_t *ret)
{
	const char *s = cfg_getstr(sec, opt);
	unsigned long v = 0;

	if (!s)
		return true;
	if (!*s || strlen(s) > 5 || s[strspn(s, "01234567")]) {
		report(ld, value_line(ld, sec, opt, 0), "%s: %s: \"%s\" is not an octal file mode",
		       what, opt, s);
		return false;
	}
	v = strtoul(s, NULL, 8);
	if (v > 07777) {
		report(ld, value_line(ld, sec, opt, 0), "%s: %s: \"%s\" is not an octal file mode",
		       what, opt, s);
		return false;
	}
	*ret = (mode_t)v;
	return true;
}

static bool get_signal(struct loader *ld, cfg_t *sec, const char *what, int *ret)
{
	static const struct {
		const char *name;
		int signo;
	} signals[] = {{"TERM", SIGTERM}, {"INT", SIGINT},   {"QUIT", SIGQUIT},
		       {"HUP", SIGHUP},	  {"USR1", SIGUSR1}, {"USR2", SIGUSR2}};
	const char *s = cfg_getstr(sec, "stop-signal");
	const char *name = strncasecmp(s, "SIG", 3) == 0 ? s + 3 : s;

	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
		if (strcasecmp(name, signals[i].name) == 0) {
			*ret = signals[i].signo;
			return true;
		}
	}
	report(ld, value_line(ld, sec, "stop-signal", 0),
	       "%s: stop-signal: \"%s\" is not one of TERM, INT, QUIT, HUP, USR1, USR2", what, s);
	return false;
}

/* Names end up in LISTEN_FDNAMES (':'-separated) and on command lines. */
static bool valid_name(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= NAME_MAX_LEN &&
	       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

static void check_name(struct loader *ld, cfg_t *sec)
{
	if (!valid_name(sec->title))
		report(ld, section_line(ld, sec),
		       "%s \"%s\": name must be 1 to %d characters of A-Z a-z 0-9 _ . -", sec->name,
		       sec->title, NAME_MAX_LEN);
}

static void free_list(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

/* NULL-terminated copy of a string list; always an array, maybe empty. */
static char **get_list(struct loader *ld, cfg_t *sec, const char *opt)
{
	unsigned n = cfg_size(sec, opt);
	char **v = calloc(n + 1, sizeof(char *));

	if (!v) {
		ld->oom = true;
		return NULL;
	}
	for (unsigned i = 0; i < n; i++) {
		v[i] = dup_or_oom(ld, cfg_getnstr(sec, opt, i));
		if (!v[i]) {
			free_list(v);
			return NULL;
		}
	}
	return v;
}

/* ---- Sections ------------------------------------------------------------ */

static void load_control(struct loader *ld, cfg_t *root, struct config *c)
{
	cfg_t *sec = cfg_getsec(root, "control");
	const char *path = cfg_getstr(sec, "socket");
	const char *group = cfg_getstr(sec, "group");
	size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;

	if (path[0] != '/')
		report(ld, value_line(ld, sec, "socket", 0),
		       "control: socket: \"%s\" is not an absolute path", path);
	else if (strlen(path) > max)
		report(ld, value_line(ld, sec, "socket", 0),
		       "control: socket: \"%s\" is too long (at most %zu bytes)", path, max);
	get_mode(ld, sec, "control", "mode", &c->control_mode);
	if (group && (!*group || strchr(group, ':')))
		report(ld, value_line(ld, sec, "group", 0),
		       "control: group: \"%s\" is not a group name", group);
	c->control_socket = dup_or_oom(ld, path);
	c->control_group = dup_or_oom(ld, group);
}

/* "user", "user:group", "user:" or ":group", as chown(1) takes them. */
static bool valid_owner(const char *s)
{
	const char *colon = strchr(s, ':');

	return *s && strcmp(s, ":") != 0 && (!colon || !strchr(colon + 1, ':'));
}

static void load_listener(struct loader *ld, cfg_t *sec, struct config *c, struct listener_cfg *l)
{
	const char *address = cfg_getstr(sec, "address");
	const char *owner = cfg_getstr(sec, "owner");
	const char *tag = cfg_getstr(sec, "tag");
	unsigned long long backlog;
	bool parsed = false, unix_path;
	char what[NAME_MAX_LEN * 2 + 16], err[128];

	snprintf(what, sizeof(what), "listener \"%s\"", sec->title);
	l->name = dup_or_oom(ld, sec->title);
	l->line = section_line(ld, sec);
	check_name(ld, sec);

	if (!address) {
		report(ld, l->line, "%s: address is required", what);
	} else if (listen_addr_parse(address, &l->addr, err, sizeof(err)) < 0) {
		report(ld, value_line(ld, sec, "address", 0), "%s: address \"%s\": %s", what,
		       address, err);
	} else {
		parsed = true;
	}
	l->address = dup_or_oom(ld, address);

	if (get_number(ld, sec, what, "backlog", 1, INT_MAX, &backlog))
		l->backlog = (int)backlog;
	get_bool(ld, sec, what, "reuseport", &l->reuseport);
	get_mode(ld, sec, what, "mode", &l->mode);
	if (owner && !valid_owner(owner))
		report(ld, value_line(ld, sec, "owner", 0),
		       "%s: owner: \"%s\" is not USER, USER:GROUP or :GROUP", what, owner);
	l->owner = dup_or_oom(ld, owner);
	if (tag && (!*tag || strlen(tag) > 64)) /* PROTO_TAG_MAX: it travels in each conn record */
		report(ld, value_line(ld, sec, "tag", 0), "%s: tag: must be 1 to 64 bytes", what);
	l->tag = dup_or_oom(ld, tag);
	if (!parsed)
		return;

	unix_path = l->addr.family == AF_UNIX && !l->addr.abstract;
	if (l->reuseport && l->addr.family == AF_UNIX)
		report(ld, value_line(ld, sec, "reuseport", 0),
		       "%s: reuseport applies only to tcp and udp listeners", what);
	if (cfg_getstr(sec, "mode") && !unix_path)
		report(ld, value_line(ld, sec, "mode", 0),
		       "%s: mode applies only to unix socket paths", what);
	if (owner && !unix_path)
		report(ld, value_line(ld, sec, "owner", 0),
		       "%s: owner applies only to unix socket paths", what);

	for (struct listener_cfg *other = c->listeners; other < l; other++) {
		if (other->addr.family == l->addr.family &&
		    other->addr.socktype == l->addr.socktype &&
		    other->addr.sa_len == l->addr.sa_len &&
		    memcmp(&other->addr.sa, &l->addr.sa, l->addr.sa_len) == 0) {
			report(ld, value_line(ld, sec, "address", 0),
			       "%s: address \"%s\" is also used by listener \"%s\" (line %d)", what,
			       address, other->name, other->line);
			break;
		}
	}
}

static bool reserved_env(const char *entry)
{
	static const char *const names[] = {
	    "LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES=", "NOTIFY_SOCKET=", "BATON_", NULL};

	for (int i = 0; names[i]; i++)
		if (strncmp(entry, names[i], strlen(names[i])) == 0)
			return true;
	return false;
}

static void load_app_listeners(struct loader *ld, cfg_t *sec, const char *what,
			       const struct config *c, struct app_cfg *app)
{
	unsigned n = cfg_size(sec, "listeners");

	if (n == 0)
		report(ld, value_line(ld, sec, "listeners", 0),
		       "%s: listeners: at least one listener is required", what);
	app->listener_idx = calloc(n ? n : 1, sizeof(size_t));
	if (!app->listener_idx) {
		ld->oom = true;
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		const char *name = cfg_getnstr(sec, "listeners", i);
		size_t idx = 0;
		bool listed = false;

		while (idx < c->n_listeners && strcmp(c->listeners[idx].name, name) != 0)
			idx++;
		for (size_t j = 0; j < app->n_listeners; j++)
			listed = listed || app->listener_idx[j] == idx;
		if (idx == c->n_listeners)
			report(ld, value_line(ld, sec, "listeners", i),
			       "%s: unknown listener \"%s\"", what, name);
		else if (listed)
			report(ld, value_line(ld, sec, "listeners", i),
			       "%s: listener \"%s\" is listed twice", what, name);
		else
			app->listener_idx[app->n_listeners++] = idx;
	}
}

static void load_app(struct loader *ld, cfg_t *sec, const struct config *c, struct app_cfg *app)
{
	static const char *const ready_names[] = {"notify", "immediate", NULL};
	static const char *const mode_names[] = {"inherit", "dispatch", NULL};
	static const char *const policy_names[] = {"least-loaded", "round-robin", "sticky", NULL};
	static const char *const kill_mode_names[] = {"mixed", "group", NULL};
	unsigned long long number;
	char what[NAME_MAX_LEN * 2 + 16];
	int choice;

	snprintf(what, sizeof(what), "app \"%s\"", sec->title);
	app->name = dup_or_oom(ld, sec->title);
	app->line = section_line(ld, sec);
	check_name(ld, sec);

	app->argv = get_list(ld, sec, "exec");
	if (app->argv && !app->argv[0])
		report(ld, app->line, "%s: exec is required", what);
	else if (app->argv && app->argv[0][0] != '/')
		report(ld, value_line(ld, sec, "exec", 0),
		       "%s: exec: \"%s\" is not an absolute path", what, app->argv[0]);

	load_app_listeners(ld, sec, what, c, app);

	if (get_number(ld, sec, what, "workers", 1, 1024, &number))
		app->workers = (unsigned)number;
	if (get_choice(ld, sec, what, "ready", ready_names, &choice))
		app->ready = (enum ready_mode)choice;
	get_seconds(ld, sec, what, "ready-timeout", false, &app->ready_timeout_usec);
	get_seconds(ld, sec, what, "drain-timeout", true, &app->drain_timeout_usec);
	get_signal(ld, sec, what, &app->stop_signal);
	if (get_choice(ld, sec, what, "kill-mode", kill_mode_names, &choice))
		app->kill_mode = (enum kill_mode)choice;

	app->environment = get_list(ld, sec, "environment");
	for (size_t i = 0; app->environment && app->environment[i]; i++) {
		const char *entry = app->environment[i];

		if (entry[0] == '=' || !strchr(entry, '='))
			report(ld, value_line(ld, sec, "environment", (unsigned)i),
			       "%s: environment: \"%s\" is not NAME=VALUE", what, entry);
		else if (reserved_env(entry))
			report(ld, value_line(ld, sec, "environment", (unsigned)i),
			       "%s: environment: \"%.*s\" is set by batond", what,
			       (int)strcspn(entry, "="), entry);
	}

	if (get_choice(ld, sec, what, "mode", mode_names, &choice))
		app->mode = (enum serve_mode)choice;
	if (get_choice(ld, sec, what, "policy", policy_names, &choice))
		app->policy = (enum dispatch_policy)choice;
	if (get_number(ld, sec, what, "hold-max", 0, 1000000, &number))
		app->hold_max = (unsigned)number;
	get_seconds(ld, sec, what, "hold-timeout", false, &app->hold_timeout_usec);

	for (size_t i = 0; app->mode == SERVE_DISPATCH && i < app->n_listeners; i++) {
		const struct listener_cfg *l = &c->listeners[app->listener_idx[i]];

		if (l->addr.socktype == SOCK_DGRAM)
			report(ld, value_line(ld, sec, "mode", 0),
			       "%s: listener \"%s\" is udp, and udp is not dispatched "
			       "(use mode = inherit)",
			       what, l->name);
	}
}

/* batond accepts on a dispatch app's listeners itself (non-blocking); a worker
 * of another app accepting on the same socket would race it for connections. */
static void check_dispatch_listeners_unshared(struct loader *ld, cfg_t *root,
					      const struct config *c)
{
	for (size_t a = 0; a < c->n_apps; a++) {
		const struct app_cfg *app = &c->apps[a];
		for (size_t i = 0; app->mode == SERVE_DISPATCH && i < app->n_listeners; i++)
			for (size_t b = 0; b < c->n_apps; b++)
				for (size_t k = 0; b != a && k < c->apps[b].n_listeners; k++)
					if (c->apps[b].listener_idx[k] == app->listener_idx[i])
						report(ld,
						       section_line(ld, cfg_getnsec(root, "app",
										    (unsigned)b)),
						       "app \"%s\": listener \"%s\" belongs to "
						       "dispatch app \"%s\" and cannot be shared",
						       c->apps[b].name,
						       c->listeners[app->listener_idx[i]].name,
						       app->name);
	}
}

static struct config *build_config(struct loader *ld, cfg_t *root)
{
	unsigned n_listeners = cfg_size(root, "listener"), n_apps = cfg_size(root, "app");
	struct config *c = calloc(1, sizeof(*c));

	if (!c) {
		ld->oom = true;
		return NULL;
	}
	c->path = dup_or_oom(ld, ld->path);
	load_control(ld, root, c);

	c->listeners = calloc(n_listeners ? n_listeners : 1, sizeof(*c->listeners));
	c->apps = calloc(n_apps ? n_apps : 1, sizeof(*c->apps));
	if (!c->listeners || !c->apps) {
		ld->oom = true;
		return c;
	}
	/* Counted before loading, so that config_free() frees a half-loaded entry. */
	for (unsigned i = 0; i < n_listeners; i++)
		load_listener(ld, cfg_getnsec(root, "listener", i), c,
			      &c->listeners[c->n_listeners++]);
	for (unsigned i = 0; i < n_apps; i++)
		load_app(ld, cfg_getnsec(root, "app", i), c, &c->apps[c->n_apps++]);
	check_dispatch_listeners_unshared(ld, root, c);
	return c;
}

/* Every scalar is read as a string and converted here: libconfuse's own
 * conversions stop the parse at the first bad number, with their own words. */
static cfg_t *confuse_init(void)
{
	cfg_opt_t control_opts[] = {
	    CFG_STR("socket", DEFAULT_CONTROL_SOCKET, CFGF_NONE),
	    CFG_STR("mode", "0600", CFGF_NONE),
	    CFG_STR("group", NULL, CFGF_NONE),
	    CFG_END(),
	};
	cfg_opt_t listener_opts[] = {
	    CFG_STR("address", NULL, CFGF_NONE),
	    CFG_STR("backlog", "4096", CFGF_NONE),
	    CFG_STR("reuseport", "false", CFGF_NONE),
	    CFG_STR("mode", NULL, CFGF_NONE),
	    CFG_STR("owner", NULL, CFGF_NONE),
	    CFG_STR("tag", NULL, CFGF_NONE),
	    CFG_END(),
	};
	cfg_opt_t app_opts[] = {
	    CFG_STR_LIST("exec", NULL, CFGF_NONE),
	    CFG_STR_LIST("listeners", NULL, CFGF_NONE),
	    CFG_STR("workers", "1", CFGF_NONE),
	    CFG_STR("ready", "notify", CFGF_NONE),
	    CFG_STR("ready-timeout", "30", CFGF_NONE),
	    CFG_STR("drain-timeout", "60", CFGF_NONE),
	    CFG_STR("stop-signal", "TERM", CFGF_NONE),
	    CFG_STR("kill-mode", "mixed", CFGF_NONE),
	    CFG_STR_LIST("environment", NULL, CFGF_NONE),
	    CFG_STR("mode", "inherit", CFGF_NONE),
	    CFG_STR("policy", "least-loaded", CFGF_NONE),
	    CFG_STR("hold-max", "1024", CFGF_NONE),
	    CFG_STR("hold-timeout", "10", CFGF_NONE),
	    CFG_END(),
	};
	cfg_opt_t opts[] = {
	    CFG_SEC("control", control_opts, CFGF_NONE),
	    CFG_SEC("listener", listener_opts, CFGF_MULTI | CFGF_TITLE),
	    CFG_SEC("app", app_opts, CFGF_MULTI | CFGF_TITLE),
	    CFG_END(),
	};
	const struct {
		const char *section;
		const cfg_opt_t *opts;
	} sections[] = {{"control", control_opts}, {"listener", listener_opts}, {"app", app_opts}};
	cfg_t *root = cfg_init(opts, CFGF_NONE);
	char name[64];

	if (!root)
		return NULL;
	cfg_set_error_function(root, on_confuse_error);
	for (size_t s = 0; s < sizeof(sections) / sizeof(sections[0]); s++) {
		for (const cfg_opt_t *o = sections[s].opts; o->name; o++) {
			snprintf(name, sizeof(name), "%s|%s", sections[s].section, o->name);
			cfg_set_validate_func(root, name, remember_line);
		}
	}
	return root;
}

int config_load(const char *path, FILE *errors, struct config **ret)
{
	struct loader ld = {.path = path};
	struct config *c = NULL;
	cfg_t *root = NULL;
	char *text = NULL;
	int r;

	r = config_text_read(path, &text);
	if (r < 0) {
		if (errors)
			fprintf(errors, "%s: %s\n", path,
				r == -EBADMSG ? "contains a NUL byte"
				: r == -EFBIG ? "is larger than 4 MiB"
					      : strerror(-r));
		return r == -EBADMSG ? -EINVAL : r;
	}

	if (config_text_prepare(text, &ld.sections, report_text_problem, &ld) < 0)
		ld.oom = true;
	root = confuse_init();
	if (!root) {
		ld.oom = true;
	} else {
		active_loader = &ld;
		if (cfg_parse_buf(root, text) == CFG_SUCCESS)
			c = build_config(&ld, root);
		else if (ld.n_errors == 0)
			report(&ld, 0, "cannot be parsed");
		active_loader = NULL;
	}

	if (ld.n_errors > 0 || ld.oom) {
		flush_errors(&ld, errors);
		config_free(c);
		r = ld.n_errors > 0 ? -EINVAL : -ENOMEM;
	} else {
		*ret = c;
		r = 0;
	}

	if (root)
		cfg_free(root);
	free(text);
	config_text_sections_free(&ld.sections);
	free(ld.lines);
	for (size_t i = 0; i < ld.n_errors; i++)
		free(ld.errors[i].text);
	free(ld.errors);
	return r;
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
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
	}
	free(cfg->listeners);
	free(cfg->apps);
	free(cfg->control_socket);
	free(cfg->control_group);
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
