/* pochtad's listening sockets: one row per listen_* key of the
 * configuration (smtp, submission, submissions, the local sendmail socket,
 * pop3, pop3s, imap, imaps), bound while still root and watched once the
 * protocol servers exist; every accepted connection goes to its
 * protocol's session_accept(). */
#ifndef POCHTA_CMD_POCHTAD_LISTENERS_H
#define POCHTA_CMD_POCHTAD_LISTENERS_H

#include "core/config.h"

struct event_base;
struct smtp_server;
struct pop3_server;
struct imap_server;

/* Bind every configured listener (as root: ports below 1024, the local
 * socket's folder given to run_as).  -1 with err naming the listener. */
int pochtad_listeners_bind(const config *cfg, char *err, size_t errlen);
/* Watch the bound sockets; accepted connections go to these servers.
 * -1 (after a message on stderr) when a socket cannot be watched. */
int pochtad_listeners_start(struct event_base *base, struct smtp_server *smtp, struct pop3_server *pop3,
                            struct imap_server *imap);
/* Stop accepting (shutdown) and remove the local socket's file, so a
 * client learns at once that no daemon is there.  Idempotent. */
void pochtad_listeners_stop(void);
/* Close what pochtad_listeners_bind() opened and was never watched. */
void pochtad_listeners_close(void);

#endif
