/*
 * cbv.h - the public API of libcbv, the only core header that dlfunc/,
 * cli/ and server/ include.
 *
 *   struct cbv_config *c = cbv_config_load("/etc/exim4/cbv.conf", 1, NULL, &err);
 *   const struct cbv_profile *p = cbv_config_profile(c, NULL);
 *   struct cbv_request req = { .address = "user@example.com" };
 *   struct cbv_result *r;
 *   if (cbv_verify(p, &req, &r, &err) == CBV_OK) {
 *       puts(cbv_verdict_name(r->verdict));   // pass fail transient error
 *       cbv_result_free(r);
 *   }
 *   cbv_config_free(c);
 *
 * What the drivers get, header by header (each is included below):
 *   cbv_status.h   enum cbv_status, struct cbv_err, cbv_malloc() and friends
 *   cbv_limits.h   every size and time limit
 *   cbv_log.h      the log sink (cbv_log_set) and the transcript hook type
 *   cbv_clock.h    the monotonic clock the machine's wake times are on
 *   cbv_text.h     text hygiene: escape, sanitize, UTF-8, quoted strings
 *   cbv_addr.h     address and domain syntax (`cbv cache` names records)
 *   cbv_url.h      the one socket URL grammar (callout_url, cbvd listen)
 *   cbv_map.h      the domain map of a profile
 *   cbv_config.h   cbv.conf: profiles (struct cbv_profile is a plain value:
 *                  copied, changed with cbv_profile_set()), the server block,
 *                  the key table (introspection) and the number parsers
 *                  (cbv_cidr.h: the deny_networks entries it holds)
 *   cbv_result.h   verdict, reason word, message, last poll record
 *   cbv_verify.h   one verification: cbv_verify() (synchronous) or the
 *                  non-blocking machine (cbv_verify_new/_pollfds/_process)
 *   cbv_callout.h  the callout client slot (cbv.so's callout*, cbv -S)
 *   cbv_cproto.h   the server side of the callout protocol (cbvd)
 *   cbv_cache.h    the verification cache, for its maintenance (`cbv cache`)
 *                  (cbv_cache_rec.h: the record it shows)
 *   cbv_cache_async.h  cbv_cache_async_set(): Redis calls never block (cbvd)
 *   cbv_stats.h    counters for operators and their Prometheus text
 *   cbv_http.h     the request parser of cbvd's metrics listener
 *
 * Everything else under core/ is private: the SMTP session and its reply
 * parser, DNS, sockets, TLS, the line buffer, the config lexer
 * (cbv_config_impl.h), the reply -> verdict mapping (cbv_result_impl.h)
 * and the raw callout connection (cbv_callout_impl.h); their structs are
 * out of the drivers' reach, like c-ares' ares_private.h.  The Makefile
 * enforces it: it copies exactly the headers above into $(B)/include and
 * compiles cli/, dlfunc/ and server/ with that directory only on the
 * include path (not -Icore), so including a private header there fails
 * to build.  Tests and bench/ keep -Icore: they test internals.
 *
 * Logging goes to the sink set with cbv_log_set(); nothing prints.
 */
#ifndef CBV_H
#define CBV_H

#include "cbv_addr.h"
#include "cbv_cache.h"
#include "cbv_cache_async.h"
#include "cbv_callout.h"
#include "cbv_clock.h"
#include "cbv_config.h"
#include "cbv_cproto.h"
#include "cbv_http.h"
#include "cbv_limits.h"
#include "cbv_log.h"
#include "cbv_map.h"
#include "cbv_result.h"
#include "cbv_stats.h"
#include "cbv_status.h"
#include "cbv_text.h"
#include "cbv_url.h"
#include "cbv_verify.h"

/* The version comes from the top-level VERSION file, through the Makefile. */
#ifndef CBV_VERSION
#error "CBV_VERSION is set by the Makefile from the VERSION file"
#endif

#endif
