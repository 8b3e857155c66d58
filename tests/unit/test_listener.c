/* SPDX-License-Identifier: MIT */
/* listener.c: address parsing, binding (tcp, udp, unix path, abstract), the
 * stale/live socket file rule, and the checks on inherited sockets. Every test
 * counts /proc/self/fd before and after. Socket files live in a mkdtemp dir. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "listener.h"
#include "leakcheck.h"

static char tmp_dir[64];

static int group_setup(void **state)
{
	strcpy(tmp_dir, "/tmp/baton-test-listener-XXXXXX");
	return mkdtemp(tmp_dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
	return rmdir(tmp_dir);
}

static const char *tmp_path(const char *name)
{
	static char path[128];

	snprintf(path, sizeof(path), "%s/%s", tmp_dir, name);
	return path;
}

/* A listener_cfg as config.c would build it from @address. */
static struct listener_cfg cfg_for(const char *address)
{
	struct listener_cfg cfg = {.name = "t", .backlog = 16};
	char err[128] = "";

	assert_int_equal(listen_addr_parse(address, &cfg.addr, err, sizeof(err)), 0);
	return cfg;
}

static struct listener_cfg cfg_for_unix(const char *name)
{
	char address[160];

	snprintf(address, sizeof(address), "unix:%s", tmp_path(name));
	return cfg_for(address);
}

/* Port 0 is refused in a config; tests ask the kernel for a free port. */
static struct listener_cfg cfg_for_any_port(const char *address)
{
	struct listener_cfg cfg = cfg_for(address);

	((struct sockaddr_in *)&cfg.addr.sa)->sin_port = 0; /* same offset in sockaddr_in6 */
	return cfg;
}

static uint16_t bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void set_port(struct listener_cfg *cfg, uint16_t port)
{
	((struct sockaddr_in *)&cfg->addr.sa)->sin_port = htons(port);
}

