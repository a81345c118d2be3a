/* store: durable per-user mailboxes (what SMTP delivers into and POP3/IMAP
 * read and modify).
 *
 * On-disk layout, all under the caller's RELATIVE root (normally "mail"):
 *
 *   <root>/<domain>/<local>/          user dir; both parts lower-cased and
 *                                     escaped (store_user_dirname())
 *     index.db (+ -wal, -shm)         SQLite index: a cache of the files below
 *     lock                            flock(): SH while a mutation has staged
 *                                     files in tmp/, EX for crash recovery
 *     subscriptions                   IMAP subscribed names, one per line
 *     tmp/                            staging: d.<guid> deliveries, x.* expunges,
 *                                     b.* deleted mailboxes (see store_recover.c)
 *     mbox/<id>/                      one directory per mailbox, named by a
 *                                     number: mailbox NAMES never touch a path
 *       meta                          name, uidvalidity, uid/modseq high-water
 *                                     marks, special-use attributes
 *       keywords                      keyword names; line i = flag letter 'a'+i
 *       acl                           RFC 4314 entries "ident rights" (store_acl.c)
 *       <uid>.<guid>:2,<letters>      one immutable message file; letters are
 *                                     maildir flags (D F R S T) + keyword letters;
 *                                     mtime = internaldate, st_size = size
 *
 * Why flags live in file names: the index must be rebuildable from the files
 * alone (store_rebuild()).  A flag change is a rename() plus one directory
 * fsync per batch, the same cost as an append-only flag log without the log
 * compaction.  UIDs and MODSEQs are reserved in blocks in `meta` (written
 * durably before any reserved number is used), so a rebuild restarts above
 * everything ever handed out and keeps UIDVALIDITY; only when the files
 * contradict each other (duplicate uid, lost meta) does it change UIDVALIDITY.
 *
 * Durability: every call that returns success has made its result durable
 * (file fsync, directory fsync, SQLite WAL commit with synchronous=FULL),
 * except flag changes and expunges under STORE_FSYNC_OPTIMIZED (see
 * store_set_fsync()).  A crash before success leaves staged files in tmp/
 * that the next store_user_open() repairs: committed deliveries are moved
 * into place, uncommitted ones (never acknowledged) are removed.
 *
 * Flags are in the index AND in the file names; the index is the truth.
 * A flag change renames the files, then commits; a crash in between leaves
 * names ahead of the index, and the next store_user_open() renames them
 * back to what the index says (a marker in the lock file names the mailbox
 * and the modseq of the last flag change begun: a commit that never
 * happened shows as a mailbox whose highestmodseq is below it).  Readers
 * find a file whatever letters its name carries.  Only store_rebuild(),
 * with the index lost, takes flags from the names.
 *
 * Threads: a store_user handle belongs to one thread at a time; open one
 * handle per thread (or per call).  Any number of handles, in any number of
 * processes, may work on the same user at once: writers serialise on SQLite
 * BEGIN IMMEDIATE with a busy timeout.  A handle costs an SQLite connection
 * and 4 descriptors, so long-lived sessions (IMAP) do not keep one: they
 * take one from the process-wide cache for each job (store_user_borrow())
 * and give it back (store_user_close()); the cache keeps a bounded number
 * of idle handles for every user recently used, shared by all its sessions.
 *
 * Errors: functions return 0 on success or a negative STORE_E* code and write
 * a human-readable reason into err (errlen bytes; err may be NULL).
 * Strings and arrays returned through out-parameters are heap allocated and
 * owned by the caller, who frees them with the matching *_free() function. */
#ifndef POCHTA_STORE_STORE_H
#define POCHTA_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* System flags (bitmask). */
#define STORE_SEEN      1u
#define STORE_ANSWERED  2u
#define STORE_FLAGGED   4u
#define STORE_DELETED   8u
#define STORE_DRAFT     16u
#define STORE_FLAGS_ALL 31u

