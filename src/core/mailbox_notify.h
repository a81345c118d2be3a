/* "Mailbox changed" bus: an in-process registry that lets whoever changes
 * a mailbox (SMTP delivery, an IMAP command, POP3) wake the sessions that
 * wait on it (IMAP IDLE), instead of every waiting session polling the
 * store.  Keyed by user address (ASCII case-insensitive) and mailbox name
 * ("INBOX" case-insensitive, other names exact).
 *
 * Threads: event-loop thread only (no locks).  Workers report their
 * changes from their job's completion callback, which runs on the loop.
 *
 * Memory: the registry itself is a fixed table in static storage; a watch
 * is embedded in its owner's struct and holds heap copies of the user and
 * mailbox names from mailbox_watch_start() to mailbox_watch_stop().
 *
 * Changes made by other processes (the pochta CLI) are not seen here:
 * watchers keep a slow safety poll for those. */
#ifndef POCHTA_CORE_MAILBOX_NOTIFY_H
#define POCHTA_CORE_MAILBOX_NOTIFY_H

#include <stdbool.h>

typedef void (*mailbox_notify_fn)(void *ud);

/* Owned by the watcher; zero-initialise before the first start. */
struct mailbox_watch {
    char *user;
    char *mailbox;              /* NULL: any mailbox of user */
    mailbox_notify_fn fn;
    void *ud;
    unsigned bucket;
    bool active;
    struct mailbox_watch *next, *prev;
};

/* Call fn(ud) on every later signal for (user, mailbox).  A started watch
 * is first stopped.  mailbox NULL watches every mailbox of the user. */
void mailbox_watch_start(struct mailbox_watch *w, const char *user, const char *mailbox,
                         mailbox_notify_fn fn, void *ud);
/* Safe on a zeroed or already stopped watch. */
void mailbox_watch_stop(struct mailbox_watch *w);
/* Is w watching exactly (user, mailbox)? */
bool mailbox_watch_is(const struct mailbox_watch *w, const char *user, const char *mailbox);

/* Something in user's mailbox changed (mailbox NULL: possibly any of the
 * user's mailboxes).  Every matching watch's fn runs before this returns,
 * except watches whose ud == skip_ud (the changer itself; NULL skips none).
 * A callback may stop its own watch but must not start or stop others. */
void mailbox_notify_signal(const char *user, const char *mailbox, const void *skip_ud);

#endif
