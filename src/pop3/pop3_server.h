/* The POP3 service (RFC 1939): what every POP3 session shares.
 *
 * One pop3_server lives for the daemon's lifetime on the event-loop
 * thread; pochtad owns it (zeroed, then the public fields set) and
 * sessions only borrow it.  Two listeners: pop3 (port 110, STLS offered)
 * and pop3s (995, implicit TLS).  Logins need TLS unless
 * plaintext_auth_loopback allows them from 127.0.0.1/::1.
 *
 * The maildrop lock (RFC 1939 section 8: one session per maildrop) lives
 * here, in memory: pochtad is the only process that serves POP3, so a
 * table of logged-in users is exact and dies with the process, never
 * leaving a stale lock behind. */
#ifndef POCHTA_POP3_POP3_SERVER_H
#define POCHTA_POP3_POP3_SERVER_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "auth/failures.h"
#include "core/config.h"
#include "core/workpool.h"
#include "net/listener.h"

struct event_base;
struct pop3_session;
struct pop3_maildrop;

struct pop3_server {
    const config *cfg;
    struct event_base *base;
    SSL_CTX *tls;
    workpool *pool;
    auth_failures *failures;    /* may be shared with SMTP: both run on the loop */
    connlimit *limits;          /* may be shared with SMTP */
    bool shutting_down;
    struct pop3_session *sessions;  /* every live session, for shutdown */
    unsigned nsessions;
    struct pop3_maildrop *maildrops;/* private: locks and last logins */
};

/* Take over an accepted socket: greet (or refuse over the connection
 * limits) and run the session until it ends.  implicit_tls: pop3s. */
void pop3_session_accept(struct pop3_server *srv, bool implicit_tls, int fd,
                         const struct sockaddr *peer);

/* Daemon is stopping: idle sessions get "-ERR [SYS/TEMP]" and are closed
 * without entering UPDATE (nothing is deleted); a session whose login or
 * QUIT is running on a worker, or that is sending a message, finishes
 * that first. */
void pop3_server_shutdown(struct pop3_server *srv);

/* Free what the server keeps between sessions (after the last session). */
void pop3_server_free(struct pop3_server *srv);

#endif
