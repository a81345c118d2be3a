/* STARTTLS (RFC 3207) and AUTH (RFC 4954, PLAIN and LOGIN). */
#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth_async.h"
#include "auth/sasl.h"
#include "core/log.h"
#include "core/util.h"
#include "smtp/smtp_session_int.h"

/* ---- STARTTLS --------------------------------------------------------- */

void smtp_cmd_starttls(struct smtp_session *s, const struct smtp_cmd *cmd)
{
    if (smtp_tls_active(s)) {
        smtp_reply(s, 503, "5.5.1", "Error: TLS already active");
        return;
    }
    if (!s->srv->tls) {
        smtp_reply(s, 454, "4.7.0", "TLS not available");
        return;
    }
    if (s->in_mail) {
        smtp_reply(s, 503, "5.5.1", "Error: STARTTLS not allowed during a mail transaction");
        return;
    }
    smtp_reply(s, 220, "2.0.0", "Ready to start TLS");
    /* RFC 3207 section 4.2: forget everything learned before TLS. */
    s->greeted = false;
    s->esmtp = false;
    free(s->helo);
    s->helo = NULL;
    smtp_reset_transaction(s);
    conn_starttls(s->c, s->srv->tls);
}

/* ---- AUTH ------------------------------------------------------------- */

static struct auth_guard guard_of(const struct smtp_session *s)
{
    return (struct auth_guard){ s->srv->pool, s->srv->base, s->srv->failures, s->srv->cfg };
}

static void auth_done(int result, const char *user, void *p)
{
    struct smtp_session *s = p;
    if (s->phase == PH_CLOSED) {
        smtp_session_reap(s);
        return;
    }
    s->phase = PH_COMMAND;
    char safe[300];
    log_safe(user, strlen(user), safe, sizeof safe);
    if (result == 1) {
        s->auth_user = ascii_lower(xstrdup(user));
        log_info("session=%s auth ok user=%s from [%s]", s->id, safe, s->ip);
        smtp_reply(s, 235, "2.7.0", "Authentication successful");
    } else if (result < 0) {
        smtp_reply(s, 454, "4.7.0", "Temporary authentication failure");
    } else {
        smtp_reply(s, 535, "5.7.8", "Authentication credentials invalid");
    }
    smtp_resume(s);
}

static void start_check(struct smtp_session *s, const char *user, const char *password)
{
    s->phase = PH_BUSY;
    conn_pause(s->c);
    struct auth_guard g = guard_of(s);
    auth_guard_check(&g, s->id, s->ip, user, password, auth_done, s);
}

void smtp_auth_cleanup(struct smtp_session *s)
{
    s->auth_step = AUTH_NONE;
    if (s->auth_login_user) {
        OPENSSL_cleanse(s->auth_login_user, strlen(s->auth_login_user));
        free(s->auth_login_user);
        s->auth_login_user = NULL;
    }
}

static void plain_response(struct smtp_session *s, const char *b64, size_t len)
{
    struct sasl_creds cr;
    if (sasl_plain_decode(b64, len, &cr) < 0) {
        smtp_reply(s, 501, "5.5.2", "Invalid AUTH PLAIN response");
        return;
    }
    if (cr.authzid && cr.authzid[0] && ascii_casecmp(cr.authzid, cr.authcid) != 0) {
        sasl_creds_free(&cr);
        smtp_reply(s, 535, "5.7.8", "Authorization identity must match the login");
        return;
    }
    start_check(s, cr.authcid, cr.password);
    sasl_creds_free(&cr);
}

static void login_user(struct smtp_session *s, const char *b64, size_t len)
{
    sbuf user = SBUF_INIT;
    if (sasl_base64_decode(b64, len, &user) < 0 || user.len == 0 || memchr(user.data, '\0', user.len)) {
        sbuf_free(&user);
        smtp_reply(s, 501, "5.5.2", "Invalid AUTH LOGIN user name");
        return;
    }
    s->auth_login_user = sbuf_detach(&user);
    s->auth_step = AUTH_LOGIN_PASS;
    s->phase = PH_AUTH;
    smtp_reply(s, 334, NULL, "UGFzc3dvcmQ6");
}

