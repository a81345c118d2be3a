/* Crash repair.  Every multi-step change stages through tmp/ so that the only
 * place a crash can leave anything is tmp/, which is cheap to scan at open:
 *
 *   d.<guid>                   a delivery: written + fsync'd, then indexed,
 *                              then renamed into its mailbox.  Indexed -> move
 *                              it into place; not indexed -> never acknowledged,
 *                              remove it.
 *   x.<box>.<uid>.<guid>       an expunged file, renamed here before the index
 *                              row is deleted.  Row still there -> the expunge
 *                              did not commit, put it back; else remove it.
 *   b.<box>.<uidvalidity>      a deleted mailbox directory, same rule.
 *
 * Flag changes rename files in place, with no staging: the first 64 bytes
 * of the lock file say "F <box> <modseq>" for the last flag change begun
 * (written inside its write transaction, before its first rename).  When
 * that mailbox's committed highestmodseq is below <modseq>, the change
 * never committed (a kill, or a rollback after an error) and file names
 * may be ahead of the index: the index is the truth, so the names are
 * renamed back to it.  The marker is a page-cache write, not fsync'd: it
 * covers a process crash, which keeps it; after a power loss names and
 * index may still disagree, which readers tolerate (store_msg_locate()),
 * and the next flag change of such a message renames it from wherever it is.
 *
 * Deliveries stage without holding the SQLite write lock, so they hold the
 * user's lock file shared while a d.* file exists; recovery needs it
 * exclusively and simply skips when someone is mid-delivery (the next open
 * will do it).  x.* and b.* are created under the SQLite write lock, which
 * recovery also takes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "store/store_int.h"

static int rmtree_depth(int dirfd, const char *rel, int depth)
{
    if (unlinkat(dirfd, rel, 0) == 0 || errno == ENOENT) return 0;
    if (depth > 4) return -1;
    int fd = openat(dirfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    DIR *d = fdopendir(fd);
    if (!d) { close(fd); return -1; }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        rmtree_depth(fd, e->d_name, depth + 1);
    }
    closedir(d);
    return (unlinkat(dirfd, rel, AT_REMOVEDIR) == 0 || errno == ENOENT) ? 0 : -1;
}

int store_rmtree_at(int dirfd, const char *rel)
{
    return rmtree_depth(dirfd, rel, 0);
}

static void recover_delivery(store_user *u, const char *tmpname, const char *guid)
{
    sqlite3_stmt *s = store_stmt(u, ST_MSG_BY_GUID);
    if (!s) return;
    sqlite3_bind_text(s, 1, guid, -1, SQLITE_TRANSIENT);
    sbuf path = SBUF_INIT, dir = SBUF_INIT;
    bool failed = false;
    while (sqlite3_step(s) == SQLITE_ROW) {
        int64_t box = sqlite3_column_int64(s, 0);
        uint32_t uid = (uint32_t)sqlite3_column_int64(s, 1);
        unsigned flags = (unsigned)sqlite3_column_int64(s, 2);
        uint32_t kw = (uint32_t)sqlite3_column_int64(s, 3);
        sbuf_reset(&path);
        store_msg_relpath(&path, box, uid, guid, flags, kw);
        /* Only missing files need the staged copy. */
        if (faccessat(u->dirfd, path.data, F_OK, 0) == 0) continue;
        if (linkat(u->dirfd, tmpname, u->dirfd, path.data, 0) != 0 && errno != EEXIST) {
            log_warn("store %s: recovering %s: %s", u->path, tmpname, strerror(errno));
            failed = true;
            continue;
        }
        sbuf_reset(&dir);
        sbuf_printf(&dir, "mbox/%lld", (long long)box);
        if (store_fsync_at(u->dirfd, dir.data) != 0) failed = true;
        log_info("store %s: recovered message %s uid %" PRIu32 " after a crash", u->path, guid,
                 uid);
    }
    sqlite3_reset(s);
    if (!failed) unlinkat(u->dirfd, tmpname, 0);
    sbuf_free(&path);
    sbuf_free(&dir);
}

static void recover_expunge(store_user *u, const char *tmpname, const char *rest)
{
    long long box;
    unsigned long long uid;
    char guid[17];
    int n = 0;
    if (sscanf(rest, "%lld.%llu.%16[0-9A-V]%n", &box, &uid, guid, &n) == 3 && rest[n] == '\0' &&
        uid <= UINT32_MAX) {
        struct msgrow m;
        if (store_msg_get(u, box, (uint32_t)uid, &m) == 0 && strcmp(m.guid, guid) == 0) {
            sbuf path = SBUF_INIT, dir = SBUF_INIT;
            store_msg_relpath(&path, box, m.uid, m.guid, m.flags, m.keywords);
            sbuf_printf(&dir, "mbox/%lld", box);
            if (renameat(u->dirfd, tmpname, u->dirfd, path.data) == 0)
                store_fsync_at(u->dirfd, dir.data);
            sbuf_free(&path);
            sbuf_free(&dir);
            return;
        }
    }
    unlinkat(u->dirfd, tmpname, 0);
}

#define MARK_LEN 64

void store_flag_mark(store_user *u, int64_t box, uint64_t modseq)
{
    char rec[MARK_LEN + 1];
    int n = snprintf(rec, sizeof rec, "F %lld %" PRIu64, (long long)box, modseq);
    memset(rec + n, ' ', (size_t)(MARK_LEN - 1 - n));
    rec[MARK_LEN - 1] = '\n';
    if (pwrite(u->lockfd, rec, MARK_LEN, 0) != MARK_LEN)
        log_warn("store %s: flag change marker: %s", u->path, strerror(errno));
}

