/* SPDX-License-Identifier: MIT */
/* batond.conf's syntax: reads the file and turns its text into sections of
 * assignments, each name and value with the line it stands on. Knows no
 * option and checks no value; config.c does, from its option tables.
 *
 * The syntax is libconfuse's, which batond used before: NAME = VALUE, lists in
 * braces, KIND [TITLE] { ... } sections, #, // and block comments anywhere,
 * "..." strings with C escapes and ${NAME} / ${NAME:-default}, '...' strings
 * without either, and unquoted values. */
#include "config-text.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CONFIG_BYTES (4 << 20)
/* An unquoted value ends at any of these (and at the end of the text). */
#define UNQUOTED_STOP " \t\n\r#\"'={}()+,*"

enum token_kind { TOK_EOF, TOK_STRING, TOK_OPEN, TOK_CLOSE, TOK_EQUAL, TOK_APPEND, TOK_COMMA };

struct token {
	enum token_kind kind;
	int line;
	const char *raw; /* as written, for messages */
	size_t raw_len;
	bool is_variable; /* a bare ${NAME} */
	char *text;	  /* TOK_STRING: the value; owned here until taken */
	size_t text_len, text_size;
};

struct parser {
	const char *p; /* the text is NUL-terminated and holds no other NUL */
	int line;
	struct conf_file *file;
	const struct conf_section *section; /* for messages */
	const char *option;		    /* for messages */
	config_text_report_fn *report;
	void *userdata;
	int r; /* 0, -EINVAL after a syntax error, -ENOMEM */
	char description[64];
};

/* @array, which holds @n elements, with room for one more, or NULL (@array
 * intact). The capacity doubles at each power of two from 4, so none is kept. */
static void *grow(void *array, size_t n, size_t size)
{
	if (n != 0 && (n < 4 || (n & (n - 1)) != 0))
		return array;
	return reallocarray(array, n ? n * 2 : 4, size);
}

