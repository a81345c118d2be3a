/* The message cache (store.h): one row per (file guid, field) in the
 * `cache` table of index.db.
 *
 * Why in the index and not in memory: header fetches and searches read the
 * same headers again and again over the life of a mailbox (every client
 * start-up, every SEARCH FROM), and opening and reading a file per message
 * costs several times a B-tree lookup in a database the command has open
 * already.  The header goes in at delivery, from the staged file while it
 * is still in the page cache, so even the first fetch skips the file. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "mime/mime_header.h"
#include "store/store_int.h"

static _Atomic size_t header_max = 16384;

void store_set_header_cache(size_t max_bytes)
{
    header_max = max_bytes;
}

void store_msgcache_read_header(int fd, uint64_t size, sbuf *out)
{
    sbuf_reset(out);
    size_t max = header_max;
    if (max == 0 || size == 0) return;
    /* One byte over the limit tells a header that ends right at it (or a
     * whole message of that size) from a longer one. */
    size_t want = size < (uint64_t)max + 1 ? (size_t)size : max + 1;
    sbuf_reserve(out, want);
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(fd, out->data + got, want - got, (off_t)got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { sbuf_reset(out); return; }
        got += (size_t)n;
    }
    bool has_body;
    size_t h = mime_header_size(out->data, got, &has_body);
    /* Without an empty line the block is the whole message, which must
     * then have been read whole. */
    if ((has_body && h <= max) || (!has_body && (uint64_t)got == size && got <= max)) {
        out->len = has_body ? h : got;
        out->data[out->len] = '\0';
    } else {
        sbuf_reset(out);
    }
}

/* Inside a write transaction: entry field of guid (an existing one is
 * kept).  SQLITE_DONE on success. */
static int put_entry(store_user *u, const char *guid, int field, const void *data, size_t len)
{
    sqlite3_stmt *s = store_stmt(u, ST_CACHE_PUT);
    if (!s) return SQLITE_ERROR;
    sqlite3_bind_text(s, 1, guid, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, field);
    sqlite3_bind_blob(s, 3, len ? data : "", (int)len, SQLITE_STATIC);
    int r = sqlite3_step(s);
    sqlite3_reset(s);
    return r;
}

int store_msgcache_put_header(store_user *u, const char *guid, const sbuf *header)
{
    if (header->len == 0) return 0;
    return put_entry(u, guid, STORE_MSGCACHE_HEADER, header->data, header->len) == SQLITE_DONE ? 0 : -1;
}

int store_msgcache_header_file(store_user *u, const char *rel, const char *guid)
{
    int fd = openat(u->dirfd, rel, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;   /* nothing to cache; the reader will see it missing too */
    struct stat st;
    sbuf h = SBUF_INIT;
    if (fstat(fd, &st) == 0) store_msgcache_read_header(fd, (uint64_t)st.st_size, &h);
    close(fd);
    int rc = store_msgcache_put_header(u, guid, &h);
    sbuf_free(&h);
    return rc;
}

int store_snap_box(store_user *u, const char *mailbox, int64_t *box, char *err, size_t errlen)
{
    mailbox = store_canon_name(mailbox);
    if (u->in_read && u->snap_box && strcmp(u->snap_box, mailbox) == 0) {
        *box = u->snap_box_id;
        return 0;
    }
    struct mbox mb;
    int rc = store_mbox_get(u, mailbox, &mb, err, errlen);
    if (rc) return rc;
    *box = mb.id;
    store_mbox_free(&mb);
    if (u->in_read) {
        /* Ids are fixed within one snapshot: a FETCH of many messages
         * looks the mailbox up once. */
        free(u->snap_box);
        u->snap_box = xstrdup(mailbox);
        u->snap_box_id = *box;
    }
    return 0;
}

int store_msgcache_get(store_user *u, const char *mailbox, uint32_t uid, int field, char **data,
                       size_t *len, char *err, size_t errlen)
{
    *data = NULL;
    *len = 0;
    int rc;
    bool own = store_read_own(u, &rc);
    if (rc) return store_dbfail(u, err, errlen, "begin");
    int64_t box;
    rc = store_snap_box(u, mailbox, &box, err, errlen);
    if (rc == 0) {
        sqlite3_stmt *s = store_stmt(u, ST_CACHE_GET);
        if (!s) {
            rc = store_dbfail(u, err, errlen, "cache");
        } else {
            sqlite3_bind_int64(s, 1, box);
            sqlite3_bind_int64(s, 2, uid);
            sqlite3_bind_int(s, 3, field);
            int r = sqlite3_step(s);
            if (r == SQLITE_ROW) {
                size_t n = (size_t)sqlite3_column_bytes(s, 0);
                const void *p = sqlite3_column_blob(s, 0);
                *data = xmalloc(n + 1);
                if (n) memcpy(*data, p, n);
                (*data)[n] = '\0';
                *len = n;
            } else if (r == SQLITE_DONE) {
                rc = 1;
            } else {
                rc = store_dbfail(u, err, errlen, "cache");
            }
            sqlite3_reset(s);
        }
    }
    if (own) store_read_end(u);
    return rc;
}

int store_msgcache_put(store_user *u, const char *mailbox, const uint32_t *uids, const int *fields,
                       const char *const *data, const size_t *len, size_t n, char *err,
                       size_t errlen)
{
    if (n == 0) return 0;
    int rc = store_begin_unsynced(u, err, errlen);
    if (rc) return rc;
    int64_t box;
    rc = store_snap_box(u, mailbox, &box, err, errlen);
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct msgrow m;
        int g = store_msg_get(u, box, uids[i], &m);
        if (g == 1) continue;   /* expunged meanwhile */
        if (g < 0 || put_entry(u, m.guid, fields[i], data[i], len[i]) != SQLITE_DONE)
            rc = store_dbfail(u, err, errlen, "cache");
    }
    if (rc == 0) rc = store_commit(u, err, errlen);
    else store_rollback(u);
    return rc;
}

int store_msgcache_drop(store_user *u, const char *guid)
{
    sqlite3_stmt *s = store_stmt(u, ST_CACHE_DROP);
    if (!s) return -1;
    sqlite3_bind_text(s, 1, guid, -1, SQLITE_STATIC);
    int r = sqlite3_step(s);
    sqlite3_reset(s);
    return r == SQLITE_DONE ? 0 : -1;
}
