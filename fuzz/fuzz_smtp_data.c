/* The DATA stream machine: feeding the input whole, byte by byte and in
 * pseudo-random pieces must give identical output, flags and consumption.
 * In DOT+NORMALIZE mode the output must be pure CRLF text, and re-encoding
 * it as a relay would (dot-stuff + CRLF.CRLF) must parse back to exactly
 * the same content, ending exactly at our terminator. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/sbuf.h"
#include "smtp/smtp_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct res {
    struct smtp_data d;
    sbuf out;
    size_t used;
};

static void run(struct res *r, const char *in, size_t len, int mode, int nl, size_t max,
                uint32_t seed, int how)
{
    smtp_data_init(&r->d, (enum smtp_data_mode)mode, (enum smtp_newline)nl, max);
    sbuf_init(&r->out);
    r->used = 0;
    size_t pos = 0;
    while (pos < len) {
        size_t n;
        if (how == 0) n = len - pos;
        else if (how == 1) n = 1;
        else {
            seed = seed * 1103515245u + 12345u;
            n = 1 + (seed >> 16) % 17;
            if (n > len - pos) n = len - pos;
        }
        size_t u = smtp_data_feed(&r->d, in + pos, n, &r->out);
        if (u > n) abort();
        r->used += u;
        pos += n;
        if (u < n) {
            if (!r->d.done) abort();
            break;
        }
        if (r->d.done) break;
    }
    if (r->d.done && smtp_data_feed(&r->d, "x", 1, &r->out) != 0) abort();
    if (mode == 1) smtp_data_finish(&r->d, &r->out);
    if (r->d.out_bytes != r->out.len) abort();
}

static void same(const struct res *a, const struct res *b)
{
    if (a->used != b->used || a->out.len != b->out.len) abort();
    if (a->out.len && memcmp(a->out.data, b->out.data, a->out.len) != 0) abort();
    if (a->d.done != b->d.done || a->d.line_too_long != b->d.line_too_long ||
        a->d.bare_lf != b->d.bare_lf || a->d.bare_cr != b->d.bare_cr || a->d.nul != b->d.nul ||
        a->d.eight_bit != b->d.eight_bit || a->d.received_headers != b->d.received_headers)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    int mode = data[0] & 1, nl = (data[0] >> 1) & 1;
    size_t max = data[1];
    uint32_t seed = data[0] ^ ((uint32_t)data[1] << 8);
    const char *in = (const char *)data + 2;
    size_t len = size - 2;

    struct res whole, bytes, rnd;
    run(&whole, in, len, mode, nl, max, seed, 0);
    run(&bytes, in, len, mode, nl, max, seed, 1);
    run(&rnd, in, len, mode, nl, max, seed, 2);
    same(&whole, &bytes);
    same(&whole, &rnd);

    if (mode == 0 && whole.d.done) {
        /* the terminator is the last 5 consumed bytes or the first 3 */
        const char *e = in + whole.used;
        if (whole.used == 3) {
            if (memcmp(in, ".\r\n", 3)) abort();
        } else if (whole.used < 5 || memcmp(e - 5, "\r\n.\r\n", 5)) {
            abort();
        }
    }
    if (mode == 1 && whole.used != len) abort();

    if (mode == 0 && nl == 0) {
        const char *o = whole.out.data;
        size_t n = whole.out.len;
        for (size_t i = 0; i < n; i++) {
            if (o[i] == '\r' && (i + 1 >= n || o[i + 1] != '\n')) {
                /* only a CR still held back at the end of input may be missing */
                abort();
            }
            if (o[i] == '\n' && (i == 0 || o[i - 1] != '\r')) abort();
        }
        /* relay re-encoding */
        sbuf enc = SBUF_INIT;
        bool bol = true;
        for (size_t i = 0; i < n; i++) {
            if (bol && o[i] == '.') sbuf_putc(&enc, '.');
            sbuf_putc(&enc, o[i]);
            bol = o[i] == '\n';
        }
        if (!bol) sbuf_append(&enc, "\r\n", 2);
        sbuf_append(&enc, ".\r\n", 3);
        struct res back;
        run(&back, enc.data, enc.len, 0, 0, 0, seed, 2);
        if (!back.d.done || back.used != enc.len) abort();
        size_t want = n + (bol ? 0 : 2);
        if (back.out.len != want || (n && memcmp(back.out.data, o, n) != 0)) abort();
        if (back.d.bare_cr || back.d.bare_lf) abort();
        if (whole.d.done && back.d.received_headers != whole.d.received_headers) abort();
        sbuf_free(&enc);
        sbuf_free(&back.out);
    }
    sbuf_free(&whole.out);
    sbuf_free(&bytes.out);
    sbuf_free(&rnd.out);
    return 0;
}
