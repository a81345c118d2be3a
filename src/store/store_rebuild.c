/* Rebuilding index.db from the files.
 *
 * The files hold everything the index does except MODSEQs and the expunge
 * history: uid, guid and flags in the name, internaldate in mtime, size in
 * st_size, names/UIDVALIDITY/reservations in meta, keyword names in keywords,
 * ACL entries in acl (store_acl.c; rows of deleted mailboxes do not return).
 * UIDs restart at max(highest file uid + 1, meta uidlimit), which is above
 * every uid ever handed out, so UIDVALIDITY stays.  Every message gets
 * MODSEQ = meta modseqlimit, above every modseq ever handed out, so CONDSTORE
 * clients see "everything changed" rather than missing a change; the expunge
 * history restarts (vanished_floor), see store_vanished().  UIDVALIDITY
 * changes only when the files contradict that reasoning: a lost meta, or two
 * files claiming one uid (a copy that crashed before its commit). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "store/store_int.h"

struct rfile {
    struct msgrow m;
    char *name;
};

struct rbox {
    struct mbox mb;
    bool meta_ok;
};

static int cmp_uid(const void *a, const void *b)
{
    const struct rfile *x = a, *y = b;
    return x->m.uid < y->m.uid ? -1 : x->m.uid > y->m.uid;
}

static int cmp_id(const void *a, const void *b)
{
    const struct rbox *x = a, *y = b;
    return x->mb.id < y->mb.id ? -1 : x->mb.id > y->mb.id;
}

static int scan_files(store_user *u, int64_t id, struct rfile **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    char dir[48];
    snprintf(dir, sizeof dir, "mbox/%lld", (long long)id);
    int fd = openat(u->dirfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    DIR *d = fdopendir(fd);
    if (!d) { close(fd); return -1; }
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct rfile f = { 0 };
        if (store_parse_msgname(e->d_name, &f.m.uid, f.m.guid, &f.m.flags, &f.m.keywords) != 0)
            continue;
        struct stat st;
        if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        f.m.size = (uint64_t)st.st_size;
        f.m.internaldate = st.st_mtime;
        f.name = xstrdup(e->d_name);
        if (*count == cap) {
            cap = cap ? cap * 2 : 64;
            *out = xrealloc(*out, cap * sizeof **out);
        }
        (*out)[(*count)++] = f;
    }
    closedir(d);
    if (*count) qsort(*out, *count, sizeof **out, cmp_uid);
    return 0;
}

static int read_keywords(store_user *u, int64_t id, char **names, size_t *n)
{
    *n = 0;
    char rel[64];
    snprintf(rel, sizeof rel, "mbox/%lld/keywords", (long long)id);
    FILE *f = NULL;
    int fd = openat(u->dirfd, rel, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) f = fdopen(fd, "r");
    if (!f) { if (fd >= 0) close(fd); return 0; }
    char line[STORE_MAX_KEYWORD + 3];
    while (*n < STORE_MAX_KEYWORDS && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        /* A bad line still takes its slot: later letters keep their meaning. */
        names[(*n)++] = xstrdup(store_keyword_valid(line) ? line : "");
    }
    fclose(f);
    return 0;
}

static int insert_box(store_user *u, const struct mbox *mb)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(u->db,
                           "INSERT INTO mailbox(id,name,uidvalidity,uidnext,highestmodseq,uidlimit,"
                           "modseqlimit,vanished_floor,attrs) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)",
                           -1, &s, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(s, 1, mb->id);
    sqlite3_bind_text(s, 2, mb->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, mb->uidvalidity);
    sqlite3_bind_int64(s, 4, mb->uidnext);
    sqlite3_bind_int64(s, 5, (int64_t)mb->highestmodseq);
    sqlite3_bind_int64(s, 6, mb->uidlimit);
    sqlite3_bind_int64(s, 7, (int64_t)mb->modseqlimit);
    sqlite3_bind_int64(s, 8, (int64_t)mb->vanished_floor);
    sqlite3_bind_int64(s, 9, mb->attrs);
    int r = sqlite3_step(s);
    sqlite3_finalize(s);
    return r == SQLITE_DONE ? 0 : -1;
}

