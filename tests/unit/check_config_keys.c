/*
 * check_config_keys.c - the key tables: every key's default parses, every
 * key round-trips (set -> format -> parse -> format gives the same text),
 * the server block round-trips, and every value type (including those no
 * key uses yet: long durations, sizes, rates, index enums) on a table of
 * its own, with FILE:LINE:COL errors.
 */
#include <check.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbv_config.h"
#include "cbv_config_impl.h" /* the walkers, for a table of test keys */

/* ---- the real tables ---- */

START_TEST(profile_defaults_parse)
{
	size_t n;
	const struct cbv_key *k = cbv_profile_keys(&n);
	struct cbv_profile p;
	struct cbv_err err;

	cbv_profile_defaults(&p);
	if (k[_i].def == NULL)
		return;
	ck_assert_msg(cbv_profile_set(&p, k[_i].name, k[_i].def, &err) == CBV_OK, "%s = %s: %s",
	              k[_i].name, k[_i].def, err.msg);
	cbv_profile_clear(&p);
}
END_TEST

/* Each row: its example is valid, differs from the default, and survives
 * format -> parse -> format unchanged. */
START_TEST(profile_key_round_trip)
{
	size_t n;
	const struct cbv_key *k = cbv_profile_keys(&n);
	struct cbv_profile d, p;
	struct cbv_config *c;
	struct cbv_err err;
	char *def, *a, *b, line[64];

	ck_assert_ptr_nonnull(k[_i].name);
	ck_assert_ptr_nonnull(k[_i].example);
	ck_assert_ptr_nonnull(k[_i].doc);
	cbv_profile_defaults(&d);
	cbv_profile_defaults(&p);
	ck_assert_msg(cbv_profile_set(&p, k[_i].name, k[_i].example, &err) == CBV_OK, "%s = %s: %s",
	              k[_i].name, k[_i].example, err.msg);
	def = cbv_profile_format(&d);
	a = cbv_profile_format(&p);
	ck_assert_msg(strcmp(def, a) != 0, "%s: example %s is the default", k[_i].name,
	              k[_i].example);
	snprintf(line, sizeof(line), "\n  %s = ", k[_i].name);
	ck_assert_msg(strstr(a, line) != NULL, "%s not formatted:\n%s", k[_i].name, a);
	c = cbv_config_parse(a, strlen(a), "formatted", &err);
	ck_assert_msg(c != NULL, "%s: %s\n%s", k[_i].name, err.msg, a);
	b = cbv_profile_format(cbv_config_profile(c, NULL));
	ck_assert_str_eq(a, b);
	cbv_free(def);
	cbv_free(a);
	cbv_free(b);
	cbv_config_free(c);
	cbv_profile_clear(&p);
}
END_TEST

/* No two rows share a name or a field. */
START_TEST(tables_unique)
{
	size_t n, m;
	const struct cbv_key *k = cbv_profile_keys(&n);
	const struct cbv_key *s = cbv_server_keys(&m);

	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++) {
			ck_assert_str_ne(k[i].name, k[j].name);
			ck_assert_uint_ne(k[i].offset, k[j].offset);
		}
	for (size_t i = 0; i < m; i++)
		for (size_t j = i + 1; j < m; j++) {
			ck_assert_str_ne(s[i].name, s[j].name);
			ck_assert_uint_ne(s[i].offset, s[j].offset);
		}
}
END_TEST

/* The server block: each row's example in a block, formatted and re-read. */
START_TEST(server_key_round_trip)
{
	size_t n;
	const struct cbv_key *k = cbv_server_keys(&n);
	struct cbv_server_conf d;
	struct cbv_config *c;
	struct cbv_err err;
	char text[1024], *def, *a, *b;

	snprintf(text, sizeof(text), "smtp_cbv { }\nserver {\n  %s = %s\n}\n", k[_i].name,
	         k[_i].example);
	c = cbv_config_parse(text, strlen(text), "t.conf", &err);
	ck_assert_msg(c != NULL, "%s: %s", text, err.msg);
	a = cbv_server_conf_format(cbv_config_server(c));
	cbv_config_free(c);
	cbv_server_conf_defaults(&d);
	def = cbv_server_conf_format(&d);
	ck_assert_msg(strcmp(def, a) != 0, "%s: example is the default", k[_i].name);
	snprintf(text, sizeof(text), "smtp_cbv { }\n%s", a);
	c = cbv_config_parse(text, strlen(text), "formatted", &err);
	ck_assert_msg(c != NULL, "%s: %s", text, err.msg);
	b = cbv_server_conf_format(cbv_config_server(c));
	ck_assert_str_eq(a, b);
	cbv_free(def);
	cbv_free(a);
	cbv_free(b);
	cbv_config_free(c);
}
END_TEST

