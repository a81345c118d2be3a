#include "mime/mime_parse.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

struct pctx {
    const char *msg;
    const struct mime_limits *lim;
    size_t nparts;
};

/* A new part appended after `prev` (the parent's last child, or NULL for
 * the first): passing the tail keeps 10000 siblings linear. */
static struct mime_part *new_part(struct pctx *c, struct mime_part *parent,
                                  struct mime_part *prev)
{
    struct mime_part *p = xcalloc(1, sizeof *p);
    c->nparts++;
    p->parent = parent;
    if (parent) {
        if (prev) prev->next = p;
        else parent->children = p;
        parent->nchildren++;
    }
    return p;
}

static char *unfolded(const struct mime_field *f)
{
    sbuf b = SBUF_INIT;
    mime_header_unfold(f->value, f->value_len, &b);
    return sbuf_detach(&b);
}

static bool field_is(const struct mime_field *f, const char *name)
{
    size_t n = strlen(name);
    return f->name_len == n && ascii_ncasecmp(f->name, name, n) == 0;
}

static void set_type(struct mime_part *p, const char *type, const char *subtype)
{
    free(p->type);
    free(p->subtype);
    p->type = xstrdup(type);
    p->subtype = xstrdup(subtype);
    mime_params_free(&p->type_params);
}

/* RFC 2045 5.2: text/plain; charset=us-ascii. */
static void set_text_default(struct mime_part *p)
{
    set_type(p, "text", "plain");
    p->type_params.v = xcalloc(1, sizeof *p->type_params.v);
    p->type_params.v[0].name = xstrdup("charset");
    p->type_params.v[0].value = xstrdup("us-ascii");
    p->type_params.n = 1;
}

static bool is_token(const char *s)
{
    if (!*s) return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= ' ' || c >= 0x7f || strchr("()<>@,;:\\\"/[]?=", c)) return false;
    }
    return true;
}

/* Content-Type: "type/subtype" must both be tokens, else the default. */
static void content_type(struct mime_part *p, const struct mime_field *f, unsigned max_params)
{
    char *first;
    struct mime_params params;
    mime_params_parse(f->value, f->value_len, max_params, &first, &params);
    char *slash = strchr(first, '/');
    if (slash) *slash = '\0';
    if (slash && is_token(first) && is_token(slash + 1)) {
        set_type(p, first, slash + 1);
        p->type_params = params;
    } else {
        mime_params_free(&params);
    }
    free(first);
}

static void languages(struct mime_part *p, const struct mime_field *f, unsigned max)
{
    sbuf b = SBUF_INIT;
    mime_header_unfold(f->value, f->value_len, &b);
    char *s = b.data ? b.data : NULL;
    size_t n = b.len, i = 0;
    p->languages = xcalloc(max ? max : 1, sizeof *p->languages);
    while (s && i < n && p->nlanguages < max) {
        unsigned depth = 0;
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == ',' || s[i] == '(' || depth)) {
            if (s[i] == '(') depth++;
            else if (s[i] == ')' && depth) depth--;
            else if (s[i] == '\\') i++;
            i++;
        }
        size_t st = i;
        while (i < n && s[i] != ' ' && s[i] != '\t' && s[i] != ',' && s[i] != '(') i++;
        if (i > st) p->languages[p->nlanguages++] = xstrndup(s + st, i - st);
    }
    sbuf_free(&b);
}

static void envelope_field(struct mime_envelope *e, const struct mime_field *f, unsigned max)
{
    struct {
        const char *name;
        struct mime_addr_list *l;
    } addrs[] = {
        { "from", &e->from }, { "sender", &e->sender }, { "reply-to", &e->reply_to },
        { "to", &e->to }, { "cc", &e->cc }, { "bcc", &e->bcc },
    };
    struct {
        const char *name;
        char **s;
    } strs[] = {
        { "date", &e->date }, { "subject", &e->subject }, { "message-id", &e->message_id },
        { "in-reply-to", &e->in_reply_to },
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        if (!field_is(f, strs[i].name) || *strs[i].s) continue;
        *strs[i].s = unfolded(f);
        if (strs[i].s == &e->subject) {
            sbuf d = SBUF_INIT;
            mime_header_decode(f->value, f->value_len, 0, &d);
            e->subject_utf8 = sbuf_detach(&d);
        }
        return;
    }
    /* an address field is parsed once, from its first occurrence */
    for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++) {
        if (!field_is(f, addrs[i].name) || addrs[i].l->v) continue;
        mime_addr_list_parse(f->value, f->value_len, max, addrs[i].l);
        if (!addrs[i].l->v) addrs[i].l->v = xcalloc(1, sizeof *addrs[i].l->v);
        return;
    }
}

