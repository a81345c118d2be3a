/* The MIME tree as a cache blob: varints and length-prefixed strings, in
 * tree order.  Offsets and counts are checked on the way back in, so a
 * corrupt or foreign blob is refused instead of trusted. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "mime/mime_charset.h"
#include "mime/mime_parse.h"

static const char magic[4] = { 'P', 'M', 'T', '1' };

/* ---- writing --------------------------------------------------------- */

static void put_u(sbuf *o, uint64_t v)
{
    unsigned char b[10];
    size_t n = 0;
    do {
        b[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v) b[n] |= 0x80;
        n++;
    } while (v);
    sbuf_append(o, b, n);
}

/* 0 = NULL, else length + 1 */
static void put_s(sbuf *o, const char *s)
{
    if (!s) {
        put_u(o, 0);
        return;
    }
    size_t n = strlen(s);
    put_u(o, (uint64_t)n + 1);
    sbuf_append(o, s, n);
}

static void put_params(sbuf *o, const struct mime_params *p)
{
    put_u(o, p->n);
    for (size_t i = 0; i < p->n; i++) {
        put_s(o, p->v[i].name);
        put_s(o, p->v[i].value);
        put_s(o, p->v[i].charset);
        put_s(o, p->v[i].language);
    }
}

static void put_addrs(sbuf *o, const struct mime_addr_list *l)
{
    put_u(o, l->v ? l->n + 1 : 0);
    for (size_t i = 0; i < l->n; i++) {
        const struct mime_address *a = &l->v[i];
        put_u(o, (uint64_t)a->kind << 1 | a->invalid);
        put_s(o, a->name);
        put_s(o, a->name_utf8);
        put_s(o, a->adl);
        put_s(o, a->mailbox);
        put_s(o, a->host);
    }
}

static void put_part(sbuf *o, const struct mime_part *p)
{
    put_u(o, p->hdr_off);
    put_u(o, p->body_off - p->hdr_off);
    put_u(o, p->end_off - p->body_off);
    put_u(o, p->body_lines);
    put_u(o, p->flags);
    put_u(o, p->cte);
    put_s(o, p->type);
    put_s(o, p->subtype);
    put_params(o, &p->type_params);
    put_s(o, p->cte_name);
    put_s(o, p->id);
    put_s(o, p->description);
    put_s(o, p->disposition);
    put_params(o, &p->disp_params);
    put_u(o, p->nlanguages);
    for (size_t i = 0; i < p->nlanguages; i++) put_s(o, p->languages[i]);
    put_s(o, p->location);
    put_s(o, p->md5);
    put_u(o, p->env != NULL);
    if (p->env) {
        const struct mime_envelope *e = p->env;
        put_s(o, e->date);
        put_s(o, e->subject);
        put_s(o, e->subject_utf8);
        put_s(o, e->message_id);
        put_s(o, e->in_reply_to);
        put_addrs(o, &e->from);
        put_addrs(o, &e->sender);
        put_addrs(o, &e->reply_to);
        put_addrs(o, &e->to);
        put_addrs(o, &e->cc);
        put_addrs(o, &e->bcc);
    }
    put_u(o, p->nchildren);
    for (const struct mime_part *c = p->children; c; c = c->next) put_part(o, c);
}

void mime_tree_serialize(const struct mime_part *root, sbuf *out)
{
    sbuf_append(out, magic, sizeof magic);
    put_part(out, root);
}

/* ---- reading --------------------------------------------------------- */

struct rd {
    const unsigned char *p, *end;
    bool bad;
    size_t msg_len;
    unsigned max_depth;
    size_t parts_left;
};

static uint64_t get_u(struct rd *r)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) break;
        unsigned char b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return v;
    }
    r->bad = true;
    return 0;
}

/* A count of items each at least `min` bytes long: bounded by what is
 * left, so a corrupt count cannot make us allocate. */
static size_t get_count(struct rd *r, size_t min)
{
    uint64_t n = get_u(r);
    if (n > (uint64_t)(r->end - r->p) / min) {
        r->bad = true;
        return 0;
    }
    return (size_t)n;
}

static char *get_s(struct rd *r)
{
    uint64_t n = get_u(r);
    if (r->bad || n == 0) return NULL;
    n--;
    if (n > (uint64_t)(r->end - r->p) || memchr(r->p, '\0', (size_t)n)) {
        r->bad = true;
        return NULL;
    }
    char *s = xstrndup((const char *)r->p, (size_t)n);
    r->p += n;
    return s;
}

static bool utf8_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
    while (p < end) {
        size_t n = mime_utf8_seq_len(p, (size_t)(end - p));
        if (!n) return false;
        p += n;
    }
    return true;
}

/* Fields documented as valid UTF-8 stay so even from a corrupt cache. */
static char *get_utf8(struct rd *r)
{
    char *s = get_s(r);
    if (s && !utf8_ok(s)) r->bad = true;
    return s;
}

