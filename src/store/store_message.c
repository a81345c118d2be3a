/* Reading and changing messages: listing, open, flags, expunge, copy/move,
 * QRESYNC vanished. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "store/store_int.h"

int store_msg_get(store_user *u, int64_t box, uint32_t uid, struct msgrow *m)
{
    sqlite3_stmt *s = store_stmt(u, ST_MSG_GET);
    if (!s) return -1;
    sqlite3_bind_int64(s, 1, box);
    sqlite3_bind_int64(s, 2, uid);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        memset(m, 0, sizeof *m);
        m->uid = uid;
        const char *g = (const char *)sqlite3_column_text(s, 0);
        snprintf(m->guid, sizeof m->guid, "%s", g ? g : "");
        m->flags = (unsigned)sqlite3_column_int64(s, 1);
        m->keywords = (uint32_t)sqlite3_column_int64(s, 2);
        m->internaldate = sqlite3_column_int64(s, 3);
        m->size = (uint64_t)sqlite3_column_int64(s, 4);
        m->modseq = (uint64_t)sqlite3_column_int64(s, 5);
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : (rc == SQLITE_DONE ? 1 : -1);
}

/* Where the file of a row is right now.  Normally its name follows from the
 * row; it may still be staged in tmp/ (delivery committed, rename pending),
 * or carry other flag letters (a flag change racing us, or one that crashed
 * between rename and commit), which a directory scan finds. */
int store_msg_locate(store_user *u, int64_t box, const struct msgrow *m, sbuf *path)
{
    sbuf_reset(path);
    store_msg_relpath(path, box, m->uid, m->guid, m->flags, m->keywords);
    if (faccessat(u->dirfd, path->data, F_OK, 0) == 0) return 0;
    sbuf_reset(path);
    sbuf_printf(path, "tmp/d.%s", m->guid);
    if (faccessat(u->dirfd, path->data, F_OK, 0) == 0) return 0;
    sbuf_reset(path);
    sbuf_printf(path, "mbox/%lld", (long long)box);
    int fd = openat(u->dirfd, path->data, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    DIR *d = fdopendir(fd);
    if (!d) { close(fd); return -1; }
    char prefix[64];
    int plen = snprintf(prefix, sizeof prefix, "%u.%s:2,", m->uid, m->guid);
    struct dirent *e;
    int rc = -1;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, (size_t)plen) == 0) {
            sbuf_printf(path, "/%s", e->d_name);
            rc = 0;
            break;
        }
    }
    closedir(d);
    return rc;
}

/* rename() or link() a message file away from wherever it currently is.
 * 0 done, 1 the file is nowhere (a row left without its file, e.g. by a
 * power loss undoing an optimized expunge's commit but not its unlink),
 * -1 an error. */
static int move_msg_file(store_user *u, int64_t box, const struct msgrow *m, const char *dst,
                         bool link)
{
    sbuf src = SBUF_INIT;
    int rc = -1;
    for (int attempt = 0; attempt < 4 && rc != 0; attempt++) {
        if (store_msg_locate(u, box, m, &src) != 0) { rc = 1; break; }
        if (strcmp(src.data, dst) == 0) { rc = 0; break; }
        int r = link ? linkat(u->dirfd, src.data, u->dirfd, dst, 0)
                     : renameat(u->dirfd, src.data, u->dirfd, dst);
        /* An existing link target is a same-guid file, i.e. the same bytes. */
        if (r == 0 || (link && errno == EEXIST)) rc = 0;
        else if (errno != ENOENT) break;
    }
    if (rc != 0) log_warn("store %s: moving uid %u of mailbox %lld: %s", u->path, m->uid,
                          (long long)box, strerror(errno));
    sbuf_free(&src);
    return rc;
}

static int fsync_box(store_user *u, int64_t box)
{
    char dir[48];
    snprintf(dir, sizeof dir, "mbox/%lld", (long long)box);
    return store_fsync_at(u->dirfd, dir);
}

