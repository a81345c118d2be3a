/* IMAP command scanner and parser: memory safety on any bytes, plus
 *  - scanning in arbitrary pieces gives the same events as scanning whole,
 *    with the data of diverted literals (APPEND messages) taken out of the
 *    buffer as a session does, and the same command text and spool;
 *  - the command kept in memory never exceeds command_max (plus the final
 *    line's text, bounded by line_max);
 *  - the parser never reads past the command the scanner delimited, and
 *    takes diverted data only as APPEND messages of the right size;
 *  - parsed mailbox names are clean UTF-8 that survive mUTF-7 round trips;
 *  - sequence sets survive format -> parse, and normalize() agrees with
 *    contains();
 *  - the arena bound holds;
 *  - RFC 4314 rights strings (the stream's first line): parse fails exactly
 *    on a letter outside "lrswipkxteacd", the formatted text parses back to
 *    the same rights, apply() keeps to the defined set; "Other Users"
 *    names split into an owner and a mailbox that rebuild the name.
 * Input: byte 0 chooses options and the split pattern, the rest is the
 * stream. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/sbuf.h"
#include "core/util.h"
#include "imap/imap_acl.h"
#include "imap/imap_mutf7.h"
#include "imap/imap_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ev {
    int r;
    uint64_t size;
    int kind, bin, append, divert;
    size_t off, end;
    int error;
};

#define MAXEV 64
#define MAXEXT 64

/* What the session keeps of one command: its text and in-memory literals
 * (cmd), the diverted literals (ext, their data "spooled"). */
struct scanned {
    sbuf cmd;
    struct imap_extlit ext[MAXEXT];
    size_t next;
    uint64_t spooled;
    bool dropped;           /* imap_scan_discard() was called */
};

/* Feed buf as pieces (seed 0: whole) into a command buffer the way
 * imap_session.c does: a diverted literal's data is taken out of it (after
 * IMAP_SCAN_ERR_COMMAND of a non-synchronizing literal, imap_scan_discard()
 * drops the rest, as the session does). */
static size_t run_scan(const char *buf, size_t len, const struct imap_limits *lim, uint32_t seed,
                       struct ev *evs, struct scanned *out)
{
    struct imap_scan s;
    imap_scan_init(&s);
    sbuf_init(&out->cmd);
    out->next = 0;
    out->spooled = 0;
    out->dropped = false;
    size_t n = 0, pos = 0;
    uint64_t skip = 0;
    for (;;) {
        int r = imap_cmd_scan(out->cmd.data ? out->cmd.data : "", out->cmd.len, lim, &s);
        if (r == IMAP_SCAN_MORE) {
            if (pos == len) return n;
            size_t step = len - pos;
            if (seed) {
                seed = seed * 1103515245u + 12345u;
                size_t k = 1 + (seed >> 16) % 9;
                if (k < step) step = k;
            }
            size_t take = skip < step ? (size_t)skip : step;
            skip -= take;
            out->spooled += take;
            if (!out->dropped && take && out->next && !s.lit_binary && memchr(buf + pos, 0, take))
                out->ext[out->next - 1].nul = true;
            sbuf_append(&out->cmd, buf + pos + take, step - take);
            pos += step;
            continue;
        }
        if (r == IMAP_SCAN_ERROR && s.error == IMAP_SCAN_ERR_COMMAND && s.lit_kind != IMAP_LIT_SYNC) {
            if (!s.error_text || s.lit_size > lim->literal_max) abort();
            imap_scan_discard(&s);
            out->dropped = true;
            r = IMAP_SCAN_LITERAL;
        }
        if (n < MAXEV) {
            memset(&evs[n], 0, sizeof evs[n]); /* padding too: compared with memcmp */
            evs[n].r = r;
            evs[n].size = s.lit_size;
            evs[n].kind = (int)s.lit_kind;
            evs[n].bin = s.lit_binary;
            evs[n].append = s.lit_append;
            evs[n].divert = s.lit_divert;
            evs[n].off = s.lit_offset;
            evs[n].end = r == IMAP_SCAN_LITERAL ? 0 : s.end;
            evs[n].error = r == IMAP_SCAN_LITERAL ? 0 : (int)s.error;
            n++;
        }
        if (r == IMAP_SCAN_LITERAL) {
            if (s.lit_offset > out->cmd.len) abort();
            if (s.lit_divert && !s.lit_append && !out->dropped) abort();
            if (!s.lit_divert) continue;
            if (!out->dropped) {
                if (out->next == MAXEXT) return n;      /* enough for one input */
                out->ext[out->next++] = (struct imap_extlit){ .offset = s.lit_offset, .size = s.lit_size,
                                                              .where = out->spooled };
            }
            skip = s.lit_size;
            size_t have = out->cmd.len - s.lit_offset;
            size_t take = skip < have ? (size_t)skip : have;
            char *p = out->cmd.data + s.lit_offset;
            if (!out->dropped && take && !s.lit_binary && memchr(p, 0, take)) out->ext[out->next - 1].nul = true;
            memmove(p, p + take, have - take);
            out->cmd.len -= take;
            skip -= take;
            out->spooled += take;
            continue;
        }
        if (r == IMAP_SCAN_DONE) {
            if (s.end == 0 || s.end > out->cmd.len || out->cmd.data[s.end - 1] != '\n') abort();
            /* in memory: what command_max allowed, plus the last line */
            if (!out->dropped && s.end > lim->command_max + lim->line_max) abort();
        }
        if (r == IMAP_SCAN_ERROR && !s.error_text) abort();
        return n;
    }
}

