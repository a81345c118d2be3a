#include "imap/imap_mutf7.h"

#include <stdint.h>
#include <string.h>

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == ',') return 63;
    return -1;
}

/* Decode one UTF-8 sequence at s[0..len); returns its length (and *cp) or
 * 0 when malformed. */
static size_t utf8_next(const unsigned char *s, size_t len, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xc2 && c <= 0xdf) { n = 2; v = c & 0x1f; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { n = 3; v = c & 0x0f; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (len < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return n;
}

bool imap_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        size_t n = utf8_next(p + i, len - i, &cp);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

static size_t utf8_put(uint32_t cp, char *o)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

int imap_mutf7_decode(const char *in, size_t len, char *out, size_t outsz)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0, i = 0;
    if (outsz == 0) return -1;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x20 || c > 0x7e) return -1;
        if (c != '&') {
            if (o + 1 >= outsz) return -1;
            out[o++] = (char)c;
            i++;
            continue;
        }
        i++;
        if (i < len && s[i] == '-') {        /* "&-" is "&" */
            if (o + 1 >= outsz) return -1;
            out[o++] = '&';
            i++;
            continue;
        }
        /* A base64 run of UTF-16 code units, ended by '-'. */
        uint32_t bits = 0, high = 0;
        int nbits = 0;
        size_t units = 0;
        for (;;) {
            if (i >= len) return -1;
            if (s[i] == '-') { i++; break; }
            int v = b64val(s[i]);
            if (v < 0) return -1;
            i++;
            bits = (bits << 6) | (uint32_t)v;
            nbits += 6;
            if (nbits < 16) continue;
            nbits -= 16;
            uint32_t u = (bits >> nbits) & 0xffff;
            bits &= (1u << nbits) - 1;
            units++;
            uint32_t cp;
            if (high) {
                if (u < 0xdc00 || u > 0xdfff) return -1;
                cp = 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00);
                high = 0;
            } else if (u >= 0xd800 && u <= 0xdbff) {
                high = u;
                continue;
            } else if (u >= 0xdc00 && u <= 0xdfff) {
                return -1;
            } else {
                cp = u;
            }
            /* ASCII must represent itself; controls are refused. */
            if (cp < 0xa0) return -1;
            char tmp[4];
            size_t n = utf8_put(cp, tmp);
            if (o + n >= outsz) return -1;
            memcpy(out + o, tmp, n);
            o += n;
        }
        /* Empty run, dangling high surrogate, a whole useless sextet, or
         * non-zero padding bits. */
        if (units == 0 || high || nbits >= 6 || bits != 0) return -1;
    }
    out[o] = '\0';
    return (int)o;
}

int imap_mutf7_encode(const char *in, size_t len, sbuf *out)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0;
    uint32_t cp;
    while (i < len) {
        size_t n = utf8_next(s + i, len - i, &cp);
        if (n == 0 || cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0)) return -1;
        i += n;
    }
    i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c >= 0x20 && c <= 0x7e) {
            if (c == '&') sbuf_append(out, "&-", 2);
            else sbuf_putc(out, (char)c);
            i++;
            continue;
        }
        sbuf_putc(out, '&');
        uint32_t bits = 0;
        int nbits = 0;
        while (i < len && (s[i] < 0x20 || s[i] > 0x7e)) {
            i += utf8_next(s + i, len - i, &cp);
            uint32_t units[2];
            int nu = 1;
            if (cp >= 0x10000) {
                cp -= 0x10000;
                units[0] = 0xd800 + (cp >> 10);
                units[1] = 0xdc00 + (cp & 0x3ff);
                nu = 2;
            } else {
                units[0] = cp;
            }
            for (int k = 0; k < nu; k++) {
                bits = (bits << 16) | units[k];
                nbits += 16;
                while (nbits >= 6) {
                    nbits -= 6;
                    sbuf_putc(out, b64chars[(bits >> nbits) & 0x3f]);
                }
                bits &= (1u << nbits) - 1;
            }
        }
        if (nbits > 0) sbuf_putc(out, b64chars[(bits << (6 - nbits)) & 0x3f]);
        sbuf_putc(out, '-');
    }
    return 0;
}
