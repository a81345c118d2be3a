/* IMAP command grammar: RFC 9051 section 9 (and RFC 3501 section 9) plus
 * the extensions listed in imap_parse.h.  A hand-written recursive descent
 * parser over one complete command; the only recursion is in SEARCH keys
 * (imap_search_parse.c), bounded by limits.depth_max. */
#include "imap/imap_parse.h"

#include <string.h>

#include "core/util.h"
#include "imap/imap_mutf7.h"
#include "imap/imap_parse_int.h"

/* ------------------------------------------------------------------ */
/* Token reader */

int ip_fail(struct ip *p, const char *text)
{
    if (!p->err) p->err = text;
    return -1;
}

int ip_fail_code(struct ip *p, const char *code, const char *text)
{
    if (!p->err) {
        p->err = text;
        p->code = code;
    }
    return -1;
}

int ip_step(struct ip *p)
{
    if (++p->steps > p->lim->tokens_max) return ip_fail_code(p, "LIMIT", "Command has too many tokens");
    return 0;
}

void *ip_alloc(struct ip *p, size_t n)
{
    void *m = imap_arena_alloc(p->a, n);
    if (!m) ip_fail_code(p, "LIMIT", "Command too large");
    return m;
}

void *ip_vec_push(struct ip *p, struct ip_vec *vec, size_t elsz)
{
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 4;
        if (cap > SIZE_MAX / elsz / 2) {
            ip_fail_code(p, "LIMIT", "Command too large");
            return NULL;
        }
        void *nv = ip_alloc(p, cap * elsz);
        if (!nv) return NULL;
        if (vec->n) memcpy(nv, vec->v, vec->n * elsz);
        vec->v = nv;
        vec->cap = cap;
    }
    void *el = (char *)vec->v + vec->n * elsz;
    vec->n++;
    memset(el, 0, elsz);
    return el;
}

bool ip_atom_char(unsigned char c)
{
    if (c <= 0x20 || c >= 0x7f) return false;
    return !strchr("(){%*\"\\]", c);
}

static bool astring_char(unsigned char c)
{
    return ip_atom_char(c) || c == ']';
}

static bool list_char(unsigned char c)
{
    return ip_atom_char(c) || c == '%' || c == '*' || c == ']';
}

bool ip_peek(const struct ip *p, char c)
{
    return p->pos < p->len && p->b[p->pos] == c;
}

/* At the final line terminator: the command must end exactly there. */
bool ip_eol(const struct ip *p)
{
    if (p->pos + 1 == p->len && p->b[p->pos] == '\n') return true;
    return p->pos + 2 == p->len && p->b[p->pos] == '\r' && p->b[p->pos + 1] == '\n';
}

int ip_char(struct ip *p, char c, const char *what)
{
    if (!ip_peek(p, c)) return ip_fail(p, what);
    p->pos++;
    return 0;
}

int ip_sp(struct ip *p)
{
    if (ip_peek(p, ' ')) {
        p->pos++;
        return 0;
    }
    if (p->pos >= p->len || ip_eol(p)) return ip_fail(p, "Missing argument");
    return ip_fail(p, "Expected a single space");
}

static int read_run(struct ip *p, bool (*ok)(unsigned char), struct imap_str *out)
{
    size_t s = p->pos;
    while (p->pos < p->len && ok((unsigned char)p->b[p->pos])) p->pos++;
    if (p->pos == s) return -1;
    out->data = p->b + s;
    out->len = p->pos - s;
    return ip_step(p);
}

int ip_atom(struct ip *p, struct imap_str *out)
{
    if (read_run(p, ip_atom_char, out) < 0) {
        if (p->err) return -1;
        if (p->pos >= p->len || ip_eol(p)) return ip_fail(p, "Missing argument");
        return ip_fail(p, "Expected an atom");
    }
    return 0;
}

bool ip_str_eq(const struct imap_str *s, const char *kw)
{
    size_t n = strlen(kw);
    return s->len == n && ascii_ncasecmp(s->data, kw, n) == 0;
}

bool ip_kw(struct ip *p, const char *kw)
{
    size_t n = strlen(kw);
    if (p->len - p->pos < n || ascii_ncasecmp(p->b + p->pos, kw, n) != 0) return false;
    if (p->pos + n < p->len && ip_atom_char((unsigned char)p->b[p->pos + n])) return false;
    p->pos += n;
    return ip_step(p) == 0;
}

static int quoted(struct ip *p, struct imap_str *out)
{
    size_t s = ++p->pos;
    size_t esc = 0;
    for (;;) {
        if (p->pos >= p->len) return ip_fail(p, "Unterminated quoted string");
        unsigned char c = (unsigned char)p->b[p->pos];
        if (c == '"') break;
        if (c == '\r' || c == '\n') return ip_fail(p, "Unterminated quoted string");
        if (c == 0) return ip_fail(p, "NUL in quoted string");
        if (c == '\\') {
            p->pos++;
            if (p->pos >= p->len || (p->b[p->pos] != '\\' && p->b[p->pos] != '"'))
                return ip_fail(p, "Invalid escape in quoted string");
            esc++;
        }
        /* 8-bit bytes are accepted as in a literal (RFC 9051 allows UTF-8
         * here); mailbox names are checked separately. */
        p->pos++;
    }
    size_t e = p->pos++;
    if (esc == 0) {
        out->data = p->b + s;
        out->len = e - s;
        return ip_step(p);
    }
    char *d = ip_alloc(p, e - s - esc + 1);
    if (!d) return -1;
    size_t o = 0;
    for (size_t i = s; i < e; i++) {
        if (p->b[i] == '\\') i++;
        d[o++] = p->b[i];
    }
    out->data = d;
    out->len = o;
    return ip_step(p);
}

/* The diverted literal whose data would begin at off, or NULL. */
static const struct imap_extlit *ext_at(const struct ip *p, size_t off)
{
    size_t lo = 0, hi = p->next;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->ext[mid].offset < off) lo = mid + 1;
        else hi = mid;
    }
    return lo < p->next && p->ext[lo].offset == off ? &p->ext[lo] : NULL;
}

