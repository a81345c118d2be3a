#include "smtp/smtp_address.h"

#include <arpa/inet.h>
#include <string.h>

#include "core/util.h"

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_letdig(unsigned char c)
{
    return is_alpha(c) || is_digit(c);
}

/* RFC 5322 atext, plus UTF8-non-ascii when RFC 6531 applies. */
static bool is_atext(unsigned char c, bool utf8)
{
    if (c >= 0x80) return utf8;
    return is_letdig(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* RFC 5321 qtextSMTP: printable ASCII except '"' and '\'. */
static bool is_qtext(unsigned char c, bool utf8)
{
    if (c >= 0x80) return utf8;
    return c >= 32 && c <= 126 && c != '"' && c != '\\';
}

/* RFC 5321 dcontent: printable ASCII except '[', '\', ']'. */
static bool is_dcontent(unsigned char c)
{
    return c >= 33 && c <= 126 && c != '[' && c != '\\' && c != ']';
}

/* Well-formed UTF-8 (RFC 3629): no overlongs, surrogates or > U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) n = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return false;
        }
        if (len - i - 1 < n) return false;
        if (s[i + 1] < lo || s[i + 1] > hi) return false;
        for (size_t k = 2; k <= n; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return false;
        i += n + 1;
    }
    return true;
}

static bool has_8bit(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80) return true;
    return false;
}

/* The canonical local part is a dot-atom: Atom *("." Atom). */
static bool is_dot_atom(const char *s, size_t len, bool utf8)
{
    if (len == 0 || s[0] == '.' || s[len - 1] == '.') return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (s[i + 1] == '.') return false;
        } else if (!is_atext(c, utf8)) {
            return false;
        }
    }
    return true;
}

/* Length of the sub-domain run at s: sub-domain *("." sub-domain), each
 * label Let-dig [Ldh-str] (or UTF-8 U-label bytes), at most 63 octets.
 * Returns the length (> 0) or -1.  Stops at the first byte that cannot be
 * part of a domain; the caller checks what follows. */
static int domain_span(const char *s, size_t len, bool utf8)
{
    size_t i = 0, label = 0;
    for (;;) {
        size_t start = i;
        while (i < len) {
            unsigned char c = (unsigned char)s[i];
            if (is_letdig(c) || c == '-' || (utf8 && c >= 0x80)) i++;
            else break;
        }
        label = i - start;
        if (label == 0 || label > SMTP_LABEL_MAX) return -1;
        if (s[start] == '-' || s[i - 1] == '-') return -1;
        if (i > SMTP_DOMAIN_MAX) return -1;
        if (i < len && s[i] == '.') {
            i++;
            continue;
        }
        return (int)i;
    }
}

/* IPv4-address-literal: Snum 3("." Snum), Snum = 1*3DIGIT in 0..255. */
static bool ipv4_valid(const char *s, size_t len)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= len || s[i] != '.') return false;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < len && is_digit((unsigned char)s[i]) && i - start < 3)
            v = v * 10 + (unsigned)(s[i++] - '0');
        if (i == start || v > 255) return false;
    }
    return i == len;
}

/* Content between '[' and ']' of an address-literal (RFC 5321 4.1.3). */
static bool literal_valid(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!is_dcontent((unsigned char)s[i])) return false;
    if (len >= 5 && ascii_ncasecmp(s, "IPv6:", 5) == 0) {
        char buf[INET6_ADDRSTRLEN + 1];
        unsigned char bin[16];
        if (len - 5 >= sizeof buf) return false;
        memcpy(buf, s + 5, len - 5);
        buf[len - 5] = '\0';
        return inet_pton(AF_INET6, buf, bin) == 1;
    }
    const char *colon = memchr(s, ':', len);
    if (!colon) return ipv4_valid(s, len);
    /* General-address-literal: Standardized-tag ":" 1*dcontent, the tag
     * being an Ldh-str that ends in a Let-dig. */
    size_t tag = (size_t)(colon - s);
    if (tag == 0 || tag + 1 == len) return false;
    if (!is_letdig((unsigned char)s[0]) || !is_letdig((unsigned char)s[tag - 1])) return false;
    for (size_t i = 0; i < tag; i++)
        if (!is_letdig((unsigned char)s[i]) && s[i] != '-') return false;
    return true;
}

/* Domain or address-literal at s; returns its length or -1. */
static int host_span(const char *s, size_t len, bool utf8, bool *literal)
{
    *literal = false;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close) return -1;
        size_t n = (size_t)(close - s) + 1;
        if (n > SMTP_DOMAIN_MAX || !literal_valid(s + 1, n - 2)) return -1;
        *literal = true;
        return (int)n;
    }
    return domain_span(s, len, utf8);
}

bool smtp_domain_valid(const char *s, size_t len, bool allow_utf8)
{
    bool literal;
    if (has_8bit(s, len) && (!allow_utf8 || !utf8_valid((const unsigned char *)s, len)))
        return false;
    int n = host_span(s, len, allow_utf8, &literal);
    return n >= 0 && (size_t)n == len;
}

