#include "auth/sasl.h"

#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

int sasl_base64_decode(const char *b64, size_t len, sbuf *out)
{
    if (len == 1 && b64[0] == '=') {
        sbuf_append(out, "", 0);
        return 0;
    }
    if (len % 4 != 0) return -1;
    size_t start = out->len;
    sbuf_reserve(out, len / 4 * 3);
    for (size_t i = 0; i < len; i += 4) {
        const unsigned char *q = (const unsigned char *)b64 + i;
        bool last = i + 4 == len;
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            if (q[k] == '=' && last && k >= 2) {
                /* Padding only at the end, and nothing but padding after it. */
                if (k == 2 && q[3] != '=') goto bad;
                pad++;
                v[k] = 0;
                continue;
            }
            v[k] = b64val(q[k]);
            if (v[k] < 0 || pad) goto bad;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        /* RFC 4648 3.5: reject non-zero bits under the padding, so every
         * byte string has exactly one accepted encoding. */
        if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff))) goto bad;
        char bytes[3] = { (char)(w >> 16), (char)(w >> 8), (char)w };
        sbuf_append(out, bytes, (size_t)(3 - pad));
    }
    sbuf_append(out, "", 0);    /* NUL-terminated even when empty */
    return 0;
bad:
    OPENSSL_cleanse(out->data + start, out->len - start);
    out->len = start;
    if (out->data) out->data[start] = '\0';
    return -1;
}

void sasl_base64_encode(const void *data, size_t len, sbuf *out)
{
    const unsigned char *p = data;
    sbuf_reserve(out, (len + 2) / 3 * 4);
    for (size_t i = 0; i < len; i += 3) {
        uint32_t w = (uint32_t)p[i] << 16;
        if (i + 1 < len) w |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len) w |= p[i + 2];
        char q[4] = { b64chars[w >> 18 & 63], b64chars[w >> 12 & 63],
                      i + 1 < len ? b64chars[w >> 6 & 63] : '=',
                      i + 2 < len ? b64chars[w & 63] : '=' };
        sbuf_append(out, q, 4);
    }
    sbuf_append(out, "", 0);    /* NUL-terminated even when empty */
}

/* Well-formed UTF-8 (RFC 3629): no overlongs, surrogates or values past
 * U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) { k = 1; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { k = 2; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { k = 3; cp = c & 0x07; }
        else return false;
        if (n - i <= k) return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

int sasl_plain_decode(const char *b64, size_t len, struct sasl_creds *out)
{
    memset(out, 0, sizeof *out);
    /* Refuse before decoding what cannot fit. */
    if (len > (SASL_PLAIN_MAX + 2) / 3 * 4) return -1;
    sbuf msg = SBUF_INIT;
    int rc = -1;
    if (sasl_base64_decode(b64, len, &msg) < 0 || msg.len > SASL_PLAIN_MAX || msg.len == 0) goto out;

    const char *p = msg.data, *end = msg.data + msg.len;
    const char *nul1 = memchr(p, '\0', msg.len);
    if (!nul1) goto out;
    const char *nul2 = memchr(nul1 + 1, '\0', (size_t)(end - nul1 - 1));
    if (!nul2 || memchr(nul2 + 1, '\0', (size_t)(end - nul2 - 1))) goto out;
    size_t zlen = (size_t)(nul1 - p), clen = (size_t)(nul2 - nul1 - 1), plen = (size_t)(end - nul2 - 1);
    if (clen == 0 || plen == 0) goto out;
    if (!utf8_valid((const unsigned char *)p, zlen) || !utf8_valid((const unsigned char *)nul1 + 1, clen))
        goto out;
    out->authzid = xstrndup(p, zlen);
    out->authcid = xstrndup(nul1 + 1, clen);
    out->password = xstrndup(nul2 + 1, plen);
    rc = 0;
out:
    if (msg.data) OPENSSL_cleanse(msg.data, msg.cap);
    sbuf_free(&msg);
    return rc;
}

void sasl_creds_free(struct sasl_creds *c)
{
    if (!c) return;
    if (c->password) {
        OPENSSL_cleanse(c->password, strlen(c->password));
        free(c->password);
    }
    free(c->authzid);
    free(c->authcid);
    memset(c, 0, sizeof *c);
}
