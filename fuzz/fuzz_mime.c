/* The MIME parser on arbitrary bytes: never crash, every offset inside the
 * buffer and inside its parent, the documented tree invariants and limits
 * hold, and the cache blob round-trips to an equal tree (and a mangled
 * blob is either refused or yields a tree that is still safe).  The
 * decoders behind BINARY and SEARCH run on every part. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/sbuf.h"
#include "mime/mime_charset.h"
#include "mime/mime_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_utf8(const sbuf *b)
{
    sbuf t = SBUF_INIT;
    if (mime_utf8_sanitize(sbuf_cstr(b), b->len, 0, &t) != 0) abort();
    if (t.len != b->len) abort();
    sbuf_free(&t);
}

static void check_str_utf8(const char *s)
{
    if (!s) return;
    sbuf b = SBUF_INIT;
    sbuf_puts(&b, s);
    check_utf8(&b);
    sbuf_free(&b);
}

static void check_params(const struct mime_params *p)
{
    for (size_t i = 0; i < p->n; i++) {
        if (!p->v[i].name || !p->v[i].value) abort();
        if (p->v[i].charset) check_str_utf8(p->v[i].value);
    }
}

static void check_addrs(const struct mime_addr_list *l)
{
    int open = 0;
    for (size_t i = 0; i < l->n; i++) {
        const struct mime_address *a = &l->v[i];
        check_str_utf8(a->name_utf8);
        if (a->kind == MIME_ADDR_MAILBOX && (!a->mailbox || !a->host)) abort();
        if (a->kind == MIME_ADDR_GROUP_START && (open++ || !a->mailbox)) abort();
        if (a->kind == MIME_ADDR_GROUP_END && (--open || a->mailbox || a->host)) abort();
    }
    if (open) abort();
}

static size_t check(const char *msg, size_t len, const struct mime_part *p, unsigned depth,
                    const struct mime_limits *lim)
{
    if (!(p->hdr_off <= p->body_off && p->body_off <= p->end_off && p->end_off <= len)) abort();
    if (!p->type || !p->subtype) abort();
    if (depth > lim->max_depth) abort();
    bool multi = strcmp(p->type, "multipart") == 0;
    bool message = strcmp(p->type, "message") == 0 &&
                   (strcmp(p->subtype, "rfc822") == 0 || strcmp(p->subtype, "global") == 0);
    if (multi && p->nchildren == 0) abort();
    if (message && (p->nchildren != 1 || !p->children->env)) abort();
    if (!multi && !message && p->nchildren) abort();
    if (p->body_lines > p->end_off - p->body_off) abort();
    size_t n = 1, prev_end = p->body_off, k = 0;
    for (const struct mime_part *c = p->children; c; c = c->next, k++) {
        if (c->parent != p) abort();
        if (c->hdr_off < prev_end || c->end_off > p->end_off) abort();
        prev_end = c->end_off;
        n += check(msg, len, c, depth + 1, lim);
    }
    if (k != p->nchildren) abort();
    check_params(&p->type_params);
    check_params(&p->disp_params);
    if (p->env) {
        const struct mime_envelope *e = p->env;
        check_str_utf8(e->subject_utf8);
        check_addrs(&e->from);
        check_addrs(&e->sender);
        check_addrs(&e->reply_to);
        check_addrs(&e->to);
        check_addrs(&e->cc);
        check_addrs(&e->bcc);
    }
    if (!p->children) {
        sbuf out = SBUF_INIT;
        int rc = mime_part_decode(msg, p, &out);
        if (rc < 0 && out.len) abort();
        if (out.len > p->end_off - p->body_off) abort();
        sbuf_free(&out);
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    /* the first byte picks small limits so they are reached */
    struct mime_limits lim = MIME_LIMITS_DEFAULT;
    if (data[0] & 1) {
        lim.max_depth = 1 + (data[0] >> 1 & 7);
        lim.max_parts = 1 + (data[0] >> 4);
        lim.max_params = data[0] >> 5;
        lim.max_addrs = data[0] >> 4 & 3;
    }
    const char *msg = (const char *)data + 1;
    size_t len = size - 1;

    struct mime_part *root;
    size_t nparts = mime_parse(msg, len, &lim, &root);
    if (nparts < 1 || nparts > lim.max_parts) abort();
    if (root->hdr_off != 0 || root->end_off != len || !root->env) abort();
    if (check(msg, len, root, 0, &lim) != nparts) abort();

    sbuf blob = SBUF_INIT, blob2 = SBUF_INIT;
    mime_tree_serialize(root, &blob);
    struct mime_part *back;
    if (mime_tree_deserialize(blob.data, blob.len, len, &lim, &back) != 0) abort();
    if (!mime_tree_equal(root, back)) abort();
    mime_tree_serialize(back, &blob2);
    if (blob.len != blob2.len || memcmp(blob.data, blob2.data, blob.len) != 0) abort();
    mime_free(back);

    /* a mangled blob is refused or still obeys the invariants */
    if (blob.len > 5) {
        blob.data[4 + data[0] % (blob.len - 4)] ^= (char)(data[size - 1] | 1);
        if (mime_tree_deserialize(blob.data, blob.len, len, &lim, &back) == 0) {
            check(msg, len, back, 0, &lim);
            mime_free(back);
        }
    }

    sbuf text = SBUF_INIT;
    size_t max = data[0] & 2 ? 0 : (size_t)data[0] * 3;
    size_t got = mime_text_extract(msg, root, max, &text);
    if (got != text.len || (max && got > max)) abort();
    check_utf8(&text);

    sbuf_free(&text);
    sbuf_free(&blob);
    sbuf_free(&blob2);
    mime_free(root);
    return 0;
}