int ip_literal(struct ip *p, struct imap_str *out, bool allow_binary, bool *binary)
{
    bool bin = false;
    if (ip_peek(p, '~')) {
        if (!allow_binary) return ip_fail(p, "literal8 not allowed here");
        bin = true;
        p->pos++;
    }
    if (ip_char(p, '{', "Expected a literal") < 0) return -1;
    uint64_t n = 0;
    size_t d = p->pos;
    while (p->pos < p->len && p->b[p->pos] >= '0' && p->b[p->pos] <= '9') {
        unsigned v = (unsigned)(p->b[p->pos] - '0');
        if (n > (UINT64_MAX - v) / 10) return ip_fail_code(p, "TOOBIG", "Literal too big");
        n = n * 10 + v;
        p->pos++;
    }
    if (p->pos == d) return ip_fail(p, "Invalid literal size");
    if (ip_peek(p, '+') || ip_peek(p, '-')) p->pos++;
    if (ip_char(p, '}', "Invalid literal") < 0) return -1;
    if (ip_peek(p, '\r')) p->pos++;
    if (ip_char(p, '\n', "Literal must end the line") < 0) return -1;
    if (n > p->lim->literal_max) return ip_fail_code(p, "TOOBIG", "Literal too big");
    const struct imap_extlit *x = p->next ? ext_at(p, p->pos) : NULL;
    if (x) {
        /* The data is elsewhere; the text goes on right here. */
        if (!p->ext_ok) return ip_fail(p, "Literal not allowed here");
        if (x->size != n) return ip_fail(p, "Literal data incomplete");
        if (!bin && x->nul) return ip_fail(p, "NUL in literal (use literal8)");
        out->data = NULL;
        out->len = (size_t)n;
        p->last_ext = x;
        if (binary) *binary = bin;
        return ip_step(p);
    }
    if (n > p->len - p->pos) return ip_fail(p, "Literal data incomplete");
    out->data = p->b + p->pos;
    out->len = (size_t)n;
    if (!bin && memchr(out->data, 0, out->len)) return ip_fail(p, "NUL in literal (use literal8)");
    p->pos += (size_t)n;
    if (binary) *binary = bin;
    return ip_step(p);
}

int ip_string(struct ip *p, struct imap_str *out)
{
    if (ip_peek(p, '"')) return quoted(p, out);
    if (ip_peek(p, '{')) return ip_literal(p, out, false, NULL);
    if (p->pos >= p->len || ip_eol(p)) return ip_fail(p, "Missing argument");
    return ip_fail(p, "Expected a string");
}

int ip_astring(struct ip *p, struct imap_str *out)
{
    if (ip_peek(p, '~') && p->pos + 1 < p->len && p->b[p->pos + 1] == '{')
        return ip_fail(p, "literal8 not allowed here");
    if (ip_peek(p, '"') || ip_peek(p, '{')) return ip_string(p, out);
    if (read_run(p, astring_char, out) == 0) return 0;
    if (p->err) return -1;
    if (p->pos >= p->len || ip_eol(p)) return ip_fail(p, "Missing argument");
    return ip_fail(p, "Expected a string");
}

static int nstring(struct ip *p, struct imap_str *out)
{
    if (ip_kw(p, "NIL")) {
        out->data = NULL;
        out->len = 0;
        return 0;
    }
    return ip_string(p, out);
}

static int digits64(struct ip *p, uint64_t max, uint64_t *out)
{
    size_t s = p->pos;
    uint64_t n = 0;
    while (p->pos < p->len && p->b[p->pos] >= '0' && p->b[p->pos] <= '9') {
        n = n * 10 + (uint64_t)(p->b[p->pos] - '0');
        if (n > max) return ip_fail(p, "Number too big");
        p->pos++;
    }
    if (p->pos == s) return ip_fail(p, "Expected a number");
    *out = n;
    return ip_step(p);
}

int ip_number(struct ip *p, uint32_t *out)
{
    uint64_t v;
    if (digits64(p, UINT32_MAX, &v) < 0) return -1;
    *out = (uint32_t)v;
    return 0;
}

int ip_nz_number(struct ip *p, uint32_t *out)
{
    if (ip_number(p, out) < 0) return -1;
    if (*out == 0) return ip_fail(p, "Number must not be zero");
    return 0;
}

/* number64: 0..2^63-1 (RFC 9051 9) */
int ip_number64(struct ip *p, uint64_t *out)
{
    return digits64(p, INT64_MAX, out);
}

static int seq_number(struct ip *p, uint32_t *out)
{
    if (ip_peek(p, '*')) {
        p->pos++;
        *out = IMAP_SEQ_STAR;
        return 0;
    }
    if (!(p->pos < p->len && p->b[p->pos] >= '0' && p->b[p->pos] <= '9'))
        return ip_fail(p, "Invalid sequence set");
    if (ip_nz_number(p, out) < 0) {
        p->err = NULL;
        return ip_fail(p, "Invalid sequence set");
    }
    return 0;
}

int ip_seqset(struct ip *p, struct imap_seqset *out)
{
    memset(out, 0, sizeof *out);
    if (ip_peek(p, '$')) {
        p->pos++;
        out->saved = true;
        if (p->pos < p->len && (ip_atom_char((unsigned char)p->b[p->pos]) || p->b[p->pos] == '$'))
            return ip_fail(p, "Invalid sequence set");
        return ip_step(p);
    }
    struct ip_vec v = { 0 };
    for (;;) {
        struct imap_range *r = ip_vec_push(p, &v, sizeof *r);
        if (!r) return -1;
        if (seq_number(p, &r->lo) < 0) return -1;
        r->hi = r->lo;
        if (ip_peek(p, ':')) {
            p->pos++;
            if (seq_number(p, &r->hi) < 0) return -1;
        }
        if (ip_step(p) < 0) return -1;
        if (!ip_peek(p, ',')) break;
        p->pos++;
    }
    if (p->pos < p->len && ip_atom_char((unsigned char)p->b[p->pos])) return ip_fail(p, "Invalid sequence set");
    out->r = v.v;
    out->n = v.n;
    return 0;
}

/* flag = "\" atom / atom (system flags, flag-extension, flag-keyword) */
int ip_flag(struct ip *p, struct imap_str *out)
{
    size_t s = p->pos;
    struct imap_str a;
    if (ip_peek(p, '\\')) p->pos++;
    if (read_run(p, ip_atom_char, &a) < 0) {
        if (p->err) return -1;
        return ip_fail(p, "Invalid flag");
    }
    out->data = p->b + s;
    out->len = p->pos - s;
    return 0;
}

static int flag_list(struct ip *p, struct imap_strlist *out, bool backslash_only)
{
    struct ip_vec v = { 0 };
    if (ip_char(p, '(', "Expected a flag list") < 0) return -1;
    while (!ip_peek(p, ')')) {
        if (v.n && ip_sp(p) < 0) return -1;
        struct imap_str *f = ip_vec_push(p, &v, sizeof *f);
        if (!f || ip_flag(p, f) < 0) return -1;
        if (backslash_only && f->data[0] != '\\') return ip_fail(p, "Invalid mailbox attribute");
    }
    p->pos++;
    out->v = v.v;
    out->n = v.n;
    return 0;
}

