/* Delivery of one accepted message, run on a worker thread.
 *
 * The session hands over the envelope and the spooled content; this code
 * writes one copy per local mailbox (with its own Return-Path and
 * Received headers) into the store, and one copy for all remote
 * recipients into the outbound queue.  It returns only when every copy is
 * durable (written, fsync'd, indexed) or when something failed, so the
 * session can answer 250 or 451 truthfully.
 *
 * Quota (RFC 9208 STORAGE, limit from accounts_user_quota_get(), usage from
 * store_quota_usage()): a local copy that would take its user over quota is
 * not stored and counted in over_quota; the other copies go ahead.  The
 * session answers 552 5.2.2 when no copy at all was stored or queued and
 * every refusal was for quota (the usual case: one local recipient);
 * otherwise the copies that fit are delivered, the refused ones are only
 * logged ("status=refused: over quota") and the reply is 250, since SMTP
 * after DATA has one reply for the whole message (no DSN is generated). */
#ifndef POCHTA_SMTP_DELIVERY_H
#define POCHTA_SMTP_DELIVERY_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "auth/accounts.h"
#include "core/sbuf.h"

struct smtp_delivery_rcpt {
    const char *address;        /* as the client gave it (goes into "for") */
    unsigned notify;
    const char *orcpt;
    const struct account_dest *dests;
    size_t ndests;
};

struct smtp_delivery {
    /* Inputs: borrowed, must stay valid and unchanged while the job runs. */
    const char *qid;
    const char *mail_from;      /* canonical, "" for <> */
    const char *helo;
    const char *client_ip;
    const char *hostname;       /* ours, for "by" */
    const char *protocol;       /* RFC 3848 "with" keyword, e.g. "ESMTPSA" */
    const char *tls_desc;       /* NULL without TLS */
    const char *auth_user;      /* NULL when not authenticated */
    bool local;                 /* from the local socket: Received says "from local (uid N)" */
    unsigned long local_uid;
    const char *envid;
    int ret, body;
    bool smtputf8;
    const struct smtp_delivery_rcpt *rcpts;
    size_t nrcpts;
    int spool_fd;
    uint64_t spool_len;
    time_t arrival;

    /* Outputs */
    int status;                 /* 0 every copy durable, -1 temporary failure */
    char err[256];
    unsigned delivered;         /* local copies */
    unsigned queued;            /* remote recipients queued */
    unsigned over_quota;        /* local copies refused: user over quota */
};

/* Storage used by a local user (bytes, all mailboxes), for the RCPT-time
 * quota check.  Opens the user's store (creating it, like delivery does).
 * 0, or -1 logged.  Any thread; blocks on the store's SQLite index. */
int smtp_quota_usage(const char *address, uint64_t *bytes);

/* Worker-thread entry point. */
void smtp_delivery_run(struct smtp_delivery *d);

/* Append the Received header (RFC 5321 4.4, RFC 3848 protocol names)
 * for one recipient (for_rcpt may be NULL to omit the "for" clause).
 * Peer-supplied HELO text is sanitised so it cannot inject headers. */
void smtp_received_header(sbuf *out, const struct smtp_delivery *d, const char *for_rcpt);

/* RFC 3848 / RFC 6531 "with" keyword for a session. */
const char *smtp_protocol_name(bool esmtp, bool tls, bool auth, bool smtputf8);

#endif
