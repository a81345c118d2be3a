/* Account directory: users, passwords, aliases and recipient resolution
 * (Postfix virtual(5) semantics), plus the AUTH failure limiter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dlfcn.h>
#include <sys/mman.h>

#include "unit_tmpdir.h"
#include "auth/accounts.h"
#include "auth/hash_memory.h"
#include "auth/failures.h"
#include "core/log.h"
#include "core/sbuf.h"
#include "core/util.h"

struct fixture {
    char dir[64];
    char path[96];
    accounts *a;
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    if (unit_tmpdir_make(f->dir, sizeof f->dir, "auth") < 0) return -1;
    snprintf(f->path, sizeof f->path, "%s/accounts.db", f->dir);
    char err[256];
    f->a = accounts_open(f->path, true, err, sizeof err);
    if (!f->a) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    accounts_close(f->a);
    if (unit_tmpdir_remove(f->dir) < 0) return -1;
    free(f);
    return 0;
}

/* example.test and other.test are local; anything else is remote. */
static bool is_local(const char *domain, void *ctx)
{
    return ascii_casecmp(domain, "example.test") == 0 || ascii_casecmp(domain, "other.test") == 0;
}

/* Resolve and render the destinations as "L:addr R:addr ..." (sorted by
 * resolution order), or "UNKNOWN" / "ERROR". */
static char *resolve(accounts *a, const char *addr, const char *delim)
{
    struct account_dest *d = NULL;
    size_t n = 0;
    int rc = accounts_resolve(a, addr, delim, is_local, NULL, &d, &n);
    sbuf b = SBUF_INIT;
    if (rc < 0) sbuf_puts(&b, "ERROR");
    else if (rc == 0) sbuf_puts(&b, "UNKNOWN");
    for (size_t i = 0; i < n; i++) sbuf_printf(&b, "%s%c:%s", i ? " " : "", d[i].local ? 'L' : 'R', d[i].address);
    if (rc > 0 && (size_t)rc != n) sbuf_puts(&b, " COUNT-MISMATCH");
    accounts_dests_free(d, n);
    return sbuf_detach(&b);
}

#define assert_resolves(a, addr, delim, expect)                 \
    do {                                                        \
        char *got_ = resolve((a), (addr), (delim));             \
        assert_string_equal(got_, (expect));                    \
        free(got_);                                             \
    } while (0)

static void add_user(accounts *a, const char *addr)
{
    char err[256] = "";
    int rc = accounts_user_add(a, addr, "pw", err, sizeof err);
    if (rc != 0) fprintf(stderr, "user_add %s: %s\n", addr, err);
    assert_int_equal(rc, 0);
}

static void add_alias(accounts *a, const char *src, const char *dst)
{
    char err[256] = "";
    int rc = accounts_alias_add(a, src, dst, err, sizeof err);
    if (rc != 0) fprintf(stderr, "alias_add %s: %s\n", src, err);
    assert_int_equal(rc, 0);
}

/* ---- users and passwords ------------------------------------------------ */

static void user_add_verify_passwd_del(void **state)
{
    struct fixture *f = *state;
    char err[256];
    assert_int_equal(accounts_user_add(f->a, "Alice@Example.TEST", "s3cret pass", err, sizeof err), 0);
    assert_int_equal(accounts_user_exists(f->a, "alice@example.test"), 1);
    assert_int_equal(accounts_user_exists(f->a, "ALICE@example.test"), 1);
    assert_int_equal(accounts_verify_password(f->a, "alice@example.test", "s3cret pass"), 1);
    assert_int_equal(accounts_verify_password(f->a, "alice@EXAMPLE.test", "s3cret pass"), 1);
    assert_int_equal(accounts_verify_password(f->a, "alice@example.test", "s3cret Pass"), 0);
    assert_int_equal(accounts_verify_password(f->a, "alice@example.test", ""), 0);
    assert_int_equal(accounts_verify_password(f->a, "nobody@example.test", "s3cret pass"), 0);

    /* A second add of the same (case-folded) address is refused. */
    assert_int_equal(accounts_user_add(f->a, "alice@example.test", "x", err, sizeof err), -1);
    assert_non_null(strstr(err, "exists"));

    assert_int_equal(accounts_user_passwd(f->a, "alice@example.test", "new one", err, sizeof err), 0);
    assert_int_equal(accounts_verify_password(f->a, "alice@example.test", "s3cret pass"), 0);
    assert_int_equal(accounts_verify_password(f->a, "alice@example.test", "new one"), 1);
    assert_int_equal(accounts_user_passwd(f->a, "bob@example.test", "x", err, sizeof err), -1);

    assert_int_equal(accounts_user_del(f->a, "ALICE@example.test", err, sizeof err), 0);
    assert_int_equal(accounts_user_exists(f->a, "alice@example.test"), 0);
    assert_int_equal(accounts_verify_password(f->a, "alice@example.test", "new one"), 0);
    assert_int_equal(accounts_user_del(f->a, "alice@example.test", err, sizeof err), -1);
}

