/* IMAP session state machine (RFC 3501, RFC 9051): connection life cycle,
 * command input with literals (RFC 7888 LITERAL+), dispatch by state, the
 * commands valid in any state (CAPABILITY, NOOP, LOGOUT, ID), STARTTLS,
 * ENABLE, IDLE (RFC 2177) and the worker-job machinery.  Logins live in
 * imap_session_auth.c, mailbox commands in imap_session_mbox.c, message
 * commands in imap_session_msg.c and imap_fetch.c. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "core/log.h"
#include "core/util.h"
#include "imap/imap_session_int.h"
#include "net/tls.h"

/* An AUTHENTICATE response line or the DONE of IDLE (RFC 4954's SMTP
 * bound, generous for any SASL PLAIN/LOGIN answer). */
#define IMAP_RESP_LINE_MAX 12288
/* Before login only LITERAL- is announced (imap_capabilities): a
 * non-synchronizing literal over IMAP_LITERAL_MINUS_MAX gets the tagged
 * BAD [TOOBIG] of RFC 7888 5.  Up to this size the data is read and
 * dropped with its command, so the connection stays in step; beyond it,
 * and for any synchronizing literal beyond it, nothing is read
 * (RFC 7888 4: BYE for the former, NO [TOOBIG] for the latter). */
#define IMAP_PREAUTH_LITERAL_MAX (64 * 1024)
/* How much input is taken from the connection per step. */
#define PULL_CHUNK (256 * 1024)
/* APPEND messages at least this big are written to a spool file as they
 * arrive instead of kept in memory with their command (smaller ones too
 * once the command would outgrow imap_max_command_size). */
#define IMAP_SPOOL_MIN (64 * 1024)
/* Relative to the data directory (the working directory), as for SMTP. */
#define IMAP_SPOOL_DIR "tmp"
/* IDLE: changes made in this process (SMTP delivery, other sessions)
 * arrive through the mailbox_notify bus at once; this slow poll only
 * catches those of other processes (the pochta command). */
#define IMAP_IDLE_SAFETY_POLL_MS 30000
/* RFC 9051 5.4 asks for at least 30 minutes only once logged in; before
 * that an idle connection is only holding a slot. */
#define IMAP_PREAUTH_TIMEOUT 180

static unsigned session_timeout(const struct imap_session *s)
{
    unsigned t = s->srv->cfg->imap_timeout;
    if (s->state == IS_NOTAUTH && t > IMAP_PREAUTH_TIMEOUT) t = IMAP_PREAUTH_TIMEOUT;
    return t;
}

static void process_input(struct imap_session *s);
static void command_done(struct imap_session *s);
static void watch_update(struct imap_session *s);
static void changes_signal(struct imap_session *s);

/* ---- output ------------------------------------------------------------ */

void imap_send(struct imap_session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sbuf_vprintf(&s->out, fmt, ap);
    va_end(ap);
}

void imap_tagged(struct imap_session *s, const char *status, const char *fmt, ...)
{
    const char *tag = s->tag_copy ? s->tag_copy : s->cmd.tag;
    sbuf_puts(&s->out, tag ? tag : "*");
    sbuf_putc(&s->out, ' ');
    sbuf_puts(&s->out, status);
    sbuf_putc(&s->out, ' ');
    va_list ap;
    va_start(ap, fmt);
    sbuf_vprintf(&s->out, fmt, ap);
    va_end(ap);
    sbuf_puts(&s->out, "\r\n");
    free(s->tag_copy);
    s->tag_copy = NULL;
}

void imap_command_finished(struct imap_session *s)
{
    command_done(s);
}

void imap_hold_tag(struct imap_session *s)
{
    free(s->tag_copy);
    s->tag_copy = xstrdup(s->cmd.tag ? s->cmd.tag : "*");
    command_done(s);
}

/* Replies at least this big are handed to the connection as they are
 * instead of copied (a FETCH of bodies), so s->out does not stay grown to
 * the largest reply the session ever sent. */
#define OUT_HANDOVER (16 * 1024)

static void flush(struct imap_session *s)
{
    /* While a job runs, a worker thread writes s->out: job_done flushes. */
    if (s->jobs > 0 || s->out.len == 0) return;
    if (s->phase == IP_CLOSED) {
        sbuf_reset(&s->out);
    } else if (s->out.len >= OUT_HANDOVER) {
        size_t len = s->out.len;
        conn_write_take(s->c, sbuf_detach(&s->out), len);
    } else {
        conn_write(s->c, s->out.data, s->out.len);
        sbuf_reset(&s->out);
    }
}


void imap_close(struct imap_session *s, const char *why)
{
    if (s->quitting || s->phase == IP_CLOSED) return;
    flush(s);
    s->quitting = true;
    conn_close_after_flush(s->c, why);
}

void imap_client_error(struct imap_session *s, const char *fmt, ...)
{
    sbuf text = SBUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    sbuf_vprintf(&text, fmt, ap);
    va_end(ap);
    imap_tagged(s, "BAD", "%s", sbuf_cstr(&text));
    sbuf_free(&text);
    if (++s->errors >= s->srv->cfg->max_errors) {
        log_info("session=%s too many errors (%u), closing", s->id, s->errors);
        imap_send(s, "* BYE Too many errors\r\n");
        imap_close(s, "too many errors");
    }
}

bool imap_login_allowed(const struct imap_session *s)
{
    if (conn_is_tls(s->c)) return true;
    if (!s->srv->cfg->plaintext_auth_loopback) return false;
    return strcmp(s->ip, "127.0.0.1") == 0 || strcmp(s->ip, "::1") == 0;
}

const char *imap_store_code(int rc)
{
    switch (rc) {
    case STORE_ENOENT: return "[NONEXISTENT] No such mailbox";
    case STORE_EEXIST: return "[ALREADYEXISTS] Mailbox already exists";
    case STORE_EINVAL: return "[CANNOT] Invalid mailbox name or operation";
    case STORE_ELIMIT: return "[LIMIT] Too many keywords in this mailbox";
    default: return "[UNAVAILABLE] Temporary failure, try again later";
    }
}

/* ---- capabilities ------------------------------------------------------ */

