/* DATA and BDAT: receiving message content into a spool file, then
 * handing it to a worker for durable delivery before the final reply. */
#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mailbox_notify.h"
#include "core/util.h"
#include "net/tls.h"
#include "smtp/smtp_delivery.h"
#include "smtp/smtp_session_int.h"

/* Unstuffed content is written to the spool in pieces of this size. */
#define SPOOL_CHUNK (64 * 1024)
#define SPOOL_DIR "tmp"

/* The spool is an unnamed file: if we crash or the client goes away it
 * vanishes with the descriptor, so an aborted transfer leaves nothing. */
static int spool_open(void)
{
    int fd = open(SPOOL_DIR, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) return fd;
    char path[] = SPOOL_DIR "/spool.XXXXXX";
    fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0) unlink(path);
    return fd;
}

void smtp_spool_close(struct smtp_session *s)
{
    if (s->spool_fd >= 0) close(s->spool_fd);
    s->spool_fd = -1;
    s->spool_len = 0;
    sbuf_free(&s->pending);
}

static bool spool_start(struct smtp_session *s)
{
    if (s->spool_fd >= 0) return true;
    s->spool_fd = spool_open();
    if (s->spool_fd < 0) {
        log_error("session=%s queue=%s cannot create spool file in %s: %s", s->id, s->qid,
                  SPOOL_DIR, strerror(errno));
        return false;
    }
    s->spool_len = 0;
    s->too_big = false;
    s->spool_error = false;
    return true;
}

/* Move pending bytes to the spool, or drop them once the message is known
 * to be refused (too big, or a write error). */
static void spool_flush(struct smtp_session *s)
{
    if (s->pending.len == 0) return;
    if (!s->too_big && s->spool_len + s->pending.len > s->srv->cfg->max_message_size) {
        s->too_big = true;
        log_info("session=%s queue=%s message exceeds max_message_size %llu", s->id, s->qid,
                 (unsigned long long)s->srv->cfg->max_message_size);
    }
    if (!s->too_big && !s->spool_error) {
        if (write_full(s->spool_fd, s->pending.data, s->pending.len) < 0) {
            log_error("session=%s queue=%s spool write: %s", s->id, s->qid, strerror(errno));
            s->spool_error = true;
        } else {
            s->spool_len += s->pending.len;
        }
    }
    sbuf_reset(&s->pending);
}

/* ---- delivery hand-off ------------------------------------------------ */

struct job {
    struct smtp_session *s;
    struct smtp_delivery d;
    struct smtp_delivery_rcpt *rcpts;
    char tls_desc[160];
};

static void job_work(void *p)
{
    struct job *j = p;
    smtp_delivery_run(&j->d);
}

static void job_done(void *p)
{
    struct job *j = p;
    struct smtp_session *s = j->s;
    int status = j->d.status;
    unsigned delivered = j->d.delivered, queued = j->d.queued, over_quota = j->d.over_quota;
    /* Wake IMAP sessions idling on the new mail (even after a partial
     * failure: some copies may be in place). */
    for (size_t i = 0; delivered && i < j->d.nrcpts; i++)
        for (size_t k = 0; k < j->rcpts[i].ndests; k++)
            if (j->rcpts[i].dests[k].local) mailbox_notify_signal(j->rcpts[i].dests[k].address, "INBOX", NULL);
    free(j->rcpts);
    free(j);
    if (s->phase == PH_CLOSED) {
        /* The client went away while we wrote: the message may have been
         * delivered, and it will resend; the duplicate is the price of
         * never losing an accepted message. */
        log_info("session=%s queue=%s client left before the reply", s->id, s->qid);
        smtp_session_reap(s);
        return;
    }
    s->phase = PH_COMMAND;
    if (status == 0 && delivered == 0 && queued == 0 && over_quota > 0) {
        /* Nothing was stored: the only copies would not fit (RFC 3463
         * X.2.2), permanent for a message of this size. */
        log_info("session=%s queue=%s refused: mailbox full", s->id, s->qid);
        smtp_reply(s, 552, "5.2.2", "Mailbox full: message exceeds the recipient's storage quota");
    } else if (status == 0) {
        s->messages++;
        log_info("session=%s queue=%s accepted: delivered=%u queued=%u", s->id, s->qid,
                 delivered, queued);
        smtp_reply(s, 250, "2.0.0", "Ok: queued as %s", s->qid);
    } else {
        smtp_reply(s, 451, "4.3.0", "Error: %s, try again later", "local delivery failed");
    }
    smtp_reset_transaction(s);
    if (s->srv->shutting_down) {
        s->errors = 0;
        smtp_reply(s, 421, "4.3.2", "%s Service shutting down, closing connection", s->srv->cfg->hostname);
        smtp_close(s, "shutdown");
        return;
    }
    smtp_resume(s);
}

