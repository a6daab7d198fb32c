/*
 * cbv_result_impl.h - core-private part of the result module: where an
 * SMTP conversation stopped (enum cbv_stage), the one mapping from a
 * reply or a local outcome to a verdict and reason word, and the setters
 * that write a synthesized verdict into a result.  Used by cbv_verify,
 * cbv_session and the callout client; not in the public include
 * directory (see cbv.h), so a driver can read a verdict but never decide
 * one.
 */
#ifndef CBV_RESULT_IMPL_H
#define CBV_RESULT_IMPL_H

#include "cbv_result.h"

/*
 * Where an SMTP conversation stopped: the command whose reply decided
 * (CBV_STAGE_GREETING: the greeting itself).  Kept here, not in the
 * session, because the reply -> verdict mapping below needs it and the
 * callout client has no session.
 */
enum cbv_stage {
	CBV_STAGE_CONNECT,
	CBV_STAGE_GREETING,
	CBV_STAGE_EHLO,
	CBV_STAGE_HELO,
	CBV_STAGE_STARTTLS,
	CBV_STAGE_TLS,     /* the handshake itself */
	CBV_STAGE_RSET,
	CBV_STAGE_MAIL,
	CBV_STAGE_RCPT,
	CBV_STAGE_DONE
};

/* What one reply (or one local outcome) means. */
struct cbv_judgement {
	enum cbv_verdict verdict;
	enum cbv_reason reason;
	int definitive;            /* ends the search over hosts */
};

/*
 * The one mapping from an SMTP reply to a verdict and reason (DESIGN.md
 * "Verdicts", docs/verdicts.md): stage is where the reply came, code its
 * three digits, ecode its RFC 3463 enhanced code ("" or NULL if none; as
 * cbv_reply parsed it).  Never looks at reply text.  Used by cbv_verify
 * (in process, hence cbvd) and by the callout client (calloutd's lines).
 */
struct cbv_judgement cbv_reason_for(enum cbv_stage stage, int code, const char *ecode);

/*
 * The same for an outcome without a deciding reply: how the conversation
 * ended (a cbv_status: CBV_ETIMEOUT, CBV_ECONNECT, CBV_ETLS, CBV_EPROTO...)
 * at a stage.  tls_not_offered: TLS was required and not offered.
 */
struct cbv_judgement cbv_reason_for_status(enum cbv_stage stage, int status,
                                           int tls_not_offered);

/*
 * Sets r's verdict, reason, code, ecode and message ("CODE ECODE text",
 * text sanitized) in place.  0, or -1 on ENOMEM (message then "").
 */
int cbv_result_set_synth(struct cbv_result *r, enum cbv_verdict v, enum cbv_reason reason,
                         int code, const char *ecode, const char *text);

/*
 * The same for text the caller has already made printable with
 * cbv_sanitize(), and where it may have put back UTF-8 it validated
 * itself (our own IDN domain name, never remote text).
 */
int cbv_result_set_synth_clean(struct cbv_result *r, enum cbv_verdict v,
                               enum cbv_reason reason, int code, const char *ecode,
                               const char *clean);

#endif
