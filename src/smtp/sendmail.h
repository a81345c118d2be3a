/* The pure parts of the sendmail(8)-compatible entry point (`pochta
 * sendmail`, or the binary invoked as "sendmail"): command-line parsing,
 * the conversion of a local program's message on standard input into
 * CRLF text, and the header work of -t (recipients from To/Cc/Bcc, Bcc
 * removed).  No I/O and no globals: src/cmd/pochta.c reads stdin, talks to
 * pochtad's local socket and calls these over buffers.
 *
 * Addresses given without a domain ("root", as cron does) get
 * default_domain appended, the way Postfix appends $myorigin. */
#ifndef POCHTA_SMTP_SENDMAIL_H
#define POCHTA_SMTP_SENDMAIL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/sbuf.h"

/* sysexits.h values, the contract of sendmail(8) with its callers. */
enum {
    SENDMAIL_EX_OK = 0,
    SENDMAIL_EX_USAGE = 64,
    SENDMAIL_EX_DATAERR = 65,
    SENDMAIL_EX_NOUSER = 67,
    SENDMAIL_EX_UNAVAILABLE = 69,
    SENDMAIL_EX_SOFTWARE = 70,
    SENDMAIL_EX_IOERR = 74,
    SENDMAIL_EX_TEMPFAIL = 75,
    SENDMAIL_EX_CONFIG = 78,
};

/* Addresses are checked against the limits of RFC 5321 4.5.3.1 before
 * they are kept; the list is bounded by SENDMAIL_MAX_RCPTS. */
#define SENDMAIL_ADDRESS_MAX 320
#define SENDMAIL_MAX_RCPTS 1000

struct sendmail_rcpts {
    char **v;                   /* heap strings "local@domain" */
    size_t n, cap;
};

struct sendmail_opts {
    bool extract;               /* -t */
    bool ignore_dots;           /* -i, -oi: a line "." does not end the message */
    const char *sender;         /* -f / -r ADDR, or NULL (login@hostname) */
    const char *fullname;       /* -F NAME, or NULL */
    const char *config;         /* -C FILE, or NULL */
    const char *notify;         /* -N never|success,failure,delay, or NULL */
    const char *ret;            /* -R full|hdrs, or NULL */
    bool verbose;               /* -v */
    struct sendmail_rcpts rcpts;/* from the command line, domain-qualified */
};

/* Parse argv[1..argc) getopt-style (clustered flags, "-fADDR" or "-f ADDR",
 * "--" ends options, the first non-option starts the recipients).  Accepted
 * and ignored: -bm (the only mode), -oX... except -oi, -odX, -oeX, -v, -U,
 * -G, -n, -Am/-Ac, -X/-L/-h/-V/-B/-O with their argument.  Unsupported
 * modes (-bs, -bp, -bd, -q, ...) are errors.  Strings in *o point into argv
 * except o->rcpts, which the caller frees with sendmail_opts_free().
 * Returns 0, or -1 with err (the caller exits SENDMAIL_EX_USAGE). */
int sendmail_parse_args(int argc, char *const *argv, const char *default_domain, struct sendmail_opts *o,
                        char *err, size_t errlen);
void sendmail_opts_free(struct sendmail_opts *o);

/* Append every mailbox of an RFC 5322 address list (a header value or a
 * command-line argument: "a@x, Bob <b@y>, root") to r, domain-qualified,
 * skipping duplicates (ASCII case-insensitive) and groups' names.  Returns
 * the number added, or -1 when an address is too long or r is full. */
int sendmail_add_addresses(struct sendmail_rcpts *r, const char *text, size_t len, const char *default_domain);
void sendmail_rcpts_free(struct sendmail_rcpts *r);

/* Message input: bytes as a local program writes them. */
struct sendmail_input {
    bool ignore_dots;
    bool done;                  /* the "." line was seen: stop reading */
    bool line_start;            /* next byte begins a line */
    bool held_dot;              /* a '.' at line start not yet written */
    bool skip_lf;               /* a CR ended the line: an LF right after belongs to it */
};

void sendmail_input_init(struct sendmail_input *in, bool ignore_dots);

/* Convert in[0..len) to out: LF, CRLF and a lone CR end a line, written
 * as CRLF, and (unless ignore_dots) a line that is exactly "." ends the
 * message.  Nothing else changes (no dot-stuffing: it is sent with BDAT).
 * Returns the bytes consumed: less than len only once in->done is set. */
size_t sendmail_input_feed(struct sendmail_input *in, const char *buf, size_t len, sbuf *out);

/* End of input: write what is held and end an unterminated last line. */
void sendmail_input_finish(struct sendmail_input *in, sbuf *out);

/* What the header block says, for the headers the entry point adds. */
struct sendmail_header_info {
    bool has_from, has_date, has_message_id, has_body_separator;
};

/* Split msg (CRLF text from sendmail_input_feed) into its header block and
 * body.  Header fields are copied to out except Bcc (never sent on); with
 * extract, the mailboxes of To, Cc and Bcc are added to rcpts.  The body
 * (from the empty line on) is not copied: *body_off says where it starts
 * in msg (msg_len when there is none).  Returns the number of recipients
 * added, or -1 when an address was too long or too many were given. */
int sendmail_headers(const char *msg, size_t msg_len, bool extract, const char *default_domain,
                     struct sendmail_rcpts *rcpts, sbuf *out, size_t *body_off,
                     struct sendmail_header_info *info);

/* Exit status for an SMTP reply code and the command it answered
 * ("MAIL", "RCPT", "DATA"): 4xx -> EX_TEMPFAIL, 5xx to RCPT -> EX_NOUSER,
 * other 5xx -> EX_DATAERR (a 5.7.x policy refusal included). */
int sendmail_exit_status(int code, const char *stage);

#endif
