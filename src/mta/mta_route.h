/* mta_route: where mail for a domain goes, before DNS: directly to the
 * domain's MX hosts, to the smart host (relay_host), or to a next hop
 * named in the transport map.
 *
 * Next-hop syntax, as in Postfix's relayhost and transport(5):
 *     host            MX lookup of host, then its addresses; port = default
 *     host:port
 *     [host]          no MX lookup: host's own addresses (A/AAAA)
 *     [host]:port
 *     [192.0.2.1]:port, [2001:db8::1]:port   address literals
 * The default port is the caller's (outbound_port for the transport map
 * and relay_host alike).
 *
 * Transport map file: one "pattern  next-hop" per line; '#' starts a
 * comment line; blank lines are ignored.  pattern is a domain (matches
 * that domain only) or ".domain" (matches every subdomain of it, not the
 * domain itself).  next-hop is one of the forms above or the word
 * "relay" (use relay_host; direct MX delivery when relay_host is empty).
 * The most specific pattern wins: the exact domain, then the nearest
 * parent's ".parent" entry.
 *
 * mta_nexthop_parse and mta_transport_parse are pure (no I/O, no
 * globals); mta_transport_load reads a file (at most 4 MiB) and calls the
 * parser. */
#ifndef POCHTA_MTA_MTA_ROUTE_H
#define POCHTA_MTA_MTA_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns/dns_answer.h"

#define MTA_TRANSPORT_FILE_MAX (4u << 20)

enum mta_nexthop_kind {
    MTA_NH_MX,          /* the recipient domain's own MX hosts (no entry) */
    MTA_NH_HOST,        /* host[:port] or [host][:port] */
    MTA_NH_RELAY,       /* the transport map said "relay" */
};

struct mta_nexthop {
    enum mta_nexthop_kind kind;
    char host[DNS_NAME_TEXT_MAX + 1];   /* without brackets, lower case */
    uint16_t port;                      /* 0: the caller's default */
    bool no_mx;                         /* was bracketed: no MX lookup */
    bool literal;                       /* host is an IPv4 or IPv6 address */
};

/* Parse one next hop s[0..len) (not "relay").  Returns 0, or -1 with a
 * reason in why (empty, bad host name, bad port, unbalanced bracket). */
int mta_nexthop_parse(const char *s, size_t len, struct mta_nexthop *nh, char *why, size_t whylen);

/* The next hop as text for logs and keys: "host:port" or "[host]:port"
 * with the default port filled in. */
void mta_nexthop_format(const struct mta_nexthop *nh, uint16_t default_port, char *out, size_t outlen);

struct mta_transport_entry {
    char *domain;               /* lower case, without the leading '.' */
    bool subdomains;            /* written as ".domain" */
    struct mta_nexthop nh;
};

/* The caller owns the map (zero it first) and frees it with
 * mta_transport_free(). */
struct mta_transport_map {
    struct mta_transport_entry *v;
    size_t n;
};

/* Parse text[0..len) into map (entries are added to what is there).
 * Returns 0, or -1 with "line N: reason" in err; on error the map keeps
 * the lines before the bad one, to be freed by the caller. */
int mta_transport_parse(const char *text, size_t len, struct mta_transport_map *map, char *err, size_t errlen);

/* The entry for domain (any case), or NULL when the map has none. */
const struct mta_nexthop *mta_transport_lookup(const struct mta_transport_map *map, const char *domain);

void mta_transport_free(struct mta_transport_map *map);

/* Read and parse the file at path.  Returns 0, or -1 with
 * "PATH: reason" / "PATH:N: reason" in err. */
int mta_transport_load(const char *path, struct mta_transport_map *map, char *err, size_t errlen);

#endif
