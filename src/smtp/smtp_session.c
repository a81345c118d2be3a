/* SMTP session state machine (RFC 5321): connection life cycle, command
 * input, HELO/EHLO, the envelope (MAIL, RCPT) and the small commands.
 * DATA/BDAT live in smtp_session_data.c, STARTTLS/AUTH in
 * smtp_session_auth.c. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "dns/dns_answer.h"
#include "net/tls.h"
#include "queue/queue_runner.h"
#include "smtp/smtp_address.h"
#include "smtp/smtp_delivery.h"
#include "smtp/smtp_reply.h"
#include "smtp/smtp_session_int.h"

/* RFC 4954 section 4: a SASL response line may be up to 12288 octets. */
#define AUTH_LINE_MAX 12288

const char *smtp_listener_name(enum smtp_listener_kind kind)
{
    switch (kind) {
    case SMTP_LISTENER_MX: return "smtp";
    case SMTP_LISTENER_SUBMISSION: return "submission";
    case SMTP_LISTENER_SUBMISSIONS: return "submissions";
    case SMTP_LISTENER_LOCAL: return "local";
    }
    return "?";
}

static void process_input(struct smtp_session *s);

/* ---- replies and closing --------------------------------------------- */

void smtp_reply(struct smtp_session *s, int code, const char *enhanced, const char *fmt, ...)
{
    if (s->phase == PH_CLOSED) return;
    sbuf text = SBUF_INIT, out = SBUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    sbuf_vprintf(&text, fmt, ap);
    va_end(ap);
    smtp_reply_format(&out, code, enhanced, sbuf_cstr(&text));
    conn_write(s->c, out.data, out.len);
    log_debug("session=%s reply %d %s %s", s->id, code, enhanced ? enhanced : "", sbuf_cstr(&text));
    sbuf_free(&text);
    sbuf_free(&out);

    /* Postfix's smtpd_hard_error_limit: a client that keeps failing is a
     * probe or broken; either way it gets no more of our time. */
    if (code >= 500 && code != 552 && ++s->errors >= s->srv->cfg->max_errors) {
        sbuf_init(&out);
        smtp_reply_format(&out, 421, "4.7.0", "Too many errors, closing connection");
        conn_write(s->c, out.data, out.len);
        sbuf_free(&out);
        log_info("session=%s too many errors (%u), closing", s->id, s->errors);
        smtp_close(s, "too many errors");
    }
}

void smtp_close(struct smtp_session *s, const char *why)
{
    if (s->quitting || s->phase == PH_CLOSED) return;
    s->quitting = true;
    conn_close_after_flush(s->c, why);
}

bool smtp_tls_active(const struct smtp_session *s)
{
    return conn_is_tls(s->c);
}

bool smtp_auth_available(const struct smtp_session *s)
{
    if (s->kind == SMTP_LISTENER_MX || s->kind == SMTP_LISTENER_LOCAL) return false;
    return smtp_tls_active(s) || s->srv->cfg->auth_allow_plaintext;
}

/* ---- transaction state ----------------------------------------------- */

static void free_rcpts(struct smtp_session *s)
{
    for (size_t i = 0; i < s->nrcpts; i++) {
        free(s->rcpts[i].address);
        free(s->rcpts[i].orcpt);
        accounts_dests_free(s->rcpts[i].dests, s->rcpts[i].ndests);
    }
    s->nrcpts = 0;
}

void smtp_reset_transaction(struct smtp_session *s)
{
    free_rcpts(s);
    free(s->mail_from);
    s->mail_from = NULL;
    s->in_mail = false;
    s->bdat_used = false;
    s->bdat_failed = false;
    s->too_big = false;
    s->spool_error = false;
    memset(&s->mail, 0, sizeof s->mail);
    s->qid[0] = '\0';
    smtp_spool_close(s);
}

/* ---- life cycle ------------------------------------------------------- */

static void session_free(struct smtp_session *s)
{
    struct smtp_server *srv = s->srv;
    if (s->prev) s->prev->next = s->next; else srv->sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    srv->nsessions--;
    connlimit_release(srv->limits, s->ip);
    smtp_reset_transaction(s);
    smtp_auth_cleanup(s);
    free(s->rcpts);
    free(s->helo);
    free(s->auth_user);
    sbuf_free(&s->line);
    sbuf_free(&s->pending);
    conn_free(s->c);
    free(s);
}

