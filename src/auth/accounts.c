#include "auth/accounts.h"

#include <crypt.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/hash_memory.h"
#include "core/sqlite_relative.h"
#include "core/log.h"
#include "core/sbuf.h"
#include "core/util.h"

#define MAX_ALIAS_DEPTH 8
#define MAX_PASSWORD 1024

/* A yescrypt hash (default cost) of a password nobody knows.  Unknown
 * users are checked against it so they cost the same time as real ones. */
static const char dummy_hash[] =
    "$y$j9T$XLYQTVNJw/NboNAoiObUE.$wyaPQ7OcjJGU5ChAyOl91xLUZRaHLFS1n4Ndxa8yu42";

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS users("
    " address TEXT PRIMARY KEY NOT NULL,"
    " hash TEXT NOT NULL,"
    " created INTEGER NOT NULL,"
    " quota INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS aliases("
    " source TEXT NOT NULL,"
    " target TEXT NOT NULL,"
    " PRIMARY KEY(source, target));"
    "PRAGMA user_version = 1;";

struct accounts {
    sqlite3 *db;
    sqlite3_stmt *st_user;      /* SELECT hash, quota FROM users WHERE address = ? */
    sqlite3_stmt *st_targets;   /* SELECT target FROM aliases WHERE source = ? */
    struct crypt_data *cd;      /* 32 KiB scratch for crypt_r, kept per handle */
};

static void db_err(accounts *a, char *err, size_t errlen, const char *what)
{
    set_err(err, errlen, "account database: %s: %s", what, sqlite3_errmsg(a->db));
}

/* ---- open / close ------------------------------------------------------ */

accounts *accounts_open(const char *path, bool create, char *err, size_t errlen)
{
    struct stat st;
    if (!create && stat(path, &st) < 0) {
        set_err(err, errlen, "account database %s does not exist (run 'pochta init' first)", path);
        return NULL;
    }
    /* The file holds password hashes: create it private (SQLite gives its
     * -wal and -shm files the same mode). */
    if (create) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0) close(fd);
    }
    accounts *a = xcalloc(1, sizeof *a);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &a->db, flags, sqlite_relative_vfs()) != SQLITE_OK) {
        set_err(err, errlen, "account database %s: %s", path,
             a->db ? sqlite3_errmsg(a->db) : "cannot allocate");
        accounts_close(a);
        return NULL;
    }
    sqlite3_busy_timeout(a->db, 5000);
    sqlite3_extended_result_codes(a->db, 0);
    char *msg = NULL;
    if (sqlite3_exec(a->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL, &msg) != SQLITE_OK ||
        (create && sqlite3_exec(a->db, schema, NULL, NULL, &msg) != SQLITE_OK)) {
        set_err(err, errlen, "account database %s: %s", path, msg ? msg : sqlite3_errmsg(a->db));
        sqlite3_free(msg);
        accounts_close(a);
        return NULL;
    }
    /* Preparing the lookups also proves the schema is there. */
    if (sqlite3_prepare_v2(a->db, "SELECT hash, quota FROM users WHERE address = ?1", -1, &a->st_user, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(a->db, "SELECT target FROM aliases WHERE source = ?1 ORDER BY target", -1,
                           &a->st_targets, NULL) != SQLITE_OK) {
        set_err(err, errlen, "account database %s is not initialised: %s", path, sqlite3_errmsg(a->db));
        accounts_close(a);
        return NULL;
    }
    return a;
}

void accounts_close(accounts *a)
{
    if (!a) return;
    sqlite3_finalize(a->st_user);
    sqlite3_finalize(a->st_targets);
    sqlite3_close(a->db);
    if (a->cd) {
        OPENSSL_cleanse(a->cd, sizeof *a->cd);
        free(a->cd);
    }
    free(a);
}

/* A pthread key (not _Thread_local) so the handle is closed when the
 * thread exits. */
static pthread_key_t thread_key;
static pthread_once_t thread_once = PTHREAD_ONCE_INIT;

static void thread_handle_close(void *p)
{
    accounts_close(p);
}

static void thread_key_make(void)
{
    if (pthread_key_create(&thread_key, thread_handle_close) != 0) abort();
}

