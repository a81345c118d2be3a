/* mta_session: one outbound SMTP client connection carrying one
 * transaction (one message, the recipients of one destination), on the
 * libevent loop.
 *
 * Protocol (RFC 5321 with extensions): EHLO, falling back to HELO when
 * EHLO is refused with 5xx; STARTTLS when offered and a client TLS context
 * is given (opportunistic, RFC 7435: no certificate check); SIZE, 8BITMIME,
 * SMTPUTF8 and DSN parameters passed on; PIPELINING (RFC 2920) of MAIL,
 * RCPT and DATA when offered; dot-stuffing; timeouts per RFC 5321
 * 4.5.3.2 (greeting and commands `timeout`, end of data `data_timeout`).
 *
 * Checks before MAIL: a message larger than the peer's SIZE fails with
 * 552 5.3.4; an 8-bit message for a peer without 8BITMIME fails with
 * 554 5.6.3 (no MIME downgrade yet), and one that needs SMTPUTF8 with
 * 553 5.6.7 (RFC 6531 3.2); a BINARYMIME message (which would need BDAT)
 * fails with 554 5.6.3.
 *
 * Results are per recipient (code/status/reply): 2xx delivered, 4xx
 * retry, 5xx bounce.  Ownership: the caller owns the txn (and its fd) and
 * must keep it alive until the callback, which runs exactly once unless
 * the session is aborted; the session frees itself before calling back. */
#ifndef POCHTA_MTA_MTA_SESSION_H
#define POCHTA_MTA_MTA_SESSION_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns/dns.h"

struct event_base;
typedef struct mta_session mta_session;

struct mta_rcpt {
    const char *address;
    unsigned notify;            /* SMTP_NOTIFY_* bits, 0 = not given */
    const char *orcpt;          /* "type;addr" decoded, or NULL */
    /* results, set by the session */
    int code;                   /* 0: no result */
    char status[16];            /* enhanced status "x.y.z" */
    char *reply;                /* heap: the reply or reason, one line; caller frees */
};

struct mta_txn {
    const char *qid;            /* for log lines */
    const char *mail_from;      /* "" for the null sender */
    const char *envid;          /* or NULL */
    int ret, body;              /* as queued (smtp_parse.h enums) */
    bool smtputf8;
    bool eight_bit;             /* the content has bytes >= 0x80 */
    int fd;                     /* content: size bytes of fd from offset */
    uint64_t offset, size;
    struct mta_rcpt *rcpts;
    size_t nrcpts;
};

struct mta_params {
    struct event_base *base;
    SSL_CTX *tls;               /* client context for STARTTLS, or NULL for none */
    const char *helo_name;      /* our host name */
    unsigned connect_timeout, timeout, data_timeout;    /* seconds */
    uint16_t port;
};

enum mta_outcome {
    MTA_DONE,           /* every recipient has a result */
    MTA_NEXT_HOST,      /* this host failed before the transaction (connect, greeting,
                           EHLO, TLS...): try the next; the results say why */
    MTA_RETRY_PLAIN,    /* the TLS handshake failed: the same host may work without STARTTLS */
};

typedef void (*mta_done_fn)(enum mta_outcome outcome, void *ud);

/* Connect to target (with params->port) and run the transaction.  Returns
 * the session; the callback always runs later from the event loop, never
 * from inside this call.  no_tls: do not use STARTTLS even if offered. */
mta_session *mta_session_start(const struct mta_params *params, const struct dns_target *target, bool no_tls,
                               struct mta_txn *txn, mta_done_fn cb, void *ud);

/* Close at once without calling back (daemon shutdown).  Recipients
 * without a result stay without one. */
void mta_session_abort(mta_session *s);

/* Set a recipient's result (replacing any earlier one). */
void mta_rcpt_set(struct mta_rcpt *r, int code, const char *status, const char *reply);

#endif
