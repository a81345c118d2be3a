#include "smtp/smtp_parse.h"

#include <string.h>

#include "core/util.h"

static const char *const verb_names[] = {
    [SMTP_HELO] = "HELO", [SMTP_EHLO] = "EHLO", [SMTP_MAIL] = "MAIL",
    [SMTP_RCPT] = "RCPT", [SMTP_DATA] = "DATA", [SMTP_BDAT] = "BDAT",
    [SMTP_RSET] = "RSET", [SMTP_NOOP] = "NOOP", [SMTP_QUIT] = "QUIT",
    [SMTP_HELP] = "HELP", [SMTP_VRFY] = "VRFY", [SMTP_EXPN] = "EXPN",
    [SMTP_ETRN] = "ETRN", [SMTP_TURN] = "TURN", [SMTP_SEND] = "SEND",
    [SMTP_SOML] = "SOML", [SMTP_SAML] = "SAML", [SMTP_STARTTLS] = "STARTTLS",
    [SMTP_AUTH] = "AUTH", [SMTP_UNKNOWN] = "UNKNOWN",
};

const char *smtp_verb_name(enum smtp_verb v)
{
    if ((unsigned)v > SMTP_UNKNOWN) return "UNKNOWN";
    return verb_names[v];
}

static int fail(struct smtp_error *err, int code, const char *enhanced, const char *text)
{
    err->code = code;
    err->enhanced = enhanced;
    err->text = text;
    return -1;
}

#define SYNTAX(err, text) fail(err, 501, "5.5.4", text)

/* Case-insensitive match of the token p[0..n) against a literal.  The
 * line was checked free of NUL before any call. */
static bool tok_eq(const char *p, size_t n, const char *lit)
{
    return strlen(lit) == n && ascii_ncasecmp(p, lit, n) == 0;
}

static bool is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int smtp_xtext_decode(const char *s, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    if (outlen == 0) return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '+') {
            if (len - i < 3) return -1;
            int hi = hexval((unsigned char)s[i + 1]), lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
            if (c < 0x20 || c == 0x7f) return -1;
        } else if (c < 33 || c > 126 || c == '=') {
            return -1;
        }
        if (o + 1 >= outlen) return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return (int)o;
}

void smtp_xtext_encode(const char *s, sbuf *out)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 33 && c <= 126 && c != '+' && c != '=') sbuf_putc(out, (char)c);
        else sbuf_printf(out, "+%02X", c);
    }
}

/* SIZE value, RFC 1870: 1*20DIGIT.  A value past 2^64-1 saturates so the
 * session answers 552 (too big) rather than a syntax error. */
static bool parse_size_value(const char *v, size_t n, uint64_t *out)
{
    uint64_t x = 0;
    if (n == 0 || n > 20) return false;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') return false;
        unsigned d = (unsigned)(v[i] - '0');
        if (x > (UINT64_MAX - d) / 10) x = UINT64_MAX;
        else x = x * 10 + d;
    }
    *out = x;
    return true;
}

/* NOTIFY value, RFC 3461 4.1: "NEVER" / 1#("SUCCESS" / "FAILURE" / "DELAY"). */
static bool parse_notify(const char *v, size_t n, unsigned *out)
{
    unsigned bits = 0;
    size_t i = 0;
    for (;;) {
        size_t start = i;
        while (i < n && v[i] != ',') i++;
        const char *t = v + start;
        size_t tn = i - start;
        if (tok_eq(t, tn, "NEVER")) bits |= SMTP_NOTIFY_NEVER;
        else if (tok_eq(t, tn, "SUCCESS")) bits |= SMTP_NOTIFY_SUCCESS;
        else if (tok_eq(t, tn, "FAILURE")) bits |= SMTP_NOTIFY_FAILURE;
        else if (tok_eq(t, tn, "DELAY")) bits |= SMTP_NOTIFY_DELAY;
        else return false;
        if (i == n) break;
        i++;
    }
    if ((bits & SMTP_NOTIFY_NEVER) && bits != SMTP_NOTIFY_NEVER) return false;
    *out = bits;
    return true;
}

/* ORCPT value, RFC 3461 4.2: addr-type ";" xtext, addr-type an atom. */
static bool parse_orcpt(const char *v, size_t n, char *out, size_t outlen)
{
    size_t i = 0;
    while (i < n && v[i] != ';') {
        unsigned char c = (unsigned char)v[i];
        if (!is_alnum(c) && !strchr("!#$%&'*+-/=?^_`{|}~", c)) return false;
        i++;
    }
    if (i == 0 || i == n || i + 1 == n) return false;
    return smtp_xtext_decode(v, n, out, outlen) >= 0;
}

enum {
    P_SIZE = 1 << 0, P_BODY = 1 << 1, P_SMTPUTF8 = 1 << 2, P_RET = 1 << 3,
    P_ENVID = 1 << 4, P_AUTH = 1 << 5, P_NOTIFY = 1 << 6, P_ORCPT = 1 << 7,
};