accounts *accounts_thread_handle(void)
{
    pthread_once(&thread_once, thread_key_make);
    accounts *a = pthread_getspecific(thread_key);
    if (a) return a;
    char err[256];
    a = accounts_open("accounts.db", false, err, sizeof err);
    if (!a) {
        log_warn("cannot open the account database: %s", err);
        return NULL;
    }
    pthread_setspecific(thread_key, a);
    return a;
}

/* ---- addresses --------------------------------------------------------- */

static bool valid_domain(const char *d)
{
    size_t n = strlen(d);
    if (n == 0 || n > 255 || d[0] == '.' || d[0] == '-' || d[n - 1] == '.') return false;
    for (const char *p = d; *p; p++) {
        unsigned char c = (unsigned char)*p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c >= 0x80;
        if (!ok || (c == '.' && p[1] == '.')) return false;
    }
    return true;
}

bool accounts_address_valid(const char *address, bool allow_catchall)
{
    if (!address) return false;
    const char *at = strrchr(address, '@');
    if (!at || strlen(address) > 320) return false;
    size_t local = (size_t)(at - address);
    if (local == 0) return allow_catchall && valid_domain(at + 1);
    if (local > 64) return false;
    for (const char *p = address; p < at; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c == 0x7f) return false;
    }
    return valid_domain(at + 1);
}

static char *lowered(const char *s)
{
    return ascii_lower(xstrdup(s));
}

/* ---- users ------------------------------------------------------------- */

/* Returns the heap crypt string, or NULL with err. */
static char *make_hash(accounts *a, const char *password, char *err, size_t errlen)
{
    if (!password || !*password) {
        set_err(err, errlen, "empty password");
        return NULL;
    }
    if (strlen(password) > MAX_PASSWORD) {
        set_err(err, errlen, "password longer than %d bytes", MAX_PASSWORD);
        return NULL;
    }
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof salt)) {
        set_err(err, errlen, "cannot make a yescrypt salt (libxcrypt without yescrypt?)");
        return NULL;
    }
    if (!a->cd) a->cd = xcalloc(1, sizeof *a->cd);
    hash_memory_begin();
    const char *h = crypt_r(password, salt, a->cd);
    hash_memory_end();
    char *out = (h && h[0] != '*') ? xstrdup(h) : NULL;
    OPENSSL_cleanse(a->cd, sizeof *a->cd);
    if (!out) set_err(err, errlen, "password hashing failed");
    return out;
}

static bool check_user_address(const char *address, char *err, size_t errlen)
{
    if (accounts_address_valid(address, false)) return true;
    char safe[400];
    set_err(err, errlen, "'%s' is not a valid address (local@domain)",
         log_safe(address ? address : "", address ? strlen(address) : 0, safe, sizeof safe));
    return false;
}

int accounts_user_add(accounts *a, const char *address, const char *password, char *err, size_t errlen)
{
    if (!check_user_address(address, err, errlen)) return -1;
    char *hash = make_hash(a, password, err, errlen);
    if (!hash) return -1;
    char *addr = lowered(address);
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(a->db, "INSERT INTO users(address, hash, created) VALUES(?1, ?2, ?3)",
                           -1, &st, NULL) != SQLITE_OK) {
        db_err(a, err, errlen, "prepare");
        goto out;
    }
    sqlite3_bind_text(st, 1, addr, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)time(NULL));
    int s = sqlite3_step(st);
    if (s == SQLITE_DONE) rc = 0;
    else if (s == SQLITE_CONSTRAINT) set_err(err, errlen, "user %s already exists", addr);
    else db_err(a, err, errlen, "insert");
out:
    sqlite3_finalize(st);
    free(addr);
    free(hash);
    return rc;
}

/* Run one UPDATE/DELETE with up to two text parameters; returns the number
 * of changed rows or -1. */
static int exec_change(accounts *a, const char *sql, const char *p1, const char *p2,
                       char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(a->db, sql, -1, &st, NULL) != SQLITE_OK) {
        db_err(a, err, errlen, "prepare");
        return -1;
    }
    sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC);
    if (p2) sqlite3_bind_text(st, 2, p2, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    if (s != SQLITE_DONE) {
        db_err(a, err, errlen, "write");
        return -1;
    }
    return sqlite3_changes(a->db);
}

