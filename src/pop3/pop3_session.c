/* POP3 session state machine (RFC 1939): connection life cycle, command
 * input, dispatch by state, CAPA (RFC 2449), STLS (RFC 2595) and UTF8
 * (RFC 6856).  Logins live in pop3_session_auth.c, the TRANSACTION and
 * UPDATE states in pop3_session_mail.c. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "net/tls.h"
#include "pop3/pop3_session_int.h"

/* A SASL response line (RFC 5034 section 4 sets no limit of its own; the
 * same bound as SMTP AUTH, RFC 4954 section 4). */
#define SASL_LINE_MAX 12288

static void process_input(struct pop3_session *s);

/* ---- replies and closing --------------------------------------------- */

static void reply(struct pop3_session *s, const char *status, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void reply(struct pop3_session *s, const char *status, const char *fmt, va_list ap)
{
    sbuf text = SBUF_INIT, out = SBUF_INIT;
    sbuf_vprintf(&text, fmt, ap);
    sbuf_puts(&out, status);
    if (text.len) {
        sbuf_putc(&out, ' ');
        sbuf_append(&out, text.data, text.len);
    }
    sbuf_free(&text);
    log_debug("session=%s reply %s", s->id, sbuf_cstr(&out));
    sbuf_puts(&out, "\r\n");
    conn_write(s->c, out.data, out.len);
    sbuf_free(&out);
}

void pop3_ok(struct pop3_session *s, const char *fmt, ...)
{
    if (s->phase == PH_CLOSED) return;
    va_list ap;
    va_start(ap, fmt);
    reply(s, "+OK", fmt, ap);
    va_end(ap);
}

void pop3_err(struct pop3_session *s, const char *fmt, ...)
{
    if (s->phase == PH_CLOSED) return;
    va_list ap;
    va_start(ap, fmt);
    reply(s, "-ERR", fmt, ap);
    va_end(ap);
}

/* A protocol error by the client (unknown command, bad syntax, wrong
 * state): like Postfix's hard error limit, a client that keeps failing is
 * a probe or broken, and gets no more of our time. */
static void client_error(struct pop3_session *s, const char *text)
{
    pop3_err(s, "%s", text);
    if (++s->errors >= s->srv->cfg->max_errors) {
        log_info("session=%s too many errors (%u), closing", s->id, s->errors);
        pop3_close(s, "too many errors");
    }
}

void pop3_write(struct pop3_session *s, const void *data, size_t len)
{
    if (s->phase == PH_CLOSED) return;
    conn_write(s->c, data, len);
}

void pop3_close(struct pop3_session *s, const char *why)
{
    if (s->quitting || s->phase == PH_CLOSED) return;
    s->quitting = true;
    conn_close_after_flush(s->c, why);
}

bool pop3_tls_active(const struct pop3_session *s)
{
    return conn_is_tls(s->c);
}

bool pop3_login_allowed(const struct pop3_session *s)
{
    if (pop3_tls_active(s)) return true;
    if (!s->srv->cfg->plaintext_auth_loopback) return false;
    return strcmp(s->ip, "127.0.0.1") == 0 || strcmp(s->ip, "::1") == 0;
}

/* ---- waiting for the output to drain --------------------------------- */

/* A session with too much queued output (a big RETR, or a client that
 * pipelines without reading) stops producing; conn calls on_drain when
 * the output is down to CONN_OUTPUT_LOW and it goes on from there. */
static void on_drain(conn *c, void *ud)
{
    struct pop3_session *s = ud;
    if (!s->waiting_drain || s->phase == PH_CLOSED) return;
    s->waiting_drain = false;
    if (s->phase == PH_SENDING) pop3_send_pump(s);
    else process_input(s);
}

void pop3_wait_drain(struct pop3_session *s)
{
    s->waiting_drain = true;
}

/* ---- life cycle ------------------------------------------------------- */

static void session_free(struct pop3_session *s)
{
    struct pop3_server *srv = s->srv;
    if (s->prev) s->prev->next = s->next; else srv->sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    srv->nsessions--;
    connlimit_release(srv->limits, s->ip);
    pop3_send_abort(s);
    pop3_auth_cleanup(s);
    pop3_unlock(s);
    pop3_snapshot_free(s);
    if (s->store) store_user_close(s->store);   /* only if no worker could take it */
    free(s->user);
    free(s->login);
    sbuf_free(&s->line);
    conn_free(s->c);
    free(s);
}

bool pop3_session_reap(struct pop3_session *s)
{
    if (s->phase != PH_CLOSED || s->jobs > 0) return false;
    /* The store handle is closed on a worker (SQLite may checkpoint its
     * WAL on close); the session is freed when that job is done. */
    if (pop3_release_store(s)) return false;
    session_free(s);
    return true;
}

static void on_close(conn *c, void *ud, const char *why)
{
    struct pop3_session *s = ud;
    if (s->state == ST_TRANSACTION)
        log_info("session=%s connection lost in TRANSACTION state: nothing deleted (RFC 1939 section 6)",
                 s->id);
    log_info("session=%s disconnect from [%s] (%s)%s%s", s->id, s->ip, why,
             s->login ? " user=" : "", s->login ? s->login : "");
    pop3_send_abort(s);
    s->phase = PH_CLOSED;
    pop3_session_reap(s);
}

static void on_timeout(conn *c, void *ud)
{
    struct pop3_session *s = ud;
    /* RFC 1939 section 3: the autologout timer closes the connection
     * without a response and without entering UPDATE. */
    log_info("session=%s autologout timer expired for [%s]", s->id, s->ip);
    pop3_close(s, "timeout");
}

static void on_read(conn *c, void *ud)
{
    process_input(ud);
}

static void greet(struct pop3_session *s)
{
    s->banner_sent = true;
    pop3_ok(s, "pochta POP3 server ready %s", s->banner_ts);
}

static void on_tls(conn *c, void *ud)
{
    struct pop3_session *s = ud;
    char desc[160];
    tls_describe(conn_ssl(s->c), desc, sizeof desc);
    log_info("session=%s TLS established: %s", s->id, desc);
    if (!s->banner_sent) greet(s);     /* pop3s: the greeting follows the handshake */
    process_input(s);
}

static const struct conn_ops pop3_conn_ops = {
    .on_read = on_read,
    .on_drain = on_drain,
    .on_timeout = on_timeout,
    .on_close = on_close,
    .on_tls = on_tls,
};

void pop3_session_accept(struct pop3_server *srv, bool implicit_tls, int fd, const struct sockaddr *peer)
{
    char ip[64];
    sockaddr_ip(peer, ip);
    const char *name = implicit_tls ? "pop3s" : "pop3";
    if (!connlimit_admit(srv->limits, srv->shutting_down, fd, ip, name,
                         implicit_tls ? NULL : "-ERR [SYS/TEMP]", "server shutting down"))
        return;

    struct pop3_session *s = xcalloc(1, sizeof *s);
    s->srv = srv;
    s->implicit_tls = implicit_tls;
    s->send_fd = -1;
    make_id(s->id);
    memcpy(s->ip, ip, sizeof ip);
    /* RFC 1939 section 7: the APOP timestamp is unique per greeting. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(s->banner_ts, sizeof s->banner_ts, "<%ld.%lld%06ld.%s@%.80s>", (long)getpid(),
             (long long)ts.tv_sec, ts.tv_nsec / 1000, s->id, srv->cfg->hostname);
    s->c = conn_new(srv->base, fd, peer, implicit_tls ? srv->tls : NULL, &pop3_conn_ops, s);
    if (!s->c) {
        connlimit_release(srv->limits, ip);
        free(s);
        return;
    }
    s->next = srv->sessions;
    if (s->next) s->next->prev = s;
    srv->sessions = s;
    srv->nsessions++;
    conn_set_timeout(s->c, srv->cfg->pop3_timeout);
    log_info("session=%s connect from [%s]:%d to %s", s->id, ip, conn_port(s->c), name);
    if (!implicit_tls) greet(s);
}

void pop3_server_shutdown(struct pop3_server *srv)
{
    srv->shutting_down = true;
    struct pop3_session *next;
    for (struct pop3_session *s = srv->sessions; s; s = next) {
        next = s->next;
        /* A running login or QUIT finishes and then closes (the job's
         * completion sees shutting_down); so does a message being sent. */
        if (s->phase != PH_COMMAND && s->phase != PH_SASL) continue;
        pop3_err(s, "[SYS/TEMP] server shutting down, nothing was deleted");
        pop3_close(s, "shutdown");
    }
}

