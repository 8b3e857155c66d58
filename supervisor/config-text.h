/* SPDX-License-Identifier: MIT */
/* batond.conf's syntax: reads the file and parses its text into sections of
 * assignments, every name and value with its line. Knows no option and no
 * value: config.c gives them their meaning and checks them. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct conf_value {
	char *text; /* quotes and escapes removed, ${NAME} replaced */
	int line;
};

/* NAME = VALUE, NAME = { VALUE, ... } or NAME += ... */
struct conf_assignment {
	char *name;
	int line;
	bool append;  /* += */
	bool is_list; /* written in braces */
	struct conf_value *values;
	size_t n_values;
};

/* KIND { ... } or KIND TITLE { ... } */
struct conf_section {
	char *kind;  /* NULL for what stands outside any section */
	char *title; /* NULL if none was written */
	int line;    /* of the section's first token */
	struct conf_assignment *assignments;
	size_t n_assignments;
};

struct conf_file {
	struct conf_section top; /* assignments outside any section */
	struct conf_section *sections;
	size_t n_sections;
};

/* Receives a syntax error, as a printf format and its arguments. */
typedef void config_text_report_fn(void *userdata, int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Reads @path whole into *ret (NUL-terminated, NUL bytes within kept) and its
 * length into *ret_len; the caller frees it. Returns 0, -EFBIG if the file is
 * larger than 4 MiB, or another -errno; nothing is returned on failure. */
int config_text_read(const char *path, char **ret, size_t *ret_len);

/* Parses the @len bytes of @text into @file (zeroed by the caller; free it with
 * config_text_free(), on failure too). The first syntax error goes to @report
 * and ends the parse. Returns 0, -EINVAL after a syntax error, or -ENOMEM. */
int config_text_parse(const char *text, size_t len, struct conf_file *file,
		      config_text_report_fn *report, void *userdata);

void config_text_free(struct conf_file *file);
