#include "auth/auth_async.h"

#include <openssl/crypto.h>
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
    workpool_submit(wp, verify_work, verify_done, j);
}