static void header(struct pctx *c, struct mime_part *p, bool is_message)
{
    const struct mime_limits *lim = c->lim;
    struct mime_header_iter it;
    struct mime_field f;
    bool have_ct = false, have_cte = false, have_disp = false, have_lang = false;
    if (is_message) p->env = xcalloc(1, sizeof *p->env);
    mime_header_iter_init(&it, c->msg + p->hdr_off, p->body_off - p->hdr_off);
    while (mime_header_next(&it, &f)) {
        if (p->env) envelope_field(p->env, &f, lim->max_addrs);
        if (f.name_len < 8 || ascii_ncasecmp(f.name, "content-", 8) != 0) continue;
        if (field_is(&f, "content-type") && !have_ct) {
            have_ct = true;
            content_type(p, &f, lim->max_params);
        } else if (field_is(&f, "content-transfer-encoding") && !have_cte) {
            struct mime_params none;
            have_cte = true;
            mime_params_parse(f.value, f.value_len, 0, &p->cte_name, &none);
            mime_params_free(&none);
        } else if (field_is(&f, "content-disposition") && !have_disp) {
            have_disp = true;
            mime_params_parse(f.value, f.value_len, lim->max_params, &p->disposition,
                              &p->disp_params);
        } else if (field_is(&f, "content-language") && !have_lang) {
            have_lang = true;
            languages(p, &f, lim->max_params);
        } else if (field_is(&f, "content-id") && !p->id) {
            p->id = unfolded(&f);
        } else if (field_is(&f, "content-description") && !p->description) {
            p->description = unfolded(&f);
        } else if (field_is(&f, "content-location") && !p->location) {
            p->location = unfolded(&f);
        } else if (field_is(&f, "content-md5") && !p->md5) {
            p->md5 = unfolded(&f);
        }
    }
    /* release the address-list placeholders of absent fields */
    if (p->env) {
        struct mime_addr_list *ls[] = { &p->env->from, &p->env->sender, &p->env->reply_to,
                                        &p->env->to, &p->env->cc, &p->env->bcc };
        for (size_t i = 0; i < 6; i++) {
            if (ls[i]->v && ls[i]->n == 0) {
                free(ls[i]->v);
                ls[i]->v = NULL;
            }
        }
    }
    if (p->cte_name) {
        static const struct { const char *name; enum mime_cte cte; } ctes[] = {
            { "7bit", MIME_CTE_7BIT }, { "8bit", MIME_CTE_8BIT }, { "binary", MIME_CTE_BINARY },
            { "quoted-printable", MIME_CTE_QP }, { "base64", MIME_CTE_BASE64 },
        };
        p->cte = MIME_CTE_OTHER;
        for (size_t i = 0; i < sizeof ctes / sizeof ctes[0]; i++)
            if (strcmp(p->cte_name, ctes[i].name) == 0) p->cte = ctes[i].cte;
        if (!*p->cte_name) p->cte = MIME_CTE_7BIT;
    }
}

static size_t count_lines(const char *s, size_t n)
{
    size_t lines = 0;
    const char *p = s, *end = s + n;
    while (p < end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        if (!lf) {
            lines++;
            break;
        }
        lines++;
        p = lf + 1;
    }
    return lines;
}

/* RFC 2046 5.1.1: a delimiter line is "--" boundary, then "--" for the
 * close delimiter, then only transport padding (whitespace) to the line
 * end.  Matching the whole line is what keeps "--abc" from matching the
 * line "--abcdef" of a nested multipart whose boundary extends ours. */
struct delim {
    size_t start, end;      /* the line, its line end included */
    bool close;
};

static bool find_delim(const char *msg, size_t from, size_t to, const char *b, size_t blen,
                       struct delim *d)
{
    size_t p = from;
    while (p < to) {
        const char *lf = memchr(msg + p, '\n', to - p);
        size_t le = lf ? (size_t)(lf - msg) : to;
        if (le - p >= 2 + blen && msg[p] == '-' && msg[p + 1] == '-' &&
            memcmp(msg + p + 2, b, blen) == 0) {
            size_t q = p + 2 + blen;
            bool close = false;
            if (le - q >= 2 && msg[q] == '-' && msg[q + 1] == '-') {
                close = true;
                q += 2;
            }
            while (q < le && (msg[q] == ' ' || msg[q] == '\t' || msg[q] == '\r')) q++;
            if (q == le) {
                d->start = p;
                d->end = lf ? le + 1 : to;
                d->close = close;
                return true;
            }
        }
        p = le + 1;
    }
    return false;
}

static void parse_part(struct pctx *c, struct mime_part *p, size_t start, size_t end,
                       unsigned depth, bool digest, bool is_message);

static void make_opaque(struct mime_part *p)
{
    set_type(p, "application", "octet-stream");
    p->flags |= MIME_PART_OPAQUE;
}

static void parse_multipart(struct pctx *c, struct mime_part *p, const char *b, unsigned depth)
{
    size_t blen = strlen(b);
    bool digest = strcmp(p->subtype, "digest") == 0;
    struct delim d;
    struct mime_part *last = NULL;
    if (!find_delim(c->msg, p->body_off, p->end_off, b, blen, &d) || d.close) return;
    for (;;) {
        size_t cstart = d.end, cend;
        struct delim nd;
        bool found = find_delim(c->msg, cstart, p->end_off, b, blen, &nd);
        if (found) {
            /* the line end before a delimiter belongs to the delimiter */
            cend = nd.start;
            if (cend > cstart && c->msg[cend - 1] == '\n') cend--;
            if (cend > cstart && c->msg[cend - 1] == '\r') cend--;
        } else {
            cend = p->end_off;
            p->flags |= MIME_PART_NO_CLOSE;
        }
        if (c->nparts >= c->lim->max_parts) {
            p->flags |= MIME_PART_TRUNCATED;
            return;
        }
        last = new_part(c, p, last);
        parse_part(c, last, cstart, cend, depth + 1, digest, false);
        if (!found || nd.close) return;
        d = nd;
    }
}

