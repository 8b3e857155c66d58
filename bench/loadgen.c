/* SPDX-License-Identifier: MIT */
/* loadgen: a closed-loop HTTP/1.1 load generator for `make demo`, the integration tests and
 * the benchmarks. Each of N threads keeps exactly one request in flight until the deadline;
 * outcomes, latencies and completion times are kept per thread and merged at the end.
 * It talks to any HTTP/1.1 server, and with --tls to any HTTPS one (OpenSSL, on the same
 * blocking sockets and timeouts: a handshake is part of the request's time). */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define NSEC_PER_USEC 1000ULL
#define NSEC_PER_MSEC 1000000ULL
#define NSEC_PER_SEC  1000000000ULL

#define HEADER_MAX_BYTES  (64 * 1024)
#define CHUNKED_MAX_BYTES (16 * 1024 * 1024)
#define BODY_HEAD_BYTES	  256 /* what we keep of each body to find the generation */
#define MAX_GENS	  64
#define MAX_BUCKETS	  (16 * 1024 * 1024)
/* The socket timeout is re-armed only when it is this far off the request's remaining time:
 * a request never overruns its deadline by more than this, and the fast path (a response
 * that arrives in one read) costs no extra system call. */
#define TIMEOUT_SLACK_USEC (10 * 1000ULL)

enum outcome {
	OUT_OK,
	OUT_REFUSED,
	OUT_RESET,
	OUT_TIMEOUT,
	OUT_SHORT,
	OUT_OTHER,
	OUT_COUNT,
	/* Internal only: a reused keep-alive connection was closed by the server before any
	 * byte of the response arrived. Never counted as a failure by itself. */
	OUT_IDLE_CLOSED,
};

static const char *const outcome_names[OUT_COUNT] = {"ok",	"refused", "reset",
						     "timeout", "short",   "other"};

struct options {
	const char *host;
	unsigned port;
	unsigned connections;
	uint64_t duration_ms;
	uint64_t timeout_ms;
	uint64_t timeline_ms;
	bool keepalive;
	const char *path;
	const char *json_path;
	bool quiet;
	bool tls;	    /* HTTPS: a TLS handshake on every new connection */
	const char *tls_ca; /* verify the server's certificate with these CAs; NULL: do not */
};

struct run {
	struct options opt;
	struct addrinfo *addr;
	SSL_CTX *tls_ctx; /* --tls only */
	char *request;
	size_t request_len;
	uint64_t start_ns; /* CLOCK_MONOTONIC, absolute */
	/* Brought forward to now by SIGTERM or SIGINT (stop_on_signal): the run ends early,
	 * requests in flight finish and the report is printed as usual. */
	_Atomic uint64_t deadline_ns;
	size_t n_buckets;
};

struct sample {
	uint64_t done_ns; /* relative to run start */
	uint32_t latency_usec;
};

struct gen_count {
	uint64_t gen;
	uint64_t count;
};

struct response {
	int status;
	bool reusable;
	bool has_gen;
	uint64_t gen;
};

struct worker {
	pthread_t thread;
	const struct run *run;
	uint64_t counts[OUT_COUNT];
	uint64_t closed_idle;
	uint64_t bad_status;
	struct sample *samples;
	size_t n_samples;
	size_t cap_samples;
	uint32_t *timeline_ok;
	uint32_t *timeline_failed;
	struct gen_count gens[MAX_GENS];
	size_t n_gens;
	uint64_t gens_untracked;
	char *buf;
	size_t buf_cap;
	char body_head[BODY_HEAD_BYTES];
	size_t body_head_len;
	int fd;			  /* the current connection, or -1 */
	SSL *ssl;		  /* its TLS, with --tls; NULL before the handshake */
	uint64_t fd_timeout_usec; /* what SO_RCVTIMEO/SO_SNDTIMEO are set to on fd */
	const char *error;	  /* set when the thread had to stop early */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

static enum outcome outcome_from_errno(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return OUT_REFUSED;
	case ECONNRESET:
	case EPIPE:
		return OUT_RESET;
	case EAGAIN:
	case EINPROGRESS: /* a blocking connect() that hit SO_SNDTIMEO */
	case ETIMEDOUT:
		return OUT_TIMEOUT;
	default:
		return OUT_OTHER;
	}
}

static int set_timeouts(int fd, uint64_t usec)
{
	/* A zero timeval means "wait forever": never arm that by accident. */
	struct timeval tv = {.tv_sec = (time_t)(usec / 1000000),
			     .tv_usec = (suseconds_t)(usec % 1000000)};

	if (usec == 0)
		tv.tv_usec = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	return 0;
}

/* Makes the socket timeout match what is left of the request's time. Returns 0, or -ETIMEDOUT
 * when nothing is left. */
static int arm_timeout(struct worker *w, uint64_t deadline_ns)
{
	uint64_t now = now_ns(), remaining_usec;

	if (now >= deadline_ns)
		return -ETIMEDOUT;
	remaining_usec = (deadline_ns - now) / NSEC_PER_USEC;
	if (remaining_usec == 0)
		return -ETIMEDOUT;
	if (w->fd_timeout_usec > remaining_usec + TIMEOUT_SLACK_USEC ||
	    w->fd_timeout_usec + TIMEOUT_SLACK_USEC < remaining_usec) {
		int r = set_timeouts(w->fd, remaining_usec);
		if (r < 0)
			return r;
		w->fd_timeout_usec = remaining_usec;
	}
	return 0;
}

static void conn_close(struct worker *w)
{
	SSL_free(w->ssl);
	w->ssl = NULL;
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
}

/* The first TLS failure is printed, once per run, so that a bad certificate is not only a
 * count of "other". */
static atomic_bool tls_error_said;

