/* workpool: a few threads that do blocking work (disk writes with fsync,
 * password hashing) so the event loop never waits on them.
 *
 * workpool_submit() queues `work(arg)` to run on a worker thread; when it
 * returns, `done(arg)` runs on the event-loop thread.  The caller owns arg
 * and must keep it alive until done() has run: a session that closes while
 * a job is in flight defers its own free to done().
 *
 * Two lanes with their own threads: the quick lane (workpool_submit: store
 * and disk jobs, a millisecond or less of CPU each) and the slow lane
 * (workpool_submit_slow: password hashing, ~10 ms of CPU each, on purpose).
 * A job never waits behind a job of the other lane, so mailbox commands
 * keep their latency during a burst of logins, and a flood of password
 * guesses cannot starve mail service.  Slow-lane threads also run at a
 * lower CPU priority (nice +5) for the same reason. */
#ifndef POCHTA_CORE_WORKPOOL_H
#define POCHTA_CORE_WORKPOOL_H

struct event_base;
typedef struct workpool workpool;
typedef void (*work_fn)(void *arg);

/* nthreads quick-lane threads and max(1, nthreads / 2) slow-lane ones. */
workpool *workpool_new(struct event_base *base, unsigned nthreads);
void workpool_submit(workpool *wp, work_fn work, work_fn done, void *arg);
/* Like workpool_submit(), on the slow lane: for CPU-heavy jobs. */
void workpool_submit_slow(workpool *wp, work_fn work, work_fn done, void *arg);
/* Jobs of both lanes queued or running (done() not yet run). */
unsigned workpool_pending(const workpool *wp);
/* Wait for every queued job, run their done() callbacks, stop the threads. */
void workpool_free(workpool *wp);

#endif
