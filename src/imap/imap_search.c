/* SEARCH evaluation, see imap_search.h. */
#include "imap/imap_search.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "mime/mime_header.h"
#include "mime/mime_parse.h"
#include "store/store.h"

/* Decoded text kept for BODY/TEXT: large enough for any real message
 * text, bounded so a huge attachment labelled text costs little. */
#define SEARCH_TEXT_MAX (16u * 1024 * 1024)

static unsigned char fold(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Case-insensitive (ASCII) substring; an empty needle always matches. */
static bool contains(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
    if (nlen == 0) return true;
    if (nlen > hlen) return false;
    unsigned char first = fold((unsigned char)needle[0]);
    for (size_t i = 0; i + nlen <= hlen; i++) {
        if (fold((unsigned char)hay[i]) != first) continue;
        size_t k = 1;
        while (k < nlen && fold((unsigned char)hay[i + k]) == fold((unsigned char)needle[k])) k++;
        if (k == nlen) return true;
    }
    return false;
}

static bool load(struct imap_search_msg *m)
{
    if (m->loaded) return !m->load_failed;
    m->loaded = true;
    m->hdr_loaded = true;
    if (!m->load || m->load(m->load_ctx, &m->data, &m->len) < 0) {
        m->load_failed = true;
        return false;
    }
    bool has_body;
    m->hdr_len = mime_header_size(m->data, m->len, &has_body);
    return true;
}

/* Enough for the header keys: the header block alone when the loader can
 * read just that (a body that may be megabytes stays unread). */
static bool load_header(struct imap_search_msg *m)
{
    if (m->hdr_loaded) return !m->load_failed;
    if (!m->load_header) return load(m);
    m->hdr_loaded = true;
    if (m->load_header(m->load_ctx, &m->data, &m->len) < 0) {
        m->load_failed = true;
        m->loaded = true;
        return false;
    }
    bool has_body;
    m->hdr_len = mime_header_size(m->data, m->len, &has_body);
    return true;
}

static bool header_has(struct imap_search_msg *m, const char *name, size_t nlen, const struct imap_str *str)
{
    struct mime_header_iter it;
    struct mime_field f;
    mime_header_iter_init(&it, m->data, m->hdr_len);
    while (mime_header_next(&it, &f)) {
        if (f.name_len != nlen || ascii_ncasecmp(f.name, name, nlen) != 0) continue;
        if (str->len == 0) return true;
        sbuf dec = SBUF_INIT;
        mime_header_decode(f.value, f.value_len, 0, &dec);
        bool hit = contains(dec.data ? dec.data : "", dec.len, str->data, str->len);
        sbuf_free(&dec);
        if (hit) return true;
    }
    return false;
}

static bool body_has(struct imap_search_msg *m, const struct imap_str *str)
{
    if (!m->text_done) {
        m->text_done = true;
        if (!m->tree) mime_parse(m->data, m->len, NULL, &m->tree);
        size_t got = mime_text_extract(m->data, m->tree, SEARCH_TEXT_MAX, &m->text);
        if (got == 0 && m->len > m->hdr_len) {
            /* No text part: search the raw body rather than nothing. */
            size_t n = m->len - m->hdr_len;
            sbuf_append(&m->text, m->data + m->hdr_len, n < SEARCH_TEXT_MAX ? n : SEARCH_TEXT_MAX);
        }
    }
    return contains(m->text.data ? m->text.data : "", m->text.len, str->data, str->len);
}

static bool all_headers_have(struct imap_search_msg *m, const struct imap_str *str)
{
    struct mime_header_iter it;
    struct mime_field f;
    mime_header_iter_init(&it, m->data, m->hdr_len);
    while (mime_header_next(&it, &f)) {
        sbuf dec = SBUF_INIT;
        sbuf_append(&dec, f.name, f.name_len);
        sbuf_puts(&dec, ": ");
        mime_header_decode(f.value, f.value_len, 0, &dec);
        bool hit = contains(dec.data, dec.len, str->data, str->len);
        sbuf_free(&dec);
        if (hit) return true;
    }
    return false;
}

int imap_search_header_date(const char *v, size_t len, time_t *day)
{
    static const char mon[12][4] = { "jan", "feb", "mar", "apr", "may", "jun",
                                     "jul", "aug", "sep", "oct", "nov", "dec" };
    size_t i = 0;
    /* optional "Day," */
    const char *comma = memchr(v, ',', len);
    if (comma) i = (size_t)(comma - v) + 1;
    while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n')) i++;
    int d = 0, nd = 0;
    while (i < len && v[i] >= '0' && v[i] <= '9' && nd < 2) d = d * 10 + (v[i++] - '0'), nd++;
    if (nd == 0) return -1;
    while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == '-')) i++;
    if (i + 3 > len) return -1;
    int m = -1;
    for (int k = 0; k < 12; k++)
        if (ascii_ncasecmp(v + i, mon[k], 3) == 0) m = k;
    if (m < 0) return -1;
    i += 3;
    while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == '-')) i++;
    int y = 0, ny = 0;
    while (i < len && v[i] >= '0' && v[i] <= '9' && ny < 4) y = y * 10 + (v[i++] - '0'), ny++;
    if (ny == 2) y += y < 50 ? 2000 : 1900;       /* RFC 5322 4.3 */
    else if (ny == 3) y += 1900;
    else if (ny != 4) return -1;
    if (d < 1 || d > 31) return -1;
    struct tm tm = { 0 };
    tm.tm_mday = d;
    tm.tm_mon = m;
    tm.tm_year = y - 1900;
    *day = timegm(&tm);
    return 0;
}