int ip_date(struct ip *p, time_t *out)
{
    size_t s, e;
    if (ip_peek(p, '"')) {
        s = ++p->pos;
        while (p->pos < p->len && p->b[p->pos] != '"' && p->pos - s < 16) p->pos++;
        e = p->pos;
        if (ip_char(p, '"', "Invalid date") < 0) return -1;
    } else {
        s = p->pos;
        while (p->pos < p->len && ip_atom_char((unsigned char)p->b[p->pos])) p->pos++;
        e = p->pos;
    }
    if (imap_parse_date(p->b + s, e - s, out) < 0) return ip_fail(p, "Invalid date");
    return ip_step(p);
}

/* Decode a mailbox name (or LIST pattern) into a NUL-terminated UTF-8
 * arena string. */
static int decode_name(struct ip *p, const struct imap_str *s, bool fold_inbox, const char **out)
{
    size_t max = p->lim->mailbox_max;
    if (s->len > max) return ip_fail(p, "Mailbox name too long");
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)s->data[i];
        if (c < 0x20 || c == 0x7f) return ip_fail(p, "Mailbox name contains control characters");
    }
    char *d;
    if (p->flags & IMAP_PARSE_UTF8) {
        if (!imap_utf8_valid(s->data, s->len)) return ip_fail(p, "Mailbox name is not valid UTF-8");
        if (!(d = ip_alloc(p, s->len + 1))) return -1;
        memcpy(d, s->data, s->len);
        d[s->len] = '\0';
    } else {
        size_t sz = IMAP_MUTF7_DECODE_MAX(s->len);
        if (!(d = ip_alloc(p, sz))) return -1;
        int n = imap_mutf7_decode(s->data, s->len, d, sz);
        if (n < 0) return ip_fail(p, "Mailbox name is not valid modified UTF-7");
        if ((size_t)n > max) return ip_fail(p, "Mailbox name too long");
    }
    /* RFC 9051 5.1: INBOX is case-insensitive */
    if (fold_inbox && ascii_casecmp(d, "INBOX") == 0) memcpy(d, "INBOX", 5);
    *out = d;
    return 0;
}

static int mailbox(struct ip *p, const char **out)
{
    struct imap_str s;
    if (ip_astring(p, &s) < 0) return -1;
    return decode_name(p, &s, true, out);
}

/* list-mailbox = 1*list-char / string */
static int list_mailbox(struct ip *p, const char **out)
{
    struct imap_str s;
    if (ip_peek(p, '"') || ip_peek(p, '{')) {
        if (ip_string(p, &s) < 0) return -1;
    } else if (read_run(p, list_char, &s) < 0) {
        if (p->err) return -1;
        return ip_fail(p, "Expected a mailbox pattern");
    }
    return decode_name(p, &s, false, out);
}

/* ------------------------------------------------------------------ */
/* Commands */

static int c_noargs(struct ip *p, struct imap_command *c)
{
    return 0;
}

static int c_mailbox(struct ip *p, struct imap_command *c)
{
    if (ip_sp(p) < 0) return -1;
    return mailbox(p, &c->mailbox);
}

static bool base64_ok(const struct imap_str *s)
{
    if (s->len % 4) return false;
    size_t pad = 0;
    for (size_t i = 0; i < s->len; i++) {
        unsigned char ch = (unsigned char)s->data[i];
        if (ch == '=') {
            pad++;
            continue;
        }
        if (pad) return false;
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '+' || ch == '/'))
            return false;
    }
    return pad <= 2;
}

/* RFC 9051 6.2.2, RFC 4959: AUTHENTICATE mech [SP initial-response] */
static int c_authenticate(struct ip *p, struct imap_command *c)
{
    if (ip_sp(p) < 0 || ip_atom(p, &c->str1) < 0) return -1;
    if (ip_eol(p)) return 0;
    if (ip_sp(p) < 0) return -1;
    struct imap_str ir;
    if (read_run(p, ip_atom_char, &ir) < 0) {
        if (p->err) return -1;
        return ip_fail(p, "Invalid initial response");
    }
    c->has_ir = true;
    if (ir.len == 1 && ir.data[0] == '=') {
        c->str2.data = ir.data;
        c->str2.len = 0;
        return 0;
    }
    if (!base64_ok(&ir)) return ip_fail(p, "Invalid base64 in initial response");
    c->str2 = ir;
    return 0;
}

static int c_login(struct ip *p, struct imap_command *c)
{
    if (ip_sp(p) < 0 || ip_astring(p, &c->str1) < 0) return -1;
    if (ip_sp(p) < 0 || ip_astring(p, &c->str2) < 0) return -1;
    return 0;
}

/* RFC 5161: ENABLE 1*(SP capability) */
static int c_enable(struct ip *p, struct imap_command *c)
{
    struct ip_vec v = { 0 };
    do {
        struct imap_str *s;
        if (ip_sp(p) < 0 || !(s = ip_vec_push(p, &v, sizeof *s)) || ip_atom(p, s) < 0) return -1;
    } while (!ip_eol(p));
    c->list.v = v.v;
    c->list.n = v.n;
    return 0;
}

static int no_star(struct ip *p, const struct imap_seqset *s)
{
    if (s->saved) return ip_fail(p, "Invalid QRESYNC parameter");
    for (size_t i = 0; i < s->n; i++)
        if (s->r[i].lo == IMAP_SEQ_STAR || s->r[i].hi == IMAP_SEQ_STAR)
            return ip_fail(p, "\"*\" not allowed in QRESYNC parameter");
    return 0;
}

/* RFC 7162 3.2.5: QRESYNC (uidvalidity modseq [known-uids] [seq-match]) */
static int qresync(struct ip *p, struct imap_command *c)
{
    if (ip_sp(p) < 0 || ip_char(p, '(', "Expected QRESYNC parameters") < 0) return -1;
    if (ip_nz_number(p, &c->qr_uidvalidity) < 0 || ip_sp(p) < 0) return -1;
    if (ip_number64(p, &c->qr_modseq) < 0) return -1;
    if (c->qr_modseq == 0) return ip_fail(p, "Invalid QRESYNC modseq");
    c->qresync = true;
    if (ip_peek(p, ' ') && p->pos + 1 < p->len && p->b[p->pos + 1] != '(') {
        p->pos++;
        if (ip_seqset(p, &c->qr_known_uids) < 0 || no_star(p, &c->qr_known_uids) < 0) return -1;
        c->qr_has_known_uids = true;
    }
    if (ip_peek(p, ' ')) {
        p->pos++;
        if (ip_char(p, '(', "Expected QRESYNC parameters") < 0) return -1;
        if (ip_seqset(p, &c->qr_known_seqs) < 0 || no_star(p, &c->qr_known_seqs) < 0) return -1;
        if (ip_sp(p) < 0) return -1;
        if (ip_seqset(p, &c->qr_known_seq_uids) < 0 || no_star(p, &c->qr_known_seq_uids) < 0) return -1;
        if (ip_char(p, ')', "Expected \")\"") < 0) return -1;
        c->qr_has_seq_match = true;
    }
    return ip_char(p, ')', "Expected \")\"");
}

