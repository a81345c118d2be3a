/* smtp_parse_path: memory safety, and the invariants the session relies
 * on: the consumed length ends at '>', the output is within the RFC
 * limits, and format -> parse gives back the same address. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/sbuf.h"
#include "smtp/smtp_address.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    bool utf8 = data[0] & 1, null = data[0] & 2, pm = data[0] & 4;
    const char *s = (const char *)data + 1;
    size_t len = size - 1;
    /* exact-size copy so ASan sees any over-read */
    char *copy = malloc(len ? len : 1);
    if (len) memcpy(copy, s, len);

    struct smtp_address a, b;
    int n = smtp_parse_path(copy, len, utf8, null, pm, &a);
    if (n >= 0) {
        if (n < 2 || (size_t)n > len || (size_t)n > SMTP_PATH_MAX || copy[n - 1] != '>') abort();
        if (strlen(a.local) > SMTP_LOCAL_MAX || strlen(a.domain) > SMTP_DOMAIN_MAX) abort();
        if (a.utf8 && !utf8) abort();
        if (a.null && (n != 2 || !null)) abort();
        if (!a.null && !a.domain[0] && !pm) abort();

        sbuf f = SBUF_INIT;
        sbuf_putc(&f, '<');
        smtp_address_format(&a, &f);
        sbuf_putc(&f, '>');
        int m = smtp_parse_path(f.data, f.len, utf8, null, pm, &b);
        if (m != (int)f.len || memcmp(&a, &b, sizeof a) != 0) abort();
        sbuf_free(&f);
    } else {
        static const struct smtp_address zero;
        if (memcmp(&a, &zero, sizeof a) != 0) abort();
    }
    smtp_domain_valid(copy, len, utf8);
    free(copy);
    return 0;
}
