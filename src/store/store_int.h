/* Internals shared by the store_*.c files; not for other subsystems. */
#ifndef POCHTA_STORE_STORE_INT_H
#define POCHTA_STORE_STORE_INT_H

#include <sqlite3.h>
#include <stdarg.h>
#include <sys/types.h>

#include "core/sbuf.h"
#include "store/store.h"

/* UIDs and MODSEQs are reserved in `meta` this many at a time: one extra
 * file write + 2 fsyncs per block instead of per message. */
#define STORE_UID_BLOCK    1024u
#define STORE_MODSEQ_BLOCK 4096u
#define STORE_BUSY_MS      30000

enum stmt_id {
    ST_MBOX_GET,
    ST_MBOX_GET_ID,
    ST_MBOX_SAVE,
    ST_MSG_INSERT,
    ST_MSG_GET,
    ST_MSG_SET_FLAGS,
    ST_MSG_DELETE,
    ST_MSG_BY_GUID,
    ST_EXPUNGED_ADD,
    ST_KW_LIST,
    ST_KW_ADD,
    ST_MSG_LIST,
    ST_MSG_CHANGED,
    ST_VANISHED,
    ST_KV_GET,
    ST_KV_SET,
    ST_CACHE_GET,
    ST_CACHE_PUT,
    ST_CACHE_DROP,
    ST_TX_BEGIN,
    ST_TX_BEGIN_IMMEDIATE,
    ST_TX_COMMIT,
    ST_TX_ROLLBACK,
    ST_SYNC_FULL,
    ST_SYNC_NORMAL,
    ST__COUNT
};

struct store_user {
    char *path;             /* "<root>/<domain>/<local>", relative */
    int dirfd;              /* the user dir: every file op is *at(dirfd, ...) */
    int lockfd;
    sqlite3 *db;
    sqlite3_stmt *st[ST__COUNT];    /* prepared on first use */
    bool in_tx;
    /* A borrowed handle reads from one snapshot (a deferred BEGIN, opened
     * by store_user_borrow()) until its first write or until it is given
     * back: the several reads of one command cost one transaction and
     * agree with each other.  snap_box caches a mailbox id by name for
     * that snapshot only (store_msg_open() per message of a FETCH). */
    bool in_read;
    char *snap_box;
    int64_t snap_box_id;
    bool cacheable;         /* fully opened: may be kept idle for reuse */
    bool sync_normal;       /* the connection is at synchronous=NORMAL */
    dev_t dir_dev, db_dev;  /* identity of the user dir and index.db, to */
    ino_t dir_ino, db_ino;  /* notice when a cached handle went stale */
};

/* A mailbox row. */
struct mbox {
    int64_t id;
    char *name;
    uint32_t uidvalidity;
    uint32_t uidnext;
    uint64_t highestmodseq;
    uint32_t uidlimit;      /* every uid ever used < uidlimit (mirrored in meta) */
    uint64_t modseqlimit;   /* every modseq ever used < modseqlimit */
    uint64_t vanished_floor;/* expunged table is complete only above this */
    unsigned attrs;
};

/* A message row. */
struct msgrow {
    uint32_t uid;
    char guid[17];
    unsigned flags;
    uint32_t keywords;
    int64_t internaldate;
    uint64_t size;
    uint64_t modseq;
};

/* store_util.c */
int store_fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int store_dbfail(store_user *u, char *err, size_t errlen, const char *what);
sqlite3_stmt *store_stmt(store_user *u, enum stmt_id id);
int store_exec(store_user *u, const char *sql);
int store_begin(store_user *u, char *err, size_t errlen);
/* store_begin() for a flag change or an expunge: under
 * STORE_FSYNC_OPTIMIZED its commit is synchronous=NORMAL (store.h). */
int store_begin_light(store_user *u, char *err, size_t errlen);
/* store_begin() for what may be lost in a crash (cache entries): the
 * commit is synchronous=NORMAL whatever the fsync mode. */
int store_begin_unsynced(store_user *u, char *err, size_t errlen);
/* True when flag changes and expunges skip their fsyncs. */
bool store_light(void);
int store_commit(store_user *u, char *err, size_t errlen);
void store_rollback(store_user *u);
/* The borrowed handle's read snapshot (see in_read): start one / end it. */
int store_read_begin(store_user *u);
void store_read_end(store_user *u);
/* For a read of its own: true if it started a transaction, which the
 * caller then ends with store_read_end(); false when already inside one. */
