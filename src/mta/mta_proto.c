#include "mta/mta_proto.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

void mta_reply_init(struct mta_reply *r)
{
    memset(r, 0, sizeof *r);
    sbuf_init(&r->text);
}

void mta_reply_free(struct mta_reply *r)
{
    sbuf_free(&r->text);
}

void mta_reply_reset(struct mta_reply *r)
{
    r->code = 0;
    r->enhanced[0] = '\0';
    sbuf_reset(&r->text);
    r->lines = 0;
    r->complete = false;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* "x.y.z" at the start of text, with x matching the reply class
 * (RFC 3463 2: class 2, 4 or 5). */
static size_t enhanced_len(const char *s, size_t n, int code)
{
    if (n < 5 || s[0] != (char)('0' + code / 100) || s[1] != '.') return 0;
    size_t i = 2, d = 0;
    while (i < n && is_digit(s[i]) && d < 3) { i++; d++; }
    if (d == 0 || i >= n || s[i] != '.') return 0;
    i++;
    d = 0;
    while (i < n && is_digit(s[i]) && d < 3) { i++; d++; }
    if (d == 0 || (i < n && s[i] != ' ')) return 0;
    return i;
}

int mta_reply_feed(struct mta_reply *r, const char *line, size_t len)
{
    if (r->complete) mta_reply_reset(r);
    if (len < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2])) return -1;
    if (len > 3 && line[3] != ' ' && line[3] != '-') return -1;
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (code < 200 || code > 599) return -1;
    if (r->lines > 0 && code != r->code) return -1;
    r->code = code;
    bool last = len == 3 || line[3] == ' ';
    const char *text = len > 4 ? line + 4 : "";
    size_t tlen = len > 4 ? len - 4 : 0;
    if (r->lines < MTA_REPLY_LINES_MAX && r->text.len < MTA_REPLY_TEXT_MAX) {
        if (r->lines) sbuf_putc(&r->text, '\n');
        size_t room = MTA_REPLY_TEXT_MAX - r->text.len;
        sbuf_append(&r->text, text, tlen < room ? tlen : room);
    }
    r->lines++;
    if (last) {
        size_t e = enhanced_len(text, tlen, code);
        if (e && e < sizeof r->enhanced) {
            memcpy(r->enhanced, text, e);
            r->enhanced[e] = '\0';
        }
        r->complete = true;
        return 1;
    }
    return 0;
}

char *mta_reply_oneline(const struct mta_reply *r)
{
    sbuf b = SBUF_INIT;
    sbuf_printf(&b, "%03d ", r->code);
    const char *t = sbuf_cstr(&r->text);
    for (const unsigned char *p = (const unsigned char *)t; *p; p++)
        sbuf_putc(&b, (*p < 0x20 || *p == 0x7f) ? ' ' : (char)*p);
    return sbuf_detach(&b);
}

/* Compare the keyword at the start of a line, case-insensitively. */
static bool keyword(const char *line, size_t n, const char *kw, const char **arg)
{
    size_t k = strlen(kw);
    if (n < k || ascii_ncasecmp(line, kw, k) != 0) return false;
    if (n > k && line[k] != ' ' && line[k] != '=') return false;   /* "AUTH=LOGIN" is an old form */
    if (arg) *arg = n > k ? line + k + 1 : "";
    return true;
}

void mta_caps_parse(const struct mta_reply *ehlo, struct mta_caps *caps)
{
    memset(caps, 0, sizeof *caps);
    const char *p = sbuf_cstr(&ehlo->text);
    bool first = true;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        const char *arg;
        if (!first) {
            if (keyword(p, n, "PIPELINING", NULL)) caps->pipelining = true;
            else if (keyword(p, n, "8BITMIME", NULL)) caps->eightbitmime = true;
            else if (keyword(p, n, "SMTPUTF8", NULL)) caps->smtputf8 = true;
            else if (keyword(p, n, "STARTTLS", NULL)) caps->starttls = true;
            else if (keyword(p, n, "DSN", NULL)) caps->dsn = true;
            else if (keyword(p, n, "ENHANCEDSTATUSCODES", NULL)) caps->enhancedstatuscodes = true;
            else if (keyword(p, n, "CHUNKING", NULL)) caps->chunking = true;
            else if (keyword(p, n, "BINARYMIME", NULL)) caps->binarymime = true;
            else if (keyword(p, n, "AUTH", &arg)) {
                /* RFC 4954 3: "AUTH" SP mechanism list; "AUTH=" is the pre-standard form. */
                const char *q = arg, *e = p + n;
                while (q < e) {
                    while (q < e && *q == ' ') q++;
                    const char *w = q;
                    while (q < e && *q != ' ') q++;
                    if (q - w == 5 && ascii_ncasecmp(w, "PLAIN", 5) == 0) caps->auth_plain = true;
                    if (q - w == 5 && ascii_ncasecmp(w, "LOGIN", 5) == 0) caps->auth_login = true;
                }
            }
            else if (keyword(p, n, "SIZE", &arg)) {
                caps->size = true;
                uint64_t v = 0;
                bool ok = true;
                for (const char *q = arg; q < p + n && ok; q++) {
                    if (!is_digit(*q) || v > UINT64_MAX / 10 - 10) ok = false;
                    else v = v * 10 + (uint64_t)(*q - '0');
                }
                caps->size_max = ok ? v : 0;
            }
        }
        first = false;
        if (!nl) break;
        p = nl + 1;
    }
}

void mta_dot_init(struct mta_dot *d)
{
    memset(d, 0, sizeof *d);
    d->at_line_start = true;
}

void mta_dot_feed(struct mta_dot *d, const char *in, size_t len, sbuf *out)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (d->at_line_start && c == '.') {
            sbuf_append(out, in + start, i - start);
            sbuf_putc(out, '.');
            start = i;
        }
        /* A line starts after LF; the content is CRLF already, and a bare
         * LF would be taken as a line end by many servers too. */
        d->at_line_start = c == '\n';
        d->last_cr = c == '\r';
    }
    sbuf_append(out, in + start, len - start);
    if (len) {
        d->last = in[len - 1];
        d->any = true;
    }
}

void mta_dot_end(struct mta_dot *d, sbuf *out)
{
    if (d->any && d->last != '\n') sbuf_puts(out, d->last_cr ? "\n" : "\r\n");
    sbuf_puts(out, ".\r\n");
}

void mta_xtext(sbuf *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < '!' || *p > '~' || *p == '+' || *p == '=') {
            char e[3] = { '+', hex[*p >> 4], hex[*p & 15] };
            sbuf_append(out, e, 3);
        } else {
            sbuf_putc(out, (char)*p);
        }
    }
}