static int insert_msg(store_user *u, int64_t box, const struct msgrow *m)
{
    sqlite3_stmt *s = store_stmt(u, ST_MSG_INSERT);
    if (!s) return -1;
    sqlite3_bind_int64(s, 1, box);
    sqlite3_bind_int64(s, 2, m->uid);
    sqlite3_bind_text(s, 3, m->guid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, m->flags);
    sqlite3_bind_int64(s, 5, m->keywords);
    sqlite3_bind_int64(s, 6, m->internaldate);
    sqlite3_bind_int64(s, 7, (int64_t)m->size);
    sqlite3_bind_int64(s, 8, (int64_t)m->modseq);
    int r = sqlite3_step(s);
    sqlite3_reset(s);
    return r == SQLITE_DONE ? 0 : -1;
}

/* One mailbox: its keywords, its messages, its meta rewritten. */
static int rebuild_box(store_user *u, struct rbox *rb, char *err, size_t errlen)
{
    struct mbox *mb = &rb->mb;
    char *kw[STORE_MAX_KEYWORDS];
    size_t nkw = 0;
    read_keywords(u, mb->id, kw, &nkw);
    struct rfile *files;
    size_t n;
    if (scan_files(u, mb->id, &files, &n) != 0) {
        for (size_t i = 0; i < nkw; i++) free(kw[i]);
        return store_fail(err, errlen, STORE_EIO, "scan mailbox %lld: %s", (long long)mb->id,
                          strerror(errno));
    }
    uint32_t maxuid = n ? files[n - 1].m.uid : 0;
    uint64_t next = (uint64_t)maxuid + 1;
    if (next < mb->uidlimit) next = mb->uidlimit;
    /* Two files with one uid: give the later ones fresh uids.  The old uid
     * may have been shown with either file, so UIDVALIDITY must change. */
    bool dup = false;
    char dir[48];
    snprintf(dir, sizeof dir, "mbox/%lld", (long long)mb->id);
    uint32_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t orig = files[i].m.uid;
        bool same = i > 0 && orig == prev;
        prev = orig;
        if (!same) continue;
        dup = true;
        files[i].m.uid = (uint32_t)next++;
        sbuf from = SBUF_INIT, to = SBUF_INIT;
        sbuf_printf(&from, "%s/%s", dir, files[i].name);
        store_msg_relpath(&to, mb->id, files[i].m.uid, files[i].m.guid, files[i].m.flags,
                          files[i].m.keywords);
        if (renameat(u->dirfd, from.data, u->dirfd, to.data) != 0) {
            log_warn("store %s: renumbering %s: %s", u->path, from.data, strerror(errno));
        } else {
            free(files[i].name);
            files[i].name = xstrdup(strrchr(to.data, '/') + 1);
        }
        sbuf_free(&from);
        sbuf_free(&to);
    }
    if (dup || !rb->meta_ok) {
        if (dup) log_warn("store %s: mailbox %lld had duplicate uids, new UIDVALIDITY", u->path,
                          (long long)mb->id);
        mb->uidvalidity = store_new_uidvalidity(u);
    }
    if (next > UINT32_MAX) next = UINT32_MAX;
    mb->uidnext = (uint32_t)next;
    if (mb->uidlimit < mb->uidnext) mb->uidlimit = mb->uidnext;
    uint64_t modseq = mb->modseqlimit ? mb->modseqlimit : 1;
    mb->highestmodseq = modseq;
    mb->modseqlimit = modseq + STORE_MODSEQ_BLOCK;
    mb->vanished_floor = modseq;
    uint32_t kwmask = nkw >= 32 ? UINT32_MAX : (uint32_t)((1ull << nkw) - 1);
    int rc = 0;
    if (insert_box(u, mb) != 0) rc = store_dbfail(u, err, errlen, "rebuild mailbox");
    if (rc == 0 && store_acl_restore(u, mb->id) != 0)
        rc = store_fail(err, errlen, STORE_EIO, "cannot restore the ACL of mailbox %lld",
                        (long long)mb->id);
    for (size_t i = 0; i < nkw && rc == 0; i++) {
        sqlite3_stmt *s = store_stmt(u, ST_KW_ADD);
        if (!s) { rc = store_dbfail(u, err, errlen, "rebuild keywords"); break; }
        sqlite3_bind_int64(s, 1, mb->id);
        sqlite3_bind_int64(s, 2, (int64_t)i);
        sqlite3_bind_text(s, 3, kw[i], -1, SQLITE_STATIC);
        int r = sqlite3_step(s);
        sqlite3_reset(s);
        if (r != SQLITE_DONE) rc = store_dbfail(u, err, errlen, "rebuild keywords");
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct msgrow *m = &files[i].m;
        /* Letters without a keywords entry mean nothing: drop them. */
        m->keywords &= kwmask;
        m->modseq = modseq;
        if (insert_msg(u, mb->id, m) != 0) rc = store_dbfail(u, err, errlen, "rebuild message");
        sbuf rel = SBUF_INIT;
        sbuf_printf(&rel, "%s/%s", dir, files[i].name);
        if (rc == 0 && store_msgcache_header_file(u, rel.data, m->guid) != 0)
            rc = store_dbfail(u, err, errlen, "rebuild cache");
        sbuf_free(&rel);
    }
    if (rc == 0 && store_meta_write(u, mb) != 0)
        rc = store_fail(err, errlen, STORE_EIO, "cannot write mailbox meta");
    for (size_t i = 0; i < n; i++) free(files[i].name);
    free(files);
    for (size_t i = 0; i < nkw; i++) free(kw[i]);
    return rc;
}