static void tls_say_error(const char *what)
{
	unsigned long e = ERR_peek_error();
	char buf[256];

	if (e && !atomic_exchange(&tls_error_said, true)) {
		ERR_error_string_n(e, buf, sizeof(buf));
		fprintf(stderr, "loadgen: TLS %s: %s\n", what, buf);
	}
	ERR_clear_error();
}

/* An OpenSSL call's result @r as recv() and send() give theirs: bytes (> 0), 0 at the
 * server's end of the connection, -EAGAIN when the socket timeout expired or a signal came
 * (the caller re-arms and tries again), or a negative errno (-EPROTO: TLS itself failed). */
static ssize_t tls_result(struct worker *w, int r, const char *what)
{
	int e = errno;

	if (r > 0)
		return r;
	switch (SSL_get_error(w->ssl, r)) {
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return -EAGAIN;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		return e ? -e : -EIO;
	default:
		tls_say_error(what);
		return -EPROTO;
	}
}

/* The TLS handshake on w->fd, bounded by @deadline_ns. Returns 0 or a negative errno. */
static int tls_handshake(struct worker *w, uint64_t deadline_ns)
{
	const struct options *o = &w->run->opt;
	unsigned char ip[sizeof(struct in6_addr)];
	bool is_ip = inet_pton(AF_INET, o->host, ip) == 1 || inet_pton(AF_INET6, o->host, ip) == 1;

	w->ssl = SSL_new(w->run->tls_ctx);
	if (!w->ssl || SSL_set_fd(w->ssl, w->fd) != 1) {
		tls_say_error("set-up");
		return -ENOMEM;
	}
	if (!is_ip && SSL_set_tlsext_host_name(w->ssl, o->host) != 1) {
		tls_say_error("server name");
		return -EPROTO;
	}
	if (o->tls_ca && (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(w->ssl), o->host)
				: SSL_set1_host(w->ssl, o->host)) != 1) {
		tls_say_error("expected name");
		return -EPROTO;
	}
	for (;;) {
		int r = arm_timeout(w, deadline_ns);
		ssize_t n;

		if (r < 0)
			return r;
		n = tls_result(w, SSL_connect(w->ssl), "handshake");
		if (n > 0)
			return 0;
		if (n == 0)
			return -ECONNRESET; /* closed in the middle of the handshake */
		if (n != -EAGAIN && n != -EINTR)
			return (int)n;
	}
}

static enum outcome conn_open(struct worker *w, uint64_t deadline_ns)
{
	const struct addrinfo *ai = w->run->addr;
	int one = 1, r;

