/* Store-level ACL rows (RFC 4314): set, replace, remove, list; RENAME
 * keeps them, DELETE drops them, a re-created name starts without any, and
 * an index made before the acl table existed works (reads find none, the
 * first write adds the table). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "unit_tmpdir.h"

#define ROOT "mail"
#define USER "bob@example.org"

static int setup(void **state)
{
    (void)state;
    assert_int_equal(unit_tmpdir_enter("acl"), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    store_cache_clear();
    assert_int_equal(unit_tmpdir_leave(), 0);
    return 0;
}

static store_user *open_user(void)
{
    char err[256] = "";
    store_user *u = store_user_open(ROOT, USER, true, err, sizeof err);
    if (!u) fail_msg("open: %s", err);
    return u;
}

/* "mailbox ident rights;..." of the whole list, for compact asserts. */
static char *dump(store_user *u, const char *mailbox)
{
    store_acl_entry *e;
    size_t n;
    char err[256];
    assert_int_equal(store_acl_list(u, mailbox, &e, &n, err, sizeof err), 0);
    static char buf[1024];
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, sizeof buf - l, "%s %s %s;", e[i].mailbox, e[i].ident, e[i].rights);
    }
    store_acl_free(e, n);
    return buf;
}

static void test_4314_3_1_setacl_stores_replaces_and_removes(void **state)
{
    (void)state;
    store_user *u = open_user();
    char err[256];
    assert_int_equal(store_acl_set(u, "Sent", "alice@example.org", "lr", err, sizeof err), 0);
    assert_int_equal(store_acl_set(u, "INBOX", "anyone", "l", err, sizeof err), 0);
    assert_int_equal(store_acl_set(u, "Sent", "carol@example.org", "lrswi", err, sizeof err), 0);
    assert_string_equal(dump(u, NULL),
                        "INBOX anyone l;Sent alice@example.org lr;Sent carol@example.org lrswi;");
    /* one mailbox; "inbox" in any case is INBOX */
    assert_string_equal(dump(u, "inbox"), "INBOX anyone l;");
    /* replace */
    assert_int_equal(store_acl_set(u, "Sent", "alice@example.org", "lrs", err, sizeof err), 0);
    assert_string_equal(dump(u, "Sent"), "Sent alice@example.org lrs;Sent carol@example.org lrswi;");
    /* remove (3.2 DELETEACL), twice is fine */
    assert_int_equal(store_acl_set(u, "Sent", "alice@example.org", NULL, err, sizeof err), 0);
    assert_int_equal(store_acl_set(u, "Sent", "alice@example.org", "", err, sizeof err), 0);
    assert_string_equal(dump(u, "Sent"), "Sent carol@example.org lrswi;");
    /* no such mailbox */
    assert_int_equal(store_acl_set(u, "Nope", "alice@example.org", "l", err, sizeof err), STORE_ENOENT);
    assert_int_equal(store_acl_set(u, "Sent", "", "l", err, sizeof err), STORE_EINVAL);
    store_user_close(u);
    /* durable: a fresh handle sees the same */
    store_cache_clear();
    u = open_user();
    assert_string_equal(dump(u, NULL), "INBOX anyone l;Sent carol@example.org lrswi;");
    store_user_close(u);
}

static void test_4314_rename_keeps_delete_drops(void **state)
{
    (void)state;
    store_user *u = open_user();
    char err[256];
    assert_int_equal(store_mailbox_create(u, "Team", 0, err, sizeof err), 0);
    assert_int_equal(store_acl_set(u, "Team", "alice@example.org", "lr", err, sizeof err), 0);
    assert_int_equal(store_mailbox_rename(u, "Team", "Group", err, sizeof err), 0);
    assert_string_equal(dump(u, NULL), "Group alice@example.org lr;");
    assert_int_equal(store_mailbox_delete(u, "Group", err, sizeof err), 0);
    assert_string_equal(dump(u, NULL), "");
    /* a new mailbox of the old name starts with no rights for anyone */
    assert_int_equal(store_mailbox_create(u, "Group", 0, err, sizeof err), 0);
    assert_string_equal(dump(u, "Group"), "");
    store_user_close(u);
}