/* Read or change the database behind the API's back, through an
 * independent connection. */
static char *sql_text(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    char *out = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW && sqlite3_column_text(st, 0)) out = xstrdup((const char *)sqlite3_column_text(st, 0));
    else assert_int_equal(s, SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

static void new_hashes_are_yescrypt(void **state)
{
    struct fixture *f = *state;
    add_user(f->a, "carol@example.test");
    char *h = sql_text(f->path, "SELECT hash FROM users WHERE address = 'carol@example.test'");
    assert_non_null(h);
    assert_true(strncmp(h, "$y$", 3) == 0);
    assert_null(strstr(h, "pw"));
    free(h);
}

static void verify_accepts_other_crypt_formats(void **state)
{
    struct fixture *f = *state;
    add_user(f->a, "imported@example.test");
    /* A SHA-512 crypt hash of "secret", as imported from another system. */
    free(sql_text(f->path, "UPDATE users SET hash = '$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDe"
                           "hy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1' WHERE address = 'imported@example.test'"));
    assert_int_equal(accounts_verify_password(f->a, "imported@example.test", "secret"), 1);
    assert_int_equal(accounts_verify_password(f->a, "imported@example.test", "Secret"), 0);
    /* A locked account ("!") never verifies. */
    free(sql_text(f->path, "UPDATE users SET hash = '!' WHERE address = 'imported@example.test'"));
    assert_int_equal(accounts_verify_password(f->a, "imported@example.test", "!"), 0);
    assert_int_equal(accounts_verify_password(f->a, "imported@example.test", ""), 0);
}

static void bad_addresses_and_passwords_are_refused(void **state)
{
    struct fixture *f = *state;
    char err[256];
    assert_int_equal(accounts_user_add(f->a, "no-at-sign", "pw", err, sizeof err), -1);
    assert_int_equal(accounts_user_add(f->a, "@example.test", "pw", err, sizeof err), -1);
    assert_int_equal(accounts_user_add(f->a, "a b@example.test", "pw", err, sizeof err), -1);
    assert_int_equal(accounts_user_add(f->a, "a@exa..mple.test", "pw", err, sizeof err), -1);
    assert_int_equal(accounts_user_add(f->a, "a@", "pw", err, sizeof err), -1);
    assert_int_equal(accounts_user_add(f->a, "ok@example.test", "", err, sizeof err), -1);
    assert_int_equal(accounts_user_exists(f->a, "ok@example.test"), 0);
    assert_int_equal(accounts_alias_add(f->a, "@example.test", "not an address", err, sizeof err), -1);
    assert_true(accounts_address_valid("@example.test", true));
    assert_false(accounts_address_valid("@example.test", false));
}

static void list_cb(const char *address, void *ctx)
{
    sbuf_printf(ctx, "%s;", address);
}

static void alias_list_cb(const char *s, const char *t, void *ctx)
{
    sbuf_printf(ctx, "%s>%s;", s, t);
}

static void lists_are_sorted(void **state)
{
    struct fixture *f = *state;
    add_user(f->a, "zed@example.test");
    add_user(f->a, "Amy@example.test");
    add_user(f->a, "mo@other.test");
    sbuf b = SBUF_INIT;
    assert_int_equal(accounts_user_list(f->a, list_cb, &b), 0);
    assert_string_equal(sbuf_cstr(&b), "amy@example.test;mo@other.test;zed@example.test;");
    sbuf_reset(&b);
    add_alias(f->a, "b@example.test", "zed@example.test");
    add_alias(f->a, "B@example.test", "amy@example.test");
    add_alias(f->a, "@example.test", "amy@example.test");
    assert_int_equal(accounts_alias_list(f->a, alias_list_cb, &b), 0);
    assert_string_equal(sbuf_cstr(&b), "@example.test>amy@example.test;b@example.test>amy@example.test;"
                                       "b@example.test>zed@example.test;");
    sbuf_free(&b);
}

static void alias_del_one_or_all(void **state)
{
    struct fixture *f = *state;
    char err[256];
    add_alias(f->a, "list@example.test", "a@example.test");
    add_alias(f->a, "list@example.test", "b@example.test");
    add_alias(f->a, "list@example.test", "c@example.test");
    assert_int_equal(accounts_alias_add(f->a, "list@example.test", "A@example.test", err, sizeof err), -1);
    assert_int_equal(accounts_alias_del(f->a, "list@example.test", "b@example.test", err, sizeof err), 0);
    assert_int_equal(accounts_alias_del(f->a, "list@example.test", "b@example.test", err, sizeof err), -1);
    sbuf b = SBUF_INIT;
    assert_int_equal(accounts_alias_targets(f->a, "LIST@example.test", list_cb, &b), 2);
    assert_string_equal(sbuf_cstr(&b), "a@example.test;c@example.test;");
    assert_int_equal(accounts_alias_del(f->a, "list@example.test", NULL, err, sizeof err), 0);
    sbuf_reset(&b);
    assert_int_equal(accounts_alias_targets(f->a, "list@example.test", list_cb, &b), 0);
    assert_int_equal(accounts_alias_del(f->a, "list@example.test", NULL, err, sizeof err), -1);
    sbuf_free(&b);
}

/* A second handle (as the `pochta` command would hold) changes the data; the
 * first handle (the daemon's) sees it at once. */
static void changes_are_visible_to_other_handles(void **state)
{
    struct fixture *f = *state;
    char err[256];
    accounts *cli = accounts_open(f->path, false, err, sizeof err);
    assert_non_null(cli);
    assert_resolves(f->a, "dave@example.test", "+", "UNKNOWN");
    assert_int_equal(accounts_user_add(cli, "dave@example.test", "pw", err, sizeof err), 0);
    assert_resolves(f->a, "dave@example.test", "+", "L:dave@example.test");
    assert_int_equal(accounts_verify_password(f->a, "dave@example.test", "pw"), 1);
    assert_int_equal(accounts_user_del(cli, "dave@example.test", err, sizeof err), 0);
    assert_resolves(f->a, "dave@example.test", "+", "UNKNOWN");
    accounts_close(cli);
}

static void open_without_create_needs_a_database(void **state)
{
    struct fixture *f = *state;
    char err[256], path[128];
    snprintf(path, sizeof path, "%s/missing.db", f->dir);
    assert_null(accounts_open(path, false, err, sizeof err));
    assert_int_equal(access(path, F_OK), -1);
}

/* ---- resolution (virtual(5) order) ------------------------------------- */

static void resolve_user_case_insensitive(void **state)
{
    struct fixture *f = *state;
    add_user(f->a, "alice@example.test");
    assert_resolves(f->a, "alice@example.test", "+", "L:alice@example.test");
    assert_resolves(f->a, "ALICE@Example.Test", "+", "L:alice@example.test");
    assert_resolves(f->a, "bob@example.test", "+", "UNKNOWN");
}

static void resolve_alias_before_user(void **state)
{
    struct fixture *f = *state;
    add_user(f->a, "alice@example.test");
    add_user(f->a, "bob@example.test");
    add_alias(f->a, "alice@example.test", "bob@example.test");
    assert_resolves(f->a, "alice@example.test", "+", "L:bob@example.test");
}

static void resolve_alias_to_itself_keeps_a_copy(void **state)
{
    struct fixture *f = *state;
    add_user(f->a, "alice@example.test");
    add_user(f->a, "bob@example.test");
    add_alias(f->a, "alice@example.test", "alice@example.test");
    add_alias(f->a, "alice@example.test", "bob@example.test");
    assert_resolves(f->a, "alice@example.test", "+", "L:alice@example.test L:bob@example.test");
}

static void resolve_subaddress(void **state)
{
    struct fixture *f = *state;
    add_user(f->a, "alice@example.test");
    add_user(f->a, "bob@example.test");
    add_alias(f->a, "sales@example.test", "bob@example.test");
    assert_resolves(f->a, "alice+lists@example.test", "+", "L:alice@example.test");
    assert_resolves(f->a, "Alice+Lists@example.test", "+", "L:alice@example.test");
    assert_resolves(f->a, "sales+web@example.test", "+", "L:bob@example.test");
    /* Disabled delimiter, other delimiter, empty base. */
    assert_resolves(f->a, "alice+lists@example.test", "", "UNKNOWN");
    assert_resolves(f->a, "alice+lists@example.test", "-", "UNKNOWN");
    assert_resolves(f->a, "alice-lists@example.test", "-", "L:alice@example.test");
    assert_resolves(f->a, "+alice@example.test", "+", "UNKNOWN");
    /* An exact entry wins over the stripped one. */
    add_user(f->a, "alice+special@example.test");
    assert_resolves(f->a, "alice+special@example.test", "+", "L:alice+special@example.test");
}

static void resolve_catch_all_last(void **state)
{
    struct fixture *f = *state;
    add_user(f->a, "alice@example.test");
    add_user(f->a, "postmaster@example.test");
    add_alias(f->a, "@example.test", "postmaster@example.test");
    assert_resolves(f->a, "anything@example.test", "+", "L:postmaster@example.test");
    assert_resolves(f->a, "alice@example.test", "+", "L:alice@example.test");
    assert_resolves(f->a, "alice+x@example.test", "+", "L:alice@example.test");
    /* The catch-all of one domain does not cover another. */
    assert_resolves(f->a, "anything@other.test", "+", "UNKNOWN");
}

static void resolve_remote_and_cross_domain_targets(void **state)
{
    struct fixture *f = *state;
    add_user(f->a, "mo@other.test");
    add_alias(f->a, "team@example.test", "mo@other.test");
    add_alias(f->a, "team@example.test", "Friend@Remote.example");
    add_alias(f->a, "team@example.test", "ghost@example.test");
    /* ghost does not exist: dropped; the rest remain. */
    assert_resolves(f->a, "team@example.test", "+", "R:friend@remote.example L:mo@other.test");
    add_alias(f->a, "only-ghost@example.test", "ghost@example.test");
    assert_resolves(f->a, "only-ghost@example.test", "+", "UNKNOWN");
}

static void resolve_nested_and_duplicates(void **state)
{
    struct fixture *f = *state;
    add_user(f->a, "a@example.test");
    add_user(f->a, "b@example.test");
    add_alias(f->a, "all@example.test", "staff@example.test");
    add_alias(f->a, "all@example.test", "a@example.test");
    add_alias(f->a, "staff@example.test", "a@example.test");
    add_alias(f->a, "staff@example.test", "b@example.test");
    assert_resolves(f->a, "all@example.test", "+", "L:a@example.test L:b@example.test");
}

static void resolve_loops_are_dropped(void **state)
{
    struct fixture *f = *state;
    add_user(f->a, "c@example.test");
    add_alias(f->a, "x@example.test", "y@example.test");
    add_alias(f->a, "y@example.test", "x@example.test");
    assert_resolves(f->a, "x@example.test", "+", "UNKNOWN");
    /* A loop beside a real target keeps the real target. */
    add_alias(f->a, "y@example.test", "c@example.test");
    assert_resolves(f->a, "x@example.test", "+", "L:c@example.test");
    /* A catch-all pointing at a missing address loops into itself. */
    add_alias(f->a, "@other.test", "admin@other.test");
    assert_resolves(f->a, "anyone@other.test", "+", "UNKNOWN");
}

static void resolve_depth_limit(void **state)
{
    struct fixture *f = *state;
    char src[64], dst[64];
    add_user(f->a, "end@example.test");
    /* l0 -> l1 -> ... -> l8 -> end: 9 alias levels, one too many. */
    for (int i = 0; i < 9; i++) {
        snprintf(src, sizeof src, "l%d@example.test", i);
        if (i == 8) snprintf(dst, sizeof dst, "end@example.test");
        else snprintf(dst, sizeof dst, "l%d@example.test", i + 1);
        add_alias(f->a, src, dst);
    }
    assert_resolves(f->a, "l0@example.test", "+", "UNKNOWN");
    assert_resolves(f->a, "l1@example.test", "+", "L:end@example.test");
}

/* ---- AUTH failure limiter ---------------------------------------------- */

static void failures_count_within_window(void **state)
{
    auth_failures *f = auth_failures_new(16);
    assert_int_equal(auth_failures_count(f, "192.0.2.1", 1000, 60), 0);
    auth_failures_record(f, "192.0.2.1", 1000);
    auth_failures_record(f, "192.0.2.1", 1030);
    auth_failures_record(f, "192.0.2.1", 1050);
    auth_failures_record(f, "2001:db8::1", 1050);
    assert_int_equal(auth_failures_count(f, "192.0.2.1", 1050, 60), 3);
    assert_int_equal(auth_failures_count(f, "192.0.2.1", 1070, 60), 2);  /* 1000 fell out */
    assert_int_equal(auth_failures_count(f, "192.0.2.1", 1200, 60), 0);
    assert_int_equal(auth_failures_count(f, "2001:db8::1", 1050, 60), 1);
    auth_failures_clear(f, "192.0.2.1");
    assert_int_equal(auth_failures_count(f, "192.0.2.1", 1050, 60), 0);
    assert_int_equal(auth_failures_count(f, "2001:db8::1", 1050, 60), 1);
    assert_int_equal(auth_failures_size(f), 1);
    auth_failures_free(f);
}

static void failures_saturate(void **state)
{
    auth_failures *f = auth_failures_new(4);
    for (int i = 0; i < 1000; i++) auth_failures_record(f, "198.51.100.7", 5000 + i % 3);
    assert_int_equal(auth_failures_count(f, "198.51.100.7", 5002, 900), AUTH_FAILURES_TRACKED);
    auth_failures_free(f);
}

static void failures_bounded_evicting_oldest(void **state)
{
    auth_failures *f = auth_failures_new(3);
    auth_failures_record(f, "10.0.0.1", 100);
    auth_failures_record(f, "10.0.0.2", 101);
    auth_failures_record(f, "10.0.0.3", 102);
    auth_failures_record(f, "10.0.0.1", 103);    /* 10.0.0.1 is now the newest */
    auth_failures_record(f, "10.0.0.4", 104);    /* evicts 10.0.0.2 */
    assert_int_equal(auth_failures_size(f), 3);
    assert_int_equal(auth_failures_count(f, "10.0.0.2", 104, 900), 0);
    assert_int_equal(auth_failures_count(f, "10.0.0.1", 104, 900), 2);
    assert_int_equal(auth_failures_count(f, "10.0.0.3", 104, 900), 1);
    assert_int_equal(auth_failures_count(f, "10.0.0.4", 104, 900), 1);
    /* Many distinct addresses never grow it past the bound. */
    char ip[64];
    for (int i = 0; i < 10000; i++) {
        snprintf(ip, sizeof ip, "2001:db8::%x", i);
        auth_failures_record(f, ip, 200 + i);
    }
    assert_int_equal(auth_failures_size(f), 3);
    assert_int_equal(auth_failures_count(f, "2001:db8::270f", 10199, 900), 1);
    auth_failures_free(f);
}

/* RFC 9208 STORAGE limit: kept in bytes per user, 0 = unlimited; survives
 * across handles and is case-insensitive on the address like the rest. */
static void quota_get_set_bytes(void **state)
{
    struct fixture *f = *state;
    char err[256];
    uint64_t q = 77;
    assert_int_equal(accounts_user_quota_get(f->a, "nobody@example.test", &q), 0);
    assert_int_equal(accounts_user_quota_set(f->a, "nobody@example.test", 10, err, sizeof err), -1);
    assert_non_null(strstr(err, "no such user"));

    assert_int_equal(accounts_user_add(f->a, "quota@example.test", "pw", err, sizeof err), 0);
    assert_int_equal(accounts_user_quota_get(f->a, "quota@example.test", &q), 1);
    assert_int_equal(q, 0);
    assert_int_equal(accounts_user_quota_set(f->a, "Quota@Example.TEST", 104857600, err, sizeof err), 0);
    assert_int_equal(accounts_user_quota_get(f->a, "quota@example.test", &q), 1);
    assert_int_equal(q, 104857600);
    /* Above 32 bits, still exact. */
    assert_int_equal(accounts_user_quota_set(f->a, "quota@example.test", 5000000000ULL, err, sizeof err), 0);
    accounts *b = accounts_open(f->path, false, err, sizeof err);
    assert_non_null(b);
    assert_int_equal(accounts_user_quota_get(b, "QUOTA@example.test", &q), 1);
    assert_int_equal(q, 5000000000ULL);
    accounts_close(b);
    assert_int_equal(accounts_user_quota_set(f->a, "quota@example.test", UINT64_MAX, err, sizeof err), -1);
    assert_int_equal(accounts_user_quota_set(f->a, "quota@example.test", 0, err, sizeof err), 0);
    assert_int_equal(accounts_user_quota_get(f->a, "quota@example.test", &q), 1);
    assert_int_equal(q, 0);
    /* The password is untouched by a quota change. */
    assert_int_equal(accounts_verify_password(f->a, "quota@example.test", "pw"), 1);
}

/* The VmFlags line of the mapping at p in /proc/self/smaps ("" if none). */
static void vm_flags(const void *p, char *out, size_t outlen)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    assert_non_null(f);
    char line[512];
    bool in = false;
    out[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = (unsigned long)p >= lo && (unsigned long)p < hi;
        } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(out, outlen, "%s", line + 8);
            break;
        }
    }
    fclose(f);
}

