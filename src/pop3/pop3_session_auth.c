/* POP3 logins: USER/PASS (RFC 1939 section 7), APOP (refused: only
 * password hashes are stored), AUTH with SASL PLAIN and LOGIN (RFC 5034),
 * the failed-login delay, the maildrop lock and LOGIN-DELAY (RFC 2449),
 * and the job that opens the maildrop and takes its snapshot. */
#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth_async.h"
#include "auth/sasl.h"
#include "core/log.h"
#include "core/util.h"
#include "pop3/pop3_session_int.h"

#define PLAINTEXT_REFUSED "[AUTH] plaintext login not allowed without TLS: use STLS (or pop3s) first"

/* ---- the maildrop lock ------------------------------------------------ */

static struct pop3_maildrop *maildrop_get(struct pop3_server *srv, const char *user)
{
    for (struct pop3_maildrop *d = srv->maildrops; d; d = d->next)
        if (strcmp(d->user, user) == 0) return d;
    struct pop3_maildrop *d = xcalloc(1, sizeof *d);
    d->user = xstrdup(user);
    d->next = srv->maildrops;
    srv->maildrops = d;
    return d;
}

static void maildrop_forget(struct pop3_server *srv, struct pop3_maildrop *d)
{
    for (struct pop3_maildrop **pp = &srv->maildrops; *pp; pp = &(*pp)->next) {
        if (*pp == d) {
            *pp = d->next;
            free(d->user);
            free(d);
            return;
        }
    }
}

void pop3_unlock(struct pop3_session *s)
{
    struct pop3_maildrop *d = s->drop;
    if (!d) return;
    s->drop = NULL;
    d->locked = false;
    /* Without a login delay nothing is worth remembering: the table holds
     * only the maildrops in use. */
    if (s->srv->cfg->pop3_login_delay == 0 ||
        time(NULL) - d->last_login >= (time_t)s->srv->cfg->pop3_login_delay)
        maildrop_forget(s->srv, d);
}

/* ---- opening the maildrop (worker) ------------------------------------ */

struct login_job {
    struct pop3_session *s;
    char *user;
    store_user *u;
    store_msglist list;
    int rc;
    char err[256];
};

static void login_work(void *p)
{
    struct login_job *j = p;
    /* A user who never received mail has no store yet: create it. */
    j->u = store_user_open("mail", j->user, true, j->err, sizeof j->err);
    if (!j->u) {
        j->rc = STORE_EIO;
        return;
    }
    j->rc = store_messages(j->u, "INBOX", 0, &j->list, j->err, sizeof j->err);
    if (j->rc < 0) {
        store_user_close(j->u);
        j->u = NULL;
    }
}

static void login_done(void *p)
{
    struct login_job *j = p;
    struct pop3_session *s = j->s;
    s->jobs--;
    if (j->rc == 0) {
        s->store = j->u;
        s->uidvalidity = j->list.uidvalidity;
        s->nmsgs = j->list.count;
        s->msgs = xcalloc(j->list.count ? j->list.count : 1, sizeof *s->msgs);
        for (size_t i = 0; i < j->list.count; i++) {
            s->msgs[i].uid = j->list.msgs[i].uid;
            s->msgs[i].size = j->list.msgs[i].size;
        }
        store_msglist_free(&j->list);
    }
    int rc = j->rc;
    char *user = j->user;
    if (rc < 0) log_error("session=%s cannot open maildrop of %s: %s", s->id, user, j->err);
    free(j);

    if (s->phase == PH_CLOSED) {
        free(user);
        pop3_session_reap(s);
        return;
    }
    s->phase = PH_COMMAND;
    if (rc < 0) {
        pop3_unlock(s);
        free(user);
        pop3_err(s, "[SYS/TEMP] cannot open the maildrop, try again later");
        pop3_resume(s);
        return;
    }
    s->login = user;
    s->state = ST_TRANSACTION;
    uint64_t octets = 0;
    for (size_t i = 0; i < s->nmsgs; i++) octets += s->msgs[i].size;
    log_info("session=%s login user=%s from [%s]%s: %zu messages (%llu octets)", s->id, user, s->ip,
             pop3_tls_active(s) ? " TLS" : "", s->nmsgs, (unsigned long long)octets);
    pop3_ok(s, "maildrop locked and ready: %zu messages (%llu octets)", s->nmsgs,
            (unsigned long long)octets);
    pop3_resume(s);
}

