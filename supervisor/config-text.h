/* batond.conf as text, before libconfuse sees it: read whole, comments blanked,
 * the line of each section title noted. Knows no option and no value; config.c
 * parses and checks those. */
#pragma once

#include <stdarg.h>
#include <stddef.h>

/* Where `listener NAME {`, `app NAME {` or `control {` starts. libconfuse only
 * knows the line of a section's closing brace. */
struct section_mark {
	const char *kind; /* "control", "listener" or "app" */
	char *title;	  /* NULL for control */
	int line;
};

struct section_marks {
	struct section_mark *marks; /* in the order of the file */
	size_t n_marks;
};

/* Receives each problem found in the text, as a printf format and its arguments. */
typedef void config_text_report_fn(void *userdata, int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Reads @path whole into *ret, NUL-terminated; the caller frees it. Returns 0,
 * -EFBIG if the file is larger than 4 MiB, -EBADMSG if it contains a NUL byte,
 * or another -errno; *ret is untouched on failure. */
int config_text_read(const char *path, char **ret);

/* Blanks every comment in @text in place, newlines kept, so that libconfuse
 * counts lines right, and appends each section's first line to @sections
 * (zeroed by the caller; free it with config_text_sections_free(), on failure
 * too). An unterminated comment, a duplicate section and a section left open
 * at the end of the file go to @report. Returns 0, or -ENOMEM when a mark could
 * not be stored; the text is blanked all the same. */
int config_text_prepare(char *text, struct section_marks *sections, config_text_report_fn *report,
			void *userdata);

void config_text_sections_free(struct section_marks *sections);