static void get_params(struct rd *r, struct mime_params *p)
{
    size_t n = get_count(r, 4);
    p->v = xcalloc(n ? n : 1, sizeof *p->v);
    p->n = n;
    for (size_t i = 0; i < n; i++) {
        p->v[i].name = get_s(r);
        p->v[i].value = get_s(r);
        p->v[i].charset = get_s(r);
        /* extended (RFC 2231) values were converted to UTF-8 */
        if (p->v[i].charset && p->v[i].value && !utf8_ok(p->v[i].value)) r->bad = true;
        p->v[i].language = get_s(r);
        if (!p->v[i].name || !p->v[i].value) r->bad = true;
    }
}

static void get_addrs(struct rd *r, struct mime_addr_list *l)
{
    size_t n = get_count(r, 1);
    if (r->bad || n == 0) return;
    n--;
    if (n > (size_t)(r->end - r->p) / 6) {
        r->bad = true;
        return;
    }
    l->v = xcalloc(n ? n : 1, sizeof *l->v);
    l->n = n;
    for (size_t i = 0; i < n; i++) {
        struct mime_address *a = &l->v[i];
        uint64_t k = get_u(r);
        if ((k >> 1) > MIME_ADDR_GROUP_END) r->bad = true;
        a->kind = (enum mime_addr_kind)(k >> 1);
        a->invalid = k & 1;
        a->name = get_s(r);
        a->name_utf8 = get_utf8(r);
        a->adl = get_s(r);
        a->mailbox = get_s(r);
        a->host = get_s(r);
    }
    /* the shape mime_addr_list_parse() produces: mailboxes have both
     * parts, groups are balanced and never nested */
    bool open = false;
    for (size_t i = 0; i < n && !r->bad; i++) {
        const struct mime_address *a = &l->v[i];
        if (a->kind == MIME_ADDR_MAILBOX) r->bad = !a->mailbox || !a->host;
        else if (a->kind == MIME_ADDR_GROUP_START) r->bad = open || !a->mailbox || a->host;
        else r->bad = !open || a->mailbox || a->host || a->name || a->adl;
        if (a->kind != MIME_ADDR_MAILBOX) open = a->kind == MIME_ADDR_GROUP_START;
    }
    if (open) r->bad = true;
}

static bool get_off(struct rd *r, size_t base, size_t *out)
{
    uint64_t v = get_u(r);
    if (r->bad || v > r->msg_len - base) {
        r->bad = true;
        return false;
    }
    *out = base + (size_t)v;
    return true;
}

static struct mime_part *get_part(struct rd *r, struct mime_part *parent, unsigned depth)
{
    if (r->parts_left == 0 || depth > r->max_depth) {
        r->bad = true;
        return NULL;
    }
    r->parts_left--;
    struct mime_part *p = xcalloc(1, sizeof *p);
    p->parent = parent;
    uint64_t v;
    if (!get_off(r, 0, &p->hdr_off) || !get_off(r, p->hdr_off, &p->body_off) ||
        !get_off(r, p->body_off, &p->end_off))
        return p;
    if (parent && (p->hdr_off < parent->body_off || p->end_off > parent->end_off)) {
        r->bad = true;
        return p;
    }
    v = get_u(r);
    if (v > p->end_off - p->body_off) r->bad = true;    /* a line has a byte */
    p->body_lines = (size_t)v;
    v = get_u(r);
    p->flags = (unsigned)v;
    if (v > 0xff) r->bad = true;
    v = get_u(r);
    if (v > MIME_CTE_OTHER) r->bad = true;
    p->cte = (enum mime_cte)v;
    p->type = get_s(r);
    p->subtype = get_s(r);
    if (!p->type || !p->subtype) r->bad = true;
    get_params(r, &p->type_params);
    p->cte_name = get_s(r);
    p->id = get_s(r);
    p->description = get_s(r);
    p->disposition = get_s(r);
    get_params(r, &p->disp_params);
    size_t nl = get_count(r, 1);
    p->languages = xcalloc(nl ? nl : 1, sizeof *p->languages);
    for (size_t i = 0; i < nl && !r->bad; i++) {
        p->languages[i] = get_s(r);
        p->nlanguages++;
        if (!p->languages[i]) r->bad = true;
    }
    p->location = get_s(r);
    p->md5 = get_s(r);
    v = get_u(r);
    if (v > 1) r->bad = true;
    if (v == 1 && !r->bad) {
        struct mime_envelope *e = p->env = xcalloc(1, sizeof *p->env);
        e->date = get_s(r);
        e->subject = get_s(r);
        e->subject_utf8 = get_utf8(r);
        e->message_id = get_s(r);
        e->in_reply_to = get_s(r);
        get_addrs(r, &e->from);
        get_addrs(r, &e->sender);
        get_addrs(r, &e->reply_to);
        get_addrs(r, &e->to);
        get_addrs(r, &e->cc);
        get_addrs(r, &e->bcc);
    }
    size_t nc = get_count(r, 8);
    struct mime_part **tail = &p->children;
    size_t prev_end = p->body_off;
    for (size_t i = 0; i < nc && !r->bad; i++) {
        struct mime_part *c = get_part(r, p, depth + 1);
        if (!c) break;
        *tail = c;
        tail = &c->next;
        p->nchildren++;
        /* siblings are in message order and never overlap */
        if (c->hdr_off < prev_end) r->bad = true;
        prev_end = c->end_off;
    }
    /* the invariants documented in mime_parse.h, which formatters rely on */
    if (!r->bad) {
        bool multi = strcmp(p->type, "multipart") == 0;
        bool msg = strcmp(p->type, "message") == 0 &&
                   (strcmp(p->subtype, "rfc822") == 0 || strcmp(p->subtype, "global") == 0);
        if (multi ? p->nchildren == 0
                  : msg ? p->nchildren != 1 || !p->children->env : p->nchildren != 0)
            r->bad = true;
    }
    return p;
}