void imap_capabilities(const struct imap_session *s, sbuf *out)
{
    /* RFC 7888: LITERAL+ and LITERAL- are two answers to one question (how
     * large may a non-synchronizing literal be), so a server announces one
     * of them at a time.  Before login it is LITERAL- (at most 4096 octets,
     * the IMAP4rev2 rule of RFC 9051 4.3), so an unauthenticated peer cannot
     * make us buffer a large literal; once logged in LITERAL+ (up to the
     * literal limit, APPENDLIMIT).  The login's CAPABILITY response code
     * tells the client of the change. */
    sbuf_puts(out, s->state == IS_NOTAUTH ? "IMAP4rev1 IMAP4rev2 SASL-IR LITERAL- ID ENABLE IDLE"
                                          : "IMAP4rev1 IMAP4rev2 SASL-IR LITERAL+ ID ENABLE IDLE");
    if (s->state == IS_NOTAUTH) {
        if (!conn_is_tls(s->c) && s->srv->tls) sbuf_puts(out, " STARTTLS");
        if (imap_login_allowed(s)) sbuf_puts(out, " AUTH=PLAIN AUTH=LOGIN");
        else sbuf_puts(out, " LOGINDISABLED");
        return;
    }
    sbuf_puts(out, " NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN LIST-EXTENDED SPECIAL-USE UTF8=ACCEPT ESEARCH CONDSTORE");
    sbuf_puts(out, " CREATE-SPECIAL-USE LIST-STATUS STATUS=SIZE QUOTA QUOTA=RES-STORAGE");
    sbuf_printf(out, " MULTIAPPEND BINARY APPENDLIMIT=%llu SEARCHRES QRESYNC"
                     " SORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES", (unsigned long long)imap_append_limit(s));
    sbuf_puts(out, " ACL RIGHTS=texk");
}

/* ---- jobs ---------------------------------------------------------------- */

/* The store is taken for each job and given back when it ends (store.h):
 * between commands, and while it idles, a session holds no SQLite
 * connection and no descriptor besides its socket; the handles stay warm
 * in the store's cache, shared by all sessions of the user.  Before the
 * login job (which opens and creates the store) there is nothing to take. */
static bool store_take(struct imap_session *s)
{
    if (s->store || s->state == IS_NOTAUTH || !s->login) return true;
    char err[256];
    s->store = store_user_borrow("mail", s->login, err, sizeof err);
    if (s->store) return true;
    log_error("session=%s cannot open mail store of %s: %s", s->id, s->login, err);
    return false;
}

static void store_give(struct imap_session *s)
{
    store_user_close(s->store);
    s->store = NULL;
}

static void stamp_take(struct imap_session *s)
{
    s->have_stamp = store_user_stamp("mail", s->sel_owner ? s->sel_owner : s->login, &s->stamp) == 0;
}

static void job_work(void *p)
{
    struct imap_session *s = p;
    s->job_more = false;
    if (!store_take(s)) {
        /* A FETCH cut short must not look like one still going on. */
        free(s->fetch_set);
        s->fetch_set = NULL;
        imap_tagged(s, "NO", "[UNAVAILABLE] Cannot open your mailboxes, try again later");
        return;
    }
    /* Taken before the job reads the store, for the IDLE safety poll
     * (idle_poll_work) to compare with. */
    if (s->state != IS_NOTAUTH) stamp_take(s);
    imap_acl_job_begin(s);
    s->job(s);
    imap_acl_job_end(s);
    store_give(s);
}

static void job_done(void *p);

static void job_submit(struct imap_session *s)
{
    s->jobs++;
    workpool_submit(s->srv->pool, job_work, job_done, s);
}

void imap_run_job(struct imap_session *s, imap_job_fn fn)
{
    flush(s);
    s->job = fn;
    s->phase = IP_BUSY;
    conn_pause(s->c);
    job_submit(s);
}

static void job_done(void *p)
{
    struct imap_session *s = p;
    s->jobs--;
    if (s->phase == IP_CLOSED) {
        sbuf_reset(&s->out);
        imap_session_reap(s);
        return;
    }
    flush(s);
    if (s->close_after_job) {
        imap_close(s, "selected mailbox gone");
        return;
    }
    if (s->job_more) {
        /* A long response goes out piece by piece as the client reads. */
        if (conn_output_len(s->c) > CONN_OUTPUT_HIGH) s->waiting_drain = true;
        else job_submit(s);
        return;
    }
    changes_signal(s);
    watch_update(s);
    if (s->phase == IP_BUSY) s->phase = IP_COMMAND;
    if (s->phase == IP_COMMAND) command_done(s);
    imap_resume(s);
}

/* ---- life cycle ---------------------------------------------------------- */

static void session_free(struct imap_session *s)
{
    struct imap_server *srv = s->srv;
    if (s->prev) s->prev->next = s->next; else srv->sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    srv->nsessions--;
    connlimit_release(srv->limits, s->ip);
    imap_auth_cleanup(s);
    mailbox_watch_stop(&s->watch);
    if (s->idle_timer) event_free(s->idle_timer);
    if (s->sel) imap_view_free(s->sel);
    free(s->fetch_set);
    free(s->tag_copy);
    if (s->spool_fd >= 0) close(s->spool_fd);
    free(s->ext);
    free(s->acl_notify);
    free(s->sel_owner);
    free(s->login);
    sbuf_free(&s->in);
    sbuf_free(&s->out);
    imap_arena_free(&s->arena);
    conn_free(s->c);
    free(s);
}

bool imap_session_reap(struct imap_session *s)
{
    if (s->phase != IP_CLOSED || s->jobs > 0 || s->idle_polling) return false;
    session_free(s);
    return true;
}

static void on_close(conn *c, void *ud, const char *why)
{
    struct imap_session *s = ud;
    log_info("session=%s disconnect from [%s] (%s)%s%s", s->id, s->ip, why,
             s->login ? " user=" : "", s->login ? s->login : "");
    s->phase = IP_CLOSED;
    mailbox_watch_stop(&s->watch);
    if (s->idle_timer) {
        event_free(s->idle_timer);
        s->idle_timer = NULL;
    }
    imap_session_reap(s);
}

static void on_timeout(conn *c, void *ud)
{
    struct imap_session *s = ud;
    log_info("session=%s idle timeout for [%s]", s->id, s->ip);
    static const char bye[] = "* BYE Autologout; idle for too long\r\n";
    if (s->idle_polling || s->jobs) {
        /* A worker owns s->out right now: write around it. */
        if (s->quitting) return;
        conn_write(s->c, bye, sizeof bye - 1);
        s->quitting = true;
        conn_close_after_flush(s->c, "timeout");
        return;
    }
    imap_send(s, "%s", bye);
    imap_close(s, "timeout");
}

