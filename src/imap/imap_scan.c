/* Finding the end of one IMAP command in a stream (RFC 9051 section 2.2:
 * a command is one line, or several when literals split it) and the
 * arena its parse lives in. */
#include "imap/imap_parse.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

enum { ST_TEXT, ST_QUOTED, ST_QESC, ST_LITERAL };

void imap_limits_default(struct imap_limits *lim)
{
    lim->line_max = 64 * 1024;
    lim->literal_max = 64u * 1024 * 1024;
    lim->command_max = 1024 * 1024;
    lim->spool_min = 64 * 1024;
    lim->literals_max = 1000;
    lim->depth_max = 32;
    lim->tokens_max = 50000;
    lim->arena_max = 4 * 1024 * 1024;
    lim->mailbox_max = 1024;
}

void imap_scan_init(struct imap_scan *s)
{
    memset(s, 0, sizeof *s);
    s->state = ST_TEXT;
}

static int scan_error(struct imap_scan *s, enum imap_scan_error e, const char *text)
{
    s->error = e;
    s->error_text = text;
    return IMAP_SCAN_ERROR;
}

/* The line ending at buf[nl] ('\n') ends in a literal announcement
 * "[~]{digits[+-]}" [CR]?  Look back no further than seg_start: bytes
 * before it are literal data.  Returns 1 (announcement), 0 (none), -1 (an
 * announcement with a number too large for 64 bits); *start is where the
 * announcement begins (its "~" or "{"). */
static int literal_spec(const char *buf, size_t seg_start, size_t nl, struct imap_scan *s, size_t *start)
{
    size_t j = nl;
    if (j > seg_start && buf[j - 1] == '\r') j--;
    if (j <= seg_start || buf[j - 1] != '}') return 0;
    j--;
    enum imap_literal_kind kind = IMAP_LIT_SYNC;
    if (j > seg_start && (buf[j - 1] == '+' || buf[j - 1] == '-')) {
        kind = buf[j - 1] == '+' ? IMAP_LIT_PLUS : IMAP_LIT_MINUS;
        j--;
    }
    size_t dend = j;
    while (j > seg_start && buf[j - 1] >= '0' && buf[j - 1] <= '9') j--;
    if (j == dend || j <= seg_start || buf[j - 1] != '{') return 0;
    uint64_t v = 0;
    bool overflow = false;
    for (size_t k = j; k < dend; k++) {
        unsigned dgt = (unsigned)(buf[k] - '0');
        if (v > (UINT64_MAX - dgt) / 10) overflow = true;
        else v = v * 10 + dgt;
    }
    s->lit_size = overflow ? UINT64_MAX : v;
    s->lit_kind = kind;
    s->lit_binary = j - 1 > seg_start && buf[j - 2] == '~';
    s->lit_offset = nl + 1;
    *start = s->lit_binary ? j - 2 : j - 1;
    return overflow ? -1 : 1;
}

/* Called at the command's first literal announcement, which begins at
 * buf[start] on the first line: is the command APPEND (RFC 9051 6.3.12)?
 * Then every literal is a message (RFC 3502 MULTIAPPEND, RFC 3516 literal8,
 * RFC 6855 "UTF8 (~{N})": flags and date-time are never literals) except a
 * mailbox name sent as a literal right after "tag APPEND ".  Returns
 * whether this first literal is the mailbox name. */
static bool append_detect(const char *buf, size_t start, struct imap_scan *s)
{
    size_t t = imap_tag_len(buf, start);
    if (t == 0 || start - (t + 1) < 7 || ascii_ncasecmp(buf + t + 1, "APPEND ", 7) != 0) return false;
    s->append = true;
    return start == t + 1 + 7;
}

void imap_scan_discard(struct imap_scan *s)
{
    s->discard = true;
    s->lit_divert = true;
    s->error = IMAP_SCAN_ERR_NONE;
    s->error_text = NULL;
    s->state = ST_TEXT;
    s->pos = s->seg_start = s->lit_offset;
}