static void flag_mark_clear(store_user *u)
{
    char rec[MARK_LEN];
    memset(rec, ' ', sizeof rec);
    rec[MARK_LEN - 1] = '\n';
    (void)!pwrite(u->lockfd, rec, MARK_LEN, 0);
}

/* The marker's mailbox when its flag change did not commit, else -1. */
static int64_t flag_mark_pending(store_user *u)
{
    char rec[MARK_LEN + 1];
    ssize_t n = pread(u->lockfd, rec, MARK_LEN, 0);
    if (n < 4) return -1;
    rec[n] = '\0';
    long long box;
    unsigned long long modseq;
    if (sscanf(rec, "F %lld %llu", &box, &modseq) != 2) return -1;
    struct mbox mb;
    if (store_mbox_get_id(u, box, &mb) != 0) return -1;   /* mailbox gone */
    bool pending = mb.highestmodseq < modseq;
    store_mbox_free(&mb);
    return pending ? box : -1;
}

/* Inside the write transaction: every file of the mailbox whose name
 * disagrees with its row takes the row's name. */
static void repair_flag_names(store_user *u, int64_t box)
{
    sbuf dir = SBUF_INIT, from = SBUF_INIT, to = SBUF_INIT;
    sbuf_printf(&dir, "mbox/%lld", (long long)box);
    int fd = openat(u->dirfd, dir.data, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d && fd >= 0) close(fd);
    unsigned fixed = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        uint32_t uid, kw;
        unsigned fl;
        char guid[17];
        if (store_parse_msgname(e->d_name, &uid, guid, &fl, &kw) != 0) continue;
        struct msgrow m;
        if (store_msg_get(u, box, uid, &m) != 0 || strcmp(m.guid, guid) != 0) continue;
        sbuf_reset(&to);
        store_msg_relpath(&to, box, uid, guid, m.flags, m.keywords);
        sbuf_reset(&from);
        sbuf_printf(&from, "%s/%s", dir.data, e->d_name);
        if (strcmp(from.data, to.data) == 0) continue;
        if (renameat(u->dirfd, from.data, u->dirfd, to.data) == 0) fixed++;
        else log_warn("store %s: renaming %s: %s", u->path, from.data, strerror(errno));
    }
    if (d) closedir(d);
    if (fixed) {
        store_fsync_at(u->dirfd, dir.data);
        log_info("store %s: %u message file names of mailbox %lld put back to the index's "
                 "flags after an unfinished flag change", u->path, fixed, (long long)box);
    }
    sbuf_free(&dir);
    sbuf_free(&from);
    sbuf_free(&to);
}

static void recover_flags(store_user *u)
{
    if (flag_mark_pending(u) < 0) return;
    /* Under the write lock, so no flag change is in progress: look again
     * (the one seen may have committed while we waited). */
    if (store_begin(u, NULL, 0) != 0) return;
    int64_t box = flag_mark_pending(u);
    if (box >= 0) {
        repair_flag_names(u, box);
        flag_mark_clear(u);
    }
    store_rollback(u);   /* the index is not changed; the lock was the point */
}

static void recover_mailbox(store_user *u, const char *tmpname, const char *rest)
{
    long long box;
    unsigned long long uidv;
    int n = 0;
    if (sscanf(rest, "%lld.%llu%n", &box, &uidv, &n) == 2 && rest[n] == '\0') {
        struct mbox mb;
        if (store_mbox_get_id(u, box, &mb) == 0) {
            bool same = mb.uidvalidity == uidv;
            store_mbox_free(&mb);
            if (same) {
                sbuf dir = SBUF_INIT;
                sbuf_printf(&dir, "mbox/%lld", box);
                if (renameat(u->dirfd, tmpname, u->dirfd, dir.data) == 0)
                    store_fsync_at(u->dirfd, "mbox");
                sbuf_free(&dir);
                return;
            }
        }
    }
    store_rmtree_at(u->dirfd, tmpname);
}

void store_recover(store_user *u, bool locked)
{
    recover_flags(u);
    int fd = openat(u->dirfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    DIR *d = fdopendir(fd);
    if (!d) { close(fd); return; }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            names = xrealloc(names, cap * sizeof *names);
        }
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (n == 0) { free(names); return; }

    if (!locked && flock(u->lockfd, LOCK_EX | LOCK_NB) != 0) goto out;
    if (store_begin(u, NULL, 0) != 0) {
        if (!locked) flock(u->lockfd, LOCK_UN);
        goto out;
    }
    sbuf rel = SBUF_INIT;
    for (size_t i = 0; i < n; i++) {
        sbuf_reset(&rel);
        sbuf_printf(&rel, "tmp/%s", names[i]);
        const char *nm = names[i];
        if (strncmp(nm, "d.", 2) == 0 && strlen(nm) == 18) recover_delivery(u, rel.data, nm + 2);
        else if (strncmp(nm, "x.", 2) == 0) recover_expunge(u, rel.data, nm + 2);
        else if (strncmp(nm, "b.", 2) == 0) recover_mailbox(u, rel.data, nm + 2);
        else store_rmtree_at(u->dirfd, rel.data);
    }
    sbuf_free(&rel);
    store_rollback(u);   /* nothing in the index changed; the lock was the point */
    if (!locked) flock(u->lockfd, LOCK_UN);
out:
    store_strings_free(names, n);
}
