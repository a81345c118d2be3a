/* Mailbox store: durability, UIDs, rebuild, crash repair, IMAP operations.
 * Each test runs in a fresh temporary directory it chdir()s into, like the
 * daemon does with data_dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
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
    assert_int_equal(unit_tmpdir_enter("store"), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    store_cache_clear();
    assert_int_equal(unit_tmpdir_leave(), 0);
    return 0;
}

static store_user *open_user(const char *addr)
{
    char err[256] = "";
    store_user *u = store_user_open(ROOT, addr, true, err, sizeof err);
    if (!u) fail_msg("open: %s", err);
    return u;
}

static uint32_t append_text(store_user *u, const char *box, const char *text, unsigned flags)
{
    char err[256] = "";
    uint32_t uid = 0;
    int rc = store_append(u, box, text, strlen(text), flags, NULL, 0, 1700000000, &uid, err,
                          sizeof err);
    if (rc != 0) fail_msg("append: %s", err);
    return uid;
}

static char *read_msg(store_user *u, const char *box, uint32_t uid)
{
    int fd = -1;
    uint64_t size = 0;
    char err[256];
    if (store_msg_open(u, box, uid, &fd, &size, err, sizeof err) != 0) return NULL;
    char *buf = calloc(1, size + 1);
    assert_int_equal(pread(fd, buf, size, 0), (ssize_t)size);
    close(fd);
    return buf;
}

/* Directory of a mailbox, found through the meta files as rebuild does. */
static void box_dir(const char *name, char *out, size_t outlen)
{
    DIR *d = opendir(UDIR "/mbox");
    assert_non_null(d);
    struct dirent *e;
    char want[1100];
    snprintf(want, sizeof want, "name %s\n", name);
    out[0] = '\0';
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char p[512], buf[4096] = "";
        snprintf(p, sizeof p, UDIR "/mbox/%s/meta", e->d_name);
        FILE *f = fopen(p, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
        if (strstr(buf, want)) snprintf(out, outlen, UDIR "/mbox/%s", e->d_name);
    }
    closedir(d);
    assert_true(out[0] != '\0');
}

static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
    closedir(d);
    return n;
}

static void remove_index(void)
{
    unlink(UDIR "/index.db");
    unlink(UDIR "/index.db-wal");
    unlink(UDIR "/index.db-shm");
}

static int body_file(const char *text)
{
    char path[] = "/tmp/pochta-body-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    return fd;
}

/* ---- delivery ---- */

static void test_deliver_reads_back_byte_for_byte(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    const char *prefix = "Return-Path: <bob@example.net>\r\nReceived: from x\r\n";
    const char *body = "Subject: hi\r\n\r\nbinary \x01\x02\xff ok\r\n.\r\n";
    int fd = body_file(body);
    /* The body fd's own offset must be neither used nor moved. */
    assert_int_equal(lseek(fd, 7, SEEK_SET), 7);
    char err[256];
    uint32_t uid = 0;
    assert_int_equal(store_deliver(u, "INBOX", prefix, strlen(prefix), fd, strlen(body),
                                   1600000000, 0, &uid, err, sizeof err), 0);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), 7);
    close(fd);
    assert_int_equal(uid, 1);
    char *got = read_msg(u, "INBOX", uid);
    assert_non_null(got);
    char want[512];
    snprintf(want, sizeof want, "%s%s", prefix, body);
    assert_string_equal(got, want);
    free(got);

    store_msglist l;
    assert_int_equal(store_messages(u, "INBOX", 0, &l, err, sizeof err), 0);
    assert_int_equal(l.count, 1);
    assert_int_equal(l.msgs[0].size, strlen(want));
    assert_int_equal(l.msgs[0].internaldate, 1600000000);
    assert_int_equal(l.msgs[0].flags, 0);
    store_msglist_free(&l);
    /* Nothing left staged once delivery returned. */
    assert_int_equal(count_entries(UDIR "/tmp", ""), 0);
    /* internaldate is the file's mtime, so it survives without the index. */
    char dir[512], path[1024];
    box_dir("INBOX", dir, sizeof dir);
    DIR *d = opendir(dir);
    struct dirent *e;
    struct stat st = { 0 };
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "1.", 2) != 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        assert_int_equal(stat(path, &st), 0);
    }
    closedir(d);
    assert_int_equal(st.st_mtime, 1600000000);
    store_user_close(u);
}

static void test_deliver_short_body_fails_cleanly(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    int fd = body_file("short");
    char err[256];
    uint32_t uid = 0;
    assert_int_equal(store_deliver(u, "INBOX", "", 0, fd, 100, 1, 0, &uid, err, sizeof err),
                     STORE_EIO);
    close(fd);
    assert_int_equal(count_entries(UDIR "/tmp", ""), 0);
    store_status st;
    assert_int_equal(store_mailbox_status(u, "INBOX", &st, err, sizeof err), 0);
    assert_int_equal(st.messages, 0);
    assert_int_equal(store_deliver(u, "NoSuchBox", "x", 1, -1, 0, 1, 0, &uid, err, sizeof err),
                     STORE_ENOENT);
    store_user_close(u);
}

/* RFC 9051 2.3.1.1: UIDs strictly ascending. */
static void test_rfc9051_2_3_1_1_uids_ascend(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    uint32_t last = 0;
    for (int i = 0; i < 10; i++) {
        uint32_t uid = append_text(u, "INBOX", "Subject: x\r\n\r\nbody\r\n", 0);
        assert_true(uid > last);
        last = uid;
    }
    store_status st;
    char err[256];
    assert_int_equal(store_mailbox_status(u, "inbox", &st, err, sizeof err), 0);
    assert_int_equal(st.messages, 10);
    assert_int_equal(st.unseen, 10);
    assert_int_equal(st.uidnext, last + 1);
    assert_true(st.uidvalidity != 0);
    assert_int_equal(st.size, 10 * strlen("Subject: x\r\n\r\nbody\r\n"));
    store_user_close(u);
}

#define THREADS 8
#define PER_THREAD 50

struct worker {
    int id;
    uint32_t uids[PER_THREAD];
    int fd;
    int failures;
};

static void *deliver_worker(void *arg)
{
    struct worker *w = arg;
    char err[256];
    store_user *u = NULL;
    for (int i = 0; i < PER_THREAD; i++) {
        /* Reopen now and then, as SMTP does per message: every open runs
         * crash recovery while the other threads have deliveries staged. */
        if (i % 5 == 0) {
            store_user_close(u);
            u = store_user_open(ROOT, USER, true, err, sizeof err);
            if (!u) { w->failures++; return NULL; }
        }
        char prefix[64];
        snprintf(prefix, sizeof prefix, "X-Worker: %d/%d\r\n", w->id, i);
        /* Every thread reads the same body fd at once. */
        if (store_deliver(u, "INBOX", prefix, strlen(prefix), w->fd, 12, 1700000000, 0,
                          &w->uids[i], err, sizeof err) != 0)
            w->failures++;
    }
    store_user_close(u);
    return NULL;
}

