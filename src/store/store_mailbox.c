/* Mailbox-level operations: create, delete, rename, list, subscriptions,
 * status and quota usage. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "store/store_int.h"

static int check_name(const char *name, char *err, size_t errlen)
{
    return store_mailbox_name_valid(name) ? 0
                                          : store_fail(err, errlen, STORE_EINVAL,
                                                       "invalid mailbox name");
}

int store_mailbox_create(store_user *u, const char *name, unsigned attrs, char *err,
                         size_t errlen)
{
    int rc = check_name(name, err, errlen);
    if (rc) return rc;
    rc = store_begin(u, err, errlen);
    if (rc) return rc;
    rc = store_mailbox_make(u, name, attrs, NULL, err, errlen);
    if (rc == 0) return store_commit(u, err, errlen);
    store_rollback(u);
    return rc;
}

static int exec_bind_id(store_user *u, const char *sql, int64_t id)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(u->db, sql, -1, &s, NULL) != SQLITE_OK) return -1;
    sqlite3_bind_int64(s, 1, id);
    int r = sqlite3_step(s);
    sqlite3_finalize(s);
    return r == SQLITE_DONE ? 0 : -1;
}

/* The directory is moved to tmp/b.<id>.<uidvalidity> before the rows go, so
 * a crash either restores it (rows still there) or finishes the removal. */
int store_mailbox_delete(store_user *u, const char *name, char *err, size_t errlen)
{
    int rc = check_name(name, err, errlen);
    if (rc) return rc;
    if (strcmp(store_canon_name(name), "INBOX") == 0)
        return store_fail(err, errlen, STORE_EINVAL, "INBOX cannot be deleted");
    rc = store_begin(u, err, errlen);
    if (rc) return rc;
    struct mbox mb;
    rc = store_mbox_get(u, name, &mb, err, errlen);
    if (rc) { store_rollback(u); return rc; }
    char dir[48], trash[80];
    snprintf(dir, sizeof dir, "mbox/%lld", (long long)mb.id);
    snprintf(trash, sizeof trash, "tmp/b.%lld.%u", (long long)mb.id, mb.uidvalidity);
    bool moved = false;
    if (renameat(u->dirfd, dir, u->dirfd, trash) != 0 || store_fsync_at(u->dirfd, "mbox") != 0) {
        rc = store_fail(err, errlen, STORE_EIO, "removing mailbox directory: %s", strerror(errno));
    } else {
        moved = true;
        if (exec_bind_id(u, "DELETE FROM cache WHERE guid IN (SELECT guid FROM msg WHERE mailbox_id=?1)"
                            " AND NOT EXISTS(SELECT 1 FROM msg m WHERE m.guid=cache.guid AND"
                            " m.mailbox_id<>?1)", mb.id) != 0 ||
            exec_bind_id(u, "DELETE FROM msg WHERE mailbox_id=?1", mb.id) != 0 ||
            exec_bind_id(u, "DELETE FROM keyword WHERE mailbox_id=?1", mb.id) != 0 ||
            exec_bind_id(u, "DELETE FROM expunged WHERE mailbox_id=?1", mb.id) != 0 ||
            exec_bind_id(u, "DELETE FROM mailbox WHERE id=?1", mb.id) != 0)
            rc = store_dbfail(u, err, errlen, "delete mailbox");
    }
    if (rc == 0) rc = store_commit(u, err, errlen);
    else store_rollback(u);
    if (rc == 0) {
        store_rmtree_at(u->dirfd, trash);
    } else if (moved && renameat(u->dirfd, trash, u->dirfd, dir) == 0) {
        store_fsync_at(u->dirfd, "mbox");
    }
    store_mbox_free(&mb);
    return rc;
}

static int rename_row(store_user *u, struct mbox *mb, const char *newname, char *err,
                      size_t errlen)
{
    free(mb->name);
    mb->name = xstrdup(newname);
    int rc = store_mbox_save(u, mb, err, errlen);
    if (rc == 0 && newname[0] != '\x01' && store_meta_write(u, mb) != 0)
        rc = store_fail(err, errlen, STORE_EIO, "cannot write mailbox meta");
    return rc;
}

static bool name_exists(store_user *u, const char *name)
{
    struct mbox mb;
    if (store_mbox_get(u, name, &mb, NULL, 0) != 0) return false;
    store_mbox_free(&mb);
    return true;
}

/* RFC 9051 6.3.6: INBOX's messages move to the new name and an empty INBOX
 * remains.  Handing INBOX's directory (UIDVALIDITY and all) to the new name
 * and creating a fresh INBOX does exactly that without touching a file. */