/* Special-use mailbox attributes (RFC 6154), bitmask. */
#define STORE_MB_SENT    1u
#define STORE_MB_DRAFTS  2u
#define STORE_MB_TRASH   4u
#define STORE_MB_JUNK    8u
#define STORE_MB_ARCHIVE 16u

/* Error codes. */
#define STORE_EIO      (-1)   /* I/O or database failure: retry later (SMTP 451) */
#define STORE_ENOENT   (-2)   /* no such user / mailbox / message */
#define STORE_EEXIST   (-3)   /* mailbox name already exists */
#define STORE_EINVAL   (-4)   /* bad argument: invalid name, keyword, INBOX delete */
#define STORE_ELIMIT   (-5)   /* mailbox keyword slots exhausted (26 per mailbox) */

#define STORE_MAX_KEYWORDS   26     /* per mailbox: letters a..z */
#define STORE_MAX_NAME       1000   /* bytes of a mailbox name */
#define STORE_MAX_KEYWORD    100    /* bytes of a keyword */

typedef struct store_user store_user;

/* How durable flag changes and expunges are, process-wide (config key
 * mailbox_fsync); message content never changes: deliveries, APPEND and
 * the destination of COPY/MOVE are always fsync'd before success.
 *   STORE_FSYNC_ALWAYS     store_flags() and store_expunge() commit with
 *                          synchronous=FULL and fsync the mailbox directory
 *                          after their renames (the default until set).
 *   STORE_FSYNC_OPTIMIZED  they commit with synchronous=NORMAL (the WAL is
 *                          written but not fsync'd: atomic, and kept through
 *                          a crash or kill of the process; a power loss may
 *                          undo the last ones, and a message whose expunge
 *                          is undone comes back) and skip the directory
 *                          fsync.  The next FULL commit of the user (any
 *                          delivery) makes them durable too.  A delivery
 *                          skips the fsync of the mailbox directory after
 *                          its last rename: the file (fsync'd, in tmp/) and
 *                          its row are durable, and should a power failure
 *                          undo the rename, recovery finds the indexed tmp
 *                          file and moves it again.
 * Set it before any store call; safe to read from any thread. */
enum store_fsync { STORE_FSYNC_ALWAYS, STORE_FSYNC_OPTIMIZED };
void store_set_fsync(enum store_fsync mode);

/* Expunged uids remembered per mailbox for store_vanished() (default
 * 10000, at least 1).  Older ones are forgotten now and then (checked when
 * an expunge takes a uid that is a multiple of 64), so the history of a
 * busy mailbox stays bounded instead of growing for its whole life. */
void store_set_expunge_history(unsigned max);

/* Open a user's store under root (relative path, e.g. "mail"), creating it
 * (with INBOX, Sent, Drafts, Trash, Junk, Archive) when create is true.
 * Repairs crash leftovers and rebuilds a missing index.  Returns NULL with
 * err on failure.  One handle per thread at a time. */
store_user *store_user_open(const char *root, const char *address, bool create,
                            char *err, size_t errlen);
/* Closing keeps the handle (SQLite connection, prepared statements) idle in
 * a small process-wide cache for the next store_user_open() of the same
 * user.  store_cache_clear() closes the idle ones: call it before fork() and
 * at shutdown. */
void store_user_close(store_user *u);
void store_cache_clear(void);

/* A handle for one job of a session that has already opened the user's
 * store once with store_user_open() (which repaired crash leftovers and
 * created the user): an idle handle from the cache when there is one,
 * without store_user_open()'s scan of tmp/ (whose repair would wait for
 * other handles' writes in progress), else a newly opened one (ENOENT if
 * the user's store is gone).  Give it back with store_user_close() when
 * the job ends.  A borrowed handle reads from one snapshot of the index
 * until its first write (or until it is given back), so one command sees
 * one consistent state.  NULL with err on failure. */
store_user *store_user_borrow(const char *root, const char *address, char *err, size_t errlen);

