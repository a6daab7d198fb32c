/*
 * cbv_clock.h - the monotonic clock every deadline is measured on.
 * Deadlines are absolute milliseconds of CLOCK_MONOTONIC, so wall-clock
 * steps cannot stretch or cut them.
 */
#ifndef CBV_CLOCK_H
#define CBV_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds on CLOCK_MONOTONIC. */
static inline int64_t cbv_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Microseconds on CLOCK_MONOTONIC, for elapsed-time reports. */
static inline int64_t cbv_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The earlier of two deadlines; 0 means "none". */
static inline int64_t cbv_deadline_min(int64_t a, int64_t b)
{
	if (a == 0)
		return b;
	if (b == 0)
		return a;
	return a < b ? a : b;
}

#endif