bool smtp_session_reap(struct smtp_session *s)
{
    if (s->phase != PH_CLOSED) return false;
    session_free(s);
    return true;
}

static void on_close(conn *c, void *ud, const char *why)
{
    struct smtp_session *s = ud;
    bool busy = s->phase == PH_BUSY;
    if (s->phase == PH_DATA || s->phase == PH_BDAT)
        log_info("session=%s disconnected during message data, nothing accepted", s->id);
    log_info("session=%s disconnect from [%s] (%s) messages=%u", s->id, s->ip, why, s->messages);
    s->phase = PH_CLOSED;
    /* A worker still holds this session: its completion callback frees it. */
    if (!busy) session_free(s);
}

static void on_timeout(conn *c, void *ud)
{
    struct smtp_session *s = ud;
    log_info("session=%s timeout in %s from [%s]", s->id,
             s->phase == PH_DATA || s->phase == PH_BDAT ? "message data" : "command", s->ip);
    s->errors = 0;  /* the 421 below is the last word either way */
    smtp_reply(s, 421, "4.4.2", "%s Error: timeout exceeded", s->srv->cfg->hostname);
    smtp_close(s, "timeout");
}

static void on_read(conn *c, void *ud)
{
    process_input(ud);
}

static void on_tls(conn *c, void *ud)
{
    struct smtp_session *s = ud;
    char desc[160];
    tls_describe(conn_ssl(s->c), desc, sizeof desc);
    log_info("session=%s TLS established: %s", s->id, desc);
    if (!s->banner_sent) {
        /* Implicit TLS: the greeting comes once the handshake is done. */
        s->banner_sent = true;
        smtp_reply(s, 220, NULL, "%s ESMTP pochta", s->srv->cfg->hostname);
    }
    process_input(s);
}

static const struct conn_ops smtp_conn_ops = {
    .on_read = on_read,
    .on_drain = on_read,
    .on_timeout = on_timeout,
    .on_close = on_close,
    .on_tls = on_tls,
};

void smtp_session_accept(struct smtp_server *srv, enum smtp_listener_kind kind, int fd,
                         const struct sockaddr *peer)
{
    char ip[64];
    sockaddr_ip(peer, ip);
    struct ucred cred = { 0 };
    if (kind == SMTP_LISTENER_LOCAL) {
        /* The socket is local-only: the peer's uid is who sends. */
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
            log_error("accept on local socket: SO_PEERCRED: %s", strerror(errno));
            close(fd);
            return;
        }
        snprintf(ip, sizeof ip, "uid=%lu", (unsigned long)cred.uid);
    }
    char refusal[300];
    snprintf(refusal, sizeof refusal, "421 4.7.0 %s", srv->cfg->hostname);
    if (!connlimit_admit(srv->limits, srv->shutting_down, fd, ip, smtp_listener_name(kind),
                         kind == SMTP_LISTENER_SUBMISSIONS ? NULL : refusal, "Service shutting down"))
        return;

    struct smtp_session *s = xcalloc(1, sizeof *s);
    s->srv = srv;
    s->kind = kind;
    s->spool_fd = -1;
    s->local = kind == SMTP_LISTENER_LOCAL;
    s->local_uid = (unsigned long)cred.uid;
    make_id(s->id);
    memcpy(s->ip, ip, sizeof ip);
    s->c = conn_new(srv->base, fd, peer, kind == SMTP_LISTENER_SUBMISSIONS ? srv->tls : NULL,
                    &smtp_conn_ops, s);
    if (!s->c) {
        connlimit_release(srv->limits, ip);
        free(s);
        return;
    }
    s->next = srv->sessions;
    if (s->next) s->next->prev = s;
    srv->sessions = s;
    srv->nsessions++;
    conn_set_timeout(s->c, srv->cfg->smtp_timeout);
    log_info("session=%s connect from [%s]:%d to %s", s->id, ip, conn_port(s->c), smtp_listener_name(kind));
    if (s->local) {
        struct passwd pw, *found = NULL;
        char buf[1024];
        getpwuid_r(cred.uid, &pw, buf, sizeof buf, &found);
        log_info("session=%s local submission by uid=%lu user=%s pid=%ld", s->id, s->local_uid,
                 found ? found->pw_name : "?", (long)cred.pid);
    }
    if (kind != SMTP_LISTENER_SUBMISSIONS) {
        s->banner_sent = true;
        smtp_reply(s, 220, NULL, "%s ESMTP pochta", srv->cfg->hostname);
    }
}

