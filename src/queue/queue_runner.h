/* queue_runner: the scheduler that empties the outbound queue.
 *
 * Once a second, at once when queue_enqueue() has queued a message (its
 * notify hook), and after queue_runner_kick(), it scans for the messages
 * that are due (queue_due_domains(), on a worker thread: SQLite never runs
 * on the loop) and starts a job for each whose domains have a free slot;
 * one scan runs at a time, a kick during a scan asks for another after it.
 * Each job:
 *
 *   1. load the message and scan its content (on a worker); more than
 *      max_received_headers Received fields bounce it as a mail loop (5.4.6);
 *   2. group its pending recipients by destination (mta/mta_route.h):
 *      the transport_map entry for the domain, else relay_host, else the
 *      domain's own MX hosts.  Every recipient of one destination goes in
 *      one SMTP transaction (RFC 5321 batching; with a relay or a shared
 *      next hop, across domains); at most outbound_max_sessions jobs run
 *      at once, and at most outbound_max_per_domain routes per domain;
 *   3. per route: take an idle connection to the same destination if one
 *      is parked (connection reuse, RSET first), else resolve (dns.h: MX,
 *      null MX, A/AAAA; a bracketed next hop skips the MX step; an address
 *      literal needs no DNS) and try the hosts in order (mta_session.h)
 *      until one gives results.  The relay gets relay_tls (verified TLS
 *      by default) and AUTH with relay_auth_user; everyone else gets
 *      opportunistic STARTTLS.  After a complete transaction the
 *      connection is parked for outbound_connection_reuse_time (0: never)
 *      and handed to the next due message for that destination, up to
 *      outbound_max_messages_per_connection; a parked connection found
 *      dead when reused costs nothing (MTA_STALE: a new connection is
 *      opened for the same attempt);
 *   4. record per recipient, durably (queue_record(), on a worker thread),
 *      each transaction's results before its connection carries another
 *      message and before its per-domain slot is given back (a job with
 *      several routes records a finished route's 2xx at once with
 *      queue_record_partial()):
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
 * Because a connection and a slot are handed on only after the record,
 * a kill -9 duplicates at most one message per session in progress, so
 * at most outbound_max_sessions (outbound_max_per_domain for one
 * domain).
 *
 * Threads: the runner lives on the event-loop thread; the due scan,
 * loading, recording, ETRN's index update (queue_runner_flush_async) and
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
    const char *relay_password; /* from queue_relay_password_read(); copied */
};

/* The relay password: the first line of relay_auth_password_file.  Read
 * by pochtad while still root, like the TLS key, so the file may be
 * private to root (a file readable by everyone is used with a warning).
 * *out is NULL when relay_auth_user is empty.  0, or -1 with err.  Free
 * with queue_relay_password_free(), which wipes it. */
int queue_relay_password_read(const config *cfg, char **out, char *err, size_t errlen);
void queue_relay_password_free(char *password);

/* Create the resolver and client TLS contexts, check relay_host, read
 * transport_map (as the user the daemon runs as) and start the timer.
 * Returns NULL with err when any of them is unusable.  The first runner
 * created is also the one queue_runner_get() returns (for ETRN). */
queue_runner *queue_runner_new(const struct queue_runner_params *p, char *err, size_t errlen);

/* Scan the queue now instead of at the next tick. */
void queue_runner_kick(queue_runner *r);

/* ETRN (RFC 1985): make every message with a pending recipient in domain
 * (NULL: all) due now, then scan.  The index update runs on the worker
 * pool; done(n, ctx) (may be NULL) runs on the loop thread with the number
 * of messages made due, or -1.  ctx must stay valid until then. */
void queue_runner_flush_async(queue_runner *r, const char *domain, void (*done)(int n, void *ctx), void *ctx);

/* Daemon stopping: no new jobs; connections (parked ones too) and DNS
 * queries in progress are dropped (their messages stay queued, unchanged).  Recording jobs
 * already on the worker pool finish (workpool_free() waits for them);
 * free the runner only after that. */
void queue_runner_shutdown(queue_runner *r);
void queue_runner_free(queue_runner *r);

/* The daemon's runner, or NULL when none runs (e.g. in the admin command). */
queue_runner *queue_runner_get(void);

#endif
