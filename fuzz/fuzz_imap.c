/* IMAP command scanner and parser: memory safety on any bytes, plus
 *  - scanning in arbitrary pieces gives the same events as scanning whole;
 *  - the parser never reads past the command the scanner delimited;
 *  - parsed mailbox names are clean UTF-8 that survive mUTF-7 round trips;
 *  - sequence sets survive format -> parse, and normalize() agrees with
 *    contains();
 *  - the arena bound holds.
 * Input: byte 0 chooses options and the split pattern, the rest is the
 * stream. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/sbuf.h"
#include "imap/imap_mutf7.h"
#include "imap/imap_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ev {
    int r;
    uint64_t size;
    int kind, bin;
    size_t off, end;
    int error;
};

#define MAXEV 64

static size_t run_scan(const char *buf, size_t len, const struct imap_limits *lim, uint32_t seed,
                       struct ev *evs)
{
    struct imap_scan s;
    imap_scan_init(&s);
    size_t n = 0;
    size_t have = 0;
    for (;;) {
        if (seed == 0) {
            have = len;
        } else {
            seed = seed * 1103515245u + 12345u;
            size_t step = 1 + (seed >> 16) % 9;
            have = have + step < len ? have + step : len;
        }
        int r;
        while ((r = imap_cmd_scan(buf, have, lim, &s)) == IMAP_SCAN_LITERAL) {
            if (n < MAXEV) {
                memset(&evs[n], 0, sizeof evs[n]); /* padding too: compared with memcmp */
                evs[n].r = r;
                evs[n].size = s.lit_size;
                evs[n].kind = (int)s.lit_kind;
                evs[n].bin = s.lit_binary;
                evs[n].off = s.lit_offset;
                n++;
            }
            if (s.lit_offset > have) abort();
        }
        if (r == IMAP_SCAN_MORE) {
            if (have == len) return n;
            continue;
        }
        if (n < MAXEV) {
            memset(&evs[n], 0, sizeof evs[n]);
            evs[n].r = r;
            evs[n].end = s.end;
            evs[n].error = (int)s.error;
            n++;
        }
        if (r == IMAP_SCAN_DONE && (s.end == 0 || s.end > have || buf[s.end - 1] != '\n')) abort();
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

static void parse_one(const char *cmdbytes, size_t len, const struct imap_limits *lim, unsigned flags)
{
    /* an exact-size copy: any read past the command is caught by ASan */
    char *copy = malloc(len ? len : 1);
    memcpy(copy, cmdbytes, len);
    struct imap_arena a;
    imap_arena_init(&a, lim->arena_max);
    struct imap_command c;
    struct imap_err e;
    int r = imap_parse_command(copy, len, lim, flags, &a, &c, &e);
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
        lim.literals_max = 4;
        lim.depth_max = 5;
        lim.tokens_max = 60;
        lim.arena_max = 3000;
        lim.mailbox_max = 20;
    }
    unsigned flags = (opt & 0x40) ? IMAP_PARSE_UTF8 : 0;

    struct ev whole[MAXEV], part[MAXEV];
    size_t nw = run_scan(buf, len, &lim, 0, whole);
    size_t np = run_scan(buf, len, &lim, (opt & 0x3f) + 1u, part);
    if (nw != np || memcmp(whole, part, nw * sizeof whole[0]) != 0) abort();

    if (nw && whole[nw - 1].r == IMAP_SCAN_DONE) parse_one(buf, whole[nw - 1].end, &lim, flags);
    /* the parser must also survive input the scanner would not hand it */
    parse_one(buf, len, &lim, flags);

    /* mUTF-7: decode(encode(decode(x))) == decode(x) */
    if (len <= 4096) {
        char *out = malloc(IMAP_MUTF7_DECODE_MAX(len));
        int n = imap_mutf7_decode(buf, len, out, IMAP_MUTF7_DECODE_MAX(len));
        if (n >= 0) check_name(out, false);
        free(out);
    }
    return 0;
}
