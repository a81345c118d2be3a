#include "queue/queue.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/sqlite_relative.h"
#include "core/log.h"
#include "core/sbuf.h"
#include "core/util.h"

#define QUEUE_MAGIC "pochta-queue 1"
#define ENVELOPE_MAX (4u << 20)     /* recovery refuses envelope blocks larger than this */
#define COPY_CHUNK (64u * 1024)
#define PENDING_STATES "('queued', 'deferred', 'delayed')"

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS messages("
    " qid TEXT PRIMARY KEY NOT NULL,"
    " sender TEXT NOT NULL,"
    " arrival INTEGER NOT NULL,"
    " size INTEGER NOT NULL,"
    " envid TEXT, ret INTEGER NOT NULL DEFAULT 0, body INTEGER NOT NULL DEFAULT 0,"
    " smtputf8 INTEGER NOT NULL DEFAULT 0,"
    " auth_user TEXT, client_ip TEXT, helo TEXT,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " next_attempt INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS rcpts("
    " qid TEXT NOT NULL,"
    " idx INTEGER NOT NULL,"
    " address TEXT NOT NULL,"
    " notify INTEGER NOT NULL DEFAULT 0,"
    " orcpt TEXT,"
    " state TEXT NOT NULL DEFAULT 'queued',"
    " last_error TEXT,"
    " PRIMARY KEY(qid, idx));"
    "CREATE INDEX IF NOT EXISTS messages_due ON messages(next_attempt);"
    "PRAGMA user_version = 1;";

static char *path_join(const char *dir, const char *name)
{
    sbuf b = SBUF_INIT;
    sbuf_printf(&b, "%s/%s", dir, name);
    return sbuf_detach(&b);
}

/* A queue id names a file, so it must never contain anything else. */
static bool valid_qid(const char *q)
{
    if (!q || strlen(q) != 16) return false;
    for (const char *p = q; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z'))) return false;
    return true;
}

/* ---- index ------------------------------------------------------------- */

static sqlite3 *db_connect(const char *queue_dir, bool create, char *err, size_t errlen)
{
    char *path = path_join(queue_dir, "queue.db");
    if (create) {
        /* Create it 0600 ourselves.  O_EXCL: never open and close an
         * existing queue.db here: closing any descriptor of a file drops
         * every POSIX lock this process holds on it, the other threads'
         * SQLite locks included, and another process could then take the
         * WAL for unused and delete it. */
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) close(fd);
    }
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    char *msg = NULL;
    if (sqlite3_open_v2(path, &db, flags, sqlite_relative_vfs()) != SQLITE_OK) {
        set_err(err, errlen, "queue index %s: %s", path, db ? sqlite3_errmsg(db) : "cannot allocate");
        goto fail;
    }
    sqlite3_busy_timeout(db, 10000);
    /* journal_size_limit: a long-lived handle keeps the WAL file; keep it
     * from growing past a few MiB between checkpoints. */
    if (sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA journal_size_limit=4194304;",
                     NULL, NULL, &msg) != SQLITE_OK ||
        (create && sqlite3_exec(db, schema, NULL, NULL, &msg) != SQLITE_OK)) {
        set_err(err, errlen, "queue index %s: %s", path, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        goto fail;
    }
    free(path);
    return db;
fail:
    sqlite3_close(db);
    free(path);
    return NULL;
}

/* One index handle per thread, kept open between calls.  Opening per call
 * cost more than the work: each open reads the WAL index, and the last
 * close of a WAL database checkpoints it (an fsync of queue.db) and
 * deletes the -wal and -shm files, so that every enqueue paid for a
 * checkpoint.  The handle is keyed by the directory name and the index
 * file's identity, so a queue directory removed and made again (tests)
 * gets a fresh handle instead of one on a deleted file. */
struct db_cache {
    char *dir;
    dev_t dev;
    ino_t ino;
    sqlite3 *db;
};

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_drop(struct db_cache *c)
{
    sqlite3_close(c->db);
    free(c->dir);
    c->db = NULL;
    c->dir = NULL;
}

static void cache_destroy(void *p)
{
    cache_drop(p);
    free(p);
}

/* Thread exits run cache_destroy(); exit() does not, for the thread that
 * calls it.  Closing that handle too keeps the old behaviour of short
 * commands (`pochta queue list`, `pochta init`, possibly as root): the
 * last close checkpoints and removes queue.db-wal and -shm rather than
 * leaving them behind with the command's owner. */
static void cache_exit(void)
{
    struct db_cache *c = pthread_getspecific(cache_key);
    if (!c) return;
    pthread_setspecific(cache_key, NULL);
    cache_destroy(c);
}

static void cache_key_init(void)
{
    if (pthread_key_create(&cache_key, cache_destroy) != 0) abort();
    atexit(cache_exit);
}

/* This thread's handle on queue_dir's index (borrowed: give it back with
 * db_done(), never close it).  create: make the index and schema when
 * missing. */
static sqlite3 *db_open(const char *queue_dir, bool create, char *err, size_t errlen)
{
    pthread_once(&cache_once, cache_key_init);
    struct db_cache *c = pthread_getspecific(cache_key);
    if (!c) {
        c = xcalloc(1, sizeof *c);
        pthread_setspecific(cache_key, c);
    }
    char *path = path_join(queue_dir, "queue.db");
    struct stat st;
    bool exists = stat(path, &st) == 0;
    free(path);
    if (c->db && exists && c->dev == st.st_dev && c->ino == st.st_ino && !strcmp(c->dir, queue_dir))
        return c->db;
    cache_drop(c);
    sqlite3 *db = db_connect(queue_dir, create, err, errlen);
    if (!db) return NULL;
    path = path_join(queue_dir, "queue.db");
    if (stat(path, &st) == 0) {
        c->db = db;
        c->dir = xstrdup(queue_dir);
        c->dev = st.st_dev;
        c->ino = st.st_ino;
    }
    free(path);
    if (!c->db) {
        set_err(err, errlen, "queue index %s/queue.db: %s", queue_dir, strerror(errno));
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

/* End of a use of db_open()'s handle: a transaction left open by an
 * error path is rolled back so the next caller on this thread starts
 * clean. */
static void db_done(sqlite3 *db)
{
    if (db && !sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

static int bind_opt(sqlite3_stmt *st, int i, const char *s)
{
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* Insert the rows for one message inside the caller's transaction. */
static int index_insert_rows(sqlite3 *db, const struct queue_envelope *env, time_t arrival, uint64_t size,
                             char *err, size_t errlen)
{
    sqlite3_stmt *m = NULL, *r = NULL;
    if (sqlite3_prepare_v2(db, "INSERT INTO messages(qid, sender, arrival, size, envid, ret, body, smtputf8,"
                           " auth_user, client_ip, helo) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
                           -1, &m, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO rcpts(qid, idx, address, notify, orcpt) VALUES(?1,?2,?3,?4,?5)",
                           -1, &r, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(m, 1, env->qid, -1, SQLITE_STATIC);
    sqlite3_bind_text(m, 2, env->mail_from, -1, SQLITE_STATIC);
    sqlite3_bind_int64(m, 3, (sqlite3_int64)arrival);
    sqlite3_bind_int64(m, 4, (sqlite3_int64)size);
    bind_opt(m, 5, env->envid);
    sqlite3_bind_int(m, 6, env->ret);
    sqlite3_bind_int(m, 7, env->body);
    sqlite3_bind_int(m, 8, env->smtputf8);
    bind_opt(m, 9, env->auth_user);
    bind_opt(m, 10, env->client_ip);
    bind_opt(m, 11, env->helo);
    if (sqlite3_step(m) != SQLITE_DONE) goto fail;
    for (size_t i = 0; i < env->nrcpts; i++) {
        sqlite3_reset(r);
        sqlite3_bind_text(r, 1, env->qid, -1, SQLITE_STATIC);
        sqlite3_bind_int64(r, 2, (sqlite3_int64)i);
        sqlite3_bind_text(r, 3, env->rcpts[i].address, -1, SQLITE_STATIC);
        sqlite3_bind_int64(r, 4, env->rcpts[i].notify);
        bind_opt(r, 5, env->rcpts[i].orcpt && *env->rcpts[i].orcpt ? env->rcpts[i].orcpt : NULL);
        if (sqlite3_step(r) != SQLITE_DONE) goto fail;
    }
    sqlite3_finalize(m);
    sqlite3_finalize(r);
    return 0;
fail:
    set_err(err, errlen, "queue index: %s", sqlite3_errmsg(db));
    sqlite3_finalize(m);
    sqlite3_finalize(r);
    return -1;
}

/* The same in one committed transaction of its own (recovery). */
static int index_insert(sqlite3 *db, const struct queue_envelope *env, time_t arrival, uint64_t size,
                        char *err, size_t errlen)
{
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        set_err(err, errlen, "queue index: begin: %s", sqlite3_errmsg(db));
        return -1;
    }
    if (index_insert_rows(db, env, arrival, size, err, errlen) < 0) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        set_err(err, errlen, "queue index: commit: %s", sqlite3_errmsg(db));
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

/* ---- envelope block ---------------------------------------------------- */

static void put_escaped(sbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p <= 0x20 || *p == '%' || *p == 0x7f) {
            char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
            sbuf_append(b, e, 3);
        } else {
            sbuf_putc(b, (char)*p);
        }
    }
}

static void put_field(sbuf *b, const char *key, const char *value)
{
    sbuf_puts(b, key);
    sbuf_putc(b, ' ');
    put_escaped(b, value);
    sbuf_putc(b, '\n');
}

static void format_envelope(sbuf *b, const struct queue_envelope *env, time_t arrival, uint64_t size)
{
    sbuf_puts(b, QUEUE_MAGIC "\n");
    put_field(b, "qid", env->qid);
    sbuf_printf(b, "arrival %lld\nsize %llu\n", (long long)arrival, (unsigned long long)size);
    put_field(b, "sender", env->mail_from);
    if (env->envid) put_field(b, "envid", env->envid);
    sbuf_printf(b, "ret %d\nbody %d\nsmtputf8 %d\n", env->ret, env->body, env->smtputf8 ? 1 : 0);
    if (env->auth_user) put_field(b, "auth", env->auth_user);
    if (env->client_ip) put_field(b, "client", env->client_ip);
    if (env->helo) put_field(b, "helo", env->helo);
    for (size_t i = 0; i < env->nrcpts; i++) {
        sbuf_printf(b, "rcpt %u ", env->rcpts[i].notify);
        put_escaped(b, env->rcpts[i].address);
        if (env->rcpts[i].orcpt && *env->rcpts[i].orcpt) {
            sbuf_putc(b, ' ');
            put_escaped(b, env->rcpts[i].orcpt);
        }
        sbuf_putc(b, '\n');
    }
    sbuf_putc(b, '\n');
}

/* An envelope read back from a file; owns every string. */
struct parsed {
    struct queue_envelope env;
    struct queue_rcpt *rcpts;
    size_t cap;
    time_t arrival;
    uint64_t size;
    char *strs[8];
    size_t nstrs;
};

static void parsed_free(struct parsed *p)
{
    for (size_t i = 0; i < p->env.nrcpts; i++) {
        free((char *)p->rcpts[i].address);
        free((char *)p->rcpts[i].orcpt);
    }
    free(p->rcpts);
    for (size_t i = 0; i < p->nstrs; i++) free(p->strs[i]);
    memset(p, 0, sizeof *p);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Unescape s[0..n) into a heap string; NULL if malformed. */
static char *unescape(const char *s, size_t n)
{
    sbuf b = SBUF_INIT;
    sbuf_append(&b, "", 0);
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            sbuf_putc(&b, s[i]);
            continue;
        }
        int h = i + 2 < n ? hexval(s[i + 1]) : -1, l = i + 2 < n ? hexval(s[i + 2]) : -1;
        if (h < 0 || l < 0 || (h == 0 && l == 0)) {
            sbuf_free(&b);
            return NULL;
        }
        sbuf_putc(&b, (char)(h << 4 | l));
        i += 2;
    }
    return sbuf_detach(&b);
}

static const char *keep(struct parsed *p, char *s)
{
    if (!s || p->nstrs == sizeof p->strs / sizeof p->strs[0]) {
        free(s);
        return NULL;
    }
    return p->strs[p->nstrs++] = s;
}

static int parse_line(struct parsed *p, char *line)
{
    char *sp = strchr(line, ' ');
    const char *key = line;
    char *val = sp ? sp + 1 : line + strlen(line);
    if (sp) *sp = '\0';
    size_t vlen = strlen(val);
    char *end;
    if (!strcmp(key, "qid")) return (p->env.qid = keep(p, unescape(val, vlen))) ? 0 : -1;
    if (!strcmp(key, "sender")) return (p->env.mail_from = keep(p, unescape(val, vlen))) ? 0 : -1;
    if (!strcmp(key, "envid")) return (p->env.envid = keep(p, unescape(val, vlen))) ? 0 : -1;
    if (!strcmp(key, "auth")) return (p->env.auth_user = keep(p, unescape(val, vlen))) ? 0 : -1;
    if (!strcmp(key, "client")) return (p->env.client_ip = keep(p, unescape(val, vlen))) ? 0 : -1;
    if (!strcmp(key, "helo")) return (p->env.helo = keep(p, unescape(val, vlen))) ? 0 : -1;
    if (!strcmp(key, "arrival")) { p->arrival = (time_t)strtoll(val, &end, 10); return *end ? -1 : 0; }
    if (!strcmp(key, "size")) { p->size = strtoull(val, &end, 10); return *end || !*val ? -1 : 0; }
    if (!strcmp(key, "ret")) { p->env.ret = (int)strtol(val, &end, 10); return *end ? -1 : 0; }
    if (!strcmp(key, "body")) { p->env.body = (int)strtol(val, &end, 10); return *end ? -1 : 0; }
    if (!strcmp(key, "smtputf8")) { p->env.smtputf8 = val[0] == '1'; return 0; }
    if (!strcmp(key, "rcpt")) {
        unsigned long notify = strtoul(val, &end, 10);
        if (end == val || *end != ' ') return -1;
        char *addr = end + 1, *orcpt = strchr(addr, ' ');
        if (orcpt) *orcpt++ = '\0';
        struct queue_rcpt r = { unescape(addr, strlen(addr)), (unsigned)notify,
                                orcpt ? unescape(orcpt, strlen(orcpt)) : NULL };
        if (p->env.nrcpts == p->cap) {
            p->cap = p->cap ? p->cap * 2 : 4;
            p->rcpts = xrealloc(p->rcpts, p->cap * sizeof *p->rcpts);
        }
        p->rcpts[p->env.nrcpts++] = r;
        p->env.rcpts = p->rcpts;
        return r.address && *r.address && (!orcpt || r.orcpt) ? 0 : -1;
    }
    return 0;   /* unknown keys are for newer versions: ignore */
}

/* Read and check the envelope of a queue file: the file must be exactly
 * envelope + size bytes.  Returns 0 or -1 with err. */
static int read_envelope(int dirfd, const char *name, struct parsed *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f) {
        set_err(err, errlen, "%s", strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t hdr = 0;
    bool first = true, done = false;
    int rc = -1;
    while ((n = getline(&line, &cap, f)) > 0) {
        hdr += (uint64_t)n;
        if (hdr > ENVELOPE_MAX || line[n - 1] != '\n') break;
        line[n - 1] = '\0';
        if (first) {
            if (strcmp(line, QUEUE_MAGIC) != 0) break;
            first = false;
            continue;
        }
        if (!line[0]) { done = true; break; }
        if (parse_line(p, line) < 0) break;
    }
    struct stat st;
    if (!done) set_err(err, errlen, "unreadable envelope block");
    else if (!valid_qid(p->env.qid) || strcmp(p->env.qid, name) != 0) set_err(err, errlen, "qid does not match file name");
    else if (!p->env.mail_from || p->env.nrcpts == 0) set_err(err, errlen, "envelope without sender or recipients");
    else if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != hdr + p->size)
        set_err(err, errlen, "size %llu does not match envelope (%llu + %llu)",
             (unsigned long long)st.st_size, (unsigned long long)hdr, (unsigned long long)p->size);
    else rc = 0;
    free(line);
    fclose(f);
    if (rc < 0) parsed_free(p);
    return rc;
}

/* ---- locking ----------------------------------------------------------- */

static int lock_queue(const char *queue_dir, int how, char *err, size_t errlen)
{
    char *path = path_join(queue_dir, "lock");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        set_err(err, errlen, "queue lock %s: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    free(path);
    while (flock(fd, how) < 0) {
        if (errno == EINTR) continue;
        set_err(err, errlen, "queue lock: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- group commit ------------------------------------------------------ *
 *
 * Every index write of the daemon's hot paths (a new message, the result
 * of a delivery, the rows of a removed message) is an op handed to
 * gc_run(), which returns once the op is committed.  The first thread to
 * arrive while no commit runs becomes the leader: it takes every op
 * waiting for the same directory, fsyncs the directory once (the links
 * and unlinks the ops made are then durable), runs them in one SQLite
 * transaction (one WAL fsync, synchronous=FULL) and wakes their threads.
 * Ops arriving meanwhile wait for the next round, so under load N
 * messages share two fsyncs instead of paying two each, and alone a
 * message pays exactly what it did before.  The mutex is held only to
 * move list pointers, never across an fsync; each op runs inside its own
 * savepoint, so one failing op (say a duplicate queue id) fails alone. */

enum gc_kind {
    GC_INSERT,          /* rows of a new message whose file is linked */
    GC_RECORD,          /* recipient results; with attempt, attempts + 1 and next_attempt */
    GC_PURGE,           /* rows of a message whose file is unlinked */
};

struct gc_op {
    enum gc_kind kind;
    const char *queue_dir;
    const struct queue_envelope *env;   /* GC_INSERT */
    time_t arrival;
    uint64_t size;
    const char *qid;                    /* GC_RECORD, GC_PURGE */
    const struct queue_rcpt_update *u;
    size_t n;
    bool attempt;
    time_t next_attempt;
    /* results */
    int rc;
    bool exists;                        /* GC_RECORD: the message has rows */
    int pending;                        /* GC_RECORD: recipients still pending */
    char err[256];
    bool done;
    struct gc_op *next;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct gc_op *head;
    bool busy;
} gc = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, false };

static int gc_step_record(sqlite3 *db, struct gc_op *op)
{
    sqlite3_stmt *up = NULL, *msg = NULL, *left = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(db, "UPDATE rcpts SET state = ?3, last_error = ?4 WHERE qid = ?1 AND idx = ?2",
                           -1, &up, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "UPDATE messages SET attempts = attempts + 1, next_attempt ="
                           " CASE WHEN next_attempt < 0 THEN next_attempt ELSE ?2 END WHERE qid = ?1",
                           -1, &msg, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT (SELECT count(*) FROM messages WHERE qid = ?1),"
                           " (SELECT count(*) FROM rcpts WHERE qid = ?1 AND state IN " PENDING_STATES ")",
                           -1, &left, NULL) != SQLITE_OK)
        goto out;
    for (size_t i = 0; i < op->n; i++) {
        sqlite3_reset(up);
        sqlite3_bind_text(up, 1, op->qid, -1, SQLITE_STATIC);
        sqlite3_bind_int64(up, 2, op->u[i].idx);
        sqlite3_bind_text(up, 3, op->u[i].state, -1, SQLITE_STATIC);
        bind_opt(up, 4, op->u[i].error);
        if (sqlite3_step(up) != SQLITE_DONE) goto out;
    }
    if (op->attempt) {
        sqlite3_bind_text(msg, 1, op->qid, -1, SQLITE_STATIC);
        sqlite3_bind_int64(msg, 2, (sqlite3_int64)op->next_attempt);
        if (sqlite3_step(msg) != SQLITE_DONE) goto out;
    }
    sqlite3_bind_text(left, 1, op->qid, -1, SQLITE_STATIC);
    if (sqlite3_step(left) != SQLITE_ROW) goto out;
    op->exists = sqlite3_column_int(left, 0) > 0;
    op->pending = sqlite3_column_int(left, 1);
    rc = 0;
out:
    sqlite3_finalize(up);
    sqlite3_finalize(msg);
    sqlite3_finalize(left);
    return rc;
}

static int gc_step_purge(sqlite3 *db, const char *qid)
{
    static const char *const sql[] = { "DELETE FROM rcpts WHERE qid = ?1", "DELETE FROM messages WHERE qid = ?1" };
    for (size_t i = 0; i < 2; i++) {
        sqlite3_stmt *st = NULL;
        int ok = sqlite3_prepare_v2(db, sql[i], -1, &st, NULL) == SQLITE_OK;
        if (ok) {
            sqlite3_bind_text(st, 1, qid, -1, SQLITE_STATIC);
            ok = sqlite3_step(st) == SQLITE_DONE;
        }
        sqlite3_finalize(st);
        if (!ok) return -1;
    }
    return 0;
}

/* Fail the ops still standing (all: also GC_RECORD ones) with why. */
static void gc_fail(struct gc_op *batch, bool all, const char *why)
{
    for (struct gc_op *op = batch; op; op = op->next) {
        if (op->rc < 0 || (!all && op->kind == GC_RECORD)) continue;
        op->rc = -1;
        set_err(op->err, sizeof op->err, "%s", why);
    }
}

/* The leader's work: one directory fsync and one transaction for batch. */
static void gc_batch(const char *queue_dir, struct gc_op *batch)
{
    bool dirsync = false;
    for (struct gc_op *op = batch; op; op = op->next) {
        op->rc = 0;
        dirsync |= op->kind != GC_RECORD;
    }
    char err[256];
    if (dirsync && fsync_dir(queue_dir, true) < 0) {
        set_err(err, sizeof err, "fsync %s: %s", queue_dir, strerror(errno));
        gc_fail(batch, false, err);
    }
    sqlite3 *db = db_open(queue_dir, true, err, sizeof err);
    if (!db) {
        gc_fail(batch, true, err);
        return;
    }
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        set_err(err, sizeof err, "queue index: begin: %s", sqlite3_errmsg(db));
        gc_fail(batch, true, err);
        db_done(db);
        return;
    }
    for (struct gc_op *op = batch; op; op = op->next) {
        if (op->rc < 0) continue;
        if (sqlite3_exec(db, "SAVEPOINT op", NULL, NULL, NULL) != SQLITE_OK) {
            set_err(op->err, sizeof op->err, "queue index: %s", sqlite3_errmsg(db));
            op->rc = -1;
            continue;
        }
        int rc;
        switch (op->kind) {
        case GC_INSERT: rc = index_insert_rows(db, op->env, op->arrival, op->size, op->err, sizeof op->err); break;
        case GC_RECORD: rc = gc_step_record(db, op); break;
        default: rc = gc_step_purge(db, op->qid); break;
        }
        if (rc < 0) {
            if (op->kind != GC_INSERT) set_err(op->err, sizeof op->err, "queue index: %s", sqlite3_errmsg(db));
            op->rc = -1;
            sqlite3_exec(db, "ROLLBACK TO op", NULL, NULL, NULL);
        }
        sqlite3_exec(db, "RELEASE op", NULL, NULL, NULL);
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        set_err(err, sizeof err, "queue index: commit: %s", sqlite3_errmsg(db));
        gc_fail(batch, true, err);
    }
    db_done(db);
}

/* Run op in the next group commit; returns op->rc once it is durable
 * (0) or failed (-1, op->err says why). */
static int gc_run(struct gc_op *op)
{
    op->done = false;
    op->next = NULL;
    pthread_mutex_lock(&gc.mu);
    struct gc_op **tail = &gc.head;
    while (*tail) tail = &(*tail)->next;
    *tail = op;
    while (!op->done) {
        if (gc.busy) {
            pthread_cond_wait(&gc.cv, &gc.mu);
            continue;
        }
        /* Lead: take every op waiting for the first one's directory. */
        gc.busy = true;
        const char *dir = gc.head->queue_dir;
        struct gc_op *batch = NULL, **bt = &batch;
        for (struct gc_op **pp = &gc.head; *pp;) {
            struct gc_op *o = *pp;
            if (strcmp(o->queue_dir, dir) != 0) {
                pp = &o->next;
                continue;
            }
            *pp = o->next;
            o->next = NULL;
            *bt = o;
            bt = &o->next;
        }
        pthread_mutex_unlock(&gc.mu);
        gc_batch(dir, batch);
        pthread_mutex_lock(&gc.mu);
        for (struct gc_op *o = batch, *next; o; o = next) {
            next = o->next;
            o->done = true;
        }
        gc.busy = false;
        pthread_cond_broadcast(&gc.cv);
    }
    pthread_mutex_unlock(&gc.mu);
    return op->rc;
}

/* ---- new-mail notification ---------------------------------------------- */

/* A read-write lock, so enqueues on several threads notify in parallel
 * and queue_set_notify() waits for the calls in progress. */
static pthread_rwlock_t notify_lock = PTHREAD_RWLOCK_INITIALIZER;
static void (*notify_fn)(void *ctx);
static void *notify_ctx;

void queue_set_notify(void (*fn)(void *ctx), void *ctx)
{
    pthread_rwlock_wrlock(&notify_lock);
    notify_fn = fn;
    notify_ctx = ctx;
    pthread_rwlock_unlock(&notify_lock);
}

static void notify_queued(void)
{
    pthread_rwlock_rdlock(&notify_lock);
    if (notify_fn) notify_fn(notify_ctx);
    pthread_rwlock_unlock(&notify_lock);
}

/* ---- enqueue ----------------------------------------------------------- */

/* Copy len bytes of in from offset 0 to out's current position, without
 * touching in's file offset. */
static int copy_spool(int in, int out, uint64_t len, char *err, size_t errlen)
{
    off_t off = 0;
    uint64_t left = len;
    bool kernel_copy = true;
    char *buf = NULL;
    int rc = 0;
    while (left > 0 && rc == 0) {
        size_t want = left > (1u << 30) ? (1u << 30) : (size_t)left;
        if (kernel_copy) {
            ssize_t n = copy_file_range(in, &off, out, NULL, want, 0);
            if (n > 0) { left -= (uint64_t)n; continue; }
            if (n < 0 && errno == EINTR) continue;
            if (n == 0 || (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP &&
                           errno != EBADF && errno != EPERM && errno != ETXTBSY)) {
                if (n == 0) set_err(err, errlen, "spool file shorter than %llu bytes", (unsigned long long)len);
                else set_err(err, errlen, "copying spool: %s", strerror(errno));
                rc = -1;
                break;
            }
            kernel_copy = false;    /* fall back to read/write from the same offset */
        }
        if (!buf) buf = xmalloc(COPY_CHUNK);
        ssize_t n = pread(in, buf, want < COPY_CHUNK ? want : COPY_CHUNK, off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) set_err(err, errlen, "spool file shorter than %llu bytes", (unsigned long long)len);
            else set_err(err, errlen, "reading spool: %s", strerror(errno));
            rc = -1;
        } else if (write_full(out, buf, (size_t)n) < 0) {
            set_err(err, errlen, "writing queue file: %s", strerror(errno));
            rc = -1;
        } else {
            off += n;
            left -= (uint64_t)n;
        }
    }
    free(buf);
    return rc;
}

int queue_enqueue(const char *queue_dir, const struct queue_envelope *env, const void *prefix, size_t prefix_len,
                  int spool_fd, uint64_t spool_len, char *err, size_t errlen)
{
    if (!valid_qid(env->qid) || !env->mail_from || env->nrcpts == 0) {
        set_err(err, errlen, "bad envelope (queue id, sender or recipients missing)");
        return -1;
    }
    for (size_t i = 0; i < env->nrcpts; i++) {
        if (!env->rcpts[i].address || !*env->rcpts[i].address) {
            set_err(err, errlen, "bad envelope (empty recipient)");
            return -1;
        }
    }
    int lock = lock_queue(queue_dir, LOCK_SH, err, errlen);
    if (lock < 0) return -1;

    char tmpname[32];
    snprintf(tmpname, sizeof tmpname, "tmp.%s", env->qid);
    char *tmp = path_join(queue_dir, tmpname), *final = path_join(queue_dir, env->qid);
    time_t arrival = time(NULL);
    uint64_t size = prefix_len + spool_len;
    sbuf hdr = SBUF_INIT;
    format_envelope(&hdr, env, arrival, size);
    int rc = -1;
    bool linked = false;

    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        set_err(err, errlen, "creating %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (write_full(fd, hdr.data, hdr.len) < 0 || (prefix_len && write_full(fd, prefix, prefix_len) < 0)) {
        set_err(err, errlen, "writing %s: %s", tmp, strerror(errno));
        goto out_unlink;
    }
    if (copy_spool(spool_fd, fd, spool_len, err, errlen) < 0) goto out_unlink;
    if (fsync(fd) < 0) {
        set_err(err, errlen, "fsync %s: %s", tmp, strerror(errno));
        goto out_unlink;
    }
    int c = close(fd);
    fd = -1;
    if (c < 0) {
        set_err(err, errlen, "closing %s: %s", tmp, strerror(errno));
        goto out_unlink;
    }
    /* link() rather than rename(): never replaces a message already queued. */
    if (link(tmp, final) < 0) {
        set_err(err, errlen, "linking %s: %s", final, errno == EEXIST ? "queue id already in use" : strerror(errno));
        goto out_unlink;
    }
    linked = true;
    unlink(tmp);
    /* The directory fsync (making the link durable) and the index commit
     * happen in the group commit, shared with whoever else is ready. */
    struct gc_op op = { .kind = GC_INSERT, .queue_dir = queue_dir, .env = env, .arrival = arrival, .size = size };
    if (gc_run(&op) < 0) {
        set_err(err, errlen, "%s", op.err);
        goto out_unlink;
    }
    rc = 0;
    notify_queued();
    goto out;

out_unlink:
    /* Not acknowledged: take the file away so recovery does not send a
     * message the client was told to retry. */
    if (fd >= 0) close(fd);
    fd = -1;
    unlink(tmp);
    if (linked) {
        unlink(final);
        fsync_dir(queue_dir, true);
    }
out:
    if (fd >= 0) close(fd);
    sbuf_free(&hdr);
    free(tmp);
    free(final);
    close(lock);
    return rc;
}

/* ---- recovery ---------------------------------------------------------- */

static bool is_indexed(sqlite3 *db, const char *qid, int *status)
{
    sqlite3_stmt *st = NULL;
    bool found = false;
    *status = -1;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM messages WHERE qid = ?1", -1, &st, NULL) != SQLITE_OK) return false;
    sqlite3_bind_text(st, 1, qid, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW || s == SQLITE_DONE) *status = 0;
    found = s == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

static void move_corrupt(const char *queue_dir, int dirfd, const char *name, const char *why)
{
    mkdirat(dirfd, "corrupt", 0700);
    char *to = path_join("corrupt", name);
    if (renameat(dirfd, name, dirfd, to) == 0)
        log_error("queue=%s queue file unusable (%s): moved to %s/corrupt/ for inspection", name, why, queue_dir);
    else
        log_error("queue=%s queue file unusable (%s) and cannot be moved: %s", name, why, strerror(errno));
    free(to);
}

/* Files without index rows, and tmp files. */
static int recover_files(const char *queue_dir, sqlite3 *db, unsigned *count, char *err, size_t errlen)
{
    DIR *d = opendir(queue_dir);
    if (!d) {
        set_err(err, errlen, "%s: %s", queue_dir, strerror(errno));
        return -1;
    }
    int dfd = dirfd(d);
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL && rc == 0) {
        const char *name = de->d_name;
        if (name[0] == '.' || !strcmp(name, "lock") || !strcmp(name, "corrupt") || !strncmp(name, "queue.db", 8))
            continue;
        if (!strncmp(name, "tmp.", 4)) {
            if (unlinkat(dfd, name, 0) == 0) {
                log_warn("queue: removed %s/%s: a write cut short by a crash, never acknowledged", queue_dir, name);
                (*count)++;
            }
            continue;
        }
        if (!valid_qid(name)) {
            char safe[300];
            log_warn("queue: ignoring unexpected file %s/%s", queue_dir, log_safe(name, strlen(name), safe, sizeof safe));
            continue;
        }
        int status;
        if (is_indexed(db, name, &status)) continue;
        if (status < 0) {
            set_err(err, errlen, "queue index: %s", sqlite3_errmsg(db));
            rc = -1;
            break;
        }
        struct parsed p;
        char why[256];
        if (read_envelope(dfd, name, &p, why, sizeof why) < 0) {
            move_corrupt(queue_dir, dfd, name, why);
            (*count)++;
            continue;
        }
        if (index_insert(db, &p.env, p.arrival, p.size, err, errlen) < 0) rc = -1;
        else {
            log_warn("queue=%s recovered: message file had no index entry (crash before commit), indexed again",
                     name);
            (*count)++;
        }
        parsed_free(&p);
    }
    closedir(d);
    return rc;
}

/* Index rows whose file is gone. */
static int recover_rows(const char *queue_dir, sqlite3 *db, unsigned *count, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT qid FROM messages", -1, &st, NULL) != SQLITE_OK) {
        set_err(err, errlen, "queue index: %s", sqlite3_errmsg(db));
        return -1;
    }
    size_t n = 0, cap = 0;
    char **gone = NULL;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *qid = (const char *)sqlite3_column_text(st, 0);
        if (!qid) continue;
        char *path = path_join(queue_dir, qid);
        bool missing = !valid_qid(qid) || (access(path, F_OK) < 0 && errno == ENOENT);
        free(path);
        if (!missing) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            gone = xrealloc(gone, cap * sizeof *gone);
        }
        gone[n++] = xstrdup(qid);
    }
    sqlite3_finalize(st);
    int rc = s == SQLITE_DONE ? 0 : -1;
    for (size_t i = 0; i < n && rc == 0; i++) {
        sqlite3_stmt *d1 = NULL, *d2 = NULL;
        if (sqlite3_prepare_v2(db, "DELETE FROM rcpts WHERE qid = ?1", -1, &d1, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(db, "DELETE FROM messages WHERE qid = ?1", -1, &d2, NULL) != SQLITE_OK) {
            rc = -1;
        } else {
            sqlite3_bind_text(d1, 1, gone[i], -1, SQLITE_STATIC);
            sqlite3_bind_text(d2, 1, gone[i], -1, SQLITE_STATIC);
            if (sqlite3_step(d1) != SQLITE_DONE || sqlite3_step(d2) != SQLITE_DONE) rc = -1;
        }
        sqlite3_finalize(d1);
        sqlite3_finalize(d2);
        if (rc == 0) {
            char safe[64];
            log_error("queue=%s message file missing from %s: index entry removed (delivered and removed"
                      " just before a crash, or the file was deleted by hand)",
                      log_safe(gone[i], strlen(gone[i]), safe, sizeof safe), queue_dir);
            (*count)++;
        }
    }
    if (rc < 0) set_err(err, errlen, "queue index: %s", sqlite3_errmsg(db));
    for (size_t i = 0; i < n; i++) free(gone[i]);
    free(gone);
    return rc;
}

static int remove_message(const char *queue_dir, sqlite3 *db, const char *qid, char *err, size_t errlen);

/* Messages whose every recipient is done: queue_record() committed the
 * last result, then the process died before remove_message() (file, then
 * rows).  Nothing is due for them, so without this they would sit in the
 * queue forever. */
static int recover_finished(const char *queue_dir, sqlite3 *db, unsigned *count, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT qid FROM messages m WHERE NOT EXISTS (SELECT 1 FROM rcpts r"
                           " WHERE r.qid = m.qid AND r.state IN ('queued', 'deferred', 'delayed'))",
                           -1, &st, NULL) != SQLITE_OK) {
        set_err(err, errlen, "queue index: %s", sqlite3_errmsg(db));
        return -1;
    }
    size_t n = 0, cap = 0;
    char **done = NULL;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *qid = (const char *)sqlite3_column_text(st, 0);
        if (!valid_qid(qid)) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            done = xrealloc(done, cap * sizeof *done);
        }
        done[n++] = xstrdup(qid);
    }
    sqlite3_finalize(st);
    int rc = s == SQLITE_DONE ? 0 : -1;
    if (rc < 0) set_err(err, errlen, "queue index: %s", sqlite3_errmsg(db));
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = remove_message(queue_dir, db, done[i], err, errlen);
        if (rc == 0) {
            log_warn("queue=%s every recipient was done before the crash: removed", done[i]);
            (*count)++;
        }
    }
    for (size_t i = 0; i < n; i++) free(done[i]);
    free(done);
    return rc;
}

