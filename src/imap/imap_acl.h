/* RFC 4314 rights strings: pure functions, no I/O (unit-tested in
 * tests/unit/test_imap_acl.c).
 *
 * pochta announces RIGHTS=texk: each of the eleven rights "lrswipkxtea" is
 * granted on its own.  The obsolete RFC 2086 rights are virtual (RFC 4314
 * 2.1.1), mapped the way the RFC's second group of servers does:
 * "c" (create) = k, "d" (delete) = x t e.  A rights string given with "c"
 * or "d" sets every member; a rights string sent back carries "c" when k is
 * granted and "d" when any of x, t, e is. */
#ifndef POCHTA_IMAP_IMAP_ACL_H
#define POCHTA_IMAP_IMAP_ACL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/sbuf.h"

#define IMAP_RIGHTS_LETTERS "lrswipkxtea"
#define IMAP_RIGHT_L (1u << 0)    /* lookup: LIST shows it */
#define IMAP_RIGHT_R (1u << 1)    /* read: SELECT, EXAMINE, FETCH, SEARCH, STATUS, COPY from */
#define IMAP_RIGHT_S (1u << 2)    /* keep \Seen */
#define IMAP_RIGHT_W (1u << 3)    /* write flags other than \Seen and \Deleted */
#define IMAP_RIGHT_I (1u << 4)    /* insert: APPEND, COPY/MOVE into */
#define IMAP_RIGHT_P (1u << 5)    /* post (no submission to mailboxes here; kept) */
#define IMAP_RIGHT_K (1u << 6)    /* create child mailboxes */
#define IMAP_RIGHT_X (1u << 7)    /* delete the mailbox */
#define IMAP_RIGHT_T (1u << 8)    /* set or clear \Deleted */
#define IMAP_RIGHT_E (1u << 9)    /* expunge */
#define IMAP_RIGHT_A (1u << 10)   /* administer: SETACL, DELETEACL, GETACL, LISTRIGHTS */
#define IMAP_RIGHTS_ALL 0x7ffu

/* How SETACL applies a rights string (RFC 4314 3.1). */
enum imap_rights_mod { IMAP_RIGHTS_REPLACE, IMAP_RIGHTS_ADD, IMAP_RIGHTS_REMOVE };

/* Parse s[0..len): an optional leading "+" or "-" into *mod, then rights
 * letters (case-sensitive, repeats allowed, "c" and "d" expanded) into
 * *bits.  Returns 0, or -1 for an unknown letter (RFC 4314 3.1: the
 * command then fails with BAD, never silently ignoring a right). */
int imap_rights_parse(const char *s, size_t len, enum imap_rights_mod *mod, unsigned *bits);

/* Apply a parsed SETACL to the current rights. */
unsigned imap_rights_apply(unsigned cur, enum imap_rights_mod mod, unsigned bits);

/* Append the canonical text: letters in "lrswipkxtea" order, then "c" and
 * "d" as described above (what MYRIGHTS and ACL responses carry). */
void imap_rights_format(sbuf *out, unsigned bits);
/* The same without the virtual "c"/"d": the form the store keeps. */
void imap_rights_format_plain(sbuf *out, unsigned bits);

/* An ACL identifier (RFC 4314 2): "anyone", or anything else; a leading
 * "-" names negative rights, which pochta does not support. */
bool imap_acl_ident_negative(const char *id, size_t len);
bool imap_acl_ident_anyone(const char *id, size_t len);

/* The "Other Users" namespace (RFC 2342 NAMESPACE second element): a name
 * "Other Users/<owner>/<mailbox>".  Splits name into the owner (copied into
 * a heap string *owner, lower-cased) and the owner's mailbox name (*rest,
 * pointing into name).  Returns 1 for such a name, 0 for one outside the
 * namespace, -1 for one in it that is malformed (no owner, no mailbox, an
 * empty, "." or ".." level anywhere, or an owner that is not an address). */
#define IMAP_OTHER_USERS "Other Users"
int imap_acl_split_shared(const char *name, char **owner, const char **rest);

#endif