/* Credentials are good: take the lock and open the maildrop. */
static void login(struct pop3_session *s, const char *user)
{
    const config *cfg = s->srv->cfg;
    char *canon = ascii_lower(xstrdup(user));
    struct pop3_maildrop *d = maildrop_get(s->srv, canon);
    time_t now = time(NULL);
    if (d->locked) {
        log_info("session=%s login user=%s refused: maildrop in use", s->id, canon);
        pop3_err(s, "[IN-USE] maildrop already locked by another session, try again later");
        free(canon);
        return;
    }
    if (cfg->pop3_login_delay && d->last_login && now - d->last_login < (time_t)cfg->pop3_login_delay) {
        log_info("session=%s login user=%s refused: login delay", s->id, canon);
        pop3_err(s, "[LOGIN-DELAY] only one login every %u seconds", cfg->pop3_login_delay);
        free(canon);
        return;
    }
    d->locked = true;
    d->last_login = now;
    s->drop = d;

    struct login_job *j = xcalloc(1, sizeof *j);
    j->s = s;
    j->user = canon;
    s->phase = PH_BUSY;
    s->jobs++;
    conn_pause(s->c);
    workpool_submit(s->srv->pool, login_work, login_done, j);
}

/* ---- password check --------------------------------------------------- */

static struct auth_guard guard_of(const struct pop3_session *s)
{
    return (struct auth_guard){ s->srv->pool, s->srv->base, s->srv->failures, s->srv->cfg };
}

static void checked(int result, const char *user, void *ctx)
{
    struct pop3_session *s = ctx;
    s->jobs--;
    if (s->phase == PH_CLOSED) {
        pop3_session_reap(s);
        return;
    }
    s->phase = PH_COMMAND;
    if (result == 1) {
        login(s, user);
        if (s->phase == PH_COMMAND) pop3_resume(s);
        return;
    }
    if (result < 0)
        pop3_err(s, "[SYS/TEMP] authentication temporarily unavailable, try again later");
    else
        pop3_err(s, "[AUTH] authentication failed: wrong user name or password");
    pop3_resume(s);
}

static void start_check(struct pop3_session *s, const char *user, const char *password)
{
    s->phase = PH_BUSY;
    s->jobs++;
    conn_pause(s->c);
    struct auth_guard g = guard_of(s);
    auth_guard_check(&g, s->id, s->ip, user, password, checked, s);
}

/* Checks common to PASS and AUTH; false after replying. */
static bool may_try(struct pop3_session *s)
{
    if (!pop3_login_allowed(s)) {
        pop3_err(s, "%s", PLAINTEXT_REFUSED);
        return false;
    }
    struct auth_guard g = guard_of(s);
    if (!auth_guard_allows(&g, s->ip)) {
        log_info("session=%s login refused from [%s]: too many failures", s->id, s->ip);
        pop3_err(s, "[SYS/TEMP] too many authentication failures from your address, try again later");
        return false;
    }
    return true;
}

/* ---- USER / PASS / APOP ----------------------------------------------- */

void pop3_cmd_user(struct pop3_session *s, const struct pop3_cmd *cmd)
{
    if (!pop3_login_allowed(s)) {
        pop3_err(s, "%s", PLAINTEXT_REFUSED);
        return;
    }
    free(s->user);
    s->user = xstrndup(cmd->arg, cmd->arg_len);
    /* Says nothing about whether the user exists (RFC 1939 section 13). */
    pop3_ok(s, "send PASS");
}

void pop3_cmd_pass(struct pop3_session *s, const struct pop3_cmd *cmd)
{
    if (!s->user) {
        pop3_err(s, "give USER first");
        return;
    }
    char *user = s->user;
    s->user = NULL;     /* RFC 1939: after a failed PASS, USER starts again */
    if (!may_try(s)) {
        free(user);
        return;
    }
    char *pass = xstrndup(cmd->arg, cmd->arg_len);
    start_check(s, user, pass);
    OPENSSL_cleanse(pass, cmd->arg_len);
    free(pass);
    free(user);
}

void pop3_cmd_apop(struct pop3_session *s, const struct pop3_cmd *cmd)
{
    /* APOP needs the shared secret in the clear on the server to compute
     * MD5(timestamp + secret); accounts keep only crypt(3) hashes. */
    pop3_err(s, "[AUTH] APOP not available: this server stores only password hashes");
}