	w->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (w->fd < 0)
		return outcome_from_errno(errno);
	w->fd_timeout_usec = 0;
	/* SO_SNDTIMEO bounds a blocking connect() too. */
	r = arm_timeout(w, deadline_ns);
	if (r < 0)
		goto fail;
	(void)setsockopt(w->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(w->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		r = -errno;
		goto fail;
	}
	if (w->run->tls_ctx) {
		r = tls_handshake(w, deadline_ns);
		if (r < 0)
			goto fail;
	}
	return OUT_OK;
fail:
	conn_close(w);
	return outcome_from_errno(-r);
}

static int send_all(struct worker *w, const char *data, size_t len, uint64_t deadline_ns)
{
	while (len > 0) {
		ssize_t n;
		int r = arm_timeout(w, deadline_ns);

		if (r < 0)
			return r;
		if (w->ssl) {
			n = tls_result(
			    w, SSL_write(w->ssl, data, (int)(len < INT_MAX ? len : INT_MAX)),
			    "write");
			if (n == -EAGAIN || n == -EINTR)
				continue;
			if (n == 0)
				return -EPIPE;
			if (n < 0)
				return (int)n;
		} else {
			n = send(w->fd, data, len, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Returns bytes read (> 0), 0 on EOF, or a negative errno (-ETIMEDOUT at the deadline). */
static ssize_t recv_some(struct worker *w, char *dst, size_t cap, uint64_t deadline_ns)
{
	for (;;) {
		ssize_t n;
		int r = arm_timeout(w, deadline_ns);

		if (r < 0)
			return r;
		if (w->ssl) {
			n = tls_result(
			    w, SSL_read(w->ssl, dst, (int)(cap < INT_MAX ? cap : INT_MAX)), "read");
			if (n >= 0)
				return n;
			if (n != -EAGAIN && n != -EINTR)
				return n;
			continue;
		}
		n = recv(w->fd, dst, cap, 0);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return -errno;
	}
}

static int buf_reserve(struct worker *w, size_t need)
{
	size_t cap = w->buf_cap;
	char *p;

	if (need <= cap)
		return 0;
	while (cap < need)
		cap *= 2;
	p = realloc(w->buf, cap);
	if (!p)
		return -ENOMEM;
	w->buf = p;
	w->buf_cap = cap;
	return 0;
}

static void body_head_add(struct worker *w, const char *p, size_t len)
{
	size_t room = sizeof(w->body_head) - w->body_head_len;

	if (len > room)
		len = room;
	memcpy(w->body_head + w->body_head_len, p, len);
	w->body_head_len += len;
}

static bool header_is(const char *line, size_t len, const char *name, const char **ret_value,
		      size_t *ret_value_len)
{
	size_t n = strlen(name);

	if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0)
		return false;
	line += n + 1;
	len -= n + 1;
	while (len > 0 && (*line == ' ' || *line == '\t'))
		line++, len--;
	while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	*ret_value = line;
	*ret_value_len = len;
	return true;
}

static bool value_has_token(const char *v, size_t len, const char *token)
{
	size_t n = strlen(token);

	for (size_t i = 0; i + n <= len; i++)
		if (strncasecmp(v + i, token, n) == 0 &&
		    (i == 0 || v[i - 1] == ' ' || v[i - 1] == ',') &&
		    (i + n == len || v[i + n] == ' ' || v[i + n] == ','))
			return true;
	return false;
}

enum framing { FRAME_NONE, FRAME_LENGTH, FRAME_CHUNKED, FRAME_EOF };

struct head {
	int status;
	int minor;
	enum framing framing;
	uint64_t content_length;
	bool conn_close;
	bool conn_keepalive;
};

/* Parses the status line and the headers in buf[0..len) (which ends with the blank line). */
static int parse_head(const char *buf, size_t len, struct head *ret)
{
	struct head h = {.framing = FRAME_EOF};
	const char *line = buf, *end = buf + len;
	bool have_length = false;
	int major;

	if (sscanf(buf, "HTTP/%d.%d %3d", &major, &h.minor, &h.status) != 3 || major != 1 ||
	    h.status < 100 || h.status > 999)
		return -EPROTO;
	for (;;) {
		const char *eol = memmem(line, (size_t)(end - line), "\r\n", 2), *v;
		size_t vlen;

		if (!eol || eol == line)
			break;
		if (header_is(line, (size_t)(eol - line), "content-length", &v, &vlen)) {
			char tmp[24], *e;
			if (vlen == 0 || vlen >= sizeof(tmp))
				return -EPROTO;
			memcpy(tmp, v, vlen);
			tmp[vlen] = '\0';
			errno = 0;
			h.content_length = strtoull(tmp, &e, 10);
			if (errno || *e || tmp[0] == '-')
				return -EPROTO;
			have_length = true;
		} else if (header_is(line, (size_t)(eol - line), "transfer-encoding", &v, &vlen)) {
			if (value_has_token(v, vlen, "chunked"))
				h.framing = FRAME_CHUNKED;
		} else if (header_is(line, (size_t)(eol - line), "connection", &v, &vlen)) {
			h.conn_close |= value_has_token(v, vlen, "close");
			h.conn_keepalive |= value_has_token(v, vlen, "keep-alive");
		}
		line = eol + 2;
	}
	if (h.framing != FRAME_CHUNKED && have_length)
		h.framing = FRAME_LENGTH;
	if (h.status == 204 || h.status == 304)
		h.framing = FRAME_NONE;
	*ret = h;
	return 0;
}

/* Is the chunked body in p[0..len) complete? 1 yes, 0 not yet, -EPROTO malformed. The first
 * chunk's data is reported through ret_first/ret_first_len (for the generation). */
static int chunked_complete(const char *p, size_t len, size_t *ret_first, size_t *ret_first_len)
{
	size_t i = 0;
	bool first = true;

	for (;;) {
		const char *eol = memmem(p + i, len - i, "\r\n", 2);
		uint64_t size = 0;
		size_t j = i;

		if (!eol)
			return len - i > 1024 ? -EPROTO : 0;
		for (; p + j < eol; j++) {
			int c = p[j], d;
			if (c >= '0' && c <= '9')
				d = c - '0';
			else if (c >= 'a' && c <= 'f')
				d = c - 'a' + 10;
			else if (c >= 'A' && c <= 'F')
				d = c - 'A' + 10;
			else
				break;
			size = size * 16 + (uint64_t)d;
			if (size > CHUNKED_MAX_BYTES)
				return -EPROTO;
		}
		if (j == i || (p + j < eol && p[j] != ';' && p[j] != ' '))
			return -EPROTO;
		i = (size_t)(eol - p) + 2;
		if (size == 0) {
			/* Trailers, then the blank line. */
			for (;;) {
				eol = memmem(p + i, len - i, "\r\n", 2);
				if (!eol)
					return 0;
				if (eol == p + i)
					return 1;
				i = (size_t)(eol - p) + 2;
			}
		}
		if (len - i < size + 2)
			return 0;
		if (p[i + size] != '\r' || p[i + size + 1] != '\n')
			return -EPROTO;
		if (first) {
			*ret_first = i;
			*ret_first_len = (size_t)size;
			first = false;
		}
		i += (size_t)size + 2;
	}
}

/* Finds "gen=N" (testsrv) or "generation N" (sdhttp) in what we kept of the body. */
static bool find_gen(const char *p, size_t len, uint64_t *ret_gen)
{
	static const char *const keys[] = {"gen=", "generation "};

	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		size_t klen = strlen(keys[k]);
		const char *hit = memmem(p, len, keys[k], klen);
		uint64_t gen = 0;
		size_t i;

		if (!hit)
			continue;
		i = (size_t)(hit - p) + klen;
		if (i >= len || p[i] < '0' || p[i] > '9')
			continue;
		for (; i < len && p[i] >= '0' && p[i] <= '9' && gen < UINT64_MAX / 10; i++)
			gen = gen * 10 + (uint64_t)(p[i] - '0');
		*ret_gen = gen;
		return true;
	}
	return false;
}

/* Reads one response. *ret_got_bytes says whether any byte of it arrived, which decides whether
 * an EOF or reset on a reused connection was an idle close. Returns an outcome. */
static enum outcome read_response(struct worker *w, uint64_t deadline_ns, struct response *resp,
				  bool *ret_got_bytes)
{
	size_t len = 0, head_len = 0;
	struct head h;
	ssize_t n;

	*ret_got_bytes = false;
	w->body_head_len = 0;
	for (;;) {
		const char *end;
		size_t from = len > 3 ? len - 3 : 0;

		n = recv_some(w, w->buf + len, HEADER_MAX_BYTES - len, deadline_ns);
		if (n < 0)
			return outcome_from_errno((int)-n);
		if (n == 0)
			return OUT_SHORT;
		*ret_got_bytes = true;
		len += (size_t)n;
		end = memmem(w->buf + from, len - from, "\r\n\r\n", 4);
		if (!end) {
			if (len == HEADER_MAX_BYTES)
				return OUT_OTHER;
			continue;
		}
		head_len = (size_t)(end - w->buf) + 4;
		if (parse_head(w->buf, head_len, &h) < 0)
			return OUT_OTHER;
		if (h.status >= 100 && h.status < 200 && h.status != 101) {
			/* An interim response (100 Continue): drop it, the real one follows. */
			memmove(w->buf, w->buf + head_len, len - head_len);
			len -= head_len;
			continue;
		}
		break;
	}

	resp->status = h.status;
	resp->has_gen = false;
	resp->reusable =
	    h.framing != FRAME_EOF && !h.conn_close && (h.minor >= 1 || h.conn_keepalive);

	switch (h.framing) {
	case FRAME_NONE:
		if (len > head_len)
			resp->reusable = false;
		break;
	case FRAME_LENGTH: {
		uint64_t have = len - head_len;

		if (have > h.content_length) {
			/* More than announced: the connection is out of step, never reuse it. */
			have = h.content_length;
			resp->reusable = false;
		}
		body_head_add(w, w->buf + head_len, (size_t)have);
		while (have < h.content_length) {
			uint64_t want = h.content_length - have;
			size_t cap = want < w->buf_cap ? (size_t)want : w->buf_cap;
			n = recv_some(w, w->buf, cap, deadline_ns);
			if (n < 0)
				return outcome_from_errno((int)-n);
			if (n == 0)
				return OUT_SHORT;
			body_head_add(w, w->buf, (size_t)n);
			have += (uint64_t)n;
		}
		break;
	}
	case FRAME_CHUNKED: {
		size_t first = 0, first_len = 0;
		int r;

		for (;;) {
			r = chunked_complete(w->buf + head_len, len - head_len, &first, &first_len);
			if (r < 0)
				return OUT_OTHER;
			if (r > 0)
				break;
			if (len == w->buf_cap &&
			    (len >= CHUNKED_MAX_BYTES || buf_reserve(w, len * 2) < 0))
				return OUT_OTHER;
			n = recv_some(w, w->buf + len, w->buf_cap - len, deadline_ns);
			if (n < 0)
				return outcome_from_errno((int)-n);
			if (n == 0)
				return OUT_SHORT;
			len += (size_t)n;
		}
		body_head_add(w, w->buf + head_len + first, first_len);
		break;
	}
	case FRAME_EOF:
		body_head_add(w, w->buf + head_len, len - head_len);
		for (;;) {
			n = recv_some(w, w->buf, w->buf_cap, deadline_ns);
			if (n < 0)
				return outcome_from_errno((int)-n);
			if (n == 0)
				break;
			body_head_add(w, w->buf, (size_t)n);
		}
		break;
	}
	resp->has_gen = find_gen(w->body_head, w->body_head_len, &resp->gen);
	if (h.status < 200 || h.status > 299)
		return OUT_OTHER;
	return OUT_OK;
}

/* One try of the request, on the kept-alive connection if there is one. */
static enum outcome attempt(struct worker *w, uint64_t deadline_ns, struct response *resp)
{
	const struct run *run = w->run;
	bool reused = w->fd >= 0, got_bytes = false;
	enum outcome out;
	int r;

	if (!reused) {
		out = conn_open(w, deadline_ns);
		if (out != OUT_OK)
			return out;
	}
	r = send_all(w, run->request, run->request_len, deadline_ns);
	if (r < 0) {
		out = reused && (r == -EPIPE || r == -ECONNRESET) ? OUT_IDLE_CLOSED
								  : outcome_from_errno(-r);
		conn_close(w);
		return out;
	}
	out = read_response(w, deadline_ns, resp, &got_bytes);
	if (out == OUT_SHORT || out == OUT_RESET) {
		if (reused && !got_bytes)
			out = OUT_IDLE_CLOSED;
	}
	if (out != OUT_OK || !run->opt.keepalive || !resp->reusable)
		conn_close(w);
	return out;
}

static void record_gen(struct worker *w, uint64_t gen)
{
	for (size_t i = 0; i < w->n_gens; i++)
		if (w->gens[i].gen == gen) {
			w->gens[i].count++;
			return;
		}
	if (w->n_gens == MAX_GENS) {
		w->gens_untracked++;
		return;
	}
	w->gens[w->n_gens++] = (struct gen_count){.gen = gen, .count = 1};
}

static int record(struct worker *w, enum outcome out, const struct response *resp, uint64_t t0,
		  uint64_t t1)
{
	const struct run *run = w->run;
	uint64_t rel = t1 - run->start_ns;
	size_t bucket = (size_t)(rel / (run->opt.timeline_ms * NSEC_PER_MSEC));
	uint64_t latency_usec = (t1 - t0) / NSEC_PER_USEC;

	if (bucket >= run->n_buckets)
		bucket = run->n_buckets - 1;
	w->counts[out]++;
	if (out != OUT_OK) {
		w->timeline_failed[bucket]++;
		if (out == OUT_OTHER && resp->status != 0 &&
		    (resp->status < 200 || resp->status > 299))
			w->bad_status++;
		return 0;
	}
	w->timeline_ok[bucket]++;
	if (resp->has_gen)
		record_gen(w, resp->gen);
	if (w->n_samples == w->cap_samples) {
		size_t cap = w->cap_samples ? w->cap_samples * 2 : 4096;
		struct sample *p = realloc(w->samples, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		w->samples = p;
		w->cap_samples = cap;
	}
	w->samples[w->n_samples++] = (struct sample){
	    .done_ns = rel,
	    .latency_usec = latency_usec > UINT32_MAX ? UINT32_MAX : (uint32_t)latency_usec};
	return 0;
}

/* SIGTERM and SIGINT end the run early: a caller that drives its own events (N upgrades)
 * runs the load until they are done, with --duration-ms as a ceiling. */
static void *signal_main(void *arg)
{
	struct run *run = arg;
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	while (sigwait(&set, &sig) != 0)
		;
	uint64_t now = now_ns();
	if (now < atomic_load(&run->deadline_ns))
		atomic_store(&run->deadline_ns, now);
	return NULL;
}

/* Blocks SIGTERM and SIGINT in every thread (the mask is inherited) and waits for them in
 * one thread of its own, detached: it never keeps the process from exiting. */
static int stop_on_signal(struct run *run)
{
	sigset_t set;
	pthread_t t;
	int r;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	r = pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (r == 0)
		r = pthread_create(&t, NULL, signal_main, run);
	if (r == 0)
		r = pthread_detach(t);
	if (r != 0) {
		fprintf(stderr, "loadgen: signal thread: %s\n", strerror(r));
		return -r;
	}
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	const struct run *run = w->run;
	uint64_t timeout_ns = run->opt.timeout_ms * NSEC_PER_MSEC;

	while (now_ns() < atomic_load_explicit(&run->deadline_ns, memory_order_relaxed)) {
		struct response resp = {0};
		uint64_t t0 = now_ns();
		/* Every request, a retried one included, must be over within the timeout: that
		 * bounds the whole run to duration + timeout. */
		uint64_t deadline_ns = t0 + timeout_ns;
		enum outcome out = attempt(w, deadline_ns, &resp);

		if (out == OUT_IDLE_CLOSED) {
			/* The server closed this keep-alive connection while it was idle (a drain,
			 * an idle timeout) and our request crossed its FIN. No byte of a response
			 * came, so the request was not processed: like browsers, curl and Go's
			 * net/http, reconnect and send it again, once. */
			w->closed_idle++;
			memset(&resp, 0, sizeof(resp));
			out = attempt(w, deadline_ns, &resp);
			if (out == OUT_IDLE_CLOSED)
				out =
				    OUT_SHORT; /* cannot happen: a fresh connection is not reused */
		}
		if (record(w, out, &resp, t0, now_ns()) < 0) {
			w->error = "out of memory for latency samples";
			break;
		}
	}
	conn_close(w);
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static int cmp_gen(const void *a, const void *b)
{
	return cmp_u64(&((const struct gen_count *)a)->gen, &((const struct gen_count *)b)->gen);
}

struct summary {
	uint64_t counts[OUT_COUNT];
	uint64_t failed;
	uint64_t closed_idle;
	uint64_t bad_status;
	double elapsed_s;
	double rps;
	uint32_t p50_usec, p99_usec, p999_usec, max_usec;
	double stall_ms;
	double stall_at_ms;
	struct gen_count gens[MAX_GENS];
	size_t n_gens;
	uint64_t gens_untracked;
	uint64_t *timeline_ok;
	uint64_t *timeline_failed;
	size_t n_buckets;
};

/* Nearest-rank percentile, per_mille of 1000. */
static uint32_t percentile(const uint32_t *sorted, size_t n, unsigned per_mille)
{
	size_t rank;

	if (n == 0)
		return 0;
	rank = (n * per_mille + 999) / 1000;
	if (rank < 1)
		rank = 1;
	return sorted[rank - 1];
}

static int summarize(const struct run *run, struct worker *workers, uint64_t end_ns,
		     struct summary *s)
{
	size_t n = 0, k = 0, last_bucket;
	uint32_t *lat = NULL;
	uint64_t *done = NULL, prev = 0, run_end;
	unsigned nw = run->opt.connections;

	memset(s, 0, sizeof(*s));
	for (unsigned i = 0; i < nw; i++)
		n += workers[i].n_samples;
	lat = malloc((n ? n : 1) * sizeof(*lat));
	done = malloc((n ? n : 1) * sizeof(*done));
	s->timeline_ok = calloc(run->n_buckets, sizeof(uint64_t));
	s->timeline_failed = calloc(run->n_buckets, sizeof(uint64_t));
	if (!lat || !done || !s->timeline_ok || !s->timeline_failed) {
		free(lat);
		free(done);
		return -ENOMEM;
	}

	for (unsigned i = 0; i < nw; i++) {
		struct worker *w = &workers[i];

		for (int o = 0; o < OUT_COUNT; o++)
			s->counts[o] += w->counts[o];
		s->closed_idle += w->closed_idle;
		s->bad_status += w->bad_status;
		for (size_t j = 0; j < w->n_samples; j++, k++) {
			lat[k] = w->samples[j].latency_usec;
			done[k] = w->samples[j].done_ns;
		}
		for (size_t b = 0; b < run->n_buckets; b++) {
			s->timeline_ok[b] += w->timeline_ok[b];
			s->timeline_failed[b] += w->timeline_failed[b];
		}
		s->gens_untracked += w->gens_untracked;
		for (size_t g = 0; g < w->n_gens; g++) {
			size_t x = 0;
			while (x < s->n_gens && s->gens[x].gen != w->gens[g].gen)
				x++;
			if (x == s->n_gens) {
				if (s->n_gens == MAX_GENS) {
					s->gens_untracked += w->gens[g].count;
					continue;
				}
				s->gens[s->n_gens++] = (struct gen_count){.gen = w->gens[g].gen};
			}
			s->gens[x].count += w->gens[g].count;
		}
	}
	for (int o = 1; o < OUT_COUNT; o++)
		s->failed += s->counts[o];
	qsort(s->gens, s->n_gens, sizeof(s->gens[0]), cmp_gen);

	qsort(lat, n, sizeof(*lat), cmp_u32);
	s->p50_usec = percentile(lat, n, 500);
	s->p99_usec = percentile(lat, n, 990);
	s->p999_usec = percentile(lat, n, 999);
	s->max_usec = n ? lat[n - 1] : 0;

	/* The longest stall: the longest time without a completed request, counting from the
	 * start to the first and from the last to the planned end. */
	qsort(done, n, sizeof(*done), cmp_u64);
	run_end = atomic_load(&run->deadline_ns) - run->start_ns;
	{
		uint64_t best = 0, best_at = 0;
		for (size_t i = 0; i <= n; i++) {
			uint64_t t = i < n ? done[i] : run_end;
			if (t > prev && t - prev > best) {
				best = t - prev;
				best_at = prev;
			}
			if (t > prev)
				prev = t;
		}
		s->stall_ms = (double)best / (double)NSEC_PER_MSEC;
		s->stall_at_ms = (double)best_at / (double)NSEC_PER_MSEC;
	}

	s->elapsed_s = (double)(end_ns - run->start_ns) / (double)NSEC_PER_SEC;
	s->rps = s->elapsed_s > 0 ? (double)s->counts[OUT_OK] / s->elapsed_s : 0;

	/* Report the planned buckets, and later ones only if something finished there. */
	last_bucket = (size_t)((run_end - 1) / (run->opt.timeline_ms * NSEC_PER_MSEC));
	for (size_t b = last_bucket + 1; b < run->n_buckets; b++)
		if (s->timeline_ok[b] || s->timeline_failed[b])
			last_bucket = b;
	s->n_buckets = last_bucket + 1;

	free(lat);
	free(done);
	return 0;
}

static void format_gens(const struct summary *s, char *out, size_t cap)
{
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; i < s->n_gens && used < cap; i++) {
		int r = snprintf(out + used, cap - used, "%s%" PRIu64 ":%" PRIu64, i ? "," : "",
				 s->gens[i].gen, s->gens[i].count);
		if (r < 0)
			break;
		used += (size_t)r;
	}
}

static void print_human(const struct run *run, const struct summary *s, const char *gens)
{
	const struct options *o = &run->opt;

	printf("target     %s://%s:%u%s, %u connections, %s, %" PRIu64 " ms\n",
	       o->tls ? "https" : "http", o->host, o->port, o->path, o->connections,
	       o->keepalive ? "keep-alive" : "connection per request", o->duration_ms);
	printf("requests   ok %" PRIu64 ", failed %" PRIu64, s->counts[OUT_OK], s->failed);
	for (int i = 1; i < OUT_COUNT; i++)
		printf("%s%s %" PRIu64, i == 1 ? " (" : ", ", outcome_names[i], s->counts[i]);
	printf(")\n");
	if (s->bad_status)
		printf("           %" PRIu64 " of the failures were non-2xx responses\n",
		       s->bad_status);
	if (o->keepalive)
		printf("           %" PRIu64 " idle keep-alive connections closed by the server, "
		       "request retried\n",
		       s->closed_idle);
	printf("throughput %.1f req/s over %.3f s\n", s->rps, s->elapsed_s);
	printf("latency    p50 %" PRIu32 " us, p99 %" PRIu32 " us, p99.9 %" PRIu32
	       " us, max %" PRIu32 " us\n",
	       s->p50_usec, s->p99_usec, s->p999_usec, s->max_usec);
	printf("stall      longest %.1f ms without a completed request (from %.1f ms)\n",
	       s->stall_ms, s->stall_at_ms);
	if (s->n_gens || s->gens_untracked)
		printf("gens       %s%s\n", gens, s->gens_untracked ? " (and more)" : "");
	printf("timeline   ok per %" PRIu64 " ms:", o->timeline_ms);
	for (size_t b = 0; b < s->n_buckets; b++) {
		if (b % 10 == 0)
			printf("\n  %7.1fs", (double)(b * o->timeline_ms) / 1000.0);
		if (s->timeline_failed[b])
			printf(" %" PRIu64 "(-%" PRIu64 ")", s->timeline_ok[b],
			       s->timeline_failed[b]);
		else
			printf(" %" PRIu64, s->timeline_ok[b]);
	}
	printf("\n");
}

static void json_string(FILE *f, const char *str)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

static void json_array(FILE *f, const uint64_t *v, size_t n)
{
	fputc('[', f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s%" PRIu64, i ? "," : "", v[i]);
	fputc(']', f);
}

/* Written to FILE.tmp and renamed, so a reader never sees half a report. */
static int write_json(const struct run *run, const struct summary *s, const char *path)
{
	const struct options *o = &run->opt;
	size_t tmp_len = strlen(path) + 5;
	char *tmp = malloc(tmp_len);
	FILE *f;
	int fd, r = 0;

	if (!tmp)
		return -ENOMEM;
	snprintf(tmp, tmp_len, "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		free(tmp);
		return r;
	}
	f = fdopen(fd, "w");
	if (!f) {
		r = -errno;
		close(fd);
		goto out;
	}
	fprintf(f, "{\"host\":");
	json_string(f, o->host);
	fprintf(f, ",\"port\":%u,\"tls\":%s,\"path\":", o->port, o->tls ? "true" : "false");
	json_string(f, o->path);
	fprintf(f,
		",\"connections\":%u,\"keepalive\":%s,\"duration_ms\":%" PRIu64
		",\"timeout_ms\":%" PRIu64 ",\"elapsed_ms\":%.3f"
		",\"start_mono_us\":%" PRIu64,
		o->connections, o->keepalive ? "true" : "false", o->duration_ms, o->timeout_ms,
		s->elapsed_s * 1000.0, run->start_ns / 1000);
	fprintf(f, ",\"failed\":%" PRIu64, s->failed);
	for (int i = 0; i < OUT_COUNT; i++)
		fprintf(f, ",\"%s\":%" PRIu64, outcome_names[i], s->counts[i]);
	fprintf(f,
		",\"bad_status\":%" PRIu64 ",\"closed_idle\":%" PRIu64 ",\"rps\":%.1f"
		",\"p50_us\":%" PRIu32 ",\"p99_us\":%" PRIu32 ",\"p999_us\":%" PRIu32
		",\"max_us\":%" PRIu32 ",\"stall_ms\":%.3f,\"stall_at_ms\":%.3f,\"gens\":{",
		s->bad_status, s->closed_idle, s->rps, s->p50_usec, s->p99_usec, s->p999_usec,
		s->max_usec, s->stall_ms, s->stall_at_ms);
	for (size_t i = 0; i < s->n_gens; i++)
		fprintf(f, "%s\"%" PRIu64 "\":%" PRIu64, i ? "," : "", s->gens[i].gen,
			s->gens[i].count);
	fprintf(f, "},\"timeline_ms\":%" PRIu64 ",\"timeline\":", o->timeline_ms);
	json_array(f, s->timeline_ok, s->n_buckets);
	fprintf(f, ",\"timeline_failed\":");
	json_array(f, s->timeline_failed, s->n_buckets);
	fprintf(f, "}\n");
	if (fflush(f) != 0 || ferror(f))
		r = -EIO;
	if (fclose(f) != 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
out:
	if (r < 0)
		unlink(tmp);
	free(tmp);
	return r;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: loadgen --port P [--host 127.0.0.1] [--connections 8] "
		   "[--duration-ms 5000]\n"
		   "               [--keepalive] [--timeout-ms 2000] [--timeline-ms 100] "
		   "[--path /]\n"
		   "               [--json FILE] [--quiet] [--tls [--tls-ca FILE]]\n"
		   "Closed-loop HTTP/1.1 load: each connection keeps one request in flight.\n"
		   "--tls: HTTPS, a TLS handshake on every new connection; the server's\n"
		   "certificate is checked against --tls-ca (and the host) only when given.\n"
		   "SIGTERM or SIGINT ends the run early; the report is printed as usual.\n"
		   "Exits 0 iff no request failed and at least one succeeded.\n");
}

static int parse_u64(const char *arg, const char *name, uint64_t min, uint64_t max, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(arg, &end, 10);
	if (errno || end == arg || *end || arg[0] == '-' || v < min || v > max) {
		fprintf(stderr,
			"loadgen: --%s \"%s\": expected a number from %" PRIu64 " to %" PRIu64 "\n",
			name, arg, min, max);
		return -EINVAL;
	}
	*ret = v;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
	    {"port", required_argument, NULL, 'p'},
	    {"host", required_argument, NULL, 'H'},
	    {"connections", required_argument, NULL, 'c'},
	    {"duration-ms", required_argument, NULL, 'd'},
	    {"keepalive", no_argument, NULL, 'k'},
	    {"timeout-ms", required_argument, NULL, 't'},
	    {"timeline-ms", required_argument, NULL, 'l'},
	    {"path", required_argument, NULL, 'P'},
	    {"json", required_argument, NULL, 'j'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"tls", no_argument, NULL, 'T'},
	    {"tls-ca", required_argument, NULL, 'C'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	uint64_t v = 0;
	int c;

	*o = (struct options){.host = "127.0.0.1",
			      .connections = 8,
			      .duration_ms = 5000,
			      .timeout_ms = 2000,
			      .timeline_ms = 100,
			      .path = "/"};
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (parse_u64(optarg, "port", 1, 65535, &v) < 0)
				return -EINVAL;
			o->port = (unsigned)v;
			break;
		case 'H':
			o->host = optarg;
			break;
		case 'c':
			if (parse_u64(optarg, "connections", 1, 10000, &v) < 0)
				return -EINVAL;
			o->connections = (unsigned)v;
			break;
		case 'd':
			if (parse_u64(optarg, "duration-ms", 1, 24ULL * 3600 * 1000,
				      &o->duration_ms) < 0)
				return -EINVAL;
			break;
		case 'k':
			o->keepalive = true;
			break;
		case 't':
			if (parse_u64(optarg, "timeout-ms", 1, 3600ULL * 1000, &o->timeout_ms) < 0)
				return -EINVAL;
			break;
		case 'l':
			if (parse_u64(optarg, "timeline-ms", 1, 3600ULL * 1000, &o->timeline_ms) <
			    0)
				return -EINVAL;
			break;
		case 'P':
			o->path = optarg;
			break;
		case 'j':
			o->json_path = optarg;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'T':
			o->tls = true;
			break;
		case 'C':
			o->tls_ca = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "loadgen: unexpected argument \"%s\"\n", argv[optind]);
		return -EINVAL;
	}
	if (o->port == 0) {
		fprintf(stderr, "loadgen: --port is required\n");
		usage(stderr);
		return -EINVAL;
	}
	if (o->path[0] != '/' || strpbrk(o->path, " \r\n\t")) {
		fprintf(stderr, "loadgen: --path \"%s\": must start with / and have no blanks\n",
			o->path);
		return -EINVAL;
	}
	if (strpbrk(o->host, " \r\n\t")) {
		fprintf(stderr, "loadgen: --host \"%s\": has blanks\n", o->host);
		return -EINVAL;
	}
	if (o->tls_ca && !o->tls) {
		fprintf(stderr, "loadgen: --tls-ca needs --tls\n");
		return -EINVAL;
	}
	return 0;
}

static int run_prepare(struct run *run)
{
	const struct options *o = &run->opt;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	char port[8];
	bool v6 = strchr(o->host, ':') != NULL;
	int r, len;
	uint64_t total_ms;

	snprintf(port, sizeof(port), "%u", o->port);
	r = getaddrinfo(o->host, port, &hints, &run->addr);
	if (r != 0) {
		fprintf(stderr, "loadgen: host \"%s\": %s\n", o->host, gai_strerror(r));
		return -EINVAL;
	}
	len = asprintf(&run->request,
		       "GET %s HTTP/1.1\r\nHost: %s%s%s:%u\r\nUser-Agent: baton-loadgen\r\n"
		       "Connection: %s\r\n\r\n",
		       o->path, v6 ? "[" : "", o->host, v6 ? "]" : "", o->port,
		       o->keepalive ? "keep-alive" : "close");
	if (len < 0) {
		run->request = NULL;
		return -ENOMEM;
	}
	run->request_len = (size_t)len;
	if (o->tls) {
		run->tls_ctx = SSL_CTX_new(TLS_client_method());
		if (!run->tls_ctx) {
			fprintf(stderr, "loadgen: SSL_CTX_new: %s\n",
				ERR_error_string(ERR_get_error(), NULL));
			return -ENOMEM;
		}
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
		/* A server that closes without close_notify ends the response as plain TCP's
		 * EOF does (OpenSSL 3 would call it an error). */
		SSL_CTX_set_options(run->tls_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
		if (o->tls_ca) {
			if (SSL_CTX_load_verify_locations(run->tls_ctx, o->tls_ca, NULL) != 1) {
				fprintf(stderr, "loadgen: --tls-ca %s: %s\n", o->tls_ca,
					ERR_error_string(ERR_get_error(), NULL));
				return -EINVAL;
			}
			SSL_CTX_set_verify(run->tls_ctx, SSL_VERIFY_PEER, NULL);
		}
	}
	/* Buckets for everything that may finish: the run, the last request's timeout, slack. */
	total_ms = o->duration_ms + o->timeout_ms + 1000;
	if (total_ms / o->timeline_ms + 2 > MAX_BUCKETS) {
		fprintf(stderr, "loadgen: --timeline-ms %" PRIu64 " is too fine for this run\n",
			o->timeline_ms);
		return -EINVAL;
	}
	run->n_buckets = (size_t)(total_ms / o->timeline_ms + 2);
	return 0;
}

static void workers_free(struct worker *workers, unsigned n)
{
	if (!workers)
		return;
	for (unsigned i = 0; i < n; i++) {
		free(workers[i].samples);
		free(workers[i].timeline_ok);
		free(workers[i].timeline_failed);
		free(workers[i].buf);
	}
	free(workers);
}

int main(int argc, char **argv)
{
	struct run run = {0};
	struct worker *workers = NULL;
	struct summary s = {0};
	unsigned started = 0;
	char gens[MAX_GENS * 42];
	int r, exit_code = 2;
	uint64_t end_ns;
	bool broken = false;

	if (parse_options(argc, argv, &run.opt) < 0)
		return 2;
	/* MSG_NOSIGNAL covers send(); this covers anything else that might write. */
	signal(SIGPIPE, SIG_IGN);
	if (run_prepare(&run) < 0)
		goto out;

	workers = calloc(run.opt.connections, sizeof(*workers));
	if (!workers)
		goto oom;
	for (unsigned i = 0; i < run.opt.connections; i++) {
		struct worker *w = &workers[i];
		w->run = &run;
		w->fd = -1;
		w->buf_cap = HEADER_MAX_BYTES;
		w->buf = malloc(w->buf_cap);
		w->timeline_ok = calloc(run.n_buckets, sizeof(uint32_t));
		w->timeline_failed = calloc(run.n_buckets, sizeof(uint32_t));
		if (!w->buf || !w->timeline_ok || !w->timeline_failed)
			goto oom;
	}

	run.start_ns = now_ns();
	atomic_store(&run.deadline_ns, run.start_ns + run.opt.duration_ms * NSEC_PER_MSEC);
	if (stop_on_signal(&run) < 0)
		goto out;
	for (; started < run.opt.connections; started++) {
		r = pthread_create(&workers[started].thread, NULL, worker_main, &workers[started]);
		if (r != 0) {
			fprintf(stderr, "loadgen: starting thread %u: %s\n", started, strerror(r));
			broken = true;
			/* The ones already running still have to be joined. */
			atomic_store(&run.deadline_ns, run.start_ns);
			break;
		}
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(workers[i].thread, NULL);
	end_ns = now_ns();
	if (broken)
		goto out;
	for (unsigned i = 0; i < started; i++)
		if (workers[i].error) {
			fprintf(stderr, "loadgen: thread %u: %s\n", i, workers[i].error);
			goto out;
		}

	if (summarize(&run, workers, end_ns, &s) < 0)
		goto oom;
	format_gens(&s, gens, sizeof(gens));
	if (!run.opt.quiet)
		print_human(&run, &s, gens);
	printf("loadgen: ok=%" PRIu64 " failed=%" PRIu64 " refused=%" PRIu64 " reset=%" PRIu64
	       " timeout=%" PRIu64 " short=%" PRIu64 " other=%" PRIu64 " rps=%.1f p50_us=%" PRIu32
	       " p99_us=%" PRIu32 " p999_us=%" PRIu32 " max_us=%" PRIu32
	       " stall_ms=%.1f closed_idle=%" PRIu64 " gens=%s\n",
	       s.counts[OUT_OK], s.failed, s.counts[OUT_REFUSED], s.counts[OUT_RESET],
	       s.counts[OUT_TIMEOUT], s.counts[OUT_SHORT], s.counts[OUT_OTHER], s.rps, s.p50_usec,
	       s.p99_usec, s.p999_usec, s.max_usec, s.stall_ms, s.closed_idle, gens);
	fflush(stdout);
	exit_code = s.failed == 0 && s.counts[OUT_OK] > 0 ? 0 : 1;
	if (run.opt.json_path) {
		r = write_json(&run, &s, run.opt.json_path);
		if (r < 0) {
			fprintf(stderr, "loadgen: --json %s: %s\n", run.opt.json_path,
				strerror(-r));
			exit_code = 2;
		}
	}
	goto out;
oom:
	fprintf(stderr, "loadgen: out of memory\n");
	exit_code = 2;
out:
	free(s.timeline_ok);
	free(s.timeline_failed);
	workers_free(workers, run.opt.connections);
	free(run.request);
	SSL_CTX_free(run.tls_ctx);
	if (run.addr)
		freeaddrinfo(run.addr);
	return exit_code;
}
