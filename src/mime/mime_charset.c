#include "mime/mime_charset.h"

#include <errno.h>
#include <iconv.h>
#include <string.h>

#include "core/util.h"

size_t mime_utf8_seq_len(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c == 0xe0) { n = 3; lo = 0xa0; }
    else if (c == 0xed) { n = 3; hi = 0x9f; }          /* no surrogates */
    else if (c >= 0xe1 && c <= 0xef) n = 3;
    else if (c == 0xf0) { n = 4; lo = 0x90; }
    else if (c >= 0xf1 && c <= 0xf3) n = 4;
    else if (c == 0xf4) { n = 4; hi = 0x8f; }          /* <= U+10FFFF */
    else return 0;
    if (avail < 2 || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (i >= avail || (p[i] & 0xc0) != 0x80) return 0;
    return n;
}

/* Append n bytes of valid UTF-8, respecting the limit of this call.
 * Returns false once the limit is reached. */
static bool put_bounded(sbuf *out, size_t base, const char *p, size_t n, size_t max_out,
                        unsigned *flags)
{
    size_t used = out->len - base;
    if (max_out && used + n > max_out) {
        size_t room = max_out - used;
        /* back up to a character boundary */
        while (room > 0 && room < n && ((unsigned char)p[room] & 0xc0) == 0x80) room--;
        sbuf_append(out, p, room);
        *flags |= MIME_CS_TRUNCATED;
        return false;
    }
    sbuf_append(out, p, n);
    return true;
}

unsigned mime_utf8_sanitize(const char *in, size_t len, size_t max_out, sbuf *out)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t base = out->len, i = 0, run = 0;
    unsigned flags = 0;
    while (i < len) {
        size_t n = mime_utf8_seq_len(p + i, len - i);
        if (n) {
            i += n;
            continue;
        }
        if (!put_bounded(out, base, in + run, i - run, max_out, &flags)) return flags;
        flags |= MIME_CS_INVALID;
        if (!put_bounded(out, base, MIME_UTF8_REPLACEMENT, 3, max_out, &flags)) return flags;
        /* skip the maximal invalid subpart: the lead byte and any
         * continuation bytes that cannot start a character */
        i++;
        while (i < len && (p[i] & 0xc0) == 0x80) i++;
        run = i;
    }
    put_bounded(out, base, in + run, len - run, max_out, &flags);
    return flags;
}

struct alias {
    const char *from, *to;
};

/* What senders write vs. what they mean (WHATWG Encoding Standard). */
static const struct alias aliases[] = {
    { "iso-8859-1", "WINDOWS-1252" }, { "latin1", "WINDOWS-1252" },
    { "us-ascii", NULL }, { "ascii", NULL }, { "utf-8", NULL }, { "utf8", NULL },
    { "unknown-8bit", NULL }, { "x-unknown", NULL }, { "unknown", NULL },
    { "iso-8859-9", "WINDOWS-1254" }, { "iso-8859-11", "WINDOWS-874" },
    { "tis-620", "WINDOWS-874" }, { "gb2312", "GB18030" }, { "gbk", "GB18030" },
    { "x-gbk", "GB18030" }, { "ks_c_5601-1987", "CP949" }, { "euc-kr", "CP949" },
    { "x-sjis", "SHIFT_JIS" }, { "shift-jis", "SHIFT_JIS" }, { "x-mac-roman", "MACINTOSH" },
};

#define CHARSET_NAME_MAX 64

/* Copy the charset name without an RFC 2231 language, refusing anything
 * that is not a plain name (iconv reads "//" suffixes as options). */
static bool charset_name(const char *cs, char out[CHARSET_NAME_MAX])
{
    size_t n = 0;
    for (; cs[n] && cs[n] != '*'; n++) {
        char c = cs[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.' || c == ':';
        if (!ok || n + 1 >= CHARSET_NAME_MAX) return false;
        out[n] = c;
    }
    out[n] = '\0';
    return n > 0;
}

unsigned mime_charset_to_utf8(const char *charset, const char *in, size_t len, size_t max_out,
                              sbuf *out)
{
    char name[CHARSET_NAME_MAX];
    if (!charset || !*charset) return mime_utf8_sanitize(in, len, max_out, out);
    if (!charset_name(charset, name))
        return mime_utf8_sanitize(in, len, max_out, out) | MIME_CS_UNKNOWN;
    const char *target = name;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++) {
        if (ascii_casecmp(name, aliases[i].from) == 0) {
            target = aliases[i].to;
            break;
        }
    }
    if (!target) return mime_utf8_sanitize(in, len, max_out, out);

    iconv_t cd = iconv_open("UTF-8", target);
    if (cd == (iconv_t)-1) return mime_utf8_sanitize(in, len, max_out, out) | MIME_CS_UNKNOWN;

    unsigned flags = 0;
    size_t base = out->len;
    char tmp[4096];
    char *ip = (char *)in;
    size_t il = len;
    for (;;) {
        char *op = tmp;
        size_t ol = sizeof tmp;
        bool flush = il == 0;   /* stateful charsets may emit on reset */
        size_t r = flush ? iconv(cd, NULL, NULL, &op, &ol) : iconv(cd, &ip, &il, &op, &ol);
        int err = r == (size_t)-1 ? errno : 0;
        if (!put_bounded(out, base, tmp, (size_t)(op - tmp), max_out, &flags)) break;
        if (err == E2BIG) continue;
        if (!err) {
            if (flush) break;
            continue;
        }
        if (flush) break;
        flags |= MIME_CS_INVALID;
        if (!put_bounded(out, base, MIME_UTF8_REPLACEMENT, 3, max_out, &flags)) break;
        if (err == EILSEQ && il > 0) {
            ip++;
            il--;
        } else {
            il = 0;     /* EINVAL: a sequence cut off by the end of input */
        }
    }
    iconv_close(cd);
    return flags;
}
