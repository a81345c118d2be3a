/* IMAP response syntax (RFC 9051 section 9): strings, mailbox names,
 * dates, flags, ENVELOPE and BODY/BODYSTRUCTURE from the MIME tree. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/util.h"
#include "imap/imap_mutf7.h"
#include "imap/imap_session_int.h"
#include "store/store.h"

/* Longest string sent quoted; longer ones go as literals (readable in
 * logs and no escaping cost for big values). */
#define QUOTED_MAX 1024

static bool atom_char(unsigned char c)
{
    if (c <= 0x20 || c >= 0x7f) return false;
    return !strchr("(){%*\"\\]", c);
}

void imap_put_literal(sbuf *out, const char *s, size_t len)
{
    sbuf_printf(out, "{%zu}\r\n", len);
    sbuf_append(out, s, len);
}

void imap_put_string(sbuf *out, const char *s, size_t len, bool utf8)
{
    bool quoted = len <= QUOTED_MAX;
    for (size_t i = 0; i < len && quoted; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n' || c == 0) quoted = false;
        else if (c >= 0x80 && (!utf8 || !imap_utf8_valid(s, len))) quoted = false;
    }
    if (!quoted) {
        imap_put_literal(out, s, len);
        return;
    }
    sbuf_putc(out, '"');
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"' || s[i] == '\\') sbuf_putc(out, '\\');
        sbuf_putc(out, s[i]);
    }
    sbuf_putc(out, '"');
}

void imap_put_nstring(sbuf *out, const char *s, bool utf8)
{
    if (!s) sbuf_puts(out, "NIL");
    else imap_put_string(out, s, strlen(s), utf8);
}

void imap_put_astring(sbuf *out, const char *s, size_t len, bool utf8)
{
    bool atom = len > 0 && !(len == 3 && ascii_ncasecmp(s, "NIL", 3) == 0);
    for (size_t i = 0; i < len && atom; i++) atom = atom_char((unsigned char)s[i]);
    if (atom) sbuf_append(out, s, len);
    else imap_put_string(out, s, len, utf8);
}

int imap_put_mailbox(sbuf *out, const char *name, bool utf8)
{
    if (utf8) {
        imap_put_astring(out, name, strlen(name), true);
        return 0;
    }
    sbuf enc = SBUF_INIT;
    if (imap_mutf7_encode(name, strlen(name), &enc) < 0) {
        sbuf_free(&enc);
        return -1;
    }
    imap_put_astring(out, enc.data, enc.len, false);
    sbuf_free(&enc);
    return 0;
}