START_TEST(server_defaults)
{
	struct cbv_server_conf s;
	char *t;

	memset(&s, 0x5a, sizeof(s));
	cbv_server_conf_defaults(&s);
	ck_assert_uint_eq(s.nlisten, 0);
	ck_assert_uint_eq(s.max_clients, 256);
	ck_assert_uint_eq(s.max_inflight, 1024);
	ck_assert_str_eq(s.user, "");
	ck_assert_str_eq(s.profile, "");
	ck_assert_int_eq(s.allow_remote, 0);
	t = cbv_server_conf_format(&s);
	ck_assert_str_eq(t, "server {\n  listen = [ ]\n  max_clients = 256\n  max_inflight = 1024\n"
	                    "  user = \"\"\n  profile = \"\"\n  allow_remote = no\n"
	                    "  metrics_listen = \"\"\n  metrics_allow_remote = no\n}\n");
	cbv_free(t);
}
END_TEST

/* The README's key reference and the shipped cbv.conf name every key. */
START_TEST(docs_name_every_key)
{
	static const char *const files[] = { "README", "exim-conf/cbv.conf" };
	const char *dir = getenv("CBV_SRCDIR") != NULL ? getenv("CBV_SRCDIR") : ".";
	size_t n;
	const struct cbv_key *k = cbv_profile_keys(&n);
	char path[4096], want[80];
	char *text = calloc(1, 1 << 20);
	FILE *f;
	size_t len;

	ck_assert_ptr_nonnull(text);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		f = fopen(path, "r");
		ck_assert_msg(f != NULL, "%s", path);
		len = fread(text, 1, (1 << 20) - 1, f);
		text[len] = '\0';
		fclose(f);
		for (size_t j = 0; j < n; j++) {
			snprintf(want, sizeof(want), i == 0 ? "| %s |" : "  %s = ", k[j].name);
			ck_assert_msg(strstr(text, want) != NULL, "%s does not document %s",
			              files[i], k[j].name);
		}
	}
	free(text);
}
END_TEST

/* ---- every value type, on a table of test keys ---- */

struct tconf {
	unsigned ttl;      /* SECS */
	uint64_t map_size; /* SIZE */
	struct cbv_rate rate;
	int mode;          /* ENUM, index */
	unsigned ms;       /* MS with a lower bound */
	char names[3][16]; /* LIST */
	size_t nnames;
};

static const char *const modes[] = { "mxfirst", "mxonly", "hostonly", "hostfirst", NULL };

static const struct cbv_key tkeys[] = {
	{ .name = "ttl",
	  .type = CBV_KEY_SECS,
	  .offset = offsetof(struct tconf, ttl),
	  .min = 1,
	  .max = 365 * 86400,
	  .def = "1d" },
	{ .name = "map_size",
	  .type = CBV_KEY_SIZE,
	  .offset = offsetof(struct tconf, map_size),
	  .min = 1 << 20,
	  .max = 1ULL << 40,
	  .def = "256M" },
	{ .name = "rate",
	  .type = CBV_KEY_RATE,
	  .offset = offsetof(struct tconf, rate),
	  .max = 1000000,
	  .def = "0" },
	{ .name = "mode",
	  .type = CBV_KEY_ENUM,
	  .offset = offsetof(struct tconf, mode),
	  .words = modes,
	  .def = "mxfirst" },
	{ .name = "ms",
	  .type = CBV_KEY_MS,
	  .offset = offsetof(struct tconf, ms),
	  .min = 100,
	  .max = 60000,
	  .def = "1s" },
	{ .name = "names",
	  .type = CBV_KEY_LIST,
	  .offset = offsetof(struct tconf, names),
	  .size = 16,
	  .count_offset = offsetof(struct tconf, nnames),
	  .max = 3 },
};