static int rename_inbox(store_user *u, struct mbox *inbox, const char *to, char *err,
                        size_t errlen)
{
    int rc = rename_row(u, inbox, to, err, errlen);
    if (rc == 0) rc = store_mailbox_make(u, "INBOX", 0, NULL, err, errlen);
    return rc;
}

int store_mailbox_rename(store_user *u, const char *from, const char *to, char *err,
                         size_t errlen)
{
    int rc = check_name(from, err, errlen);
    if (rc == 0) rc = check_name(to, err, errlen);
    if (rc) return rc;
    from = store_canon_name(from);
    to = store_canon_name(to);
    if (strcmp(to, "INBOX") == 0 || strcmp(from, to) == 0)
        return store_fail(err, errlen, STORE_EEXIST, "target mailbox already exists");
    rc = store_begin(u, err, errlen);
    if (rc) return rc;
    struct mbox src;
    rc = store_mbox_get(u, from, &src, err, errlen);
    if (rc) { store_rollback(u); return rc; }
    if (name_exists(u, to)) {
        rc = store_fail(err, errlen, STORE_EEXIST, "target mailbox already exists");
        goto out;
    }
    if (strcmp(from, "INBOX") == 0) {
        rc = rename_inbox(u, &src, to, err, errlen);
        goto out;
    }
    /* The mailbox and all its children; INBOX's children stay (handled above). */
    size_t flen = strlen(from);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(u->db, "SELECT id FROM mailbox WHERE name=?1 OR "
                                  "substr(name,1,?2)=(?1 || '/')", -1, &s, NULL) != SQLITE_OK) {
        rc = store_dbfail(u, err, errlen, "rename");
        goto out;
    }
    sqlite3_bind_text(s, 1, from, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (int64_t)flen + 1);
    int64_t *ids = NULL;
    size_t n = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        ids = xrealloc(ids, (n + 1) * sizeof *ids);
        ids[n++] = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    struct mbox *boxes = xcalloc(n ? n : 1, sizeof *boxes);
    char **newnames = xcalloc(n ? n : 1, sizeof *newnames);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (store_mbox_get_id(u, ids[i], &boxes[i]) != 0) {
            rc = store_dbfail(u, err, errlen, "rename");
            break;
        }
        sbuf nn = SBUF_INIT;
        sbuf_printf(&nn, "%s%s", to, boxes[i].name + flen);
        newnames[i] = sbuf_detach(&nn);
        if (!store_mailbox_name_valid(newnames[i]))
            rc = store_fail(err, errlen, STORE_EINVAL, "renamed name too long");
    }
    /* A target may exist only if it is itself being renamed away. */
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct mbox other;
        if (store_mbox_get(u, newnames[i], &other, NULL, 0) != 0) continue;
        bool moving = false;
        for (size_t j = 0; j < n; j++) moving |= other.id == ids[j];
        store_mbox_free(&other);
        if (!moving) rc = store_fail(err, errlen, STORE_EEXIST, "target mailbox already exists");
    }
    /* Two passes through placeholder names keep UNIQUE(name) happy when
     * renaming into one's own subtree ("a" -> "a/b"). */
    for (size_t i = 0; i < n && rc == 0; i++) {
        char ph[40];
        snprintf(ph, sizeof ph, "\x01%lld", (long long)ids[i]);
        rc = rename_row(u, &boxes[i], ph, err, errlen);
    }
    for (size_t i = 0; i < n && rc == 0; i++) rc = rename_row(u, &boxes[i], newnames[i], err, errlen);
    for (size_t i = 0; i < n; i++) store_mbox_free(&boxes[i]);
    free(boxes);
    store_strings_free(newnames, n);
    free(ids);
out:
    store_mbox_free(&src);
    if (rc == 0) return store_commit(u, err, errlen);
    store_rollback(u);
    return rc;
}

int store_mailbox_list(store_user *u, store_mailbox **out, size_t *count, char *err,
                       size_t errlen)
{
    *out = NULL;
    *count = 0;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(u->db,
                           "SELECT m.name, m.attrs, s.name IS NOT NULL FROM mailbox m"
                           " LEFT JOIN subscription s ON s.name=m.name ORDER BY m.name",
                           -1, &s, NULL) != SQLITE_OK)
        return store_dbfail(u, err, errlen, "list");
    size_t cap = 0;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (*count == cap) {
            cap = cap ? cap * 2 : 16;
            *out = xrealloc(*out, cap * sizeof **out);
        }
        store_mailbox *m = &(*out)[(*count)++];
        m->name = xstrdup((const char *)sqlite3_column_text(s, 0));
        m->attrs = (unsigned)sqlite3_column_int64(s, 1);
        m->subscribed = sqlite3_column_int(s, 2) != 0;
    }
    sqlite3_finalize(s);
    if (r != SQLITE_DONE) {
        store_mailbox_list_free(*out, *count);
        *out = NULL;
        *count = 0;
        return store_dbfail(u, err, errlen, "list");
    }
    return 0;
}

