#include "mta/dsn.h"

#include <stdint.h>
#include <string.h>

#include "core/util.h"

/* Mirrors SMTP_NOTIFY_* in smtp/smtp_parse.h (the values are stored in
 * queue files, so they cannot change). */
#define NOTIFY_NEVER   1u
#define NOTIFY_SUCCESS 2u
#define NOTIFY_FAILURE 4u
#define NOTIFY_DELAY   8u

/* Peer text in a header field: RFC 5322 2.1.1 caps lines at 998. */
#define FIELD_TEXT_MAX 800

bool dsn_wanted(const char *sender, unsigned notify, enum dsn_action action)
{
    if (!sender || !*sender) return false;
    if (notify & NOTIFY_NEVER) return false;
    switch (action) {
    case DSN_FAILED: return notify == 0 || (notify & NOTIFY_FAILURE);
    case DSN_DELAYED: return (notify & NOTIFY_DELAY) != 0;
    default: return (notify & NOTIFY_SUCCESS) != 0;
    }
}

size_t dsn_header_length(const char *msg, size_t len)
{
    if (len >= 2 && msg[0] == '\r' && msg[1] == '\n') return 2;
    if (len >= 1 && msg[0] == '\n') return 1;
    for (size_t i = 0; i + 1 < len; i++) {
        if (msg[i] != '\n') continue;
        if (msg[i + 1] == '\n') return i + 2;
        if (msg[i + 1] == '\r' && i + 2 < len && msg[i + 2] == '\n') return i + 3;
    }
    return len;
}

/* Copy peer text into a header field value: controls (CR and LF among
 * them) become spaces, runs of spaces collapse, at most FIELD_TEXT_MAX
 * bytes. */
static void put_text(sbuf *out, const char *s)
{
    size_t n = 0;
    bool space = false;
    for (const unsigned char *p = (const unsigned char *)s; *p && n < FIELD_TEXT_MAX; p++) {
        unsigned char c = *p;
        if (c < 0x20 || c == 0x7f || c == ' ') {
            space = true;
            continue;
        }
        if (space && n) {
            sbuf_putc(out, ' ');
            n++;
        }
        space = false;
        sbuf_putc(out, (char)c);
        n++;
    }
}

static bool is_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return false;
    return true;
}

/* "rfc822;addr", or "utf-8;addr" for an internationalised address
 * (RFC 6533 3). */
static void put_addr_field(sbuf *out, const char *field, const char *addr)
{
    sbuf_printf(out, "%s: %s;", field, is_ascii(addr, strlen(addr)) ? "rfc822" : "utf-8");
    put_text(out, addr);
    sbuf_puts(out, "\r\n");
}

static void put_date(sbuf *out, const char *field, time_t t)
{
    char d[64];
    rfc5322_date(t, d);
    sbuf_printf(out, "%s: %s\r\n", field, d);
}

static const char *action_name(enum dsn_action a)
{
    static const char *const names[] = { "failed", "delayed", "delivered", "relayed", "expanded" };
    return names[a];
}

static void human_part(const struct dsn_report *r, bool delayed, sbuf *out)
{
    sbuf_printf(out, "This is the mail system at host %s.\r\n\r\n", r->reporting_mta);
    if (delayed)
        sbuf_puts(out, "Your message could not be delivered yet.  The mail system will keep\r\n"
                       "trying; you do not need to send it again.\r\n\r\n");
    else
        sbuf_puts(out, "Your message could not be delivered to one or more recipients.\r\n"
                       "It is attached below.\r\n\r\n");
    sbuf_printf(out, "Queue id: %s\r\n\r\n", r->qid);
    for (size_t i = 0; i < r->nrcpts; i++) {
        const struct dsn_rcpt *rc = &r->rcpts[i];
        sbuf_puts(out, "<");
        put_text(out, rc->address);
        sbuf_printf(out, ">: %s (%s)", action_name(rc->action), rc->status);
        if (rc->remote_mta) {
            sbuf_puts(out, "\r\n    host ");
            put_text(out, rc->remote_mta);
            sbuf_puts(out, " said:");
        }
        if (rc->diagnostic) {
            sbuf_puts(out, "\r\n    ");
            put_text(out, rc->diagnostic);
        }
        sbuf_puts(out, "\r\n\r\n");
    }
}

