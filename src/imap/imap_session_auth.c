/* IMAP logins: LOGIN (RFC 9051 6.2.3) and AUTHENTICATE (6.2.2) with SASL
 * PLAIN and LOGIN and the initial response of SASL-IR (RFC 4959), the
 * failed-login delay and limiter shared with SMTP and POP3, and the job
 * that opens the user's store. */
#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth_async.h"
#include "auth/sasl.h"
#include "core/log.h"
#include "core/util.h"
#include "imap/imap_session_int.h"

#define PLAINTEXT_REFUSED "[PRIVACYREQUIRED] Login not allowed without TLS: use STARTTLS (or imaps) first"

/* ---- opening the store (worker) ----------------------------------------- */

static void login_job(struct imap_session *s)
{
    char err[256];
    /* A user who never received mail has no store yet: create it. */
    s->store = store_user_open("mail", s->login, true, err, sizeof err);
    if (!s->store) {
        log_error("session=%s cannot open mail store of %s: %s", s->id, s->login, err);
        free(s->login);
        s->login = NULL;
        imap_tagged(s, "NO", "[UNAVAILABLE] Cannot open your mailboxes, try again later");
        return;
    }
    s->state = IS_AUTH;
    log_info("session=%s login user=%s from [%s]%s", s->id, s->login, s->ip,
             s->login_tls ? " TLS" : "");
    sbuf_puts(&s->out, s->tag_copy ? s->tag_copy : s->cmd.tag);
    sbuf_puts(&s->out, " OK [CAPABILITY ");
    imap_capabilities(s, &s->out);
    sbuf_puts(&s->out, "] Logged in\r\n");
    free(s->tag_copy);
    s->tag_copy = NULL;
}

/* ---- password check -------------------------------------------------------- */

static struct auth_guard guard_of(const struct imap_session *s)
{
    return (struct auth_guard){ s->srv->pool, s->srv->base, s->srv->failures, s->srv->cfg };
}

static void checked(int result, const char *user, void *ctx)
{
    struct imap_session *s = ctx;
    const config *cfg = s->srv->cfg;
    s->jobs--;
    if (s->phase == IP_CLOSED) {
        imap_session_reap(s);
        return;
    }
    if (result == 1) {
        char *login = ascii_lower(xstrdup(user));
        unsigned same = 0;
        for (struct imap_session *o = s->srv->sessions; o; o = o->next)
            if (o != s && o->login && o->phase != IP_CLOSED && strcmp(o->login, login) == 0) same++;
        if (same >= cfg->imap_max_connections_per_user) {
            log_info("session=%s login user=%s refused: %u sessions already", s->id, login, same);
            free(login);
            s->phase = IP_COMMAND;
            imap_tagged(s, "NO", "[LIMIT] Too many connections for this user, log out elsewhere first");
            imap_command_finished(s);
            imap_resume(s);
            return;
        }
        s->login = login;
        s->login_tls = conn_is_tls(s->c);
        s->phase = IP_COMMAND;
        imap_run_job(s, login_job);
        return;
    }
    s->phase = IP_COMMAND;
    if (result < 0)
        imap_tagged(s, "NO", "[UNAVAILABLE] Authentication temporarily unavailable, try again later");
    else
        imap_tagged(s, "NO", "[AUTHENTICATIONFAILED] Authentication failed");
    imap_command_finished(s);
    imap_resume(s);
}

static void start_check(struct imap_session *s, const char *user, const char *password)
{
    s->phase = IP_BUSY;
    s->jobs++;
    conn_pause(s->c);
    struct auth_guard g = guard_of(s);
    auth_guard_check(&g, s->id, s->ip, user, password, checked, s);
}

/* Checks common to LOGIN and AUTHENTICATE; false after replying. */
static bool may_try(struct imap_session *s)
{
    if (!imap_login_allowed(s)) {
        imap_tagged(s, "NO", PLAINTEXT_REFUSED);
        return false;
    }
    struct auth_guard g = guard_of(s);
    if (!auth_guard_allows(&g, s->ip)) {
        log_info("session=%s login refused from [%s]: too many failures", s->id, s->ip);
        imap_tagged(s, "NO", "[UNAVAILABLE] Too many authentication failures from your address, try again later");
        return false;
    }
    return true;
}

/* ---- LOGIN ------------------------------------------------------------------ */

