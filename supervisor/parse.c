/* SPDX-License-Identifier: MIT */
/* Value parsers shared by the modules that read text: numbers, durations,
 * file modes, booleans, choices, signals, users and groups. Owns no state and
 * never prints; the caller words the message. */
#include "parse.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <strings.h>

#define USEC_PER_SEC 1000000ULL

/* Digits only, into *ret; -ERANGE past ULLONG_MAX. */
static int parse_digits(const char *s, size_t n, unsigned long long *ret)
{
	unsigned long long v = 0;

	if (n == 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned digit = (unsigned)(s[i] - '0');

		if (digit > 9)
			return -EINVAL;
		if (v > (~0ULL - digit) / 10)
			return -ERANGE;
		v = v * 10 + digit;
	}
	*ret = v;
	return 0;
}

int parse_unsigned(const char *s, unsigned long long min, unsigned long long max,
		   unsigned long long *ret)
{
	unsigned long long v;
	int r = parse_digits(s, strlen(s), &v);

	if (r < 0)
		return r;
	if (v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

int parse_bytes(const char *s, unsigned long long min, unsigned long long max,
		unsigned long long *ret)
{
	static const char suffixes[] = "KMGT";
	size_t n = strspn(s, "0123456789");
	unsigned shift = 0;
	unsigned long long v;
	int r;

	if (s[n]) {
		const char *suffix = strchr(suffixes, s[n]);

		if (!suffix || s[n + 1])
			return -EINVAL;
		shift = 10 * (unsigned)(suffix - suffixes + 1);
	}
	r = parse_digits(s, n, &v);
	if (r < 0)
		return r;
	if (v > (~0ULL >> shift))
		return -ERANGE;
	v <<= shift;
	if (v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

int parse_seconds_usec(const char *s, uint64_t min_usec, uint64_t max_usec, uint64_t *ret_usec)
{
	size_t whole_len = strspn(s, "0123456789"), frac_len = 0;
	unsigned long long whole, frac = 0;
	int r;

	if (s[whole_len] == '.') {
		frac_len = strspn(s + whole_len + 1, "0123456789");
		if (frac_len == 0 || s[whole_len + 1 + frac_len])
			return -EINVAL;
	} else if (s[whole_len]) {
		return -EINVAL;
	}
	r = parse_digits(s, whole_len, &whole);
	if (r < 0)
		return r;
	for (size_t i = 0; i < 6; i++)
		frac = frac * 10 + (i < frac_len ? (unsigned)(s[whole_len + 1 + i] - '0') : 0);
	if (whole > (UINT64_MAX - frac) / USEC_PER_SEC)
		return -ERANGE;
	whole = whole * USEC_PER_SEC + frac;
	if (whole < min_usec || whole > max_usec)
		return -ERANGE;
	*ret_usec = whole;
	return 0;
}

int parse_file_mode(const char *s, mode_t *ret)
{
	size_t n = strlen(s);
	mode_t v = 0;

	if (n == 0 || n > 5 || s[strspn(s, "01234567")])
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		v = (mode_t)(v * 8 + (mode_t)(s[i] - '0'));
	if (v > 07777)
		return -ERANGE;
	*ret = v;
	return 0;
}

int parse_bool(const char *s, bool *ret)
{
	static const char *const names[] = {"false", "true", "no", "yes", "off", "on", NULL};

	for (int i = 0; names[i]; i++) {
		if (strcasecmp(s, names[i]) == 0) {
			*ret = i % 2;
			return 0;
		}
	}
	return -EINVAL;
}

int parse_choice(const char *s, const char *const *names)
{
	for (int i = 0; names[i]; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -EINVAL;
}

const char *const parse_signal_names = "TERM, INT, QUIT, HUP, USR1, USR2";

int parse_signal(const char *s, int *ret_signo)
{
	static const struct {
		const char *name;
		int signo;
	} signals[] = {{"TERM", SIGTERM}, {"INT", SIGINT},   {"QUIT", SIGQUIT},
		       {"HUP", SIGHUP},	  {"USR1", SIGUSR1}, {"USR2", SIGUSR2}};
	const char *name = strncasecmp(s, "SIG", 3) == 0 ? s + 3 : s;

	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
		if (strcasecmp(name, signals[i].name) == 0) {
			*ret_signo = signals[i].signo;
			return 0;
		}
	}
	return -EINVAL;
}

/* A uid or gid written as a number; (uid_t)-1 means "unchanged" to chown and is
 * not one. What is not a number is taken as a name, as chown(1) does. */
static int parse_id(const char *s, unsigned long long *ret)
{
	return parse_unsigned(s, 0, (uid_t)-1 - 1, ret);
}

/* getpwnam(3) and getgrnam(3) say "not found" with errno 0 or one of these. */
static int lookup_errno(void)
{
	if (errno == 0 || errno == ENOENT || errno == ESRCH || errno == EBADF || errno == EPERM)
		return -ENOENT;
	return -errno;
}

int parse_user(const char *s, uid_t *ret_uid, gid_t *ret_login_gid)
{
	unsigned long long id;
	struct passwd *pw;

	if (!*s)
		return -EINVAL;
	if (parse_id(s, &id) == 0) {
		*ret_uid = (uid_t)id;
		*ret_login_gid = (gid_t)-1;
		return 0;
	}
	errno = 0;
	pw = getpwnam(s);
	if (!pw)
		return lookup_errno();
	*ret_uid = pw->pw_uid;
	*ret_login_gid = pw->pw_gid;
	return 0;
}

int parse_group(const char *s, gid_t *ret_gid)
{
	unsigned long long id;

	if (parse_id(s, &id) == 0) {
		*ret_gid = (gid_t)id;
		return 0;
	}
	return lookup_group(s, ret_gid);
}

int lookup_group(const char *name, gid_t *ret_gid)
{
	struct group *gr;

	if (!*name)
		return -EINVAL;
	errno = 0;
	gr = getgrnam(name);
	if (!gr)
		return lookup_errno();
	*ret_gid = gr->gr_gid;
	return 0;
}

bool env_is_batonds(const char *kv)
{
	static const char *const prefixes[] = {
	    "LISTEN_PID=",   "LISTEN_FDS=",    "LISTEN_FDNAMES=", "NOTIFY_SOCKET=",
	    "WATCHDOG_PID=", "WATCHDOG_USEC=", "BATON_"};
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
		if (strncmp(kv, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	return false;
}