static void call_report(struct parser *ps, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void call_report(struct parser *ps, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ps->report(ps->userdata, line, fmt, ap);
	va_end(ap);
}

static void fail_at(struct parser *ps, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reports the syntax error that ends the parse, in the section and option it
 * was found in. */
static void fail_at(struct parser *ps, int line, const char *fmt, ...)
{
	const struct conf_section *s = ps->section;
	char *msg, *where = NULL;
	va_list ap;
	int n;

	if (ps->r < 0)
		return;
	ps->r = -EINVAL;
	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0) {
		ps->r = -ENOMEM;
		return;
	}
	if (s && s->kind && s->title)
		n = asprintf(&where, "%s \"%s\": ", s->kind, s->title);
	else if (s && s->kind)
		n = asprintf(&where, "%s: ", s->kind);
	else
		where = strdup("");
	if (n < 0 || !where) {
		free(msg);
		ps->r = -ENOMEM;
		return;
	}
	call_report(ps, line, "%s%s%s%s", where, ps->option ? ps->option : "",
		    ps->option ? ": " : "", msg);
	free(where);
	free(msg);
}

/* ---- Tokens -------------------------------------------------------------- */

static void token_reset(struct token *t)
{
	free(t->text);
	*t = (struct token){0};
}

static char *token_take(struct token *t)
{
	char *text = t->text;

	t->text = NULL;
	return text;
}

/* The token as a message shows it: 'name', "quoted", or end of file. */
static const char *describe(struct parser *ps, const struct token *t)
{
	size_t len = strcspn(t->raw, "\n"), max = sizeof(ps->description) - 8;
	bool quoted = t->raw[0] == '"' || t->raw[0] == '\'', cut;

	if (t->kind == TOK_EOF)
		return "end of file";
	if (len > t->raw_len)
		len = t->raw_len;
	cut = len < t->raw_len || len > max;
	snprintf(ps->description, sizeof(ps->description), "%s%.*s%s%s", quoted ? "" : "'",
		 (int)(len > max ? max : len), t->raw, cut ? "..." : "", quoted ? "" : "'");
	return ps->description;
}

static void fail_unexpected(struct parser *ps, const struct token *t, const char *expected)
{
	fail_at(ps, t->line, "unexpected %s, expected %s%s", describe(ps, t), expected,
		t->is_variable ? " (${NAME} is replaced in values only)" : "");
}

static int put(struct parser *ps, struct token *t, const char *s, size_t n)
{
	size_t size = t->text_size ? t->text_size : 16;
	char *text = t->text;

	while (size < t->text_len + n + 1)
		size *= 2;
	if (size != t->text_size) {
		text = realloc(t->text, size);
		if (!text) {
			ps->r = -ENOMEM;
			return -ENOMEM;
		}
		t->text = text;
		t->text_size = size;
	}
	memcpy(text + t->text_len, s, n);
	t->text_len += n;
	text[t->text_len] = '\0';
	return 0;
}

/* ${NAME} or ${NAME:-default} at @p, @len bytes between the braces, replaced
 * by batond's environment; unset and without a default, by nothing. */
static int put_variable(struct parser *ps, struct token *t, const char *p, size_t len)
{
	char *name = strndup(p, len), *dash;
	const char *value;
	int r;

	if (!name) {
		ps->r = -ENOMEM;
		return -ENOMEM;
	}
	/* As libconfuse: the first ':' starts the default only if a '-' follows. */
	dash = strchr(name, ':');
	if (dash && dash[1] != '-')
		dash = NULL;
	if (dash)
		*dash = '\0';
	value = getenv(name);
	if (!value)
		value = dash ? dash + 2 : "";
	r = put(ps, t, value, strlen(value));
	free(name);
	return r;
}

/* A backslash sequence in a "string" at @p (on the backslash); returns its
 * length, or 0 after reporting it. */
static size_t put_escape(struct parser *ps, struct token *t, const char *p)
{
	static const char letters[] = "nrbfaetv", codes[] = "\n\r\b\f\a\033\t\v";
	static const char hex[] = "0123456789abcdef";
	size_t digits = strspn(p + 1, "0123456789"), len = 2;
	unsigned value = 0;
	char c;

	if (digits > 0) {
		/* libconfuse: up to three octal digits; any longer run of digits,
		 * or an 8 or a 9, is no escape. */
		if (digits > 3 || strspn(p + 1, "01234567") < digits) {
			fail_at(ps, t->line, "bad escape sequence '%.*s'", (int)digits + 1, p);
			return 0;
		}
		for (size_t i = 1; i <= digits; i++)
			value = value * 8 + (unsigned)(p[i] - '0');
		len = digits + 1;
	} else if (p[1] == 'x' && p[2] && strchr(hex, tolower((unsigned char)p[2]))) {
		for (len = 2; len < 4 && p[len] && strchr(hex, tolower((unsigned char)p[len]));
		     len++)
			value = value * 16 +
				(unsigned)(strchr(hex, tolower((unsigned char)p[len])) - hex);
	} else if (strchr(letters, p[1])) {
		value = (unsigned char)codes[strchr(letters, p[1]) - letters];
	} else {
		value = (unsigned char)p[1];
	}
	if (value > 0xff) {
		fail_at(ps, t->line, "invalid octal number '%.*s'", (int)len, p);
		return 0;
	}
	if (value == 0) {
		fail_at(ps, t->line, "bad escape sequence '%.*s': a value cannot hold a NUL byte",
			(int)len, p);
		return 0;
	}
	c = (char)value;
	return put(ps, t, &c, 1) < 0 ? 0 : len;
}

/* A "string", @ps->p on its opening quote. */
static int lex_double_quoted(struct parser *ps, struct token *t)
{
	const char *p = ps->p + 1, *no_variable_before = p;
	size_t n;

	if (put(ps, t, "", 0) < 0)
		return ps->r;
	for (;;) {
		if (*p == '\0' || (p[0] == '\\' && p[1] == '\0')) {
			fail_at(ps, t->line, "unterminated string");
			return ps->r;
		}
		if (*p == '"')
			break;
		/* Where a '${' found no '}', none before it will: scan once. */
		if (p[0] == '$' && p[1] == '{' && p >= no_variable_before) {
			no_variable_before = p + 2 + strcspn(p + 2, "}\"\n");
			if (*no_variable_before == '}')
				no_variable_before = p;
		}
		if (p[0] == '\\' && p[1] == '\n') {
			ps->line++;
			p += 2;
		} else if (*p == '\\') {
			n = put_escape(ps, t, p);
			if (n == 0)
				return ps->r;
			p += n;
		} else if (p[0] == '$' && p[1] == '{' && p == no_variable_before) {
			n = strcspn(p + 2, "}");
			if (put_variable(ps, t, p + 2, n) < 0)
				return ps->r;
			p += n + 3;
		} else {
			n = strcspn(p, "\\\"$\n");
			n += n == 0; /* a '$' that starts no variable, or a newline */
			if (*p == '\n')
				ps->line++;
			if (put(ps, t, p, n) < 0)
				return ps->r;
			p += n;
		}
	}
	ps->p = p + 1;
	return 0;
}

/* A 'string', @ps->p on its opening quote: only \\ and \' are escapes. */
static int lex_single_quoted(struct parser *ps, struct token *t)
{
	const char *p = ps->p + 1;
	size_t n;

	if (put(ps, t, "", 0) < 0)
		return ps->r;
	for (;;) {
		if (*p == '\0' || (p[0] == '\\' && p[1] == '\0')) {
			fail_at(ps, t->line, "unterminated string");
			return ps->r;
		}
		if (*p == '\'')
			break;
		if (p[0] == '\\' && p[1] == '\n') {
			ps->line++;
			p += 2;
			continue;
		}
		n = 1;
		if (p[0] == '\\' && (p[1] == '\\' || p[1] == '\''))
			p++; /* the escaped character alone */
		else if (*p == '\\')
			n = 2; /* no escape: both characters */
		if (*p == '\n')
			ps->line++;
		if (put(ps, t, p, n) < 0)
			return ps->r;
		p += n;
	}
	ps->p = p + 1;
	return 0;
}

/* Skips blanks and comments; returns -EINVAL at an unterminated comment. */
static int skip_blanks(struct parser *ps)
{
	const char *p = ps->p, *end;

	for (;;) {
		if (*p == '\n') {
			ps->line++;
			p++;
		} else if (*p == ' ' || *p == '\t' || *p == '\r') {
			p++;
		} else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
			p += strcspn(p, "\n");
		} else if (p[0] == '/' && p[1] == '*') {
			end = strstr(p + 2, "*/");
			if (!end) {
				fail_at(ps, ps->line, "unterminated comment");
				return ps->r;
			}
			for (; p < end; p++)
				ps->line += *p == '\n';
			p = end + 2;
		} else {
			ps->p = p;
			return 0;
		}
	}
}

