#include "mta/mta_session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "mime/mime_codec.h"
#include "mime/mime_downgrade.h"
#include "mta/mta_proto.h"
#include "smtp/smtp_parse.h"

#define LINE_MAX_BYTES 4096         /* a reply line longer than this is a protocol error */
#define CHUNK (64 * 1024)
#define OUT_LOW (32 * 1024)
#define QUIT_TIMEOUT 10
#define BDAT_CHUNK (1024 * 1024)    /* RFC 3030: any size; one reply per MiB is cheap */

enum phase {
    P_CONNECT, P_GREETING, P_EHLO, P_HELO, P_STARTTLS, P_TLS, P_AUTH, P_RSET, P_TXN, P_BODY, P_DOT,
    P_BDAT, P_BDAT_REPLY, P_IDLE, P_QUIT,
};

struct mta_session {
    struct mta_params p;
    struct mta_txn *txn;
    mta_done_fn cb;
    void *ud;
    struct bufferevent *bev;
    struct event *timer;
    struct event *finish;       /* runs the callback outside of any bufferevent callback */
    bool closing;               /* done() was called: ignore everything else */
    bool keep;                  /* the transaction is over and the connection stays */
    mta_closed_fn closed;       /* parked: the owner's "gone" callback */
    void *closed_ud;
    enum phase phase;
    bool no_tls, tls_on, esmtp, authed, reused;
    unsigned auth_step;         /* AUTH LOGIN: replies consumed */
    unsigned ntxns;
    struct mta_caps caps;
    struct mta_reply reply;
    char peer[DNS_NAME_TEXT_MAX + 80];  /* "host[ip]:port" for logs and reasons */
    char host[DNS_NAME_TEXT_MAX + 1];   /* the name we connected by (or the literal address) */
    /* transaction: replies expected in order: MAIL, RCPT 0..n-1, DATA */
    size_t sent;                /* commands written */
    size_t answered;            /* replies consumed */
    bool pipelining;
    bool mail_failed;
    size_t accepted;
    uint64_t body_pos;
    uint64_t csize;             /* content size as sent (after any downgrade) */
    sbuf conv;                  /* the content converted to 7 bits, when it was */
    bool converted, use_bdat, bdat_last;
    uint64_t chunk_end;
    struct mta_dot dot;
    enum mta_outcome outcome;
    bool finished;              /* results final; only QUIT remains */
};

void mta_rcpt_set(struct mta_rcpt *r, int code, const char *status, const char *reply)
{
    r->code = code;
    snprintf(r->status, sizeof r->status, "%s", status);
    free(r->reply);
    r->reply = xstrdup(reply);
}

static void session_free(struct mta_session *s)
{
    if (s->bev) bufferevent_free(s->bev);
    if (s->timer) event_free(s->timer);
    if (s->finish) event_free(s->finish);
    mta_reply_free(&s->reply);
    sbuf_free(&s->conv);
    free(s);
}

/* The transaction's callback (once), or the parked owner's "gone". */
static void on_finish(evutil_socket_t fd, short what, void *p)
{
    struct mta_session *s = p;
    mta_done_fn cb = s->cb;
    void *ud = s->ud;
    enum mta_outcome outcome = s->outcome;
    s->cb = NULL;
    if (s->keep && !s->closing) {
        s->keep = false;
        if (cb) cb(outcome, s, ud);
        return;
    }
    mta_closed_fn closed = s->closed;
    void *closed_ud = s->closed_ud;
    session_free(s);
    if (cb) cb(outcome, NULL, ud);
    else if (closed) closed(closed_ud);
}

/* Report and go: the connection closes now, the callback runs from the
 * loop next, so no caller up the stack is left holding a freed session. */
static void done(struct mta_session *s, enum mta_outcome outcome)
{
    if (s->closing) return;
    s->closing = true;
    s->outcome = outcome;
    if (s->timer) event_del(s->timer);
    if (s->bev) {
        bufferevent_free(s->bev);
        s->bev = NULL;
    }
    event_active(s->finish, EV_TIMEOUT, 0);
}

static void arm(struct mta_session *s, unsigned seconds)
{
    struct timeval tv = { (time_t)seconds, 0 };
    event_add(s->timer, &tv);
}

/* Every recipient without a final result gets this one; accepted
 * recipients lose their acceptance (the transaction did not complete). */
static void fail_open(struct mta_session *s, int code, const char *status, const char *reason)
{
    if (!s->txn) return;
    for (size_t i = 0; i < s->txn->nrcpts; i++) {
        struct mta_rcpt *r = &s->txn->rcpts[i];
        if (r->code == 0 || (r->code >= 200 && r->code < 300 && !s->finished))
            mta_rcpt_set(r, code, status, reason);
    }
}