static void check_name(const char *name, bool utf8)
{
    size_t n = strlen(name);
    if (!imap_utf8_valid(name, n)) abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) abort();
    if (utf8) return;
    sbuf e = SBUF_INIT;
    if (imap_mutf7_encode(name, n, &e) < 0) abort();
    char *back = malloc(IMAP_MUTF7_DECODE_MAX(e.len));
    int m = imap_mutf7_decode(e.data, e.len, back, IMAP_MUTF7_DECODE_MAX(e.len));
    if (m < 0 || (size_t)m != n || memcmp(back, name, n) != 0) abort();
    free(back);
    sbuf_free(&e);
}

static void check_set(const struct imap_seqset *set, const struct imap_limits *lim)
{
    sbuf f = SBUF_INIT, g = SBUF_INIT;
    imap_seqset_format(set, &f);
    sbuf line = SBUF_INIT;
    sbuf_printf(&line, "t FETCH %s FLAGS\r\n", f.data);
    struct imap_arena a;
    imap_arena_init(&a, lim->arena_max);
    struct imap_command c;
    struct imap_err e;
    if (imap_parse_command(line.data, line.len, lim, 0, &a, &c, &e) != 0) abort();
    imap_seqset_format(&c.set, &g);
    if (strcmp(f.data, g.data) != 0) abort();
    if (!set->saved && set->n) {
        uint32_t max = 40;
        struct imap_range *out = malloc(set->n * sizeof *out);
        size_t n = imap_seqset_normalize(set, max, out);
        struct imap_seqiter it;
        imap_seqiter_init(&it, out, n);
        uint32_t v, next = 1;
        bool have = imap_seqiter_next(&it, &v);
        for (uint32_t x = 1; x <= max + 1; x++) {
            bool in = have && v == x;
            if (in != imap_seqset_contains(set, x, max)) abort();
            if (in) {
                if (v < next) abort();
                next = v + 1;
                have = imap_seqiter_next(&it, &v);
            }
        }
        if (have) abort();
        free(out);
    }
    imap_arena_free(&a);
    sbuf_free(&line);
    sbuf_free(&f);
    sbuf_free(&g);
}

