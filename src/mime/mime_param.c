/* MIME parameters: RFC 2045 5.1 syntax, read leniently (unquoted values
 * with spaces, comments after values), and RFC 2231 continuations,
 * charsets and languages. */
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "mime/mime_charset.h"
#include "mime/mime_header.h"

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Skip whitespace and (nested) comments; an unclosed comment runs to the
 * end, as it would for any reader. */
static size_t skip_cfws(const char *s, size_t n, size_t i)
{
    while (i < n) {
        if (is_ws(s[i])) {
            i++;
        } else if (s[i] == '(') {
            unsigned depth = 0;
            for (; i < n; i++) {
                if (s[i] == '\\') i++;
                else if (s[i] == '(') depth++;
                else if (s[i] == ')' && --depth == 0) { i++; break; }
            }
        } else {
            break;
        }
    }
    return i;
}

/* Quoted-string at s[i] == '"': append the unescaped content. */
static size_t quoted(const char *s, size_t n, size_t i, sbuf *out)
{
    for (i++; i < n; i++) {
        if (s[i] == '"') return i + 1;
        if (s[i] == '\\' && i + 1 < n) i++;
        if (s[i] == '\r' || s[i] == '\n') continue;     /* folding */
        sbuf_putc(out, s[i]);
    }
    return n;
}

/* Sections beyond this cannot be contiguous under any sane max_params. */
#define MAX_SECTION 9999

struct rawp {
    char *base;
    long section;           /* -1: not a continuation */
    bool ext;               /* "*" at the end: charset'lang'%XX */
    sbuf val;
};

static void rawp_name(struct rawp *r, const char *name, size_t len, size_t max_section)
{
    if (max_section > MAX_SECTION) max_section = MAX_SECTION;
    r->ext = len > 0 && name[len - 1] == '*';
    if (r->ext) len--;
    r->section = -1;
    const char *star = memchr(name, '*', len);
    if (star && star + 1 < name + len) {
        long sec = 0;
        bool digits = true;
        for (const char *p = star + 1; p < name + len; p++) {
            if (*p < '0' || *p > '9' || sec > (long)max_section) {
                digits = false;
                break;
            }
            sec = sec * 10 + (*p - '0');
        }
        /* "*01" is not a section number (RFC 2231 3: no leading zeros) */
        if (digits && !(star[1] == '0' && len - (size_t)(star + 1 - name) > 1)) {
            r->section = sec;
            len = (size_t)(star - name);
        }
    }
    r->base = ascii_lower(xstrndup(name, len));
}

static void pct_decode(const char *s, size_t n, sbuf *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n) {
            const char *h = strchr(hex, s[i + 1] | 0x20), *l = strchr(hex, s[i + 2] | 0x20);
            if (h && l && *h && *l) {
                sbuf_putc(out, (char)((h - hex) << 4 | (l - hex)));
                i += 2;
                continue;
            }
        }
        sbuf_putc(out, s[i]);
    }
}

static struct rawp *find_section(struct rawp *r, size_t nr, const char *base, long sec)
{
    for (size_t i = 0; i < nr; i++)
        if (r[i].section == sec && strcmp(r[i].base, base) == 0) return &r[i];
    return NULL;
}

/* Build the parameter `base` from its raw pieces.  Returns false if it
 * has no usable form. */
