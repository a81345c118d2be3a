/* SASL decoding for SMTP AUTH (RFC 4954), POP3 AUTH and IMAP AUTHENTICATE:
 * strict base64 (RFC 4648 section 4) and the PLAIN message (RFC 4616).
 *
 * Pure functions over buffers: no I/O, no globals.  The LOGIN mechanism
 * (draft-murchison-sasl-login) needs no parser of its own: the session
 * sends "334 VXNlcm5hbWU6" ("Username:") and "334 UGFzc3dvcmQ6"
 * ("Password:") and decodes each answer with sasl_base64_decode(); an
 * answer of "*" cancels the exchange (RFC 4954: 501 5.0.0). */
#ifndef POCHTA_AUTH_SASL_H
#define POCHTA_AUTH_SASL_H

#include <stddef.h>

#include "core/sbuf.h"

/* Longest decoded PLAIN message accepted (RFC 4616 requires at least 255
 * octets for each of authcid and passwd). */
#define SASL_PLAIN_MAX 1024

/* Heap strings owned by the struct; free with sasl_creds_free(), which
 * also wipes the password. */
struct sasl_creds {
    char *authzid;              /* "" when the client sent none */
    char *authcid;
    char *password;
};

/* Decode a base64 PLAIN response "[authzid] NUL authcid NUL passwd".
 * Returns 0 with *out filled, or -1 (and *out zeroed) when malformed: bad
 * base64, not exactly two NULs, empty authcid or password, authzid or
 * authcid not UTF-8, decoded size over SASL_PLAIN_MAX.  "=" (the empty
 * initial response of RFC 4954) decodes to an empty message, which PLAIN
 * rejects.  Deciding what a non-empty authzid different from authcid means
 * is the caller's job (pochta refuses it). */
int sasl_plain_decode(const char *b64, size_t len, struct sasl_creds *out);
void sasl_creds_free(struct sasl_creds *c);

/* Strict base64: alphabet A-Z a-z 0-9 + /, length a multiple of 4, '='
 * only as final padding, unused bits zero, no white space.  The single
 * "=" of RFC 4954 means an empty response and decodes to nothing.
 * Appends the bytes to out (which the caller owns) and returns 0, or
 * returns -1 leaving out as it was.  The output is 3/4 of the input, so
 * the caller bounds it by bounding the input line. */
int sasl_base64_decode(const char *b64, size_t len, sbuf *out);
/* Append the base64 of data (with padding) to out. */
void sasl_base64_encode(const void *data, size_t len, sbuf *out);

#endif
