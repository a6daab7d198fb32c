/*
 * cbv_log.h - the log hook.  Core code never prints: it calls cbv_log()
 * and the host program decides where lines go (Exim's log_write and
 * debug_printf in cbv.so, stderr in the CLI, syslog or stderr in cbvd).
 *
 * ERR: our fault or config.  WARN: the peer misbehaved.  INFO: one line
 * per verification.  DEBUG: each command and reply.
 *
 * The transcript hook (cbv_trace_fn) is the other way text leaves the
 * core: per verification, set in struct cbv_request, it sees each SMTP
 * line as mailfromd's progress lines name them (cbv -v, cbvd's RUN).
 */
#ifndef CBV_LOG_H
#define CBV_LOG_H

enum cbv_log_level { CBV_LOG_ERR, CBV_LOG_WARN, CBV_LOG_INFO, CBV_LOG_DEBUG };

typedef void cbv_log_fn(enum cbv_log_level level, const char *line, void *arg);

/* Sets the sink (NULL = discard) and the most verbose level passed to it. */
void cbv_log_set(cbv_log_fn *fn, void *arg, enum cbv_log_level max_level);

/* Returns 1 if lines of this level reach a sink (skip costly formatting). */
int cbv_log_enabled(enum cbv_log_level level);

/* Formats one line (truncated at 2048 bytes) and hands it to the sink. */
void cbv_log(enum cbv_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* What the trace hook is told about (mailfromd's progress line kinds). */
enum cbv_trace {
	CBV_TRACE_INIT,  /* connecting: text is "host [ip]:port" */
	CBV_TRACE_GRTNG, /* greeting received (full, sanitized) */
	CBV_TRACE_HELO,  /* EHLO/HELO reply received */
	CBV_TRACE_SENT,  /* a command line sent (without CRLF) */
	CBV_TRACE_RECV   /* a reply received (full, sanitized) */
};

typedef void cbv_trace_fn(void *arg, enum cbv_trace kind, const char *text);

#endif
