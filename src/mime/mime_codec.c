#include "mime/mime_codec.h"

#include <string.h>

/* ---- base64 ---------------------------------------------------------- */

enum { B64_BAD = -1, B64_WS = -2, B64_PAD = -3 };

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    if (c == '=') return B64_PAD;
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') return B64_WS;
    return B64_BAD;
}

void mime_b64_dec_init(struct mime_b64_dec *d)
{
    memset(d, 0, sizeof *d);
}

/* Emit the bytes of a partial quantum of n (2 or 3) characters. */
static char *b64_partial(struct mime_b64_dec *d, char *w)
{
    if (d->nchars == 2) {
        *w++ = (char)((d->acc >> 4) & 0xff);
    } else if (d->nchars == 3) {
        *w++ = (char)((d->acc >> 10) & 0xff);
        *w++ = (char)((d->acc >> 2) & 0xff);
    } else if (d->nchars == 1) {
        d->error = true;
    }
    d->nchars = 0;
    d->acc = 0;
    return w;
}

void mime_b64_dec_feed(struct mime_b64_dec *d, const char *in, size_t len, sbuf *out)
{
    sbuf_reserve(out, len / 4 * 3 + 3);
    char *w = out->data + out->len;
    for (size_t i = 0; i < len; i++) {
        int v = b64_val((unsigned char)in[i]);
        if (v >= 0) {
            if (d->pad) {
                d->error = true;
                continue;
            }
            d->acc = d->acc << 6 | (uint32_t)v;
            if (++d->nchars == 4) {
                *w++ = (char)((d->acc >> 16) & 0xff);
                *w++ = (char)((d->acc >> 8) & 0xff);
                *w++ = (char)(d->acc & 0xff);
                d->nchars = 0;
                d->acc = 0;
            }
        } else if (v == B64_PAD) {
            if (d->nchars >= 2) w = b64_partial(d, w);
            else if (d->nchars == 1 || !d->pad) d->error = true;
            d->nchars = 0;
            d->acc = 0;
            d->pad = 1;
        } else if (v == B64_BAD) {
            d->error = true;
        }
    }
    out->len = (size_t)(w - out->data);
    out->data[out->len] = '\0';
}

void mime_b64_dec_finish(struct mime_b64_dec *d, sbuf *out)
{
    sbuf_reserve(out, 2);
    char *w = b64_partial(d, out->data + out->len);
    out->len = (size_t)(w - out->data);
    out->data[out->len] = '\0';
}

bool mime_b64_decode(const char *in, size_t len, sbuf *out)
{
    struct mime_b64_dec d;
    mime_b64_dec_init(&d);
    mime_b64_dec_feed(&d, in, len, out);
    mime_b64_dec_finish(&d, out);
    return d.error;
}

static const char b64_alpha[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void mime_b64_encode(const void *in, size_t len, size_t line_len, sbuf *out)
{
    const unsigned char *p = in;
    size_t col = 0;
    if (line_len) {
        line_len &= ~(size_t)3;     /* whole quanta per line */
        if (line_len == 0) line_len = 4;
    }
    sbuf_reserve(out, (len + 2) / 3 * 4 + (line_len ? ((len + 2) / 3 * 4 / line_len + 1) * 2 : 0));
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        size_t n = len - i < 3 ? len - i : 3;
        if (n > 1) v |= (uint32_t)p[i + 1] << 8;
        if (n > 2) v |= p[i + 2];
        char q[4] = { b64_alpha[v >> 18], b64_alpha[(v >> 12) & 63],
                      n > 1 ? b64_alpha[(v >> 6) & 63] : '=', n > 2 ? b64_alpha[v & 63] : '=' };
        if (line_len && col + 4 > line_len) {
            sbuf_append(out, "\r\n", 2);
            col = 0;
        }
        sbuf_append(out, q, 4);
        col += 4;
    }
    if (line_len && col) sbuf_append(out, "\r\n", 2);
}

/* ---- quoted-printable ------------------------------------------------ */

enum { Q_TEXT, Q_EQ, Q_EQ_HEX, Q_EQ_WS };

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

void mime_qp_dec_init(struct mime_qp_dec *d)
{
    memset(d, 0, sizeof *d);
    d->state = Q_TEXT;
}

static void qp_flush_ws(struct mime_qp_dec *d, sbuf *out)
{
    sbuf_append(out, d->ws, d->nws);
    d->nws = 0;
}

/* An '=' sequence that is not a valid escape or soft break: keep it. */
static void qp_literal_eq(struct mime_qp_dec *d, sbuf *out)
{
    d->error = true;
    sbuf_putc(out, '=');
    if (d->state == Q_EQ_HEX) sbuf_putc(out, (char)d->hex);
    if (d->state == Q_EQ_WS) qp_flush_ws(d, out);
    d->state = Q_TEXT;
}

