/* dns_answer: the pure half of outbound routing (no I/O, no globals).
 *
 * The resolver (dns.h) hands over record data exactly as libunbound gives
 * it: one RDATA blob per resource record, in wire format with names
 * uncompressed.  This layer turns those into an ordered list of mail
 * exchangers, following RFC 5321 section 5.1 and RFC 7505:
 *
 *   - MX records are tried in order of preference, lowest first; records
 *     of equal preference are tried in random order (RFC 5321 5.1, so load
 *     spreads over them);
 *   - a single MX whose exchange is the root "." is a null MX: the domain
 *     accepts no mail and the message bounces (RFC 7505 section 4.1); a
 *     "." mixed with real exchangers is ignored as an invalid host name;
 *   - no MX records at all: the domain itself is the implicit exchanger
 *     with preference 0, reached through its A/AAAA records (RFC 5321 5.1).
 *
 * CNAME chains are followed by unbound, so names here are final.  Every
 * name is bounded by RFC 1035 (255 octets on the wire, 253 as text). */
#ifndef POCHTA_DNS_DNS_ANSWER_H
#define POCHTA_DNS_DNS_ANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_NAME_TEXT_MAX 253       /* RFC 1035 2.3.4, without the trailing dot */

struct dns_mx {
    uint16_t pref;
    char name[DNS_NAME_TEXT_MAX + 1];   /* lower-case, no trailing dot; "" = root (null MX) */
};

/* Decode one uncompressed wire-format name at p[0..len): labels become
 * dot-separated lower-case text in out (no trailing dot; the root name is
 * "").  *used gets the wire bytes consumed.  Returns 0, or -1 for a
 * truncated or overlong name, a compression pointer, or a label holding
 * '.', a control byte or white space (such a name could not be written
 * into an SMTP command or a header safely). */
int dns_name_from_wire(const uint8_t *p, size_t len, size_t *used, char out[DNS_NAME_TEXT_MAX + 1]);

/* One MX RDATA (RFC 1035 3.3.9: 16-bit preference, exchange name).
 * Returns 0, or -1 if malformed or followed by extra bytes. */
int dns_mx_from_rdata(const uint8_t *rd, size_t len, struct dns_mx *out);

enum dns_mx_kind {
    DNS_MX_LIST,        /* mx[0..*n) is the ordered list of exchangers */
    DNS_MX_NULL,        /* RFC 7505 null MX: bounce, do not deliver */
    DNS_MX_IMPLICIT,    /* no usable MX: deliver to the domain's own address records */
};

/* Order mx[0..*n) in place for delivery and drop null entries mixed with
 * real ones (updating *n).  rnd(ctx) supplies randomness for shuffling
 * records of equal preference; tests pass a fixed sequence.  n == 0 gives
 * DNS_MX_IMPLICIT. */
enum dns_mx_kind dns_mx_order(struct dns_mx *mx, size_t *n, uint32_t (*rnd)(void *ctx), void *ctx);

/* True if s is a plausible host or domain name for a DNS query: 1..253
 * bytes of letters, digits, '-', '_', '.' and UTF-8 bytes, no empty label,
 * labels of at most 63 bytes.  (An address literal is not a name.) */
bool dns_name_valid(const char *s);

#endif