static void parse_one(const char *cmdbytes, size_t len, const struct imap_extlit *ext, size_t next,
                      const struct imap_limits *lim, unsigned flags)
{
    /* an exact-size copy: any read past the command is caught by ASan */
    char *copy = malloc(len ? len : 1);
    memcpy(copy, cmdbytes, len);
    struct imap_arena a;
    imap_arena_init(&a, lim->arena_max);
    struct imap_command c;
    struct imap_err e;
    int r = imap_parse_command_ext(copy, len, ext, next, lim, flags, &a, &c, &e);
    if (a.used > lim->arena_max) abort();
    if (r == 0) {
        if (!c.tag || c.name <= IMAP_CMD_UNKNOWN || c.name >= IMAP_CMD_COUNT_) abort();
        bool utf8 = flags & IMAP_PARSE_UTF8;
        if (c.mailbox) check_name(c.mailbox, utf8);
        if (c.mailbox2) check_name(c.mailbox2, utf8);
        if (c.name == IMAP_CMD_FETCH || c.name == IMAP_CMD_STORE || c.name == IMAP_CMD_COPY ||
            c.name == IMAP_CMD_MOVE || c.has_set)
            check_set(&c.set, lim);
        for (size_t i = 0; i < c.nmsgs; i++) {
            const struct imap_append_msg *m = &c.msgs[i];
            if (m->ext) {
                if (m->ext < ext || m->ext >= ext + next || m->data.data || m->data.len != m->ext->size) abort();
                if (!m->binary && m->ext->nul) abort();
                continue;
            }
            if (m->data.data < copy || m->data.data + m->data.len > copy + len) abort();
            if (!m->binary && memchr(m->data.data, 0, m->data.len)) abort();
        }
        if (c.name == IMAP_CMD_FETCH && !c.fetch) abort();
        if ((c.name == IMAP_CMD_SEARCH || c.name == IMAP_CMD_SORT || c.name == IMAP_CMD_THREAD) &&
            (!c.search.root || !c.search.root->child))
            abort();
    } else {
        if (!e.text || e.pos > len) abort();
        if (e.tagged && !c.tag) abort();
    }
    imap_arena_free(&a);
    free(copy);
}

/* Rights of an sbuf's text, which must parse as a plain replacement. */
static unsigned reparse(const sbuf *b)
{
    enum imap_rights_mod mod;
    unsigned bits;
    if (imap_rights_parse(b->data ? b->data : "", b->len, &mod, &bits) != 0) abort();
    if (mod != IMAP_RIGHTS_REPLACE) abort();
    return bits;
}

static void check_rights(const char *s, size_t len, unsigned cur)
{
    enum imap_rights_mod mod;
    unsigned bits;
    int r = imap_rights_parse(s, len, &mod, &bits);
    /* the same judgement made independently */
    size_t i = len && (s[0] == '+' || s[0] == '-') ? 1 : 0;
    bool valid = true;
    for (size_t k = i; k < len; k++)
        if (s[k] == '\0' || !strchr(IMAP_RIGHTS_LETTERS "cd", s[k])) valid = false;
    if ((r == 0) != valid) abort();
    if (r != 0) return;
    if (bits & ~IMAP_RIGHTS_ALL) abort();
    enum imap_rights_mod want = !i ? IMAP_RIGHTS_REPLACE : s[0] == '+' ? IMAP_RIGHTS_ADD : IMAP_RIGHTS_REMOVE;
    if (mod != want) abort();

    sbuf b = SBUF_INIT;
    imap_rights_format_plain(&b, bits);
    /* canonical: each letter once, in "lrswipkxtea" order */
    if (reparse(&b) != bits || b.len > sizeof IMAP_RIGHTS_LETTERS - 1) abort();
    for (size_t k = 1; k < b.len; k++)
        if (strchr(IMAP_RIGHTS_LETTERS, b.data[k]) <= strchr(IMAP_RIGHTS_LETTERS, b.data[k - 1])) abort();
    sbuf_reset(&b);
    /* with the virtual rights: "c" stands for k alone, "d" for all of x t e
     * (RFC 4314 2.1.1), so only a partial x t e set reads back larger */
    imap_rights_format(&b, bits);
    unsigned xte = IMAP_RIGHT_X | IMAP_RIGHT_T | IMAP_RIGHT_E;
    if (reparse(&b) != (bits | ((bits & xte) ? xte : 0))) abort();
    sbuf_free(&b);

    cur &= IMAP_RIGHTS_ALL;
    if (imap_rights_apply(cur, IMAP_RIGHTS_REPLACE, bits) != bits) abort();
    if (imap_rights_apply(cur, IMAP_RIGHTS_ADD, bits) != (cur | bits)) abort();
    if (imap_rights_apply(cur, IMAP_RIGHTS_REMOVE, bits) != (cur & ~bits)) abort();
    if (imap_rights_apply(cur, mod, bits) & ~IMAP_RIGHTS_ALL) abort();
}

