/* Modified UTF-7 mailbox names (RFC 3501 section 5.1.3) <-> UTF-8.
 *
 * IMAP4rev1 clients name mailboxes in modified UTF-7; pochta keeps names
 * in UTF-8 and converts at the protocol edge.  Both directions refuse
 * anything that would not survive the round trip: malformed UTF-8 or
 * base64, unpaired surrogates, non-zero padding bits, base64 spelling a
 * printable ASCII character, and control characters (0x00-0x1f, 0x7f),
 * which have no place in a mailbox name. */
#ifndef POCHTA_IMAP_IMAP_MUTF7_H
#define POCHTA_IMAP_IMAP_MUTF7_H

#include <stdbool.h>
#include <stddef.h>

#include "core/sbuf.h"

/* Output size that always suffices for decoding len input bytes (the NUL
 * included): base64 yields at most 9 UTF-8 bytes per 8 characters. */
#define IMAP_MUTF7_DECODE_MAX(len) ((len) + (len) / 8 + 2)

/* Decode in[0..len) into out (outsz bytes, NUL-terminated).  Returns the
 * UTF-8 length, or -1 when the input is malformed or out is too small. */
int imap_mutf7_decode(const char *in, size_t len, char *out, size_t outsz);

/* Append the modified UTF-7 form of the UTF-8 in[0..len) to out.  Returns
 * 0, or -1 (out untouched) when in is not valid UTF-8 or holds a control
 * character. */
int imap_mutf7_encode(const char *in, size_t len, sbuf *out);

/* Strict UTF-8 (RFC 3629): no overlongs, surrogates or values > U+10FFFF. */
bool imap_utf8_valid(const char *s, size_t len);

#endif
