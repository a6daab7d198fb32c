/*
 * cbv_cproto.h - the server side of the mailfromd callout protocol: one
 * request line -> a parsed request (listen URLs are cbv_url's).
 *
 * The protocol (docs/callout-protocol.md has transcripts of Debian's
 * calloutd 8.15) is line based, CRLF terminated, commands case-insensitive:
 *
 *   SID id                          OK
 *   SET NAME="value"                OK | NO bad assignment NAME=value
 *       NAME: EHLO MAILFROM STARTTLS TRANSCRIPT (and our PROFILE)
 *   GET NAME...                     "* NAME=value" per known, set name; OK
 *   TIMEOUT c i h m r s q           OK timeouts set (seven seconds values)
 *   VRFY "email" [MODE=mxfirst|mxonly|hostonly|hostfirst] [HOST=h]
 *        [EHLO=d] [MAILFROM=a]      OK ID
 *   RUN                             "* ID KIND text"... then
 *                                   OK ID=success|not_found|... ...
 *   QUIT                            OK bye
 *
 * Words are split on blanks; "double quotes" group, and a backslash
 * escapes the next byte (callout.mfl escapes \ and " that way).  A word
 * NAME="v" is the word NAME=v.  Errors are the text after "NO ", worded
 * as calloutd words them ("unknown command", "invalid arguments", ...).
 *
 * Nothing here does I/O or allocates: a request is a fixed-size struct,
 * every field bounded (CBV_CPROTO_*), and a value holding a control byte
 * is refused, so nothing parsed can smuggle a CR/LF into an SMTP command
 * or a reply line.
 */
#ifndef CBV_CPROTO_H
#define CBV_CPROTO_H

#include <stddef.h>

#include "cbv_limits.h"
#include "cbv_status.h"

/* One request line without its CRLF.  calloutd reads lines unbounded; a
 * maximal VRFY (quoted 256-octet path, all escaped, four parameters) fits. */
#define CBV_CPROTO_LINE_MAX 2048
/* Words in one request line. */
#define CBV_CPROTO_WORDS_MAX 16
/* A SID (mailfromd sends "IP:queue-id"). */
#define CBV_CPROTO_SID_MAX 128
/* Names in one GET. */
#define CBV_CPROTO_GET_MAX 8
/* One SET/VRFY value (a path, a domain, a profile name...). */
#define CBV_CPROTO_VALUE_MAX CBV_PATH_MAX
/* TIMEOUT: connection, initial-response, helo, mail, rcpt, rset, quit. */
#define CBV_CPROTO_TIMEOUTS 7

enum cbv_cproto_cmd {
	CBV_CPROTO_SID,
	CBV_CPROTO_SET,
	CBV_CPROTO_GET,
	CBV_CPROTO_TIMEOUT,
	CBV_CPROTO_VRFY,
	CBV_CPROTO_RUN,
	CBV_CPROTO_QUIT
};

/* Per-connection variables (SET/GET) and their VRFY counterparts. */
enum cbv_cproto_var {
	CBV_CPROTO_VAR_EHLO,
	CBV_CPROTO_VAR_MAILFROM,
	CBV_CPROTO_VAR_STARTTLS,
	CBV_CPROTO_VAR_TRANSCRIPT,
	CBV_CPROTO_VAR_PROFILE, /* ours: a cbv.conf profile for this connection */
	CBV_CPROTO_VAR_COUNT
};

enum cbv_cproto_mode {
	CBV_CPROTO_MODE_DEFAULT,  /* not given: the MX hosts (calloutd: mxfirst) */
	CBV_CPROTO_MODE_MXFIRST,  /* MX hosts, then HOST */
	CBV_CPROTO_MODE_MXONLY,
	CBV_CPROTO_MODE_HOSTONLY, /* needs HOST */
	CBV_CPROTO_MODE_HOSTFIRST /* needs HOST */
};

struct cbv_cproto_req {
	enum cbv_cproto_cmd cmd;
	/* SID */
	char sid[CBV_CPROTO_SID_MAX + 1];
	/* SET: one variable; STARTTLS and TRANSCRIPT values are checked and
	 * normalized ("never" "always" "ondemand"; "ON" "OFF") */
	enum cbv_cproto_var var;
	char value[CBV_CPROTO_VALUE_MAX + 1];
	/* GET: known names in the spelling given, unknown ones dropped */
	size_t nget;
	enum cbv_cproto_var get[CBV_CPROTO_GET_MAX];
	char get_name[CBV_CPROTO_GET_MAX][16];
	/* TIMEOUT, seconds, each >= 1 */
	unsigned timeouts[CBV_CPROTO_TIMEOUTS];
	/* VRFY: the address as given, any length a line allows (the
	 * verification refuses what is too long: fail/bad_syntax) */
	char email[CBV_CPROTO_LINE_MAX + 1];
	enum cbv_cproto_mode mode;
	char host[CBV_DOMAIN_MAX + 1];     /* "" = not given */
	char ehlo[CBV_DOMAIN_MAX + 1];     /* "" = not given */
	char mailfrom[CBV_CPROTO_VALUE_MAX + 1];
	int has_mailfrom;                  /* MAILFROM given (may be "" = <>) */
};

/*
 * Parses one request line (len bytes, without CRLF; NUL bytes are data and
 * are refused).  Returns CBV_OK with *req filled, or CBV_EINVAL with
 * err->msg the text to send after "NO " (printable, no CR/LF).
 */
enum cbv_status cbv_cproto_parse(const char *line, size_t len,
                                 struct cbv_cproto_req *req, struct cbv_err *err);

/* "EHLO" "MAILFROM" ... for a variable. */
const char *cbv_cproto_var_name(enum cbv_cproto_var v);

/* "mxfirst" ... ; "" for CBV_CPROTO_MODE_DEFAULT. */
const char *cbv_cproto_mode_name(enum cbv_cproto_mode m);

/*
 * Strips one pair of angle brackets from a mailfromd sender ("<>" -> "",
 * "<a@b>" -> "a@b"), in place.
 */
void cbv_cproto_unbracket(char *addr);

/*
 * One queued VRFY as its RUN sees it: what decides where and how it is
 * verified, for cbv_cproto_group().
 */
struct cbv_cproto_job {
	const char *email;
	const char *host;     /* NULL or "": none */
	int mode;             /* compared for equality only */
	const char *ehlo;     /* the EHLO it will use; NULL or "": the profile's */
	const char *mailfrom; /* the sender it will use; NULL: the profile's */
};

/*
 * Plans one RUN's shared sessions (cbvd runs each group of two or more
 * as one cbv_verify_group: one session per domain after the map).  Jobs
 * equal in host (case-insensitive), mode, EHLO and MAIL FROM may share;
 * among those, jobs are taken in the order of their email's domain
 * (case-insensitive; by ID within a domain) and cut into groups of at
 * most max (>= 1; 1 = no sharing), so a domain spreads over as few
 * groups as it can.  group[i] gets job i's group number, from 0; returns
 * the number of groups.  Pure: no I/O, no allocation; n at most
 * CBV_CPROTO_GROUP_JOBS_MAX (more: each job alone).
 */
#define CBV_CPROTO_GROUP_JOBS_MAX 64
size_t cbv_cproto_group(const struct cbv_cproto_job *jobs, size_t n, size_t max, size_t *group);

#endif