static void assert_parse_error(const char *address, const char *reason)
{
	struct listen_addr addr = {.family = -1};
	char err[128] = "";

	assert_int_equal(listen_addr_parse(address, &addr, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, reason);
	assert_int_equal(addr.family, -1); /* untouched */
}

static bool ipv6_works(void)
{
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* bind() as someone who can write to the socket's directory sees it: the real
 * bind, then, while a test sets swap_target, the new socket file swapped for a
 * symbolic link to swap_target in the window between bind() and what batond
 * does next. Interposed by name: this definition is found before libc's. */
static const char *swap_target;

int bind(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len)
{
	const struct sockaddr_un *sun = (const struct sockaddr_un *)addr.__sockaddr__;
	int r = (int)syscall(SYS_bind, fd, addr.__sockaddr__, len);

	if (r == 0 && swap_target && sun->sun_family == AF_UNIX && sun->sun_path[0]) {
		assert_int_equal(unlink(sun->sun_path), 0);
		assert_int_equal(symlink(swap_target, sun->sun_path), 0);
	}
	return r;
}

/* ---- listen_addr_parse --------------------------------------------------- */

static void ipv4_forms_parse_to_numeric_addresses(void **state)
{
	static const struct {
		const char *text;
		const char *host;
		int socktype;
	} cases[] = {
	    {"tcp://127.0.0.1:8080", "127.0.0.1", SOCK_STREAM},
	    {"tcp://localhost:8080", "127.0.0.1", SOCK_STREAM},
	    {"tcp://*:8080", "0.0.0.0", SOCK_STREAM},
	    {"udp://10.1.2.3:8080", "10.1.2.3", SOCK_DGRAM},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct listen_addr a;
		struct sockaddr_in *sin = (struct sockaddr_in *)&a.sa;
		char err[128], host[INET_ADDRSTRLEN];

		assert_int_equal(listen_addr_parse(cases[i].text, &a, err, sizeof(err)), 0);
		assert_int_equal(a.family, AF_INET);
		assert_int_equal(a.socktype, cases[i].socktype);
		assert_int_equal(a.sa_len, sizeof(struct sockaddr_in));
		assert_int_equal(sin->sin_family, AF_INET);
		assert_int_equal(ntohs(sin->sin_port), 8080);
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		assert_string_equal(host, cases[i].host);
	}
}

static void ipv6_forms_parse_to_numeric_addresses(void **state)
{
	static const struct {
		const char *text;
		const char *host;
		int socktype;
	} cases[] = {
	    {"tcp://[::1]:443", "::1", SOCK_STREAM},
	    {"tcp://[2001:db8::7]:443", "2001:db8::7", SOCK_STREAM},
	    {"tcp6://*:443", "::", SOCK_STREAM},
	    {"tcp6://localhost:443", "::1", SOCK_STREAM},
	    {"tcp6://[::]:443", "::", SOCK_STREAM},
	    {"udp6://[::1]:443", "::1", SOCK_DGRAM},
	    {"udp://[::1]:443", "::1", SOCK_DGRAM},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct listen_addr a;
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.sa;
		char err[128], host[INET6_ADDRSTRLEN];

		assert_int_equal(listen_addr_parse(cases[i].text, &a, err, sizeof(err)), 0);
		assert_int_equal(a.family, AF_INET6);
		assert_int_equal(a.socktype, cases[i].socktype);
		assert_int_equal(a.sa_len, sizeof(struct sockaddr_in6));
		assert_int_equal(ntohs(sin6->sin6_port), 443);
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		assert_string_equal(host, cases[i].host);
	}
}

static void unix_paths_and_abstract_names_parse(void **state)
{
	struct listen_addr a;
	struct sockaddr_un *sun = (struct sockaddr_un *)&a.sa;
	char err[128];

	assert_int_equal(listen_addr_parse("unix:/run/app.sock", &a, err, sizeof(err)), 0);
	assert_int_equal(a.family, AF_UNIX);
	assert_int_equal(a.socktype, SOCK_STREAM);
	assert_false(a.abstract);
	assert_string_equal(a.path, "/run/app.sock");
	assert_string_equal(sun->sun_path, "/run/app.sock");
	assert_int_equal(a.sa_len, offsetof(struct sockaddr_un, sun_path) + 14);

	assert_int_equal(listen_addr_parse("unix:@app", &a, err, sizeof(err)), 0);
	assert_true(a.abstract);
	assert_string_equal(a.path, "app");
	assert_int_equal(sun->sun_path[0], '\0');
	assert_memory_equal(sun->sun_path + 1, "app", 3);
	assert_int_equal(a.sa_len, offsetof(struct sockaddr_un, sun_path) + 4);
}

static void bad_addresses_are_refused_with_a_reason(void **state)
{
	char long_path[200] = "unix:/";

	memset(long_path + 6, 'x', 120);
	assert_parse_error("tcp://1.2.3.4:99999", "port out of range");
	assert_parse_error("tcp://1.2.3.4:0", "port out of range");
	assert_parse_error("tcp://1.2.3.4:", "missing port");
	assert_parse_error("tcp://1.2.3.4", "missing port");
	assert_parse_error("tcp://1.2.3.4:http", "port \"http\" is not a number");
	assert_parse_error("tcp://:80", "missing host");
	assert_parse_error(
	    "tcp://example.com:80",
	    "\"example.com\" is not a numeric IPv4 address (names are not resolved)");
	assert_parse_error("tcp://::1:80", "IPv6 address must be in brackets, as [::1]:PORT");
	assert_parse_error("tcp://[::1:80", "missing ']' after IPv6 address");
	assert_parse_error("tcp://[::1]", "missing port");
	assert_parse_error("tcp://[1.2.3.4]:80", "\"1.2.3.4\" is not a numeric IPv6 address");
	assert_parse_error("tcp6://127.0.0.1:80", "\"127.0.0.1\" is not a numeric IPv6 address");
	assert_parse_error("tcp://[fe80::1%eth0]:80", "IPv6 zone ids are not supported");
	assert_parse_error("sctp://1.2.3.4:80",
			   "unknown scheme (expected tcp://, tcp6://, udp://, udp6:// or unix:)");
	assert_parse_error("unix:", "missing socket path");
	assert_parse_error("unix:@", "missing socket path");
	assert_parse_error("unix:relative.sock", "unix socket path must be absolute");
	assert_parse_error(long_path, "unix socket path is too long (at most 107 bytes)");
}

/* ---- listener_open ------------------------------------------------------- */

static void a_tcp_listener_on_loopback_port_0_opens_nonblocking_and_cloexec(void **state)
{
	struct listener_cfg cfg = cfg_for_any_port("tcp://127.0.0.1:1");
	int fd = -1, accepting = 0, reuse = 0;
	socklen_t len = sizeof(int);
	char err[128] = "";

	assert_int_equal(listener_open(&cfg, &fd, err, sizeof(err)), 0);
	assert_true(fd >= 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len), 0);
	assert_int_equal(accepting, 1);
	assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, &len), 0);
	assert_int_equal(reuse, 1);
	assert_true(bound_port(fd) > 0);
	close(fd);
}

