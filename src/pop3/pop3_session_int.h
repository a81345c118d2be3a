/* Internals shared by the files of the POP3 session state machine:
 * pop3_session.c (life cycle, input, dispatch, CAPA, STLS),
 * pop3_session_auth.c (USER, PASS, APOP, AUTH, login and the maildrop
 * lock) and pop3_session_mail.c (the TRANSACTION commands, streaming
 * RETR/TOP, and UPDATE).  Not for use outside src/pop3. */
#ifndef POCHTA_POP3_POP3_SESSION_INT_H
#define POCHTA_POP3_POP3_SESSION_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "core/sbuf.h"
#include "net/conn.h"
#include "pop3/pop3_parse.h"
#include "pop3/pop3_server.h"
#include "store/store.h"

struct event;

/* RFC 1939 section 3 states. */
enum pop3_state { ST_AUTHORIZATION, ST_TRANSACTION, ST_UPDATE };

/* What the session is doing with its input right now. */
enum pop3_phase {
    PH_COMMAND,         /* reading command lines */
    PH_SASL,            /* waiting for a SASL response line after "+ " */
    PH_BUSY,            /* a worker job runs (password check, login, QUIT) */
    PH_SENDING,         /* streaming RETR/TOP; input waits */
    PH_CLOSED,          /* connection gone; freed once no job is pending */
};

enum pop3_sasl_step { SASL_NONE, SASL_PLAIN_WAIT, SASL_LOGIN_USER, SASL_LOGIN_PASS };

/* One message of the snapshot taken at login. */
struct pop3_msg {
    uint32_t uid;
    uint64_t size;
    bool deleted;
};

/* Locked maildrop (and, with pop3_login_delay, the time of the last
 * login) of one user; a list on the server, see pop3_server.h. */
struct pop3_maildrop {
    struct pop3_maildrop *next;
    char *user;
    bool locked;
    time_t last_login;
};

struct pop3_session {
    struct pop3_server *srv;
    bool implicit_tls;
    conn *c;
    char id[17];
    char ip[64];
    char banner_ts[160];        /* APOP timestamp <pid.clock@host> */
    enum pop3_state state;
    enum pop3_phase phase;
    struct pop3_session *next, *prev;
    bool banner_sent;
    bool utf8;                  /* RFC 6856 UTF8 given */

    /* AUTHORIZATION */
    char *user;                 /* from USER, waiting for PASS */
    enum pop3_sasl_step sasl_step;
    char *sasl_login_user;      /* AUTH LOGIN: name while waiting for the password */

    /* TRANSACTION: the maildrop snapshot (RFC 1939 section 4). */
    char *login;                /* authenticated address, lower case */
    struct pop3_maildrop *drop; /* our lock, NULL when not holding one */
    store_user *store;          /* used by one thread at a time: the loop, or a job */
    struct pop3_msg *msgs;
    size_t nmsgs;
    uint32_t uidvalidity;
    uint32_t last_accessed;     /* LAST (RFC 1225) */

    /* RETR/TOP streaming */
    int send_fd;                /* -1 when not sending */
    uint64_t send_left;         /* bytes of the file still to read */
    bool send_bol;              /* at the beginning of a line */
    bool send_last_cr;          /* previous byte sent was CR (for the final CRLF) */
    bool send_top;              /* TOP: stop after top_lines body lines */
    bool send_in_body;
    bool send_line_empty;       /* TOP: header line seen so far is empty */
    uint32_t top_lines;

    bool waiting_drain;         /* stopped producing until the output drains */
    unsigned jobs;              /* worker jobs holding this session */

    /* Input handling */
    sbuf line;
    unsigned errors;
    bool quitting;
};

/* "+OK text" / "-ERR text" with CRLF; text must not contain CR or LF.
 * pop3_err counts toward max_errors only when `count` is set. */
void pop3_ok(struct pop3_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pop3_err(struct pop3_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Raw bytes (multi-line bodies). */
void pop3_write(struct pop3_session *s, const void *data, size_t len);
void pop3_close(struct pop3_session *s, const char *why);
/* Continue with buffered input after a job, a delay, TLS or a stream. */
void pop3_resume(struct pop3_session *s);
/* Free the session now if its connection is gone and no job holds it;
 * true if it was freed (the caller must not touch s afterwards). */
bool pop3_session_reap(struct pop3_session *s);
bool pop3_tls_active(const struct pop3_session *s);
/* USER/PASS/AUTH allowed now: TLS, or loopback with plaintext_auth_loopback. */
bool pop3_login_allowed(const struct pop3_session *s);
/* Look again once the queued output has drained (no drain callback in
 * conn): then the stream or the command input continues. */
void pop3_wait_drain(struct pop3_session *s);

/* pop3_session_auth.c */
void pop3_cmd_user(struct pop3_session *s, const struct pop3_cmd *cmd);
void pop3_cmd_pass(struct pop3_session *s, const struct pop3_cmd *cmd);
void pop3_cmd_apop(struct pop3_session *s, const struct pop3_cmd *cmd);
void pop3_cmd_auth(struct pop3_session *s, const struct pop3_cmd *cmd);
void pop3_sasl_response(struct pop3_session *s, const char *line, size_t len);
void pop3_auth_cleanup(struct pop3_session *s);
/* Release the maildrop lock (if held). */
void pop3_unlock(struct pop3_session *s);

/* pop3_session_mail.c */
void pop3_dispatch_transaction(struct pop3_session *s, const struct pop3_cmd *cmd);
void pop3_cmd_quit_update(struct pop3_session *s);
/* Send more of the current RETR/TOP; ends the stream and resumes input
 * when the message is done. */
void pop3_send_pump(struct pop3_session *s);
/* Stop a RETR/TOP stream (connection gone). */
void pop3_send_abort(struct pop3_session *s);
/* Drop the snapshot and close the store handle on a worker; the session
 * is busy meanwhile and is reaped by the job if the connection is gone.
 * Returns false when there was nothing to close. */
bool pop3_release_store(struct pop3_session *s);
void pop3_snapshot_free(struct pop3_session *s);

#endif
