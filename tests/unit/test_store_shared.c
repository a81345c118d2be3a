/* Store handles shared between sessions: store_user_borrow() hands a job
 * the user's idle handle from the process-wide cache (or a new one), so
 * long-lived sessions hold no handle between jobs.  Each test runs in a
 * fresh temporary directory it chdir()s into, like the daemon. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "unit_tmpdir.h"

#define ROOT "mail"
#define USER "alice@example.org"
#define UDIR ROOT "/example.org/alice"

static int setup(void **state)
{
    (void)state;
    assert_int_equal(unit_tmpdir_enter("shared"), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    store_cache_clear();
    assert_int_equal(unit_tmpdir_leave(), 0);
    return 0;
}

static store_user *borrow(const char *addr)
{
    char err[256] = "";
    store_user *u = store_user_borrow(ROOT, addr, err, sizeof err);
    if (!u) fail_msg("borrow: %s", err);
    return u;
}

static uint32_t append_text(store_user *u, const char *text)
{
    char err[256] = "";
    uint32_t uid = 0;
    if (store_append(u, "INBOX", text, strlen(text), 0, NULL, 0, 1700000000, &uid, err, sizeof err) != 0)
        fail_msg("append: %s", err);
    return uid;
}

static size_t inbox_count(store_user *u)
{
    store_msglist l;
    char err[256] = "";
    if (store_messages(u, "INBOX", 0, &l, err, sizeof err) != 0) fail_msg("messages: %s", err);
    size_t n = l.count;
    store_msglist_free(&l);
    return n;
}

static void create_user(const char *addr)
{
    char err[256] = "";
    store_user *u = store_user_open(ROOT, addr, true, err, sizeof err);
    if (!u) fail_msg("open: %s", err);
    store_user_close(u);
}

/* A job after the first gets the handle the last one gave back: no new
 * SQLite connection per command. */
static void test_borrow_reuses_the_idle_handle(void **state)
{
    (void)state;
    create_user(USER);
    store_user *a = borrow(USER);
    append_text(a, "one\r\n");
    store_user_close(a);
    store_user *b = borrow(USER);
    assert_ptr_equal(a, b);
    assert_int_equal(inbox_count(b), 1);
    store_user_close(b);
}

/* Borrowing never creates a user: its store must have been opened (and so
 * created) by a login first. */
static void test_borrow_does_not_create(void **state)
{
    (void)state;
    char err[256] = "";
    assert_null(store_user_borrow(ROOT, "nobody@example.org", err, sizeof err));
    assert_true(err[0] != '\0');
    struct stat st;
    assert_int_not_equal(stat(ROOT "/example.org/nobody", &st), 0);
}

/* Two jobs of one user at once get two handles; what one commits the
 * other sees, and both go back to the cache. */
static void test_two_jobs_of_one_user_at_once(void **state)
{
    (void)state;
    create_user(USER);
    store_user *a = borrow(USER);
    store_user *b = borrow(USER);
    assert_ptr_not_equal(a, b);
    append_text(a, "from a\r\n");
    assert_int_equal(inbox_count(b), 1);
    append_text(b, "from b\r\n");
    assert_int_equal(inbox_count(a), 2);
    store_user_close(a);
    store_user_close(b);
    store_user *c = borrow(USER);
    assert_true(c == a || c == b);
    store_user_close(c);
}

/* A cached handle whose user directory was replaced (user deleted and
 * created again) is not handed out: the job sees the new store. */
static void test_borrow_skips_a_stale_handle(void **state)
{
    (void)state;
    create_user(USER);
    store_user *a = borrow(USER);
    append_text(a, "old\r\n");
    store_user_close(a);
    assert_int_equal(rename(UDIR, ROOT "/example.org/alice.old"), 0);
    create_user(USER);
    store_user *b = borrow(USER);
    assert_int_equal(inbox_count(b), 0);
    store_user_close(b);
}

/* Unlike store_user_open(), borrowing does not run the crash repair of
 * tmp/ (which would wait on other handles' writes); the next full open
 * still does. */
static void test_borrow_leaves_crash_repair_to_open(void **state)
{
    (void)state;
    create_user(USER);
    FILE *f = fopen(UDIR "/tmp/d.0123456789ABCDEF", "w");
    assert_non_null(f);
    fputs("half a messa", f);
    fclose(f);
    store_user *u = borrow(USER);
    struct stat st;
    assert_int_equal(stat(UDIR "/tmp/d.0123456789ABCDEF", &st), 0);
    store_user_close(u);
    create_user(USER);
    assert_int_not_equal(stat(UDIR "/tmp/d.0123456789ABCDEF", &st), 0);
}

