/* batonctl: asks a running batond over its control socket and prints the
 * answer. Blocking is fine here: this is a one-shot client. */
#include "proto.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum {
	EXIT_OK = 0,
	EXIT_FAILED = 1, /* the operation failed, e.g. upgrade rolled back */
	EXIT_USAGE = 2,
	EXIT_NO_BATOND = 3, /* nothing listening on the control socket */
	EXIT_DENIED = 4,    /* the control socket refused us */
	EXIT_UNKNOWN_APP = 5,
};

static const char *socket_path = "/run/baton/batond.sock";

static void usage(FILE *f)
{
	fprintf(f, "usage: batonctl [-s SOCKET] COMMAND\n"
		   "  status [--json]   apps, generations, workers, listeners\n"
		   "  upgrade APP       start a new generation of APP, wait until it is ready\n"
		   "                    and the old one drained\n"
		   "  upgrade           after a deploy: read the configuration again, apply it,\n"
		   "                    and start a new generation of every app\n"
		   "  reload            read the configuration again and apply what changed:\n"
		   "                    apps whose processes start differently upgrade, the\n"
		   "                    rest applies in place; errors change nothing\n"
		   "  scale APP N       run N workers of APP's serving generation (and of its\n"
		   "                    upgrades), without a new generation, until a reload\n"
		   "  stop              drain every app and stop batond\n"
		   "SOCKET defaults to $BATON_SOCKET or /run/baton/batond.sock.\n"
		   "Exit status: 0 ok, 1 failed (e.g. rolled back), 2 usage, 3 no batond,\n"
		   "4 permission denied, 5 unknown app.\n");
}

static int connect_batond(void)
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
		fprintf(stderr, "batonctl: connect %s: %s\n", socket_path, strerror(e));
		exit(EXIT_FAILED);
	}
	return fd;
}

/* Waits for the next message into @m; returns 0 if batond closed the
 * connection instead. An ERROR ends batonctl with its text. */
static int receive(int fd, struct proto_msg *m)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, -1) < 0 && errno != EINTR) {
			fprintf(stderr, "batonctl: poll: %s\n", strerror(errno));
			exit(EXIT_FAILED);
		}
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

static void receive_or_die(int fd, struct proto_msg *m)
{
	if (receive(fd, m) == 0) {
		fprintf(stderr, "batonctl: batond closed the connection without an answer\n");
		exit(EXIT_FAILED);
	}
}

/* The answer, reassembled from its CTL_REPLY frames: batonctl exits rather
 * than hand on less than all of it. */
static char *receive_reply(int fd, struct proto_msg *m, int32_t *ret_code, size_t *ret_len)
{
	char *text = NULL;
	size_t len = 0;
	int32_t code = 0;
	for (bool first = true;; first = false) {
		if (receive(fd, m) == 0) {
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
		int32_t frame_code;
		const char *frame_text;
		if (m->hdr.type != MSG_CTL_REPLY ||
		    proto_parse_status(m, &frame_code, &frame_text) < 0 ||
		    (!first && frame_code != code)) {
			fprintf(stderr, "batonctl: unexpected answer from batond\n");
			exit(EXIT_FAILED);
		}
		code = frame_code;
		size_t n = m->hdr.payload_bytes - 4;
		if (n > PROTO_REPLY_MAX_BYTES - len) {
			fprintf(stderr, "batonctl: batond's answer is larger than %d bytes\n",
				PROTO_REPLY_MAX_BYTES);
			exit(EXIT_FAILED);
		}
		char *grown = realloc(text, len + n + 1);
		if (!grown) {
			fprintf(stderr, "batonctl: out of memory\n");
			exit(EXIT_FAILED);
		}
		text = grown;
		memcpy(text + len, frame_text, n);
		len += n;
		if (!(m->hdr.flags & CTL_MORE))
			break;
	}
	text[len] = 0;
	*ret_code = code;
	*ret_len = len;
	return text;
}

static void send_or_die(int fd, uint8_t type, uint16_t flags, const char *payload)
{
	int r = proto_send(fd, type, flags, 1, payload, payload ? strlen(payload) : 0, NULL, 0);
	if (r == -EPIPE || r == -ECONNRESET) {
		/* batond hung up on us: it may have said why (permission denied). */
		static struct proto_msg m;
		receive_or_die(fd, &m);
	}
	if (r < 0) {
		fprintf(stderr, "batonctl: send: %s\n", strerror(-r));
		exit(EXIT_FAILED);
	}
}

int main(int argc, char **argv)
{
	const char *env = getenv("BATON_SOCKET");
	if (env && *env)
		socket_path = env;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
			socket_path = argv[++i];
		else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return EXIT_OK;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("batonctl %s\n", BATON_VERSION);
			return EXIT_OK;
		} else {
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[i++];
	uint8_t type;
	uint16_t flags = 0;
	const char *payload = NULL;
	if (strcmp(cmd, "status") == 0 && i == argc) {
		type = MSG_CTL_STATUS;
	} else if (strcmp(cmd, "status") == 0 && i + 1 == argc && !strcmp(argv[i], "--json")) {
		type = MSG_CTL_STATUS;
		flags = CTL_JSON;
	} else if (strcmp(cmd, "upgrade") == 0 && i + 1 >= argc) {
		type = MSG_CTL_UPGRADE;
		payload = i < argc ? argv[i] : "";
	} else if (strcmp(cmd, "reload") == 0 && i == argc) {
		type = MSG_CTL_RELOAD;
	} else if (strcmp(cmd, "scale") == 0 && i + 2 == argc) {
		static char scale[PROTO_NAME_MAX + 16];
		snprintf(scale, sizeof(scale), "%.*s %.10s", PROTO_NAME_MAX, argv[i], argv[i + 1]);
		type = MSG_CTL_SCALE;
		payload = scale;
	} else if (strcmp(cmd, "stop") == 0 && i == argc) {
		type = MSG_CTL_STOP;
	} else {
		usage(stderr);
		return EXIT_USAGE;
	}

	int fd = connect_batond();
	struct proto_msg *m = malloc(sizeof(*m));
	if (!m) {
		fprintf(stderr, "batonctl: out of memory\n");
		return EXIT_FAILED;
	}
	char hello[64];
	snprintf(hello, sizeof(hello), "batonctl %s pid %d", BATON_VERSION, (int)getpid());
	/* The request follows HELLO at once: batond reads its messages in order, so
	 * waiting for its HELLO first would only cost a round trip. */
	send_or_die(fd, MSG_HELLO, 0, hello);
	send_or_die(fd, type, flags | CTL_FRAMES, payload);
	receive_or_die(fd, m);
	if (m->hdr.type != MSG_HELLO) {
		fprintf(stderr, "batonctl: batond did not answer HELLO\n");
		return EXIT_FAILED;
	}
	int32_t code;
	size_t len;
	char *text = receive_reply(fd, m, &code, &len);
	close(fd);
	free(m);
	FILE *out = code ? stderr : stdout;
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
	if (code == ENOENT)
		return EXIT_UNKNOWN_APP;
	if (code == EACCES)
		return EXIT_DENIED;
	return EXIT_FAILED;
}
