/* The sendmail entry point's pure parts over hostile input.
 *
 * Byte 0 picks the options; the rest is a local program's message.  The
 * input converter fed whole and in pieces must agree; its output must be
 * CRLF text only (no bare CR or LF); -t's header pass must yield only
 * addresses that are safe in "RCPT TO:<...>" (no controls, no angle
 * brackets) and never copy more than the header it read.  The same bytes,
 * split at NULs, are also a command line for sendmail_parse_args(). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/sbuf.h"
#include "smtp/sendmail.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void convert(const char *in, size_t len, bool ignore_dots, size_t step, sbuf *out, bool *done)
{
    struct sendmail_input st;
    sendmail_input_init(&st, ignore_dots);
    size_t pos = 0;
    while (pos < len && !st.done) {
        size_t n = step && len - pos > step ? step : len - pos;
        size_t used = sendmail_input_feed(&st, in + pos, n, out);
        if (used > n) abort();
        if (used < n && !st.done) abort();
        pos += used;
    }
    sendmail_input_finish(&st, out);
    *done = st.done;
}

static void check_addresses(const struct sendmail_rcpts *r)
{
    if (r->n > SENDMAIL_MAX_RCPTS) abort();
    for (size_t i = 0; i < r->n; i++) {
        const char *a = r->v[i];
        if (strlen(a) > SENDMAIL_ADDRESS_MAX || !strchr(a, '@')) abort();
        for (const unsigned char *p = (const unsigned char *)a; *p; p++)
            if (*p < 0x20 || *p == 0x7f || *p == '<' || *p == '>') abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t flags = data[0];
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    bool ignore_dots = flags & 1, extract = flags & 2;

    sbuf a = SBUF_INIT, b = SBUF_INIT;
    bool da, db;
    convert(in, len, ignore_dots, 0, &a, &da);
    convert(in, len, ignore_dots, 1 + (flags >> 4), &b, &db);
    if (a.len != b.len || da != db || (a.len && memcmp(a.data, b.data, a.len) != 0)) abort();
    for (size_t i = 0; i < a.len; i++) {
        if (a.data[i] == '\r' && (i + 1 >= a.len || a.data[i + 1] != '\n')) abort();
        if (a.data[i] == '\n' && (i == 0 || a.data[i - 1] != '\r')) abort();
    }
    if (a.len && (a.len < 2 || a.data[a.len - 1] != '\n')) abort();

    struct sendmail_rcpts r = { 0 };
    sbuf hdr = SBUF_INIT;
    size_t body;
    struct sendmail_header_info info;
    int n = sendmail_headers(a.data ? a.data : "", a.len, extract, "example.test", &r, &hdr, &body, &info);
    if (n >= 0 && (size_t)n != r.n) abort();
    if (body > a.len || hdr.len > body) abort();
    check_addresses(&r);
    sendmail_rcpts_free(&r);
    sbuf_free(&hdr);
    sbuf_free(&a);
    sbuf_free(&b);

    /* The input as argv: NUL-separated words. */
    char *copy = malloc(len + 1);
    if (!copy) return 0;
    memcpy(copy, in, len);
    copy[len] = '\0';
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)"sendmail";
    for (char *p = copy; p < copy + len + 1 && argc < 63; p += strlen(p) + 1) argv[argc++] = p;
    argv[argc] = NULL;
    struct sendmail_opts o;
    char err[256];
    if (sendmail_parse_args(argc, argv, "example.test", &o, err, sizeof err) == 0) {
        check_addresses(&o.rcpts);
        sendmail_opts_free(&o);
    }
    free(copy);
    return 0;
}