static const struct {
	const char *key, *value;
	const char *expect; /* format line when ok, else the whole error message */
	int ok;
} types[] = {
	{ "ttl", "24h", "  ttl = 1d\n", 1 },
	{ "ttl", "7d", "  ttl = 1w\n", 1 },
	{ "ttl", "90", "  ttl = 1m30s\n", 1 },
	{ "ttl", "1w2d3h", "  ttl = 1w2d3h\n", 1 },
	{ "ttl", "52w1d", "  ttl = 52w1d\n", 1 }, /* 365 days, the max */
	{ "ttl", "1s", "  ttl = 1s\n", 1 },
	{ "ttl", "-1", "t.conf:2:3: ttl: \"-1\" is not a duration (such as 30s, 2m, 1m30s, 500ms)",
	  0 },
	{ "ttl", "10y",
	  "t.conf:2:3: ttl: \"10y\" is not a duration (such as 30s, 2m, 1m30s, 500ms)", 0 },
	{ "ttl", "53w", "t.conf:2:3: ttl: duration \"53w\" longer than 52w1d", 0 },
	{ "ttl", "99999999999999999999w",
	  "t.conf:2:3: ttl: duration \"99999999999999999999w\" longer than 52w1d", 0 },
	{ "ttl", "0", "t.conf:2:3: ttl: duration \"0\" must be more than 0", 0 },
	{ "ttl", "1500ms", "t.conf:2:3: ttl: duration \"1500ms\": whole seconds only", 0 },
	{ "map_size", "256M", "  map_size = 256M\n", 1 },
	{ "map_size", "256m", "  map_size = 256M\n", 1 },
	{ "map_size", "1024K", "  map_size = 1M\n", 1 },
	{ "map_size", "1536K", "  map_size = 1536K\n", 1 },
	{ "map_size", "2G", "  map_size = 2G\n", 1 },
	{ "map_size", "1048577", "  map_size = 1048577\n", 1 },
	{ "map_size", "4096", "t.conf:2:3: map_size: 4096 out of range 1M..1024G", 0 },
	{ "map_size", "1025G", "t.conf:2:3: map_size: 1025G out of range 1M..1024G", 0 },
	{ "map_size", "99999999999999999999G",
	  "t.conf:2:3: map_size: 99999999999999999999G out of range", 0 },
	{ "map_size", "1T",
	  "t.conf:2:3: map_size: \"1T\" is not a size (such as 4096, 64K, 256M, 2G)", 0 },
	{ "map_size", "M", "t.conf:2:3: map_size: \"M\" is not a size", 0 },
	{ "map_size", "-1M", "t.conf:2:3: map_size: \"-1M\" is not a size", 0 },
	{ "map_size", "\"\"", "t.conf:2:3: map_size: empty size", 0 },
	{ "rate", "60/1m", "  rate = 60/1m\n", 1 },
	{ "rate", "10/90", "  rate = 10/1m30s\n", 1 },
	{ "rate", "5/500ms", "  rate = 5/500ms\n", 1 },
	{ "rate", "0", "  rate = 0\n", 1 },
	{ "rate", "0/1m", "  rate = 0\n", 1 },
	{ "rate", "1000/1d", "  rate = 1000/1d\n", 1 },
	{ "rate", "10", "t.conf:2:3: rate: \"10\": write N/DURATION such as 60/1m", 0 },
	{ "rate", "10/0", "t.conf:2:3: rate: \"10/0\": duration \"0\" must be more than 0", 0 },
	{ "rate", "10/2w", "t.conf:2:3: rate: \"10/2w\": duration \"2w\" longer than 1w", 0 },
	{ "rate", "10/1x", "t.conf:2:3: rate: \"10/1x\": \"1x\" is not a duration", 0 },
	{ "rate", "x/1m", "t.conf:2:3: rate: \"x/1m\": count \"x\" is not a number", 0 },
	{ "rate", "2000000/1s",
	  "t.conf:2:3: rate: \"2000000/1s\": count 2000000 out of range 0..1000000", 0 },
	{ "rate", "/1m", "t.conf:2:3: rate: \"/1m\": count empty number", 0 },
	{ "mode", "HostOnly", "  mode = hostonly\n", 1 },
	{ "mode", "bogus",
	  "t.conf:2:3: mode: \"bogus\": must be mxfirst, mxonly, hostonly or hostfirst", 0 },
	{ "ms", "100ms", "  ms = 100ms\n", 1 },
	{ "ms", "99ms", "t.conf:2:3: ms: duration \"99ms\" shorter than 100ms", 0 },
	{ "ms", "61s", "t.conf:2:3: ms: duration \"61s\" longer than 60s", 0 },
	{ "names", "[ a \"b c\" ]", "  names = [ \"a\" \"b c\" ]\n", 1 },
	{ "names", "[ ]", "  names = [ ]\n", 1 },
	{ "names", "[ a b c d ]", "t.conf:2:11: names: more than 3 values", 0 },
	{ "names", "[ 0123456789abcdef ]", "t.conf:2:5: names: longer than 15 bytes", 0 },
};

