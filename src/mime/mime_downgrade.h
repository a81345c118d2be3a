/* mime_downgrade: the RFC 6152 conversion of an 8-bit message to 7 bits,
 * for a peer that does not offer 8BITMIME.
 *
 * What is converted: every leaf part (not multipart, not message) whose
 * body has bytes >= 0x80 and whose Content-Transfer-Encoding is 7bit,
 * 8bit, binary or absent.  text bodies become quoted-printable (RFC 2045
 * 6.7, readable and exact: decode(encode(x)) == x), other bodies base64.
 * The part's Content-Transfer-Encoding field is rewritten (the old one
 * removed, the new one added last in its header); a multipart labelled
 * 8bit or binary is relabelled 7bit.  A top-level message without
 * MIME-Version gets "MIME-Version: 1.0" when its body is converted.
 *
 * What cannot be converted (the caller bounces, 5.6.3): 8-bit bytes in any
 * header section (that needs SMTPUTF8 or RFC 2047, not a body encoding);
 * 8-bit content inside message/rfc822 or message/global (RFC 2046 5.2.1:
 * only 7bit, 8bit or binary there, so the whole encapsulated message would
 * have to be rebuilt); 8-bit bytes in a part that says it is already
 * quoted-printable or base64; in a part left opaque by the parser's limits;
 * or in a preamble or epilogue.  The result is checked to be 7-bit as a
 * whole before success is returned.
 *
 * Signatures over the body (DKIM) do not survive the re-encoding; that is
 * accepted, as in Postfix.
 *
 * Pure: msg in, converted bytes appended to the caller's out; no I/O.
 * Memory is bounded by a small multiple of len (base64 grows by 4/3 plus
 * line ends, quoted-printable by at most 3 plus soft breaks). */
#ifndef POCHTA_MIME_MIME_DOWNGRADE_H
#define POCHTA_MIME_MIME_DOWNGRADE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/sbuf.h"

/* Returns 0 with the 7-bit message appended to out (a 7-bit input is
 * copied unchanged), or -1 with a one-line reason in why (out is then
 * left as it was on entry). */
int mime_downgrade(const char *msg, size_t len, sbuf *out, char *why, size_t whylen);

/* True if buf[0..len) has a byte >= 0x80. */
bool mime_has_8bit(const char *buf, size_t len);

#endif
