/* Mailbox rows and the small files that mirror them for rebuild: meta
 * (name, UIDVALIDITY, UID/MODSEQ reservations), keywords, subscriptions.
 * Every mirror file is replaced atomically (write tmp, fsync, rename, fsync
 * dir) inside the SQLite write transaction, which serialises writers. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "store/store_int.h"

int store_write_file_at(int dirfd, const char *dir, const char *name, const void *data,
                        size_t len)
{
    sbuf tmp = SBUF_INIT, dst = SBUF_INIT;
    sbuf_printf(&tmp, "%s/%s.tmp", dir, name);
    sbuf_printf(&dst, "%s/%s", dir, name);
    int rc = -1;
    int fd = openat(dirfd, tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (write_full(fd, data, len) == 0 && fsync(fd) == 0 && close(fd) == 0) {
            fd = -1;
            if (renameat(dirfd, tmp.data, dirfd, dst.data) == 0 && store_fsync_at(dirfd, dir) == 0)
                rc = 0;
        }
        if (fd >= 0) close(fd);
    }
    if (rc != 0) unlinkat(dirfd, tmp.data, 0);
    sbuf_free(&tmp);
    sbuf_free(&dst);
    return rc;
}

static void mbox_from_row(sqlite3_stmt *s, struct mbox *mb)
{
    mb->id = sqlite3_column_int64(s, 0);
    mb->name = xstrdup((const char *)sqlite3_column_text(s, 1));
    mb->uidvalidity = (uint32_t)sqlite3_column_int64(s, 2);
    mb->uidnext = (uint32_t)sqlite3_column_int64(s, 3);
    mb->highestmodseq = (uint64_t)sqlite3_column_int64(s, 4);
    mb->uidlimit = (uint32_t)sqlite3_column_int64(s, 5);
    mb->modseqlimit = (uint64_t)sqlite3_column_int64(s, 6);
    mb->vanished_floor = (uint64_t)sqlite3_column_int64(s, 7);
    mb->attrs = (unsigned)sqlite3_column_int64(s, 8);
}

int store_mbox_get(store_user *u, const char *name, struct mbox *mb, char *err, size_t errlen)
{
    memset(mb, 0, sizeof *mb);
    sqlite3_stmt *s = store_stmt(u, ST_MBOX_GET);
    if (!s) return store_dbfail(u, err, errlen, "mailbox lookup");
    name = store_canon_name(name);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        mbox_from_row(s, mb);
        sqlite3_reset(s);
        return 0;
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE) return store_fail(err, errlen, STORE_ENOENT, "no such mailbox");
    return store_dbfail(u, err, errlen, "mailbox lookup");
}

int store_mbox_get_id(store_user *u, int64_t id, struct mbox *mb)
{
    memset(mb, 0, sizeof *mb);
    sqlite3_stmt *s = store_stmt(u, ST_MBOX_GET_ID);
    if (!s) return -1;
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) mbox_from_row(s, mb);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : -1;
}

void store_mbox_free(struct mbox *mb)
{
    free(mb->name);
    mb->name = NULL;
}

int store_mbox_save(store_user *u, const struct mbox *mb, char *err, size_t errlen)
{
    sqlite3_stmt *s = store_stmt(u, ST_MBOX_SAVE);
    if (!s) return store_dbfail(u, err, errlen, "mailbox update");
    sqlite3_bind_int64(s, 1, mb->id);
    sqlite3_bind_text(s, 2, mb->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, mb->uidvalidity);
    sqlite3_bind_int64(s, 4, mb->uidnext);
    sqlite3_bind_int64(s, 5, (int64_t)mb->highestmodseq);
    sqlite3_bind_int64(s, 6, mb->uidlimit);
    sqlite3_bind_int64(s, 7, (int64_t)mb->modseqlimit);
    sqlite3_bind_int64(s, 8, (int64_t)mb->vanished_floor);
    sqlite3_bind_int64(s, 9, mb->attrs);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return store_dbfail(u, err, errlen, "mailbox update");
    return 0;
}

int store_meta_write(store_user *u, const struct mbox *mb)
{
    sbuf b = SBUF_INIT, dir = SBUF_INIT;
    sbuf_printf(&b, "pochta-mailbox 1\nuidvalidity %" PRIu32 "\nuidlimit %" PRIu32
                    "\nmodseqlimit %" PRIu64 "\nattrs %u\nname %s\n",
                mb->uidvalidity, mb->uidlimit, mb->modseqlimit, mb->attrs, mb->name);
    sbuf_printf(&dir, "mbox/%lld", (long long)mb->id);
    int rc = store_write_file_at(u->dirfd, dir.data, "meta", b.data, b.len);
    if (rc != 0) log_warn("store %s: writing %s/meta: %s", u->path, dir.data, strerror(errno));
    sbuf_free(&b);
    sbuf_free(&dir);
    return rc;
}

static char *read_small_file(int dirfd, const char *rel, size_t max)
{
    int fd = openat(dirfd, rel, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    sbuf b = SBUF_INIT;
    char chunk[4096];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || b.len + (size_t)n > max) {
            if (n != 0) { sbuf_free(&b); close(fd); return NULL; }
            break;
        }
        sbuf_append(&b, chunk, (size_t)n);
    }
    close(fd);
    if (!b.data) sbuf_puts(&b, "");
    return sbuf_detach(&b);
}

int store_meta_read(int dirfd, int64_t id, struct mbox *mb)
{
    memset(mb, 0, sizeof *mb);
    mb->id = id;
    sbuf path = SBUF_INIT;
    sbuf_printf(&path, "mbox/%lld/meta", (long long)id);
    char *text = read_small_file(dirfd, path.data, 16384);
    sbuf_free(&path);
    if (!text) return -1;
    int seen = 0;
    char *save = NULL;
    bool first = true;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        unsigned long long v = 0;
        if (first) {
            if (strcmp(line, "pochta-mailbox 1") != 0) break;
            first = false;
        } else if (sscanf(line, "uidvalidity %llu", &v) == 1 && v && v <= UINT32_MAX) {
            mb->uidvalidity = (uint32_t)v; seen |= 1;
        } else if (sscanf(line, "uidlimit %llu", &v) == 1 && v <= UINT32_MAX) {
            mb->uidlimit = (uint32_t)v; seen |= 2;
        } else if (sscanf(line, "modseqlimit %llu", &v) == 1) {
            mb->modseqlimit = v; seen |= 4;
        } else if (sscanf(line, "attrs %llu", &v) == 1) {
            mb->attrs = (unsigned)v & 31u;
        } else if (strncmp(line, "name ", 5) == 0 && store_mailbox_name_valid(line + 5)) {
            free(mb->name);
            mb->name = xstrdup(store_canon_name(line + 5));
            seen |= 8;
        }
    }
    free(text);
    if (seen != 15) {
        store_mbox_free(mb);
        return -1;
    }
    return 0;
}

int store_alloc_uids(store_user *u, struct mbox *mb, uint32_t count, uint32_t *first,
                     char *err, size_t errlen)
{
    uint64_t next = (uint64_t)mb->uidnext + count;
    if (next > UINT32_MAX) return store_fail(err, errlen, STORE_EIO, "UID space exhausted");
    if (next > mb->uidlimit) {
        uint64_t lim = next + STORE_UID_BLOCK;
        mb->uidlimit = lim > UINT32_MAX ? UINT32_MAX : (uint32_t)lim;
        if (store_meta_write(u, mb) != 0)
            return store_fail(err, errlen, STORE_EIO, "cannot write mailbox meta");
    }
    *first = mb->uidnext;
    mb->uidnext = (uint32_t)next;
    return 0;
}

int store_alloc_modseq(store_user *u, struct mbox *mb, uint64_t *modseq, char *err,
                       size_t errlen)
{
    uint64_t m = mb->highestmodseq + 1;
    if (m >= mb->modseqlimit) {
        mb->modseqlimit = m + STORE_MODSEQ_BLOCK;
        if (store_meta_write(u, mb) != 0)
            return store_fail(err, errlen, STORE_EIO, "cannot write mailbox meta");
    }
    mb->highestmodseq = m;
    *modseq = m;
    return 0;
}

int store_kw_load(store_user *u, int64_t box, char ***names, size_t *count)
{
    *names = NULL;
    *count = 0;
    sqlite3_stmt *s = store_stmt(u, ST_KW_LIST);
    if (!s) return -1;
    sqlite3_bind_int64(s, 1, box);
    char **v = xcalloc(STORE_MAX_KEYWORDS, sizeof *v);
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t idx = sqlite3_column_int64(s, 0);
        if (idx < 0 || idx >= STORE_MAX_KEYWORDS) continue;
        v[idx] = xstrdup((const char *)sqlite3_column_text(s, 1));
        if ((size_t)idx + 1 > n) n = (size_t)idx + 1;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) { store_strings_free(v, STORE_MAX_KEYWORDS); return -1; }
    for (size_t i = 0; i < n; i++)
        if (!v[i]) v[i] = xstrdup("");     /* a hole cannot happen; keep the array total */
    *names = v;
    *count = n;
    return 0;
}