int mime_tree_deserialize(const void *blob, size_t len, size_t msg_len,
                          const struct mime_limits *lim, struct mime_part **root)
{
    static const struct mime_limits defaults = MIME_LIMITS_DEFAULT;
    if (!lim) lim = &defaults;
    *root = NULL;
    if (len < sizeof magic || memcmp(blob, magic, sizeof magic) != 0) return -1;
    struct rd r = { (const unsigned char *)blob + sizeof magic, (const unsigned char *)blob + len,
                    false, msg_len, lim->max_depth, lim->max_parts ? lim->max_parts : 1 };
    struct mime_part *p = get_part(&r, NULL, 0);
    if (r.bad || r.p != r.end) {
        mime_free(p);
        return -1;
    }
    *root = p;
    return 0;
}

/* ---- equality -------------------------------------------------------- */

static bool str_eq(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

static bool params_eq(const struct mime_params *a, const struct mime_params *b)
{
    if (a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++) {
        if (!str_eq(a->v[i].name, b->v[i].name) || !str_eq(a->v[i].value, b->v[i].value) ||
            !str_eq(a->v[i].charset, b->v[i].charset) ||
            !str_eq(a->v[i].language, b->v[i].language))
            return false;
    }
    return true;
}

static bool addrs_eq(const struct mime_addr_list *a, const struct mime_addr_list *b)
{
    if (a->n != b->n || (a->v == NULL) != (b->v == NULL)) return false;
    for (size_t i = 0; i < a->n; i++) {
        const struct mime_address *x = &a->v[i], *y = &b->v[i];
        if (x->kind != y->kind || x->invalid != y->invalid || !str_eq(x->name, y->name) ||
            !str_eq(x->name_utf8, y->name_utf8) || !str_eq(x->adl, y->adl) ||
            !str_eq(x->mailbox, y->mailbox) || !str_eq(x->host, y->host))
            return false;
    }
    return true;
}

static bool env_eq(const struct mime_envelope *a, const struct mime_envelope *b)
{
    if (!a || !b) return a == b;
    return str_eq(a->date, b->date) && str_eq(a->subject, b->subject) &&
           str_eq(a->subject_utf8, b->subject_utf8) && str_eq(a->message_id, b->message_id) &&
           str_eq(a->in_reply_to, b->in_reply_to) && addrs_eq(&a->from, &b->from) &&
           addrs_eq(&a->sender, &b->sender) && addrs_eq(&a->reply_to, &b->reply_to) &&
           addrs_eq(&a->to, &b->to) && addrs_eq(&a->cc, &b->cc) && addrs_eq(&a->bcc, &b->bcc);
}

bool mime_tree_equal(const struct mime_part *a, const struct mime_part *b)
{
    if (!a || !b) return a == b;
    if (a->hdr_off != b->hdr_off || a->body_off != b->body_off || a->end_off != b->end_off ||
        a->body_lines != b->body_lines || a->flags != b->flags || a->cte != b->cte ||
        a->nchildren != b->nchildren || a->nlanguages != b->nlanguages)
        return false;
    if (!str_eq(a->type, b->type) || !str_eq(a->subtype, b->subtype) ||
        !str_eq(a->cte_name, b->cte_name) || !str_eq(a->id, b->id) ||
        !str_eq(a->description, b->description) || !str_eq(a->disposition, b->disposition) ||
        !str_eq(a->location, b->location) || !str_eq(a->md5, b->md5))
        return false;
    if (!params_eq(&a->type_params, &b->type_params) ||
        !params_eq(&a->disp_params, &b->disp_params) || !env_eq(a->env, b->env))
        return false;
    for (size_t i = 0; i < a->nlanguages; i++)
        if (!str_eq(a->languages[i], b->languages[i])) return false;
    const struct mime_part *x = a->children, *y = b->children;
    for (; x && y; x = x->next, y = y->next)
        if (!mime_tree_equal(x, y)) return false;
    return !x && !y;
}
