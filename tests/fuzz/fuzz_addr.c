/*
 * fuzz_addr.c - libFuzzer target for cbv_addr_parse() and
 * cbv_addr_check_domain().
 *
 * Beyond "no crash", checks what the rest of the code relies on: an
 * accepted address is within the RFC 5321 limits, carries no byte that
 * could break "RCPT TO:<...>", has a lower-case domain, and formats to a
 * string that parses back to the same address.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cbv_addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		abort();
}

/* No control byte, no angle bracket outside a quoted local part. */
static void check_bytes(const char *s, int quoted_ok)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		check(*p >= 0x20 && *p != 0x7f);
		if (!quoted_ok)
			check(*p != '<' && *p != '>');
	}
}

static void check_addr(const struct cbv_addr *a)
{
	size_t llen = strnlen(a->local, sizeof(a->local));
	size_t dlen = strnlen(a->domain, sizeof(a->domain));

	check(llen >= 1 && llen <= CBV_LOCALPART_MAX);
	check(dlen >= 1 && dlen <= CBV_DOMAIN_MAX);
	check(llen + dlen + 3 <= CBV_PATH_MAX);
	check_bytes(a->local, a->local[0] == '"');
	check_bytes(a->domain, 0);
	for (size_t i = 0; i < dlen; i++)
		check(a->domain[i] < 'A' || a->domain[i] > 'Z' ||
		      (a->literal && i >= 1 && i <= 4)); /* "[IPv6:" */
	check(a->domain[dlen - 1] != '.');
	check(!a->literal || (a->domain[0] == '[' && a->domain[dlen - 1] == ']'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cbv_addr a, b;
	struct cbv_err err;
	char buf[CBV_PATH_MAX], dom[CBV_DOMAIN_MAX + 1], dom2[CBV_DOMAIN_MAX + 1];

	if (cbv_addr_parse((const char *)data, size, &a, &err) == CBV_OK) {
		check_addr(&a);
		check(cbv_addr_format(&a, NULL, buf, sizeof(buf), &err) == CBV_OK);
		check(cbv_addr_parse(buf, strlen(buf), &b, &err) == CBV_OK);
		check(memcmp(&a, &b, sizeof(a)) == 0);
	} else {
		check(err.code == CBV_EINVAL && err.msg[0] != '\0');
		check(a.local[0] == '\0' && a.domain[0] == '\0');
	}

	if (cbv_addr_check_domain((const char *)data, size, dom, &err) == CBV_OK) {
		check(strlen(dom) >= 1 && strlen(dom) <= CBV_DOMAIN_MAX);
		check_bytes(dom, 0);
		check(cbv_addr_check_domain(dom, strlen(dom), dom2, &err) == CBV_OK);
		check(strcmp(dom, dom2) == 0);
	} else {
		check(dom[0] == '\0');
	}
	return 0;
}