/* The reply as a reason: "host[ip] said: 550 5.1.1 ..." */
static char *reply_reason(struct mta_session *s, const char *after)
{
    char *one = mta_reply_oneline(&s->reply);
    sbuf b = SBUF_INIT;
    sbuf_printf(&b, "%s said: %s (in reply to %s)", s->peer, one, after);
    free(one);
    return sbuf_detach(&b);
}

/* Enhanced code from the reply, or a default for its class. */
static const char *reply_status(struct mta_session *s, const char *def)
{
    if (s->reply.enhanced[0]) return s->reply.enhanced;
    return def;
}

static void send_line(struct mta_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void send_line(struct mta_session *s, const char *fmt, ...)
{
    sbuf b = SBUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    sbuf_vprintf(&b, fmt, ap);
    va_end(ap);
    sbuf_puts(&b, "\r\n");
    bufferevent_write(s->bev, b.data, b.len);
    sbuf_free(&b);
}

static void quit(struct mta_session *s)
{
    s->finished = true;
    s->phase = P_QUIT;
    send_line(s, "QUIT");
    arm(s, QUIT_TIMEOUT);
}

/* The transaction has its results: keep the connection for the owner
 * when it may carry more, else say goodbye. */
static void txn_end(struct mta_session *s)
{
    s->outcome = MTA_DONE;
    s->finished = true;
    if (s->ntxns < s->p.max_txns && s->bev) {
        s->phase = P_IDLE;
        s->keep = true;
        event_del(s->timer);
        event_active(s->finish, EV_TIMEOUT, 0);
        return;
    }
    quit(s);
}

/* A failure of the connection itself (timeout, EOF, I/O error). */
static void connection_failed(struct mta_session *s, const char *what)
{
    char reason[512];
    if (s->phase == P_QUIT || s->phase == P_IDLE) {
        /* Results are final already; an idle connection just goes. */
        done(s, s->outcome);
        return;
    }
    snprintf(reason, sizeof reason, "%s %s", what, s->peer);
    if (s->phase == P_TLS) {
        bool plain_ok = s->p.tls_policy == MTA_TLS_OPPORTUNISTIC && !s->no_tls;
        if (!plain_ok)
            log_warn("mta: TLS with %s failed (%s): mail for it stays queued", s->peer, what);
        fail_open(s, 451, "4.7.5", reason);
        done(s, plain_ok ? MTA_RETRY_PLAIN : MTA_NEXT_HOST);
        return;
    }
    if (s->reused && (s->phase == P_RSET || (s->phase == P_TXN && s->answered == 0))) {
        fail_open(s, 451, "4.4.2", reason);
        done(s, MTA_STALE);
        return;
    }
    bool before_txn = s->phase < P_TXN || (s->phase == P_TXN && s->answered == 0);
    fail_open(s, 451, s->phase == P_CONNECT ? "4.4.1" : "4.4.2", reason);
    done(s, before_txn ? MTA_NEXT_HOST : MTA_DONE);
}

static void on_timer(evutil_socket_t fd, short what, void *p)
{
    struct mta_session *s = p;
    static const char *const names[] = { "connecting to", "waiting for the greeting of", "waiting for EHLO reply from",
                                         "waiting for HELO reply from", "waiting for STARTTLS reply from",
                                         "in TLS handshake with", "waiting for an AUTH reply from",
                                         "waiting for the RSET reply from", "waiting for a reply from",
                                         "sending message data to", "waiting for the end-of-data reply from",
                                         "sending a BDAT chunk to", "waiting for a BDAT reply from",
                                         "idle with", "waiting for QUIT reply from" };
    char text[128];
    if (s->phase == P_IDLE) {       /* parked long enough: go */
        quit(s);
        return;
    }
    snprintf(text, sizeof text, "timeout %s", names[s->phase]);
    connection_failed(s, text);
}

static void send_ehlo(struct mta_session *s, bool helo)
{
    s->phase = helo ? P_HELO : P_EHLO;
    send_line(s, "%s %s", helo ? "HELO" : "EHLO", s->p.helo_name);
    arm(s, s->p.timeout);
}

static void put_notify(sbuf *b, unsigned notify)
{
    if (notify & SMTP_NOTIFY_NEVER) {
        sbuf_puts(b, " NOTIFY=NEVER");
        return;
    }
    const char *sep = " NOTIFY=";
    if (notify & SMTP_NOTIFY_SUCCESS) { sbuf_printf(b, "%sSUCCESS", sep); sep = ","; }
    if (notify & SMTP_NOTIFY_FAILURE) { sbuf_printf(b, "%sFAILURE", sep); sep = ","; }
    if (notify & SMTP_NOTIFY_DELAY) sbuf_printf(b, "%sDELAY", sep);
}

/* Command number i of the transaction: 0 MAIL, 1..n RCPT, n+1 DATA. */
static bool eight_bit_content(const struct mta_txn *t)
{
    return t->body == SMTP_BODY_8BITMIME || t->eight_bit;
}

/* Command number i of the transaction: 0 MAIL, 1..n RCPT, n+1 DATA. */
static void send_txn_command(struct mta_session *s, size_t i)
{
    struct mta_txn *t = s->txn;
    sbuf b = SBUF_INIT;
    if (i == 0) {
        sbuf_printf(&b, "MAIL FROM:<%s>", t->mail_from);
        if (s->caps.size) sbuf_printf(&b, " SIZE=%llu", (unsigned long long)s->csize);
        if (t->body == SMTP_BODY_BINARYMIME) sbuf_puts(&b, " BODY=BINARYMIME");
        else if (!s->converted && s->caps.eightbitmime && eight_bit_content(t)) sbuf_puts(&b, " BODY=8BITMIME");
        if (t->smtputf8 && s->caps.smtputf8) sbuf_puts(&b, " SMTPUTF8");
        if (s->caps.dsn) {
            if (t->ret == SMTP_RET_FULL) sbuf_puts(&b, " RET=FULL");
            else if (t->ret == SMTP_RET_HDRS) sbuf_puts(&b, " RET=HDRS");
            if (t->envid && *t->envid) {
                sbuf_puts(&b, " ENVID=");
                mta_xtext(&b, t->envid);
            }
        }
    } else if (i <= t->nrcpts) {
        const struct mta_rcpt *r = &t->rcpts[i - 1];
        sbuf_printf(&b, "RCPT TO:<%s>", r->address);
        if (s->caps.dsn) {
            if (r->notify) put_notify(&b, r->notify);
            const char *semi = r->orcpt ? strchr(r->orcpt, ';') : NULL;
            if (semi) {
                sbuf_printf(&b, " ORCPT=%.*s;", (int)(semi - r->orcpt), r->orcpt);
                mta_xtext(&b, semi + 1);
            }
        }
    } else {
        sbuf_puts(&b, "DATA");
    }
    sbuf_puts(&b, "\r\n");
    bufferevent_write(s->bev, b.data, b.len);
    sbuf_free(&b);
    s->sent = i + 1;
}

/* RFC 6152 downgrade: read the message and convert it in memory.  False
 * with a reason when it cannot be done. */
static bool downgrade(struct mta_session *s, char *reason, size_t rlen)
{
    struct mta_txn *t = s->txn;
    char *buf = xmalloc(t->size ? (size_t)t->size : 1);
    uint64_t got = 0;
    while (got < t->size) {
        ssize_t k = pread(t->fd, buf + got, (size_t)(t->size - got), (off_t)(t->offset + got));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (uint64_t)k;
    }
    char why[300];
    bool ok = false;
    if (got < t->size) {
        snprintf(reason, rlen, "reading the queue file failed");
    } else if (mime_downgrade(buf, (size_t)t->size, &s->conv, why, sizeof why) == 0) {
        ok = true;
    } else {
        snprintf(reason, rlen, "message has 8-bit content, %s does not offer 8BITMIME, and it cannot be converted "
                 "to 7 bits: %s", s->peer, why);
    }
    free(buf);
    return ok;
}

/* Policy checks that need the peer's capabilities; true if the message
 * cannot go to this peer (results set). */
static bool refuse_before_mail(struct mta_session *s)
{
    struct mta_txn *t = s->txn;
    char reason[1200];
    if (t->body == SMTP_BODY_BINARYMIME && !(s->caps.chunking && s->caps.binarymime)) {
        snprintf(reason, sizeof reason, "message is BINARYMIME but %s does not offer CHUNKING and BINARYMIME "
                 "(RFC 3030)", s->peer);
        fail_open(s, 554, "5.6.3", reason);
        return true;
    }
    if (t->smtputf8 && !s->caps.smtputf8) {
        snprintf(reason, sizeof reason, "message needs SMTPUTF8 but %s does not offer it (RFC 6531)", s->peer);
        fail_open(s, 553, "5.6.7", reason);
        return true;
    }
    if (t->body != SMTP_BODY_BINARYMIME && eight_bit_content(t) && !s->caps.eightbitmime) {
        if (!downgrade(s, reason, sizeof reason)) {
            fail_open(s, 554, "5.6.3", reason);
            return true;
        }
        s->converted = true;
        s->csize = s->conv.len;
        log_info("queue=%s converted to 7 bits for %s (RFC 6152)", t->qid, s->peer);
    }
    if (s->caps.size && s->caps.size_max && s->csize > s->caps.size_max) {
        snprintf(reason, sizeof reason, "message size %llu exceeds the limit of %s (%llu)",
                 (unsigned long long)s->csize, s->peer, (unsigned long long)s->caps.size_max);
        fail_open(s, 552, "5.3.4", reason);
        return true;
    }
    return false;
}

static void start_txn(struct mta_session *s)
{
    s->phase = P_TXN;
    s->sent = s->answered = s->accepted = 0;
    s->mail_failed = s->finished = s->converted = false;
    s->body_pos = 0;
    s->csize = s->txn->size;
    sbuf_reset(&s->conv);
    s->ntxns++;
    if (refuse_before_mail(s)) {
        txn_end(s);
        return;
    }
    s->use_bdat = s->caps.chunking;
    s->pipelining = s->caps.pipelining;
    if (s->pipelining) {
        /* With BDAT the data command waits for the RCPT replies. */
        size_t last = s->use_bdat ? s->txn->nrcpts : s->txn->nrcpts + 1;
        for (size_t i = 0; i <= last; i++) send_txn_command(s, i);
    } else {
        send_txn_command(s, 0);
    }
    arm(s, s->p.timeout);
}

/* Up to want bytes of content at pos: a pointer into the converted copy,
 * or into buf after reading the queue file.  -1 on a read error. */
static ssize_t content_at(struct mta_session *s, uint64_t pos, size_t want, char *buf, const char **data)
{
    if (s->converted) {
        *data = s->conv.data + pos;
        return (ssize_t)want;
    }
    for (;;) {
        ssize_t n = pread(s->txn->fd, buf, want, (off_t)(s->txn->offset + pos));
        if (n < 0 && errno == EINTR) continue;
        *data = buf;
        return n;
    }
}

static void start_chunk(struct mta_session *s);

/* Queue message data up to the output low-water mark; the write callback
 * calls again as it drains.  DATA: dot-stuffed up to the final dot; BDAT:
 * raw bytes up to the end of the current chunk. */
static void pump_body(struct mta_session *s)
{
    struct evbuffer *out = bufferevent_get_output(s->bev);
    sbuf chunk = SBUF_INIT;
    char *buf = NULL;
    while (!s->closing && (s->phase == P_BODY || s->phase == P_BDAT) && evbuffer_get_length(out) < OUT_LOW * 2) {
        uint64_t end = s->phase == P_BDAT ? s->chunk_end : s->csize;
        if (s->body_pos >= end) {
            if (s->phase == P_BDAT) {
                s->phase = P_BDAT_REPLY;
                arm(s, s->bdat_last ? s->p.data_timeout : s->p.timeout);
                break;
            }
            sbuf_reset(&chunk);
            mta_dot_end(&s->dot, &chunk);
            evbuffer_add(out, chunk.data, chunk.len);
            s->phase = P_DOT;
            arm(s, s->p.data_timeout);
            break;
        }
        if (!buf) buf = xmalloc(CHUNK);
        uint64_t left = end - s->body_pos;
        size_t want = left < CHUNK ? (size_t)left : CHUNK;
        const char *data;
        ssize_t n = content_at(s, s->body_pos, want, buf, &data);
        if (n <= 0) {
            char reason[300];
            snprintf(reason, sizeof reason, "reading the queue file: %s", n < 0 ? strerror(errno) : "short file");
            /* Closing without the final dot (or the full chunk) aborts the transaction remotely. */
            fail_open(s, 451, "4.3.0", reason);
            done(s, MTA_DONE);
            break;
        }
        s->body_pos += (uint64_t)n;
        if (s->phase == P_BDAT) {
            evbuffer_add(out, data, (size_t)n);
        } else {
            sbuf_reset(&chunk);
            mta_dot_feed(&s->dot, data, (size_t)n, &chunk);
            evbuffer_add(out, chunk.data, chunk.len);
        }
        arm(s, s->p.timeout);   /* RFC 5321 4.5.3.2.5: data block, 3 minutes or more */
    }
    free(buf);
    sbuf_free(&chunk);
}

/* RFC 3030 2: "BDAT size [LAST]" followed by exactly size bytes. */
static void start_chunk(struct mta_session *s)
{
    uint64_t left = s->csize - s->body_pos;
    uint64_t n = left < BDAT_CHUNK ? left : BDAT_CHUNK;
    s->chunk_end = s->body_pos + n;
    s->bdat_last = s->chunk_end == s->csize;
    send_line(s, "BDAT %llu%s", (unsigned long long)n, s->bdat_last ? " LAST" : "");
    s->phase = P_BDAT;
    pump_body(s);
}

static void on_write(struct bufferevent *bev, void *p)
{
    struct mta_session *s = p;
    if (!s->closing && (s->phase == P_BODY || s->phase == P_BDAT)) pump_body(s);
}

static void on_event(struct bufferevent *bev, short what, void *p);
static void on_read(struct bufferevent *bev, void *p);

static bool is_ip(const char *h)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

static void start_tls(struct mta_session *s)
{
    SSL *ssl = SSL_new(s->p.tls);
    if (!ssl) {
        connection_failed(s, "cannot start TLS with");
        return;
    }
    const char *host = s->host;
    if (host[0] == '[') host = "";          /* an SMTP address literal from DNS */
    bool literal = is_ip(host);
    /* SNI: the exchanger's name (RFC 6066 3), never an address. */
    if (host[0] && !literal) SSL_set_tlsext_host_name(ssl, host);
    if (s->p.tls_policy == MTA_TLS_VERIFY) {
        /* RFC 6125: the certificate must name the host we chose to connect
         * to (OpenSSL 3 takes an address here as an IP SAN check). */
        SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (host[0]) SSL_set1_host(ssl, host);
    } else {
        SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
    }
    struct bufferevent *tb = bufferevent_openssl_filter_new(s->p.base, s->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                            BEV_OPT_CLOSE_ON_FREE);
    if (!tb) {
        SSL_free(ssl);
        connection_failed(s, "cannot start TLS with");
        return;
    }
    s->bev = tb;
    s->phase = P_TLS;
    bufferevent_openssl_set_allow_dirty_shutdown(tb, 1);
    bufferevent_setcb(tb, on_read, on_write, on_event, s);
    bufferevent_setwatermark(tb, EV_WRITE, OUT_LOW, 0);
    bufferevent_enable(tb, EV_READ | EV_WRITE);
    arm(s, s->p.timeout);
}

/* The reply to the end of the data (the DATA dot or BDAT LAST), or a
 * refused BDAT chunk: final results for every accepted recipient. */
static void final_reply(struct mta_session *s, const char *what)
{
    struct mta_txn *t = s->txn;
    int code = s->reply.code;
    char *why = reply_reason(s, what);
    for (size_t i = 0; i < t->nrcpts; i++) {
        struct mta_rcpt *r = &t->rcpts[i];
        if (r->code / 100 != 2) continue;
        mta_rcpt_set(r, code, reply_status(s, code / 100 == 2 ? "2.0.0" : code >= 500 ? "5.0.0" : "4.0.0"),
                     code / 100 == 2 ? sbuf_cstr(&s->reply.text) : why);
    }
    free(why);
    txn_end(s);
}

/* One complete reply for the transaction phase. */
static void txn_reply(struct mta_session *s)
{
    struct mta_txn *t = s->txn;
    size_t i = s->answered++;
    int code = s->reply.code;
    if (i == 0) {                                   /* MAIL */
        if (code / 100 != 2) {
            s->mail_failed = true;
            char *why = reply_reason(s, "MAIL FROM");
            fail_open(s, code, reply_status(s, code >= 500 ? "5.0.0" : "4.0.0"), why);
            free(why);
        }
    } else if (i <= t->nrcpts) {                     /* RCPT */
        struct mta_rcpt *r = &t->rcpts[i - 1];
        if (!s->mail_failed) {
            if (code / 100 == 2) {
                s->accepted++;
                mta_rcpt_set(r, code, reply_status(s, "2.1.5"), "accepted");
            } else {
                char *why = reply_reason(s, "RCPT TO");
                mta_rcpt_set(r, code, reply_status(s, code >= 500 ? "5.0.0" : "4.0.0"), why);
                free(why);
            }
        }
        if (s->use_bdat && i == t->nrcpts) {
            if (s->mail_failed || s->accepted == 0) {
                txn_end(s);         /* nothing was sent: the transaction needs no more */
                return;
            }
            s->body_pos = 0;
            start_chunk(s);
            return;
        }
    } else {                                        /* DATA */
        if (code == 354 && !s->mail_failed && s->accepted > 0) {
            s->phase = P_BODY;
            s->body_pos = 0;
            mta_dot_init(&s->dot);
            pump_body(s);
            return;
        }
        if (code == 354) {
            /* Nothing to send: closing without the dot aborts the transaction. */
            done(s, MTA_DONE);
            return;
        }
        if (!s->mail_failed && s->accepted > 0) {
            char *why = reply_reason(s, "DATA");
            fail_open(s, code, reply_status(s, code >= 500 ? "5.0.0" : "4.0.0"), why);
            free(why);
        }
        txn_end(s);
        return;
    }
    if (s->pipelining) {
        arm(s, s->p.timeout);
        return;
    }
    /* Without pipelining, stop early when nothing can follow. */
    if (s->mail_failed || (i == t->nrcpts && s->accepted == 0)) {
        txn_end(s);
        return;
    }
    send_txn_command(s, i + 1);
    arm(s, s->p.timeout);
}

static void auth_failed(struct mta_session *s, const char *why_prefix)
{
    char *one = mta_reply_oneline(&s->reply);
    char reason[900], u[200];
    log_safe(s->p.auth_user, strlen(s->p.auth_user), u, sizeof u);
    snprintf(reason, sizeof reason, "%s %s for user %s: %s", why_prefix, s->peer, u, one);
    log_warn("mta: %s; mail stays queued (check relay_auth_user and relay_auth_password_file)", reason);
    free(one);
    /* A refused login is our configuration, not the message: retry (RFC 4954 6: 535 5.7.8). */
    fail_open(s, 451, "4.7.8", reason);
    s->outcome = MTA_NEXT_HOST;
    quit(s);
}

static void send_b64(struct mta_session *s, const char *prefix, const void *data, size_t len)
{
    sbuf b = SBUF_INIT;
    sbuf_puts(&b, prefix);
    mime_b64_encode(data, len, 0, &b);
    sbuf_puts(&b, "\r\n");
    bufferevent_write(s->bev, b.data, b.len);
    /* The credentials do not linger in freed memory. */
    OPENSSL_cleanse(b.data, b.len);
    sbuf_free(&b);
}

/* RFC 4954: PLAIN with an initial response, or LOGIN's two prompts. */
static void start_auth(struct mta_session *s)
{
    s->phase = P_AUTH;
    s->auth_step = 0;
    if (s->caps.auth_plain) {
        const char *u = s->p.auth_user, *pw = s->p.auth_password;
        size_t ul = strlen(u), pl = strlen(pw);
        char *msg = xmalloc(ul + pl + 2);
        msg[0] = '\0';
        memcpy(msg + 1, u, ul);
        msg[1 + ul] = '\0';
        memcpy(msg + 2 + ul, pw, pl);
        send_b64(s, "AUTH PLAIN ", msg, ul + pl + 2);
        OPENSSL_cleanse(msg, ul + pl + 2);
        free(msg);
        s->auth_step = 2;       /* the next reply is the outcome */
    } else {
        send_line(s, "AUTH LOGIN");
    }
    arm(s, s->p.timeout);
}

static void auth_reply(struct mta_session *s)
{
    int code = s->reply.code;
    if (s->auth_step < 2) {
        if (code != 334) {
            auth_failed(s, code == 535 ? "the relay refused the credentials:" : "AUTH LOGIN failed at");
            return;
        }
        const char *v = s->auth_step == 0 ? s->p.auth_user : s->p.auth_password;
        send_b64(s, "", v, strlen(v));
        s->auth_step++;
        arm(s, s->p.timeout);
        return;
    }
    if (code == 235) {
        s->authed = true;
        start_txn(s);
        return;
    }
    auth_failed(s, code == 535 ? "the relay refused the credentials:" : "authentication failed at");
}

/* After EHLO (or HELO): TLS by policy, then AUTH, then the transaction. */
static void after_hello(struct mta_session *s)
{
    char reason[600];
    bool tls_possible = s->p.tls && !s->no_tls;
    if (!s->tls_on && s->caps.starttls && tls_possible) {
        s->phase = P_STARTTLS;
        send_line(s, "STARTTLS");
        arm(s, s->p.timeout);
        return;
    }
    if (!s->tls_on && s->p.tls_policy != MTA_TLS_OPPORTUNISTIC) {
        snprintf(reason, sizeof reason, "TLS is required, but %s did not offer STARTTLS", s->peer);
        log_warn("mta: %s: mail for it stays queued", reason);
        fail_open(s, 451, "4.7.4", reason);
        s->outcome = MTA_NEXT_HOST;
        quit(s);
        return;
    }
    if (s->p.auth_user && !s->authed) {
        const char *missing = !s->tls_on ? "TLS (credentials are never sent in clear)"
                              : !(s->caps.auth_plain || s->caps.auth_login) ? "AUTH PLAIN or LOGIN" : NULL;
        if (missing) {
            snprintf(reason, sizeof reason, "cannot authenticate to %s: it did not offer %s", s->peer, missing);
            log_warn("mta: %s; mail stays queued", reason);
            fail_open(s, 451, "4.7.0", reason);
            s->outcome = MTA_NEXT_HOST;
            quit(s);
            return;
        }
        start_auth(s);
        return;
    }
    start_txn(s);
}

static void handle_reply(struct mta_session *s)
{
    int code = s->reply.code;
    switch (s->phase) {
    case P_GREETING:
        if (code != 220) {
            char *why = reply_reason(s, "the connection greeting");
            fail_open(s, code >= 500 ? 554 : 451, reply_status(s, code >= 500 ? "5.0.0" : "4.0.0"), why);
            free(why);
            s->outcome = MTA_NEXT_HOST;
            quit(s);
            return;
        }
        send_ehlo(s, false);
        return;
    case P_EHLO:
        if (code == 250) {
            s->esmtp = true;
            mta_caps_parse(&s->reply, &s->caps);
            after_hello(s);
            return;
        }
        if (code >= 500) {      /* RFC 5321 3.2: an old server; try HELO */
            send_ehlo(s, true);
            return;
        }
        break;
    case P_HELO:
        if (code == 250) {
            memset(&s->caps, 0, sizeof s->caps);
            after_hello(s);
            return;
        }
        break;
    case P_STARTTLS:
        if (code == 220) {
            /* Anything the server sent after its 220 is not trusted (RFC 3207 4.2 / CVE-2011-0411 mirror). */
            evbuffer_drain(bufferevent_get_input(s->bev), evbuffer_get_length(bufferevent_get_input(s->bev)));
            start_tls(s);
            return;
        }
        /* Opportunistic: go on in plain text (after_hello refuses when TLS is required). */
        s->no_tls = true;
        after_hello(s);
        return;
    case P_AUTH:
        auth_reply(s);
        return;
    case P_RSET:
        if (code / 100 == 2) {
            start_txn(s);
            return;
        }
        {
            char *why = reply_reason(s, "RSET");
            fail_open(s, 451, "4.4.2", why);
            free(why);
            s->outcome = MTA_STALE;
            quit(s);
        }
        return;
    case P_TXN:
        txn_reply(s);
        return;
    case P_DOT:
        final_reply(s, "end of DATA");
        return;
    case P_BDAT_REPLY:
        if (code / 100 == 2 && !s->bdat_last) {
            start_chunk(s);
            return;
        }
        final_reply(s, s->bdat_last ? "BDAT LAST" : "BDAT");
        return;
    case P_IDLE:                /* unsolicited: a 421 before the server closes */
        quit(s);
        return;
    case P_QUIT:
        done(s, s->outcome);
        return;
    default:
        return;
    }
    /* EHLO 4xx, HELO refused: this host will not talk to us now. */
    char *why = reply_reason(s, s->phase == P_HELO ? "HELO" : "EHLO");
    fail_open(s, code, reply_status(s, code >= 500 ? "5.0.0" : "4.0.0"), why);
    free(why);
    s->outcome = MTA_NEXT_HOST;
    quit(s);
}

static void on_read(struct bufferevent *bev, void *p)
{
    struct mta_session *s = p;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        if (s->closing || s->phase == P_TLS || s->phase == P_CONNECT) return;
        size_t n;
        char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
        if (!line) {
            if (evbuffer_get_length(in) > LINE_MAX_BYTES) connection_failed(s, "overlong reply line from");
            return;
        }
        if (s->phase == P_BODY || s->phase == P_BDAT) {   /* a reply before our data ended: protocol error */
            free(line);
            connection_failed(s, "unexpected reply during message data from");
            return;
        }
        int r = mta_reply_feed(&s->reply, line, n);
        free(line);
        if (r < 0) {
            connection_failed(s, "malformed reply from");
            return;
        }
        if (r == 0) continue;
        struct bufferevent *bev_before = s->bev;
        handle_reply(s);
        /* After STARTTLS the input belongs to the TLS filter; an idle
         * session belongs to its owner from now on. */
        if (s->bev != bev_before || s->phase == P_BODY || s->phase == P_BDAT || s->keep) return;
    }
}