static void on_read(conn *c, void *ud)
{
    process_input(ud);
}

static void idle_poll_start(struct imap_session *s);

static void on_drain(conn *c, void *ud)
{
    struct imap_session *s = ud;
    /* An IDLE wake-up held back while the client was not reading. */
    if (s->phase == IP_IDLE && s->notified && !s->idle_polling) idle_poll_start(s);
    if (!s->waiting_drain || s->phase == IP_CLOSED) return;
    s->waiting_drain = false;
    if (s->phase == IP_BUSY && s->job_more) job_submit(s);
    else process_input(s);
}

static void greet(struct imap_session *s)
{
    s->greeted = true;
    sbuf_puts(&s->out, "* OK [CAPABILITY ");
    imap_capabilities(s, &s->out);
    sbuf_puts(&s->out, "] pochta ready\r\n");
    flush(s);
}

static void on_tls(conn *c, void *ud)
{
    struct imap_session *s = ud;
    char desc[160];
    tls_describe(conn_ssl(s->c), desc, sizeof desc);
    log_info("session=%s TLS established: %s", s->id, desc);
    if (!s->greeted) greet(s);
    process_input(s);
}

static const struct conn_ops imap_conn_ops = {
    .on_read = on_read,
    .on_drain = on_drain,
    .on_timeout = on_timeout,
    .on_close = on_close,
    .on_tls = on_tls,
};

void imap_session_accept(struct imap_server *srv, bool implicit_tls, int fd, const struct sockaddr *peer)
{
    char ip[64];
    sockaddr_ip(peer, ip);
    const char *name = implicit_tls ? "imaps" : "imap";
    if (!connlimit_admit(srv->limits, srv->shutting_down, fd, ip, name,
                         implicit_tls ? NULL : "* BYE [UNAVAILABLE]", "server shutting down"))
        return;
    struct imap_session *s = xcalloc(1, sizeof *s);
    s->srv = srv;
    s->implicit_tls = implicit_tls;
    make_id(s->id);
    memcpy(s->ip, ip, sizeof ip);
    imap_limits_default(&s->lim);
    s->lim.literal_max = srv->cfg->imap_max_literal;
    s->lim.command_max = srv->cfg->imap_max_command_size;
    s->lim.spool_min = IMAP_SPOOL_MIN;
    s->spool_fd = -1;
    imap_arena_init(&s->arena, s->lim.arena_max);
    imap_scan_init(&s->scan);
    s->c = conn_new(srv->base, fd, peer, implicit_tls ? srv->tls : NULL, &imap_conn_ops, s);
    if (!s->c) {
        connlimit_release(srv->limits, ip);
        imap_arena_free(&s->arena);
        free(s);
        return;
    }
    s->next = srv->sessions;
    if (s->next) s->next->prev = s;
    srv->sessions = s;
    srv->nsessions++;
    conn_set_timeout(s->c, session_timeout(s));
    log_info("session=%s connect from [%s]:%d to %s", s->id, ip, conn_port(s->c), name);
    if (!implicit_tls) greet(s);
}

void imap_server_shutdown(struct imap_server *srv)
{
    srv->shutting_down = true;
    struct imap_session *next;
    for (struct imap_session *s = srv->sessions; s; s = next) {
        next = s->next;
        if (s->phase == IP_BUSY || s->phase == IP_CLOSED || s->idle_polling) continue;
        imap_send(s, "* BYE [UNAVAILABLE] Server shutting down\r\n");
        imap_close(s, "shutdown");
    }
}

void imap_server_free(struct imap_server *srv)
{
    imap_recent_free(srv);
}

/* ---- commands of any state ----------------------------------------------- */

static void cmd_capability(struct imap_session *s)
{
    sbuf_puts(&s->out, "* CAPABILITY ");
    imap_capabilities(s, &s->out);
    sbuf_puts(&s->out, "\r\n");
    imap_tagged(s, "OK", "CAPABILITY completed");
}

static void cmd_logout(struct imap_session *s)
{
    imap_send(s, "* BYE pochta logging out\r\n");
    imap_tagged(s, "OK", "LOGOUT completed");
    s->state = IS_LOGOUT;
    imap_close(s, "LOGOUT");
}

static void cmd_id(struct imap_session *s)
{
    /* RFC 2971: log what the client says about itself (bounded). */
    sbuf info = SBUF_INIT;
    for (size_t i = 0; i + 1 < s->cmd.list.n && info.len < 400; i += 2) {
        const struct imap_str *k = &s->cmd.list.v[i], *v = &s->cmd.list.v[i + 1];
        char safe[130];
        sbuf_printf(&info, " %s=", log_safe(k->data, k->len, safe, 64));
        sbuf_puts(&info, v->data ? log_safe(v->data, v->len, safe, 128) : "NIL");
    }
    if (info.len) log_info("session=%s client ID:%s", s->id, info.data);
    sbuf_free(&info);
    imap_send(s, "* ID (\"name\" \"pochta\" \"version\" \"0.1.0\")\r\n");
    imap_tagged(s, "OK", "ID completed");
}

static void cmd_starttls(struct imap_session *s)
{
    if (conn_is_tls(s->c)) {
        imap_client_error(s, "TLS already active");
        return;
    }
    if (!s->srv->tls) {
        imap_tagged(s, "NO", "TLS not available");
        return;
    }
    imap_tagged(s, "OK", "Begin TLS negotiation now");
    flush(s);
    /* RFC 9051 6.2.1: anything pipelined after STARTTLS is discarded
     * (conn drops what it still buffers; we drop what we hold). */
    command_done(s);
    sbuf_reset(&s->in);
    s->in_off = 0;
    conn_starttls(s->c, s->srv->tls);
}