static void parse_part(struct pctx *c, struct mime_part *p, size_t start, size_t end,
                       unsigned depth, bool digest, bool is_message)
{
    bool has_body;
    p->hdr_off = start;
    p->body_off = start + mime_header_size(c->msg + start, end - start, &has_body);
    p->end_off = end;
    if (!has_body) p->flags |= MIME_PART_NO_BODY;
    header(c, p, is_message);
    if (!p->type) {
        p->flags |= MIME_PART_DEFAULT_TYPE;
        /* RFC 2046 5.1.5 */
        if (digest) set_type(p, "message", "rfc822");
        else set_text_default(p);
    }
    p->body_lines = count_lines(c->msg + p->body_off, end - p->body_off);

    bool multipart = strcmp(p->type, "multipart") == 0;
    bool message = strcmp(p->type, "message") == 0 &&
                   (strcmp(p->subtype, "rfc822") == 0 || strcmp(p->subtype, "global") == 0);
    if (!multipart && !message) return;
    /* RFC 2045 6.4: containers are never encoded; one that is cannot be
     * parsed in place, so it is handed out as opaque bytes. */
    bool encoded = p->cte != MIME_CTE_7BIT && p->cte != MIME_CTE_8BIT &&
                   p->cte != MIME_CTE_BINARY;
    if (depth >= c->lim->max_depth || c->nparts >= c->lim->max_parts || encoded) {
        make_opaque(p);
        return;
    }
    if (message) {
        struct mime_part *child = new_part(c, p, NULL);
        parse_part(c, child, p->body_off, end, depth + 1, false, true);
        return;
    }
    const char *b = mime_params_get(&p->type_params, "boundary");
    if (b && *b) parse_multipart(c, p, b, depth);
    if (p->nchildren == 0) {
        /* RFC 2046 5.1.1 requires a boundary and one body part at least */
        p->flags |= MIME_PART_NO_BOUNDARY;
        set_text_default(p);
    }
}

size_t mime_parse(const char *msg, size_t len, const struct mime_limits *lim,
                  struct mime_part **root)
{
    static const struct mime_limits defaults = MIME_LIMITS_DEFAULT;
    struct mime_limits l = lim ? *lim : defaults;
    if (l.max_parts < 1) l.max_parts = 1;
    struct pctx c = { msg ? msg : "", &l, 0 };
    *root = new_part(&c, NULL, NULL);
    parse_part(&c, *root, 0, msg ? len : 0, 0, false, true);
    return c.nparts;
}

static void envelope_free(struct mime_envelope *e)
{
    if (!e) return;
    free(e->date);
    free(e->subject);
    free(e->subject_utf8);
    free(e->message_id);
    free(e->in_reply_to);
    mime_addr_list_free(&e->from);
    mime_addr_list_free(&e->sender);
    mime_addr_list_free(&e->reply_to);
    mime_addr_list_free(&e->to);
    mime_addr_list_free(&e->cc);
    mime_addr_list_free(&e->bcc);
    free(e);
}

void mime_free(struct mime_part *p)
{
    /* siblings iteratively; depth is bounded by the limits */
    while (p) {
        struct mime_part *next = p->next;
        mime_free(p->children);
        free(p->type);
        free(p->subtype);
        mime_params_free(&p->type_params);
        free(p->cte_name);
        free(p->id);
        free(p->description);
        free(p->disposition);
        mime_params_free(&p->disp_params);
        for (size_t i = 0; i < p->nlanguages; i++) free(p->languages[i]);
        free(p->languages);
        free(p->location);
        free(p->md5);
        envelope_free(p->env);
        free(p);
        p = next;
    }
}

static bool is_message_part(const struct mime_part *p)
{
    return strcmp(p->type, "message") == 0 && p->nchildren == 1 && p->children->env;
}

const struct mime_part *mime_part_find(const struct mime_part *root, const unsigned *path,
                                       size_t n)
{
    const struct mime_part *cur = root;
    for (size_t i = 0; i < n && cur; i++) {
        /* a message (the root, or one just entered) that is not multipart
         * has a part 1: its own body */
        bool message = i == 0;
        if (i > 0 && is_message_part(cur)) {
            cur = cur->children;
            message = true;
        }
        if (strcmp(cur->type, "multipart") == 0) {
            const struct mime_part *ch = cur->children;
            for (unsigned k = 1; ch && k < path[i]; k++) ch = ch->next;
            cur = path[i] ? ch : NULL;
        } else if (!message || path[i] != 1) {
            cur = NULL;
        }
    }
    return cur;
}
