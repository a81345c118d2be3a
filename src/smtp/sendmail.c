#include "smtp/sendmail.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "mime/mime_header.h"

/* ---- recipients ---------------------------------------------------------- */

void sendmail_rcpts_free(struct sendmail_rcpts *r)
{
    for (size_t i = 0; i < r->n; i++) free(r->v[i]);
    free(r->v);
    memset(r, 0, sizeof *r);
}

/* What goes into "RCPT TO:<...>" must not end the path or the line early:
 * no controls, no angle brackets (a header or an argument could otherwise
 * smuggle a second SMTP command). */
static bool address_safe(const char *a)
{
    if (!*a) return false;
    for (const unsigned char *p = (const unsigned char *)a; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '<' || *p == '>') return false;
    return true;
}

static int add_one(struct sendmail_rcpts *r, const char *mailbox, const char *host)
{
    size_t ml = strlen(mailbox), hl = strlen(host);
    if (ml + 1 + hl > SENDMAIL_ADDRESS_MAX) return -1;
    sbuf b = SBUF_INIT;
    sbuf_printf(&b, "%s@%s", mailbox, host);
    char *a = sbuf_detach(&b);
    if (!address_safe(a)) {
        free(a);
        return -1;
    }
    for (size_t i = 0; i < r->n; i++) {
        if (ascii_casecmp(r->v[i], a) == 0) {
            free(a);
            return 0;
        }
    }
    if (r->n >= SENDMAIL_MAX_RCPTS) {
        free(a);
        return -1;
    }
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 8;
        r->v = xrealloc(r->v, r->cap * sizeof *r->v);
    }
    r->v[r->n++] = a;
    return 1;
}

int sendmail_add_addresses(struct sendmail_rcpts *r, const char *text, size_t len, const char *default_domain)
{
    struct mime_addr_list l;
    /* Group markers count against the bound too; one more than the
     * recipient limit is enough to notice "too many". */
    mime_addr_list_parse(text, len, 2 * SENDMAIL_MAX_RCPTS + 2, &l);
    int added = 0;
    for (size_t i = 0; i < l.n && added >= 0; i++) {
        const struct mime_address *m = &l.v[i];
        if (m->kind != MIME_ADDR_MAILBOX) continue;
        if (m->invalid && strcmp(m->mailbox, MIME_MISSING_MAILBOX) == 0) continue;
        const char *host = m->invalid && strcmp(m->host, MIME_MISSING_DOMAIN) == 0 ? default_domain : m->host;
        int rc = add_one(r, m->mailbox, host);
        added = rc < 0 ? -1 : added + rc;
    }
    mime_addr_list_free(&l);
    return added;
}

/* ---- command line -------------------------------------------------------- */

void sendmail_opts_free(struct sendmail_opts *o)
{
    sendmail_rcpts_free(&o->rcpts);
}

/* -N: "never" or a list of success, failure, delay (RFC 3461 4.1). */
static bool notify_valid(const char *v)
{
    if (ascii_casecmp(v, "never") == 0) return true;
    const char *p = v;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (!((n == 7 && ascii_ncasecmp(p, "success", 7) == 0) || (n == 7 && ascii_ncasecmp(p, "failure", 7) == 0) ||
              (n == 5 && ascii_ncasecmp(p, "delay", 5) == 0)))
            return false;
        p += n;
        if (*p == ',') p++;
        if (!*p && p[-1] == ',') return false;
    }
    return *v != '\0';
}