static void test_concurrent_delivery_8_threads(void **state)
{
    (void)state;
    store_user_close(open_user(USER));
    int fd = body_file("\r\nshared body");   /* 12 bytes of it are delivered */
    struct worker w[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].id = i;
        w[i].fd = fd;
        assert_int_equal(pthread_create(&t[i], NULL, deliver_worker, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    close(fd);
    static uint8_t seen[THREADS * PER_THREAD * 4];
    memset(seen, 0, sizeof seen);
    store_user *u = open_user(USER);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(w[i].failures, 0);
        uint32_t last = 0;
        for (int j = 0; j < PER_THREAD; j++) {
            uint32_t uid = w[i].uids[j];
            assert_true(uid > last);     /* per-thread order is also uid order */
            last = uid;
            assert_true(uid >= 1 && uid < sizeof seen);
            assert_int_equal(seen[uid], 0);
            seen[uid] = 1;
            char *got = read_msg(u, "INBOX", uid);
            char want[64];
            snprintf(want, sizeof want, "X-Worker: %d/%d\r\n\r\nshared bod", i, j);
            assert_non_null(got);
            assert_string_equal(got, want);
            free(got);
        }
    }
    store_status st;
    char err[256];
    assert_int_equal(store_mailbox_status(u, "INBOX", &st, err, sizeof err), 0);
    assert_int_equal(st.messages, THREADS * PER_THREAD);
    assert_int_equal(st.uidnext, THREADS * PER_THREAD + 1);
    store_user_close(u);
}

/* ---- rebuild ---- */

static void test_flags_survive_rebuild(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    char err[256];
    uint32_t a = append_text(u, "INBOX", "A\r\n", 0);
    uint32_t b = append_text(u, "INBOX", "BB\r\n", STORE_DRAFT);
    uint32_t c = append_text(u, "INBOX", "CCC\r\n", 0);
    const char *kw[] = { "$Forwarded", "Work" };
    assert_int_equal(store_flags(u, "INBOX", &a, 1, STORE_FLAGS_ADD, STORE_SEEN, NULL, 0, 0, NULL,
                                 NULL, err, sizeof err), 0);
    assert_int_equal(store_flags(u, "INBOX", &b, 1, STORE_FLAGS_ADD,
                                 STORE_FLAGGED | STORE_ANSWERED | STORE_DELETED, kw, 2, 0, NULL,
                                 NULL, err, sizeof err), 0);
    const char *kw2[] = { "Work" };
    assert_int_equal(store_flags(u, "INBOX", &c, 1, STORE_FLAGS_SET, 0, kw2, 1, 0, NULL, NULL,
                                 err, sizeof err), 0);
    store_status before;
    assert_int_equal(store_mailbox_status(u, "INBOX", &before, err, sizeof err), 0);
    store_user_close(u);

    remove_index();
    /* Opening without an index rebuilds it. */
    u = open_user(USER);
    store_msglist l;
    assert_int_equal(store_messages(u, "INBOX", 0, &l, err, sizeof err), 0);
    assert_int_equal(l.count, 3);
    assert_int_equal(l.uidvalidity, before.uidvalidity);
    assert_true(l.uidnext >= before.uidnext);
    assert_true(l.highestmodseq > before.highestmodseq);
    assert_int_equal(l.msgs[0].uid, a);
    assert_int_equal(l.msgs[0].flags, STORE_SEEN);
    assert_int_equal(l.msgs[0].keywords, 0);
    assert_int_equal(l.msgs[1].uid, b);
    assert_int_equal(l.msgs[1].flags, STORE_DRAFT | STORE_FLAGGED | STORE_ANSWERED | STORE_DELETED);
    assert_int_equal(l.msgs[1].size, 4);
    assert_int_equal(l.msgs[1].internaldate, 1700000000);
    assert_int_equal(l.nkeywords, 2);
    int fw = strcmp(l.keywords[0], "$Forwarded") == 0 ? 0 : 1;
    assert_string_equal(l.keywords[fw], "$Forwarded");
    assert_string_equal(l.keywords[1 - fw], "Work");
    assert_int_equal(l.msgs[1].keywords, 3u);
    assert_int_equal(l.msgs[2].keywords, 1u << (1 - fw));
    assert_int_equal(l.msgs[2].flags, 0);
    store_msglist_free(&l);

    /* Special-use attributes and subscriptions come back too. */
    store_mailbox *mbs;
    size_t n;
    assert_int_equal(store_mailbox_list(u, &mbs, &n, err, sizeof err), 0);
    assert_int_equal(n, 6);
    for (size_t i = 0; i < n; i++) {
        assert_true(mbs[i].subscribed);
        if (strcmp(mbs[i].name, "Trash") == 0) assert_int_equal(mbs[i].attrs, STORE_MB_TRASH);
    }
    store_mailbox_list_free(mbs, n);
    store_user_close(u);

    /* The explicit tool gives the same answer on a corrupt index. */
    FILE *f = fopen(UDIR "/index.db", "w");
    fputs("this is not a database, it is garbage garbage garbage", f);
    fclose(f);
    unlink(UDIR "/index.db-wal");
    unlink(UDIR "/index.db-shm");
    assert_int_equal(store_rebuild(ROOT, USER, err, sizeof err), 0);
    u = open_user(USER);
    assert_int_equal(store_messages(u, "INBOX", 0, &l, err, sizeof err), 0);
    assert_int_equal(l.count, 3);
    assert_int_equal(l.msgs[0].flags, STORE_SEEN);
    assert_int_equal(l.uidvalidity, before.uidvalidity);
    store_msglist_free(&l);
    store_user_close(u);
}

static void test_uidnext_never_goes_back_after_expunge_and_rebuild(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    char err[256];
    uint32_t uids[5];
    for (int i = 0; i < 5; i++) uids[i] = append_text(u, "INBOX", "m\r\n", 0);
    size_t nx = 0;
    assert_int_equal(store_expunge(u, "INBOX", &uids[3], 2, NULL, &nx, err, sizeof err), 0);
    assert_int_equal(nx, 2);
    store_status before;
    assert_int_equal(store_mailbox_status(u, "INBOX", &before, err, sizeof err), 0);
    assert_int_equal(before.uidnext, uids[4] + 1);
    store_user_close(u);

    remove_index();
    assert_int_equal(store_rebuild(ROOT, USER, err, sizeof err), 0);
    u = open_user(USER);
    store_status after;
    assert_int_equal(store_mailbox_status(u, "INBOX", &after, err, sizeof err), 0);
    assert_int_equal(after.messages, 3);
    assert_int_equal(after.uidvalidity, before.uidvalidity);
    assert_true(after.uidnext >= before.uidnext);
    assert_true(after.highestmodseq > before.highestmodseq);
    uint32_t uid = append_text(u, "INBOX", "new\r\n", 0);
    assert_true(uid > uids[4]);
    /* QRESYNC: the expunge history is gone, and the store says so. */
    uint32_t *v;
    size_t nv;
    bool complete = true;
    assert_int_equal(store_vanished(u, "INBOX", before.highestmodseq - 1, &v, &nv, &complete, err,
                                    sizeof err), 0);
    assert_false(complete);
    free(v);
    store_user_close(u);
}

/* A copy that crashed after linking but before its commit leaves a file
 * whose uid is later reused: rebuild must not silently pick one. */
static void test_rebuild_duplicate_uid_changes_uidvalidity(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    char err[256];
    uint32_t uid = append_text(u, "INBOX", "one\r\n", 0);
    store_status before;
    assert_int_equal(store_mailbox_status(u, "INBOX", &before, err, sizeof err), 0);
    store_user_close(u);
    char dir[512], path[1024];
    box_dir("INBOX", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%u.0000000000000000:2,S", dir, uid);
    FILE *f = fopen(path, "w");
    fputs("other\r\n", f);
    fclose(f);
    assert_int_equal(store_rebuild(ROOT, USER, err, sizeof err), 0);
    u = open_user(USER);
    store_msglist l;
    assert_int_equal(store_messages(u, "INBOX", 0, &l, err, sizeof err), 0);
    assert_int_equal(l.count, 2);
    assert_true(l.msgs[0].uid != l.msgs[1].uid);
    assert_true(l.uidvalidity != before.uidvalidity);
    store_msglist_free(&l);
    store_user_close(u);
}

/* ---- crash repair ---- */

static void test_crash_orphan_tmp_removed_on_open(void **state)
{
    (void)state;
    store_user_close(open_user(USER));
    /* A delivery that died before its index commit: never acknowledged. */
    FILE *f = fopen(UDIR "/tmp/d.0123456789ABCDEF", "w");
    fputs("half a messa", f);
    fclose(f);
    f = fopen(UDIR "/tmp/junk", "w");
    fclose(f);
    store_user *u = open_user(USER);
    assert_int_equal(count_entries(UDIR "/tmp", ""), 0);
    store_status st;
    char err[256];
    assert_int_equal(store_mailbox_status(u, "INBOX", &st, err, sizeof err), 0);
    assert_int_equal(st.messages, 0);
    store_user_close(u);
}

/* Crash after the index commit, before the rename into the mailbox: the
 * message is readable at once and moved into place by the next open. */
static void test_crash_indexed_tmp_recovered_on_open(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    uint32_t first = append_text(u, "INBOX", "first\r\n", 0);
    store_user_close(u);
    const char *guid = "0123456789ABCDEF";
    FILE *f = fopen(UDIR "/tmp/d.0123456789ABCDEF", "w");
    fputs("Subject: survived\r\n\r\n", f);
    fclose(f);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(UDIR "/index.db", &db), SQLITE_OK);
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO msg(mailbox_id,uid,guid,flags,keywords,internaldate,size,modseq)"
             " SELECT id,uidnext,'%s',1,0,5,21,highestmodseq+1 FROM mailbox WHERE name='INBOX';"
             "UPDATE mailbox SET uidnext=uidnext+1, highestmodseq=highestmodseq+1"
             " WHERE name='INBOX';", guid);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    u = open_user(USER);
    assert_int_equal(count_entries(UDIR "/tmp", ""), 0);
    char dir[512];
    box_dir("INBOX", dir, sizeof dir);
    char name[64];
    snprintf(name, sizeof name, "%u.%s:2,S", first + 1, guid);
    assert_int_equal(count_entries(dir, name), 1);
    char *got = read_msg(u, "INBOX", first + 1);
    assert_non_null(got);
    assert_string_equal(got, "Subject: survived\r\n\r\n");
    free(got);
    store_user_close(u);
}