static void test_index_without_acl_table(void **state)
{
    (void)state;
    store_user *u = open_user();
    store_user_close(u);
    store_cache_clear();
    /* as an index made before ACLs existed */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(ROOT "/example.org/bob/index.db", &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DROP TABLE acl", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    u = open_user();
    assert_string_equal(dump(u, NULL), "");
    char err[256];
    assert_int_equal(store_acl_set(u, "INBOX", "anyone", "lr", err, sizeof err), 0);
    assert_string_equal(dump(u, NULL), "INBOX anyone lr;");
    store_user_close(u);
}

static void remove_index(void)
{
    unlink(ROOT "/example.org/bob/index.db");
    unlink(ROOT "/example.org/bob/index.db-wal");
    unlink(ROOT "/example.org/bob/index.db-shm");
}

/* The index is a cache of the files (store.h): every ACL entry, after
 * changes, removals, a rename and a delete, comes back from the acl files
 * whether rebuild starts from the old index or from none. */
static void test_4314_acl_survives_rebuild(void **state)
{
    (void)state;
    store_user *u = open_user();
    char err[256];
    assert_int_equal(store_mailbox_create(u, "Team", 0, err, sizeof err), 0);
    assert_int_equal(store_mailbox_create(u, "Gone", 0, err, sizeof err), 0);
    assert_int_equal(store_acl_set(u, "Team", "alice@example.org", "lr", err, sizeof err), 0);
    assert_int_equal(store_acl_set(u, "Team", "carol@example.org", "lrswi", err, sizeof err), 0);
    assert_int_equal(store_acl_set(u, "Team", "alice@example.org", "lrs", err, sizeof err), 0);
    assert_int_equal(store_acl_set(u, "Team", "carol@example.org", NULL, err, sizeof err), 0);
    assert_int_equal(store_acl_set(u, "INBOX", "anyone", "l", err, sizeof err), 0);
    assert_int_equal(store_acl_set(u, "Gone", "alice@example.org", "lrswipkxtea", err, sizeof err), 0);
    assert_int_equal(store_mailbox_delete(u, "Gone", err, sizeof err), 0);
    assert_int_equal(store_mailbox_rename(u, "Team", "Group", err, sizeof err), 0);
    const char *want = "Group alice@example.org lrs;INBOX anyone l;";
    assert_string_equal(dump(u, NULL), want);
    store_user_close(u);
    store_cache_clear();

    if (store_rebuild(ROOT, USER, err, sizeof err) != 0) fail_msg("rebuild: %s", err);
    u = open_user();
    assert_string_equal(dump(u, NULL), want);
    store_user_close(u);
    store_cache_clear();

    remove_index();
    if (store_rebuild(ROOT, USER, err, sizeof err) != 0) fail_msg("rebuild without index: %s", err);
    u = open_user();
    assert_string_equal(dump(u, NULL), want);
    /* the restored rows are live: changes go on from them */
    assert_int_equal(store_acl_set(u, "Group", "alice@example.org", NULL, err, sizeof err), 0);
    assert_string_equal(dump(u, NULL), "INBOX anyone l;");
    store_user_close(u);
    store_cache_clear();
    remove_index();
    if (store_rebuild(ROOT, USER, err, sizeof err) != 0) fail_msg("second rebuild: %s", err);
    u = open_user();
    assert_string_equal(dump(u, NULL), "INBOX anyone l;");
    store_user_close(u);
}

/* What the acl file may not carry: a line that would split wrongly or
 * break the format is refused, and a damaged file grants nothing extra. */
static void test_acl_file_lines_are_checked(void **state)
{
    (void)state;
    store_user *u = open_user();
    char err[256];
    assert_int_equal(store_acl_set(u, "INBOX", "evil\nanyone", "l", err, sizeof err), STORE_EINVAL);
    assert_int_equal(store_acl_set(u, "INBOX", "alice@example.org", "l r", err, sizeof err), STORE_EINVAL);
    assert_int_equal(store_acl_set(u, "INBOX", "alice@example.org", "l\n", err, sizeof err), STORE_EINVAL);
    /* an ident with a space is fine: the rights are the last field */
    assert_int_equal(store_acl_set(u, "INBOX", "odd one", "lr", err, sizeof err), 0);
    assert_string_equal(dump(u, NULL), "INBOX odd one lr;");
    store_user_close(u);
    store_cache_clear();
    /* INBOX of a new store is mailbox 1 */
    FILE *f = fopen(ROOT "/example.org/bob/mbox/1/acl", "a");
    assert_non_null(f);
    fputs("noseparator\n \nanyone \nbad\x01id lr\n", f);
    fclose(f);
    remove_index();
    if (store_rebuild(ROOT, USER, err, sizeof err) != 0) fail_msg("rebuild: %s", err);
    u = open_user();
    assert_string_equal(dump(u, NULL), "INBOX odd one lr;");
    store_user_close(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_4314_3_1_setacl_stores_replaces_and_removes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_4314_rename_keeps_delete_drops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_without_acl_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_4314_acl_survives_rebuild, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acl_file_lines_are_checked, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
