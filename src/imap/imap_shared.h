/* imap_shared: which accounts share mailboxes with whom.
 *
 * Grants live in each owner's store (store_acl_*), so answering "which
 * mailboxes of others may this user list" from the stores alone means
 * opening every account's store, for every LIST that reaches "Other
 * Users" (every LIST "" "*" of every client start-up).  This index keeps,
 * in memory, the identifiers each owner has granted any right to, so LIST
 * opens only the stores of owners who granted something to the user or to
 * "anyone"; the rights themselves are still read from those stores.
 *
 * It is built on first use by one walk over every account (once per
 * process) and kept current by imap_shared_refresh() after each ACL change
 * this process makes.  It is a superset of the truth, never a subset: an
 * owner whose grants went away another way (a mailbox deleted) stays
 * until its next refresh, which costs one store open, never a wrong
 * answer.  Thread-safe. */
#ifndef POCHTA_IMAP_SHARED_H
#define POCHTA_IMAP_SHARED_H

#include <stddef.h>

/* Owners (sorted, never `grantee` itself) with an ACL entry for grantee
 * or for "anyone".  0, or -1 when the accounts cannot be enumerated.
 * Free with imap_shared_free(). */
int imap_shared_owners(const char *grantee, char ***owners, size_t *n);
void imap_shared_free(char **owners, size_t n);
/* After a committed change of owner's ACL entries: read them again. */
void imap_shared_refresh(const char *owner);
/* Forget everything (tests; the next use walks the accounts again). */
void imap_shared_reset(void);

#endif