/* A message file sitting in the mailbox directory that the index does not
 * know (written the way delivery names it, index step skipped) is picked
 * up by rebuild with its uid and flags. */
static void test_crash_unindexed_mailbox_file_recovered_by_rebuild(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    uint32_t first = append_text(u, "INBOX", "first\r\n", 0);
    store_user_close(u);
    char dir[512], path[1024];
    box_dir("INBOX", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%u.0123456789ABCDEF:2,F", dir, first + 1);
    FILE *f = fopen(path, "w");
    fputs("Subject: orphan\r\n\r\n", f);
    fclose(f);
    char err[256];
    assert_int_equal(store_rebuild(ROOT, USER, err, sizeof err), 0);
    u = open_user(USER);
    store_msglist l;
    assert_int_equal(store_messages(u, "INBOX", 0, &l, err, sizeof err), 0);
    assert_int_equal(l.count, 2);
    assert_int_equal(l.msgs[1].uid, first + 1);
    assert_int_equal(l.msgs[1].flags, STORE_FLAGGED);
    assert_true(l.uidnext > first + 1);
    store_msglist_free(&l);
    char *got = read_msg(u, "INBOX", first + 1);
    assert_string_equal(got, "Subject: orphan\r\n\r\n");
    free(got);
    store_user_close(u);
}

/* An expunge that crashed after moving the file aside but before its commit
 * is undone: the message is still indexed, so it must still be readable. */
static void test_crash_uncommitted_expunge_undone(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    uint32_t uid = append_text(u, "INBOX", "keep me\r\n", STORE_SEEN);
    char err[256];
    store_msglist l;
    assert_int_equal(store_messages(u, "INBOX", 0, &l, err, sizeof err), 0);
    char guid[17];
    memcpy(guid, l.msgs[0].guid, 17);
    store_msglist_free(&l);
    store_user_close(u);
    char dir[512], from[1024], to[1024];
    box_dir("INBOX", dir, sizeof dir);
    snprintf(from, sizeof from, "%s/%u.%s:2,S", dir, uid, guid);
    snprintf(to, sizeof to, UDIR "/tmp/x.%s.%u.%s", strrchr(dir, '/') + 1, uid, guid);
    assert_int_equal(rename(from, to), 0);
    u = open_user(USER);
    assert_int_equal(access(from, F_OK), 0);
    char *got = read_msg(u, "INBOX", uid);
    assert_string_equal(got, "keep me\r\n");
    free(got);
    store_user_close(u);
}

/* ---- paths ---- */

static void test_address_paths_are_escaped(void **state)
{
    (void)state;
    char *p;
    p = store_user_dirname("../x@d");
    assert_string_equal(p, "d/%2e.%2fx");
    free(p);
    p = store_user_dirname("a/b@d");
    assert_string_equal(p, "d/a%2fb");
    free(p);
    p = store_user_dirname("A@D");
    char *q = store_user_dirname("a@d");
    assert_string_equal(p, q);
    assert_string_equal(p, "d/a");
    free(p);
    free(q);
    p = store_user_dirname("x@..");
    assert_string_equal(p, "%2e./x");
    free(p);
    p = store_user_dirname("\"a@b\"@Example.ORG");
    assert_string_equal(p, "example.org/%22a%40b%22");
    free(p);
    p = store_user_dirname("50%@d");      /* '%' itself escaped: no collisions */
    assert_string_equal(p, "d/50%25");
    free(p);
    assert_null(store_user_dirname("nodomain"));
    assert_null(store_user_dirname("@d"));
    assert_null(store_user_dirname("a@"));

    /* Nasty addresses stay inside the root. */
    store_user *u = open_user("../x@d");
    store_user_close(u);
    assert_int_equal(access(ROOT "/d/%2e.%2fx/index.db", F_OK), 0);
    assert_int_equal(access("x", F_OK), -1);
    u = open_user("A@D");
    append_text(u, "INBOX", "hello\r\n", 0);
    store_user_close(u);
    u = open_user("a@d");
    char *got = read_msg(u, "INBOX", 1);
    assert_string_equal(got, "hello\r\n");
    free(got);
    store_user_close(u);
    char err[256];
    assert_null(store_user_open(ROOT, "nobody@nowhere", false, err, sizeof err));
}

static void test_rfc9051_mailbox_name_rules(void **state)
{
    (void)state;
    assert_true(store_mailbox_name_valid("INBOX"));
    assert_true(store_mailbox_name_valid("a/b/c"));
    assert_true(store_mailbox_name_valid("../../etc/passwd"));   /* just a name */
    assert_true(store_mailbox_name_valid("Entw\xc3\xbcrfe"));
    assert_false(store_mailbox_name_valid(""));
    assert_false(store_mailbox_name_valid("a\nb"));
    assert_false(store_mailbox_name_valid("a\x7f"));
    assert_false(store_mailbox_name_valid("/a"));
    assert_false(store_mailbox_name_valid("a/"));
    assert_false(store_mailbox_name_valid("a//b"));
    char big[1002];
    memset(big, 'x', sizeof big);
    big[1000] = '\0';
    assert_true(store_mailbox_name_valid(big));
    big[1001] = '\0';
    big[1000] = 'x';
    assert_false(store_mailbox_name_valid(big));

    /* Names never become paths: a traversal-looking name is harmless. */
    store_user *u = open_user(USER);
    char err[256];
    assert_int_equal(store_mailbox_create(u, "../../escape", 0, err, sizeof err), 0);
    append_text(u, "../../escape", "x\r\n", 0);
    assert_int_equal(access("escape", F_OK), -1);
    assert_int_equal(access(ROOT "/escape", F_OK), -1);
    assert_int_equal(store_mailbox_create(u, "bad\r\nname", 0, err, sizeof err), STORE_EINVAL);
    store_user_close(u);
}

/* ---- mailboxes ---- */

/* RFC 6154: special-use folders for a new user. */
static void test_rfc6154_special_use_folders_for_new_user(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    store_mailbox *mbs;
    size_t n;
    char err[256];
    assert_int_equal(store_mailbox_list(u, &mbs, &n, err, sizeof err), 0);
    static const struct { const char *name; unsigned attrs; } want[] = {
        { "Archive", STORE_MB_ARCHIVE }, { "Drafts", STORE_MB_DRAFTS }, { "INBOX", 0 },
        { "Junk", STORE_MB_JUNK }, { "Sent", STORE_MB_SENT }, { "Trash", STORE_MB_TRASH },
    };
    assert_int_equal(n, 6);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(mbs[i].name, want[i].name);
        assert_int_equal(mbs[i].attrs, want[i].attrs);
        assert_true(mbs[i].subscribed);
    }
    store_mailbox_list_free(mbs, n);
    /* Opening again does not add a second set. */
    store_user_close(u);
    u = open_user(USER);
    assert_int_equal(store_mailbox_list(u, &mbs, &n, err, sizeof err), 0);
    assert_int_equal(n, 6);
    store_mailbox_list_free(mbs, n);
    store_user_close(u);
}