/* SELECT/EXAMINE mailbox [SP "(" select-param *(SP select-param) ")"] */
static int c_select(struct ip *p, struct imap_command *c)
{
    if (c_mailbox(p, c) < 0) return -1;
    if (ip_eol(p)) return 0;
    if (ip_sp(p) < 0 || ip_char(p, '(', "Expected select parameters") < 0) return -1;
    do {
        if (ip_kw(p, "CONDSTORE")) {
            c->condstore = true;
        } else if (ip_kw(p, "QRESYNC")) {
            if (c->qresync) return ip_fail(p, "Duplicate QRESYNC");
            if (qresync(p, c) < 0) return -1;
        } else {
            return ip_fail(p, "Unknown select parameter");
        }
    } while (ip_peek(p, ' ') && ip_sp(p) == 0);
    return ip_char(p, ')', "Expected \")\"");
}

/* RFC 6154 3: CREATE mailbox [SP "(" USE SP "(" use-attrs ")" ")"] */
static int c_create(struct ip *p, struct imap_command *c)
{
    if (c_mailbox(p, c) < 0) return -1;
    if (ip_eol(p)) return 0;
    if (ip_sp(p) < 0 || ip_char(p, '(', "Expected create parameters") < 0) return -1;
    if (!ip_kw(p, "USE")) return ip_fail(p, "Unknown create parameter");
    if (ip_sp(p) < 0 || flag_list(p, &c->list, true) < 0) return -1;
    return ip_char(p, ')', "Expected \")\"");
}

static int c_rename(struct ip *p, struct imap_command *c)
{
    if (c_mailbox(p, c) < 0 || ip_sp(p) < 0) return -1;
    return mailbox(p, &c->mailbox2);
}

static const struct {
    const char *name;
    unsigned bit;
} status_atts[] = {
    { "MESSAGES", IMAP_STATUS_MESSAGES }, { "UIDNEXT", IMAP_STATUS_UIDNEXT },
    { "UIDVALIDITY", IMAP_STATUS_UIDVALIDITY }, { "UNSEEN", IMAP_STATUS_UNSEEN },
    { "DELETED", IMAP_STATUS_DELETED }, { "SIZE", IMAP_STATUS_SIZE },
    { "RECENT", IMAP_STATUS_RECENT }, { "HIGHESTMODSEQ", IMAP_STATUS_HIGHESTMODSEQ },
    { "APPENDLIMIT", IMAP_STATUS_APPENDLIMIT },
};

static int status_att_list(struct ip *p, unsigned *out)
{
    if (ip_char(p, '(', "Expected status attributes") < 0) return -1;
    do {
        struct imap_str a;
        if (ip_atom(p, &a) < 0) return -1;
        size_t i;
        for (i = 0; i < sizeof status_atts / sizeof status_atts[0]; i++)
            if (ip_str_eq(&a, status_atts[i].name)) break;
        if (i == sizeof status_atts / sizeof status_atts[0]) return ip_fail(p, "Unknown status attribute");
        *out |= status_atts[i].bit;
    } while (ip_peek(p, ' ') && ip_sp(p) == 0);
    return ip_char(p, ')', "Expected \")\"");
}

static int c_status(struct ip *p, struct imap_command *c)
{
    if (c_mailbox(p, c) < 0 || ip_sp(p) < 0) return -1;
    return status_att_list(p, &c->status_atts);
}

/* RFC 5258 (LIST-EXTENDED), 6154, 5819 */
static int c_list(struct ip *p, struct imap_command *c)
{
    if (ip_sp(p) < 0) return -1;
    if (ip_peek(p, '(')) {
        p->pos++;
        c->list_extended = true;
        while (!ip_peek(p, ')')) {
            if (c->list_select && ip_sp(p) < 0) return -1;
            if (ip_kw(p, "SUBSCRIBED")) c->list_select |= IMAP_LISTSEL_SUBSCRIBED;
            else if (ip_kw(p, "REMOTE")) c->list_select |= IMAP_LISTSEL_REMOTE;
            else if (ip_kw(p, "RECURSIVEMATCH")) c->list_select |= IMAP_LISTSEL_RECURSIVEMATCH;
            else if (ip_kw(p, "SPECIAL-USE")) c->list_select |= IMAP_LISTSEL_SPECIAL_USE;
            else return ip_fail(p, "Unknown LIST selection option");
        }
        p->pos++;
        /* RFC 5258 3.1: RECURSIVEMATCH needs a base option it modifies */
        if ((c->list_select & IMAP_LISTSEL_RECURSIVEMATCH) &&
            !(c->list_select & (IMAP_LISTSEL_SUBSCRIBED | IMAP_LISTSEL_SPECIAL_USE)))
            return ip_fail(p, "RECURSIVEMATCH requires another selection option");
        if (ip_sp(p) < 0) return -1;
    }
    /* the reference name is not INBOX-folded: it is a prefix */
    struct imap_str ref;
    if (ip_astring(p, &ref) < 0 || decode_name(p, &ref, false, &c->mailbox) < 0) return -1;
    if (ip_sp(p) < 0) return -1;
    struct ip_vec v = { 0 };
    struct imap_str *pat;
    if (ip_peek(p, '(')) {
        p->pos++;
        c->list_extended = true;
        do {
            if (!(pat = ip_vec_push(p, &v, sizeof *pat))) return -1;
            if (list_mailbox(p, &pat->data) < 0) return -1;
            pat->len = strlen(pat->data);
        } while (ip_peek(p, ' ') && ip_sp(p) == 0);
        if (ip_char(p, ')', "Expected \")\"") < 0) return -1;
    } else {
        if (!(pat = ip_vec_push(p, &v, sizeof *pat))) return -1;
        if (list_mailbox(p, &pat->data) < 0) return -1;
        pat->len = strlen(pat->data);
    }
    c->list.v = v.v;
    c->list.n = v.n;
    if (ip_eol(p)) return 0;
    if (ip_sp(p) < 0) return -1;
    if (!ip_kw(p, "RETURN")) return ip_fail(p, "Expected RETURN");
    c->list_extended = true;
    if (ip_sp(p) < 0 || ip_char(p, '(', "Expected return options") < 0) return -1;
    bool first = true;
    while (!ip_peek(p, ')')) {
        if (!first && ip_sp(p) < 0) return -1;
        first = false;
        if (ip_kw(p, "SUBSCRIBED")) c->list_return |= IMAP_LISTRET_SUBSCRIBED;
        else if (ip_kw(p, "CHILDREN")) c->list_return |= IMAP_LISTRET_CHILDREN;
        else if (ip_kw(p, "SPECIAL-USE")) c->list_return |= IMAP_LISTRET_SPECIAL_USE;
        else if (ip_kw(p, "STATUS")) {
            if (c->list_return & IMAP_LISTRET_STATUS) return ip_fail(p, "Duplicate STATUS option");
            c->list_return |= IMAP_LISTRET_STATUS;
            if (ip_sp(p) < 0 || status_att_list(p, &c->status_atts) < 0) return -1;
        } else {
            return ip_fail(p, "Unknown LIST return option");
        }
    }
    p->pos++;
    return 0;
}