static void cmd_enable(struct imap_session *s)
{
    /* RFC 5161 3.1: before any mailbox is selected. */
    if (s->state != IS_AUTH) {
        imap_client_error(s, "ENABLE is not valid after a mailbox was selected");
        return;
    }
    /* Only what is announced and implemented can be enabled; the rest is
     * ignored (RFC 5161 3.1). */
    sbuf_puts(&s->out, "* ENABLED");
    for (size_t i = 0; i < s->cmd.list.n; i++) {
        const struct imap_str *c = &s->cmd.list.v[i];
        if (c->len == 11 && ascii_ncasecmp(c->data, "UTF8=ACCEPT", 11) == 0) {
            if (!s->utf8) sbuf_puts(&s->out, " UTF8=ACCEPT");
            s->utf8 = true;
        } else if (c->len == 9 && ascii_ncasecmp(c->data, "CONDSTORE", 9) == 0) {
            if (!s->condstore) sbuf_puts(&s->out, " CONDSTORE");
            s->condstore = true;
        } else if (c->len == 9 && ascii_ncasecmp(c->data, "IMAP4rev2", 9) == 0) {
            /* RFC 9051 2.3.1.1 / Appendix E */
            if (!s->rev2) sbuf_puts(&s->out, " IMAP4rev2");
            s->rev2 = true;
            s->utf8 = true;
        } else if (c->len == 7 && ascii_ncasecmp(c->data, "QRESYNC", 7) == 0) {
            /* RFC 7162 3.2.3: implies CONDSTORE. */
            if (!s->qresync) sbuf_puts(&s->out, " QRESYNC");
            s->qresync = true;
            s->condstore = true;
        }
    }
    sbuf_puts(&s->out, "\r\n");
    imap_tagged(s, "OK", "ENABLE completed");
}

static void noop_job(struct imap_session *s)
{
    imap_sync(s, true);
    imap_tagged(s, "OK", "%s completed", s->cmd.name == IMAP_CMD_CHECK ? "CHECK" : "NOOP");
}

/* NOOP and CHECK in a mailbox: when nothing was committed to the owner's
 * index since the last job began reading it (the stamp, as the IDLE poll
 * compares it), no change was signalled in this process and no expunge
 * waits to be reported, imap_sync() would find nothing: answer here,
 * without a worker job. */
static void noop_selected(struct imap_session *s)
{
    store_stamp now;
    if (s->have_stamp && !s->notified && s->sel->nexpunged == 0 &&
        store_user_stamp("mail", s->sel_owner ? s->sel_owner : s->login, &now) == 0 &&
        memcmp(&now, &s->stamp, sizeof now) == 0) {
        imap_tagged(s, "OK", "%s completed", s->cmd.name == IMAP_CMD_CHECK ? "CHECK" : "NOOP");
        return;
    }
    s->notified = false;        /* the job looks at everything */
    imap_run_job(s, noop_job);
}

/* ---- change notification and IDLE (RFC 2177) --------------------------- */

/* A command of this session may have changed mailboxes of its user: wake
 * the user's other sessions (this one sees its own changes itself).  The
 * whole user is signalled because COPY, MOVE and APPEND name a second
 * mailbox; only that user's sessions are looked at. */
static void changes_signal(struct imap_session *s)
{
    if (!s->login) return;
    if (s->acl_notify) {
        /* a job changed a mailbox another user shared (imap_session_acl.c) */
        mailbox_notify_signal(s->acl_notify, NULL, s);
        free(s->acl_notify);
        s->acl_notify = NULL;
    }
    switch (s->cmd.name) {
    case IMAP_CMD_APPEND: case IMAP_CMD_STORE: case IMAP_CMD_COPY: case IMAP_CMD_MOVE:
    case IMAP_CMD_EXPUNGE: case IMAP_CMD_CLOSE: case IMAP_CMD_FETCH: case IMAP_CMD_DELETE:
    case IMAP_CMD_RENAME:
        mailbox_notify_signal(s->sel_owner ? s->sel_owner : s->login, NULL, s);
        return;
    default:
        return;
    }
}

static void on_mailbox_changed(void *ud)
{
    struct imap_session *s = ud;
    s->notified = true;
    if (s->phase == IP_IDLE && !s->idle_polling) idle_poll_start(s);
}

/* Watch the selected mailbox, whatever the last job selected (loop). */
static void watch_update(struct imap_session *s)
{
    if (s->sel && s->login && s->phase != IP_CLOSED) {
        const char *owner = s->sel_owner ? s->sel_owner : s->login;
        if (!mailbox_watch_is(&s->watch, owner, s->sel->name)) {
            mailbox_watch_start(&s->watch, owner, s->sel->name, on_mailbox_changed, s);
            s->notified = false;
        }
    } else {
        mailbox_watch_stop(&s->watch);
    }
}

static void idle_poll_work(void *p)
{
    struct imap_session *s = p;
    /* The safety poll is for other processes' changes: when the index of
     * the selected mailbox's owner has not changed at all since the last
     * one, there is nothing to look at and no handle to take (with many
     * idle users, the store's cache would be churned every 30 s). */
    store_stamp last = s->stamp;
    bool had = s->have_stamp;
    stamp_take(s);
    if (!s->poll_signalled && had && s->have_stamp && memcmp(&last, &s->stamp, sizeof last) == 0)
        return;
    if (!store_take(s)) return;     /* logged; the safety poll tries again */
    imap_acl_job_begin(s);
    imap_sync(s, true);
    imap_acl_job_end(s);
    store_give(s);
}

static void idle_poll_done(void *p)
{
    struct imap_session *s = p;
    s->idle_polling = false;
    if (s->phase == IP_CLOSED) {
        sbuf_reset(&s->out);
        imap_session_reap(s);
        return;
    }
    flush(s);
    if (s->close_after_job) {
        imap_close(s, "selected mailbox gone");
        return;
    }
    if (s->srv->shutting_down) {
        imap_send(s, "* BYE [UNAVAILABLE] Server shutting down\r\n");
        imap_close(s, "shutdown");
        return;
    }
    process_input(s);      /* DONE may have arrived meanwhile */
    /* A change signalled while the store was read: look again. */
    if (s->phase == IP_IDLE && s->notified && !s->idle_polling && !s->quitting) idle_poll_start(s);
}

static void idle_poll_start(struct imap_session *s)
{
    if (s->phase != IP_IDLE || s->idle_polling || !s->sel || s->quitting) return;
    /* Output not drained: the client is not reading; do not pile up more
     * (the flag stays set, the safety poll retries). */
    if (conn_output_len(s->c) > CONN_OUTPUT_HIGH) return;
    if (!s->notified && s->have_stamp) {
        /* The safety poll with nothing changed (the common case: 10,000
         * idle sessions poll 300 times a second) costs two stat() calls
         * here, not a worker job and a loop wake-up. */
        store_stamp now;
        if (store_user_stamp("mail", s->sel_owner ? s->sel_owner : s->login, &now) == 0 &&
            memcmp(&now, &s->stamp, sizeof now) == 0)
            return;
    }
    s->poll_signalled = s->notified;
    s->notified = false;
    s->idle_polling = true;
    workpool_submit(s->srv->pool, idle_poll_work, idle_poll_done, s);
}

