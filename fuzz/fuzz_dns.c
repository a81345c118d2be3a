/* Fuzz the DNS answer layer: the input is a sequence of MX RDATA blobs,
 * each prefixed by a one-byte length, as libunbound would hand them over;
 * then the forwarder and literal parsers on the raw input. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dns/dns.h"
#include "dns/dns_answer.h"

static uint32_t fixed_rnd(void *ctx)
{
    uint32_t *s = ctx;
    *s = *s * 1664525u + 1013904223u;
    return *s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dns_mx mx[32];
    size_t n = 0, i = 0;
    while (i < size && n < 32) {
        size_t len = data[i++];
        if (len > size - i) len = size - i;
        if (dns_mx_from_rdata(data + i, len, &mx[n]) == 0) {
            if (strlen(mx[n].name) > DNS_NAME_TEXT_MAX) __builtin_trap();
            n++;
        }
        i += len;
    }
    uint32_t seed = (uint32_t)size;
    size_t before = n;
    enum dns_mx_kind k = dns_mx_order(mx, &n, fixed_rnd, &seed);
    if (n > before) __builtin_trap();
    for (size_t j = 1; k == DNS_MX_LIST && j < n; j++)
        if (mx[j - 1].pref > mx[j].pref || !mx[j].name[0]) __builtin_trap();

    char text[300], out[320];
    size_t tl = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy(text, data, tl);
    text[tl] = '\0';
    dns_forwarder_syntax(text, out, sizeof out);
    dns_name_valid(text);
    struct sockaddr_storage ss;
    socklen_t sl;
    dns_parse_literal(text, strlen(text), &ss, &sl);
    return 0;
}
