/* SORT and THREAD (RFC 5256): see imap_sort.h. */
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "imap/imap_sort.h"

/* ---- base subject (RFC 5256 2.1) ------------------------------------------ */

/* subj-blob = "[" *BLOBCHAR "]" *WSP: the end of one at p, or p. */
static size_t blob(const char *s, size_t p, size_t end)
{
    if (p >= end || s[p] != '[') return p;
    size_t i = p + 1;
    while (i < end && s[i] != '[' && s[i] != ']') i++;
    if (i >= end || s[i] != ']') return p;
    i++;
    while (i < end && s[i] == ' ') i++;
    return i;
}

/* subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":" */
static size_t refwd(const char *s, size_t p, size_t end)
{
    size_t i = p;
    if (end - i >= 3 && ascii_ncasecmp(s + i, "fwd", 3) == 0) i += 3;
    else if (end - i >= 2 && (ascii_ncasecmp(s + i, "fw", 2) == 0 || ascii_ncasecmp(s + i, "re", 2) == 0)) i += 2;
    else return p;
    while (i < end && s[i] == ' ') i++;
    i = blob(s, i, end);
    if (i < end && s[i] == ':') return i + 1;
    return p;
}

char *imap_base_subject(const char *subject, bool *reply)
{
    /* (1) the caller decoded encoded-words; whitespace becomes one space */
    sbuf b = SBUF_INIT;
    for (const char *p = subject ? subject : ""; *p; p++) {
        char c = *p == '\t' || *p == '\r' || *p == '\n' ? ' ' : *p;
        if (c == ' ' && b.len && b.data[b.len - 1] == ' ') continue;
        sbuf_putc(&b, c);
    }
    const char *s = b.data ? b.data : "";
    size_t start = 0, end = b.len;
    bool rep = false;
    for (;;) {
        /* (2) trailers */
        for (;;) {
            if (end > start && s[end - 1] == ' ') end--;
            else if (end - start >= 5 && ascii_ncasecmp(s + end - 5, "(fwd)", 5) == 0) end -= 5, rep = true;
            else break;
        }
        /* (3)-(5) leaders and blobs */
        for (;;) {
            size_t before = start;
            for (;;) {
                if (start < end && s[start] == ' ') {
                    start++;
                    continue;
                }
                size_t p = start;
                for (size_t q; (q = blob(s, p, end)) > p;) p = q;
                size_t q = refwd(s, p, end);
                if (q == p) break;
                start = q;
                rep = true;
            }
            size_t q = blob(s, start, end);
            if (q > start && q < end) start = q;
            if (start == before) break;
        }
        /* (6) "[fwd: ... ]" */
        if (end - start >= 6 && ascii_ncasecmp(s + start, "[fwd:", 5) == 0 && s[end - 1] == ']') {
            start += 5;
            end--;
            rep = true;
            continue;
        }
        break;
    }
    char *out = xstrndup(s + start, end - start);
    sbuf_free(&b);
    if (reply) *reply = rep;
    return out;
}

/* ---- dates and message-ids ---------------------------------------------------- */

static size_t skip_cfws(const char *v, size_t i, size_t len)
{
    for (;;) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n')) i++;
        if (i < len && v[i] == '(') {
            int depth = 0;
            for (; i < len; i++) {
                if (v[i] == '\\' && i + 1 < len) i++;
                else if (v[i] == '(') depth++;
                else if (v[i] == ')' && --depth == 0) {
                    i++;
                    break;
                }
            }
            continue;
        }
        return i;
    }
}

static int number(const char *v, size_t *i, size_t len, int maxd, int *out)
{
    int n = 0, d = 0;
    while (*i < len && v[*i] >= '0' && v[*i] <= '9' && d < maxd) n = n * 10 + (v[(*i)++] - '0'), d++;
    *out = n;
    return d;
}

