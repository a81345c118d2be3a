/* auth_async: a password check on the worker pool.
 *
 * Password hashing is slow on purpose (yescrypt), so it never runs on the
 * event loop, and it runs on the pool's slow lane (workpool.h) so that it
 * never delays store jobs.  Each worker thread opens its own accounts handle on first
 * use ("accounts.db" in the current directory, the data directory of
 * pochtad) and keeps it for the life of the thread: SQLite handles are not
 * shared between threads. */
#ifndef POCHTA_AUTH_AUTH_ASYNC_H
#define POCHTA_AUTH_AUTH_ASYNC_H

#include <stdbool.h>

#include "auth/failures.h"
#include "core/config.h"
#include "core/workpool.h"

struct event_base;

/* Called on the event-loop thread when the check is over.
 * result: 1 password correct, 0 wrong password or no such user, -1 error
 * (database unavailable: answer with a temporary failure).  `user` is the
 * name as given to auth_async_verify(), valid only during the call. */
typedef void (*auth_async_done)(int result, const char *user, void *ctx);

/* Check user/password on a worker thread, then call done(…, ctx) on the
 * loop.  user and password are copied; the copy of the password is wiped
 * (OPENSSL_cleanse) before it is freed, so the caller may wipe its own at
 * once.  done always runs exactly once: the caller keeps ctx alive until
 * then (a session that closes meanwhile frees itself from done). */
void auth_async_verify(workpool *wp, const char *user, const char *password,
                       auth_async_done done, void *ctx);

/* Password guessing limits shared by SMTP AUTH, POP3 and IMAP: at most
 * auth_max_failures per client address within auth_failure_window, and
 * each failure answered only after auth_failure_delay times the recent
 * failures (capped at 10x).  The fields are borrowed from the server,
 * which outlives every check; the struct itself is copied by the calls. */
struct auth_guard {
    workpool *pool;
    struct event_base *base;
    auth_failures *failures;
    const config *cfg;
};

/* May the client at ip try a password now? */
bool auth_guard_allows(const struct auth_guard *g, const char *ip);

/* Check user/password for the client at ip, like auth_async_verify(): on
 * success ip's failures are forgotten; on a wrong password one failure is
 * recorded and logged (with session_id) and done() runs only after the
 * delay, so the session stays busy and pipelined guesses wait too. */
void auth_guard_check(const struct auth_guard *g, const char *session_id, const char *ip,
                      const char *user, const char *password, auth_async_done done, void *ctx);

#endif