static time_t day_of(time_t t)
{
    return t - (((t % 86400) + 86400) % 86400);
}

static bool kw_set(const struct imap_search_msg *m, const struct imap_str *k)
{
    for (size_t i = 0; i < m->nkeywords; i++)
        if (strlen(m->keywords[i]) == k->len && ascii_ncasecmp(m->keywords[i], k->data, k->len) == 0)
            return true;
    return false;
}

bool imap_search_needs_content(const struct imap_search *n)
{
    for (; n; n = n->next) {
        switch (n->key) {
        case IMAP_SK_BCC: case IMAP_SK_BODY: case IMAP_SK_CC: case IMAP_SK_FROM:
        case IMAP_SK_SUBJECT: case IMAP_SK_TEXT: case IMAP_SK_TO: case IMAP_SK_HEADER:
        case IMAP_SK_SENTBEFORE: case IMAP_SK_SENTON: case IMAP_SK_SENTSINCE:
            return true;
        default:
            if (n->child && imap_search_needs_content(n->child)) return true;
        }
    }
    return false;
}

bool imap_search_uses_modseq(const struct imap_search *n)
{
    for (; n; n = n->next)
        if (n->key == IMAP_SK_MODSEQ || (n->child && imap_search_uses_modseq(n->child))) return true;
    return false;
}

bool imap_search_uses_recent(const struct imap_search *n)
{
    for (; n; n = n->next)
        if (n->key == IMAP_SK_RECENT || n->key == IMAP_SK_NEW || n->key == IMAP_SK_OLD ||
            (n->child && imap_search_uses_recent(n->child)))
            return true;
    return false;
}

static int eval(const struct imap_search *n, struct imap_search_msg *m);

static int eval_content(const struct imap_search *n, struct imap_search_msg *m)
{
    bool body = n->key == IMAP_SK_BODY || n->key == IMAP_SK_TEXT;
    if (!(body ? load(m) : load_header(m))) return -1;
    switch (n->key) {
    case IMAP_SK_BCC: return header_has(m, "Bcc", 3, &n->str);
    case IMAP_SK_CC: return header_has(m, "Cc", 2, &n->str);
    case IMAP_SK_FROM: return header_has(m, "From", 4, &n->str);
    case IMAP_SK_TO: return header_has(m, "To", 2, &n->str);
    case IMAP_SK_SUBJECT: return header_has(m, "Subject", 7, &n->str);
    case IMAP_SK_HEADER: return header_has(m, n->field.data, n->field.len, &n->str);
    case IMAP_SK_BODY: return body_has(m, &n->str);
    case IMAP_SK_TEXT: return all_headers_have(m, &n->str) || body_has(m, &n->str);
    default: break;
    }
    /* SENT*: the Date header's day */
    struct mime_field f;
    time_t day;
    if (!mime_header_find(m->data, m->hdr_len, "Date", &f) ||
        imap_search_header_date(f.value, f.value_len, &day) < 0)
        return 0;
    if (n->key == IMAP_SK_SENTBEFORE) return day < n->date;
    if (n->key == IMAP_SK_SENTON) return day == n->date;
    return day >= n->date;
}