static void idle_tick(evutil_socket_t fd, short what, void *p)
{
    idle_poll_start(p);
}

/* ---- QUOTA (RFC 9208) ------------------------------------------------------ */

/* One quota root per user, named "" (RFC 9208 3.1: every mailbox of the
 * user shares it), with the STORAGE resource only: the limit comes from
 * the account (bytes, 0 = unlimited), the usage is the sum of message
 * sizes over all mailboxes (store_quota_usage).  Both in KiB on the wire. */

/* Worker thread.  0 with *limit (0 = unlimited) and *used, or -1 logged. */
static int quota_read(struct imap_session *s, uint64_t *limit, uint64_t *used)
{
    char err[256] = "";
    accounts *a = accounts_thread_handle();
    *limit = 0;
    *used = 0;
    if (!a || accounts_user_quota_get(a, s->login, limit) < 0) return -1;
    if (store_quota_usage(s->store, used, NULL, err, sizeof err) < 0) {
        log_error("session=%s quota usage: %s", s->id, err);
        return -1;
    }
    return 0;
}

bool imap_over_quota(struct imap_session *s, uint64_t add)
{
    uint64_t limit, used;
    /* A quota that cannot be read does not refuse mail (logged). */
    if (quota_read(s, &limit, &used) < 0 || limit == 0) return false;
    return used + add > limit;
}

static void put_quota(struct imap_session *s)
{
    uint64_t limit, used;
    if (quota_read(s, &limit, &used) < 0) {
        imap_tagged(s, "NO", "[UNAVAILABLE] Quota lookup failed, try again later");
        return;
    }
    if (limit == 0) {
        imap_send(s, "* QUOTA \"\" ()\r\n");
    } else {
        /* RFC 9208 5.1: STORAGE in units of 1024 octets; usage rounded
         * up so a full mailbox never looks below its limit. */
        imap_send(s, "* QUOTA \"\" (STORAGE %llu %llu)\r\n", (unsigned long long)((used + 1023) / 1024),
                  (unsigned long long)(limit / 1024));
    }
    imap_tagged(s, "OK", "%s completed", s->cmd.name == IMAP_CMD_GETQUOTA ? "GETQUOTA" : "GETQUOTAROOT");
}

static void getquotaroot_job(struct imap_session *s)
{
    const char *name = s->cmd.mailbox;
    store_status st;
    char err[256];
    int rc = imap_name_ok(name) ? store_mailbox_status(s->store, name, &st, err, sizeof err) : STORE_ENOENT;
    if (rc == STORE_ENOENT) {
        imap_tagged(s, "NO", "[NONEXISTENT] No such mailbox");
        return;
    }
    if (rc < 0) {
        imap_tagged(s, "NO", "%s", imap_store_code(rc));
        return;
    }
    sbuf line = SBUF_INIT;
    sbuf_puts(&line, "* QUOTAROOT ");
    if (imap_put_mailbox(&line, name, s->utf8) < 0) {
        sbuf_free(&line);
        imap_tagged(s, "NO", "Mailbox name cannot be sent");
        return;
    }
    imap_send(s, "%s \"\"\r\n", sbuf_cstr(&line));
    sbuf_free(&line);
    put_quota(s);
}

static void getquota_job(struct imap_session *s)
{
    if (s->cmd.str1.len != 0) {
        imap_tagged(s, "NO", "[NONEXISTENT] No such quota root (the only one is \"\")");
        return;
    }
    put_quota(s);
}

static void cmd_quota(struct imap_session *s)
{
    switch (s->cmd.name) {
    case IMAP_CMD_GETQUOTAROOT: imap_run_job(s, getquotaroot_job); return;
    case IMAP_CMD_GETQUOTA: imap_run_job(s, getquota_job); return;
    default:
        /* RFC 9208 4.3: limits are the administrator's (pochta user quota). */
        imap_tagged(s, "NO", "[NOPERM] Quota limits are set by the administrator");
        return;
    }
}

static void cmd_idle(struct imap_session *s)
{
    imap_send(s, "+ idling\r\n");
    imap_hold_tag(s);
    s->phase = IP_IDLE;
    if (!s->sel) return;       /* nothing to report outside a mailbox */
    watch_update(s);
    if (!s->idle_timer) s->idle_timer = event_new(s->srv->base, -1, EV_PERSIST, idle_tick, s);
    struct timeval tv = { IMAP_IDLE_SAFETY_POLL_MS / 1000, (IMAP_IDLE_SAFETY_POLL_MS % 1000) * 1000 };
    event_add(s->idle_timer, &tv);
    /* Changed since this session last looked (signalled between commands):
     * poll from the loop, not here, where s->out is still being sent. */
    if (s->notified) event_active(s->idle_timer, EV_TIMEOUT, 1);
}

static void idle_line(struct imap_session *s, const char *line, size_t len)
{
    if (s->idle_timer) event_del(s->idle_timer);
    s->phase = IP_COMMAND;
    if (imap_is_done(line, len)) {
        imap_tagged(s, "OK", "IDLE terminated");
    } else {
        imap_tagged(s, "BAD", "Expected DONE");
    }
    command_done(s);
}

/* ---- dispatch ------------------------------------------------------------- */

