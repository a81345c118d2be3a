/* Delivery throughput: store_deliver() of a 4 KiB message from T threads.
 *
 *   store_deliver [threads] [messages per thread] [users] [reopen]
 *
 * Runs in a fresh directory under /tmp (or $BENCH_DIR).  reopen=1 opens a
 * store_user handle per message, as the SMTP delivery code does. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

static int threads = 4, per_thread = 500, users = 1, reopen = 1;
static int body_fd;
static const size_t body_len = 4096;

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    char addr[64], err[256];
    snprintf(addr, sizeof addr, "user%d@bench.example", id % users);
    store_user *u = NULL;
    for (int i = 0; i < per_thread; i++) {
        if (!u || reopen) {
            store_user_close(u);
            u = store_user_open("mail", addr, true, err, sizeof err);
            if (!u) { fprintf(stderr, "open: %s\n", err); exit(1); }
        }
        static const char prefix[] = "Return-Path: <bench@example.net>\r\n";
        uint32_t uid;
        if (store_deliver(u, "INBOX", prefix, sizeof prefix - 1, body_fd, body_len, time(NULL), 0,
                          &uid, err, sizeof err) != 0) {
            fprintf(stderr, "deliver: %s\n", err);
            exit(1);
        }
    }
    store_user_close(u);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1) threads = atoi(argv[1]);
    if (argc > 2) per_thread = atoi(argv[2]);
    if (argc > 3) users = atoi(argv[3]);
    if (argc > 4) reopen = atoi(argv[4]);
    if (threads < 1 || per_thread < 1 || users < 1) return 2;
    const char *base = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "/tmp";
    char dir[512];
    snprintf(dir, sizeof dir, "%s/pochta-bench-XXXXXX", base);
    if (!mkdtemp(dir) || chdir(dir) != 0) { perror("bench dir"); return 1; }
    FILE *f = tmpfile();
    for (size_t i = 0; i < body_len; i++) fputc(i % 78 == 77 ? '\n' : 'x', f);
    fflush(f);
    body_fd = fileno(f);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_t *t = calloc((size_t)threads, sizeof *t);
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    int total = threads * per_thread;
    printf("%d deliveries (%d threads, %d users, reopen=%d) in %.3f s: %.0f msg/s\n", total,
           threads, users, reopen, secs, total / secs);
    printf("data left in %s\n", dir);
    free(t);
    return 0;
}
