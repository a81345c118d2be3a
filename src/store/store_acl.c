/* Access control lists (RFC 4314) on a user's mailboxes: which other
 * identifiers may do what.  The store keeps rows of (mailbox, identifier,
 * rights string) and knows nothing of what the letters mean; the IMAP
 * layer parses and normalises them (src/imap/imap_acl.h).
 *
 * Rows are keyed by the mailbox's id, not its name: RENAME keeps the ACL
 * (ids survive a rename) and DELETE drops it (ids are never reused, and
 * every read joins the mailbox table, so rows of deleted mailboxes are
 * invisible).  The table is part of the schema of new indexes
 * (store_user.c); an index made before ACLs existed gets it on the first
 * write here, and reads of such an index simply find no rows.
 *
 * Like every other table the rows are a cache of a file, so that
 * store_rebuild() restores them: mbox/<id>/acl holds the mailbox's whole
 * ACL, rewritten atomically inside the write transaction of every change
 * (the same order as meta and keywords: file first, then COMMIT).  Format:
 *
 *   pochta-acl 1
 *   <ident> <rights>          one line per entry, split at the LAST space
 *
 * which is why idents may hold no control bytes and rights no space. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "store/store_int.h"

#define ACL_FILE_MAGIC "pochta-acl 1"

/* Same text as in store_user.c's schema. */
#define ACL_TABLE_SQL                                                                   \
    "CREATE TABLE IF NOT EXISTS acl(mailbox_id INTEGER NOT NULL, ident TEXT NOT NULL," \
    " rights TEXT NOT NULL, PRIMARY KEY(mailbox_id, ident)) WITHOUT ROWID;"

static bool no_table(store_user *u)
{
    const char *m = sqlite3_errmsg(u->db);
    return m && strstr(m, "no such table") != NULL;
}

/* Identifiers: no control bytes (one line of the acl file each). */
static bool ident_valid(const char *id)
{
    if (!*id || strlen(id) > STORE_MAX_NAME) return false;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return false;
    return true;
}

/* Rights: printable ASCII without space (the last field of a line). */
static bool rights_valid(const char *r)
{
    if (strlen(r) > 64) return false;
    for (const unsigned char *p = (const unsigned char *)r; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f) return false;
    return true;
}

/* Inside a write transaction: mbox/<box>/acl from the rows of box. */
static int acl_file_write(store_user *u, int64_t box)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(u->db, "SELECT ident,rights FROM acl WHERE mailbox_id=?1 ORDER BY ident", -1, &s,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(s, 1, box);
    sbuf b = SBUF_INIT, dir = SBUF_INIT;
    sbuf_puts(&b, ACL_FILE_MAGIC "\n");
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW)
        sbuf_printf(&b, "%s %s\n", (const char *)sqlite3_column_text(s, 0),
                    (const char *)sqlite3_column_text(s, 1));
    sqlite3_finalize(s);
    int rc = -1;
    if (r == SQLITE_DONE) {
        sbuf_printf(&dir, "mbox/%lld", (long long)box);
        rc = store_write_file_at(u->dirfd, dir.data, "acl", b.data, b.len);
        if (rc != 0) log_warn("store %s: writing %s/acl: %s", u->path, dir.data, strerror(errno));
    }
    sbuf_free(&b);
    sbuf_free(&dir);
    return rc;
}

int store_acl_set(store_user *u, const char *mailbox, const char *ident, const char *rights,
                  char *err, size_t errlen)
{
    if (!mailbox || !ident || !ident_valid(ident))
        return store_fail(err, errlen, STORE_EINVAL, "invalid identifier");
    if (rights && !rights_valid(rights))
        return store_fail(err, errlen, STORE_EINVAL, "invalid rights string");
    int rc = store_begin(u, err, errlen);
    if (rc) return rc;
    if (store_exec(u, ACL_TABLE_SQL) != 0) {
        rc = store_dbfail(u, err, errlen, "acl table");
        store_rollback(u);
        return rc;
    }
    struct mbox mb;
    rc = store_mbox_get(u, mailbox, &mb, err, errlen);
    if (rc) {
        store_rollback(u);
        return rc;
    }
    bool del = !rights || !*rights;
    sqlite3_stmt *s;
    const char *sql = del ? "DELETE FROM acl WHERE mailbox_id=?1 AND ident=?2"
                          : "INSERT OR REPLACE INTO acl(mailbox_id,ident,rights) VALUES(?1,?2,?3)";
    if (sqlite3_prepare_v2(u->db, sql, -1, &s, NULL) != SQLITE_OK) {
        rc = store_dbfail(u, err, errlen, "acl");
        store_mbox_free(&mb);
        store_rollback(u);
        return rc;
    }
    sqlite3_bind_int64(s, 1, mb.id);
    sqlite3_bind_text(s, 2, ident, -1, SQLITE_STATIC);
    if (!del) sqlite3_bind_text(s, 3, rights, -1, SQLITE_STATIC);
    int r = sqlite3_step(s);
    sqlite3_finalize(s);
    int64_t box = mb.id;
    store_mbox_free(&mb);
    if (r != SQLITE_DONE) {
        rc = store_dbfail(u, err, errlen, "acl write");
        store_rollback(u);
        return rc;
    }
    if (acl_file_write(u, box) != 0) {
        store_rollback(u);
        return store_fail(err, errlen, STORE_EIO, "cannot write the mailbox's acl file");
    }
    rc = store_commit(u, err, errlen);
    if (rc != 0 && store_begin(u, NULL, 0) == 0) {
        /* The file already says what the index now does not: put the
         * committed rows back into it, so a rebuild cannot resurrect a
         * change that was never acknowledged.  Best effort. */
        (void)acl_file_write(u, box);
        store_rollback(u);
    }
    return rc;
}

