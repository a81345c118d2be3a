/* RFC 4314 rights strings and "Other Users" names; see imap_acl.h. */
#include "imap/imap_acl.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define CREATE_MEMBERS IMAP_RIGHT_K
#define DELETE_MEMBERS (IMAP_RIGHT_X | IMAP_RIGHT_T | IMAP_RIGHT_E)

int imap_rights_parse(const char *s, size_t len, enum imap_rights_mod *mod, unsigned *bits)
{
    *mod = IMAP_RIGHTS_REPLACE;
    *bits = 0;
    size_t i = 0;
    if (len && (s[0] == '+' || s[0] == '-')) {
        *mod = s[0] == '+' ? IMAP_RIGHTS_ADD : IMAP_RIGHTS_REMOVE;
        i = 1;
    }
    for (; i < len; i++) {
        char c = s[i];
        const char *p = c ? strchr(IMAP_RIGHTS_LETTERS, c) : NULL;
        if (p) *bits |= 1u << (p - IMAP_RIGHTS_LETTERS);
        else if (c == 'c') *bits |= CREATE_MEMBERS;
        else if (c == 'd') *bits |= DELETE_MEMBERS;
        else return -1;
    }
    return 0;
}

unsigned imap_rights_apply(unsigned cur, enum imap_rights_mod mod, unsigned bits)
{
    switch (mod) {
    case IMAP_RIGHTS_ADD: return (cur | bits) & IMAP_RIGHTS_ALL;
    case IMAP_RIGHTS_REMOVE: return cur & ~bits & IMAP_RIGHTS_ALL;
    default: return bits & IMAP_RIGHTS_ALL;
    }
}

void imap_rights_format_plain(sbuf *out, unsigned bits)
{
    for (size_t i = 0; IMAP_RIGHTS_LETTERS[i]; i++)
        if (bits & (1u << i)) sbuf_putc(out, IMAP_RIGHTS_LETTERS[i]);
}

void imap_rights_format(sbuf *out, unsigned bits)
{
    imap_rights_format_plain(out, bits);
    /* RFC 4314 2.1.1: for RFC 2086 clients. */
    if (bits & CREATE_MEMBERS) sbuf_putc(out, 'c');
    if (bits & DELETE_MEMBERS) sbuf_putc(out, 'd');
}

bool imap_acl_ident_negative(const char *id, size_t len)
{
    return len > 0 && id[0] == '-';
}

bool imap_acl_ident_anyone(const char *id, size_t len)
{
    return len == 6 && ascii_ncasecmp(id, "anyone", 6) == 0;
}

static bool bad_level(const char *p, size_t n)
{
    return n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.');
}

int imap_acl_split_shared(const char *name, char **owner, const char **rest)
{
    static const char prefix[] = IMAP_OTHER_USERS;
    size_t pl = sizeof prefix - 1;
    *owner = NULL;
    *rest = NULL;
    /* The namespace prefix is matched case-insensitively so that "other
     * users/..." can never become a private mailbox that shadows it. */
    if (ascii_ncasecmp(name, prefix, pl) != 0 || (name[pl] != '\0' && name[pl] != '/')) return 0;
    if (name[pl] == '\0') return -1;
    const char *o = name + pl + 1;
    const char *slash = strchr(o, '/');
    if (!slash) return -1;
    size_t ol = (size_t)(slash - o);
    if (bad_level(o, ol) || !memchr(o, '@', ol)) return -1;
    const char *r = slash + 1;
    /* Every level of the rest must be a real name. */
    for (const char *p = r;;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (bad_level(p, n)) return -1;
        if (!e) break;
        p = e + 1;
    }
    *owner = ascii_lower(xstrndup(o, ol));
    *rest = r;
    return 1;
}
