/* The TRANSACTION state (RFC 1939 section 5: STAT, LIST, RETR, DELE,
 * NOOP, RSET, TOP, UIDL; RFC 1225 LAST) over the snapshot taken at login,
 * streaming of RETR/TOP from the message file, and the UPDATE state
 * (section 6): deletions reach the store only at QUIT. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mailbox_notify.h"
#include "core/util.h"
#include "pop3/pop3_session_int.h"

/* Read size per step, and how much output may be queued before the
 * stream waits for the client: memory per session stays near these
 * bounds whatever the size of the message. */
#define SEND_CHUNK (32 * 1024)
#define SEND_HIGH (256 * 1024)

/* ---- the snapshot ----------------------------------------------------- */

void pop3_snapshot_free(struct pop3_session *s)
{
    free(s->msgs);
    s->msgs = NULL;
    s->nmsgs = 0;
}

static void totals(const struct pop3_session *s, size_t *count, uint64_t *octets)
{
    *count = 0;
    *octets = 0;
    for (size_t i = 0; i < s->nmsgs; i++) {
        if (s->msgs[i].deleted) continue;
        (*count)++;
        *octets += s->msgs[i].size;
    }
}

/* The message numbered n (1-based), or NULL after replying -ERR. */
static struct pop3_msg *lookup(struct pop3_session *s, uint32_t n)
{
    if (n == 0 || n > s->nmsgs) {
        pop3_err(s, "no such message, only %zu messages in maildrop", s->nmsgs);
        return NULL;
    }
    struct pop3_msg *m = &s->msgs[n - 1];
    if (m->deleted) {
        pop3_err(s, "message %u already deleted", n);
        return NULL;
    }
    return m;
}

/* ---- simple commands -------------------------------------------------- */

static void cmd_stat(struct pop3_session *s)
{
    size_t count;
    uint64_t octets;
    totals(s, &count, &octets);
    pop3_ok(s, "%zu %llu", count, (unsigned long long)octets);
}

static void cmd_list(struct pop3_session *s, const struct pop3_cmd *cmd, bool uidl)
{
    if (cmd->has_msg) {
        struct pop3_msg *m = lookup(s, cmd->msg);
        if (!m) return;
        if (uidl) pop3_ok(s, "%u %x.%x", cmd->msg, s->uidvalidity, m->uid);
        else pop3_ok(s, "%u %llu", cmd->msg, (unsigned long long)m->size);
        return;
    }
    size_t count;
    uint64_t octets;
    totals(s, &count, &octets);
    sbuf r = SBUF_INIT;
    if (uidl) sbuf_puts(&r, "+OK unique-id listing follows\r\n");
    else sbuf_printf(&r, "+OK %zu messages (%llu octets)\r\n", count, (unsigned long long)octets);
    for (size_t i = 0; i < s->nmsgs; i++) {
        const struct pop3_msg *m = &s->msgs[i];
        if (m->deleted) continue;
        /* UIDL (RFC 1939 section 7): stable across sessions because UIDs
         * never repeat within one UIDVALIDITY of the mailbox. */
        if (uidl) sbuf_printf(&r, "%zu %x.%x\r\n", i + 1, s->uidvalidity, m->uid);
        else sbuf_printf(&r, "%zu %llu\r\n", i + 1, (unsigned long long)m->size);
        if (r.len >= SEND_CHUNK) {
            pop3_write(s, r.data, r.len);
            sbuf_reset(&r);
        }
    }
    sbuf_puts(&r, ".\r\n");
    pop3_write(s, r.data, r.len);
    sbuf_free(&r);
}

static void cmd_dele(struct pop3_session *s, const struct pop3_cmd *cmd)
{
    struct pop3_msg *m = lookup(s, cmd->msg);
    if (!m) return;
    m->deleted = true;
    if (cmd->msg > s->last_accessed) s->last_accessed = cmd->msg;
    pop3_ok(s, "message %u deleted", cmd->msg);
}

static void cmd_rset(struct pop3_session *s)
{
    for (size_t i = 0; i < s->nmsgs; i++) s->msgs[i].deleted = false;
    s->last_accessed = 0;
    size_t count;
    uint64_t octets;
    totals(s, &count, &octets);
    pop3_ok(s, "maildrop has %zu messages (%llu octets)", count, (unsigned long long)octets);
}