/* One option letter with its value; returns 0 or -1 with err. */
static int option(struct sendmail_opts *o, char c, const char *v, char *err, size_t errlen)
{
    switch (c) {
    case 'f': case 'r':
        o->sender = v;
        return 0;
    case 'F': o->fullname = v; return 0;
    case 'C': o->config = v; return 0;
    case 'N':
        if (!notify_valid(v)) {
            set_err(err, errlen, "-N '%s': expected never, or success, failure, delay separated by commas", v);
            return -1;
        }
        o->notify = v;
        return 0;
    case 'R':
        if (ascii_casecmp(v, "full") != 0 && ascii_casecmp(v, "hdrs") != 0) {
            set_err(err, errlen, "-R '%s': expected full or hdrs", v);
            return -1;
        }
        o->ret = v;
        return 0;
    case 'o':
        /* -oi (also -oiTrue/-oiFalse); -odX, -oeX and the other sendmail.cf
         * options mean nothing here. */
        if (v[0] == 'i' && (v[1] == '\0' || ascii_casecmp(v + 1, "true") == 0)) o->ignore_dots = true;
        else if (v[0] == 'i' && ascii_casecmp(v + 1, "false") == 0) o->ignore_dots = false;
        return 0;
    case 'b':
        if (strcmp(v, "m") == 0) return 0;
        set_err(err, errlen, "-b%s is not supported: this sendmail only submits messages (-bm); "
                "use 'pochta queue list' for the queue", v);
        return -1;
    default:    /* -V envid, -B body type, -L tag, -X log, -h hops, -O option: ignored */
        return 0;
    }
}

int sendmail_parse_args(int argc, char *const *argv, const char *default_domain, struct sendmail_opts *o,
                        char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0') break;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        for (size_t k = 1; a[k]; k++) {
            char c = a[k];
            if (strchr("tinvUGm", c)) {
                if (c == 't') o->extract = true;
                else if (c == 'i') o->ignore_dots = true;
                else if (c == 'v') o->verbose = true;
                continue;
            }
            if (c == 'A') break;        /* -Am / -Ac: which .cf file: ignored */
            if (c == 'q' || c == 'I' || c == 'd') {
                set_err(err, errlen, "-%c is not supported (queue runs and alias files do not apply; "
                        "see 'pochta queue' and 'pochta alias')", c);
                goto fail;
            }
            if (!strchr("frFCNRoVBLXhOb", c)) {
                set_err(err, errlen, "unknown option -%c", c);
                goto fail;
            }
            const char *v = a + k + 1;
            if (!*v) {
                if (i + 1 >= argc) {
                    set_err(err, errlen, "option -%c needs a value", c);
                    goto fail;
                }
                v = argv[++i];
            }
            if (option(o, c, v, err, errlen) < 0) goto fail;
            break;
        }
    }
    for (; i < argc; i++) {
        bool ctl = false;
        for (const unsigned char *p = (const unsigned char *)argv[i]; *p; p++) ctl = ctl || *p < 0x20 || *p == 0x7f;
        if (ctl || sendmail_add_addresses(&o->rcpts, argv[i], strlen(argv[i]), default_domain) < 0) {
            set_err(err, errlen, "recipient '%.200s' is not a usable address (or more than %d recipients)",
                    argv[i], SENDMAIL_MAX_RCPTS);
            goto fail;
        }
    }
    if (o->sender && *o->sender && !address_safe(o->sender)) {
        set_err(err, errlen, "-f: '%.200s' is not a usable address", o->sender);
        goto fail;
    }
    if (o->sender && strlen(o->sender) > SENDMAIL_ADDRESS_MAX) {
        set_err(err, errlen, "-f: address longer than %d bytes", SENDMAIL_ADDRESS_MAX);
        goto fail;
    }
    if (o->rcpts.n == 0 && !o->extract) {
        set_err(err, errlen, "no recipients given (name them, or use -t to take them from the headers)");
        goto fail;
    }
    return 0;
fail:
    sendmail_opts_free(o);
    return -1;
}

/* ---- message input ------------------------------------------------------- */

void sendmail_input_init(struct sendmail_input *in, bool ignore_dots)
{
    memset(in, 0, sizeof *in);
    in->ignore_dots = ignore_dots;
    in->line_start = true;
}

/* A line ended; false when it was the terminating ".". */
static bool line_end(struct sendmail_input *in, sbuf *out)
{
    if (in->held_dot) {
        in->held_dot = false;
        in->done = true;
        return false;
    }
    sbuf_append(out, "\r\n", 2);
    in->line_start = true;
    return true;
}