void smtp_cmd_auth(struct smtp_session *s, const struct smtp_cmd *cmd)
{
    if (s->kind == SMTP_LISTENER_MX) {
        smtp_reply(s, 502, "5.5.1", "AUTH is not offered on this port; use submission (587 or 465)");
        return;
    }
    if (!smtp_auth_available(s)) {
        smtp_reply(s, 538, "5.7.11", "Encryption required for requested authentication mechanism");
        return;
    }
    if (!s->greeted || !s->esmtp) {
        smtp_reply(s, 503, "5.5.1", "Error: send EHLO first");
        return;
    }
    if (s->auth_user) {
        smtp_reply(s, 503, "5.5.1", "Error: already authenticated");
        return;
    }
    if (s->in_mail) {
        smtp_reply(s, 503, "5.5.1", "Error: AUTH not allowed during a mail transaction");
        return;
    }
    struct auth_guard g = guard_of(s);
    if (!auth_guard_allows(&g, s->ip)) {
        log_info("session=%s auth refused from [%s]: too many failures", s->id, s->ip);
        smtp_reply(s, 454, "4.7.0", "Too many authentication failures from your address, try again later");
        return;
    }
    const char *arg = cmd->arg ? cmd->arg : "";
    size_t len = cmd->arg ? cmd->arg_len : 0;
    const char *sp = memchr(arg, ' ', len);
    size_t mlen = sp ? (size_t)(sp - arg) : len;
    const char *initial = sp ? sp + 1 : NULL;
    size_t ilen = sp ? len - mlen - 1 : 0;

    if (mlen == 5 && ascii_ncasecmp(arg, "PLAIN", 5) == 0) {
        if (!initial) {
            s->auth_step = AUTH_PLAIN_WAIT;
            s->phase = PH_AUTH;
            smtp_reply(s, 334, NULL, "%s", "");
            return;
        }
        plain_response(s, initial, ilen);
    } else if (mlen == 5 && ascii_ncasecmp(arg, "LOGIN", 5) == 0) {
        if (!initial) {
            s->auth_step = AUTH_LOGIN_USER;
            s->phase = PH_AUTH;
            smtp_reply(s, 334, NULL, "VXNlcm5hbWU6");
            return;
        }
        login_user(s, initial, ilen);
    } else if (mlen == 0) {
        smtp_reply(s, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
    } else {
        smtp_reply(s, 504, "5.5.4", "Unrecognized authentication type");
    }
}

void smtp_auth_response(struct smtp_session *s, const char *line, size_t len)
{
    enum smtp_auth_step step = s->auth_step;
    s->phase = PH_COMMAND;
    s->auth_step = AUTH_NONE;
    if (len == 1 && line[0] == '*') {
        smtp_auth_cleanup(s);
        smtp_reply(s, 501, "5.0.0", "Authentication cancelled");
        return;
    }
    switch (step) {
    case AUTH_PLAIN_WAIT:
        plain_response(s, line, len);
        break;
    case AUTH_LOGIN_USER:
        login_user(s, line, len);
        break;
    case AUTH_LOGIN_PASS: {
        sbuf pass = SBUF_INIT;
        char *user = s->auth_login_user;
        s->auth_login_user = NULL;
        if (sasl_base64_decode(line, len, &pass) < 0 || memchr(pass.data, '\0', pass.len)) {
            smtp_reply(s, 501, "5.5.2", "Invalid AUTH LOGIN password");
        } else {
            start_check(s, user, sbuf_cstr(&pass));
        }
        if (pass.data) OPENSSL_cleanse(pass.data, pass.len);
        sbuf_free(&pass);
        free(user);
        break;
    }
    case AUTH_NONE:
        break;
    }
}
