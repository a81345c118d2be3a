/* queue: the durable outbound queue (messages for remote recipients).
 *
 * Layout, under the caller's queue directory (normally "queue" in the data
 * directory):
 *
 *   <qid>          one file per message: an envelope block, a blank line,
 *                  then the message content (like a Postfix queue file)
 *   tmp.<qid>      a message being written; never acknowledged
 *   queue.db       SQLite index: messages(qid, sender, arrival, size, ...)
 *                  and rcpts(qid, idx, address, notify, orcpt, state, ...)
 *   lock           flock(): shared while enqueueing, exclusive for recovery
 *   corrupt/       files recovery could not read, kept for the operator
 *
 * The message file is the truth; queue.db is an index that can be rebuilt
 * from the files (queue_recover()).  Envelope block format, one field per
 * line, values %XX-escaped (bytes <= 0x20, '%' and 0x7f):
 *
 *   pochta-queue 1
 *   qid <qid>            arrival <unix time>       size <content bytes>
 *   sender <address>     (empty for the null sender)
 *   envid, ret, body, smtputf8, auth, client, helo  (DSN and trace data)
 *   rcpt <notify> <address> [<orcpt>]               (one per recipient)
 *   <empty line>
 *
 * Durability (queue_enqueue): tmp.<qid> is written and fsync'd, linked to
 * <qid> (never replacing an existing file), the directory fsync'd, then the
 * index row committed with synchronous=FULL.  Only then does it return 0
 * and the session may answer 250.  A crash at any point leaves one of:
 *   - tmp.<qid>: incomplete by definition and never acknowledged: removed
 *     by recovery;
 *   - <qid> without an index row: complete (it was fsync'd before it got
 *     its name) but maybe unacknowledged.  Recovery INDEXES it.  RFC 5321
 *     6.1 prefers a possible duplicate to a lost message, and this is the
 *     same rule that lets the index be rebuilt from the files after losing
 *     queue.db.  (When enqueue itself sees the index write fail, it removes
 *     the file before answering -1, so a 451'd message is not sent too.)
 *   - an index row without its file: nothing to deliver: the row is
 *     removed with an error log;
 *   - rows with no recipient pending and the file still there: the
 *     process died inside the removal after queue_record() committed the
 *     last result: recovery finishes the removal (nothing is re-sent).
 *
 * Group commit: an enqueue fsyncs its own file, but the directory fsync
 * and the index commit are shared by every enqueue (and delivery record)
 * ready at that moment: one leader does both for the batch while the
 * others wait, and each call still returns only once its own rows are
 * committed.  Alone, a message costs what the sequence above says; with
 * N ready together, N file fsyncs plus one directory fsync and one
 * commit.
 *
 * Threads and processes: any thread may call these.  Each thread keeps
 * one index handle per queue directory, opened on first use and closed
 * when the thread exits (reopened when queue.db is replaced).
 * Errors: -1 with a one-line reason in err (errlen bytes). */
#ifndef POCHTA_QUEUE_QUEUE_H
#define POCHTA_QUEUE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct queue_rcpt {
    const char *address;
    unsigned notify;            /* DSN NOTIFY bits as the SMTP parser gives them */
    const char *orcpt;          /* DSN ORCPT "type;addr" or NULL */
};

struct queue_envelope {
    const char *qid;            /* 16-char id made by make_id(), also in the Received header */
    const char *mail_from;      /* "" for the null sender */
    const char *envid;          /* DSN ENVID or NULL */
    int ret;                    /* 0 unspecified, 1 FULL, 2 HDRS */
    int body;                   /* 0 unspecified, 1 7BIT, 2 8BITMIME, 3 BINARYMIME */
    bool smtputf8;
    const char *auth_user;      /* authenticated submitter or NULL */
    const char *client_ip;
    const char *helo;
    const struct queue_rcpt *rcpts;
    size_t nrcpts;
};

/* One row of queue_list(): one recipient of one message.  Strings are
 * valid during the callback only. */
struct queue_entry {
    const char *qid;
    const char *sender;         /* "" for the null sender */
    const char *recipient;
    const char *state;          /* "queued", later also "deferred", "delivered", "failed" */
    uint64_t size;              /* bytes of content (prefix included) */
    time_t arrival;
    unsigned attempts;
    const char *last_error;     /* NULL if none */
};

/* Create queue_dir (mode 0700) and its index if missing, then recover
 * after a crash as described above (exclusive lock: waits for enqueues in
 * progress).  pochtad calls it once at start; `pochta init` too.  Returns
 * 0 or -1; *recovered (may be NULL) counts files re-indexed or removed. */
int queue_init(const char *queue_dir, unsigned *recovered, char *err, size_t errlen);

/* Store one message for env->rcpts.  Content = prefix (prefix_len bytes,
 * e.g. the Received header) followed by spool_len bytes of spool_fd from
 * offset 0; spool_fd's file offset is not used or moved (pread /
 * copy_file_range with explicit offsets).  Returns 0 once durable, or -1
 * (nothing was queued). */
int queue_enqueue(const char *queue_dir, const struct queue_envelope *env, const void *prefix, size_t prefix_len,
                  int spool_fd, uint64_t spool_len, char *err, size_t errlen);

/* Calls cb for each recipient of each queued message, oldest first.
 * A missing index means an empty queue.  Returns 0 or -1. */
int queue_list(const char *queue_dir, void (*cb)(const struct queue_entry *e, void *ctx), void *ctx,
               char *err, size_t errlen);