void smtp_server_shutdown(struct smtp_server *srv)
{
    srv->shutting_down = true;
    struct smtp_session *next;
    for (struct smtp_session *s = srv->sessions; s; s = next) {
        next = s->next;
        /* A session whose message is being stored gets its 250 first; the
         * completion handler sees shutting_down and closes afterwards. */
        if (s->phase == PH_BUSY || s->phase == PH_CLOSED) continue;
        s->errors = 0;
        smtp_reply(s, 421, "4.3.2", "%s Service shutting down, closing connection", srv->cfg->hostname);
        smtp_close(s, "shutdown");
    }
}

/* ---- HELO / EHLO ------------------------------------------------------ */

static bool helo_arg_ok(const char *arg, size_t len)
{
    if (len == 0 || len > 255) return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)arg[i];
        if (c <= 0x20 || c == 0x7f) return false;
    }
    return true;
}

static void cmd_helo(struct smtp_session *s, const struct smtp_cmd *cmd, bool esmtp)
{
    if (!cmd->arg || !helo_arg_ok(cmd->arg, cmd->arg_len)) {
        smtp_reply(s, 501, "5.5.4", "Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
        return;
    }
    smtp_reset_transaction(s);
    free(s->helo);
    s->helo = xstrndup(cmd->arg, cmd->arg_len);
    s->greeted = true;
    s->esmtp = esmtp;
    const config *cfg = s->srv->cfg;
    if (!esmtp) {
        smtp_reply(s, 250, NULL, "%s", cfg->hostname);
        return;
    }
    sbuf r = SBUF_INIT;
    sbuf_printf(&r, "%s Hello %s [%s]\n", cfg->hostname, s->helo, s->ip);
    sbuf_puts(&r, "PIPELINING\n");
    sbuf_printf(&r, "SIZE %llu\n", (unsigned long long)cfg->max_message_size);
    sbuf_puts(&r, "8BITMIME\nBINARYMIME\nCHUNKING\nENHANCEDSTATUSCODES\nSMTPUTF8\nDSN\nETRN\n");
    if (!smtp_tls_active(s) && !s->local) sbuf_puts(&r, "STARTTLS\n");
    if (smtp_auth_available(s) && !s->auth_user) sbuf_puts(&r, "AUTH PLAIN LOGIN\n");
    sbuf_puts(&r, "HELP");
    /* RFC 2034: EHLO keyword lines carry no enhanced status code. */
    smtp_reply(s, 250, NULL, "%s", sbuf_cstr(&r));
    sbuf_free(&r);
}

/* ---- MAIL / RCPT ------------------------------------------------------ */

static bool needs_auth(const struct smtp_session *s)
{
    return s->kind != SMTP_LISTENER_MX && s->kind != SMTP_LISTENER_LOCAL && !s->auth_user;
}

static bool is_local_cb(const char *domain, void *ctx);

/* Does the authenticated user own this sender address?  Yes for <>, the
 * login itself, and any local address (alias, +tag form) whose delivery
 * reaches the login's mailbox. */
static bool sender_owned(struct smtp_session *s, const struct smtp_address *path, const char *from)
{
    if (path->null || ascii_casecmp(from, s->auth_user) == 0) return true;
    if (!config_is_local_domain(s->srv->cfg, path->domain)) return false;
    struct account_dest *d = NULL;
    size_t n = 0;
    bool owned = false;
    if (accounts_resolve(s->srv->acc, from, s->srv->cfg->recipient_delimiter, is_local_cb,
                         (void *)s->srv->cfg, &d, &n) > 0)
        for (size_t i = 0; i < n && !owned; i++)
            owned = d[i].local && ascii_casecmp(d[i].address, s->auth_user) == 0;
    accounts_dests_free(d, n);
    return owned;
}

static void cmd_mail(struct smtp_session *s, const struct smtp_cmd *cmd)
{
    const config *cfg = s->srv->cfg;
    if (!s->greeted) {
        smtp_reply(s, 503, "5.5.1", "Error: send HELO/EHLO first");
        return;
    }
    if (s->in_mail) {
        smtp_reply(s, 503, "5.5.1", "Error: nested MAIL command");
        return;
    }
    if (needs_auth(s)) {
        smtp_reply(s, 530, "5.7.0", "Authentication required");
        return;
    }
    if (!s->esmtp && (cmd->has_size || cmd->body || cmd->smtputf8 || cmd->ret || cmd->envid[0])) {
        smtp_reply(s, 555, "5.5.4", "MAIL parameters need EHLO");
        return;
    }
    if (cmd->has_size && cmd->size > cfg->max_message_size) {
        smtp_reply(s, 552, "5.3.4", "Message size exceeds fixed limit of %llu bytes",
                   (unsigned long long)cfg->max_message_size);
        return;
    }
    if (cmd->path.utf8 && !cmd->smtputf8) {
        smtp_reply(s, 553, "5.6.7", "Non-ASCII sender address needs the SMTPUTF8 parameter");
        return;
    }
    if (s->srv->shutting_down) {
        smtp_reply(s, 421, "4.3.2", "Service shutting down");
        smtp_close(s, "shutdown");
        return;
    }
    sbuf from = SBUF_INIT;
    smtp_address_format(&cmd->path, &from);
    if (s->auth_user && cfg->sender_login_match && !sender_owned(s, &cmd->path, sbuf_cstr(&from))) {
        char safe[600];
        log_info("session=%s sender <%s> refused: not owned by %s", s->id,
                 log_safe(from.data, from.len, safe, sizeof safe), s->auth_user);
        smtp_reply(s, 553, "5.7.1", "<%s>: Sender address rejected: not owned by user %s", safe, s->auth_user);
        sbuf_free(&from);
        return;
    }
    s->mail_from = sbuf_detach(&from);
    s->mail = *cmd;
    s->in_mail = true;
    make_id(s->qid);
    s->too_big = false;
    char safe[600];
    log_info("session=%s queue=%s from=<%s> size=%llu%s%s%s%s", s->id, s->qid,
             log_safe(s->mail_from, strlen(s->mail_from), safe, sizeof safe),
             (unsigned long long)cmd->size, cmd->smtputf8 ? " smtputf8" : "",
             s->auth_user ? " authenticated" : "", s->local ? " local " : "", s->local ? s->ip : "");
    smtp_reply(s, 250, "2.1.0", "Ok");
}

static bool is_local_cb(const char *domain, void *ctx)
{
    return config_is_local_domain(ctx, domain);
}

/* RFC 9208 / RFC 3463 X.2.2: a recipient whose every local mailbox is
 * already at or over its storage quota is refused now, with a temporary
 * code (mail may be deleted).  Expansions with a remote target or a
 * mailbox with room go ahead; the worker then drops the full copies (see
 * smtp_delivery.h).  1 full, 0 not, -1 lookup error.  Runs on the loop:
 * one account lookup per destination, and a store index query only for
 * users that have a quota. */
static int rcpt_mailbox_full(struct smtp_session *s, const struct account_dest *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!d[i].local) return 0;
        uint64_t limit = 0, used = 0;
        int rc = accounts_user_quota_get(s->srv->acc, d[i].address, &limit);
        if (rc < 0) return -1;
        if (rc == 0 || limit == 0) return 0;
        if (smtp_quota_usage(d[i].address, &used) < 0 || used < limit) return 0;
    }
    return n > 0;
}