/* ---- RETR and TOP: streaming with dot-stuffing ------------------------ */

void pop3_send_abort(struct pop3_session *s)
{
    if (s->send_fd >= 0) close(s->send_fd);
    s->send_fd = -1;
    s->send_left = 0;
}

static void send_finish(struct pop3_session *s)
{
    pop3_send_abort(s);
    /* RFC 1939 section 3: the terminating line starts on a line of its
     * own, even if the stored message lacks a final CRLF. */
    if (!s->send_bol) {
        if (s->send_last_cr) pop3_write(s, "\n.\r\n", 4);
        else pop3_write(s, "\r\n.\r\n", 5);
    } else {
        pop3_write(s, ".\r\n", 3);
    }
    s->phase = PH_COMMAND;
    pop3_resume(s);
}

/* Append data[0..len) dot-stuffed to out; for TOP stop after the header
 * and top_lines body lines.  Returns true when TOP has sent enough. */
static bool stuff(struct pop3_session *s, const char *data, size_t len, sbuf *out)
{
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (s->send_bol && c == '.') sbuf_putc(out, '.');
        sbuf_putc(out, c);
        s->send_last_cr = c == '\r';
        if (c != '\n') {
            if (c != '\r') s->send_line_empty = false;
            s->send_bol = false;
            continue;
        }
        s->send_bol = true;
        if (s->send_top) {
            if (s->send_in_body) {
                if (--s->top_lines == 0) return true;
            } else if (s->send_line_empty) {
                /* End of the header section (RFC 5322 2.1). */
                s->send_in_body = true;
                if (s->top_lines == 0) return true;
            }
        }
        s->send_line_empty = true;
    }
    return false;
}

void pop3_send_pump(struct pop3_session *s)
{
    if (s->phase != PH_SENDING) return;
    char *buf = xmalloc(SEND_CHUNK);
    sbuf out = SBUF_INIT;
    bool done = false;
    while (!done && conn_output_len(s->c) < SEND_HIGH) {
        if (s->send_left == 0) {
            done = true;
            break;
        }
        size_t want = s->send_left < SEND_CHUNK ? (size_t)s->send_left : SEND_CHUNK;
        ssize_t n = read(s->send_fd, buf, want);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            /* The +OK is out: the only honest end is to drop the
             * connection, so the client sees no terminating "." */
            log_error("session=%s reading message: %s", s->id, strerror(errno));
            pop3_send_abort(s);
            free(buf);
            sbuf_free(&out);
            s->phase = PH_COMMAND;
            pop3_close(s, "message read error");
            return;
        }
        if (n == 0) {
            done = true;    /* shorter than its size: send what there is */
            break;
        }
        s->send_left -= (uint64_t)n;
        sbuf_reset(&out);
        done = stuff(s, buf, (size_t)n, &out);
        pop3_write(s, out.data, out.len);
    }
    free(buf);
    sbuf_free(&out);
    if (done) send_finish(s);
    else pop3_wait_drain(s);
}

static void cmd_retr(struct pop3_session *s, const struct pop3_cmd *cmd, bool top)
{
    struct pop3_msg *m = lookup(s, cmd->msg);
    if (!m) return;
    int fd = -1;
    uint64_t size = 0;
    char err[256];
    int rc = store_msg_open(s->store, "INBOX", m->uid, &fd, &size, err, sizeof err);
    if (rc == STORE_ENOENT) {
        /* Removed by another client (IMAP) since the snapshot. */
        pop3_err(s, "message %u is no longer available", cmd->msg);
        return;
    }
    if (rc < 0) {
        log_error("session=%s cannot open message uid %u: %s", s->id, m->uid, err);
        pop3_err(s, "[SYS/TEMP] cannot read message %u, try again later", cmd->msg);
        return;
    }
    if (top) {
        pop3_ok(s, "top of message %u follows", cmd->msg);
    } else {
        pop3_ok(s, "%llu octets", (unsigned long long)size);
        /* LAST (RFC 1225) counts RETR and DELE; TOP only peeks. */
        if (cmd->msg > s->last_accessed) s->last_accessed = cmd->msg;
    }
    s->send_fd = fd;
    s->send_left = size;
    s->send_bol = true;
    s->send_last_cr = false;
    s->send_top = top;
    s->send_in_body = false;
    s->send_line_empty = true;
    s->top_lines = cmd->lines;
    s->phase = PH_SENDING;
    /* Commands pipelined behind this one wait in the input buffer; with
     * reading off, the autologout timer does not run while we send. */
    conn_pause(s->c);
    pop3_send_pump(s);
}