/* Decide the fate of a fully received message: refuse it, or write it. */
static void finish_message(struct smtp_session *s)
{
    const config *cfg = s->srv->cfg;
    spool_flush(s);
    conn_set_timeout(s->c, cfg->smtp_timeout);
    s->phase = PH_COMMAND;
    bool binary = s->mail.body == SMTP_BODY_BINARYMIME;

    const char *code = NULL;
    int rc = 0;
    const char *text = NULL;
    if (s->too_big) {
        rc = 552; code = "5.3.4"; text = "Message size exceeds fixed maximum message size";
    } else if (s->spool_error) {
        rc = 451; code = "4.3.0"; text = "Error: local error writing the message, try again later";
    } else if (s->dp.nul && !binary) {
        rc = 554; code = "5.6.0"; text = "Message contains NUL characters";
    } else if (s->dp.line_too_long && !binary) {
        rc = 554; code = "5.6.0";
        text = "Message contains a line longer than the limit (RFC 5321 4.5.3.1.6)";
    } else if (s->dp.received_headers > cfg->max_received_headers) {
        rc = 554; code = "5.4.6"; text = "Too many Received headers: mail loop detected";
    }
    if (rc) {
        log_info("session=%s queue=%s refused: %s", s->id, s->qid, text);
        smtp_reply(s, rc, code, "%s", text);
        smtp_reset_transaction(s);
        return;
    }

    struct job *j = xcalloc(1, sizeof *j);
    j->s = s;
    j->rcpts = xcalloc(s->nrcpts, sizeof *j->rcpts);
    for (size_t i = 0; i < s->nrcpts; i++)
        j->rcpts[i] = (struct smtp_delivery_rcpt){ s->rcpts[i].address, s->rcpts[i].notify,
                                                   s->rcpts[i].orcpt, s->rcpts[i].dests,
                                                   s->rcpts[i].ndests };
    bool tls = smtp_tls_active(s);
    if (tls) tls_describe(conn_ssl(s->c), j->tls_desc, sizeof j->tls_desc);
    j->d = (struct smtp_delivery){
        .qid = s->qid, .mail_from = s->mail_from, .helo = s->helo, .client_ip = s->ip,
        .hostname = cfg->hostname,
        .protocol = smtp_protocol_name(s->esmtp, tls, s->auth_user != NULL, s->mail.smtputf8),
        .tls_desc = tls ? j->tls_desc : NULL, .auth_user = s->auth_user,
        .local = s->local, .local_uid = s->local_uid,
        .envid = s->mail.envid, .ret = (int)s->mail.ret, .body = (int)s->mail.body,
        .smtputf8 = s->mail.smtputf8, .rcpts = j->rcpts, .nrcpts = s->nrcpts,
        .spool_fd = s->spool_fd, .spool_len = s->spool_len, .arrival = time(NULL),
    };
    s->phase = PH_BUSY;
    conn_pause(s->c);
    workpool_submit(s->srv->pool, job_work, job_done, j);
}

/* ---- DATA ------------------------------------------------------------- */

