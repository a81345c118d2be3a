/* queue_runner: the scheduler that empties the outbound queue.
 *
 * Once a second (and at once after queue_runner_kick()) it takes the
 * messages that are due (queue_due()) and delivers each in a job:
 *
 *   1. load the message; more than max_received_headers Received fields
 *      bounce it as a mail loop (5.4.6);
 *   2. group its pending recipients by domain: one route per domain, so
 *      every recipient of one domain goes in one SMTP transaction (RFC
 *      5321 batching); at most outbound_max_sessions jobs run at once,
 *      and at most outbound_max_per_domain routes to one domain;
 *   3. per route: resolve (dns.h: MX, null MX, A/AAAA), then try the
 *      exchangers in order (mta_session.h) until one gives results;
 *   4. record per recipient, durably (queue_record(), on a worker thread):
 *      2xx delivered; 5xx failed; 4xx deferred and retried after
 *      queue_retry_min * 2^(attempts-1), at most queue_retry_max apart,
 *      until queue_lifetime has passed (then failed, 4.4.7).  Failed
 *      recipients get one bounce per attempt (dsn.h) from <> to the
 *      envelope sender unless the sender is <> or NOTIFY says otherwise;
 *      recipients with NOTIFY=DELAY get one delay notice after
 *      queue_delay_warning.  A bounce for a local sender is stored in its
 *      mailbox at once; one for a remote sender is queued like any mail.
 *
 * Delivery is at least once: a crash or shutdown between the remote 250
 * and the durable record sends the message again (RFC 5321 6.1 prefers a
 * duplicate to a loss); shutdown aborts sessions without recording.
 *
 * Threads: the runner lives on the event-loop thread; recording and
 * bounce delivery run on the shared worker pool. */
#ifndef POCHTA_QUEUE_QUEUE_RUNNER_H
#define POCHTA_QUEUE_QUEUE_RUNNER_H

#include <stdbool.h>
#include <stddef.h>

#include "auth/accounts.h"
#include "core/config.h"
#include "core/workpool.h"

struct event_base;
typedef struct queue_runner queue_runner;

struct queue_runner_params {
    struct event_base *base;
    workpool *pool;             /* shared with the sessions; jobs count in workpool_pending() */
    accounts *acc;              /* loop-thread handle: routes bounces to local senders */
    const config *cfg;          /* borrowed for the runner's lifetime */
    const char *queue_dir;      /* relative to the working directory, e.g. "queue" */
};

/* Create the resolver and client TLS context and start the timer.
 * Returns NULL with err.  The first runner created is also the one
 * queue_runner_get() returns (for ETRN). */
queue_runner *queue_runner_new(const struct queue_runner_params *p, char *err, size_t errlen);

/* Scan the queue now instead of at the next tick. */
void queue_runner_kick(queue_runner *r);

/* ETRN (RFC 1985) / `pochta queue flush`: make every message with a
 * pending recipient in domain (NULL: all) due now, then scan.  Returns the
 * number of messages made due, or -1. */
int queue_runner_flush(queue_runner *r, const char *domain);

/* Daemon stopping: no new jobs; connections and DNS queries in progress
 * are dropped (their messages stay queued, unchanged).  Recording jobs
 * already on the worker pool finish (workpool_free() waits for them);
 * free the runner only after that. */
void queue_runner_shutdown(queue_runner *r);
void queue_runner_free(queue_runner *r);

/* The daemon's runner, or NULL when none runs (e.g. in the admin command). */
queue_runner *queue_runner_get(void);

#endif