static void dispatch(struct imap_session *s)
{
    const struct imap_command *c = &s->cmd;
    switch (c->name) {
    case IMAP_CMD_CAPABILITY: cmd_capability(s); return;
    case IMAP_CMD_LOGOUT: cmd_logout(s); return;
    case IMAP_CMD_ID: cmd_id(s); return;
    case IMAP_CMD_NOOP:
        if (s->state == IS_SELECTED) noop_selected(s);
        else imap_tagged(s, "OK", "NOOP completed");
        return;
    default: break;
    }
    if (s->state == IS_NOTAUTH) {
        switch (c->name) {
        case IMAP_CMD_STARTTLS: cmd_starttls(s); return;
        case IMAP_CMD_LOGIN: imap_cmd_login(s); return;
        case IMAP_CMD_AUTHENTICATE: imap_cmd_authenticate(s); return;
        default:
            imap_client_error(s, "Command not valid in this state: log in first");
            return;
        }
    }
    if (imap_acl_dispatch(s)) return;
    switch (c->name) {
    case IMAP_CMD_STARTTLS: case IMAP_CMD_LOGIN: case IMAP_CMD_AUTHENTICATE:
        imap_client_error(s, "Command not valid in this state: already authenticated");
        return;
    case IMAP_CMD_ENABLE: cmd_enable(s); return;
    case IMAP_CMD_IDLE: cmd_idle(s); return;
    case IMAP_CMD_GETQUOTA: case IMAP_CMD_GETQUOTAROOT: case IMAP_CMD_SETQUOTA: cmd_quota(s); return;
    case IMAP_CMD_SELECT: case IMAP_CMD_EXAMINE: case IMAP_CMD_CREATE: case IMAP_CMD_DELETE:
    case IMAP_CMD_RENAME: case IMAP_CMD_SUBSCRIBE: case IMAP_CMD_UNSUBSCRIBE: case IMAP_CMD_LIST:
    case IMAP_CMD_LSUB: case IMAP_CMD_NAMESPACE: case IMAP_CMD_STATUS: case IMAP_CMD_APPEND:
        imap_dispatch_mailbox(s);
        return;
    case IMAP_CMD_CHECK:
        if (s->state != IS_SELECTED) break;
        noop_selected(s);
        return;
    case IMAP_CMD_CLOSE: case IMAP_CMD_UNSELECT: case IMAP_CMD_EXPUNGE: case IMAP_CMD_SEARCH:
    case IMAP_CMD_FETCH: case IMAP_CMD_STORE: case IMAP_CMD_COPY: case IMAP_CMD_MOVE:
        if (s->state != IS_SELECTED) break;
        if (c->name == IMAP_CMD_FETCH) imap_cmd_fetch(s);
        else imap_dispatch_selected(s);
        return;
    case IMAP_CMD_SORT: case IMAP_CMD_THREAD:
        if (s->state != IS_SELECTED) break;
        imap_cmd_sort(s);
        return;
    default:
        imap_client_error(s, "Command not supported");
        return;
    }
    imap_client_error(s, "Command not valid in this state: no mailbox selected");
}

/* ---- input ---------------------------------------------------------------- */

/* The unconsumed input: s->in from s->in_off on.  Consumed bytes are
 * skipped by moving the offset, so pipelined commands cost no copying;
 * the rest moves to the front only when more is pulled in. */
static char *in_ptr(const struct imap_session *s)
{
    return s->in.data ? s->in.data + s->in_off : (char *)"";
}

static size_t in_len(const struct imap_session *s)
{
    return s->in.len - s->in_off;
}

/* A session waiting for its client keeps no buffers it does not need:
 * an idling one (IDLE, the state most of a server's sessions are in)
 * gives back all of them; one between commands only what a big command
 * grew. */
static void trim(struct imap_session *s)
{
    if (s->jobs > 0 || s->idle_polling || s->out.len != 0) return;
    bool idle = s->phase == IP_IDLE;
    if (idle || s->out.cap > OUT_HANDOVER) sbuf_free(&s->out);
    if (in_len(s) == 0 && (idle || s->in.cap > OUT_HANDOVER)) {
        sbuf_free(&s->in);
        s->in_off = 0;
    }
    if (idle) imap_arena_free(&s->arena);
}

/* Move up to PULL_CHUNK buffered bytes into s->in; returns how many. */
static size_t pull(struct imap_session *s)
{
    struct evbuffer *in = conn_input(s->c);
    size_t avail = evbuffer_get_length(in);
    if (avail == 0) return 0;
    if (s->in_off) {
        memmove(s->in.data, s->in.data + s->in_off, s->in.len - s->in_off);
        s->in.len -= s->in_off;
        s->in_off = 0;
    }
    size_t n = avail < PULL_CHUNK ? avail : PULL_CHUNK;
    sbuf_reserve(&s->in, n);
    int got = evbuffer_remove(in, s->in.data + s->in.len, n);
    if (got <= 0) return 0;
    s->in.len += (size_t)got;
    s->in.data[s->in.len] = '\0';
    return (size_t)got;
}

static void drop_input(struct imap_session *s, size_t n)
{
    if (n > in_len(s)) n = in_len(s);
    s->in_off += n;
    if (s->in_off == s->in.len) {
        s->in_off = 0;
        s->in.len = 0;
        if (s->in.data) s->in.data[0] = '\0';
    }
}

/* Forget the command being read: scanner, literals, spool. */
static void input_reset(struct imap_session *s)
{
    imap_scan_init(&s->scan);
    s->lit_acked = 0;
    s->lit_refused = NULL;
    s->lit_skip = 0;
    if (s->spool_fd >= 0) close(s->spool_fd);     /* unnamed: the data goes with it */
    s->spool_fd = -1;
    s->spool_len = 0;
    s->n_ext = 0;
    if (s->ext_cap > 64) {
        free(s->ext);
        s->ext = NULL;
        s->ext_cap = 0;
    }
}

static void command_done(struct imap_session *s)
{
    imap_acl_command_done(s);
    drop_input(s, s->cmd_len);
    s->cmd_len = 0;
    input_reset(s);
    memset(&s->cmd, 0, sizeof s->cmd);
    imap_arena_reset(&s->arena);
    /* Give back what a big command made the buffer grow to. */
    if (s->in.cap > 4 * PULL_CHUNK && in_len(s) < PULL_CHUNK) {
        sbuf small = SBUF_INIT;
        sbuf_append(&small, in_ptr(s), in_len(s));
        sbuf_free(&s->in);
        s->in = small;
        s->in_off = 0;
    }
}

/* One line (for SASL and IDLE) from s->in: its length without the line
 * end in *len and the bytes to drop in *used; false if incomplete. */
static bool take_line(struct imap_session *s, size_t *len, size_t *used)
{
    char *p = in_ptr(s);
    char *lf = in_len(s) ? memchr(p, '\n', in_len(s)) : NULL;
    if (!lf) return false;
    size_t n = (size_t)(lf - p);
    *used = n + 1;
    if (n > 0 && p[n - 1] == '\r') n--;
    *len = n;
    return true;
}