void imap_cmd_login(struct imap_session *s)
{
    if (!may_try(s)) return;
    const struct imap_str *u = &s->cmd.str1, *p = &s->cmd.str2;
    if (u->len == 0 || p->len == 0 || memchr(u->data, 0, u->len) || memchr(p->data, 0, p->len)) {
        imap_tagged(s, "NO", "[AUTHENTICATIONFAILED] Authentication failed");
        return;
    }
    char *user = xstrndup(u->data, u->len);
    char *pass = xstrndup(p->data, p->len);
    start_check(s, user, pass);
    OPENSSL_cleanse(pass, p->len);
    free(pass);
    free(user);
}

/* ---- AUTHENTICATE ----------------------------------------------------------- */

void imap_auth_cleanup(struct imap_session *s)
{
    s->sasl_step = ISASL_NONE;
    if (s->sasl_user) {
        OPENSSL_cleanse(s->sasl_user, strlen(s->sasl_user));
        free(s->sasl_user);
        s->sasl_user = NULL;
    }
}

static void plain_response(struct imap_session *s, const char *b64, size_t len)
{
    struct sasl_creds cr;
    if (sasl_plain_decode(b64, len, &cr) < 0) {
        imap_tagged(s, "BAD", "Invalid SASL PLAIN response");
        return;
    }
    if (cr.authzid && cr.authzid[0] && ascii_casecmp(cr.authzid, cr.authcid) != 0) {
        sasl_creds_free(&cr);
        imap_tagged(s, "NO", "[AUTHORIZATIONFAILED] Authorization identity must match the login");
        return;
    }
    start_check(s, cr.authcid, cr.password);
    sasl_creds_free(&cr);
}

static void login_user(struct imap_session *s, const char *b64, size_t len)
{
    sbuf user = SBUF_INIT;
    if (sasl_base64_decode(b64, len, &user) < 0 || user.len == 0 || memchr(user.data, '\0', user.len)) {
        sbuf_free(&user);
        imap_tagged(s, "BAD", "Invalid SASL LOGIN user name");
        return;
    }
    s->sasl_user = sbuf_detach(&user);
    s->sasl_step = ISASL_LOGIN_PASS;
    s->phase = IP_SASL;
    imap_send(s, "+ UGFzc3dvcmQ6\r\n");
}

void imap_cmd_authenticate(struct imap_session *s)
{
    const struct imap_str *m = &s->cmd.str1;
    bool plain = m->len == 5 && ascii_ncasecmp(m->data, "PLAIN", 5) == 0;
    bool login = m->len == 5 && ascii_ncasecmp(m->data, "LOGIN", 5) == 0;
    if (!plain && !login) {
        imap_tagged(s, "NO", "Unsupported authentication mechanism (PLAIN and LOGIN are offered)");
        return;
    }
    if (!may_try(s)) return;
    if (s->cmd.has_ir) {
        /* The command's bytes stay until the check is over. */
        char *ir = xstrndup(s->cmd.str2.data, s->cmd.str2.len);
        size_t n = s->cmd.str2.len;
        if (plain) plain_response(s, ir, n);
        else login_user(s, ir, n);
        OPENSSL_cleanse(ir, n);
        free(ir);
        if (s->phase == IP_SASL) imap_hold_tag(s);
        return;
    }
    s->sasl_step = plain ? ISASL_PLAIN : ISASL_LOGIN_USER;
    s->phase = IP_SASL;
    imap_send(s, plain ? "+ \r\n" : "+ VXNlcm5hbWU6\r\n");
    imap_hold_tag(s);
}

void imap_sasl_line(struct imap_session *s, const char *line, size_t len)
{
    enum imap_sasl_step step = s->sasl_step;
    s->phase = IP_COMMAND;
    s->sasl_step = ISASL_NONE;
    if (len == 1 && line[0] == '*') {
        imap_auth_cleanup(s);
        imap_tagged(s, "BAD", "Authentication cancelled");
        return;
    }
    switch (step) {
    case ISASL_PLAIN:
        plain_response(s, line, len);
        break;
    case ISASL_LOGIN_USER:
        login_user(s, line, len);
        break;
    case ISASL_LOGIN_PASS: {
        sbuf pass = SBUF_INIT;
        char *user = s->sasl_user;
        s->sasl_user = NULL;
        if (sasl_base64_decode(line, len, &pass) < 0 || pass.len == 0 || memchr(pass.data, '\0', pass.len))
            imap_tagged(s, "BAD", "Invalid SASL LOGIN password");
        else
            start_check(s, user, sbuf_cstr(&pass));
        if (pass.data) OPENSSL_cleanse(pass.data, pass.len);
        sbuf_free(&pass);
        free(user);
        break;
    }
    case ISASL_NONE:
        break;
    }
}
