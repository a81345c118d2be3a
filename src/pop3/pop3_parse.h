/* POP3 command parser (RFC 1939 section 3, RFC 2449, RFC 2595, RFC 5034,
 * RFC 6856).
 *
 * Pure function over one command line (without its CRLF): no I/O, no
 * globals, no allocation.  The result points into the caller's line, which
 * must outlive it.  Which commands are allowed in which state is the
 * session's business; the parser only checks the syntax every state
 * shares: the keyword, the number and shape of the arguments. */
#ifndef POCHTA_POP3_POP3_PARSE_H
#define POCHTA_POP3_POP3_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 2449 section 4: a command line is at most 255 octets with CRLF. */
#define POP3_LINE_MAX 255
/* RFC 2449 section 4: each argument up to 255 octets (RFC 1939 said 40,
 * too short for a full address). */
#define POP3_ARG_MAX 255
/* RFC 5034 section 4: SASL mechanism names are 1..20 characters. */
#define POP3_MECH_MAX 20

enum pop3_verb {
    POP3_UNKNOWN,
    POP3_USER, POP3_PASS, POP3_APOP, POP3_QUIT,
    POP3_STAT, POP3_LIST, POP3_RETR, POP3_DELE, POP3_NOOP, POP3_RSET,
    POP3_TOP, POP3_UIDL, POP3_LAST,
    POP3_CAPA, POP3_STLS, POP3_AUTH, POP3_UTF8,
};

struct pop3_cmd {
    enum pop3_verb verb;
    /* USER: the name; PASS: the rest of the line (spaces included, RFC
     * 1939 section 7); APOP: the name; AUTH: the mechanism (NULL for a
     * bare AUTH, which lists the mechanisms). */
    const char *arg;
    size_t arg_len;
    /* APOP: the digest; AUTH: the initial response, NULL when absent. */
    const char *arg2;
    size_t arg2_len;
    /* Message number (LIST, UIDL: only when has_msg), TOP line count. */
    bool has_msg;
    uint32_t msg;
    uint32_t lines;
};

/* Parse line[0..len).  Returns 0 with *cmd filled, or -1 with *err set to
 * a static reply text for "-ERR <text>".  An unrecognised keyword is not
 * an error: it gives verb POP3_UNKNOWN (the session answers it).  Message
 * numbers are decimal, 1..UINT32_MAX (RFC 1939: "msg" never 0); the TOP
 * line count is 0..UINT32_MAX.  Arguments may not contain control bytes
 * and must be valid UTF-8 (RFC 6856 lets USER and PASS carry it). */
int pop3_parse_command(const char *line, size_t len, struct pop3_cmd *cmd, const char **err);

/* Name of a verb for logs ("RETR"); "?" for POP3_UNKNOWN. */
const char *pop3_verb_name(enum pop3_verb verb);

#endif
