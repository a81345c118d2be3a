/* Codecs and header decoding on arbitrary bytes: decode(encode(x)) == x
 * for base64 and both quoted-printable modes, encoded QP is 7-bit with
 * lines <= 76 and no trailing whitespace, streaming decoders give the same
 * output and error flags whatever the chunking, and every UTF-8 producer
 * (charset conversion, RFC 2047 decoding) yields valid UTF-8 within its
 * bound. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/sbuf.h"
#include "mime/mime_charset.h"
#include "mime/mime_codec.h"
#include "mime/mime_header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same(const sbuf *a, const sbuf *b)
{
    if (a->len != b->len || (a->len && memcmp(a->data, b->data, a->len) != 0)) abort();
}

static void valid_utf8(const sbuf *b)
{
    sbuf t = SBUF_INIT;
    if (mime_utf8_sanitize(sbuf_cstr(b), b->len, 0, &t) != 0 || t.len != b->len) abort();
    sbuf_free(&t);
}

static size_t piece(uint32_t *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return 1 + (*seed >> 16) % 13;
}

static void qp_lines(const sbuf *e)
{
    size_t col = 0;
    for (size_t i = 0; i < e->len; i++) {
        unsigned char c = (unsigned char)e->data[i];
        if (c >= 0x80 || c == '\n') abort();
        if (c == '\r') {
            if (i + 1 >= e->len || e->data[i + 1] != '\n') abort();
            if (i > 0 && (e->data[i - 1] == ' ' || e->data[i - 1] == '\t')) abort();
            i++;
            col = 0;
        } else if (++col > 76) {
            abort();
        }
    }
    if (e->len && (e->data[e->len - 1] == ' ' || e->data[e->len - 1] == '\t')) abort();
}

static const char *const charsets[] = {
    "utf-8", "iso-8859-1", "windows-1251", "koi8-r", "shift_jis", "euc-jp", "iso-2022-jp",
    "gb2312", "big5", "utf-16", "utf-7", "x-unknown-cs", "us-ascii", "ks_c_5601-1987",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t ctl = data[0];
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    uint32_t seed = ctl;

    /* base64 */
    sbuf e = SBUF_INIT, d = SBUF_INIT, s = SBUF_INIT;
    mime_b64_encode(in, len, ctl & 1 ? 76 : 0, &e);
    if (mime_b64_decode(e.data ? e.data : "", e.len, &d)) abort();
    if (d.len != len || (len && memcmp(d.data, in, len) != 0)) abort();
    sbuf_reset(&d);
    bool err = mime_b64_decode(in, len, &d);
    struct mime_b64_dec bd;
    mime_b64_dec_init(&bd);
    for (size_t pos = 0; pos < len;) {
        size_t n = piece(&seed);
        if (n > len - pos) n = len - pos;
        mime_b64_dec_feed(&bd, in + pos, n, &s);
        pos += n;
    }
    mime_b64_dec_finish(&bd, &s);
    same(&d, &s);
    if (bd.error != err || d.len > len) abort();

    /* quoted-printable, both modes */
    for (int mode = 0; mode < 2; mode++) {
        sbuf_reset(&e);
        sbuf_reset(&d);
        mime_qp_encode(in, len, (enum mime_qp_mode)mode, &e);
        qp_lines(&e);
        if (mime_qp_decode(sbuf_cstr(&e), e.len, &d)) abort();
        if (d.len != len || (len && memcmp(d.data, in, len) != 0)) abort();
    }
    sbuf_reset(&d);
    sbuf_reset(&s);
    err = mime_qp_decode(in, len, &d);
    struct mime_qp_dec qd;
    mime_qp_dec_init(&qd);
    for (size_t pos = 0; pos < len;) {
        size_t n = piece(&seed);
        if (n > len - pos) n = len - pos;
        mime_qp_dec_feed(&qd, in + pos, n, &s);
        pos += n;
    }
    mime_qp_dec_finish(&qd, &s);
    same(&d, &s);
    if (qd.error != err || d.len > len) abort();

    /* charset conversion and RFC 2047, bounded */
    size_t max = ctl & 0x80 ? 0 : ctl;
    sbuf_reset(&d);
    unsigned f = mime_charset_to_utf8(charsets[ctl % (sizeof charsets / sizeof charsets[0])], in,
                                      len, max, &d);
    valid_utf8(&d);
    if (max && d.len > max) abort();
    if ((f & MIME_CS_TRUNCATED) && !max) abort();
    sbuf_reset(&d);
    mime_header_decode(in, len, max, &d);
    valid_utf8(&d);
    if (max && d.len > max) abort();

    sbuf_free(&e);
    sbuf_free(&d);
    sbuf_free(&s);
    return 0;
}