static void a_port_in_use_is_refused(void **state)
{
	struct listener_cfg cfg = cfg_for_any_port("tcp://127.0.0.1:1");
	int first = -1, second = 1234;
	char err[128] = "";

	assert_int_equal(listener_open(&cfg, &first, err, sizeof(err)), 0);
	set_port(&cfg, bound_port(first));
	assert_int_equal(listener_open(&cfg, &second, err, sizeof(err)), -EADDRINUSE);
	assert_string_equal(err, "Address already in use");
	assert_int_equal(second, 1234); /* untouched */
	close(first);
}

static void reuseport_lets_two_listeners_share_a_port(void **state)
{
	struct listener_cfg cfg = cfg_for_any_port("tcp://127.0.0.1:1");
	int first = -1, second = -1;
	char err[128] = "";

	cfg.reuseport = true;
	assert_int_equal(listener_open(&cfg, &first, err, sizeof(err)), 0);
	set_port(&cfg, bound_port(first));
	assert_int_equal(listener_open(&cfg, &second, err, sizeof(err)), 0);
	close(first);
	close(second);
}

static void an_ipv6_listener_is_v6_only(void **state)
{
	struct listener_cfg cfg;
	int fd = -1, v6only = 0;
	socklen_t len = sizeof(v6only);
	char err[128] = "";

	if (!ipv6_works())
		skip();
	cfg = cfg_for_any_port("tcp://[::1]:1");
	assert_int_equal(listener_open(&cfg, &fd, err, sizeof(err)), 0);
	assert_int_equal(getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len), 0);
	assert_int_equal(v6only, 1);
	close(fd);
}

static void a_udp_listener_is_bound_without_listen(void **state)
{
	struct listener_cfg cfg = cfg_for_any_port("udp://127.0.0.1:1");
	int fd = -1, type = 0;
	socklen_t len = sizeof(type);
	char err[128] = "";

	assert_int_equal(listener_open(&cfg, &fd, err, sizeof(err)), 0);
	assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len), 0);
	assert_int_equal(type, SOCK_DGRAM);
	assert_true(bound_port(fd) > 0);
	close(fd);
}

