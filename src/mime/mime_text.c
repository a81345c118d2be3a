/* Decoded views of a parsed message: IMAP BINARY and SEARCH text. */
#include <string.h>

#include "core/util.h"
#include "mime/mime_charset.h"
#include "mime/mime_codec.h"
#include "mime/mime_parse.h"

int mime_part_decode(const char *msg, const struct mime_part *p, sbuf *out)
{
    const char *body = msg + p->body_off;
    size_t n = mime_part_body_size(p);
    switch (p->cte) {
    case MIME_CTE_7BIT:
    case MIME_CTE_8BIT:
    case MIME_CTE_BINARY:
        sbuf_append(out, body, n);
        return 0;
    case MIME_CTE_QP:
        return mime_qp_decode(body, n, out) ? 1 : 0;
    case MIME_CTE_BASE64:
        return mime_b64_decode(body, n, out) ? 1 : 0;
    default:
        return -1;
    }
}

/* Returns nothing: the caller measures out; a truncated part ends the walk
 * so no separator follows a cut character run. */
static void extract(const char *msg, const struct mime_part *p, size_t max_out, size_t base,
                    sbuf *out, sbuf *tmp)
{
    for (; p; p = p->next) {
        if (max_out && out->len - base >= max_out) return;
        if (p->children) {
            extract(msg, p->children, max_out, base, out, tmp);
            continue;
        }
        if (strcmp(p->type, "text") != 0) continue;
        sbuf_reset(tmp);
        if (mime_part_decode(msg, p, tmp) < 0) continue;
        size_t room = max_out ? max_out - (out->len - base) : 0;
        if (mime_charset_to_utf8(mime_params_get(&p->type_params, "charset"), sbuf_cstr(tmp),
                                 tmp->len, room, out) & MIME_CS_TRUNCATED)
            return;
        if (!max_out || out->len - base < max_out) sbuf_putc(out, '\n');
    }
}

size_t mime_text_extract(const char *msg, const struct mime_part *root, size_t max_out,
                         sbuf *out)
{
    sbuf tmp = SBUF_INIT;
    size_t base = out->len;
    extract(msg, root, max_out, base, out, &tmp);
    sbuf_free(&tmp);
    return out->len - base;
}