void imap_put_datetime(sbuf *out, time_t t)
{
    static const char mon[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;
    gmtime_r(&t, &tm);
    sbuf_printf(out, "\"%02d-%s-%04d %02d:%02d:%02d +0000\"", tm.tm_mday, mon[tm.tm_mon],
                tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

void imap_put_flag_names(sbuf *out, unsigned flags, uint32_t kwbits, char *const *kw, size_t nkw)
{
    static const struct { unsigned bit; const char *name; } sys[] = {
        { STORE_ANSWERED, "\\Answered" }, { STORE_FLAGGED, "\\Flagged" },
        { STORE_DELETED, "\\Deleted" }, { STORE_SEEN, "\\Seen" }, { STORE_DRAFT, "\\Draft" },
    };
    bool first = true;
    sbuf_putc(out, '(');
    for (size_t i = 0; i < sizeof sys / sizeof sys[0]; i++) {
        if (!(flags & sys[i].bit)) continue;
        if (!first) sbuf_putc(out, ' ');
        sbuf_puts(out, sys[i].name);
        first = false;
    }
    for (size_t i = 0; i < nkw && i < 32; i++) {
        if (!(kwbits & (1u << i)) || !kw[i]) continue;
        if (!first) sbuf_putc(out, ' ');
        sbuf_puts(out, kw[i]);
        first = false;
    }
    sbuf_putc(out, ')');
}

/* ---- ENVELOPE (RFC 9051 7.5.2) ---- */

static void put_addrs(sbuf *out, const struct mime_addr_list *l, bool utf8)
{
    if (!l || l->n == 0) {
        sbuf_puts(out, "NIL");
        return;
    }
    sbuf_putc(out, '(');
    for (size_t i = 0; i < l->n; i++) {
        const struct mime_address *a = &l->v[i];
        sbuf_putc(out, '(');
        switch (a->kind) {
        case MIME_ADDR_MAILBOX:
            imap_put_nstring(out, a->name, utf8);
            sbuf_putc(out, ' ');
            imap_put_nstring(out, a->adl, utf8);
            sbuf_putc(out, ' ');
            imap_put_nstring(out, a->mailbox, utf8);
            sbuf_putc(out, ' ');
            imap_put_nstring(out, a->host, utf8);
            break;
        case MIME_ADDR_GROUP_START:
            sbuf_puts(out, "NIL NIL ");
            imap_put_nstring(out, a->mailbox, utf8);
            sbuf_puts(out, " NIL");
            break;
        case MIME_ADDR_GROUP_END:
            sbuf_puts(out, "NIL NIL NIL NIL");
            break;
        }
        sbuf_putc(out, ')');
    }
    sbuf_putc(out, ')');
}

void imap_put_envelope(sbuf *out, const struct mime_envelope *env, bool utf8)
{
    if (!env) {
        sbuf_puts(out, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
        return;
    }
    sbuf_putc(out, '(');
    imap_put_nstring(out, env->date, utf8);
    sbuf_putc(out, ' ');
    imap_put_nstring(out, env->subject, utf8);
    sbuf_putc(out, ' ');
    put_addrs(out, &env->from, utf8);
    sbuf_putc(out, ' ');
    /* RFC 9051 7.5.2: absent Sender and Reply-To take the From value. */
    put_addrs(out, env->sender.n ? &env->sender : &env->from, utf8);
    sbuf_putc(out, ' ');
    put_addrs(out, env->reply_to.n ? &env->reply_to : &env->from, utf8);
    sbuf_putc(out, ' ');
    put_addrs(out, &env->to, utf8);
    sbuf_putc(out, ' ');
    put_addrs(out, &env->cc, utf8);
    sbuf_putc(out, ' ');
    put_addrs(out, &env->bcc, utf8);
    sbuf_putc(out, ' ');
    imap_put_nstring(out, env->in_reply_to, utf8);
    sbuf_putc(out, ' ');
    imap_put_nstring(out, env->message_id, utf8);
    sbuf_putc(out, ')');
}

/* ---- BODY / BODYSTRUCTURE (RFC 9051 7.5.2) ---- */

static void put_upper(sbuf *out, const char *s, bool utf8)
{
    sbuf u = SBUF_INIT;
    for (const char *p = s; *p; p++)
        sbuf_putc(&u, (*p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A') : *p);
    imap_put_string(out, u.data ? u.data : "", u.len, utf8);
    sbuf_free(&u);
}

static void put_params(sbuf *out, const struct mime_params *p, bool utf8)
{
    if (!p || p->n == 0) {
        sbuf_puts(out, "NIL");
        return;
    }
    sbuf_putc(out, '(');
    for (size_t i = 0; i < p->n; i++) {
        if (i) sbuf_putc(out, ' ');
        put_upper(out, p->v[i].name, utf8);
        sbuf_putc(out, ' ');
        const char *v = p->v[i].value ? p->v[i].value : "";
        imap_put_string(out, v, strlen(v), utf8);
    }
    sbuf_putc(out, ')');
}

static const char *cte_text(const struct mime_part *p)
{
    switch (p->cte) {
    case MIME_CTE_7BIT: return "7BIT";
    case MIME_CTE_8BIT: return "8BIT";
    case MIME_CTE_BINARY: return "BINARY";
    case MIME_CTE_QP: return "QUOTED-PRINTABLE";
    case MIME_CTE_BASE64: return "BASE64";
    case MIME_CTE_OTHER: break;
    }
    return NULL;
}

/* body-ext: disposition, language, location (shared by both kinds). */
static void put_ext_tail(sbuf *out, const struct mime_part *p, bool utf8)
{
    sbuf_putc(out, ' ');
    if (p->disposition) {
        sbuf_putc(out, '(');
        put_upper(out, p->disposition, utf8);
        sbuf_putc(out, ' ');
        put_params(out, &p->disp_params, utf8);
        sbuf_putc(out, ')');
    } else {
        sbuf_puts(out, "NIL");
    }
    sbuf_putc(out, ' ');
    if (p->nlanguages == 0) {
        sbuf_puts(out, "NIL");
    } else if (p->nlanguages == 1) {
        imap_put_nstring(out, p->languages[0], utf8);
    } else {
        sbuf_putc(out, '(');
        for (size_t i = 0; i < p->nlanguages; i++) {
            if (i) sbuf_putc(out, ' ');
            imap_put_nstring(out, p->languages[i], utf8);
        }
        sbuf_putc(out, ')');
    }
    sbuf_putc(out, ' ');
    imap_put_nstring(out, p->location, utf8);
}

void imap_put_body(sbuf *out, const struct mime_part *p, bool extended, bool utf8)
{
    sbuf_putc(out, '(');
    if (strcmp(p->type, "multipart") == 0 && p->children) {
        for (const struct mime_part *c = p->children; c; c = c->next)
            imap_put_body(out, c, extended, utf8);
        sbuf_putc(out, ' ');
        put_upper(out, p->subtype, utf8);
        if (extended) {
            sbuf_putc(out, ' ');
            put_params(out, &p->type_params, utf8);
            put_ext_tail(out, p, utf8);
        }
        sbuf_putc(out, ')');
        return;
    }
    put_upper(out, p->type, utf8);
    sbuf_putc(out, ' ');
    put_upper(out, p->subtype, utf8);
    sbuf_putc(out, ' ');
    put_params(out, &p->type_params, utf8);
    sbuf_putc(out, ' ');
    imap_put_nstring(out, p->id, utf8);
    sbuf_putc(out, ' ');
    imap_put_nstring(out, p->description, utf8);
    sbuf_putc(out, ' ');
    const char *cte = cte_text(p);
    if (cte) sbuf_printf(out, "\"%s\"", cte);
    else put_upper(out, p->cte_name ? p->cte_name : "7bit", utf8);
    sbuf_printf(out, " %zu", mime_part_body_size(p));
    bool is_msg = strcmp(p->type, "message") == 0 &&
                  (strcmp(p->subtype, "rfc822") == 0 || strcmp(p->subtype, "global") == 0);
    if (is_msg && p->children) {
        sbuf_putc(out, ' ');
        imap_put_envelope(out, p->children->env, utf8);
        sbuf_putc(out, ' ');
        imap_put_body(out, p->children, extended, utf8);
        sbuf_printf(out, " %zu", p->body_lines);
    } else if (strcmp(p->type, "text") == 0) {
        sbuf_printf(out, " %zu", p->body_lines);
    }
    if (extended) {
        sbuf_putc(out, ' ');
        imap_put_nstring(out, p->md5, utf8);
        put_ext_tail(out, p, utf8);
    }
    sbuf_putc(out, ')');
}