static void line_input(struct imap_session *s)
{
    size_t len, used;
    if (!take_line(s, &len, &used)) {
        if (in_len(s) > IMAP_RESP_LINE_MAX) {
            imap_send(s, "* BYE Line too long\r\n");
            imap_close(s, "line too long");
        }
        return;
    }
    char *line = xstrndup(in_ptr(s), len);
    drop_input(s, used);
    if (s->phase == IP_SASL) imap_sasl_line(s, line, len);
    else idle_line(s, line, len);
    memset(line, 0, len);
    free(line);
}

/* "tag " for answering a command that was not parsed (the scanner or the
 * session refused it); "*" when it has no valid tag. */
static void raw_tag(struct imap_session *s, sbuf *tag)
{
    size_t tl = imap_tag_len(in_ptr(s), in_len(s));
    if (tl) sbuf_append(tag, in_ptr(s), tl);
    else sbuf_putc(tag, '*');
}

/* A synchronizing literal refused before its "+": RFC 9051 7.5, the client
 * does not send the data and the command ends here. */
static void refuse_sync(struct imap_session *s, const char *reply)
{
    sbuf tag = SBUF_INIT;
    raw_tag(s, &tag);
    imap_send(s, "%s %s\r\n", tag.data, reply);
    sbuf_free(&tag);
    drop_input(s, s->scan.end);
    input_reset(s);
    if (++s->errors >= s->srv->cfg->max_errors) imap_close(s, "too many errors");
}

/* The command is refused with reply (static "NO/BAD [CODE] text"): at once
 * when the current literal is synchronizing, else once the rest of it is
 * read, the data of this and later literals dropped as it comes in. */
static void refuse_literal(struct imap_session *s, const char *reply)
{
    if (s->scan.lit_kind == IMAP_LIT_SYNC) {
        refuse_sync(s, reply);
        return;
    }
    if (!s->lit_refused) s->lit_refused = reply;
    imap_scan_discard(&s->scan);
    s->lit_skip = s->scan.lit_size;
}

static void scan_error(struct imap_session *s)
{
    if (s->scan.error == IMAP_SCAN_ERR_COMMAND) {
        /* Only APPEND messages may outgrow memory (they go to disk). */
        refuse_literal(s, s->scan.lit_kind == IMAP_LIT_SYNC
                              ? "NO [TOOBIG] Literal too big: the command would exceed imap_max_command_size"
                              : "BAD [TOOBIG] Literal too big: the command would exceed imap_max_command_size");
        return;
    }
    sbuf tag = SBUF_INIT;
    raw_tag(s, &tag);
    if (s->scan.error == IMAP_SCAN_ERR_LINE) {
        imap_send(s, "%s BAD %s\r\n* BYE Command line too long\r\n", tag.data, s->scan.error_text);
        imap_close(s, "line too long");
    } else if (s->scan.lit_kind == IMAP_LIT_SYNC) {
        /* RFC 9051 7.1: the client does not send the refused literal. */
        imap_send(s, "%s NO [TOOBIG] %s\r\n", tag.data, s->scan.error_text);
        drop_input(s, s->scan.end);
        input_reset(s);
        if (++s->errors >= s->srv->cfg->max_errors) imap_close(s, "too many errors");
    } else {
        /* A non-synchronizing literal is on its way regardless: rather
         * than swallow an arbitrary amount of data, close (RFC 7888 4). */
        imap_send(s, "* BYE [TOOBIG] %s\r\n", s->scan.error_text);
        imap_close(s, "literal too big");
    }
    sbuf_free(&tag);
}

static bool mentions_save(const char *p, size_t n)
{
    for (size_t i = 0; i + 4 <= n; i++)
        if (ascii_ncasecmp(p + i, "SAVE", 4) == 0) return true;
    return false;
}

/* An APPEND message the scanner diverted: make room for it in the spool
 * file.  NULL, or the refusal when it cannot be taken. */
