/* Opening a user's store: directories, the SQLite index, default folders. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "core/sqlite_relative.h"
#include "store/store_int.h"

/* Version 2: every IMAP command asks "what changed since modseq N" of the
 * selected mailbox (msg) and "what was expunged since N" (expunged); without
 * these the answer costs a scan of the whole mailbox and of its whole
 * expunge history, which grows with the mailbox's age.  And the message
 * cache (store_msgcache.c), keyed by the file's guid: files never change, so
 * an entry never goes stale. */
#define SCHEMA_V2 \
    "CREATE INDEX IF NOT EXISTS msg_modseq ON msg(mailbox_id, modseq);" \
    "CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged(mailbox_id, modseq);" \
    "CREATE TABLE IF NOT EXISTS cache(guid TEXT NOT NULL, field INTEGER NOT NULL," \
    " data BLOB NOT NULL, PRIMARY KEY(guid, field));"

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS kv(key TEXT PRIMARY KEY, value);"
    "CREATE TABLE IF NOT EXISTS mailbox("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,"
    " uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL, highestmodseq INTEGER NOT NULL,"
    " uidlimit INTEGER NOT NULL, modseqlimit INTEGER NOT NULL,"
    " vanished_floor INTEGER NOT NULL DEFAULT 0, attrs INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS msg("
    " mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL, guid TEXT NOT NULL,"
    " flags INTEGER NOT NULL, keywords INTEGER NOT NULL, internaldate INTEGER NOT NULL,"
    " size INTEGER NOT NULL, modseq INTEGER NOT NULL,"
    " PRIMARY KEY(mailbox_id, uid)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS msg_guid ON msg(guid);"
    "CREATE TABLE IF NOT EXISTS keyword(mailbox_id INTEGER NOT NULL, idx INTEGER NOT NULL,"
    " name TEXT NOT NULL, PRIMARY KEY(mailbox_id, idx)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS expunged(mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL,"
    " modseq INTEGER NOT NULL, PRIMARY KEY(mailbox_id, uid)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS subscription(name TEXT PRIMARY KEY) WITHOUT ROWID;"
    /* RFC 4314 ACL rows (store_acl.c; older indexes get it on first use) */
    "CREATE TABLE IF NOT EXISTS acl(mailbox_id INTEGER NOT NULL, ident TEXT NOT NULL,"
    " rights TEXT NOT NULL, PRIMARY KEY(mailbox_id, ident)) WITHOUT ROWID;"
    SCHEMA_V2
    "PRAGMA user_version=2;";

