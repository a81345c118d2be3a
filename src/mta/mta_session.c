#include "mta/mta_session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "mta/mta_proto.h"
#include "smtp/smtp_parse.h"

#define LINE_MAX_BYTES 4096         /* a reply line longer than this is a protocol error */
#define CHUNK (64 * 1024)
#define OUT_LOW (32 * 1024)
#define QUIT_TIMEOUT 10

enum phase {
    P_CONNECT, P_GREETING, P_EHLO, P_HELO, P_STARTTLS, P_TLS, P_TXN, P_BODY, P_DOT, P_QUIT,
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
    enum phase phase;
    bool no_tls, tls_on, esmtp;
    struct mta_caps caps;
    struct mta_reply reply;
    char peer[DNS_NAME_TEXT_MAX + 80];  /* "host[ip]:port" for logs and reasons */
    /* transaction: replies expected in order: MAIL, RCPT 0..n-1, DATA */
    size_t sent;                /* commands written */
    size_t answered;            /* replies consumed */
    bool pipelining;
    bool mail_failed;
    size_t accepted;
    uint64_t body_pos;
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
    free(s);
}

static void on_finish(evutil_socket_t fd, short what, void *p)
{
    struct mta_session *s = p;
    mta_done_fn cb = s->cb;
    void *ud = s->ud;
    enum mta_outcome outcome = s->outcome;
    session_free(s);
    cb(outcome, ud);
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

/* A failure of the connection itself (timeout, EOF, I/O error). */
static void connection_failed(struct mta_session *s, const char *what)
{
    char reason[512];
    if (s->phase == P_QUIT) {
        done(s, s->outcome);
        return;
    }
    snprintf(reason, sizeof reason, "%s %s", what, s->peer);
    if (s->phase == P_TLS) {
        fail_open(s, 451, "4.7.5", reason);
        done(s, s->no_tls ? MTA_NEXT_HOST : MTA_RETRY_PLAIN);
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
                                         "in TLS handshake with", "waiting for a reply from",
                                         "sending message data to", "waiting for the end-of-data reply from",
                                         "waiting for QUIT reply from" };
    char text[128];
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
static void send_txn_command(struct mta_session *s, size_t i)
{
    struct mta_txn *t = s->txn;
    sbuf b = SBUF_INIT;
    if (i == 0) {
        sbuf_printf(&b, "MAIL FROM:<%s>", t->mail_from);
        if (s->caps.size) sbuf_printf(&b, " SIZE=%llu", (unsigned long long)t->size);
        if (s->caps.eightbitmime && (t->body == SMTP_BODY_8BITMIME || t->eight_bit)) sbuf_puts(&b, " BODY=8BITMIME");
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

/* Policy checks that need the peer's capabilities; true if the message
 * cannot go to this peer (results set). */
static bool refuse_before_mail(struct mta_session *s)
{
    struct mta_txn *t = s->txn;
    char reason[600];
    if (t->body == SMTP_BODY_BINARYMIME) {
        snprintf(reason, sizeof reason, "message is BINARYMIME; sending it with BDAT is not supported (%s)", s->peer);
        fail_open(s, 554, "5.6.3", reason);
        return true;
    }
    if (t->smtputf8 && !s->caps.smtputf8) {
        snprintf(reason, sizeof reason, "message needs SMTPUTF8 but %s does not offer it (RFC 6531)", s->peer);
        fail_open(s, 553, "5.6.7", reason);
        return true;
    }
    if ((t->body == SMTP_BODY_8BITMIME || t->eight_bit) && !s->caps.eightbitmime && s->esmtp) {
        snprintf(reason, sizeof reason, "message has 8-bit content but %s does not offer 8BITMIME", s->peer);
        fail_open(s, 554, "5.6.3", reason);
        return true;
    }
    if ((t->body == SMTP_BODY_8BITMIME || t->eight_bit) && !s->esmtp) {
        snprintf(reason, sizeof reason, "message has 8-bit content but %s does not speak ESMTP", s->peer);
        fail_open(s, 554, "5.6.3", reason);
        return true;
    }
    if (s->caps.size && s->caps.size_max && t->size > s->caps.size_max) {
        snprintf(reason, sizeof reason, "message size %llu exceeds the limit of %s (%llu)",
                 (unsigned long long)t->size, s->peer, (unsigned long long)s->caps.size_max);
        fail_open(s, 552, "5.3.4", reason);
        return true;
    }
    return false;
}

static void start_txn(struct mta_session *s)
{
    s->phase = P_TXN;
    if (refuse_before_mail(s)) {
        s->outcome = MTA_DONE;
        quit(s);
        return;
    }
    s->pipelining = s->caps.pipelining;
    s->sent = s->answered = 0;
    if (s->pipelining)
        for (size_t i = 0; i <= s->txn->nrcpts + 1; i++) send_txn_command(s, i);
    else
        send_txn_command(s, 0);
    arm(s, s->p.timeout);
}

/* Queue message data up to the output low-water mark; the write callback
 * calls again as it drains. */
static void pump_body(struct mta_session *s)
{
    struct mta_txn *t = s->txn;
    struct evbuffer *out = bufferevent_get_output(s->bev);
    sbuf chunk = SBUF_INIT;
    char *buf = NULL;
    while (!s->closing && s->phase == P_BODY && evbuffer_get_length(out) < OUT_LOW * 2) {
        if (s->body_pos >= t->size) {
            sbuf_reset(&chunk);
            mta_dot_end(&s->dot, &chunk);
            evbuffer_add(out, chunk.data, chunk.len);
            s->phase = P_DOT;
            arm(s, s->p.data_timeout);
            break;
        }
        if (!buf) buf = xmalloc(CHUNK);
        uint64_t left = t->size - s->body_pos;
        size_t want = left < CHUNK ? (size_t)left : CHUNK;
        ssize_t n = pread(t->fd, buf, want, (off_t)(t->offset + s->body_pos));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            char reason[300];
            snprintf(reason, sizeof reason, "reading the queue file: %s", n < 0 ? strerror(errno) : "short file");
            /* Closing without the final dot aborts the transaction remotely. */
            fail_open(s, 451, "4.3.0", reason);
            free(buf);
            sbuf_free(&chunk);
            done(s, MTA_DONE);
            break;
        }
        s->body_pos += (uint64_t)n;
        sbuf_reset(&chunk);
        mta_dot_feed(&s->dot, buf, (size_t)n, &chunk);
        evbuffer_add(out, chunk.data, chunk.len);
        arm(s, s->p.timeout);   /* RFC 5321 4.5.3.2.5: data block, 3 minutes or more */
    }
    free(buf);
    sbuf_free(&chunk);
}

static void on_write(struct bufferevent *bev, void *p)
{
    struct mta_session *s = p;
    if (!s->closing && s->phase == P_BODY) pump_body(s);
}

static void on_event(struct bufferevent *bev, short what, void *p);
static void on_read(struct bufferevent *bev, void *p);

static void start_tls(struct mta_session *s)
{
    SSL *ssl = SSL_new(s->p.tls);
    if (!ssl) {
        connection_failed(s, "cannot start TLS with");
        return;
    }
    /* SNI: the exchanger's name (RFC 6066 3), unless it is a literal. */
    if (s->peer[0] != '[') {
        char host[DNS_NAME_TEXT_MAX + 1];
        size_t n = strcspn(s->peer, "[");
        snprintf(host, sizeof host, "%.*s", (int)n, s->peer);
        SSL_set_tlsext_host_name(ssl, host);
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
        s->outcome = MTA_DONE;
        quit(s);
        return;
    }
    if (s->pipelining) {
        arm(s, s->p.timeout);
        return;
    }
    /* Without pipelining, stop early when nothing can follow. */
    if (s->mail_failed || (i == t->nrcpts && s->accepted == 0)) {
        s->outcome = MTA_DONE;
        quit(s);
        return;
    }
    send_txn_command(s, i + 1);
    arm(s, s->p.timeout);
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
            if (s->caps.starttls && s->p.tls && !s->no_tls && !s->tls_on) {
                s->phase = P_STARTTLS;
                send_line(s, "STARTTLS");
                arm(s, s->p.timeout);
                return;
            }
            start_txn(s);
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
            start_txn(s);
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
        /* Opportunistic: go on in plain text. */
        start_txn(s);
        return;
    case P_TXN:
        txn_reply(s);
        return;
    case P_DOT: {
        struct mta_txn *t = s->txn;
        char *why = reply_reason(s, "end of DATA");
        for (size_t i = 0; i < t->nrcpts; i++) {
            struct mta_rcpt *r = &t->rcpts[i];
            if (r->code / 100 != 2) continue;
            mta_rcpt_set(r, code, reply_status(s, code / 100 == 2 ? "2.0.0" : code >= 500 ? "5.0.0" : "4.0.0"),
                         code / 100 == 2 ? sbuf_cstr(&s->reply.text) : why);
        }
        free(why);
        s->outcome = MTA_DONE;
        quit(s);
        return;
    }
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
        if (s->phase == P_BODY) {       /* a reply before our final dot: protocol error */
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
        /* After STARTTLS the input belongs to the TLS filter. */
        if (s->bev != bev_before || s->phase == P_BODY) return;
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
        char what_s[160];
        int e = EVUTIL_SOCKET_ERROR();
        unsigned long ssl_err = s->phase == P_TLS ? bufferevent_get_openssl_error(bev) : 0;
        if (ssl_err) {
            char eb[120];
            ERR_error_string_n(ssl_err, eb, sizeof eb);
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

void mta_session_abort(mta_session *s)
{
    if (s) session_free(s);
}