/* The next token into @t (reset first). Returns 0, or ps->r after an error. */
static int lex(struct parser *ps, struct token *t)
{
	static const char punctuation[] = "{},=";
	static const enum token_kind kinds[] = {TOK_OPEN, TOK_CLOSE, TOK_COMMA, TOK_EQUAL};
	const char *p;

	token_reset(t);
	if (ps->r < 0 || skip_blanks(ps) < 0)
		return ps->r;
	p = ps->p;
	*t = (struct token){.kind = TOK_STRING, .line = ps->line, .raw = p};
	if (*p == '\0') {
		t->kind = TOK_EOF;
	} else if (strchr(punctuation, *p)) {
		t->kind = kinds[strchr(punctuation, *p) - punctuation];
		ps->p++;
	} else if (p[0] == '+' && p[1] == '=') {
		t->kind = TOK_APPEND;
		ps->p += 2;
	} else if (*p == '"') {
		lex_double_quoted(ps, t);
	} else if (*p == '\'') {
		lex_single_quoted(ps, t);
	} else if (p[0] == '$' && p[1] == '{' && p[2 + strcspn(p + 2, "}\n")] == '}') {
		t->is_variable = true;
		if (put(ps, t, "", 0) == 0)
			put_variable(ps, t, p + 2, strcspn(p + 2, "}"));
		ps->p += strcspn(p, "}") + 1;
	} else if (strchr(UNQUOTED_STOP, *p)) {
		t->raw_len = 1;
		fail_unexpected(ps, t, "a name or a value");
	} else {
		ps->p += strcspn(p, UNQUOTED_STOP);
		put(ps, t, p, (size_t)(ps->p - p));
	}
	t->raw_len = (size_t)(ps->p - p);
	return ps->r;
}

