/* Outbound queue: durable enqueue, listing, and crash recovery. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit_tmpdir.h"
#include "core/log.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "queue/queue.h"

struct fixture {
    char dir[64];
    char qdir[96];
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    if (unit_tmpdir_make(f->dir, sizeof f->dir, "queue") < 0) return -1;
    snprintf(f->qdir, sizeof f->qdir, "%s/queue", f->dir);
    char err[256];
    if (queue_init(f->qdir, NULL, err, sizeof err) < 0) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (unit_tmpdir_remove(f->dir) < 0) return -1;
    free(f);
    return 0;
}

/* An O_TMPFILE spool like the SMTP session's, holding `body`. */
static int make_spool(const char *dir, const void *body, size_t len)
{
    int fd = open(dir, O_TMPFILE | O_RDWR, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write_full(fd, body, len), 0);
    return fd;
}

static int enqueue(struct fixture *f, const char *qid, const char *from, const char *body, char *err)
{
    static const struct queue_rcpt rcpts[] = {
        { "bob@remote.example", 0, NULL },
        { "carol with space@remote.example", 6, "rfc822;carol@remote.example" },
    };
    struct queue_envelope env = {
        .qid = qid, .mail_from = from, .envid = "ENV%1", .ret = 2, .body = 2, .smtputf8 = false,
        .auth_user = "alice@example.test", .client_ip = "192.0.2.7", .helo = "client\r\nX-Evil: 1",
        .rcpts = rcpts, .nrcpts = 2,
    };
    const char *prefix = "Received: from client\r\n";
    int fd = make_spool(f->dir, body, strlen(body));
    int rc = queue_enqueue(f->qdir, &env, prefix, strlen(prefix), fd, strlen(body), err, 256);
    close(fd);
    return rc;
}

static void list_cb(const struct queue_entry *e, void *ctx)
{
    sbuf_printf(ctx, "%s <%s> <%s> %s %llu;", e->qid, e->sender, e->recipient, e->state,
                (unsigned long long)e->size);
}

static char *listing(struct fixture *f)
{
    sbuf b = SBUF_INIT;
    char err[256];
    assert_int_equal(queue_list(f->qdir, list_cb, &b, err, sizeof err), 0);
    sbuf_append(&b, "", 0);
    return sbuf_detach(&b);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    sbuf b = SBUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0) sbuf_append(&b, chunk, n);
    fclose(fp);
    *len = b.len;
    sbuf_append(&b, "", 0);
    return sbuf_detach(&b);
}

