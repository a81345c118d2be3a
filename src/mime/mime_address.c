/* RFC 5322 3.4 address lists for IMAP ENVELOPE, obsolete syntax (4.4)
 * included: routes, CFWS between local-part atoms, empty list elements.
 * Two passes: a tokenizer that classifies the bytes, then a parser that
 * never fails, only skips what it cannot read up to the next comma. */
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "mime/mime_header.h"

enum { T_ATOM = 'a', T_QSTR = 'q', T_DLIT = 'd', T_COMMENT = 'c' };

struct tok {
    char type;              /* T_* or the special character itself */
    bool ws_before;         /* whitespace or a comment preceded it */
    size_t off, len;        /* source bytes (quotes/brackets included) */
};

static bool is_special(char c)
{
    return c == '<' || c == '>' || c == '@' || c == ',' || c == ';' || c == ':' || c == '.';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Skip a delimited run starting at s[i] (quote, comment or literal),
 * honouring backslash escapes; comments nest.  Unterminated runs end at
 * the input end. */
static size_t delimited(const char *s, size_t n, size_t i, char open, char close)
{
    unsigned depth = 1;
    for (i++; i < n; i++) {
        if (s[i] == '\\') {
            i++;
        } else if (s[i] == close) {
            if (--depth == 0) return i + 1;
        } else if (open == '(' && s[i] == '(') {
            depth++;
        }
    }
    return n;
}

static struct tok *tokenize(const char *s, size_t n, size_t *ntok)
{
    size_t cap = 16, nt = 0;
    struct tok *t = xmalloc(cap * sizeof *t);
    bool ws = false;
    size_t i = 0;
    while (i < n) {
        if (is_space(s[i])) {
            ws = true;
            i++;
            continue;
        }
        if (nt == cap) {
            cap *= 2;
            t = xrealloc(t, cap * sizeof *t);
        }
        struct tok *k = &t[nt++];
        k->ws_before = ws;
        k->off = i;
        if (s[i] == '"') {
            k->type = T_QSTR;
            i = delimited(s, n, i, '"', '"');
        } else if (s[i] == '(') {
            k->type = T_COMMENT;
            i = delimited(s, n, i, '(', ')');
        } else if (s[i] == '[') {
            k->type = T_DLIT;
            i = delimited(s, n, i, '[', ']');
        } else if (is_special(s[i])) {
            k->type = s[i++];
        } else {
            k->type = T_ATOM;
            while (i < n && !is_space(s[i]) && !is_special(s[i]) && s[i] != '"' && s[i] != '(' &&
                   s[i] != '[')
                i++;
        }
        k->len = i - k->off;
        ws = k->type == T_COMMENT;
    }
    *ntok = nt;
    return t;
}

struct ctx {
    const char *s;
    const struct tok *t;
    size_t nt;
    struct mime_addr_list *out;
    size_t cap;             /* allocated elements of out->v */
    size_t max;
};

/* Content of a quoted string or comment, unescaped, folding removed. */
static void unquote(const char *s, size_t len, sbuf *out)
{
    size_t e = len;
    if (e >= 2 && (s[e - 1] == '"' || s[e - 1] == ')')) e--;
    for (size_t i = 1; i < e; i++) {
        if (s[i] == '\\' && i + 1 < e) i++;
        else if (s[i] == '\r' || s[i] == '\n') continue;
        sbuf_putc(out, s[i]);
    }
}

/* A display name: words joined by single spaces where the source had
 * whitespace; NULL if empty. */
static char *phrase(const struct ctx *c, size_t a, size_t b)
{
    sbuf o = SBUF_INIT;
    for (size_t i = a; i < b; i++) {
        const struct tok *k = &c->t[i];
        if (k->type == T_COMMENT) continue;
        if (k->ws_before && o.len) sbuf_putc(&o, ' ');
        if (k->type == T_QSTR) unquote(c->s + k->off, k->len, &o);
        else sbuf_append(&o, c->s + k->off, k->len);
    }
    if (!o.len) {
        sbuf_free(&o);
        return NULL;
    }
    return sbuf_detach(&o);
}

/* Local part or domain: tokens concatenated without CFWS. */
static char *joined(const struct ctx *c, size_t a, size_t b)
{
    sbuf o = SBUF_INIT;
    for (size_t i = a; i < b; i++) {
        const struct tok *k = &c->t[i];
        if (k->type == T_COMMENT) continue;
        for (size_t j = 0; j < k->len; j++)
            if (c->s[k->off + j] != '\r' && c->s[k->off + j] != '\n') sbuf_putc(&o, c->s[k->off + j]);
    }
    if (!o.len) {
        sbuf_free(&o);
        return NULL;
    }
    return sbuf_detach(&o);
}

static struct mime_address *add(struct ctx *c, enum mime_addr_kind kind, size_t limit)
{
    if (c->out->n >= limit) return NULL;
    if (c->out->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 4;
        c->out->v = xrealloc(c->out->v, c->cap * sizeof *c->out->v);
    }
    struct mime_address *a = &c->out->v[c->out->n++];
    memset(a, 0, sizeof *a);
    a->kind = kind;
    return a;
}

static void set_name(struct mime_address *a, char *name)
{
    a->name = name;
    if (name) {
        sbuf d = SBUF_INIT;
        mime_header_decode(name, strlen(name), 0, &d);
        a->name_utf8 = sbuf_detach(&d);
    }
}

/* addr-spec in tokens [a, b): local "@" domain, split at the last '@'. */
static void addr_spec(const struct ctx *c, size_t a, size_t b, struct mime_address *m)
{
    size_t at = b;
    for (size_t i = a; i < b; i++)
        if (c->t[i].type == '@') at = i;
    m->mailbox = joined(c, a, at);
    m->host = at < b ? joined(c, at + 1, b) : NULL;
    if (!m->mailbox) {
        m->mailbox = xstrdup(MIME_MISSING_MAILBOX);
        m->invalid = true;
    }
    if (!m->host) {
        m->host = xstrdup(MIME_MISSING_DOMAIN);
        m->invalid = true;
    }
}

static bool stop_tok(char type, bool in_group)
{
    return type == ',' || (in_group && type == ';');
}

/* One mailbox (or group, outside a group) starting at *ip. */
static void element(struct ctx *c, size_t *ip, bool in_group)
{
    size_t i = *ip, j = i, nt = c->nt;
    size_t limit = in_group ? c->max - 1 : c->max;
    while (j < nt && !stop_tok(c->t[j].type, in_group) && c->t[j].type != '<' &&
           c->t[j].type != ':' && c->t[j].type != ';')
        j++;
    if (j < nt && c->t[j].type == ':' && !in_group && c->out->n + 2 <= c->max) {
        struct mime_address *g = add(c, MIME_ADDR_GROUP_START, limit);
        g->mailbox = phrase(c, i, j);
        if (!g->mailbox) g->mailbox = xstrdup("");
        i = j + 1;
        while (i < nt) {
            char ty = c->t[i].type;
            if (ty == ';') {
                i++;
                break;
            }
            if (ty == ',' || ty == T_COMMENT) {
                i++;
                continue;
            }
            element(c, &i, true);
        }
        add(c, MIME_ADDR_GROUP_END, c->max);
        *ip = i;
        return;
    }
    if (j < nt && c->t[j].type == '<') {
        size_t k = j + 1;
        while (k < nt && c->t[k].type != '>') k++;
        size_t colon = k;
        for (size_t x = j + 1; x < k; x++)
            if (c->t[x].type == ':') colon = x;
        struct mime_address *m = add(c, MIME_ADDR_MAILBOX, limit);
        if (m) {
            set_name(m, phrase(c, i, j));
            if (colon < k) m->adl = joined(c, j + 1, colon);
            addr_spec(c, colon < k ? colon + 1 : j + 1, k, m);
        }
        i = k < nt ? k + 1 : k;
    } else {
        /* bare addr-spec; a comment in it may carry the name */
        size_t e = i;
        while (e < nt && !stop_tok(c->t[e].type, in_group) && c->t[e].type != '<' &&
               c->t[e].type != ';' && (c->t[e].type != ':' || e == i))
            e++;
        bool any = false;
        const struct tok *comment = NULL;
        for (size_t x = i; x < e; x++) {
            if (c->t[x].type == T_COMMENT) { if (!comment) comment = &c->t[x]; }
            else any = true;
        }
        if (any) {
            struct mime_address *m = add(c, MIME_ADDR_MAILBOX, limit);
            if (m) {
                if (comment) {
                    sbuf n = SBUF_INIT;
                    unquote(c->s + comment->off, comment->len, &n);
                    set_name(m, n.len ? sbuf_detach(&n) : NULL);
                    sbuf_free(&n);
                }
                addr_spec(c, i, e, m);
            }
        }
        i = e;
    }
    /* skip what follows up to the list separator */
    if (i == *ip) i++;
    while (i < nt && !stop_tok(c->t[i].type, in_group)) i++;
    *ip = i;
}

void mime_addr_list_parse(const char *v, size_t len, size_t max_addrs, struct mime_addr_list *out)
{
    out->v = NULL;
    out->n = 0;
    if (max_addrs == 0) return;
    size_t nt;
    struct tok *t = tokenize(v, len, &nt);
    struct ctx c = { v, t, nt, out, 0, max_addrs };
    size_t i = 0;
    while (i < nt && out->n < max_addrs) {
        char ty = t[i].type;
        if (ty == ',' || ty == ';' || ty == '>' || ty == T_COMMENT) {
            i++;
            continue;
        }
        element(&c, &i, false);
    }
    free(t);
}

void mime_addr_list_free(struct mime_addr_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        struct mime_address *a = &l->v[i];
        free(a->name);
        free(a->name_utf8);
        free(a->adl);
        free(a->mailbox);
        free(a->host);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}