int store_messages(store_user *u, const char *mailbox, uint64_t changedsince, store_msglist *out,
                   char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    /* A read transaction gives one snapshot for the mailbox row and its rows
     * (the borrowed handle's, when there is one). */
    int rc;
    bool own = store_read_own(u, &rc);
    if (rc) return store_dbfail(u, err, errlen, "begin");
    struct mbox mb;
    rc = store_mbox_get(u, mailbox, &mb, err, errlen);
    if (rc) { if (own) store_read_end(u); return rc; }
    out->uidvalidity = mb.uidvalidity;
    out->uidnext = mb.uidnext;
    out->highestmodseq = mb.highestmodseq;
    if (store_kw_load(u, mb.id, &out->keywords, &out->nkeywords) != 0) {
        rc = store_dbfail(u, err, errlen, "keywords");
        goto done;
    }
    sqlite3_stmt *s = store_stmt(u, changedsince ? ST_MSG_CHANGED : ST_MSG_LIST);
    if (!s) {
        rc = store_dbfail(u, err, errlen, "list");
        goto done;
    }
    sqlite3_bind_int64(s, 1, mb.id);
    sqlite3_bind_int64(s, 2, (int64_t)changedsince);
    size_t cap = 0;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (out->count == cap) {
            cap = cap ? cap * 2 : 64;
            out->msgs = xrealloc(out->msgs, cap * sizeof *out->msgs);
        }
        store_msginfo *mi = &out->msgs[out->count++];
        memset(mi, 0, sizeof *mi);
        mi->uid = (uint32_t)sqlite3_column_int64(s, 0);
        const char *g = (const char *)sqlite3_column_text(s, 1);
        snprintf(mi->guid, sizeof mi->guid, "%s", g ? g : "");
        mi->flags = (unsigned)sqlite3_column_int64(s, 2);
        mi->keywords = (uint32_t)sqlite3_column_int64(s, 3);
        mi->internaldate = (time_t)sqlite3_column_int64(s, 4);
        mi->size = (uint64_t)sqlite3_column_int64(s, 5);
        mi->modseq = (uint64_t)sqlite3_column_int64(s, 6);
    }
    if (r != SQLITE_DONE) rc = store_dbfail(u, err, errlen, "list");
    sqlite3_reset(s);
done:
    if (own) store_read_end(u);
    store_mbox_free(&mb);
    if (rc) store_msglist_free(out);
    return rc;
}

void store_msglist_free(store_msglist *l)
{
    free(l->msgs);
    store_strings_free(l->keywords, STORE_MAX_KEYWORDS);
    memset(l, 0, sizeof *l);
}

int store_msg_open(store_user *u, const char *mailbox, uint32_t uid, int *fd_out,
                   uint64_t *size_out, char *err, size_t errlen)
{
    int64_t box;
    int rc = store_snap_box(u, mailbox, &box, err, errlen);
    if (rc) return rc;
    sbuf path = SBUF_INIT;
    /* A row whose file stays missing is almost always a message that
     * another session is expunging right now (the file goes first, then
     * the row): report it as gone, so IMAP answers [EXPUNGEISSUED]. */
    rc = store_fail(err, errlen, STORE_ENOENT, "message file missing (being expunged)");
    /* The row is re-read each attempt: a flag change may rename under us. */
    for (int attempt = 0; attempt < 5; attempt++) {
        struct msgrow m;
        int g = store_msg_get(u, box, uid, &m);
        if (g == 1) { rc = store_fail(err, errlen, STORE_ENOENT, "no such message"); break; }
        if (g < 0) { rc = store_dbfail(u, err, errlen, "message lookup"); break; }
        /* Where the row says first: one openat() in the usual case. */
        sbuf_reset(&path);
        store_msg_relpath(&path, box, m.uid, m.guid, m.flags, m.keywords);
        int fd = openat(u->dirfd, path.data, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            *fd_out = fd;
            if (size_out) *size_out = m.size;
            rc = 0;
            break;
        }
        if (store_msg_locate(u, box, &m, &path) == 0) {
            fd = openat(u->dirfd, path.data, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                *fd_out = fd;
                if (size_out) *size_out = m.size;
                rc = 0;
                break;
            }
            if (errno != ENOENT) {
                rc = store_fail(err, errlen, STORE_EIO, "open message: %s", strerror(errno));
                break;
            }
        }
        struct timespec ts = { 0, 1000000L << attempt };
        nanosleep(&ts, NULL);
        /* The expunge we wait for commits in another connection: look at
         * the newest state, not the snapshot this command started with. */
        if (u->in_read) {
            store_read_end(u);
            (void)store_read_begin(u);
        }
    }
    sbuf_free(&path);
    return rc;
}

