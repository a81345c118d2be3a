#include "mime/mime_header.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "mime/mime_charset.h"
#include "mime/mime_codec.h"

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* Length of the line end at p (CRLF or LF) if the line is empty, else 0. */
static size_t empty_line(const char *p, const char *end)
{
    if (p < end && *p == '\n') return 1;
    if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') return 2;
    return 0;
}

static const char *next_line(const char *p, const char *end)
{
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    return lf ? lf + 1 : end;
}

void mime_header_iter_init(struct mime_header_iter *it, const char *hdr, size_t len)
{
    it->p = hdr;
    it->end = hdr + len;
}

bool mime_header_next(struct mime_header_iter *it, struct mime_field *f)
{
    while (it->p < it->end) {
        const char *start = it->p;
        if (empty_line(start, it->end)) {
            it->p = it->end;
            return false;
        }
        const char *first_end = next_line(start, it->end);
        const char *e = first_end;
        while (e < it->end && is_wsp(*e)) e = next_line(e, it->end);
        it->p = e;
        if (is_wsp(*start)) continue;   /* continuation without a field */
        const char *colon = memchr(start, ':', (size_t)(first_end - start));
        if (!colon) continue;
        const char *ne = colon;
        while (ne > start && is_wsp(ne[-1])) ne--;
        if (ne == start) continue;
        const char *ve = e;
        if (ve > colon + 1 && ve[-1] == '\n') ve--;
        if (ve > colon + 1 && ve[-1] == '\r') ve--;
        f->name = start;
        f->name_len = (size_t)(ne - start);
        f->value = colon + 1;
        f->value_len = (size_t)(ve - (colon + 1));
        f->raw = start;
        f->raw_len = (size_t)(e - start);
        return true;
    }
    return false;
}

size_t mime_header_size(const char *msg, size_t len, bool *has_body)
{
    const char *p = msg, *end = msg + len;
    while (p < end) {
        size_t el = empty_line(p, end);
        if (el) {
            *has_body = true;
            return (size_t)(p - msg) + el;
        }
        p = next_line(p, end);
    }
    *has_body = false;
    return len;
}

static bool name_is(const struct mime_field *f, const char *name, size_t n)
{
    return f->name_len == n && ascii_ncasecmp(f->name, name, n) == 0;
}

bool mime_header_find(const char *hdr, size_t len, const char *name, struct mime_field *f)
{
    struct mime_header_iter it;
    size_t n = strlen(name);
    mime_header_iter_init(&it, hdr, len);
    while (mime_header_next(&it, f))
        if (name_is(f, name, n)) return true;
    return false;
}

void mime_header_unfold(const char *v, size_t len, sbuf *out)
{
    size_t s = 0, e = len;
    while (s < e && (is_wsp(v[s]) || v[s] == '\r' || v[s] == '\n')) s++;
    while (e > s && (is_wsp(v[e - 1]) || v[e - 1] == '\r' || v[e - 1] == '\n')) e--;
    sbuf_reserve(out, e - s);
    size_t run = s;
    for (size_t i = s; i < e; i++) {
        if (v[i] == '\r' || v[i] == '\n') {
            sbuf_append(out, v + run, i - run);
            run = i + 1;
        }
    }
    sbuf_append(out, v + run, e - run);
}

void mime_header_select(const char *hdr, size_t len, const char *const *names, size_t nnames,
                        bool not, sbuf *out)
{
    struct mime_header_iter it;
    struct mime_field f;
    mime_header_iter_init(&it, hdr, len);
    while (mime_header_next(&it, &f)) {
        bool hit = false;
        for (size_t i = 0; i < nnames && !hit; i++) hit = name_is(&f, names[i], strlen(names[i]));
        if (hit == not) continue;
        sbuf_append(out, f.raw, f.raw_len);
        if (f.raw[f.raw_len - 1] != '\n') sbuf_append(out, "\r\n", 2);
    }
    sbuf_append(out, "\r\n", 2);
}

/* ---- RFC 2047 -------------------------------------------------------- */

struct eword {
    const char *charset;
    size_t charset_len;
    char enc;               /* 'B' or 'Q' */
    const char *text;
    size_t text_len;
    size_t end;             /* index just past "?=" */
};

static bool ew_char(char c)
{
    unsigned char u = (unsigned char)c;
    return u > ' ' && u < 0x7f && c != '?';
}