/* Is name used by one of boxes[0..n)? */
static bool name_taken(const struct rbox *boxes, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (boxes[i].mb.name && strcmp(boxes[i].mb.name, name) == 0) return true;
    return false;
}

static void read_subscriptions(store_user *u)
{
    int fd = openat(u->dirfd, "subscriptions", O_RDONLY | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f) { if (fd >= 0) close(fd); return; }
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(u->db, "INSERT OR IGNORE INTO subscription(name) VALUES(?1)", -1, &s,
                           NULL) != SQLITE_OK) {
        fclose(f);
        return;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] == '\n') line[len - 1] = '\0';
        if (!store_mailbox_name_valid(line)) continue;
        sqlite3_reset(s);
        sqlite3_bind_text(s, 1, store_canon_name(line), -1, SQLITE_TRANSIENT);
        sqlite3_step(s);
    }
    free(line);
    sqlite3_finalize(s);
    fclose(f);
}

/* The caller holds the lock file exclusively. */
int store_rebuild_handle(store_user *u, char *err, size_t errlen)
{
    store_recover(u, true);
    int fd = openat(u->dirfd, "mbox", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0) close(fd);
        return store_fail(err, errlen, STORE_EIO, "open mbox dir: %s", strerror(errno));
    }
    struct rbox *boxes = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long long id = strtoll(e->d_name, &end, 10);
        if (*end || id <= 0 || e->d_name[0] == '0') continue;
        boxes = xrealloc(boxes, (n + 1) * sizeof *boxes);
        struct rbox *rb = &boxes[n++];
        rb->meta_ok = store_meta_read(u->dirfd, id, &rb->mb) == 0;
        if (!rb->meta_ok) {
            memset(&rb->mb, 0, sizeof rb->mb);
            rb->mb.id = id;
        }
    }
    closedir(d);
    if (n) qsort(boxes, n, sizeof *boxes, cmp_id);

    int rc = store_begin(u, err, errlen);
    if (rc) goto out;
    if (store_exec(u, "DELETE FROM msg; DELETE FROM keyword; DELETE FROM expunged; DELETE FROM cache;"
                      " DELETE FROM mailbox; DELETE FROM subscription;") != 0 ||
        store_acl_reset(u) != 0) {
        rc = store_dbfail(u, err, errlen, "rebuild");
        goto out;
    }
    /* UIDVALIDITY allocation must stay above every value the files show. */
    uint32_t maxv = 0;
    for (size_t i = 0; i < n; i++)
        if (boxes[i].meta_ok && boxes[i].mb.uidvalidity > maxv) maxv = boxes[i].mb.uidvalidity;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(u->db, "INSERT INTO kv(key,value) VALUES('uidvalidity',?1)"
                                  " ON CONFLICT(key) DO UPDATE SET value=max(value,?1)",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, maxv);
        sqlite3_step(s);
        sqlite3_finalize(s);
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct mbox *mb = &boxes[i].mb;
        if (!mb->name || name_taken(boxes, i, mb->name)) {
            /* Lost or clashing name: keep the messages under a findable one. */
            sbuf nn = SBUF_INIT;
            sbuf_printf(&nn, "Recovered/%lld", (long long)mb->id);
            free(mb->name);
            mb->name = sbuf_detach(&nn);
        }
        rc = rebuild_box(u, &boxes[i], err, errlen);
    }
    if (rc == 0 && n == 0) {
        static const struct { const char *name; unsigned attrs; } defs[] = {
            { "INBOX", 0 }, { "Sent", STORE_MB_SENT }, { "Drafts", STORE_MB_DRAFTS },
            { "Trash", STORE_MB_TRASH }, { "Junk", STORE_MB_JUNK },
            { "Archive", STORE_MB_ARCHIVE },
        };
        for (size_t i = 0; i < sizeof defs / sizeof defs[0] && rc == 0; i++)
            rc = store_mailbox_make(u, defs[i].name, defs[i].attrs, NULL, err, errlen);
    } else if (rc == 0 && !name_taken(boxes, n, "INBOX")) {
        rc = store_mailbox_make(u, "INBOX", 0, NULL, err, errlen);
    }
    if (rc == 0) read_subscriptions(u);
    if (rc == 0) rc = store_commit(u, err, errlen);
    if (rc == 0)
        log_info("store %s: index rebuilt from %zu mailbox directories", u->path, n);