void store_mailbox_list_free(store_mailbox *list, size_t count)
{
    if (!list) return;
    for (size_t i = 0; i < count; i++) free(list[i].name);
    free(list);
}

int store_subscribe(store_user *u, const char *name, bool on, char *err, size_t errlen)
{
    int rc = check_name(name, err, errlen);
    if (rc) return rc;
    name = store_canon_name(name);
    rc = store_begin(u, err, errlen);
    if (rc) return rc;
    sqlite3_stmt *s;
    const char *sql = on ? "INSERT OR IGNORE INTO subscription(name) VALUES(?1)"
                         : "DELETE FROM subscription WHERE name=?1";
    if (sqlite3_prepare_v2(u->db, sql, -1, &s, NULL) != SQLITE_OK) {
        rc = store_dbfail(u, err, errlen, "subscribe");
    } else {
        sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
        int r = sqlite3_step(s);
        sqlite3_finalize(s);
        if (r != SQLITE_DONE) rc = store_dbfail(u, err, errlen, "subscribe");
        else if (sqlite3_changes(u->db) > 0 && store_subs_file_write(u) != 0)
            rc = store_fail(err, errlen, STORE_EIO, "cannot write subscriptions");
    }
    if (rc == 0) return store_commit(u, err, errlen);
    store_rollback(u);
    return rc;
}

int store_subscriptions(store_user *u, char ***names, size_t *count, char *err, size_t errlen)
{
    *names = NULL;
    *count = 0;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(u->db, "SELECT name FROM subscription ORDER BY name", -1, &s, NULL)
        != SQLITE_OK)
        return store_dbfail(u, err, errlen, "subscriptions");
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        *names = xrealloc(*names, (*count + 1) * sizeof **names);
        (*names)[(*count)++] = xstrdup((const char *)sqlite3_column_text(s, 0));
    }
    sqlite3_finalize(s);
    if (r != SQLITE_DONE) {
        store_strings_free(*names, *count);
        *names = NULL;
        *count = 0;
        return store_dbfail(u, err, errlen, "subscriptions");
    }
    return 0;
}

int store_mailbox_status(store_user *u, const char *name, store_status *st, char *err,
                         size_t errlen)
{
    memset(st, 0, sizeof *st);
    if (store_exec(u, "BEGIN") != 0) return store_dbfail(u, err, errlen, "begin");
    u->in_tx = true;
    struct mbox mb;
    int rc = store_mbox_get(u, name, &mb, err, errlen);
    if (rc) { store_rollback(u); return rc; }
    st->uidnext = mb.uidnext;
    st->uidvalidity = mb.uidvalidity;
    st->highestmodseq = mb.highestmodseq;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(u->db,
                           "SELECT count(*), total((flags & 1) = 0), total((flags & 8) != 0),"
                           " total(size) FROM msg WHERE mailbox_id=?1",
                           -1, &s, NULL) != SQLITE_OK) {
        rc = store_dbfail(u, err, errlen, "status");
    } else {
        sqlite3_bind_int64(s, 1, mb.id);
        if (sqlite3_step(s) == SQLITE_ROW) {
            st->messages = (uint32_t)sqlite3_column_int64(s, 0);
            st->unseen = (uint32_t)sqlite3_column_int64(s, 1);
            st->deleted = (uint32_t)sqlite3_column_int64(s, 2);
            st->size = (uint64_t)sqlite3_column_int64(s, 3);
        } else {
            rc = store_dbfail(u, err, errlen, "status");
        }
        sqlite3_finalize(s);
    }
    store_rollback(u);
    store_mbox_free(&mb);
    return rc;
}

int store_quota_usage(store_user *u, uint64_t *bytes, uint64_t *messages, char *err,
                      size_t errlen)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(u->db, "SELECT count(*), total(size) FROM msg", -1, &s, NULL)
        != SQLITE_OK)
        return store_dbfail(u, err, errlen, "quota");
    int rc = 0;
    if (sqlite3_step(s) == SQLITE_ROW) {
        if (messages) *messages = (uint64_t)sqlite3_column_int64(s, 0);
        if (bytes) *bytes = (uint64_t)sqlite3_column_int64(s, 1);
    } else {
        rc = store_dbfail(u, err, errlen, "quota");
    }
    sqlite3_finalize(s);
    return rc;
}
