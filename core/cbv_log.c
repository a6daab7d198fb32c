/*
 * cbv_log.c - forwards formatted lines to the sink the host program set.
 */
#include "cbv_log.h"

#include <stdarg.h>
#include <stdio.h>

static cbv_log_fn *sink;
static void *sink_arg;
static enum cbv_log_level sink_max = CBV_LOG_INFO;

void cbv_log_set(cbv_log_fn *fn, void *arg, enum cbv_log_level max_level)
{
	sink = fn;
	sink_arg = arg;
	sink_max = max_level;
}

int cbv_log_enabled(enum cbv_log_level level)
{
	return sink != NULL && level <= sink_max;
}

void cbv_log(enum cbv_log_level level, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	if (!cbv_log_enabled(level))
		return;
	va_start(ap, fmt);
	if (vsnprintf(line, sizeof(line), fmt, ap) < 0)
		line[0] = '\0';
	va_end(ap);
	sink(level, line, sink_arg);
}
