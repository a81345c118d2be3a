/* dns: asynchronous resolution of a mail domain into the addresses to try,
 * on the libevent loop, using libunbound (which caches answers for their
 * TTL and follows CNAMEs).
 *
 * A route query does what RFC 5321 5.1 asks of an SMTP client: MX lookup,
 * ordering (dns_answer.h: preference, random among equals, null MX,
 * implicit MX), then A and AAAA lookups for every exchanger.  An address
 * literal "[192.0.2.1]" or "[IPv6:2001:db8::1]" needs no DNS at all.
 *
 * Threads: everything runs on the event-loop thread; libunbound resolves
 * in a thread of its own and signals through ub_fd(), which we watch.
 * Ownership: the resolver owns every query; a callback's route is valid
 * during the callback only, and the query is gone once its callback has
 * run (or dns_query_cancel() returned).  dns_resolver_free() cancels what
 * is pending without calling back. */
#ifndef POCHTA_DNS_DNS_H
#define POCHTA_DNS_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "dns/dns_answer.h"

struct event_base;
typedef struct dns_resolver dns_resolver;
typedef struct dns_query dns_query;

/* At most this many exchangers, and addresses per exchanger, are used
 * (Postfix's smtp_mx_address_limit plays the same role). */
#define DNS_MAX_HOSTS 10
#define DNS_MAX_ADDRS_PER_HOST 4

enum dns_status {
    DNS_OK,             /* targets[0..ntargets) in the order to try */
    DNS_TEMPFAIL,       /* server failure, timeout, no address for any exchanger: retry later */
    DNS_PERMFAIL,       /* the domain does not exist or has no mail host at all: bounce */
    DNS_NULLMX,         /* RFC 7505: the domain accepts no mail: bounce */
};

struct dns_target {
    char host[DNS_NAME_TEXT_MAX + 1];   /* exchanger name (or the literal) */
    uint16_t pref;
    struct sockaddr_storage addr;       /* port 0: the caller sets its own */
    socklen_t addrlen;
};

struct dns_route {
    enum dns_status status;
    const char *error;                  /* human text when status != DNS_OK */
    const struct dns_target *targets;
    size_t ntargets;
};

typedef void (*dns_route_cb)(const struct dns_route *route, void *ud);

/* server: "" for the system resolver (/etc/resolv.conf), or "HOST:PORT" /
 * "[V6]:PORT" / "HOST" for one forwarding server that gets every query.
 * Returns NULL with err. */
dns_resolver *dns_resolver_new(struct event_base *base, const char *server, char *err, size_t errlen);
void dns_resolver_free(dns_resolver *r);

/* Start resolving domain (a name or an address literal).  The callback
 * may run before this returns (literals, bad names).  Returns a handle
 * for dns_query_cancel(), or NULL when the callback has already run. */
dns_query *dns_resolve_route(dns_resolver *r, const char *domain, dns_route_cb cb, void *ud);
/* Like dns_resolve_route for a host named by configuration (a bracketed
 * relay host or transport-map next hop, Postfix's "[host]"): only its
 * A and AAAA records, no MX lookup; a name without addresses is a
 * temporary failure, since the fix is ours, not the remote's. */
dns_query *dns_resolve_host(dns_resolver *r, const char *host, dns_route_cb cb, void *ud);
void dns_query_cancel(dns_query *q);

/* Turn "127.0.0.1:5353" into unbound's "127.0.0.1@5353" (and "[::1]:53"
 * into "::1@53"; no port: as is).  Returns 0 or -1 if malformed. */
int dns_forwarder_syntax(const char *server, char *out, size_t outlen);

/* Parse an SMTP address literal's content ("192.0.2.1" or
 * "IPv6:2001:db8::1", without brackets) into addr.  Returns 0 or -1. */
int dns_parse_literal(const char *lit, size_t len, struct sockaddr_storage *addr, socklen_t *addrlen);

#endif
