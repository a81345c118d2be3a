/* Delivery and APPEND.
 *
 * 1. write tmp/d.<guid>, set mtime = internaldate, fsync it   (no lock held)
 * 2. BEGIN IMMEDIATE; allocate uid + modseq; insert row; COMMIT (WAL fsync)
 * 3. rename into mbox/<id>/<uid>.<guid>:2,<flags>; fsync the mailbox dir
 *
 * Three fsyncs (two under STORE_FSYNC_OPTIMIZED, which leaves the rename
 * of step 3 to the file system), and the SQLite write lock is held only
 * for step 2, so deliveries to one user overlap their file I/O.  A crash before 2 leaves an
 * unindexed tmp file (removed on the next open: never acknowledged); a crash
 * between 2 and 3 leaves an indexed tmp file, which readers already find and
 * the next open moves into place.  The user's lock file is held shared from
 * 1 to 3 so recovery never mistakes a live delivery for a dead one. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "store/store_int.h"

/* len bytes of in from offset start onto out. */
static int copy_body(int in, uint64_t start, uint64_t len, int out)
{
    loff_t off = (loff_t)start;
    uint64_t end = start + len;
    bool fallback = false;
    while ((uint64_t)off < end) {
        size_t want = (size_t)((end - (uint64_t)off) > (1u << 30) ? (1u << 30) : end - (uint64_t)off);
        if (!fallback) {
            /* An explicit input offset: the shared fd's position never moves. */
            ssize_t n = copy_file_range(in, &off, out, NULL, want, 0);
            if (n > 0) continue;
            if (n == 0) { errno = EIO; return -1; }   /* body shorter than body_len */
            if (errno == EINTR) continue;
            if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP &&
                errno != EBADF && errno != EPERM)
                return -1;
            fallback = true;
        }
        char buf[65536];
        if (want > sizeof buf) want = sizeof buf;
        ssize_t n = pread(in, buf, want, off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { if (n == 0) errno = EIO; return -1; }
        if (write_full(out, buf, (size_t)n) != 0) return -1;
        off += n;
    }
    return 0;
}

