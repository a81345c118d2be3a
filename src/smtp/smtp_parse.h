/* SMTP command lines: RFC 5321 section 4.1 plus the ESMTP parameters of
 * RFC 1870 (SIZE), 6152 (8BITMIME), 3030 (BINARYMIME, CHUNKING/BDAT),
 * 6531 (SMTPUTF8), 3461 (DSN: RET, ENVID, NOTIFY, ORCPT) and 4954 (AUTH=).
 *
 * The parser knows the grammar, not the session: it accepts every
 * parameter it understands and leaves to the session whether that
 * parameter is allowed now (e.g. BODY=BINARYMIME when CHUNKING was not
 * advertised, or a UTF-8 RCPT when MAIL lacked SMTPUTF8: see path.utf8). */
#ifndef POCHTA_SMTP_PARSE_H
#define POCHTA_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/sbuf.h"
#include "smtp/smtp_address.h"

enum smtp_verb {
    SMTP_HELO, SMTP_EHLO, SMTP_MAIL, SMTP_RCPT, SMTP_DATA, SMTP_BDAT, SMTP_RSET,
    SMTP_NOOP, SMTP_QUIT, SMTP_HELP, SMTP_VRFY, SMTP_EXPN, SMTP_ETRN, SMTP_TURN,
    SMTP_SEND, SMTP_SOML, SMTP_SAML, SMTP_STARTTLS, SMTP_AUTH, SMTP_UNKNOWN
};

/* A reply for a rejected line.  All strings are static: never freed. */
struct smtp_error {
    int code;                 /* 500, 501, 553 or 555 */
    const char *enhanced;     /* RFC 3463 code, e.g. "5.5.4" */
    const char *text;
};

enum smtp_body { SMTP_BODY_UNSPEC, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };
enum smtp_ret { SMTP_RET_UNSPEC, SMTP_RET_FULL, SMTP_RET_HDRS };

#define SMTP_NOTIFY_NEVER   1u
#define SMTP_NOTIFY_SUCCESS 2u
#define SMTP_NOTIFY_FAILURE 4u
#define SMTP_NOTIFY_DELAY   8u

#define SMTP_ENVID_MAX 100      /* RFC 3461 4.4 */
#define SMTP_ORCPT_MAX 500      /* RFC 3461 4.2 */
#define SMTP_AUTHPARAM_MAX 500  /* RFC 4954 5: an addr-spec, bounded like ORCPT */

struct smtp_cmd {
    enum smtp_verb verb;
    /* Points into the caller's line: the text after the verb and its SP,
     * trailing spaces trimmed (HELO/EHLO domain, VRFY/EXPN/HELP/ETRN/NOOP
     * argument, AUTH "MECH [initial-response]", BDAT and MAIL/RCPT args).
     * NULL/0 when there is none.  Valid as long as the line is. */
    const char *arg;
    size_t arg_len;

    struct smtp_address path;           /* MAIL / RCPT */

    /* MAIL parameters */
    bool has_size;
    uint64_t size;                      /* SIZE=; saturates at UINT64_MAX */
    enum smtp_body body;
    bool smtputf8;
    enum smtp_ret ret;
    char envid[SMTP_ENVID_MAX + 1];     /* xtext-decoded ENVID, "" if none */
    bool has_auth;
    char auth[SMTP_AUTHPARAM_MAX + 1];  /* xtext-decoded AUTH= ("<>" kept) */

    /* RCPT parameters */
    unsigned notify;                    /* 0 = not given, else SMTP_NOTIFY_* */
    char orcpt[SMTP_ORCPT_MAX + 1];     /* "rfc822;addr", xtext decoded; "" if none */

    /* BDAT */
    uint64_t bdat_size;
    bool bdat_last;
};

/* Parse one command line given WITHOUT its CRLF; `line` need not be
 * NUL-terminated and may hold any bytes.  Line length limits belong to
 * the reader (RFC 5321 4.5.3.1.4), not to this function.
 * Returns 0 and fills *cmd, or -1 and fills *err (and cmd->verb when the
 * verb was recognized) with the reply to send:
 *   500 5.5.2  unrecognized command, or NUL/CR/LF/control bytes in the line
 *   501 5.5.4  argument syntax (missing HELO domain, args to QUIT/RSET/DATA/
 *              STARTTLS/TURN, bad BDAT, bad or duplicated parameter value)
 *   501 5.1.7  MAIL with a malformed reverse-path
 *   501 5.1.3  RCPT with a malformed forward-path
 *   553 5.6.7  MAIL with a non-ASCII path but no SMTPUTF8 parameter
 *   555 5.5.4  MAIL/RCPT parameter not recognized (RFC 5321 4.1.1.11)
 * "MAIL FROM: <a@b>" (space after the colon) is tolerated, as are extra
 * spaces between parameters and at the end of the line.  RCPT paths may be
 * UTF-8: the session must check cmd->path.utf8 against the transaction's
 * SMTPUTF8 and refuse with 553 5.6.7. */
int smtp_parse_command(const char *line, size_t len, struct smtp_cmd *cmd, struct smtp_error *err);

/* RFC 3461 4 xtext: "+XX" hex escapes (either case accepted).  Decodes
 * s[0..len) into out (size outlen, NUL-terminated).  Returns the decoded
 * length, or -1 if malformed, if it does not fit in outlen - 1 bytes, or if
 * it decodes to a control character (these values end up in DSN headers). */
int smtp_xtext_decode(const char *s, size_t len, char *out, size_t outlen);

/* Append the xtext encoding of the NUL-terminated s to out. */
void smtp_xtext_encode(const char *s, sbuf *out);

/* Name of a verb for logs ("MAIL"); "UNKNOWN" for SMTP_UNKNOWN. */
const char *smtp_verb_name(enum smtp_verb v);

#endif
