#include "smtp/smtp_reply.h"

#include <string.h>

static void put_clean(sbuf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        sbuf_putc(out, c < 0x20 || c == 0x7f ? '?' : (char)c);
    }
}

void smtp_reply_format(sbuf *out, int code, const char *enhanced, const char *text)
{
    unsigned ucode = (unsigned)code % 1000;
    if (!text) text = "";
    size_t len = strlen(text);
    if (len > 0 && text[len - 1] == '\n') len--;

    size_t pos = 0;
    for (;;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        size_t line_end = end;
        if (nl && line_end > pos && text[line_end - 1] == '\r') line_end--;

        sbuf_printf(out, "%03u", ucode);
        /* RFC 5321 4.2: "code-" on continuation lines; the last line has
         * its SP only when text follows. */
        if (nl) sbuf_putc(out, '-');
        else if (enhanced || line_end > pos) sbuf_putc(out, ' ');
        if (enhanced) {
            put_clean(out, enhanced, strlen(enhanced));
            if (line_end > pos) sbuf_putc(out, ' ');
        }
        put_clean(out, text + pos, line_end - pos);
        sbuf_append(out, "\r\n", 2);
        if (!nl) break;
        pos = end + 1;
    }
}