int imap_cmd_scan(const char *buf, size_t len, const struct imap_limits *lim, struct imap_scan *s)
{
    while (s->pos < len) {
        if (s->state == ST_LITERAL) {
            size_t avail = len - s->pos;
            size_t take = s->lit_left < avail ? (size_t)s->lit_left : avail;
            s->pos += take;
            s->lit_left -= take;
            if (s->lit_left == 0) {
                s->state = ST_TEXT;
                s->seg_start = s->pos;
            }
            continue;
        }
        char c = buf[s->pos];
        if (++s->text_bytes > lim->line_max)
            return scan_error(s, IMAP_SCAN_ERR_LINE, "Command line too long");
        s->total++;
        if (c == '\n') {
            /* A line end always ends the line, even inside a broken quoted
             * string: the parser then reports the bad string. */
            size_t nl = s->pos++;
            if (s->state != ST_TEXT) {
                s->end = s->pos;
                return IMAP_SCAN_DONE;
            }
            size_t start = 0;
            int r = literal_spec(buf, s->seg_start, nl, s, &start);
            if (r == 0) {
                s->end = s->pos;
                return IMAP_SCAN_DONE;
            }
            bool mailbox = s->literals == 0 && append_detect(buf, start, s);
            s->literals++;
            s->end = s->pos;
            s->lit_append = s->append && !mailbox;
            s->lit_divert = false;
            if (r < 0 || s->lit_size > lim->literal_max)
                return scan_error(s, IMAP_SCAN_ERR_LITERAL, "Literal too big");
            if (s->literals > lim->literals_max)
                return scan_error(s, IMAP_SCAN_ERR_LITERALS, "Too many literals");
            uint64_t room = lim->command_max - (s->total < lim->command_max ? s->total : lim->command_max);
            /* A message goes to the caller's file when it is big, or when
             * it would not fit what is left of the in-memory budget: so a
             * MULTIAPPEND of many small messages is bounded by disk too. */
            if (s->discard || (s->lit_append && s->lit_size > 0 &&
                               (s->lit_size >= lim->spool_min || s->lit_size > room)))
                s->lit_divert = true;
            else if (s->lit_size > room)
                return scan_error(s, IMAP_SCAN_ERR_COMMAND, "Command too large");
            s->seg_start = s->pos;
            if (s->lit_divert) {
                /* the data never enters buf: the text goes on at lit_offset */
                s->state = ST_TEXT;
                return IMAP_SCAN_LITERAL;
            }
            s->total += s->lit_size;
            s->lit_left = s->lit_size;
            s->state = s->lit_left ? ST_LITERAL : ST_TEXT;
            return IMAP_SCAN_LITERAL;
        }
        s->pos++;
        switch (s->state) {
        case ST_TEXT:
            if (c == '"') s->state = ST_QUOTED;
            break;
        case ST_QUOTED:
            if (c == '\\') s->state = ST_QESC;
            else if (c == '"') s->state = ST_TEXT;
            break;
        case ST_QESC:
            s->state = ST_QUOTED;
            break;
        }
    }
    return IMAP_SCAN_MORE;
}

static bool tag_char(unsigned char c)
{
    /* ASTRING-CHAR except "+": CHAR minus atom-specials, plus "]" */
    if (c <= 0x20 || c >= 0x7f) return false;
    return !strchr("(){%*\"\\+", c);
}

size_t imap_tag_len(const char *buf, size_t len)
{
    size_t i = 0;
    while (i < len && tag_char((unsigned char)buf[i])) i++;
    if (i == 0 || i >= len || buf[i] != ' ') return 0;
    return i;
}

bool imap_is_done(const char *line, size_t len)
{
    if (len >= 1 && line[len - 1] == '\n') len--;
    if (len >= 1 && line[len - 1] == '\r') len--;
    return len == 4 && ascii_ncasecmp(line, "DONE", 4) == 0;
}

/* ------------------------------------------------------------------ */
/* Arena */

struct imap_arena_chunk {
    struct imap_arena_chunk *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

#define CHUNK_FIRST 4096
#define CHUNK_BIG (256 * 1024)

void imap_arena_init(struct imap_arena *a, size_t max)
{
    a->head = NULL;
    a->used = 0;
    a->max = max;
}

void imap_arena_reset(struct imap_arena *a)
{
    struct imap_arena_chunk *c = a->head;
    if (!c) return;
    /* keep the oldest (smallest) chunk: it serves most commands */
    while (c->next) {
        struct imap_arena_chunk *n = c->next;
        free(c);
        c = n;
    }
    c->used = 0;
    a->head = c;
    a->used = 0;
}

void imap_arena_free(struct imap_arena *a)
{
    struct imap_arena_chunk *c = a->head;
    while (c) {
        struct imap_arena_chunk *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
    a->used = 0;
}

void *imap_arena_alloc(struct imap_arena *a, size_t n)
{
    if (n == 0) n = 1;
    if (n > a->max || a->used > a->max - n) return NULL;
    size_t need = (n + 15) & ~(size_t)15;
    struct imap_arena_chunk *c = a->head;
    if (!c || c->size - c->used < need) {
        size_t sz = c ? c->size * 2 : CHUNK_FIRST;
        if (sz > CHUNK_BIG) sz = CHUNK_BIG;
        if (sz < need) sz = need;
        struct imap_arena_chunk *nc = xmalloc(sizeof *nc + sz);
        nc->size = sz;
        nc->used = 0;
        nc->next = c;
        a->head = nc;
        c = nc;
    }
    void *p = c->data + c->used;
    c->used += need;
    a->used += n;
    memset(p, 0, n);
    return p;
}