START_TEST(type_table)
{
	const struct cbv_key *k =
		cbv_config_key_find(tkeys, sizeof(tkeys) / sizeof(tkeys[0]), types[_i].key);
	struct tconf t;
	struct lexer *lx = malloc(sizeof(*lx));
	struct cbv_err err;
	char text[256];
	enum cbv_status st;
	char *s;

	ck_assert_ptr_nonnull(k);
	ck_assert_ptr_nonnull(lx);
	memset(&t, 0, sizeof(t));
	cbv_config_keys_defaults(tkeys, sizeof(tkeys) / sizeof(tkeys[0]), &t);
	/* A file: the value on line 2, column 3 ("KEY =" was read before). */
	snprintf(text, sizeof(text), "\n  %s", types[_i].value);
	cbv_config_lx_init(lx, text, strlen(text), "t.conf", &err);
	lx->key = k->name;
	memset(&err, 0, sizeof(err));
	st = cbv_config_key_parse(lx, k, &t);
	if (types[_i].ok) {
		ck_assert_msg(st == CBV_OK, "%s = %s: %s", types[_i].key, types[_i].value, err.msg);
		s = cbv_config_keys_format(tkeys, sizeof(tkeys) / sizeof(tkeys[0]), &t, "test");
		ck_assert_msg(strstr(s, types[_i].expect) != NULL, "\"%s\" not in\n%s",
		              types[_i].expect, s);
		cbv_free(s);
	} else {
		ck_assert_int_eq(st, CBV_ECONFIG);
		ck_assert_msg(strncmp(err.msg, types[_i].expect, strlen(types[_i].expect)) == 0,
		              "%s = %s\n  want: %s\n  got:  %s", types[_i].key, types[_i].value,
		              types[_i].expect, err.msg);
	}
	free(lx);
}
END_TEST

/* The test table's defaults and its whole format -> parse round trip. */
START_TEST(type_defaults_round_trip)
{
	struct tconf t, u;
	struct lexer *lx = malloc(sizeof(*lx));
	struct cbv_err err;
	const size_t n = sizeof(tkeys) / sizeof(tkeys[0]);
	char *a, *b;

	memset(&t, 0, sizeof(t));
	cbv_config_keys_defaults(tkeys, n, &t);
	ck_assert_uint_eq(t.ttl, 86400);
	ck_assert_uint_eq(t.map_size, 256ULL << 20);
	ck_assert_uint_eq(t.rate.count, 0);
	ck_assert_int_eq(t.mode, 0);
	ck_assert_uint_eq(t.ms, 1000);
	ck_assert_uint_eq(t.nnames, 0);
	a = cbv_config_keys_format(tkeys, n, &t, "test");
	ck_assert_str_eq(a, "test {\n  ttl = 1d\n  map_size = 256M\n  rate = 0\n  mode = mxfirst\n"
	                    "  ms = 1s\n  names = [ ]\n}\n");
	/* Every line's value, read back into a zeroed struct, gives it again. */
	memset(&u, 0, sizeof(u));
	for (size_t i = 0; i < n; i++) {
		const char *v = strstr(a, tkeys[i].name) + strlen(tkeys[i].name) + 3;
		const char *nl = strchr(v, '\n');

		cbv_config_lx_init(lx, v, (size_t)(nl - v), "t.conf", &err);
		lx->key = tkeys[i].name;
		ck_assert_int_eq(cbv_config_key_parse(lx, &tkeys[i], &u), CBV_OK);
	}
	b = cbv_config_keys_format(tkeys, n, &u, "test");
	ck_assert_str_eq(a, b);
	cbv_free(a);
	cbv_free(b);
	free(lx);
}
END_TEST

static Suite *keys_suite(void)
{
	Suite *s = suite_create("config_keys");
	TCase *tc;
	size_t np, ns;

	cbv_profile_keys(&np);
	cbv_server_keys(&ns);
	tc = tcase_create("tables");
	tcase_add_loop_test(tc, profile_defaults_parse, 0, (int)np);
	tcase_add_loop_test(tc, profile_key_round_trip, 0, (int)np);
	tcase_add_loop_test(tc, server_key_round_trip, 0, (int)ns);
	tcase_add_test(tc, tables_unique);
	tcase_add_test(tc, server_defaults);
	tcase_add_test(tc, docs_name_every_key);
	suite_add_tcase(s, tc);
	tc = tcase_create("types");
	tcase_add_loop_test(tc, type_table, 0, sizeof(types) / sizeof(types[0]));
	tcase_add_test(tc, type_defaults_round_trip);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(keys_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