/* RFC 2047 2: "=?" charset "?" encoding "?" encoded-text "?=". */
static bool parse_eword(const char *s, size_t n, size_t i, struct eword *w)
{
    if (n - i < 8 || s[i] != '=' || s[i + 1] != '?') return false;
    size_t j = i + 2;
    w->charset = s + j;
    while (j < n && ew_char(s[j])) j++;
    w->charset_len = (size_t)(s + j - w->charset);
    if (w->charset_len == 0 || j + 2 >= n || s[j] != '?') return false;
    char e = (char)(s[j + 1] & ~0x20);
    if ((e != 'B' && e != 'Q') || s[j + 2] != '?') return false;
    w->enc = e;
    j += 3;
    w->text = s + j;
    while (j < n && ew_char(s[j])) j++;
    if (j + 1 >= n || s[j] != '?' || s[j + 1] != '=') return false;
    w->text_len = (size_t)(s + j - w->text);
    w->end = j + 2;
    return true;
}

static int hexv(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = (char)(c & ~0x20);
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* RFC 2047 4.2: the Q encoding. */
static void q_decode(const char *t, size_t n, sbuf *out)
{
    for (size_t i = 0; i < n; i++) {
        if (t[i] == '_') {
            sbuf_putc(out, ' ');
        } else if (t[i] == '=' && i + 2 < n && hexv(t[i + 1]) >= 0 && hexv(t[i + 2]) >= 0) {
            sbuf_putc(out, (char)(hexv(t[i + 1]) << 4 | hexv(t[i + 2])));
            i += 2;
        } else {
            sbuf_putc(out, t[i]);
        }
    }
}

struct pending {
    char charset[80];       /* charset of the bytes held; "" = none */
    sbuf bytes;
    bool bad;
};

static void pending_flush(struct pending *pd, sbuf *out)
{
    if (!pd->charset[0]) return;
    if (mime_charset_to_utf8(pd->charset, pd->bytes.data ? pd->bytes.data : "", pd->bytes.len,
                             0, out) & MIME_CS_INVALID)
        pd->bad = true;
    sbuf_reset(&pd->bytes);
    pd->charset[0] = '\0';
}

static void pending_add(struct pending *pd, const struct eword *w, sbuf *out)
{
    /* charsets longer than the holder cannot be real ones: read as UTF-8 */
    const char *cs = w->charset;
    size_t cl = w->charset_len;
    if (cl >= sizeof pd->charset) {
        cs = "utf-8";
        cl = 5;
    }
    bool same = strlen(pd->charset) == cl && ascii_ncasecmp(pd->charset, cs, cl) == 0;
    if (!same) {
        pending_flush(pd, out);
        memcpy(pd->charset, cs, cl);
        pd->charset[cl] = '\0';
    }
    if (w->enc == 'B') {
        if (mime_b64_decode(w->text, w->text_len, &pd->bytes)) pd->bad = true;
    } else {
        q_decode(w->text, w->text_len, &pd->bytes);
    }
}

bool mime_header_decode(const char *v, size_t len, size_t max_out, sbuf *out)
{
    sbuf u = SBUF_INIT, res = SBUF_INIT;
    struct pending pd = { .charset = "", .bytes = SBUF_INIT, .bad = false };
    mime_header_unfold(v, len, &u);
    const char *s = sbuf_cstr(&u);
    size_t n = u.len, i = 0;
    bool prev_ew = false;
    struct eword w;
    while (i < n) {
        if (s[i] == '=' && parse_eword(s, n, i, &w)) {
            pending_add(&pd, &w, &res);
            i = w.end;
            prev_ew = true;
            continue;
        }
        if (is_wsp(s[i])) {
            size_t j = i;
            while (j < n && is_wsp(s[j])) j++;
            /* RFC 2047 6.2: whitespace between encoded-words is ignored */
            if (prev_ew && j < n && s[j] == '=' && parse_eword(s, n, j, &w)) {
                i = j;
                continue;
            }
            pending_flush(&pd, &res);
            sbuf_append(&res, s + i, j - i);
            i = j;
            prev_ew = false;
            continue;
        }
        pending_flush(&pd, &res);
        size_t j = i + 1;
        while (j < n && !is_wsp(s[j]) && s[j] != '=') j++;
        if (mime_utf8_sanitize(s + i, j - i, 0, &res) & MIME_CS_INVALID) pd.bad = true;
        i = j;
        prev_ew = false;
    }
    pending_flush(&pd, &res);
    /* res is valid UTF-8: sanitize only applies the bound */
    mime_utf8_sanitize(sbuf_cstr(&res), res.len, max_out, out);
    sbuf_free(&u);
    sbuf_free(&res);
    sbuf_free(&pd.bytes);
    return pd.bad;
}
