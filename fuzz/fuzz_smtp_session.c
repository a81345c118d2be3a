/* The SMTP session glue between command lines and message data, as
 * src/smtp/smtp_session.c and smtp_session_data.c drive it.  The session
 * itself needs a libevent connection, so this target replays its input
 * loop over a plain buffer with the same pure parts in the same order:
 * line framing (conn_read_line's rules: LF or CRLF ends a line, a line
 * longer than max_command_line is refused once and skipped to its LF),
 * smtp_parse_command, the envelope state that decides whether DATA/BDAT
 * may start, the smtp_data machine for DATA (DOT, NORMALIZE) and BDAT
 * (RAW, KEEP, chunk sizes counted down), and the size bookkeeping of the
 * spool.
 *
 * Invariants checked on every input:
 * - no smuggled end of data: the DATA bytes consumed, seen after a CRLF,
 *   contain CRLF.CRLF only at their very end;
 * - DATA output is pure CRLF text, and out_bytes counts it exactly;
 * - a BDAT chunk takes exactly the announced number of octets, and the
 *   content of a BDAT message is exactly the concatenated chunk octets;
 * - the spool never holds more than max_message_size, and holds all of
 *   the content when the message was not refused as too big;
 * - pipelining: feeding the stream whole, in random pieces and byte by
 *   byte gives the same replies and the same messages. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/sbuf.h"
#include "smtp/smtp_data.h"
#include "smtp/smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_CMD 510         /* max_command_line 512 minus CRLF, as the session reads */
#define MAX_TEXT 1000       /* max_text_line */
#define MAX_RCPTS 100
#define MAX_ERRORS 20
#define SPOOL_CHUNK 4096    /* smaller than the session's, to flush more often */

enum phase { PH_COMMAND, PH_DATA, PH_BDAT, PH_CLOSED };

struct model {
    uint64_t max_msg;
    sbuf in;                    /* unread input, like the conn's evbuffer */
    size_t in_off;
    bool skip_to_eol;
    enum phase phase;
    unsigned errors;

    bool greeted, in_mail, bdat_used, bdat_failed, binarymime;
    unsigned nrcpts;

    struct smtp_data dp;
    sbuf pending;               /* produced, not yet "written" */
    uint64_t spool_len;
    bool too_big;
    uint64_t bdat_remaining;
    bool bdat_last, bdat_discard;

    sbuf raw;                   /* DATA: consumed bytes; BDAT: kept chunk bytes */
    sbuf content;               /* everything the machine produced for this message */

    uint64_t hash;              /* transcript of replies and stored messages */
    unsigned events;
};

static void mix(struct model *m, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) m->hash = (m->hash ^ b[i]) * 1099511628211ull;
    m->events++;
}

static void reply(struct model *m, int code)
{
    mix(m, &code, sizeof code);
    if (code >= 500 && code != 552 && ++m->errors >= MAX_ERRORS) m->phase = PH_CLOSED;
}

static void reset_txn(struct model *m)
{
    m->in_mail = m->bdat_used = m->bdat_failed = m->binarymime = false;
    m->nrcpts = 0;
    m->spool_len = 0;
    m->too_big = false;
    sbuf_reset(&m->pending);
    sbuf_reset(&m->raw);
    sbuf_reset(&m->content);
}

/* spool_flush() of smtp_session_data.c */
static void spool_flush(struct model *m)
{
    if (m->pending.len == 0) return;
    sbuf_append(&m->content, m->pending.data, m->pending.len);
    if (!m->too_big && m->spool_len + m->pending.len > m->max_msg) m->too_big = true;
    if (!m->too_big) m->spool_len += m->pending.len;
    sbuf_reset(&m->pending);
    if (m->spool_len > m->max_msg) abort();
}

static void check_crlf_text(const sbuf *b)
{
    for (size_t i = 0; i < b->len; i++) {
        if (b->data[i] == '\r' && (i + 1 == b->len || b->data[i + 1] != '\n')) abort();
        if (b->data[i] == '\n' && (i == 0 || b->data[i - 1] != '\r')) abort();
    }
}

/* finish_message() of smtp_session_data.c, plus the invariants. */
static void finish_message(struct model *m)
{
    spool_flush(m);
    m->phase = PH_COMMAND;
    if (m->dp.out_bytes != m->content.len) abort();
    if (!m->too_big && m->spool_len != m->content.len) abort();
    int code = 250;
    if (m->too_big) code = 552;
    else if (m->dp.nul && !m->binarymime) code = 554;
    else if (m->dp.line_too_long && !m->binarymime) code = 554;
    else if (m->dp.received_headers > 50) code = 554;
    if (code == 250) mix(m, m->content.data ? m->content.data : "", m->content.len);
    reply(m, code);
    reset_txn(m);
}

/* The end-of-data check, stated without the machine: the bytes DATA took,
 * read as if a CRLF came just before them, hold CRLF.CRLF only at the end. */