/* ---- AUTH (RFC 5034) --------------------------------------------------- */

void pop3_auth_cleanup(struct pop3_session *s)
{
    s->sasl_step = SASL_NONE;
    if (s->sasl_login_user) {
        OPENSSL_cleanse(s->sasl_login_user, strlen(s->sasl_login_user));
        free(s->sasl_login_user);
        s->sasl_login_user = NULL;
    }
}

static void plain_response(struct pop3_session *s, const char *b64, size_t len)
{
    struct sasl_creds cr;
    if (sasl_plain_decode(b64, len, &cr) < 0) {
        pop3_err(s, "invalid SASL PLAIN response");
        return;
    }
    if (cr.authzid && cr.authzid[0] && ascii_casecmp(cr.authzid, cr.authcid) != 0) {
        sasl_creds_free(&cr);
        pop3_err(s, "[AUTH] authorization identity must match the login");
        return;
    }
    start_check(s, cr.authcid, cr.password);
    sasl_creds_free(&cr);
}

static void login_user(struct pop3_session *s, const char *b64, size_t len)
{
    sbuf user = SBUF_INIT;
    if (sasl_base64_decode(b64, len, &user) < 0 || user.len == 0 || memchr(user.data, '\0', user.len)) {
        sbuf_free(&user);
        pop3_err(s, "invalid SASL LOGIN user name");
        return;
    }
    s->sasl_login_user = sbuf_detach(&user);
    s->sasl_step = SASL_LOGIN_PASS;
    s->phase = PH_SASL;
    pop3_write(s, "+ UGFzc3dvcmQ6\r\n", 16);
}

void pop3_cmd_auth(struct pop3_session *s, const struct pop3_cmd *cmd)
{
    if (!cmd->arg) {
        /* Bare AUTH (RFC 1734, still sent by clients): list mechanisms. */
        if (!pop3_login_allowed(s)) {
            pop3_err(s, "%s", PLAINTEXT_REFUSED);
            return;
        }
        static const char list[] = "+OK SASL mechanisms follow\r\nPLAIN\r\nLOGIN\r\n.\r\n";
        pop3_write(s, list, sizeof list - 1);
        return;
    }
    if (!may_try(s)) return;
    if (cmd->arg_len == 5 && ascii_ncasecmp(cmd->arg, "PLAIN", 5) == 0) {
        if (!cmd->arg2) {
            s->sasl_step = SASL_PLAIN_WAIT;
            s->phase = PH_SASL;
            pop3_write(s, "+ \r\n", 4);
            return;
        }
        plain_response(s, cmd->arg2, cmd->arg2_len);
    } else if (cmd->arg_len == 5 && ascii_ncasecmp(cmd->arg, "LOGIN", 5) == 0) {
        if (!cmd->arg2) {
            s->sasl_step = SASL_LOGIN_USER;
            s->phase = PH_SASL;
            pop3_write(s, "+ VXNlcm5hbWU6\r\n", 16);
            return;
        }
        login_user(s, cmd->arg2, cmd->arg2_len);
    } else {
        pop3_err(s, "unsupported SASL mechanism (PLAIN and LOGIN are offered)");
    }
}

void pop3_sasl_response(struct pop3_session *s, const char *line, size_t len)
{
    enum pop3_sasl_step step = s->sasl_step;
    s->phase = PH_COMMAND;
    s->sasl_step = SASL_NONE;
    if (len == 1 && line[0] == '*') {
        pop3_auth_cleanup(s);
        pop3_err(s, "authentication cancelled");
        return;
    }
    switch (step) {
    case SASL_PLAIN_WAIT:
        plain_response(s, line, len);
        break;
    case SASL_LOGIN_USER:
        login_user(s, line, len);
        break;
    case SASL_LOGIN_PASS: {
        sbuf pass = SBUF_INIT;
        char *user = s->sasl_login_user;
        s->sasl_login_user = NULL;
        if (sasl_base64_decode(line, len, &pass) < 0 || pass.len == 0 || memchr(pass.data, '\0', pass.len))
            pop3_err(s, "invalid SASL LOGIN password");
        else
            start_check(s, user, sbuf_cstr(&pass));
        if (pass.data) OPENSSL_cleanse(pass.data, pass.len);
        sbuf_free(&pass);
        free(user);
        break;
    }
    case SASL_NONE:
        break;
    }
}