static void check_shared(const char *name)
{
    char *owner;
    const char *rest;
    int k = imap_acl_split_shared(name, &owner, &rest);
    size_t pl = sizeof IMAP_OTHER_USERS - 1;
    bool in_ns = ascii_ncasecmp(name, IMAP_OTHER_USERS, pl) == 0 && (name[pl] == '\0' || name[pl] == '/');
    if ((k != 0) != in_ns) abort();
    if (k != 1) {
        if (owner || rest) abort();
        return;
    }
    size_t ol = strlen(owner);
    if (!ol || strchr(owner, '/') || !strchr(owner, '@')) abort();
    for (size_t i = 0; i < ol; i++)
        if (owner[i] >= 'A' && owner[i] <= 'Z') abort();
    /* name == prefix "/" owner "/" rest, the owner in any case */
    if (rest != name + pl + 1 + ol + 1 || name[pl + 1 + ol] != '/') abort();
    if (ascii_ncasecmp(name + pl + 1, owner, ol) != 0) abort();
    /* no level of the rest can climb out */
    for (const char *p = rest;;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) abort();
        if (!e) break;
        p = e + 1;
    }
    free(owner);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t opt = data[0];
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;

    struct imap_limits lim;
    imap_limits_default(&lim);
    if (opt & 0x80) {
        /* small limits reach every limit path */
        lim.line_max = 200;
        lim.literal_max = 64;
        lim.command_max = 300;
        lim.spool_min = 16;
        lim.literals_max = 4;
        lim.depth_max = 5;
        lim.tokens_max = 60;
        lim.arena_max = 3000;
        lim.mailbox_max = 20;
    }
    unsigned flags = (opt & 0x40) ? IMAP_PARSE_UTF8 : 0;

    struct ev whole[MAXEV], part[MAXEV];
    struct scanned sw, sp;
    size_t nw = run_scan(buf, len, &lim, 0, whole, &sw);
    size_t np = run_scan(buf, len, &lim, (opt & 0x3f) + 1u, part, &sp);
    if (nw != np || memcmp(whole, part, nw * sizeof whole[0]) != 0) abort();
    if (sw.next != sp.next || memcmp(sw.ext, sp.ext, sw.next * sizeof sw.ext[0]) != 0) abort();

    if (nw && whole[nw - 1].r == IMAP_SCAN_DONE) {
        size_t end = whole[nw - 1].end;
        if (memcmp(sw.cmd.data, sp.cmd.data, end) != 0) abort();
        if (!sw.dropped) parse_one(sw.cmd.data, end, sw.ext, sw.next, &lim, flags);
    }
    sbuf_free(&sw.cmd);
    sbuf_free(&sp.cmd);
    /* the parser must also survive input the scanner would not hand it */
    parse_one(buf, len, NULL, 0, &lim, flags);

    /* mUTF-7: decode(encode(decode(x))) == decode(x) */
    if (len <= 4096) {
        char *out = malloc(IMAP_MUTF7_DECODE_MAX(len));
        int n = imap_mutf7_decode(buf, len, out, IMAP_MUTF7_DECODE_MAX(len));
        if (n >= 0) check_name(out, false);
        free(out);
    }

    /* RFC 4314: the first line as a rights string, the stream (to its
     * first NUL) as a mailbox name */
    const char *nl = memchr(buf, '\n', len);
    size_t rl = nl ? (size_t)(nl - buf) : len;
    if (rl <= 256) check_rights(buf, rl, (unsigned)opt * 0x9e37u);
    if (len <= 4096) {
        char *name = xstrndup(buf, len);
        check_shared(name);
        free(name);
    }
    return 0;
}
