/* mta_proto: the pure parts of the outbound SMTP client (RFC 5321):
 * reading a server's multi-line replies, its EHLO keywords, and
 * dot-stuffing message content.  No I/O; the session (mta_session.h)
 * feeds bytes in and writes what comes out. */
#ifndef POCHTA_MTA_MTA_PROTO_H
#define POCHTA_MTA_MTA_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/sbuf.h"

/* A server may send any number of continuation lines; we keep at most
 * this much text and this many lines (the rest is counted, not stored). */
#define MTA_REPLY_TEXT_MAX 4096
#define MTA_REPLY_LINES_MAX 64

struct mta_reply {
    int code;                   /* 3 digits, valid once complete */
    char enhanced[16];          /* RFC 3463 "x.y.z" from the last line, or "" */
    sbuf text;                  /* line texts (after "code-"/"code "), joined by '\n' */
    unsigned lines;
    bool complete;
};

void mta_reply_init(struct mta_reply *r);
void mta_reply_free(struct mta_reply *r);
/* Start over for the next reply (keeps memory). */
void mta_reply_reset(struct mta_reply *r);

/* Feed one line without its CRLF.  Returns 1 when the reply is complete,
 * 0 when more lines follow, -1 for a malformed line (not three digits and
 * ' ' / '-' / end, a code outside 200..599, or a continuation line whose
 * code differs: RFC 5321 4.2.1 requires the same code on every line). */
int mta_reply_feed(struct mta_reply *r, const char *line, size_t len);

/* "550 5.1.1 text" on one line (continuations joined with a space), for
 * logs, queue errors and the Diagnostic-Code of a DSN.  Heap string. */
char *mta_reply_oneline(const struct mta_reply *r);

struct mta_caps {
    bool pipelining;            /* RFC 2920 */
    bool size;                  /* RFC 1870 */
    uint64_t size_max;          /* 0: no limit announced */
    bool eightbitmime;          /* RFC 6152 */
    bool smtputf8;              /* RFC 6531 */
    bool starttls;              /* RFC 3207 */
    bool dsn;                   /* RFC 3461 */
    bool enhancedstatuscodes;   /* RFC 2034 */
    bool chunking;              /* RFC 3030 BDAT */
    bool binarymime;            /* RFC 3030 */
    bool auth_plain, auth_login;    /* RFC 4954 AUTH mechanisms we can use */
};

/* Read the keywords of a complete 250 EHLO reply (the first line is the
 * greeting and carries no keyword). */
void mta_caps_parse(const struct mta_reply *ehlo, struct mta_caps *caps);

/* Dot-stuffing (RFC 5321 4.5.2) as a stream: any split of the input gives
 * the same output.  The queued content has CRLF line ends already. */
struct mta_dot {
    bool at_line_start;
    bool last_cr;
    char last;                  /* last byte emitted, to end the data with CRLF */
    bool any;
};

void mta_dot_init(struct mta_dot *d);
void mta_dot_feed(struct mta_dot *d, const char *in, size_t len, sbuf *out);
/* Terminate: CRLF if the content did not end with one, then ".\r\n". */
void mta_dot_end(struct mta_dot *d, sbuf *out);

/* xtext (RFC 3461 4) for ENVID and ORCPT values: '+', '=' and bytes
 * outside '!'..'~' become "+XX". */
void mta_xtext(sbuf *out, const char *s);

#endif
