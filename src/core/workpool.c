#include "core/workpool.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
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

struct workpool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct jobq todo, finished;
    unsigned pending;           /* submitted, done() not yet run */
    bool stopping;
    int efd;
    struct event *ev;
    pthread_t *threads;
    unsigned nthreads;
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
    workpool *wp = p;
    pthread_mutex_lock(&wp->mu);
    for (;;) {
        struct job *j;
        while (!(j = q_pop(&wp->todo)) && !wp->stopping)
            pthread_cond_wait(&wp->cv, &wp->mu);
        if (!j) break;
        pthread_mutex_unlock(&wp->mu);
        j->work(j->arg);
        pthread_mutex_lock(&wp->mu);
        q_push(&wp->finished, j);
        uint64_t one = 1;
        (void)!write(wp->efd, &one, sizeof one);
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
    pthread_cond_init(&wp->cv, NULL);
    wp->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wp->efd < 0) {
        log_error("workpool: eventfd: %s", strerror(errno));
        abort();
    }
    wp->ev = event_new(base, wp->efd, EV_READ | EV_PERSIST, on_eventfd, wp);
    event_add(wp->ev, NULL);
    wp->nthreads = nthreads;
    wp->threads = xcalloc(nthreads, sizeof *wp->threads);
    for (unsigned i = 0; i < nthreads; i++)
        if (pthread_create(&wp->threads[i], NULL, worker, wp) != 0) {
            log_error("workpool: cannot start thread");
            abort();
        }
    return wp;
}

void workpool_submit(workpool *wp, work_fn work, work_fn done, void *arg)
{
    struct job *j = xmalloc(sizeof *j);
    j->work = work;
    j->done = done;
    j->arg = arg;
    wp->pending++;
    pthread_mutex_lock(&wp->mu);
    q_push(&wp->todo, j);
    pthread_cond_signal(&wp->cv);
    pthread_mutex_unlock(&wp->mu);
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
    pthread_cond_broadcast(&wp->cv);
    pthread_mutex_unlock(&wp->mu);
    for (unsigned i = 0; i < wp->nthreads; i++) pthread_join(wp->threads[i], NULL);
    run_finished(wp);
    event_free(wp->ev);
    close(wp->efd);
    pthread_cond_destroy(&wp->cv);
    pthread_mutex_destroy(&wp->mu);
    free(wp->threads);
    free(wp);
}