out:
    store_rollback(u);
    for (size_t i = 0; i < n; i++) store_mbox_free(&boxes[i].mb);
    free(boxes);
    return rc;
}

static void remove_index(const char *root, const char *address)
{
    char *dn = store_user_dirname(address);
    if (!dn) return;
    static const char *const suffix[] = { "", "-wal", "-shm" };
    for (int i = 0; i < 3; i++) {
        sbuf p = SBUF_INIT;
        sbuf_printf(&p, "%s/%s/index.db%s", root, dn, suffix[i]);
        unlink(p.data);
        sbuf_free(&p);
    }
    free(dn);
}

int store_rebuild(const char *root, const char *address, char *err, size_t errlen)
{
    char *dn = store_user_dirname(address);
    if (!dn) return store_fail(err, errlen, STORE_EINVAL, "invalid address");
    sbuf p = SBUF_INIT;
    sbuf_printf(&p, "%s/%s", root, dn);
    free(dn);
    struct stat st;
    int exists = stat(p.data, &st) == 0 && S_ISDIR(st.st_mode);
    sbuf_free(&p);
    if (!exists) return store_fail(err, errlen, STORE_ENOENT, "no such user");
    int rc = STORE_EIO;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (attempt == 1) {
            /* The index itself is unusable: start it afresh from the files. */
            log_warn("store: index of %s unusable (%s), recreating it", address,
                     err ? err : "");
            remove_index(root, address);
        }
        store_user *u = store_user_handle(root, address, false, true, err, errlen);
        if (!u) continue;
        flock(u->lockfd, LOCK_EX);
        rc = store_rebuild_handle(u, err, errlen);
        flock(u->lockfd, LOCK_UN);
        store_user_close(u);
        if (rc == 0) return 0;
    }
    return rc;
}
