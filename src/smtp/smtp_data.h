/* The DATA / BDAT byte stream: RFC 5321 4.5.2 transparency, with the
 * end-of-data rules strict enough to defeat SMTP smuggling
 * (CVE-2023-51764/51765/51766): the ONLY terminator is CR LF "." CR LF
 * where the first CR LF is a real one (or the start of the data).
 *
 * A streaming state machine with O(1) state: the caller feeds whatever
 * bytes arrive, in pieces of any size, and gets message content appended
 * to an sbuf it owns and drains.  Splitting the input at any byte boundary
 * gives the same output and flags as feeding it whole. */
#ifndef POCHTA_SMTP_DATA_H
#define POCHTA_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/sbuf.h"

enum smtp_data_mode {
    SMTP_DATA_DOT,  /* DATA: dot-unstuffing, ends at CRLF.CRLF */
    SMTP_DATA_RAW,  /* BDAT chunks: no unstuffing, no terminator, flags tracked */
};

enum smtp_newline {
    SMTP_NEWLINE_NORMALIZE, /* bare LF and bare CR become CRLF in the output */
    SMTP_NEWLINE_KEEP,      /* output as received (BINARYMIME, or reject policy) */
};

struct smtp_data {
    /* private state */
    enum smtp_data_mode mode;
    enum smtp_newline nl;
    size_t max_line;
    size_t line_len;            /* input bytes since the last LF */
    unsigned char state;
    unsigned char hdr_state;
    unsigned char hdr_idx;

    /* results, valid as the stream goes and at the end */
    bool done;                  /* saw <CRLF>.<CRLF> (DOT mode only) */
    bool line_too_long;         /* an input line, CRLF included, exceeded max_line */
    bool bare_lf, bare_cr;      /* LF not preceded by CR / CR not followed by LF */
    bool nul;                   /* a NUL byte */
    bool eight_bit;             /* a byte >= 0x80 */
    unsigned received_headers;  /* "Received:" fields before the first empty line */
    uint64_t out_bytes;         /* content bytes produced so far */
};

/* max_line: RFC 5321 4.5.3.1.6 says 1000 (CRLF included); 0 = no limit. */
void smtp_data_init(struct smtp_data *d, enum smtp_data_mode mode, enum smtp_newline nl,
                    size_t max_line);

/* Feed len bytes; content is appended to out.  Returns the number of input
 * bytes consumed: all of them, except in DOT mode where consumption stops
 * right after the terminating CRLF.CRLF (done is set) so that pipelined
 * commands after it stay with the caller.  Returns 0 once done.
 * Too-long lines only set the flag; their content still flows so the
 * caller keeps counting and refuses the message at the end. */
size_t smtp_data_feed(struct smtp_data *d, const char *in, size_t len, sbuf *out);

/* End of input without a terminator (the last BDAT chunk): a CR held back
 * in case an LF followed is emitted now as a bare CR. */
void smtp_data_finish(struct smtp_data *d, sbuf *out);

#endif
