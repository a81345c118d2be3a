/* The queue's runner side: due messages, per-recipient states, retry
 * scheduling, hold/release, flush by domain, removal when finished. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit_tmpdir.h"
#include "core/util.h"
#include "queue/queue.h"

struct fixture {
    char dir[64];
    char qdir[96];
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    if (unit_tmpdir_make(f->dir, sizeof f->dir, "mtaq") < 0) return -1;
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

static const char body[] = "Subject: t\r\n\r\nhello\r\n";
static const char prefix[] = "Received: by test\r\n";

static void enqueue(struct fixture *f, const char *qid)
{
    static const struct queue_rcpt rcpts[] = {
        { "a@one.example", 4, "rfc822;A@one.example" },
        { "b@Two.example", 0, NULL },
        { "c@one.example", 0, NULL },
    };
    struct queue_envelope env = { .qid = qid, .mail_from = "s@local.test", .envid = "E1", .ret = 2,
                                  .body = 2, .rcpts = rcpts, .nrcpts = 3 };
    int fd = open(f->dir, O_TMPFILE | O_RDWR, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write_full(fd, body, sizeof body - 1), 0);
    char err[256];
    assert_int_equal(queue_enqueue(f->qdir, &env, prefix, sizeof prefix - 1, fd, sizeof body - 1, err, sizeof err), 0);
    close(fd);
}

struct seen {
    char qids[8][17];
    size_t n;
};

static void due_cb(const char *qid, void *ctx)
{
    struct seen *s = ctx;
    if (s->n < 8) snprintf(s->qids[s->n++], 17, "%s", qid);
}

static size_t due(struct fixture *f, time_t now)
{
    struct seen s = { .n = 0 };
    char err[256];
    assert_int_equal(queue_due(f->qdir, now, due_cb, &s, err, sizeof err), 0);
    return s.n;
}

static void load_gives_envelope_content_and_states(void **state)
{
    struct fixture *f = *state;
    enqueue(f, "0000000000000AAA");
    assert_int_equal(due(f, time(NULL)), 1);
    struct queue_msg *m;
    char err[256];
    assert_int_equal(queue_load(f->qdir, "0000000000000AAA", &m, err, sizeof err), 0);
    assert_string_equal(m->sender, "s@local.test");
    assert_string_equal(m->envid, "E1");
    assert_int_equal(m->ret, 2);
    assert_int_equal(m->nrcpts, 3);
    assert_string_equal(m->rcpts[0].orcpt, "rfc822;A@one.example");
    assert_int_equal(m->rcpts[0].notify, 4);
    assert_true(m->rcpts[1].pending);
    assert_string_equal(m->rcpts[1].state, "queued");
    /* the content is prefix + body, read from the offset */
    char buf[256];
    assert_int_equal(m->size, sizeof prefix - 1 + sizeof body - 1);
    assert_int_equal(pread(m->fd, buf, m->size, (off_t)m->offset), (ssize_t)m->size);
    assert_memory_equal(buf, prefix, sizeof prefix - 1);
    assert_memory_equal(buf + sizeof prefix - 1, body, sizeof body - 1);
    queue_msg_free(m);
    assert_int_equal(queue_load(f->qdir, "0000000000000ZZZ", &m, err, sizeof err), -1);
}

static void record_keeps_pending_and_schedules_retry(void **state)
{
    struct fixture *f = *state;
    enqueue(f, "0000000000000BBB");
    time_t now = time(NULL);
    struct queue_rcpt_update u[] = {
        { 0, "delivered", NULL }, { 1, "deferred", "451 try later" }, { 2, "failed", "550 no" },
    };
    char err[256];
    assert_int_equal(queue_record(f->qdir, "0000000000000BBB", u, 3, now + 100, err, sizeof err), 0);
    /* not due before next_attempt, due after */
    assert_int_equal(due(f, now), 0);
    assert_int_equal(due(f, now + 100), 1);
    struct queue_msg *m;
    assert_int_equal(queue_load(f->qdir, "0000000000000BBB", &m, err, sizeof err), 0);
    assert_false(m->rcpts[0].pending);
    assert_true(m->rcpts[1].pending);
    assert_false(m->rcpts[2].pending);
    assert_string_equal(m->rcpts[2].state, "failed");
    assert_int_equal(m->attempts, 1);
    queue_msg_free(m);
    /* the last pending recipient finishes: message removed, file and rows */
    struct queue_rcpt_update u2[] = { { 1, "delivered", NULL } };
    assert_int_equal(queue_record(f->qdir, "0000000000000BBB", u2, 1, now + 200, err, sizeof err), 1);
    char path[160];
    snprintf(path, sizeof path, "%s/0000000000000BBB", f->qdir);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(due(f, now + 1000), 0);
    assert_int_equal(queue_load(f->qdir, "0000000000000BBB", &m, err, sizeof err), -1);
    /* recording for a message deleted meanwhile is not an error */
    assert_int_equal(queue_record(f->qdir, "0000000000000BBB", u2, 1, now, err, sizeof err), 1);
}

static void hold_release_flush_delete(void **state)
{
    struct fixture *f = *state;
    enqueue(f, "0000000000000CCC");
    time_t now = time(NULL);
    char err[256];
    assert_int_equal(queue_hold(f->qdir, "0000000000000CCC", true, err, sizeof err), 1);
    assert_int_equal(due(f, now + 100000), 0);
    /* a held message stays held through a delivery record and a flush */
    struct queue_rcpt_update u[] = { { 0, "deferred", "x" } };
    assert_int_equal(queue_record(f->qdir, "0000000000000CCC", u, 1, now, err, sizeof err), 0);
    assert_int_equal(queue_schedule_now(f->qdir, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(due(f, now + 100000), 0);
    assert_int_equal(queue_hold(f->qdir, "0000000000000CCC", false, err, sizeof err), 1);
    assert_int_equal(due(f, now), 1);
    assert_int_equal(queue_hold(f->qdir, "0000000000000XXX", true, err, sizeof err), 0);

    /* flush by domain (RFC 1985 ETRN): only messages with a pending recipient there */
    struct queue_rcpt_update later[] = { { 0, "deferred", "x" } };
    assert_int_equal(queue_record(f->qdir, "0000000000000CCC", later, 1, now + 5000, err, sizeof err), 0);
    assert_int_equal(due(f, now), 0);
    assert_int_equal(queue_schedule_now(f->qdir, NULL, "nowhere.example", err, sizeof err), 0);
    assert_int_equal(queue_schedule_now(f->qdir, NULL, "TWO.example", err, sizeof err), 1);
    assert_int_equal(due(f, now), 1);

    assert_int_equal(queue_delete(f->qdir, "0000000000000CCC", err, sizeof err), 1);
    assert_int_equal(due(f, now + 100000), 0);
    assert_int_equal(queue_delete(f->qdir, "0000000000000CCC", err, sizeof err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(load_gives_envelope_content_and_states, setup, teardown),
        cmocka_unit_test_setup_teardown(record_keeps_pending_and_schedules_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(hold_release_flush_delete, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
