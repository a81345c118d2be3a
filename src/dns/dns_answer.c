#include "dns/dns_answer.h"

#include <string.h>

int dns_name_from_wire(const uint8_t *p, size_t len, size_t *used, char out[DNS_NAME_TEXT_MAX + 1])
{
    size_t i = 0, o = 0;
    for (;;) {
        if (i >= len) return -1;
        uint8_t l = p[i++];
        if (l == 0) break;
        /* 0xC0: compression pointer, 0x40/0x80: obsolete label types.
         * unbound hands over rdata uncompressed, so any of these is junk. */
        if (l & 0xC0) return -1;
        if (l > len - i) return -1;
        if (o + (o ? 1 : 0) + l > DNS_NAME_TEXT_MAX) return -1;
        if (o) out[o++] = '.';
        for (uint8_t k = 0; k < l; k++) {
            unsigned char c = p[i + k];
            if (c <= 0x20 || c == 0x7f || c == '.') return -1;
            if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
            out[o++] = (char)c;
        }
        i += l;
    }
    out[o] = '\0';
    if (used) *used = i;
    return 0;
}

int dns_mx_from_rdata(const uint8_t *rd, size_t len, struct dns_mx *out)
{
    if (len < 3) return -1;
    size_t used;
    if (dns_name_from_wire(rd + 2, len - 2, &used, out->name) < 0 || used != len - 2) return -1;
    out->pref = (uint16_t)(rd[0] << 8 | rd[1]);
    return 0;
}

/* Insertion sort: stable and fine for the handful of MX records a domain
 * has (unbound caps an RRset far below where this would matter). */
static void sort_by_pref(struct dns_mx *mx, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        struct dns_mx t = mx[i];
        size_t j = i;
        while (j > 0 && mx[j - 1].pref > t.pref) {
            mx[j] = mx[j - 1];
            j--;
        }
        mx[j] = t;
    }
}

enum dns_mx_kind dns_mx_order(struct dns_mx *mx, size_t *n, uint32_t (*rnd)(void *ctx), void *ctx)
{
    size_t count = *n;
    if (count == 0) return DNS_MX_IMPLICIT;
    if (count == 1 && mx[0].name[0] == '\0') return DNS_MX_NULL;
    size_t k = 0;
    for (size_t i = 0; i < count; i++)
        if (mx[i].name[0] != '\0') mx[k++] = mx[i];
    *n = count = k;
    if (count == 0) return DNS_MX_NULL;     /* only root exchangers: nothing can take mail */
    sort_by_pref(mx, count);
    /* Fisher-Yates within each run of equal preference. */
    for (size_t start = 0; start < count;) {
        size_t end = start + 1;
        while (end < count && mx[end].pref == mx[start].pref) end++;
        for (size_t i = end - 1; i > start; i--) {
            size_t j = start + (size_t)(rnd(ctx) % (uint32_t)(i - start + 1));
            struct dns_mx t = mx[i];
            mx[i] = mx[j];
            mx[j] = t;
        }
        start = end;
    }
    return DNS_MX_LIST;
}

bool dns_name_valid(const char *s)
{
    size_t n = strlen(s), label = 0;
    if (n == 0 || n > DNS_NAME_TEXT_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0) return false;
            label = 0;
            continue;
        }
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c >= 0x80;
        if (!ok || ++label > 63) return false;
    }
    return label > 0;
}
