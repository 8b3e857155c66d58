/* batond.conf's source text: reads the file, blanks its comments and notes
 * where each section starts, for config.c to hand to libconfuse. Parses no
 * value and keeps no error list: problems go to the caller's report function.
 *
 * libconfuse 3.3 counts a line twice after a '#' or '//' comment and once too
 * many after a block comment, and fails on a comment inside a list. So comments
 * are blanked here (newlines kept) with libconfuse's own tokenizing rules, and
 * libconfuse never sees one. */
#include "config-text.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CONFIG_BYTES (4 << 20)
#define UNQUOTED_STOP	 " #\"'\t\n\r={}()+,*"

struct token {
	const char *text;
	size_t len;
	bool is_string;
};

struct text_reader {
	struct section_marks *sections;
	config_text_report_fn *report;
	void *userdata;
	bool oom;
};

static void report_problem(struct text_reader *rd, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report_problem(struct text_reader *rd, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	rd->report(rd->userdata, line, fmt, ap);
	va_end(ap);
}

static bool token_is(const struct token *t, const char *word)
{
	return t->is_string && t->len == strlen(word) && memcmp(t->text, word, t->len) == 0;
}

static void mark_section(struct text_reader *rd, const struct token *before_title,
			 const struct token *title, int line)
{
	struct section_marks *s = rd->sections;
	struct section_mark *marks;
	const char *kind;
	char *name = NULL;

	if (token_is(title, "control")) {
		kind = "control";
	} else if (token_is(before_title, "listener") || token_is(before_title, "app")) {
		kind = token_is(before_title, "app") ? "app" : "listener";
		name = strndup(title->text, title->len);
		if (!name) {
			rd->oom = true;
			return;
		}
	} else {
		return;
	}

	for (size_t i = 0; i < s->n_marks; i++) {
		if (strcmp(s->marks[i].kind, kind) != 0)
			continue;
		if (!name)
			report_problem(rd, line,
				       "duplicate control section (first defined at line %d)",
				       s->marks[i].line);
		else if (strcmp(s->marks[i].title, name) == 0)
			report_problem(rd, line, "duplicate %s \"%s\" (first defined at line %d)",
				       kind, name, s->marks[i].line);
		else
			continue;
		break;
	}

	marks = reallocarray(s->marks, s->n_marks + 1, sizeof(*marks));
	if (!marks) {
		rd->oom = true;
		free(name);
		return;
	}
	s->marks = marks;
	marks[s->n_marks++] = (struct section_mark){kind, name, line};
}

static void blank(char *from, char *to, int *line)
{
	for (; from < to; from++) {
		if (*from == '\n')
			(*line)++;
		else
			*from = ' ';
	}
}

/* Returns the end of the quoted string starting at @p (past its closing quote). */
static char *skip_quoted(char *p, int *line)
{
	char quote = *p++;

	while (*p && *p != quote) {
		if (quote == '"' && p[0] == '$' && p[1] == '{' && strchr(p, '}'))
			p = strchr(p, '}');
		else if (*p == '\\' && p[1])
			p++;
		if (*p == '\n')
			(*line)++;
		p++;
	}
	return *p ? p + 1 : p;
}

static void strip_comments(struct text_reader *rd, char *text)
{
	struct section_marks *s = rd->sections;
	struct token prev[2] = {{0}};
	int line = 1, depth = 0, open_line = 0;
	size_t open_marks = 0;
	char *p = text;

	while (*p) {
		struct token tok = {p, 1, false};
		char *end;

		if (*p == '\n') {
			line++;
			p++;
			continue;
		}
		if (*p == ' ' || *p == '\t' || *p == '\r') {
			p++;
			continue;
		}
		/* As in libconfuse, '#' or '//' where a token would start opens a
		 * comment, whatever follows ("//x" too). */
		if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
			blank(p, p + strcspn(p, "\n"), &line);
			p += strcspn(p, "\n");
			continue;
		}
		if (p[0] == '/' && p[1] == '*') {
			end = strstr(p + 2, "*/");
			if (!end)
				report_problem(rd, line, "unterminated comment");
			end = end ? end + 2 : p + strlen(p);
			blank(p, end, &line);
			p = end;
			continue;
		}

		if (*p == '"' || *p == '\'') {
			end = skip_quoted(p, &line);
			tok = (struct token){p + 1, (size_t)(end - p) - 2, true};
		} else if (p[0] == '$' && p[1] == '{' && strchr(p, '}')) {
			end = strchr(p, '}') + 1;
			tok = (struct token){p, (size_t)(end - p), true};
		} else if (!strchr(UNQUOTED_STOP, *p)) {
			end = p + strcspn(p, UNQUOTED_STOP);
			tok = (struct token){p, (size_t)(end - p), true};
		} else {
			if (*p == '{' && depth++ == 0) {
				open_line = line;
				open_marks = s->n_marks;
				mark_section(rd, &prev[0], &prev[1], line);
			} else if (*p == '}' && depth > 0)
				depth--;
			end = p + 1;
		}
		prev[0] = prev[1];
		prev[1] = tok;
		p = end;
	}

	/* libconfuse takes the end of the file as the end of an open section. */
	if (depth > 0 && s->n_marks > open_marks && s->marks[open_marks].title)
		report_problem(rd, open_line, "%s \"%s\": missing '}' at the end of the section",
			       s->marks[open_marks].kind, s->marks[open_marks].title);
	else if (depth > 0)
		report_problem(rd, open_line, "missing '}' at the end of the section");
}

int config_text_prepare(char *text, struct section_marks *sections, config_text_report_fn *report,
			void *userdata)
{
	struct text_reader rd = {.sections = sections, .report = report, .userdata = userdata};

	strip_comments(&rd, text);
	return rd.oom ? -ENOMEM : 0;
}

void config_text_sections_free(struct section_marks *sections)
{
	for (size_t i = 0; i < sections->n_marks; i++)
		free(sections->marks[i].title);
	free(sections->marks);
	*sections = (struct section_marks){0};
}

int config_text_read(const char *path, char **ret)
{
	size_t len = 0, size = 4096;
	char *buf = malloc(size), *bigger;
	ssize_t n;
	int fd, r = 0;

	if (!buf)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		free(buf);
		return -errno;
	}
	for (;;) {
		if (len + 1 == size) {
			if (size >= MAX_CONFIG_BYTES) {
				r = -EFBIG;
				break;
			}
			bigger = realloc(buf, size * 2);
			if (!bigger) {
				r = -ENOMEM;
				break;
			}
			buf = bigger;
			size *= 2;
		}
		n = read(fd, buf + len, size - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : 0;
			break;
		}
		len += (size_t)n;
	}
	close(fd);
	if (r < 0) {
		free(buf);
		return r;
	}
	buf[len] = '\0';
	if (strlen(buf) != len) {
		free(buf);
		return -EBADMSG;
	}
	*ret = buf;
	return 0;
}
