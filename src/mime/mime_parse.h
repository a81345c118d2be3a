/* MIME structure of a message (RFC 2045, 2046, 2183, 2231, 5322) as the
 * IMAP server needs it for BODYSTRUCTURE, ENVELOPE, BODY[section] and
 * BINARY, and as outbound delivery needs it for 8BITMIME downgrade.
 *
 * mime_parse() is a pure function over a buffer the caller keeps: the tree
 * records byte offsets into it, never pointers, so a tree serialized into
 * the index (mime_tree_serialize) stays valid for the same message file.
 * Malformed mail never fails: every input gives a tree whose offsets are
 * within the buffer, and the flags say what was wrong.  Work and memory
 * are bounded by the message size and struct mime_limits.
 *
 * IMAP formatting is not done here; the session walks the tree.  Tree
 * invariants it can rely on:
 *   - a part of type "multipart" has at least one child;
 *   - a part of type "message" subtype "rfc822" or "global" has exactly one
 *     child, the encapsulated message, whose `env` is set;
 *   - every other part has no children;
 *   - type and subtype are lower case and never NULL. */
#ifndef POCHTA_MIME_PARSE_H
#define POCHTA_MIME_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/sbuf.h"
#include "mime/mime_header.h"

struct mime_limits {
    unsigned max_depth;     /* multipart/message nesting; deeper containers
                               are opaque (application/octet-stream) */
    unsigned max_parts;     /* parts in the tree, the root included */
    unsigned max_params;    /* parameters kept per Content-Type/-Disposition,
                               languages per Content-Language */
    unsigned max_addrs;     /* elements kept per ENVELOPE address field */
};

#define MIME_LIMITS_DEFAULT { 50, 10000, 64, 1000 }

enum mime_cte {
    MIME_CTE_7BIT,          /* also when the field is absent (RFC 2045 6.1) */
    MIME_CTE_8BIT,
    MIME_CTE_BINARY,
    MIME_CTE_QP,
    MIME_CTE_BASE64,
    MIME_CTE_OTHER,         /* unknown token: RFC 3516 UNKNOWN-CTE */
};

/* mime_part.flags */
#define MIME_PART_DEFAULT_TYPE 0x01u /* no usable Content-Type: RFC 2045 5.2
                                        default (or message/rfc822 in a digest) */
#define MIME_PART_OPAQUE       0x02u /* a container left unparsed (depth or part
                                        limit, or an encoded multipart/message):
                                        type set to application/octet-stream */
#define MIME_PART_NO_CLOSE     0x04u /* multipart without its close delimiter */
#define MIME_PART_NO_BOUNDARY  0x08u /* multipart without a boundary parameter or
                                        delimiter line: read as text/plain */
#define MIME_PART_NO_BODY      0x10u /* header not ended by an empty line */
#define MIME_PART_TRUNCATED    0x20u /* multipart with more parts than max_parts:
                                        the rest is left in the epilogue */

/* RFC 3501 7.4.2.  Strings are the header values unfolded and trimmed, not
 * decoded (IMAP sends them as they are); NULL when the field is absent.
 * IMAP's rule that an absent Sender/Reply-To takes the From value is the
 * formatter's: here the lists mirror the header. */
struct mime_envelope {
    char *date;
    char *subject;
    char *subject_utf8;     /* RFC 2047 decoded, for SEARCH and SORT */
    char *message_id;
    char *in_reply_to;
    struct mime_addr_list from, sender, reply_to, to, cc, bcc;
};

struct mime_part {
    struct mime_part *parent;
    struct mime_part *children;     /* first child; siblings via next */
    struct mime_part *next;
    size_t nchildren;

    /* Offsets into the parsed buffer: the header starts at hdr_off, the body
     * at body_off (after the empty line), and ends at end_off (before the
     * CRLF that belongs to the next multipart delimiter, RFC 2046 5.1.1). */
    size_t hdr_off, body_off, end_off;
    size_t body_lines;              /* line count of the body (last line
                                       counted even without its line end) */
    unsigned flags;                 /* MIME_PART_* */

    char *type, *subtype;           /* lower case, never NULL */
    struct mime_params type_params; /* the default adds charset=us-ascii */
    enum mime_cte cte;
    char *cte_name;                 /* lower-cased token, NULL if absent */
    char *id;                       /* Content-ID, unfolded, NULL if absent */
    char *description;              /* Content-Description, raw, unfolded */
    char *disposition;              /* lower-cased type, NULL if absent */
    struct mime_params disp_params;
    char **languages;               /* Content-Language tags (RFC 3282) */
    size_t nlanguages;
    char *location;                 /* Content-Location (RFC 2557), unfolded */
    char *md5;                      /* Content-MD5 (RFC 1864), unfolded */

    struct mime_envelope *env;      /* set on the root and on the child of a
                                       message/rfc822 part; else NULL */
};

static inline size_t mime_part_hdr_size(const struct mime_part *p)
{
    return p->body_off - p->hdr_off;
}

static inline size_t mime_part_body_size(const struct mime_part *p)
{
    return p->end_off - p->body_off;
}

/* Parse msg[0..len) into a tree the caller frees with mime_free().  lim may
 * be NULL for MIME_LIMITS_DEFAULT.  Never fails; returns the number of
 * parts in the tree (at least 1, at most lim->max_parts). */
size_t mime_parse(const char *msg, size_t len, const struct mime_limits *lim,
                  struct mime_part **root);
void mime_free(struct mime_part *root);

/* The part that IMAP section numbers select (RFC 3501 6.4.5): path[0..n)
 * are 1-based.  A message (the root or an encapsulated one) that is not
 * multipart has part number 1, itself; the
 * children of a message/rfc822 part are those of the encapsulated message.
 * Returns root for n == 0, NULL if no such part. */
const struct mime_part *mime_part_find(const struct mime_part *root, const unsigned *path,
                                       size_t n);

/* Cache format for the index: a compact binary blob.  serialize appends to
 * out.  deserialize checks everything (bounds, offsets within msg_len and
 * within the parent, depth and part count within lim, NULL = default) and
 * returns 0 with a new tree, or -1 if the blob is corrupt or from another
 * version (then re-parse the message). */
void mime_tree_serialize(const struct mime_part *root, sbuf *out);
int mime_tree_deserialize(const void *blob, size_t len, size_t msg_len,
                          const struct mime_limits *lim, struct mime_part **root);
/* Deep equality of two trees (every field, children in order). */
bool mime_tree_equal(const struct mime_part *a, const struct mime_part *b);

/* The transfer-decoded body of part p of msg (IMAP BINARY, RFC 3516),
 * appended to out (never longer than the body).  Returns 0, 1 if the
 * encoding had errors (lenient output still appended), or -1 for an
 * unknown Content-Transfer-Encoding (nothing appended). */
int mime_part_decode(const char *msg, const struct mime_part *p, sbuf *out);

/* For SEARCH BODY/TEXT: append the decoded text of every part of type "text" (in
 * tree order, encapsulated messages included), transfer-decoded and
 * converted to UTF-8 from its charset, each followed by "\n".  At most
 * max_out bytes are appended (0 = no limit); returns the number appended. */
size_t mime_text_extract(const char *msg, const struct mime_part *root, size_t max_out,
                         sbuf *out);

#endif
