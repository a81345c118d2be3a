/* Pure name mapping: addresses to directories, mailbox name rules, and the
 * message file name "<uid>.<guid>:2,<maildir flag letters>". */
#include <stdlib.h>
#include <string.h>

#include "core/sbuf.h"
#include "core/util.h"
#include "store/store_int.h"

/* A path component may not exceed NAME_MAX (255). */
static bool escape_part(sbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (n == 0) return false;
    size_t start = b->len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
                  (c == '.' && i > 0);
        if (ok) {
            sbuf_putc(b, (char)c);
        } else {
            sbuf_putc(b, '%');
            sbuf_putc(b, hex[c >> 4]);
            sbuf_putc(b, hex[c & 15]);
        }
    }
    return b->len - start <= 255;
}

char *store_user_dirname(const char *address)
{
    if (!address) return NULL;
    /* The last '@' splits: a quoted local part may itself contain '@'. */
    const char *at = strrchr(address, '@');
    if (!at) return NULL;
    sbuf b = SBUF_INIT;
    if (!escape_part(&b, at + 1, strlen(at + 1))) goto bad;
    sbuf_putc(&b, '/');
    if (!escape_part(&b, address, (size_t)(at - address))) goto bad;
    return sbuf_detach(&b);
bad:
    sbuf_free(&b);
    return NULL;
}

bool store_mailbox_name_valid(const char *name)
{
    if (!name) return false;
    size_t n = strlen(name);
    if (n == 0 || n > STORE_MAX_NAME) return false;
    if (name[0] == '/' || name[n - 1] == '/') return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f) return false;
        if (c == '/' && name[i + 1] == '/') return false;
    }
    return true;
}

/* Maildir letters in ASCII order: D F R S T, then keyword slots a..z. */
void store_flag_letters(unsigned flags, uint32_t keywords, char out[40])
{
    size_t n = 0;
    if (flags & STORE_DRAFT) out[n++] = 'D';
    if (flags & STORE_FLAGGED) out[n++] = 'F';
    if (flags & STORE_ANSWERED) out[n++] = 'R';
    if (flags & STORE_SEEN) out[n++] = 'S';
    if (flags & STORE_DELETED) out[n++] = 'T';
    for (unsigned i = 0; i < STORE_MAX_KEYWORDS; i++)
        if (keywords & (1u << i)) out[n++] = (char)('a' + i);
    out[n] = '\0';
}

int store_parse_msgname(const char *name, uint32_t *uid, char guid[17], unsigned *flags,
                        uint32_t *keywords)
{
    const char *p = name;
    uint64_t v = 0;
    if (*p < '1' || *p > '9') return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX) return -1;
    }
    if (*p++ != '.') return -1;
    for (int i = 0; i < 16; i++, p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'V'))) return -1;
        guid[i] = *p;
    }
    guid[16] = '\0';
    if (strncmp(p, ":2,", 3) != 0) return -1;
    p += 3;
    unsigned f = 0;
    uint32_t k = 0;
    for (; *p; p++) {
        switch (*p) {
        case 'D': f |= STORE_DRAFT; break;
        case 'F': f |= STORE_FLAGGED; break;
        case 'R': f |= STORE_ANSWERED; break;
        case 'S': f |= STORE_SEEN; break;
        case 'T': f |= STORE_DELETED; break;
        default:
            if (*p >= 'a' && *p <= 'z') k |= 1u << (*p - 'a');
            else if (!(*p >= 'A' && *p <= 'Z')) return -1; /* foreign maildir letters ok */
        }
    }
    *uid = (uint32_t)v;
    *flags = f;
    *keywords = k;
    return 0;
}

void store_msg_relpath(sbuf *b, int64_t box, uint32_t uid, const char *guid, unsigned flags,
                       uint32_t keywords)
{
    char letters[40];
    store_flag_letters(flags, keywords, letters);
    sbuf_printf(b, "mbox/%lld/%u.%s:2,%s", (long long)box, uid, guid, letters);
}