static int c_lsub(struct ip *p, struct imap_command *c)
{
    struct imap_str ref;
    if (ip_sp(p) < 0 || ip_astring(p, &ref) < 0 || decode_name(p, &ref, false, &c->mailbox) < 0) return -1;
    if (ip_sp(p) < 0) return -1;
    struct imap_str *pat = ip_alloc(p, sizeof *pat);
    if (!pat || list_mailbox(p, &pat->data) < 0) return -1;
    pat->len = strlen(pat->data);
    c->list.v = pat;
    c->list.n = 1;
    return 0;
}

/* date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE */
static int date_time(struct ip *p, time_t *t, int *zone)
{
    size_t s = ++p->pos;
    while (p->pos < p->len && p->b[p->pos] != '"' && p->pos - s < 32) p->pos++;
    size_t e = p->pos;
    if (ip_char(p, '"', "Invalid date-time") < 0) return -1;
    if (imap_parse_datetime(p->b + s, e - s, t, zone) < 0) return ip_fail(p, "Invalid date-time");
    return ip_step(p);
}

/* The message literal of APPEND: the only place its data may have been
 * diverted (imap_cmd_scan). */
static int message(struct ip *p, struct imap_append_msg *m)
{
    p->ext_ok = true;
    p->last_ext = NULL;
    int r = ip_literal(p, &m->data, true, &m->binary);
    p->ext_ok = false;
    m->ext = p->last_ext;
    return r;
}

/* RFC 9051 6.3.12, RFC 3502 (MULTIAPPEND), RFC 3516, RFC 6855 */
static int c_append(struct ip *p, struct imap_command *c)
{
    if (c_mailbox(p, c) < 0) return -1;
    struct ip_vec v = { 0 };
    do {
        struct imap_append_msg *m = ip_vec_push(p, &v, sizeof *m);
        if (!m || ip_sp(p) < 0) return -1;
        if (ip_peek(p, '(')) {
            if (flag_list(p, &m->flags, false) < 0 || ip_sp(p) < 0) return -1;
            m->has_flags = true;
        }
        if (ip_peek(p, '"')) {
            if (date_time(p, &m->date, &m->zone_min) < 0 || ip_sp(p) < 0) return -1;
            m->has_date = true;
        }
        if (ip_kw(p, "UTF8")) {
            m->utf8 = true;
            if (ip_sp(p) < 0 || ip_char(p, '(', "Expected \"(\"") < 0) return -1;
            if (!ip_peek(p, '~')) return ip_fail(p, "UTF8 data must be a literal8");
            if (message(p, m) < 0) return -1;
            if (ip_char(p, ')', "Expected \")\"") < 0) return -1;
        } else {
            if (!ip_peek(p, '{') && !ip_peek(p, '~')) return ip_fail(p, "Message must be a literal");
            if (message(p, m) < 0) return -1;
        }
    } while (!ip_eol(p));
    c->msgs = v.v;
    c->nmsgs = v.n;
    return 0;
}

static int c_uid_expunge(struct ip *p, struct imap_command *c)
{
    if (!c->uid) return 0;
    if (ip_sp(p) < 0 || ip_seqset(p, &c->set) < 0) return -1;
    c->has_set = true;
    return 0;
}

static int c_search(struct ip *p, struct imap_command *c)
{
    if (ip_sp(p) < 0) return -1;
    if (ip_kw(p, "RETURN")) {
        if (ip_search_return(p, &c->search) < 0 || ip_sp(p) < 0) return -1;
    }
    return ip_search_program(p, &c->search, false);
}

/* ---- FETCH (RFC 9051 6.4.5, RFC 3516, RFC 7162) ---- */

static bool fetch_name_char(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.';
}

static bool letter_dot(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '.';
}

static int header_list(struct ip *p, struct imap_strlist *out)
{
    struct ip_vec v = { 0 };
    if (ip_sp(p) < 0 || ip_char(p, '(', "Expected header list") < 0) return -1;
    do {
        struct imap_str *s = ip_vec_push(p, &v, sizeof *s);
        if (!s || ip_astring(p, s) < 0) return -1;
        if (s->len == 0) return ip_fail(p, "Empty header field name");
        for (size_t i = 0; i < s->len; i++) {
            unsigned char ch = (unsigned char)s->data[i];
            if (ch <= 0x20 || ch >= 0x7f || ch == ':') return ip_fail(p, "Invalid header field name");
        }
    } while (ip_peek(p, ' ') && ip_sp(p) == 0);
    out->v = v.v;
    out->n = v.n;
    return ip_char(p, ')', "Expected \")\"");
}

/* "[" section-spec "]" for BODY, or "[" [section-part] "]" for BINARY */
static int section(struct ip *p, struct imap_fetch_att *fa, bool binary)
{
    p->pos++; /* '[' */
    struct ip_vec v = { 0 };
    bool dot = false;
    while (p->pos < p->len && p->b[p->pos] >= '0' && p->b[p->pos] <= '9') {
        uint32_t *n = ip_vec_push(p, &v, sizeof *n);
        if (!n || ip_nz_number(p, n) < 0) return -1;
        dot = false;
        if (!ip_peek(p, '.')) break;
        p->pos++;
        dot = true;
    }
    fa->parts = v.v;
    fa->nparts = v.n;
    if (binary) {
        if (dot) return ip_fail(p, "Invalid section");
        return ip_char(p, ']', "Invalid section");
    }
    if (ip_peek(p, ']')) {
        if (dot) return ip_fail(p, "Invalid section");
        p->pos++;
        return 0;
    }
    if (v.n && !dot) return ip_fail(p, "Invalid section");
    struct imap_str t;
    if (read_run(p, letter_dot, &t) < 0) return p->err ? -1 : ip_fail(p, "Invalid section");
    if (ip_str_eq(&t, "HEADER")) fa->text = IMAP_SECT_HEADER;
    else if (ip_str_eq(&t, "TEXT")) fa->text = IMAP_SECT_TEXT;
    else if (ip_str_eq(&t, "MIME") && v.n) fa->text = IMAP_SECT_MIME;
    else if (ip_str_eq(&t, "HEADER.FIELDS")) fa->text = IMAP_SECT_HEADER_FIELDS;
    else if (ip_str_eq(&t, "HEADER.FIELDS.NOT")) fa->text = IMAP_SECT_HEADER_FIELDS_NOT;
    else return ip_fail(p, "Invalid section");
    if (fa->text == IMAP_SECT_HEADER_FIELDS || fa->text == IMAP_SECT_HEADER_FIELDS_NOT)
        if (header_list(p, &fa->fields) < 0) return -1;
    return ip_char(p, ']', "Invalid section");
}