int imap_parse_sent_date(const char *v, size_t len, time_t *out)
{
    static const char mon[12][4] = { "jan", "feb", "mar", "apr", "may", "jun",
                                     "jul", "aug", "sep", "oct", "nov", "dec" };
    size_t i = skip_cfws(v, 0, len);
    const char *comma = memchr(v + i, ',', len - i);
    if (comma && comma - (v + i) <= 12) i = skip_cfws(v, (size_t)(comma - v) + 1, len);
    int d, y, h, mi, sec = 0;
    if (number(v, &i, len, 2, &d) == 0) return -1;
    i = skip_cfws(v, i, len);
    while (i < len && v[i] == '-') i++;
    if (len - i < 3) return -1;
    int m = -1;
    for (int k = 0; k < 12; k++)
        if (ascii_ncasecmp(v + i, mon[k], 3) == 0) m = k;
    if (m < 0) return -1;
    i += 3;
    while (i < len && ((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z'))) i++;
    i = skip_cfws(v, i, len);
    while (i < len && v[i] == '-') i++;
    int ny = number(v, &i, len, 4, &y);
    if (ny == 2) y += y < 50 ? 2000 : 1900;       /* RFC 5322 4.3 */
    else if (ny == 3) y += 1900;
    else if (ny != 4) return -1;
    i = skip_cfws(v, i, len);
    if (number(v, &i, len, 2, &h) == 0 || i >= len || v[i] != ':') return -1;
    i++;
    if (number(v, &i, len, 2, &mi) == 0) return -1;
    if (i < len && v[i] == ':') {
        i++;
        if (number(v, &i, len, 2, &sec) == 0) return -1;
    }
    if (d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return -1;
    i = skip_cfws(v, i, len);
    int zone = 0;
    if (i < len && (v[i] == '+' || v[i] == '-')) {
        int sign = v[i] == '-' ? -1 : 1, z;
        i++;
        if (number(v, &i, len, 4, &z) != 4) return -1;
        zone = sign * ((z / 100) * 60 + z % 100);
    } else {
        static const struct { const char *n; int min; } named[] = {
            { "UT", 0 }, { "GMT", 0 }, { "EST", -300 }, { "EDT", -240 }, { "CST", -360 },
            { "CDT", -300 }, { "MST", -420 }, { "MDT", -360 }, { "PST", -480 }, { "PDT", -420 },
        };
        for (size_t k = 0; k < sizeof named / sizeof named[0]; k++) {
            size_t n = strlen(named[k].n);
            if (len - i >= n && ascii_ncasecmp(v + i, named[k].n, n) == 0) zone = named[k].min;
        }
        /* military and unknown zones mean -0000 (RFC 5322 4.3) */
    }
    struct tm tm = { 0 };
    tm.tm_mday = d;
    tm.tm_mon = m;
    tm.tm_year = y - 1900;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    *out = timegm(&tm) - (time_t)zone * 60;
    return 0;
}

/* Bound on the ids taken from one header (References can be long; the
 * oldest matter least, but RFC 5256 links them in order, so keep the
 * newest). */
#define MSGIDS_MAX 200

void imap_msgids(const char *v, size_t len, char ***ids, size_t *n)
{
    size_t first = *n;
    for (size_t i = 0; i < len; i++) {
        if (v[i] != '<') continue;
        const char *gt = memchr(v + i + 1, '>', len - i - 1);
        if (!gt) return;
        sbuf id = SBUF_INIT;
        for (const char *p = v + i + 1; p < gt; p++)
            if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') sbuf_putc(&id, *p);
        i = (size_t)(gt - v);
        if (id.len == 0) {
            sbuf_free(&id);
            continue;
        }
        if (*n - first >= MSGIDS_MAX) {
            free((*ids)[first]);
            memmove(*ids + first, *ids + first + 1, (MSGIDS_MAX - 1) * sizeof **ids);
            (*n)--;
        }
        *ids = xrealloc(*ids, (*n + 1) * sizeof **ids);
        (*ids)[(*n)++] = sbuf_detach(&id);
    }
}

/* ---- a merge sort with a context (qsort has none) --------------------------------- */

typedef int (*cmp_fn)(const void *a, const void *b, const void *ctx);

static void msort(void **a, void **tmp, size_t n, cmp_fn cmp, const void *ctx)
{
    if (n < 2) return;
    size_t h = n / 2;
    msort(a, tmp, h, cmp, ctx);
    msort(a + h, tmp, n - h, cmp, ctx);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = cmp(a[j], a[i], ctx) < 0 ? a[j++] : a[i++];
    while (i < h) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

static void sort_ptrs(void **a, size_t n, cmp_fn cmp, const void *ctx)
{
    void **tmp = xcalloc(n ? n : 1, sizeof *tmp);
    msort(a, tmp, n, cmp, ctx);
    free(tmp);
}

/* ---- SORT -------------------------------------------------------------------------- */

struct sort_ctx {
    const struct imap_sort_crit *crit;
    size_t n;
};

static int cmp_num(uint64_t a, uint64_t b)
{
    return a < b ? -1 : a > b;
}

static int cmp_str(const char *a, const char *b)
{
    int r = ascii_casecmp(a ? a : "", b ? b : "");
    return r < 0 ? -1 : r > 0;
}

static int cmp_msgs(const void *pa, const void *pb, const void *pc)
{
    const struct imap_sort_msg *a = pa, *b = pb;
    const struct sort_ctx *c = pc;
    for (size_t i = 0; i < c->n; i++) {
        int r = 0;
        switch (c->crit[i].key) {
        case IMAP_SORT_ARRIVAL: r = cmp_num((uint64_t)a->arrival, (uint64_t)b->arrival); break;
        case IMAP_SORT_DATE: r = a->sent < b->sent ? -1 : a->sent > b->sent; break;
        case IMAP_SORT_SIZE: r = cmp_num(a->size, b->size); break;
        case IMAP_SORT_FROM: r = cmp_str(a->from, b->from); break;
        case IMAP_SORT_TO: r = cmp_str(a->to, b->to); break;
        case IMAP_SORT_CC: r = cmp_str(a->cc, b->cc); break;
        case IMAP_SORT_SUBJECT: r = cmp_str(a->subject, b->subject); break;
        default: break;
        }
        if (c->crit[i].reverse) r = -r;
        if (r) return r;
    }
    return cmp_num(a->seq, b->seq);
}

static void sort_msgs(struct imap_sort_msg *msgs, size_t n, const struct sort_ctx *c)
{
    void **p = xcalloc(n ? n : 1, sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = &msgs[i];
    sort_ptrs(p, n, cmp_msgs, c);
    struct imap_sort_msg *copy = xcalloc(n ? n : 1, sizeof *copy);
    for (size_t i = 0; i < n; i++) copy[i] = *(struct imap_sort_msg *)p[i];
    memcpy(msgs, copy, n * sizeof *msgs);
    free(copy);
    free(p);
}

void imap_sort(struct imap_sort_msg *msgs, size_t n, const struct imap_sort_crit *crit, size_t ncrit)
{
    struct sort_ctx c = { crit, ncrit };
    sort_msgs(msgs, n, &c);
}

/* ---- THREAD=ORDEREDSUBJECT (RFC 5256 3) ---------------------------------------------- */

void imap_thread_orderedsubject(struct imap_sort_msg *msgs, size_t n, sbuf *out)
{
    static const struct imap_sort_crit by[] = { { IMAP_SORT_SUBJECT, false }, { IMAP_SORT_DATE, false } };
    imap_sort(msgs, n, by, 2);
    /* threads: [start, end) runs of one subject, ordered by their first message */
    size_t *starts = xcalloc(n + 1, sizeof *starts);
    size_t nt = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || cmp_str(msgs[i].subject, msgs[i - 1].subject) != 0) starts[nt++] = i;
    starts[nt] = n;
    void **firsts = xcalloc(nt ? nt : 1, sizeof *firsts);
    for (size_t t = 0; t < nt; t++) firsts[t] = &msgs[starts[t]];
    static const struct imap_sort_crit by_date[] = { { IMAP_SORT_DATE, false } };
    struct sort_ctx c = { by_date, 1 };
    sort_ptrs(firsts, nt, cmp_msgs, &c);
    for (size_t t = 0; t < nt; t++) {
        size_t a = (size_t)((struct imap_sort_msg *)firsts[t] - msgs), b = a + 1;
        while (b < n && cmp_str(msgs[b].subject, msgs[a].subject) == 0) b++;
        sbuf_printf(out, "(%u", msgs[a].num);
        if (b - a == 2) sbuf_printf(out, " %u", msgs[a + 1].num);
        else if (b - a > 2) {
            sbuf_putc(out, ' ');
            for (size_t k = a + 1; k < b; k++) sbuf_printf(out, "(%u)", msgs[k].num);
        }
        sbuf_putc(out, ')');
    }
    free(firsts);
    free(starts);
}

/* ---- THREAD=REFERENCES (RFC 5256 3, after Zawinski) --------------------------------- */

struct cont {
    struct imap_sort_msg *msg;      /* NULL: a dummy */
    const char *id;
    struct cont *parent, *child, *next;
    time_t date;
    uint32_t seq;
    size_t root;                    /* index in the root array */
};

struct threader {
    struct cont *c;
    size_t nc, cap;
    struct cont **table;            /* open addressing by id */
    size_t tsize;
};

static size_t hash_str(const char *s)
{
    size_t h = 5381;
    for (; *s; s++) h = h * 33 + (unsigned char)*s;
    return h;
}

static struct cont *new_cont(struct threader *t)
{
    struct cont *c = &t->c[t->nc++];
    memset(c, 0, sizeof *c);
    return c;
}

static struct cont *lookup(struct threader *t, const char *id, bool create)
{
    size_t i = hash_str(id) & (t->tsize - 1);
    while (t->table[i]) {
        if (strcmp(t->table[i]->id, id) == 0) return t->table[i];
        i = (i + 1) & (t->tsize - 1);
    }
    if (!create) return NULL;
    struct cont *c = new_cont(t);
    c->id = id;
    t->table[i] = c;
    return c;
}

/* Would making child a child of parent create a loop? */
static bool is_ancestor(const struct cont *maybe, const struct cont *of)
{
    for (const struct cont *p = of; p; p = p->parent)
        if (p == maybe) return true;
    return false;
}

static void unlink_cont(struct cont *c)
{
    if (!c->parent) return;
    struct cont **pp = &c->parent->child;
    while (*pp && *pp != c) pp = &(*pp)->next;
    if (*pp) *pp = c->next;
    c->parent = NULL;
    c->next = NULL;
}

static void add_child(struct cont *parent, struct cont *c)
{
    c->parent = parent;
    c->next = NULL;
    struct cont **pp = &parent->child;
    while (*pp) pp = &(*pp)->next;
    *pp = c;
}

/* Step 4: prune dummies; returns the new sibling list. */
static struct cont *prune(struct cont *list, struct cont *parent, bool root)
{
    struct cont *head = NULL, **tail = &head;
    struct cont *next;
    for (struct cont *c = list; c; c = next) {
        next = c->next;
        c->child = prune(c->child, c, false);
        size_t nch = 0;
        for (struct cont *k = c->child; k; k = k->next) nch++;
        if (!c->msg && nch == 0) continue;
        if (!c->msg && (!root || nch == 1)) {
            for (struct cont *k = c->child; k; k = k->next) {
                k->parent = parent;
                *tail = k;
                tail = &k->next;
            }
            continue;
        }
        c->parent = parent;
        *tail = c;
        tail = &c->next;
    }
    *tail = NULL;
    return head;
}

static const struct imap_sort_msg *first_msg(const struct cont *c)
{
    while (c && !c->msg) c = c->child;
    return c ? c->msg : NULL;
}

static const char *cont_subject(const struct cont *c)
{
    const struct imap_sort_msg *m = first_msg(c);
    return m && m->subject ? m->subject : "";
}

/* Slot of subject (ASCII case-insensitive) in an open-addressing table
 * of root containers: its entry, or the empty slot for it. */
static size_t subject_slot(struct cont *const *st, size_t size, const char *subj)
{
    size_t h = 5381;
    for (const char *p = subj; *p; p++) {
        char ch = *p >= 'A' && *p <= 'Z' ? (char)(*p + 32) : *p;
        h = h * 33 + (unsigned char)ch;
    }
    size_t j = h & (size - 1);
    while (st[j] && ascii_casecmp(cont_subject(st[j]), subj) != 0) j = (j + 1) & (size - 1);
    return j;
}

static int cmp_cont(const void *pa, const void *pb, const void *ctx)
{
    const struct cont *a = pa, *b = pb;
    (void)ctx;
    if (a->date != b->date) return a->date < b->date ? -1 : 1;
    return cmp_num(a->seq, b->seq);
}

/* Step 6: sort siblings by date; a dummy takes its first child's. */
static struct cont *sort_siblings(struct cont *list)
{
    size_t n = 0;
    for (struct cont *c = list; c; c = c->next) {
        c->child = sort_siblings(c->child);
        if (c->msg) {
            c->date = c->msg->sent;
            c->seq = c->msg->seq;
        } else if (c->child) {
            c->date = c->child->date;
            c->seq = c->child->seq;
        }
        n++;
    }
    if (n < 2) return list;
    void **a = xcalloc(n, sizeof *a);
    size_t i = 0;
    for (struct cont *c = list; c; c = c->next) a[i++] = c;
    sort_ptrs(a, n, cmp_cont, NULL);
    for (i = 0; i + 1 < n; i++) ((struct cont *)a[i])->next = a[i + 1];
    ((struct cont *)a[n - 1])->next = NULL;
    struct cont *head = a[0];
    free(a);
    return head;
}

static void put_node(const struct cont *c, sbuf *out, bool printed)
{
    if (c->msg) {
        if (printed) sbuf_putc(out, ' ');
        sbuf_printf(out, "%u", c->msg->num);
        printed = true;
    }
    if (!c->child) return;
    if (!c->child->next) {
        put_node(c->child, out, printed);
        return;
    }
    if (printed) sbuf_putc(out, ' ');
    for (const struct cont *k = c->child; k; k = k->next) {
        sbuf_putc(out, '(');
        put_node(k, out, false);
        sbuf_putc(out, ')');
    }
}

void imap_thread_references(struct imap_sort_msg *msgs, size_t n, sbuf *out)
{
    struct threader t = { 0 };
    size_t ids = n;
    for (size_t i = 0; i < n; i++) ids += msgs[i].nrefs;
    /* ids + containers for messages without a usable id, and the dummies
     * of step 5 (at most one per root) */
    t.cap = 2 * (ids + n) + 1;
    t.c = xcalloc(t.cap, sizeof *t.c);
    t.tsize = 16;
    while (t.tsize < 2 * ids) t.tsize *= 2;
    t.table = xcalloc(t.tsize, sizeof *t.table);

    /* Step 1 */
    for (size_t i = 0; i < n; i++) {
        struct imap_sort_msg *m = &msgs[i];
        struct cont *c = m->message_id ? lookup(&t, m->message_id, true) : NULL;
        if (!c || c->msg) c = new_cont(&t);    /* none, or a duplicate id */
        c->msg = m;
        struct cont *prev = NULL;
        for (size_t r = 0; r < m->nrefs; r++) {
            struct cont *rc = lookup(&t, m->refs[r], true);
            if (prev && !rc->parent && rc != prev && !is_ancestor(rc, prev)) add_child(prev, rc);
            prev = rc;
        }
        if (c->parent) unlink_cont(c);
        if (prev && prev != c && !is_ancestor(c, prev)) add_child(prev, c);
    }
    free(t.table);

    /* Steps 2 and 4 */
    struct cont *roots = NULL, **tail = &roots;
    for (size_t i = 0; i < t.nc; i++) {
        if (t.c[i].parent) continue;
        t.c[i].next = NULL;
        *tail = &t.c[i];
        tail = &t.c[i].next;
    }
    roots = prune(roots, NULL, true);

    /* Step 5: gather roots of one base subject */
    size_t nroots = 0;
    for (struct cont *c = roots; c; c = c->next) nroots++;
    struct cont **ra = xcalloc(nroots ? nroots : 1, sizeof *ra);
    size_t k = 0;
    for (struct cont *c = roots; c; c = c->next) {
        c->root = k;
        ra[k++] = c;
    }
    size_t ssize = 16;
    while (ssize < 2 * nroots) ssize *= 2;
    struct cont **st = xcalloc(ssize, sizeof *st);
    for (size_t i = 0; i < nroots; i++) {
        struct cont *c = ra[i];
        const char *subj = cont_subject(c);
        if (!*subj) continue;
        size_t j = subject_slot(st, ssize, subj);
        struct cont *old = st[j];
        if (!old || (old->msg && !c->msg) || (old->msg && old->msg->reply && c->msg && !c->msg->reply))
            st[j] = c;
    }
    for (size_t i = 0; i < nroots; i++) {
        struct cont *c = ra[i];
        if (!c) continue;
        const char *subj = cont_subject(c);
        if (!*subj) continue;
        size_t j = subject_slot(st, ssize, subj);
        struct cont *o = st[j];
        if (!o || o == c) continue;
        if (!o->msg && !c->msg) {
            struct cont *next;
            for (struct cont *x = c->child; x; x = next) {
                next = x->next;
                add_child(o, x);
            }
            c->child = NULL;
            ra[i] = NULL;
        } else if (!o->msg) {
            ra[i] = NULL;
            add_child(o, c);
        } else if (!c->msg) {
            ra[o->root] = NULL;
            add_child(c, o);
            st[j] = c;
        } else if (!o->msg->reply && c->msg->reply) {
            ra[i] = NULL;
            add_child(o, c);
        } else if (o->msg->reply && !c->msg->reply) {
            ra[o->root] = NULL;
            add_child(c, o);
            st[j] = c;
        } else {
            struct cont *d = new_cont(&t);
            d->root = o->root;
            ra[o->root] = d;
            ra[i] = NULL;
            add_child(d, o);
            add_child(d, c);
            st[j] = d;
        }
    }
    free(st);
    roots = NULL;
    tail = &roots;
    for (size_t i = 0; i < nroots; i++) {
        if (!ra[i]) continue;
        ra[i]->parent = NULL;
        ra[i]->next = NULL;
        *tail = ra[i];
        tail = &ra[i]->next;
    }
    free(ra);

    /* Steps 6 and 7 */
    roots = sort_siblings(roots);
    for (struct cont *c = roots; c; c = c->next) {
        sbuf_putc(out, '(');
        put_node(c, out, false);
        sbuf_putc(out, ')');
    }
    free(t.c);
}
