#include "core/workpool.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

struct job {
    work_fn work, done;
    void *arg;
    struct job *next;
};

struct jobq { struct job *head, *tail; };

enum { LANE_QUICK, LANE_SLOW, NLANES };

/* One mutex for both lanes: it is held for a few pointer moves only. */
struct lane {
    pthread_cond_t cv;
    struct jobq todo;
};

struct worker_arg {
    struct workpool *wp;
    int lane;
};

struct workpool {
    pthread_mutex_t mu;
    struct lane lanes[NLANES];
    struct jobq finished;
    unsigned pending;           /* submitted, done() not yet run */
    bool stopping;
    int efd;
    struct event *ev;
    pthread_t *threads;
    struct worker_arg *args;
    unsigned nthreads;          /* of both lanes */
};

static void q_push(struct jobq *q, struct job *j)
{
    j->next = NULL;
    if (q->tail) q->tail->next = j; else q->head = j;
    q->tail = j;
}

static struct job *q_pop(struct jobq *q)
{
    struct job *j = q->head;
    if (j) {
        q->head = j->next;
        if (!q->head) q->tail = NULL;
    }
    return j;
}

static void *worker(void *p)
{
    struct worker_arg *a = p;
    workpool *wp = a->wp;
    struct lane *ln = &wp->lanes[a->lane];
    /* Linux applies a thread id's nice value to that thread alone. */
    if (a->lane == LANE_SLOW)
        (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 5);
    pthread_mutex_lock(&wp->mu);
    for (;;) {
        struct job *j;
        while (!(j = q_pop(&ln->todo)) && !wp->stopping)
            pthread_cond_wait(&ln->cv, &wp->mu);
        if (!j) break;
        pthread_mutex_unlock(&wp->mu);
        j->work(j->arg);
        pthread_mutex_lock(&wp->mu);
        /* Wake the loop only for the first finished job: it has not taken
         * the list yet (it reads the eventfd before it does), so it will
         * find the ones queued after this too.  Saves a write and a loop
         * wake-up per job when several finish together. */
        bool wake = wp->finished.head == NULL;
        q_push(&wp->finished, j);
        if (wake) {
            uint64_t one = 1;
            (void)!write(wp->efd, &one, sizeof one);
        }
    }
    pthread_mutex_unlock(&wp->mu);
    return NULL;
}

/* Runs the done() callbacks of finished jobs on the loop thread. */
static void run_finished(workpool *wp)
{
    pthread_mutex_lock(&wp->mu);
    struct job *list = wp->finished.head;
    wp->finished.head = wp->finished.tail = NULL;
    pthread_mutex_unlock(&wp->mu);
    while (list) {
        struct job *j = list;
        list = j->next;
        wp->pending--;
        if (j->done) j->done(j->arg);
        free(j);
    }
}

static void on_eventfd(evutil_socket_t fd, short what, void *p)
{
    uint64_t n;
    (void)!read(fd, &n, sizeof n);
    run_finished(p);
}

workpool *workpool_new(struct event_base *base, unsigned nthreads)
{
    workpool *wp = xcalloc(1, sizeof *wp);
    pthread_mutex_init(&wp->mu, NULL);
    for (int l = 0; l < NLANES; l++) pthread_cond_init(&wp->lanes[l].cv, NULL);
    wp->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wp->efd < 0) {
        log_error("workpool: eventfd: %s", strerror(errno));
        abort();
    }
    wp->ev = event_new(base, wp->efd, EV_READ | EV_PERSIST, on_eventfd, wp);
    event_add(wp->ev, NULL);
    if (nthreads < 1) nthreads = 1;
    unsigned nslow = nthreads / 2 ? nthreads / 2 : 1;
    wp->nthreads = nthreads + nslow;
    wp->threads = xcalloc(wp->nthreads, sizeof *wp->threads);
    wp->args = xcalloc(wp->nthreads, sizeof *wp->args);
    for (unsigned i = 0; i < wp->nthreads; i++) {
        wp->args[i] = (struct worker_arg){ wp, i < nthreads ? LANE_QUICK : LANE_SLOW };
        if (pthread_create(&wp->threads[i], NULL, worker, &wp->args[i]) != 0) {
            log_error("workpool: cannot start thread");
            abort();
        }
    }
    return wp;
}

static void submit(workpool *wp, int lane, work_fn work, work_fn done, void *arg)
{
    struct job *j = xmalloc(sizeof *j);
    j->work = work;
    j->done = done;
    j->arg = arg;
    wp->pending++;
    pthread_mutex_lock(&wp->mu);
    q_push(&wp->lanes[lane].todo, j);
    pthread_cond_signal(&wp->lanes[lane].cv);
    pthread_mutex_unlock(&wp->mu);
}

void workpool_submit(workpool *wp, work_fn work, work_fn done, void *arg)
{
    submit(wp, LANE_QUICK, work, done, arg);
}

void workpool_submit_slow(workpool *wp, work_fn work, work_fn done, void *arg)
{
    submit(wp, LANE_SLOW, work, done, arg);
}

unsigned workpool_pending(const workpool *wp)
{
    return wp->pending;
}

void workpool_free(workpool *wp)
{
    if (!wp) return;
    pthread_mutex_lock(&wp->mu);
    wp->stopping = true;
    for (int l = 0; l < NLANES; l++) pthread_cond_broadcast(&wp->lanes[l].cv);
    pthread_mutex_unlock(&wp->mu);
    for (unsigned i = 0; i < wp->nthreads; i++) pthread_join(wp->threads[i], NULL);
    run_finished(wp);
    event_free(wp->ev);
    close(wp->efd);
    for (int l = 0; l < NLANES; l++) pthread_cond_destroy(&wp->lanes[l].cv);
    pthread_mutex_destroy(&wp->mu);
    free(wp->threads);
    free(wp->args);
    free(wp);
}