int accounts_user_del(accounts *a, const char *address, char *err, size_t errlen)
{
    char *addr = lowered(address);
    int n = exec_change(a, "DELETE FROM users WHERE address = ?1", addr, NULL, err, errlen);
    if (n == 0) set_err(err, errlen, "no such user %s", addr);
    free(addr);
    return n > 0 ? 0 : -1;
}

int accounts_user_passwd(accounts *a, const char *address, const char *password, char *err, size_t errlen)
{
    char *hash = make_hash(a, password, err, errlen);
    if (!hash) return -1;
    char *addr = lowered(address);
    int n = exec_change(a, "UPDATE users SET hash = ?2 WHERE address = ?1", addr, hash, err, errlen);
    if (n == 0) set_err(err, errlen, "no such user %s", addr);
    free(addr);
    free(hash);
    return n > 0 ? 0 : -1;
}

/* Lower-cased address in; 1 / 0 / -1.  With hash_out, the stored hash is
 * copied out (heap) when the user exists; with quota_out, the quota. */
static int lookup_user_quota(accounts *a, const char *addr, char **hash_out, uint64_t *quota_out)
{
    sqlite3_stmt *st = a->st_user;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, addr, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    int rc = -1;
    if (s == SQLITE_ROW) {
        rc = 1;
        if (hash_out) {
            const unsigned char *h = sqlite3_column_text(st, 0);
            *hash_out = xstrdup(h ? (const char *)h : "");
        }
        if (quota_out) {
            sqlite3_int64 q = sqlite3_column_int64(st, 1);
            *quota_out = q > 0 ? (uint64_t)q : 0;
        }
    } else if (s == SQLITE_DONE) {
        rc = 0;
    } else {
        log_error("account database: user lookup: %s", sqlite3_errmsg(a->db));
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

static int lookup_user(accounts *a, const char *addr, char **hash_out)
{
    return lookup_user_quota(a, addr, hash_out, NULL);
}

int accounts_user_quota_get(accounts *a, const char *address, uint64_t *bytes)
{
    char *addr = lowered(address);
    uint64_t q = 0;
    int rc = lookup_user_quota(a, addr, NULL, &q);
    free(addr);
    if (rc == 1 && bytes) *bytes = q;
    return rc;
}

int accounts_user_quota_set(accounts *a, const char *address, uint64_t bytes, char *err, size_t errlen)
{
    /* SQLite integers are signed 64-bit. */
    if (bytes > (uint64_t)INT64_MAX) {
        set_err(err, errlen, "quota too large");
        return -1;
    }
    char *addr = lowered(address);
    sqlite3_stmt *st = NULL;
    int n = -1;
    if (sqlite3_prepare_v2(a->db, "UPDATE users SET quota = ?2 WHERE address = ?1", -1, &st, NULL)
        != SQLITE_OK) {
        db_err(a, err, errlen, "prepare");
    } else {
        sqlite3_bind_text(st, 1, addr, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)bytes);
        if (sqlite3_step(st) == SQLITE_DONE) n = sqlite3_changes(a->db);
        else db_err(a, err, errlen, "write");
    }
    sqlite3_finalize(st);
    if (n == 0) set_err(err, errlen, "no such user %s", addr);
    free(addr);
    return n > 0 ? 0 : -1;
}

int accounts_user_exists(accounts *a, const char *address)
{
    char *addr = lowered(address);
    int rc = lookup_user(a, addr, NULL);
    free(addr);
    return rc;
}

int accounts_user_list(accounts *a, void (*cb)(const char *address, void *ctx), void *ctx)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(a->db, "SELECT address FROM users ORDER BY address", -1, &st, NULL) != SQLITE_OK)
        return -1;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) cb((const char *)sqlite3_column_text(st, 0), ctx);
    sqlite3_finalize(st);
    return s == SQLITE_DONE ? 0 : -1;
}

int accounts_verify_password(accounts *a, const char *address, const char *password)
{
    char *addr = lowered(address);
    char *hash = NULL;
    int found = lookup_user(a, addr, &hash);
    free(addr);
    if (found < 0) return -1;
    /* Hash even when the user is unknown: same work, same time. */
    const char *setting = found ? hash : dummy_hash;
    if (!a->cd) a->cd = xcalloc(1, sizeof *a->cd);
    hash_memory_begin();
    const char *h = crypt_r(password ? password : "", setting, a->cd);
    hash_memory_end();
    int ok = 0;
    if (found && h && h[0] != '*') {
        size_t n = strlen(setting);
        ok = strlen(h) == n && CRYPTO_memcmp(h, setting, n) == 0;
    } else if (found && (!h || h[0] == '*')) {
        log_warn("account database: unusable password hash for a user (locked account?)");
    }
    OPENSSL_cleanse(a->cd, sizeof *a->cd);
    free(hash);
    return ok;
}