static int partial(struct ip *p, struct imap_fetch_att *fa)
{
    if (!ip_peek(p, '<')) return 0;
    p->pos++;
    if (ip_number64(p, &fa->origin) < 0 || ip_char(p, '.', "Invalid partial") < 0) return -1;
    if (ip_number64(p, &fa->count) < 0) return -1;
    if (fa->count == 0) return ip_fail(p, "Invalid partial");
    fa->partial = true;
    return ip_char(p, '>', "Invalid partial");
}

static const struct {
    const char *name;
    enum imap_fetch_att_type type;
} simple_atts[] = {
    { "FLAGS", IMAP_FA_FLAGS }, { "INTERNALDATE", IMAP_FA_INTERNALDATE },
    { "RFC822.SIZE", IMAP_FA_RFC822_SIZE }, { "ENVELOPE", IMAP_FA_ENVELOPE },
    { "BODYSTRUCTURE", IMAP_FA_BODYSTRUCTURE }, { "UID", IMAP_FA_UID },
    { "MODSEQ", IMAP_FA_MODSEQ }, { "RFC822", IMAP_FA_RFC822 },
    { "RFC822.HEADER", IMAP_FA_RFC822_HEADER }, { "RFC822.TEXT", IMAP_FA_RFC822_TEXT },
};

static int fetch_att(struct ip *p, struct imap_fetch_att *fa)
{
    struct imap_str n;
    if (read_run(p, fetch_name_char, &n) < 0) return p->err ? -1 : ip_fail(p, "Invalid FETCH attribute");
    for (size_t i = 0; i < sizeof simple_atts / sizeof simple_atts[0]; i++) {
        if (ip_str_eq(&n, simple_atts[i].name)) {
            fa->type = simple_atts[i].type;
            return 0;
        }
    }
    bool body = ip_str_eq(&n, "BODY"), body_peek = ip_str_eq(&n, "BODY.PEEK");
    bool bin = ip_str_eq(&n, "BINARY"), bin_peek = ip_str_eq(&n, "BINARY.PEEK");
    bool bin_size = ip_str_eq(&n, "BINARY.SIZE");
    if (body && !ip_peek(p, '[')) {
        fa->type = IMAP_FA_BODY;
        return 0;
    }
    if (!(body || body_peek || bin || bin_peek || bin_size)) return ip_fail(p, "Unknown FETCH attribute");
    if (!ip_peek(p, '[')) return ip_fail(p, "Expected a section");
    fa->peek = body_peek || bin_peek;
    fa->type = body || body_peek ? IMAP_FA_BODY_SECTION : bin_size ? IMAP_FA_BINARY_SIZE : IMAP_FA_BINARY;
    if (section(p, fa, !(body || body_peek)) < 0) return -1;
    if (bin_size) return 0;
    return partial(p, fa);
}

static int add_att(struct ip *p, struct imap_fetch_att ***tail, enum imap_fetch_att_type t)
{
    struct imap_fetch_att *fa = ip_alloc(p, sizeof *fa);
    if (!fa) return -1;
    fa->type = t;
    **tail = fa;
    *tail = &fa->next;
    return 0;
}

static int c_fetch(struct ip *p, struct imap_command *c)
{
    if (ip_sp(p) < 0 || ip_seqset(p, &c->set) < 0 || ip_sp(p) < 0) return -1;
    struct imap_fetch_att **tail = &c->fetch;
    if (ip_kw(p, "ALL")) c->fetch_macro = IMAP_FETCH_ALL;
    else if (ip_kw(p, "FAST")) c->fetch_macro = IMAP_FETCH_FAST;
    else if (ip_kw(p, "FULL")) c->fetch_macro = IMAP_FETCH_FULL;
    if (c->fetch_macro != IMAP_FETCH_NOMACRO) {
        /* RFC 9051 6.4.5: the macros and what they stand for */
        if (add_att(p, &tail, IMAP_FA_FLAGS) < 0 || add_att(p, &tail, IMAP_FA_INTERNALDATE) < 0 ||
            add_att(p, &tail, IMAP_FA_RFC822_SIZE) < 0)
            return -1;
        if (c->fetch_macro != IMAP_FETCH_FAST && add_att(p, &tail, IMAP_FA_ENVELOPE) < 0) return -1;
        if (c->fetch_macro == IMAP_FETCH_FULL && add_att(p, &tail, IMAP_FA_BODY) < 0) return -1;
    } else if (ip_peek(p, '(')) {
        p->pos++;
        do {
            struct imap_fetch_att *fa = ip_alloc(p, sizeof *fa);
            if (!fa || fetch_att(p, fa) < 0) return -1;
            *tail = fa;
            tail = &fa->next;
        } while (ip_peek(p, ' ') && ip_sp(p) == 0);
        if (ip_char(p, ')', "Expected \")\"") < 0) return -1;
    } else {
        struct imap_fetch_att *fa = ip_alloc(p, sizeof *fa);
        if (!fa || fetch_att(p, fa) < 0) return -1;
        *tail = fa;
    }
    if (ip_eol(p)) return 0;
    /* RFC 4466 fetch-modifiers; RFC 7162 CHANGEDSINCE and VANISHED */
    if (ip_sp(p) < 0 || ip_char(p, '(', "Expected FETCH modifiers") < 0) return -1;
    do {
        if (ip_kw(p, "CHANGEDSINCE")) {
            if (c->has_changedsince) return ip_fail(p, "Duplicate CHANGEDSINCE");
            if (ip_sp(p) < 0 || ip_number64(p, &c->changedsince) < 0) return -1;
            c->has_changedsince = true;
        } else if (ip_kw(p, "VANISHED")) {
            c->vanished = true;
        } else {
            return ip_fail(p, "Unknown FETCH modifier");
        }
    } while (ip_peek(p, ' ') && ip_sp(p) == 0);
    if (ip_char(p, ')', "Expected \")\"") < 0) return -1;
    /* RFC 7162 3.2.6: VANISHED only in UID FETCH, with CHANGEDSINCE */
    if (c->vanished && (!c->uid || !c->has_changedsince))
        return ip_fail(p, "VANISHED requires UID FETCH and CHANGEDSINCE");
    return 0;
}