bool store_read_own(store_user *u, int *rc);
int store_fsync_at(int dirfd, const char *rel);
const char *store_canon_name(const char *name);
uint32_t store_new_uidvalidity(store_user *u);
int store_keyword_valid(const char *kw);

/* store_path.c */
void store_flag_letters(unsigned flags, uint32_t keywords, char out[40]);
int store_parse_msgname(const char *name, uint32_t *uid, char guid[17], unsigned *flags,
                        uint32_t *keywords);
void store_msg_relpath(sbuf *b, int64_t box, uint32_t uid, const char *guid, unsigned flags,
                       uint32_t keywords);

/* store_meta.c: mailbox rows and their durable mirror files */
int store_mbox_get(store_user *u, const char *name, struct mbox *mb, char *err, size_t errlen);
int store_mbox_get_id(store_user *u, int64_t id, struct mbox *mb);
void store_mbox_free(struct mbox *mb);
int store_mbox_save(store_user *u, const struct mbox *mb, char *err, size_t errlen);
int store_meta_write(store_user *u, const struct mbox *mb);
int store_meta_read(int dirfd, int64_t id, struct mbox *mb);
int store_alloc_uids(store_user *u, struct mbox *mb, uint32_t count, uint32_t *first,
                     char *err, size_t errlen);
int store_alloc_modseq(store_user *u, struct mbox *mb, uint64_t *modseq,
                       char *err, size_t errlen);
int store_kw_load(store_user *u, int64_t box, char ***names, size_t *count);
int store_kw_bits(store_user *u, int64_t box, const char *const *kws, size_t n, bool add,
                  uint32_t *bits, char *err, size_t errlen);
int store_kw_file_write(store_user *u, int64_t box, char **names, size_t count);
int store_subs_file_write(store_user *u);
int store_write_file_at(int dirfd, const char *dir, const char *name, const void *data,
                        size_t len);
int store_mailbox_make(store_user *u, const char *name, unsigned attrs, struct mbox *out,
                       char *err, size_t errlen);

/* store_msgcache.c */
/* Inside the write transaction that removes the row of guid (expunge,
 * mailbox delete): its cache entries go when no other row has the file. */
int store_msgcache_drop(store_user *u, const char *guid);
/* Delivery: the header block of the staged file fd of size bytes, when it
 * is at most the configured size; out stays empty otherwise. */
void store_msgcache_read_header(int fd, uint64_t size, sbuf *out);
/* Inside a write transaction: header (may be empty: nothing to do) as the
 * STORE_MSGCACHE_HEADER entry of guid.  0 or -1 (SQLite error). */
int store_msgcache_put_header(store_user *u, const char *guid, const sbuf *header);
/* The same from the message file at rel (store_rebuild()). */
int store_msgcache_header_file(store_user *u, const char *rel, const char *guid);
/* The id of mailbox name, looked up once per read snapshot. */
int store_snap_box(store_user *u, const char *mailbox, int64_t *box, char *err, size_t errlen);

/* store_message.c */
int store_msg_get(store_user *u, int64_t box, uint32_t uid, struct msgrow *m);
int store_msg_locate(store_user *u, int64_t box, const struct msgrow *m, sbuf *path);

/* store_recover.c */
/* locked: the caller already holds the lock file exclusively. */
void store_recover(store_user *u, bool locked);
/* Record, inside the write transaction and before the first rename, that
 * a flag change of mailbox box at modseq is under way (see store.h). */
void store_flag_mark(store_user *u, int64_t box, uint64_t modseq);
int store_rmtree_at(int dirfd, const char *rel);

/* store_user.c */
store_user *store_user_handle(const char *root, const char *address, bool create,
                              bool for_rebuild, char *err, size_t errlen);
int store_schema(store_user *u, char *err, size_t errlen);

/* store_acl.c: for store_rebuild(), inside its write transaction */
/* An empty acl table (created on an index from before ACLs).  0 or -1. */
int store_acl_reset(store_user *u);
/* Rows of mailbox box from its mbox/<box>/acl file (none without one).
 * 0, or -1 when the file cannot be read or the rows not written. */
int store_acl_restore(store_user *u, int64_t box);

/* store_rebuild.c */
int store_rebuild_handle(store_user *u, char *err, size_t errlen);

#endif