/* A-d-l ":" after the '<': "@dom,@dom:".  Returns bytes consumed or -1. */
static int source_route(const char *s, size_t len, bool utf8)
{
    size_t i = 0;
    for (;;) {
        if (i >= len || s[i] != '@') return -1;
        i++;
        int n = domain_span(s + i, len - i, utf8);
        if (n < 0) return -1;
        i += (size_t)n;
        if (i >= len) return -1;
        if (s[i] == ':') return (int)i + 1;
        if (s[i] != ',') return -1;
        i++;
    }
}

/* Local-part at s, unquoted into out (size SMTP_LOCAL_MAX + 1).  Returns
 * the wire length or -1.  *was_quoted tells whether it was written as a
 * quoted-string. */
static int local_part(const char *s, size_t len, bool utf8, char *out, bool *was_quoted)
{
    size_t i = 0, o = 0;
    *was_quoted = false;
    if (len > 0 && s[0] == '"') {
        *was_quoted = true;
        i = 1;
        for (;;) {
            if (i >= len || i > SMTP_LOCAL_MAX) return -1;
            unsigned char c = (unsigned char)s[i];
            if (c == '"') break;
            if (c == '\\') {
                /* quoted-pairSMTP = %d92 %d32-126 */
                if (i + 1 >= len) return -1;
                c = (unsigned char)s[i + 1];
                if (c < 32 || c > 126) return -1;
                i++;
            } else if (!is_qtext(c, utf8)) {
                return -1;
            }
            out[o++] = (char)c;
            i++;
        }
        i++;
    } else {
        while (i < len && (is_atext((unsigned char)s[i], utf8) || s[i] == '.')) {
            if (i >= SMTP_LOCAL_MAX) return -1;
            out[o++] = s[i++];
        }
        if (!is_dot_atom(s, i, utf8)) return -1;
    }
    if (i > SMTP_LOCAL_MAX) return -1;
    out[o] = '\0';
    return (int)i;
}

static int parse_path(const char *s, size_t len, bool utf8, bool allow_null,
                      bool allow_postmaster, struct smtp_address *out)
{
    /* The whole path is bounded first, so nothing below can run past 256. */
    if (len > SMTP_PATH_MAX) len = SMTP_PATH_MAX;
    if (len < 2 || s[0] != '<') return -1;
    if (s[1] == '>') {
        if (!allow_null) return -1;
        out->null = true;
        return 2;
    }

    size_t i = 1;
    if (s[i] == '@') {
        int n = source_route(s + i, len - i, utf8);
        if (n < 0) return -1;
        i += (size_t)n;
    }

    bool was_quoted;
    int n = local_part(s + i, len - i, utf8, out->local, &was_quoted);
    if (n < 0) return -1;
    size_t local_start = i;
    i += (size_t)n;
    if (i >= len) return -1;

    if (s[i] == '>') {
        /* "<Postmaster>" is the only mailbox without a domain. */
        if (!allow_postmaster || was_quoted || local_start != 1 ||
            ascii_casecmp(out->local, "postmaster") != 0)
            return -1;
        strcpy(out->local, "Postmaster");
        return (int)i + 1;
    }
    if (s[i] != '@') return -1;
    i++;

    bool literal;
    n = host_span(s + i, len - i, utf8, &literal);
    if (n < 0) return -1;
    memcpy(out->domain, s + i, (size_t)n);
    out->domain[n] = '\0';
    if (!literal) ascii_lower(out->domain);
    out->literal = literal;
    i += (size_t)n;
    if (i >= len || s[i] != '>') return -1;
    i++;

    size_t local_len = strlen(out->local);
    out->quoted = !is_dot_atom(out->local, local_len, utf8);
    out->utf8 = has_8bit(out->local, local_len) || has_8bit(out->domain, strlen(out->domain));
    if (utf8 && !utf8_valid((const unsigned char *)s, i)) return -1;
    return (int)i;
}

int smtp_parse_path(const char *s, size_t len, bool allow_utf8, bool allow_null,
                    bool allow_postmaster, struct smtp_address *out)
{
    memset(out, 0, sizeof *out);
    int n = parse_path(s, len, allow_utf8, allow_null, allow_postmaster, out);
    if (n < 0) memset(out, 0, sizeof *out);
    return n;
}

void smtp_address_format(const struct smtp_address *a, sbuf *out)
{
    if (a->null) return;
    size_t len = strlen(a->local);
    if (is_dot_atom(a->local, len, true)) {
        sbuf_append(out, a->local, len);
    } else {
        sbuf_putc(out, '"');
        for (size_t i = 0; i < len; i++) {
            if (a->local[i] == '"' || a->local[i] == '\\') sbuf_putc(out, '\\');
            sbuf_putc(out, a->local[i]);
        }
        sbuf_putc(out, '"');
    }
    if (a->domain[0]) {
        sbuf_putc(out, '@');
        sbuf_puts(out, a->domain);
    }
}