static int bind_unix(const char *path, int socktype, bool do_listen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, socktype | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	strcpy(sun.sun_path, path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	if (do_listen)
		assert_int_equal(listen(fd, 4), 0);
	return fd;
}

static void a_unix_listener_gets_its_mode_and_owner(void **state)
{
	struct listener_cfg cfg = cfg_for_unix("mode.sock");
	char owner[64], err[128] = "";
	struct stat st;
	int fd = -1;

	snprintf(owner, sizeof(owner), "%u:%u", (unsigned)getuid(), (unsigned)getgid());
	cfg.mode = 0640;
	cfg.owner = owner;
	assert_int_equal(listener_open(&cfg, &fd, err, sizeof(err)), 0);
	assert_int_equal(stat(cfg.addr.path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(st.st_uid, getuid());
	close(fd);
	unlink(cfg.addr.path);
}

static void an_unknown_owner_is_refused_and_leaves_no_socket_file(void **state)
{
	struct listener_cfg cfg = cfg_for_unix("owner.sock");
	char err[128] = "";
	int fd = -1;

	cfg.owner = "no-such-user-baton";
	assert_int_equal(listener_open(&cfg, &fd, err, sizeof(err)), -ENOENT);
	assert_string_equal(err,
			    "owner \"no-such-user-baton\": unknown user \"no-such-user-baton\"");
	assert_int_equal(access(cfg.addr.path, F_OK), -1);
}

static void a_stale_unix_socket_file_is_replaced(void **state)
{
	struct listener_cfg cfg = cfg_for_unix("stale.sock");
	char err[128] = "";
	int fd = -1;

	close(bind_unix(cfg.addr.path, SOCK_STREAM, true)); /* the file outlives its socket */
	assert_int_equal(listener_open(&cfg, &fd, err, sizeof(err)), 0);
	close(fd);
	unlink(cfg.addr.path);
}

static void a_live_unix_socket_file_is_refused(void **state)
{
	struct listener_cfg cfg = cfg_for_unix("live.sock");
	int live = bind_unix(cfg.addr.path, SOCK_STREAM, true);
	char err[128] = "";
	int fd = -1;

	assert_int_equal(listener_open(&cfg, &fd, err, sizeof(err)), -EADDRINUSE);
	assert_string_equal(err, "socket file is in use by a live process");
	assert_int_equal(access(cfg.addr.path, F_OK), 0); /* still theirs */
	close(live);
	unlink(cfg.addr.path);
}

static void a_file_that_is_not_a_socket_is_refused(void **state)
{
	struct listener_cfg cfg = cfg_for_unix("regular");
	char err[256] = "", expected[256];
	int fd = open(cfg.addr.path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);

	close(fd);
	fd = -1;
	assert_int_equal(listener_open(&cfg, &fd, err, sizeof(err)), -ENOTSOCK);
	snprintf(expected, sizeof(expected), "%s exists and is not a socket", cfg.addr.path);
	assert_string_equal(err, expected);
	assert_int_equal(access(cfg.addr.path, F_OK), 0);
	unlink(cfg.addr.path);
}

static void an_abstract_unix_listener_accepts_connections(void **state)
{
	struct listener_cfg cfg;
	char address[64], err[128] = "";
	int fd = -1, client;

	snprintf(address, sizeof(address), "unix:@baton-test-%d", (int)getpid());
	cfg = cfg_for(address);
	assert_int_equal(listener_open(&cfg, &fd, err, sizeof(err)), 0);
	client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(client, (struct sockaddr *)&cfg.addr.sa, cfg.addr.sa_len), 0);
	close(client);
	close(fd);
}

static void a_unix_listener_is_born_with_its_mode_whatever_the_umask(void **state)
{
	struct listener_cfg cfg = cfg_for_unix("born.sock");
	char err[128] = "";
	struct stat st;
	int fd = -1;
	mode_t old = umask(077);

	cfg.mode = 0666;
	assert_int_equal(listener_open(&cfg, &fd, err, sizeof(err)), 0);
	umask(old);
	assert_int_equal(lstat(cfg.addr.path, &st), 0);
	assert_int_equal(st.st_mode, S_IFSOCK | 0666);
	close(fd);
	unlink(cfg.addr.path);
}

static void make_file(const char *path, mode_t mode)
{
	int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, mode);

	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(chmod(path, mode), 0);
}

/* The race of issue 12: the socket file swapped for a symlink between bind()
 * and chmod() made the link's target 0666 (and, for the control socket, gave it
 * the control group). Nothing may pass through the link. */
static void a_socket_file_swapped_for_a_symlink_after_bind_changes_nothing_through_it(void **state)
{
	struct listener_cfg cfg = cfg_for_unix("swapped.sock");
	char victim[128], owner[64], err[256] = "", want[256];
	struct stat before, after;
	int fd = -1, r;

	snprintf(victim, sizeof(victim), "%s", tmp_path("victim"));
	make_file(victim, 0600);
	assert_int_equal(stat(victim, &before), 0);
	snprintf(owner, sizeof(owner), ":%u", geteuid() == 0 ? 65534u : (unsigned)getgid());
	cfg.mode = 0666;
	cfg.owner = owner;
	swap_target = victim;
	r = listener_open(&cfg, &fd, err, sizeof(err));
	swap_target = NULL;
	assert_int_equal(stat(victim, &after), 0);
	assert_int_equal(after.st_mode & 07777, 0600);
	assert_int_equal(after.st_uid, before.st_uid);
	assert_int_equal(after.st_gid, before.st_gid);
	assert_int_equal(r, -EBUSY);
	snprintf(want, sizeof(want), "%s was replaced after bind", cfg.addr.path);
	assert_string_equal(err, want);
	assert_int_equal(fd, -1);
	assert_int_equal(unlink(cfg.addr.path), 0); /* the link, left alone */
	unlink(victim);
}

static void a_symlink_at_the_socket_path_is_refused_and_not_followed(void **state)
{
	struct listener_cfg cfg = cfg_for_unix("link.sock");
	char victim[128], err[256] = "", want[256];
	struct stat st;
	int fd = -1;

	snprintf(victim, sizeof(victim), "%s", tmp_path("victim"));
	make_file(victim, 0600);
	assert_int_equal(symlink(victim, cfg.addr.path), 0);
	cfg.mode = 0666;
	assert_int_equal(listener_open(&cfg, &fd, err, sizeof(err)), -ENOTSOCK);
	snprintf(want, sizeof(want), "%s is a symbolic link, not a socket", cfg.addr.path);
	assert_string_equal(err, want);
	assert_int_equal(stat(victim, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(lstat(cfg.addr.path, &st), 0);
	assert_true(S_ISLNK(st.st_mode)); /* still theirs */
	unlink(cfg.addr.path);
	unlink(victim);
}

static void a_symlink_among_the_directories_is_refused(void **state)
{
	char real[128], link[128], address[300], err[256] = "", want[300];
	struct listener_cfg cfg;
	int fd = -1;

	snprintf(real, sizeof(real), "%s", tmp_path("real"));
	snprintf(link, sizeof(link), "%s", tmp_path("link"));
	assert_int_equal(mkdir(real, 0700), 0);
	assert_int_equal(symlink(real, link), 0);
	snprintf(address, sizeof(address), "unix:%s/x.sock", link);
	cfg = cfg_for(address);
	assert_int_equal(listener_open(&cfg, &fd, err, sizeof(err)), -ELOOP);
	snprintf(want, sizeof(want), "%s is a symbolic link: batond follows none in a socket path",
		 link);
	assert_string_equal(err, want);
	snprintf(address, sizeof(address), "%s/x.sock", real);
	assert_int_equal(access(address, F_OK), -1);
	unlink(link);
	rmdir(real);
}

static void open_dir_listener(const char *dir, mode_t mode, int expect, const char *reason)
{
	char address[300], err[256] = "";
	struct listener_cfg cfg;
	int fd = -1, r;

	assert_int_equal(chmod(dir, mode), 0);
	snprintf(address, sizeof(address), "unix:%s/x.sock", dir);
	cfg = cfg_for(address);
	r = listener_open(&cfg, &fd, err, sizeof(err));
	if (r != expect)
		fail_msg("mode %04o: %d (%s), expected %d", (unsigned)mode, r, err, expect);
	if (reason)
		assert_string_equal(err, reason);
	if (r == 0) {
		close(fd);
		unlink(cfg.addr.path);
	}
	assert_int_equal(access(cfg.addr.path, F_OK), -1);
}

static void a_directory_others_can_write_is_refused_unless_sticky_and_roots(void **state)
{
	char dir[128], want[300];

	snprintf(dir, sizeof(dir), "%s", tmp_path("shared"));
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(want, sizeof(want),
		 "directory %s is writable by others (mode 0777) and not sticky and owned by "
		 "root",
		 dir);
	open_dir_listener(dir, 0777, -EPERM, want);
	snprintf(want, sizeof(want),
		 "directory %s is writable by others (mode 0770) and not sticky and owned by "
		 "root",
		 dir);
	open_dir_listener(dir, 0770, -EPERM, want);
	open_dir_listener(dir, 0755, 0, NULL);
	/* /tmp's way: others may add files but not replace batond's. Only root's. */
	if (geteuid() == 0) {
		open_dir_listener(dir, 01777, 0, NULL);
	} else {
		snprintf(want, sizeof(want),
			 "directory %s is writable by others (mode 1777) and not sticky and "
			 "owned by root",
			 dir);
		open_dir_listener(dir, 01777, -EPERM, want);
	}
	/* Every directory on the way counts, not only the last. */
	char inner[160];
	snprintf(inner, sizeof(inner), "%s/inner", dir);
	assert_int_equal(chmod(dir, 0700), 0);
	assert_int_equal(mkdir(inner, 0700), 0);
	assert_int_equal(chmod(dir, 0777), 0);
	snprintf(want, sizeof(want),
		 "directory %s is writable by others (mode 0777) and not sticky and owned by "
		 "root",
		 dir);
	open_dir_listener(inner, 0700, -EPERM, want);
	rmdir(inner);
	rmdir(dir);
}

static void a_directory_of_another_user_is_refused(void **state)
{
	char dir[128], want[300];

	if (geteuid() != 0)
		skip(); /* only root can give a directory away */
	snprintf(dir, sizeof(dir), "%s", tmp_path("theirs"));
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(chown(dir, 65534, 65534), 0);
	snprintf(want, sizeof(want), "directory %s belongs to uid 65534, not to root", dir);
	open_dir_listener(dir, 0755, -EPERM, want);
	rmdir(dir);
}

/* ---- unix_path_claim ----------------------------------------------------- */

static void claiming_a_missing_path_succeeds(void **state)
{
	assert_int_equal(unix_path_claim(tmp_path("nothing-here")), 0);
}

static void claiming_probes_datagram_and_seqpacket_sockets_too(void **state)
{
	const char *path = tmp_path("dgram.sock");
	int live = bind_unix(path, SOCK_DGRAM, false);

	assert_int_equal(unix_path_claim(path), -EADDRINUSE);
	close(live);
	assert_int_equal(unix_path_claim(path), 0); /* stale now: unlinked */
	assert_int_equal(access(path, F_OK), -1);

	path = tmp_path("seqpacket.sock");
	live = bind_unix(path, SOCK_SEQPACKET, true);
	assert_int_equal(unix_path_claim(path), -EADDRINUSE);
	close(live);
	assert_int_equal(unix_path_claim(path), 0);
}

/* ---- listener_check_inherited -------------------------------------------- */

static void an_inherited_socket_matching_the_config_is_accepted(void **state)
{
	struct listener_cfg cfg = cfg_for_any_port("tcp://127.0.0.1:1");
	char err[128] = "";
	int fd = -1;

	assert_int_equal(listener_open(&cfg, &fd, err, sizeof(err)), 0);
	set_port(&cfg, bound_port(fd));
	assert_int_equal(listener_check_inherited(fd, &cfg.addr, err, sizeof(err)), 0);
	close(fd);

	cfg = cfg_for_unix("inherited.sock");
	assert_int_equal(listener_open(&cfg, &fd, err, sizeof(err)), 0);
	assert_int_equal(listener_check_inherited(fd, &cfg.addr, err, sizeof(err)), 0);
	close(fd);
	unlink(cfg.addr.path);
}

static void an_inherited_socket_on_another_address_is_refused(void **state)
{
	struct listener_cfg cfg = cfg_for_any_port("tcp://127.0.0.1:1");
	struct listen_addr other;
	char err[128] = "", expected[128];
	int fd = -1;
	uint16_t port;

	assert_int_equal(listener_open(&cfg, &fd, err, sizeof(err)), 0);
	port = bound_port(fd);
	other = cfg_for("tcp://127.0.0.2:1").addr;
	((struct sockaddr_in *)&other.sa)->sin_port = htons(port);
	assert_int_equal(listener_check_inherited(fd, &other, err, sizeof(err)), -EINVAL);
	snprintf(expected, sizeof(expected),
		 "socket is bound to 127.0.0.1:%u, expected 127.0.0.2:%u", port, port);
	assert_string_equal(err, expected);

	other = cfg_for("unix:/run/x.sock").addr;
	assert_int_equal(listener_check_inherited(fd, &other, err, sizeof(err)), -EINVAL);
	snprintf(expected, sizeof(expected), "socket is IPv4 (127.0.0.1:%u), expected unix", port);
	assert_string_equal(err, expected);
	close(fd);
}

static void an_inherited_socket_of_the_wrong_type_is_refused(void **state)
{
	struct listener_cfg cfg = cfg_for_any_port("udp://127.0.0.1:1");
	struct listen_addr tcp;
	char err[128] = "";
	int fd = -1, pipe_fds[2];

	assert_int_equal(listener_open(&cfg, &fd, err, sizeof(err)), 0);
	tcp = cfg_for("tcp://127.0.0.1:1").addr;
	set_port(&cfg, bound_port(fd));
	((struct sockaddr_in *)&tcp.sa)->sin_port = htons(bound_port(fd));
	assert_int_equal(listener_check_inherited(fd, &tcp, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "socket is datagram, expected stream");
	assert_int_equal(listener_check_inherited(fd, &cfg.addr, err, sizeof(err)), 0);
	close(fd);

	assert_int_equal(pipe2(pipe_fds, O_CLOEXEC), 0);
	assert_int_equal(listener_check_inherited(pipe_fds[0], &tcp, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "not a socket");
	close(pipe_fds[0]);
	close(pipe_fds[1]);
}

static void an_inherited_stream_socket_that_is_not_listening_is_refused(void **state)
{
	struct listener_cfg cfg = cfg_for_unix("bound-only.sock");
	int fd = bind_unix(cfg.addr.path, SOCK_STREAM, false);
	char err[128] = "";

	assert_int_equal(listener_check_inherited(fd, &cfg.addr, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "socket is not listening");
	close(fd);
	unlink(cfg.addr.path);
}

/* systemd's ListenStream=PORT is a dual-stack [::]:PORT: it serves *:PORT. */
static void a_dual_stack_socket_is_accepted_for_an_ipv4_wildcard(void **state)
{
	struct listener_cfg cfg;
	struct sockaddr_in6 any = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
	int fd, off = 0;
	char err[128] = "";

	if (!ipv6_works())
		skip();
	fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)), 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&any, sizeof(any)), 0);
	assert_int_equal(listen(fd, 4), 0);
	cfg = cfg_for("tcp://*:1");
	set_port(&cfg, bound_port(fd));
	assert_int_equal(listener_check_inherited(fd, &cfg.addr, err, sizeof(err)), 0);
	cfg = cfg_for("tcp://127.0.0.1:1");
	set_port(&cfg, bound_port(fd));
	assert_int_equal(listener_check_inherited(fd, &cfg.addr, err, sizeof(err)), -EINVAL);
	close(fd);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, leakcheck_setup, leakcheck_teardown)
	const struct CMUnitTest tests[] = {
	    T(ipv4_forms_parse_to_numeric_addresses),
	    T(ipv6_forms_parse_to_numeric_addresses),
	    T(unix_paths_and_abstract_names_parse),
	    T(bad_addresses_are_refused_with_a_reason),
	    T(a_tcp_listener_on_loopback_port_0_opens_nonblocking_and_cloexec),
	    T(a_port_in_use_is_refused),
	    T(reuseport_lets_two_listeners_share_a_port),
	    T(an_ipv6_listener_is_v6_only),
	    T(a_udp_listener_is_bound_without_listen),
	    T(a_unix_listener_gets_its_mode_and_owner),
	    T(an_unknown_owner_is_refused_and_leaves_no_socket_file),
	    T(a_stale_unix_socket_file_is_replaced),
	    T(a_live_unix_socket_file_is_refused),
	    T(a_file_that_is_not_a_socket_is_refused),
	    T(an_abstract_unix_listener_accepts_connections),
	    T(a_unix_listener_is_born_with_its_mode_whatever_the_umask),
	    T(a_socket_file_swapped_for_a_symlink_after_bind_changes_nothing_through_it),
	    T(a_symlink_at_the_socket_path_is_refused_and_not_followed),
	    T(a_symlink_among_the_directories_is_refused),
	    T(a_directory_others_can_write_is_refused_unless_sticky_and_roots),
	    T(a_directory_of_another_user_is_refused),
	    T(claiming_a_missing_path_succeeds),
	    T(claiming_probes_datagram_and_seqpacket_sockets_too),
	    T(an_inherited_socket_matching_the_config_is_accepted),
	    T(an_inherited_socket_on_another_address_is_refused),
	    T(an_inherited_socket_of_the_wrong_type_is_refused),
	    T(an_inherited_stream_socket_that_is_not_listening_is_refused),
	    T(a_dual_stack_socket_is_accepted_for_an_ipv4_wildcard),
	};
#undef T
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