int store_acl_reset(store_user *u)
{
    return store_exec(u, ACL_TABLE_SQL " DELETE FROM acl;");
}

int store_acl_restore(store_user *u, int64_t box)
{
    char rel[64];
    snprintf(rel, sizeof rel, "mbox/%lld/acl", (long long)box);
    int fd = openat(u->dirfd, rel, O_RDONLY | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        return errno == ENOENT ? 0 : -1;   /* no file: nothing was ever shared */
    }
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(u->db, "INSERT OR REPLACE INTO acl(mailbox_id,ident,rights) VALUES(?1,?2,?3)", -1,
                           &s, NULL) != SQLITE_OK) {
        fclose(f);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    bool first = true;
    int rc = 0;
    size_t skipped = 0;
    while (rc == 0 && (len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] == '\n') line[--len] = '\0';
        if (first) {
            first = false;
            if (strcmp(line, ACL_FILE_MAGIC) != 0) {
                log_warn("store %s: %s: unknown format, the mailbox's ACL is lost", u->path, rel);
                break;
            }
            continue;
        }
        /* A damaged line (a NUL in it, no separator, bad fields) is
         * dropped: that can only grant less, never more. */
        char *sp = memchr(line, '\0', (size_t)len) ? NULL : strrchr(line, ' ');
        if (sp) *sp = '\0';
        if (!sp || !ident_valid(line) || !sp[1] || !rights_valid(sp + 1)) {
            skipped++;
            continue;
        }
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, box);
        sqlite3_bind_text(s, 2, line, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 3, sp + 1, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(s) != SQLITE_DONE) rc = -1;
    }
    if (skipped) log_warn("store %s: %s: %zu damaged lines ignored", u->path, rel, skipped);
    free(line);
    sqlite3_finalize(s);
    fclose(f);
    return rc;
}

int store_acl_list(store_user *u, const char *mailbox, store_acl_entry **out, size_t *count,
                   char *err, size_t errlen)
{
    *out = NULL;
    *count = 0;
    sqlite3_stmt *s;
    const char *sql = mailbox ? "SELECT m.name,a.ident,a.rights FROM acl a JOIN mailbox m ON m.id=a.mailbox_id"
                                " WHERE m.name=?1 ORDER BY a.ident"
                              : "SELECT m.name,a.ident,a.rights FROM acl a JOIN mailbox m ON m.id=a.mailbox_id"
                                " ORDER BY m.name,a.ident";
    if (sqlite3_prepare_v2(u->db, sql, -1, &s, NULL) != SQLITE_OK) {
        if (no_table(u)) return 0;   /* an index from before ACLs: none set */
        return store_dbfail(u, err, errlen, "acl list");
    }
    if (mailbox) sqlite3_bind_text(s, 1, store_canon_name(mailbox), -1, SQLITE_STATIC);
    size_t cap = 0;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (*count == cap) {
            cap = cap ? cap * 2 : 8;
            *out = xrealloc(*out, cap * sizeof **out);
        }
        store_acl_entry *e = &(*out)[(*count)++];
        e->mailbox = xstrdup((const char *)sqlite3_column_text(s, 0));
        e->ident = xstrdup((const char *)sqlite3_column_text(s, 1));
        e->rights = xstrdup((const char *)sqlite3_column_text(s, 2));
    }
    sqlite3_finalize(s);
    if (r != SQLITE_DONE) {
        store_acl_free(*out, *count);
        *out = NULL;
        *count = 0;
        return store_dbfail(u, err, errlen, "acl read");
    }
    return 0;
}

void store_acl_free(store_acl_entry *v, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(v[i].mailbox);
        free(v[i].ident);
        free(v[i].rights);
    }
    free(v);
}
