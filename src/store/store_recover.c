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
