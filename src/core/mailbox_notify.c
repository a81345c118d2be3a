/* The "mailbox changed" bus: see mailbox_notify.h.
 *
 * Why a fixed table of chained buckets: one watch per idling session, so
 * tens of thousands at most; 4096 buckets keep the chains short without a
 * resize path, and the table needs no set-up or tear-down. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/mailbox_notify.h"
#include "core/util.h"

#define NOTIFY_BUCKETS 4096u

static struct mailbox_watch *table[NOTIFY_BUCKETS];

/* FNV-1a over the lower-cased address. */
static unsigned user_bucket(const char *user)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)user; *p; p++) {
        unsigned char c = *p;
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
        h = (h ^ c) * 16777619u;
    }
    return h % NOTIFY_BUCKETS;
}

static bool mailbox_eq(const char *a, const char *b)
{
    if (strcmp(a, b) == 0) return true;
    return ascii_casecmp(a, "INBOX") == 0 && ascii_casecmp(b, "INBOX") == 0;
}

void mailbox_watch_start(struct mailbox_watch *w, const char *user, const char *mailbox,
                         mailbox_notify_fn fn, void *ud)
{
    mailbox_watch_stop(w);
    w->user = xstrdup(user);
    w->mailbox = mailbox ? xstrdup(mailbox) : NULL;
    w->fn = fn;
    w->ud = ud;
    w->bucket = user_bucket(user);
    w->prev = NULL;
    w->next = table[w->bucket];
    if (w->next) w->next->prev = w;
    table[w->bucket] = w;
    w->active = true;
}

void mailbox_watch_stop(struct mailbox_watch *w)
{
    if (!w->active) return;
    if (w->prev) w->prev->next = w->next;
    else table[w->bucket] = w->next;
    if (w->next) w->next->prev = w->prev;
    free(w->user);
    free(w->mailbox);
    w->user = w->mailbox = NULL;
    w->next = w->prev = NULL;
    w->active = false;
}

bool mailbox_watch_is(const struct mailbox_watch *w, const char *user, const char *mailbox)
{
    if (!w->active || ascii_casecmp(w->user, user) != 0) return false;
    if (!w->mailbox || !mailbox) return w->mailbox == mailbox;
    return mailbox_eq(w->mailbox, mailbox);
}

void mailbox_notify_signal(const char *user, const char *mailbox, const void *skip_ud)
{
    struct mailbox_watch *next;
    for (struct mailbox_watch *w = table[user_bucket(user)]; w; w = next) {
        next = w->next;
        if (w->ud == skip_ud && skip_ud) continue;
        if (ascii_casecmp(w->user, user) != 0) continue;
        if (mailbox && w->mailbox && !mailbox_eq(w->mailbox, mailbox)) continue;
        w->fn(w->ud);
    }
}