static void status_part(const struct dsn_report *r, sbuf *out)
{
    sbuf_printf(out, "Reporting-MTA: dns; %s\r\n", r->reporting_mta);
    if (r->envid) {
        sbuf_puts(out, "Original-Envelope-Id: ");
        put_text(out, r->envid);
        sbuf_puts(out, "\r\n");
    }
    if (r->arrival) put_date(out, "Arrival-Date", r->arrival);
    for (size_t i = 0; i < r->nrcpts; i++) {
        const struct dsn_rcpt *rc = &r->rcpts[i];
        sbuf_puts(out, "\r\n");
        if (rc->orcpt && strchr(rc->orcpt, ';')) {
            sbuf_puts(out, "Original-Recipient: ");
            put_text(out, rc->orcpt);
            sbuf_puts(out, "\r\n");
        }
        put_addr_field(out, "Final-Recipient", rc->address);
        sbuf_printf(out, "Action: %s\r\nStatus: ", action_name(rc->action));
        put_text(out, rc->status);
        sbuf_puts(out, "\r\n");
        if (rc->remote_mta) {
            sbuf_puts(out, "Remote-MTA: dns; ");
            put_text(out, rc->remote_mta);
            sbuf_puts(out, "\r\n");
        }
        if (rc->diagnostic) {
            sbuf_puts(out, "Diagnostic-Code: smtp; ");
            put_text(out, rc->diagnostic);
            sbuf_puts(out, "\r\n");
        }
        if (rc->last_attempt) put_date(out, "Last-Attempt-Date", rc->last_attempt);
        if (rc->action == DSN_DELAYED && rc->retry_until) put_date(out, "Will-Retry-Until", rc->retry_until);
    }
}

void dsn_build(const struct dsn_report *r, const char *orig, size_t orig_len, sbuf *out)
{
    bool delayed = true;
    for (size_t i = 0; i < r->nrcpts; i++)
        if (r->rcpts[i].action != DSN_DELAYED) delayed = false;
    bool full = r->ret != 2 && orig_len <= r->full_max;
    size_t send_len = full ? orig_len : dsn_header_length(orig, orig_len);
    bool seven = is_ascii(orig, send_len);

    sbuf_printf(out, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", r->reporting_mta);
    sbuf_puts(out, "To: <");
    put_text(out, r->sender);
    sbuf_puts(out, ">\r\n");
    sbuf_printf(out, "Subject: %s\r\n", delayed ? "Delayed Mail (still being retried)"
                                                : "Undelivered Mail Returned to Sender");
    put_date(out, "Date", r->date);
    sbuf_printf(out, "Message-ID: %s\r\n", r->message_id);
    /* RFC 3834 5: keeps auto-responders from answering the report. */
    sbuf_puts(out, "Auto-Submitted: auto-replied\r\n");
    sbuf_puts(out, "MIME-Version: 1.0\r\n");
    sbuf_printf(out, "Content-Type: multipart/report; report-type=delivery-status;\r\n"
                     "\tboundary=\"%s\"\r\n", r->boundary);
    if (!seven) sbuf_puts(out, "Content-Transfer-Encoding: 8bit\r\n");
    sbuf_puts(out, "\r\nThis is a MIME-encapsulated message.\r\n\r\n");

    sbuf_printf(out, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n"
                     "Content-Description: Notification\r\n\r\n", r->boundary);
    human_part(r, delayed, out);

    sbuf_printf(out, "--%s\r\nContent-Type: message/delivery-status\r\n"
                     "Content-Description: Delivery report\r\n\r\n", r->boundary);
    status_part(r, out);

    sbuf_printf(out, "\r\n--%s\r\n", r->boundary);
    if (full) sbuf_puts(out, "Content-Type: message/rfc822\r\nContent-Description: Undelivered Message\r\n");
    else sbuf_puts(out, "Content-Type: text/rfc822-headers\r\nContent-Description: Undelivered Message Headers\r\n");
    if (!seven) sbuf_puts(out, "Content-Transfer-Encoding: 8bit\r\n");
    sbuf_puts(out, "\r\n");
    sbuf_append(out, orig, send_len);
    if (send_len == 0 || orig[send_len - 1] != '\n') sbuf_puts(out, "\r\n");
    sbuf_printf(out, "\r\n--%s--\r\n", r->boundary);
}
