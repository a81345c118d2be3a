/* workpool: a few threads that do blocking work (disk writes with fsync,
 * password hashing) so the event loop never waits on them.
 *
 * workpool_submit() queues `work(arg)` to run on a worker thread; when it
 * returns, `done(arg)` runs on the event-loop thread.  The caller owns arg
 * and must keep it alive until done() has run: a session that closes while
 * a job is in flight defers its own free to done(). */
#ifndef POCHTA_CORE_WORKPOOL_H
#define POCHTA_CORE_WORKPOOL_H

struct event_base;
typedef struct workpool workpool;
typedef void (*work_fn)(void *arg);

workpool *workpool_new(struct event_base *base, unsigned nthreads);
void workpool_submit(workpool *wp, work_fn work, work_fn done, void *arg);
/* Jobs queued or running. */
unsigned workpool_pending(const workpool *wp);
/* Wait for every queued job, run their done() callbacks, stop the threads. */
void workpool_free(workpool *wp);

#endif
