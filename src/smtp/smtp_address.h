/* SMTP envelope paths: RFC 5321 section 4.1.2 (Path, Reverse-path,
 * Forward-path, Mailbox) with the RFC 6531 (SMTPUTF8) extensions.
 *
 * Pure functions over caller buffers: nothing is allocated, nothing is
 * global.  The result lives in fixed arrays sized by the RFC 5321 section
 * 4.5.3.1 limits, which are checked before anything is copied. */
#ifndef POCHTA_SMTP_ADDRESS_H
#define POCHTA_SMTP_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/sbuf.h"

/* RFC 5321 4.5.3.1.1-3, in octets (RFC 6531 3.3 keeps them in octets for
 * UTF-8 too).  LOCAL_MAX is measured on the local part as written (quotes
 * and backslashes included), PATH_MAX on everything from '<' to '>'
 * inclusive, source route included. */
#define SMTP_LOCAL_MAX  64
#define SMTP_DOMAIN_MAX 255
#define SMTP_PATH_MAX   256
#define SMTP_LABEL_MAX  63

struct smtp_address {
    bool null;                          /* the null reverse-path <> */
    /* Unquoted canonical form: "john doe" for <"john doe"@x>, quoted-pairs
     * resolved.  Never contains NUL or control characters. */
    char local[SMTP_LOCAL_MAX + 1];
    /* Lower-cased (ASCII only) domain, or an address literal verbatim with
     * its brackets ("[192.0.2.1]", "[IPv6:2001:db8::1]").  Empty for the
     * special RCPT TO:<Postmaster>, whose local is then "Postmaster". */
    char domain[SMTP_DOMAIN_MAX + 1];
    bool quoted;                        /* local is not a dot-atom: needs quoting */
    bool utf8;                          /* local or domain holds non-ASCII */
    bool literal;                       /* domain is an address literal */
};

/* Parse a Path / Reverse-path that starts at s[0] == '<' (the text after
 * "FROM:" / "TO:"); `s` need not be NUL-terminated.
 *   allow_utf8:       accept UTF-8 (well-formed only) in local part and
 *                     domain (RFC 6531); otherwise any byte >= 0x80 fails.
 *   allow_null:       accept "<>" (reverse-path only).
 *   allow_postmaster: accept "<Postmaster>" in any case, without domain
 *                     (forward-path only, RFC 5321 4.5.1).
 * A source route "<@a,@b:user@dom>" is validated and discarded.
 * Returns the number of bytes consumed (through the closing '>') and fills
 * *out, or -1 on any syntax or length error (*out is then zeroed). */
int smtp_parse_path(const char *s, size_t len, bool allow_utf8, bool allow_null,
                    bool allow_postmaster, struct smtp_address *out);

/* True if s[0..len) is exactly a Domain or an address-literal (RFC 5321
 * 4.1.2/4.1.3).  For the session to judge a HELO/EHLO argument. */
bool smtp_domain_valid(const char *s, size_t len, bool allow_utf8);

/* Append "local@domain" to out, re-quoting the local part when it is not a
 * dot-atom (quoted-string with '"' and '\' escaped as quoted-pairs).
 * Appends nothing for the null path, and only the local part when the
 * domain is empty (Postmaster).  Parsing "<" + result + ">" again yields
 * the same address. */
void smtp_address_format(const struct smtp_address *a, sbuf *out);

#endif