/* ---- UPDATE ------------------------------------------------------------ */

struct update_job {
    struct pop3_session *s;
    store_user *u;
    uint32_t *uids;
    size_t n;
    size_t nexpunged;
    int rc;
    char err[256];
};

static void update_work(void *p)
{
    struct update_job *j = p;
    if (j->n > 0)
        j->rc = store_expunge(j->u, "INBOX", j->uids, j->n, NULL, &j->nexpunged, j->err, sizeof j->err);
    store_user_close(j->u);
}

static void update_done(void *p)
{
    struct update_job *j = p;
    struct pop3_session *s = j->s;
    s->jobs--;
    pop3_unlock(s);
    /* IMAP sessions idling on this INBOX learn of the expunge now. */
    if (j->nexpunged > 0) mailbox_notify_signal(s->login, "INBOX", NULL);
    if (j->rc < 0)
        log_error("session=%s UPDATE failed for %s: %s", s->id, s->login, j->err);
    else
        log_info("session=%s UPDATE user=%s: %zu deleted", s->id, s->login, j->nexpunged);
    if (s->phase == PH_CLOSED) {
        /* Gone before the answer; the deletions are durable all the same. */
        free(j->uids);
        free(j);
        pop3_session_reap(s);
        return;
    }
    s->phase = PH_COMMAND;
    size_t left = s->nmsgs - j->n;
    if (j->rc < 0)
        pop3_err(s, "[SYS/TEMP] some deleted messages not removed, try again later");
    else if (left == 0)
        pop3_ok(s, "pochta POP3 server signing off (maildrop empty)");
    else
        pop3_ok(s, "pochta POP3 server signing off (%zu messages left)", left);
    free(j->uids);
    free(j);
    pop3_close(s, "QUIT");
}

void pop3_cmd_quit_update(struct pop3_session *s)
{
    s->state = ST_UPDATE;
    struct update_job *j = xcalloc(1, sizeof *j);
    j->s = s;
    j->u = s->store;
    s->store = NULL;
    j->uids = xcalloc(s->nmsgs ? s->nmsgs : 1, sizeof *j->uids);
    for (size_t i = 0; i < s->nmsgs; i++)
        if (s->msgs[i].deleted) j->uids[j->n++] = s->msgs[i].uid;
    s->phase = PH_BUSY;
    s->jobs++;
    conn_pause(s->c);
    workpool_submit(s->srv->pool, update_work, update_done, j);
}

/* Closing without UPDATE (connection lost, timeout, shutdown). */
struct release_job {
    struct pop3_session *s;
    store_user *u;
};

static void release_work(void *p)
{
    struct release_job *j = p;
    store_user_close(j->u);
}

static void release_done(void *p)
{
    struct release_job *j = p;
    struct pop3_session *s = j->s;
    free(j);
    s->jobs--;
    pop3_unlock(s);
    pop3_session_reap(s);
}

bool pop3_release_store(struct pop3_session *s)
{
    if (!s->store) return false;
    struct release_job *j = xcalloc(1, sizeof *j);
    j->s = s;
    j->u = s->store;
    s->store = NULL;
    s->jobs++;
    workpool_submit(s->srv->pool, release_work, release_done, j);
    return true;
}

/* ---- dispatch ---------------------------------------------------------- */

void pop3_dispatch_transaction(struct pop3_session *s, const struct pop3_cmd *cmd)
{
    switch (cmd->verb) {
    case POP3_STAT: cmd_stat(s); break;
    case POP3_LIST: cmd_list(s, cmd, false); break;
    case POP3_UIDL: cmd_list(s, cmd, true); break;
    case POP3_RETR: cmd_retr(s, cmd, false); break;
    case POP3_TOP: cmd_retr(s, cmd, true); break;
    case POP3_DELE: cmd_dele(s, cmd); break;
    case POP3_NOOP: pop3_ok(s, "%s", ""); break;
    case POP3_RSET: cmd_rset(s); break;
    case POP3_LAST: pop3_ok(s, "%u", s->last_accessed); break;
    case POP3_QUIT: pop3_cmd_quit_update(s); break;
    default:
        pop3_err(s, "command not valid in this state");
        break;
    }
}