static int stage_file(store_user *u, char guid[17], char *rel, size_t rellen, const void *prefix,
                      size_t plen, int body_fd, uint64_t body_off, uint64_t body_len, time_t date,
                      sbuf *header, char *err, size_t errlen)
{
    int fd = -1;
    for (int tries = 0; tries < 8 && fd < 0; tries++) {
        make_id(guid);
        snprintf(rel, rellen, "tmp/d.%s", guid);
        fd = openat(u->dirfd, rel, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) return store_fail(err, errlen, STORE_EIO, "create %s: %s", rel, strerror(errno));
    struct timespec ts[2] = { { date, 0 }, { date, 0 } };
    int ok = (plen == 0 || write_full(fd, prefix, plen) == 0) &&
             (body_len == 0 || copy_body(body_fd, body_off, body_len, fd) == 0) &&
             futimens(fd, ts) == 0 && fsync(fd) == 0;
    int saved = errno;
    if (ok) store_msgcache_read_header(fd, (uint64_t)plen + body_len, header);
    if (close(fd) != 0 && ok) { ok = 0; saved = errno; }
    if (!ok) {
        unlinkat(u->dirfd, rel, 0);
        return store_fail(err, errlen, STORE_EIO, "writing message: %s", strerror(saved));
    }
    return 0;
}

static int index_message(store_user *u, const char *mailbox, const char *guid, uint64_t size,
                         time_t date, unsigned flags, const char *const *kws, size_t nkw,
                         const sbuf *header, int64_t *box, uint32_t *uid, uint32_t *kbits,
                         char *err, size_t errlen)
{
    int rc = store_begin(u, err, errlen);
    if (rc) return rc;
    struct mbox mb;
    rc = store_mbox_get(u, mailbox, &mb, err, errlen);
    if (rc) { store_rollback(u); return rc; }
    uint64_t modseq = 0;
    rc = store_kw_bits(u, mb.id, kws, nkw, true, kbits, err, errlen);
    if (rc == 0) rc = store_alloc_uids(u, &mb, 1, uid, err, errlen);
    if (rc == 0) rc = store_alloc_modseq(u, &mb, &modseq, err, errlen);
    if (rc == 0) {
        sqlite3_stmt *s = store_stmt(u, ST_MSG_INSERT);
        if (!s) {
            rc = store_dbfail(u, err, errlen, "insert");
        } else {
            sqlite3_bind_int64(s, 1, mb.id);
            sqlite3_bind_int64(s, 2, *uid);
            sqlite3_bind_text(s, 3, guid, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 4, flags);
            sqlite3_bind_int64(s, 5, *kbits);
            sqlite3_bind_int64(s, 6, (int64_t)date);
            sqlite3_bind_int64(s, 7, (int64_t)size);
            sqlite3_bind_int64(s, 8, (int64_t)modseq);
            int r = sqlite3_step(s);
            sqlite3_reset(s);
            if (r != SQLITE_DONE || store_msgcache_put_header(u, guid, header) != 0)
                rc = store_dbfail(u, err, errlen, "insert");
        }
    }
    if (rc == 0) rc = store_mbox_save(u, &mb, err, errlen);
    if (rc == 0) rc = store_commit(u, err, errlen);
    else store_rollback(u);
    *box = mb.id;
    store_mbox_free(&mb);
    return rc;
}

static int deliver_common(store_user *u, const char *mailbox, const void *prefix, size_t plen,
                          int body_fd, uint64_t body_off, uint64_t body_len, time_t date, unsigned flags,
                          const char *const *kws, size_t nkw, uint32_t *uid_out, char *err,
                          size_t errlen)
{
    flags &= STORE_FLAGS_ALL;
    if (!store_mailbox_name_valid(mailbox))
        return store_fail(err, errlen, STORE_EINVAL, "invalid mailbox name");
    if (flock(u->lockfd, LOCK_SH) != 0)
        return store_fail(err, errlen, STORE_EIO, "lock: %s", strerror(errno));
    char guid[17], tmp[32];
    sbuf header = SBUF_INIT;
    int rc = stage_file(u, guid, tmp, sizeof tmp, prefix, plen, body_fd, body_off, body_len, date,
                        &header, err, errlen);
    int64_t box = 0;
    uint32_t uid = 0, kbits = 0;
    if (rc == 0) {
        rc = index_message(u, mailbox, guid, (uint64_t)plen + body_len, date, flags, kws, nkw,
                           &header, &box, &uid, &kbits, err, errlen);
        if (rc != 0) unlinkat(u->dirfd, tmp, 0);
    }
    sbuf_free(&header);
    if (rc == 0) {
        sbuf dst = SBUF_INIT;
        store_msg_relpath(&dst, box, uid, guid, flags, kbits);
        /* ENOENT: a flag change already moved it for us (under its own fsync). */
        if (renameat(u->dirfd, tmp, u->dirfd, dst.data) != 0 && errno != ENOENT) {
            /* Indexed and fsync'd: make the staged name durable and let
             * recovery finish; failing now would make SMTP deliver twice. */
            log_warn("store %s: rename %s: %s", u->path, tmp, strerror(errno));
            store_fsync_at(u->dirfd, "tmp");
        } else if (!store_light()) {
            /* Under STORE_FSYNC_OPTIMIZED the rename is left to the file
             * system: the file and its row are durable already, and a
             * rename lost in a power failure leaves the indexed tmp/d.*
             * file that readers find and recovery moves into place. */
            sbuf_reset(&dst);
            sbuf_printf(&dst, "mbox/%lld", (long long)box);
            if (store_fsync_at(u->dirfd, dst.data) != 0) {
                log_warn("store %s: fsync %s: %s", u->path, dst.data, strerror(errno));
                rc = store_fail(err, errlen, STORE_EIO, "fsync: %s", strerror(errno));
            }
        }
        sbuf_free(&dst);
    }
    flock(u->lockfd, LOCK_UN);
    if (rc == 0 && uid_out) *uid_out = uid;
    return rc;
}

int store_deliver(store_user *u, const char *mailbox, const void *prefix, size_t prefix_len,
                  int body_fd, uint64_t body_len, time_t internaldate, unsigned flags,
                  uint32_t *uid_out, char *err, size_t errlen)
{
    return deliver_common(u, mailbox, prefix, prefix_len, body_fd, 0, body_len, internaldate, flags,
                          NULL, 0, uid_out, err, errlen);
}

int store_append(store_user *u, const char *mailbox, const void *data, size_t len,
                 unsigned flags, const char *const *keywords, size_t nkeywords,
                 time_t internaldate, uint32_t *uid_out, char *err, size_t errlen)
{
    return deliver_common(u, mailbox, data, len, -1, 0, 0, internaldate, flags, keywords, nkeywords,
                          uid_out, err, errlen);
}

int store_append_fd(store_user *u, const char *mailbox, int fd, uint64_t off, uint64_t len,
                    unsigned flags, const char *const *keywords, size_t nkeywords,
                    time_t internaldate, uint32_t *uid_out, char *err, size_t errlen)
{
    return deliver_common(u, mailbox, NULL, 0, fd, off, len, internaldate, flags, keywords,
                          nkeywords, uid_out, err, errlen);
}