/* A fingerprint of a user's index that changes whenever any handle, in
 * any process, commits a change (the identity, size and modification time
 * of index.db and its WAL): two stat() calls, no handle.  For sessions
 * that poll for changes made outside this process, to skip the store when
 * there are none.  Take it BEFORE reading the store, so that a change
 * committed during the read shows as a new stamp.  -1 if the files cannot
 * be looked at (then read the store). */
typedef struct store_stamp { uint64_t v[8]; } store_stamp;
int store_user_stamp(const char *root, const char *address, store_stamp *out);

/* Deliver: message content = prefix (prefix_len bytes, e.g. Return-Path +
 * Received headers) followed by body_len bytes read from body_fd starting at
 * offset 0.  body_fd's file offset is never moved, so threads may share it.
 * internaldate = arrival time.  flags: initial STORE_* system flags (0 for SMTP).
 * On success (durable, see above) returns 0 with *uid_out. */
int store_deliver(store_user *u, const char *mailbox, const void *prefix, size_t prefix_len,
                  int body_fd, uint64_t body_len, time_t internaldate, unsigned flags,
                  uint32_t *uid_out, char *err, size_t errlen);

/* IMAP APPEND: the message is data[0..len), with flags, keywords and date. */
int store_append(store_user *u, const char *mailbox, const void *data, size_t len,
                 unsigned flags, const char *const *keywords, size_t nkeywords,
                 time_t internaldate, uint32_t *uid_out, char *err, size_t errlen);
/* The same for a message the caller spooled to a file: len bytes of fd
 * from offset off (read with explicit offsets: fd's file offset is never
 * moved, so the fd may be shared).  The caller keeps and closes fd. */
int store_append_fd(store_user *u, const char *mailbox, int fd, uint64_t off, uint64_t len,
                    unsigned flags, const char *const *keywords, size_t nkeywords,
                    time_t internaldate, uint32_t *uid_out, char *err, size_t errlen);

/* ---- mailboxes ---- */

typedef struct store_mailbox {
    char *name;             /* owned by the array */
    unsigned attrs;         /* STORE_MB_* */
    bool subscribed;
} store_mailbox;

typedef struct store_status {
    uint32_t messages;
    uint32_t unseen;        /* messages without \Seen */
    uint32_t deleted;       /* messages with \Deleted (RFC 9051 STATUS DELETED) */
    uint32_t uidnext;
    uint32_t uidvalidity;
    uint64_t highestmodseq;
    uint64_t size;          /* sum of message sizes (RFC 9051 STATUS SIZE) */
} store_status;

/* Name rules: non-empty, at most STORE_MAX_NAME bytes, no NUL or control
 * bytes (< 0x20, 0x7f), '/' separates hierarchy levels so no empty level
 * (no leading, trailing or doubled '/').  "INBOX" is case-insensitive.
 * Pure function, for IMAP to call before anything else. */
bool store_mailbox_name_valid(const char *name);

int store_mailbox_create(store_user *u, const char *name, unsigned attrs,
                         char *err, size_t errlen);
/* Deletes the mailbox and its messages; INBOX cannot be deleted (EINVAL).
 * Children ("name/x") are not touched; subscriptions are kept (RFC 9051). */
int store_mailbox_delete(store_user *u, const char *name, char *err, size_t errlen);
/* Renames name and every "name/..." child.  Renaming INBOX moves all its
 * messages (UIDs and UIDVALIDITY kept) to `to` and leaves an empty INBOX. */
int store_mailbox_rename(store_user *u, const char *from, const char *to,
                         char *err, size_t errlen);
/* All mailboxes sorted by name; free with store_mailbox_list_free(). */
int store_mailbox_list(store_user *u, store_mailbox **out, size_t *count,
                       char *err, size_t errlen);
void store_mailbox_list_free(store_mailbox *list, size_t count);
/* Subscriptions are names, independent of existence (RFC 9051 6.3.7). */
int store_subscribe(store_user *u, const char *name, bool on, char *err, size_t errlen);
/* Subscribed names sorted; free with store_strings_free(). */
int store_subscriptions(store_user *u, char ***names, size_t *count, char *err, size_t errlen);
void store_strings_free(char **v, size_t count);

