#include "pop3/pop3_parse.h"

#include <string.h>

#include "core/util.h"

static const struct {
    const char *name;
    enum pop3_verb verb;
} verbs[] = {
    { "USER", POP3_USER }, { "PASS", POP3_PASS }, { "APOP", POP3_APOP }, { "QUIT", POP3_QUIT },
    { "STAT", POP3_STAT }, { "LIST", POP3_LIST }, { "RETR", POP3_RETR }, { "DELE", POP3_DELE },
    { "NOOP", POP3_NOOP }, { "RSET", POP3_RSET }, { "TOP", POP3_TOP },   { "UIDL", POP3_UIDL },
    { "LAST", POP3_LAST }, { "CAPA", POP3_CAPA }, { "STLS", POP3_STLS }, { "AUTH", POP3_AUTH },
    { "UTF8", POP3_UTF8 },
};

#define NVERBS (sizeof verbs / sizeof verbs[0])

const char *pop3_verb_name(enum pop3_verb verb)
{
    for (size_t i = 0; i < NVERBS; i++)
        if (verbs[i].verb == verb) return verbs[i].name;
    return "?";
}

/* Well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF)
 * without control characters; tab only when allow_tab. */
static bool text_ok(const char *s, size_t len, bool allow_tab)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        unsigned c = *p;
        if (c < 0x80) {
            if ((c < 0x20 && !(allow_tab && c == '\t')) || c == 0x7f) return false;
            p++;
            continue;
        }
        size_t n;
        unsigned min, cp;
        if (c >= 0xc2 && c <= 0xdf) { n = 1; cp = c & 0x1f; min = 0x80; }
        else if (c >= 0xe0 && c <= 0xef) { n = 2; cp = c & 0x0f; min = 0x800; }
        else if (c >= 0xf0 && c <= 0xf4) { n = 3; cp = c & 0x07; min = 0x10000; }
        else return false;
        if ((size_t)(end - p) <= n) return false;
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        p += n + 1;
    }
    return true;
}

/* Decimal number; zero allowed only when allow_zero. */
static bool parse_number(const char *s, size_t len, bool allow_zero, uint32_t *out)
{
    if (len == 0) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > UINT32_MAX) return false;
    }
    if (v == 0 && !allow_zero) return false;
    *out = (uint32_t)v;
    return true;
}

/* Split the argument text at single spaces into at most max words.
 * Returns the number of words, or -1 when there are more than max or a
 * word is empty (two spaces in a row). */
static int split_args(const char *s, size_t len, const char **w, size_t *wl, int max)
{
    int n = 0;
    size_t i = 0;
    if (len == 0) return 0;
    for (;;) {
        const char *sp = memchr(s + i, ' ', len - i);
        size_t end = sp ? (size_t)(sp - s) : len;
        if (end == i || n == max) return -1;
        w[n] = s + i;
        wl[n] = end - i;
        n++;
        if (!sp) return n;
        i = end + 1;
        if (i == len) return -1;   /* trailing space */
    }
}

static bool mech_ok(const char *s, size_t len)
{
    if (len == 0 || len > POP3_MECH_MAX) return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

int pop3_parse_command(const char *line, size_t len, struct pop3_cmd *cmd, const char **err)
{
    memset(cmd, 0, sizeof *cmd);
    *err = NULL;
    if (len == 0) {
        *err = "empty command line";
        return -1;
    }
    const char *sp = memchr(line, ' ', len);
    size_t klen = sp ? (size_t)(sp - line) : len;
    const char *rest = sp ? sp + 1 : line + len;
    size_t rlen = sp ? len - klen - 1 : 0;

    cmd->verb = POP3_UNKNOWN;
    for (size_t i = 0; i < NVERBS; i++) {
        if (strlen(verbs[i].name) == klen && ascii_ncasecmp(line, verbs[i].name, klen) == 0) {
            cmd->verb = verbs[i].verb;
            break;
        }
    }
    if (cmd->verb == POP3_UNKNOWN) return 0;

    /* PASS takes the rest of the line verbatim (RFC 1939 section 7: the
     * server may treat spaces as part of the password). */
    if (cmd->verb == POP3_PASS) {
        if (rlen == 0) {
            *err = "syntax error: PASS password";
            return -1;
        }
        if (!text_ok(rest, rlen, true)) {
            *err = "invalid characters in password";
            return -1;
        }
        cmd->arg = rest;
        cmd->arg_len = rlen;
        return 0;
    }

    if (!text_ok(rest, rlen, false)) {
        *err = "invalid characters in argument";
        return -1;
    }
    const char *w[3];
    size_t wl[3];
    int n = split_args(rest, rlen, w, wl, 2);
    if (n > 0) {
        for (int i = 0; i < n; i++) {
            if (wl[i] > POP3_ARG_MAX) {
                *err = "argument too long";
                return -1;
            }
        }
    }

    switch (cmd->verb) {
    case POP3_STAT: case POP3_NOOP: case POP3_RSET: case POP3_QUIT:
    case POP3_LAST: case POP3_CAPA: case POP3_STLS: case POP3_UTF8:
        if (n != 0) {
            *err = "syntax error: this command takes no arguments";
            return -1;
        }
        return 0;
    case POP3_LIST: case POP3_UIDL:
        if (n < 0 || n > 1) {
            *err = "syntax error: at most one message number expected";
            return -1;
        }
        if (n == 1) {
            if (!parse_number(w[0], wl[0], false, &cmd->msg)) {
                *err = "invalid message number";
                return -1;
            }
            cmd->has_msg = true;
        }
        return 0;
    case POP3_RETR: case POP3_DELE:
        if (n != 1) {
            *err = "syntax error: message number expected";
            return -1;
        }
        if (!parse_number(w[0], wl[0], false, &cmd->msg)) {
            *err = "invalid message number";
            return -1;
        }
        cmd->has_msg = true;
        return 0;
    case POP3_TOP:
        if (n != 2) {
            *err = "syntax error: TOP message-number line-count";
            return -1;
        }
        if (!parse_number(w[0], wl[0], false, &cmd->msg)) {
            *err = "invalid message number";
            return -1;
        }
        if (!parse_number(w[1], wl[1], true, &cmd->lines)) {
            *err = "invalid line count";
            return -1;
        }
        cmd->has_msg = true;
        return 0;
    case POP3_USER:
        if (n != 1) {
            *err = "syntax error: USER name";
            return -1;
        }
        cmd->arg = w[0];
        cmd->arg_len = wl[0];
        return 0;
    case POP3_APOP:
        if (n != 2) {
            *err = "syntax error: APOP name digest";
            return -1;
        }
        cmd->arg = w[0];
        cmd->arg_len = wl[0];
        cmd->arg2 = w[1];
        cmd->arg2_len = wl[1];
        return 0;
    case POP3_AUTH:
        if (n < 0) {
            *err = "syntax error: AUTH mechanism [initial-response]";
            return -1;
        }
        if (n == 0) return 0;
        if (!mech_ok(w[0], wl[0])) {
            *err = "syntax error: invalid SASL mechanism name";
            return -1;
        }
        cmd->arg = w[0];
        cmd->arg_len = wl[0];
        if (n == 2) {
            cmd->arg2 = w[1];
            cmd->arg2_len = wl[1];
        }
        return 0;
    case POP3_PASS:
    case POP3_UNKNOWN:
        break;
    }
    return 0;
}
