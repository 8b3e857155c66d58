/* SPDX-License-Identifier: MIT */
/* The re-exec state's building blocks (reexec.h): JSON members, fds to keep,
 * configurations by index. In the engine library: every module writes and
 * reads its own part with them. */
#include "reexec.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void rx_set(struct json_object *o, const char *key, struct json_object *v)
{
	json_object_object_add(o, key, v);
}

void rx_set_int(struct json_object *o, const char *key, int64_t v)
{
	rx_set(o, key, json_object_new_int64(v));
}

void rx_set_str(struct json_object *o, const char *key, const char *v)
{
	rx_set(o, key, json_object_new_string(v ? v : ""));
}

void rx_set_bool(struct json_object *o, const char *key, bool v)
{
	rx_set(o, key, json_object_new_boolean(v));
}

static struct json_object *member(struct json_object *o, const char *key, json_type type)
{
	struct json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, type))
		return NULL;
	return v;
}

int64_t rx_int(struct json_object *o, const char *key, int64_t dflt)
{
	struct json_object *v = member(o, key, json_type_int);
	return v ? json_object_get_int64(v) : dflt;
}

const char *rx_str(struct json_object *o, const char *key)
{
	struct json_object *v = member(o, key, json_type_string);
	return v ? json_object_get_string(v) : NULL;
}

bool rx_bool(struct json_object *o, const char *key)
{
	struct json_object *v = member(o, key, json_type_boolean);
	return v && json_object_get_boolean(v);
}

size_t rx_len(struct json_object *o, const char *key)
{
	struct json_object *v = member(o, key, json_type_array);
	return v ? json_object_array_length(v) : 0;
}

struct json_object *rx_at(struct json_object *o, const char *key, size_t i)
{
	struct json_object *v = member(o, key, json_type_array);
	return v ? json_object_array_get_idx(v, i) : NULL;
}

void rx_set_hex(struct json_object *o, const char *key, const void *data, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	char *hex = malloc(2 * len + 1);
	if (!hex) {
		rx_set(o, key, NULL); /* read back as absent: a bad state, refused */
		return;
	}
	for (size_t i = 0; i < len; i++) {
		hex[2 * i] = digits[((const uint8_t *)data)[i] >> 4];
		hex[2 * i + 1] = digits[((const uint8_t *)data)[i] & 15];
	}
	hex[2 * len] = 0;
	rx_set(o, key, json_object_new_string_len(hex, (int)(2 * len)));
	free(hex);
}

static int hex_digit(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int rx_hex(struct json_object *o, const char *key, void *buf, size_t cap, size_t *ret_len)
{
	const char *hex = rx_str(o, key);
	size_t len = hex ? strlen(hex) : 0;
	if (!hex || len % 2 || len / 2 > cap)
		return -EINVAL;
	for (size_t i = 0; i < len / 2; i++) {
		int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		((uint8_t *)buf)[i] = (uint8_t)(hi << 4 | lo);
	}
	*ret_len = len / 2;
	return 0;
}

int reexec_keep_fd(struct reexec_save *s, int fd)
{
	if (fd < 0)
		return -1;
	if (s->n_fds == s->cap_fds) {
		size_t cap = s->cap_fds ? 2 * s->cap_fds : 64;
		int *fds = realloc(s->fds, cap * sizeof(*fds));
		if (!fds) {
			s->failed = true;
			return fd;
		}
		s->fds = fds;
		s->cap_fds = cap;
	}
	s->fds[s->n_fds++] = fd;
	return fd;
}

int reexec_config_index(struct reexec_save *s, struct config_ref *r)
{
	for (size_t i = 0; i < s->n_configs; i++)
		if (s->configs[i] == r)
			return (int)i;
	struct config_ref **configs = realloc(s->configs, (s->n_configs + 1) * sizeof(*configs));
	if (!configs) {
		s->failed = true;
		return 0;
	}
	s->configs = configs;
	configs[s->n_configs] = r;
	return (int)s->n_configs++;
}