static const char *spool_begin(struct imap_session *s)
{
    if (s->state == IS_NOTAUTH)     /* APPEND needs a login: no file for it */
        return "BAD Command not valid in this state: log in first";
    if (s->spool_fd < 0) {
        s->spool_fd = open(IMAP_SPOOL_DIR, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (s->spool_fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
            char path[] = IMAP_SPOOL_DIR "/imap.XXXXXX";
            s->spool_fd = mkostemp(path, O_CLOEXEC);
            if (s->spool_fd >= 0) unlink(path);
        }
        if (s->spool_fd < 0) {
            log_error("session=%s cannot create spool file in %s: %s", s->id, IMAP_SPOOL_DIR, strerror(errno));
            return "NO [UNAVAILABLE] Cannot receive the message now, try again later";
        }
        s->spool_len = 0;
    }
    /* Before the client sends it (for a synchronizing literal): the file
     * system must have room for the message and what came before. */
    struct statvfs vfs;
    if (fstatvfs(s->spool_fd, &vfs) == 0 &&
        (uint64_t)vfs.f_bavail * vfs.f_frsize < s->spool_len + s->scan.lit_size) {
        log_warn("session=%s APPEND of %llu bytes refused: %s is full", s->id,
                 (unsigned long long)s->scan.lit_size, IMAP_SPOOL_DIR);
        return "NO [UNAVAILABLE] Not enough disk space for the message, try again later";
    }
    if (s->n_ext == s->ext_cap) {
        s->ext_cap = s->ext_cap ? s->ext_cap * 2 : 4;
        s->ext = xrealloc(s->ext, s->ext_cap * sizeof *s->ext);
    }
    s->ext[s->n_ext++] = (struct imap_extlit){
        .offset = s->scan.lit_offset, .size = s->scan.lit_size, .where = s->spool_len,
    };
    return NULL;
}

/* Take the data of a diverted literal out of the input as it arrives:
 * into the spool file, or dropped when the command is being refused.
 * Only the bytes that follow it stay in `in`. */
static void divert_input(struct imap_session *s)
{
    size_t at = s->scan.lit_offset;
    if (in_len(s) <= at) return;
    char *p = in_ptr(s) + at;
    size_t have = in_len(s) - at;
    size_t take = have < s->lit_skip ? have : (size_t)s->lit_skip;
    if (!s->lit_refused) {
        struct imap_extlit *x = &s->ext[s->n_ext - 1];
        if (write_full(s->spool_fd, p, take) != 0) {
            log_error("session=%s spool write: %s", s->id, strerror(errno));
            s->lit_refused = "NO [UNAVAILABLE] Cannot store the message now, try again later";
            imap_scan_discard(&s->scan);    /* later literals are dropped too */
        } else {
            if (!s->scan.lit_binary && !x->nul && memchr(p, 0, take)) x->nul = true;
            s->spool_len += take;
        }
    }
    memmove(p, p + take, have - take);
    s->in.len -= take;
    s->in.data[s->in.len] = '\0';
    s->lit_skip -= take;
}

/* After IMAP_SCAN_LITERAL.  false: the command ended (refused). */
static bool literal_announced(struct imap_session *s)
{
    if (s->state == IS_NOTAUTH && s->scan.lit_size > IMAP_PREAUTH_LITERAL_MAX) {
        s->scan.error = IMAP_SCAN_ERR_LITERAL;
        s->scan.error_text = "Literal too big before login";
        scan_error(s);
        return false;
    }
    if (s->lit_refused && s->scan.lit_kind == IMAP_LIT_SYNC) {
        /* No "+" for data that would only be dropped. */
        refuse_sync(s, s->lit_refused);
        return false;
    }
    if (s->state == IS_NOTAUTH && s->scan.lit_kind != IMAP_LIT_SYNC &&
        s->scan.lit_size > IMAP_LITERAL_MINUS_MAX) {
        /* RFC 7888 5: LITERAL- refuses a larger non-synchronizing literal
         * with a tagged BAD [TOOBIG]; the whole command is dropped. */
        refuse_literal(s, "BAD [TOOBIG] Non-synchronizing literal over 4096 octets (LITERAL-)");
        return true;
    }
    if (s->scan.lit_divert && !s->lit_refused) {
        const char *why = spool_begin(s);
        if (why) {
            refuse_literal(s, why);
            return s->scan.lit_kind != IMAP_LIT_SYNC;
        }
    }
    if (s->scan.lit_divert) s->lit_skip = s->scan.lit_size;
    if (s->scan.lit_kind == IMAP_LIT_SYNC && s->lit_acked < s->scan.literals) {
        s->lit_acked = s->scan.literals;
        /* Before the data is there: the client waits for this. */
        if (in_len(s) <= s->scan.lit_offset) imap_send(s, "+ Ready for literal data\r\n");
    }
    return true;
}

static void command_input(struct imap_session *s)
{
    int r;
    for (;;) {
        if (s->lit_skip) {
            divert_input(s);
            if (s->lit_skip) return;        /* more of the literal to come */
        }
        r = imap_cmd_scan(in_ptr(s), in_len(s), &s->lim, &s->scan);
        if (r == IMAP_SCAN_LITERAL) {
            if (!literal_announced(s)) return;
            continue;
        }
        if (r == IMAP_SCAN_ERROR && s->scan.error == IMAP_SCAN_ERR_COMMAND &&
            s->scan.lit_kind != IMAP_LIT_SYNC) {
            scan_error(s);                  /* read on, dropping the data */
            continue;
        }
        break;
    }
    if (r == IMAP_SCAN_MORE) return;
    if (r == IMAP_SCAN_ERROR) {
        scan_error(s);
        return;
    }
    /* IMAP_SCAN_DONE */
    s->cmd_len = s->scan.end;
    if (s->lit_refused) {
        sbuf tag = SBUF_INIT;
        raw_tag(s, &tag);
        imap_send(s, "%s %s\r\n", tag.data, s->lit_refused);
        sbuf_free(&tag);
        command_done(s);
        if (++s->errors >= s->srv->cfg->max_errors) imap_close(s, "too many errors");
        return;
    }
    struct imap_err err;
    unsigned flags = s->utf8 ? IMAP_PARSE_UTF8 : 0;
    memset(&s->cmd, 0, sizeof s->cmd);
    if (imap_parse_command_ext(in_ptr(s), s->cmd_len, s->ext, s->n_ext, &s->lim, flags, &s->arena,
                               &s->cmd, &err) < 0) {
        /* RFC 5182 2.1: a SEARCH with SAVE that fails empties "$". */
        if (s->cmd.name == IMAP_CMD_SEARCH && s->sel && mentions_save(in_ptr(s), s->cmd_len))
            imap_saved_clear(s->sel);
        if (s->cmd.tag) {
            if (err.code) imap_client_error(s, "[%s] %s", err.code, err.text);
            else imap_client_error(s, "%s", err.text);
        } else {
            imap_send(s, "* BAD %s\r\n", err.text);
            if (++s->errors >= s->srv->cfg->max_errors) imap_close(s, "too many errors");
        }
        command_done(s);
        return;
    }
    if (s->cmd.name != IMAP_CMD_LOGIN && s->cmd.name != IMAP_CMD_AUTHENTICATE &&
        s->cmd.name != IMAP_CMD_APPEND) {
        char safe[300];
        log_debug("session=%s command %s", s->id, log_safe(in_ptr(s), s->cmd_len, safe, sizeof safe));
    } else {
        log_debug("session=%s command %s %s", s->id, s->cmd.tag, imap_cmd_name_str(s->cmd.name));
    }
    dispatch(s);
    if (s->phase == IP_COMMAND && !s->quitting) command_done(s);
}

static void process_input(struct imap_session *s)
{
    while (!s->quitting) {
        if (s->phase == IP_BUSY || s->phase == IP_CLOSED) return;
        if (s->phase == IP_IDLE && s->idle_polling) return;
        if (conn_output_len(s->c) > CONN_OUTPUT_HIGH) {
            s->waiting_drain = true;
            return;
        }
        size_t before = in_len(s);
        enum imap_phase ph = s->phase;
        size_t cmd_before = s->cmd_len;
        if (ph == IP_SASL || ph == IP_IDLE) line_input(s);
        else command_input(s);
        flush(s);
        bool progressed = in_len(s) != before || s->phase != ph || s->cmd_len != cmd_before;
        if (progressed) continue;
        if (pull(s) == 0) {
            if (s->phase == IP_COMMAND || s->phase == IP_IDLE) trim(s);
            return;
        }
    }
    flush(s);
}

void imap_resume(struct imap_session *s)
{
    if (s->phase == IP_CLOSED) return;
    flush(s);
    if (s->srv->shutting_down && !s->quitting && s->phase != IP_BUSY) {
        imap_send(s, "* BYE [UNAVAILABLE] Server shutting down\r\n");
        imap_close(s, "shutdown");
        return;
    }
    if (s->phase == IP_BUSY) return;
    conn_set_timeout(s->c, session_timeout(s));
    conn_resume(s->c);
    process_input(s);
}