/* ---- aliases ----------------------------------------------------------- */

int accounts_alias_add(accounts *a, const char *source, const char *target, char *err, size_t errlen)
{
    char safe[400];
    if (!accounts_address_valid(source, true)) {
        set_err(err, errlen, "'%s' is not a valid alias source (local@domain or @domain)",
             log_safe(source, strlen(source), safe, sizeof safe));
        return -1;
    }
    if (!check_user_address(target, err, errlen)) return -1;
    char *src = lowered(source), *dst = lowered(target);
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(a->db, "INSERT INTO aliases(source, target) VALUES(?1, ?2)", -1, &st, NULL) != SQLITE_OK) {
        db_err(a, err, errlen, "prepare");
        goto out;
    }
    sqlite3_bind_text(st, 1, src, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, dst, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_DONE) rc = 0;
    else if (s == SQLITE_CONSTRAINT) set_err(err, errlen, "alias %s -> %s already exists", src, dst);
    else db_err(a, err, errlen, "insert");
out:
    sqlite3_finalize(st);
    free(src);
    free(dst);
    return rc;
}

int accounts_alias_del(accounts *a, const char *source, const char *target, char *err, size_t errlen)
{
    char *src = lowered(source);
    char *dst = target ? lowered(target) : NULL;
    int n = dst ? exec_change(a, "DELETE FROM aliases WHERE source = ?1 AND target = ?2", src, dst, err, errlen)
                : exec_change(a, "DELETE FROM aliases WHERE source = ?1", src, NULL, err, errlen);
    if (n == 0) {
        if (dst) set_err(err, errlen, "no alias %s -> %s", src, dst);
        else set_err(err, errlen, "no alias %s", src);
    }
    free(src);
    free(dst);
    return n > 0 ? 0 : -1;
}

int accounts_alias_list(accounts *a, void (*cb)(const char *source, const char *target, void *ctx), void *ctx)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(a->db, "SELECT source, target FROM aliases ORDER BY source, target",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW)
        cb((const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1), ctx);
    sqlite3_finalize(st);
    return s == SQLITE_DONE ? 0 : -1;
}

/* Collect the targets of `src` (lower-cased) into a heap array: the
 * statement must be finished before the recursion reuses it.  Returns the
 * count (0 = no alias) or -1. */
static int fetch_targets(accounts *a, const char *src, char ***out)
{
    sqlite3_stmt *st = a->st_targets;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, src, -1, SQLITE_STATIC);
    size_t n = 0, cap = 0;
    char **list = NULL;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        if (!t) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            list = xrealloc(list, cap * sizeof *list);
        }
        list[n++] = xstrdup((const char *)t);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (s != SQLITE_DONE) {
        log_error("account database: alias lookup: %s", sqlite3_errmsg(a->db));
        for (size_t i = 0; i < n; i++) free(list[i]);
        free(list);
        return -1;
    }
    *out = list;
    return (int)n;
}

static void free_targets(char **list, int n)
{
    for (int i = 0; i < n; i++) free(list[i]);
    free(list);
}

int accounts_alias_targets(accounts *a, const char *source, void (*cb)(const char *target, void *ctx), void *ctx)
{
    char *src = lowered(source);
    char **list = NULL;
    int n = fetch_targets(a, src, &list);
    free(src);
    for (int i = 0; i < n; i++) cb(list[i], ctx);
    if (n > 0) free_targets(list, n);
    return n;
}

/* ---- resolution -------------------------------------------------------- */

struct resolver {
    accounts *a;
    const char *delim;
    bool (*is_local)(const char *domain, void *ctx);
    void *ctx;
    const char *top;                        /* the recipient, for log lines */
    const char *path[MAX_ALIAS_DEPTH + 1];  /* addresses being expanded */
    size_t depth;
    struct account_dest *out;
    size_t n, cap;
};