static void sql(struct fixture *f, const char *stmt)
{
    char path[160];
    snprintf(path, sizeof path, "%s/queue.db", f->qdir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, stmt, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

#define QID1 "0000000001AAAAAA"
#define QID2 "0000000002BBBBBB"
#define BODY "Subject: hi\r\n\r\nhello\r\n"
#define PREFIX_LEN 23   /* "Received: from client\r\n" */

static void enqueue_then_list(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    assert_int_equal(enqueue(f, QID1, "alice@example.test", BODY, err), 0);
    assert_int_equal(enqueue(f, QID2, "", BODY, err), 0);
    char *l = listing(f);
    char expect[512];
    unsigned size = PREFIX_LEN + (unsigned)strlen(BODY);
    snprintf(expect, sizeof expect,
             QID1 " <alice@example.test> <bob@remote.example> queued %u;"
             QID1 " <alice@example.test> <carol with space@remote.example> queued %u;"
             QID2 " <> <bob@remote.example> queued %u;"
             QID2 " <> <carol with space@remote.example> queued %u;", size, size, size, size);
    assert_string_equal(l, expect);
    free(l);
}

/* The file carries the whole envelope, then exactly prefix + spool. */
static void message_file_holds_envelope_and_content(void **state)
{
    struct fixture *f = *state;
    char err[256] = "", path[160];
    assert_int_equal(enqueue(f, QID1, "alice@example.test", BODY, err), 0);
    snprintf(path, sizeof path, "%s/" QID1, f->qdir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    size_t len;
    char *text = read_file(path, &len);
    assert_true(strncmp(text, "pochta-queue 1\nqid " QID1 "\n", 34) == 0);
    assert_non_null(strstr(text, "\nsender alice@example.test\n"));
    assert_non_null(strstr(text, "\nenvid ENV%251\n"));
    /* Peer text cannot add envelope lines: CR LF and spaces are escaped. */
    assert_non_null(strstr(text, "\nhelo client%0D%0AX-Evil:%201\n"));
    assert_non_null(strstr(text, "\nrcpt 6 carol%20with%20space@remote.example rfc822;carol@remote.example\n"));
    char *sep = strstr(text, "\n\n");
    assert_non_null(sep);
    assert_string_equal(sep + 2, "Received: from client\r\n" BODY);
    free(text);
    /* No temporary file is left behind. */
    snprintf(path, sizeof path, "%s/tmp." QID1, f->qdir);
    assert_int_equal(access(path, F_OK), -1);
}

static void spool_offset_untouched_and_large_copy(void **state)
{
    struct fixture *f = *state;
    size_t n = 300 * 1024 + 17;
    char *body = xmalloc(n);
    for (size_t i = 0; i < n; i++) body[i] = (char)('a' + i % 26);
    int fd = make_spool(f->dir, body, n);
    off_t before = lseek(fd, 0, SEEK_CUR);
    assert_int_equal(before, (off_t)n);
    struct queue_rcpt r = { "x@remote.example", 0, NULL };
    struct queue_envelope env = { .qid = QID1, .mail_from = "", .rcpts = &r, .nrcpts = 1 };
    char err[256];
    assert_int_equal(queue_enqueue(f->qdir, &env, NULL, 0, fd, n, err, sizeof err), 0);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), before);
    /* A second recipient copy from the same spool works as well. */
    env.qid = QID2;
    assert_int_equal(queue_enqueue(f->qdir, &env, "P", 1, fd, n, err, sizeof err), 0);
    close(fd);

    char path[160];
    snprintf(path, sizeof path, "%s/" QID2, f->qdir);
    size_t len;
    char *text = read_file(path, &len);
    char *sep = strstr(text, "\n\n");
    assert_non_null(sep);
    assert_int_equal(len - (size_t)(sep + 2 - text), n + 1);
    assert_int_equal(sep[2], 'P');
    assert_memory_equal(sep + 3, body, n);
    free(text);
    free(body);
}

static void spool_shorter_than_claimed_fails_cleanly(void **state)
{
    struct fixture *f = *state;
    int fd = make_spool(f->dir, "short", 5);
    struct queue_rcpt r = { "x@remote.example", 0, NULL };
    struct queue_envelope env = { .qid = QID1, .mail_from = "", .rcpts = &r, .nrcpts = 1 };
    char err[256];
    assert_int_equal(queue_enqueue(f->qdir, &env, NULL, 0, fd, 100, err, sizeof err), -1);
    close(fd);
    char *l = listing(f);
    assert_string_equal(l, "");
    free(l);
    char path[160];
    snprintf(path, sizeof path, "%s/tmp." QID1, f->qdir);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof path, "%s/" QID1, f->qdir);
    assert_int_equal(access(path, F_OK), -1);
}

static void bad_ids_and_duplicates_refused(void **state)
{
    struct fixture *f = *state;
    char err[256];
    assert_int_equal(enqueue(f, "../../etc/passwd", "a@example.test", BODY, err), -1);
    assert_int_equal(enqueue(f, "0000000001aaaaaa", "a@example.test", BODY, err), -1);
    assert_int_equal(enqueue(f, QID1, "first@example.test", BODY, err), 0);
    assert_int_equal(enqueue(f, QID1, "second@example.test", BODY, err), -1);
    char *l = listing(f);
    assert_non_null(strstr(l, "first@example.test"));
    assert_null(strstr(l, "second@example.test"));
    free(l);
    struct queue_envelope none = { .qid = QID2, .mail_from = "", .rcpts = NULL, .nrcpts = 0 };
    assert_int_equal(queue_enqueue(f->qdir, &none, NULL, 0, -1, 0, err, sizeof err), -1);
}

static void reopened_queue_still_lists(void **state)
{
    struct fixture *f = *state;
    char err[256];
    unsigned rec = 99;
    assert_int_equal(enqueue(f, QID1, "alice@example.test", BODY, err), 0);
    char *before = listing(f);
    assert_int_equal(queue_init(f->qdir, &rec, err, sizeof err), 0);
    assert_int_equal(rec, 0);
    char *after = listing(f);
    assert_string_equal(before, after);
    assert_true(strlen(after) > 0);
    free(before);
    free(after);
}

/* Crash after the file got its name but before the index commit: the file
 * is complete, so recovery indexes it again (see queue.h for why). */
static void crash_before_index_commit_is_recovered(void **state)
{
    struct fixture *f = *state;
    char err[256];
    unsigned rec = 0;
    assert_int_equal(enqueue(f, QID1, "alice@example.test", BODY, err), 0);
    assert_int_equal(enqueue(f, QID2, "", BODY, err), 0);
    char *before = listing(f);
    sql(f, "DELETE FROM rcpts WHERE qid = '" QID1 "'; DELETE FROM messages WHERE qid = '" QID1 "';");
    char *lost = listing(f);
    assert_null(strstr(lost, QID1));
    assert_int_equal(queue_init(f->qdir, &rec, err, sizeof err), 0);
    assert_int_equal(rec, 1);
    char *after = listing(f);
    assert_string_equal(after, before);
    free(before);
    free(lost);
    free(after);
}

