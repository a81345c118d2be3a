/* Charset conversion to UTF-8 for display, SEARCH and SORT.
 *
 * Uses glibc iconv (no global state: a descriptor per call).  Names are
 * matched the way mail readers do: "us-ascii" and unknown or missing
 * charsets are read as UTF-8 (8-bit text labelled ASCII is usually UTF-8),
 * "iso-8859-1" as windows-1252 (its superset, what senders really use),
 * "gb2312" as GB18030, and so on.  Invalid input never fails: each bad
 * sequence becomes U+FFFD. */
#ifndef POCHTA_MIME_CHARSET_H
#define POCHTA_MIME_CHARSET_H

#include <stdbool.h>
#include <stddef.h>

#include "core/sbuf.h"

/* Result bits of mime_charset_to_utf8(). */
#define MIME_CS_INVALID   1u    /* an invalid sequence was replaced by U+FFFD */
#define MIME_CS_TRUNCATED 2u    /* output stopped at max_out */
#define MIME_CS_UNKNOWN   4u    /* charset unknown to iconv; read as UTF-8 */

/* The "replacement character" U+FFFD in UTF-8. */
#define MIME_UTF8_REPLACEMENT "\xEF\xBF\xBD"

/* Convert len bytes in `charset` (NULL = UTF-8) and append valid UTF-8 to
 * out, at most max_out bytes (0 = no limit), cut only at a character
 * boundary.  An RFC 2231 language suffix ("utf-8*en") is ignored.
 * Returns a combination of MIME_CS_* bits (0 = clean). */
unsigned mime_charset_to_utf8(const char *charset, const char *in, size_t len, size_t max_out,
                              sbuf *out);

/* Append in[0..len) with every invalid UTF-8 sequence (overlong forms,
 * surrogates, > U+10FFFF, truncated) replaced by U+FFFD, at most max_out
 * bytes (0 = no limit).  Returns MIME_CS_* bits. */
unsigned mime_utf8_sanitize(const char *in, size_t len, size_t max_out, sbuf *out);

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
size_t mime_utf8_seq_len(const unsigned char *p, size_t avail);

#endif