static void check_no_smuggling(const sbuf *raw)
{
    sbuf d = SBUF_INIT;
    sbuf_append(&d, "\r\n", 2);
    sbuf_append(&d, raw->data, raw->len);
    if (d.len < 5 || memcmp(d.data + d.len - 5, "\r\n.\r\n", 5) != 0) abort();
    for (size_t i = 0; i + 5 < d.len; i++)
        if (memcmp(d.data + i, "\r\n.\r\n", 5) == 0) abort();
    sbuf_free(&d);
}

static bool data_input(struct model *m)
{
    size_t avail = m->in.len - m->in_off;
    if (avail == 0) return false;
    const char *p = m->in.data + m->in_off;
    size_t used = smtp_data_feed(&m->dp, p, avail, &m->pending);
    if (used > avail || (used < avail && !m->dp.done)) abort();
    sbuf_append(&m->raw, p, used);
    m->in_off += used;
    if (m->pending.len >= SPOOL_CHUNK) spool_flush(m);
    if (!m->dp.done) return false;
    check_no_smuggling(&m->raw);
    spool_flush(m);
    check_crlf_text(&m->content);
    finish_message(m);
    return true;
}

static void bdat_chunk_done(struct model *m)
{
    m->phase = PH_COMMAND;
    if (m->bdat_discard) {
        if (m->in_mail) m->bdat_failed = true;
        reply(m, 503);
        return;
    }
    if (m->bdat_last) smtp_data_finish(&m->dp, &m->pending);
    spool_flush(m);
    if (m->bdat_last) {
        /* RAW + KEEP: the message is the chunk octets, nothing added or lost */
        if (m->content.len != m->raw.len ||
            (m->raw.len && memcmp(m->content.data, m->raw.data, m->raw.len) != 0))
            abort();
    }
    if (m->too_big) {
        reply(m, 552);
        reset_txn(m);
        return;
    }
    if (m->bdat_last) {
        finish_message(m);
        return;
    }
    reply(m, 250);
}

static bool bdat_input(struct model *m)
{
    while (m->bdat_remaining > 0 && m->in.len > m->in_off) {
        size_t avail = m->in.len - m->in_off;
        size_t n = avail < m->bdat_remaining ? avail : (size_t)m->bdat_remaining;
        const char *p = m->in.data + m->in_off;
        if (!m->bdat_discard) {
            size_t u = smtp_data_feed(&m->dp, p, n, &m->pending);
            if (u != n) abort();        /* RAW mode has no terminator */
            sbuf_append(&m->raw, p, n);
            if (m->pending.len >= SPOOL_CHUNK) spool_flush(m);
        }
        m->in_off += n;
        m->bdat_remaining -= n;
    }
    if (m->bdat_remaining > 0) return false;
    bdat_chunk_done(m);
    return true;
}

static void cmd_bdat(struct model *m, const struct smtp_cmd *cmd)
{
    m->bdat_remaining = cmd->bdat_size;
    m->bdat_last = cmd->bdat_last;
    m->bdat_discard = !m->in_mail || m->nrcpts == 0 || m->bdat_failed;
    if (!m->bdat_discard && !m->bdat_used) {
        m->bdat_used = true;
        smtp_data_init(&m->dp, SMTP_DATA_RAW, SMTP_NEWLINE_KEEP, MAX_TEXT);
    }
    m->phase = PH_BDAT;
}

static void dispatch(struct model *m, const struct smtp_cmd *cmd)
{
    switch (cmd->verb) {
    case SMTP_HELO:
    case SMTP_EHLO: {
        bool ok = cmd->arg && cmd->arg_len > 0 && cmd->arg_len <= 255;
        for (size_t i = 0; ok && i < cmd->arg_len; i++)
            ok = (unsigned char)cmd->arg[i] > 0x20 && cmd->arg[i] != 0x7f;
        if (!ok) {
            reply(m, 501);
            break;
        }
        reset_txn(m);
        m->greeted = true;
        reply(m, 250);
        break;
    }
    case SMTP_MAIL:
        if (!m->greeted || m->in_mail) reply(m, 503);
        else if (cmd->has_size && cmd->size > m->max_msg) reply(m, 552);
        else if (cmd->path.utf8 && !cmd->smtputf8) reply(m, 553);
        else {
            m->in_mail = true;
            m->binarymime = cmd->body == SMTP_BODY_BINARYMIME;
            reply(m, 250);
        }
        break;
    case SMTP_RCPT:
        if (!m->in_mail) reply(m, 503);
        else if (m->nrcpts >= MAX_RCPTS) reply(m, 452);
        else {
            m->nrcpts++;
            reply(m, 250);
        }
        break;
    case SMTP_DATA:
        if (!m->in_mail || m->nrcpts == 0 || m->bdat_used || m->binarymime) {
            reply(m, 503);
            break;
        }
        smtp_data_init(&m->dp, SMTP_DATA_DOT, SMTP_NEWLINE_NORMALIZE, MAX_TEXT);
        sbuf_reset(&m->raw);
        m->phase = PH_DATA;
        reply(m, 354);
        break;
    case SMTP_BDAT: cmd_bdat(m, cmd); break;
    case SMTP_RSET: reset_txn(m); reply(m, 250); break;
    case SMTP_QUIT: reply(m, 221); m->phase = PH_CLOSED; break;
    case SMTP_UNKNOWN: reply(m, 500); break;
    default: reply(m, 250); break;      /* NOOP, HELP, ...: no state change */
    }
}

