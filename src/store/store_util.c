/* Errors, prepared statements, transactions and small helpers. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "store/store_int.h"

int store_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

int store_dbfail(store_user *u, char *err, size_t errlen, const char *what)
{
    log_warn("store %s: %s: %s", u->path, what, sqlite3_errmsg(u->db));
    return store_fail(err, errlen, STORE_EIO, "%s: %s", what, sqlite3_errmsg(u->db));
}

static const char *const stmt_sql[ST__COUNT] = {
    [ST_MBOX_GET] = "SELECT id,name,uidvalidity,uidnext,highestmodseq,uidlimit,modseqlimit,"
                    "vanished_floor,attrs FROM mailbox WHERE name=?1",
    [ST_MBOX_GET_ID] = "SELECT id,name,uidvalidity,uidnext,highestmodseq,uidlimit,modseqlimit,"
                       "vanished_floor,attrs FROM mailbox WHERE id=?1",
    [ST_MBOX_SAVE] = "UPDATE mailbox SET name=?2,uidvalidity=?3,uidnext=?4,highestmodseq=?5,"
                     "uidlimit=?6,modseqlimit=?7,vanished_floor=?8,attrs=?9 WHERE id=?1",
    [ST_MSG_INSERT] = "INSERT INTO msg(mailbox_id,uid,guid,flags,keywords,internaldate,size,modseq)"
                      " VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
    [ST_MSG_GET] = "SELECT guid,flags,keywords,internaldate,size,modseq FROM msg"
                   " WHERE mailbox_id=?1 AND uid=?2",
    [ST_MSG_SET_FLAGS] = "UPDATE msg SET flags=?3,keywords=?4,modseq=?5"
                         " WHERE mailbox_id=?1 AND uid=?2",
    [ST_MSG_DELETE] = "DELETE FROM msg WHERE mailbox_id=?1 AND uid=?2",
    [ST_MSG_BY_GUID] = "SELECT mailbox_id,uid,flags,keywords FROM msg WHERE guid=?1",
    [ST_EXPUNGED_ADD] = "INSERT OR REPLACE INTO expunged(mailbox_id,uid,modseq) VALUES(?1,?2,?3)",
    [ST_KW_LIST] = "SELECT idx,name FROM keyword WHERE mailbox_id=?1 ORDER BY idx",
    [ST_KW_ADD] = "INSERT INTO keyword(mailbox_id,idx,name) VALUES(?1,?2,?3)",
    /* The planner, without statistics, prefers walking the primary key
     * (it gives uid order for free) to the modseq index: right for a whole
     * listing, a scan of the whole mailbox or expunge history for the
     * "what changed since" that every IMAP command asks.  So the two get
     * their own statements, and the second names its index. */
    [ST_MSG_LIST] = "SELECT uid,guid,flags,keywords,internaldate,size,modseq FROM msg"
                    " WHERE mailbox_id=?1 AND modseq>?2 ORDER BY uid",
    [ST_MSG_CHANGED] = "SELECT uid,guid,flags,keywords,internaldate,size,modseq FROM msg"
                       " INDEXED BY msg_modseq WHERE mailbox_id=?1 AND modseq>?2 ORDER BY uid",
    [ST_VANISHED] = "SELECT uid FROM expunged INDEXED BY expunged_modseq"
                    " WHERE mailbox_id=?1 AND modseq>?2 ORDER BY uid",
    [ST_KV_GET] = "SELECT value FROM kv WHERE key=?1",
    [ST_CACHE_GET] = "SELECT c.data FROM msg m JOIN cache c ON c.guid=m.guid AND c.field=?3"
                     " WHERE m.mailbox_id=?1 AND m.uid=?2",
    [ST_CACHE_PUT] = "INSERT OR IGNORE INTO cache(guid,field,data) VALUES(?1,?2,?3)",
    /* Every command of a session begins and ends at least one transaction,
     * and a handle switches between FULL (deliveries) and NORMAL (flag
     * changes) commits: kept prepared, as sqlite3_exec() would parse them
     * each time. */
    [ST_TX_BEGIN] = "BEGIN",
    [ST_TX_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_TX_COMMIT] = "COMMIT",
    [ST_TX_ROLLBACK] = "ROLLBACK",
    [ST_SYNC_FULL] = "PRAGMA synchronous=FULL",
    [ST_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL",
    [ST_CACHE_DROP] = "DELETE FROM cache WHERE guid=?1 AND NOT EXISTS(SELECT 1 FROM msg WHERE guid=?1)",
    [ST_KV_SET] = "INSERT OR REPLACE INTO kv(key,value) VALUES(?1,?2)",
};

