#include "mime/mime_downgrade.h"

#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "mime/mime_codec.h"
#include "mime/mime_header.h"
#include "mime/mime_parse.h"

struct dg {
    const char *msg;
    size_t pos;                 /* msg[0..pos) is already in out */
    sbuf out;
    char *why;
    size_t whylen;
};

bool mime_has_8bit(const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)buf[i] >= 0x80) return true;
    return false;
}

static void copy_until(struct dg *d, size_t off)
{
    if (off > d->pos) sbuf_append(&d->out, d->msg + d->pos, off - d->pos);
    d->pos = off;
}

static bool is_field(const struct mime_field *f, const char *name)
{
    return f->name_len == strlen(name) && ascii_ncasecmp(f->name, name, f->name_len) == 0;
}

/* Copy the header of p without its Content-Transfer-Encoding fields,
 * adding `cte` (and MIME-Version when asked) as the last fields. */
static void rewrite_header(struct dg *d, const struct mime_part *p, const char *cte, bool add_mime_version)
{
    const char *hdr = d->msg + p->hdr_off;
    size_t hlen = p->body_off - p->hdr_off;
    struct mime_header_iter it;
    struct mime_field f;
    size_t pos = 0;             /* offset in hdr copied so far */
    mime_header_iter_init(&it, hdr, hlen);
    while (mime_header_next(&it, &f)) {
        size_t at = (size_t)(f.raw - hdr);
        sbuf_append(&d->out, hdr + pos, at - pos);     /* lines the iterator skipped stay */
        if (!is_field(&f, "Content-Transfer-Encoding")) sbuf_append(&d->out, f.raw, f.raw_len);
        pos = at + f.raw_len;
    }
    /* What is left is the empty line that ends the header (or junk before it). */
    if (d->out.len && d->out.data[d->out.len - 1] != '\n') sbuf_puts(&d->out, "\r\n");
    if (add_mime_version) sbuf_puts(&d->out, "MIME-Version: 1.0\r\n");
    sbuf_printf(&d->out, "Content-Transfer-Encoding: %s\r\n", cte);
    sbuf_append(&d->out, hdr + pos, hlen - pos);
    d->pos = p->body_off;
}

static int fail(struct dg *d, const char *what, const char *arg)
{
    snprintf(d->why, d->whylen, "%s%s", what, arg);
    return -1;
}

static int convert_part(struct dg *d, const struct mime_part *p, bool root)
{
    const char *m = d->msg;
    if (!mime_has_8bit(m + p->hdr_off, p->end_off - p->hdr_off)) return 0;
    if (mime_has_8bit(m + p->hdr_off, p->body_off - p->hdr_off))
        return fail(d, root ? "the header section" : "a MIME part header",
                    " has 8-bit bytes (that needs SMTPUTF8, not a body encoding)");
    if (p->flags & MIME_PART_OPAQUE) return fail(d, "8-bit content in a part too deep or too many to convert", "");
    if (!strcmp(p->type, "message"))
        return fail(d, "8-bit content inside a message part cannot be downgraded: message/", p->subtype);
    if (p->children) {
        if (p->cte == MIME_CTE_8BIT || p->cte == MIME_CTE_BINARY) {
            copy_until(d, p->hdr_off);
            rewrite_header(d, p, "7bit", false);
        }
        for (const struct mime_part *c = p->children; c; c = c->next)
            if (convert_part(d, c, false) < 0) return -1;
        return 0;
    }
    if (p->cte != MIME_CTE_7BIT && p->cte != MIME_CTE_8BIT && p->cte != MIME_CTE_BINARY)
        return fail(d, "8-bit bytes in a part whose Content-Transfer-Encoding is already ",
                    p->cte_name ? p->cte_name : "an encoding");
    bool text = !strcmp(p->type, "text");
    bool need_version = false;
    if (root) {
        struct mime_field f;
        need_version = !mime_header_find(m + p->hdr_off, p->body_off - p->hdr_off, "MIME-Version", &f);
    }
    copy_until(d, p->hdr_off);
    rewrite_header(d, p, text ? "quoted-printable" : "base64", need_version);
    const char *body = m + p->body_off;
    size_t blen = p->end_off - p->body_off;
    if (text) {
        mime_qp_encode(body, blen, MIME_QP_TEXT, &d->out);
    } else {
        mime_b64_encode(body, blen, 76, &d->out);
    }
    d->pos = p->end_off;
    return 0;
}

int mime_downgrade(const char *msg, size_t len, sbuf *out, char *why, size_t whylen)
{
    if (!mime_has_8bit(msg, len)) {
        sbuf_append(out, msg, len);
        return 0;
    }
    struct mime_part *root;
    mime_parse(msg, len, NULL, &root);
    struct dg d = { msg, 0, SBUF_INIT, why, whylen };
    int rc = convert_part(&d, root, true);
    mime_free(root);
    if (rc == 0) {
        copy_until(&d, len);
        if (mime_has_8bit(d.out.data, d.out.len)) {
            snprintf(why, whylen, "8-bit bytes outside any convertible part (a preamble or epilogue)");
            rc = -1;
        }
    }
    if (rc == 0) sbuf_append(out, d.out.data, d.out.len);
    sbuf_free(&d.out);
    return rc;
}
