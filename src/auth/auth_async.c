#include "auth/auth_async.h"

#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <time.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "auth/accounts.h"
#include "core/log.h"
#include "core/util.h"

struct auth_job {
    char *user;
    char *password;
    int result;
    auth_async_done done;
    void *ctx;
};

/* One handle per worker thread, opened lazily and kept: opening costs a
 * few syscalls and a schema check, a login costs far more.  A pthread key
 * (not _Thread_local) so the handle is closed when the thread exits. */
static pthread_key_t accounts_key;
static pthread_once_t accounts_once = PTHREAD_ONCE_INIT;

static void close_handle(void *p)
{
    accounts_close(p);
}

static void make_key(void)
{
    if (pthread_key_create(&accounts_key, close_handle) != 0) abort();
}

static accounts *worker_accounts(void)
{
    pthread_once(&accounts_once, make_key);
    accounts *a = pthread_getspecific(accounts_key);
    if (a) return a;
    char err[256];
    a = accounts_open("accounts.db", false, err, sizeof err);
    if (!a) {
        log_error("auth: cannot open account database: %s", err);
        return NULL;
    }
    pthread_setspecific(accounts_key, a);
    return a;
}

static void verify_work(void *p)
{
    struct auth_job *j = p;
    accounts *a = worker_accounts();
    j->result = a ? accounts_verify_password(a, j->user, j->password) : -1;
}

static void verify_done(void *p)
{
    struct auth_job *j = p;
    OPENSSL_cleanse(j->password, strlen(j->password));
    free(j->password);
    j->password = NULL;
    j->done(j->result, j->user, j->ctx);
    free(j->user);
    free(j);
}

void auth_async_verify(workpool *wp, const char *user, const char *password,
                       auth_async_done done, void *ctx)
{
    struct auth_job *j = xcalloc(1, sizeof *j);
    j->user = xstrdup(user);
    j->password = xstrdup(password);
    j->result = -1;
    j->done = done;
    j->ctx = ctx;
    workpool_submit_slow(wp, verify_work, verify_done, j);
}

/* ---- guarded checks ------------------------------------------------------ */

struct guarded {
    struct auth_guard g;
    char sid[32];
    char ip[64];
    char *user;
    int result;
    auth_async_done done;
    void *ctx;
    struct event *delay;
};

static void guarded_finish(struct guarded *q)
{
    q->done(q->result, q->user, q->ctx);
    if (q->delay) event_free(q->delay);
    free(q->user);
    free(q);
}

static void guarded_delay_done(evutil_socket_t fd, short what, void *p)
{
    guarded_finish(p);
}

static void guarded_checked(int result, const char *user, void *ctx)
{
    struct guarded *q = ctx;
    const config *cfg = q->g.cfg;
    q->result = result;
    q->user = xstrdup(user);
    if (result == 1) auth_failures_clear(q->g.failures, q->ip);
    if (result != 0) {
        guarded_finish(q);
        return;
    }
    time_t now = time(NULL);
    auth_failures_record(q->g.failures, q->ip, now);
    unsigned n = auth_failures_count(q->g.failures, q->ip, now, cfg->auth_failure_window);
    char safe[300];
    log_info("session=%s auth failed user=%s from [%s] (%u recent failures)", q->sid,
             log_safe(user, strlen(user), safe, sizeof safe), q->ip, n);
    if (cfg->auth_failure_delay == 0) {
        guarded_finish(q);
        return;
    }
    struct timeval tv = { (time_t)(cfg->auth_failure_delay * (n > 10 ? 10 : n)), 0 };
    q->delay = evtimer_new(q->g.base, guarded_delay_done, q);
    evtimer_add(q->delay, &tv);
}

bool auth_guard_allows(const struct auth_guard *g, const char *ip)
{
    return auth_failures_count(g->failures, ip, time(NULL), g->cfg->auth_failure_window)
           < g->cfg->auth_max_failures;
}

void auth_guard_check(const struct auth_guard *g, const char *session_id, const char *ip,
                      const char *user, const char *password, auth_async_done done, void *ctx)
{
    struct guarded *q = xcalloc(1, sizeof *q);
    q->g = *g;
    snprintf(q->sid, sizeof q->sid, "%s", session_id);
    snprintf(q->ip, sizeof q->ip, "%s", ip);
    q->done = done;
    q->ctx = ctx;
    auth_async_verify(g->pool, user, password, guarded_checked, q);
}