int queue_init(const char *queue_dir, unsigned *recovered, char *err, size_t errlen)
{
    unsigned count = 0;
    if (recovered) *recovered = 0;
    if (mkdir_p(queue_dir, 0700) < 0) {
        set_err(err, errlen, "creating %s: %s", queue_dir, strerror(errno));
        return -1;
    }
    int lock = lock_queue(queue_dir, LOCK_EX, err, errlen);
    if (lock < 0) return -1;
    sqlite3 *db = db_open(queue_dir, true, err, errlen);
    int rc = -1;
    if (db && recover_files(queue_dir, db, &count, err, errlen) == 0 &&
        recover_rows(queue_dir, db, &count, err, errlen) == 0 &&
        recover_finished(queue_dir, db, &count, err, errlen) == 0)
        rc = 0;
    if (count > 0 && fsync_dir(queue_dir, true) < 0 && rc == 0) {
        set_err(err, errlen, "fsync %s: %s", queue_dir, strerror(errno));
        rc = -1;
    }
    db_done(db);
    close(lock);
    if (recovered) *recovered = count;
    return rc;
}

/* ---- listing ----------------------------------------------------------- */

int queue_list(const char *queue_dir, void (*cb)(const struct queue_entry *e, void *ctx), void *ctx,
               char *err, size_t errlen)
{
    char *path = path_join(queue_dir, "queue.db");
    bool missing = access(path, F_OK) < 0 && errno == ENOENT;
    free(path);
    if (missing) return 0;
    sqlite3 *db = db_open(queue_dir, false, err, errlen);
    if (!db) return -1;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT m.qid, m.sender, r.address, CASE WHEN m.next_attempt < 0 AND r.state IN"
                           " ('queued', 'deferred', 'delayed') THEN 'held' ELSE r.state END,"
                           " m.size, m.arrival, m.attempts,"
                           " r.last_error FROM messages m JOIN rcpts r ON r.qid = m.qid"
                           " ORDER BY m.arrival, m.qid, r.idx", -1, &st, NULL) != SQLITE_OK) {
        set_err(err, errlen, "queue index: %s", sqlite3_errmsg(db));
        db_done(db);
        return -1;
    }
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        struct queue_entry e = {
            .qid = (const char *)sqlite3_column_text(st, 0),
            .sender = (const char *)sqlite3_column_text(st, 1),
            .recipient = (const char *)sqlite3_column_text(st, 2),
            .state = (const char *)sqlite3_column_text(st, 3),
            .size = (uint64_t)sqlite3_column_int64(st, 4),
            .arrival = (time_t)sqlite3_column_int64(st, 5),
            .attempts = (unsigned)sqlite3_column_int(st, 6),
            .last_error = (const char *)sqlite3_column_text(st, 7),
        };
        if (!e.sender) e.sender = "";
        cb(&e, ctx);
    }
    int rc = 0;
    if (s != SQLITE_DONE) {
        set_err(err, errlen, "queue index: %s", sqlite3_errmsg(db));
        rc = -1;
    }
    sqlite3_finalize(st);
    db_done(db);
    return rc;
}