/* The mmap a shared library reaches (libxcrypt's yescrypt calls "mmap"):
 * pochta's hash_memory one, looked up by symbol as the dynamic linker
 * does for the libraries. */
typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);

static void *lib_mmap(size_t len)
{
    void *sym = dlsym(RTLD_DEFAULT, "mmap");
    assert_non_null(sym);
    mmap_fn f;
    memcpy(&f, &sym, sizeof f);
    void *p = f(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    return p;
}

static void hash_memory_advises_only_the_hash_mappings(void **state)
{
    (void)state;
    if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) != 0) {
        skip();     /* a kernel built without THP refuses the advice */
    }
    char flags[512];
    size_t big = 16u << 20, small = 1u << 20;
    void *outside = lib_mmap(big);
    hash_memory_begin();
    void *during = lib_mmap(big), *little = lib_mmap(small);
    hash_memory_end();
    void *after = lib_mmap(big);
    /* "hg": MADV_HUGEPAGE given (proc(5)), whatever the system's THP mode. */
    vm_flags(during, flags, sizeof flags);
    assert_non_null(strstr(flags, " hg"));
    vm_flags(outside, flags, sizeof flags);
    assert_null(strstr(flags, " hg"));
    vm_flags(after, flags, sizeof flags);
    assert_null(strstr(flags, " hg"));
    vm_flags(little, flags, sizeof flags);
    assert_null(strstr(flags, " hg"));
    munmap(outside, big);
    munmap(during, big);
    munmap(little, small);
    munmap(after, big);
}

