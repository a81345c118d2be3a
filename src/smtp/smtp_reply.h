/* SMTP replies: RFC 5321 4.2 (multi-line "code-text" / "code text") with
 * RFC 2034 / RFC 3463 enhanced status codes. */
#ifndef POCHTA_SMTP_REPLY_H
#define POCHTA_SMTP_REPLY_H

#include "core/sbuf.h"

/* Append a complete reply to out.  `code` must be 200..599 (printed as 3
 * digits).  Each '\n' in `text` starts a new line: every line but the last
 * is "code-", the last "code ".  A single trailing '\n' is ignored and a
 * CR right before a '\n' is dropped.  When `enhanced` is non-NULL it
 * follows the code on EVERY line ("250-2.0.0 text"); pass NULL for the
 * EHLO keyword lines (RFC 2034 3).  Other control characters (CR, NUL,
 * DEL, ...) in text or enhanced become '?', so peer data echoed in a reply
 * cannot inject lines.  Empty text gives "code" or "code enhanced".
 * Every line ends in CRLF. */
void smtp_reply_format(sbuf *out, int code, const char *enhanced, const char *text);

#endif
