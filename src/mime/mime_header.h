/* Header fields (RFC 5322 2.2, 3.6): iteration over a raw header block,
 * unfolding, selection for IMAP BODY[HEADER.FIELDS (...)], RFC 2047
 * encoded-word decoding, MIME parameters (RFC 2045 5.1 + RFC 2231) and
 * address lists for ENVELOPE (RFC 3501 7.4.2).
 *
 * All functions are pure: they read the buffers they are given and append
 * to sbufs or return heap objects the caller frees as documented.  Line
 * ends may be CRLF or bare LF; a NUL byte is ordinary data. */
#ifndef POCHTA_MIME_HEADER_H
#define POCHTA_MIME_HEADER_H

#include <stdbool.h>
#include <stddef.h>

#include "core/sbuf.h"

/* One field of a header block, pointing into that block. */
struct mime_field {
    const char *name;       /* field name, without trailing whitespace */
    size_t name_len;
    const char *value;      /* raw value after the colon, folding kept,
                               final line end excluded */
    size_t value_len;
    const char *raw;        /* the whole field, final line end included */
    size_t raw_len;
};

struct mime_header_iter {
    const char *p, *end;
};

/* Iterate the fields of hdr[0..len); the block may or may not include the
 * empty line that ends it (iteration stops there).  A line without a colon
 * is not a field and is skipped, with its continuation lines. */
void mime_header_iter_init(struct mime_header_iter *it, const char *hdr, size_t len);
bool mime_header_next(struct mime_header_iter *it, struct mime_field *f);

/* Size of the header block at msg[0..len), the empty line included, and
 * set *has_body: false when no empty line was found (the block is then the
 * whole input). */
size_t mime_header_size(const char *msg, size_t len, bool *has_body);

/* First field named `name` (case-insensitive).  Returns false if none. */
bool mime_header_find(const char *hdr, size_t len, const char *name, struct mime_field *f);

/* Append the value with line breaks of folding removed and leading and
 * trailing whitespace trimmed (what IMAP ENVELOPE sends as a string). */
void mime_header_unfold(const char *v, size_t len, sbuf *out);

/* BODY[HEADER.FIELDS (names)] and BODY[HEADER.FIELDS.NOT (names)]
 * (RFC 3501 6.4.5): append the matching fields (or, with `not`, the others)
 * verbatim with their folding, in message order, then the empty line
 * "\r\n" that ends a header.  Field names compare case-insensitively. */
void mime_header_select(const char *hdr, size_t len, const char *const *names, size_t nnames,
                        bool not, sbuf *out);

/* Decode a header value for display, SEARCH and SORT: unfold, decode
 * RFC 2047 encoded-words (B and Q, any charset via iconv; whitespace
 * between adjacent encoded-words dropped, 6.2; adjacent words of one
 * charset joined before conversion so a character split across words
 * survives) and return valid UTF-8.  Malformed encoded-words stay
 * literal; invalid bytes become U+FFFD.  At most max_out bytes are
 * appended (0 = no limit).  Returns true if anything was invalid. */
bool mime_header_decode(const char *v, size_t len, size_t max_out, sbuf *out);

/* A MIME parameter after RFC 2231 reassembly. */
struct mime_param {
    char *name;             /* lower case, without "*n" / "*" suffixes */
    char *value;            /* continuations joined; %XX decoded and
                               converted to UTF-8 when extended (name*=) */
    char *charset;          /* RFC 2231 charset, NULL if not extended */
    char *language;         /* RFC 2231 language, NULL if none */
};

struct mime_params {
    struct mime_param *v;
    size_t n;
};

/* Parse "value *(; attribute=value)" as in Content-Type and
 * Content-Disposition.  *first gets the leading value (type/subtype or
 * disposition type) lower-cased, without comments, possibly "" (never
 * NULL).  At most max_params parameters are kept; continuation sections
 * count, and numbering stops at the first missing section.  An extended
 * value wins over a plain one of the same name; otherwise the first wins.
 * Caller frees with mime_params_free() and free(*first). */
void mime_params_parse(const char *v, size_t len, size_t max_params, char **first,
                       struct mime_params *out);
void mime_params_free(struct mime_params *p);
/* The value of parameter `name`, or NULL. */
const char *mime_params_get(const struct mime_params *p, const char *name);

/* One element of an address list as IMAP ENVELOPE needs it (RFC 3501
 * 7.4.2): a group is a GROUP_START whose mailbox is the group name, its
 * members, then a GROUP_END with all fields NULL. */
enum mime_addr_kind { MIME_ADDR_MAILBOX, MIME_ADDR_GROUP_START, MIME_ADDR_GROUP_END };

/* Filled in for a mailbox whose local part or domain is missing, as
 * Dovecot does, so a NIL host never looks like a group to clients. */
#define MIME_MISSING_MAILBOX "MISSING_MAILBOX"
#define MIME_MISSING_DOMAIN  "MISSING_DOMAIN"

struct mime_address {
    enum mime_addr_kind kind;
    char *name;             /* display name as written (quotes removed,
                               encoded-words kept), or a trailing comment;
                               NULL if none */
    char *name_utf8;        /* name decoded (RFC 2047); NULL if name is */
    char *adl;              /* obsolete source route "@a,@b", or NULL */
    char *mailbox;          /* local part (a quoted one keeps its quotes) */
    char *host;             /* domain; NULL only for groups */
    bool invalid;           /* MISSING_* was filled in */
};

struct mime_addr_list {
    struct mime_address *v;
    size_t n;
};

/* Parse an RFC 5322 address-list (obsolete forms included) leniently:
 * garbage up to the next comma is skipped.  At most max_addrs elements
 * (group markers included) are kept.  Caller frees with
 * mime_addr_list_free(). */
void mime_addr_list_parse(const char *v, size_t len, size_t max_addrs, struct mime_addr_list *out);
void mime_addr_list_free(struct mime_addr_list *l);

#endif