/* STORE seqset [SP "(" UNCHANGEDSINCE n ")"] SP [+-]FLAGS[.SILENT] SP flags */
static int c_store(struct ip *p, struct imap_command *c)
{
    if (ip_sp(p) < 0 || ip_seqset(p, &c->set) < 0 || ip_sp(p) < 0) return -1;
    if (ip_peek(p, '(')) {
        p->pos++;
        do {
            if (!ip_kw(p, "UNCHANGEDSINCE")) return ip_fail(p, "Unknown STORE modifier");
            if (c->has_unchangedsince) return ip_fail(p, "Duplicate UNCHANGEDSINCE");
            if (ip_sp(p) < 0 || ip_number64(p, &c->unchangedsince) < 0) return -1;
            c->has_unchangedsince = true;
        } while (ip_peek(p, ' ') && ip_sp(p) == 0);
        if (ip_char(p, ')', "Expected \")\"") < 0 || ip_sp(p) < 0) return -1;
    }
    struct imap_str op;
    if (ip_atom(p, &op) < 0) return -1;
    if (op.len && (op.data[0] == '+' || op.data[0] == '-')) {
        c->store_op = op.data[0] == '+' ? IMAP_STORE_ADD : IMAP_STORE_REMOVE;
        op.data++;
        op.len--;
    }
    if (ip_str_eq(&op, "FLAGS.SILENT")) c->store_silent = true;
    else if (!ip_str_eq(&op, "FLAGS")) return ip_fail(p, "Invalid STORE data item");
    if (ip_sp(p) < 0) return -1;
    if (ip_peek(p, '(')) return flag_list(p, &c->list, false);
    struct ip_vec v = { 0 };
    do {
        struct imap_str *f = ip_vec_push(p, &v, sizeof *f);
        if (!f || ip_flag(p, f) < 0) return -1;
    } while (ip_peek(p, ' ') && ip_sp(p) == 0);
    c->list.v = v.v;
    c->list.n = v.n;
    return 0;
}

static int c_copy(struct ip *p, struct imap_command *c)
{
    if (ip_sp(p) < 0 || ip_seqset(p, &c->set) < 0 || ip_sp(p) < 0) return -1;
    return mailbox(p, &c->mailbox2);
}

/* RFC 5256: SORT [RETURN (...)] (criteria) charset search-key... */
static int c_sort(struct ip *p, struct imap_command *c)
{
    static const struct {
        const char *name;
        enum imap_sort_key key;
    } keys[] = {
        { "ARRIVAL", IMAP_SORT_ARRIVAL }, { "CC", IMAP_SORT_CC }, { "DATE", IMAP_SORT_DATE },
        { "FROM", IMAP_SORT_FROM }, { "SIZE", IMAP_SORT_SIZE }, { "SUBJECT", IMAP_SORT_SUBJECT },
        { "TO", IMAP_SORT_TO }, { "DISPLAYFROM", IMAP_SORT_DISPLAYFROM },
        { "DISPLAYTO", IMAP_SORT_DISPLAYTO },
    };
    if (ip_sp(p) < 0) return -1;
    if (ip_kw(p, "RETURN")) {
        if (ip_search_return(p, &c->search) < 0 || ip_sp(p) < 0) return -1;
    }
    if (ip_char(p, '(', "Expected sort criteria") < 0) return -1;
    struct ip_vec v = { 0 };
    do {
        struct imap_sort_crit *sc = ip_vec_push(p, &v, sizeof *sc);
        if (!sc) return -1;
        if (ip_kw(p, "REVERSE")) {
            sc->reverse = true;
            if (ip_sp(p) < 0) return -1;
        }
        struct imap_str k;
        if (ip_atom(p, &k) < 0) return -1;
        size_t i;
        for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
            if (ip_str_eq(&k, keys[i].name)) break;
        if (i == sizeof keys / sizeof keys[0]) return ip_fail(p, "Unknown sort criterion");
        sc->key = keys[i].key;
    } while (ip_peek(p, ' ') && ip_sp(p) == 0);
    if (ip_char(p, ')', "Expected \")\"") < 0 || ip_sp(p) < 0) return -1;
    c->sort = v.v;
    c->nsort = v.n;
    return ip_search_program(p, &c->search, true);
}

static int c_thread(struct ip *p, struct imap_command *c)
{
    if (ip_sp(p) < 0) return -1;
    if (ip_kw(p, "ORDEREDSUBJECT")) c->thread = IMAP_THREAD_ORDEREDSUBJECT;
    else if (ip_kw(p, "REFERENCES")) c->thread = IMAP_THREAD_REFERENCES;
    else if (ip_kw(p, "REFS")) c->thread = IMAP_THREAD_REFS;
    else return ip_fail(p, "Unknown threading algorithm");
    if (ip_sp(p) < 0) return -1;
    return ip_search_program(p, &c->search, true);
}

/* RFC 2971: ID ("(" string SP nstring *(SP string SP nstring) ")" / NIL) */
static int c_id(struct ip *p, struct imap_command *c)
{
    if (ip_sp(p) < 0) return -1;
    if (ip_kw(p, "NIL")) {
        c->id_nil = true;
        return 0;
    }
    if (ip_char(p, '(', "Expected \"(\" or NIL") < 0) return -1;
    struct ip_vec v = { 0 };
    do {
        struct imap_str *f = ip_vec_push(p, &v, sizeof *f);
        if (!f || ip_string(p, f) < 0 || ip_sp(p) < 0) return -1;
        struct imap_str *val = ip_vec_push(p, &v, sizeof *val);
        if (!val || nstring(p, val) < 0) return -1;
    } while (ip_peek(p, ' ') && ip_sp(p) == 0);
    c->list.v = v.v;
    c->list.n = v.n;
    return ip_char(p, ')', "Expected \")\"");
}

static int c_getquota(struct ip *p, struct imap_command *c)
{
    if (ip_sp(p) < 0) return -1;
    return ip_astring(p, &c->str1);
}

/* RFC 9208 4.4: SETQUOTA root "(" [resource SP limit *(SP resource SP limit)] ")" */
static int c_setquota(struct ip *p, struct imap_command *c)
{
    if (c_getquota(p, c) < 0 || ip_sp(p) < 0 || ip_char(p, '(', "Expected \"(\"") < 0) return -1;
    struct ip_vec v = { 0 };
    while (!ip_peek(p, ')')) {
        if (v.n && ip_sp(p) < 0) return -1;
        struct imap_quota_res *r = ip_vec_push(p, &v, sizeof *r);
        if (!r || ip_atom(p, &r->name) < 0 || ip_sp(p) < 0 || ip_number64(p, &r->limit) < 0) return -1;
    }
    p->pos++;
    c->quota = v.v;
    c->nquota = v.n;
    return 0;
}

/* RFC 4314 section 3 */
static int c_acl_ident(struct ip *p, struct imap_command *c)
{
    if (c_mailbox(p, c) < 0 || ip_sp(p) < 0) return -1;
    return ip_astring(p, &c->str1);
}

static int c_setacl(struct ip *p, struct imap_command *c)
{
    if (c_acl_ident(p, c) < 0 || ip_sp(p) < 0) return -1;
    return ip_astring(p, &c->str2);
}