int store_keywords(store_user *u, const char *mailbox, char ***names, size_t *count, char *err,
                   size_t errlen)
{
    struct mbox mb;
    int rc = store_mbox_get(u, mailbox, &mb, err, errlen);
    if (rc) return rc;
    if (store_kw_load(u, mb.id, names, count) != 0) rc = store_dbfail(u, err, errlen, "keywords");
    store_mbox_free(&mb);
    return rc;
}

int store_flags(store_user *u, const char *mailbox, const uint32_t *uids, size_t n,
                enum store_flag_op op, unsigned flags, const char *const *keywords,
                size_t nkeywords, uint64_t unchangedsince, store_flag_result *results,
                uint64_t *highestmodseq_out, char *err, size_t errlen)
{
    flags &= STORE_FLAGS_ALL;
    int rc = store_begin_light(u, err, errlen);
    if (rc) return rc;
    struct mbox mb;
    rc = store_mbox_get(u, mailbox, &mb, err, errlen);
    if (rc) { store_rollback(u); return rc; }
    uint32_t kbits = 0;
    rc = store_kw_bits(u, mb.id, keywords, nkeywords, op != STORE_FLAGS_REMOVE, &kbits, err,
                       errlen);
    uint64_t modseq = 0;
    size_t changed = 0;
    sbuf dst = SBUF_INIT;
    for (size_t i = 0; i < n && rc == 0; i++) {
        store_flag_result res = { .uid = uids[i] };
        struct msgrow m;
        int g = store_msg_get(u, mb.id, uids[i], &m);
        if (g < 0) { rc = store_dbfail(u, err, errlen, "message lookup"); break; }
        if (g == 1) {
            res.status = STORE_ENOENT;
        } else {
            unsigned nf = m.flags;
            uint32_t nk = m.keywords;
            switch (op) {
            case STORE_FLAGS_SET: nf = flags; nk = kbits; break;
            case STORE_FLAGS_ADD: nf |= flags; nk |= kbits; break;
            case STORE_FLAGS_REMOVE: nf &= ~flags; nk &= ~kbits; break;
            }
            if (unchangedsince && m.modseq > unchangedsince) {
                res.status = STORE_EEXIST;
            } else if (nf != m.flags || nk != m.keywords) {
                if (!modseq) {
                    if ((rc = store_alloc_modseq(u, &mb, &modseq, err, errlen)) != 0) break;
                    store_flag_mark(u, mb.id, modseq);
                }
                sbuf_reset(&dst);
                store_msg_relpath(&dst, mb.id, m.uid, m.guid, nf, nk);
                /* A row without its file still takes the change: the
                 * index is the truth for flags. */
                if (move_msg_file(u, mb.id, &m, dst.data, false) < 0) {
                    rc = store_fail(err, errlen, STORE_EIO, "cannot rename message file");
                    break;
                }
                sqlite3_stmt *s = store_stmt(u, ST_MSG_SET_FLAGS);
                if (!s) { rc = store_dbfail(u, err, errlen, "flags"); break; }
                sqlite3_bind_int64(s, 1, mb.id);
                sqlite3_bind_int64(s, 2, m.uid);
                sqlite3_bind_int64(s, 3, nf);
                sqlite3_bind_int64(s, 4, nk);
                sqlite3_bind_int64(s, 5, (int64_t)modseq);
                int r = sqlite3_step(s);
                sqlite3_reset(s);
                if (r != SQLITE_DONE) { rc = store_dbfail(u, err, errlen, "flags"); break; }
                m.flags = nf;
                m.keywords = nk;
                m.modseq = modseq;
                changed++;
            }
            res.flags = m.flags;
            res.keywords = m.keywords;
            res.modseq = m.modseq;
        }
        if (results) results[i] = res;
    }
    sbuf_free(&dst);
    if (rc == 0 && changed) {
        if (!store_light() && fsync_box(u, mb.id) != 0)
            rc = store_fail(err, errlen, STORE_EIO, "fsync: %s", strerror(errno));
        else
            rc = store_mbox_save(u, &mb, err, errlen);
    }
    if (rc == 0) rc = store_commit(u, err, errlen);
    else store_rollback(u);
    if (rc == 0 && highestmodseq_out) *highestmodseq_out = mb.highestmodseq;
    store_mbox_free(&mb);
    return rc;
}