static bool assemble(struct rawp *r, size_t nr, const char *base, struct mime_param *p)
{
    struct rawp *s0 = find_section(r, nr, base, 0), *ext = NULL, *plain = NULL;
    for (size_t i = 0; i < nr; i++) {
        if (r[i].section != -1 || strcmp(r[i].base, base) != 0) continue;
        if (r[i].ext && !ext) ext = &r[i];
        if (!r[i].ext && !plain) plain = &r[i];
    }
    struct rawp *head = s0 ? s0 : ext;
    if (!head) {
        if (!plain) return false;
        p->name = xstrdup(base);
        p->value = xstrdup(sbuf_cstr(&plain->val));
        p->charset = p->language = NULL;
        return true;
    }
    sbuf bytes = SBUF_INIT;
    char *charset = NULL, *lang = NULL;
    const char *v = sbuf_cstr(&head->val);
    size_t vlen = head->val.len;
    if (head->ext) {
        const char *q1 = memchr(v, '\'', vlen);
        const char *q2 = q1 ? memchr(q1 + 1, '\'', vlen - (size_t)(q1 + 1 - v)) : NULL;
        if (q2) {
            charset = xstrndup(v, (size_t)(q1 - v));
            lang = q2 > q1 + 1 ? xstrndup(q1 + 1, (size_t)(q2 - q1 - 1)) : NULL;
            vlen -= (size_t)(q2 + 1 - v);
            v = q2 + 1;
        }
        pct_decode(v, vlen, &bytes);
    } else {
        sbuf_append(&bytes, v, vlen);
    }
    if (head == s0) {
        for (long sec = 1;; sec++) {
            struct rawp *c = find_section(r, nr, base, sec);
            if (!c) break;
            if (c->ext) pct_decode(sbuf_cstr(&c->val), c->val.len, &bytes);
            else sbuf_append(&bytes, sbuf_cstr(&c->val), c->val.len);
        }
    }
    p->name = xstrdup(base);
    if (head->ext) {
        sbuf u = SBUF_INIT;
        mime_charset_to_utf8(charset, sbuf_cstr(&bytes), bytes.len, 0, &u);
        p->value = sbuf_detach(&u);
        p->charset = charset ? charset : xstrdup("");
    } else {
        p->value = xstrdup(sbuf_cstr(&bytes));
        p->charset = NULL;
        free(charset);
    }
    p->language = lang;
    sbuf_free(&bytes);
    return true;
}

void mime_params_parse(const char *v, size_t len, size_t max_params, char **first,
                       struct mime_params *out)
{
    sbuf f = SBUF_INIT;
    size_t i = 0;
    out->v = NULL;
    out->n = 0;
    /* leading value, comments and whitespace removed */
    while (i < len && v[i] != ';') {
        size_t j = skip_cfws(v, len, i);
        if (j != i) { i = j; continue; }
        if (v[i] == '"') { i = quoted(v, len, i, &f); continue; }
        sbuf_putc(&f, v[i++]);
    }
    *first = ascii_lower(sbuf_detach(&f));

    struct rawp *raw = xcalloc(max_params ? max_params : 1, sizeof *raw);
    size_t nraw = 0;
    while (i < len && nraw < max_params) {
        i++;    /* the ';' */
        i = skip_cfws(v, len, i);
        size_t ns = i;
        while (i < len && v[i] != '=' && v[i] != ';' && !is_ws(v[i]) && v[i] != '(') i++;
        size_t ne = i;
        i = skip_cfws(v, len, i);
        if (ns == ne || i >= len || v[i] != '=') {
            while (i < len && v[i] != ';') i++;
            continue;
        }
        i = skip_cfws(v, len, i + 1);
        struct rawp *r = &raw[nraw++];
        sbuf_init(&r->val);
        rawp_name(r, v + ns, ne - ns, max_params);
        if (i < len && v[i] == '"') {
            i = quoted(v, len, i, &r->val);
        } else {
            size_t vs = i;
            while (i < len && v[i] != ';' && v[i] != '(') i++;
            size_t ve = i;
            while (ve > vs && is_ws(v[ve - 1])) ve--;
            for (size_t k = vs; k < ve; k++)
                if (v[k] != '\r' && v[k] != '\n') sbuf_putc(&r->val, v[k]);
        }
        while (i < len && v[i] != ';') i++;
    }

    out->v = xcalloc(nraw ? nraw : 1, sizeof *out->v);
    for (size_t k = 0; k < nraw; k++) {
        bool done = false;
        for (size_t m = 0; m < out->n && !done; m++) done = strcmp(out->v[m].name, raw[k].base) == 0;
        if (done) continue;
        if (assemble(raw, nraw, raw[k].base, &out->v[out->n])) out->n++;
    }
    for (size_t k = 0; k < nraw; k++) {
        free(raw[k].base);
        sbuf_free(&raw[k].val);
    }
    free(raw);
}

void mime_params_free(struct mime_params *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].name);
        free(p->v[i].value);
        free(p->v[i].charset);
        free(p->v[i].language);
    }
    free(p->v);
    p->v = NULL;
    p->n = 0;
}

const char *mime_params_get(const struct mime_params *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (ascii_casecmp(p->v[i].name, name) == 0) return p->v[i].value;
    return NULL;
}
