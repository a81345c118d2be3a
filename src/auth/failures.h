/* Failed-AUTH limiter: recent failures per client address, in memory.
 *
 * The session records each failed AUTH, asks how many failures the client
 * address had within auth_failure_window before accepting another attempt,
 * and clears the address after a success.  Memory is bounded: at most
 * max_entries addresses are tracked; when full, the address whose last
 * failure is oldest is forgotten.  Each address keeps only its last
 * AUTH_FAILURES_TRACKED failure times, so counts saturate there (any
 * configured limit should stay at or below it).
 *
 * The hash is keyed with a random secret, so a client choosing its
 * addresses (an IPv6 /64 has plenty) cannot pile them into one bucket.
 * Every operation is O(1).  Not thread-safe: one owner (the event loop). */
#ifndef POCHTA_AUTH_FAILURES_H
#define POCHTA_AUTH_FAILURES_H

#include <stddef.h>
#include <time.h>

#define AUTH_FAILURES_TRACKED 64

typedef struct auth_failures auth_failures;

/* max_entries 0 is taken as 1.  Free with auth_failures_free(). */
auth_failures *auth_failures_new(size_t max_entries);
void auth_failures_free(auth_failures *f);

/* `ip` is the textual client address (at most 63 bytes are significant). */
void auth_failures_record(auth_failures *f, const char *ip, time_t now);
/* Failures from ip in (now - window, now]. */
unsigned auth_failures_count(auth_failures *f, const char *ip, time_t now, unsigned window);
/* Forget ip (after a successful AUTH). */
void auth_failures_clear(auth_failures *f, const char *ip);
/* Addresses currently tracked (for tests and status). */
size_t auth_failures_size(const auth_failures *f);

#endif