static int add_expunged(store_user *u, int64_t box, uint32_t uid, uint64_t modseq)
{
    sqlite3_stmt *s = store_stmt(u, ST_MSG_DELETE);
    if (!s) return -1;
    sqlite3_bind_int64(s, 1, box);
    sqlite3_bind_int64(s, 2, uid);
    int r = sqlite3_step(s);
    sqlite3_reset(s);
    if (r != SQLITE_DONE) return -1;
    s = store_stmt(u, ST_EXPUNGED_ADD);
    if (!s) return -1;
    sqlite3_bind_int64(s, 1, box);
    sqlite3_bind_int64(s, 2, uid);
    sqlite3_bind_int64(s, 3, (int64_t)modseq);
    r = sqlite3_step(s);
    sqlite3_reset(s);
    return r == SQLITE_DONE ? 0 : -1;
}

/* Rename the file into tmp/ as x.<box>.<uid>.<guid> and delete its row; the
 * caller commits and then unlinks the names collected in trash. */
static int expunge_one(store_user *u, int64_t box, const struct msgrow *m, uint64_t modseq,
                       char ***trash, size_t *ntrash, char *err, size_t errlen)
{
    sbuf t = SBUF_INIT;
    sbuf_printf(&t, "tmp/x.%lld.%u.%s", (long long)box, m->uid, m->guid);
    int mv = move_msg_file(u, box, m, t.data, false);
    if (mv < 0) {
        sbuf_free(&t);
        return store_fail(err, errlen, STORE_EIO, "cannot remove message file");
    }
    /* A row without its file: removing the row is all that is left. */
    if (mv == 0) {
        *trash = xrealloc(*trash, (*ntrash + 1) * sizeof **trash);
        (*trash)[(*ntrash)++] = sbuf_detach(&t);
    }
    sbuf_free(&t);
    if (add_expunged(u, box, m->uid, modseq) != 0 || store_msgcache_drop(u, m->guid) != 0)
        return store_dbfail(u, err, errlen, "expunge");
    return 0;
}

static _Atomic unsigned expunge_history = 10000;

void store_set_expunge_history(unsigned max)
{
    expunge_history = max ? max : 1;
}

/* Inside an expunge's write transaction: forget mailbox mb's expunges
 * older than the newest `expunge_history`, and say so in vanished_floor
 * (store_vanished() is complete only above it).  Counting the rows is a
 * walk of the modseq index, so the caller asks only when the expunge took
 * a uid that is a multiple of 64: about once per 64 expunged messages. */
static int trim_expunged(store_user *u, struct mbox *mb, bool check)
{
    if (!check) return 0;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(u->db, "SELECT modseq FROM expunged INDEXED BY expunged_modseq WHERE mailbox_id=?1"
                                  " ORDER BY modseq DESC LIMIT 1 OFFSET ?2", -1, &s, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(s, 1, mb->id);
    sqlite3_bind_int64(s, 2, expunge_history);
    int r = sqlite3_step(s);
    uint64_t floor = r == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s, 0) : 0;
    sqlite3_finalize(s);
    if (r != SQLITE_ROW) return r == SQLITE_DONE ? 0 : -1;
    if (sqlite3_prepare_v2(u->db, "DELETE FROM expunged WHERE mailbox_id=?1 AND modseq<=?2", -1, &s, NULL)
        != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(s, 1, mb->id);
    sqlite3_bind_int64(s, 2, (int64_t)floor);
    r = sqlite3_step(s);
    sqlite3_finalize(s);
    if (r != SQLITE_DONE) return -1;
    if (floor > mb->vanished_floor) mb->vanished_floor = floor;
    return 0;
}

static void unlink_trash(store_user *u, char **trash, size_t n, bool committed)
{
    /* Not committed: leave them, the next recovery puts them back. */
    for (size_t i = 0; i < n && committed; i++) unlinkat(u->dirfd, trash[i], 0);
    store_strings_free(trash, n);
}

int store_expunge(store_user *u, const char *mailbox, const uint32_t *uids, size_t n,
                  uint32_t *expunged, size_t *nexpunged, char *err, size_t errlen)
{
    if (nexpunged) *nexpunged = 0;
    int rc = store_begin_light(u, err, errlen);
    if (rc) return rc;
    struct mbox mb;
    rc = store_mbox_get(u, mailbox, &mb, err, errlen);
    if (rc) { store_rollback(u); return rc; }
    uint64_t modseq = 0;
    char **trash = NULL;
    size_t ntrash = 0, k = 0;
    bool trim = false;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct msgrow m;
        int g = store_msg_get(u, mb.id, uids[i], &m);
        if (g < 0) { rc = store_dbfail(u, err, errlen, "message lookup"); break; }
        if (g == 1) continue;
        if (!modseq && (rc = store_alloc_modseq(u, &mb, &modseq, err, errlen)) != 0) break;
        rc = expunge_one(u, mb.id, &m, modseq, &trash, &ntrash, err, errlen);
        trim |= m.uid % 64 == 0;
        if (rc == 0 && expunged) expunged[k] = m.uid;
        if (rc == 0) k++;
    }
    if (rc == 0 && k) {
        if (!store_light() && fsync_box(u, mb.id) != 0)
            rc = store_fail(err, errlen, STORE_EIO, "fsync: %s", strerror(errno));
        else if (trim_expunged(u, &mb, trim) != 0)
            rc = store_dbfail(u, err, errlen, "expunge history");
        else
            rc = store_mbox_save(u, &mb, err, errlen);
    }
    if (rc == 0) rc = store_commit(u, err, errlen);
    else store_rollback(u);
    unlink_trash(u, trash, ntrash, rc == 0);
    if (rc == 0 && nexpunged) *nexpunged = k;
    store_mbox_free(&mb);
    return rc;
}