/* One esmtp-param "keyword[=value]" (RFC 5321 4.1.2). */
static int parse_param(const char *p, size_t n, bool is_mail, unsigned *seen,
                       struct smtp_cmd *cmd, struct smtp_error *err)
{
    const char *eq = memchr(p, '=', n);
    size_t kn = eq ? (size_t)(eq - p) : n;
    const char *v = eq ? eq + 1 : NULL;
    size_t vn = eq ? n - kn - 1 : 0;

    if (kn == 0 || !is_alnum((unsigned char)p[0]))
        return SYNTAX(err, "Syntax error in parameters");
    for (size_t i = 1; i < kn; i++)
        if (!is_alnum((unsigned char)p[i]) && p[i] != '-')
            return SYNTAX(err, "Syntax error in parameters");
    if (eq) {
        /* esmtp-value = 1*(%d33-60 / %d62-126), UTF-8 allowed by RFC 6531 */
        if (vn == 0) return SYNTAX(err, "Syntax error in parameters");
        for (size_t i = 0; i < vn; i++)
            if ((unsigned char)v[i] < 33 || v[i] == '=' || v[i] == 127)
                return SYNTAX(err, "Syntax error in parameters");
    }

    unsigned bit;
    if (is_mail && tok_eq(p, kn, "SIZE")) bit = P_SIZE;
    else if (is_mail && tok_eq(p, kn, "BODY")) bit = P_BODY;
    else if (is_mail && tok_eq(p, kn, "SMTPUTF8")) bit = P_SMTPUTF8;
    else if (is_mail && tok_eq(p, kn, "RET")) bit = P_RET;
    else if (is_mail && tok_eq(p, kn, "ENVID")) bit = P_ENVID;
    else if (is_mail && tok_eq(p, kn, "AUTH")) bit = P_AUTH;
    else if (!is_mail && tok_eq(p, kn, "NOTIFY")) bit = P_NOTIFY;
    else if (!is_mail && tok_eq(p, kn, "ORCPT")) bit = P_ORCPT;
    else if (is_mail) return fail(err, 555, "5.5.4", "MAIL parameter not recognized or not implemented");
    else return fail(err, 555, "5.5.4", "RCPT parameter not recognized or not implemented");

    if (*seen & bit) return SYNTAX(err, "Duplicate parameter");
    *seen |= bit;
    if ((bit == P_SMTPUTF8) != (v == NULL))
        return SYNTAX(err, bit == P_SMTPUTF8 ? "SMTPUTF8 takes no value"
                                             : "Parameter requires a value");

    switch (bit) {
    case P_SIZE:
        if (!parse_size_value(v, vn, &cmd->size)) return SYNTAX(err, "Bad SIZE parameter value");
        cmd->has_size = true;
        break;
    case P_BODY:
        if (tok_eq(v, vn, "7BIT")) cmd->body = SMTP_BODY_7BIT;
        else if (tok_eq(v, vn, "8BITMIME")) cmd->body = SMTP_BODY_8BITMIME;
        else if (tok_eq(v, vn, "BINARYMIME")) cmd->body = SMTP_BODY_BINARYMIME;
        else return SYNTAX(err, "Bad BODY parameter value");
        break;
    case P_SMTPUTF8:
        cmd->smtputf8 = true;
        break;
    case P_RET:
        if (tok_eq(v, vn, "FULL")) cmd->ret = SMTP_RET_FULL;
        else if (tok_eq(v, vn, "HDRS")) cmd->ret = SMTP_RET_HDRS;
        else return SYNTAX(err, "Bad RET parameter value");
        break;
    case P_ENVID:
        if (smtp_xtext_decode(v, vn, cmd->envid, sizeof cmd->envid) < 0)
            return SYNTAX(err, "Bad ENVID parameter value");
        break;
    case P_AUTH:
        if (smtp_xtext_decode(v, vn, cmd->auth, sizeof cmd->auth) < 0)
            return SYNTAX(err, "Bad AUTH parameter value");
        cmd->has_auth = true;
        break;
    case P_NOTIFY:
        if (!parse_notify(v, vn, &cmd->notify)) return SYNTAX(err, "Bad NOTIFY parameter value");
        break;
    case P_ORCPT:
        if (!parse_orcpt(v, vn, cmd->orcpt, sizeof cmd->orcpt))
            return SYNTAX(err, "Bad ORCPT parameter value");
        break;
    }
    return 0;
}

/* *(SP esmtp-param) after the path; extra spaces tolerated. */
static int parse_params(const char *p, const char *end, bool is_mail,
                        struct smtp_cmd *cmd, struct smtp_error *err)
{
    unsigned seen = 0;
    if (p < end && *p != ' ') return SYNTAX(err, "Syntax error after address");
    for (;;) {
        while (p < end && *p == ' ') p++;
        if (p == end) return 0;
        const char *t = p;
        while (p < end && *p != ' ') p++;
        if (parse_param(t, (size_t)(p - t), is_mail, &seen, cmd, err) < 0) return -1;
    }
}