/* RFC 9051 6.3.4 DELETE, 6.3.5 RENAME. */
static void test_rfc9051_6_3_rename_and_delete(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    char err[256];
    assert_int_equal(store_mailbox_create(u, "Work", 0, err, sizeof err), 0);
    assert_int_equal(store_mailbox_create(u, "Work", 0, err, sizeof err), STORE_EEXIST);
    assert_int_equal(store_mailbox_create(u, "Work/2024", 0, err, sizeof err), 0);
    assert_int_equal(store_mailbox_create(u, "Workshop", 0, err, sizeof err), 0);
    uint32_t uid = append_text(u, "Work/2024", "report\r\n", 0);
    store_status st1;
    assert_int_equal(store_mailbox_status(u, "Work/2024", &st1, err, sizeof err), 0);

    assert_int_equal(store_mailbox_rename(u, "Work", "Sent", err, sizeof err), STORE_EEXIST);
    assert_int_equal(store_mailbox_rename(u, "Nope", "X", err, sizeof err), STORE_ENOENT);
    assert_int_equal(store_mailbox_rename(u, "Work", "Projects", err, sizeof err), 0);
    store_status st2;
    assert_int_equal(store_mailbox_status(u, "Work/2024", &st2, err, sizeof err), STORE_ENOENT);
    assert_int_equal(store_mailbox_status(u, "Projects/2024", &st2, err, sizeof err), 0);
    assert_int_equal(st2.uidvalidity, st1.uidvalidity);
    assert_int_equal(st2.messages, 1);
    assert_int_equal(store_mailbox_status(u, "Workshop", &st2, err, sizeof err), 0);
    char *got = read_msg(u, "Projects/2024", uid);
    assert_string_equal(got, "report\r\n");
    free(got);

    /* Into its own subtree. */
    assert_int_equal(store_mailbox_rename(u, "Projects", "Projects/Old", err, sizeof err), 0);
    assert_int_equal(store_mailbox_status(u, "Projects/Old/2024", &st2, err, sizeof err), 0);

    /* The rename is in the files too. */
    store_user_close(u);
    remove_index();
    u = open_user(USER);
    assert_int_equal(store_mailbox_status(u, "Projects/Old/2024", &st2, err, sizeof err), 0);
    assert_int_equal(st2.messages, 1);

    assert_int_equal(store_mailbox_delete(u, "INBOX", err, sizeof err), STORE_EINVAL);
    assert_int_equal(store_mailbox_delete(u, "Projects/Old/2024", err, sizeof err), 0);
    assert_int_equal(store_mailbox_status(u, "Projects/Old/2024", &st2, err, sizeof err),
                     STORE_ENOENT);
    int fd;
    assert_int_equal(store_msg_open(u, "Projects/Old/2024", uid, &fd, NULL, err, sizeof err),
                     STORE_ENOENT);
    assert_int_equal(count_entries(UDIR "/tmp", ""), 0);
    /* RFC 9051 2.3.1.1: a re-created name gets a new UIDVALIDITY. */
    assert_int_equal(store_mailbox_create(u, "Projects/Old/2024", 0, err, sizeof err), 0);
    assert_int_equal(store_mailbox_status(u, "Projects/Old/2024", &st2, err, sizeof err), 0);
    assert_true(st2.uidvalidity != st1.uidvalidity);
    assert_int_equal(st2.messages, 0);
    store_user_close(u);
}

/* RFC 9051 6.3.6: renaming INBOX moves its messages, INBOX stays, empty. */
static void test_rfc9051_6_3_6_rename_inbox(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    char err[256];
    uint32_t uid = append_text(u, "INBOX", "old mail\r\n", 0);
    assert_int_equal(store_mailbox_rename(u, "inbox", "Old", err, sizeof err), 0);
    store_status st;
    assert_int_equal(store_mailbox_status(u, "INBOX", &st, err, sizeof err), 0);
    assert_int_equal(st.messages, 0);
    assert_int_equal(store_mailbox_status(u, "Old", &st, err, sizeof err), 0);
    assert_int_equal(st.messages, 1);
    char *got = read_msg(u, "Old", uid);
    assert_string_equal(got, "old mail\r\n");
    free(got);
    store_user_close(u);
}

static void test_rfc9051_6_3_7_subscriptions(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    char err[256];
    assert_int_equal(store_subscribe(u, "Does/Not/Exist", true, err, sizeof err), 0);
    assert_int_equal(store_subscribe(u, "Junk", false, err, sizeof err), 0);
    char **names;
    size_t n;
    assert_int_equal(store_subscriptions(u, &names, &n, err, sizeof err), 0);
    assert_int_equal(n, 6);
    assert_string_equal(names[1], "Does/Not/Exist");
    for (size_t i = 0; i < n; i++) assert_string_not_equal(names[i], "Junk");
    store_strings_free(names, n);
    store_user_close(u);
    remove_index();
    u = open_user(USER);
    assert_int_equal(store_subscriptions(u, &names, &n, err, sizeof err), 0);
    assert_int_equal(n, 6);
    assert_string_equal(names[1], "Does/Not/Exist");
    store_strings_free(names, n);
    store_user_close(u);
}

/* ---- messages ---- */