/* conn_read_line(): 1 line, 0 more input needed, -1 too long.  One
 * difference on purpose: a line of exactly max octets whose CR has arrived
 * without its LF is not "too long" (the real function calls it so when a
 * packet ends between the CR and the LF; see the report of this target). */
static int read_line(struct model *m, const char **line, size_t *len)
{
    for (;;) {
        const char *p = m->in.data + m->in_off;
        size_t avail = m->in.len - m->in_off;
        const char *lf = avail ? memchr(p, '\n', avail) : NULL;
        if (m->skip_to_eol) {
            if (!lf) {
                m->in_off = m->in.len;
                return 0;
            }
            m->in_off += (size_t)(lf - p) + 1;
            m->skip_to_eol = false;
            continue;
        }
        if (!lf) {
            if (avail <= MAX_CMD || (avail == MAX_CMD + 1 && p[MAX_CMD] == '\r')) return 0;
            m->skip_to_eol = true;
            return -1;
        }
        size_t n = (size_t)(lf - p);
        size_t eol = 1;
        if (n > 0 && p[n - 1] == '\r') {
            n--;
            eol = 2;
        }
        m->in_off += n + eol;
        if (n > MAX_CMD) return -1;
        *line = p;
        *len = n;
        return 1;
    }
}

static void process(struct model *m)
{
    while (m->phase != PH_CLOSED) {
        if (m->phase == PH_DATA) {
            if (!data_input(m)) return;
            continue;
        }
        if (m->phase == PH_BDAT) {
            if (!bdat_input(m)) return;
            continue;
        }
        const char *line;
        size_t len;
        int r = read_line(m, &line, &len);
        if (r == 0) return;
        if (r < 0) {
            reply(m, 500);
            continue;
        }
        struct smtp_cmd cmd;
        struct smtp_error err;
        if (smtp_parse_command(line, len, &cmd, &err) < 0) {
            if (err.code < 500 || err.code > 555) abort();
            reply(m, err.code);
            continue;
        }
        dispatch(m, &cmd);
    }
}

static void feed(struct model *m, const char *p, size_t n)
{
    if (m->phase == PH_CLOSED) return;
    /* keep the unread tail only, as an evbuffer does after draining */
    if (m->in_off > 0) {
        size_t left = m->in.len - m->in_off;
        memmove(m->in.data, m->in.data + m->in_off, left);
        m->in.len = left;
        m->in_off = 0;
    }
    sbuf_append(&m->in, p, n);
    process(m);
}

struct result { uint64_t hash; unsigned events; enum phase phase; uint64_t remaining; };

static struct result run(const char *in, size_t len, uint64_t max_msg, uint32_t seed, int how)
{
    struct model m;
    memset(&m, 0, sizeof m);
    m.max_msg = max_msg;
    m.hash = 1469598103934665603ull;
    sbuf_init(&m.in);
    sbuf_init(&m.pending);
    sbuf_init(&m.raw);
    sbuf_init(&m.content);
    size_t pos = 0;
    while (pos < len) {
        size_t n = len - pos;
        if (how == 1) n = 1;
        else if (how == 2) {
            seed = seed * 1103515245u + 12345u;
            size_t k = 1 + (seed >> 16) % 700;
            if (k < n) n = k;
        }
        feed(&m, in + pos, n);
        pos += n;
    }
    struct result r = { m.hash, m.events, m.phase, m.phase == PH_BDAT ? m.bdat_remaining : 0 };
    sbuf_free(&m.in);
    sbuf_free(&m.pending);
    sbuf_free(&m.raw);
    sbuf_free(&m.content);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    static const uint64_t sizes[4] = { 64, 300, 5000, 1u << 20 };
    uint64_t max_msg = sizes[data[0] & 3];
    uint32_t seed = data[1] | (uint32_t)data[0] << 8;
    const char *in = (const char *)data + 2;
    size_t len = size - 2;

    struct result whole = run(in, len, max_msg, seed, 0);
    struct result pieces = run(in, len, max_msg, seed, 2);
    if (whole.hash != pieces.hash || whole.events != pieces.events || whole.phase != pieces.phase ||
        whole.remaining != pieces.remaining)
        abort();
    if (len <= 4096) {
        struct result bytes = run(in, len, max_msg, seed, 1);
        if (whole.hash != bytes.hash || whole.events != bytes.events || whole.phase != bytes.phase)
            abort();
    }
    return 0;
}