static void on_event(struct bufferevent *bev, short what, void *p)
{
    struct mta_session *s = p;
    if (s->closing) return;
    if (what & BEV_EVENT_CONNECTED) {
        if (s->phase == P_CONNECT) {
            s->phase = P_GREETING;
            arm(s, s->p.timeout);
            return;
        }
        if (s->phase == P_TLS) {
            s->tls_on = true;
            send_ehlo(s, false);    /* RFC 3207 4.2: forget what we knew, ask again */
            return;
        }
        return;
    }
    if (what & BEV_EVENT_EOF) connection_failed(s, "connection closed by");
    else if (what & BEV_EVENT_TIMEOUT) connection_failed(s, "timeout talking to");
    else {
        char what_s[400];
        int e = EVUTIL_SOCKET_ERROR();
        unsigned long ssl_err = s->phase == P_TLS ? bufferevent_get_openssl_error(bev) : 0;
        if (ssl_err) {
            char eb[120];
            ERR_error_string_n(ssl_err, eb, sizeof eb);
            SSL *ssl = bufferevent_openssl_get_ssl(bev);
            long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
            if (vr != X509_V_OK)
                snprintf(what_s, sizeof what_s, "TLS certificate verification failed (%s) for",
                         X509_verify_cert_error_string(vr));
            else
                snprintf(what_s, sizeof what_s, "TLS handshake failed (%s) with", eb);
        } else {
            snprintf(what_s, sizeof what_s, "%s%s", e ? evutil_socket_error_to_string(e) : "I/O error",
                     s->phase == P_CONNECT ? ": connect to" : " talking to");
        }
        connection_failed(s, what_s);
    }
}