/* Keyword bits of src mapped to dst's slots (adding names to dst). */
static int remap_keywords(store_user *u, char **src_names, size_t nsrc, int64_t dst,
                          uint32_t bits, uint32_t *out, char *err, size_t errlen)
{
    const char *names[STORE_MAX_KEYWORDS];
    size_t n = 0;
    for (size_t i = 0; i < nsrc; i++)
        if (bits & (1u << i)) names[n++] = src_names[i];
    return store_kw_bits(u, dst, names, n, true, out, err, errlen);
}

int store_copy(store_user *u, const char *src, const uint32_t *uids, size_t n, const char *dst,
               bool move, uint32_t *new_uids, uint32_t *dst_uidvalidity, char *err,
               size_t errlen)
{
    if (new_uids) memset(new_uids, 0, n * sizeof *new_uids);
    int rc = store_begin(u, err, errlen);
    if (rc) return rc;
    struct mbox sb = { 0 }, db = { 0 };
    rc = store_mbox_get(u, src, &sb, err, errlen);
    if (rc == 0) rc = store_mbox_get(u, dst, &db, err, errlen);
    if (rc == 0 && move && sb.id == db.id)
        rc = store_fail(err, errlen, STORE_EINVAL, "cannot move a message into its own mailbox");
    if (rc) goto out;

    struct msgrow *rows = xcalloc(n ? n : 1, sizeof *rows);
    size_t *idx = xcalloc(n ? n : 1, sizeof *idx);
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        int g = store_msg_get(u, sb.id, uids[i], &rows[found]);
        if (g < 0) { rc = store_dbfail(u, err, errlen, "message lookup"); break; }
        if (g == 0) idx[found++] = i;
    }
    char **kwn = NULL, **trash = NULL;
    bool trim = false;
    size_t nkw = 0, ntrash = 0;
    uint32_t first = 0;
    uint64_t dmodseq = 0, smodseq = 0;
    if (rc == 0 && found) {
        rc = store_alloc_uids(u, &db, (uint32_t)found, &first, err, errlen);
        if (rc == 0) rc = store_alloc_modseq(u, &db, &dmodseq, err, errlen);
        if (rc == 0 && move) rc = store_alloc_modseq(u, &sb, &smodseq, err, errlen);
        if (rc == 0 && store_kw_load(u, sb.id, &kwn, &nkw) != 0)
            rc = store_dbfail(u, err, errlen, "keywords");
    }
    sbuf path = SBUF_INIT;
    for (size_t j = 0; j < found && rc == 0; j++) {
        struct msgrow *m = &rows[j];
        uint32_t nuid = first + (uint32_t)j;
        uint32_t nk = m->keywords;
        if (sb.id != db.id && (rc = remap_keywords(u, kwn, nkw, db.id, m->keywords, &nk, err,
                                                   errlen)) != 0)
            break;
        sbuf_reset(&path);
        store_msg_relpath(&path, db.id, nuid, m->guid, m->flags, nk);
        /* Files are immutable, so a copy is a hard link. */
        if (move_msg_file(u, sb.id, m, path.data, true) != 0) {
            rc = store_fail(err, errlen, STORE_EIO, "cannot link message file");
            break;
        }
        sqlite3_stmt *s = store_stmt(u, ST_MSG_INSERT);
        if (!s) { rc = store_dbfail(u, err, errlen, "copy"); break; }
        sqlite3_bind_int64(s, 1, db.id);
        sqlite3_bind_int64(s, 2, nuid);
        sqlite3_bind_text(s, 3, m->guid, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, m->flags);
        sqlite3_bind_int64(s, 5, nk);
        sqlite3_bind_int64(s, 6, m->internaldate);
        sqlite3_bind_int64(s, 7, (int64_t)m->size);
        sqlite3_bind_int64(s, 8, (int64_t)dmodseq);
        int r = sqlite3_step(s);
        sqlite3_reset(s);
        if (r != SQLITE_DONE) { rc = store_dbfail(u, err, errlen, "copy"); break; }
        if (move) rc = expunge_one(u, sb.id, m, smodseq, &trash, &ntrash, err, errlen);
        trim |= move && m->uid % 64 == 0;
        if (rc == 0 && new_uids) new_uids[idx[j]] = nuid;
    }
    sbuf_free(&path);
    if (rc == 0 && found) {
        if (fsync_box(u, db.id) != 0 || (move && fsync_box(u, sb.id) != 0))
            rc = store_fail(err, errlen, STORE_EIO, "fsync: %s", strerror(errno));
        if (rc == 0) rc = store_mbox_save(u, &db, err, errlen);
        if (rc == 0 && move && trim_expunged(u, &sb, trim) != 0)
            rc = store_dbfail(u, err, errlen, "expunge history");
        if (rc == 0 && move) rc = store_mbox_save(u, &sb, err, errlen);
    }
    free(rows);
    free(idx);
    store_strings_free(kwn, STORE_MAX_KEYWORDS);
    if (rc == 0) rc = store_commit(u, err, errlen);
    else store_rollback(u);
    unlink_trash(u, trash, ntrash, rc == 0);
    if (rc == 0 && dst_uidvalidity) *dst_uidvalidity = db.uidvalidity;
    if (rc != 0 && new_uids) memset(new_uids, 0, n * sizeof *new_uids);
    store_mbox_free(&sb);
    store_mbox_free(&db);
    return rc;