int store_mailbox_status(store_user *u, const char *name, store_status *st,
                         char *err, size_t errlen);

/* ---- messages ---- */

typedef struct store_msginfo {
    uint32_t uid;
    unsigned flags;         /* STORE_* system flags */
    uint32_t keywords;      /* bit i set = keyword names[i] of the list */
    time_t internaldate;
    uint64_t size;
    uint64_t modseq;
    char guid[17];          /* stable message id, shared by copies (EMAILID) */
} store_msginfo;

typedef struct store_msglist {
    store_msginfo *msgs;    /* ascending uid */
    size_t count;
    char **keywords;        /* the mailbox's keyword names by slot */
    size_t nkeywords;
    uint32_t uidvalidity;
    uint32_t uidnext;
    uint64_t highestmodseq;
} store_msglist;

/* Messages of a mailbox with modseq > changedsince (0 = all), as one
 * consistent snapshot.  Free with store_msglist_free(). */
int store_messages(store_user *u, const char *mailbox, uint64_t changedsince,
                   store_msglist *out, char *err, size_t errlen);
void store_msglist_free(store_msglist *l);

/* Open a message for reading: *fd_out is O_RDONLY, owned by the caller, who
 * closes it; *size_out (may be NULL) is its length.  ENOENT if no such uid. */
int store_msg_open(store_user *u, const char *mailbox, uint32_t uid, int *fd_out,
                   uint64_t *size_out, char *err, size_t errlen);

/* The message cache: facts about a message kept in the index next to its
 * row, so readers skip the file.  Message files never change, so an entry
 * is never stale; it is keyed by the file (guid), shared by every copy,
 * and goes with the last of them.  Like the rest of the index it is a
 * cache: an entry may be missing (older mail, a header over the limit),
 * and the file is then the answer.
 *   STORE_MSGCACHE_HEADER  the header block, byte for byte: up to and
 *                       including the empty line that ends it (the whole
 *                       message when it has none).  Written by every
 *                       delivery, APPEND and rebuild whose header is at
 *                       most the size set with store_set_header_cache().
 *   STORE_MSGCACHE_USER+n  owned by the caller (IMAP keeps its BODYSTRUCTURE
 *                       there), written with store_msgcache_put(). */
enum { STORE_MSGCACHE_HEADER = 1, STORE_MSGCACHE_USER = 16 };
/* Largest header block cached at delivery (0: none); before any store call. */
void store_set_header_cache(size_t max_bytes);
/* Entry `field` of message uid: 0 with *data (heap, NUL-terminated, the
 * caller frees it) and *len; 1 when there is none (or no such message). */
int store_msgcache_get(store_user *u, const char *mailbox, uint32_t uid, int field, char **data,
                       size_t *len, char *err, size_t errlen);
/* Add entries for messages of mailbox, in one transaction: uids[i] gets
 * entry fields[i] = data[i], len[i]; an existing entry is kept.  Not
 * fsync'd: an entry lost in a crash is simply computed again.  Ends the
 * handle's read snapshot.  0 or STORE_E*. */
int store_msgcache_put(store_user *u, const char *mailbox, const uint32_t *uids, const int *fields,
                       const char *const *data, const size_t *len, size_t n, char *err,
                       size_t errlen);

enum store_flag_op { STORE_FLAGS_SET, STORE_FLAGS_ADD, STORE_FLAGS_REMOVE };

typedef struct store_flag_result {
    uint32_t uid;
    int status;             /* 0, STORE_ENOENT (no such uid), or
                               STORE_EEXIST: modseq > unchangedsince, not changed */
    unsigned flags;         /* flags after the call */
    uint32_t keywords;      /* keyword bits after the call (slots of store_keywords()) */
    uint64_t modseq;        /* the message's modseq after the call */
} store_flag_result;

/* Change flags of uids[0..n) (IMAP STORE, POP3 has no use).  Keywords are
 * matched case-insensitively and added to the mailbox on first use (ELIMIT
 * when all 26 slots are taken).  unchangedsince != 0 applies the CONDSTORE
 * UNCHANGEDSINCE test per message.  Messages whose flags really change get
 * one new modseq; others keep theirs.  results (may be NULL) has n entries.
 * *highestmodseq_out (may be NULL) is the mailbox's value afterwards. */