static int parse_mail(const char *p, const char *end, struct smtp_cmd *cmd, struct smtp_error *err)
{
    if (end - p < 5 || !tok_eq(p, 5, "FROM:")) return SYNTAX(err, "Syntax: MAIL FROM:<address>");
    p += 5;
    while (p < end && *p == ' ') p++;
    if (p == end) return SYNTAX(err, "Syntax: MAIL FROM:<address>");
    /* Paths are parsed permissively, then held to SMTPUTF8 once the
     * parameters are known (RFC 6531 3.4). */
    int n = smtp_parse_path(p, (size_t)(end - p), true, true, false, &cmd->path);
    if (n < 0) return fail(err, 501, "5.1.7", "Bad sender address syntax");
    const char *path = p;
    p += n;
    if (parse_params(p, end, true, cmd, err) < 0) return -1;
    if (!cmd->smtputf8) {
        for (int i = 0; i < n; i++)
            if ((unsigned char)path[i] >= 0x80)
                return fail(err, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
    }
    return 0;
}

static int parse_rcpt(const char *p, const char *end, struct smtp_cmd *cmd, struct smtp_error *err)
{
    if (end - p < 3 || !tok_eq(p, 3, "TO:")) return SYNTAX(err, "Syntax: RCPT TO:<address>");
    p += 3;
    while (p < end && *p == ' ') p++;
    if (p == end) return SYNTAX(err, "Syntax: RCPT TO:<address>");
    int n = smtp_parse_path(p, (size_t)(end - p), true, false, true, &cmd->path);
    if (n < 0) return fail(err, 501, "5.1.3", "Bad recipient address syntax");
    return parse_params(p + n, end, false, cmd, err);
}

/* RFC 3030 2: "BDAT" SP chunk-size [ SP end-marker ]. */
static int parse_bdat(const char *p, const char *end, struct smtp_cmd *cmd, struct smtp_error *err)
{
    const char *d = p;
    uint64_t x = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        unsigned v = (unsigned)(*p - '0');
        if (x > (UINT64_MAX - v) / 10) return SYNTAX(err, "Syntax: BDAT size [LAST]");
        x = x * 10 + v;
        p++;
    }
    if (p == d || (p < end && *p != ' ')) return SYNTAX(err, "Syntax: BDAT size [LAST]");
    while (p < end && *p == ' ') p++;
    if (p < end) {
        if (!tok_eq(p, (size_t)(end - p), "LAST")) return SYNTAX(err, "Syntax: BDAT size [LAST]");
        cmd->bdat_last = true;
    }
    cmd->bdat_size = x;
    return 0;
}

int smtp_parse_command(const char *line, size_t len, struct smtp_cmd *cmd, struct smtp_error *err)
{
    memset(cmd, 0, sizeof *cmd);
    cmd->verb = SMTP_UNKNOWN;

    /* NUL, CR, LF and other controls never belong in a command line; a CR
     * or LF here means the reader split lines differently than we would. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 || c == 0x7f)
            return fail(err, 500, "5.5.2", "Syntax error, invalid character in command");
    }

    size_t vlen = 0;
    while (vlen < len && line[vlen] != ' ') vlen++;
    for (int v = 0; v < SMTP_UNKNOWN; v++) {
        if (tok_eq(line, vlen, verb_names[v])) {
            cmd->verb = (enum smtp_verb)v;
            break;
        }
    }
    if (cmd->verb == SMTP_UNKNOWN) return fail(err, 500, "5.5.2", "Command unrecognized");

    const char *p = line + vlen, *end = line + len;
    while (p < end && *p == ' ') p++;
    while (end > p && end[-1] == ' ') end--;
    if (p < end) {
        cmd->arg = p;
        cmd->arg_len = (size_t)(end - p);
    }

    switch (cmd->verb) {
    case SMTP_HELO:
        return cmd->arg ? 0 : SYNTAX(err, "Syntax: HELO hostname");
    case SMTP_EHLO:
        return cmd->arg ? 0 : SYNTAX(err, "Syntax: EHLO hostname");
    case SMTP_MAIL:
        return parse_mail(p, end, cmd, err);
    case SMTP_RCPT:
        return parse_rcpt(p, end, cmd, err);
    case SMTP_BDAT:
        return parse_bdat(p, end, cmd, err);
    case SMTP_DATA:
    case SMTP_RSET:
    case SMTP_QUIT:
    case SMTP_STARTTLS:
    case SMTP_TURN:
        return cmd->arg ? SYNTAX(err, "No parameters allowed") : 0;
    case SMTP_VRFY:
        return cmd->arg ? 0 : SYNTAX(err, "Syntax: VRFY address");
    case SMTP_EXPN:
        return cmd->arg ? 0 : SYNTAX(err, "Syntax: EXPN list");
    case SMTP_ETRN:
        return cmd->arg ? 0 : SYNTAX(err, "Syntax: ETRN node");
    case SMTP_AUTH:
        return cmd->arg ? 0 : SYNTAX(err, "Syntax: AUTH mechanism [initial-response]");
    case SMTP_NOOP:
    case SMTP_HELP:
    case SMTP_SEND:
    case SMTP_SOML:
    case SMTP_SAML:
    case SMTP_UNKNOWN:
        break;
    }
    return 0;
}