/* ---- Statements ---------------------------------------------------------- */

/* VALUE or { VALUE, ... } after NAME = or NAME +=, into @a. */
static void parse_values(struct parser *ps, struct conf_assignment *a)
{
	struct token t = {0};
	bool need_value = true;

	ps->option = a->name;
	if (lex(ps, &t) < 0)
		goto out;
	if (t.kind == TOK_OPEN) {
		a->is_list = true;
	} else if (t.kind != TOK_STRING) {
		fail_unexpected(ps, &t, "a value");
		goto out;
	}
	for (;;) {
		if (t.kind == TOK_STRING) {
			struct conf_value *values = grow(a->values, a->n_values, sizeof(*values));

			if (!values) {
				ps->r = -ENOMEM;
				goto out;
			}
			a->values = values;
			a->values[a->n_values++] = (struct conf_value){token_take(&t), t.line};
			if (!a->is_list)
				goto out;
			need_value = false;
		}
		if (lex(ps, &t) < 0)
			goto out;
		if (t.kind == TOK_CLOSE)
			goto out; /* a comma before it is fine, as in libconfuse */
		if (need_value && t.kind != TOK_STRING) {
			fail_unexpected(ps, &t, "a value or '}'");
			goto out;
		}
		if (!need_value && t.kind != TOK_COMMA) {
			fail_unexpected(ps, &t, "',' or '}'");
			goto out;
		}
		need_value = t.kind == TOK_COMMA;
	}
out:
	ps->option = NULL;
	token_reset(&t);
}

static void parse_assignment(struct parser *ps, struct conf_section *s, struct token *name,
			     bool append)
{
	struct conf_assignment *a = grow(s->assignments, s->n_assignments, sizeof(*a));

	if (!a) {
		ps->r = -ENOMEM;
		return;
	}
	s->assignments = a;
	a = &s->assignments[s->n_assignments++];
	*a = (struct conf_assignment){.line = name->line, .append = append};
	a->name = token_take(name);
	parse_values(ps, a);
}

/* Assignments up to the closing brace of @s. */
static void parse_section_body(struct parser *ps, struct conf_section *s)
{
	struct token name = {0}, next = {0}, title = {0};

	ps->section = s;
	while (lex(ps, &name) == 0) {
		if (name.kind == TOK_CLOSE)
			break;
		if (name.kind == TOK_EOF) {
			fail_at(ps, s->line, "missing '}' at the end of the section");
			break;
		}
		if (name.kind != TOK_STRING || name.is_variable) {
			fail_unexpected(ps, &name, "an option name");
			break;
		}
		if (lex(ps, &next) < 0)
			break;
		if (next.kind == TOK_EQUAL || next.kind == TOK_APPEND) {
			parse_assignment(ps, s, &name, next.kind == TOK_APPEND);
			continue;
		}
		/* Sections do not nest: a section here means a '}' was forgotten. */
		if (next.kind == TOK_OPEN) {
			fail_at(ps, name.line, "missing '}' before the section %s", name.text);
		} else if (next.kind == TOK_STRING && lex(ps, &title) == 0 &&
			   title.kind == TOK_OPEN) {
			fail_at(ps, name.line, "missing '}' before %s \"%s\"", name.text,
				next.text);
		} else {
			ps->option = NULL;
			fail_at(ps, next.line, "unexpected %s, expected '=' after '%s'",
				describe(ps, &next), name.text);
		}
		break;
	}
	token_reset(&name);
	token_reset(&next);
	token_reset(&title);
	ps->section = &ps->file->top;
}

