/* Listening sockets and the connection limits that guard them.
 *
 * Sockets are bound by listener_bind() while still root (ports < 1024),
 * then handed to libevent after privileges are dropped. */
#ifndef POCHTA_NET_LISTENER_H
#define POCHTA_NET_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Bind and listen on "host:port" ("[::1]:25" for IPv6).  Returns the fd
 * (non-blocking, close-on-exec) or -1 with err. */
int listener_bind(const char *hostport, char *err, size_t errlen);

/* Bind and listen on a Unix stream socket at path, with the given mode
 * (chmod after bind, so the umask does not narrow it).  A socket file left
 * by a daemon that died is replaced; one that still accepts connections is
 * not ("in use" error).  Returns the fd (non-blocking, close-on-exec) or -1
 * with err. */
int listener_bind_unix(const char *path, mode_t mode, char *err, size_t errlen);

/* Text form of a peer address without port: "192.0.2.1" or "2001:db8::1"
 * (IPv4-mapped IPv6 addresses are shown as IPv4).  out must hold 64 bytes. */
void sockaddr_ip(const struct sockaddr *sa, char out[64]);

/* Counts of open connections, in total and per client address. */
typedef struct connlimit connlimit;
connlimit *connlimit_new(unsigned max_total, unsigned max_per_ip);
void connlimit_free(connlimit *cl);
/* Take a slot for ip: true if within limits (then connlimit_release must
 * follow), false if a limit is reached (*why says which). */
bool connlimit_acquire(connlimit *cl, const char *ip, const char **why);
void connlimit_release(connlimit *cl, const char *ip);
unsigned connlimit_total(const connlimit *cl);

/* Admit a new connection from ip on `service` (for the log): true when a
 * slot was taken (connlimit_release must follow).  Otherwise the socket is
 * answered with "<refusal> <reason>, try again later" when refusal is
 * non-NULL (plain-text listeners; an implicit-TLS one cannot speak before
 * its handshake), logged and closed.  shutdown_reason is the reason given
 * while the daemon is stopping. */
bool connlimit_admit(connlimit *cl, bool shutting_down, int fd, const char *ip, const char *service,
                     const char *refusal, const char *shutdown_reason);

#endif