out:
    store_rollback(u);
    store_mbox_free(&sb);
    store_mbox_free(&db);
    return rc;
}

int store_vanished(store_user *u, const char *mailbox, uint64_t since, uint32_t **uids,
                   size_t *count, bool *complete, char *err, size_t errlen)
{
    *uids = NULL;
    *count = 0;
    int rc;
    bool own = store_read_own(u, &rc);
    if (rc) return store_dbfail(u, err, errlen, "begin");
    struct mbox mb;
    rc = store_mbox_get(u, mailbox, &mb, err, errlen);
    if (rc) { if (own) store_read_end(u); return rc; }
    if (complete) *complete = since >= mb.vanished_floor;
    sqlite3_stmt *s = store_stmt(u, ST_VANISHED);
    if (!s) {
        rc = store_dbfail(u, err, errlen, "vanished");
    } else {
        sqlite3_bind_int64(s, 1, mb.id);
        sqlite3_bind_int64(s, 2, (int64_t)since);
        size_t cap = 0;
        int r;
        while ((r = sqlite3_step(s)) == SQLITE_ROW) {
            if (*count == cap) {
                cap = cap ? cap * 2 : 64;
                *uids = xrealloc(*uids, cap * sizeof **uids);
            }
            (*uids)[(*count)++] = (uint32_t)sqlite3_column_int64(s, 0);
        }
        sqlite3_reset(s);
        if (r != SQLITE_DONE) {
            rc = store_dbfail(u, err, errlen, "vanished");
            free(*uids);
            *uids = NULL;
            *count = 0;
        }
    }
    if (own) store_read_end(u);
    store_mbox_free(&mb);
    return rc;
}