size_t sendmail_input_feed(struct sendmail_input *in, const char *buf, size_t len, sbuf *out)
{
    size_t i = 0;
    while (i < len && !in->done) {
        char c = buf[i++];
        if (c == '\n' && in->skip_lf) {
            in->skip_lf = false;
            continue;
        }
        in->skip_lf = false;
        if (c == '\n' || c == '\r') {
            in->skip_lf = c == '\r';
            line_end(in, out);
            continue;
        }
        if (in->line_start && c == '.' && !in->ignore_dots) {
            in->held_dot = true;
            in->line_start = false;
            continue;
        }
        if (in->held_dot) {
            sbuf_putc(out, '.');
            in->held_dot = false;
        }
        /* Copy the rest of the line in one piece. */
        size_t start = i - 1;
        while (i < len && buf[i] != '\n' && buf[i] != '\r') i++;
        sbuf_append(out, buf + start, i - start);
        in->line_start = false;
    }
    return i;
}

void sendmail_input_finish(struct sendmail_input *in, sbuf *out)
{
    if (in->done) return;
    if (in->held_dot) {
        sbuf_putc(out, '.');
        in->held_dot = false;
    }
    if (!in->line_start) sbuf_append(out, "\r\n", 2);
    in->line_start = true;
}

/* ---- headers ------------------------------------------------------------- */

/* "name:" with a field name of printable ASCII (RFC 5322 3.6.8), or the
 * obsolete "name :" form. */
static bool is_field_line(const char *p, size_t n, size_t *name_len)
{
    size_t i = 0;
    while (i < n && p[i] > 0x20 && p[i] < 0x7f && p[i] != ':') i++;
    if (i == 0) return false;
    *name_len = i;
    while (i < n && (p[i] == ' ' || p[i] == '\t')) i++;
    return i < n && p[i] == ':';
}

static bool name_is(const char *p, size_t n, const char *name)
{
    return strlen(name) == n && ascii_ncasecmp(p, name, n) == 0;
}

int sendmail_headers(const char *msg, size_t msg_len, bool extract, const char *default_domain,
                     struct sendmail_rcpts *rcpts, sbuf *out, size_t *body_off,
                     struct sendmail_header_info *info)
{
    memset(info, 0, sizeof *info);
    *body_off = msg_len;
    int added = 0;
    size_t pos = 0;
    while (pos < msg_len) {
        const char *nl = memchr(msg + pos, '\n', msg_len - pos);
        size_t eol = nl ? (size_t)(nl - msg) + 1 : msg_len;
        size_t line_len = eol - pos;
        size_t text_len = line_len - (nl ? 1 : 0) - (nl && line_len >= 2 && msg[eol - 2] == '\r' ? 1 : 0);
        size_t name_len;
        if (text_len == 0) {
            *body_off = pos;
            info->has_body_separator = true;
            break;
        }
        if (!is_field_line(msg + pos, text_len, &name_len)) {
            /* Not a header (a continuation with no field before it, or
             * text): the body starts here, without an empty line. */
            *body_off = pos;
            break;
        }
        /* The field with its continuation lines. */
        size_t start = pos, end = eol;
        while (end < msg_len && (msg[end] == ' ' || msg[end] == '\t')) {
            const char *n2 = memchr(msg + end, '\n', msg_len - end);
            end = n2 ? (size_t)(n2 - msg) + 1 : msg_len;
        }
        const char *name = msg + start;
        const char *colon = memchr(name, ':', end - start);
        const char *value = colon + 1;
        size_t value_len = (size_t)(msg + end - value);
        bool bcc = name_is(name, name_len, "bcc");
        if (name_is(name, name_len, "from")) info->has_from = true;
        else if (name_is(name, name_len, "date")) info->has_date = true;
        else if (name_is(name, name_len, "message-id")) info->has_message_id = true;
        if (extract && (bcc || name_is(name, name_len, "to") || name_is(name, name_len, "cc"))) {
            int n = sendmail_add_addresses(rcpts, value, value_len, default_domain);
            if (n < 0) return -1;
            added += n;
        }
        if (!bcc) sbuf_append(out, msg + start, end - start);
        pos = end;
    }
    return added;
}

int sendmail_exit_status(int code, const char *stage)
{
    if (code >= 200 && code < 400) return SENDMAIL_EX_OK;
    if (code >= 400 && code < 500) return SENDMAIL_EX_TEMPFAIL;
    if (code >= 500 && code < 600)
        return stage && strcmp(stage, "RCPT") == 0 ? SENDMAIL_EX_NOUSER : SENDMAIL_EX_DATAERR;
    return SENDMAIL_EX_SOFTWARE;    /* not an SMTP reply */
}