static int user_version(store_user *u)
{
    sqlite3_stmt *s;
    int v = -1;
    if (sqlite3_prepare_v2(u->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK) return -1;
    if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

int store_schema(store_user *u, char *err, size_t errlen)
{
    int v = user_version(u);
    if (v == 2) return 0;
    if (v != 0 && v != 1) return store_fail(err, errlen, STORE_EIO, "unknown index version %d", v);
    int rc = store_begin(u, err, errlen);
    if (rc) return rc;
    /* Another handle may have upgraded it while this one waited to write. */
    v = user_version(u);
    const char *sql = v == 0 ? schema_sql : v == 1 ? SCHEMA_V2 "PRAGMA user_version=2;" : "";
    if (store_exec(u, sql) != 0) {
        rc = store_dbfail(u, err, errlen, "schema");
        store_rollback(u);
        return rc;
    }
    return store_commit(u, err, errlen);
}

static const struct { const char *name; unsigned attrs; } default_boxes[] = {
    { "INBOX", 0 }, { "Sent", STORE_MB_SENT }, { "Drafts", STORE_MB_DRAFTS },
    { "Trash", STORE_MB_TRASH }, { "Junk", STORE_MB_JUNK }, { "Archive", STORE_MB_ARCHIVE },
};

static int64_t mailbox_count(store_user *u)
{
    sqlite3_stmt *s;
    int64_t n = -1;
    if (sqlite3_prepare_v2(u->db, "SELECT count(*) FROM mailbox", -1, &s, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW) n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

/* Called with the lock file held exclusively and no mailbox rows. */
static int create_defaults(store_user *u, char *err, size_t errlen)
{
    int rc = store_begin(u, err, errlen);
    if (rc) return rc;
    sqlite3_stmt *s;
    for (size_t i = 0; i < sizeof default_boxes / sizeof default_boxes[0]; i++) {
        rc = store_mailbox_make(u, default_boxes[i].name, default_boxes[i].attrs, NULL, err, errlen);
        if (rc) { store_rollback(u); return rc; }
        if (sqlite3_prepare_v2(u->db, "INSERT OR IGNORE INTO subscription(name) VALUES(?1)", -1,
                               &s, NULL) == SQLITE_OK) {
            sqlite3_bind_text(s, 1, default_boxes[i].name, -1, SQLITE_STATIC);
            sqlite3_step(s);
            sqlite3_finalize(s);
        }
    }
    if (store_subs_file_write(u) != 0) {
        store_rollback(u);
        return store_fail(err, errlen, STORE_EIO, "cannot write subscriptions");
    }
    return store_commit(u, err, errlen);
}

/* A freshly made chain of directories is only durable once each parent has
 * been fsync'd; done once, when the user is created. */
static void fsync_chain(const char *path)
{
    char *p = xstrdup(path);
    for (;;) {
        fsync_dir(p, true);
        char *slash = strrchr(p, '/');
        if (!slash) break;
        *slash = '\0';
    }
    fsync_dir(".", true);
    free(p);
}

static void destroy(store_user *u);

/* journal_mode is persistent, so only the first open of a new index sets
 * it; that change does not go through the busy handler, hence the retry
 * when several threads create one user at once. */
static int set_wal(store_user *u)
{
    for (int attempt = 0; attempt < 300; attempt++) {
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(u->db, attempt ? "PRAGMA journal_mode=WAL" : "PRAGMA journal_mode",
                               -1, &s, NULL) != SQLITE_OK)
            return -1;
        int r = sqlite3_step(s);
        bool wal = r == SQLITE_ROW &&
                   ascii_casecmp((const char *)sqlite3_column_text(s, 0), "wal") == 0;
        sqlite3_finalize(s);
        if (wal) return 0;
        if (attempt && r != SQLITE_BUSY && r != SQLITE_LOCKED && r != SQLITE_ROW) return -1;
        if (attempt) {
            struct timespec ts = { 0, 10 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
    }
    return -1;
}

/* A user without mailboxes: either brand new (populate it) or its index was
 * lost (rebuild from the files).  Decided under the exclusive lock, which
 * creation and rebuild both hold, so concurrent first opens do it once and
 * never see another's half-made directories. */
static int init_user(store_user *u, bool create, char *err, size_t errlen)
{
    flock(u->lockfd, LOCK_EX);
    int64_t n = mailbox_count(u);
    int rc = 0;
    if (n < 0) {
        rc = store_dbfail(u, err, errlen, "count");
    } else if (n == 0) {
        bool has_boxes = false;
        int fd = openat(u->dirfd, "mbox", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        struct dirent *e;
        while (d && !has_boxes && (e = readdir(d)) != NULL) has_boxes = e->d_name[0] != '.';
        if (d) closedir(d);
        else if (fd >= 0) close(fd);
        if (has_boxes) rc = store_rebuild_handle(u, err, errlen);
        else if (create) rc = create_defaults(u, err, errlen);
    }
    flock(u->lockfd, LOCK_UN);
    return rc;
}

store_user *store_user_handle(const char *root, const char *address, bool create,
                              bool for_rebuild, char *err, size_t errlen)
{
    char *dn = store_user_dirname(address);
    if (!dn) {
        store_fail(err, errlen, STORE_EINVAL, "invalid address");
        return NULL;
    }
    store_user *u = xcalloc(1, sizeof *u);
    u->dirfd = u->lockfd = -1;
    sbuf p = SBUF_INIT;
    sbuf_printf(&p, "%s/%s", root, dn);
    free(dn);
    u->path = sbuf_detach(&p);

    u->dirfd = open(u->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bool fresh = false;
    if (u->dirfd < 0 && errno == ENOENT && create) {
        if (mkdir_p(u->path, 0700) != 0) {
            store_fail(err, errlen, STORE_EIO, "mkdir %s: %s", u->path, strerror(errno));
            goto fail;
        }
        fresh = true;
        u->dirfd = open(u->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (u->dirfd < 0) {
        store_fail(err, errlen, errno == ENOENT ? STORE_ENOENT : STORE_EIO, "open %s: %s",
                   u->path, strerror(errno));
        goto fail;
    }
    if ((mkdirat(u->dirfd, "tmp", 0700) != 0 && errno != EEXIST) ||
        (mkdirat(u->dirfd, "mbox", 0700) != 0 && errno != EEXIST)) {
        store_fail(err, errlen, STORE_EIO, "mkdir in %s: %s", u->path, strerror(errno));
        goto fail;
    }
    u->lockfd = openat(u->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (u->lockfd < 0) {
        store_fail(err, errlen, STORE_EIO, "lock file: %s", strerror(errno));
        goto fail;
    }
    if (fresh) fsync_chain(u->path);
    bool had_index = faccessat(u->dirfd, "index.db", F_OK, 0) == 0;

    sbuf dbp = SBUF_INIT;
    sbuf_printf(&dbp, "%s/index.db", u->path);
    int r = sqlite3_open_v2(dbp.data, &u->db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                            sqlite_relative_vfs());
    sbuf_free(&dbp);
    if (r != SQLITE_OK) {
        store_fail(err, errlen, STORE_EIO, "open index: %s",
                   u->db ? sqlite3_errmsg(u->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(u->db, STORE_BUSY_MS);
    /* The last connection to close would checkpoint and delete the WAL:
     * work for nothing when a handle leaves the cache, and a new stamp
     * (store_user_stamp) that sends every idle session of the user back to
     * the store.  The WAL keeps only committed, fsync'd transactions;
     * SQLite replays it on the next open, and autocheckpoints at commit
     * keep it small.  store_rebuild() removes it with index.db. */
    sqlite3_db_config(u->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
    /* WAL + FULL: a commit returns only after the WAL is fsync'd, and readers
     * (IMAP sessions) never block the delivering writer. */
    if (set_wal(u) != 0 || store_exec(u, "PRAGMA synchronous=FULL") != 0) {
        int ec = sqlite3_errcode(u->db);
        /* Not rebuilt here: other handles may have the file open.  Say what
         * the operator can do, as the index is only a cache of the files. */
        if (!for_rebuild && (ec == SQLITE_NOTADB || ec == SQLITE_CORRUPT))
            log_error("store %s: index.db is damaged (%s): mail for %s is deferred until "
                      "'pochta rebuild %s' recreates it from the message files (stop pochtad first)",
                      u->path, sqlite3_errmsg(u->db), address, address);
        store_dbfail(u, err, errlen, "pragma");
        goto fail;
    }
    if (store_schema(u, err, errlen) != 0) goto fail;
    struct stat st;
    if (fstat(u->dirfd, &st) == 0) { u->dir_dev = st.st_dev; u->dir_ino = st.st_ino; }
    if (fstatat(u->dirfd, "index.db", &st, 0) == 0) { u->db_dev = st.st_dev; u->db_ino = st.st_ino; }
    /* SQLite syncs the directory for its WAL, not for index.db itself. */
    if (!had_index) store_fsync_at(u->dirfd, ".");
    if (for_rebuild) return u;

    if (mailbox_count(u) <= 0 && init_user(u, create, err, errlen) != 0) goto fail;
    store_recover(u, false);
    u->cacheable = true;
    return u;
fail:
    destroy(u);
    return NULL;
}

/* Idle handles, most recently closed last.  SMTP opens a handle per
 * delivery and IMAP sessions one per command (store_user_borrow()); reusing
 * an idle one skips the SQLite open, the schema parse, the statement
 * preparation and the WAL re-creation that the last connection's close
 * would force.  Handles in use are at most one per worker thread, so the
 * cache bounds the store's descriptors (4 per handle) and SQLite memory
 * whatever the number of sessions: 64 covers the users active at once
 * with room for a burst.  Not fork-safe: call store_cache_clear() before
 * fork(). */
#define CACHE_MAX 64
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static store_user *cache[CACHE_MAX];
static size_t ncache;

static store_user *cache_take(const char *path)
{
    store_user *u = NULL;
    pthread_mutex_lock(&cache_mu);
    for (size_t i = ncache; i-- > 0;) {
        if (strcmp(cache[i]->path, path) != 0) continue;
        u = cache[i];
        memmove(&cache[i], &cache[i + 1], (ncache - i - 1) * sizeof cache[0]);
        ncache--;
        break;
    }
    pthread_mutex_unlock(&cache_mu);
    return u;
}

/* Still the same directory and the same index file (not deleted, replaced
 * or rebuilt from scratch since)? */
static bool still_valid(store_user *u)
{
    struct stat a, b;
    return stat(u->path, &a) == 0 && a.st_dev == u->dir_dev && a.st_ino == u->dir_ino &&
           fstatat(u->dirfd, "index.db", &b, 0) == 0 && b.st_dev == u->db_dev &&
           b.st_ino == u->db_ino;
}

void store_cache_clear(void)
{
    pthread_mutex_lock(&cache_mu);
    size_t n = ncache;
    store_user *v[CACHE_MAX];
    memcpy(v, cache, n * sizeof v[0]);
    ncache = 0;
    pthread_mutex_unlock(&cache_mu);
    for (size_t i = 0; i < n; i++) destroy(v[i]);
}

/* A valid idle handle of the user from the cache, or NULL. */
static store_user *cached(const char *root, const char *address, char *err, size_t errlen,
                          bool *bad_address)
{
    char *dn = store_user_dirname(address);
    *bad_address = !dn;
    if (!dn) {
        store_fail(err, errlen, STORE_EINVAL, "invalid address");
        return NULL;
    }
    sbuf p = SBUF_INIT;
    sbuf_printf(&p, "%s/%s", root, dn);
    free(dn);
    store_user *u = cache_take(p.data);
    sbuf_free(&p);
    if (u && !still_valid(u)) {
        destroy(u);
        u = NULL;
    }
    return u;
}

store_user *store_user_open(const char *root, const char *address, bool create, char *err,
                            size_t errlen)
{
    bool bad;
    store_user *u = cached(root, address, err, errlen, &bad);
    if (bad) return NULL;
    if (u) {
        store_recover(u, false);
        return u;
    }
    return store_user_handle(root, address, create, false, err, errlen);
}

/* A borrowed handle serves one job (one IMAP command): it reads from one
 * snapshot (store_read_begin: a deferred BEGIN, nothing locked before the
 * first read) until its first write or its return, so a command's several
 * reads (the change listing, the expunged list, a message row and file per
 * FETCHed message) share one transaction. */
store_user *store_user_borrow(const char *root, const char *address, char *err, size_t errlen)
{
    bool bad;
    store_user *u = cached(root, address, err, errlen, &bad);
    if (bad) return NULL;
    if (!u) u = store_user_handle(root, address, false, false, err, errlen);
    if (u) (void)store_read_begin(u);
    return u;
}

void store_user_close(store_user *u)
{
    if (!u) return;
    store_rollback(u);
    store_read_end(u);
    if (u->cacheable) {
        store_user *evict = NULL;
        pthread_mutex_lock(&cache_mu);
        if (ncache == CACHE_MAX) {
            evict = cache[0];
            memmove(&cache[0], &cache[1], (CACHE_MAX - 1) * sizeof cache[0]);
            ncache--;
        }
        cache[ncache++] = u;
        pthread_mutex_unlock(&cache_mu);
        destroy(evict);
        return;
    }
    destroy(u);
}

static void destroy(store_user *u)
{
    if (!u) return;
    store_rollback(u);
    store_read_end(u);
    for (int i = 0; i < ST__COUNT; i++) sqlite3_finalize(u->st[i]);
    if (u->db) sqlite3_close_v2(u->db);
    if (u->lockfd >= 0) close(u->lockfd);
    if (u->dirfd >= 0) close(u->dirfd);
    free(u->path);
    free(u);
}

int store_user_stamp(const char *root, const char *address, store_stamp *out)
{
    memset(out, 0, sizeof *out);
    char *dn = store_user_dirname(address);
    if (!dn) return -1;
    sbuf p = SBUF_INIT;
    sbuf_printf(&p, "%s/%s/index.db", root, dn);
    free(dn);
    struct stat db, wal;
    int rc = stat(p.data, &db);
    sbuf_puts(&p, "-wal");
    /* No WAL (all checkpointed, last handle closed) is a state too. */
    if (rc == 0 && stat(p.data, &wal) != 0) memset(&wal, 0, sizeof wal);
    sbuf_free(&p);
    if (rc != 0) return -1;
    out->v[0] = (uint64_t)db.st_ino;
    out->v[1] = (uint64_t)db.st_size;
    out->v[2] = (uint64_t)db.st_mtim.tv_sec;
    out->v[3] = (uint64_t)db.st_mtim.tv_nsec;
    out->v[4] = (uint64_t)wal.st_ino;
    out->v[5] = (uint64_t)wal.st_size;
    out->v[6] = (uint64_t)wal.st_mtim.tv_sec;
    out->v[7] = (uint64_t)wal.st_mtim.tv_nsec;
    return 0;
}