static void test_rfc9051_6_4_3_expunge(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    char err[256];
    uint32_t a = append_text(u, "INBOX", "a\r\n", 0);
    uint32_t b = append_text(u, "INBOX", "bb\r\n", STORE_DELETED);
    uint32_t c = append_text(u, "INBOX", "ccc\r\n", 0);
    store_status st;
    assert_int_equal(store_mailbox_status(u, "INBOX", &st, err, sizeof err), 0);
    assert_int_equal(st.deleted, 1);
    uint64_t ms = st.highestmodseq;
    uint32_t req[] = { b, 999 }, out[2];
    size_t nx = 9;
    assert_int_equal(store_expunge(u, "INBOX", req, 2, out, &nx, err, sizeof err), 0);
    assert_int_equal(nx, 1);
    assert_int_equal(out[0], b);
    store_msglist l;
    assert_int_equal(store_messages(u, "INBOX", 0, &l, err, sizeof err), 0);
    assert_int_equal(l.count, 2);
    assert_int_equal(l.msgs[0].uid, a);
    assert_int_equal(l.msgs[1].uid, c);
    assert_true(l.highestmodseq > ms);
    store_msglist_free(&l);
    int fd;
    assert_int_equal(store_msg_open(u, "INBOX", b, &fd, NULL, err, sizeof err), STORE_ENOENT);
    char dir[512];
    box_dir("INBOX", dir, sizeof dir);
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%u.", b);
    assert_int_equal(count_entries(dir, prefix), 0);
    assert_int_equal(count_entries(UDIR "/tmp", ""), 0);
    /* RFC 7162 3.2.5.2: VANISHED (EARLIER) source. */
    uint32_t *v;
    size_t nv;
    bool complete = false;
    assert_int_equal(store_vanished(u, "INBOX", ms, &v, &nv, &complete, err, sizeof err), 0);
    assert_true(complete);
    assert_int_equal(nv, 1);
    assert_int_equal(v[0], b);
    free(v);
    store_user_close(u);
}

/* RFC 7162 3.1: MODSEQ, UNCHANGEDSINCE, CHANGEDSINCE. */
static void test_rfc7162_condstore_flags(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    char err[256];
    uint32_t uids[2];
    uids[0] = append_text(u, "INBOX", "a\r\n", 0);
    uids[1] = append_text(u, "INBOX", "b\r\n", 0);
    store_flag_result r[2];
    uint64_t hms = 0;
    assert_int_equal(store_flags(u, "INBOX", uids, 2, STORE_FLAGS_ADD, STORE_SEEN, NULL, 0, 0, r,
                                 &hms, err, sizeof err), 0);
    assert_int_equal(r[0].status, 0);
    assert_int_equal(r[0].flags, STORE_SEEN);
    assert_int_equal(r[0].modseq, hms);
    assert_int_equal(r[1].modseq, hms);
    uint64_t m1 = hms;
    /* A STORE that changes nothing does not bump MODSEQ. */
    assert_int_equal(store_flags(u, "INBOX", uids, 1, STORE_FLAGS_ADD, STORE_SEEN, NULL, 0, 0, r,
                                 &hms, err, sizeof err), 0);
    assert_int_equal(hms, m1);
    assert_int_equal(r[0].modseq, m1);
    /* Change message 2 only, then UNCHANGEDSINCE m1 fails just for it. */
    assert_int_equal(store_flags(u, "INBOX", &uids[1], 1, STORE_FLAGS_REMOVE, STORE_SEEN, NULL, 0,
                                 0, r, &hms, err, sizeof err), 0);
    assert_true(hms > m1);
    assert_int_equal(r[0].flags, 0);
    assert_int_equal(store_flags(u, "INBOX", uids, 2, STORE_FLAGS_ADD, STORE_FLAGGED, NULL, 0, m1,
                                 r, &hms, err, sizeof err), 0);
    assert_int_equal(r[0].status, 0);
    assert_int_equal(r[0].flags, STORE_SEEN | STORE_FLAGGED);
    assert_int_equal(r[1].status, STORE_EEXIST);
    assert_int_equal(r[1].flags, 0);
    uint32_t missing = 4242;
    assert_int_equal(store_flags(u, "INBOX", &missing, 1, STORE_FLAGS_SET, 0, NULL, 0, 0, r,
                                 NULL, err, sizeof err), 0);
    assert_int_equal(r[0].status, STORE_ENOENT);
    /* CHANGEDSINCE lists only what moved past the given modseq. */
    store_msglist l;
    assert_int_equal(store_messages(u, "INBOX", m1, &l, err, sizeof err), 0);
    assert_int_equal(l.count, 2);
    store_msglist_free(&l);
    assert_int_equal(store_messages(u, "INBOX", hms - 1, &l, err, sizeof err), 0);
    assert_int_equal(l.count, 1);
    assert_int_equal(l.msgs[0].uid, uids[0]);
    store_msglist_free(&l);
    /* The file name follows the flags (what rebuild reads). */
    char dir[512], name[64];
    box_dir("INBOX", dir, sizeof dir);
    assert_int_equal(store_messages(u, "INBOX", 0, &l, err, sizeof err), 0);
    snprintf(name, sizeof name, "%u.%s:2,FS", uids[0], l.msgs[0].guid);
    store_msglist_free(&l);
    assert_int_equal(count_entries(dir, name), 1);
    store_user_close(u);
}