static void add_dest(struct resolver *r, const char *addr, bool local)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->out[i].local == local && strcmp(r->out[i].address, addr) == 0) return;
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 4;
        r->out = xrealloc(r->out, r->cap * sizeof *r->out);
    }
    r->out[r->n].address = xstrdup(addr);
    r->out[r->n].local = local;
    r->n++;
}

static void log_dropped(const struct resolver *r, const char *addr, const char *why)
{
    char s1[400], s2[400];
    log_warn("alias target <%s> dropped while resolving <%s>: %s",
             log_safe(addr, strlen(addr), s1, sizeof s1), log_safe(r->top, strlen(r->top), s2, sizeof s2), why);
}

static int expand(struct resolver *r, const char *addr);

/* 1 if `src` is an alias (its targets were expanded), 0 if not, -1 error.
 * A target equal to `src` itself means "the user src too" (keep a copy). */
static int expand_alias(struct resolver *r, const char *src)
{
    char **list = NULL;
    int n = fetch_targets(r->a, src, &list);
    if (n <= 0) return n;
    int rc = 1;
    for (int i = 0; i < n && rc > 0; i++) {
        if (strcmp(list[i], src) == 0) {
            int u = lookup_user(r->a, src, NULL);
            if (u < 0) rc = -1;
            else if (u > 0) add_dest(r, src, true);
        } else if (expand(r, list[i]) < 0) {
            rc = -1;
        }
    }
    free_targets(list, n);
    return rc;
}

/* 1 if found as alias or user, 0 if not, -1 error. */
static int alias_or_user(struct resolver *r, const char *addr)
{
    int rc = expand_alias(r, addr);
    if (rc != 0) return rc;
    rc = lookup_user(r->a, addr, NULL);
    if (rc > 0) add_dest(r, addr, true);
    return rc;
}

/* The lookup order of virtual(5) for one lower-cased local address. */
static int lookup_address(struct resolver *r, const char *addr)
{
    int rc = alias_or_user(r, addr);
    if (rc != 0) return rc;
    const char *at = strrchr(addr, '@');
    if (r->delim && *r->delim) {
        const char *d = strstr(addr, r->delim);
        if (d && d < at && d > addr) {
            sbuf base = SBUF_INIT;
            sbuf_append(&base, addr, (size_t)(d - addr));
            sbuf_puts(&base, at);
            rc = alias_or_user(r, base.data);
            sbuf_free(&base);
            if (rc != 0) return rc;
        }
    }
    return expand_alias(r, at);
}

static int expand(struct resolver *r, const char *addr)
{
    const char *at = strrchr(addr, '@');
    if (!at) {
        log_dropped(r, addr, "not an address");
        return 0;
    }
    if (r->is_local && !r->is_local(at + 1, r->ctx)) {
        add_dest(r, addr, false);
        return 0;
    }
    for (size_t i = 0; i < r->depth; i++) {
        if (strcmp(r->path[i], addr) == 0) {
            log_dropped(r, addr, "alias loop");
            return 0;
        }
    }
    if (r->depth > MAX_ALIAS_DEPTH) {
        log_dropped(r, addr, "aliases nested more than 8 deep");
        return 0;
    }
    r->path[r->depth++] = addr;
    int rc = lookup_address(r, addr);
    r->depth--;
    return rc < 0 ? -1 : 0;
}

int accounts_resolve(accounts *a, const char *address, const char *delimiter,
                     bool (*is_local)(const char *domain, void *ctx), void *ctx,
                     struct account_dest **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    char *addr = lowered(address);
    struct resolver r = { .a = a, .delim = delimiter, .is_local = is_local, .ctx = ctx, .top = addr };
    int rc;
    if (!strrchr(addr, '@')) {
        rc = 0;
    } else {
        /* The recipient itself is local by the caller's check. */
        r.path[r.depth++] = addr;
        rc = lookup_address(&r, addr);
    }
    free(addr);
    if (rc < 0 || r.n == 0) {
        accounts_dests_free(r.out, r.n);
        return rc < 0 ? -1 : 0;
    }
    *out = r.out;
    *nout = r.n;
    return (int)r.n;
}

void accounts_dests_free(struct account_dest *d, size_t n)
{
    if (!d) return;
    for (size_t i = 0; i < n; i++) free(d[i].address);
    free(d);
}