/* ---- the runner side (queue/queue_runner.h drives these) ----------------
 *
 * Scheduling state lives in the index: messages.next_attempt (unix time;
 * -1 = held by the operator), messages.attempts, and per recipient
 * rcpts.state: "queued" (never tried), "deferred" (4xx, retried),
 * "delayed" (deferred and the delay notice is sent), "delivered",
 * "failed" (bounced).  A message is finished when no recipient is queued,
 * deferred or delayed; it is then removed: file first (fsync'd), index rows
 * after, so a crash in between cannot resurrect it as new. */

/* A message loaded for delivery; queue_load() allocates, queue_msg_free()
 * frees (and closes fd). */
struct queue_msg_rcpt {
    unsigned idx;
    const char *address;
    unsigned notify;
    const char *orcpt;          /* NULL if none */
    char state[16];
    bool pending;               /* queued, deferred or delayed */
};

struct queue_msg {
    char qid[17];
    const char *sender;         /* "" for the null sender */
    const char *envid;          /* NULL if none */
    int ret, body;
    bool smtputf8;
    time_t arrival;
    unsigned attempts;
    struct queue_msg_rcpt *rcpts;
    size_t nrcpts;
    int fd;                     /* the queue file, read-only */
    uint64_t offset;            /* where the content starts in fd */
    uint64_t size;              /* content bytes */
    void *priv;
};

/* Calls cb with the id of each message due at `now` (next_attempt <= now,
 * not held, some recipient pending), the longest waiting first.
 * Returns 0 or -1. */
int queue_due(const char *queue_dir, time_t now, void (*cb)(const char *qid, void *ctx), void *ctx,
              char *err, size_t errlen);

/* As queue_due(), with the distinct domains of each message's pending
 * recipients: ASCII lower case, comma-separated (a domain or address
 * literal has no comma), valid during the callback only. */
int queue_due_domains(const char *queue_dir, time_t now,
                      void (*cb)(const char *qid, const char *domains, void *ctx), void *ctx,
                      char *err, size_t errlen);

/* Read a message's envelope, its recipients' states and open its file.
 * Returns 0, or -1 with err (the message is gone, or unreadable). */
int queue_load(const char *queue_dir, const char *qid, struct queue_msg **out, char *err, size_t errlen);
void queue_msg_free(struct queue_msg *m);

/* For `pochta queue show` (like postcat -q): what the index knows beyond
 * queue_load()'s view.  Strings are owned by the detail. */
struct queue_detail {
    time_t next_attempt;        /* unix time; -1 when held by the operator */
    bool indexed;               /* false: a file recovery has not indexed yet */
    char *auth_user;            /* submitter, NULL if none */
    char *client_ip;
    char *helo;
    char **last_error;          /* one per recipient of the message (NULL if none) */
    size_t nrcpts;
};

/* Read-only: load a message as queue_load() does (content readable from
 * (*msg)->fd at (*msg)->offset) plus its scheduling detail.  Returns 1,
 * 0 when there is no such message, or -1 with err.  Free with
 * queue_msg_free() and queue_detail_free(). */
int queue_inspect(const char *queue_dir, const char *qid, struct queue_msg **msg, struct queue_detail *detail,
                  char *err, size_t errlen);
void queue_detail_free(struct queue_detail *d);

struct queue_rcpt_update {
    unsigned idx;
    const char *state;          /* "delivered", "failed", "deferred" or "delayed" */
    const char *error;          /* last reply or reason, or NULL */
};

/* Record the outcome of one attempt durably, in one transaction:
 * recipient states, attempts + 1 and next_attempt (a held message stays
 * held).  If no recipient is left pending the message is removed.
 * Returns 1 when removed (or already gone: deleted by the operator), 0
 * when still queued, -1 on error. */
int queue_record(const char *queue_dir, const char *qid, const struct queue_rcpt_update *u, size_t n,
                 time_t next_attempt, char *err, size_t errlen);

/* The results of one SMTP transaction while other transactions of the
 * same attempt (other destinations) still run: recipient states only,
 * attempts and next_attempt are left to the queue_record() that ends the
 * attempt.  Made durable before the connection carries anything else, so
 * a crash re-sends only what was in flight.  Returns as queue_record(). */
int queue_record_partial(const char *queue_dir, const char *qid, const struct queue_rcpt_update *u, size_t n,
                         char *err, size_t errlen);

/* Called on the enqueuing thread each time queue_enqueue() has made a
 * message durable (the runner uses it to try new mail at once).  fn must
 * be thread-safe; NULL unregisters.  Returns when no call of the previous
 * fn is still running. */
void queue_set_notify(void (*fn)(void *ctx), void *ctx);

/* Make messages due now: qid, or every message (qid NULL) with a pending
 * recipient in `domain` (NULL: any).  Held messages stay held.  Returns
 * the number of messages rescheduled, or -1. */
int queue_schedule_now(const char *queue_dir, const char *qid, const char *domain, char *err, size_t errlen);

/* Hold (no delivery until released) or release a message.  Returns 1,
 * 0 if there is no such message, or -1. */
int queue_hold(const char *queue_dir, const char *qid, bool hold, char *err, size_t errlen);

/* Remove a message without delivering it (no bounce).  Returns 1, 0 if
 * there is no such message, or -1. */
int queue_delete(const char *queue_dir, const char *qid, char *err, size_t errlen);

#endif
