/* SASL decoding: any bytes give credentials or a clean -1, never a crash
 * or a leak; whatever decodes re-encodes to the same text (strict base64
 * has exactly one encoding per byte string). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct sasl_creds c;
    if (sasl_plain_decode(text, size, &c) == 0) {
        if (!c.authzid || !c.authcid[0] || !c.password[0]) abort();
        sasl_creds_free(&c);
    }

    sbuf dec = SBUF_INIT, enc = SBUF_INIT;
    if (sasl_base64_decode(text, size, &dec) == 0) {
        sasl_base64_encode(dec.data, dec.len, &enc);
        bool empty_marker = size == 1 && text[0] == '=';
        if (!empty_marker && (enc.len != size || memcmp(enc.data, text, size) != 0)) abort();
    }
    sbuf_free(&dec);
    sbuf_free(&enc);
    return 0;
}