/* ---- the runner side --------------------------------------------------- */


/* Open the index of an existing queue; a missing index is an empty queue
 * (*missing set, NULL returned without an error). */
static sqlite3 *db_open_existing(const char *queue_dir, bool *missing, char *err, size_t errlen)
{
    char *path = path_join(queue_dir, "queue.db");
    *missing = access(path, F_OK) < 0 && errno == ENOENT;
    free(path);
    return *missing ? NULL : db_open(queue_dir, false, err, errlen);
}

/* The domain of r.address (after the last '@'), lower case, in SQL. */
#define RCPT_DOMAIN "lower(substr(r.address, length(rtrim(r.address, replace(r.address, '@', ''))) + 1))"

static int due_query(const char *queue_dir, time_t now, void (*cb)(const char *qid, void *ctx),
                     void (*cbd)(const char *qid, const char *domains, void *ctx), void *ctx,
                     char *err, size_t errlen)
{
    bool missing;
    sqlite3 *db = db_open_existing(queue_dir, &missing, err, errlen);
    if (!db) return missing ? 0 : -1;
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(db, "SELECT m.qid, (SELECT group_concat(DISTINCT " RCPT_DOMAIN ") FROM rcpts r"
                           " WHERE r.qid = m.qid AND r.state IN " PENDING_STATES ") AS d"
                           " FROM messages m WHERE m.next_attempt >= 0 AND m.next_attempt <= ?1"
                           " AND d IS NOT NULL ORDER BY m.next_attempt, m.arrival", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)now);
        int s;
        while ((s = sqlite3_step(st)) == SQLITE_ROW) {
            const char *qid = (const char *)sqlite3_column_text(st, 0);
            const char *domains = (const char *)sqlite3_column_text(st, 1);
            if (!valid_qid(qid)) continue;
            if (cb) cb(qid, ctx);
            else cbd(qid, domains ? domains : "", ctx);
        }
        if (s == SQLITE_DONE) rc = 0;
    }
    if (rc < 0) set_err(err, errlen, "queue index: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    db_done(db);
    return rc;
}

