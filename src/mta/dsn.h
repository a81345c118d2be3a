/* dsn: delivery status notifications (RFC 3461, RFC 3464, RFC 6522), as
 * pure functions: the caller supplies every fact, including the dates,
 * the boundary and the original message, and gets the complete message
 * back in an sbuf.  No I/O, no clock, no randomness here, so a report is
 * reproducible in tests.
 *
 * Who gets a DSN (dsn_wanted): never the null sender (a bounce is never
 * bounced, RFC 5321 6.1 / RFC 3461 6.2), nobody who asked NOTIFY=NEVER,
 * and for "delayed" only a recipient whose NOTIFY names DELAY. */
#ifndef POCHTA_MTA_DSN_H
#define POCHTA_MTA_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "core/sbuf.h"

enum dsn_action { DSN_FAILED, DSN_DELAYED, DSN_DELIVERED, DSN_RELAYED, DSN_EXPANDED };

struct dsn_rcpt {
    const char *address;        /* final recipient as queued */
    const char *orcpt;          /* DSN ORCPT "type;address" (xtext already decoded) or NULL */
    enum dsn_action action;
    const char *status;         /* RFC 3463 code "5.1.1" */
    const char *remote_mta;     /* host name that answered, or NULL */
    const char *diagnostic;     /* the SMTP reply that decided ("550 5.1.1 no such user"), or NULL */
    time_t last_attempt;        /* 0: not given */
    time_t retry_until;         /* delayed only; 0: not given */
};

struct dsn_report {
    const char *reporting_mta;  /* our host name */
    const char *sender;         /* envelope sender the report goes to (never "") */
    const char *envid;          /* DSN ENVID or NULL */
    const char *qid;            /* our queue id, for the human part and X-Postfix-like tracing */
    const char *message_id;     /* full "<...>" Message-ID for the report */
    const char *boundary;       /* MIME boundary: must not occur in the original message */
    time_t arrival;             /* when we accepted the original */
    time_t date;                /* the report's Date */
    int ret;                    /* 0 unspecified, 1 FULL, 2 HDRS (as queued) */
    size_t full_max;            /* RET unspecified or FULL: originals above this get headers only */
    const struct dsn_rcpt *rcpts;
    size_t nrcpts;
};

/* NOTIFY bits as the SMTP parser gives them (SMTP_NOTIFY_*); 0 = not
 * given, which means FAILURE (and no DELAY) by our choice (RFC 3461 4.1). */
bool dsn_wanted(const char *sender, unsigned notify, enum dsn_action action);

/* Append the complete report (header fields, multipart/report body,
 * CRLF line ends) to out.  The original message orig[0..orig_len) is
 * returned whole (message/rfc822) or as its header section (text/rfc822-headers) depending on ret
 * and full_max; an original that is not 7-bit goes out with
 * Content-Transfer-Encoding 8bit.  Text that came from peers (diagnostics, addresses) is
 * stripped of control characters and bounded so it cannot break the
 * header structure. */
void dsn_build(const struct dsn_report *r, const char *orig, size_t orig_len, sbuf *out);

/* Length of the header section of msg[0..len): up to and including the
 * empty line, or len if there is none. */
size_t dsn_header_length(const char *msg, size_t len);

#endif
