/* The IMAP service (IMAP4rev1, RFC 3501): what every IMAP session shares.
 *
 * Announced, implemented and tested (tests/integration/test_imap.py):
 * STARTTLS, LOGINDISABLED, AUTH=PLAIN, AUTH=LOGIN, SASL-IR (4959),
 * LITERAL+ (7888), ID (2971), ENABLE (5161), IDLE (2177), NAMESPACE
 * (2342), UNSELECT (3691), UIDPLUS (4315), MOVE (6851), CHILDREN (3348),
 * LIST-EXTENDED (5258), LIST-STATUS (5819), SPECIAL-USE and
 * CREATE-SPECIAL-USE (6154), UTF8=ACCEPT (6855), ESEARCH (4731),
 * CONDSTORE (7162), STATUS=SIZE (8438), MULTIAPPEND (3502), BINARY
 * (3516), APPENDLIMIT (7889) (test_imap_append.py), SEARCHRES (5182,
 * test_imap_searchres.py), QRESYNC (7162, test_imap_qresync.py), SORT
 * and THREAD=ORDEREDSUBJECT/REFERENCES (5256, test_imap_sort.py), and
 * IDLE woken by the mailbox_notify bus (test_imap_idle_push.py), QUOTA
 * and QUOTA=RES-STORAGE (9208: one root "" per user, STORAGE only,
 * SETQUOTA refused, test_quota.py).  Not offered: ESORT, SORT=DISPLAY,
 * THREAD=REFS, ACL.
 *
 * One imap_server lives for the daemon's lifetime on the event-loop
 * thread; pochtad owns it (zeroed, then the public fields set) and
 * sessions only borrow it.  Two listeners: imap (port 143, STARTTLS
 * offered) and imaps (993, implicit TLS).  Logins need TLS unless
 * plaintext_auth_loopback allows them from 127.0.0.1/::1.
 *
 * Every store call of a session runs on the worker pool while the session
 * is paused; the session's state is touched by one thread at a time.
 * Changes made by other sessions (and by SMTP delivery) are found by
 * asking the store for what changed since the session's last look: at
 * every command, and while a client idles whenever the mailbox_notify bus
 * (core/mailbox_notify.h) says the selected mailbox changed; a 30 s
 * safety poll catches changes made by other processes. */
#ifndef POCHTA_IMAP_IMAP_SERVER_H
#define POCHTA_IMAP_IMAP_SERVER_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "auth/failures.h"
#include "core/config.h"
#include "core/workpool.h"
#include "net/listener.h"

struct event_base;
struct imap_session;
struct imap_recent;

struct imap_server {
    const config *cfg;
    struct event_base *base;
    SSL_CTX *tls;
    workpool *pool;
    auth_failures *failures;    /* may be shared with SMTP and POP3 */
    connlimit *limits;          /* may be shared with SMTP and POP3 */
    bool shutting_down;
    struct imap_session *sessions;  /* every live session, for shutdown */
    unsigned nsessions;
    struct imap_recent *recent; /* private: \Recent bookkeeping per mailbox */
};

/* Take over an accepted socket: greet (or refuse over the connection
 * limits) and run the session until it ends.  implicit_tls: imaps. */
void imap_session_accept(struct imap_server *srv, bool implicit_tls, int fd,
                         const struct sockaddr *peer);

/* Daemon is stopping: sessions waiting for a command (or idling) get
 * "* BYE" and are closed; a command running on a worker finishes first
 * and the session closes after its reply. */
void imap_server_shutdown(struct imap_server *srv);

/* Free what the server keeps between sessions (after the last session). */
void imap_server_free(struct imap_server *srv);

#endif