void smtp_cmd_data(struct smtp_session *s)
{
    if (!s->in_mail) {
        smtp_reply(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    if (s->nrcpts == 0) {
        smtp_reply(s, 503, "5.5.1", "Error: need RCPT command (no valid recipients)");
        return;
    }
    if (s->bdat_used) {
        smtp_reply(s, 503, "5.5.1", "Error: DATA after BDAT in one transaction");
        return;
    }
    if (s->mail.body == SMTP_BODY_BINARYMIME) {
        smtp_reply(s, 503, "5.5.1", "Error: BODY=BINARYMIME requires BDAT (RFC 3030)");
        return;
    }
    if (!spool_start(s)) {
        smtp_reply(s, 451, "4.3.0", "Error: local error, try again later");
        return;
    }
    smtp_data_init(&s->dp, SMTP_DATA_DOT, SMTP_NEWLINE_NORMALIZE, s->srv->cfg->max_text_line);
    s->phase = PH_DATA;
    conn_set_timeout(s->c, s->srv->cfg->smtp_data_timeout);
    smtp_reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
}

bool smtp_data_input(struct smtp_session *s)
{
    struct evbuffer *in = conn_input(s->c);
    while (evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) break;
        size_t used = smtp_data_feed(&s->dp, v.iov_base, v.iov_len, &s->pending);
        evbuffer_drain(in, used);
        if (s->pending.len >= SPOOL_CHUNK) spool_flush(s);
        if (s->dp.done) {
            finish_message(s);
            return true;
        }
    }
    return false;
}

/* ---- BDAT (RFC 3030) -------------------------------------------------- */

void smtp_cmd_bdat(struct smtp_session *s, const struct smtp_cmd *cmd)
{
    s->bdat_remaining = cmd->bdat_size;
    s->bdat_last = cmd->bdat_last;
    s->bdat_discard = false;
    /* The chunk follows the command whatever we think of it: it must be
     * read to stay in step with the client (RFC 3030 section 3). */
    if (!s->in_mail) {
        s->bdat_discard = true;
        s->bdat_error = (struct smtp_error){ 503, "5.5.1", "Error: need MAIL command" };
    } else if (s->nrcpts == 0) {
        s->bdat_discard = true;
        s->bdat_error = (struct smtp_error){ 503, "5.5.1", "Error: need RCPT command (no valid recipients)" };
    } else if (s->bdat_failed) {
        s->bdat_discard = true;
        s->bdat_error = (struct smtp_error){ 503, "5.5.1", "Error: transaction failed, send RSET" };
    } else if (!spool_start(s)) {
        s->bdat_discard = true;
        s->bdat_error = (struct smtp_error){ 451, "4.3.0", "Error: local error, try again later" };
    } else if (!s->bdat_used) {
        s->bdat_used = true;
        smtp_data_init(&s->dp, SMTP_DATA_RAW, SMTP_NEWLINE_KEEP, s->srv->cfg->max_text_line);
    }
    s->phase = PH_BDAT;
    conn_set_timeout(s->c, s->srv->cfg->smtp_data_timeout);
}

static void bdat_chunk_done(struct smtp_session *s)
{
    s->phase = PH_COMMAND;
    conn_set_timeout(s->c, s->srv->cfg->smtp_timeout);
    if (s->bdat_discard) {
        if (s->in_mail && s->bdat_error.code >= 500) s->bdat_failed = true;
        smtp_reply(s, s->bdat_error.code, s->bdat_error.enhanced, "%s", s->bdat_error.text);
        return;
    }
    if (s->bdat_last) smtp_data_finish(&s->dp, &s->pending);
    spool_flush(s);
    if (s->too_big) {
        /* Nothing more of this message will be kept. */
        smtp_reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
        smtp_reset_transaction(s);
        s->bdat_failed = false;
        return;
    }
    if (s->bdat_last) {
        finish_message(s);
        return;
    }
    smtp_reply(s, 250, "2.0.0", "%llu octets received", (unsigned long long)s->spool_len);
}

bool smtp_bdat_input(struct smtp_session *s)
{
    struct evbuffer *in = conn_input(s->c);
    while (s->bdat_remaining > 0 && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) break;
        size_t n = v.iov_len < s->bdat_remaining ? v.iov_len : (size_t)s->bdat_remaining;
        if (!s->bdat_discard) {
            smtp_data_feed(&s->dp, v.iov_base, n, &s->pending);
            if (s->pending.len >= SPOOL_CHUNK) spool_flush(s);
        }
        evbuffer_drain(in, n);
        s->bdat_remaining -= n;
    }
    if (s->bdat_remaining > 0) return false;
    bdat_chunk_done(s);
    return true;
}
