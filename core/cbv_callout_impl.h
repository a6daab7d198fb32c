/*
 * cbv_callout_impl.h - core-private part of the callout client: one raw
 * connection to a callout server (open, SID, SET, VRFY+RUN, QUIT) and
 * the parsers of the server's lines.  The public interface is the slot
 * in cbv_callout.h, built on these; only core/cbv_callout.c, the unit
 * tests and the fuzz target include this header (it is not installed in
 * the public include directory, see cbv.h).
 *
 * A connection is opened on a URL (unix:///path, inet://host:port), reads
 * the greeting ("OK ..."), then takes SID and SET lines, and runs one
 * verification at a time with VRFY + RUN, turning the server's progress
 * lines ("* ID INIT|GRTNG|HELO|SENT|RECV text") and final line
 * ("OK ID=word ...") into a struct cbv_result.  Calls block, each under
 * an absolute deadline measured with poll() on the monotonic clock; the
 * socket itself is non-blocking and sends never raise SIGPIPE.  No
 * threads, no signals, no global state.
 *
 * Every read is bounded: a line is at most CBV_CALLOUT_LINE_MAX bytes, one
 * RUN at most CBV_CALLOUT_RUN_LINES_MAX lines.  Everything the server says
 * is sanitized (controls and 8-bit bytes -> '?') before it is kept.
 *
 * Statuses: CBV_OK (an answer, verdict in the result); CBV_EPROTO when the
 * peer does not speak the protocol or refuses a request (message starts
 * with "e_callout_proto: ", as mailfromd's exception is named);
 * CBV_ECONNECT (cannot connect, or closed); CBV_ETIMEOUT (deadline);
 * CBV_EINVAL (bad URL, address or REST string: nothing was sent);
 * CBV_ENOMEM.  After any status but CBV_OK and CBV_EINVAL the connection is
 * out of step with the server: free it and open a new one.
 */
#ifndef CBV_CALLOUT_IMPL_H
#define CBV_CALLOUT_IMPL_H

#include <stddef.h>

#include "cbv_callout.h"
#include "cbv_limits.h"
#include "cbv_result_impl.h"
#include "cbv_status.h"

/* One protocol line from the server: an SMTP reply line plus its prefix. */
#define CBV_CALLOUT_LINE_MAX (CBV_REPLY_LINE_MAX + 64)
/* Lines one RUN may send before its final line (progress of all jobs). */
#define CBV_CALLOUT_RUN_LINES_MAX 1024
/* A job id: calloutd sends 10 digits. */
#define CBV_CALLOUT_ID_MAX 20

struct cbv_callout;

enum cbv_callout_kind {
	CBV_CALLOUT_LINE_OK,       /* "OK" [SP text] */
	CBV_CALLOUT_LINE_NO,       /* "NO" [SP text] */
	CBV_CALLOUT_LINE_PROGRESS, /* "*" SP ID SP TAG [SP text] */
	CBV_CALLOUT_LINE_BAD       /* anything else: not the protocol */
};

/* One server line, as cbv_callout_line_parse() splits it. */
struct cbv_callout_line {
	enum cbv_callout_kind kind;
	char id[CBV_CALLOUT_ID_MAX + 1]; /* progress: the job id (digits) */
	char tag[8];                     /* progress: INIT GRTNG HELO SENT RECV (or other A-Z word) */
	const char *text;                /* points into the line; not NUL-terminated */
	size_t text_len;
};

/*
 * Splits one line (len bytes, CR LF already removed, may hold any bytes)
 * into *out.  Command words are matched case-insensitively; the text is
 * not copied (out->text points into line).  Returns out->kind.
 */
enum cbv_callout_kind cbv_callout_line_parse(const char *line, size_t len,
                                             struct cbv_callout_line *out);

/*
 * Finds job id in the text of a final "OK" line ("ID=word ID=word ...":
 * calloutd reports every job of the session still queued) and sets
 * *word to its result word (static string: "success", "not_found",
 * "failure", "temp_failure" or "timeout").  Returns 1 if found with a
 * known word, 0 if the id is absent, -1 if the text is malformed or the
 * word unknown.
 */
int cbv_callout_final_parse(const char *text, size_t len, const char *id,
                            const char **word);

/* Maps a result word to a verdict: success -> CBV_PASS, not_found ->
 * CBV_FAIL, temp_failure and timeout -> CBV_TRANSIENT, failure -> CBV_ERROR. */
enum cbv_verdict cbv_callout_word_verdict(const char *word);

/*
 * Connects to url and reads the greeting, all before now + timeout_ms.
 * Returns CBV_OK and a new connection in *out (free with
 * cbv_callout_close() or cbv_callout_free()), or a status and *out NULL.
 */
enum cbv_status cbv_callout_open(const char *url, unsigned timeout_ms,
                                 struct cbv_callout **out, struct cbv_err *err);

/* The server's greeting text (after "OK "), sanitized. */
const char *cbv_callout_greeting(const struct cbv_callout *c);

/* The socket, for callers that keep a table of connections. */
int cbv_callout_fd(const struct cbv_callout *c);

/*
 * Sends "SID sid" (sid: printable, no spaces, at most CBV_NAME_MAX bytes;
 * mailfromd sends "CLIENT_ADDR:QUEUE_ID") and reads "OK".
 */
enum cbv_status cbv_callout_sid(struct cbv_callout *c, const char *sid,
                                unsigned timeout_ms, struct cbv_err *err);

/*
 * Sends SET NAME="value" and reads "OK".  name is one of MAILFROM, EHLO,
 * STARTTLS, TRANSCRIPT (calloutd closes the connection on any other
 * name, so we refuse them with CBV_EINVAL); value is quoted as
 * callout.mfl quotes it ('"' and '\' escaped) and must hold no control
 * character.
 */
enum cbv_status cbv_callout_set(struct cbv_callout *c, const char *name,
                                const char *value, unsigned timeout_ms,
                                struct cbv_err *err);

/*
 * Verifies address: VRFY "address" [REST], then RUN, and collects the
 * progress lines of this job into a new result (*out, free with
 * cbv_result_free()): host/ip from INIT, greeting from GRTNG, helo from
 * HELO, sent from SENT, recv from RECV, verdict from the final line,
 * message = the last RECV or a synthesized reply, cache = 1 when the
 * server sent no progress for the job (calloutd's cache answered).  If
 * the result is not definitive, the job is dropped (DROP ID) so calloutd
 * does not run it again on the next RUN.  rest may be NULL.  The whole
 * exchange ends before now + timeout_ms.
 */
enum cbv_status cbv_callout_verify(struct cbv_callout *c, const char *address,
                                   const char *rest, unsigned timeout_ms,
                                   struct cbv_result **out, struct cbv_err *err);

/*
 * Sends QUIT, waits at most timeout_ms for "OK bye" (best effort: the
 * answer does not matter), closes and frees.  Accepts NULL.
 */
void cbv_callout_close(struct cbv_callout *c, unsigned timeout_ms);

/* Closes and frees without QUIT.  Accepts NULL. */
void cbv_callout_free(struct cbv_callout *c);

/*
 * 1 if the server is cbvd with its extensions (its greeting says
 * "XCBV"): it takes our STARTTLS policy words exactly and reports its own
 * verdict in "* ID XCBV" lines (docs/callout-protocol.md).  0 for calloutd.
 */
int cbv_callout_extended(const struct cbv_callout *c);

#endif