int queue_due(const char *queue_dir, time_t now, void (*cb)(const char *qid, void *ctx), void *ctx,
              char *err, size_t errlen)
{
    return due_query(queue_dir, now, cb, NULL, ctx, err, errlen);
}

int queue_due_domains(const char *queue_dir, time_t now,
                      void (*cb)(const char *qid, const char *domains, void *ctx), void *ctx,
                      char *err, size_t errlen)
{
    return due_query(queue_dir, now, NULL, cb, ctx, err, errlen);
}

void queue_msg_free(struct queue_msg *m)
{
    if (!m) return;
    if (m->fd >= 0) close(m->fd);
    if (m->priv) {
        parsed_free(m->priv);
        free(m->priv);
    }
    free(m->rcpts);
    free(m);
}

int queue_load(const char *queue_dir, const char *qid, struct queue_msg **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!valid_qid(qid)) {
        set_err(err, errlen, "bad queue id");
        return -1;
    }
    int dfd = open(queue_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        set_err(err, errlen, "%s: %s", queue_dir, strerror(errno));
        return -1;
    }
    struct queue_msg *m = xcalloc(1, sizeof *m);
    m->fd = -1;
    struct parsed *p = xcalloc(1, sizeof *p);
    char why[256];
    if (read_envelope(dfd, qid, p, why, sizeof why) < 0) {
        set_err(err, errlen, "queue file %s: %s", qid, why);
        free(p);
        close(dfd);
        free(m);
        return -1;
    }
    m->priv = p;
    m->fd = openat(dfd, qid, O_RDONLY | O_CLOEXEC);
    close(dfd);
    struct stat st;
    if (m->fd < 0 || fstat(m->fd, &st) < 0 || (uint64_t)st.st_size < p->size) {
        set_err(err, errlen, "queue file %s: %s", qid, m->fd < 0 ? strerror(errno) : "shorter than its envelope");
        queue_msg_free(m);
        return -1;
    }
    snprintf(m->qid, sizeof m->qid, "%s", qid);
    m->sender = p->env.mail_from;
    m->envid = p->env.envid;
    m->ret = p->env.ret;
    m->body = p->env.body;
    m->smtputf8 = p->env.smtputf8;
    m->arrival = p->arrival;
    m->size = p->size;
    m->offset = (uint64_t)st.st_size - p->size;
    m->nrcpts = p->env.nrcpts;
    m->rcpts = xcalloc(m->nrcpts, sizeof *m->rcpts);
    for (size_t i = 0; i < m->nrcpts; i++) {
        m->rcpts[i] = (struct queue_msg_rcpt){ (unsigned)i, p->rcpts[i].address, p->rcpts[i].notify,
                                               p->rcpts[i].orcpt, "queued", true };
    }
    /* The index holds the states; a file without rows (being recovered)
     * counts as all recipients queued. */
    sqlite3 *db = db_open(queue_dir, false, err, errlen);
    if (!db) {
        queue_msg_free(m);
        return -1;
    }
    sqlite3_stmt *q = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(db, "SELECT r.idx, r.state, m.attempts FROM rcpts r JOIN messages m ON m.qid = r.qid"
                           " WHERE r.qid = ?1", -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, qid, -1, SQLITE_STATIC);
        int s;
        while ((s = sqlite3_step(q)) == SQLITE_ROW) {
            sqlite3_int64 idx = sqlite3_column_int64(q, 0);
            const char *state = (const char *)sqlite3_column_text(q, 1);
            m->attempts = (unsigned)sqlite3_column_int(q, 2);
            if (idx < 0 || (size_t)idx >= m->nrcpts || !state) continue;
            struct queue_msg_rcpt *r = &m->rcpts[idx];
            snprintf(r->state, sizeof r->state, "%s", state);
            r->pending = !strcmp(state, "queued") || !strcmp(state, "deferred") || !strcmp(state, "delayed");
        }
        if (s == SQLITE_DONE) rc = 0;
    }
    if (rc < 0) set_err(err, errlen, "queue index: %s", sqlite3_errmsg(db));
    sqlite3_finalize(q);
    db_done(db);
    if (rc < 0) {
        queue_msg_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

void queue_detail_free(struct queue_detail *d)
{
    free(d->auth_user);
    free(d->client_ip);
    free(d->helo);
    for (size_t i = 0; i < d->nrcpts && d->last_error; i++) free(d->last_error[i]);
    free(d->last_error);
    memset(d, 0, sizeof *d);
}

static char *dup_opt(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

int queue_inspect(const char *queue_dir, const char *qid, struct queue_msg **msg, struct queue_detail *detail,
                  char *err, size_t errlen)
{
    *msg = NULL;
    memset(detail, 0, sizeof *detail);
    if (!valid_qid(qid)) return 0;
    char *path = path_join(queue_dir, qid);
    bool exists = access(path, F_OK) == 0;
    free(path);
    if (!exists) return 0;
    struct queue_msg *m;
    if (queue_load(queue_dir, qid, &m, err, errlen) < 0) return -1;
    const struct parsed *p = m->priv;
    detail->auth_user = dup_opt(p->env.auth_user);
    detail->client_ip = dup_opt(p->env.client_ip);
    detail->helo = dup_opt(p->env.helo);
    detail->nrcpts = m->nrcpts;
    detail->last_error = xcalloc(m->nrcpts ? m->nrcpts : 1, sizeof *detail->last_error);
    sqlite3 *db = db_open(queue_dir, false, err, errlen);
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (db && sqlite3_prepare_v2(db, "SELECT m.next_attempt, r.idx, r.last_error FROM messages m"
                                 " JOIN rcpts r ON r.qid = m.qid WHERE m.qid = ?1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, qid, -1, SQLITE_STATIC);
        int s;
        while ((s = sqlite3_step(st)) == SQLITE_ROW) {
            detail->indexed = true;
            detail->next_attempt = (time_t)sqlite3_column_int64(st, 0);
            sqlite3_int64 idx = sqlite3_column_int64(st, 1);
            const char *e = (const char *)sqlite3_column_text(st, 2);
            if (idx >= 0 && (size_t)idx < m->nrcpts && e && !detail->last_error[idx])
                detail->last_error[idx] = xstrdup(e);
        }
        if (s == SQLITE_DONE) rc = 1;
    }
    if (db && rc < 0) set_err(err, errlen, "queue index: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    db_done(db);
    if (rc < 0) {
        queue_detail_free(detail);
        queue_msg_free(m);
        return -1;
    }
    *msg = m;
    return 1;
}

static int exec_bound(sqlite3 *db, const char *sql, const char *qid)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, qid, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_DONE) rc = sqlite3_changes(db);
    }
    sqlite3_finalize(st);
    return rc;
}

/* File first, then rows (see the header).  Caller holds the shared lock. */
static int remove_message(const char *queue_dir, sqlite3 *db, const char *qid, char *err, size_t errlen)
{
    char *path = path_join(queue_dir, qid);
    int u = unlink(path);
    int e = errno;
    free(path);
    if (u < 0 && e != ENOENT) {
        set_err(err, errlen, "removing queue file %s: %s", qid, strerror(e));
        return -1;
    }
    if (u == 0 && fsync_dir(queue_dir, true) < 0) {
        set_err(err, errlen, "fsync %s: %s", queue_dir, strerror(errno));
        return -1;
    }
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
        exec_bound(db, "DELETE FROM rcpts WHERE qid = ?1", qid) < 0 ||
        exec_bound(db, "DELETE FROM messages WHERE qid = ?1", qid) < 0 ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        set_err(err, errlen, "queue index: %s", sqlite3_errmsg(db));
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

/* Do these updates leave no recipient of qid pending?  (A read on this
 * thread's handle; only the runner's one job for qid changes its states.) */
static bool finishes(const char *queue_dir, const char *qid, const struct queue_rcpt_update *u, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(u[i].state, "delivered") != 0 && strcmp(u[i].state, "failed") != 0) return false;
    char err[256];
    sqlite3 *db = db_open(queue_dir, false, err, sizeof err);
    if (!db) return false;
    sqlite3_stmt *st = NULL;
    bool done = false;
    if (sqlite3_prepare_v2(db, "SELECT idx FROM rcpts WHERE qid = ?1 AND state IN " PENDING_STATES,
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, qid, -1, SQLITE_STATIC);
        int s;
        bool rows = false, covered = true;
        while ((s = sqlite3_step(st)) == SQLITE_ROW) {
            rows = true;
            sqlite3_int64 idx = sqlite3_column_int64(st, 0);
            bool found = false;
            for (size_t i = 0; i < n && !found; i++) found = u[i].idx == idx;
            covered &= found;
        }
        /* No pending row at all: not indexed (recovery) or finished; the
         * normal path sorts those out. */
        done = s == SQLITE_DONE && rows && covered;
    }
    sqlite3_finalize(st);
    db_done(db);
    return done;
}

/* Record through the group commit; when nothing is left pending, unlink
 * the file and drop the rows in a later round (its directory fsync makes
 * the unlink durable before the rows go, the order remove_message()
 * keeps). */
static int record(const char *queue_dir, const char *qid, const struct queue_rcpt_update *u, size_t n,
                  bool attempt, time_t next_attempt, char *err, size_t errlen)
{
    if (!valid_qid(qid)) {
        set_err(err, errlen, "bad queue id");
        return -1;
    }
    int lock = lock_queue(queue_dir, LOCK_SH, err, errlen);
    if (lock < 0) return -1;
    struct gc_op op = { .kind = GC_RECORD, .queue_dir = queue_dir, .qid = qid, .u = u, .n = n,
                        .attempt = attempt, .next_attempt = next_attempt };
    int rc = -1;
    /* When nothing stays pending the durable unlink is the record: until
     * the round's directory fsync the file may come back after a crash,
     * still pending, and be sent again, never lost. */
    bool fast = finishes(queue_dir, qid, u, n);
    if (!fast && gc_run(&op) < 0) {
        set_err(err, errlen, "%s", op.err);
    } else if (!fast && !op.exists) {
        rc = 1;
    } else if (!fast && op.pending > 0) {
        rc = 0;
    } else {
        char *path = path_join(queue_dir, qid);
        int e = unlink(path) < 0 ? errno : 0;
        free(path);
        struct gc_op purge = { .kind = GC_PURGE, .queue_dir = queue_dir, .qid = qid };
        if (e && e != ENOENT) {
            set_err(err, errlen, "removing queue file %s: %s", qid, strerror(e));
        } else if (gc_run(&purge) < 0) {
            set_err(err, errlen, "%s", purge.err);
            /* Rows left pending for a file that is gone would come up as
             * due at every scan: record the states at least. */
            if (fast) gc_run(&op);
        } else {
            rc = 1;
        }
    }
    close(lock);
    return rc;
}

int queue_record(const char *queue_dir, const char *qid, const struct queue_rcpt_update *u, size_t n,
                 time_t next_attempt, char *err, size_t errlen)
{
    return record(queue_dir, qid, u, n, true, next_attempt, err, errlen);
}

int queue_record_partial(const char *queue_dir, const char *qid, const struct queue_rcpt_update *u, size_t n,
                         char *err, size_t errlen)
{
    return record(queue_dir, qid, u, n, false, 0, err, errlen);
}

int queue_schedule_now(const char *queue_dir, const char *qid, const char *domain, char *err, size_t errlen)
{
    bool missing;
    sqlite3 *db = db_open_existing(queue_dir, &missing, err, errlen);
    if (!db) return missing ? 0 : -1;
    sqlite3_stmt *st = NULL;
    int rc = -1;
    /* Domains are compared case-insensitively (ASCII), on the part after the last '@'. */
    if (sqlite3_prepare_v2(db, "UPDATE messages SET next_attempt = 0 WHERE next_attempt >= 0"
                           " AND (?1 IS NULL OR qid = ?1) AND EXISTS (SELECT 1 FROM rcpts r WHERE r.qid = messages.qid"
                           " AND r.state IN " PENDING_STATES " AND (?2 IS NULL OR"
                           " lower(substr(r.address, length(rtrim(r.address, replace(r.address, '@', ''))) + 1)) = lower(?2)))",
                           -1, &st, NULL) == SQLITE_OK) {
        bind_opt(st, 1, qid);
        bind_opt(st, 2, domain);
        if (sqlite3_step(st) == SQLITE_DONE) rc = sqlite3_changes(db);
    }
    if (rc < 0) set_err(err, errlen, "queue index: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    db_done(db);
    return rc;
}

int queue_hold(const char *queue_dir, const char *qid, bool hold, char *err, size_t errlen)
{
    bool missing;
    sqlite3 *db = db_open_existing(queue_dir, &missing, err, errlen);
    if (!db) return missing ? 0 : -1;
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM messages WHERE qid = ?1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, qid, -1, SQLITE_STATIC);
        int s = sqlite3_step(st);
        if (s == SQLITE_DONE) rc = 0;
        else if (s == SQLITE_ROW)
            rc = exec_bound(db, hold ? "UPDATE messages SET next_attempt = -1 WHERE qid = ?1"
                                     : "UPDATE messages SET next_attempt = 0 WHERE qid = ?1 AND next_attempt < 0",
                            qid) < 0 ? -1 : 1;
    }
    if (rc < 0) set_err(err, errlen, "queue index: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    db_done(db);
    return rc;
}

int queue_delete(const char *queue_dir, const char *qid, char *err, size_t errlen)
{
    if (!valid_qid(qid)) return 0;
    int lock = lock_queue(queue_dir, LOCK_SH, err, errlen);
    if (lock < 0) return -1;
    bool missing;
    sqlite3 *db = db_open_existing(queue_dir, &missing, err, errlen);
    int rc = missing ? 0 : -1;
    if (db) {
        char *path = path_join(queue_dir, qid);
        bool file = access(path, F_OK) == 0;
        free(path);
        sqlite3_stmt *st = NULL;
        bool row = false;
        if (sqlite3_prepare_v2(db, "SELECT 1 FROM messages WHERE qid = ?1", -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, qid, -1, SQLITE_STATIC);
            row = sqlite3_step(st) == SQLITE_ROW;
        }
        sqlite3_finalize(st);
        if (!file && !row) rc = 0;
        else rc = remove_message(queue_dir, db, qid, err, errlen) < 0 ? -1 : 1;
    }
    db_done(db);
    close(lock);
    return rc;
}