int store_kw_file_write(store_user *u, int64_t box, char **names, size_t count)
{
    sbuf b = SBUF_INIT, dir = SBUF_INIT;
    for (size_t i = 0; i < count; i++) sbuf_printf(&b, "%s\n", names[i]);
    sbuf_printf(&dir, "mbox/%lld", (long long)box);
    int rc = store_write_file_at(u->dirfd, dir.data, "keywords", b.data ? b.data : "", b.len);
    sbuf_free(&b);
    sbuf_free(&dir);
    return rc;
}

/* Map keyword names to slot bits.  With add, unknown names get new slots,
 * recorded in the keywords file before any message file can carry them. */
int store_kw_bits(store_user *u, int64_t box, const char *const *kws, size_t n, bool add,
                  uint32_t *bits, char *err, size_t errlen)
{
    *bits = 0;
    if (n == 0) return 0;
    char **names;
    size_t count;
    if (store_kw_load(u, box, &names, &count) != 0)
        return store_dbfail(u, err, errlen, "keyword lookup");
    size_t before = count;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (!store_keyword_valid(kws[i])) {
            rc = store_fail(err, errlen, STORE_EINVAL, "invalid keyword");
            break;
        }
        size_t j;
        for (j = 0; j < count; j++)
            if (ascii_casecmp(names[j], kws[i]) == 0) break;
        if (j == count) {
            if (!add) continue;
            if (count == STORE_MAX_KEYWORDS) {
                rc = store_fail(err, errlen, STORE_ELIMIT, "too many keywords in mailbox");
                break;
            }
            names[count++] = xstrdup(kws[i]);
            sqlite3_stmt *s = store_stmt(u, ST_KW_ADD);
            if (!s) { rc = store_dbfail(u, err, errlen, "keyword add"); break; }
            sqlite3_bind_int64(s, 1, box);
            sqlite3_bind_int64(s, 2, (int64_t)j);
            sqlite3_bind_text(s, 3, kws[i], -1, SQLITE_STATIC);
            int r = sqlite3_step(s);
            sqlite3_reset(s);
            if (r != SQLITE_DONE) { rc = store_dbfail(u, err, errlen, "keyword add"); break; }
        }
        *bits |= 1u << j;
    }
    if (rc == 0 && count != before && store_kw_file_write(u, box, names, count) != 0)
        rc = store_fail(err, errlen, STORE_EIO, "cannot write keywords file");
    store_strings_free(names, STORE_MAX_KEYWORDS);
    return rc;
}

