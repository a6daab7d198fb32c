/*
 * cbv.h - the public API of libcbv, the only core header that dlfunc/,
 * cli/ and server/ include.
 *
 *   struct cbv_config *c = cbv_config_load("/etc/exim4/cbv.conf", NULL, &err);
 *   const struct cbv_profile *p = cbv_config_profile(c, NULL);
 *   struct cbv_request req = { .address = "user@example.com" };
 *   struct cbv_result *r;
 *   if (cbv_verify(p, &req, &r, &err) == CBV_OK) {
 *       puts(cbv_verdict_name(r->verdict));   // pass fail transient error
 *       cbv_result_free(r);
 *   }
 *   cbv_config_free(c);
 *
 * Logging goes to the sink set with cbv_log_set(); nothing prints.
 */
#ifndef CBV_H
#define CBV_H

#include "cbv_config.h"
#include "cbv_log.h"
#include "cbv_map.h"
#include "cbv_result.h"
#include "cbv_status.h"
#include "cbv_text.h"
#include "cbv_url.h"
#include "cbv_verify.h"

#define CBV_VERSION "0.1.0"

#endif
