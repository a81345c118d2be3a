/* The SMTP service: what every inbound SMTP session shares.
 *
 * One smtp_server lives for the daemon's lifetime on the event-loop
 * thread.  pochtad owns it; sessions only borrow it.  The three listeners
 * differ only in policy (smtp_listener_kind): MX on port 25 never offers
 * AUTH and only takes mail for local domains; submission (587) and
 * submissions (465, implicit TLS) require AUTH before MAIL, and AUTH only
 * after TLS.  The local listener (a Unix socket for `pochta sendmail`)
 * relays without AUTH: whoever can reach the socket is a local user, known
 * by SO_PEERCRED (uid in the log and the Received header). */
#ifndef POCHTA_SMTP_SERVER_H
#define POCHTA_SMTP_SERVER_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "auth/accounts.h"
#include "auth/failures.h"
#include "core/config.h"
#include "core/workpool.h"
#include "net/listener.h"

struct event_base;
struct smtp_session;

enum smtp_listener_kind {
    SMTP_LISTENER_MX,
    SMTP_LISTENER_SUBMISSION,
    SMTP_LISTENER_SUBMISSIONS,
    SMTP_LISTENER_LOCAL,
};

struct smtp_server {
    const config *cfg;
    struct event_base *base;
    SSL_CTX *tls;
    workpool *pool;
    accounts *acc;              /* loop-thread handle: RCPT/VRFY lookups */
    auth_failures *failures;
    connlimit *limits;
    bool shutting_down;
    struct smtp_session *sessions;  /* every live session, for shutdown */
    unsigned nsessions;
};

const char *smtp_listener_name(enum smtp_listener_kind kind);

/* Take over an accepted socket: greet (or refuse with 421 over the
 * connection limits) and run the session until it ends. */
void smtp_session_accept(struct smtp_server *srv, enum smtp_listener_kind kind, int fd,
                         const struct sockaddr *peer);

/* Daemon is stopping: idle sessions get 421 and are closed; a session whose
 * message is being written to disk gets its final reply first. */
void smtp_server_shutdown(struct smtp_server *srv);

#endif