int main(void)
{
    log_init("test_auth", LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(user_add_verify_passwd_del, setup, teardown),
        cmocka_unit_test_setup_teardown(new_hashes_are_yescrypt, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_accepts_other_crypt_formats, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_addresses_and_passwords_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(lists_are_sorted, setup, teardown),
        cmocka_unit_test_setup_teardown(alias_del_one_or_all, setup, teardown),
        cmocka_unit_test_setup_teardown(changes_are_visible_to_other_handles, setup, teardown),
        cmocka_unit_test_setup_teardown(open_without_create_needs_a_database, setup, teardown),
        cmocka_unit_test_setup_teardown(resolve_user_case_insensitive, setup, teardown),
        cmocka_unit_test_setup_teardown(resolve_alias_before_user, setup, teardown),
        cmocka_unit_test_setup_teardown(resolve_alias_to_itself_keeps_a_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(resolve_subaddress, setup, teardown),
        cmocka_unit_test_setup_teardown(resolve_catch_all_last, setup, teardown),
        cmocka_unit_test_setup_teardown(resolve_remote_and_cross_domain_targets, setup, teardown),
        cmocka_unit_test_setup_teardown(resolve_nested_and_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(resolve_loops_are_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(resolve_depth_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(quota_get_set_bytes, setup, teardown),
        cmocka_unit_test(hash_memory_advises_only_the_hash_mappings),
        cmocka_unit_test(failures_count_within_window),
        cmocka_unit_test(failures_saturate),
        cmocka_unit_test(failures_bounded_evicting_oldest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