static void parse_section(struct parser *ps, struct token *kind, struct token *title)
{
	struct conf_file *f = ps->file;
	struct conf_section *s = grow(f->sections, f->n_sections, sizeof(*s));

	if (!s) {
		ps->r = -ENOMEM;
		return;
	}
	f->sections = s;
	s = &f->sections[f->n_sections++];
	*s = (struct conf_section){.line = kind->line};
	s->kind = token_take(kind);
	s->title = title ? token_take(title) : NULL;
	parse_section_body(ps, s);
}

static void parse_file(struct parser *ps)
{
	struct token name = {0}, next = {0}, open = {0};

	ps->section = &ps->file->top;
	while (lex(ps, &name) == 0 && name.kind != TOK_EOF) {
		if (name.kind == TOK_CLOSE) {
			fail_at(ps, name.line, "unexpected '}': no section is open");
			break;
		}
		if (name.kind != TOK_STRING || name.is_variable) {
			fail_unexpected(ps, &name, "a section or an option name");
			break;
		}
		if (lex(ps, &next) < 0)
			break;
		if (next.kind == TOK_EQUAL || next.kind == TOK_APPEND) {
			parse_assignment(ps, &ps->file->top, &name, next.kind == TOK_APPEND);
		} else if (next.kind == TOK_OPEN) {
			parse_section(ps, &name, NULL);
		} else if (next.kind == TOK_STRING) {
			if (lex(ps, &open) < 0)
				break;
			if (open.kind != TOK_OPEN) {
				fail_at(ps, open.line, "%s \"%s\": unexpected %s, expected '{'",
					name.text, next.text, describe(ps, &open));
				break;
			}
			parse_section(ps, &name, &next);
		} else {
			fail_unexpected(ps, &next, "'=' or '{'");
			break;
		}
	}
	token_reset(&name);
	token_reset(&next);
	token_reset(&open);
}

int config_text_parse(const char *text, size_t len, struct conf_file *file,
		      config_text_report_fn *report, void *userdata)
{
	struct parser ps = {
	    .p = text, .line = 1, .file = file, .report = report, .userdata = userdata};
	const char *nul = memchr(text, '\0', len);

	if (nul) {
		for (const char *p = text; p < nul; p++)
			ps.line += *p == '\n';
		call_report(&ps, ps.line, "contains a NUL byte");
		return -EINVAL;
	}
	parse_file(&ps);
	return ps.r;
}

static void section_free(struct conf_section *s)
{
	for (size_t i = 0; i < s->n_assignments; i++) {
		struct conf_assignment *a = &s->assignments[i];

		for (size_t j = 0; j < a->n_values; j++)
			free(a->values[j].text);
		free(a->values);
		free(a->name);
	}
	free(s->assignments);
	free(s->kind);
	free(s->title);
}

void config_text_free(struct conf_file *file)
{
	section_free(&file->top);
	for (size_t i = 0; i < file->n_sections; i++)
		section_free(&file->sections[i]);
	free(file->sections);
	*file = (struct conf_file){0};
}

int config_text_read(const char *path, char **ret, size_t *ret_len)
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
	*ret = buf;
	*ret_len = len;
	return 0;
}
