/* SEARCH keys (RFC 9051 6.4.4, RFC 3501 6.4.4) with MODSEQ (RFC 7162),
 * OLDER/YOUNGER (RFC 5032), "$" (RFC 5182) and the RETURN options of
 * ESEARCH (RFC 4731), parsed into a tree.  Recursion ("(", NOT, OR) is
 * bounded by limits.depth_max (and IMAP_DEPTH_HARD_MAX). */
#include <string.h>

#include "core/util.h"
#include "imap/imap_parse_int.h"

enum arg { A_NONE, A_ASTRING, A_DATE, A_NUM64, A_NZNUM, A_FLAG, A_SET, A_HEADER, A_NOT, A_OR, A_MODSEQ };

static const struct {
    const char *name;
    enum imap_search_key key;
    enum arg arg;
} keys[] = {
    { "ALL", IMAP_SK_ALL, A_NONE }, { "ANSWERED", IMAP_SK_ANSWERED, A_NONE },
    { "DELETED", IMAP_SK_DELETED, A_NONE }, { "DRAFT", IMAP_SK_DRAFT, A_NONE },
    { "FLAGGED", IMAP_SK_FLAGGED, A_NONE }, { "NEW", IMAP_SK_NEW, A_NONE },
    { "OLD", IMAP_SK_OLD, A_NONE }, { "RECENT", IMAP_SK_RECENT, A_NONE },
    { "SEEN", IMAP_SK_SEEN, A_NONE }, { "UNANSWERED", IMAP_SK_UNANSWERED, A_NONE },
    { "UNDELETED", IMAP_SK_UNDELETED, A_NONE }, { "UNDRAFT", IMAP_SK_UNDRAFT, A_NONE },
    { "UNFLAGGED", IMAP_SK_UNFLAGGED, A_NONE }, { "UNSEEN", IMAP_SK_UNSEEN, A_NONE },
    { "KEYWORD", IMAP_SK_KEYWORD, A_FLAG }, { "UNKEYWORD", IMAP_SK_UNKEYWORD, A_FLAG },
    { "BCC", IMAP_SK_BCC, A_ASTRING }, { "BODY", IMAP_SK_BODY, A_ASTRING },
    { "CC", IMAP_SK_CC, A_ASTRING }, { "FROM", IMAP_SK_FROM, A_ASTRING },
    { "SUBJECT", IMAP_SK_SUBJECT, A_ASTRING }, { "TEXT", IMAP_SK_TEXT, A_ASTRING },
    { "TO", IMAP_SK_TO, A_ASTRING }, { "HEADER", IMAP_SK_HEADER, A_HEADER },
    { "BEFORE", IMAP_SK_BEFORE, A_DATE }, { "ON", IMAP_SK_ON, A_DATE },
    { "SINCE", IMAP_SK_SINCE, A_DATE }, { "SENTBEFORE", IMAP_SK_SENTBEFORE, A_DATE },
    { "SENTON", IMAP_SK_SENTON, A_DATE }, { "SENTSINCE", IMAP_SK_SENTSINCE, A_DATE },
    { "LARGER", IMAP_SK_LARGER, A_NUM64 }, { "SMALLER", IMAP_SK_SMALLER, A_NUM64 },
    { "OLDER", IMAP_SK_OLDER, A_NZNUM }, { "YOUNGER", IMAP_SK_YOUNGER, A_NZNUM },
    { "UID", IMAP_SK_UID, A_SET }, { "NOT", IMAP_SK_NOT, A_NOT }, { "OR", IMAP_SK_OR, A_OR },
    { "MODSEQ", IMAP_SK_MODSEQ, A_MODSEQ },
};

static int search_key(struct ip *p, struct imap_search **out);

static struct imap_search *node(struct ip *p, enum imap_search_key k)
{
    struct imap_search *n = ip_alloc(p, sizeof *n);
    if (n) n->key = k;
    return n;
}

static int enter(struct ip *p)
{
    unsigned max = p->lim->depth_max < IMAP_DEPTH_HARD_MAX ? p->lim->depth_max : IMAP_DEPTH_HARD_MAX;
    if (++p->depth > max) return ip_fail_code(p, "LIMIT", "Search nested too deeply");
    return 0;
}

/* search-key *(SP search-key), ended by ")" (in parens) or the line end */
static int key_list(struct ip *p, struct imap_search *and, bool paren)
{
    struct imap_search **tail = &and->child;
    for (;;) {
        struct imap_search *k;
        if (search_key(p, &k) < 0) return -1;
        *tail = k;
        tail = &k->next;
        if (paren && ip_peek(p, ')')) return 0;
        if (!paren && ip_eol(p)) return 0;
        if (ip_sp(p) < 0) return -1;
    }
}