mta_session *mta_session_start(const struct mta_params *params, const struct dns_target *target, bool no_tls,
                               struct mta_txn *txn, mta_done_fn cb, void *ud)
{
    struct mta_session *s = xcalloc(1, sizeof *s);
    s->p = *params;
    s->txn = txn;
    s->cb = cb;
    s->ud = ud;
    s->no_tls = no_tls;
    mta_reply_init(&s->reply);
    struct sockaddr_storage addr = target->addr;
    char ip[INET6_ADDRSTRLEN] = "?";
    if (addr.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&addr;
        sin->sin_port = htons(params->port);
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&addr;
        sin6->sin6_port = htons(params->port);
        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip);
    }
    snprintf(s->peer, sizeof s->peer, "%s[%s]:%u", target->host, ip, (unsigned)params->port);
    snprintf(s->host, sizeof s->host, "%s", target->host);
    s->timer = evtimer_new(params->base, on_timer, s);
    s->finish = evtimer_new(params->base, on_finish, s);
    s->bev = bufferevent_socket_new(params->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!s->timer || !s->finish || !s->bev) abort();     /* allocation failure: see core/util.h */
    bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
    bufferevent_setwatermark(s->bev, EV_WRITE, OUT_LOW, 0);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    s->phase = P_CONNECT;
    arm(s, params->connect_timeout);
    if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&addr, (int)target->addrlen) < 0) {
        char reason[600];
        snprintf(reason, sizeof reason, "cannot connect to %s: %s", s->peer, strerror(errno));
        fail_open(s, 451, "4.4.1", reason);
        done(s, MTA_NEXT_HOST);
    }
    return s;
}

void mta_session_next(mta_session *s, struct mta_txn *txn, mta_done_fn cb, void *ud)
{
    s->txn = txn;
    s->cb = cb;
    s->ud = ud;
    s->closed = NULL;
    s->closed_ud = NULL;
    s->reused = true;
    s->outcome = MTA_DONE;
    s->phase = P_RSET;
    send_line(s, "RSET");
    arm(s, s->p.timeout);
}

void mta_session_park(mta_session *s, unsigned seconds, mta_closed_fn closed, void *ud)
{
    s->closed = closed;
    s->closed_ud = ud;
    s->txn = NULL;
    arm(s, seconds);
}

bool mta_session_idle(const mta_session *s)
{
    return s->phase == P_IDLE && !s->closing && !s->keep;
}

void mta_session_close(mta_session *s)
{
    if (s->closing || s->phase == P_QUIT) return;
    s->txn = NULL;
    quit(s);
}

const char *mta_session_host(const mta_session *s)
{
    return s->host;
}

unsigned mta_session_txns(const mta_session *s)
{
    return s->ntxns;
}

void mta_session_abort(mta_session *s)
{
    if (s) session_free(s);
}
