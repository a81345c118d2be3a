/* pop3_parse_command: memory safety on any line, plus consistency of what
 * it returns: arguments inside the line and free of control bytes (PASS:
 * tab allowed), message numbers never 0, error texts one line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pop3/pop3_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(const char *p, size_t n, const char *line, size_t size)
{
    if (!p) return;
    if (p < line || p + n > line + size || n == 0) abort();
}

static void no_controls(const char *p, size_t n, int allow_tab)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && !(allow_tab && c == '\t')) || c == 0x7f) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so ASan sees any read past the end. */
    char *line = malloc(size ? size : 1);
    if (size) memcpy(line, data, size);

    struct pop3_cmd cmd;
    const char *err;
    if (pop3_parse_command(line, size, &cmd, &err) == 0) {
        if (err) abort();
        inside(cmd.arg, cmd.arg_len, line, size);
        inside(cmd.arg2, cmd.arg2_len, line, size);
        if (cmd.arg) no_controls(cmd.arg, cmd.arg_len, cmd.verb == POP3_PASS);
        if (cmd.arg2) no_controls(cmd.arg2, cmd.arg2_len, 0);
        if (cmd.has_msg && cmd.msg == 0) abort();
        if ((cmd.verb == POP3_RETR || cmd.verb == POP3_DELE || cmd.verb == POP3_TOP) && !cmd.has_msg)
            abort();
        if (cmd.verb == POP3_USER && !cmd.arg) abort();
        if (cmd.verb == POP3_PASS && !cmd.arg) abort();
        if (cmd.verb != POP3_UNKNOWN && strcmp(pop3_verb_name(cmd.verb), "?") == 0) abort();
    } else {
        if (!err || strpbrk(err, "\r\n")) abort();
    }
    free(line);
    return 0;
}
