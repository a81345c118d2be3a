/* Content-Transfer-Encoding codecs: base64 and quoted-printable (RFC 2045
 * 6.7, 6.8).
 *
 * The decoders are streaming state machines with O(1) state, like
 * smtp/smtp_data.h: feed pieces of any size and the output is the same as
 * feeding the whole input.  They are lenient the way mail readers must be
 * (garbage is skipped or kept literally) and set `error` so a caller that
 * must be strict (IMAP BINARY, RFC 3516 UNKNOWN-CTE) can tell.
 * Output is appended to an sbuf the caller owns; decoded output is never
 * longer than the input, so a caller bounds memory by bounding the input. */
#ifndef POCHTA_MIME_CODEC_H
#define POCHTA_MIME_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/sbuf.h"

struct mime_b64_dec {
    /* private */
    uint32_t acc;
    unsigned char nchars;   /* base64 characters held in acc (0..3) */
    unsigned char pad;      /* '=' seen */
    /* results */
    bool error;             /* a byte outside the alphabet (not whitespace),
                               data after padding, or a partial quantum */
};

void mime_b64_dec_init(struct mime_b64_dec *d);
/* Whitespace is skipped silently; any other non-alphabet byte is skipped
 * and sets error.  Data after '=' padding is ignored (sets error). */
void mime_b64_dec_feed(struct mime_b64_dec *d, const char *in, size_t len, sbuf *out);
/* End of input: a partial quantum of 2 or 3 characters is still decoded
 * (as unpadded base64 is common) but 1 leftover character sets error. */
void mime_b64_dec_finish(struct mime_b64_dec *d, sbuf *out);

/* Encode with CRLF line breaks every `line_len` characters (76 for MIME
 * bodies, RFC 2045 6.8); 0 = a single line without a final CRLF. */
void mime_b64_encode(const void *in, size_t len, size_t line_len, sbuf *out);

/* Longest run of trailing-candidate whitespace the QP decoder holds back
 * (RFC 2045 6.7 rule 3 deletes whitespace at the end of an encoded line).
 * Longer runs are emitted as data: encoded lines are <= 76 characters, so
 * such a run cannot be transport padding.  Fixed, so chunking never
 * changes the result. */
#define MIME_QP_MAX_WS 256

struct mime_qp_dec {
    /* private */
    unsigned char state;
    unsigned char hex;          /* first hex digit after '=' */
    bool cr;                    /* a CR is held, waiting for LF */
    uint16_t nws;
    char ws[MIME_QP_MAX_WS];
    /* results */
    bool error;                 /* '=' not followed by two hex digits or a
                                   line break (kept literally) */
};

void mime_qp_dec_init(struct mime_qp_dec *d);
/* Hard line breaks are copied as they appear (CRLF, or a bare LF);
 * "=" [whitespace] line-break is a soft break and produces nothing.
 * Lower-case hex digits are accepted. */
void mime_qp_dec_feed(struct mime_qp_dec *d, const char *in, size_t len, sbuf *out);
void mime_qp_dec_finish(struct mime_qp_dec *d, sbuf *out);

enum mime_qp_mode {
    /* Text: CRLF in the input is a hard line break; a bare CR or LF is
     * encoded (=0D / =0A) so the round trip is exact. */
    MIME_QP_TEXT,
    /* Binary: every CR and LF is encoded; the output has only soft breaks. */
    MIME_QP_BINARY,
};

/* Encode so the result is 7-bit, every line is <= 76 characters (CRLF not
 * counted, RFC 2045 6.7 rule 5) and whitespace never ends a line.  This is
 * the RFC 6152 downgrade of an 8BITMIME body.  "." and "From " at the start
 * of a line are encoded too, so the output survives dot-stuffing mistakes
 * and mbox.  decode(encode(x)) == x for any x. */
void mime_qp_encode(const void *in, size_t len, enum mime_qp_mode mode, sbuf *out);

/* One-shot helpers: append the decoded bytes; return true if the input
 * had errors (the output is still the lenient decoding). */
bool mime_b64_decode(const char *in, size_t len, sbuf *out);
bool mime_qp_decode(const char *in, size_t len, sbuf *out);

#endif