struct worker_arg {
    int n;
    int failures;
};

static void *worker(void *p)
{
    struct worker_arg *w = p;
    for (int i = 0; i < w->n; i++) {
        char err[256];
        store_user *u = store_user_borrow(ROOT, USER, err, sizeof err);
        if (!u) { w->failures++; continue; }
        uint32_t uid = 0;
        if (store_append(u, "INBOX", "x\r\n", 3, 0, NULL, 0, 1700000000, &uid, err, sizeof err) != 0)
            w->failures++;
        store_user_close(u);
    }
    return NULL;
}

/* Sessions of one user on several worker threads, each job borrowing and
 * giving back: no handle is ever used by two threads (that would corrupt
 * SQLite's connection state or lose appends). */
static void test_threads_borrow_concurrently(void **state)
{
    (void)state;
    create_user(USER);
    enum { T = 4, N = 25 };
    pthread_t th[T];
    struct worker_arg args[T];
    for (int i = 0; i < T; i++) {
        args[i] = (struct worker_arg){ N, 0 };
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
    store_user *u = borrow(USER);
    assert_int_equal(inbox_count(u), T * N);
    store_user_close(u);
}

/* A borrowed handle serves one command from one snapshot: what another
 * handle commits meanwhile shows only after this one writes (a write works
 * on the newest state) or is given back and borrowed again. */
static void test_borrowed_handle_reads_one_snapshot(void **state)
{
    (void)state;
    create_user(USER);
    store_user *a = borrow(USER);
    store_user *b = borrow(USER);
    assert_int_equal(inbox_count(a), 0);
    append_text(b, "from b\r\n");
    assert_int_equal(inbox_count(a), 0);
    /* STATUS (its own BEGIN) reads inside the same snapshot. */
    store_status st;
    char err[256] = "";
    assert_int_equal(store_mailbox_status(a, "INBOX", &st, err, sizeof err), 0);
    assert_int_equal(st.messages, 0);
    assert_int_equal(inbox_count(a), 0);
    append_text(a, "from a\r\n");
    assert_int_equal(inbox_count(a), 2);
    store_user_close(a);
    store_user_close(b);
    store_user *c = borrow(USER);
    append_text(c, "again\r\n");
    assert_int_equal(inbox_count(c), 3);
    store_user_close(c);
}

/* A message opened by uid inside a snapshot, twice (the mailbox id is
 * looked up once per snapshot), and a uid that does not exist. */
static void test_msg_open_in_a_snapshot(void **state)
{
    (void)state;
    create_user(USER);
    store_user *u = borrow(USER);
    uint32_t uid = append_text(u, "Subject: x\r\n\r\nbody\r\n");
    store_user_close(u);
    u = borrow(USER);
    char err[256] = "";
    for (int i = 0; i < 2; i++) {
        int fd = -1;
        uint64_t size = 0;
        assert_int_equal(store_msg_open(u, "inbox", uid, &fd, &size, err, sizeof err), 0);
        assert_true(fd >= 0);
        assert_int_equal(size, strlen("Subject: x\r\n\r\nbody\r\n"));
        close(fd);
    }
    int fd = -1;
    assert_int_equal(store_msg_open(u, "INBOX", uid + 1, &fd, NULL, err, sizeof err), STORE_ENOENT);
    store_user_close(u);
}

/* Closing the user's last SQLite connection (the cache evicting it)
 * neither checkpoints nor deletes the WAL: the stamp idle sessions poll
 * stays the same, and the next open replays the WAL. */
static void test_last_close_keeps_the_stamp(void **state)
{
    (void)state;
    create_user(USER);
    store_user *u = borrow(USER);
    append_text(u, "one\r\n");
    store_user_close(u);
    store_stamp before, after;
    assert_int_equal(store_user_stamp(ROOT, USER, &before), 0);
    store_cache_clear();
    assert_int_equal(store_user_stamp(ROOT, USER, &after), 0);
    assert_memory_equal(&before, &after, sizeof before);
    struct stat st;
    assert_int_equal(stat(UDIR "/index.db-wal", &st), 0);
    u = borrow(USER);
    assert_int_equal(inbox_count(u), 1);
    store_user_close(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_borrow_reuses_the_idle_handle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_borrow_does_not_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_jobs_of_one_user_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_borrow_skips_a_stale_handle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_borrow_leaves_crash_repair_to_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_borrow_concurrently, setup, teardown),
        cmocka_unit_test_setup_teardown(test_borrowed_handle_reads_one_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msg_open_in_a_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_close_keeps_the_stamp, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