void pop3_server_free(struct pop3_server *srv)
{
    struct pop3_maildrop *next;
    for (struct pop3_maildrop *d = srv->maildrops; d; d = next) {
        next = d->next;
        free(d->user);
        free(d);
    }
    srv->maildrops = NULL;
}

/* ---- commands valid in every state ----------------------------------- */

static void cmd_capa(struct pop3_session *s)
{
    const config *cfg = s->srv->cfg;
    sbuf r = SBUF_INIT;
    sbuf_puts(&r, "+OK Capability list follows\r\n");
    sbuf_puts(&r, "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
    sbuf_puts(&r, "EXPIRE NEVER\r\n");
    sbuf_printf(&r, "LOGIN-DELAY %u\r\n", cfg->pop3_login_delay);
    sbuf_puts(&r, "UTF8 USER\r\n");
    if (s->state == ST_AUTHORIZATION) {
        /* RFC 2595 section 2.1: no mechanism is offered that would be
         * refused; a client wanting to log in sees only STLS. */
        if (pop3_login_allowed(s)) sbuf_puts(&r, "USER\r\nSASL PLAIN LOGIN\r\n");
        if (!pop3_tls_active(s) && s->srv->tls) sbuf_puts(&r, "STLS\r\n");
    }
    sbuf_puts(&r, "IMPLEMENTATION pochta\r\n.\r\n");
    pop3_write(s, r.data, r.len);
    sbuf_free(&r);
}

static void cmd_stls(struct pop3_session *s)
{
    if (pop3_tls_active(s)) {
        client_error(s, "TLS already active");
        return;
    }
    if (!s->srv->tls) {
        pop3_err(s, "[SYS/PERM] TLS not available");
        return;
    }
    pop3_ok(s, "Begin TLS negotiation");
    /* RFC 2595 section 4: forget what was said before TLS. */
    free(s->user);
    s->user = NULL;
    s->utf8 = false;
    conn_starttls(s->c, s->srv->tls);
}

static void cmd_utf8(struct pop3_session *s)
{
    /* RFC 6856 section 2: UTF8 is valid in AUTHORIZATION only; it allows
     * UTF-8 in USER/PASS (accepted anyway) and promises nothing else we
     * would have to convert: stored messages are sent as they are. */
    s->utf8 = true;
    pop3_ok(s, "UTF8 enabled");
}

static void dispatch_authorization(struct pop3_session *s, const struct pop3_cmd *cmd)
{
    switch (cmd->verb) {
    case POP3_USER: pop3_cmd_user(s, cmd); break;
    case POP3_PASS: pop3_cmd_pass(s, cmd); break;
    case POP3_APOP: pop3_cmd_apop(s, cmd); break;
    case POP3_AUTH: pop3_cmd_auth(s, cmd); break;
    case POP3_STLS: cmd_stls(s); break;
    case POP3_UTF8: cmd_utf8(s); break;
    case POP3_QUIT:
        /* RFC 1939 section 4: QUIT before login ends without UPDATE. */
        pop3_ok(s, "pochta POP3 server signing off");
        pop3_close(s, "QUIT");
        break;
    case POP3_STAT: case POP3_LIST: case POP3_RETR: case POP3_DELE: case POP3_NOOP:
    case POP3_RSET: case POP3_TOP: case POP3_UIDL: case POP3_LAST:
        client_error(s, "command not valid in this state: log in first (USER/PASS or AUTH)");
        break;
    case POP3_CAPA:
    case POP3_UNKNOWN:
        break;
    }
}

static void dispatch(struct pop3_session *s, const struct pop3_cmd *cmd)
{
    if (cmd->verb == POP3_UNKNOWN) {
        client_error(s, "unknown command");
        return;
    }
    if (cmd->verb == POP3_CAPA) {
        cmd_capa(s);
        return;
    }
    if (s->state == ST_AUTHORIZATION) {
        dispatch_authorization(s, cmd);
        return;
    }
    switch (cmd->verb) {
    case POP3_USER: case POP3_PASS: case POP3_APOP: case POP3_AUTH:
    case POP3_STLS: case POP3_UTF8:
        client_error(s, "command not valid in this state: already logged in");
        return;
    default:
        pop3_dispatch_transaction(s, cmd);
        return;
    }
}

/* ---- input ------------------------------------------------------------ */

static void process_input(struct pop3_session *s)
{
    while (!s->quitting) {
        if (s->phase != PH_COMMAND && s->phase != PH_SASL) return;
        /* Replies piling up for a client that sends but does not read:
         * stop reading commands until it catches up. */
        if (conn_output_len(s->c) > CONN_OUTPUT_HIGH) {
            pop3_wait_drain(s);
            return;
        }
        bool sasl = s->phase == PH_SASL;
        size_t max = sasl ? SASL_LINE_MAX : POP3_LINE_MAX - 2;
        int r = conn_read_line(s->c, &s->line, max);
        if (r == CONN_LINE_MORE) return;
        if (r == CONN_LINE_TOO_LONG) {
            client_error(s, max + 2 == POP3_LINE_MAX ? "line too long (limit 255 octets, RFC 2449)"
                                                     : "line too long");
            if (sasl) {
                s->phase = PH_COMMAND;
                pop3_auth_cleanup(s);
            }
            continue;
        }
        if (sasl) {
            pop3_sasl_response(s, s->line.data, s->line.len);
            continue;
        }
        struct pop3_cmd cmd;
        const char *err;
        if (pop3_parse_command(s->line.data, s->line.len, &cmd, &err) < 0) {
            client_error(s, err);
            continue;
        }
        if (cmd.verb != POP3_PASS && cmd.verb != POP3_AUTH && cmd.verb != POP3_APOP) {
            char safe[300];
            log_debug("session=%s command %s", s->id, log_safe(s->line.data, s->line.len, safe, sizeof safe));
        }
        dispatch(s, &cmd);
    }
}

void pop3_resume(struct pop3_session *s)
{
    if (s->phase == PH_CLOSED) return;
    if (s->srv->shutting_down && s->phase == PH_COMMAND && !s->quitting) {
        pop3_err(s, "[SYS/TEMP] server shutting down, nothing was deleted");
        pop3_close(s, "shutdown");
        return;
    }
    conn_set_timeout(s->c, s->srv->cfg->pop3_timeout);
    conn_resume(s->c);
    process_input(s);
}
