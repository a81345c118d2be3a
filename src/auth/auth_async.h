/* auth_async: a password check on the worker pool.
 *
 * Password hashing is slow on purpose (yescrypt), so it never runs on the
 * event loop.  Each worker thread opens its own accounts handle on first
 * use ("accounts.db" in the current directory, the data directory of
 * pochtad) and keeps it for the life of the thread: SQLite handles are not
 * shared between threads. */
#ifndef POCHTA_AUTH_AUTH_ASYNC_H
#define POCHTA_AUTH_AUTH_ASYNC_H

#include "core/workpool.h"

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

#endif