static int eval(const struct imap_search *n, struct imap_search_msg *m)
{
    time_t d = day_of(m->internaldate);
    switch (n->key) {
    case IMAP_SK_AND:
        for (const struct imap_search *c = n->child; c; c = c->next) {
            int r = eval(c, m);
            if (r != 1) return r;
        }
        return 1;
    case IMAP_SK_OR: {
        if (!n->child || !n->child->next) return 0;
        int a = eval(n->child, m);
        if (a == 1) return 1;
        int b = eval(n->child->next, m);
        if (b == 1) return 1;
        return (a < 0 || b < 0) ? -1 : 0;
    }
    case IMAP_SK_NOT: {
        if (!n->child) return 0;
        int r = eval(n->child, m);
        return r < 0 ? -1 : !r;
    }
    case IMAP_SK_ALL: return 1;
    case IMAP_SK_ANSWERED: return (m->flags & STORE_ANSWERED) != 0;
    case IMAP_SK_DELETED: return (m->flags & STORE_DELETED) != 0;
    case IMAP_SK_DRAFT: return (m->flags & STORE_DRAFT) != 0;
    case IMAP_SK_FLAGGED: return (m->flags & STORE_FLAGGED) != 0;
    case IMAP_SK_SEEN: return (m->flags & STORE_SEEN) != 0;
    case IMAP_SK_UNANSWERED: return !(m->flags & STORE_ANSWERED);
    case IMAP_SK_UNDELETED: return !(m->flags & STORE_DELETED);
    case IMAP_SK_UNDRAFT: return !(m->flags & STORE_DRAFT);
    case IMAP_SK_UNFLAGGED: return !(m->flags & STORE_FLAGGED);
    case IMAP_SK_UNSEEN: return !(m->flags & STORE_SEEN);
    case IMAP_SK_RECENT: return m->recent;
    case IMAP_SK_OLD: return !m->recent;
    case IMAP_SK_NEW: return m->recent && !(m->flags & STORE_SEEN);
    case IMAP_SK_KEYWORD: return kw_set(m, &n->str);
    case IMAP_SK_UNKEYWORD: return !kw_set(m, &n->str);
    case IMAP_SK_BEFORE: return d < n->date;
    case IMAP_SK_ON: return d == n->date;
    case IMAP_SK_SINCE: return d >= n->date;
    case IMAP_SK_LARGER: return m->size > n->num;
    case IMAP_SK_SMALLER: return m->size < n->num;
    case IMAP_SK_OLDER: return m->now - m->internaldate >= (time_t)n->num;
    case IMAP_SK_YOUNGER: return m->now - m->internaldate <= (time_t)n->num;
    case IMAP_SK_UID:
        if (n->set.saved) return m->in_saved;
        return imap_seqset_contains(&n->set, m->uid, m->max_uid);
    case IMAP_SK_SEQSET:
        if (n->set.saved) return m->in_saved;
        return imap_seqset_contains(&n->set, m->seq, m->max_seq);
    case IMAP_SK_MODSEQ: return m->modseq >= n->num;
    default:
        return eval_content(n, m);
    }
}

int imap_search_match(const struct imap_search *root, struct imap_search_msg *m)
{
    return eval(root, m);
}

void imap_search_msg_done(struct imap_search_msg *m)
{
    if (m->tree) mime_free(m->tree);
    m->tree = NULL;
    sbuf_free(&m->text);
    m->text_done = false;
    m->loaded = false;
    m->hdr_loaded = false;
}