int store_subs_file_write(store_user *u)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(u->db, "SELECT name FROM subscription ORDER BY name", -1, &s, NULL)
        != SQLITE_OK)
        return -1;
    sbuf b = SBUF_INIT;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        sbuf_printf(&b, "%s\n", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    int ret = -1;
    if (rc == SQLITE_DONE)
        ret = store_write_file_at(u->dirfd, ".", "subscriptions", b.data ? b.data : "", b.len);
    sbuf_free(&b);
    return ret;
}

/* Inside a write transaction: a new mailbox row, its directory and meta. */
int store_mailbox_make(store_user *u, const char *name, unsigned attrs, struct mbox *out,
                       char *err, size_t errlen)
{
    struct mbox mb = { 0 };
    mb.name = xstrdup(store_canon_name(name));
    mb.uidvalidity = store_new_uidvalidity(u);
    mb.uidnext = 1;
    mb.highestmodseq = 1;
    mb.uidlimit = STORE_UID_BLOCK;
    mb.modseqlimit = STORE_MODSEQ_BLOCK;
    mb.attrs = attrs & 31u;
    sqlite3_stmt *s;
    int rc = STORE_EIO;
    if (sqlite3_prepare_v2(u->db,
                           "INSERT INTO mailbox(name,uidvalidity,uidnext,highestmodseq,uidlimit,"
                           "modseqlimit,vanished_floor,attrs) VALUES(?1,?2,1,1,?3,?4,0,?5)",
                           -1, &s, NULL) != SQLITE_OK) {
        store_mbox_free(&mb);
        return store_dbfail(u, err, errlen, "mailbox create");
    }
    sqlite3_bind_text(s, 1, mb.name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, mb.uidvalidity);
    sqlite3_bind_int64(s, 3, mb.uidlimit);
    sqlite3_bind_int64(s, 4, (int64_t)mb.modseqlimit);
    sqlite3_bind_int64(s, 5, mb.attrs);
    int r = sqlite3_step(s);
    sqlite3_finalize(s);
    if (r == SQLITE_CONSTRAINT) {
        store_mbox_free(&mb);
        return store_fail(err, errlen, STORE_EEXIST, "mailbox already exists");
    }
    if (r != SQLITE_DONE) {
        store_mbox_free(&mb);
        return store_dbfail(u, err, errlen, "mailbox create");
    }
    mb.id = sqlite3_last_insert_rowid(u->db);
    sbuf dir = SBUF_INIT;
    sbuf_printf(&dir, "mbox/%lld", (long long)mb.id);
    /* A directory already there is left by a create that crashed before its
     * commit (the id came back): nothing in it was ever visible. */
    if (mkdirat(u->dirfd, dir.data, 0700) != 0 && errno == EEXIST) {
        store_rmtree_at(u->dirfd, dir.data);
        (void)mkdirat(u->dirfd, dir.data, 0700);
    }
    if (store_meta_write(u, &mb) == 0 && store_fsync_at(u->dirfd, "mbox") == 0) {
        rc = 0;
    } else {
        rc = store_fail(err, errlen, STORE_EIO, "cannot create mailbox directory: %s",
                        strerror(errno));
    }
    sbuf_free(&dir);
    if (rc == 0 && out) *out = mb;
    else store_mbox_free(&mb);
    return rc;
}