static void qp_byte(struct mime_qp_dec *d, unsigned char c, sbuf *out)
{
    if (d->cr) {
        d->cr = false;
        if (d->state == Q_TEXT) {
            if (c == '\n') {
                d->nws = 0;     /* trailing whitespace, RFC 2045 6.7 (3) */
                sbuf_append(out, "\r\n", 2);
                return;
            }
            qp_flush_ws(d, out);
            sbuf_putc(out, '\r');
        } else {
            /* "=" CR: a soft break, with or without the LF */
            d->nws = 0;
            d->state = Q_TEXT;
            if (c == '\n') return;
        }
    }
    for (;;) {
        switch (d->state) {
        case Q_TEXT:
            if (c == ' ' || c == '\t') {
                if (d->nws == MIME_QP_MAX_WS) qp_flush_ws(d, out);
                d->ws[d->nws++] = (char)c;
            } else if (c == '\r') {
                d->cr = true;
            } else if (c == '\n') {
                d->nws = 0;
                sbuf_putc(out, '\n');
            } else if (c == '=') {
                qp_flush_ws(d, out);
                d->state = Q_EQ;
            } else {
                qp_flush_ws(d, out);
                sbuf_putc(out, (char)c);
            }
            return;
        case Q_EQ:
            if (hexval(c) >= 0) {
                d->hex = c;
                d->state = Q_EQ_HEX;
                return;
            }
            if (c == ' ' || c == '\t') {
                d->ws[d->nws++] = (char)c;
                d->state = Q_EQ_WS;
                return;
            }
            if (c == '\r') {
                d->cr = true;
                return;
            }
            if (c == '\n') {
                d->state = Q_TEXT;
                return;
            }
            qp_literal_eq(d, out);
            continue;
        case Q_EQ_HEX:
            if (hexval(c) >= 0) {
                sbuf_putc(out, (char)(hexval(d->hex) << 4 | hexval(c)));
                d->state = Q_TEXT;
                return;
            }
            qp_literal_eq(d, out);
            continue;
        case Q_EQ_WS:
            if ((c == ' ' || c == '\t') && d->nws < MIME_QP_MAX_WS) {
                d->ws[d->nws++] = (char)c;
                return;
            }
            if (c == '\r') {
                d->cr = true;
                return;
            }
            if (c == '\n') {
                d->nws = 0;
                d->state = Q_TEXT;
                return;
            }
            qp_literal_eq(d, out);
            continue;
        default:
            d->state = Q_TEXT;
            continue;
        }
    }
}

void mime_qp_dec_feed(struct mime_qp_dec *d, const char *in, size_t len, sbuf *out)
{
    sbuf_reserve(out, len);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        /* fast path for the common plain-text byte */
        if (d->state == Q_TEXT && !d->cr && !d->nws && c > ' ' && c != '=' && c < 0x7f) {
            out->data[out->len++] = (char)c;
            continue;
        }
        qp_byte(d, c, out);
        sbuf_reserve(out, len - i);
    }
    out->data[out->len] = '\0';
}

void mime_qp_dec_finish(struct mime_qp_dec *d, sbuf *out)
{
    if (d->cr) {
        d->cr = false;
        if (d->state == Q_TEXT) {
            qp_flush_ws(d, out);
            sbuf_putc(out, '\r');
        }
        d->state = Q_TEXT;
        d->nws = 0;
    }
    switch (d->state) {
    case Q_EQ_HEX:
        qp_literal_eq(d, out);
        break;
    case Q_EQ:
    case Q_EQ_WS:
        /* "=" at the very end is a soft break whose CRLF belongs to the
         * next multipart delimiter (RFC 2046 5.1.1). */
        break;
    default:
        break;
    }
    d->nws = 0;     /* trailing whitespace at the end of the last line */
    d->state = Q_TEXT;
}

bool mime_qp_decode(const char *in, size_t len, sbuf *out)
{
    struct mime_qp_dec d;
    mime_qp_dec_init(&d);
    mime_qp_dec_feed(&d, in, len, out);
    mime_qp_dec_finish(&d, out);
    return d.error;
}

#define QP_MAX_LINE 76

static bool qp_literal(const unsigned char *p, size_t i, size_t len, size_t col,
                       enum mime_qp_mode mode)
{
    unsigned char c = p[i];
    if (col == 0) {
        if (c == '.') return false;
        if (c == 'F' && len - i >= 5 && memcmp(p + i, "From ", 5) == 0) return false;
    }
    if (c == ' ' || c == '\t') {
        if (i + 1 == len) return false;
        if (mode == MIME_QP_TEXT && p[i + 1] == '\r' && i + 2 < len && p[i + 2] == '\n')
            return false;
        return true;
    }
    return c >= 33 && c <= 126 && c != '=';
}

/* Does a hard break or the end of input follow position i? */
static bool qp_line_ends(const unsigned char *p, size_t i, size_t len, enum mime_qp_mode mode)
{
    if (i >= len) return true;
    return mode == MIME_QP_TEXT && p[i] == '\r' && i + 1 < len && p[i + 1] == '\n';
}

void mime_qp_encode(const void *in, size_t len, enum mime_qp_mode mode, sbuf *out)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = in;
    size_t col = 0;
    sbuf_reserve(out, len + len / 4 + 8);
    for (size_t i = 0; i < len; i++) {
        if (qp_line_ends(p, i, len, mode) && i < len) {
            sbuf_append(out, "\r\n", 2);
            col = 0;
            i++;
            continue;
        }
        bool lit = qp_literal(p, i, len, col, mode);
        size_t tlen = lit ? 1 : 3;
        /* The last token before a hard break may use column 76; anything
         * else must leave room for the soft-break '='. */
        size_t room = qp_line_ends(p, i + 1, len, mode) ? QP_MAX_LINE : QP_MAX_LINE - 1;
        if (col + tlen > room) {
            sbuf_append(out, "=\r\n", 3);
            col = 0;
            lit = qp_literal(p, i, len, col, mode);
            tlen = lit ? 1 : 3;
        }
        if (lit) {
            sbuf_putc(out, (char)p[i]);
        } else {
            char t[3] = { '=', hex[p[i] >> 4], hex[p[i] & 15] };
            sbuf_append(out, t, 3);
        }
        col += tlen;
    }
}
