/*
 * cbv_callout.h - client for the mailfromd callout protocol (calloutd,
 * cbvd): see docs/callout-protocol.md for the protocol as Debian's
 * calloutd 8.15 speaks it.
 *
 * The public interface is the slot: a kept connection to one server that
 * connects when needed, tells the server the session settings it has not
 * been told yet, runs one verification at a time (VRFY + RUN) into a
 * struct cbv_result, and reconnects after any failure.  Calls block,
 * each under an absolute deadline on the monotonic clock; sends never
 * raise SIGPIPE; no threads, no signals, no global state.  Everything the
 * server says is bounded and sanitized before it is kept.  The raw
 * connection and the line parsers underneath are core-private
 * (cbv_callout_impl.h).
 */
#ifndef CBV_CALLOUT_H
#define CBV_CALLOUT_H

#include <stddef.h>

#include "cbv_config.h"
#include "cbv_limits.h"
#include "cbv_result.h"
#include "cbv_status.h"

/* A request line we send (VRFY with its parameters), CRLF excluded. */
#define CBV_CALLOUT_REQ_MAX 2048
/* One value in SET / REST (a host name, a domain, an address). */
#define CBV_CALLOUT_VALUE_MAX 320

/*
 * Checks a mailfromd REST string ("MODE=hostonly HOST=mx.example.com
 * EHLO=... MAILFROM=...": KEY=VALUE pairs, keys case-insensitive, values
 * bare or "double-quoted" with \" and \\ escapes) and writes its canonical
 * form to out (size n): MODE=word, other values double-quoted with '"' and
 * '\' escaped.  Refuses unknown keys, a repeated key, an unknown MODE,
 * empty values, control characters (CR, LF, NUL...) and anything longer
 * than the bounds.  rest NULL or blank gives "".  CBV_OK or CBV_EINVAL.
 */
enum cbv_status cbv_callout_rest_format(const char *rest, char *out, size_t n,
                                        struct cbv_err *err);

/* The REST keys, as bits of *keys from cbv_callout_rest_parse(). */
#define CBV_REST_MODE 1u
#define CBV_REST_HOST 2u
#define CBV_REST_EHLO 4u
#define CBV_REST_MAILFROM 8u

/* cbv_callout_rest_format(), and *keys gets the CBV_REST_* bits of the
 * keys rest gives (0 on error). */
enum cbv_status cbv_callout_rest_parse(const char *rest, char *out, size_t n, unsigned *keys,
                                       struct cbv_err *err);

/*
 * The one map from a STARTTLS policy to what SET STARTTLS sends: to cbvd
 * (extended) the policy's own name; to calloutd its words (never ->
 * "never", opportunistic -> "always" = use it when offered, ondemand ->
 * "ondemand").  calloutd cannot express require: NULL, and the caller
 * must refuse rather than weaken it.
 */
const char *cbv_callout_starttls_word(enum cbv_starttls t, int extended);

/*
 * A kept connection to one callout server with the session settings to
 * give it (cbv.so's callout descriptors and `callout`, and `cbv verify
 * --server`): it connects when needed (greeting, SID), sends the SETs
 * this connection has not been told yet (as callout.mfl's
 * callout_setvars), and reconnects after any failure.
 */
struct cbv_callout_slot;

/*
 * Returns a new slot for url (checked now; nothing is sent yet), or NULL
 * with err (CBV_EINVAL, CBV_ENOMEM).  sid is sent on each connection
 * (NULL: none).  Free with cbv_callout_slot_free().
 */
struct cbv_callout_slot *cbv_callout_slot_new(const char *url, const char *sid,
                                              struct cbv_err *err);

/* Sets the SID sent on the next (re)connection (NULL or "": none). */
void cbv_callout_slot_sid(struct cbv_callout_slot *s, const char *sid);

/*
 * Connects now if disconnected and sends the SETs not yet told (what
 * cbv_callout_slot_verify() does first).  CBV_OK, or the status of the
 * failure (CBV_ECONNECT, CBV_ETIMEOUT, CBV_EPROTO, CBV_ECONFIG, CBV_EINVAL
 * for a value refused before sending, CBV_ENOMEM).
 */
enum cbv_status cbv_callout_slot_connect(struct cbv_callout_slot *s, struct cbv_err *err);

/* The URL the slot was made with. */
const char *cbv_callout_slot_url(const struct cbv_callout_slot *s);

/* The server's greeting ("" while disconnected). */
const char *cbv_callout_slot_greeting(const struct cbv_callout_slot *s);

/*
 * Takes the settings of profile p: STARTTLS, EHLO (p's helo, else
 * default_helo, else none), MAILFROM (sender if not NULL, else p's; ""
 * is sent as "<>"), timeouts (connect_timeout for connect and greeting,
 * command_timeout for SID and each SET, timeout for VRFY and RUN).
 * transcript 1 sends SET TRANSCRIPT="ON".
 */
void cbv_callout_slot_configure(struct cbv_callout_slot *s, const struct cbv_profile *p,
                                const char *sender, const char *default_helo, int transcript);

/*
 * Verifies address through the slot with mailfromd REST parameters (may
 * be NULL).  Returns CBV_OK and a new result in *out (free with
 * cbv_result_free(); elapsed_ms always set) for every verification
 * outcome: the server's answer, or one synthesized like the in-process
 * ones when the server could not answer (lost connection: transient
 * connect_failed; deadline: transient timeout; an address, EHLO or
 * MAILFROM refused before sending: bad_syntax).  Other statuses with
 * err: CBV_EPROTO (the peer does not speak the protocol or refused a
 * request: "e_callout_proto: ..."), CBV_ECONFIG (the profile requires
 * STARTTLS and the server is calloutd, which cannot honour that: nothing
 * is verified), CBV_EINVAL (a bad REST string), CBV_ENOMEM.
 */
enum cbv_status cbv_callout_slot_verify(struct cbv_callout_slot *s, const char *address,
                                        const char *rest, struct cbv_result **out,
                                        struct cbv_err *err);

/* Sends QUIT (waiting at most quit_ms), closes, frees.  Accepts NULL. */
void cbv_callout_slot_free(struct cbv_callout_slot *s, unsigned quit_ms);

#endif
