/* smtp_parse_command: memory safety on any line, plus consistency of what
 * it returns: arg inside the line, error replies well-formed, MAIL/RCPT
 * paths that survive format -> parse, decoded DSN values free of controls. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/sbuf.h"
#include "smtp/smtp_parse.h"
#include "smtp/smtp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void no_controls(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = malloc(size ? size : 1);
    if (size) memcpy(line, data, size);

    struct smtp_cmd cmd;
    struct smtp_error err;
    if (smtp_parse_command(line, size, &cmd, &err) == 0) {
        if (cmd.verb >= SMTP_UNKNOWN) abort();
        if (cmd.arg && (cmd.arg < line || cmd.arg + cmd.arg_len > line + size || cmd.arg_len == 0))
            abort();
        if (!cmd.arg && cmd.arg_len) abort();
        no_controls(cmd.envid);
        no_controls(cmd.orcpt);
        no_controls(cmd.auth);
        if ((cmd.notify & SMTP_NOTIFY_NEVER) && cmd.notify != SMTP_NOTIFY_NEVER) abort();
        if (cmd.verb == SMTP_MAIL && cmd.path.utf8 && !cmd.smtputf8) abort();
        if ((cmd.verb == SMTP_MAIL || cmd.verb == SMTP_RCPT) && !cmd.path.null) {
            struct smtp_address b;
            sbuf f = SBUF_INIT;
            sbuf_putc(&f, '<');
            smtp_address_format(&cmd.path, &f);
            sbuf_putc(&f, '>');
            int m = smtp_parse_path(f.data, f.len, true, false, cmd.verb == SMTP_RCPT, &b);
            if (m != (int)f.len || memcmp(&cmd.path, &b, sizeof b) != 0) abort();
            sbuf_free(&f);
        }
        if (cmd.envid[0]) {
            /* xtext round trip */
            sbuf x = SBUF_INIT;
            char back[SMTP_ENVID_MAX + 1];
            smtp_xtext_encode(cmd.envid, &x);
            if (smtp_xtext_decode(x.data, x.len, back, sizeof back) < 0 || strcmp(back, cmd.envid))
                abort();
            sbuf_free(&x);
        }
    } else {
        if (err.code != 500 && err.code != 501 && err.code != 553 && err.code != 555) abort();
        if (!err.enhanced || !err.text) abort();
        sbuf r = SBUF_INIT;
        smtp_reply_format(&r, err.code, err.enhanced, err.text);
        /* one line, ending in the only CRLF */
        char *crlf = strstr(r.data, "\r\n");
        if (!crlf || crlf + 2 != r.data + r.len) abort();
        sbuf_free(&r);
    }

    /* the reply formatter must never let peer bytes break lines */
    sbuf r = SBUF_INIT;
    char *text = malloc(size + 1);
    if (size) memcpy(text, data, size);
    text[size] = '\0';
    smtp_reply_format(&r, 550, "5.1.1", text);
    for (size_t i = 0; i < r.len; i++) {
        if (r.data[i] == '\r' && (i + 1 >= r.len || r.data[i + 1] != '\n')) abort();
        if (r.data[i] == '\n' && (i == 0 || r.data[i - 1] != '\r')) abort();
        if (r.data[i] == '\n' && i + 1 < r.len && memcmp(r.data + i + 1, "550", 3) != 0) abort();
    }
    if (r.len < 2 || memcmp(r.data + r.len - 2, "\r\n", 2) != 0) abort();
    free(text);
    sbuf_free(&r);
    free(line);
    return 0;
}