/* ------------------------------------------------------------------ */

typedef int (*cmd_fn)(struct ip *p, struct imap_command *c);

static const struct cmd_def {
    const char *name;
    enum imap_cmd_name id;
    cmd_fn fn;
    bool uid_ok;
} commands[] = {
    { "CAPABILITY", IMAP_CMD_CAPABILITY, c_noargs, false },
    { "NOOP", IMAP_CMD_NOOP, c_noargs, false },
    { "LOGOUT", IMAP_CMD_LOGOUT, c_noargs, false },
    { "STARTTLS", IMAP_CMD_STARTTLS, c_noargs, false },
    { "AUTHENTICATE", IMAP_CMD_AUTHENTICATE, c_authenticate, false },
    { "LOGIN", IMAP_CMD_LOGIN, c_login, false },
    { "ENABLE", IMAP_CMD_ENABLE, c_enable, false },
    { "SELECT", IMAP_CMD_SELECT, c_select, false },
    { "EXAMINE", IMAP_CMD_EXAMINE, c_select, false },
    { "CREATE", IMAP_CMD_CREATE, c_create, false },
    { "DELETE", IMAP_CMD_DELETE, c_mailbox, false },
    { "RENAME", IMAP_CMD_RENAME, c_rename, false },
    { "SUBSCRIBE", IMAP_CMD_SUBSCRIBE, c_mailbox, false },
    { "UNSUBSCRIBE", IMAP_CMD_UNSUBSCRIBE, c_mailbox, false },
    { "LIST", IMAP_CMD_LIST, c_list, false },
    { "LSUB", IMAP_CMD_LSUB, c_lsub, false },
    { "NAMESPACE", IMAP_CMD_NAMESPACE, c_noargs, false },
    { "STATUS", IMAP_CMD_STATUS, c_status, false },
    { "APPEND", IMAP_CMD_APPEND, c_append, false },
    { "IDLE", IMAP_CMD_IDLE, c_noargs, false },
    { "CHECK", IMAP_CMD_CHECK, c_noargs, false },
    { "CLOSE", IMAP_CMD_CLOSE, c_noargs, false },
    { "UNSELECT", IMAP_CMD_UNSELECT, c_noargs, false },
    { "EXPUNGE", IMAP_CMD_EXPUNGE, c_uid_expunge, true },
    { "SEARCH", IMAP_CMD_SEARCH, c_search, true },
    { "FETCH", IMAP_CMD_FETCH, c_fetch, true },
    { "STORE", IMAP_CMD_STORE, c_store, true },
    { "COPY", IMAP_CMD_COPY, c_copy, true },
    { "MOVE", IMAP_CMD_MOVE, c_copy, true },
    { "SORT", IMAP_CMD_SORT, c_sort, true },
    { "THREAD", IMAP_CMD_THREAD, c_thread, true },
    { "ID", IMAP_CMD_ID, c_id, false },
    { "GETQUOTA", IMAP_CMD_GETQUOTA, c_getquota, false },
    { "GETQUOTAROOT", IMAP_CMD_GETQUOTAROOT, c_mailbox, false },
    { "SETQUOTA", IMAP_CMD_SETQUOTA, c_setquota, false },
    { "GETACL", IMAP_CMD_GETACL, c_mailbox, false },
    { "SETACL", IMAP_CMD_SETACL, c_setacl, false },
    { "DELETEACL", IMAP_CMD_DELETEACL, c_acl_ident, false },
    { "LISTRIGHTS", IMAP_CMD_LISTRIGHTS, c_acl_ident, false },
    { "MYRIGHTS", IMAP_CMD_MYRIGHTS, c_mailbox, false },
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

const char *imap_cmd_name_str(enum imap_cmd_name n)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (commands[i].id == n) return commands[i].name;
    return "UNKNOWN";
}

static const struct cmd_def *lookup(const struct imap_str *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (ip_str_eq(name, commands[i].name)) return &commands[i];
    return NULL;
}

static int finish(struct ip *p, struct imap_err *err, bool tagged, int r)
{
    if (r == 0) return 0;
    err->tagged = tagged;
    err->text = p->err ? p->err : "Syntax error";
    err->code = p->code;
    err->pos = p->pos;
    return -1;
}

int imap_parse_command(const char *buf, size_t len, const struct imap_limits *lim, unsigned flags,
                       struct imap_arena *a, struct imap_command *cmd, struct imap_err *err)
{
    return imap_parse_command_ext(buf, len, NULL, 0, lim, flags, a, cmd, err);
}

int imap_parse_command_ext(const char *buf, size_t len, const struct imap_extlit *ext, size_t next,
                           const struct imap_limits *lim, unsigned flags, struct imap_arena *a,
                           struct imap_command *cmd, struct imap_err *err)
{
    memset(cmd, 0, sizeof *cmd);
    memset(err, 0, sizeof *err);
    struct ip p = { .b = buf, .len = len, .lim = lim, .flags = flags, .a = a, .ext = ext,
                    .next = ext ? next : 0 };

    if (len == 0 || buf[len - 1] != '\n') return finish(&p, err, false, ip_fail(&p, "Incomplete command"));
    if (ip_eol(&p)) return finish(&p, err, false, ip_fail(&p, "Empty command line"));
    size_t t = 0;
    while (t < len && astring_char((unsigned char)buf[t]) && buf[t] != '+') t++;
    p.pos = t;
    if (t == 0 || !(buf[t] == ' ' || ip_eol(&p))) return finish(&p, err, false, ip_fail(&p, "Invalid tag"));
    char *tag = ip_alloc(&p, t + 1);
    if (!tag) return finish(&p, err, false, -1);
    memcpy(tag, buf, t);
    cmd->tag = tag;
    if (ip_eol(&p)) return finish(&p, err, true, ip_fail(&p, "Missing command"));
    p.pos = t + 1;

    struct imap_str name;
    if (ip_atom(&p, &name) < 0) {
        p.err = NULL;
        return finish(&p, err, true, ip_fail(&p, "Missing command"));
    }
    const struct cmd_def *def = lookup(&name);
    if (ip_str_eq(&name, "UID")) {
        cmd->uid = true;
        if (ip_sp(&p) < 0 || ip_atom(&p, &name) < 0) return finish(&p, err, true, -1);
        def = lookup(&name);
        if (def && !def->uid_ok) def = NULL;
    }
    if (!def) return finish(&p, err, true, ip_fail(&p, "Unknown command"));
    cmd->name = def->id;
    int r = def->fn(&p, cmd);
    if (r == 0 && !ip_eol(&p)) {
        if (p.pos < p.len && p.b[p.pos] == ' ') r = ip_fail(&p, "Unexpected extra arguments");
        else r = ip_fail(&p, "Syntax error");
    }
    return finish(&p, err, true, r);
}