int store_flags(store_user *u, const char *mailbox, const uint32_t *uids, size_t n,
                enum store_flag_op op, unsigned flags, const char *const *keywords,
                size_t nkeywords, uint64_t unchangedsince, store_flag_result *results,
                uint64_t *highestmodseq_out, char *err, size_t errlen);

/* Keyword names of a mailbox by slot; free with store_strings_free(). */
int store_keywords(store_user *u, const char *mailbox, char ***names, size_t *count,
                   char *err, size_t errlen);

/* Remove uids[0..n) durably (missing uids are ignored).  expunged (may be
 * NULL, n entries) receives the uids actually removed, *nexpunged their
 * count; the expunges are remembered for QRESYNC (store_vanished()). */
int store_expunge(store_user *u, const char *mailbox, const uint32_t *uids, size_t n,
                  uint32_t *expunged, size_t *nexpunged, char *err, size_t errlen);

/* Copy (or move) uids[0..n) of src to dst with flags and internaldate kept.
 * new_uids (may be NULL, n entries) gets each new uid or 0 if the source uid
 * did not exist; *dst_uidvalidity (may be NULL) is for COPYUID (RFC 4315). */
int store_copy(store_user *u, const char *src, const uint32_t *uids, size_t n,
               const char *dst, bool move, uint32_t *new_uids, uint32_t *dst_uidvalidity,
               char *err, size_t errlen);

/* QRESYNC: uids expunged with modseq > since, ascending; free() the array.
 * *complete is false when the store no longer knows every expunge after
 * `since` (index rebuilt, or history trimmed: store_set_expunge_history()):
 * then the client must be sent every uid it may hold that is not in
 * store_messages(). */
int store_vanished(store_user *u, const char *mailbox, uint64_t since, uint32_t **uids,
                   size_t *count, bool *complete, char *err, size_t errlen);

/* QUOTA (RFC 9208 STORAGE and MESSAGE resources): whole user. */
int store_quota_usage(store_user *u, uint64_t *bytes, uint64_t *messages,
                      char *err, size_t errlen);

/* ---- ACL (RFC 4314): rights of other identifiers on this user's mailboxes ---- */

typedef struct store_acl_entry {
    char *mailbox;          /* owned by the array */
    char *ident;            /* "anyone" or an account address, as given */
    char *rights;           /* rights letters, as given (the caller normalises) */
} store_acl_entry;

/* Set ident's rights on mailbox (rights NULL or "" removes the entry).
 * ENOENT: no such mailbox; EINVAL: an ident that is empty, longer than
 * STORE_MAX_NAME or holds control bytes, rights that are not printable
 * ASCII without spaces (at most 64).  The owner's own rights are never
 * stored.  Kept also in the mailbox's acl file: store_rebuild() restores it. */
int store_acl_set(store_user *u, const char *mailbox, const char *ident, const char *rights,
                  char *err, size_t errlen);
/* Entries of one mailbox (mailbox != NULL), or of every mailbox, sorted by
 * mailbox then identifier; free with store_acl_free().  0 with none. */
int store_acl_list(store_user *u, const char *mailbox, store_acl_entry **out, size_t *count,
                   char *err, size_t errlen);
void store_acl_free(store_acl_entry *v, size_t count);

/* Recreate index.db from the message files.  Flags, keywords, internaldate,
 * size and UIDs survive; uidnext and highestmodseq never go below what was
 * handed out before.  Run it with no other handle of that user open. */
int store_rebuild(const char *root, const char *address, char *err, size_t errlen);

/* "<domain>/<local>" for an address: both lower-cased, bytes outside
 * [a-z0-9._-] and a leading '.' written as %xx.  Returns a heap string the
 * caller frees, or NULL for an address that is not local@domain. */
char *store_user_dirname(const char *address);

#endif