/* The index is a cache: losing queue.db entirely loses nothing. */
static void index_rebuilt_from_files(void **state)
{
    struct fixture *f = *state;
    char err[256], path[160];
    unsigned rec = 0;
    assert_int_equal(enqueue(f, QID1, "alice@example.test", BODY, err), 0);
    assert_int_equal(enqueue(f, QID2, "", BODY, err), 0);
    char *before = listing(f);
    const char *suffix[] = { "", "-wal", "-shm" };
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/queue.db%s", f->qdir, suffix[i]);
        unlink(path);
    }
    assert_int_equal(queue_init(f->qdir, &rec, err, sizeof err), 0);
    assert_int_equal(rec, 2);
    char *after = listing(f);
    assert_string_equal(after, before);
    free(before);
    free(after);
}

/* Crash while writing: tmp.<qid> was never acknowledged and is removed. */
static void crash_while_writing_is_cleaned(void **state)
{
    struct fixture *f = *state;
    char err[256], path[160];
    unsigned rec = 0;
    snprintf(path, sizeof path, "%s/tmp." QID1, f->qdir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("pochta-queue 1\nqid " QID1 "\nsend", fp);
    fclose(fp);
    assert_int_equal(queue_init(f->qdir, &rec, err, sizeof err), 0);
    assert_int_equal(rec, 1);
    assert_int_equal(access(path, F_OK), -1);
    char *l = listing(f);
    assert_string_equal(l, "");
    free(l);
}

static void damaged_file_kept_aside_and_stale_row_dropped(void **state)
{
    struct fixture *f = *state;
    char err[256], path[160];
    unsigned rec = 0;
    /* A file whose size does not match its envelope. */
    assert_int_equal(enqueue(f, QID1, "alice@example.test", BODY, err), 0);
    sql(f, "DELETE FROM rcpts; DELETE FROM messages;");
    snprintf(path, sizeof path, "%s/" QID1, f->qdir);
    assert_int_equal(truncate(path, 100), 0);
    /* An index row whose file is gone. */
    assert_int_equal(enqueue(f, QID2, "", BODY, err), 0);
    snprintf(path, sizeof path, "%s/" QID2, f->qdir);
    assert_int_equal(unlink(path), 0);

    assert_int_equal(queue_init(f->qdir, &rec, err, sizeof err), 0);
    assert_int_equal(rec, 2);
    char *l = listing(f);
    assert_string_equal(l, "");
    free(l);
    snprintf(path, sizeof path, "%s/corrupt/" QID1, f->qdir);
    assert_int_equal(access(path, F_OK), 0);
}

struct worker { struct fixture *f; int id; int failures; };

static void *worker_main(void *p)
{
    struct worker *w = p;
    for (int i = 0; i < 10; i++) {
        char qid[17], err[256];
        snprintf(qid, sizeof qid, "00000000%02d%06d", w->id, i);
        if (enqueue(w->f, qid, "t@example.test", BODY, err) != 0) w->failures++;
    }
    return NULL;
}

static void concurrent_enqueues_from_threads(void **state)
{
    struct fixture *f = *state;
    pthread_t th[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){ f, i, 0 };
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    char *l = listing(f);
    size_t rows = 0;
    for (const char *p = l; (p = strchr(p, ';')) != NULL; p++) rows++;
    assert_int_equal(rows, 4 * 10 * 2);
    free(l);
}

static void missing_index_lists_empty(void **state)
{
    char err[256];
    sbuf b = SBUF_INIT;
    assert_int_equal(queue_list("/nonexistent/pochta/queue", list_cb, &b, err, sizeof err), 0);
    assert_int_equal(b.len, 0);
    sbuf_free(&b);
}

int main(void)
{
    log_init("test_queue", LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(enqueue_then_list, setup, teardown),
        cmocka_unit_test_setup_teardown(message_file_holds_envelope_and_content, setup, teardown),
        cmocka_unit_test_setup_teardown(spool_offset_untouched_and_large_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(spool_shorter_than_claimed_fails_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_ids_and_duplicates_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(reopened_queue_still_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(crash_before_index_commit_is_recovered, setup, teardown),
        cmocka_unit_test_setup_teardown(index_rebuilt_from_files, setup, teardown),
        cmocka_unit_test_setup_teardown(crash_while_writing_is_cleaned, setup, teardown),
        cmocka_unit_test_setup_teardown(damaged_file_kept_aside_and_stale_row_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_enqueues_from_threads, setup, teardown),
        cmocka_unit_test(missing_index_lists_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
