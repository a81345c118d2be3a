/* mta_session: one outbound SMTP client connection, on the libevent
 * loop, carrying one transaction at a time and, when the owner wants,
 * further transactions to the same destination over the same connection.
 *
 * Protocol (RFC 5321 with extensions): EHLO, falling back to HELO when
 * EHLO is refused with 5xx; STARTTLS (RFC 3207) by params->tls_policy:
 * opportunistic (RFC 7435: used when offered, no certificate check, a
 * failed handshake retried in plain text by the owner), require (no
 * plain text), verify (certificate chain and host name checked, RFC 6125);
 * AUTH PLAIN, or LOGIN when PLAIN is not offered (RFC 4954), only over
 * TLS, when credentials are given; SIZE, 8BITMIME, SMTPUTF8 and DSN
 * parameters passed on; PIPELINING (RFC 2920) of MAIL, RCPT and DATA when
 * offered; CHUNKING (RFC 3030): BDAT instead of DATA whenever offered (no
 * dot-stuffing), and BINARYMIME messages sent only that way; dot-stuffing
 * with DATA; timeouts per RFC 5321 4.5.3.2 (greeting and commands
 * `timeout`, end of data `data_timeout`).
 *
 * Checks before MAIL: a message larger than the peer's SIZE fails with
 * 552 5.3.4; one that needs SMTPUTF8 with 553 5.6.7 (RFC 6531 3.2); a
 * BINARYMIME message for a peer without CHUNKING and BINARYMIME with 554
 * 5.6.3.  An 8-bit message for a peer without 8BITMIME is converted to
 * 7 bits (mime/mime_downgrade.h, RFC 6152) in memory and sent that way;
 * when it cannot be, it fails with 554 5.6.3.
 *
 * Results are per recipient (code/status/reply): 2xx delivered, 4xx
 * retry, 5xx bounce.  An accepted RCPT is only a step: a recipient's 2xx
 * result comes from the reply to the end of the data (DATA dot or BDAT
 * LAST); a connection lost before that reply leaves every recipient with
 * a 4xx, so nothing is lost and nothing recorded as sent twice.
 *
 * Reuse: after a complete transaction the session stays open when
 * params->max_txns allows; the callback then gets it (idle) and the owner
 * must do one of: mta_session_next() (RSET, then the next transaction),
 * mta_session_park() (wait for one, closing by itself after a while), or
 * mta_session_close().
 *
 * Ownership: the caller owns each txn (and its fd) and keeps it alive
 * until that transaction's callback, which runs exactly once (always
 * later from the loop, never from inside the call that started it) unless
 * the session is aborted.  params' strings are borrowed for the session's
 * life.  A session not handed back idle frees itself before calling
 * back. */
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

enum mta_tls_policy {
    MTA_TLS_OPPORTUNISTIC,      /* STARTTLS when offered, any certificate */
    MTA_TLS_REQUIRE,            /* no STARTTLS or a failed handshake: 4.7.x, next host */
    MTA_TLS_VERIFY,             /* as REQUIRE, and the certificate must verify against
                                   tls's CA store and name the host we connected to */
};

struct mta_params {
    struct event_base *base;
    SSL_CTX *tls;               /* client context for STARTTLS, or NULL for none */
    enum mta_tls_policy tls_policy;
    const char *helo_name;      /* our host name */
    unsigned connect_timeout, timeout, data_timeout;    /* seconds */
    uint16_t port;
    const char *auth_user;      /* NULL: no AUTH */
    const char *auth_password;
    unsigned max_txns;          /* transactions per connection; 0 or 1: no reuse */
};

enum mta_outcome {
    MTA_DONE,           /* every recipient has a result */
    MTA_NEXT_HOST,      /* this host failed before the transaction (connect, greeting,
                           EHLO, TLS...): try the next; the results say why */
    MTA_RETRY_PLAIN,    /* the TLS handshake failed: the same host may work without STARTTLS */
    MTA_STALE,          /* a reused connection failed before this transaction got any
                           reply: nothing happened; try again on a new connection */
};

/* idle: the session, still connected, when the transaction completed and
 * the connection may carry another (see Reuse above); else NULL. */
typedef void (*mta_done_fn)(enum mta_outcome outcome, mta_session *idle, void *ud);
/* A parked session is gone (closed by the peer, or after its idle time);
 * it is freed when this runs. */
typedef void (*mta_closed_fn)(void *ud);

/* Connect to target (with params->port) and run the transaction.  Returns
 * the session; the callback always runs later from the event loop, never
 * from inside this call.  no_tls: do not use STARTTLS even if offered. */
mta_session *mta_session_start(const struct mta_params *params, const struct dns_target *target, bool no_tls,
                               struct mta_txn *txn, mta_done_fn cb, void *ud);

/* Run the next transaction on an idle session (RSET first).  The
 * callback follows the same rules as for mta_session_start(); a reused
 * connection that fails before the first reply of the transaction gives
 * MTA_STALE. */
void mta_session_next(mta_session *s, struct mta_txn *txn, mta_done_fn cb, void *ud);

/* Keep an idle session open for up to `seconds`; then it says QUIT and
 * goes, and closed(ud) runs once it is freed (also when the peer closes
 * first).  mta_session_next() takes it back (closed is then never called)
 * while mta_session_idle() is true. */
void mta_session_park(mta_session *s, unsigned seconds, mta_closed_fn closed, void *ud);

/* True while the session can take a transaction (idle, not closing). */
bool mta_session_idle(const mta_session *s);

/* Say QUIT and go; a parked session's closed callback still runs. */
void mta_session_close(mta_session *s);

/* "host" the session talks to (the exchanger or relay name), and the
 * number of transactions it has started. */
const char *mta_session_host(const mta_session *s);
unsigned mta_session_txns(const mta_session *s);

/* Close at once without calling back (daemon shutdown).  Recipients
 * without a result stay without one. */
void mta_session_abort(mta_session *s);

/* Set a recipient's result (replacing any earlier one). */
void mta_rcpt_set(struct mta_rcpt *r, int code, const char *status, const char *reply);

#endif