static void test_keywords_limit_and_validation(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    char err[256];
    uint32_t uid = append_text(u, "INBOX", "k\r\n", 0);
    char names[STORE_MAX_KEYWORDS + 1][8];
    const char *kw[STORE_MAX_KEYWORDS + 1];
    for (int i = 0; i <= STORE_MAX_KEYWORDS; i++) {
        snprintf(names[i], sizeof names[i], "k%d", i);
        kw[i] = names[i];
    }
    assert_int_equal(store_flags(u, "INBOX", &uid, 1, STORE_FLAGS_ADD, 0, kw, STORE_MAX_KEYWORDS,
                                 0, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(store_flags(u, "INBOX", &uid, 1, STORE_FLAGS_ADD, 0,
                                 &kw[STORE_MAX_KEYWORDS], 1, 0, NULL, NULL, err, sizeof err),
                     STORE_ELIMIT);
    /* Case-insensitive match of an existing keyword uses its slot. */
    const char *up[] = { "K3" };
    store_flag_result r;
    assert_int_equal(store_flags(u, "INBOX", &uid, 1, STORE_FLAGS_REMOVE, 0, up, 1, 0, &r, NULL,
                                 err, sizeof err), 0);
    assert_int_equal(r.keywords, ((1u << STORE_MAX_KEYWORDS) - 1) & ~(1u << 3));
    const char *bad[] = { "has space" };
    assert_int_equal(store_flags(u, "INBOX", &uid, 1, STORE_FLAGS_ADD, 0, bad, 1, 0, NULL, NULL,
                                 err, sizeof err), STORE_EINVAL);
    const char *sys[] = { "\\Seen" };
    assert_int_equal(store_append(u, "INBOX", "x", 1, 0, sys, 1, 1, &uid, err, sizeof err),
                     STORE_EINVAL);
    store_user_close(u);
}

/* RFC 9051 6.4.7 COPY, RFC 6851 MOVE, RFC 4315 COPYUID. */
static void test_rfc9051_6_4_7_copy_and_move(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    char err[256];
    const char *kw[] = { "$Important" };
    uint32_t src[2];
    assert_int_equal(store_append(u, "INBOX", "one\r\n", 5, STORE_SEEN, kw, 1, 1234, &src[0], err,
                                  sizeof err), 0);
    src[1] = append_text(u, "INBOX", "two\r\n", 0);
    append_text(u, "Archive", "already\r\n", 0);
    uint32_t req[3] = { src[0], 777, src[1] }, nu[3];
    uint32_t uidv = 0;
    assert_int_equal(store_copy(u, "INBOX", req, 3, "Archive", false, nu, &uidv, err, sizeof err),
                     0);
    store_status st;
    assert_int_equal(store_mailbox_status(u, "Archive", &st, err, sizeof err), 0);
    assert_int_equal(uidv, st.uidvalidity);
    assert_int_equal(st.messages, 3);
    assert_int_equal(nu[0], 2);
    assert_int_equal(nu[1], 0);
    assert_int_equal(nu[2], 3);
    store_msglist l;
    assert_int_equal(store_messages(u, "Archive", 0, &l, err, sizeof err), 0);
    assert_int_equal(l.msgs[1].uid, nu[0]);
    assert_int_equal(l.msgs[1].flags, STORE_SEEN);
    assert_int_equal(l.msgs[1].internaldate, 1234);
    assert_int_equal(l.nkeywords, 1);
    assert_string_equal(l.keywords[0], "$Important");
    assert_int_equal(l.msgs[1].keywords, 1);
    store_msglist_free(&l);
    char *got = read_msg(u, "Archive", nu[0]);
    assert_string_equal(got, "one\r\n");
    free(got);
    /* The source is untouched by COPY. */
    assert_int_equal(store_mailbox_status(u, "INBOX", &st, err, sizeof err), 0);
    assert_int_equal(st.messages, 2);

    /* MOVE: gone from the source, present in the target. */
    uint32_t mv[1];
    assert_int_equal(store_copy(u, "INBOX", &src[1], 1, "Trash", true, mv, NULL, err, sizeof err),
                     0);
    assert_int_equal(mv[0], 1);
    assert_int_equal(store_mailbox_status(u, "INBOX", &st, err, sizeof err), 0);
    assert_int_equal(st.messages, 1);
    int fd;
    assert_int_equal(store_msg_open(u, "INBOX", src[1], &fd, NULL, err, sizeof err), STORE_ENOENT);
    got = read_msg(u, "Trash", mv[0]);
    assert_string_equal(got, "two\r\n");
    free(got);
    assert_int_equal(store_copy(u, "INBOX", src, 1, "INBOX", true, NULL, NULL, err, sizeof err),
                     STORE_EINVAL);
    assert_int_equal(store_copy(u, "INBOX", src, 1, "Nope", false, NULL, NULL, err, sizeof err),
                     STORE_ENOENT);
    /* Copies count in quota (RFC 9208 STORAGE is per stored message). */
    uint64_t bytes = 0, msgs = 0;
    assert_int_equal(store_quota_usage(u, &bytes, &msgs, err, sizeof err), 0);
    assert_int_equal(msgs, 5);
    assert_int_equal(bytes, 5 + 9 + 5 + 5 + 5);
    assert_int_equal(count_entries(UDIR "/tmp", ""), 0);
    store_user_close(u);
}

/* ---- mailbox_fsync (store_set_fsync) ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One line per message file of a mailbox directory, guid left out (it is
 * random): "uid:2,letters", sorted. */
static void put_names(FILE *out, const char *box)
{
    char dir[512];
    box_dir(box, dir, sizeof dir);
    DIR *d = opendir(dir);
    assert_non_null(d);
    char *names[64];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *dot = strchr(e->d_name, '.'), *colon = strchr(e->d_name, ':');
        if (e->d_name[0] < '1' || e->d_name[0] > '9' || !dot || !colon) continue;
        assert_true(n < 64);
        names[n] = calloc(1, strlen(e->d_name) + 1);
        snprintf(names[n], strlen(e->d_name) + 1, "%.*s%s", (int)(dot - e->d_name), e->d_name,
                 colon);
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp_str);
    for (size_t i = 0; i < n; i++) {
        fprintf(out, " %s", names[i]);
        free(names[i]);
    }
    fputc('\n', out);
}

/* Everything a client can see of the user's store after the script below,
 * except what is random or the clock's (guids, UIDVALIDITY). */
static char *fsync_script(enum store_fsync mode)
{
    store_set_fsync(mode);
    store_user *u = open_user(USER);
    char err[256];
    uint32_t uid[6];
    for (int i = 0; i < 6; i++) {
        char text[64];
        snprintf(text, sizeof text, "Subject: %d\r\n\r\nbody %d\r\n", i, i);
        uid[i] = append_text(u, "INBOX", text, i == 5 ? STORE_ANSWERED : 0);
    }
    const char *junk[] = { "$Junk" };
    store_flag_result r[3];
    assert_int_equal(store_flags(u, "INBOX", uid, 3, STORE_FLAGS_ADD, STORE_SEEN, NULL, 0, 0, r,
                                 NULL, err, sizeof err), 0);
    uint32_t two_four[2] = { uid[1], uid[3] };
    assert_int_equal(store_flags(u, "INBOX", two_four, 2, STORE_FLAGS_ADD, 0, junk, 1, 0, NULL,
                                 NULL, err, sizeof err), 0);
    assert_int_equal(store_flags(u, "INBOX", &uid[1], 1, STORE_FLAGS_REMOVE, STORE_SEEN, NULL, 0,
                                 0, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(store_flags(u, "INBOX", &uid[4], 1, STORE_FLAGS_SET,
                                 STORE_FLAGGED | STORE_DRAFT, NULL, 0, 0, NULL, NULL, err,
                                 sizeof err), 0);
    /* CONDSTORE: a stale UNCHANGEDSINCE changes nothing. */
    assert_int_equal(store_flags(u, "INBOX", &uid[5], 1, STORE_FLAGS_ADD, STORE_DELETED, NULL, 0,
                                 1, r, NULL, err, sizeof err), 0);
    assert_int_equal(r[0].status, STORE_EEXIST);
    uint32_t one_four[2] = { uid[0], uid[3] }, gone[2];
    size_t ngone = 0;
    assert_int_equal(store_expunge(u, "INBOX", one_four, 2, gone, &ngone, err, sizeof err), 0);
    assert_int_equal(ngone, 2);
    assert_int_equal(store_copy(u, "INBOX", &uid[2], 1, "Trash", false, NULL, NULL, err,
                                sizeof err), 0);
    assert_int_equal(store_copy(u, "INBOX", &uid[4], 1, "Archive", true, NULL, NULL, err,
                                sizeof err), 0);
    store_user_close(u);
    /* A fresh handle, as after a restart: what is on disk, not in a cache. */
    store_cache_clear();
    u = open_user(USER);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    const char *boxes[] = { "INBOX", "Trash", "Archive" };
    for (size_t b = 0; b < 3; b++) {
        store_msglist l;
        assert_int_equal(store_messages(u, boxes[b], 0, &l, err, sizeof err), 0);
        fprintf(out, "%s uidnext %u highestmodseq %llu\n", boxes[b], l.uidnext,
                (unsigned long long)l.highestmodseq);
        for (size_t i = 0; i < l.count; i++) {
            const store_msginfo *m = &l.msgs[i];
            char *body = read_msg(u, boxes[b], m->uid);
            assert_non_null(body);
            fprintf(out, "  %u flags %u kw %u modseq %llu size %llu %s", m->uid, m->flags,
                    m->keywords, (unsigned long long)m->modseq, (unsigned long long)m->size,
                    body);
            free(body);
        }
        uint32_t *v;
        size_t nv;
        bool complete;
        assert_int_equal(store_vanished(u, boxes[b], 0, &v, &nv, &complete, err, sizeof err), 0);
        fprintf(out, "  vanished");
        for (size_t i = 0; i < nv; i++) fprintf(out, " %u", v[i]);
        free(v);
        fprintf(out, "\n  files");
        put_names(out, boxes[b]);
        store_msglist_free(&l);
    }
    fclose(out);
    assert_int_equal(count_entries(UDIR "/tmp", ""), 0);
    store_user_close(u);
    store_cache_clear();
    store_set_fsync(STORE_FSYNC_ALWAYS);
    return text;
}

static void test_mailbox_fsync_modes_store_the_same(void **state)
{
    (void)state;
    char *always = fsync_script(STORE_FSYNC_ALWAYS);
    assert_int_equal(unit_tmpdir_leave(), 0);
    assert_int_equal(unit_tmpdir_enter("store"), 0);
    char *optimized = fsync_script(STORE_FSYNC_OPTIMIZED);
    assert_string_equal(optimized, always);
    /* And it is the expected result, file names included (flags letters
     * follow the index): 2 lost \Seen and got $Junk (slot a), 3 kept
     * \Seen, 6 kept \Answered; 1 and 4 expunged, 5 moved to Archive. */
    assert_non_null(strstr(always, "  2 flags 0 kw 1 "));
    assert_non_null(strstr(always, "  3 flags 1 kw 0 "));
    assert_non_null(strstr(always, "  6 flags 2 kw 0 "));
    assert_non_null(strstr(always, "vanished 1 4 5\n  files 2:2,a 3:2,S 6:2,R\n"));
    assert_non_null(strstr(always, "Archive uidnext 2 "));
    assert_non_null(strstr(always, "  1 flags 20 kw 0 "));
    assert_non_null(strstr(always, "files 1:2,DF\n"));
    free(always);
    free(optimized);
}

/* kill -9 between a flag change's renames and its commit: the names are
 * ahead of the index, and the lock file's marker names the change. */
static void test_crash_unfinished_flag_change_renamed_back(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    uint32_t uid = append_text(u, "INBOX", "flags\r\n", STORE_SEEN);
    char err[256];
    store_msglist l;
    assert_int_equal(store_messages(u, "INBOX", 0, &l, err, sizeof err), 0);
    char guid[17];
    memcpy(guid, l.msgs[0].guid, 17);
    unsigned long long hms = (unsigned long long)l.highestmodseq;
    store_msglist_free(&l);
    store_user_close(u);
    store_cache_clear();
    char dir[512], indexed[1024], ahead[1024];
    box_dir("INBOX", dir, sizeof dir);
    snprintf(indexed, sizeof indexed, "%s/%u.%s:2,S", dir, uid, guid);
    snprintf(ahead, sizeof ahead, "%s/%u.%s:2,FS", dir, uid, guid);
    assert_int_equal(rename(indexed, ahead), 0);
    /* A marker of a change that committed leaves names alone... */
    FILE *f = fopen(UDIR "/lock", "r+");
    assert_non_null(f);
    fprintf(f, "F %s %llu", strrchr(dir, '/') + 1, hms);
    fclose(f);
    u = open_user(USER);
    store_user_close(u);
    store_cache_clear();
    assert_int_equal(access(ahead, F_OK), 0);
    /* ...one above the mailbox's highestmodseq did not commit. */
    f = fopen(UDIR "/lock", "r+");
    fprintf(f, "F %s %llu", strrchr(dir, '/') + 1, hms + 1);
    fclose(f);
    u = open_user(USER);
    assert_int_equal(access(indexed, F_OK), 0);
    assert_int_equal(access(ahead, F_OK), -1);
    char *got = read_msg(u, "INBOX", uid);
    assert_string_equal(got, "flags\r\n");
    free(got);
    store_user_close(u);
}

/* A power loss under mailbox_fsync=optimized may undo an expunge's commit
 * but keep its unlink: a row without its file.  STORE and EXPUNGE of it
 * still work (the index is the truth), so the user can get rid of it. */
static void test_row_without_file_can_be_flagged_and_expunged(void **state)
{
    (void)state;
    store_set_fsync(STORE_FSYNC_OPTIMIZED);
    store_user *u = open_user(USER);
    uint32_t uid = append_text(u, "INBOX", "lost\r\n", 0);
    char err[256], dir[512], path[1024];
    store_msglist l;
    assert_int_equal(store_messages(u, "INBOX", 0, &l, err, sizeof err), 0);
    box_dir("INBOX", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%u.%s:2,", dir, uid, l.msgs[0].guid);
    store_msglist_free(&l);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(store_flags(u, "INBOX", &uid, 1, STORE_FLAGS_ADD, STORE_DELETED, NULL, 0, 0,
                                 NULL, NULL, err, sizeof err), 0);
    size_t n = 0;
    assert_int_equal(store_expunge(u, "INBOX", &uid, 1, NULL, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    store_status st;
    assert_int_equal(store_mailbox_status(u, "INBOX", &st, err, sizeof err), 0);
    assert_int_equal(st.messages, 0);
    store_user_close(u);
    store_set_fsync(STORE_FSYNC_ALWAYS);
}

/* ---- the message cache ---------------------------------------------------- */

/* Entry `field` of uid as a string ("" when there is none). */
static char *cached(store_user *u, const char *box, uint32_t uid, int field, int *rc)
{
    char err[256], *data = NULL;
    size_t len = 0;
    *rc = store_msgcache_get(u, box, uid, field, &data, &len, err, sizeof err);
    if (*rc < 0) fail_msg("msgcache_get: %s", err);
    if (*rc == 0) assert_int_equal(strlen(data), len);
    return data ? data : strdup("");
}

static void assert_cached(store_user *u, const char *box, uint32_t uid, const char *want)
{
    int rc;
    char *got = cached(u, box, uid, STORE_MSGCACHE_HEADER, &rc);
    if (want) {
        assert_int_equal(rc, 0);
        assert_string_equal(got, want);
    } else {
        assert_int_equal(rc, 1);
    }
    free(got);
}

/* Rows of a table of the index, read behind the store's back. */
static int table_rows(const char *table)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(UDIR "/index.db", &db), SQLITE_OK);
    char sql[64];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int n = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

static void test_msgcache_header_kept_at_delivery(void **state)
{
    (void)state;
    store_set_header_cache(64);
    store_user *u = open_user(USER);
    /* Header block with its empty line; no empty line (the whole message);
     * a header over the limit; an empty line exactly at the limit. */
    uint32_t a = append_text(u, "INBOX", "Subject: a\r\nFrom: x@y\r\n\r\nbody\r\n", 0);
    uint32_t b = append_text(u, "INBOX", "Subject: no body\r\n", 0);
    char big[200];
    snprintf(big, sizeof big, "Subject: %0100d\r\n\r\nbody\r\n", 7);
    uint32_t c = append_text(u, "INBOX", big, 0);
    char edge[80];
    snprintf(edge, sizeof edge, "X: %057d\r\n\r\nrest", 1);     /* header of 64 bytes */
    assert_int_equal(strlen(edge) - 4, 64);
    uint32_t d = append_text(u, "INBOX", edge, 0);
    /* A bare LF header ends at LF LF as the MIME parser sees it. */
    uint32_t e = append_text(u, "INBOX", "Subject: lf\n\nbody\n", 0);

    assert_cached(u, "INBOX", a, "Subject: a\r\nFrom: x@y\r\n\r\n");
    assert_cached(u, "INBOX", b, "Subject: no body\r\n");
    assert_cached(u, "INBOX", c, NULL);
    edge[64] = '\0';
    assert_cached(u, "INBOX", d, edge);
    assert_cached(u, "INBOX", e, "Subject: lf\n\n");
    assert_cached(u, "INBOX", 999, NULL);

    /* SMTP's path: a prefix (the trace fields) and a body from a file. */
    char err[256];
    static const char body[] = "Subject: smtp\r\n\r\nhello\r\n";
    static const char prefix[] = "Received: by test\r\n";
    int fd = body_file(body);
    uint32_t f = 0;
    assert_int_equal(store_deliver(u, "INBOX", prefix, strlen(prefix), fd, strlen(body), 1700000000,
                                   0, &f, err, sizeof err), 0);
    close(fd);
    assert_cached(u, "INBOX", f, "Received: by test\r\nSubject: smtp\r\n\r\n");

    /* 0 turns it off. */
    store_set_header_cache(0);
    uint32_t g = append_text(u, "INBOX", "Subject: g\r\n\r\nx", 0);
    assert_cached(u, "INBOX", g, NULL);
    store_set_header_cache(16384);
    store_user_close(u);
}

static void test_msgcache_follows_copies_expunge_delete_rebuild(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    char err[256];
    const char *hdr = "Subject: kept\r\n\r\n";
    uint32_t a = append_text(u, "INBOX", "Subject: kept\r\n\r\nbody\r\n", 0);
    uint32_t b = append_text(u, "INBOX", "Subject: other\r\n\r\nbody\r\n", 0);
    assert_int_equal(table_rows("cache"), 2);

    /* A copy shares the entry; expunging the original keeps it for the copy. */
    uint32_t ca = 0;
    assert_int_equal(store_copy(u, "INBOX", &a, 1, "Archive", false, &ca, NULL, err, sizeof err), 0);
    assert_cached(u, "Archive", ca, hdr);
    assert_int_equal(table_rows("cache"), 2);
    assert_int_equal(store_expunge(u, "INBOX", &a, 1, NULL, NULL, err, sizeof err), 0);
    assert_cached(u, "INBOX", a, NULL);
    assert_cached(u, "Archive", ca, hdr);
    assert_int_equal(table_rows("cache"), 2);

    /* MOVE keeps it too (the new row exists before the old one goes). */
    uint32_t mb = 0;
    assert_int_equal(store_copy(u, "INBOX", &b, 1, "Trash", true, &mb, NULL, err, sizeof err), 0);
    assert_cached(u, "Trash", mb, "Subject: other\r\n\r\n");
    assert_int_equal(table_rows("cache"), 2);

    /* Owner-supplied entries sit beside the header and go with it. */
    const char *data[] = { "(\"TEXT\" \"PLAIN\")" };
    size_t len[] = { strlen(data[0]) };
    const int field[] = { STORE_MSGCACHE_USER, STORE_MSGCACHE_USER };
    assert_int_equal(store_msgcache_put(u, "Trash", &mb, field, data, len, 1, err, sizeof err), 0);
    int rc;
    char *got = cached(u, "Trash", mb, STORE_MSGCACHE_USER, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(got, data[0]);
    free(got);
    /* An existing entry is kept, a missing uid is skipped. */
    const char *other[] = { "changed", "none" };
    size_t olen[] = { 7, 4 };
    uint32_t uids[] = { mb, 4242 };
    assert_int_equal(store_msgcache_put(u, "Trash", uids, field, other, olen, 2, err, sizeof err), 0);
    got = cached(u, "Trash", mb, STORE_MSGCACHE_USER, &rc);
    assert_string_equal(got, data[0]);
    free(got);
    assert_int_equal(table_rows("cache"), 3);

    /* Deleting a mailbox drops what only it had. */
    assert_int_equal(store_mailbox_delete(u, "Trash", err, sizeof err), 0);
    assert_int_equal(table_rows("cache"), 1);
    store_user_close(u);

    /* A rebuild from the files fills the header entries again. */
    remove_index();
    u = open_user(USER);
    assert_cached(u, "Archive", ca, hdr);
    assert_int_equal(table_rows("cache"), 1);
    store_user_close(u);
}

static void test_msgcache_index_upgraded_from_version_1(void **state)
{
    (void)state;
    store_user *u = open_user(USER);
    uint32_t a = append_text(u, "INBOX", "Subject: old\r\n\r\nbody\r\n", 0);
    store_user_close(u);
    store_cache_clear();
    /* Make it look like an index written before version 2. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(UDIR "/index.db", &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DROP TABLE cache; DROP INDEX msg_modseq; DROP INDEX expunged_modseq;"
                                      " PRAGMA user_version=1;", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    u = open_user(USER);
    /* Older mail has no entry (the file is read instead); new mail has. */
    assert_cached(u, "INBOX", a, NULL);
    char *m = read_msg(u, "INBOX", a);
    assert_string_equal(m, "Subject: old\r\n\r\nbody\r\n");
    free(m);
    uint32_t b = append_text(u, "INBOX", "Subject: new\r\n\r\nbody\r\n", 0);
    assert_cached(u, "INBOX", b, "Subject: new\r\n\r\n");
    char err[256];
    uint32_t *gone = NULL;
    size_t ngone = 0;
    assert_int_equal(store_expunge(u, "INBOX", &a, 1, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(store_vanished(u, "INBOX", 0, &gone, &ngone, NULL, err, sizeof err), 0);
    assert_int_equal(ngone, 1);
    assert_int_equal(gone[0], a);
    free(gone);
    store_user_close(u);
}

static void test_rfc7162_expunge_history_is_bounded(void **state)
{
    (void)state;
    store_set_expunge_history(5);
    store_user *u = open_user(USER);
    char err[256];
    uint64_t seen_at = 0;
    uint32_t last[3];
    /* Each round APPENDs a \Deleted message and expunges it; the expunge
     * of uid 64 and of uid 128 trim the history. */
    for (int i = 0; i < 150; i++) {
        uint32_t uid = append_text(u, "INBOX", "Subject: x\r\n\r\nx\r\n", STORE_DELETED);
        if (i == 140) {
            store_status st;
            assert_int_equal(store_mailbox_status(u, "INBOX", &st, err, sizeof err), 0);
            seen_at = st.highestmodseq;
        }
        if (i >= 147) last[i - 147] = uid;
        assert_int_equal(store_expunge(u, "INBOX", &uid, 1, NULL, NULL, err, sizeof err), 0);
    }
    store_user_close(u);
    store_set_expunge_history(10000);

    /* What is left: about the last 5, plus what came since the last trim. */
    /* Trimmed at uid 128 to 5, then 22 more: at most 5 + 63 at any time. */
    assert_int_equal(table_rows("expunged"), 5 + (150 - 128));

    u = open_user(USER);
    uint32_t *gone = NULL;
    size_t n = 0;
    bool complete = true;
    /* From the start: no longer known, the caller must compare uids. */
    assert_int_equal(store_vanished(u, "INBOX", 0, &gone, &n, &complete, err, sizeof err), 0);
    assert_false(complete);
    free(gone);
    /* From recently: complete and exact. */
    assert_int_equal(store_vanished(u, "INBOX", seen_at, &gone, &n, &complete, err, sizeof err), 0);
    assert_true(complete);
    assert_true(n >= 3);
    assert_int_equal(gone[n - 3], last[0]);
    assert_int_equal(gone[n - 2], last[1]);
    assert_int_equal(gone[n - 1], last[2]);
    free(gone);
    store_user_close(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_deliver_reads_back_byte_for_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deliver_short_body_fails_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rfc9051_2_3_1_1_uids_ascend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_delivery_8_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flags_survive_rebuild, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uidnext_never_goes_back_after_expunge_and_rebuild,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_duplicate_uid_changes_uidvalidity, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_crash_orphan_tmp_removed_on_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_indexed_tmp_recovered_on_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_unindexed_mailbox_file_recovered_by_rebuild,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_uncommitted_expunge_undone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_address_paths_are_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rfc9051_mailbox_name_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rfc6154_special_use_folders_for_new_user, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rfc9051_6_3_rename_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rfc9051_6_3_6_rename_inbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rfc9051_6_3_7_subscriptions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rfc9051_6_4_3_expunge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rfc7162_condstore_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keywords_limit_and_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rfc9051_6_4_7_copy_and_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mailbox_fsync_modes_store_the_same, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_unfinished_flag_change_renamed_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rfc7162_expunge_history_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msgcache_header_kept_at_delivery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msgcache_follows_copies_expunge_delete_rebuild, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_msgcache_index_upgraded_from_version_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_row_without_file_can_be_flagged_and_expunged, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