sqlite3_stmt *store_stmt(store_user *u, enum stmt_id id)
{
    sqlite3_stmt *s = u->st[id];
    if (!s) {
        if (sqlite3_prepare_v3(u->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s, NULL)
            != SQLITE_OK) {
            log_warn("store %s: prepare: %s", u->path, sqlite3_errmsg(u->db));
            return NULL;
        }
        u->st[id] = s;
        return s;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

int store_exec(store_user *u, const char *sql)
{
    /* A plain BEGIN asks for a read snapshot: inside the borrowed handle's
     * one (store_read_begin) it already has it, and SQLite does not nest. */
    if (u->in_read && strcmp(sql, "BEGIN") == 0) return 0;
    static const struct { const char *sql; enum stmt_id id; } tx[] = {
        { "BEGIN", ST_TX_BEGIN }, { "BEGIN IMMEDIATE", ST_TX_BEGIN_IMMEDIATE },
        { "COMMIT", ST_TX_COMMIT }, { "ROLLBACK", ST_TX_ROLLBACK },
        { "PRAGMA synchronous=FULL", ST_SYNC_FULL }, { "PRAGMA synchronous=NORMAL", ST_SYNC_NORMAL },
    };
    for (size_t i = 0; i < sizeof tx / sizeof tx[0]; i++) {
        if (strcmp(sql, tx[i].sql) != 0) continue;
        sqlite3_stmt *s = store_stmt(u, tx[i].id);
        if (!s) return -1;
        int r = sqlite3_step(s);
        sqlite3_reset(s);
        return r == SQLITE_DONE ? 0 : -1;
    }
    return sqlite3_exec(u->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

/* Deferred: no lock and no file access until the first read. */
int store_read_begin(store_user *u)
{
    if (u->in_tx || u->in_read) return 0;
    if (store_exec(u, "BEGIN") != 0) return -1;
    u->in_read = true;
    return 0;
}

void store_read_end(store_user *u)
{
    /* COMMIT, not ROLLBACK: should a write ever run outside store_begin()
     * inside the snapshot, it is kept as autocommit would have kept it. */
    if (u->in_read) {
        if (store_exec(u, "COMMIT") != 0) (void)store_exec(u, "ROLLBACK");
        u->in_tx = false;       /* a read that store_exec() folded into it */
    }
    u->in_read = false;
    free(u->snap_box);
    u->snap_box = NULL;
}

bool store_read_own(store_user *u, int *rc)
{
    *rc = 0;
    if (u->in_tx || u->in_read) return false;
    *rc = store_read_begin(u);
    return *rc == 0;
}

/* Set once at start-up; atomic so that a test may switch it between calls
 * while worker threads read it. */
static _Atomic int fsync_mode = STORE_FSYNC_ALWAYS;

void store_set_fsync(enum store_fsync mode)
{
    fsync_mode = (int)mode;
}

bool store_light(void)
{
    return fsync_mode == STORE_FSYNC_OPTIMIZED;
}

/* synchronous is a property of the connection, read by each commit: set it
 * outside a transaction, and only when it changes (a handle alternates
 * between flag changes and deliveries). */
static int set_sync(store_user *u, bool normal, char *err, size_t errlen)
{
    if (u->sync_normal == normal) return 0;
    if (store_exec(u, normal ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL") != 0)
        return store_dbfail(u, err, errlen, "pragma synchronous");
    u->sync_normal = normal;
    return 0;
}

static int begin_sync(store_user *u, bool normal, char *err, size_t errlen)
{
    store_read_end(u);
    int rc = set_sync(u, normal, err, errlen);
    if (rc) return rc;
    if (store_exec(u, "BEGIN IMMEDIATE") != 0) return store_dbfail(u, err, errlen, "begin");
    u->in_tx = true;
    return 0;
}

int store_begin_light(store_user *u, char *err, size_t errlen)
{
    return begin_sync(u, store_light(), err, errlen);
}

int store_begin_unsynced(store_user *u, char *err, size_t errlen)
{
    return begin_sync(u, true, err, errlen);
}

/* IMMEDIATE takes the write lock up front, so two writers never both read
 * uidnext and then fight over the upgrade; the busy timeout makes waiting
 * for another thread or process transparent.  A read snapshot ends first:
 * a write works on the newest state, and so do the reads after it. */
int store_begin(store_user *u, char *err, size_t errlen)
{
    return begin_sync(u, false, err, errlen);
}

int store_commit(store_user *u, char *err, size_t errlen)
{
    if (u->in_read) {
        /* A read inside the snapshot (store_exec): the snapshot goes on. */
        u->in_tx = false;
        return 0;
    }
    if (store_exec(u, "COMMIT") != 0) {
        int rc = store_dbfail(u, err, errlen, "commit");
        store_rollback(u);
        return rc;
    }
    u->in_tx = false;
    return 0;
}

void store_rollback(store_user *u)
{
    if (u->in_tx && !u->in_read) (void)store_exec(u, "ROLLBACK");
    u->in_tx = false;
}

int store_fsync_at(int dirfd, const char *rel)
{
    int fd = openat(dirfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

const char *store_canon_name(const char *name)
{
    return ascii_casecmp(name, "INBOX") == 0 ? "INBOX" : name;
}

/* Unique per user forever (RFC 9051 2.3.1.1: a re-created name must get a new
 * UIDVALIDITY): the clock, but never at or below the last one handed out.
 * Called inside a write transaction. */
uint32_t store_new_uidvalidity(store_user *u)
{
    int64_t last = 0;
    sqlite3_stmt *s = store_stmt(u, ST_KV_GET);
    if (s) {
        sqlite3_bind_text(s, 1, "uidvalidity", -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_ROW) last = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
    }
    int64_t v = (int64_t)time(NULL);
    if (v <= last) v = last + 1;
    if (v <= 0 || v > (int64_t)UINT32_MAX) v = 1;
    if ((s = store_stmt(u, ST_KV_SET)) != NULL) {
        sqlite3_bind_text(s, 1, "uidvalidity", -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, v);
        sqlite3_step(s);
        sqlite3_reset(s);
    }
    return (uint32_t)v;
}

/* IMAP flag-keyword = atom (RFC 9051): no SP, CTL or atom-specials. */
int store_keyword_valid(const char *kw)
{
    size_t n = strlen(kw);
    if (n == 0 || n > STORE_MAX_KEYWORD) return 0;
    for (const unsigned char *p = (const unsigned char *)kw; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || strchr("(){%*\"\\]", *p)) return 0;
    return 1;
}

void store_strings_free(char **v, size_t count)
{
    if (!v) return;
    for (size_t i = 0; i < count; i++) free(v[i]);
    free(v);
}