/* MODSEQ [SP entry-name SP entry-type-req] SP mod-sequence-valzer */
static int modseq(struct ip *p, struct imap_search *n)
{
    if (ip_sp(p) < 0) return -1;
    if (ip_peek(p, '"')) {
        if (ip_string(p, &n->field) < 0) return -1;
        /* entry-flag-name = DQUOTE "/flags/" attr-flag DQUOTE */
        if (n->field.len <= 7 || ascii_ncasecmp(n->field.data, "/flags/", 7) != 0)
            return ip_fail(p, "Invalid MODSEQ entry name");
        if (ip_sp(p) < 0) return -1;
        if (ip_kw(p, "priv")) n->entry_type = IMAP_ENTRY_PRIV;
        else if (ip_kw(p, "shared")) n->entry_type = IMAP_ENTRY_SHARED;
        else if (ip_kw(p, "all")) n->entry_type = IMAP_ENTRY_ALL;
        else return ip_fail(p, "Invalid MODSEQ entry type");
        if (ip_sp(p) < 0) return -1;
    }
    return ip_number64(p, &n->num);
}

static int search_key(struct ip *p, struct imap_search **out)
{
    struct imap_search *n;
    if (ip_step(p) < 0) return -1;
    if (ip_peek(p, '(')) {
        p->pos++;
        if (enter(p) < 0 || !(n = node(p, IMAP_SK_AND))) return -1;
        if (key_list(p, n, true) < 0) return -1;
        p->pos++; /* ')' */
        p->depth--;
        *out = n;
        return 0;
    }
    if (p->pos < p->len && (p->b[p->pos] == '$' || p->b[p->pos] == '*' ||
                            (p->b[p->pos] >= '0' && p->b[p->pos] <= '9'))) {
        if (!(n = node(p, IMAP_SK_SEQSET)) || ip_seqset(p, &n->set) < 0) return -1;
        *out = n;
        return 0;
    }
    struct imap_str name;
    if (ip_atom(p, &name) < 0) return -1;
    size_t i;
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (ip_str_eq(&name, keys[i].name)) break;
    if (i == sizeof keys / sizeof keys[0]) {
        p->pos -= name.len;
        return ip_fail(p, "Unknown search key");
    }
    if (!(n = node(p, keys[i].key))) return -1;
    *out = n;
    switch (keys[i].arg) {
    case A_NONE:
        return 0;
    case A_ASTRING:
        return ip_sp(p) < 0 ? -1 : ip_astring(p, &n->str);
    case A_FLAG:
        if (ip_sp(p) < 0 || ip_atom(p, &n->str) < 0) return -1;
        return 0;
    case A_DATE:
        return ip_sp(p) < 0 ? -1 : ip_date(p, &n->date);
    case A_NUM64:
        return ip_sp(p) < 0 ? -1 : ip_number64(p, &n->num);
    case A_NZNUM: {
        uint32_t v;
        if (ip_sp(p) < 0 || ip_nz_number(p, &v) < 0) return -1;
        n->num = v;
        return 0;
    }
    case A_SET:
        return ip_sp(p) < 0 ? -1 : ip_seqset(p, &n->set);
    case A_HEADER:
        if (ip_sp(p) < 0 || ip_astring(p, &n->field) < 0) return -1;
        return ip_sp(p) < 0 ? -1 : ip_astring(p, &n->str);
    case A_NOT:
        if (ip_sp(p) < 0 || enter(p) < 0 || search_key(p, &n->child) < 0) return -1;
        p->depth--;
        return 0;
    case A_OR:
        if (ip_sp(p) < 0 || enter(p) < 0 || search_key(p, &n->child) < 0) return -1;
        if (ip_sp(p) < 0 || search_key(p, &n->child->next) < 0) return -1;
        p->depth--;
        return 0;
    case A_MODSEQ:
        return modseq(p, n);
    }
    return -1;
}

int ip_search_return(struct ip *p, struct imap_search_args *out)
{
    out->has_return = true;
    if (ip_sp(p) < 0 || ip_char(p, '(', "Expected return options") < 0) return -1;
    bool first = true;
    while (!ip_peek(p, ')')) {
        if (!first && ip_sp(p) < 0) return -1;
        first = false;
        if (ip_kw(p, "MIN")) out->ret |= IMAP_SEARCHRET_MIN;
        else if (ip_kw(p, "MAX")) out->ret |= IMAP_SEARCHRET_MAX;
        else if (ip_kw(p, "ALL")) out->ret |= IMAP_SEARCHRET_ALL;
        else if (ip_kw(p, "COUNT")) out->ret |= IMAP_SEARCHRET_COUNT;
        else if (ip_kw(p, "SAVE")) out->ret |= IMAP_SEARCHRET_SAVE;
        else return ip_fail(p, "Unknown search return option");
    }
    p->pos++;
    return 0;
}

int ip_search_program(struct ip *p, struct imap_search_args *out, bool charset_required)
{
    if (charset_required) {
        if (ip_astring(p, &out->charset) < 0 || ip_sp(p) < 0) return -1;
        out->has_charset = true;
    } else if (ip_kw(p, "CHARSET")) {
        if (ip_sp(p) < 0 || ip_astring(p, &out->charset) < 0 || ip_sp(p) < 0) return -1;
        out->has_charset = true;
    }
    if (!(out->root = node(p, IMAP_SK_AND))) return -1;
    return key_list(p, out->root, false);
}
