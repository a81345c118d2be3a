#include "auth/auth_async.h"

#include <openssl/crypto.h>
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
 * few syscalls and a schema check, a login costs far more. */
static _Thread_local accounts *worker_accounts;

static void verify_work(void *p)
{
    struct auth_job *j = p;
    if (!worker_accounts) {
        char err[256];
        worker_accounts = accounts_open("accounts.db", false, err, sizeof err);
        if (!worker_accounts) {
            log_error("auth: cannot open account database: %s", err);
            j->result = -1;
            return;
        }
    }
    j->result = accounts_verify_password(worker_accounts, j->user, j->password);
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