static void cmd_rcpt(struct smtp_session *s, const struct smtp_cmd *cmd)
{
    const config *cfg = s->srv->cfg;
    if (!s->in_mail) {
        smtp_reply(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    if (s->nrcpts >= cfg->max_recipients) {
        smtp_reply(s, 452, "4.5.3", "Error: too many recipients (limit %u)", cfg->max_recipients);
        return;
    }
    if (cmd->path.utf8 && !s->mail.smtputf8) {
        smtp_reply(s, 553, "5.6.7", "Non-ASCII recipient address needs SMTPUTF8 on MAIL");
        return;
    }
    if (cmd->notify && !s->esmtp) {
        smtp_reply(s, 555, "5.5.4", "RCPT parameters need EHLO");
        return;
    }

    sbuf addr = SBUF_INIT;
    const char *domain = cmd->path.domain;
    if (!domain[0]) {
        /* RFC 5321 4.5.1: <Postmaster> without a domain is ours. */
        sbuf_printf(&addr, "postmaster@%s", cfg->domains[0]);
        domain = cfg->domains[0];
    } else {
        smtp_address_format(&cmd->path, &addr);
    }
    char safe[600];
    log_safe(addr.data, addr.len, safe, sizeof safe);

    struct smtp_rcpt r = { 0 };
    bool local = !cmd->path.literal && config_is_local_domain(cfg, domain);
    if (local) {
        int n = accounts_resolve(s->srv->acc, sbuf_cstr(&addr), cfg->recipient_delimiter,
                                 is_local_cb, (void *)cfg, &r.dests, &r.ndests);
        if (n < 0) {
            log_error("session=%s queue=%s recipient lookup failed for <%s>", s->id, s->qid, safe);
            smtp_reply(s, 451, "4.3.0", "Temporary lookup failure");
            sbuf_free(&addr);
            return;
        }
        if (n == 0) {
            log_info("session=%s queue=%s reject to=<%s>: unknown user", s->id, s->qid, safe);
            smtp_reply(s, 550, "5.1.1", "<%s>: Recipient address rejected: user unknown", safe);
            sbuf_free(&addr);
            return;
        }
        int full = rcpt_mailbox_full(s, r.dests, r.ndests);
        if (full != 0) {
            if (full < 0) {
                log_error("session=%s queue=%s quota lookup failed for <%s>", s->id, s->qid, safe);
                smtp_reply(s, 451, "4.3.0", "Temporary lookup failure");
            } else {
                log_info("session=%s queue=%s reject to=<%s>: mailbox full", s->id, s->qid, safe);
                smtp_reply(s, 452, "4.2.2", "<%s>: Mailbox full", safe);
            }
            accounts_dests_free(r.dests, r.ndests);
            sbuf_free(&addr);
            return;
        }
    } else if (s->auth_user || s->local) {
        /* Authenticated or local submission: remote recipients go to the queue. */
        r.dests = xcalloc(1, sizeof *r.dests);
        r.dests[0].address = xstrdup(sbuf_cstr(&addr));
        r.dests[0].local = false;
        r.ndests = 1;
    } else {
        log_info("session=%s queue=%s reject to=<%s>: relay denied from [%s]", s->id, s->qid, safe, s->ip);
        if (needs_auth(s))
            smtp_reply(s, 530, "5.7.0", "Authentication required");
        else
            smtp_reply(s, 554, "5.7.1", "<%s>: Relay access denied", safe);
        sbuf_free(&addr);
        return;
    }

    r.address = sbuf_detach(&addr);
    r.notify = cmd->notify;
    r.orcpt = cmd->orcpt[0] ? xstrdup(cmd->orcpt) : NULL;
    if (s->nrcpts == s->rcpts_cap) {
        s->rcpts_cap = s->rcpts_cap ? s->rcpts_cap * 2 : 8;
        s->rcpts = xrealloc(s->rcpts, s->rcpts_cap * sizeof *s->rcpts);
    }
    s->rcpts[s->nrcpts++] = r;
    smtp_reply(s, 250, "2.1.5", "Ok");
}

/* ---- VRFY, EXPN, HELP and the rest ----------------------------------- */

/* VRFY/EXPN argument: "<addr>", "addr", or a bare local part. */
static char *lookup_arg(const struct smtp_session *s, const struct smtp_cmd *cmd)
{
    if (!cmd->arg || cmd->arg_len == 0 || cmd->arg_len > 512) return NULL;
    char *a = xstrndup(cmd->arg, cmd->arg_len);
    char *p = a;
    size_t n = strlen(p);
    if (n >= 2 && p[0] == '<' && p[n - 1] == '>') { p[n - 1] = '\0'; p++; }
    sbuf b = SBUF_INIT;
    if (strchr(p, '@')) sbuf_puts(&b, p);
    else sbuf_printf(&b, "%s@%s", p, s->srv->cfg->domains[0]);
    free(a);
    return sbuf_detach(&b);
}

static void cmd_vrfy(struct smtp_session *s, const struct smtp_cmd *cmd)
{
    if (!cmd->arg) {
        smtp_reply(s, 501, "5.5.4", "Syntax: VRFY address");
        return;
    }
    if (!s->srv->cfg->vrfy) {
        /* RFC 5321 3.5.3: 252 reveals nothing and stays truthful. */
        smtp_reply(s, 252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery");
        return;
    }
    char *addr = lookup_arg(s, cmd);
    struct account_dest *d = NULL;
    size_t nd = 0;
    const char *at = addr ? strrchr(addr, '@') : NULL;
    int n = (at && config_is_local_domain(s->srv->cfg, at + 1))
        ? accounts_resolve(s->srv->acc, addr, s->srv->cfg->recipient_delimiter, is_local_cb,
                           (void *)s->srv->cfg, &d, &nd) : 0;
    char safe[600];
    if (addr) log_safe(addr, strlen(addr), safe, sizeof safe);
    if (n > 0) smtp_reply(s, 250, "2.1.5", "<%s>", safe);
    else if (n < 0) smtp_reply(s, 451, "4.3.0", "Temporary lookup failure");
    else smtp_reply(s, 550, "5.1.1", "<%s>: Recipient address rejected: user unknown", addr ? safe : "");
    accounts_dests_free(d, nd);
    free(addr);
}

struct expn_ctx { sbuf *out; unsigned n; };

static void expn_cb(const char *target, void *ctx)
{
    struct expn_ctx *e = ctx;
    char safe[600];
    sbuf_printf(e->out, "%s<%s>", e->n++ ? "\n" : "", log_safe(target, strlen(target), safe, sizeof safe));
}

static void cmd_expn(struct smtp_session *s, const struct smtp_cmd *cmd)
{
    if (!s->srv->cfg->expn) {
        smtp_reply(s, 502, "5.5.1", "EXPN is disabled");
        return;
    }
    char *addr = lookup_arg(s, cmd);
    if (!addr) {
        smtp_reply(s, 501, "5.5.4", "Syntax: EXPN address");
        return;
    }
    ascii_lower(addr);
    sbuf out = SBUF_INIT;
    struct expn_ctx e = { &out, 0 };
    accounts_alias_targets(s->srv->acc, addr, expn_cb, &e);
    char safe[600];
    log_safe(addr, strlen(addr), safe, sizeof safe);
    if (e.n > 0) smtp_reply(s, 250, "2.1.5", "%s", sbuf_cstr(&out));
    else if (accounts_user_exists(s->srv->acc, addr) == 1) smtp_reply(s, 250, "2.1.5", "<%s>", safe);
    else smtp_reply(s, 550, "5.1.1", "<%s>: no such user or list", safe);
    sbuf_free(&out);
    free(addr);
}

static const struct { const char *verb, *help; } help_topics[] = {
    { "HELO", "HELO <hostname>: identify yourself (RFC 5321 4.1.1.1)" },
    { "EHLO", "EHLO <hostname>: identify yourself and list extensions" },
    { "MAIL", "MAIL FROM:<sender> [SIZE=n] [BODY=7BIT|8BITMIME|BINARYMIME] [SMTPUTF8] [RET=FULL|HDRS] [ENVID=id]" },
    { "RCPT", "RCPT TO:<recipient> [NOTIFY=NEVER|SUCCESS,FAILURE,DELAY] [ORCPT=type;address]" },
    { "DATA", "DATA: send the message, end with <CRLF>.<CRLF>" },
    { "BDAT", "BDAT <size> [LAST]: send a chunk of the message (RFC 3030)" },
    { "RSET", "RSET: abort the current transaction" },
    { "NOOP", "NOOP: do nothing" },
    { "QUIT", "QUIT: close the connection" },
    { "HELP", "HELP [command]: this help" },
    { "VRFY", "VRFY <address>: verify an address (may answer 252)" },
    { "EXPN", "EXPN <list>: expand a mailing list (may be disabled)" },
    { "ETRN", "ETRN <domain>: start delivery of queued mail for a domain (RFC 1985)" },
    { "STARTTLS", "STARTTLS: start TLS (RFC 3207)" },
    { "AUTH", "AUTH <mechanism> [initial-response]: authenticate (RFC 4954)" },
};

static void cmd_help(struct smtp_session *s, const struct smtp_cmd *cmd)
{
    if (!cmd->arg || cmd->arg_len == 0) {
        smtp_reply(s, 214, "2.0.0", "pochta SMTP server; commands:\n"
                   "HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY EXPN ETRN STARTTLS AUTH\n"
                   "HELP <command> describes one; see RFC 5321");
        return;
    }
    for (size_t i = 0; i < sizeof help_topics / sizeof help_topics[0]; i++) {
        size_t n = strlen(help_topics[i].verb);
        if (cmd->arg_len == n && ascii_ncasecmp(cmd->arg, help_topics[i].verb, n) == 0) {
            smtp_reply(s, 214, "2.0.0", "%s", help_topics[i].help);
            return;
        }
    }
    smtp_reply(s, 504, "5.5.1", "HELP topic unknown");
}

struct etrn_wait {
    struct smtp_session *s;
    char safe[300];             /* the node as the client gave it, safe to echo */
};

static void etrn_done(int n, void *ctx)
{
    struct etrn_wait *w = ctx;
    struct smtp_session *s = w->s;
    if (s->phase == PH_CLOSED) {
        smtp_session_reap(s);
    } else {
        s->phase = PH_COMMAND;
        if (n < 0) smtp_reply(s, 458, "4.3.0", "Unable to queue messages for node %s", w->safe);
        else if (n == 0) smtp_reply(s, 251, "2.0.0", "OK, no messages waiting for node %s", w->safe);
        else smtp_reply(s, 250, "2.0.0", "OK, queuing for node %s started", w->safe);
        smtp_resume(s);
    }
    free(w);
}

static void cmd_etrn(struct smtp_session *s, const struct smtp_cmd *cmd)
{
    if (!s->greeted) {
        smtp_reply(s, 503, "5.5.1", "Error: send HELO/EHLO first");
        return;
    }
    if (s->in_mail) {
        smtp_reply(s, 503, "5.5.1", "Error: ETRN not allowed during a mail transaction");
        return;
    }
    if (!cmd->arg || cmd->arg_len == 0 || cmd->arg_len > 255) {
        smtp_reply(s, 501, "5.5.4", "Syntax: ETRN domain");
        return;
    }
    char safe[300];
    log_safe(cmd->arg, cmd->arg_len, safe, sizeof safe);
    /* RFC 1985: "ETRN domain" or "ETRN @domain" (the domain and its
     * subdomains; we flush the domain itself); "#queue" names are not
     * supported. */
    char node[256];
    size_t skip = cmd->arg[0] == '@' ? 1 : 0;
    snprintf(node, sizeof node, "%.*s", (int)(cmd->arg_len - skip), cmd->arg + skip);
    queue_runner *runner = queue_runner_get();
    if (!runner || cmd->arg[0] == '#' || !dns_name_valid(node)) {
        smtp_reply(s, 458, "4.3.0", "Unable to queue messages for node %s", safe);
        return;
    }
    /* The index update runs on a worker; the session waits (PH_BUSY)
     * like it does for a password check, so pipelined commands after ETRN
     * are answered in order. */
    struct etrn_wait *w = xmalloc(sizeof *w);
    w->s = s;
    snprintf(w->safe, sizeof w->safe, "%s", safe);
    s->phase = PH_BUSY;
    conn_pause(s->c);
    queue_runner_flush_async(runner, node, etrn_done, w);
}

static void dispatch(struct smtp_session *s, const struct smtp_cmd *cmd)
{
    switch (cmd->verb) {
    case SMTP_HELO: cmd_helo(s, cmd, false); break;
    case SMTP_EHLO: cmd_helo(s, cmd, true); break;
    case SMTP_MAIL: cmd_mail(s, cmd); break;
    case SMTP_RCPT: cmd_rcpt(s, cmd); break;
    case SMTP_DATA: smtp_cmd_data(s); break;
    case SMTP_BDAT: smtp_cmd_bdat(s, cmd); break;
    case SMTP_RSET:
        smtp_reset_transaction(s);
        smtp_reply(s, 250, "2.0.0", "Ok");
        break;
    case SMTP_NOOP: smtp_reply(s, 250, "2.0.0", "Ok"); break;
    case SMTP_QUIT:
        smtp_reply(s, 221, "2.0.0", "Bye");
        smtp_close(s, "QUIT");
        break;
    case SMTP_HELP: cmd_help(s, cmd); break;
    case SMTP_VRFY: cmd_vrfy(s, cmd); break;
    case SMTP_EXPN: cmd_expn(s, cmd); break;
    case SMTP_ETRN: cmd_etrn(s, cmd); break;
    case SMTP_TURN:
        /* RFC 5321 4.1.1 / RFC 2821 obsoleted TURN: it lets anyone take the
         * mail of any domain. */
        smtp_reply(s, 502, "5.5.1", "TURN is not implemented (RFC 5321)");
        break;
    case SMTP_SEND:
    case SMTP_SOML:
    case SMTP_SAML:
        smtp_reply(s, 502, "5.5.1", "Command not implemented (RFC 5321 4.1.1)");
        break;
    case SMTP_STARTTLS: smtp_cmd_starttls(s, cmd); break;
    case SMTP_AUTH: smtp_cmd_auth(s, cmd); break;
    case SMTP_UNKNOWN:
    default:
        smtp_reply(s, 500, "5.5.2", "Error: command not recognized");
        break;
    }
}

/* ---- input ------------------------------------------------------------ */

static void process_input(struct smtp_session *s)
{
    const config *cfg = s->srv->cfg;
    while (!s->quitting) {
        switch (s->phase) {
        case PH_DATA:
            if (!smtp_data_input(s)) return;
            continue;
        case PH_BDAT:
            if (!smtp_bdat_input(s)) return;
            continue;
        case PH_BUSY:
        case PH_CLOSED:
            return;
        case PH_AUTH:
        case PH_COMMAND:
            break;
        }
        /* Stop reading from a client that sends commands but does not read
         * our answers: its replies would pile up in memory. */
        if (conn_output_len(s->c) > CONN_OUTPUT_HIGH) return;     /* on_drain resumes */
        bool auth = s->phase == PH_AUTH;
        size_t max = auth ? AUTH_LINE_MAX : cfg->max_command_line - 2;
        int r = conn_read_line(s->c, &s->line, max);
        if (r == CONN_LINE_MORE) return;
        if (r == CONN_LINE_TOO_LONG) {
            smtp_reply(s, 500, "5.5.2", "Error: line too long (limit %zu bytes)", max + 2);
            if (auth) {
                s->phase = PH_COMMAND;
                smtp_auth_cleanup(s);
            }
            continue;
        }
        if (auth) {
            smtp_auth_response(s, s->line.data, s->line.len);
            continue;
        }
        struct smtp_cmd cmd;
        struct smtp_error err;
        if (smtp_parse_command(s->line.data, s->line.len, &cmd, &err) < 0) {
            smtp_reply(s, err.code, err.enhanced, "%s", err.text);
            continue;
        }
        dispatch(s, &cmd);
    }
}

void smtp_resume(struct smtp_session *s)
{
    if (s->phase == PH_CLOSED) return;
    conn_set_timeout(s->c, s->phase == PH_DATA || s->phase == PH_BDAT ? s->srv->cfg->smtp_data_timeout
                                                                       : s->srv->cfg->smtp_timeout);
    conn_resume(s->c);
    process_input(s);
}
