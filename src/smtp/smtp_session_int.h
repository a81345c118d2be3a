/* Internals shared by the files of the SMTP session state machine:
 * smtp_session.c (life cycle, input, envelope commands), smtp_session_data.c
 * (DATA, BDAT and the hand-off to delivery) and smtp_session_auth.c
 * (STARTTLS and AUTH).  Not for use outside src/smtp. */
#ifndef POCHTA_SMTP_SESSION_INT_H
#define POCHTA_SMTP_SESSION_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "auth/accounts.h"
#include "core/sbuf.h"
#include "net/conn.h"
#include "smtp/smtp_data.h"
#include "smtp/smtp_parse.h"
#include "smtp/smtp_server.h"

struct event;

enum smtp_phase {
    PH_COMMAND,         /* reading command lines */
    PH_DATA,            /* after 354, until CRLF.CRLF */
    PH_BDAT,            /* reading the octets of one BDAT chunk */
    PH_AUTH,            /* waiting for a SASL response line after 334 */
    PH_BUSY,            /* a worker job (delivery, password check) runs */
    PH_CLOSED,          /* connection gone; freed once no job is pending */
};

enum smtp_auth_step { AUTH_NONE, AUTH_PLAIN_WAIT, AUTH_LOGIN_USER, AUTH_LOGIN_PASS };

struct smtp_rcpt {
    char *address;              /* as given, canonical form */
    unsigned notify;
    char *orcpt;                /* NULL when not given */
    struct account_dest *dests; /* where it goes after alias expansion */
    size_t ndests;
};

struct smtp_session {
    struct smtp_server *srv;
    enum smtp_listener_kind kind;
    conn *c;
    char id[17];
    char ip[64];                /* local listener: "uid=N" */
    bool local;                 /* local listener: local_uid is the peer's (SO_PEERCRED) */
    unsigned long local_uid;
    enum smtp_phase phase;
    struct smtp_session *next, *prev;

    bool banner_sent;

    /* HELO/EHLO */
    bool greeted;               /* HELO or EHLO accepted since connect/STARTTLS */
    bool esmtp;
    char *helo;

    /* AUTH */
    char *auth_user;            /* authenticated address, NULL if none */
    enum smtp_auth_step auth_step;
    char *auth_login_user;      /* LOGIN: user name while waiting for the password */

    /* Transaction (MAIL .. end of data); reset by RSET/EHLO/HELO. */
    bool in_mail;
    char qid[17];
    char *mail_from;            /* canonical, "" for <> */
    struct smtp_cmd mail;       /* MAIL parameters as parsed */
    struct smtp_rcpt *rcpts;
    size_t nrcpts, rcpts_cap;
    bool bdat_used;
    bool bdat_failed;

    /* Message data */
    int spool_fd;               /* O_TMPFILE under tmp/, -1 when none */
    uint64_t spool_len;
    bool too_big;
    bool spool_error;
    struct smtp_data dp;
    sbuf pending;               /* unstuffed bytes not yet written to the spool */
    uint64_t bdat_remaining;
    bool bdat_last;
    bool bdat_discard;          /* chunk is read only to stay in sync */
    struct smtp_error bdat_error;
    time_t data_started;

    /* Input handling */
    sbuf line;
    unsigned errors;
    unsigned messages;
    bool quitting;
};

/* Reply with code, enhanced status (may be NULL) and text; '\n' in text
 * makes a multi-line reply.  Counts 5xx replies as errors and closes the
 * session with 421 at max_errors. */
void smtp_reply(struct smtp_session *s, int code, const char *enhanced, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Close after flushing what is queued. */
void smtp_close(struct smtp_session *s, const char *why);
void smtp_reset_transaction(struct smtp_session *s);
/* Continue processing buffered input after a job or TLS handshake. */
void smtp_resume(struct smtp_session *s);
/* The session may be freed now that a job has finished: returns true if it
 * was (the caller must not touch s afterwards). */
bool smtp_session_reap(struct smtp_session *s);
bool smtp_tls_active(const struct smtp_session *s);
/* AUTH is offered and allowed on this listener right now. */
bool smtp_auth_available(const struct smtp_session *s);

/* smtp_session_data.c */
void smtp_cmd_data(struct smtp_session *s);
void smtp_cmd_bdat(struct smtp_session *s, const struct smtp_cmd *cmd);
/* Consume message bytes from the input; false when more input is needed. */
bool smtp_data_input(struct smtp_session *s);
bool smtp_bdat_input(struct smtp_session *s);
void smtp_spool_close(struct smtp_session *s);

/* smtp_session_auth.c */
void smtp_cmd_starttls(struct smtp_session *s, const struct smtp_cmd *cmd);
void smtp_cmd_auth(struct smtp_session *s, const struct smtp_cmd *cmd);
void smtp_auth_response(struct smtp_session *s, const char *line, size_t len);
void smtp_auth_cleanup(struct smtp_session *s);

#endif
